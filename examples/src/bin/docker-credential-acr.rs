//! `docker-credential-acr`: a docker credential helper for Alibaba Cloud Container Registry.
//!
//! Put `"credHelpers": {"<registry host>": "acr"}` in `~/.docker/config.json` (or a skopeo /
//! podman auth file). `get` reads a server URL on stdin and prints
//! `{"ServerURL","Username","Secret"}` with a temporary ACR login; `store` and `erase` are
//! accepted (erase forgets the cached token), `list` prints `{}`.
//!
//! Credentials come from the Alibaba Cloud default chain. Tokens are cached on disk (0600,
//! `$XDG_CACHE_HOME/acr-auth/docker-credential-acr`) until `threshold` before they expire.
//! Optional settings: `$ACR_AUTH_HELPER_CONFIG`, else
//! `$XDG_CONFIG_HOME/acr-auth/docker-credential-acr.json` (or `~/.config/...`):
//!
//! ```json
//! {"profile": "ci", "threshold": "15m",
//!  "hosts": {"registry.example.com": {"instanceId": "cri-xxxx", "region": "cn-hangzhou"}}}
//! ```

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::config::parse_go_duration;
use acr_auth_core::credentials::{DefaultCredentialsChain, ProviderEnv};
use acr_auth_core::login::{normalize_host, DiskTokenCache, HostOverride, LoginResolver};
use acr_auth_core::time::{Clock, SystemClock};
use acr_auth_core::ErrorKind;
use serde::Deserialize;

/// What docker expects when a helper has no credentials for a server.
const NOT_FOUND: &str = "credentials not found in native keychain";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    threshold: Option<String>,
    #[serde(default)]
    hosts: HashMap<String, HostOverride>,
}

fn settings_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ACR_AUTH_HELPER_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("acr-auth/docker-credential-acr.json"))
}

fn load_settings() -> Result<Settings, String> {
    let Some(path) = settings_path() else {
        return Ok(Settings::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("invalid settings file {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn read_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(s)
}

async fn get(server_url: &str) -> Result<String, (bool, String)> {
    let fail = |m: String| (false, m);
    let settings = load_settings().map_err(fail)?;
    let threshold = match &settings.threshold {
        Some(t) => parse_go_duration(t).map_err(|e| fail(format!("threshold: {e}")))?,
        None => Duration::from_secs(15 * 60),
    };
    let host = normalize_host(server_url);
    let cache = DiskTokenCache::user_default("docker-credential-acr", |k| std::env::var(k).ok());
    let now = SystemClock.now();
    let token = match cache.as_ref().and_then(|c| c.get(&host, now, threshold)) {
        Some(t) => t,
        None => {
            let mut chain = DefaultCredentialsChain::new(ProviderEnv::process());
            if let Some(p) = &settings.profile {
                chain = chain.with_profile(p);
            }
            let resolver = LoginResolver::new(Arc::new(chain), settings.hosts);
            let token = resolver.login(&host).await.map_err(|e| {
                // A host that is not ours: docker falls back to its other credential stores.
                (e.kind() == ErrorKind::NotConfigured, e.to_string())
            })?;
            if let Some(c) = &cache {
                if let Err(e) = c.put(&host, &token) {
                    eprintln!("docker-credential-acr: warning: {e}");
                }
            }
            token
        }
    };
    Ok(serde_json::json!({
        "ServerURL": server_url,
        "Username": token.username,
        "Secret": token.password.expose(),
    })
    .to_string())
}

fn main() -> ExitCode {
    let action = std::env::args().nth(1).unwrap_or_default();
    // The credential-helper protocol reports errors on stdout, with exit status 1.
    let respond = |out: Result<String, String>| match out {
        Ok(text) => {
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            let _ = writeln!(std::io::stdout(), "{message}");
            ExitCode::FAILURE
        }
    };
    match action.as_str() {
        "get" => {
            let server = match read_stdin() {
                Ok(s) => s.trim().to_owned(),
                Err(e) => return respond(Err(e)),
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return respond(Err(format!("cannot start the runtime: {e}"))),
            };
            respond(
                runtime
                    .block_on(get(&server))
                    .map_err(|(not_ours, message)| {
                        if not_ours {
                            NOT_FOUND.to_owned()
                        } else {
                            eprintln!("docker-credential-acr: {message}");
                            message
                        }
                    }),
            )
        }
        // Credentials come from Alibaba Cloud; there is nothing to store.
        "store" => read_stdin().map_or_else(|e| respond(Err(e)), |_| ExitCode::SUCCESS),
        "erase" => match read_stdin() {
            Ok(server) => {
                if let Some(c) =
                    DiskTokenCache::user_default("docker-credential-acr", |k| std::env::var(k).ok())
                {
                    c.remove(server.trim());
                }
                ExitCode::SUCCESS
            }
            Err(e) => respond(Err(e)),
        },
        "list" => respond(Ok("{}".to_owned())),
        "version" | "--version" => respond(Ok(format!(
            "docker-credential-acr {}",
            env!("CARGO_PKG_VERSION")
        ))),
        other => {
            eprintln!("usage: docker-credential-acr get|store|erase|list|version (got {other:?})");
            ExitCode::FAILURE
        }
    }
}
