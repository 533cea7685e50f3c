//! The fake Alibaba Cloud server: configuration, the running handle, and shared state.

// Request checks return the finished HTTP error response as their `Err`, which keeps each
// handler a straight line of `?`s; the size of `Response` does not matter in a test server.
#![allow(clippy::result_large_err)]

mod api;
mod metadata;
mod registry;
mod verify;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use acr_auth_core::time::{SharedClock, SystemClock};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::RngExt as _;
use serde::{Deserialize, Serialize};

pub use metadata::METADATA_FAULT_TARGET;
pub use registry::{REGISTRY_ISSUER, REGISTRY_SERVICE};

/// A long-lived AccessKey the fake accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeyConfig {
    /// AccessKey ID.
    pub id: String,
    /// AccessKey secret.
    pub secret: String,
    /// Whether ACR calls with this key are allowed (`false` answers 403 `NoPrivilege`).
    #[serde(default = "yes")]
    pub acr_allowed: bool,
}

fn yes() -> bool {
    true
}

/// An Enterprise Edition instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceConfig {
    /// `cri-...`
    pub id: String,
    /// Instance name (the host prefix before `-registry`).
    pub name: String,
    /// Region of the instance.
    pub region: String,
    /// Custom (`USER`) domains.
    #[serde(default)]
    pub custom_domains: Vec<String>,
}

impl InstanceConfig {
    /// The public `SYSTEM` domain.
    pub fn public_domain(&self) -> String {
        format!("{}-registry.{}.cr.aliyuncs.com", self.name, self.region)
    }

    /// The VPC `SYSTEM` domain.
    pub fn vpc_domain(&self) -> String {
        format!("{}-registry-vpc.{}.cr.aliyuncs.com", self.name, self.region)
    }
}

/// A RAM role that can be assumed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleConfig {
    /// `acs:ram::<account>:role/<name>`
    pub arn: String,
    /// AccessKey IDs (long-lived or STS) allowed to `AssumeRole` into it; `*` allows any.
    #[serde(default = "any_caller")]
    pub trusted: Vec<String>,
    /// Maximum session duration in seconds (3600-43200).
    #[serde(default = "default_max_session")]
    pub max_session_secs: u64,
}

fn any_caller() -> Vec<String> {
    vec!["*".to_owned()]
}

fn default_max_session() -> u64 {
    3600
}

/// An OIDC provider for `AssumeRoleWithOIDC`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcProviderConfig {
    /// `acs:ram::<account>:oidc-provider/<name>`
    pub arn: String,
    /// The OIDC tokens this provider accepts (stand-ins for signed JWTs).
    pub tokens: Vec<String>,
}

/// The ECS instance metadata service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataConfig {
    /// The RAM role attached to the instance, if any.
    pub role_name: Option<String>,
    /// Reject requests without a session token (hardened mode only).
    #[serde(default)]
    pub hardened_only: bool,
    /// Lifetime of the role credentials handed out.
    #[serde(default = "default_metadata_lifetime")]
    pub credentials_lifetime_secs: u64,
}

fn default_metadata_lifetime() -> u64 {
    6 * 3600
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            role_name: None,
            hardened_only: false,
            credentials_lifetime_secs: default_metadata_lifetime(),
        }
    }
}

/// Everything the fake cloud knows. Deserializable from JSON for the `acr-fake-cloud` binary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FakeCloudConfig {
    /// Region reported by metadata and assumed when a request's host names none.
    #[serde(default = "default_region")]
    pub region: String,
    /// Accepted long-lived AccessKeys.
    #[serde(default)]
    pub access_keys: Vec<AccessKeyConfig>,
    /// Enterprise Edition instances.
    #[serde(default)]
    pub instances: Vec<InstanceConfig>,
    /// Assumable roles.
    #[serde(default)]
    pub roles: Vec<RoleConfig>,
    /// OIDC providers.
    #[serde(default)]
    pub oidc_providers: Vec<OidcProviderConfig>,
    /// ECS metadata service.
    #[serde(default)]
    pub metadata: MetadataConfig,
    /// Lifetime of registry tokens (ACR: 1 hour), capped by the caller's STS expiry.
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
}

fn default_region() -> String {
    "cn-hangzhou".to_owned()
}

fn default_token_lifetime() -> u64 {
    3600
}

impl Default for FakeCloudConfig {
    fn default() -> Self {
        Self {
            region: default_region(),
            access_keys: Vec::new(),
            instances: Vec::new(),
            roles: Vec::new(),
            oidc_providers: Vec::new(),
            metadata: MetadataConfig::default(),
            token_lifetime_secs: default_token_lifetime(),
        }
    }
}

impl FakeCloudConfig {
    /// A small ready-made cloud: one AccessKey (`LTAItestkey` / `test-secret`), one EE instance
    /// `cri-testinstance01` named `acme` in `cn-hangzhou`, a role, an OIDC provider and an ECS role.
    pub fn sample() -> Self {
        Self {
            access_keys: vec![AccessKeyConfig {
                id: "LTAItestkey".into(),
                secret: "test-secret".into(),
                acr_allowed: true,
            }],
            instances: vec![InstanceConfig {
                id: "cri-testinstance01".into(),
                name: "acme".into(),
                region: "cn-hangzhou".into(),
                custom_domains: vec!["registry.acme.example".into()],
            }],
            roles: vec![RoleConfig {
                arn: "acs:ram::1234567890:role/acr-puller".into(),
                trusted: any_caller(),
                max_session_secs: 43200,
            }],
            oidc_providers: vec![OidcProviderConfig {
                arn: "acs:ram::1234567890:oidc-provider/ack-rrsa-test".into(),
                tokens: vec!["eyJ.test-oidc-token.sig".into()],
            }],
            metadata: MetadataConfig {
                role_name: Some("KubernetesWorkerRole".into()),
                ..MetadataConfig::default()
            },
            ..Self::default()
        }
    }
}

/// A failure the fake returns instead of serving a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// HTTP 503, `ServiceUnavailable`.
    ServiceUnavailable,
    /// HTTP 400, `Throttling.User`.
    Throttling,
    /// HTTP 500, `InternalError`.
    InternalError,
    /// HTTP 200 with a body that is not JSON.
    MalformedBody,
    /// HTTP 200 with a 2 MiB body.
    OversizedBody,
    /// Serve normally after this many milliseconds.
    DelayMs(u64),
}

/// Credentials the fake issued (STS).
#[derive(Debug, Clone)]
pub(crate) struct IssuedSts {
    pub secret: String,
    pub token: String,
    pub expires_at: SystemTime,
}

/// A registry login the fake issued through ACR.
#[derive(Debug, Clone)]
pub(crate) struct IssuedRegistryLogin {
    pub username: String,
    pub expires_at: SystemTime,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub calls: HashMap<String, usize>,
    pub faults: VecDeque<(Option<String>, Fault)>,
    pub nonces: HashSet<String>,
    pub sts: HashMap<String, IssuedSts>,
    /// password -> login
    pub registry_logins: HashMap<String, IssuedRegistryLogin>,
    /// metadata session token -> expiry
    pub metadata_tokens: HashMap<String, SystemTime>,
    /// Every ACR/STS request, in order.
    pub requests: Vec<RecordedRequest>,
    /// STS AccessKey id -> the role it was issued for.
    pub sts_roles: HashMap<String, String>,
}

/// An ACR or STS request the fake received, as [`FakeCloud::requests`] lists it. `Debug` shows
/// `OIDCToken` and `SecurityToken` as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GetAuthorizationToken`, `AssumeRoleWithOIDC`, `GET /tokens`...
    pub action: String,
    /// Query and form parameters, decoded (without `Signature`). Holds what the client sent,
    /// secrets included (`OIDCToken`), for tests to assert on.
    pub params: std::collections::BTreeMap<String, String>,
    /// The AccessKey id that signed it, when the signature was verified (`None` for anonymous
    /// calls and failed verification).
    pub access_key_id: Option<String>,
    /// The role whose STS credentials signed it, when they were issued by `AssumeRole` or
    /// `AssumeRoleWithOIDC`.
    pub assumed_role: Option<String>,
}

impl std::fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: std::collections::BTreeMap<&str, &str> = self
            .params
            .iter()
            .map(|(k, v)| {
                let secret = matches!(k.as_str(), "OIDCToken" | "SecurityToken");
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("action", &self.action)
            .field("params", &params)
            .field("access_key_id", &self.access_key_id)
            .field("assumed_role", &self.assumed_role)
            .finish()
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: FakeCloudConfig,
    pub clock: SharedClock,
    pub inner: Mutex<Inner>,
    pub registry_keys: registry::SigningKeys,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake cloud state poisoned")
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

/// A running fake cloud. It stops when dropped.
#[derive(Debug)]
pub struct FakeCloud {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeCloud {
    /// Starts the fake on `127.0.0.1` on a port chosen by the OS, with the system clock.
    /// Must be called inside a tokio runtime.
    pub async fn start(config: FakeCloudConfig) -> std::io::Result<Self> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts the fake with its own clock (to test timestamp windows and expiry).
    pub async fn start_with_clock(
        config: FakeCloudConfig,
        clock: SharedClock,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            clock,
            inner: Mutex::new(Inner::default()),
            registry_keys: registry::SigningKeys::generate(),
        });
        let app = axum::Router::new()
            .fallback(dispatch)
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "fake cloud server failed");
            }
        });
        tracing::debug!(%addr, "fake cloud listening");
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it serves.
    pub fn config(&self) -> &FakeCloudConfig {
        &self.shared.config
    }

    /// How many requests for `action` arrived (ACR/STS actions such as `GetAuthorizationToken`,
    /// `GetPersonalAuthorizationToken`, `AssumeRole`; metadata paths as `metadata:<path>`;
    /// `RegistryToken` for the registry token server), whatever their outcome.
    pub fn calls(&self, action: &str) -> usize {
        self.shared.lock().calls.get(action).copied().unwrap_or(0)
    }

    /// The ACR/STS requests for `action` (`None`: all), in arrival order; those answered by an
    /// injected [`Fault`] are counted by [`FakeCloud::calls`] but not listed here.
    pub fn requests(&self, action: Option<&str>) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| action.is_none_or(|a| r.action == a))
            .cloned()
            .collect()
    }

    /// All call counts.
    pub fn all_calls(&self) -> HashMap<String, usize> {
        self.shared.lock().calls.clone()
    }

    /// The next `n` ACR/STS calls (any action) fail with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut inner = self.shared.lock();
        inner.faults.extend(std::iter::repeat_n((None, fault), n));
    }

    /// Drops every pending fault (the outage is over).
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// The next `n` calls of `action` fail with `fault` (`METADATA_FAULT_TARGET` makes the next
    /// `n` metadata reads answer HTTP 500, whatever the fault).
    pub fn fail_next_action(&self, action: &str, n: usize, fault: Fault) {
        let mut inner = self.shared.lock();
        inner
            .faults
            .extend(std::iter::repeat_n((Some(action.to_owned()), fault), n));
    }

    /// A credentials URI (for `ALIBABA_CLOUD_CREDENTIALS_URI`) handing out fresh STS credentials.
    pub fn credentials_uri(&self) -> String {
        format!("{}/credentials-uri", self.url())
    }

    /// The URL of the registry token server, for a registry's `auth.token.realm`.
    pub fn registry_token_realm(&self) -> String {
        format!("{}/registry/token", self.url())
    }

    /// PEM of the certificate whose key signs registry bearer tokens, for a registry's
    /// `auth.token.rootcertbundle`.
    pub fn registry_cert_pem(&self) -> String {
        self.shared.registry_keys.cert_pem.clone()
    }

    /// Issues STS credentials directly (as if a role had been assumed), valid for `lifetime`.
    pub fn issue_sts_credentials(
        &self,
        lifetime: Duration,
    ) -> acr_auth_core::credentials::Credentials {
        let (id, sts) = api::issue_sts(&self.shared, lifetime);
        acr_auth_core::credentials::Credentials::new(id, sts.secret)
            .with_security_token(sts.token)
            .with_expiry(sts.expires_at)
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A random id in Alibaba's RequestId shape (`8-4-4-4-12` upper-case hex).
pub(crate) fn request_id() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Random alphanumerics.
pub(crate) fn random_token(len: usize) -> String {
    const CH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CH[rng.random_range(0..CH.len())] as char)
        .collect()
}

/// An Alibaba-shaped error response.
pub(crate) fn alibaba_error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "RequestId": request_id(),
        "HostId": "fake-cloud",
        "Code": code,
        "Message": message,
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}"),
    });
    json_response(status, &body)
}

pub(crate) fn json_response(status: u16, body: &serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json;charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A request as received.
pub(crate) struct RawRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Body of `POST /_fake/faults`.
#[derive(Deserialize)]
struct FaultRequest {
    count: usize,
    fault: Fault,
    #[serde(default)]
    action: Option<String>,
}

/// The control API for out-of-process users (the Python tests): `POST /_fake/faults` with
/// `{"count": n, "fault": "ServiceUnavailable" | {"DelayMs": 500}, "action": "..."}` and
/// `GET /_fake/calls`. The server only listens on loopback.
fn control(shared: &Shared, req: &RawRequest, what: &str) -> Response {
    match (req.method.as_str(), what) {
        ("POST", "faults") => match serde_json::from_slice::<FaultRequest>(&req.body) {
            Ok(f) => {
                let mut inner = shared.lock();
                inner
                    .faults
                    .extend(std::iter::repeat_n((f.action, f.fault), f.count));
                json_response(200, &serde_json::json!({"queued": f.count}))
            }
            Err(e) => json_response(400, &serde_json::json!({"error": e.to_string()})),
        },
        ("GET", "calls") => json_response(200, &serde_json::json!(shared.lock().calls)),
        _ => json_response(
            404,
            &serde_json::json!({"error": "unknown control endpoint"}),
        ),
    }
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = RawRequest {
        method,
        uri,
        headers,
        body,
    };
    let path = req.uri.path().to_owned();
    if path.starts_with("/latest/") {
        return metadata::handle(&shared, &req);
    }
    if path == "/registry/token" {
        return registry::handle(&shared, &req);
    }
    if path == "/credentials-uri" {
        return metadata::credentials_uri(&shared);
    }
    if let Some(rest) = path.strip_prefix("/_fake/") {
        return control(&shared, &req, rest);
    }
    api::handle(&shared, req).await
}
