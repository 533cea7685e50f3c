//! `run` and `cleanup`: the controller in a cluster (kubeconfig or in-cluster).

use std::time::Duration;

use acr_auth_core::credentials::{ProviderEnv, TokenMode};
use acr_auth_core::http::RetryPolicy;
use acr_auth_core::source::SourceSettings;
use acr_auth_kube::controller::{Controller, ControllerSettings};
use acr_auth_kube::identity::{resolve_base_identity, resolve_region};
use acr_auth_kube::leader::LeaseSettings;
use acr_auth_kube::ops::serve;
use acr_auth_kube::pacing::{PacingLayer, RateLimit};
use acr_auth_kube::webhook::{self, ServerLimits, ServingCertificate, WebhookSettings};
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
    /// Spread renewal writes over this window (Go duration, `0s` to write them at once). Each
    /// namespace renews at its own stable offset while its old token stays valid; new
    /// namespaces, ServiceAccounts, registries and hosts are written at once.
    #[arg(long, env = "ACR_AUTH_RENEWAL_SPREAD", default_value = "60s", value_parser = acr_auth_core::config::parse_go_duration)]
    renewal_spread: Duration,
    #[command(flatten)]
    api: ApiArgs,
}

/// How the controller paces its requests to the API server.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Client-side limit on requests to the API server, per second on average (as client-go's
    /// `--kube-api-qps`). Off by default: the controller's writes are already bounded (16 at
    /// once, per-object backoff) and the server's `Retry-After` is always honoured.
    #[arg(long, env = "ACR_AUTH_KUBE_API_QPS", value_parser = parse_qps)]
    kube_api_qps: Option<f64>,
    /// Requests allowed at once above `--kube-api-qps` (default: twice the rate, at least 1).
    #[arg(long, env = "ACR_AUTH_KUBE_API_BURST", requires = "kube_api_qps")]
    kube_api_burst: Option<u32>,
}

fn parse_qps(s: &str) -> Result<f64, String> {
    let qps: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    RateLimit::new(qps, 1)?;
    Ok(qps)
}

impl ApiArgs {
    fn rate_limit(&self) -> Result<Option<RateLimit>, String> {
        let Some(qps) = self.kube_api_qps else {
            return Ok(None);
        };
        let burst = self
            .kube_api_burst
            .unwrap_or_else(|| ((qps * 2.0).ceil() as u32).max(1));
        RateLimit::new(qps, burst).map(Some)
    }
}

/// How often the webhook certificate (the Secret, or the mounted files) is checked.
const CERTIFICATE_CHECK: Duration = Duration::from_secs(600);

/// The webhook's certificate (kept fresh by the returned task), and where the API server
/// reaches it.
async fn webhook_setup(
    args: &RunArgs,
    client: &kube::Client,
    namespace: &str,
    env: &ProviderEnv,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<
    (
        ServingCertificate,
        WebhookSettings,
        tokio::task::JoinHandle<()>,
    ),
    String,
> {
    let service = &args.webhook_service;
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let (serving, task) = match &args.webhook_cert_dir {
        Some(dir) => {
            let certificate = webhook::read_mounted(dir).map_err(|e| e.to_string())?;
            let serving = ServingCertificate::new(&certificate).map_err(|e| e.to_string())?;
            let task = tokio::spawn(webhook::keep_mounted_certificate(
                dir.clone(),
                serving.clone(),
                CERTIFICATE_CHECK,
                stopped(stop),
            ));
            (serving, task)
        }
        None => {
            let mut dns = vec![
                service.clone(),
                format!("{service}.{namespace}"),
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
            ];
            let mut ips = Vec::new();
            // The certificate must name the host the API server is told to call.
            if let Some(url) = &args.webhook_url {
                match webhook::url_host(url)? {
                    (Some(name), _) => dns.push(name),
                    (_, Some(ip)) => ips.push(ip),
                    (None, None) => {}
                }
            }
            let certificate =
                webhook::ensure_certificate(client, namespace, &dns, &ips, env.clock().now())
                    .await
                    .map_err(|e| e.to_string())?;
            let serving = ServingCertificate::new(&certificate).map_err(|e| e.to_string())?;
            let clock = env.clock().clone();
            let task = tokio::spawn(webhook::keep_certificate(
                client.clone(),
                namespace.to_owned(),
                (dns, ips),
                serving.clone(),
                move || clock.now(),
                CERTIFICATE_CHECK,
                stopped(stop),
            ));
            (serving, task)
        }
    };
    let client_config = match &args.webhook_url {
        Some(url) => serde_json::json!({ "url": url }),
        None => serde_json::json!({"service": {
            "name": service, "namespace": namespace, "path": webhook::PATH,
            "port": args.webhook_service_port,
        }}),
    };
    let settings = WebhookSettings::serving(client_config, serving.clone());
    Ok((serving, settings, task))
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

async fn client(limit: Option<RateLimit>) -> Result<kube::Client, String> {
    let mut config = kube::Config::infer().await.map_err(|e| {
        format!("cannot reach the cluster (KUBECONFIG, ~/.kube/config or in-cluster): {e}")
    })?;
    // The controller paces its own retries per object (and logs and counts 429s); the client's
    // built-in retry of 429/503 would hide throttling and hold a pass for tens of seconds.
    config.default_retry = false;
    if let Some(l) = limit {
        tracing::info!(
            qps = l.qps(),
            burst = l.burst(),
            "client-side API request limit"
        );
    }
    // Every request waits for the rate limit (if any) and for the server's Retry-After.
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot build the cluster client: {e}"))?;
    Ok(builder.with_layer(&PacingLayer::new(limit)).build())
}

pub async fn run(args: RunArgs) -> Result<(), String> {
    let shutdown = shutdown_signal();
    let client = client(args.api.rate_limit()?).await?;
    let lease_client = self::client(None).await?;
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
    let (stop_certificate, certificate_stopped) = tokio::sync::watch::channel(false);
    let webhook = match args.webhook_addr {
        Some(_) => {
            Some(webhook_setup(&args, &client, &own_namespace, &env, certificate_stopped).await?)
        }
        None => None,
    };
    let mut sources =
        SourceSettings::new(region, identity.provider, format!("{:?}", identity.source));
    sources.env = env;
    sources.acr_endpoint = None;
    sources.retry = RetryPolicy::default();
    let mut settings = ControllerSettings::new(sources);
    settings.config_namespace = args.config_namespace.clone();
    settings.config_name = args.config_name;
    settings.dry_run = args.dry_run;
    settings.resync = Duration::from_secs(300);
    settings.webhook = webhook.as_ref().map(|(_, s, _)| s.clone());
    settings.leader_election = args.leader_elect.then(|| {
        LeaseSettings::new(
            own_namespace.clone(),
            args.lease_name.clone(),
            args.identity
                .clone()
                .unwrap_or_else(|| format!("{}_{}", host_name(), std::process::id())),
        )
    });
    settings.identity_refresh = Some(args.token_mode);
    settings.renewal_spread = args.renewal_spread;
    // Leader election goes around the rate limit (see `Controller::with_lease_client`).
    let controller = Controller::new(client, settings).with_lease_client(lease_client);
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
        (Some(addr), Some((serving, _, _))) => {
            let (_, task) = webhook::serve_certificate(
                addr,
                serving.clone(),
                controller.webhook_context(),
                ServerLimits::default(),
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
    let _ = stop_certificate.send(true);
    if let Some((_, _, t)) = webhook {
        let _ = t.await;
    }
    let _ = stop_ops.send(());
    if let Some(t) = ops_task {
        let _ = t.await;
    }
    result
}

pub async fn cleanup(args: CleanupArgs) -> Result<(), String> {
    let client = client(None).await?;
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
