//! A fake Kubernetes API server on loopback: real HTTP/JSON with the semantics controllers rely
//! on. Namespaces, Secrets, ServiceAccounts, ConfigMaps, Events and Leases; one global
//! resourceVersion; create (409 AlreadyExists), update and patch with resourceVersion
//! preconditions (409 Conflict); JSON merge patch, JSON patch (with `test`) and the strategic
//! merge patch kubectl sends; list with label and field selectors and pagination; watch from a
//! resourceVersion with bookmarks, server-side timeouts and 410 Gone after compaction; namespace
//! deletion that removes the namespace's objects; the discovery documents; the `default`
//! ServiceAccount in every new namespace; fault injection; a log of every request.

// Handlers return the finished HTTP error response as their `Err` (as in the fake cloud).
#![allow(clippy::result_large_err)]

mod admission;
mod api;
mod discovery;
mod list_watch;
mod protobuf;
mod selector;
mod store;

pub use selector::{FieldSelector, LabelSelector};
pub use store::{ResourceType, RESOURCES};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use store::Store;

/// A request as recorded: verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`),
/// API group, resource, namespace and the user (the bearer token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The Kubernetes verb.
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Resource plural.
    pub resource: String,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// The object's name, for requests on one object.
    pub name: Option<String>,
    /// The user: this fake authenticates every bearer token as the user of that name
    /// (`fake-token` in [`FakeKube::kubeconfig`]); `None` without one.
    pub user: Option<String>,
    /// When the request arrived.
    pub at: std::time::Instant,
}

#[derive(Debug, Clone)]
struct Fault {
    verb: String,
    resource: Option<String>,
    status: u16,
    retry_after: Option<u32>,
    /// Requests this fault still answers.
    remaining: usize,
}

#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    changed: tokio::sync::broadcast::Sender<()>,
    close_watches: tokio::sync::watch::Sender<u64>,
    /// While `true`, watches hold their events back.
    watches_paused: tokio::sync::watch::Sender<bool>,
    faults: Mutex<VecDeque<Fault>>,
    /// Responses by `"verb resource status"`, for the scale bench (`GET /_fake/responses`).
    responses: Mutex<std::collections::BTreeMap<String, u64>>,
    requests: Mutex<Vec<RequestRecord>>,
    webhook_calls: Mutex<Vec<String>>,
    bookmark_interval: Duration,
    addr: Mutex<String>,
}

impl Shared {
    pub(crate) fn record_webhook_call(&self, name: &str) {
        self.webhook_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_owned());
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake API server; it stops when dropped.
#[derive(Debug)]
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A Kubernetes `Status` error response.
pub(crate) fn status(code: u16, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl FakeKube {
    /// Starts an empty cluster with namespaces `default`, `kube-system` and `kube-public` (each
    /// with its `default` ServiceAccount) on 127.0.0.1, port chosen by the OS.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_bookmarks(Duration::from_secs(2)).await
    }

    /// Like [`FakeKube::start`], sending watch bookmarks every `bookmark_interval`.
    pub async fn start_with_bookmarks(bookmark_interval: Duration) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changed: tokio::sync::broadcast::channel(64).0,
            close_watches: tokio::sync::watch::channel(0).0,
            watches_paused: tokio::sync::watch::channel(false).0,
            faults: Mutex::new(VecDeque::new()),
            responses: Mutex::new(std::collections::BTreeMap::new()),
            requests: Mutex::new(Vec::new()),
            webhook_calls: Mutex::new(Vec::new()),
            bookmark_interval,
            addr: Mutex::new(addr.to_string()),
        });
        for ns in ["default", "kube-system", "kube-public"] {
            api::create_namespace_object(&shared, ns);
        }
        let app = axum::Router::new()
            .fallback(dispatch)
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let closer = shared.close_watches.clone();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
                // End open watches so the graceful shutdown does not wait for them.
                closer.send_modify(|n| *n += 1);
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "fake API server failed");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
        })
    }

    /// The admission webhooks called so far, by name, in order.
    pub fn webhook_calls(&self) -> Vec<String> {
        self.shared
            .webhook_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server (context `fake`, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user:\n    token: fake-token\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n",
            self.url()
        )
    }

    /// Writes [`FakeKube::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// The object `resource`/`namespace`/`name` (namespace `""` for cluster-scoped), if it exists.
    /// `resource` is the plural, prefixed with its group outside the core group
    /// (`events.k8s.io/events`).
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let r = RESOURCES.iter().find(|r| r.key == resource)?;
        self.shared
            .store()
            .objects
            .get(&(r.key, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object of `resource` (in `namespace`, or everywhere with `None`).
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(r) = RESOURCES.iter().find(|r| r.key == resource) else {
            return Vec::new();
        };
        self.shared
            .store()
            .objects
            .range((r.key, String::new(), String::new())..)
            .take_while(|((key, _, _), _)| *key == r.key)
            .filter(|((_, ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv
    }

    /// The next `n` requests of `verb` (`*` for any) on `resource` (`None` for any) fail with
    /// `status` (500, 429, 409...).
    pub fn fail_next(&self, verb: &str, resource: Option<&str>, n: usize, status: u16) {
        let mut faults = self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if n > 0 {
            faults.push_back(Fault {
                verb: verb.to_owned(),
                resource: resource.map(str::to_owned),
                status,
                retry_after: None,
                remaining: n,
            });
        }
    }

    /// The next `n` requests of `verb` on `resource` are throttled as the API server's priority
    /// and fairness does: 429 with a `Retry-After: retry_after` header (and, as
    /// `NewTooManyRequests` does, `details.retryAfterSeconds` in the Status).
    pub fn throttle_next(&self, verb: &str, resource: Option<&str>, n: usize, retry_after: u32) {
        let mut faults = self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if n > 0 {
            faults.push_back(Fault {
                verb: verb.to_owned(),
                resource: resource.map(str::to_owned),
                status: 429,
                retry_after: Some(retry_after),
                remaining: n,
            });
        }
    }

    /// Holds back every watch event until [`FakeKube::resume_watches`], as a lagging watch
    /// cache does: writes succeed and reads see them, watchers do not (yet).
    pub fn pause_watches(&self) {
        self.shared.watches_paused.send_replace(true);
    }

    /// Lets held-back watch events through, in order.
    pub fn resume_watches(&self) {
        self.shared.watches_paused.send_replace(false);
    }

    /// Drops every fault not served yet.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Ends every open watch (clients must re-watch).
    pub fn drop_watches(&self) {
        self.shared.close_watches.send_modify(|n| *n += 1);
    }

    /// Forgets history: watches resuming from an older resourceVersion, and continue tokens,
    /// get 410 Gone.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests had this verb (and resource, if given).
    pub fn count(&self, verb: &str, resource: Option<&str>) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.verb == verb && resource.is_none_or(|x| x == r.resource))
            .count()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A request as received.
pub(crate) struct KubeRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = shared
        .addr
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if method == Method::GET {
        if let Some(doc) = discovery::document(uri.path(), &host) {
            return json_response(200, &doc);
        }
    }
    if method == Method::GET && uri.path() == "/_fake/requests" {
        // For out-of-process users (the scale bench): request counts by verb and resource.
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for r in shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            *counts
                .entry(format!("{} {}", r.verb, r.resource))
                .or_default() += 1;
        }
        return json_response(200, &json!(counts));
    }
    if uri.path() == "/_fake/responses" && method == Method::GET {
        let counts = shared
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        return json_response(200, &json!(counts));
    }
    if uri.path() == "/_fake/faults" {
        // `POST {"verb": "patch", "resource": "secrets", "count": n, "status": 500}` queues a
        // fault (`verb` `*` and no `resource` match anything); `DELETE` drops every fault.
        if method == Method::DELETE {
            shared
                .faults
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            return json_response(200, &json!({}));
        }
        let Ok(f) = serde_json::from_slice::<Value>(&body) else {
            return status(400, "BadRequest", "the body is not JSON");
        };
        let (Some(verb), Some(count), Some(code)) = (
            f["verb"].as_str(),
            f["count"].as_u64(),
            f["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
        ) else {
            return status(400, "BadRequest", "need verb, count and status");
        };
        if count > 0 {
            shared
                .faults
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(Fault {
                    verb: verb.to_owned(),
                    resource: f["resource"].as_str().map(str::to_owned),
                    status: code,
                    retry_after: f["retryAfter"].as_u64().and_then(|s| u32::try_from(s).ok()),
                    remaining: usize::try_from(count).unwrap_or(usize::MAX),
                });
        }
        return json_response(200, &json!({"queued": count}));
    }
    let mut req = KubeRequest {
        method,
        uri,
        headers,
        body,
    };
    let Some(route) = api::route(req.uri.path()) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    // Protobuf bodies (kubectl's generator commands send them) are decoded for the kinds they
    // create; any other protobuf body gets 415.
    let content_type = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !req.body.is_empty() && content_type.starts_with("application/vnd.kubernetes.protobuf") {
        match protobuf::decode(&req.body) {
            Some(json) => {
                req.body = json.to_string().into_bytes().into();
                req.headers.insert(
                    "content-type",
                    axum::http::HeaderValue::from_static("application/json"),
                );
            }
            None => {
                return status(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json (got {content_type})"));
            }
        }
    }
    let verb = api::verb(&req, &route);
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(RequestRecord {
            verb: verb.to_owned(),
            group: route.resource.group.to_owned(),
            resource: route.resource.plural.to_owned(),
            namespace: route.namespace.clone(),
            name: route.name.clone(),
            user: req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned),
            at: std::time::Instant::now(),
        });
    let fault = {
        let mut faults = shared.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let pos = faults.iter().position(|f| {
            (f.verb == "*" || f.verb == verb)
                && f.resource
                    .as_deref()
                    .is_none_or(|r| r == route.resource.plural)
        });
        pos.map(|p| {
            let f = &mut faults[p];
            f.remaining -= 1;
            let answer = (f.status, f.retry_after);
            if f.remaining == 0 {
                faults.remove(p);
            }
            answer
        })
    };
    let response = match fault {
        Some((status, retry_after)) => {
            fault_response(status, retry_after, verb, route.resource.plural)
        }
        None => api::handle(&shared, &req, &route, verb).await,
    };
    *shared
        .responses
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(format!(
            "{verb} {} {}",
            route.resource.plural,
            response.status().as_u16()
        ))
        .or_default() += 1;
    response
}

fn fault_response(
    status_code: u16,
    retry_after: Option<u32>,
    verb: &str,
    plural: &str,
) -> Response {
    if let Some(secs) = retry_after {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Too many requests, please try again later.",
            "reason": "TooManyRequests", "code": 429,
            "details": {"retryAfterSeconds": secs},
        });
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("content-type", "application/json".to_owned()),
                ("retry-after", secs.to_string()),
            ],
            body.to_string(),
        )
            .into_response();
    }
    {
        let reason = match status_code {
            409 => "Conflict",
            429 => "TooManyRequests",
            _ => "InternalError",
        };
        status(
            status_code,
            reason,
            format!("injected fault for {verb} {plural}"),
        )
    }
}
