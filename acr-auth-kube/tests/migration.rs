//! Switching from Alibaba's original helper (docs/migration.md): a cluster as the original left
//! it, with its `acr-credential-secret-aggregation` Secrets (without our managed-by label) and
//! the ServiceAccount entries naming them. Our controller leaves them alone and says so in an
//! Event; once the operator deletes one of those Secrets, ours replaces it, and once they label
//! one with our managed-by label, ours is written into it in place; the existing entries are kept
//! as they are (not doubled, not claimed); `cleanup` removes only what we wrote or adopted.

use std::time::Duration;

use acr_auth_kube::plan::{MANAGED_BY_LABEL, MANAGED_ENTRIES_ANNOTATION};
use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use base64::Engine as _;
use serde_json::{json, Value};

mod common;

/// Namespaces holding the original's Secret: one the operator deletes, one left as it is, one
/// the operator labels.
const LEGACY: [&str; 3] = ["legacy-a", "legacy-b", "legacy-c"];

use common::*;

/// A Secret as the original helper leaves it: our name, a `.dockerconfigjson`, no label of ours.
fn original_secret(ns: &str) -> Value {
    let config = json!({"auths": {"registry.cn-hangzhou.aliyuncs.com":
        {"username": "cr_temp_user", "password": "from-the-original", "auth": "b3JpZ2luYWw="}}});
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": OURS, "namespace": ns},
           "type": "kubernetes.io/dockerconfigjson",
           "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD
               .encode(config.to_string())}})
}

async fn set_entries(kube: &FakeKube, ns: &str, entries: &[&str]) {
    let list: Vec<Value> = entries.iter().map(|n| json!({ "name": n })).collect();
    let resp = acr_auth_testkit::http_client()
        .patch(format!(
            "{}/api/v1/namespaces/{ns}/serviceaccounts/default",
            kube.url()
        ))
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "imagePullSecrets": list }).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// The SecretNotOurs Events about namespace `ns` (they refer to the Namespace, a cluster-scoped
/// object, so they are recorded in `default`).
fn not_ours_events(kube: &FakeKube, ns: &str) -> Vec<Value> {
    kube.list("events.k8s.io/events", None)
        .into_iter()
        .filter(|e| e["reason"] == "SecretNotOurs" && e["regarding"]["name"] == ns)
        .collect()
}

/// Writes the controller (user `controller`) sent to `resource` in `ns` other than creates.
fn changes(kube: &FakeKube, resource: &str, ns: &str) -> Vec<String> {
    kube.requests()
        .iter()
        .filter(|r| {
            r.user.as_deref() == Some("controller")
                && r.resource == resource
                && r.namespace.as_deref() == Some(ns)
                && matches!(r.verb.as_str(), "update" | "patch" | "delete")
        })
        .map(|r| format!("{} {:?}", r.verb, r.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_secrets_are_left_alone_until_deleted_or_labelled() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    for ns in LEGACY.iter().chain(&["fresh"]) {
        create_namespace(&kube, ns).await;
    }
    // What the original left in the legacy namespaces; someone else's entry too in legacy-a.
    for ns in LEGACY {
        let path = format!("/api/v1/namespaces/{ns}/secrets");
        assert_eq!(post(&kube, &path, original_secret(ns)).await, 201);
    }
    set_entries(&kube, "legacy-a", &["theirs", OURS]).await;
    set_entries(&kube, "legacy-b", &[OURS]).await;
    set_entries(&kube, "legacy-c", &[OURS]).await;
    put_config(
        &kube,
        json!({"watch-namespace": "legacy-a,legacy-b,legacy-c,fresh", "service-account": "default",
               "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    let before: Vec<(Value, Value)> = LEGACY
        .iter()
        .map(|ns| {
            (
                kube.get("secrets", ns, OURS).unwrap(),
                kube.get("serviceaccounts", ns, "default").unwrap(),
            )
        })
        .collect();

    let mut settings = settings(&cloud);
    // The create is tried again after a resync: short, so the test sees the deletion handled.
    settings.resync = Duration::from_secs(1);
    let running = start_with(client(&kube, "controller"), settings);

    // Our controller serves the namespace the original never touched, and reports the others.
    eventually("fresh served", || {
        secret_hosts(&kube, "fresh").is_some() && sa_entries(&kube, "fresh", "default") == [OURS]
    })
    .await;
    eventually(
        "a SecretNotOurs Event for each of the original's Secrets",
        || {
            LEGACY
                .iter()
                .all(|ns| !not_ours_events(&kube, ns).is_empty())
        },
    )
    .await;
    let event = &not_ours_events(&kube, "legacy-b")[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "Namespace");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains(&format!("legacy-b/{OURS}")),
        "{event}"
    );
    // Several passes later (one per second), nothing of the original's has changed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (ns, (secret, sa)) in LEGACY.iter().zip(&before) {
        assert_eq!(&kube.get("secrets", ns, OURS).unwrap(), secret, "{ns}");
        assert_eq!(
            &kube.get("serviceaccounts", ns, "default").unwrap(),
            sa,
            "{ns}"
        );
        assert_eq!(changes(&kube, "secrets", ns), Vec::<String>::new());
        assert_eq!(changes(&kube, "serviceaccounts", ns), Vec::<String>::new());
    }

    // The operator deletes the original's Secret in legacy-a: ours takes its place.
    let deleted = acr_auth_testkit::http_client()
        .delete(format!(
            "{}/api/v1/namespaces/legacy-a/secrets/{OURS}",
            kube.url()
        ))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    eventually("ours created in legacy-a", || {
        kube.get("secrets", "legacy-a", OURS).is_some_and(|s| {
            s["metadata"]["labels"][MANAGED_BY_LABEL] == "aliyun-acr-credential-helper"
        })
    })
    .await;
    assert_eq!(
        secret_hosts(&kube, "legacy-a"),
        secret_hosts(&kube, "fresh"),
        "the same content as everywhere we serve"
    );
    // Give the SA patch, had one been planned, time to land.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The original's entry already names the Secret: kept once, in its place, and not recorded
    // as ours (we did not add it, so we never remove it).
    assert_eq!(sa_entries(&kube, "legacy-a", "default"), ["theirs", OURS]);
    let sa = kube.get("serviceaccounts", "legacy-a", "default").unwrap();
    assert!(
        sa["metadata"]["annotations"][MANAGED_ENTRIES_ANNOTATION].is_null(),
        "{sa}"
    );
    // legacy-b still holds the original's Secret, untouched.
    assert_eq!(kube.get("secrets", "legacy-b", OURS).unwrap(), before[1].0);

    // The operator labels the original's Secret in legacy-c: ours is written into it in place.
    let labelled = acr_auth_testkit::http_client()
        .patch(format!(
            "{}/api/v1/namespaces/legacy-c/secrets/{OURS}",
            kube.url()
        ))
        .header("content-type", "application/merge-patch+json")
        .body(
            json!({"metadata": {"labels": {MANAGED_BY_LABEL: "aliyun-acr-credential-helper"}}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(labelled.status().is_success());
    eventually("ours written into legacy-c", || {
        secret_hosts(&kube, "legacy-c") == secret_hosts(&kube, "fresh")
    })
    .await;
    let adopted = kube.get("secrets", "legacy-c", OURS).unwrap();
    assert_eq!(adopted["metadata"]["uid"], before[2].0["metadata"]["uid"]);
    assert_ne!(
        password(&kube, "legacy-c", "registry.cn-hangzhou.aliyuncs.com").as_deref(),
        Some("from-the-original")
    );
    // Patched in place, never deleted and created again.
    let writes = changes(&kube, "secrets", "legacy-c");
    assert!(
        !writes.is_empty() && writes.iter().all(|w| w.starts_with("patch")),
        "{writes:?}"
    );
    assert_eq!(sa_entries(&kube, "legacy-c", "default"), [OURS]);
    running.stop().await;

    // Uninstall: only what we wrote or adopted goes.
    let report = acr_auth_kube::cleanup::cleanup(&client(&kube, "controller"), false)
        .await
        .unwrap();
    assert_eq!(
        report.secrets_deleted, 3,
        "fresh, legacy-a and the adopted legacy-c"
    );
    assert_eq!(report.service_accounts_patched, 1, "fresh/default");
    for ns in ["fresh", "legacy-a", "legacy-c"] {
        assert!(kube.get("secrets", ns, OURS).is_none(), "{ns}");
    }
    assert_eq!(sa_entries(&kube, "fresh", "default"), Vec::<String>::new());
    let fresh = kube.get("serviceaccounts", "fresh", "default").unwrap();
    assert!(
        fresh["metadata"]["annotations"][MANAGED_ENTRIES_ANNOTATION].is_null(),
        "our record goes with our entries: {fresh}"
    );
    assert_eq!(kube.get("secrets", "legacy-b", OURS).unwrap(), before[1].0);
    assert_eq!(
        kube.get("serviceaccounts", "legacy-b", "default").unwrap(),
        before[1].1
    );
    // The original's entries stay (naming no Secret until the original writes one again).
    assert_eq!(sa_entries(&kube, "legacy-a", "default"), ["theirs", OURS]);
    assert_eq!(sa_entries(&kube, "legacy-c", "default"), [OURS]);
}
