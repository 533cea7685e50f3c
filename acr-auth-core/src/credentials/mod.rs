//! Alibaba Cloud credentials: the [`Credentials`] value, the [`ProvideCredentials`] trait, the
//! providers (static, environment, profile files, ECS metadata, STS `AssumeRole` and
//! `AssumeRoleWithOIDC`, credentials URI, the ACK managed-role payload) and the default chain.

mod chain;
mod ecs;
mod env;
mod managed;
mod profile;
mod sts;
mod token_mode;
mod uri;

pub use chain::DefaultCredentialsChain;
pub use ecs::{EcsMetadataProvider, DEFAULT_METADATA_ENDPOINT, METADATA_ENDPOINT_ENV};
pub use env::{FileSystem, InMemoryFs, ProviderEnv, RealFs};
pub use managed::decode_managed_role_token;
pub use profile::{cli_profile_provider, ini_file_provider, SharedProvider};
pub use sts::{
    sts_endpoint, AssumeRoleBuilder, AssumeRoleProvider, OidcBuilder, OidcProvider,
    DEFAULT_SESSION_DURATION, DEFAULT_SESSION_NAME, DEFAULT_STS_THRESHOLD, STS_ENDPOINT_ENV,
};
pub use token_mode::{
    managed_role_since, resolve_token_mode, ClusterFacts, IdentitySource, TokenMode,
    UnknownTokenMode, MANAGED_ROLE_SINCE_EPOCH_SECS,
};
pub use uri::CredentialsUriProvider;

use std::fmt;
use std::time::SystemTime;

use crate::SecretString;

/// An AccessKey pair, optionally temporary (STS) with its security token and expiry.
///
/// The secret and the token are redacted in `Debug`.
///
/// ```
/// use acr_auth_core::credentials::Credentials;
/// let c = Credentials::new("LTAI-id", "very-secret").with_security_token("CAIS-token");
/// let shown = format!("{c:?}");
/// assert!(shown.contains("LTAI-id"));
/// assert!(!shown.contains("very-secret") && !shown.contains("CAIS-token"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: SecretString,
    security_token: Option<SecretString>,
    expires_at: Option<SystemTime>,
}

impl Credentials {
    /// Long-lived AccessKey credentials.
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<SecretString>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: None,
            expires_at: None,
        }
    }

    /// Adds an STS security token.
    pub fn with_security_token(mut self, token: impl Into<SecretString>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    /// Sets when these credentials stop working.
    pub fn with_expiry(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// The AccessKey ID (not secret).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The AccessKey secret.
    pub fn access_key_secret(&self) -> &SecretString {
        &self.access_key_secret
    }

    /// The STS security token, for temporary credentials.
    pub fn security_token(&self) -> Option<&SecretString> {
        self.security_token.as_ref()
    }

    /// When these credentials expire, if they do.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A boxed future, as returned by [`ProvideCredentials`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Something that yields credentials on demand (static keys, STS, metadata...). Usable as
/// `Arc<dyn ProvideCredentials>`.
pub trait ProvideCredentials: Send + Sync + fmt::Debug {
    /// The credentials to sign the next request with.
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, crate::Error>>;
}

impl<T: ProvideCredentials + ?Sized> ProvideCredentials for std::sync::Arc<T> {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, crate::Error>> {
        (**self).provide_credentials()
    }
}

impl ProvideCredentials for Credentials {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, crate::Error>> {
        let c = self.clone();
        Box::pin(async move { Ok(c) })
    }
}

/// Credentials from the environment variables, read at every call (so a rotated variable set
/// by a wrapper is seen); a [`crate::ErrorKind::NotConfigured`] error when they are unset.
#[derive(Debug, Clone)]
pub struct EnvironmentProvider {
    env: ProviderEnv,
}

impl EnvironmentProvider {
    /// Reads the variables of `env` ([`ProviderEnv::process`] for the real environment).
    pub fn new(env: ProviderEnv) -> Self {
        Self { env }
    }
}

impl ProvideCredentials for EnvironmentProvider {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, crate::Error>> {
        let result = from_env_vars(|k| self.env.var(k)).and_then(|c| {
            c.ok_or_else(|| {
                crate::Error::not_configured(
                    "environment",
                    "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET not set",
                )
            })
        });
        Box::pin(async move { result })
    }
}

/// Static credentials from `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and
/// optionally `ALIBABA_CLOUD_SECURITY_TOKEN`, read through `lookup` (pass
/// `|k| std::env::var(k).ok()` for the process environment).
///
/// Returns `Ok(None)` when neither variable is set, and an error naming the missing one when
/// only one is.
///
/// ```
/// use acr_auth_core::credentials::from_env_vars;
/// let env = |k: &str| match k {
///     "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("id".to_owned()),
///     "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("sk".to_owned()),
///     _ => None,
/// };
/// let c = from_env_vars(env).unwrap().unwrap();
/// assert_eq!(c.access_key_id(), "id");
/// assert!(c.security_token().is_none());
/// ```
pub fn from_env_vars(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, crate::Error> {
    // Blank (whitespace-only) counts as unset: never an AccessKey of spaces.
    let get = |k: &str| {
        lookup(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let id = get("ALIBABA_CLOUD_ACCESS_KEY_ID");
    let secret = get("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
    match (id, secret) {
        (None, None) => Ok(None),
        (Some(id), Some(secret)) => {
            let c = Credentials::new(id, secret);
            Ok(Some(match get("ALIBABA_CLOUD_SECURITY_TOKEN") {
                Some(token) => c.with_security_token(token),
                None => c,
            }))
        }
        (Some(_), None) => Err(crate::Error::new(
            crate::ErrorKind::Credentials,
            "environment credentials",
            "ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not (or is blank)",
        )),
        (None, Some(_)) => Err(crate::Error::new(
            crate::ErrorKind::Credentials,
            "environment credentials",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not (or is blank)",
        )),
    }
}
