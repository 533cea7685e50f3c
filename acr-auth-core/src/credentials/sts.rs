//! STS: endpoint selection, and the `AssumeRole` and `AssumeRoleWithOIDC` providers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use serde_json::{Map, Value};

use super::{BoxFuture, Credentials, ProvideCredentials, ProviderEnv};
use crate::cache::ExpiringCache;
use crate::error::Error;
use crate::http::{self, RetryPolicy, Timeouts};
use crate::response::{self, field, required_str};
use crate::sign::{sign_rpc_request, Method, RpcRequest};
use crate::SecretString;

/// Environment variable overriding every STS endpoint (a base URL).
pub const STS_ENDPOINT_ENV: &str = "ACR_AUTH_STS_ENDPOINT";
const STS_VERSION: &str = "2015-04-01";
/// Renew STS credentials this long before they expire (half-life for shorter sessions).
pub const DEFAULT_STS_THRESHOLD: Duration = Duration::from_secs(15 * 60);
/// Default session length, as the official SDKs.
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(3600);
/// Default `RoleSessionName`.
pub const DEFAULT_SESSION_NAME: &str = "aliyun-acr-credential-helper";

/// Where to call STS.
///
/// Order: [`STS_ENDPOINT_ENV`]; an explicit endpoint (host or URL); `sts[-vpc].<region>` with
/// the region given or `ALIBABA_CLOUD_STS_REGION`, `-vpc` when asked or
/// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`; else the global `sts.aliyuncs.com`.
///
/// ```
/// use acr_auth_core::credentials::{sts_endpoint, ProviderEnv};
/// let env = ProviderEnv::from_vars([("ALIBABA_CLOUD_STS_REGION", "cn-beijing")]);
/// assert_eq!(sts_endpoint(None, None, false, &env), "https://sts.cn-beijing.aliyuncs.com");
/// assert_eq!(sts_endpoint(None, Some("cn-shanghai"), true, &env), "https://sts-vpc.cn-shanghai.aliyuncs.com");
/// assert_eq!(sts_endpoint(None, None, false, &ProviderEnv::from_vars([("", "")])), "https://sts.aliyuncs.com");
/// ```
pub fn sts_endpoint(
    explicit: Option<&str>,
    region: Option<&str>,
    vpc: bool,
    env: &ProviderEnv,
) -> String {
    if let Some(url) = env.var(STS_ENDPOINT_ENV) {
        return url;
    }
    if let Some(e) = explicit.filter(|e| !e.is_empty()) {
        return if e.contains("://") {
            e.to_owned()
        } else {
            format!("https://{e}")
        };
    }
    let vpc = vpc || env.flag("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED");
    match region
        .map(str::to_owned)
        .or_else(|| env.var("ALIBABA_CLOUD_STS_REGION"))
    {
        Some(r) => format!(
            "https://sts{}.{r}.aliyuncs.com",
            if vpc { "-vpc" } else { "" }
        ),
        None => "https://sts.aliyuncs.com".to_owned(),
    }
}

/// Calls STS actions (RPC, HMAC-SHA1; operation parameters in a form body as the official Go
/// SDK does, since an OIDC token can be 20 000 characters).
#[derive(Debug, Clone)]
pub(crate) struct StsCaller {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
    env: ProviderEnv,
}

impl StsCaller {
    pub(crate) fn new(
        endpoint: &str,
        env: ProviderEnv,
        http_client: Option<&reqwest::Client>,
        context: &str,
    ) -> Result<Self, Error> {
        let base = Url::parse(endpoint).map_err(|e| {
            Error::invalid_input(
                context,
                format!("STS endpoint {endpoint:?} is not a URL: {e}"),
            )
        })?;
        Ok(Self {
            http: http::client_or_shared(http_client.or(env.http_client()), Timeouts::default())?,
            base,
            retry: RetryPolicy::default(),
            env,
        })
    }

    /// Calls `action` and returns the credentials in its response.
    pub(crate) async fn assume(
        &self,
        context: &str,
        action: &str,
        form: &[(&str, String)],
        signer: Option<&Credentials>,
        secrets: &[&str],
    ) -> Result<Credentials, Error> {
        let obj = http::with_retry(&self.retry, |_| async {
            let mut req = RpcRequest::new(Method::Post, action, STS_VERSION);
            for (k, v) in form {
                req = req.form(*k, v.clone());
            }
            let nonce = crate::acr::new_nonce();
            let signed = sign_rpc_request(&req, signer, self.env.clock().now(), &nonce);
            let mut url = self.base.clone();
            url.set_query(Some(&signed.query));
            let mut request = self
                .http
                .post(url)
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded");
            if let Some(body) = signed.body {
                request = request.body(body);
            }
            let mut all_secrets: Vec<&str> = secrets.to_vec();
            if let Some(s) = signer {
                all_secrets.push(s.access_key_secret().expose());
                if let Some(t) = s.security_token() {
                    all_secrets.push(t.expose());
                }
            }
            let resp = http::send(request, context)
                .await
                .map_err(|e| e.scrub(&all_secrets))?;
            response::json_object(&resp, context).map_err(|e| e.scrub(&all_secrets))
        })
        .await?;
        parse_sts_credentials(&obj, context)
    }
}

/// Reads `Credentials {AccessKeyId, AccessKeySecret, SecurityToken, Expiration}`.
pub(crate) fn parse_sts_credentials(
    obj: &Map<String, Value>,
    context: &str,
) -> Result<Credentials, Error> {
    let creds = match field(obj, "Credentials") {
        Some(Value::Object(c)) => c,
        _ => {
            return Err(Error::invalid_response(
                context,
                "field Credentials is missing or not an object",
            ))
        }
    };
    parse_credential_fields(creds, context)
}

/// The expiry that [`parse_credential_fields`] always sets; an error rather than a panic should
/// that ever change.
pub(crate) fn expiry_of(creds: &Credentials, context: &str) -> Result<SystemTime, Error> {
    creds
        .expires_at()
        .ok_or_else(|| Error::invalid_response(context, "temporary credentials without an expiry"))
}

/// The four fields shared by STS, ECS metadata and credentials-URI responses.
pub(crate) fn parse_credential_fields(
    obj: &Map<String, Value>,
    context: &str,
) -> Result<Credentials, Error> {
    let expires_at = response::required_iso8601(obj, "Expiration", context)?;
    Ok(Credentials::new(
        required_str(obj, "AccessKeyId", context)?,
        required_str(obj, "AccessKeySecret", context)?,
    )
    .with_security_token(required_str(obj, "SecurityToken", context)?)
    .with_expiry(expires_at))
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    #[test]
    fn endpoint_selection_order() {
        let env = ProviderEnv::from_vars([
            ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
            ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
        ]);
        assert_eq!(
            sts_endpoint(None, None, false, &env),
            "https://sts-vpc.cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            sts_endpoint(None, Some("ap-southeast-1"), false, &env),
            "https://sts-vpc.ap-southeast-1.aliyuncs.com"
        );
        assert_eq!(
            sts_endpoint(Some("sts.example.internal"), Some("x"), true, &env),
            "https://sts.example.internal"
        );
        assert_eq!(
            sts_endpoint(Some("http://127.0.0.1:1"), None, false, &env),
            "http://127.0.0.1:1"
        );
        let overridden = ProviderEnv::from_vars([
            (STS_ENDPOINT_ENV, "http://127.0.0.1:9"),
            ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
        ]);
        assert_eq!(
            sts_endpoint(Some("sts.example.internal"), None, false, &overridden),
            "http://127.0.0.1:9"
        );
    }
}

fn validate_session(name: &str, duration: Duration, context: &str) -> Result<(), Error> {
    let valid_name = (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if !valid_name {
        return Err(Error::invalid_input(
            context,
            format!(
                "role session name {name:?} must be 2-64 characters of letters, digits and . @ - _"
            ),
        ));
    }
    let secs = duration.as_secs();
    if !(900..=43200).contains(&secs) {
        return Err(Error::invalid_input(
            context,
            format!("session duration {secs}s must be between 900 and 43200 seconds"),
        ));
    }
    Ok(())
}

fn validate_arn(arn: &str, kind: &str, context: &str) -> Result<(), Error> {
    if !arn.starts_with("acs:ram::") || !arn.contains(&format!(":{kind}/")) {
        return Err(Error::invalid_input(
            context,
            format!("{arn:?} is not a RAM {kind} ARN (acs:ram::<account>:{kind}/<name>)"),
        ));
    }
    Ok(())
}

/// The STS session setters both builders share.
macro_rules! session_setters {
    () => {
        /// `RoleSessionName` (default `aliyun-acr-credential-helper`).
        pub fn session_name(mut self, name: impl Into<String>) -> Self {
            self.session_name = name.into();
            self
        }
        /// Session length, 900 s to 43200 s (default 3600 s).
        pub fn duration(mut self, duration: Duration) -> Self {
            self.duration = duration;
            self
        }
        /// An inline policy narrowing the role's permissions.
        pub fn policy(mut self, policy: impl Into<String>) -> Self {
            self.policy = Some(policy.into());
            self
        }
        /// An explicit STS endpoint (host or URL); see [`sts_endpoint`].
        pub fn sts_endpoint(mut self, endpoint: impl Into<String>) -> Self {
            self.endpoint = Some(endpoint.into());
            self
        }
        /// The STS region; see [`sts_endpoint`].
        pub fn sts_region(mut self, region: impl Into<String>) -> Self {
            self.region = Some(region.into());
            self
        }
        /// Use the STS VPC endpoint.
        pub fn vpc(mut self, vpc: bool) -> Self {
            self.vpc = vpc;
            self
        }
        /// Renew this long before expiry (default 15 minutes).
        pub fn refresh_threshold(mut self, threshold: Duration) -> Self {
            self.threshold = threshold;
            self
        }
        /// The HTTP client for STS calls (default: the environment's
        /// ([`ProviderEnv::with_http_client`]), else the process-wide shared one).
        pub fn http_client(mut self, client: reqwest::Client) -> Self {
            self.http = Some(client);
            self
        }
    };
}

/// STS `AssumeRole` over any source of credentials, cached and renewed ahead of expiry.
#[derive(Debug)]
pub struct AssumeRoleProvider {
    source: Arc<dyn ProvideCredentials>,
    role_arn: String,
    session_name: String,
    duration: Duration,
    policy: Option<String>,
    external_id: Option<String>,
    caller: StsCaller,
    cache: ExpiringCache<Credentials>,
}

/// Builds an [`AssumeRoleProvider`].
#[derive(Debug)]
pub struct AssumeRoleBuilder {
    source: Arc<dyn ProvideCredentials>,
    role_arn: String,
    session_name: String,
    duration: Duration,
    policy: Option<String>,
    external_id: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    vpc: bool,
    threshold: Duration,
    env: ProviderEnv,
    http: Option<reqwest::Client>,
}

impl AssumeRoleProvider {
    /// Assume `role_arn` with credentials from `source`.
    pub fn builder(
        source: Arc<dyn ProvideCredentials>,
        role_arn: impl Into<String>,
    ) -> AssumeRoleBuilder {
        AssumeRoleBuilder {
            source,
            role_arn: role_arn.into(),
            session_name: DEFAULT_SESSION_NAME.to_owned(),
            duration: DEFAULT_SESSION_DURATION,
            policy: None,
            external_id: None,
            endpoint: None,
            region: None,
            vpc: false,
            threshold: DEFAULT_STS_THRESHOLD,
            env: ProviderEnv::process(),
            http: None,
        }
    }

    async fn fetch(&self) -> Result<(Credentials, SystemTime), Error> {
        const CTX: &str = "STS AssumeRole";
        let source = self.source.provide_credentials().await?;
        let mut form = vec![
            ("RoleArn", self.role_arn.clone()),
            ("RoleSessionName", self.session_name.clone()),
            ("DurationSeconds", self.duration.as_secs().to_string()),
        ];
        if let Some(p) = &self.policy {
            form.push(("Policy", p.clone()));
        }
        if let Some(e) = &self.external_id {
            form.push(("ExternalId", e.clone()));
        }
        let creds = self
            .caller
            .assume(CTX, "AssumeRole", &form, Some(&source), &[])
            .await?;
        let expires_at = expiry_of(&creds, CTX)?;
        tracing::info!(role = %self.role_arn, session = %self.session_name, "assumed role");
        Ok((creds, expires_at))
    }
}

impl AssumeRoleBuilder {
    session_setters!();
    /// The role's external id.
    pub fn external_id(mut self, external_id: impl Into<String>) -> Self {
        self.external_id = Some(external_id.into());
        self
    }
    /// The environment for endpoint selection and the clock (default: the process).
    pub fn env(mut self, env: ProviderEnv) -> Self {
        self.env = env;
        self
    }
    /// Validates the settings and builds the provider.
    pub fn build(self) -> Result<AssumeRoleProvider, Error> {
        const CTX: &str = "STS AssumeRole";
        validate_arn(&self.role_arn, "role", CTX)?;
        validate_session(&self.session_name, self.duration, CTX)?;
        let endpoint = sts_endpoint(
            self.endpoint.as_deref(),
            self.region.as_deref(),
            self.vpc,
            &self.env,
        );
        Ok(AssumeRoleProvider {
            caller: StsCaller::new(&endpoint, self.env.clone(), self.http.as_ref(), CTX)?,
            cache: ExpiringCache::new(self.threshold, self.env.clock().clone()),
            source: self.source,
            role_arn: self.role_arn,
            session_name: self.session_name,
            duration: self.duration,
            policy: self.policy,
            external_id: self.external_id,
        })
    }
}

impl ProvideCredentials for AssumeRoleProvider {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, Error>> {
        Box::pin(self.cache.get_or_load(|| self.fetch()))
    }
}

/// Where an [`OidcProvider`] gets its OIDC token.
#[derive(Debug, Clone)]
enum OidcToken {
    /// Read on every renewal (projected ServiceAccount tokens rotate).
    File(PathBuf),
    /// Given once (a token the kubelet handed to a credential provider plugin).
    Inline(SecretString),
}

/// STS `AssumeRoleWithOIDC` (RRSA): anonymous, with the OIDC token read from a file on every
/// renewal (projected ServiceAccount tokens rotate), or given inline.
#[derive(Debug)]
pub struct OidcProvider {
    role_arn: String,
    provider_arn: String,
    token: OidcToken,
    session_name: String,
    duration: Duration,
    policy: Option<String>,
    caller: StsCaller,
    env: ProviderEnv,
    cache: ExpiringCache<Credentials>,
}

/// Builds an [`OidcProvider`].
#[derive(Debug)]
pub struct OidcBuilder {
    role_arn: String,
    provider_arn: String,
    token: OidcToken,
    session_name: String,
    duration: Duration,
    policy: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    vpc: bool,
    threshold: Duration,
    env: ProviderEnv,
    http: Option<reqwest::Client>,
}

impl OidcProvider {
    /// Assume `role_arn` through the OIDC provider `provider_arn` with the token in `token_file`.
    pub fn builder(
        role_arn: impl Into<String>,
        provider_arn: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> OidcBuilder {
        Self::builder_for(role_arn, provider_arn, OidcToken::File(token_file.into()))
    }

    /// Assume `role_arn` through the OIDC provider `provider_arn` with `token` itself (for
    /// example the ServiceAccount token a kubelet sends its credential provider plugin). The
    /// token is never logged or shown in errors.
    ///
    /// ```
    /// use acr_auth_core::credentials::OidcProvider;
    /// let p = OidcProvider::builder_with_token(
    ///     "acs:ram::123:role/puller",
    ///     "acs:ram::123:oidc-provider/ack-rrsa",
    ///     "eyJ-secret-token",
    /// )
    /// .build()
    /// .unwrap();
    /// assert!(!format!("{p:?}").contains("eyJ-secret-token"));
    /// ```
    pub fn builder_with_token(
        role_arn: impl Into<String>,
        provider_arn: impl Into<String>,
        token: impl Into<SecretString>,
    ) -> OidcBuilder {
        Self::builder_for(role_arn, provider_arn, OidcToken::Inline(token.into()))
    }

    fn builder_for(
        role_arn: impl Into<String>,
        provider_arn: impl Into<String>,
        token: OidcToken,
    ) -> OidcBuilder {
        OidcBuilder {
            role_arn: role_arn.into(),
            provider_arn: provider_arn.into(),
            token,
            session_name: DEFAULT_SESSION_NAME.to_owned(),
            duration: DEFAULT_SESSION_DURATION,
            policy: None,
            endpoint: None,
            region: None,
            vpc: false,
            threshold: DEFAULT_STS_THRESHOLD,
            env: ProviderEnv::process(),
            http: None,
        }
    }

    /// From `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
    /// `ALIBABA_CLOUD_OIDC_TOKEN_FILE` and optionally `ALIBABA_CLOUD_ROLE_SESSION_NAME`;
    /// a [`crate::ErrorKind::NotConfigured`] error naming the missing variables otherwise.
    pub fn from_env(env: &ProviderEnv) -> Result<Self, Error> {
        let names = [
            "ALIBABA_CLOUD_ROLE_ARN",
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        ];
        let values: Vec<Option<String>> = names.iter().map(|n| env.var(n)).collect();
        let missing: Vec<&str> = names
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            return Err(Error::not_configured(
                "OIDC (RRSA)",
                format!("{} not set", missing.join(", ")),
            ));
        }
        let [role, provider, file] =
            [&values[0], &values[1], &values[2]].map(|v| v.clone().unwrap_or_default());
        let mut b = Self::builder(role, provider, file).env(env.clone());
        if let Some(name) = env.var("ALIBABA_CLOUD_ROLE_SESSION_NAME") {
            b = b.session_name(name);
        }
        b.build()
    }

    async fn fetch(&self) -> Result<(Credentials, SystemTime), Error> {
        const CTX: &str = "STS AssumeRoleWithOIDC";
        let token = match &self.token {
            OidcToken::File(file) => {
                let token = self.env.read_file(file).map_err(|e| {
                    Error::credentials(
                        CTX,
                        format!("cannot read the OIDC token file {}: {e}", file.display()),
                    )
                })?;
                let token = token.trim().to_owned();
                if token.is_empty() {
                    return Err(Error::credentials(
                        CTX,
                        format!("the OIDC token file {} is empty", file.display()),
                    ));
                }
                token
            }
            OidcToken::Inline(token) => {
                let token = token.expose().trim().to_owned();
                if token.is_empty() {
                    return Err(Error::credentials(CTX, "the OIDC token is empty"));
                }
                token
            }
        };
        let mut form = vec![
            ("RoleArn", self.role_arn.clone()),
            ("OIDCProviderArn", self.provider_arn.clone()),
            ("OIDCToken", token.clone()),
            ("RoleSessionName", self.session_name.clone()),
            ("DurationSeconds", self.duration.as_secs().to_string()),
        ];
        if let Some(p) = &self.policy {
            form.push(("Policy", p.clone()));
        }
        let creds = self
            .caller
            .assume(CTX, "AssumeRoleWithOIDC", &form, None, &[&token])
            .await?;
        let expires_at = expiry_of(&creds, CTX)?;
        tracing::info!(role = %self.role_arn, "assumed role with OIDC");
        Ok((creds, expires_at))
    }
}

impl OidcBuilder {
    session_setters!();
    /// The environment: token file reads, endpoint selection, the clock (default: the process).
    pub fn env(mut self, env: ProviderEnv) -> Self {
        self.env = env;
        self
    }
    /// Validates the settings and builds the provider.
    pub fn build(self) -> Result<OidcProvider, Error> {
        const CTX: &str = "STS AssumeRoleWithOIDC";
        validate_arn(&self.role_arn, "role", CTX)?;
        validate_arn(&self.provider_arn, "oidc-provider", CTX)?;
        validate_session(&self.session_name, self.duration, CTX)?;
        let endpoint = sts_endpoint(
            self.endpoint.as_deref(),
            self.region.as_deref(),
            self.vpc,
            &self.env,
        );
        Ok(OidcProvider {
            caller: StsCaller::new(&endpoint, self.env.clone(), self.http.as_ref(), CTX)?,
            cache: ExpiringCache::new(self.threshold, self.env.clock().clone()),
            role_arn: self.role_arn,
            provider_arn: self.provider_arn,
            token: self.token,
            session_name: self.session_name,
            duration: self.duration,
            policy: self.policy,
            env: self.env,
        })
    }
}

impl ProvideCredentials for OidcProvider {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, Error>> {
        Box::pin(self.cache.get_or_load(|| self.fetch()))
    }
}
