//! The base identity ([docs/configuration.md][tokenmode]) read from the cluster, and the
//! cluster's region.
//!
//! [tokenmode]: https://github.com/acr-auth/acr-auth/blob/main/docs/configuration.md#tokenmode-and-the-base-identity

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acr_auth_core::cache::ExpiringCache;
use acr_auth_core::credentials::{
    decode_managed_role_token, resolve_token_mode, BoxFuture, ClusterFacts, Credentials,
    DefaultCredentialsChain, EcsMetadataProvider, IdentitySource, ProvideCredentials, ProviderEnv,
    SharedProvider, TokenMode,
};
use acr_auth_core::Error;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::Client;

/// Secret of registered / self-managed clusters.
pub const ADDON_SECRET: &str = "alibaba-addon-secret";
/// Secret with the ACK managed role's STS credentials.
pub const MANAGED_ROLE_SECRET: &str = "addon.aliyuncsmanagedacrrole.token";
const MANAGED_ROLE_KEY: &str = "addon.token.config";
const CTX: &str = "base identity";

/// The chosen base identity.
#[derive(Debug, Clone)]
pub struct BaseIdentity {
    /// Where credentials come from.
    pub provider: SharedProvider,
    /// The source.
    pub source: IdentitySource,
    /// Why it was chosen, for the log.
    pub reason: String,
}

fn kube_error(e: kube::Error) -> Error {
    Error::credentials(CTX, format!("cannot read from the API server: {e}"))
}

async fn secret(client: &Client, name: &str) -> Result<Option<Secret>, Error> {
    Api::<Secret>::namespaced(client.clone(), "kube-system")
        .get_opt(name)
        .await
        .map_err(kube_error)
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// The ACK managed role's credentials, read from its Secret again before they expire.
pub struct ManagedRoleProvider {
    client: Client,
    cache: ExpiringCache<Credentials>,
}

impl std::fmt::Debug for ManagedRoleProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedRoleProvider")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl ManagedRoleProvider {
    /// A provider reading `kube-system/addon.aliyuncsmanagedacrrole.token`.
    pub fn new(client: Client, env: &ProviderEnv) -> Self {
        Self {
            client,
            cache: ExpiringCache::new(Duration::from_secs(15 * 60), env.clock().clone()),
        }
    }

    async fn load(&self) -> Result<(Credentials, SystemTime), Error> {
        let s = secret(&self.client, MANAGED_ROLE_SECRET)
            .await?
            .ok_or_else(|| {
                Error::credentials(
                    CTX,
                    format!("Secret kube-system/{MANAGED_ROLE_SECRET} not found"),
                )
            })?;
        let payload = data(&s, MANAGED_ROLE_KEY).ok_or_else(|| {
            Error::credentials(
                CTX,
                format!("Secret kube-system/{MANAGED_ROLE_SECRET} has no {MANAGED_ROLE_KEY}"),
            )
        })?;
        let creds = decode_managed_role_token(&payload)?;
        let expires_at = creds.expires_at().expect("the payload has an expiration");
        Ok((creds, expires_at))
    }
}

impl ProvideCredentials for ManagedRoleProvider {
    fn provide_credentials(&self) -> BoxFuture<'_, Result<Credentials, Error>> {
        Box::pin(self.cache.get_or_load(|| self.load()))
    }
}

/// Chooses and builds the base identity for `mode` from what the cluster has.
pub async fn resolve_base_identity(
    client: &Client,
    mode: TokenMode,
    env: &ProviderEnv,
) -> Result<BaseIdentity, Error> {
    let kube_system = Api::<Namespace>::all(client.clone())
        .get_opt("kube-system")
        .await
        .map_err(kube_error)?;
    let addon = secret(client, ADDON_SECRET).await?;
    let managed = secret(client, MANAGED_ROLE_SECRET).await?;
    let mut facts = ClusterFacts::default();
    facts.kube_system_created = kube_system
        .and_then(|ns| ns.metadata.creation_timestamp)
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.0.as_second().max(0) as u64));
    facts.addon_secret = addon.is_some();
    facts.managed_role_secret = managed.is_some();
    // Ask the metadata service only when the choice depends on it.
    if mode == TokenMode::Auto
        && !facts.addon_secret
        && !env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED")
    {
        let probe = EcsMetadataProvider::from_env(env)?;
        facts.ecs_metadata = tokio::time::timeout(Duration::from_secs(3), probe.region())
            .await
            .is_ok_and(|r| r.is_ok());
    }
    let (source, reason) = resolve_token_mode(mode, &facts);
    let provider: SharedProvider = match source {
        IdentitySource::AddonSecret => {
            let s = addon.expect("chosen because present");
            // A blank value (empty or only whitespace, as `echo` into a Secret leaves) is an
            // error naming the key, not an AccessKey of "" that fails later at ACR.
            let key = |k: &str| {
                data(&s, k)
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        Error::credentials(
                            CTX,
                            format!(
                                "Secret kube-system/{ADDON_SECRET}: key {k} is missing or blank"
                            ),
                        )
                    })
            };
            Arc::new(Credentials::new(
                key("access-key-id")?,
                key("access-key-secret")?,
            ))
        }
        IdentitySource::ManagedRole => Arc::new(ManagedRoleProvider::new(client.clone(), env)),
        IdentitySource::WorkerRole => Arc::new(EcsMetadataProvider::from_env(env)?),
        IdentitySource::DefaultChain => Arc::new(DefaultCredentialsChain::new(env.clone())),
    };
    Ok(BaseIdentity {
        provider,
        source,
        reason,
    })
}

/// The cluster's region: `given` (flag or `ALIBABA_CLOUD_REGION_ID`), else the ECS metadata
/// service's `region-id`, else an error naming both.
pub async fn resolve_region(given: Option<String>, env: &ProviderEnv) -> Result<String, Error> {
    if let Some(r) = given.filter(|r| !r.is_empty()) {
        return Ok(r);
    }
    let from_metadata = if env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
        None
    } else {
        let p = EcsMetadataProvider::from_env(env)?;
        tokio::time::timeout(Duration::from_secs(3), p.region())
            .await
            .ok()
            .and_then(Result::ok)
    };
    from_metadata.ok_or_else(|| {
        Error::invalid_input(
            "cluster region",
            "unknown: pass --region or set ALIBABA_CLOUD_REGION_ID (the ECS metadata service did not answer)",
        )
    })
}
