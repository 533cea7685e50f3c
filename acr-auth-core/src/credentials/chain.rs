//! The default credential chain, in the official SDKs' order.

use std::fmt::Write as _;

use super::profile::{cli_profile_provider, ini_file_provider, SharedProvider};
use super::{
    from_env_vars, BoxFuture, Credentials, CredentialsUriProvider, EcsMetadataProvider,
    EnvironmentProvider, OidcProvider, ProvideCredentials, ProviderEnv,
};
use crate::error::{Error, ErrorKind};

const CTX: &str = "default credential chain";

/// The sources, in order.
const SOURCES: [&str; 6] = [
    "environment",
    "OIDC (RRSA)",
    "aliyun CLI profile",
    "credentials file",
    "ECS instance RAM role",
    "credentials URI",
];

/// Tries, in order: environment variables, OIDC (RRSA) variables, the aliyun CLI config, the
/// INI credentials file, the ECS instance RAM role, the credentials URI.
///
/// A source that is not set up here is skipped; the first that yields credentials is used from
/// then on; a source that is set up but fails stops the chain. The error says, for every
/// source tried, why it was skipped or how it failed.
///
/// Creating the chain reads nothing: the sources are looked at on the first
/// [`provide_credentials`](ProvideCredentials::provide_credentials).
#[derive(Debug)]
pub struct DefaultCredentialsChain {
    env: ProviderEnv,
    profile: Option<String>,
    chosen: tokio::sync::OnceCell<(&'static str, SharedProvider)>,
}

impl DefaultCredentialsChain {
    /// The chain over `env` (use [`ProviderEnv::process`] for the real environment).
    pub fn new(env: ProviderEnv) -> Self {
        Self {
            env,
            profile: None,
            chosen: tokio::sync::OnceCell::new(),
        }
    }

    /// Every source calls out with `client` instead of the process-wide shared client (same as
    /// building the chain over [`ProviderEnv::with_http_client`]).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.env = self.env.with_http_client(client);
        self
    }

    /// Use this aliyun CLI profile, and only it: an explicit profile wins over the environment
    /// variables and every other source (as `aliyun --profile` does), and a profile that is
    /// missing is an error rather than a silent fall-through to other credentials.
    pub fn with_profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// The source in use, once one has yielded credentials.
    pub fn chosen_source(&self) -> Option<&'static str> {
        self.chosen.get().map(|(name, _)| *name)
    }

    fn build(&self, source: &str) -> Result<SharedProvider, Error> {
        let env = &self.env;
        Ok(match source {
            // Present variables become static credentials; absent ones an EnvironmentProvider,
            // which reports "not configured" so the chain moves on.
            "environment" => match from_env_vars(|k| env.var(k))? {
                Some(c) => std::sync::Arc::new(c),
                None => std::sync::Arc::new(EnvironmentProvider::new(env.clone())),
            },
            "OIDC (RRSA)" => std::sync::Arc::new(OidcProvider::from_env(env)?),
            "aliyun CLI profile" => cli_profile_provider(env, self.profile.as_deref())?,
            "credentials file" => ini_file_provider(env)?,
            "ECS instance RAM role" => {
                if env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
                    return Err(Error::not_configured(
                        source,
                        "ALIBABA_CLOUD_ECS_METADATA_DISABLED=true",
                    ));
                }
                std::sync::Arc::new(EcsMetadataProvider::from_env(env)?)
            }
            "credentials URI" => std::sync::Arc::new(CredentialsUriProvider::from_env(env)?),
            _ => unreachable!("every source is listed"),
        })
    }

    async fn resolve(&self) -> Result<(Credentials, &'static str, SharedProvider), Error> {
        let mut tried = String::new();
        let sources: &[&'static str] = match self.profile {
            Some(_) => &["aliyun CLI profile"],
            None => &SOURCES,
        };
        for (i, &source) in sources.iter().enumerate() {
            let attempt = match self.build(source) {
                Ok(provider) => provider.provide_credentials().await.map(|c| (c, provider)),
                Err(e) => Err(e),
            };
            match attempt {
                Ok((c, provider)) => return Ok((c, source, provider)),
                Err(e) if e.kind() == ErrorKind::NotConfigured => {
                    let _ = write!(tried, "{}. {source}: skipped, {}; ", i + 1, e.message());
                }
                Err(e) => {
                    // The status, Code and RequestId move to the chain's error (its Display
                    // shows them once, up front).
                    let _ = write!(
                        tried,
                        "{}. {source}: FAILED, {}: {}",
                        i + 1,
                        e.context(),
                        e.message()
                    );
                    return Err(Error::credentials(
                        CTX,
                        format!("a configured source failed. {tried}"),
                    )
                    .caused_by(e));
                }
            }
        }
        Err(Error::credentials(
            CTX,
            format!("no credentials found. {}", tried.trim_end_matches("; ")),
        ))
    }
}

impl ProvideCredentials for DefaultCredentialsChain {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, Error>> {
        Box::pin(async move {
            if let Some((_, provider)) = self.chosen.get() {
                return provider.provide_credentials().await;
            }
            let (creds, source, provider) = self.resolve().await?;
            if self.chosen.set((source, provider)).is_ok() {
                tracing::info!(source, "credentials found by the default chain");
            }
            Ok(creds)
        })
    }
}
