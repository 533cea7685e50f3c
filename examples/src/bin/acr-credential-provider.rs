//! `acr-credential-provider`: a kubelet image credential provider plugin
//! (`credentialprovider.kubelet.k8s.io/v1`) for Alibaba Cloud Container Registry.
//!
//! The kubelet writes a `CredentialProviderRequest` (`{"image": ...}`) on stdin; the plugin
//! answers a `CredentialProviderResponse` with a temporary login for the image's registry host,
//! `cacheKeyType: Registry`, and `cacheDuration` = the token's remaining lifetime minus the
//! renewal threshold (`--threshold`, default 15m). Pods then need no pull Secret.
//! Credentials come from the Alibaba Cloud default chain (on a node: the ECS instance role).
//! An image outside ACR gets an empty `auth`.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::config::{format_go_duration, parse_go_duration};
use acr_auth_core::credentials::{DefaultCredentialsChain, ProviderEnv};
use acr_auth_core::login::{registry_host_of_image, LoginResolver};
use acr_auth_core::time::{Clock, SystemClock};
use acr_auth_core::ErrorKind;
use clap::Parser;
use serde::Deserialize;
use serde_json::json;

const SUPPORTED_VERSIONS: [&str; 2] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
];

/// Kubelet credential provider for Alibaba Cloud Container Registry.
#[derive(Debug, Parser)]
#[command(name = "acr-credential-provider", version, about)]
struct Args {
    /// Stop reusing a login this long before it expires (Go duration).
    #[arg(long, default_value = "15m")]
    threshold: String,
    /// aliyun CLI profile to use.
    #[arg(long)]
    profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    api_version: String,
    kind: String,
    image: String,
}

async fn respond(args: &Args, input: &str) -> Result<String, String> {
    let threshold: Duration =
        parse_go_duration(&args.threshold).map_err(|e| format!("--threshold: {e}"))?;
    let req: Request = serde_json::from_str(input)
        .map_err(|e| format!("stdin is not a CredentialProviderRequest: {e}"))?;
    if !SUPPORTED_VERSIONS.contains(&req.api_version.as_str()) {
        return Err(format!(
            "apiVersion {:?} is not supported (expected one of {})",
            req.api_version,
            SUPPORTED_VERSIONS.join(", ")
        ));
    }
    if req.kind != "CredentialProviderRequest" {
        return Err(format!(
            "kind {:?} is not CredentialProviderRequest",
            req.kind
        ));
    }
    let empty = json!({"apiVersion": req.api_version, "kind": "CredentialProviderResponse",
                       "cacheKeyType": "Registry", "auth": {}});
    let Some(host) = registry_host_of_image(&req.image) else {
        return Ok(empty.to_string());
    };
    let mut chain = DefaultCredentialsChain::new(ProviderEnv::process());
    if let Some(p) = &args.profile {
        chain = chain.with_profile(p);
    }
    let resolver = LoginResolver::new(Arc::new(chain), Default::default());
    let token = match resolver.login(host).await {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotConfigured => return Ok(empty.to_string()),
        Err(e) => return Err(e.to_string()),
    };
    let cache_for = token.remaining(SystemClock.now()).saturating_sub(threshold);
    Ok(json!({
        "apiVersion": req.api_version,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": format_go_duration(Duration::from_secs(cache_for.as_secs())),
        "auth": {host: {"username": token.username, "password": token.password.expose()}},
    })
    .to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("acr-credential-provider: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acr-credential-provider: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(respond(&args, &input)) {
        Ok(out) => {
            let _ = writeln!(std::io::stdout(), "{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("acr-credential-provider: {e}");
            ExitCode::FAILURE
        }
    }
}
