//! The RBAC of `deploy/` against what the controller really does: an end-to-end scenario
//! (leader election, writes in every served namespace, a renewal, narrowing, Events, the
//! webhook configuration enabled, edited and disabled, a credential Secret rotated, cleanup) is
//! run against the fake API server, which records every request with its user; then
//! `kubectl kustomize deploy/` is rendered and every recorded request must be granted, while
//! every cluster-wide permission must have been needed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::credentials::{Credentials, TokenMode};
use acr_auth_kube::leader::LeaseSettings;
use acr_auth_kube::webhook::{self, WebhookSettings};
use acr_auth_testkit::kube::{FakeKube, RequestRecord};
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use serde_json::{json, Value};

mod common;

use common::*;

const USER: &str = "system:serviceaccount:kube-system:aliyun-acr-credential-helper";
const LEASE: &str = "aliyun-acr-credential-helper";

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The rule of `rules` granting `r`, if any.
fn granting<'a>(rules: &'a [Value], r: &RequestRecord) -> Option<&'a Value> {
    rules.iter().find(|rule| {
        strings(&rule["apiGroups"]).contains(&r.group.as_str())
            && strings(&rule["resources"]).contains(&r.resource.as_str())
            && strings(&rule["verbs"]).contains(&r.verb.as_str())
            && (rule["resourceNames"].is_null()
                || r.name
                    .as_deref()
                    .is_some_and(|n| strings(&rule["resourceNames"]).contains(&n)))
    })
}

async fn scenario(kube: &FakeKube, cloud: &FakeCloud) {
    for ns in ["dev", "team"] {
        create_namespace(kube, ns).await;
    }
    let addon = |secret: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "alibaba-addon-secret", "namespace": "kube-system"},
               "stringData": {"access-key-id": "LTAItestkey", "access-key-secret": secret}})
    };
    assert_eq!(
        post(
            kube,
            "/api/v1/namespaces/kube-system/secrets",
            addon("test-secret")
        )
        .await,
        201
    );
    let pe = "- instanceId: \"\"\n";
    let hook = |policy: &str| format!("enable: true\nfailure-policy: {policy}\n");
    put_config(
        kube,
        json!({"watch-namespace": "all", "exclude-namespace": "kube-*", "expiring-threshold": "2s",
               "acr-registry-info": pe, "webhook-configuration": hook("Ignore")}),
    )
    .await;

    let client = client(kube, USER);
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    let cert = webhook::ensure_certificate(
        &client,
        "kube-system",
        &["aliyun-acr-credential-helper.kube-system.svc".into()],
        &[],
        now,
    )
    .await
    .unwrap();
    let mut s = settings(cloud);
    s.sources.base_identity = Arc::new(Credentials::new("LTAItestkey", "test-secret"));
    s.identity_refresh = Some(TokenMode::Auto);
    // The binary's default --lease-name, the one name the Role lets it read and renew.
    let mut lease = LeaseSettings::new("kube-system", LEASE, "pod-1");
    lease.retry_period = Duration::from_millis(200);
    s.leader_election = Some(lease);
    s.webhook = Some(WebhookSettings::new(
        json!({"service": {"name": "aliyun-acr-credential-helper",
                                          "namespace": "kube-system", "path": webhook::PATH}}),
        cert.ca_pem.clone(),
    ));
    let running = start_with(client.clone(), s);
    eventually("dev and team served", || {
        secret_hosts(kube, "dev").is_some() && secret_hosts(kube, "team").is_some()
    })
    .await;
    eventually("a renewal", || kube.count("patch", Some("secrets")) >= 1).await;

    // Narrowing, a webhook edit, an invalid edit, then disabling the webhook.
    put_config(
        kube,
        json!({"watch-namespace": "default,dev", "acr-registry-info": pe,
               "webhook-configuration": hook("Fail")}),
    )
    .await;
    eventually("team cleaned", || secret_hosts(kube, "team").is_none()).await;
    put_config(kube, json!({"expiring-threshold": "never"})).await;
    eventually("an InvalidConfiguration Event", || {
        kube.list("events.k8s.io/events", Some("kube-system"))
            .iter()
            .any(|e| e["reason"] == "InvalidConfiguration")
    })
    .await;
    put_config(
        kube,
        json!({"watch-namespace": "default,dev", "acr-registry-info": pe}),
    )
    .await;
    eventually("webhook configuration deleted", || {
        webhook_configuration(kube).is_none()
    })
    .await;

    // The AccessKey is rotated in its Secret.
    let rotated = acr_auth_testkit::http_client()
        .put(format!(
            "{}/api/v1/namespaces/kube-system/secrets/alibaba-addon-secret",
            kube.url()
        ))
        .json(&addon("test-secret"))
        .send()
        .await
        .unwrap();
    assert!(rotated.status().is_success());
    let identity_reads = || {
        kube.requests()
            .iter()
            .filter(|r| r.verb == "get" && r.resource == "namespaces")
            .count()
    };
    let before = identity_reads();
    eventually("the identity chosen again", || identity_reads() > before).await;
    running.stop().await;

    // Uninstall.
    let report = acr_auth_kube::cleanup::cleanup(&client, false)
        .await
        .unwrap();
    assert!(report.secrets_deleted >= 2);
    acr_auth_kube::cleanup::record_cleanup_event(
        &client,
        "kube-system",
        "acr-configuration",
        &report,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rbac_grants_every_request_and_nothing_unused_cluster_wide() {
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = 4;
    let cloud = FakeCloud::start(config).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    scenario(&kube, &cloud).await;
    let requests: Vec<RequestRecord> = kube
        .requests()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(USER))
        .collect();
    assert!(requests.len() > 20);

    let docs = render("deploy");
    let cluster_role = find(&docs, "ClusterRole");
    let role = find(&docs, "Role");
    assert_eq!(role["metadata"]["namespace"], "kube-system");
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        let b = find(&docs, binding);
        assert_eq!(
            b["subjects"][0],
            json!({"kind": "ServiceAccount", "name": "aliyun-acr-credential-helper", "namespace": "kube-system"})
        );
    }
    let deployment = find(&docs, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "aliyun-acr-credential-helper"
    );
    let cluster_rules = cluster_role["rules"].as_array().unwrap();
    let role_rules = role["rules"].as_array().unwrap();

    let mut denied = Vec::new();
    let mut used_cluster_wide = BTreeSet::new();
    for r in &requests {
        let in_kube_system = r.namespace.as_deref() == Some("kube-system");
        if let Some(rule) = granting(cluster_rules, r) {
            for group in strings(&rule["apiGroups"]) {
                if group == r.group {
                    used_cluster_wide.insert((
                        group.to_owned(),
                        r.resource.clone(),
                        r.verb.clone(),
                    ));
                }
            }
        } else if !(in_kube_system && granting(role_rules, r).is_some()) {
            denied.push(format!(
                "{} {}/{} in {:?} (name {:?})",
                r.verb, r.group, r.resource, r.namespace, r.name
            ));
        }
    }
    denied.sort();
    denied.dedup();
    assert!(denied.is_empty(), "not granted by deploy/: {denied:#?}");

    // Every cluster-wide permission was needed. Exception: kube-rs' Event recorder patches an
    // Event when the same one repeats (an event series), which this scenario does not provoke.
    let mut unused = Vec::new();
    for rule in cluster_rules {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    let key = (group.to_owned(), resource.to_owned(), verb.to_owned());
                    let series = group == "events.k8s.io" && verb == "patch";
                    if !series && !used_cluster_wide.contains(&key) {
                        unused.push(format!("{verb} {group}/{resource}"));
                    }
                }
            }
        }
    }
    assert!(unused.is_empty(), "cluster-wide but never used: {unused:?}");
    // The Lease: read and renewed by name only; created without one (RBAC cannot name a create).
    let leases: Vec<&RequestRecord> = requests.iter().filter(|r| r.resource == "leases").collect();
    assert!(leases
        .iter()
        .any(|r| r.verb == "create" && r.name.is_none()));
    assert!(leases.iter().any(|r| r.verb == "update"));
    for rule in role_rules
        .iter()
        .filter(|rule| strings(&rule["resources"]).contains(&"leases"))
    {
        let verbs = strings(&rule["verbs"]);
        if verbs.iter().any(|v| *v != "create") {
            assert_eq!(strings(&rule["resourceNames"]), [LEASE], "{rule}");
        }
    }
    // Nothing cluster-wide that only kube-system needs.
    for (resource, verb) in [
        ("configmaps", "list"),
        ("leases", "update"),
        ("secrets", "get"),
    ] {
        assert!(
            !cluster_rules
                .iter()
                .any(|rule| strings(&rule["resources"]).contains(&resource)
                    && strings(&rule["verbs"]).contains(&verb)),
            "{verb} {resource} must stay in the kube-system Role"
        );
    }
}
