//! `run` and `cleanup`: the controller in a cluster (kubeconfig or in-cluster).

use std::time::Duration;

use acr_auth_core::credentials::{ProviderEnv, TokenMode};
use acr_auth_core::http::RetryPolicy;
use acr_auth_core::source::SourceSettings;
use acr_auth_kube::controller::{Controller, ControllerSettings};
use acr_auth_kube::identity::{resolve_base_identity, resolve_region};
use acr_auth_kube::leader::LeaseSettings;
use acr_auth_kube::ops::serve;
use clap::Args;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which base identity to use: auto, managedRole or workerRole.
    #[arg(long, env = "ACR_AUTH_TOKEN_MODE", default_value = "auto")]
    token_mode: TokenMode,
    /// The cluster's region (default: ECS metadata region-id).
    #[arg(long, env = "ALIBABA_CLOUD_REGION_ID")]
    region: Option<String>,
    /// Namespace of the configuration ConfigMap.
    #[arg(long, default_value = "kube-system")]
    config_namespace: String,
    /// Name of the configuration ConfigMap.
    #[arg(long, default_value = "acr-configuration")]
    config_name: String,
    /// Log every write it would make, and make none.
    #[arg(long)]
    dry_run: bool,
    /// Serve /healthz, /readyz and /metrics on this address (for example `0.0.0.0:8080`).
    #[arg(long, env = "ACR_AUTH_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Elect one active writer among replicas on a Lease.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else the
    /// configuration namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "aliyun-acr-credential-helper")]
    lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

/// The host name, for a replica identity outside a pod.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Count what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Installs the SIGINT and SIGTERM handlers now, and returns a future that
/// resolves when either arrives.
///
/// The handlers are registered before the controller starts: a future that
/// registered them lazily would leave a window in which SIGTERM (what the
/// kubelet sends on pod deletion) kills the process without a graceful
/// shutdown.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            let (mut int, mut term) = match (int, term) {
                (Ok(int), Ok(term)) => (int, term),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGINT/SIGTERM");
                    return std::future::pending().await;
                }
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn client() -> Result<kube::Client, String> {
    kube::Client::try_default().await.map_err(|e| {
        format!("cannot reach the cluster (KUBECONFIG, ~/.kube/config or in-cluster): {e}")
    })
}

pub async fn run(args: RunArgs) -> Result<(), String> {
    let shutdown = shutdown_signal();
    let client = client().await?;
    let env = ProviderEnv::process();
    let region = resolve_region(args.region, &env)
        .await
        .map_err(|e| e.to_string())?;
    let identity = resolve_base_identity(&client, args.token_mode, &env)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(source = ?identity.source, reason = %identity.reason, %region, "base identity");
    let settings = ControllerSettings {
        config_namespace: args.config_namespace.clone(),
        config_name: args.config_name,
        sources: SourceSettings {
            cluster_region: region,
            base_identity: identity.provider,
            base_identity_name: format!("{:?}", identity.source),
            env,
            acr_endpoint: None,
            retry: RetryPolicy::default(),
        },
        dry_run: args.dry_run,
        resync: Duration::from_secs(300),
        leader_election: args.leader_elect.then(|| {
            LeaseSettings::new(
                args.lease_namespace
                    .clone()
                    .unwrap_or_else(|| args.config_namespace.clone()),
                args.lease_name.clone(),
                args.identity
                    .clone()
                    .unwrap_or_else(|| format!("{}_{}", host_name(), std::process::id())),
            )
        }),
        identity_refresh: Some(args.token_mode),
    };
    let controller = Controller::new(client, settings);
    let (stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops_task = match args.metrics_addr {
        Some(addr) => {
            let (_, task) = serve(addr, controller.ops(), async move {
                let _ = ops_stopped.await;
            })
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
            Some(task)
        }
        None => None,
    };
    let result = controller.run(shutdown).await.map_err(|e| e.to_string());
    let _ = stop_ops.send(());
    if let Some(t) = ops_task {
        let _ = t.await;
    }
    result
}

pub async fn cleanup(args: CleanupArgs) -> Result<(), String> {
    let client = client().await?;
    let report = acr_auth_kube::cleanup::cleanup(&client, args.dry_run)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{}{} Secrets deleted, our entries removed from {} ServiceAccounts",
        if args.dry_run { "dry run: " } else { "" },
        report.secrets_deleted,
        report.service_accounts_patched
    );
    Ok(())
}
