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
use serde_json::{json, Value};

use crate::plan::{attach_patch, namespace_in_scope, NamespaceInfo};

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
}

/// Answers one AdmissionReview v1 `body`.
///
/// A ServiceAccount CREATE in a namespace served by `config` (looked up with `namespace`, which
/// knows the skip annotation and termination), whose name `service-account` selects, is
/// allowed with a JSON patch adding `config.secret_name` (and recording it as ours). Anything
/// else is allowed unchanged: the webhook never refuses an object.
///
/// ```
/// use acr_auth_core::config::HelperConfig;
/// use acr_auth_kube::plan::NamespaceInfo;
/// use acr_auth_kube::webhook::review;
/// use serde_json::json;
/// let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
///     "uid": "42", "operation": "CREATE", "namespace": "default",
///     "kind": {"group": "", "version": "v1", "kind": "ServiceAccount"},
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
    let request = &doc["request"];
    let uid = request["uid"].as_str().ok_or(ReviewError::NoRequest)?;
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(patch) = patch_for(request, config, namespace) {
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    Ok(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

fn patch_for(
    request: &Value,
    config: &HelperConfig,
    namespace: impl Fn(&str) -> NamespaceInfo,
) -> Option<Value> {
    let is_sa = request["kind"]["kind"] == "ServiceAccount"
        && request["kind"]["group"]
            .as_str()
            .unwrap_or_default()
            .is_empty();
    if !is_sa || request["operation"] != "CREATE" || !request["object"].is_object() {
        return None;
    }
    let object = &request["object"];
    let ns = request["namespace"]
        .as_str()
        .or_else(|| object["metadata"]["namespace"].as_str())?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if !namespace_in_scope(config, &namespace(ns)) || !config.service_accounts.contains(name) {
        return None;
    }
    attach_patch(object, &config.secret_name)
}

/// A CA and the serving certificate it signed, in PEM.
#[derive(Clone)]
pub struct WebhookCertificate {
    /// The CA certificate (`caBundle`, `ca.crt`).
    pub ca_pem: String,
    /// The serving certificate (`tls.crt`).
    pub cert_pem: String,
    /// The serving key (`tls.key`).
    key_pem: String,
}

impl std::fmt::Debug for WebhookCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCertificate")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Why a certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Generating failed.
    #[error("cannot generate the webhook certificate: {0}")]
    Generate(String),
    /// The PEM given is unusable.
    #[error("invalid webhook certificate or key: {0}")]
    Invalid(String),
    /// Binding or reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl WebhookCertificate {
    /// A new CA and a serving certificate for `dns_names` and `ips` (`<service>.<namespace>.svc`
    /// and its short forms; `127.0.0.1` in tests), both valid for ten years from `now`.
    pub fn generate(
        dns_names: &[String],
        ips: &[std::net::IpAddr],
        now: std::time::SystemTime,
    ) -> Result<Self, CertificateError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        let err = |e: rcgen::Error| CertificateError::Generate(e.to_string());
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(
            DnType::CommonName,
            "aliyun-acr-credential-helper webhook CA",
        );
        let not_before = time::OffsetDateTime::from(now) - time::Duration::hours(1);
        let not_after = not_before + time::Duration::days(3650);
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let key = KeyPair::generate().map_err(err)?;
        let mut leaf = CertificateParams::new(dns_names.to_vec()).map_err(err)?;
        leaf.not_before = not_before;
        leaf.not_after = not_after;
        for ip in ips {
            leaf.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        leaf.distinguished_name.push(
            DnType::CommonName,
            dns_names
                .first()
                .cloned()
                .unwrap_or_else(|| "webhook".into()),
        );
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate from PEM (as mounted from a Secret: `ca.crt`, `tls.crt`, `tls.key`).
    pub fn from_pem(
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
    ) -> Result<Self, CertificateError> {
        let c = Self {
            ca_pem,
            cert_pem,
            key_pem,
        };
        c.server_config()?;
        Ok(c)
    }

    /// The key, PEM (it is secret: store it only in a Secret).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The rustls server configuration serving this certificate.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, CertificateError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: &dyn std::fmt::Display| CertificateError::Invalid(e.to_string());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(&e))?;
        if certs.is_empty() {
            return Err(CertificateError::Invalid(
                "no certificate in tls.crt".into(),
            ));
        }
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| invalid(&e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(&e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The MutatingWebhookConfiguration for `settings`, calling `client_config` (a `service`
/// reference in a cluster, a `url` in tests) trusted through `ca_pem`.
pub fn configuration(
    settings: &acr_auth_core::config::WebhookConfig,
    client_config: Value,
    ca_pem: &str,
) -> Value {
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

/// Bounds of the webhook server: what a slow, hostile or broken client can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `clientConfig` without `caBundle`: `{"service": {"name", "namespace", "path", "port"}}`
    /// in a cluster, `{"url": ...}` elsewhere.
    pub client_config: Value,
    /// The CA certificate (PEM) written as `caBundle`.
    pub ca_pem: String,
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

/// The webhook certificate kept in Secret `namespace/CERT_SECRET`: read when it exists, else
/// generated for `dns_names`/`ips` and stored (when another replica stores one first, that one
/// is used).
pub async fn ensure_certificate(
    client: &kube::Client,
    namespace: &str,
    dns_names: &[String],
    ips: &[std::net::IpAddr],
    now: std::time::SystemTime,
) -> Result<WebhookCertificate, CertificateError> {
    use k8s_openapi::api::core::v1::Secret;
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let api_error = |e: kube::Error| {
        CertificateError::Generate(format!("Secret {namespace}/{CERT_SECRET}: {e}"))
    };
    let read = |s: &Secret| -> Result<WebhookCertificate, CertificateError> {
        let field = |k: &str| {
            s.data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .ok_or_else(|| {
                    CertificateError::Invalid(format!(
                        "Secret {namespace}/{CERT_SECRET} has no {k}"
                    ))
                })
        };
        WebhookCertificate::from_pem(field("ca.crt")?, field("tls.crt")?, field("tls.key")?)
    };
    if let Some(s) = api.get_opt(CERT_SECRET).await.map_err(api_error)? {
        return read(&s);
    }
    let cert = WebhookCertificate::generate(dns_names, ips, now)?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": CERT_SECRET, "namespace": namespace,
                     "labels": {crate::plan::MANAGED_BY_LABEL: crate::plan::MANAGED_BY_VALUE}},
        "type": "kubernetes.io/tls",
        "stringData": {"ca.crt": cert.ca_pem, "tls.crt": cert.cert_pem, "tls.key": cert.key_pem()},
    }))
    .map_err(|e| CertificateError::Generate(e.to_string()))?;
    match api.create(&kube::api::PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(%namespace, name = CERT_SECRET, "generated the webhook certificate");
            Ok(cert)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let s = api.get(CERT_SECRET).await.map_err(api_error)?;
            read(&s)
        }
        Err(e) => Err(api_error(e)),
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
               "object": object})
    }

    fn config(pairs: &[(&str, &str)]) -> HelperConfig {
        HelperConfig::from_configmap(pairs.iter().copied())
            .unwrap()
            .config
    }

    fn plain(name: &str) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            ..NamespaceInfo::default()
        }
    }

    fn decoded_patch(answer: &Value) -> Option<Value> {
        let b64 = answer["response"]["patch"].as_str()?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
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
    }

    #[test]
    fn the_configuration_carries_policy_timeout_and_ca() {
        let settings = acr_auth_core::config::WebhookConfig {
            enabled: true,
            failure_policy: FailurePolicy::Fail,
            timeout_seconds: 5,
        };
        let v = configuration(&settings, json!({"url": "https://127.0.0.1:1/x"}), "PEM");
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
