//! Production operation end to end: leader election between two replicas, the metrics and
//! health endpoint, and a base identity that follows its credential Secret without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_auth_core::credentials::{Credentials, TokenMode};
use acr_auth_kube::leader::LeaseSettings;
use acr_auth_kube::ops::serve;
use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use serde_json::json;

mod common;

use common::*;

const WRITE_VERBS: [&str; 4] = ["create", "update", "patch", "delete"];

/// The users (bearer tokens) that wrote Secrets or ServiceAccounts, in request order.
fn writers(kube: &FakeKube) -> Vec<String> {
    kube.requests()
        .into_iter()
        .filter(|r| {
            WRITE_VERBS.contains(&r.verb.as_str())
                && matches!(r.resource.as_str(), "secrets" | "serviceaccounts")
        })
        .map(|r| r.user.unwrap_or_default())
        .collect()
}

fn lease(identity: &str) -> LeaseSettings {
    let mut l = LeaseSettings::new("kube-system", "acr-helper-test", identity);
    l.lease_duration = Duration::from_secs(3);
    l.renew_deadline = Duration::from_secs(2);
    l.retry_period = Duration::from_millis(200);
    l
}

fn replica(kube: &FakeKube, cloud: &FakeCloud, name: &str) -> Running {
    let mut s = settings(cloud);
    s.leader_election = Some(lease(name));
    start_with(client(kube, name), s)
}

async fn setup() -> (FakeCloud, FakeKube) {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(
        &kube,
        json!({"watch-namespace": "all", "exclude-namespace": "kube-*",
               "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    (cloud, kube)
}

/// Waits until exactly one of the replicas leads and returns its index.
async fn the_leader(replicas: &[&Running]) -> usize {
    let start = Instant::now();
    loop {
        let leaders: Vec<usize> = (0..replicas.len())
            .filter(|i| replicas[*i].ops.health.is_leader())
            .collect();
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if let [one] = leaders[..] {
            return one;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no leader elected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `seq` is a run of `first` followed by a run of `second`: one handover, no interleaving.
fn one_handover(seq: &[String], first: &str, second: &str) -> bool {
    let switch = seq.iter().position(|u| u != first).unwrap_or(seq.len());
    seq[..switch].iter().all(|u| u == first) && seq[switch..].iter().all(|u| u == second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_writer_and_a_graceful_handover() {
    let (cloud, kube) = setup().await;
    let a = replica(&kube, &cloud, "replica-a");
    let b = replica(&kube, &cloud, "replica-b");
    create_namespace_and_wait_until_served(&kube, "team-1").await;
    let leader = the_leader(&[&a, &b]).await;
    let (leader, standby, leader_name, standby_name) = if leader == 0 {
        (a, b, "replica-a", "replica-b")
    } else {
        (b, a, "replica-b", "replica-a")
    };
    let before = writers(&kube);
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|u| u == leader_name),
        "only the leader writes: {before:?}"
    );
    assert!(!standby.ops.health.is_leader(), "the standby does not lead");
    let acr_calls = cloud.calls("GET /tokens");
    assert_eq!(acr_calls, 1, "the standby fetches no tokens");

    // The leader stops: it stops writing, then releases the Lease; the standby takes over.
    let stopped = Instant::now();
    leader.stop().await;
    create_namespace_and_wait_until_served(&kube, "after-handover").await;
    let handover = stopped.elapsed();
    assert!(standby.ops.health.is_leader());
    let lease = kube
        .get(
            "coordination.k8s.io/leases",
            "kube-system",
            "acr-helper-test",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], standby_name);
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    // A released Lease is taken at the next retry, well within the lease duration.
    assert!(
        handover < Duration::from_secs(3),
        "handover took {handover:?}"
    );
    let all = writers(&kube);
    assert!(all.len() > before.len());
    assert!(
        one_handover(&all, leader_name, standby_name),
        "no double writes during the handover: {all:?}"
    );
    standby.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_once_its_lease_runs_out() {
    let (cloud, kube) = setup().await;
    let a = replica(&kube, &cloud, "replica-a");
    eventually("replica-a leads", || a.ops.health.is_leader()).await;
    let b = replica(&kube, &cloud, "replica-b");
    create_namespace_and_wait_until_served(&kube, "team-1").await;
    assert!(!b.ops.health.is_leader());

    // replica-a dies without releasing the Lease: replica-b must wait for it to run out.
    a.kill().await;
    let killed = Instant::now();
    eventually("replica-b takes over", || b.ops.health.is_leader()).await;
    let waited = killed.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "the Lease was honoured until it ran out (took over after {waited:?})"
    );
    create_namespace_and_wait_until_served(&kube, "after-crash").await;
    assert!(one_handover(&writers(&kube), "replica-a", "replica-b"));
    b.stop().await;
}

async fn scrape(url: &str) -> (u16, String) {
    let r = acr_auth_testkit::http_client()
        .get(url)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served() {
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = 3600;
    let cloud = FakeCloud::start(config).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(
        &kube,
        json!({"watch-namespace": "default,dev",
               "acr-registry-info": "- instanceId: cri-testinstance01\n- instanceId: \"\"\n"}),
    )
    .await;
    create_namespace(&kube, "dev").await;
    let running = start(&kube, &cloud);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = serve(
        "127.0.0.1:0".parse().unwrap(),
        running.ops.clone(),
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    let base = format!("http://{addr}");
    assert_eq!(scrape(&format!("{base}/healthz")).await.0, 200);
    let start = Instant::now();
    while scrape(&format!("{base}/readyz")).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("dev served", || secret_hosts(&kube, "dev").is_some()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, text) = scrape(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for registry in [
        "Enterprise Edition cri-testinstance01 in cn-hangzhou",
        "Personal Edition in cn-hangzhou",
    ] {
        let expiry = sample(
            &text,
            &format!("acr_auth_token_expiry_timestamp_seconds{{registry=\"{registry}\"}}"),
        );
        let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            expiry.is_some_and(|e| e > now + 3000.0 && e < now + 3700.0),
            "{registry}: {expiry:?}\n{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("acr_auth_token_renewals_total{{registry=\"{registry}\"}}")
            ),
            Some(1.0),
            "{text}"
        );
    }
    assert_eq!(
        sample(&text, "acr_auth_namespaces_served"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "acr_auth_configuration_valid"), Some(1.0));
    assert_eq!(sample(&text, "acr_auth_leader"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "acr_auth_writes_total{kind=\"create_secret\",result=\"ok\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert!(sample(&text, "acr_auth_reconciles_total{result=\"ok\"}").is_some_and(|n| n >= 1.0));
    assert!(sample(&text, "acr_auth_reconcile_duration_seconds_count").is_some_and(|n| n >= 1.0));
    assert!(!text.contains("test-secret"), "no secrets in metrics");

    // An invalid edit: the gauge drops, the last good configuration stays.
    put_config(&kube, json!({"expiring-threshold": "soon"})).await;
    let start = Instant::now();
    while sample(
        &scrape(&format!("{base}/metrics")).await.1,
        "acr_auth_configuration_valid",
    ) != Some(0.0)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "validity not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    server.await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_credential_secret_is_picked_up_without_a_restart() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    // The operator got the AccessKey secret wrong.
    let secret = |key_secret: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "alibaba-addon-secret", "namespace": "kube-system"},
               "stringData": {"access-key-id": "LTAItestkey", "access-key-secret": key_secret}})
    };
    assert_eq!(
        post(
            &kube,
            "/api/v1/namespaces/kube-system/secrets",
            secret("wrong")
        )
        .await,
        201
    );
    put_config(&kube, json!({"acr-registry-info": "- instanceId: \"\"\n"})).await;
    let mut s = settings(&cloud);
    s.sources.base_identity = Arc::new(Credentials::new("LTAItestkey", "wrong"));
    s.identity_refresh = Some(TokenMode::Auto);
    let running = start_with(client(&kube, "controller"), s);
    eventually("a TokenRenewalFailed Event", || {
        kube.list("events.k8s.io/events", Some("kube-system"))
            .iter()
            .any(|e| e["reason"] == "TokenRenewalFailed")
    })
    .await;
    assert!(secret_hosts(&kube, "default").is_none());

    // Fixing the Secret is enough: the controller notices and serves.
    let fixed = acr_auth_testkit::http_client()
        .put(format!(
            "{}/api/v1/namespaces/kube-system/secrets/alibaba-addon-secret",
            kube.url()
        ))
        .json(&secret("test-secret"))
        .send()
        .await
        .unwrap();
    assert!(fixed.status().is_success());
    eventually("default served with the fixed key", || {
        secret_hosts(&kube, "default").is_some()
    })
    .await;
    running.stop().await;
}

/// The webhook end to end: the fake API server calls it over HTTPS on ServiceAccount CREATE,
/// trusting the caBundle the controller wrote; `webhook-configuration` edits apply live; the
/// failure policy decides what happens when the webhook is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_serves_new_service_accounts_and_honours_the_failure_policy() {
    use acr_auth_kube::webhook::{self, WebhookSettings};

    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    create_namespace(&kube, "dev").await;
    let pe = "- instanceId: \"\"\n";
    put_config(
        &kube,
        json!({"watch-namespace": "dev", "service-account": "*", "acr-registry-info": pe,
               "webhook-configuration": "enable: true\nfailure-policy: Fail\ntimeout-seconds: 2\n"}),
    )
    .await;
    let kube_client = client(&kube, "controller");
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    let cert = webhook::ensure_certificate(
        &kube_client,
        "kube-system",
        &["aliyun-acr-credential-helper.kube-system.svc".into()],
        &["127.0.0.1".parse().unwrap()],
        now,
    )
    .await
    .unwrap();
    assert!(kube
        .get("secrets", "kube-system", webhook::CERT_SECRET)
        .is_some());
    // A second replica reads the same certificate instead of making its own.
    let again = webhook::ensure_certificate(&kube_client, "kube-system", &[], &[], now)
        .await
        .unwrap();
    assert_eq!(again.ca_pem, cert.ca_pem);

    let mut s = settings(&cloud);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    s.webhook = Some(WebhookSettings::new(
        json!({"url": format!("https://127.0.0.1:{port}{}", webhook::PATH)}),
        cert.ca_pem.clone(),
    ));
    // Resync often, so the repair of a deleted configuration shows quickly.
    s.resync = Duration::from_millis(500);
    let running = start_with(kube_client, s);
    // The controller is reachable through its context once its watches run.
    let controller_context = running.webhook_context.clone();
    let (stop_hook, hook_stopped) = tokio::sync::oneshot::channel::<()>();
    let (_, hook) = webhook::serve(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &cert,
        controller_context,
        async move {
            let _ = hook_stopped.await;
        },
    )
    .await
    .unwrap();
    eventually("the MutatingWebhookConfiguration", || {
        webhook_configuration(&kube).is_some()
    })
    .await;
    eventually("dev served", || secret_hosts(&kube, "dev").is_some()).await;
    // The certificate Secret carries our label but is no pull Secret: never pruned (a second
    // replica must find the same CA).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        kube.get("secrets", "kube-system", webhook::CERT_SECRET)
            .is_some(),
        "the controller deleted the webhook certificate"
    );

    // The object the API server returns for the create already carries our entry.
    let (_, created) = create_service_account(
        &kube,
        "dev",
        "helm-release",
        json!({"imagePullSecrets": [{"name": "theirs"}]}),
    )
    .await;
    assert_eq!(
        created["imagePullSecrets"],
        json!([{"name": "theirs"}, {"name": OURS}]),
        "{created}"
    );
    assert_eq!(kube.webhook_calls().len(), 1);
    // Outside the watched namespaces nothing changes.
    let (_, other) = create_service_account(&kube, "kube-public", "other", json!({})).await;
    assert!(other["imagePullSecrets"].is_null(), "{other}");

    // A malformed review gets HTTP 400 with the reason, and the server keeps serving.
    let https = acr_auth_testkit::http_client_builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let bad = https
        .post(format!("https://127.0.0.1:{port}{}", webhook::PATH))
        .header("content-type", "application/json")
        .body(r#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("expected an admission.k8s.io/v1 AdmissionReview"));

    // The webhook goes down: failurePolicy Fail refuses the ServiceAccount...
    let _ = stop_hook.send(());
    hook.await.unwrap();
    let (status, refused) = create_service_account(&kube, "dev", "while-down", json!({})).await;
    assert_eq!(status, 500);
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed calling webhook")),
        "{refused}"
    );

    // ...and after a live edit to Ignore, the ServiceAccount is admitted (the controller then
    // adds the entry itself).
    put_config(
        &kube,
        json!({"watch-namespace": "dev", "service-account": "*", "acr-registry-info": pe,
               "webhook-configuration": "enable: true\nfailure-policy: Ignore\ntimeout-seconds: 2\n"}),
    )
    .await;
    eventually("failurePolicy Ignore", || {
        webhook_configuration(&kube).is_some_and(|c| c["webhooks"][0]["failurePolicy"] == "Ignore")
    })
    .await;
    let (status, _) = create_service_account(&kube, "dev", "while-down", json!({})).await;
    assert_eq!(status, 201);

    // Someone deletes the configuration: the leader puts it back at its next resync.
    let deleted = acr_auth_testkit::http_client()
        .delete(format!(
            "{}/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{}",
            kube.url(),
            webhook::CONFIGURATION_NAME
        ))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    eventually("the configuration restored", || {
        webhook_configuration(&kube).is_some_and(|c| c["webhooks"][0]["failurePolicy"] == "Ignore")
    })
    .await;
    let updates = kube.count("update", Some("mutatingwebhookconfigurations"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        kube.count("update", Some("mutatingwebhookconfigurations")),
        updates,
        "an unchanged configuration is not rewritten at every resync"
    );
    eventually("the controller serves it", || {
        sa_entries(&kube, "dev", "while-down") == [OURS]
    })
    .await;

    // The API server calls it only for the namespaces it serves.
    assert_eq!(
        webhook_configuration(&kube).unwrap()["webhooks"][0]["namespaceSelector"],
        json!({"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["dev"]}]})
    );
    // A label someone put on the configuration survives our next update of it.
    let status = patch(
        &kube,
        &format!(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{}",
            webhook::CONFIGURATION_NAME
        ),
        json!({"metadata": {"labels": {"audit.example.com/owner": "platform"}}}),
    )
    .await;
    assert_eq!(status, 200);
    put_config(
        &kube,
        json!({"watch-namespace": "dev,qa", "service-account": "*", "acr-registry-info": pe,
               "webhook-configuration": "enable: true\nfailure-policy: Ignore\ntimeout-seconds: 3\n"}),
    )
    .await;
    eventually("the configuration updated", || {
        webhook_configuration(&kube).is_some_and(|c| c["webhooks"][0]["timeoutSeconds"] == 3)
    })
    .await;
    let c = webhook_configuration(&kube).unwrap();
    assert_eq!(
        c["metadata"]["labels"]["audit.example.com/owner"],
        "platform"
    );
    assert_eq!(
        c["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["dev", "qa"])
    );

    // Disabling the webhook removes the configuration.
    put_config(
        &kube,
        json!({"watch-namespace": "dev", "service-account": "*", "acr-registry-info": pe}),
    )
    .await;
    eventually("configuration deleted", || {
        webhook_configuration(&kube).is_none()
    })
    .await;
    running.stop().await;
}

/// `alibaba-addon-secret` with a whitespace-only `access-key-secret` (or id) is not an identity:
/// a Credentials error names the key (and never the other key's value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_access_key_in_the_addon_secret_is_rejected_naming_the_key() {
    use acr_auth_core::credentials::ProviderEnv;
    use acr_auth_kube::identity::resolve_base_identity;

    let kube = FakeKube::start().await.unwrap();
    let env = ProviderEnv::from_vars([("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]);
    for (id, secret, named) in [
        ("LTAItestkey", "  \n", "access-key-secret"),
        (" ", "test-secret-value", "access-key-id"),
    ] {
        let url = format!(
            "{}/api/v1/namespaces/kube-system/secrets/alibaba-addon-secret",
            kube.url()
        );
        let _ = acr_auth_testkit::http_client()
            .delete(&url)
            .send()
            .await
            .unwrap();
        let status = post(
            &kube,
            "/api/v1/namespaces/kube-system/secrets",
            json!({"metadata": {"name": "alibaba-addon-secret"},
                   "stringData": {"access-key-id": id, "access-key-secret": secret}}),
        )
        .await;
        assert!((200..300).contains(&status), "{status}");
        let e = match resolve_base_identity(&client(&kube, "controller"), TokenMode::Auto, &env)
            .await
        {
            Ok(i) => panic!("accepted {:?}", i.source),
            Err(e) => e,
        };
        assert_eq!(e.kind(), acr_auth_core::ErrorKind::Credentials);
        assert!(e.to_string().contains(named), "{e}");
        assert!(!e.to_string().contains("test-secret-value"), "{e}");
    }
}
