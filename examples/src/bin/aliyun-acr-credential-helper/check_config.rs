//! `check-config FILE`: what a configuration would serve, or every error in it.

use std::path::PathBuf;
use std::sync::Arc;

use acr_auth_core::acr::Endpoint;
use acr_auth_core::config::{format_go_duration, HelperConfig, ParsedConfig, Selection};
use acr_auth_core::credentials::{Credentials, ProviderEnv};
use acr_auth_core::http::RetryPolicy;
use acr_auth_core::source::{
    describe_identity, legacy_registries, RegistrySources, SourceSettings,
};
use clap::Args;

/// Stands in for the cluster's region while the sources are built for validation: any valid
/// region id checks the same things, and nothing is called.
const PLACEHOLDER_REGION: &str = "cn-hangzhou";

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// A ConfigMap manifest (YAML or JSON, `kind: ConfigMap`) or a plain mapping of its data keys.
    file: PathBuf,
}

/// Builds the registry sources as `run` would (identity chains, STS and ACR clients), with a
/// placeholder base identity and region and without any network call, so settings the parser
/// accepts but `run` refuses (a role session name with a space, a malformed region) fail here.
fn validate_sources(config: &HelperConfig) -> Result<(), acr_auth_core::Error> {
    let mut settings = SourceSettings::new(
        PLACEHOLDER_REGION,
        Arc::new(Credentials::new("placeholder", "placeholder")),
        "the base identity (tokenMode)",
    );
    // The file is checked, not this machine's environment.
    settings.env = ProviderEnv::from_vars(Vec::<(String, String)>::new());
    settings.acr_endpoint = Some(Endpoint::Public);
    settings.retry = RetryPolicy::none();
    RegistrySources::build(config, &settings).map(drop)
}

fn selection(s: &Selection, all: &str) -> String {
    match s {
        Selection::All => all.to_owned(),
        Selection::Names(n) => n.join(", "),
    }
}

pub fn run(args: CheckConfigArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let ParsedConfig { config, warnings } = HelperConfig::from_manifest(&text).map_err(|e| {
        format!(
            "{}: {e}(lines and columns inside a key count from the start of that key's value)",
            args.file.display()
        )
    })?;
    validate_sources(&config).map_err(|e| {
        format!(
            "{}: invalid configuration (the sources cannot be built):\n  {e}\n",
            args.file.display()
        )
    })?;
    println!("{}: valid", args.file.display());
    let mut namespaces = selection(
        &config.watch_namespaces,
        "all namespaces, including new ones",
    );
    if !config.exclude_namespaces.is_empty() {
        namespaces.push_str(&format!(
            " (excluding {})",
            config.exclude_namespaces.join(", ")
        ));
    }
    println!("  namespaces:         {namespaces}");
    println!(
        "  service accounts:   {}",
        selection(&config.service_accounts, "every service account")
    );
    println!("  secret:             {}", config.secret_name);
    println!(
        "  renew:              {} before expiry",
        format_go_duration(config.expiring_threshold)
    );
    println!(
        "  rrsa:               {}",
        if config.rrsa_enabled {
            "enabled"
        } else {
            "disabled"
        }
    );
    println!(
        "  webhook:            {}",
        if config.webhook.enabled {
            format!(
                "enabled ({:?} on failure, {}s timeout)",
                config.webhook.failure_policy, config.webhook.timeout_seconds
            )
        } else {
            "disabled".to_owned()
        }
    );
    println!("  registries:");
    if config.registries.is_empty() {
        if config.legacy_registries.is_empty() {
            println!("    1. Personal Edition in the cluster's region (no acr-registry-info)");
        } else {
            print_legacy(&config)?;
        }
    }
    for (i, item) in config.registries.iter().enumerate() {
        let region = item.region_id.as_deref().unwrap_or("the cluster's region");
        match &item.instance_id {
            Some(id) => println!("    {}. Enterprise Edition {id} in {region}", i + 1),
            None => println!("    {}. Personal Edition in {region}", i + 1),
        }
        let hosts = if item.domains.is_empty() {
            if item.is_enterprise() {
                "every domain of the instance".to_owned()
            } else {
                "registry and registry-vpc of the region".to_owned()
            }
        } else {
            item.domains.join(", ")
        };
        println!("       hosts:    {hosts}");
        if !item.custom_domains.is_empty() {
            println!("       custom:   {}", item.custom_domains.join(", "));
        }
        println!(
            "       identity: {}",
            describe_identity(item, config.rrsa_enabled, "the base identity (tokenMode)")
        );
    }
    if !warnings.is_empty() {
        println!("  warnings:");
        for w in &warnings {
            println!("    - {w}");
        }
    }
    Ok(())
}

/// The registries the legacy `acr-registry` hosts become (only read without `acr-registry-info`).
fn print_legacy(config: &HelperConfig) -> Result<(), String> {
    // Already validated: the parser checks every host against the grammar.
    let registries =
        legacy_registries(&config.legacy_registries, None).map_err(|e| e.to_string())?;
    for (i, r) in registries.iter().enumerate() {
        let resolve = if r.instance_name.is_some() {
            " (its id from ListInstance)"
        } else {
            ""
        };
        println!("    {}. {}{resolve}", i + 1, r.description());
        println!("       hosts:    {}", r.hosts.join(", "));
        println!("       identity: the base identity (tokenMode)");
    }
    println!("    (from the legacy acr-registry key; * in a host is the cluster's region)");
    Ok(())
}
