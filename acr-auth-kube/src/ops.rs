//! Operating the controller: Prometheus metrics ([`Metrics`]), health and readiness
//! ([`Health`]), and the HTTP endpoint serving `/healthz`, `/readyz` and `/metrics`
//! ([`serve`]).
//!
//! Metric names (all prefixed `acr_auth_`):
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `token_expiry_timestamp_seconds` | gauge | `registry` | when the registry credential in the Secrets expires |
//! | `token_renewals_total` | counter | `registry` | credentials fetched (first fetch and every renewal) |
//! | `token_renewal_failures_total` | counter | `registry`, `reason` | failed fetches, by Alibaba `Code` or error kind |
//! | `reconciles_total` | counter | `result` (`ok`, `retry`) | reconcile passes |
//! | `reconcile_duration_seconds` | histogram | | time of one pass, writes included |
//! | `writes_total` | counter | `kind`, `result` | Secret and ServiceAccount writes |
//! | `namespaces_served` | gauge | | namespaces holding our Secret |
//! | `configuration_valid` | gauge | | 1 when the last configuration read was valid |
//! | `leader` | gauge | | 1 while this replica is the active writer |

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label set naming a registry (its description, e.g. `EE cri-xxx (cn-hangzhou)`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// The registry.
    pub registry: String,
}

/// Label set of a failed renewal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The registry.
    pub registry: String,
    /// Alibaba's error `Code` when there is one, else the error kind (`timeout`, `transport`...).
    pub reason: String,
}

/// Label set of a reconcile pass.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, or `retry` when a write conflicted or failed.
    pub result: String,
}

/// Label set of a write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `create_secret`, `update_secret`, `delete_secret`, `patch_serviceaccount`.
    pub kind: String,
    /// `ok`, `conflict`, `not_ours`, `invalid`, `api`.
    pub result: String,
}

/// Every metric the controller exports, in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `acr_auth_token_expiry_timestamp_seconds`.
    pub token_expiry: Family<RegistryLabels, Gauge<f64, AtomicU64>>,
    /// `acr_auth_token_renewals_total`.
    pub renewals: Family<RegistryLabels, Counter>,
    /// `acr_auth_token_renewal_failures_total`.
    pub renewal_failures: Family<FailureLabels, Counter>,
    /// `acr_auth_reconciles_total`.
    pub reconciles: Family<ResultLabels, Counter>,
    /// `acr_auth_reconcile_duration_seconds`.
    pub reconcile_duration: Histogram,
    /// `acr_auth_writes_total`.
    pub writes: Family<WriteLabels, Counter>,
    /// `acr_auth_namespaces_served`.
    pub namespaces_served: Gauge,
    /// `acr_auth_configuration_valid`.
    pub configuration_valid: Gauge,
    /// `acr_auth_leader`.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (and nothing recorded).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("acr_auth");
        let token_expiry = Family::<RegistryLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "When the registry credential written into the Secrets expires (Unix time)",
            token_expiry.clone(),
        );
        let renewals = Family::<RegistryLabels, Counter>::default();
        registry.register(
            "token_renewals",
            "Registry credentials fetched (first fetch and renewals)",
            renewals.clone(),
        );
        let renewal_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "token_renewal_failures",
            "Failed registry credential fetches, by reason",
            renewal_failures.clone(),
        );
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register("reconciles", "Reconcile passes", reconciles.clone());
        let reconcile_duration =
            Histogram::new([0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of a reconcile pass, writes included",
            reconcile_duration.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "Secret and ServiceAccount writes, by kind and result",
            writes.clone(),
        );
        let namespaces_served = Gauge::default();
        registry.register(
            "namespaces_served",
            "Namespaces holding the managed pull Secret",
            namespaces_served.clone(),
        );
        let configuration_valid = Gauge::default();
        registry.register(
            "configuration_valid",
            "1 when the last configuration read was valid, 0 when the last good one is kept",
            configuration_valid.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the active writer",
            leader.clone(),
        );
        Self {
            registry,
            token_expiry,
            renewals,
            renewal_failures,
            reconciles,
            reconcile_duration,
            writes,
            namespaces_served,
            configuration_valid,
            leader,
        }
    }

    /// Records the expiry of `registry`'s credential.
    pub fn set_token_expiry(&self, registry: &str, expires_at: SystemTime) {
        let secs = expires_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.token_expiry
            .get_or_create(&RegistryLabels {
                registry: registry.to_owned(),
            })
            .set(secs);
    }

    /// Forgets the series of a registry that left the configuration (its expiry would
    /// otherwise be reported forever).
    pub fn forget_registry(&self, registry: &str) {
        self.token_expiry.remove(&RegistryLabels {
            registry: registry.to_owned(),
        });
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Liveness and readiness, shared by the controller and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicBool,
    leader: AtomicBool,
    configuration_accepted: AtomicBool,
    tokens_valid_until: AtomicU64,
}

impl Health {
    /// Nothing synced, not the leader.
    pub fn new() -> Self {
        Self::default()
    }

    /// The watches have listed everything once.
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Relaxed);
    }

    /// A configuration has been accepted in this process (until then a leader writes nothing
    /// and is not ready).
    pub fn set_configuration_accepted(&self, accepted: bool) {
        self.configuration_accepted
            .store(accepted, Ordering::Relaxed);
    }

    /// This replica is (not) the active writer.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Every registry credential the leader serves is valid until `until` (`None`: no valid set).
    pub fn set_tokens_valid_until(&self, until: Option<SystemTime>) {
        let secs = until
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        self.tokens_valid_until.store(secs, Ordering::Relaxed);
    }

    /// Whether this replica is the active writer.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Why the replica is not ready at `now`, or `None` when it is: it must have synced, and a
    /// leader must hold valid registry credentials. A standby replica is ready once synced (it
    /// can take over at any time).
    pub fn not_ready_reason(&self, now: SystemTime) -> Option<&'static str> {
        if !self.synced.load(Ordering::Relaxed) {
            return Some("watches not synced yet");
        }
        if self.is_leader() {
            if !self.configuration_accepted.load(Ordering::Relaxed) {
                return Some("no valid configuration accepted yet");
            }
            let until = SystemTime::UNIX_EPOCH
                + Duration::from_secs(self.tokens_valid_until.load(Ordering::Relaxed));
            if until <= now {
                return Some("leader without valid registry credentials");
            }
        }
        None
    }
}

/// What the HTTP endpoint serves.
#[derive(Debug, Clone)]
pub struct Ops {
    /// Metrics for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// State for `/readyz`.
    pub health: Arc<Health>,
    /// The clock `/readyz` judges token validity with.
    pub clock: acr_auth_core::time::SharedClock,
}

impl Ops {
    /// Fresh metrics and health on `clock`.
    pub fn new(clock: acr_auth_core::time::SharedClock) -> Self {
        Self {
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::new()),
            clock,
        }
    }
}

/// Binds `addr` and serves `/healthz`, `/readyz` and `/metrics` until `shutdown` completes.
/// Returns the bound address (port 0 picks a free one) and the server task.
pub async fn serve(
    addr: SocketAddr,
    ops: Ops,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::{header, StatusCode};
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let metrics = ops.metrics.clone();
    let health = ops.health.clone();
    let clock = ops.clock.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let reason = health.not_ready_reason(clock.now());
                async move {
                    match reason {
                        None => (StatusCode::OK, "ok\n".to_owned()),
                        Some(r) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {r}\n")),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "the metrics and health endpoint stopped");
        }
    });
    tracing::info!(address = %local, "serving /healthz, /readyz and /metrics");
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_sync_and_for_the_leader_valid_tokens() {
        let h = Health::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(h.not_ready_reason(now), Some("watches not synced yet"));
        h.set_synced(true);
        assert_eq!(h.not_ready_reason(now), None, "a synced standby is ready");
        h.set_leader(true);
        assert_eq!(
            h.not_ready_reason(now),
            Some("no valid configuration accepted yet")
        );
        h.set_configuration_accepted(true);
        assert_eq!(
            h.not_ready_reason(now),
            Some("leader without valid registry credentials")
        );
        h.set_tokens_valid_until(Some(now + Duration::from_secs(60)));
        assert_eq!(h.not_ready_reason(now), None);
        assert!(h.not_ready_reason(now + Duration::from_secs(61)).is_some());
    }

    #[test]
    fn metrics_encode_in_the_text_format() {
        let m = Metrics::new();
        m.set_token_expiry(
            "PE cn-hangzhou",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        m.renewal_failures
            .get_or_create(&FailureLabels {
                registry: "PE cn-hangzhou".into(),
                reason: "Throttling.User".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains(
                "acr_auth_token_expiry_timestamp_seconds{registry=\"PE cn-hangzhou\"} 1700000000"
            ),
            "{text}"
        );
        assert!(text.contains(
            "acr_auth_token_renewal_failures_total{registry=\"PE cn-hangzhou\",reason=\"Throttling.User\"} 1"
        ), "{text}");
        assert!(text.contains("# TYPE acr_auth_reconcile_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
    }
}
