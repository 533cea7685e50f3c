//! The planner: every rule of docs/behaviour.md ("What is written into the cluster") as a table
//! test, and properties over random clusters: planning after applying is empty, nothing we do not
//! own is touched.
//! Patches are applied with an independent RFC 6902 implementation (the `json-patch` crate).

use std::time::{Duration, UNIX_EPOCH};

use acr_auth_core::acr::RegistryToken;
use acr_auth_core::config::HelperConfig;
use acr_auth_core::source::RegistryCredential;
use acr_auth_kube::plan::{
    plan, ClusterSnapshot, NamespaceInfo, SecretInfo, ServiceAccountInfo, Write,
    MANAGED_ENTRIES_ANNOTATION,
};
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::Value;

const OURS: &str = "acr-credential-secret-aggregation";

fn cred(user: &str, pass: &str, hosts: &[&str]) -> RegistryCredential {
    RegistryCredential {
        token: RegistryToken {
            username: user.into(),
            password: pass.into(),
            expires_at: UNIX_EPOCH + Duration::from_secs(1_714_554_000),
        },
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        source: format!("source-{user}"),
    }
}

fn config(pairs: &[(&str, &str)]) -> HelperConfig {
    HelperConfig::from_configmap(pairs.iter().copied())
        .unwrap()
        .config
}

fn ns(name: &str) -> NamespaceInfo {
    NamespaceInfo {
        name: name.into(),
        ..Default::default()
    }
}

fn sa(ns: &str, name: &str, secrets: &[&str]) -> ServiceAccountInfo {
    ServiceAccountInfo {
        namespace: ns.into(),
        name: name.into(),
        resource_version: "1".into(),
        image_pull_secrets: secrets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Applies writes the way the API server would, JSON patches by RFC 6902 (a failed `test`
/// fails the test), and bumps resourceVersions.
fn apply(snapshot: &ClusterSnapshot, writes: &[Write]) -> ClusterSnapshot {
    let mut s = snapshot.clone();
    let mut rv = 1000;
    let mut bump = || {
        rv += 1;
        rv.to_string()
    };
    for w in writes {
        match w {
            Write::CreateSecret { namespace, .. } => {
                let secret = &w.secret().unwrap();
                let name = secret["metadata"]["name"].as_str().unwrap().to_owned();
                assert!(
                    !s.secrets
                        .iter()
                        .any(|x| x.namespace == *namespace && x.name == name),
                    "create of an existing Secret"
                );
                s.secrets.push(SecretInfo {
                    namespace: namespace.clone(),
                    name,
                    resource_version: bump(),
                    managed: acr_auth_kube::plan::is_managed(secret),
                    content_digest: Some(digest(&decode(secret))),
                    has_annotations: true,
                    expires_annotation: None,
                    pull_secret: secret["type"] == "kubernetes.io/dockerconfigjson",
                    registries_shape: secret["metadata"]["annotations"]
                        [acr_auth_kube::plan::REGISTRIES_ANNOTATION]
                        .as_str()
                        .and_then(acr_auth_kube::plan::registries_shape),
                });
            }
            Write::UpdateSecret {
                namespace,
                name,
                resource_version,
                ..
            } => {
                let secret = &w.secret().unwrap();
                assert_eq!(&secret["metadata"]["name"], name.as_str());
                let x = s
                    .secrets
                    .iter_mut()
                    .find(|x| x.namespace == *namespace && x.name == *name)
                    .unwrap();
                assert!(x.managed, "update of a Secret we do not own");
                assert_eq!(&x.resource_version, resource_version);
                x.content_digest = Some(digest(&decode(secret)));
                x.resource_version = bump();
            }
            Write::DeleteSecret {
                namespace,
                name,
                resource_version,
            } => {
                let i = s
                    .secrets
                    .iter()
                    .position(|x| x.namespace == *namespace && x.name == *name)
                    .unwrap();
                assert!(s.secrets[i].managed, "delete of a Secret we do not own");
                assert_eq!(&s.secrets[i].resource_version, resource_version);
                s.secrets.remove(i);
            }
            Write::PatchServiceAccount {
                namespace,
                service_account,
                edit,
                ..
            } => {
                let x = s
                    .service_accounts
                    .iter_mut()
                    .find(|x| x.namespace == *namespace && x.name == *service_account)
                    .unwrap();
                let mut doc = serde_json::json!({
                    "metadata": {"name": x.name, "namespace": x.namespace, "resourceVersion": x.resource_version},
                });
                if !x.image_pull_secrets.is_empty() {
                    doc["imagePullSecrets"] = x
                        .image_pull_secrets
                        .iter()
                        .map(|n| serde_json::json!({"name": n}))
                        .collect();
                }
                if !x.managed_entries.is_empty() {
                    doc["metadata"]["annotations"] = serde_json::json!({MANAGED_ENTRIES_ANNOTATION: x.managed_entries.join(",")});
                }
                let patch = edit.patch();
                json_patch::patch(&mut doc, &patch)
                    .unwrap_or_else(|e| panic!("patch {patch:?} failed: {e}"));
                let rv = bump();
                doc["metadata"]["resourceVersion"] = rv.into();
                *x = ServiceAccountInfo::from_json(&doc);
            }
        }
    }
    s
}

/// SHA-256, computed here with the `sha2` crate directly.
fn digest(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

fn decode(secret: &Value) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

fn kinds(writes: &[Write]) -> Vec<String> {
    writes
        .iter()
        .map(|w| match w {
            Write::CreateSecret { namespace, .. } => format!("create {namespace}"),
            Write::UpdateSecret {
                namespace, name, ..
            } => format!("update {namespace}/{name}"),
            Write::DeleteSecret {
                namespace, name, ..
            } => format!("delete {namespace}/{name}"),
            Write::PatchServiceAccount {
                namespace,
                service_account,
                attach,
                detach,
                ..
            } => match (attach, detach.is_empty()) {
                (Some(_), true) => format!("attach {namespace}/{service_account}"),
                (None, false) => format!("detach {namespace}/{service_account}"),
                (Some(_), false) => format!("attach+detach {namespace}/{service_account}"),
                (None, true) => format!("record {namespace}/{service_account}"),
            },
        })
        .collect()
}

fn fresh() -> ClusterSnapshot {
    ClusterSnapshot {
        namespaces: vec![ns("default"), ns("dev"), ns("kube-system")],
        service_accounts: vec![
            sa("default", "default", &[]),
            sa("dev", "default", &["theirs"]),
            sa("dev", "builder", &[]),
        ],
        secrets: vec![],
    }
}

#[test]
fn defaults_serve_the_default_namespace_and_service_account() {
    let c = config(&[]);
    let creds = [cred("u", "p", &["registry.cn-hangzhou.aliyuncs.com"])];
    let w = plan(&c, &fresh(), &creds);
    assert_eq!(kinds(&w), ["create default", "attach default/default"]);
    let secret = &w[0].secret().unwrap();
    assert!(matches!(w[0], Write::CreateSecret { .. }));
    assert_eq!(secret["metadata"]["name"], OURS);
    let after = apply(&fresh(), &w);
    assert!(plan(&c, &after, &creds).is_empty(), "idempotent");
}

#[test]
fn all_namespaces_minus_exclusions_skips_and_terminating_ones() {
    let mut snap = fresh();
    snap.namespaces.push(NamespaceInfo {
        name: "skipped".into(),
        skip: true,
        terminating: false,
    });
    snap.namespaces.push(NamespaceInfo {
        name: "going".into(),
        skip: false,
        terminating: true,
    });
    let c = config(&[
        ("watch-namespace", "all"),
        ("exclude-namespace", "kube-*"),
        ("service-account", "*"),
    ]);
    let w = plan(&c, &snap, &[cred("u", "p", &["h"])]);
    assert_eq!(
        kinds(&w),
        [
            "create default",
            "create dev",
            "attach default/default",
            "attach dev/default",
            "attach dev/builder"
        ]
    );
}

#[test]
fn foreign_secrets_and_entries_are_never_touched() {
    let mut snap = fresh();
    snap.secrets.push(SecretInfo {
        namespace: "dev".into(),
        name: OURS.into(),
        resource_version: "5".into(),
        managed: false,
        content_digest: Some(digest("{}")),
        ..Default::default()
    });
    let c = config(&[("watch-namespace", "dev")]);
    let w = plan(&c, &snap, &[cred("u", "p", &["h"])]);
    assert!(
        w.is_empty(),
        "an unmanaged Secret with our name blocks the namespace: {:?}",
        kinds(&w)
    );

    // Our entry is appended after theirs.
    let c = config(&[("watch-namespace", "dev"), ("service-account", "default")]);
    let snap = fresh();
    let w = plan(&c, &snap, &[cred("u", "p", &["h"])]);
    let after = apply(&snap, &w);
    let dev_default = after
        .service_accounts
        .iter()
        .find(|s| s.namespace == "dev" && s.name == "default")
        .unwrap();
    assert_eq!(dev_default.image_pull_secrets, ["theirs", OURS]);
}

#[test]
fn content_changes_update_in_place_and_only_then() {
    let c = config(&[]);
    let snap = apply(&fresh(), &plan(&c, &fresh(), &[cred("u", "p1", &["h"])]));
    assert!(plan(&c, &snap, &[cred("u", "p1", &["h"])]).is_empty());
    let w = plan(&c, &snap, &[cred("u", "p2", &["h"])]);
    assert_eq!(
        kinds(&w),
        ["update default/acr-credential-secret-aggregation"]
    );
    let Write::UpdateSecret {
        resource_version, ..
    } = &w[0]
    else {
        unreachable!()
    };
    let current = snap
        .secrets
        .iter()
        .find(|s| s.namespace == "default")
        .unwrap();
    assert_eq!(
        resource_version, &current.resource_version,
        "precondition on the version read"
    );
}

#[test]
fn leaving_the_configuration_removes_our_secret_and_entries_only() {
    let c = config(&[
        ("watch-namespace", "default,dev"),
        ("service-account", "default,builder"),
    ]);
    let creds = [cred("u", "p", &["h"])];
    let served = apply(&fresh(), &plan(&c, &fresh(), &creds));
    // dev leaves; builder leaves.
    let narrower = config(&[
        ("watch-namespace", "default"),
        ("service-account", "default"),
    ]);
    let w = plan(&narrower, &served, &creds);
    assert_eq!(
        kinds(&w),
        [
            "detach dev/default",
            "detach dev/builder",
            "delete dev/acr-credential-secret-aggregation"
        ]
    );
    let after = apply(&served, &w);
    let dev_default = after
        .service_accounts
        .iter()
        .find(|s| s.namespace == "dev" && s.name == "default")
        .unwrap();
    assert_eq!(
        dev_default.image_pull_secrets,
        ["theirs"],
        "their entry stays"
    );
    assert!(plan(&narrower, &after, &creds).is_empty());
}

#[test]
fn renaming_the_secret_moves_every_reference() {
    let creds = [cred("u", "p", &["h"])];
    let c = config(&[]);
    let served = apply(&fresh(), &plan(&c, &fresh(), &creds));
    let renamed = config(&[("secret-name", "pull-secret")]);
    let w = plan(&renamed, &served, &creds);
    assert_eq!(
        kinds(&w),
        [
            "create default",
            "attach+detach default/default",
            "delete default/acr-credential-secret-aggregation"
        ]
    );
    let after = apply(&served, &w);
    assert_eq!(
        after.service_accounts[0].image_pull_secrets,
        ["pull-secret"]
    );
    assert!(plan(&renamed, &after, &creds).is_empty());
}

#[test]
fn without_credentials_nothing_is_written_but_cleanup_still_happens() {
    let c = config(&[]);
    assert!(plan(&c, &fresh(), &[]).is_empty());
    assert!(
        plan(&c, &fresh(), &[cred("u", "p", &[])]).is_empty(),
        "a credential without hosts is nothing"
    );
    let served = apply(&fresh(), &plan(&c, &fresh(), &[cred("u", "p", &["h"])]));
    let w = plan(&config(&[("watch-namespace", "dev")]), &served, &[]);
    assert_eq!(
        kinds(&w),
        [
            "detach default/default",
            "delete default/acr-credential-secret-aggregation"
        ]
    );
}

#[test]
fn every_host_of_every_registry_is_in_the_secret() {
    let creds = [
        cred("ee", "p1", &["a.example.com", "b.example.com"]),
        cred("pe", "p2", &["c.example.com", "a.example.com"]),
    ];
    let w = plan(&config(&[]), &fresh(), &creds);
    let secret = &w[0].secret().unwrap();
    assert!(matches!(w[0], Write::CreateSecret { .. }));
    let cfg = acr_auth_core::docker_config::DockerConfig::parse(&decode(secret)).unwrap();
    assert_eq!(
        cfg.auths.keys().collect::<Vec<_>>(),
        ["a.example.com", "b.example.com", "c.example.com"]
    );
    assert_eq!(
        cfg.auths["a.example.com"].username, "ee",
        "the first registry naming a host wins"
    );
    assert_eq!(
        secret["metadata"]["annotations"]["acr-credential-helper.alibabacloud.com/expires-at"],
        "2024-05-01T09:00:00Z"
    );
}

// ---- properties ----

fn arb_snapshot() -> impl Strategy<Value = ClusterSnapshot> {
    let names = prop::sample::select(vec!["default", "dev", "prod", "kube-system", "team-a"]);
    let sa_names = prop::sample::select(vec!["default", "builder", "deployer"]);
    let entry = prop::sample::select(vec![OURS, "pull-secret", "theirs", "other"]);
    (
        prop::collection::btree_map(
            names.clone(),
            (any::<bool>(), prop::bool::weighted(0.1)),
            1..5,
        ),
        prop::collection::vec(
            (
                names.clone(),
                sa_names,
                prop::collection::vec((entry.clone(), any::<bool>()), 0..4),
            ),
            0..10,
        ),
        prop::collection::vec(
            (
                names,
                prop::sample::select(vec![OURS, "pull-secret"]),
                any::<bool>(),
                any::<bool>(),
            ),
            0..6,
        ),
    )
        .prop_map(|(nss, sas, secrets)| {
            let mut snap = ClusterSnapshot::default();
            for (name, (skip, terminating)) in &nss {
                snap.namespaces.push(NamespaceInfo {
                    name: name.to_string(),
                    skip: *skip && name.starts_with('t'),
                    terminating: *terminating,
                });
            }
            for (n, s, entries) in sas {
                if nss.contains_key(n)
                    && !snap
                        .service_accounts
                        .iter()
                        .any(|x| x.namespace == n && x.name == s)
                {
                    let names: Vec<&str> = entries.iter().map(|(e, _)| *e).collect();
                    let mut info = sa(n, s, &names);
                    // Some entries were added by us earlier (recorded), the others by someone else.
                    info.managed_entries = entries
                        .iter()
                        .filter(|(_, ours)| *ours)
                        .map(|(e, _)| e.to_string())
                        .collect();
                    info.managed_entries.dedup();
                    info.has_annotations = !info.managed_entries.is_empty();
                    snap.service_accounts.push(info);
                }
            }
            for (n, name, managed, fresh_content) in secrets {
                if nss.contains_key(n)
                    && !snap
                        .secrets
                        .iter()
                        .any(|x| x.namespace == n && x.name == name)
                {
                    snap.secrets.push(SecretInfo {
                        namespace: n.into(),
                        name: name.into(),
                        resource_version: "7".into(),
                        managed,
                        content_digest: Some(digest(if fresh_content { "{}" } else { "old" })),
                        pull_secret: true,
                        ..Default::default()
                    });
                }
            }
            snap
        })
}

fn arb_config() -> impl Strategy<Value = HelperConfig> {
    (
        prop::sample::select(vec!["all", "default", "dev,prod", "team-a,default"]),
        prop::sample::select(vec!["*", "default", "builder,deployer"]),
        prop::sample::select(vec!["", "kube-*", "prod"]),
        prop::sample::select(vec![OURS, "pull-secret"]),
    )
        .prop_map(|(ns, sa, ex, name)| {
            config(&[
                ("watch-namespace", ns),
                ("service-account", sa),
                ("exclude-namespace", ex),
                ("secret-name", name),
            ])
        })
}

/// Entries someone else added: those not recorded as ours before the plan.
fn foreign_entries(before: &ServiceAccountInfo, sa: &ServiceAccountInfo) -> Vec<String> {
    let mut ours = before.managed_entries.clone();
    ours.extend(sa.managed_entries.iter().cloned());
    sa.image_pull_secrets
        .iter()
        .filter(|e| !ours.contains(e))
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn planning_after_applying_is_empty(snap in arb_snapshot(), c in arb_config(), with_creds: bool) {
        let creds = if with_creds { vec![cred("u", "p", &["h1", "h2"])] } else { vec![] };
        let w = plan(&c, &snap, &creds);
        let after = apply(&snap, &w);
        let again = plan(&c, &after, &creds);
        prop_assert!(again.is_empty(), "second plan: {:?}", kinds(&again));
    }

    #[test]
    fn foreign_entries_and_secrets_survive(snap in arb_snapshot(), c in arb_config(), with_creds: bool) {
        let creds = if with_creds { vec![cred("u", "p", &["h1"])] } else { vec![] };
        let after = apply(&snap, &plan(&c, &snap, &creds));
        for before in &snap.service_accounts {
            let now = after.service_accounts.iter().find(|x| x.namespace == before.namespace && x.name == before.name).unwrap();
            prop_assert_eq!(foreign_entries(before, before), foreign_entries(before, now));
        }
        for s in snap.secrets.iter().filter(|s| !s.managed) {
            prop_assert!(after.secrets.contains(s), "an unmanaged Secret changed: {:?}", s);
        }
    }

    /// The controller plans a cluster in parts of a few namespaces (bounded memory at any
    /// size): the parts' writes together must be the whole plan's, whatever the parts, also for
    /// the objects of a namespace that is gone (its ServiceAccounts and Secrets still listed).
    #[test]
    fn planning_by_namespace_parts_gives_the_whole_plan(
        snap in arb_snapshot(),
        c in arb_config(),
        with_creds: bool,
        parts in 1usize..4,
        seed: u64,
        gone: prop::sample::Index,
    ) {
        let mut snap = snap;
        // One namespace deleted while its objects are still listed.
        let removed = gone.index(snap.namespaces.len());
        snap.namespaces.remove(removed);
        let creds = if with_creds { vec![cred("u", "p", &["h1"])] } else { vec![] };
        let whole = plan(&c, &snap, &creds);
        let part_of = |ns: &str| {
            let h = ns.bytes().fold(seed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            (h % parts as u64) as usize
        };
        let planner = acr_auth_kube::plan::Planner::new(&c, &creds);
        let mut together = Vec::new();
        for part in 0..parts {
            let sub = ClusterSnapshot {
                namespaces: snap.namespaces.iter().filter(|n| part_of(&n.name) == part).cloned().collect(),
                service_accounts: snap.service_accounts.iter().filter(|s| part_of(&s.namespace) == part).cloned().collect(),
                secrets: snap.secrets.iter().filter(|s| part_of(&s.namespace) == part).cloned().collect(),
            };
            together.extend(planner.plan(&sub));
        }
        prop_assert_eq!(together.len(), whole.len(), "parts {:?} whole {:?}", kinds(&together), kinds(&whole));
        for w in &whole {
            prop_assert!(together.contains(w), "missing from the parts: {:?}", kinds(std::slice::from_ref(w)));
        }
    }

    #[test]
    fn served_namespaces_end_up_with_secret_and_entries(snap in arb_snapshot(), c in arb_config()) {
        let creds = vec![cred("u", "p", &["h1"])];
        let after = apply(&snap, &plan(&c, &snap, &creds));
        for ns in after.namespaces.iter().filter(|n| acr_auth_kube::plan::namespace_in_scope(&c, n)) {
            let blocked = snap.secrets.iter().any(|s| s.namespace == ns.name && s.name == c.secret_name && !s.managed);
            if blocked { continue; }
            let secret = after.secrets.iter().find(|s| s.namespace == ns.name && s.name == c.secret_name);
            prop_assert!(secret.is_some_and(|s| s.managed));
            for sa in after.service_accounts.iter().filter(|s| s.namespace == ns.name && c.service_accounts.contains(&s.name)) {
                prop_assert!(sa.image_pull_secrets.contains(&c.secret_name));
            }
        }
    }
}

#[test]
fn a_labelled_secret_of_another_type_is_never_pruned() {
    // The webhook certificate carries our label but is no pull Secret: it is not ours to delete.
    let mut snap = fresh();
    snap.secrets.push(SecretInfo {
        namespace: "kube-system".into(),
        name: "aliyun-acr-credential-helper-webhook-cert".into(),
        resource_version: "3".into(),
        managed: true,
        pull_secret: false,
        ..Default::default()
    });
    let w = plan(&config(&[]), &snap, &[cred("u", "p", &["h"])]);
    assert!(
        !kinds(&w).iter().any(|k| k.starts_with("delete")),
        "{:?}",
        kinds(&w)
    );
    // The same Secret as a pull Secret out of scope is deleted.
    snap.secrets[0].pull_secret = true;
    let w = plan(&config(&[]), &snap, &[cred("u", "p", &["h"])]);
    assert!(kinds(&w)
        .iter()
        .any(|k| k.starts_with("delete kube-system/")));
}

#[test]
fn a_rename_without_credentials_keeps_the_old_secret_and_entries() {
    let creds = [cred("u", "p", &["h"])];
    let c = config(&[]);
    let served = apply(&fresh(), &plan(&c, &fresh(), &creds));
    // Renamed while every registry fails: nothing can be written under the new name, so the
    // old Secret and its entry stay.
    let renamed = config(&[("secret-name", "pull-secret")]);
    let w = plan(&renamed, &served, &[]);
    assert!(w.is_empty(), "{:?}", kinds(&w));
    // Once credentials are back, the move happens.
    let w = plan(&renamed, &served, &creds);
    assert_eq!(
        kinds(&w),
        [
            "create default",
            "attach+detach default/default",
            "delete default/acr-credential-secret-aggregation"
        ]
    );
}
