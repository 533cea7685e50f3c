//! Registry credential sources: for each `acr-registry-info` item, the identity chain, the ACR
//! client and the token cache that yield `{token, hosts}`.
//!
//! Identity, first match wins: `customAccessKey*`, then RRSA (`AssumeRoleWithOIDC`, when
//! `rrsa.enable`), then the base identity; then `assumeRoleARN` if set. Identical identities
//! share one provider, and items naming the same (instance, region, identity) share one token
//! cache, so the number of ACR calls never depends on how often a registry is listed.
//!
//! Without `acr-registry-info`, the hosts of the legacy `acr-registry` key are the items (see
//! [`legacy_registries`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::acr::{
    enterprise_registry_hosts, personal_registry_hosts, AcrClient, Endpoint, RegistryToken,
};
use crate::cache::{ExpiringCache, FailureBackoff};
use crate::config::{HelperConfig, RegistryItem};
use crate::credentials::{
    AssumeRoleProvider, Credentials, OidcProvider, ProviderEnv, SharedProvider,
};
use crate::error::Error;
use crate::http::RetryPolicy;

mod legacy;

use legacy::{legacy_items, InstanceByName};
pub use legacy::{legacy_registries, LegacyRegistry};

/// Where the ACK RRSA webhook mounts the projected OIDC token by default.
pub const DEFAULT_RRSA_TOKEN_FILE: &str = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token";
/// How long an instance's endpoint list is reused before `ListInstanceEndpoint` is called again.
pub const ENDPOINTS_TTL: Duration = Duration::from_secs(3600);

/// A registry login and the hosts it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// The temporary login.
    pub token: RegistryToken,
    /// Registry hosts to write it for.
    pub hosts: Vec<String>,
    /// The source's adoption key ([`RegistrySource::adoption_key`]): recorded next to the
    /// credential in the cluster, so a later process finds which token is whose. Empty when the
    /// credential did not come from a source.
    pub source: String,
}

/// What every source shares.
///
/// Fields may be added in minor releases: build it with [`SourceSettings::new`] and set the
/// rest.
///
/// ```
/// use std::sync::Arc;
/// use acr_auth_core::credentials::{Credentials, ProviderEnv};
/// use acr_auth_core::http::RetryPolicy;
/// use acr_auth_core::source::SourceSettings;
/// let mut settings = SourceSettings::new(
///     "cn-hangzhou",
///     Arc::new(Credentials::new("LTAI-example", "example-secret")),
///     "static AccessKey",
/// );
/// settings.retry = RetryPolicy::none();
/// settings.env = ProviderEnv::process();
/// assert!(settings.acr_endpoint.is_none());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SourceSettings {
    /// The cluster's region (items without `regionId`).
    pub cluster_region: String,
    /// The base identity: what items without an identity of their own start from
    /// ([docs/configuration.md][tokenmode]).
    ///
    /// [tokenmode]: https://github.com/acr-auth/acr-auth/blob/main/docs/configuration.md#tokenmode-and-the-base-identity
    pub base_identity: SharedProvider,
    /// A description of the base identity, for summaries ("ECS instance RAM role").
    pub base_identity_name: String,
    /// Environment: STS/metadata endpoint overrides, the RRSA token file, the clock, and the
    /// HTTP client of every provider and ACR client ([`ProviderEnv::with_http_client`]).
    pub env: ProviderEnv,
    /// An explicit ACR endpoint for every client (default: per region, or `ACR_AUTH_ACR_ENDPOINT`).
    pub acr_endpoint: Option<Endpoint>,
    /// Retry policy of the ACR clients.
    pub retry: RetryPolicy,
}

impl SourceSettings {
    /// Settings for a cluster in `cluster_region` whose base identity is `base_identity`
    /// (described as `base_identity_name` in summaries): the process environment, the regional
    /// ACR endpoints (or `ACR_AUTH_ACR_ENDPOINT`), the default retry policy.
    pub fn new(
        cluster_region: impl Into<String>,
        base_identity: SharedProvider,
        base_identity_name: impl Into<String>,
    ) -> Self {
        Self {
            cluster_region: cluster_region.into(),
            base_identity,
            base_identity_name: base_identity_name.into(),
            env: ProviderEnv::process(),
            acr_endpoint: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// One item's source of registry credentials.
#[derive(Debug)]
pub struct RegistrySource {
    description: String,
    identity_chain: String,
    region: String,
    instance_id: Option<String>,
    domains: Vec<String>,
    custom_domains: Vec<String>,
    client: Arc<AcrClient>,
    tokens: Arc<ExpiringCache<RegistryToken>>,
    endpoints: Option<Arc<ExpiringCache<Vec<String>>>>,
    clock: crate::time::SharedClock,
    /// An opaque stable id of (instance, region, identity): see [`RegistrySource::adoption_key`].
    adoption_key: String,
    /// An Enterprise Edition instance named by a legacy `acr-registry` host instead of an id.
    instance_by_name: Option<InstanceByName>,
}

/// The sources of a whole configuration.
#[derive(Debug)]
pub struct RegistrySources {
    sources: Vec<Arc<RegistrySource>>,
    /// What a rebuild may reuse, keyed by everything that defines each piece.
    shared: Shared,
}

/// Identities, clients and caches, keyed so that two items (or two builds) share one exactly
/// when nothing that defines it differs.
#[derive(Debug, Default)]
struct Shared {
    identities: HashMap<String, SharedProvider>,
    clients: HashMap<(String, String), Arc<AcrClient>>,
    token_caches: HashMap<String, Arc<ExpiringCache<RegistryToken>>>,
    endpoint_caches: HashMap<String, Arc<ExpiringCache<Vec<String>>>>,
    instance_id_caches: HashMap<String, Arc<ExpiringCache<String>>>,
}

impl Shared {
    /// The pieces of `previous` still used by `sources` (the rest are dropped).
    fn retain_used(&mut self, sources: &[Arc<RegistrySource>]) {
        self.token_caches
            .retain(|_, c| sources.iter().any(|s| Arc::ptr_eq(&s.tokens, c)));
        self.endpoint_caches.retain(|_, c| {
            sources
                .iter()
                .any(|s| s.endpoints.as_ref().is_some_and(|e| Arc::ptr_eq(e, c)))
        });
        self.clients
            .retain(|_, c| sources.iter().any(|s| Arc::ptr_eq(&s.client, c)));
    }
}

/// How one registry's credential stands.
#[derive(Debug, Clone)]
pub enum CredentialState {
    /// Renewed on time.
    Fresh(RegistryCredential),
    /// Renewal fails; the last good credential is still valid and served.
    Stale {
        /// The last good credential.
        last_good: RegistryCredential,
        /// The latest renewal error.
        error: Error,
    },
    /// No valid credential: it never worked, or the last good one expired.
    Unavailable(Error),
}

impl CredentialState {
    /// The credential to write, if there is a valid one.
    pub fn credential(&self) -> Option<&RegistryCredential> {
        match self {
            CredentialState::Fresh(c) => Some(c),
            CredentialState::Stale { last_good, .. } => Some(last_good),
            CredentialState::Unavailable(_) => None,
        }
    }

    /// The error, if the latest attempt failed.
    pub fn error(&self) -> Option<&Error> {
        match self {
            CredentialState::Fresh(_) => None,
            CredentialState::Stale { error, .. } | CredentialState::Unavailable(error) => {
                Some(error)
            }
        }
    }
}

/// The items of a configuration: `acr-registry-info`, or the Personal Edition registry of the
/// cluster's region when it is empty.
fn effective_items(config: &HelperConfig) -> Vec<RegistryItem> {
    if config.registries.is_empty() {
        vec![RegistryItem {
            expire_duration: crate::config::DEFAULT_EXPIRE_DURATION,
            ..RegistryItem::default()
        }]
    } else {
        config.registries.clone()
    }
}

/// Describes the identity chain of an item without building anything ("RRSA role X -> AssumeRole Y").
pub fn describe_identity(item: &RegistryItem, rrsa_enabled: bool, base: &str) -> String {
    let mut chain = if let Some(ak) = &item.custom_access_key {
        let shown: String = ak.chars().take(6).collect();
        format!("customAccessKey {shown}***")
    } else if let (true, Some(role)) = (rrsa_enabled, &item.rrsa_role_arn) {
        format!("RRSA (AssumeRoleWithOIDC {role})")
    } else {
        base.to_owned()
    };
    if let Some(role) = &item.assume_role_arn {
        chain.push_str(&format!(
            " -> AssumeRole {role} ({}s)",
            item.expire_duration.as_secs()
        ));
    }
    chain
}

impl RegistrySources {
    /// Builds a source per item of `config`, sharing identities and token caches.
    pub fn build(config: &HelperConfig, settings: &SourceSettings) -> Result<Self, Error> {
        Self::rebuild(config, settings, None)
    }

    /// Like [`RegistrySources::build`], reusing from `previous` (built with the same
    /// `settings`) every identity, client and token cache that an item of `config` defines
    /// identically: a configuration edit that leaves an item alone keeps its STS session and
    /// its token (no new call, no new Secret content).
    pub fn rebuild(
        config: &HelperConfig,
        settings: &SourceSettings,
        previous: Option<&RegistrySources>,
    ) -> Result<Self, Error> {
        let clock = settings.env.clock().clone();
        let mut shared = Shared::default();
        if let Some(p) = previous {
            shared.identities = p.shared.identities.clone();
            shared.clients = p.shared.clients.clone();
            shared.token_caches = p.shared.token_caches.clone();
            shared.endpoint_caches = p.shared.endpoint_caches.clone();
            shared.instance_id_caches = p.shared.instance_id_caches.clone();
        }
        let Shared {
            identities,
            clients,
            token_caches,
            endpoint_caches,
            instance_id_caches,
        } = &mut shared;
        let mut sources = Vec::new();
        let items = match legacy_items(config, &settings.cluster_region)? {
            Some(legacy) => legacy,
            None => effective_items(config)
                .into_iter()
                .map(|i| (i, None))
                .collect(),
        };
        for (index, (item, instance_name)) in items.iter().enumerate() {
            let context = format!("acr-registry-info[{index}]");
            let region = item
                .region_id
                .clone()
                .unwrap_or_else(|| settings.cluster_region.clone());
            let (identity_key, identity) =
                identity_for(item, config.rrsa_enabled, settings, identities, &context)?;
            let client = match clients.get(&(region.clone(), identity_key.clone())) {
                Some(c) => c.clone(),
                None => {
                    let mut b = AcrClient::builder(&region)
                        .credentials_provider(identity)
                        .retry(settings.retry)
                        .clock(clock.clone());
                    if let Some(e) = &settings.acr_endpoint {
                        b = b.endpoint(e.clone());
                    }
                    if let Some(h) = settings.env.http_client() {
                        b = b.http_client(h.clone());
                    }
                    let c = Arc::new(b.build()?);
                    clients.insert((region.clone(), identity_key.clone()), c.clone());
                    c
                }
            };
            let instance = item.instance_id.clone();
            let by_name_key = instance_name.as_ref().map(|name| format!("name:{name}"));
            // The threshold is part of the key: a cache renews at the threshold it was made with.
            let token_key = format!(
                "{}|{region}|{identity_key}|{}",
                instance
                    .as_deref()
                    .or(by_name_key.as_deref())
                    .unwrap_or("personal"),
                config.expiring_threshold.as_millis()
            );
            // What identifies this token across processes: not the threshold (a new threshold
            // keeps the token), and hashed (the identity key names AccessKey ids).
            let adoption_key = short_digest(&format!(
                "{}|{region}|{identity_key}",
                instance
                    .as_deref()
                    .or(by_name_key.as_deref())
                    .unwrap_or("personal")
            ));
            // No per-token jitter: a controller's tokens renew together (see
            // `RegistrySource::credential_early`); renewals across a fleet are spread by the
            // controllers' own start times.
            let tokens = token_caches
                .entry(token_key)
                .or_insert_with(|| {
                    Arc::new(
                        ExpiringCache::new(config.expiring_threshold, clock.clone())
                            .with_max_jitter(Duration::ZERO)
                            .with_failure_backoff(FailureBackoff::CONTROLLER),
                    )
                })
                .clone();
            let endpoints = instance.as_ref().map(|id| {
                endpoint_caches
                    .entry(format!("{id}|{region}|{identity_key}"))
                    .or_insert_with(|| {
                        Arc::new(
                            ExpiringCache::new(Duration::ZERO, clock.clone())
                                .with_max_jitter(Duration::ZERO)
                                .with_failure_backoff(FailureBackoff::CONTROLLER),
                        )
                    })
                    .clone()
            });
            let instance_by_name = instance_name.as_ref().map(|name| {
                let ids = instance_id_caches
                    .entry(format!("{name}|{region}|{identity_key}"))
                    .or_insert_with(|| Arc::new(InstanceByName::id_cache(clock.clone())))
                    .clone();
                InstanceByName::new(name.clone(), item.domains.clone(), ids, clock.clone())
            });
            let description = match &instance {
                Some(id) => format!("Enterprise Edition {id} in {region}"),
                None => format!("Personal Edition in {region}"),
            };
            let description = match &instance_by_name {
                Some(by_name) => by_name.description(&region),
                None => description,
            };
            sources.push(Arc::new(RegistrySource {
                description,
                identity_chain: describe_identity(
                    item,
                    config.rrsa_enabled,
                    &settings.base_identity_name,
                ),
                region,
                instance_id: instance,
                domains: item.domains.clone(),
                custom_domains: item.custom_domains.clone(),
                client,
                tokens,
                endpoints,
                clock: clock.clone(),
                adoption_key,
                instance_by_name,
            }));
        }
        shared.retain_used(&sources);
        Ok(Self { sources, shared })
    }

    /// Every source, in configuration order.
    pub fn sources(&self) -> &[Arc<RegistrySource>] {
        &self.sources
    }
}

fn identity_for(
    item: &RegistryItem,
    rrsa_enabled: bool,
    settings: &SourceSettings,
    identities: &mut HashMap<String, SharedProvider>,
    context: &str,
) -> Result<(String, SharedProvider), Error> {
    let (mut key, mut provider): (String, SharedProvider) =
        if let (Some(ak), Some(sk)) = (&item.custom_access_key, &item.custom_access_key_secret) {
            // The secret's digest is in the key: a rotated secret is a new identity.
            let key = format!("ak:{ak}:{}", short_digest(sk.expose()));
            let p = identities
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Credentials::new(ak.clone(), sk.clone())))
                .clone();
            (key, p)
        } else if let (true, Some(role), Some(oidc)) = (
            rrsa_enabled,
            &item.rrsa_role_arn,
            &item.rrsa_oidc_provider_arn,
        ) {
            let key = format!(
                "rrsa:{role}|{oidc}|{}|{}",
                item.role_session_name.as_deref().unwrap_or_default(),
                item.sts_endpoint.as_deref().unwrap_or_default()
            );
            let p = match identities.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let file = settings
                        .env
                        .var("ALIBABA_CLOUD_OIDC_TOKEN_FILE")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_RRSA_TOKEN_FILE));
                    let mut b = OidcProvider::builder(role.clone(), oidc.clone(), file)
                        .env(settings.env.clone());
                    if let Some(name) = &item.role_session_name {
                        b = b.session_name(name.clone());
                    }
                    if let Some(e) = &item.sts_endpoint {
                        b = b.sts_endpoint(e.clone());
                    }
                    let p: SharedProvider = Arc::new(b.build().map_err(|e| e.in_context(context))?);
                    identities.insert(key.clone(), p.clone());
                    p
                }
            };
            (key, p)
        } else {
            ("base".to_owned(), settings.base_identity.clone())
        };
    if let Some(role) = &item.assume_role_arn {
        let session = item
            .role_session_name
            .clone()
            .unwrap_or_else(|| crate::credentials::DEFAULT_SESSION_NAME.to_owned());
        key = format!(
            "{key}->{role}|{session}|{}|{}",
            item.expire_duration.as_secs(),
            item.sts_endpoint.as_deref().unwrap_or_default()
        );
        provider = match identities.get(&key) {
            Some(p) => p.clone(),
            None => {
                let mut b = AssumeRoleProvider::builder(provider, role.clone())
                    .session_name(session)
                    .duration(item.expire_duration)
                    .env(settings.env.clone());
                if let Some(e) = &item.sts_endpoint {
                    b = b.sts_endpoint(e.clone());
                }
                let p: SharedProvider = Arc::new(b.build().map_err(|e| e.in_context(context))?);
                identities.insert(key.clone(), p.clone());
                p
            }
        };
    }
    Ok((key, provider))
}

/// A short hex SHA-256 of `secret`: tells two secrets apart in a cache key without holding them.
fn short_digest(secret: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl RegistrySource {
    /// "Enterprise Edition cri-xxx in cn-hangzhou".
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The identity chain, e.g. "ECS instance RAM role -> AssumeRole acs:ram::1:role/x (3600s)".
    pub fn identity_chain(&self) -> &str {
        &self.identity_chain
    }

    /// The region called.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The current credential, renewed when due (see [`ExpiringCache`]).
    pub async fn credential(&self) -> Result<RegistryCredential, Error> {
        self.credential_early(Duration::ZERO).await
    }

    /// [`RegistrySource::credential`], renewing the token if it is due within `early`: call it
    /// for every source when one is due, so they renew in the same pass.
    pub async fn credential_early(&self, early: Duration) -> Result<RegistryCredential, Error> {
        match self.credential_state(early).await {
            CredentialState::Fresh(c) | CredentialState::Stale { last_good: c, .. } => Ok(c),
            CredentialState::Unavailable(e) => Err(e),
        }
    }

    /// How this registry's credential stands, renewing it if it is due within `early` (and
    /// the failure backoff allows an attempt): a failed renewal is reported from the first
    /// failed attempt on, while the last good credential is still served.
    pub async fn credential_state(&self, early: Duration) -> CredentialState {
        let loaded = self
            .tokens
            .get_or_load_status(early, || async {
                let token = match self.token_instance_id().await?.as_deref() {
                    Some(id) => self.client.get_authorization_token(id).await?,
                    None => self.client.get_personal_token().await?,
                };
                tracing::info!(
                    registry = %self.description,
                    expires_at = %crate::time::format_iso8601(token.expires_at),
                    "fetched a registry token"
                );
                let expires_at = token.expires_at;
                Ok((token, expires_at))
            })
            .await;
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => return CredentialState::Unavailable(e),
        };
        let hosts = match self.hosts().await {
            Ok(h) => h,
            Err(e) => return CredentialState::Unavailable(e),
        };
        let credential = RegistryCredential {
            token: loaded.value,
            hosts,
            source: self.adoption_key.clone(),
        };
        match loaded.renewal_error {
            None => CredentialState::Fresh(credential),
            Some(error) => CredentialState::Stale {
                last_good: credential,
                error,
            },
        }
    }

    /// The Enterprise Edition instance whose tokens this source fetches: the configured id, or
    /// the id of the instance a legacy `acr-registry` host names; `None` for Personal Edition.
    async fn token_instance_id(&self) -> Result<Option<String>, Error> {
        match (&self.instance_id, &self.instance_by_name) {
            (Some(id), _) => Ok(Some(id.clone())),
            (None, Some(by_name)) => by_name.resolve(&self.client).await.map(Some),
            (None, None) => Ok(None),
        }
    }

    /// When the cached token is due for renewal, if one is cached.
    pub fn renew_at(&self) -> Option<SystemTime> {
        self.tokens.renew_at_time()
    }

    /// When a call would contact ACR next: the renewal time, or the end of the failure
    /// backoff while renewals fail; `None` when nothing was fetched or tried yet.
    pub fn next_attempt_at(&self) -> Option<SystemTime> {
        let tokens = self.tokens.next_attempt_at();
        // The endpoint list is only read after a token was had: while the token fails, its
        // (possibly long expired) refresh time is not a reason to wake up.
        if !self.has_token() {
            return tokens;
        }
        let endpoints = self.endpoints.as_ref().and_then(|e| e.next_attempt_at());
        match (tokens, endpoints) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets the cached token (a replica that leads again adopts what the cluster holds
    /// instead of writing a token from its previous term).
    pub fn forget_token(&self) {
        self.tokens.invalidate();
    }

    /// Failed token and endpoint requests so far (a counter: each failed attempt counts once).
    pub fn failed_attempts(&self) -> u64 {
        self.tokens.failed_attempts() + self.endpoints.as_ref().map_or(0, |e| e.failed_attempts())
    }

    /// An opaque, stable id of this source's token: the same (instance, region, identity) in
    /// another process, or after a configuration edit, has the same key.
    pub fn adoption_key(&self) -> &str {
        &self.adoption_key
    }

    /// Whether a token is cached (fresh or last good).
    pub fn has_token(&self) -> bool {
        self.tokens.peek().is_some()
    }

    /// Puts a token found in the cluster (our Secret, written by an earlier process or leader)
    /// into this source's cache, so it is used until its renewal point without a token call.
    /// The hosts are not adopted: they follow the current configuration (an Enterprise
    /// instance's list is fetched again), so an edit made while the controller was down is
    /// honoured. `false` when it has expired or a later one is cached.
    pub fn adopt(&self, token: RegistryToken) -> bool {
        let expires_at = token.expires_at;
        if !self.tokens.seed(token, expires_at) {
            return false;
        }
        true
    }

    async fn hosts(&self) -> Result<Vec<String>, Error> {
        let mut hosts = match (&self.instance_id, &self.endpoints) {
            // `domains` are used as given: they may name hosts `ListInstanceEndpoint` does not
            // report, and then the call is not needed at all.
            _ if !self.domains.is_empty() => self.domains.clone(),
            (Some(id), Some(cache)) => {
                cache
                    .get_or_load(|| async {
                        let eps = self.client.list_instance_endpoint(id).await?;
                        Ok((
                            enterprise_registry_hosts(&eps),
                            self.clock.now() + ENDPOINTS_TTL,
                        ))
                    })
                    .await?
            }
            _ => personal_registry_hosts(&self.region).to_vec(),
        };
        for d in &self.custom_domains {
            if !hosts.contains(d) {
                hosts.push(d.clone());
            }
        }
        Ok(hosts)
    }
}
