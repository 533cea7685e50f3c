//! `run` and `cleanup`: the controller in a cluster (kubeconfig or in-cluster).

use std::time::Duration;

use acr_auth_core::credentials::{ProviderEnv, TokenMode};
use acr_auth_core::http::RetryPolicy;
use acr_auth_core::source::SourceSettings;
use acr_auth_kube::controller::{Controller, ControllerSettings};
use acr_auth_kube::identity::{resolve_base_identity, resolve_region};
use acr_auth_kube::leader::LeaseSettings;
use acr_auth_kube::ops::serve;
use acr_auth_kube::webhook::{self, WebhookCertificate, WebhookSettings};
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
    /// Serve the admission webhook (HTTPS) on this address, for example `0.0.0.0:9443`, and
    /// keep the MutatingWebhookConfiguration in line with `webhook-configuration`.
    #[arg(long, env = "ACR_AUTH_WEBHOOK_ADDR")]
    webhook_addr: Option<std::net::SocketAddr>,
    /// The Service in front of the webhook (in the pod's namespace).
    #[arg(long, default_value = "aliyun-acr-credential-helper")]
    webhook_service: String,
    /// The Service port the API server calls.
    #[arg(long, default_value_t = 443)]
    webhook_service_port: u16,
    /// Read `ca.crt`, `tls.crt` and `tls.key` from this directory (a mounted Secret) instead of
    /// generating a certificate and keeping it in a Secret.
    #[arg(long)]
    webhook_cert_dir: Option<std::path::PathBuf>,
    /// Call the webhook at this URL instead of through the Service (outside a cluster).
    #[arg(long)]
    webhook_url: Option<String>,
}

/// The webhook's certificate and where the API server reaches it.
async fn webhook_setup(
    args: &RunArgs,
    client: &kube::Client,
    namespace: &str,
    env: &ProviderEnv,
) -> Result<(WebhookCertificate, WebhookSettings), String> {
    let service = &args.webhook_service;
    let certificate = match &args.webhook_cert_dir {
        Some(dir) => {
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .map_err(|e| format!("webhook certificate {}: {e}", dir.join(f).display()))
            };
            WebhookCertificate::from_pem(read("ca.crt")?, read("tls.crt")?, read("tls.key")?)
                .map_err(|e| e.to_string())?
        }
        None => {
            let dns = vec![
                service.clone(),
                format!("{service}.{namespace}"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
            ];
            webhook::ensure_certificate(client, namespace, &dns, &[], env.clock().now())
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let client_config = match &args.webhook_url {
        Some(url) => serde_json::json!({ "url": url }),
        None => serde_json::json!({"service": {
            "name": service, "namespace": namespace, "path": webhook::PATH,
            "port": args.webhook_service_port,
        }}),
    };
    let settings = WebhookSettings {
        client_config,
        ca_pem: certificate.ca_pem.clone(),
    };
    Ok((certificate, settings))
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
    let mut config = kube::Config::infer().await.map_err(|e| {
        format!("cannot reach the cluster (KUBECONFIG, ~/.kube/config or in-cluster): {e}")
    })?;
    // The controller paces its own retries per object (and logs and counts 429s); the client's
    // built-in retry of 429/503 would hide throttling and hold a pass for tens of seconds.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| format!("cannot build the cluster client: {e}"))
}

pub async fn run(args: RunArgs) -> Result<(), String> {
    let shutdown = shutdown_signal();
    let client = client().await?;
    let env = ProviderEnv::process();
    let region = resolve_region(args.region.clone(), &env)
        .await
        .map_err(|e| e.to_string())?;
    let identity = resolve_base_identity(&client, args.token_mode, &env)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(source = ?identity.source, reason = %identity.reason, %region, "base identity");
    let own_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| args.config_namespace.clone());
    let webhook = match args.webhook_addr {
        Some(_) => Some(webhook_setup(&args, &client, &own_namespace, &env).await?),
        None => None,
    };
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
        webhook: webhook.as_ref().map(|(_, s)| s.clone()),
        leader_election: args.leader_elect.then(|| {
            LeaseSettings::new(
                own_namespace.clone(),
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
    let (stop_webhook, webhook_stopped) = tokio::sync::oneshot::channel::<()>();
    let webhook_task = match (args.webhook_addr, &webhook) {
        (Some(addr), Some((certificate, _))) => {
            let (_, task) = webhook::serve(
                addr,
                certificate,
                controller.webhook_context(),
                async move {
                    let _ = webhook_stopped.await;
                },
            )
            .await
            .map_err(|e| format!("cannot serve the webhook on {addr}: {e}"))?;
            Some(task)
        }
        _ => None,
    };
    let result = controller.run(shutdown).await.map_err(|e| e.to_string());
    let _ = stop_webhook.send(());
    if let Some(t) = webhook_task {
        let _ = t.await;
    }
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
    if !args.dry_run {
        if let Err(e) = acr_auth_kube::cleanup::record_cleanup_event(
            &client,
            "kube-system",
            "acr-configuration",
            &report,
        )
        .await
        {
            tracing::warn!(error = %e, "could not record the Cleanup Event");
        }
    }
    println!("{report}");
    Ok(())
}
