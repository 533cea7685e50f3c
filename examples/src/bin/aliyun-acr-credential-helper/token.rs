//! `token`: a registry credential for one instance, as JSON or `.dockerconfigjson`.

use acr_auth_core::acr::{enterprise_registry_hosts, personal_registry_hosts, AcrClient};
use acr_auth_core::credentials::{DefaultCredentialsChain, ProviderEnv};
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::time::format_iso8601;
use clap::{Args, ValueEnum};
use serde_json::json;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// `{"username","password","expiresAt","hosts"}`
    Json,
    /// A docker auth file (`{"auths": {...}}`), usable with `docker --config` or `skopeo --authfile`.
    Dockerconfigjson,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Region of the instance, e.g. cn-hangzhou.
    #[arg(long, env = "ALIBABA_CLOUD_REGION_ID")]
    region: String,
    /// Enterprise Edition instance id (cri-...). Without it, the Personal Edition registry.
    #[arg(long)]
    instance_id: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Call the VPC API endpoint cr-vpc.REGION.aliyuncs.com.
    #[arg(long)]
    vpc: bool,
    /// aliyun CLI profile to use (~/.aliyun/config.json) instead of ALIBABA_CLOUD_PROFILE or the
    /// current one.
    #[arg(long)]
    profile: Option<String>,
}

pub async fn run(args: TokenArgs) -> Result<(), String> {
    let mut chain = DefaultCredentialsChain::new(ProviderEnv::process());
    if let Some(profile) = &args.profile {
        chain = chain.with_profile(profile);
    }
    let client = AcrClient::builder(&args.region)
        .credentials_provider(std::sync::Arc::new(chain))
        .vpc(args.vpc)
        .build()
        .map_err(|e| e.to_string())?;
    let (token, hosts) = match args.instance_id.as_deref() {
        Some(instance) => {
            let token = client
                .get_authorization_token(instance)
                .await
                .map_err(|e| e.to_string())?;
            let endpoints = client
                .list_instance_endpoint(instance)
                .await
                .map_err(|e| e.to_string())?;
            (token, enterprise_registry_hosts(&endpoints))
        }
        None => {
            let token = client
                .get_personal_token()
                .await
                .map_err(|e| e.to_string())?;
            (token, personal_registry_hosts(&args.region).to_vec())
        }
    };
    tracing::info!(username = %token.username, hosts = hosts.len(), "fetched a registry credential");
    let output = match args.format {
        Format::Json => json!({
            "username": token.username,
            "password": token.password.expose(),
            "expiresAt": format_iso8601(token.expires_at),
            "hosts": hosts,
        })
        .to_string(),
        Format::Dockerconfigjson => DockerConfig::from_token(hosts, &token).to_json(),
    };
    println!("{output}");
    Ok(())
}
