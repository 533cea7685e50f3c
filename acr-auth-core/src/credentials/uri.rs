//! Credentials from a URI (`ALIBABA_CLOUD_CREDENTIALS_URI`).

use std::time::SystemTime;

use reqwest::Url;
use serde_json::Value;

use super::sts::{expiry_of, parse_credential_fields};
use super::{BoxFuture, Credentials, ProvideCredentials, ProviderEnv};
use crate::cache::ExpiringCache;
use crate::error::Error;
use crate::http::{self, Timeouts};

const CTX: &str = "credentials URI";

/// `GET <uri>` answering `{"Code":"Success","AccessKeyId","AccessKeySecret","SecurityToken",
/// "Expiration"}`; cached and renewed ahead of expiry.
#[derive(Debug)]
pub struct CredentialsUriProvider {
    http: reqwest::Client,
    uri: Url,
    cache: ExpiringCache<Credentials>,
}

impl CredentialsUriProvider {
    /// A provider for `uri`.
    pub fn new(uri: &str, env: &ProviderEnv) -> Result<Self, Error> {
        let uri = Url::parse(uri)
            .map_err(|e| Error::invalid_input(CTX, format!("{uri:?} is not a URL: {e}")))?;
        Ok(Self {
            http: http::client_or_shared(env.http_client(), Timeouts::default())?,
            uri,
            cache: ExpiringCache::new(super::DEFAULT_STS_THRESHOLD, env.clock().clone()),
        })
    }

    /// Uses `client` (default: the environment's, else the process-wide shared client).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// From `ALIBABA_CLOUD_CREDENTIALS_URI`; not configured when it is unset.
    pub fn from_env(env: &ProviderEnv) -> Result<Self, Error> {
        match env.var("ALIBABA_CLOUD_CREDENTIALS_URI") {
            Some(uri) => Self::new(&uri, env),
            None => Err(Error::not_configured(
                CTX,
                "ALIBABA_CLOUD_CREDENTIALS_URI not set",
            )),
        }
    }

    async fn fetch(&self) -> Result<(Credentials, SystemTime), Error> {
        let resp = http::send(self.http.get(self.uri.clone()), CTX).await?;
        if resp.status != 200 {
            return Err(Error::api(
                CTX,
                resp.status,
                None,
                "the credentials URI did not answer 200",
                None,
            ));
        }
        let obj = match serde_json::from_slice::<Value>(&resp.body) {
            Ok(Value::Object(o)) => o,
            _ => {
                return Err(Error::invalid_response(
                    CTX,
                    "the answer is not a JSON object",
                ))
            }
        };
        let code = obj.get("Code").and_then(Value::as_str).unwrap_or_default();
        if code != "Success" {
            return Err(Error::credentials(
                CTX,
                format!("Code is {code:?}, expected \"Success\""),
            ));
        }
        let creds = parse_credential_fields(&obj, CTX)?;
        let expires_at = expiry_of(&creds, CTX)?;
        Ok((creds, expires_at))
    }
}

impl ProvideCredentials for CredentialsUriProvider {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, Error>> {
        Box::pin(self.cache.get_or_load(|| self.fetch()))
    }
}
