//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's `leaderelection`
//! does it: several replicas, one active writer.
//!
//! - A replica takes the Lease when it does not exist, names no holder, or its record has not
//!   changed for `lease_duration` as observed *locally* (so clock skew between nodes does not
//!   matter); it then renews it every `retry_period`.
//! - Every write goes through the API server's resourceVersion check, so two replicas never both
//!   win the same record.
//! - A leader that cannot renew within `renew_deadline` (shorter than `lease_duration`) stops
//!   acting as leader *before* anyone else may take over: no double writes during a handover.
//! - On shutdown the leader stops writing first, then releases the Lease (empties the holder),
//!   so a standby takes over at its next retry instead of waiting for the lease to run out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;

/// Where the Lease is and how it is held. Fields may be added in minor releases: build it with
/// [`LeaseSettings::new`] and set the rest.
///
/// ```
/// use std::time::Duration;
/// use acr_auth_kube::leader::LeaseSettings;
/// let mut lease = LeaseSettings::new("kube-system", "aliyun-acr-credential-helper", "pod-1");
/// lease.retry_period = Duration::from_secs(1);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeaseSettings {
    /// The Lease's namespace (the controller's own, `kube-system`).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (the pod name), unique among replicas.
    pub identity: String,
    /// How long a record is honoured without renewal (default 15 s).
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down (default 10 s).
    pub renew_deadline: Duration,
    /// Pause between attempts (default 2 s).
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// `namespace/name` held as `identity`, with client-go's default timings (15 s, 10 s, 2 s).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether this replica leads, shared with the code that writes.
#[derive(Debug)]
pub struct Leadership(tokio::sync::watch::Sender<bool>);

impl Default for Leadership {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(false))
    }
}

impl Leadership {
    /// A replica that leads from the start (no election: a single replica).
    pub fn always() -> Arc<Self> {
        Arc::new(Self(tokio::sync::watch::Sender::new(true)))
    }

    /// Whether this replica is the active writer now.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`Leadership::is_leader`] equals `leader` (at once if it already does).
    pub async fn wait_until(&self, leader: bool) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|v| *v == leader).await;
    }

    fn set(&self, leader: bool) {
        self.0
            .send_if_modified(|v| std::mem::replace(v, leader) != leader);
    }
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    clock: acr_auth_core::time::SharedClock,
    /// The last record seen (holder, renew time, transitions) and when it was first seen.
    observed: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn record_key(spec: &LeaseSpec) -> String {
    format!(
        "{}|{:?}|{:?}",
        spec.holder_identity.as_deref().unwrap_or_default(),
        spec.renew_time.as_ref().map(|t| t.0),
        spec.lease_transitions
    )
}

impl LeaderElector {
    /// An elector for `settings` through `client`.
    pub fn new(
        client: Client,
        settings: LeaseSettings,
        clock: acr_auth_core::time::SharedClock,
    ) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            clock,
            observed: Mutex::new(None),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    fn now(&self) -> MicroTime {
        let t = self.clock.now();
        MicroTime(k8s_openapi::jiff::Timestamp::try_from(t).unwrap_or_default())
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = self.now();
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to take or renew the Lease; `Ok(true)` when this replica holds it afterwards.
    /// A lost race (409) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let Some(current) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        let ours = holder == self.settings.identity;
        if !ours && !holder.is_empty() {
            // Someone else's record: honour it until it has not changed for a lease duration.
            let key = record_key(&spec);
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            let first_seen = match observed.as_ref() {
                Some((k, at)) if *k == key => *at,
                _ => {
                    *observed = Some((key, Instant::now()));
                    return Ok(false);
                }
            };
            let duration = spec
                .lease_duration_seconds
                .map_or(self.settings.lease_duration, |s| {
                    Duration::from_secs(s.max(1) as u64)
                });
            if first_seen.elapsed() < duration {
                return Ok(false);
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if ours {
            self.spec(transitions, spec.acquire_time.clone())
        } else {
            self.spec(transitions + 1, None)
        };
        let lease = Lease {
            metadata: current.metadata.clone(),
            spec: Some(new_spec),
        };
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (empties its holder) if this replica holds it.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(current) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        let lease = Lease {
            metadata: current.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                acquire_time: None,
                renew_time: Some(self.now()),
                lease_transitions: spec.lease_transitions,
                ..LeaseSpec::default()
            }),
        };
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
            .map(drop)
    }

    /// Takes part in the election until `stop` resolves, keeping `leadership` current; then
    /// steps down and releases the Lease. The caller must have stopped writing when `stop`
    /// resolves.
    pub async fn run(
        self,
        leadership: Arc<Leadership>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        let mut last_renewal: Option<Instant> = None;
        loop {
            let attempt = tokio::select! {
                r = tokio::time::timeout(self.settings.renew_deadline, self.try_acquire_or_renew()) => r,
                _ = &mut stop => break,
            };
            match attempt {
                Ok(Ok(true)) => {
                    last_renewal = Some(Instant::now());
                    if !leadership.is_leader() {
                        tracing::info!(identity = %self.settings.identity, lease = %self.settings.name, "became the leader");
                        leadership.set(true);
                    }
                }
                Ok(Ok(false)) => {
                    if leadership.is_leader() {
                        tracing::warn!(identity = %self.settings.identity, "lost the lease to another replica; standing by");
                        leadership.set(false);
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "could not read or renew the lease"),
                Err(_) => tracing::warn!("renewing the lease timed out"),
            }
            if leadership.is_leader()
                && last_renewal.is_none_or(|t| t.elapsed() >= self.settings.renew_deadline)
            {
                tracing::warn!(
                    "no lease renewal within the renew deadline; stepping down before the lease expires"
                );
                leadership.set(false);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.retry_period) => {}
                _ = &mut stop => break,
            }
        }
        let was_leader = leadership.is_leader();
        leadership.set(false);
        if was_leader {
            match self.release().await {
                Ok(()) => tracing::info!("released the lease"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not release the lease; it expires on its own")
                }
            }
        }
    }
}
