//! The ACR client: Enterprise Edition `GetAuthorizationToken` and `ListInstanceEndpoint`
//! (2018-12-01), Personal Edition `GET /tokens` (2016-06-07), endpoint resolution, and the
//! registry host grammar.

mod endpoint;
mod host;

mod token;

pub use endpoint::{enterprise_registry_hosts, InstanceDomain, InstanceEndpoint};
pub use host::{personal_registry_hosts, Edition, Network, NotAcrHost, RegistryHost};
pub use token::RegistryToken;

use std::sync::Arc;

use rand::RngExt as _;
use reqwest::Url;
use serde_json::Value;

use crate::credentials::{Credentials, DefaultCredentialsChain, ProvideCredentials, ProviderEnv};
use crate::error::Error;
use crate::http::{self, RetryPolicy, Timeouts};
use crate::sign::{self, Method, RoaStringToSign, RpcRequest, V3Signature, EMPTY_SHA256};
use crate::time::{self as clock, SharedClock};

/// Environment variable that overrides the ACR endpoint (a base URL such as
/// `http://127.0.0.1:8080`).
pub const ENDPOINT_ENV: &str = "ACR_AUTH_ACR_ENDPOINT";

/// API version of the Enterprise Edition (RPC) operations.
pub const EE_API_VERSION: &str = "2018-12-01";
/// API version of the Personal Edition `GET /tokens` (ROA) operation.
pub const PE_API_VERSION: &str = "2016-06-07";

/// Which signature scheme requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureAlgorithm {
    /// `ACS3-HMAC-SHA256`, what current official SDKs send (default).
    #[default]
    V3,
    /// The older HMAC-SHA1 schemes: RPC `SignatureVersion=1.0` and ROA `acs AK:sig`.
    HmacSha1,
}

/// Where the ACR API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://cr.<region>.aliyuncs.com`.
    Public,
    /// `https://cr-vpc.<region>.aliyuncs.com`.
    Vpc,
    /// An explicit base URL (a proxy, a private endpoint, a test server).
    Url(String),
}

/// Builds an [`AcrClient`].
#[derive(Debug)]
pub struct AcrClientBuilder {
    region: String,
    endpoint: Option<Endpoint>,
    credentials: Option<Arc<dyn ProvideCredentials>>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    algorithm: SignatureAlgorithm,
    clock: Option<SharedClock>,
    read_env: bool,
    http: Option<reqwest::Client>,
}

impl AcrClientBuilder {
    /// Static credentials. Default: the [default chain](DefaultCredentialsChain) over the
    /// process environment.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(Arc::new(credentials));
        self
    }

    /// Any credentials provider. Default: the [default chain](DefaultCredentialsChain) over the
    /// process environment.
    pub fn credentials_provider(mut self, provider: Arc<dyn ProvideCredentials>) -> Self {
        self.credentials = Some(provider);
        self
    }

    /// Where to send requests. Default: [`ENDPOINT_ENV`] if set, else [`Endpoint::Public`].
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Use the VPC endpoint `cr-vpc.<region>.aliyuncs.com` (unless an explicit URL is set).
    pub fn vpc(self, vpc: bool) -> Self {
        if vpc {
            self.endpoint(Endpoint::Vpc)
        } else {
            self
        }
    }

    /// Whether to read [`ENDPOINT_ENV`] when no endpoint is given (default true).
    pub fn read_env(mut self, read_env: bool) -> Self {
        self.read_env = read_env;
        self
    }

    /// The HTTP client to send requests with (a proxy, private roots, pool settings...).
    /// Default: the process-wide client shared by every client and provider built without one
    /// ([`http::shared_client`]). The given client's own timeouts apply, not
    /// [`timeouts`](Self::timeouts). The default credential chain, when used, calls out with it
    /// too.
    ///
    /// ```
    /// use acr_auth_core::acr::AcrClient;
    /// // Start from `http::client_builder()` (TLS set up as ours), then add your settings.
    /// let http = acr_auth_core::http::client_builder().unwrap().https_only(true).build().unwrap();
    /// let client = AcrClient::builder("cn-hangzhou").http_client(http).build().unwrap();
    /// # drop(client);
    /// ```
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Connect and read timeouts (for the shared client; see [`http_client`](Self::http_client)).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Retry policy for retryable errors.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Signature scheme (default V3).
    pub fn signature_algorithm(mut self, algorithm: SignatureAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The clock used for request timestamps (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the client. Fails if the region or endpoint is malformed.
    ///
    /// Without credentials, the [default chain](DefaultCredentialsChain) over the process
    /// environment is used, looked at on the first call (building does no I/O).
    pub fn build(self) -> Result<AcrClient, Error> {
        const CTX: &str = "ACR client";
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::invalid_input(
                CTX,
                format!(
                    "region {:?} is not a region id such as cn-hangzhou",
                    self.region
                ),
            ));
        }
        let endpoint = match self.endpoint {
            Some(e) => e,
            None => match std::env::var(ENDPOINT_ENV).ok().filter(|_| self.read_env) {
                Some(url) if !url.is_empty() => Endpoint::Url(url),
                _ => Endpoint::Public,
            },
        };
        let base = match &endpoint {
            Endpoint::Public => format!("https://cr.{}.aliyuncs.com", self.region),
            Endpoint::Vpc => format!("https://cr-vpc.{}.aliyuncs.com", self.region),
            Endpoint::Url(u) => u.clone(),
        };
        let base = Url::parse(&base).map_err(|e| {
            Error::invalid_input(CTX, format!("endpoint {base:?} is not a URL: {e}"))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(Error::invalid_input(
                CTX,
                format!("endpoint {base} must be an http(s) URL with a host"),
            ));
        }
        let credentials = match self.credentials {
            Some(c) => c,
            None => {
                let mut env = ProviderEnv::process();
                if let Some(h) = &self.http {
                    env = env.with_http_client(h.clone());
                }
                Arc::new(DefaultCredentialsChain::new(env))
            }
        };
        Ok(AcrClient {
            http: http::client_or_shared(self.http.as_ref(), self.timeouts)?,
            host: host_header(&base),
            base,
            region: self.region,
            credentials,
            retry: self.retry,
            algorithm: self.algorithm,
            clock: self.clock.unwrap_or_else(clock::system_clock),
        })
    }
}

/// The `Host` header value reqwest will send for `url`.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A client of the ACR OpenAPI in one region.
///
/// Every attempt gets a fresh nonce and timestamp; retryable failures are retried with capped
/// exponential backoff and jitter.
#[derive(Debug, Clone)]
pub struct AcrClient {
    http: reqwest::Client,
    base: Url,
    host: String,
    region: String,
    credentials: Arc<dyn ProvideCredentials>,
    retry: RetryPolicy,
    algorithm: SignatureAlgorithm,
    clock: SharedClock,
}

/// A request about to be signed and sent.
struct Call<'a> {
    context: &'a str,
    method: Method,
    path: &'a str,
    action: &'a str,
    version: &'a str,
    /// ROA APIs go through the ROA signer when HMAC-SHA1 is chosen.
    roa: bool,
    query: Vec<(&'a str, &'a str)>,
}

impl AcrClient {
    /// A builder for `region` (e.g. `cn-hangzhou`).
    pub fn builder(region: impl Into<String>) -> AcrClientBuilder {
        AcrClientBuilder {
            region: region.into(),
            endpoint: None,
            credentials: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            algorithm: SignatureAlgorithm::default(),
            clock: None,
            read_env: true,
            http: None,
        }
    }

    /// The region this client calls.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The base URL requests go to.
    pub fn endpoint_url(&self) -> &str {
        self.base.as_str()
    }

    /// Enterprise Edition: a temporary login for instance `instance_id` (`cri-...`).
    pub async fn get_authorization_token(&self, instance_id: &str) -> Result<RegistryToken, Error> {
        const CTX: &str = "ACR GetAuthorizationToken";
        check_instance_id(instance_id, CTX)?;
        let obj = self
            .call(Call {
                context: CTX,
                method: Method::Post,
                path: "/",
                action: "GetAuthorizationToken",
                version: EE_API_VERSION,
                roa: false,
                query: vec![("InstanceId", instance_id)],
            })
            .await?;
        RegistryToken::from_enterprise(&obj, CTX)
    }

    /// Personal Edition: a temporary login for the caller's Personal Edition registry in this
    /// region (`GET /tokens`).
    pub async fn get_personal_token(&self) -> Result<RegistryToken, Error> {
        const CTX: &str = "ACR GET /tokens";
        let obj = self
            .call(Call {
                context: CTX,
                method: Method::Get,
                path: "/tokens",
                action: "GetAuthorizationToken",
                version: PE_API_VERSION,
                roa: true,
                query: Vec::new(),
            })
            .await?;
        RegistryToken::from_personal(&obj, CTX)
    }

    /// Enterprise Edition: the registry endpoints of `instance_id` (`ModuleName=Registry`).
    pub async fn list_instance_endpoint(
        &self,
        instance_id: &str,
    ) -> Result<Vec<InstanceEndpoint>, Error> {
        const CTX: &str = "ACR ListInstanceEndpoint";
        check_instance_id(instance_id, CTX)?;
        let obj = self
            .call(Call {
                context: CTX,
                method: Method::Post,
                path: "/",
                action: "ListInstanceEndpoint",
                version: EE_API_VERSION,
                roa: false,
                query: vec![("InstanceId", instance_id), ("ModuleName", "Registry")],
            })
            .await?;
        endpoint::parse_endpoints(&obj, CTX)
    }

    /// Enterprise Edition: the id of the instance named exactly `name` in this region
    /// (`ListInstance`, every page).
    pub async fn find_instance_id(&self, name: &str) -> Result<String, Error> {
        const CTX: &str = "ACR ListInstance";
        const PAGE_SIZE: usize = 100;
        for page in 1..=50usize {
            let page_no = page.to_string();
            let page_size = PAGE_SIZE.to_string();
            let obj = self
                .call(Call {
                    context: CTX,
                    method: Method::Post,
                    path: "/",
                    action: "ListInstance",
                    version: EE_API_VERSION,
                    roa: false,
                    query: vec![
                        ("InstanceName", name),
                        ("PageNo", &page_no),
                        ("PageSize", &page_size),
                    ],
                })
                .await?;
            let instances = match crate::response::field(&obj, "Instances") {
                Some(Value::Array(a)) => a,
                None | Some(Value::Null) => break,
                Some(_) => {
                    return Err(Error::invalid_response(
                        CTX,
                        "field Instances should be an array",
                    ))
                }
            };
            for i in instances.iter().filter_map(Value::as_object) {
                let found = crate::response::field(i, "InstanceName").and_then(Value::as_str);
                if found == Some(name) {
                    return crate::response::required_str(i, "InstanceId", CTX);
                }
            }
            let total = crate::response::field(&obj, "TotalCount")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if instances.is_empty() || (page * PAGE_SIZE) as u64 >= total {
                break;
            }
        }
        Err(Error::invalid_input(
            CTX,
            format!(
                "no Enterprise Edition instance named {name:?} in {}",
                self.region
            ),
        ))
    }

    async fn call(&self, call: Call<'_>) -> Result<serde_json::Map<String, Value>, Error> {
        http::with_retry(&self.retry, |attempt| self.attempt(&call, attempt)).await
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        attempt: u32,
    ) -> Result<serde_json::Map<String, Value>, Error> {
        let credentials = self.credentials.provide_credentials().await?;
        let now = self.clock.now();
        let nonce = new_nonce();
        let mut url = self.base.clone();
        url.set_path(call.path);
        let method = match call.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };

        let mut headers: Vec<(&str, String)> = Vec::with_capacity(12);
        match (self.algorithm, call.roa) {
            (SignatureAlgorithm::V3, _) => {
                let q = encode_query(&call.query);
                url.set_query(Some(q.as_str()).filter(|q| !q.is_empty()));
                headers.extend([
                    ("host", self.host.clone()),
                    ("x-acs-action", call.action.to_owned()),
                    ("x-acs-version", call.version.to_owned()),
                    ("x-acs-date", clock::format_iso8601(now)),
                    ("x-acs-signature-nonce", nonce),
                    ("x-acs-content-sha256", EMPTY_SHA256.to_owned()),
                ]);
                if let Some(token) = credentials.security_token() {
                    headers.push(("x-acs-accesskey-id", credentials.access_key_id().to_owned()));
                    headers.push(("x-acs-security-token", token.expose().to_owned()));
                }
                let sig = V3Signature::new(
                    call.method,
                    call.path,
                    call.query.iter().copied(),
                    headers.iter().map(|(k, v)| (*k, v.as_str())),
                    EMPTY_SHA256,
                    credentials.access_key_secret().expose(),
                );
                headers.push((
                    "authorization",
                    sig.authorization(credentials.access_key_id()),
                ));
            }
            (SignatureAlgorithm::HmacSha1, false) => {
                let mut req = RpcRequest::new(call.method, call.action, call.version);
                req.query = call
                    .query
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                let signed = sign::sign_rpc_request(&req, Some(&credentials), now, &nonce);
                url.set_query(Some(&signed.query));
            }
            (SignatureAlgorithm::HmacSha1, true) => {
                let q = encode_query(&call.query);
                url.set_query(Some(q.as_str()).filter(|q| !q.is_empty()));
                headers.extend([
                    ("accept", "application/json".to_owned()),
                    ("date", clock::format_rfc1123(now)),
                    ("x-acs-signature-method", "HMAC-SHA1".to_owned()),
                    ("x-acs-signature-version", "1.0".to_owned()),
                    ("x-acs-signature-nonce", nonce),
                    ("x-acs-version", call.version.to_owned()),
                    ("x-acs-action", call.action.to_owned()),
                ]);
                if let Some(token) = credentials.security_token() {
                    headers.push(("x-acs-accesskey-id", credentials.access_key_id().to_owned()));
                    headers.push(("x-acs-security-token", token.expose().to_owned()));
                }
                let signature = RoaStringToSign::new(
                    call.method,
                    call.path,
                    headers.iter().map(|(k, v)| (*k, v.as_str())),
                    call.query.iter().copied(),
                )
                .sign(credentials.access_key_secret().expose());
                headers.push((
                    "authorization",
                    format!("acs {}:{signature}", credentials.access_key_id()),
                ));
            }
        }

        let mut request = self.http.request(method, url);
        for (name, value) in &headers {
            if *name != "host" {
                request = request.header(*name, value);
            }
        }
        if !headers.iter().any(|(n, _)| *n == "accept") {
            request = request.header("accept", "application/json");
        }
        tracing::debug!(
            action = call.action,
            region = %self.region,
            attempt = attempt + 1,
            "calling ACR"
        );
        let secrets: Vec<&str> = credentials
            .security_token()
            .map(|t| t.expose())
            .into_iter()
            .chain([credentials.access_key_secret().expose()])
            .collect();
        let response = http::send(request, call.context)
            .await
            .map_err(|e| e.scrub(&secrets))?;
        crate::response::json_object(&response, call.context).map_err(|e| e.scrub(&secrets))
    }
}

/// Whether `id` looks like an Enterprise Edition instance id: `cri-` and at least one more
/// character, ASCII letters, digits, `-` and `_` only.
///
/// ```
/// use acr_auth_core::acr::is_instance_id;
/// assert!(is_instance_id("cri-abcdefghijklmnop"));
/// assert!(!is_instance_id(""));
/// assert!(!is_instance_id("cri-"));
/// assert!(!is_instance_id("registry.cn-hangzhou.aliyuncs.com"));
/// assert!(!is_instance_id("cri-abc def"));
/// ```
pub fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("cri-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn check_instance_id(instance_id: &str, context: &str) -> Result<(), Error> {
    if instance_id.is_empty() {
        return Err(Error::invalid_input(
            context,
            "instance id is empty (Enterprise Edition ids look like cri-xxxxxxxx; the Personal Edition has its own call)",
        ));
    }
    if !is_instance_id(instance_id) {
        return Err(Error::invalid_input(
            context,
            format!("{instance_id:?} is not an Enterprise Edition instance id (cri-xxxxxxxx)"),
        ));
    }
    Ok(())
}

fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", sign::percent_encode(k), sign::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// 32 random lower-case hex characters, as the official SDK sends.
pub(crate) fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a JSON body the way the client does, for property tests and tools: an error for
/// anything that is not a successful `GetAuthorizationToken` (Enterprise, `personal = false`) or
/// `GET /tokens` (Personal) response.
pub fn parse_token_response(
    status: u16,
    body: &[u8],
    personal: bool,
) -> Result<RegistryToken, Error> {
    let ctx = if personal {
        "ACR GET /tokens"
    } else {
        "ACR GetAuthorizationToken"
    };
    let resp = http::Response {
        status,
        body: body.to_vec(),
    };
    let obj = crate::response::json_object(&resp, ctx)?;
    if personal {
        RegistryToken::from_personal(&obj, ctx)
    } else {
        RegistryToken::from_enterprise(&obj, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_enterprise_response() {
        let body = br#"{"RequestId":"E069EB86-E6AD-4A98-ADDE-0E993390239A","ExpireTime":1571242083000,"Code":"success","IsSuccess":true,"TempUsername":"temp_user_cr","AuthorizationToken":"shaunadadakks:uuczxnjcyeyhdjadkkajsjdjadhyucb"}"#;
        let t = parse_token_response(200, body, false).unwrap();
        assert_eq!(t.username, "temp_user_cr");
        assert_eq!(
            t.password.expose(),
            "shaunadadakks:uuczxnjcyeyhdjadkkajsjdjadhyucb"
        );
        assert_eq!(clock::epoch_secs(t.expires_at), 1_571_242_083);
    }

    #[test]
    fn parses_documented_personal_response_and_lowercase_spellings() {
        let body = br#"{"data":{"authorizationToken":"eyJ0aW1lIjoiMTUyNjU0OTc5:0705733****","tempUserName":"cr_temp_user","expireDate":1526549792000},"requestId":"94E89857"}"#;
        let t = parse_token_response(200, body, true).unwrap();
        assert_eq!(t.username, "cr_temp_user");
        let lower = br#"{"tempusername":"u","authorizationtoken":"p","expiretime":"1000"}"#;
        let t = parse_token_response(200, lower, false).unwrap();
        assert_eq!((t.username.as_str(), t.password.expose()), ("u", "p"));
    }

    #[test]
    fn is_success_false_on_200_is_an_api_error() {
        let body = br#"{"IsSuccess":false,"Code":"INSTANCE_NOT_EXIST","Message":"instance missing","RequestId":"r1"}"#;
        let e = parse_token_response(200, body, false).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Api);
        assert_eq!(
            (e.code(), e.request_id(), e.status()),
            (Some("INSTANCE_NOT_EXIST"), Some("r1"), Some(200))
        );
    }

    #[test]
    fn lowercase_error_fields_parse() {
        let body = br#"{"code":"Throttling.User","message":"slow down","requestId":"r2"}"#;
        let e = parse_token_response(400, body, true).unwrap_err();
        assert_eq!(e.code(), Some("Throttling.User"));
        assert!(e.is_retryable());
    }

    #[test]
    fn typed_errors_for_missing_and_mistyped_fields() {
        let missing = parse_token_response(200, br#"{"TempUsername":"u","ExpireTime":1}"#, false)
            .unwrap_err();
        assert_eq!(missing.kind(), crate::ErrorKind::InvalidResponse);
        assert!(
            missing.message().contains("AuthorizationToken is missing"),
            "{missing}"
        );
        let typed = parse_token_response(
            200,
            br#"{"TempUsername":"u","AuthorizationToken":"p","ExpireTime":true}"#,
            false,
        )
        .unwrap_err();
        assert!(
            typed
                .message()
                .contains("ExpireTime should be a non-negative integer, found a boolean"),
            "{typed}"
        );
        let not_json = parse_token_response(200, b"<html>", false).unwrap_err();
        assert_eq!(not_json.kind(), crate::ErrorKind::InvalidResponse);
        let gateway = parse_token_response(502, b"<html>bad gateway</html>", false).unwrap_err();
        assert!(gateway.is_retryable());
    }

    #[test]
    fn absurd_expiry_times_are_typed_errors() {
        let enterprise = |expire: &str| {
            let body =
                format!(r#"{{"TempUsername":"u","AuthorizationToken":"p","ExpireTime":{expire}}}"#);
            parse_token_response(200, body.as_bytes(), false)
        };
        let cases = [
            // 10000-01-01T00:00:00Z in ms: one second past the last accepted time.
            (
                "253402300800000",
                "field ExpireTime is 253402300800000 ms after the Unix epoch, later than 9999-12-31T23:59:59Z",
            ),
            (
                "9223372036854775807",
                "field ExpireTime is 9223372036854775807 ms after the Unix epoch, later than 9999-12-31T23:59:59Z",
            ),
            (
                "-1571242083000",
                "field ExpireTime should be a non-negative integer, found the negative number -1571242083000",
            ),
            (
                "\"-5\"",
                "field ExpireTime should be a non-negative integer, found the string \"-5\"",
            ),
            (
                "1.5",
                "field ExpireTime should be a non-negative integer, found 1.5 (a fraction, or too large for 64 bits)",
            ),
        ];
        for (expire, want) in cases {
            let e = enterprise(expire).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidResponse, "{expire}");
            assert_eq!(e.message(), want, "{expire}");
        }
        let last = enterprise("253402300799000").unwrap();
        assert_eq!(clock::epoch_secs(last.expires_at), 253_402_300_799);

        let personal = br#"{"data":{"authorizationToken":"p","tempUserName":"u","expireDate":18446744073709551615}}"#;
        let e = parse_token_response(200, personal, true).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidResponse);
        assert_eq!(
            e.to_string(),
            "ACR GET /tokens: field expireDate is 18446744073709551615 ms after the Unix epoch, later than 9999-12-31T23:59:59Z"
        );
    }

    #[tokio::test]
    async fn malformed_instance_ids_are_refused_before_any_request() {
        // Nothing listens on port 1: a request would be a transport error.
        let client = AcrClient::builder("cn-hangzhou")
            .credentials(Credentials::new("a", "b"))
            .endpoint(Endpoint::Url("http://127.0.0.1:1".into()))
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        for id in [
            "",
            "cri-",
            "cri-a b",
            "registry.cn-hangzhou.aliyuncs.com",
            "i-123",
        ] {
            let e = client.get_authorization_token(id).await.unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{id:?}: {e}");
            let e = client.list_instance_endpoint(id).await.unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{id:?}: {e}");
        }
        let e = client.get_authorization_token("cri-abc").await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Transport, "{e}");
    }

    #[test]
    fn nonce_is_32_lowercase_hex_and_fresh() {
        let (a, b) = (new_nonce(), new_nonce());
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
    }

    #[test]
    fn endpoint_resolution() {
        let c = |b: AcrClientBuilder| {
            b.credentials(Credentials::new("a", "b"))
                .read_env(false)
                .build()
                .unwrap()
        };
        assert_eq!(
            c(AcrClient::builder("cn-beijing")).endpoint_url(),
            "https://cr.cn-beijing.aliyuncs.com/"
        );
        assert_eq!(
            c(AcrClient::builder("cn-beijing").vpc(true)).endpoint_url(),
            "https://cr-vpc.cn-beijing.aliyuncs.com/"
        );
        assert_eq!(
            c(AcrClient::builder("cn-beijing")
                .endpoint(Endpoint::Url("http://127.0.0.1:9/".into())))
            .endpoint_url(),
            "http://127.0.0.1:9/"
        );
        let bad = AcrClient::builder("cn beijing")
            .credentials(Credentials::new("a", "b"))
            .build()
            .unwrap_err();
        assert!(bad.to_string().contains("region \"cn beijing\""), "{bad}");
        // Without credentials: the default chain, not an error.
        let default_chain = AcrClient::builder("cn-beijing")
            .read_env(false)
            .build()
            .unwrap();
        assert!(
            format!("{default_chain:?}").contains("DefaultCredentialsChain"),
            "{default_chain:?}"
        );
    }
}
