//! Nothing foreign is lost: a model cluster of whole API objects (ServiceAccounts with foreign
//! annotations, labels, entries and fields; our Secrets with labels and annotations others
//! added), concurrent foreign edits between planning and applying, and the planner's writes
//! applied the way the API server applies them (JSON patch by RFC 6902 with the `json-patch`
//! crate, resourceVersion preconditions). The planner reads the objects through the same
//! conversions the controller uses (`from_service_account`, `from_secret`).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use acr_auth_core::acr::RegistryToken;
use acr_auth_core::config::HelperConfig;
use acr_auth_core::source::RegistryCredential;
use acr_auth_kube::plan::{
    plan, ClusterSnapshot, NamespaceInfo, SecretInfo, ServiceAccountInfo, Write,
};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use proptest::prelude::*;
use serde_json::{json, Value};

type Key = (String, String);

/// The cluster as the API server holds it.
#[derive(Debug, Clone)]
struct Cluster {
    namespaces: Vec<String>,
    service_accounts: BTreeMap<Key, Value>,
    secrets: BTreeMap<Key, Value>,
    rv: u64,
}

impl Cluster {
    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            namespaces: self
                .namespaces
                .iter()
                .map(|n| NamespaceInfo {
                    name: n.clone(),
                    ..Default::default()
                })
                .collect(),
            service_accounts: self
                .service_accounts
                .values()
                .map(|v| {
                    let sa: ServiceAccount = serde_json::from_value(v.clone()).unwrap();
                    ServiceAccountInfo::from_service_account(&sa)
                })
                .collect(),
            // The controller watches our Secrets only (label selector).
            secrets: self
                .secrets
                .values()
                .map(|v| {
                    SecretInfo::from_secret(&serde_json::from_value::<Secret>(v.clone()).unwrap())
                })
                .filter(|s| s.managed)
                .collect(),
        }
    }

    /// Applies `writes` as the API server would; returns how many were refused as conflicts.
    fn apply(&mut self, writes: &[Write]) -> usize {
        let mut conflicts = 0;
        for w in writes {
            match w {
                Write::CreateSecret {
                    namespace, name, ..
                } => {
                    let key = (namespace.clone(), name.clone());
                    if self.secrets.contains_key(&key) {
                        conflicts += 1;
                        continue;
                    }
                    let mut obj = w.secret().unwrap();
                    obj["metadata"]["resourceVersion"] = self.bump().into();
                    self.secrets.insert(key, obj);
                }
                Write::UpdateSecret {
                    namespace, name, ..
                } => {
                    let key = (namespace.clone(), name.clone());
                    let mut obj = self.secrets[&key].clone();
                    if json_patch::patch(&mut obj, &w.secret_patch().unwrap()).is_err() {
                        conflicts += 1;
                        continue;
                    }
                    obj["metadata"]["resourceVersion"] = self.bump().into();
                    self.secrets.insert(key, obj);
                }
                Write::DeleteSecret {
                    namespace,
                    name,
                    resource_version,
                } => {
                    let key = (namespace.clone(), name.clone());
                    match self.secrets.get(&key) {
                        Some(s)
                            if s["metadata"]["resourceVersion"] == resource_version.as_str() =>
                        {
                            assert_eq!(
                                s["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                                "aliyun-acr-credential-helper",
                                "deleted a Secret we do not own"
                            );
                            self.secrets.remove(&key);
                        }
                        Some(_) => conflicts += 1,
                        None => {}
                    }
                }
                Write::PatchServiceAccount {
                    namespace,
                    service_account,
                    edit,
                    ..
                } => {
                    let key = (namespace.clone(), service_account.clone());
                    let mut obj = self.service_accounts[&key].clone();
                    // A failed `test` fails the whole patch (the API server answers 422).
                    if json_patch::patch(&mut obj, &edit.patch()).is_err() {
                        conflicts += 1;
                        continue;
                    }
                    obj["metadata"]["resourceVersion"] = self.bump().into();
                    self.service_accounts.insert(key, obj);
                }
            }
        }
        conflicts
    }

    /// A foreign writer's edit (a Helm upgrade, another controller, a person with kubectl).
    fn foreign_edit(&mut self, edit: &ForeignEdit) {
        let rv = self.bump();
        match edit {
            ForeignEdit::SaAnnotation { sa, key, value } => {
                if let Some(obj) = self.nth_sa(*sa) {
                    let annotations = obj["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .entry("annotations")
                        .or_insert_with(|| json!({}));
                    annotations[key.as_str()] = json!(value);
                    obj["metadata"]["resourceVersion"] = rv.into();
                }
            }
            ForeignEdit::SaEntry { sa, name } => {
                if let Some(obj) = self.nth_sa(*sa) {
                    let list = obj
                        .as_object_mut()
                        .unwrap()
                        .entry("imagePullSecrets")
                        .or_insert_with(|| json!([]));
                    if !list
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["name"] == name.as_str())
                    {
                        list.as_array_mut().unwrap().push(json!({ "name": name }));
                    }
                    obj["metadata"]["resourceVersion"] = rv.into();
                }
            }
            ForeignEdit::SecretLabel { secret, key, value } => {
                let n = self.secrets.len();
                if n > 0 {
                    let obj = self.secrets.values_mut().nth(secret % n).unwrap();
                    let labels = obj["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .entry("labels")
                        .or_insert_with(|| json!({}));
                    labels[key.as_str()] = json!(value);
                    obj["metadata"]["resourceVersion"] = rv.into();
                }
            }
            ForeignEdit::SecretAnnotation { secret, key, value } => {
                let n = self.secrets.len();
                if n > 0 {
                    let obj = self.secrets.values_mut().nth(secret % n).unwrap();
                    let annotations = obj["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .entry("annotations")
                        .or_insert_with(|| json!({}));
                    annotations[key.as_str()] = json!(value);
                    obj["metadata"]["resourceVersion"] = rv.into();
                }
            }
        }
    }

    fn nth_sa(&mut self, i: usize) -> Option<&mut Value> {
        let n = self.service_accounts.len();
        (n > 0).then(|| self.service_accounts.values_mut().nth(i % n).unwrap())
    }
}

#[derive(Debug, Clone)]
enum ForeignEdit {
    SaAnnotation {
        sa: usize,
        key: String,
        value: String,
    },
    SaEntry {
        sa: usize,
        name: String,
    },
    SecretLabel {
        secret: usize,
        key: String,
        value: String,
    },
    SecretAnnotation {
        secret: usize,
        key: String,
        value: String,
    },
}

/// Everything foreign an object holds: every annotation and label but ours, and every other
/// field of a ServiceAccount, byte for byte.
fn foreign_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.remove("resourceVersion");
    for map in ["annotations", "labels"] {
        if let Some(m) = meta.get_mut(map).and_then(Value::as_object_mut) {
            m.remove("acr-credential-helper.alibabacloud.com/managed-image-pull-secrets");
            m.remove("acr-credential-helper.alibabacloud.com/expires-at");
            m.remove("app.kubernetes.io/managed-by");
            if m.is_empty() {
                meta.remove(map);
            }
        }
    }
    let o = v.as_object_mut().unwrap();
    o.remove("data");
    o.remove("imagePullSecrets");
    v
}

/// The entries of a ServiceAccount that are not ours (recorded in our annotation or named like
/// our Secret), in order.
fn foreign_entries(obj: &Value, ours: &[&str]) -> Vec<String> {
    obj["imagePullSecrets"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|e| e["name"].as_str())
                .filter(|n| !ours.contains(n))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

const OURS: &str = "acr-credential-secret-aggregation";
const OTHER_NAME: &str = "pull-secret";

fn cred(password: &str) -> RegistryCredential {
    RegistryCredential {
        token: RegistryToken {
            username: "u".into(),
            password: password.into(),
            expires_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        },
        hosts: vec!["registry.cn-hangzhou.aliyuncs.com".into()],
        source: "pe".into(),
    }
}

fn config(ns: &str, sa: &str, secret_name: &str) -> HelperConfig {
    HelperConfig::from_configmap([
        ("watch-namespace", ns),
        ("service-account", sa),
        ("secret-name", secret_name),
    ])
    .unwrap()
    .config
}

fn arb_cluster() -> impl Strategy<Value = Cluster> {
    let namespaces = vec!["default", "dev", "prod"];
    let sa = (
        prop::sample::select(namespaces.clone()),
        prop::sample::select(vec!["default", "builder", "web"]),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "pod-identity.alibabacloud.com/role-name",
                "meta.helm.sh/release-name",
                "a~b/c",
            ]),
            "[a-z]{1,5}",
            0..3,
        ),
        prop::collection::vec(prop::sample::select(vec!["theirs", "regcred"]), 0..3),
        any::<bool>(),
    );
    prop::collection::vec(sa, 1..8).prop_map(move |sas| {
        let mut c = Cluster {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            service_accounts: BTreeMap::new(),
            secrets: BTreeMap::new(),
            rv: 100,
        };
        for (ns, name, annotations, entries, labelled) in sas {
            let rv = c.bump();
            let mut obj = json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "uid": format!("uid-{rv}")},
                "automountServiceAccountToken": false,
                "secrets": [{"name": format!("{name}-token")}],
            });
            if !annotations.is_empty() {
                obj["metadata"]["annotations"] = json!(annotations);
            }
            if labelled {
                obj["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "Helm"});
            }
            let mut list: Vec<&str> = entries;
            list.dedup();
            if !list.is_empty() {
                obj["imagePullSecrets"] = list.iter().map(|n| json!({ "name": n })).collect();
            }
            c.service_accounts.insert((ns.to_owned(), name.to_owned()), obj);
        }
        c
    })
}

fn arb_edit() -> impl Strategy<Value = ForeignEdit> {
    let key = prop::sample::select(vec!["team", "helm.sh/hook", "x~y/z"]).prop_map(str::to_owned);
    prop_oneof![
        (any::<usize>(), key.clone(), "[a-z]{1,4}")
            .prop_map(|(sa, key, value)| ForeignEdit::SaAnnotation { sa, key, value }),
        (
            any::<usize>(),
            prop::sample::select(vec!["theirs", "late-entry"])
        )
            .prop_map(|(sa, name)| ForeignEdit::SaEntry {
                sa,
                name: name.to_owned()
            }),
        (any::<usize>(), key.clone(), "[a-z]{1,4}")
            .prop_map(|(secret, key, value)| ForeignEdit::SecretLabel { secret, key, value }),
        (any::<usize>(), key, "[a-z]{1,4}")
            .prop_map(|(secret, key, value)| ForeignEdit::SecretAnnotation { secret, key, value }),
    ]
}

/// One round: the controller plans from what it sees, foreign writers edit meanwhile, the
/// writes reach the API server.
#[derive(Debug, Clone)]
struct Round {
    config: (&'static str, &'static str, &'static str),
    password: &'static str,
    edits: Vec<ForeignEdit>,
}

fn arb_round() -> impl Strategy<Value = Round> {
    (
        prop::sample::select(vec!["all", "default", "dev,prod"]),
        prop::sample::select(vec!["*", "default", "builder,web"]),
        prop::sample::select(vec![OURS, OURS, OTHER_NAME]),
        prop::sample::select(vec!["p1", "p2"]),
        prop::collection::vec(arb_edit(), 0..4),
    )
        .prop_map(|(ns, sa, name, password, edits)| Round {
            config: (ns, sa, name),
            password,
            edits,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// After any sequence of plans, foreign edits and applies, and a final quiet
    /// reconciliation: every foreign annotation, label, field and entry is still there, the
    /// cluster converged (planning again yields nothing), and the served ServiceAccounts carry
    /// our entry.
    #[test]
    fn nothing_foreign_is_lost(start in arb_cluster(), rounds in prop::collection::vec(arb_round(), 1..6)) {
        let mut cluster = start.clone();
        let mut expected_sa: BTreeMap<Key, Value> = BTreeMap::new();
        let mut expected_entries: BTreeMap<Key, Vec<String>> = BTreeMap::new();
        let mut expected_secret: BTreeMap<Key, Value> = BTreeMap::new();
        let mut last = None;
        for round in &rounds {
            let (ns, sa, name) = round.config;
            let c = config(ns, sa, name);
            let writes = plan(&c, &cluster.snapshot(), &[cred(round.password)]);
            for e in &round.edits {
                cluster.foreign_edit(e);
            }
            cluster.apply(&writes);
            last = Some((c, round.password));
        }
        // What foreign writers left, as it is now (their edits are part of the truth).
        for (k, v) in &cluster.service_accounts {
            expected_sa.insert(k.clone(), foreign_part(v));
            expected_entries.insert(k.clone(), foreign_entries(v, &[OURS, OTHER_NAME]));
        }
        for (k, v) in &cluster.secrets {
            expected_secret.insert(k.clone(), foreign_part(v));
        }
        // Quiet: reconcile until nothing is left to do (conflicts resolve by re-planning).
        let (c, password) = last.unwrap();
        let mut converged = false;
        for _ in 0..4 {
            let writes = plan(&c, &cluster.snapshot(), &[cred(password)]);
            if writes.is_empty() {
                converged = true;
                break;
            }
            prop_assert_eq!(cluster.apply(&writes), 0, "conflicts without a concurrent writer");
        }
        prop_assert!(converged, "did not converge");
        for (k, before) in &expected_sa {
            let now = &cluster.service_accounts[k];
            prop_assert_eq!(&foreign_part(now), before, "ServiceAccount {:?} lost foreign content", k);
            prop_assert_eq!(&foreign_entries(now, &[OURS, OTHER_NAME]), &expected_entries[k]);
        }
        for (k, before) in &expected_secret {
            if let Some(now) = cluster.secrets.get(k) {
                prop_assert_eq!(&foreign_part(now), before, "Secret {:?} lost foreign labels or annotations", k);
            }
        }
        // Served: every selected ServiceAccount in a served namespace lists our Secret.
        let snap = cluster.snapshot();
        for ns in snap.namespaces.iter().filter(|n| acr_auth_kube::plan::namespace_in_scope(&c, n)) {
            for sa in snap.service_accounts.iter().filter(|s| s.namespace == ns.name && c.service_accounts.contains(&s.name)) {
                prop_assert!(sa.image_pull_secrets.contains(&c.secret_name), "{}/{} not served", sa.namespace, sa.name);
            }
        }
    }
}

/// The defect as reported: the first attach on a ServiceAccount with RRSA and Helm
/// annotations kept only ours.
#[test]
fn the_first_attach_keeps_rrsa_and_helm_annotations() {
    let mut cluster = Cluster {
        namespaces: vec!["default".into()],
        service_accounts: BTreeMap::new(),
        secrets: BTreeMap::new(),
        rv: 1,
    };
    let sa = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": "default", "resourceVersion": "1",
            "annotations": {
                "pod-identity.alibabacloud.com/role-name": "app-role",
                "meta.helm.sh/release-name": "web",
            }},
    });
    cluster
        .service_accounts
        .insert(("default".into(), "default".into()), sa);
    let c = config("default", "default", OURS);
    let writes = plan(&c, &cluster.snapshot(), &[cred("p")]);
    assert_eq!(cluster.apply(&writes), 0);
    let after = &cluster.service_accounts[&("default".to_owned(), "default".to_owned())];
    let annotations = after["metadata"]["annotations"].as_object().unwrap();
    assert_eq!(
        annotations["pod-identity.alibabacloud.com/role-name"],
        "app-role"
    );
    assert_eq!(annotations["meta.helm.sh/release-name"], "web");
    assert_eq!(
        annotations["acr-credential-helper.alibabacloud.com/managed-image-pull-secrets"],
        OURS
    );
    assert_eq!(after["imagePullSecrets"], json!([{ "name": OURS }]));

    // Someone labels and annotates our Secret; a renewal keeps both.
    let key = ("default".to_owned(), OURS.to_owned());
    let secret = cluster.secrets.get_mut(&key).unwrap();
    secret["metadata"]["labels"]["backup.velero.io/include"] = json!("true");
    secret["metadata"]["annotations"]["team"] = json!("platform");
    let writes = plan(&c, &cluster.snapshot(), &[cred("renewed")]);
    assert!(matches!(writes.as_slice(), [Write::UpdateSecret { .. }]));
    assert_eq!(cluster.apply(&writes), 0);
    let secret = &cluster.secrets[&key];
    assert_eq!(
        secret["metadata"]["labels"]["backup.velero.io/include"],
        "true"
    );
    assert_eq!(secret["metadata"]["annotations"]["team"], "platform");
    let written = secret["data"][".dockerconfigjson"].as_str().unwrap();
    use base64::Engine as _;
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(written)
            .unwrap(),
    )
    .unwrap();
    assert!(text.contains("renewed"), "the new password was written");
}
