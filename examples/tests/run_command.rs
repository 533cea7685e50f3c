//! `aliyun-acr-credential-helper run` and `cleanup` as a cluster runs them: the binary against
//! the fake API server and the fake cloud, with signals, logs, metrics, leader election and the
//! webhook.

mod common;

use std::time::{Duration, Instant};

use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use base64::Engine as _;
use common::*;
use serde_json::Value;

/// The fake cloud (`cloud`) and cluster with the sample configuration (`cluster`), and a temp
/// directory holding the kubeconfig.
async fn setup(cloud: FakeCloudConfig) -> (FakeCloud, FakeKube, tempfile::TempDir) {
    let cloud = FakeCloud::start(cloud).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&dir.path().join("kubeconfig"))
        .unwrap();
    cluster(&kube).await;
    (cloud, kube, dir)
}

/// Starts the binary with `args`, only `env` and `extra` in its environment (plus PATH), and
/// `stderr`; it is killed when dropped.
fn spawn_run(
    args: &[&str],
    env: &[(&'static str, String)],
    extra: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(extra.iter().copied())
        .kill_on_drop(true)
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Sends SIGTERM (as the kubelet does) and expects a clean exit within 10 s.
async fn stop_gracefully(child: &mut tokio::process::Child) {
    let pid = child.id().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A loopback port the OS has just handed out.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn post(kube: &FakeKube, path: &str, body: Value) {
    let status = acr_auth_testkit::http_client()
        .post(format!("{}{path}", kube.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{path}: {status}");
}

async fn cluster(kube: &FakeKube) {
    post(
        kube,
        "/api/v1/namespaces",
        serde_json::json!({"metadata": {"name": "team-a"}}),
    )
    .await;
    post(
        kube,
        "/api/v1/namespaces/kube-system/secrets",
        serde_json::json!({"metadata": {"name": "alibaba-addon-secret"},
        "data": {"access-key-id": "TFRBSXRlc3RrZXk=", "access-key-secret": "dGVzdC1zZWNyZXQ="}}),
    )
    .await;
    post(kube, "/api/v1/namespaces/kube-system/configmaps", serde_json::json!({"metadata": {"name": "acr-configuration"},
        "data": {"watch-namespace": "default,team-a", "acr-registry-info": "- instanceId: cri-testinstance01\n"}})).await;
}

fn env(kube_dir: &std::path::Path, cloud: &FakeCloud) -> Vec<(&'static str, String)> {
    vec![
        (
            "KUBECONFIG",
            kube_dir.join("kubeconfig").display().to_string(),
        ),
        ("ACR_AUTH_ACR_ENDPOINT", cloud.url()),
        ("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou".into()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".into()),
        ("HOME", kube_dir.display().to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_the_cluster_and_cleanup_removes_everything_it_wrote() {
    let (cloud, kube, dir) = setup(FakeCloudConfig::sample()).await;
    let env = env(dir.path(), &cloud);

    // --dry-run logs the writes and makes none.
    let mut child = spawn_run(
        &["run", "--dry-run"],
        &env,
        &[],
        std::process::Stdio::piped(),
    );
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains("dry run: would write")
        || !seen.contains("create Secret team-a/acr-credential-secret-aggregation")
    {
        assert!(Instant::now() < deadline, "no dry-run output: {seen}");
        let mut line = String::new();
        use tokio::io::AsyncBufReadExt as _;
        if lines.read_line(&mut line).await.unwrap() == 0 {
            panic!("run --dry-run exited: {seen}");
        }
        seen.push_str(&line);
    }
    let _ = child.kill().await;
    assert!(
        kube.get("secrets", "team-a", "acr-credential-secret-aggregation")
            .is_none(),
        "dry run wrote nothing"
    );
    assert!(
        seen.contains("base identity") && seen.contains("AddonSecret"),
        "{seen}"
    );

    // run writes; SIGTERM stops it gracefully.
    let mut child = spawn_run(&["run"], &env, &[], std::process::Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(15);
    while !["default", "team-a"].iter().all(|ns| {
        kube.get("secrets", ns, "acr-credential-secret-aggregation")
            .is_some()
    }) {
        assert!(Instant::now() < deadline, "run did not write the Secrets");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_gracefully(&mut child).await;

    let env_refs = env
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect::<Vec<_>>();
    // cleanup --dry-run says what it would delete, and deletes nothing.
    let out = run(&["cleanup", "--dry-run"], &env_refs).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "dry run: would delete 2 Secrets, would remove our entries from 2 ServiceAccounts"
        ),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("deleted"), "{}", stdout(&out));
    assert!(kube
        .get("secrets", "team-a", "acr-credential-secret-aggregation")
        .is_some());

    // cleanup removes our Secrets and entries, and nothing else.
    let out = run(&["cleanup"], &env_refs).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deleted 2 Secrets, removed our entries from 2 ServiceAccounts"),
        "{}",
        stdout(&out)
    );
    assert!(kube
        .get("secrets", "team-a", "acr-credential-secret-aggregation")
        .is_none());
    assert!(
        kube.get("secrets", "kube-system", "alibaba-addon-secret")
            .is_some(),
        "not ours: kept"
    );
    let sa = kube.get("serviceaccounts", "team-a", "default").unwrap();
    assert!(sa["imagePullSecrets"].is_null(), "{sa}");
}

/// Debug logs of a whole run (writes, a renewal, an ACR outage, recovery) hold no AccessKey
/// secret, no registry password and no `auth` value; the binary serves its metrics and
/// health on `--metrics-addr` and leads its Lease with `--leader-elect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_carry_no_secrets_and_serve_metrics() {
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = 4;
    let (cloud, kube, dir) = setup(config).await;
    let port = free_port();
    let webhook_port = free_port();
    let mut child = spawn_run(
        &[
            "run",
            "--leader-elect",
            "--identity",
            "test-replica",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-addr",
            &format!("127.0.0.1:{webhook_port}"),
            "--webhook-url",
            &format!("https://127.0.0.1:{webhook_port}/mutate-serviceaccounts"),
        ],
        &env(dir.path(), &cloud),
        &[("RUST_LOG", "debug")],
        std::process::Stdio::piped(),
    );
    let mut stderr_pipe = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = String::new();
        let _ = stderr_pipe.read_to_string(&mut buf).await;
        buf
    });

    let password = || {
        let s = kube.get("secrets", "team-a", "acr-credential-secret-aggregation")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s["data"][".dockerconfigjson"].as_str()?)
            .ok()?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        let auth = v["auths"]["acme-registry.cn-hangzhou.cr.aliyuncs.com"].clone();
        Some((
            auth["password"].as_str()?.to_owned(),
            auth["auth"].as_str()?.to_owned(),
        ))
    };
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    // Collect two generations of credentials (a renewal), then an outage and recovery.
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "no renewal: {seen:?}");
        if let Some(p) = password() {
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cloud.fail_next(12, acr_auth_testkit::Fault::ServiceUnavailable);
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let text = acr_auth_testkit::http_client()
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("acr_auth_leader 1"), "{text}");
    assert!(text.contains("acr_auth_namespaces_served 2"), "{text}");
    let ready = acr_auth_testkit::http_client()
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "no recovery: {seen:?}");
        if let Some(p) = password() {
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lease = kube
        .get(
            "coordination.k8s.io/leases",
            "kube-system",
            "aliyun-acr-credential-helper",
        )
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "test-replica");
    stop_gracefully(&mut child).await;
    let log = log.await.unwrap();
    assert!(
        log.contains("reconciled") && log.contains("became the leader"),
        "{log}"
    );
    assert!(
        log.contains("registry credentials failing"),
        "the outage is logged: {log}"
    );
    assert!(!log.contains("test-secret"), "AccessKey secret in the log");
    for (password, auth) in &seen {
        assert!(
            !log.contains(password.as_str()),
            "a registry password in the log"
        );
        assert!(!log.contains(auth.as_str()), "an auth value in the log");
    }
    let lease = kube
        .get(
            "coordination.k8s.io/leases",
            "kube-system",
            "aliyun-acr-credential-helper",
        )
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "released on SIGTERM: {lease}"
    );
}

/// Turns the webhook on (`failure-policy: Fail`) for every ServiceAccount.
async fn enable_webhook(kube: &FakeKube) {
    let cm = kube
        .get("configmaps", "kube-system", "acr-configuration")
        .unwrap();
    let mut data = cm["data"].clone();
    data["webhook-configuration"] = "enable: true\nfailure-policy: Fail\n".into();
    data["service-account"] = "*".into();
    let updated = acr_auth_testkit::http_client()
        .put(format!(
            "{}/api/v1/namespaces/kube-system/configmaps/acr-configuration",
            kube.url()
        ))
        .json(&serde_json::json!({"metadata": {"name": "acr-configuration", "namespace": "kube-system"}, "data": data}))
        .send()
        .await
        .unwrap();
    assert!(updated.status().is_success());
}

/// The binary's webhook with a mounted certificate (`--webhook-cert-dir`): the fake API
/// server calls it over HTTPS and the ServiceAccount comes back already patched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_the_webhook_with_a_mounted_certificate() {
    use acr_auth_kube::webhook::WebhookCertificate;
    let (cloud, kube, dir) = setup(FakeCloudConfig::sample()).await;
    enable_webhook(&kube).await;
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    let cert = WebhookCertificate::generate(&[], &["127.0.0.1".parse().unwrap()], now).unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &cert.ca_pem).unwrap();
    std::fs::write(certs.join("tls.crt"), &cert.cert_pem).unwrap();
    std::fs::write(certs.join("tls.key"), cert.key_pem()).unwrap();
    let port = free_port();
    let _child = spawn_run(
        &[
            "run",
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-url",
            &format!("https://127.0.0.1:{port}/mutate-serviceaccounts"),
            "--webhook-cert-dir",
            &certs.display().to_string(),
        ],
        &env(dir.path(), &cloud),
        &[],
        std::process::Stdio::null(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while kube
        .get(
            "admissionregistration.k8s.io/mutatingwebhookconfigurations",
            "",
            "aliyun-acr-credential-helper",
        )
        .is_none()
    {
        assert!(Instant::now() < deadline, "no MutatingWebhookConfiguration");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created: Value = acr_auth_testkit::http_client()
        .post(format!(
            "{}/api/v1/namespaces/team-a/serviceaccounts",
            kube.url()
        ))
        .json(&serde_json::json!({"metadata": {"name": "default-copy"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        created["imagePullSecrets"],
        serde_json::json!([{"name": "acr-credential-secret-aggregation"}]),
        "patched at creation: {created}"
    );
    assert_eq!(kube.webhook_calls().len(), 1);
    assert!(
        kube.get(
            "secrets",
            "kube-system",
            "aliyun-acr-credential-helper-webhook-cert"
        )
        .is_none(),
        "a mounted certificate is not copied into a Secret"
    );
}

/// The binary's generated certificate with `--webhook-url https://127.0.0.1:...`: a certificate
/// left by an earlier run that named only the Service is re-issued for 127.0.0.1, so the API
/// server (which checks the name against the caBundle) can call the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reissues_an_earlier_certificate_for_the_webhook_url_host() {
    use acr_auth_kube::webhook::WebhookCertificate;
    let (cloud, kube, dir) = setup(FakeCloudConfig::sample()).await;
    enable_webhook(&kube).await;
    let http = acr_auth_testkit::http_client();
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    let earlier = WebhookCertificate::generate(
        &["aliyun-acr-credential-helper.kube-system.svc".into()],
        &[],
        now,
    )
    .unwrap();
    let created = http
        .post(format!("{}/api/v1/namespaces/kube-system/secrets", kube.url()))
        .json(&serde_json::json!({
            "metadata": {"name": "aliyun-acr-credential-helper-webhook-cert",
                         "labels": {"app.kubernetes.io/managed-by": "aliyun-acr-credential-helper"}},
            "type": "kubernetes.io/tls",
            "stringData": {"ca.crt": earlier.ca_pem, "tls.crt": earlier.cert_pem, "tls.key": earlier.key_pem()}}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let port = free_port();
    let _child = spawn_run(
        &[
            "run",
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-url",
            &format!("https://127.0.0.1:{port}/mutate-serviceaccounts"),
        ],
        &env(dir.path(), &cloud),
        &[],
        std::process::Stdio::null(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while kube
        .get(
            "admissionregistration.k8s.io/mutatingwebhookconfigurations",
            "",
            "aliyun-acr-credential-helper",
        )
        .is_none()
    {
        assert!(Instant::now() < deadline, "no MutatingWebhookConfiguration");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created: Value = http
        .post(format!(
            "{}/api/v1/namespaces/team-a/serviceaccounts",
            kube.url()
        ))
        .json(&serde_json::json!({"metadata": {"name": "release-sa"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        created["imagePullSecrets"],
        serde_json::json!([{"name": "acr-credential-secret-aggregation"}]),
        "the API server could not call the webhook: {created}"
    );
}

#[tokio::test]
async fn run_without_a_region_says_how_to_set_it() {
    let kube = FakeKube::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&dir.path().join("kubeconfig"))
        .unwrap();
    let kc = dir.path().join("kubeconfig").display().to_string();
    let out = run(
        &["run"],
        &[
            ("KUBECONFIG", kc.as_str()),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pass --region or set ALIBABA_CLOUD_REGION_ID"),
        "{}",
        stderr(&out)
    );
}

/// During an API outage the log does not repeat itself: a Secret create that keeps failing
/// (500) is logged once per cause and window, and kube-rs's own line per failed request is left
/// out, while the failures go on (paced by the backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_outage_is_logged_once_per_cause_not_once_per_attempt() {
    let (cloud, kube, dir) = setup(FakeCloudConfig::sample()).await;
    kube.fail_next("create", Some("secrets"), 100_000, 500);
    let mut child = spawn_run(
        &["run"],
        &env(dir.path(), &cloud),
        &[],
        std::process::Stdio::piped(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while kube.count("create", Some("secrets")) < 8 {
        assert!(Instant::now() < deadline, "the creates were not retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_gracefully(&mut child).await;
    let mut log = String::new();
    use tokio::io::AsyncReadExt as _;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    let attempts = kube.count("create", Some("secrets"));
    let failures = log.lines().filter(|l| l.contains("write failed")).count();
    assert_eq!(failures, 1, "{attempts} failed creates logged as:\n{log}");
    assert!(
        !log.contains("failed with status"),
        "kube-rs's line per request:\n{log}"
    );
}
