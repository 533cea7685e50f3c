//! Helpers shared by the end-to-end tests: the controller against the fake cloud and the fake
//! API server.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_auth_core::acr::Endpoint;
use acr_auth_core::credentials::{Credentials, ProviderEnv};
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::http::RetryPolicy;
use acr_auth_core::source::SourceSettings;
use acr_auth_kube::controller::{Controller, ControllerSettings};
use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::FakeCloud;
use base64::Engine as _;
use serde_json::{json, Value};

pub const OURS: &str = "acr-credential-secret-aggregation";

pub async fn eventually<F: Fn() -> bool>(what: &str, check: F) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn post(kube: &FakeKube, path: &str, body: Value) -> u16 {
    acr_auth_testkit::http_client()
        .post(format!("{}{path}", kube.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A JSON merge patch of `path`, as another client of the cluster; returns the status.
pub async fn patch(kube: &FakeKube, path: &str, body: Value) -> u16 {
    acr_auth_testkit::http_client()
        .patch(format!("{}{path}", kube.url()))
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub async fn put_config(kube: &FakeKube, data: Value) {
    let current = kube.get("configmaps", "kube-system", "acr-configuration");
    let http = acr_auth_testkit::http_client();
    let path = format!("{}/api/v1/namespaces/kube-system/configmaps", kube.url());
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "acr-configuration", "namespace": "kube-system"}, "data": data});
    let status = match current {
        None => http.post(path).json(&body).send().await.unwrap().status(),
        Some(_) => http
            .put(format!("{path}/acr-configuration"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
    };
    assert!(status.is_success(), "{status}");
}

pub fn secret_hosts(kube: &FakeKube, ns: &str) -> Option<Vec<String>> {
    let s = kube.get("secrets", ns, OURS)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s["data"][".dockerconfigjson"].as_str()?)
        .ok()?;
    let cfg = DockerConfig::parse(std::str::from_utf8(&raw).ok()?).ok()?;
    Some(cfg.auths.keys().cloned().collect())
}

pub fn sa_entries(kube: &FakeKube, ns: &str, name: &str) -> Vec<String> {
    kube.get("serviceaccounts", ns, name)
        .and_then(|sa| sa["imagePullSecrets"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect()
}

pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), acr_auth_kube::controller::ControllerError>>,
    /// The controller's metrics and health.
    pub ops: acr_auth_kube::ops::Ops,
    /// What its admission webhook answers with.
    pub webhook_context: Arc<acr_auth_kube::webhook::LiveContext>,
}

impl Running {
    /// Asks for a graceful shutdown and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.handle)
            .await
            .expect("graceful shutdown")
            .unwrap()
            .unwrap();
    }

    /// Drops the controller without a graceful shutdown, as a crash would.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// The settings the tests start from: the fake cloud, a fixed AccessKey it knows.
pub fn settings(cloud: &FakeCloud) -> ControllerSettings {
    let mut sources = SourceSettings::new(
        "cn-hangzhou",
        Arc::new(Credentials::new("LTAItestkey", "test-secret")),
        "test key",
    );
    sources.env = ProviderEnv::from_vars([
        ("ACR_AUTH_STS_ENDPOINT", cloud.url()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".into()),
    ]);
    sources.acr_endpoint = Some(Endpoint::Url(cloud.url()));
    sources.retry = RetryPolicy::none();
    ControllerSettings::new(sources)
}

/// A client of `kube` authenticating with bearer `token` (the fake records it as the user).
pub fn client(kube: &FakeKube, token: &str) -> kube::Client {
    let mut config = kube::Config::new(kube.url().parse().unwrap());
    config.auth_info.token = Some(token.to_owned().into());
    // As the binary does: the controller, not the client, retries 429s (see run.rs).
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

/// Like [`client`], with the binary's pacing layer (`Retry-After`, optional rate limit).
pub fn paced_client(
    kube: &FakeKube,
    token: &str,
    limit: Option<acr_auth_kube::pacing::RateLimit>,
) -> kube::Client {
    let mut config = kube::Config::new(kube.url().parse().unwrap());
    config.auth_info.token = Some(token.to_owned().into());
    config.default_retry = false;
    kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&acr_auth_kube::pacing::PacingLayer::new(limit))
        .build()
}

/// Starts the controller with [`settings`].
pub fn start(kube: &FakeKube, cloud: &FakeCloud) -> Running {
    start_with(client(kube, "controller"), settings(cloud))
}

/// Starts the controller on `client` with `settings`.
pub fn start_with(client: kube::Client, settings: ControllerSettings) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = Controller::new(client, settings);
    let ops = controller.ops();
    let webhook_context = controller.webhook_context();
    let handle = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        handle,
        ops,
        webhook_context,
    }
}

/// Creates namespace `name` (and, as the fake does, its `default` ServiceAccount).
pub async fn create_namespace(kube: &FakeKube, name: &str) {
    assert_eq!(
        post(
            kube,
            "/api/v1/namespaces",
            json!({"metadata": {"name": name}})
        )
        .await,
        201,
        "create namespace {name}"
    );
}

/// Creates namespace `name` and waits until its Secret and default ServiceAccount entry exist.
pub async fn create_namespace_and_wait_until_served(kube: &FakeKube, name: &str) {
    create_namespace(kube, name).await;
    eventually(&format!("namespace {name} served"), || {
        secret_hosts(kube, name).is_some()
            && sa_entries(kube, name, "default").contains(&OURS.to_owned())
    })
    .await;
}

pub fn password(kube: &FakeKube, ns: &str, host: &str) -> Option<String> {
    let s = kube.get("secrets", ns, OURS)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s["data"][".dockerconfigjson"].as_str()?)
        .ok()?;
    let cfg = DockerConfig::parse(std::str::from_utf8(&raw).ok()?).ok()?;
    Some(cfg.auths.get(host)?.password.expose().to_owned())
}

/// Creates ServiceAccount `name` (with `extra` fields) in `ns`; returns the status and the
/// object the API server answered with (after admission).
pub async fn create_service_account(
    kube: &FakeKube,
    ns: &str,
    name: &str,
    extra: Value,
) -> (u16, Value) {
    let mut body = json!({"metadata": {"name": name}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = acr_auth_testkit::http_client()
        .post(format!(
            "{}/api/v1/namespaces/{ns}/serviceaccounts",
            kube.url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The MutatingWebhookConfiguration the controller manages, if it exists.
pub fn webhook_configuration(kube: &FakeKube) -> Option<Value> {
    kube.get(
        "admissionregistration.k8s.io/mutatingwebhookconfigurations",
        "",
        acr_auth_kube::webhook::CONFIGURATION_NAME,
    )
}

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), yaml_to_json(v)))
                .collect(),
        ),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::String(s) => json!(s),
        Yaml::Integer(i) => json!(i),
        Yaml::Boolean(b) => json!(b),
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap_or_default()),
        _ => Value::Null,
    }
}

/// `kubectl kustomize` of `dir` (a kustomization directory), as JSON documents; panics with
/// kustomize's message when it does not render.
pub fn render_dir(dir: &std::path::Path) -> Vec<Value> {
    let out = std::process::Command::new(acr_auth_testkit::distribution::require_tool("kubectl"))
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap()
        .iter()
        .map(yaml_to_json)
        .collect()
}

/// `kubectl kustomize` of a directory of the repository (`deploy`, `deploy/overlays/rrsa`).
pub fn render(dir: &str) -> Vec<Value> {
    render_dir(&repo_root().join(dir))
}

/// The Events recorded in kube-system (where the ConfigMap's Events go) with `reason`.
pub fn events(kube: &FakeKube, reason: &str) -> Vec<Value> {
    kube.list("events.k8s.io/events", Some("kube-system"))
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

/// Every write request (create, update, patch, delete) on `resource` so far.
pub fn writes(kube: &FakeKube, resource: &str) -> usize {
    ["create", "update", "patch", "delete"]
        .iter()
        .map(|v| kube.count(v, Some(resource)))
        .sum()
}
