//! The HTTP layer: one reqwest client (rustls), timeouts, a response size cap, and the retry
//! policy (capped exponential backoff with jitter).
//!
//! Servers are verified against the platform's trust store (`rustls-platform-verifier`): on
//! Linux the system CA bundle, or the files named by `SSL_CERT_FILE` / `SSL_CERT_DIR` when set
//! (as OpenSSL and curl read them); on macOS and Windows the system's own verifier.
//!
//! Clients and providers built without a [`reqwest::Client`] of their own share one per
//! [`Timeouts`] value for the whole process ([`shared_client`]): one connection pool, one TLS
//! configuration. To use your own (a proxy, extra roots, pool settings), pass it to
//! [`AcrClientBuilder::http_client`](crate::acr::AcrClientBuilder::http_client) and
//! [`ProviderEnv::with_http_client`](crate::credentials::ProviderEnv::with_http_client) (every
//! provider built from that environment uses it); its own timeouts then apply.
//!
//! A pooled connection is driven by a task of the Tokio runtime that opened it. A program that
//! starts and drops several runtimes while calling the same endpoint may see a call on a
//! connection whose runtime just went away fail as a (retryable) transport error; give each
//! runtime its own client there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rand::RngExt as _;

use crate::error::{Error, ErrorKind};

/// Largest response body accepted; anything bigger is an [`ErrorKind::InvalidResponse`].
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Connect and read timeouts. Fields may be added in minor releases: build it with
/// [`Timeouts::new`] or [`Timeouts::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Timeouts {
    /// Time to establish the connection (default 5 s, as the official SDKs).
    pub connect: Duration,
    /// Time to wait for the response between reads (default 10 s).
    pub read: Duration,
}

impl Timeouts {
    /// `connect` to establish a connection, `read` between reads of the response.
    ///
    /// ```
    /// use acr_auth_core::http::Timeouts;
    /// use std::time::Duration;
    /// let t = Timeouts::new(Duration::from_secs(2), Duration::from_secs(30));
    /// assert_eq!(t.read, Duration::from_secs(30));
    /// ```
    pub const fn new(connect: Duration, read: Duration) -> Self {
        Self { connect, read }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(10),
        }
    }
}

/// How failed calls are retried: only [retryable](Error::is_retryable) errors, up to
/// `max_attempts` in all, waiting `min(max_backoff, initial_backoff * 2^n)` scaled by a random
/// factor in `[0.5, 1.0]` between attempts. Fields may be added in minor releases: build it
/// with [`RetryPolicy::new`], [`RetryPolicy::none`] or [`RetryPolicy::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// Upper bound of one backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` in all (the first included), backoffs from `initial_backoff` doubling up
    /// to `max_backoff`.
    pub const fn new(max_attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            max_attempts,
            initial_backoff,
            max_backoff,
        }
    }

    /// No retries.
    pub const fn none() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        }
    }

    /// The wait before retry number `retry` (0-based), jitter included.
    ///
    /// ```
    /// use acr_auth_core::http::RetryPolicy;
    /// use std::time::Duration;
    /// let p = RetryPolicy::new(10, Duration::from_millis(100), Duration::from_secs(1));
    /// let d = p.backoff(20);
    /// assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1));
    /// ```
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_backoff);
        capped.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// A response read in full (at most [`MAX_RESPONSE_BYTES`]).
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// The client's TLS: rustls with the ring provider (passed explicitly, so that no process-wide
/// default provider is needed or installed) and the platform verifier; HTTP/2 and HTTP/1.1.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A `reqwest::ClientBuilder` set up as this crate's own clients are: TLS through rustls (ring)
/// verifying servers against the platform's trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` when
/// set), and our user agent. Start here to bring your own client (a proxy, pool settings,
/// default headers) and pass it to `AcrClientBuilder::http_client` or
/// `ProviderEnv::with_http_client`; set its timeouts yourself.
///
/// This crate builds reqwest without a process-wide rustls crypto provider: a bare
/// `reqwest::Client::new()` works only when your own dependency on reqwest enables one (its
/// default features do) or after `rustls::crypto::ring::default_provider().install_default()`.
/// A builder from this function needs neither.
///
/// ```
/// use std::time::Duration;
/// let client = acr_auth_core::http::client_builder()
///     .unwrap()
///     .connect_timeout(Duration::from_secs(3))
///     .build()
///     .unwrap();
/// let acr = acr_auth_core::acr::AcrClient::builder("cn-hangzhou")
///     .http_client(client)
///     .build()
///     .unwrap();
/// # drop(acr);
/// ```
pub fn client_builder() -> Result<reqwest::ClientBuilder, Error> {
    let tls = tls_config().map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            "HTTP client",
            format!("cannot set up TLS (trusted CA certificates: the system store, or SSL_CERT_FILE / SSL_CERT_DIR): {e}"),
        )
    })?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("acr-auth/", env!("CARGO_PKG_VERSION"))))
}

/// Builds the shared reqwest client.
pub(crate) fn build_client(timeouts: Timeouts) -> Result<reqwest::Client, Error> {
    client_builder()?
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                "HTTP client",
                "cannot build the HTTP client",
            )
            .with_source(e)
        })
}

/// The process-wide clients, one per timeout setting.
static SHARED: OnceLock<Mutex<HashMap<Timeouts, reqwest::Client>>> = OnceLock::new();
/// How many clients [`shared_client`] has built.
static SHARED_BUILT: AtomicUsize = AtomicUsize::new(0);

/// The process-wide client for `timeouts`, built on first use and cloned after (a
/// `reqwest::Client` is a handle to one shared pool).
///
/// Building a client needs no runtime and does no network I/O.
///
/// ```
/// use acr_auth_core::http::{shared_client, Timeouts};
/// let a = shared_client(Timeouts::default()).unwrap();
/// let b = shared_client(Timeouts::default()).unwrap();
/// # drop((a, b));
/// ```
pub fn shared_client(timeouts: Timeouts) -> Result<reqwest::Client, Error> {
    let map = SHARED.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(client) = map.get(&timeouts) {
        return Ok(client.clone());
    }
    let client = build_client(timeouts)?;
    SHARED_BUILT.fetch_add(1, Ordering::Relaxed);
    map.insert(timeouts, client.clone());
    Ok(client)
}

/// How many clients [`shared_client`] has built in this process (one per distinct
/// [`Timeouts`] used), for tests that check the sharing.
#[doc(hidden)]
pub fn shared_clients_built() -> usize {
    SHARED_BUILT.load(Ordering::Relaxed)
}

/// `given` if there is one, else the shared client for `timeouts`.
pub(crate) fn client_or_shared(
    given: Option<&reqwest::Client>,
    timeouts: Timeouts,
) -> Result<reqwest::Client, Error> {
    match given {
        Some(c) => Ok(c.clone()),
        None => shared_client(timeouts),
    }
}

/// Sends a request and reads the body, refusing bodies over [`MAX_RESPONSE_BYTES`].
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    context: &str,
) -> Result<Response, Error> {
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(context, e))?;
    let status = response.status().as_u16();
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large(context, status));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(context, e))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large(context, status));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response { status, body })
}

fn too_large(context: &str, status: u16) -> Error {
    Error::invalid_response(
        context,
        format!("response body is larger than {MAX_RESPONSE_BYTES} bytes"),
    )
    .with_status(status)
}

fn transport_error(context: &str, e: reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Transport
    };
    // reqwest's Display includes the URL, which may carry a signed query with a security token;
    // keep only the cause chain's text without the URL.
    let message = match kind {
        ErrorKind::Timeout => "request timed out".to_owned(),
        _ => describe_transport(&e),
    };
    Error::new(kind, context, message).with_source(e.without_url())
}

fn describe_transport(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if e.is_connect() {
        parts.insert(0, "connection failed".to_owned());
    }
    if parts.iter().any(|p| p.contains("invalid peer certificate")) {
        parts.push(
            "the server's certificate is not trusted (trusted CA certificates: the system store, \
             or SSL_CERT_FILE / SSL_CERT_DIR)"
                .to_owned(),
        );
    }
    if parts.is_empty() {
        "request failed".to_owned()
    } else {
        parts.join(": ")
    }
}

/// Runs `attempt` until it succeeds, fails with a non-retryable error, or the policy's attempts
/// are used up. Each call of `attempt` must build a fresh request (new nonce and timestamp).
pub(crate) async fn with_retry<T, F, Fut>(policy: &RetryPolicy, mut attempt: F) -> Result<T, Error>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut n = 0;
    loop {
        match attempt(n).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && n + 1 < policy.max_attempts.max(1) => {
                let wait = policy.backoff(n);
                tracing::warn!(
                    context = e.context(),
                    error = %e,
                    attempt = n + 1,
                    retry_in_ms = wait.as_millis() as u64,
                    "retryable error; retrying"
                );
                tokio::time::sleep(wait).await;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
