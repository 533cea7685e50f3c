//! The mutating admission webhook ([docs/behaviour.md][webhook]): a ServiceAccount created in a
//! served namespace, with a selected name, gets our Secret in `imagePullSecrets` at once, so a
//! workload created together with its ServiceAccount works on its first pull.
//!
//! - [`review`]: the pure AdmissionReview v1 handler (request body -> response body).
//! - [`WebhookCertificate`]: a CA and serving certificate for the webhook Service, generated
//!   here (kept in a Secret, the CA written as `caBundle`) or read from mounted PEM files.
//! - [`serve`]: the HTTPS server (rustls).
//! - [`configuration`]: the MutatingWebhookConfiguration for the `webhook-configuration`
//!   settings.
//!
//! [webhook]: https://github.com/acr-auth/acr-auth/blob/main/docs/behaviour.md#the-admission-webhook

use std::net::SocketAddr;
use std::sync::Arc;

use acr_auth_core::config::{FailurePolicy, HelperConfig};
use base64::Engine as _;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use serde_json::{json, Value};

use crate::plan::{attach_patch, namespace_in_scope, NamespaceInfo};

mod cert;
mod renew;
pub use cert::{
    url_host, validate_names, CertificateError, ServingCertificate, WebhookCertificate,
    CA_NOT_AFTER_ANNOTATION, CA_VALIDITY, RENEW_BEFORE, SERVING_VALIDITY,
};
pub use renew::{
    ensure_certificate, ensure_certificate_held, keep_certificate, keep_mounted_certificate,
    read_mounted,
};

/// Name of the MutatingWebhookConfiguration (and of the webhook Service).
pub const CONFIGURATION_NAME: &str = "aliyun-acr-credential-helper";
/// Name of the webhook inside it.
pub const WEBHOOK_NAME: &str = "serviceaccounts.acr-credential-helper.alibabacloud.com";
/// The path the webhook answers on.
pub const PATH: &str = "/mutate-serviceaccounts";
/// The Secret holding the generated certificate (`tls.crt`, `tls.key`, `ca.crt`).
pub const CERT_SECRET: &str = "aliyun-acr-credential-helper-webhook-cert";

/// Why an AdmissionReview could not be answered (the server answers HTTP 400 with this text).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an `admission.k8s.io/v1` AdmissionReview.
    #[error("expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {api_version:?} kind {kind:?}")]
    NotAdmissionReview {
        /// The `apiVersion` sent.
        api_version: String,
        /// The `kind` sent.
        kind: String,
    },
    /// No `request`, or no `request.uid`.
    #[error("the AdmissionReview has no request.uid")]
    NoRequest,
    /// A `request` that is not an AdmissionRequest (a required field missing or mistyped).
    #[error("malformed AdmissionReview request: {0}")]
    Malformed(String),
}

/// Answers one AdmissionReview v1 `body`.
///
/// A ServiceAccount CREATE in a namespace served by `config` (looked up with `namespace`, which
/// knows the skip annotation and termination), whose name `service-account` selects, is
/// allowed with a JSON patch adding `config.secret_name` (and recording it as ours). Anything
/// else is allowed unchanged: the webhook never refuses an object. The request and the answer
/// are kube-rs's `AdmissionReview` types.
///
/// ```
/// use acr_auth_core::config::HelperConfig;
/// use acr_auth_kube::plan::NamespaceInfo;
/// use acr_auth_kube::webhook::review;
/// use serde_json::json;
/// let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
///     "uid": "42", "operation": "CREATE", "namespace": "default",
///     "kind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
///     "resource": {"group": "", "version": "v1", "resource": "serviceaccounts"},
///     "userInfo": {"username": "system:admin"},
///     "object": {"metadata": {"name": "default", "namespace": "default"}}}});
/// let config = HelperConfig::default();
/// let answer = review(body.to_string().as_bytes(), &config, |n| NamespaceInfo { name: n.into(), ..Default::default() }).unwrap();
/// assert_eq!(answer["response"]["uid"], "42");
/// assert_eq!(answer["response"]["patchType"], "JSONPatch");
/// ```
pub fn review(
    body: &[u8],
    config: &HelperConfig,
    namespace: impl Fn(&str) -> NamespaceInfo,
) -> Result<Value, ReviewError> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(ReviewError::NotAdmissionReview {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        });
    }
    if doc["request"]["uid"].as_str().is_none() {
        return Err(ReviewError::NoRequest);
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(doc).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let mut response = AdmissionResponse::from(&request);
    if let Some(patch) = patch_for(&request, config, namespace) {
        response = response
            .with_patch(patch)
            .map_err(|e| ReviewError::Malformed(e.to_string()))?;
    }
    serde_json::to_value(response.into_review()).map_err(|e| ReviewError::Malformed(e.to_string()))
}

fn patch_for(
    request: &AdmissionRequest<DynamicObject>,
    config: &HelperConfig,
    namespace: impl Fn(&str) -> NamespaceInfo,
) -> Option<json_patch::Patch> {
    let is_sa = request.kind.kind == "ServiceAccount" && request.kind.group.is_empty();
    if !is_sa || request.operation != Operation::Create {
        return None;
    }
    let object = serde_json::to_value(request.object.as_ref()?).ok()?;
    let ns = request
        .namespace
        .as_deref()
        .or_else(|| object["metadata"]["namespace"].as_str())?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if !namespace_in_scope(config, &namespace(ns)) || !config.service_accounts.contains(name) {
        return None;
    }
    serde_json::from_value(attach_patch(&object, &config.secret_name)?).ok()
}

/// The label every namespace carries with its name (Kubernetes 1.21 and later).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The `namespaceSelector` that lets the API server call the webhook only where it can act:
/// the namespaces `watch-namespace` names (or all), minus the `exclude-namespace` entries that
/// are plain names (patterns are checked by the handler). `None`: every namespace.
pub fn namespace_selector(config: &HelperConfig) -> Option<Value> {
    let mut expressions = Vec::new();
    if let acr_auth_core::config::Selection::Names(names) = &config.watch_namespaces {
        expressions.push(
            json!({"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": names.as_slice()}),
        );
    }
    let excluded: Vec<&String> = config
        .exclude_namespaces
        .iter()
        // Only names a namespace can have: a pattern is checked by the handler, and anything
        // else (not a label value) would make the API server refuse the whole configuration.
        .filter(|g| acr_auth_core::config::is_dns_label(g))
        .collect();
    if !excluded.is_empty() {
        expressions
            .push(json!({"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": excluded}));
    }
    (!expressions.is_empty()).then(|| json!({ "matchExpressions": expressions }))
}

/// The MutatingWebhookConfiguration for `config` (its `webhook-configuration`, and a
/// [`namespace_selector`] from its namespaces), calling `client_config` (a `service` reference
/// in a cluster, a `url` in tests) trusted through `ca_pem`.
pub fn configuration(config: &HelperConfig, client_config: Value, ca_pem: &str) -> Value {
    let settings = &config.webhook;
    let mut client_config = client_config;
    client_config["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(ca_pem));
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": CONFIGURATION_NAME,
            "labels": {crate::plan::MANAGED_BY_LABEL: crate::plan::MANAGED_BY_VALUE},
        },
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": match settings.failure_policy {
                FailurePolicy::Ignore => "Ignore",
                FailurePolicy::Fail => "Fail",
            },
            "timeoutSeconds": settings.timeout_seconds,
            "reinvocationPolicy": "Never",
            "clientConfig": client_config,
            "namespaceSelector": namespace_selector(config).unwrap_or_else(|| json!({})),
            "rules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["serviceaccounts"],
                "scope": "Namespaced",
            }],
        }],
    })
}

/// What the HTTPS server answers with: the current configuration and namespace lookup.
pub trait ReviewContext: Send + Sync + 'static {
    /// The configuration in force.
    fn config(&self) -> Arc<HelperConfig>;
    /// What is known of namespace `name`.
    fn namespace(&self, name: &str) -> NamespaceInfo;
}

/// Bounds of the webhook server: what a slow, hostile or broken client can hold. Fields may
/// be added in minor releases: start from [`ServerLimits::default`].
///
/// ```
/// use acr_auth_kube::webhook::ServerLimits;
/// let mut limits = ServerLimits::default();
/// limits.max_connections = 64;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// The TLS handshake must finish within this.
    pub handshake_timeout: std::time::Duration,
    /// A request's headers must arrive within this (a client dripping header bytes is cut).
    pub header_timeout: std::time::Duration,
    /// A request's body must arrive within this.
    pub body_timeout: std::time::Duration,
    /// Largest request body: a larger `Content-Length` is refused (413) before any of the body
    /// is read, a longer chunked body when it passes the limit. AdmissionReviews of a
    /// ServiceAccount are a few KiB.
    pub max_body_bytes: usize,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    /// 10 s handshake, 10 s headers, 10 s body (the API server's webhook timeout is at most
    /// 30 s, 10 by default), 1 MiB bodies, 256 connections.
    fn default() -> Self {
        Self {
            handshake_timeout: std::time::Duration::from_secs(10),
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            max_connections: 256,
        }
    }
}

/// Serves the webhook on `addr` over HTTPS until `shutdown` completes, with the default
/// [`ServerLimits`]. Returns the bound address and the server task. Malformed reviews get HTTP
/// 400 with the reason.
pub async fn serve(
    addr: SocketAddr,
    certificate: &WebhookCertificate,
    context: Arc<dyn ReviewContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), CertificateError> {
    serve_with_limits(
        addr,
        certificate,
        context,
        ServerLimits::default(),
        shutdown,
    )
    .await
}

/// [`serve`] with explicit [`ServerLimits`].
pub async fn serve_with_limits(
    addr: SocketAddr,
    certificate: &WebhookCertificate,
    context: Arc<dyn ReviewContext>,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), CertificateError> {
    serve_certificate(
        addr,
        ServingCertificate::new(certificate)?,
        context,
        limits,
        shutdown,
    )
    .await
}

/// [`serve_with_limits`] presenting a [`ServingCertificate`], which can be replaced while the
/// server runs (see [`keep_certificate`]).
pub async fn serve_certificate(
    addr: SocketAddr,
    certificate: ServingCertificate,
    context: Arc<dyn ReviewContext>,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), CertificateError> {
    use axum::http::StatusCode;
    use axum::routing::post;

    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certificate.server_config()?));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let text = |status: StatusCode, message: String| {
        (
            status,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            message,
        )
    };
    let app = axum::Router::new().route(
        PATH,
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Body| {
                let context = context.clone();
                async move {
                    // Refuse an announced oversized body before reading any of it.
                    let announced = headers
                        .get(axum::http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if announced.is_some_and(|n| n > limits.max_body_bytes as u64) {
                        return text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("the body is larger than {} bytes\n", limits.max_body_bytes),
                        );
                    }
                    let body = match tokio::time::timeout(
                        limits.body_timeout,
                        axum::body::to_bytes(body, limits.max_body_bytes),
                    )
                    .await
                    {
                        Ok(Ok(b)) => b,
                        Ok(Err(_)) => {
                            return text(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                format!(
                                    "the body is larger than {} bytes\n",
                                    limits.max_body_bytes
                                ),
                            )
                        }
                        Err(_) => {
                            return text(
                                StatusCode::REQUEST_TIMEOUT,
                                "the body did not arrive in time\n".to_owned(),
                            )
                        }
                    };
                    let config = context.config();
                    match review(&body, &config, |n| context.namespace(n)) {
                        Ok(v) => (
                            StatusCode::OK,
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            v.to_string(),
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "malformed AdmissionReview");
                            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
                        }
                    }
                }
            },
        ),
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let task = tokio::spawn(async move {
        let mut shutdown = std::pin::pin!(shutdown);
        // Connections are tracked so that a shutdown also ends the keep-alive connections the
        // API server holds open (seen against the real kube-apiserver: without this, a stopped
        // webhook kept answering on its existing connection).
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook accept failed");
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            // At the cap, the new connection is closed at once (dropped): a flood of idle or
            // slow clients cannot exhaust memory or file descriptors.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "webhook connection cap reached; closing the connection");
                drop(tcp);
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            let mut stopping = stopping.clone();
            connections.spawn(async move {
                let _slot = slot;
                let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = async { let _ = stopping.wait_for(|s| *s).await; } => {
                        // Finish the request in flight, then close.
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "webhook connection ended");
                }
            });
        }
        stopping_tx.send_replace(true);
        let drained = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
        }
    });
    tracing::info!(address = %local, path = PATH, "serving the admission webhook (HTTPS)");
    Ok((local, task))
}

/// Where the API server reaches the webhook, and the CA it trusts.
///
/// ```
/// use acr_auth_kube::webhook::{WebhookSettings, PATH};
/// let settings = WebhookSettings::new(
///     serde_json::json!({"url": format!("https://127.0.0.1:8443{PATH}")}),
///     "-----BEGIN CERTIFICATE-----\n...",
/// );
/// assert!(settings.client_config["url"].is_string());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookSettings {
    /// `clientConfig` without `caBundle`: `{"service": {"name", "namespace", "path", "port"}}`
    /// in a cluster, `{"url": ...}` elsewhere.
    pub client_config: Value,
    /// The CA certificate (PEM) written as `caBundle`.
    pub ca_pem: String,
    /// The certificate the webhook server presents: when set, its CA bundle (which follows a
    /// renewal, see [`keep_certificate`]) is written as `caBundle` instead of `ca_pem`.
    pub serving: Option<ServingCertificate>,
}

impl WebhookSettings {
    /// The `caBundle` to write now.
    pub fn ca_bundle(&self) -> String {
        self.serving
            .as_ref()
            .map_or_else(|| self.ca_pem.clone(), ServingCertificate::ca_pem)
    }

    /// The webhook at `client_config` (without `caBundle`), trusted through `ca_pem`.
    pub fn new(client_config: Value, ca_pem: impl Into<String>) -> Self {
        Self {
            client_config,
            ca_pem: ca_pem.into(),
            serving: None,
        }
    }

    /// The webhook at `client_config`, trusted through the CA bundle of the certificate
    /// `serving` presents, whichever it is when the configuration is written.
    pub fn serving(client_config: Value, serving: ServingCertificate) -> Self {
        Self {
            client_config,
            ca_pem: serving.ca_pem(),
            serving: Some(serving),
        }
    }
}

/// Looks a namespace up by name in the controller's watch.
pub type NamespaceLookup = Box<dyn Fn(&str) -> Option<NamespaceInfo> + Send + Sync>;

/// The configuration and namespaces the webhook answers with (on every replica: the webhook
/// Service reaches any of them). The controller hands over each configuration it accepts
/// ([`LiveContext::set_config`]); a request never parses the ConfigMap (a ConfigMap listing tens
/// of thousands of names would hold an admission call past its timeout), and an invalid edit
/// leaves the last accepted configuration in force.
#[derive(Default)]
pub struct LiveContext {
    namespaces: std::sync::Mutex<Option<NamespaceLookup>>,
    config: std::sync::Mutex<Arc<HelperConfig>>,
}

impl std::fmt::Debug for LiveContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveContext").finish_non_exhaustive()
    }
}

impl LiveContext {
    /// Hands the namespace watch over (the controller does this once it is synced).
    pub fn attach(&self, namespaces: NamespaceLookup) {
        *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()) = Some(namespaces);
    }

    /// The configuration to answer with from now on (the controller calls this when it accepts
    /// one; until then the defaults apply).
    pub fn set_config(&self, config: Arc<HelperConfig>) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
    }
}

impl ReviewContext for LiveContext {
    fn config(&self) -> Arc<HelperConfig> {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn namespace(&self, name: &str) -> NamespaceInfo {
        let lookup = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        lookup
            .as_ref()
            .and_then(|f| f(name))
            .unwrap_or_else(|| NamespaceInfo {
                name: name.to_owned(),
                ..NamespaceInfo::default()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review_of(request: Value) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
            .to_string()
            .into_bytes()
    }

    fn sa_create(ns: &str, name: &str, extra: Value) -> Value {
        let mut object = json!({"metadata": {"name": name, "namespace": ns}});
        if let Some(list) = extra.get("imagePullSecrets") {
            object["imagePullSecrets"] = list.clone();
        }
        json!({"uid": "u-1", "operation": "CREATE", "namespace": ns,
               "kind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
               "resource": {"group": "", "version": "v1", "resource": "serviceaccounts"},
               "userInfo": {"username": "system:admin"},
               "object": object})
    }

    fn config(pairs: &[(&str, &str)]) -> HelperConfig {
        HelperConfig::from_configmap(pairs.iter().copied())
            .unwrap()
            .config
    }

    #[test]
    fn the_namespace_selector_follows_the_namespaces_served() {
        let names = config(&[("watch-namespace", "dev,prod")]);
        assert_eq!(
            namespace_selector(&names),
            Some(json!({"matchExpressions": [
                {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": ["dev", "prod"]}]}))
        );
        // All namespaces but the plain-name exclusions; patterns are left to the handler.
        let all = config(&[
            ("watch-namespace", "all"),
            ("exclude-namespace", "kube-system,tmp-*,team a,-x"),
        ]);
        assert_eq!(
            namespace_selector(&all),
            Some(json!({"matchExpressions": [
                {"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": ["kube-system"]}]}))
        );
        assert_eq!(
            namespace_selector(&config(&[("watch-namespace", "all")])),
            None
        );
        let c = configuration(&all, json!({"url": "https://example"}), "ca");
        assert_eq!(
            c["webhooks"][0]["namespaceSelector"],
            namespace_selector(&all).unwrap()
        );
    }

    fn plain(name: &str) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            ..NamespaceInfo::default()
        }
    }

    /// The patch: bytes of JSON, as kube-rs writes `[]byte` (a JSON array of numbers, which
    /// the API server reads as Go's encoding/json does), or base64 text.
    fn decoded_patch(answer: &Value) -> Option<Value> {
        let raw: Vec<u8> = match &answer["response"]["patch"] {
            Value::String(b64) => base64::engine::general_purpose::STANDARD.decode(b64).ok()?,
            v => serde_json::from_value(v.clone()).ok()?,
        };
        serde_json::from_slice(&raw).ok()
    }

    #[test]
    fn a_selected_service_account_gets_our_secret_after_its_own_entries() {
        let c = config(&[("watch-namespace", "dev"), ("service-account", "builder")]);
        let body = review_of(sa_create(
            "dev",
            "builder",
            json!({"imagePullSecrets": [{"name": "theirs"}]}),
        ));
        let answer = review(&body, &c, plain).unwrap();
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["uid"], "u-1");
        let mut object = json!({"metadata": {"name": "builder", "namespace": "dev"},
                                "imagePullSecrets": [{"name": "theirs"}]});
        let patch: json_patch::Patch =
            serde_json::from_value(decoded_patch(&answer).unwrap()).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
        assert_eq!(
            object["imagePullSecrets"],
            json!([{"name": "theirs"}, {"name": "acr-credential-secret-aggregation"}])
        );
    }

    #[test]
    fn anything_else_is_allowed_unchanged() {
        let c = config(&[("watch-namespace", "dev"), ("service-account", "builder")]);
        let cases = [
            sa_create("other", "builder", json!({})),
            sa_create("dev", "default", json!({})),
            {
                let mut r = sa_create("dev", "builder", json!({}));
                r["operation"] = json!("UPDATE");
                r
            },
            {
                let mut r = sa_create("dev", "builder", json!({}));
                r["kind"]["kind"] = json!("Secret");
                r
            },
        ];
        for request in cases {
            let answer = review(&review_of(request.clone()), &c, plain).unwrap();
            assert_eq!(answer["response"]["allowed"], true, "{request}");
            assert!(answer["response"]["patch"].is_null(), "{request}");
        }
        // A skipped namespace is not served either.
        let skipped = |n: &str| NamespaceInfo {
            name: n.into(),
            skip: true,
            terminating: false,
        };
        let answer = review(
            &review_of(sa_create("dev", "builder", json!({}))),
            &c,
            skipped,
        )
        .unwrap();
        assert!(answer["response"]["patch"].is_null());
    }

    #[test]
    fn malformed_reviews_are_typed_errors() {
        let c = HelperConfig::default();
        assert!(matches!(
            review(b"{not json", &c, plain),
            Err(ReviewError::NotJson(_))
        ));
        assert_eq!(
            review(
                br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#,
                &c,
                plain
            ),
            Err(ReviewError::NotAdmissionReview {
                api_version: "admission.k8s.io/v1beta1".into(),
                kind: "AdmissionReview".into()
            })
        );
        assert_eq!(
            review(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}"#, &c, plain),
            Err(ReviewError::NoRequest)
        );
        // kube-rs's AdmissionRequest: kind, resource, operation and userInfo are required.
        assert!(matches!(
            review(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "1"}}"#, &c, plain),
            Err(ReviewError::Malformed(m)) if m.contains("missing field")
        ));
    }

    #[test]
    fn the_configuration_carries_policy_timeout_and_ca() {
        let mut c = config(&[]);
        c.webhook.enabled = true;
        c.webhook.failure_policy = FailurePolicy::Fail;
        c.webhook.timeout_seconds = 5;
        let v = configuration(&c, json!({"url": "https://127.0.0.1:1/x"}), "PEM");
        let hook = &v["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(hook["clientConfig"]["caBundle"], "UEVN");
        assert_eq!(hook["rules"][0]["resources"][0], "serviceaccounts");
    }

    #[test]
    fn certificates_load_and_hide_the_key() {
        let c = WebhookCertificate::generate(
            &["svc.ns.svc".into()],
            &[],
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        )
        .unwrap();
        assert!(c.server_config().is_ok());
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
        let bad =
            WebhookCertificate::from_pem(c.ca_pem.clone(), "garbage".into(), c.key_pem().into());
        assert!(matches!(bad, Err(CertificateError::Invalid(_))));
    }
}
