//! `aliyun-acr-credential-helper`: the reference binary of acr-auth.
//!
//! - `run`: the controller: pull Secrets and ServiceAccount entries in the watched namespaces.
//! - `cleanup`: remove every Secret and ServiceAccount entry it wrote (uninstall).
//! - `token`: print a temporary registry credential for an ACR instance.
//! - `check-config`: what an `acr-configuration` ConfigMap would serve, or its errors.
//! - `demo`: the whole flow against the built-in fake cloud and cluster, no account needed
//!   (feature `demo`, on by default; release builds leave it and the fakes out).

mod check_config;
#[cfg(feature = "demo")]
mod demo;
mod run;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Short-lived Alibaba Cloud Container Registry credentials.
#[derive(Debug, Parser)]
#[command(name = "aliyun-acr-credential-helper", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (kubeconfig or in-cluster): keep pull Secrets and ServiceAccount
    /// entries in every watched namespace, renewed before they expire.
    Run(Box<run::RunArgs>),
    /// Remove every Secret and ServiceAccount entry the controller wrote, cluster-wide.
    Cleanup(run::CleanupArgs),
    /// Print a temporary registry credential for an ACR instance.
    ///
    /// Credentials come from the Alibaba Cloud default chain: ALIBABA_CLOUD_ACCESS_KEY_ID and
    /// _SECRET (and _SECURITY_TOKEN), the OIDC/RRSA variables, ~/.aliyun/config.json,
    /// ~/.alibabacloud/credentials, the ECS instance role, ALIBABA_CLOUD_CREDENTIALS_URI.
    /// ACR_AUTH_ACR_ENDPOINT overrides the API endpoint.
    Token(token::TokenArgs),
    /// Check an acr-configuration ConfigMap: print what it would serve, or every error (exit 1).
    CheckConfig(check_config::CheckConfigArgs),
    /// Run the controller against the built-in fake Alibaba Cloud and fake cluster, show what
    /// it writes, wait for one renewal, and exit.
    #[cfg(feature = "demo")]
    Demo,
}

/// `info` for the controller, `warn` for the one-shot commands.
/// Without `RUST_LOG`: info for the long-running commands, warnings otherwise.
fn default_log_level() -> &'static str {
    match std::env::args().nth(1).as_deref() {
        Some("run") | Some("cleanup") => "info",
        _ => "warn",
    }
}

/// The log filter: `RUST_LOG`, or [`default_log_level`]. kube-rs's own line per failed request
/// (target `kube_client::client::builder`) is left out unless `RUST_LOG` names `kube_client`:
/// the controller reports each failure itself, rate-limited per cause, so an API outage does not
/// become one line per write.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let from_env = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_level()));
    if from_env.is_some_and(|v| v.contains("kube_client")) {
        return filter;
    }
    match "kube_client::client::builder=off".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a pod's log is a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter())
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(*args).await,
            Command::Cleanup(args) => run::cleanup(args).await,
            Command::Token(args) => token::run(args).await,
            Command::CheckConfig(args) => check_config::run(args),
            #[cfg(feature = "demo")]
            Command::Demo => demo::run().await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
