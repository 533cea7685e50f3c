//! `aliyun-acr-credential-helper`: the reference binary of acr-auth.
//!
//! - `token`: print a temporary registry credential for an ACR instance.
//! - `demo`: the whole flow against the built-in fake cloud, no account needed.

mod demo;
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
    /// Print a temporary registry credential for an ACR instance.
    ///
    /// Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET and
    /// optionally ALIBABA_CLOUD_SECURITY_TOKEN. ACR_AUTH_ACR_ENDPOINT overrides the API endpoint.
    Token(token::TokenArgs),
    /// Run the main flow against the built-in fake Alibaba Cloud and show the result.
    Demo,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
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
            Command::Token(args) => token::run(args).await,
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
