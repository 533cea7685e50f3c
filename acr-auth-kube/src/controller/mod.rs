//! The controller: watches (kube-rs reflectors) on Namespaces, ServiceAccounts, our Secrets and
//! the `acr-configuration` ConfigMap; the configuration re-read live (the last good one stays in
//! force when an edit is invalid); registry credentials through the shared sources (renewed at
//! the threshold, one fetch per registry); and plan + apply after every change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::events::{EventNote, EventRecorder, EventType};
use acr_auth_core::config::HelperConfig;
use acr_auth_core::credentials::TokenMode;
use acr_auth_core::source::{CredentialState, RegistryCredential, RegistrySources, SourceSettings};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::Config as WatchConfig;
use kube::Client;
use tokio::sync::Notify;

mod adopt;
mod backoff;
mod quiet;
mod spread;
mod stores;
mod webhook_config;

use spread::Spread;

use backoff::WriteBackoff;
use quiet::LogLimiter;
pub use spread::DEFAULT_RENEWAL_SPREAD;
use stores::{
    credential_versions, namespace_info, namespace_ranges, reflect, secret_info,
    service_account_info, snapshot_range, trim_configmap, trim_credential_secret, watch_compact,
    Compact, WatchTasks,
};

use crate::apply::{self, ApplyError};
use crate::identity::{resolve_base_identity, ADDON_SECRET, MANAGED_ROLE_SECRET};
use crate::leader::{LeaderElector, Leadership, LeaseSettings};
use crate::ops::{FailureLabels, Ops, RegistryLabels, ResultLabels, WriteLabels};
use crate::plan::{
    NamespaceInfo, Planner, SecretInfo, ServiceAccountInfo, Write, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
};
use crate::webhook::{LiveContext, WebhookSettings};

/// Tokens due within this long of each other are renewed in the same pass. Tokens fetched in the
/// same pass are due milliseconds apart (their caches have no jitter), so a second is plenty,
/// and short next to any renewal interval.
const RENEW_TOGETHER: Duration = Duration::from_secs(1);

/// Writes in flight at once during a pass.
const WRITE_CONCURRENCY: usize = 16;

/// Namespaces planned at a time: a pass plans and writes the cluster in parts, so what it holds
/// (the records it plans from and the writes it plans) is bounded by this, not by the cluster.
const PLAN_BATCH: usize = 1_000;

/// What the controller needs to run. Fields may be added in minor releases: build it with
/// [`ControllerSettings::new`] and set the rest.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use acr_auth_core::credentials::Credentials;
/// use acr_auth_core::source::SourceSettings;
/// use acr_auth_kube::controller::ControllerSettings;
/// let sources = SourceSettings::new(
///     "cn-hangzhou",
///     Arc::new(Credentials::new("LTAI-example", "example-secret")),
///     "static AccessKey",
/// );
/// let mut settings = ControllerSettings::new(sources);
/// settings.resync = Duration::from_secs(60);
/// settings.dry_run = true;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ControllerSettings {
    /// Namespace of the configuration ConfigMap (`kube-system`).
    pub config_namespace: String,
    /// Its name (`acr-configuration`).
    pub config_name: String,
    /// Identity, region, endpoints for the registry credential sources.
    pub sources: SourceSettings,
    /// Log every write instead of making it.
    pub dry_run: bool,
    /// Re-plan at least this often, even without changes.
    pub resync: Duration,
    /// Elect one writer among replicas on this Lease; `None`: this replica always writes.
    pub leader_election: Option<LeaseSettings>,
    /// Watch the credential Secrets (`alibaba-addon-secret`, the managed-role Secret) and choose
    /// the base identity again for this `tokenMode` when they change; `None`: the identity in
    /// `sources` is kept for the controller's lifetime.
    pub identity_refresh: Option<TokenMode>,
    /// Where the admission webhook is served: with it, the controller keeps the
    /// MutatingWebhookConfiguration in line with `webhook-configuration` (created when
    /// enabled, updated on policy/timeout edits, deleted when disabled).
    pub webhook: Option<WebhookSettings>,
    /// Renewal writes (a Secret whose old token stays valid for more than twice this) are
    /// spread over this window, each namespace at its own stable offset; zero writes them at
    /// once. New namespaces, ServiceAccounts, registries and hosts are always written at once.
    pub renewal_spread: Duration,
}

impl ControllerSettings {
    /// `kube-system/acr-configuration`, no dry run, a 5-minute resync, no leader election, a
    /// fixed base identity, renewals spread over [`DEFAULT_RENEWAL_SPREAD`].
    pub fn new(sources: SourceSettings) -> Self {
        Self {
            config_namespace: "kube-system".to_owned(),
            config_name: "acr-configuration".to_owned(),
            sources,
            dry_run: false,
            resync: Duration::from_secs(300),
            leader_election: None,
            identity_refresh: None,
            webhook: None,
            renewal_spread: DEFAULT_RENEWAL_SPREAD,
        }
    }
}

/// A failure that stops the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The watches could not start.
    #[error("the watches did not sync: {0}")]
    Sync(String),
}

/// Statistics of one pass, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Writes planned.
    pub planned: usize,
    /// Writes that succeeded (or were logged in dry-run mode).
    pub applied: usize,
    /// Writes that hit a conflict (the pass is retried).
    pub conflicts: usize,
    /// Writes that failed otherwise.
    pub failed: usize,
    /// Writes not sent because their object waits out a backoff after a failure.
    pub deferred: usize,
    /// Writes the API server throttled (429; also counted in `failed`).
    pub throttled: usize,
    /// Renewal writes waiting for their place in the renewal window.
    pub spread: usize,
}

/// The controller.
pub struct Controller {
    client: Client,
    /// The client of leader election (see [`Controller::with_lease_client`]).
    lease_client: Client,
    settings: ControllerSettings,
    recorder: Arc<EventRecorder>,
    ops: Ops,
    webhook_context: Arc<LiveContext>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The configuration the controller acts on. "No configuration accepted yet" is its own state:
/// in it nothing is written and, above all, nothing is deleted or detached.
enum ConfigState {
    /// No configuration accepted in this process (the ConfigMap is invalid, or its registry
    /// sources could not be built): the cluster is left exactly as it is.
    NotAccepted,
    /// The last good configuration and its registry sources (a later invalid edit leaves it in
    /// force).
    Accepted(Box<Accepted>),
}

struct Accepted {
    /// Shared with the webhook.
    config: Arc<HelperConfig>,
    sources: RegistrySources,
    /// Whether the tokens in our Secrets were looked at for these sources (once per build).
    adoption_tried: bool,
}

/// What the controller remembers of one registry between passes.
#[derive(Default)]
struct RegistryRecord {
    /// The token expiry last seen, to count renewals.
    expires_at: Option<std::time::SystemTime>,
    /// Failed attempts already counted in the metric.
    failed_attempts: u64,
    /// The failure last reported (an Event goes out when it starts or changes).
    failing: Option<String>,
}

struct Live {
    /// Identity, region, endpoints: the base identity changes when the credential Secrets do.
    sources_settings: SourceSettings,
    /// `(name, resourceVersion)` of the credential Secrets the identity was chosen with.
    credential_secrets: Vec<(String, String)>,
    /// Per registry (by description).
    registries: BTreeMap<String, RegistryRecord>,
    state: ConfigState,
    /// The ConfigMap data last read (`Some(None)`: there was none); `None`: read it again.
    config_data: Option<Option<BTreeMap<String, String>>>,
    /// The error of the last invalid configuration read, if it is still the latest.
    invalid: Option<String>,
    /// Secrets of our name that a create found to exist and not be ours, with when that was
    /// learnt. Our watch is label-selected and never sees them go, so each is forgotten after
    /// `resync` and the create tried again: a Secret its owner deleted is then replaced by ours.
    not_ours: BTreeMap<(String, String), tokio::time::Instant>,
    /// Writes that failed, paced per object.
    backoff: WriteBackoff,
    /// The MutatingWebhookConfiguration last written (`Some(None)`: made sure there is none).
    webhook_applied: Option<Option<serde_json::Value>>,
    /// When the MutatingWebhookConfiguration was last compared with the cluster: it is read
    /// again every resync, so an edit or deletion by someone else is repaired.
    webhook_checked: tokio::time::Instant,
    /// Consecutive failed MutatingWebhookConfiguration writes and when to try again.
    webhook_retry: Option<(u32, tokio::time::Instant)>,
    /// Failure logs, rate-limited per cause.
    logs: LogLimiter,
    /// The Secret content being rolled out and since when (the start of its renewal window).
    rollout: Option<([u8; 32], tokio::time::Instant)>,
    /// When the next spread renewal write is due.
    spread_next: Option<tokio::time::Instant>,
}

impl Live {
    fn accepted(&self) -> Option<&Accepted> {
        match &self.state {
            ConfigState::Accepted(a) => Some(a),
            ConfigState::NotAccepted => None,
        }
    }
}

impl Controller {
    /// A controller over `client`.
    ///
    /// Build the client with `kube::Config::default_retry = false` (as the reference binary
    /// does): the controller retries each failed write itself, with backoff, and counts and
    /// logs 429s; kube's built-in retry would hide throttling and hold a pass.
    pub fn new(client: Client, settings: ControllerSettings) -> Self {
        let recorder = Arc::new(EventRecorder::new(
            client.clone(),
            "aliyun-acr-credential-helper",
        ));
        let ops = Ops::new(settings.sources.env.clock().clone());
        Self {
            lease_client: client.clone(),
            client,
            settings,
            recorder,
            ops,
            webhook_context: Arc::new(LiveContext::default()),
        }
    }

    /// Renews the Lease through `client` instead of the controller's own. Give it a client
    /// without a client-side rate limit ([`crate::pacing`]): a renewal queued behind a burst of
    /// writes, or held by a `Retry-After`, would make the leader step down.
    pub fn with_lease_client(mut self, client: Client) -> Self {
        self.lease_client = client;
        self
    }

    /// What the admission webhook answers with: this controller's live configuration and
    /// namespaces (pass it to [`crate::webhook::serve`]).
    pub fn webhook_context(&self) -> Arc<LiveContext> {
        self.webhook_context.clone()
    }

    /// The metrics and health this controller reports (serve them with [`crate::ops::serve`]).
    pub fn ops(&self) -> Ops {
        self.ops.clone()
    }

    /// Records an Event in the series of (`on`, `reason`, `subject`): a repeat carries the
    /// latest note (`subject` is the registry for registry events, else `""`).
    async fn event(
        &self,
        type_: EventType,
        reason: &str,
        subject: &str,
        note: String,
        on: k8s_openapi::api::core::v1::ObjectReference,
    ) {
        let ev = EventNote {
            type_,
            reason,
            action: "Reconcile",
            subject,
            note,
        };
        let now = self.settings.sources.env.clock().now();
        if let Err(e) = self.recorder.publish(&ev, &on, now).await {
            tracing::warn!(error = %e, reason, "could not record an Event");
        }
    }

    fn configmap_ref(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some(self.settings.config_name.clone()),
            namespace: Some(self.settings.config_namespace.clone()),
            ..Default::default()
        }
    }

    /// Runs until `shutdown` completes. With leader election, the watches run on every
    /// replica (a standby is ready to take over at once) and only the leader fetches tokens and
    /// writes; on shutdown the leader stops writing, then releases the Lease.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ControllerError> {
        let leadership = match self.settings.leader_election {
            None => Leadership::always(),
            Some(_) => Arc::new(Leadership::default()),
        };
        // The elector runs inside this future (not as a detached task): if the controller is
        // dropped, nothing renews the Lease any more and another replica takes over.
        let (stop_elector, elector_stopped) = tokio::sync::oneshot::channel::<()>();
        let elector = async {
            if let Some(lease) = &self.settings.leader_election {
                LeaderElector::new(
                    self.lease_client.clone(),
                    lease.clone(),
                    self.settings.sources.env.clock().clone(),
                )
                .run(leadership.clone(), async move {
                    let _ = elector_stopped.await;
                })
                .await;
            }
        };
        let main = async {
            let result = {
                let mut shutdown = std::pin::pin!(shutdown);
                tokio::select! {
                    r = self.serve(&leadership) => r,
                    _ = &mut shutdown => {
                        tracing::info!("shutting down");
                        Ok(())
                    }
                }
            };
            // Writing has stopped (the serving future is dropped): now the Lease can go.
            self.ops.health.set_leader(false);
            self.ops.metrics.leader.set(0);
            let _ = stop_elector.send(());
            result
        };
        let (result, ()) = tokio::join!(main, elector);
        result
    }

    async fn serve(&self, leadership: &Arc<Leadership>) -> Result<(), ControllerError> {
        let trigger = Arc::new(Notify::new());
        let client = self.client.clone();
        // Dropped (aborting the watches) when this function returns.
        let mut tasks = WatchTasks(Vec::new());
        let managed = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
        let namespaces = watch_compact(
            Api::<Namespace>::all(client.clone()),
            WatchConfig::default(),
            namespace_info,
            trigger.clone(),
            &mut tasks,
        );
        let service_accounts = watch_compact(
            Api::<ServiceAccount>::all(client.clone()),
            WatchConfig::default(),
            service_account_info,
            trigger.clone(),
            &mut tasks,
        );
        let secrets = watch_compact(
            Api::<Secret>::all(client.clone()),
            WatchConfig::default().labels(&managed),
            secret_info,
            trigger.clone(),
            &mut tasks,
        );
        let configmaps = reflect(
            Api::<ConfigMap>::namespaced(client.clone(), &self.settings.config_namespace),
            WatchConfig::default().fields(&format!("metadata.name={}", self.settings.config_name)),
            trim_configmap,
            trigger.clone(),
            &mut tasks,
        );
        let mut credential_stores = Vec::new();
        if self.settings.identity_refresh.is_some() {
            for name in [ADDON_SECRET, MANAGED_ROLE_SECRET] {
                credential_stores.push(reflect(
                    Api::<Secret>::namespaced(client.clone(), "kube-system"),
                    WatchConfig::default().fields(&format!("metadata.name={name}")),
                    trim_credential_secret,
                    trigger.clone(),
                    &mut tasks,
                ));
            }
        }
        for (name, ready) in [
            ("namespaces", namespaces.wait_until_ready().await.is_ok()),
            (
                "serviceaccounts",
                service_accounts.wait_until_ready().await.is_ok(),
            ),
            ("secrets", secrets.wait_until_ready().await.is_ok()),
            ("configmaps", configmaps.wait_until_ready().await.is_ok()),
        ] {
            if !ready {
                return Err(ControllerError::Sync(name.to_owned()));
            }
        }
        for store in &credential_stores {
            if store.wait_until_ready().await.is_err() {
                return Err(ControllerError::Sync("credential secrets".to_owned()));
            }
        }
        tracing::info!("watches synced");
        self.webhook_context.attach({
            let namespaces = namespaces.clone();
            Box::new(move |name: &str| namespaces.get("", name))
        });
        self.ops.health.set_synced(true);

        let mut live = Live {
            sources_settings: self.settings.sources.clone(),
            credential_secrets: credential_versions(&credential_stores),
            registries: BTreeMap::new(),
            state: ConfigState::NotAccepted,
            config_data: None,
            invalid: None,
            not_ours: BTreeMap::new(),
            backoff: WriteBackoff::default(),
            webhook_applied: None,
            webhook_checked: tokio::time::Instant::now(),
            webhook_retry: None,
            logs: LogLimiter::default(),
            rollout: None,
            spread_next: None,
        };
        let mut was_leader = false;
        // The ConfigMap version a standby last parsed for the webhook.
        let mut standby_seen = None;
        loop {
            if !leadership.is_leader() {
                if was_leader {
                    tracing::info!("no longer the leader; standing by");
                }
                was_leader = false;
                self.ops.health.set_leader(false);
                self.ops.metrics.leader.set(0);
                self.standby_webhook_config(&configmaps, &mut standby_seen);
                tokio::select! {
                    _ = leadership.wait_until(true) => {}
                    _ = trigger.notified() => {}
                }
                continue;
            }
            if !was_leader {
                was_leader = true;
                self.ops.health.set_leader(true);
                self.ops.metrics.leader.set(1);
                // Start from what the cluster holds now: the tokens in our Secrets may be newer
                // than ours from a previous term (another leader renewed them), so they are
                // adopted again rather than written over.
                live.not_ours.clear();
                live.webhook_applied = None;
                live.backoff = WriteBackoff::default();
                if let ConfigState::Accepted(a) = &mut live.state {
                    for source in a.sources.sources() {
                        source.forget_token();
                    }
                    a.adoption_tried = false;
                }
            }
            self.refresh_identity(&credential_stores, &mut live).await;
            self.load_config(&configmaps, &mut live).await;
            let mut next_wake = tokio::time::Instant::now() + self.settings.resync;
            if live.accepted().is_some() {
                self.sync_webhook_configuration(&mut live).await;
                let credentials = self.credentials(&mut live).await;
                let started = std::time::Instant::now();
                let report = self
                    .pass(
                        &namespaces,
                        &service_accounts,
                        &secrets,
                        &mut live,
                        &credentials,
                        leadership,
                    )
                    .await;
                let failing = report.conflicts > 0 || report.failed > 0 || report.deferred > 0;
                self.ops
                    .metrics
                    .reconcile_duration
                    .observe(started.elapsed().as_secs_f64());
                self.ops
                    .metrics
                    .reconciles
                    .get_or_create(&ResultLabels {
                        result: if failing { "retry" } else { "ok" }.to_owned(),
                    })
                    .inc();
                if let Some(accepted) = live.accepted() {
                    let name = &accepted.config.secret_name;
                    self.ops
                        .metrics
                        .namespaces_served
                        .set(secrets.count_named(name) as i64);
                }
                if report.planned > 0 {
                    tracing::info!(
                        planned = report.planned,
                        applied = report.applied,
                        conflicts = report.conflicts,
                        failed = report.failed,
                        deferred = report.deferred,
                        "reconciled"
                    );
                }
                // Wake for the next token renewal or registry retry, and the next write retry.
                let now = self.settings.sources.env.clock().now();
                let registry_due = live.accepted().and_then(|a| {
                    a.sources
                        .sources()
                        .iter()
                        .filter_map(|x| x.next_attempt_at())
                        .min()
                });
                if let Some(t) = registry_due {
                    // Every due source was just tried: a time already past is no reason to
                    // plan again at once (at least a second, so nothing can spin).
                    let wait = t
                        .duration_since(now)
                        .unwrap_or_default()
                        .max(Duration::from_secs(1));
                    next_wake = next_wake.min(tokio::time::Instant::now() + wait);
                }
                if let Some(t) = live.backoff.next() {
                    next_wake = next_wake.min(t);
                }
                if let Some(t) = live.spread_next {
                    // Spread writes go in batches at most once a second, not one pass each.
                    let batch = tokio::time::Instant::now() + Duration::from_secs(1);
                    next_wake = next_wake.min(t.max(batch));
                }
                if let Some((_, t)) = live.webhook_retry {
                    next_wake = next_wake.min(t);
                }
                if let Some(learnt) = live.not_ours.values().min() {
                    next_wake = next_wake.min(*learnt + self.settings.resync);
                }
            }
            // A new CA bundle to publish (a webhook CA rotation) is written at once.
            let bundle_changed = async {
                match self
                    .settings
                    .webhook
                    .as_ref()
                    .and_then(|w| w.serving.as_ref())
                {
                    Some(serving) => serving.bundle_changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = trigger.notified() => {}
                _ = leadership.wait_until(false) => {}
                _ = tokio::time::sleep_until(next_wake) => {}
                _ = bundle_changed => {}
            }
            // Let a burst of watch events settle into one pass.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Chooses the base identity again when a credential Secret changed (rotation of the
    /// AccessKey in `alibaba-addon-secret`, a new managed-role payload, one appearing or going).
    async fn refresh_identity(&self, stores: &[Store<Secret>], live: &mut Live) {
        let Some(mode) = self.settings.identity_refresh else {
            return;
        };
        let versions = credential_versions(stores);
        if versions == live.credential_secrets {
            return;
        }
        match resolve_base_identity(&self.client, mode, &self.settings.sources.env).await {
            Ok(identity) => {
                tracing::info!(source = ?identity.source, reason = %identity.reason, "credential Secrets changed; base identity chosen again");
                live.sources_settings.base_identity = identity.provider;
                live.sources_settings.base_identity_name = format!("{:?}", identity.source);
                live.credential_secrets = versions;
                // Rebuild the sources (and their token caches) with the new identity: read the
                // last good configuration (fresh caches: the old ones hold the old identity).
                if let ConfigState::Accepted(a) = &mut live.state {
                    match RegistrySources::build(&a.config, &live.sources_settings) {
                        Ok(sources) => {
                            a.sources = sources;
                            a.adoption_tried = false;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "registry sources could not be built with the new identity; keeping the current ones")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "credential Secrets changed but no base identity could be chosen; keeping the current one");
                live.credential_secrets = versions;
            }
        }
    }

    /// A standby replica's webhook answers with the configuration in the ConfigMap too: parsed
    /// here when the ConfigMap changes (never on the request path); an invalid one is left to
    /// the leader to report.
    fn standby_webhook_config(
        &self,
        configmaps: &Store<ConfigMap>,
        seen: &mut Option<Option<String>>,
    ) {
        let cm = configmaps.state().first().cloned();
        let version = cm
            .as_ref()
            .map(|c| c.metadata.resource_version.clone().unwrap_or_default());
        if seen.as_ref() == Some(&version) {
            return;
        }
        *seen = Some(version);
        let data = cm.and_then(|c| c.data.clone()).unwrap_or_default();
        if let Ok(p) = HelperConfig::from_configmap(&data) {
            self.webhook_context.set_config(Arc::new(p.config));
        }
    }

    async fn load_config(&self, configmaps: &Store<ConfigMap>, live: &mut Live) {
        let data: Option<BTreeMap<String, String>> = configmaps
            .state()
            .first()
            .map(|cm| cm.data.clone().unwrap_or_default());
        if live.config_data.as_ref() == Some(&data) {
            return;
        }
        let parsed = match &data {
            None => {
                tracing::info!(
                    namespace = %self.settings.config_namespace,
                    name = %self.settings.config_name,
                    "no configuration ConfigMap; serving the defaults (namespace default, ServiceAccount default, the region's Personal Edition registry)"
                );
                HelperConfig::from_configmap(Vec::<(String, String)>::new())
            }
            Some(d) => HelperConfig::from_configmap(d),
        };
        live.config_data = Some(data);
        let p = match parsed {
            Ok(p) => p,
            Err(e) => return self.invalid(live, e.to_string()).await,
        };
        for w in &p.warnings {
            tracing::warn!(warning = %w, "configuration");
        }
        // Items that did not change keep their identities and token caches.
        let previous = live.accepted().map(|a| &a.sources);
        let sources = match RegistrySources::rebuild(&p.config, &live.sources_settings, previous) {
            Ok(s) => s,
            Err(e) => return self.invalid(live, e.to_string()).await,
        };
        tracing::info!(registries = sources.sources().len(), "configuration loaded");
        // Registries that left the configuration: forget their state and metrics.
        let kept: BTreeSet<&str> = sources.sources().iter().map(|s| s.description()).collect();
        live.registries.retain(|name, _| {
            let keep = kept.contains(name.as_str());
            if !keep {
                self.ops.metrics.forget_registry(name);
            }
            keep
        });
        let config = Arc::new(p.config);
        self.webhook_context.set_config(config.clone());
        live.state = ConfigState::Accepted(Box::new(Accepted {
            config,
            sources,
            adoption_tried: false,
        }));
        live.invalid = None;
        self.ops.metrics.configuration_valid.set(1);
        self.ops.health.set_configuration_accepted(true);
    }

    async fn invalid(&self, live: &mut Live, message: String) {
        self.ops.metrics.configuration_valid.set(0);
        match live.state {
            ConfigState::Accepted(_) => tracing::error!(
                error = %message,
                "invalid configuration; the last good configuration stays in force"
            ),
            ConfigState::NotAccepted => tracing::error!(
                error = %message,
                "invalid configuration and none accepted yet; nothing is written or removed until a valid one arrives"
            ),
        }
        if live.invalid.as_deref() != Some(message.as_str()) {
            self.event(
                EventType::Warning,
                "InvalidConfiguration",
                "",
                message.clone(),
                self.configmap_ref(),
            )
            .await;
        }
        live.invalid = Some(message);
    }

    /// The credential of every registry that has a valid one (fresh, or the last good one while
    /// renewal fails). A failing registry is reported (metric at each failed attempt, a Warning
    /// Event when its failure starts or changes) and never holds up the others.
    async fn credentials(&self, live: &mut Live) -> Vec<RegistryCredential> {
        if let ConfigState::Accepted(a) = &mut live.state {
            if !a.adoption_tried {
                a.adoption_tried = true;
                self.adopt_tokens(a).await;
            }
        }
        let Some(accepted) = live.accepted() else {
            return Vec::new();
        };
        let mut states = Vec::new();
        for s in accepted.sources.sources() {
            // Renew every token due soon together with the one that is due now.
            let state = s.credential_state(RENEW_TOGETHER).await;
            states.push((s.description().to_owned(), s.failed_attempts(), state));
        }
        let metrics = &self.ops.metrics;
        let mut out = Vec::new();
        for (registry, failed_attempts, state) in states {
            let record = live.registries.entry(registry.clone()).or_default();
            if let Some(e) = state.error() {
                let new_failures = failed_attempts.saturating_sub(record.failed_attempts);
                if new_failures > 0 {
                    metrics
                        .renewal_failures
                        .get_or_create(&FailureLabels {
                            registry: registry.clone(),
                            reason: e.code().unwrap_or(e.kind().as_str()).to_owned(),
                        })
                        .inc_by(new_failures);
                }
            }
            record.failed_attempts = failed_attempts;
            match &state {
                CredentialState::Fresh(_) => {
                    if record.failing.take().is_some() {
                        tracing::info!(%registry, "registry credentials recovered");
                        let note =
                            format!("{registry}: registry credentials renewed after a failure");
                        self.event(
                            EventType::Normal,
                            "TokenRenewed",
                            &registry,
                            note,
                            self.configmap_ref(),
                        )
                        .await;
                    }
                }
                CredentialState::Stale { last_good, error } => {
                    let until = acr_auth_core::time::format_iso8601(last_good.token.expires_at);
                    let message = format!(
                        "{registry}: renewal failed ({error}); the last good credential stays in the Secrets until {until}"
                    );
                    self.report_failure(&registry, record, message).await;
                }
                CredentialState::Unavailable(error) => {
                    let message = format!(
                        "{registry}: no valid credential ({error}); its hosts are left out of new Secret content, the other registries are served"
                    );
                    self.report_failure(&registry, record, message).await;
                }
            }
            if let Some(c) = state.credential() {
                let expires_at = c.token.expires_at;
                if record.expires_at.replace(expires_at) != Some(expires_at) {
                    metrics
                        .renewals
                        .get_or_create(&RegistryLabels {
                            registry: registry.clone(),
                        })
                        .inc();
                }
                metrics.set_token_expiry(&registry, expires_at);
                out.push(c.clone());
            }
        }
        self.ops
            .health
            .set_tokens_valid_until(out.iter().map(|c| c.token.expires_at).min());
        out
    }

    /// Logs a registry failure, and sends a Warning Event when it starts or its text changes
    /// (not at every retry).
    async fn report_failure(&self, registry: &str, record: &mut RegistryRecord, message: String) {
        if record.failing.as_deref() == Some(message.as_str()) {
            return;
        }
        tracing::error!(error = %message, "registry credentials failing");
        self.event(
            EventType::Warning,
            "TokenRenewalFailed",
            registry,
            message.clone(),
            self.configmap_ref(),
        )
        .await;
        record.failing = Some(message);
    }

    async fn pass(
        &self,
        namespaces: &Compact<NamespaceInfo>,
        service_accounts: &Compact<ServiceAccountInfo>,
        secrets: &Compact<SecretInfo>,
        live: &mut Live,
        credentials: &[RegistryCredential],
        leadership: &Leadership,
    ) -> PassReport {
        let resync = self.settings.resync;
        live.not_ours.retain(|_, learnt| learnt.elapsed() < resync);
        // Destructive writes need an accepted configuration: without one there is no plan.
        let Some(accepted) = live.accepted() else {
            return PassReport::default();
        };
        let config = accepted.config.clone();
        let planner = Planner::new(&config, credentials);
        let mut report = PassReport::default();
        let now = tokio::time::Instant::now();
        let mut spread = Spread::begin(
            planner.content(),
            live,
            self.settings.renewal_spread,
            self.settings.sources.env.clock().now(),
            now,
        );
        live.backoff.begin_pass();
        // Causes that failed in this pass (for the log limiter).
        let mut failing: BTreeSet<String> = BTreeSet::new();
        for range in namespace_ranges(namespaces, PLAN_BATCH) {
            // A replica that stops leading sends nothing more.
            if !leadership.is_leader() {
                break;
            }
            let writes = {
                // The snapshot is a copy of part of the stores: dropped before the writes go out.
                let snap = snapshot_range(
                    &range,
                    namespaces,
                    service_accounts,
                    secrets,
                    live.not_ours.keys(),
                );
                planner.plan(&snap)
            };
            report.planned += writes.len();
            if self.settings.dry_run {
                for w in &writes {
                    tracing::info!(write = %apply::describe(w), "dry run: would write");
                }
                report.applied += writes.len();
                continue;
            }
            for w in &writes {
                live.backoff.planned(w);
            }
            let writes = spread.filter(writes, secrets, now);
            let (ready, waiting): (Vec<Write>, Vec<Write>) = writes
                .into_iter()
                .partition(|w| !live.backoff.waiting(w, now));
            report.deferred += waiting.len();
            self.send(
                ready,
                service_accounts,
                secrets,
                live,
                leadership,
                &mut report,
                &mut failing,
            )
            .await;
        }
        live.backoff.end_pass();
        spread.end(live, &mut report, now);
        // An episode ends with a pass without such failures and with no write waiting out a
        // backoff: the next failure is logged at once.
        let over: Vec<String> = live
            .logs
            .active()
            .filter(|c| report.deferred == 0 && c.starts_with("write:") && !failing.contains(*c))
            .map(str::to_owned)
            .collect();
        for cause in over {
            let left_out = live.logs.recovered(&cause);
            tracing::info!(%cause, similar_left_out = left_out, "writes succeed again");
        }
        report
    }

    /// Sends `writes` and handles each outcome as it arrives.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        writes: Vec<Write>,
        service_accounts: &Compact<ServiceAccountInfo>,
        secrets: &Compact<SecretInfo>,
        live: &mut Live,
        leadership: &Leadership,
        report: &mut PassReport,
        failing: &mut BTreeSet<String>,
    ) {
        let now = tokio::time::Instant::now();
        // Writes are independent (each carries its own preconditions), so a bounded number go
        // out at once: a cold start over thousands of namespaces is not one long queue. Each
        // outcome is handled as it arrives; nothing is collected.
        // A replica that stops leading sends nothing more.
        let mut outcomes = futures_util::stream::iter(writes)
            .take_while(|_| std::future::ready(leadership.is_leader()))
            .map(|w| {
                let client = self.client.clone();
                async move {
                    let outcome = apply::apply(&client, &w).await;
                    // A conflict means our view of this object is behind: read it now instead
                    // of planning it again from a watch that may lag (after an outage, for one).
                    let current = match &outcome {
                        Err(ApplyError::Conflict(_)) => apply::reread(&client, &w).await.ok(),
                        _ => None,
                    };
                    (w, outcome, current)
                }
            })
            .buffer_unordered(WRITE_CONCURRENCY);
        while let Some((write, outcome, current)) = outcomes.next().await {
            self.ops
                .metrics
                .writes
                .get_or_create(&WriteLabels {
                    kind: apply::kind(&write).to_owned(),
                    result: match &outcome {
                        Ok(()) => "ok",
                        Err(e) => e.reason(),
                    }
                    .to_owned(),
                })
                .inc();
            match outcome {
                Ok(()) => {
                    tracing::debug!(write = %apply::describe(&write), "applied");
                    live.backoff.succeeded(&write);
                    report.applied += 1;
                }
                Err(ApplyError::Conflict(m)) => {
                    let retry_in = live.backoff.failed(&write, true, None);
                    tracing::debug!(write = %apply::describe(&write), conflict = %m, reread = current.is_some(), retry_in_ms = retry_in.as_millis() as u64, "conflict; will re-plan from the object as it is now");
                    match current {
                        Some(apply::Current::Secret(s)) => {
                            let (namespace, name) = write.target();
                            let ours = s.filter(|s| crate::plan::has_managed_label(&s.metadata));
                            secrets.put(namespace, name, ours.map(|s| secret_info(&s)));
                        }
                        Some(apply::Current::ServiceAccount(sa)) => {
                            let (namespace, name) = write.target();
                            service_accounts.put(
                                namespace,
                                name,
                                sa.map(|sa| service_account_info(&sa)),
                            );
                        }
                        None => {}
                    }
                    report.conflicts += 1;
                }
                Err(ApplyError::NotOurs { namespace, name }) => {
                    tracing::warn!(%namespace, %name, "a Secret with our name exists and is not ours; skipping the namespace");
                    let reference = k8s_openapi::api::core::v1::ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Namespace".into()),
                        name: Some(namespace.clone()),
                        ..Default::default()
                    };
                    self.event(EventType::Warning, "SecretNotOurs", "", format!("Secret {namespace}/{name} exists and was not created by aliyun-acr-credential-helper; it is left alone"), reference).await;
                    live.not_ours
                        .insert((namespace, name), tokio::time::Instant::now());
                    report.failed += 1;
                }
                Err(ApplyError::Throttled {
                    message,
                    retry_after,
                }) => {
                    let retry_in = live.backoff.failed(&write, false, retry_after);
                    // One line per episode (and window), not one per object.
                    failing.insert("write:throttled".to_owned());
                    if let Some(left_out) = live.logs.allow("write:throttled", now) {
                        tracing::warn!(%message, retry_in_ms = retry_in.as_millis() as u64, similar_left_out = left_out, "the API server throttles our writes (429); each waits out its own backoff and the server's Retry-After");
                    }
                    report.throttled += 1;
                    report.failed += 1;
                }
                Err(e) => {
                    let retry_in = live.backoff.failed(&write, false, None);
                    let cause = format!("write:{}", e.reason());
                    let allowed = live.logs.allow(&cause, now);
                    failing.insert(cause);
                    if let Some(left_out) = allowed {
                        tracing::warn!(write = %apply::describe(&write), error = %e, reason = e.reason(), retry_in_ms = retry_in.as_millis() as u64, similar_left_out = left_out, "write failed; will retry (similar failures are logged at most every 30 s)");
                    }
                    report.failed += 1;
                }
            }
        }
    }
}
