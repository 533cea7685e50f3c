//! The ECS instance RAM role, from the instance metadata service.

use std::time::{Duration, SystemTime};

use reqwest::Url;
use serde_json::Value;

use super::sts::{expiry_of, parse_credential_fields};
use super::{BoxFuture, Credentials, ProvideCredentials, ProviderEnv};
use crate::cache::ExpiringCache;
use crate::error::{Error, ErrorKind};
use crate::http::{self, Timeouts};

/// Environment variable overriding the metadata endpoint (a base URL).
pub const METADATA_ENDPOINT_ENV: &str = "ACR_AUTH_METADATA_ENDPOINT";
/// The metadata service.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// Lifetime requested for the hardened-mode session token (the SDKs' value).
const SESSION_TOKEN_TTL: Duration = Duration::from_secs(21600);
const CTX: &str = "ECS metadata";

/// Credentials of the instance's RAM role.
///
/// Hardened mode first: a session token from `PUT /latest/api/token` is sent with every read.
/// If that fails, plain reads are used unless `ALIBABA_CLOUD_IMDSV1_DISABLED=true`. The role is
/// `ALIBABA_CLOUD_ECS_METADATA` or discovered. Credentials are cached; while the service fails,
/// the last good ones are served until they expire.
#[derive(Debug)]
pub struct EcsMetadataProvider {
    http: reqwest::Client,
    base: Url,
    role_name: Option<String>,
    imdsv1_disabled: bool,
    session_token: ExpiringCache<String>,
    credentials: ExpiringCache<Credentials>,
    env: ProviderEnv,
}

impl EcsMetadataProvider {
    /// Configured from the environment: [`METADATA_ENDPOINT_ENV`], `ALIBABA_CLOUD_ECS_METADATA`
    /// (role name) and `ALIBABA_CLOUD_IMDSV1_DISABLED`.
    pub fn from_env(env: &ProviderEnv) -> Result<Self, Error> {
        let endpoint = env
            .var(METADATA_ENDPOINT_ENV)
            .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_owned());
        let base = Url::parse(&endpoint).map_err(|e| {
            Error::invalid_input(
                CTX,
                format!("metadata endpoint {endpoint:?} is not a URL: {e}"),
            )
        })?;
        Ok(Self {
            http: http::client_or_shared(
                env.http_client(),
                Timeouts {
                    connect: Duration::from_secs(1),
                    read: Duration::from_secs(1),
                },
            )?,
            base,
            role_name: env.var("ALIBABA_CLOUD_ECS_METADATA"),
            imdsv1_disabled: env.flag("ALIBABA_CLOUD_IMDSV1_DISABLED"),
            session_token: ExpiringCache::new(Duration::from_secs(600), env.clock().clone()),
            credentials: ExpiringCache::new(super::DEFAULT_STS_THRESHOLD, env.clock().clone()),
            env: env.clone(),
        })
    }

    /// Uses `client` for the metadata service (default: the environment's, else the
    /// process-wide shared client with 1 s timeouts).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Sets the role name instead of discovering it.
    pub fn with_role_name(mut self, role: impl Into<String>) -> Self {
        self.role_name = Some(role.into());
        self
    }

    /// The region of the instance (`/latest/meta-data/region-id`).
    pub async fn region(&self) -> Result<String, Error> {
        let token = self.token().await?;
        let region = self
            .get("/latest/meta-data/region-id", token.as_deref())
            .await?;
        Ok(region.trim().to_owned())
    }

    async fn token(&self) -> Result<Option<String>, Error> {
        let fetched = self
            .session_token
            .get_or_load(|| async {
                let url = self.base.join("/latest/api/token").expect("static path");
                let req = self.http.put(url).header(
                    "X-aliyun-ecs-metadata-token-ttl-seconds",
                    SESSION_TOKEN_TTL.as_secs().to_string(),
                );
                let resp = http::send(req, CTX).await?;
                if resp.status != 200 {
                    return Err(Error::api(
                        CTX,
                        resp.status,
                        None,
                        "cannot get a metadata session token",
                        None,
                    ));
                }
                let token = String::from_utf8(resp.body)
                    .map_err(|_| Error::invalid_response(CTX, "the session token is not UTF-8"))?;
                Ok((
                    token.trim().to_owned(),
                    self.env.clock().now() + SESSION_TOKEN_TTL,
                ))
            })
            .await;
        match fetched {
            Ok(t) => Ok(Some(t)),
            Err(e) if self.imdsv1_disabled => Err(Error::credentials(
                CTX,
                format!(
                    "the hardened-mode session token failed and ALIBABA_CLOUD_IMDSV1_DISABLED=true: {}",
                    e.message()
                ),
            )
            .caused_by(e)),
            Err(e) => {
                tracing::debug!(error = %e, "no metadata session token; using plain mode");
                if e.kind() == ErrorKind::Transport || e.kind() == ErrorKind::Timeout {
                    // Nothing answers at all: not on ECS.
                    return Err(not_on_ecs(&e));
                }
                Ok(None)
            }
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<String, Error> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Error::invalid_input(CTX, e.to_string()))?;
        let mut req = self.http.get(url);
        if let Some(t) = token {
            req = req.header("X-aliyun-ecs-metadata-token", t);
        }
        let resp = http::send(req, CTX).await?;
        match resp.status {
            200 => String::from_utf8(resp.body)
                .map_err(|_| Error::invalid_response(CTX, format!("{path} is not UTF-8"))),
            404 => Err(Error::not_configured(
                CTX,
                format!("{path} not found (no RAM role attached to the instance?)"),
            )),
            s => Err(Error::api(CTX, s, None, format!("GET {path} failed"), None)),
        }
    }

    async fn fetch(&self) -> Result<(Credentials, SystemTime), Error> {
        let token = self.token().await?;
        let role = match &self.role_name {
            Some(r) => r.clone(),
            None => {
                let listed = self
                    .get(
                        "/latest/meta-data/ram/security-credentials/",
                        token.as_deref(),
                    )
                    .await
                    .map_err(|e| {
                        if e.kind() == ErrorKind::Transport || e.kind() == ErrorKind::Timeout {
                            not_on_ecs(&e)
                        } else {
                            e
                        }
                    })?;
                let role = listed
                    .trim()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                if role.is_empty() {
                    return Err(Error::not_configured(
                        CTX,
                        "no RAM role is attached to the instance",
                    ));
                }
                role
            }
        };
        let body = self
            .get(
                &format!("/latest/meta-data/ram/security-credentials/{role}"),
                token.as_deref(),
            )
            .await?;
        let obj = match serde_json::from_str::<Value>(&body) {
            Ok(Value::Object(o)) => o,
            _ => {
                return Err(Error::invalid_response(
                    CTX,
                    "role credentials are not a JSON object",
                ))
            }
        };
        let code = obj.get("Code").and_then(Value::as_str).unwrap_or_default();
        if code != "Success" {
            return Err(Error::credentials(
                CTX,
                format!("role credentials have Code {code:?}, expected \"Success\""),
            ));
        }
        let creds = parse_credential_fields(&obj, CTX)?;
        let expires_at = expiry_of(&creds, CTX)?;
        tracing::info!(%role, "fetched instance RAM role credentials");
        Ok((creds, expires_at))
    }
}

fn not_on_ecs(e: &Error) -> Error {
    Error::not_configured(
        CTX,
        format!(
            "the metadata service does not answer (not on ECS?): {}",
            e.message()
        ),
    )
}

impl ProvideCredentials for EcsMetadataProvider {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, Error>> {
        Box::pin(self.credentials.get_or_load(|| self.fetch()))
    }
}
