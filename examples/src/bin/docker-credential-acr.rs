//! `docker-credential-acr`: a docker credential helper for Alibaba Cloud Container Registry.
//!
//! Put `"credHelpers": {"<registry host>": "acr"}` in `~/.docker/config.json` (or a skopeo /
//! podman auth file). The protocol is docker-credential-helpers': `get` reads a server URL on
//! stdin and prints `{"ServerURL","Username","Secret"}` with a temporary ACR login; errors are
//! one line on stdout with exit status 1 (docker and skopeo quote it, and relay stderr, so the
//! error is not repeated on stderr); a host that is not an ACR host answers `credentials not
//! found in native keychain`. `store` validates its input as docker-credential-helpers does,
//! then fails with `not implemented` (logins are temporary and fetched, `docker login` is not
//! needed), or succeeds doing nothing with `ACR_AUTH_IGNORE_CREDS_STORAGE=true`, as
//! amazon-ecr-credential-helper does. `erase` forgets the cached logins for the host; `list`
//! prints `{}`.
//!
//! Credentials come from the Alibaba Cloud default chain. Logins are cached on disk (0600, in a
//! 0700 directory) until `threshold` before they expire, under a directory named by a hash of
//! the identity: every `ALIBABA_CLOUD_*` variable, the endpoint overrides, the profile setting
//! and the contents of the credential files, so a login fetched with one AccessKey (or role, or
//! profile) is never answered to another, to a bogus one, or to none. No id or secret appears
//! in a file name. `ACR_AUTH_CACHE_DISABLE=1` turns the cache off, `ACR_AUTH_CACHE_DIR` moves it
//! (default `$XDG_CACHE_HOME/acr-auth/docker-credential-acr`).
//!
//! Optional settings: `$ACR_AUTH_HELPER_CONFIG`, else
//! `$XDG_CONFIG_HOME/acr-auth/docker-credential-acr.json` (or `~/.config/...`):
//!
//! ```json
//! {"profile": "ci", "threshold": "15m",
//!  "hosts": {"registry.example.com": {"instanceId": "cri-xxxx", "region": "cn-hangzhou"}}}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::config::parse_go_duration;
use acr_auth_core::credentials::{DefaultCredentialsChain, ProviderEnv};
use acr_auth_core::login::{normalize_host, DiskTokenCache, HostOverride, LoginResolver};
use acr_auth_core::time::{Clock, SystemClock};
use acr_auth_core::ErrorKind;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// docker-credential-helpers' messages, matched by docker on stdout.
const NOT_FOUND: &str = "credentials not found in native keychain";
const MISSING_SERVER_URL: &str = "no credentials server URL";
const MISSING_USERNAME: &str = "no credentials username";
const APP: &str = "docker-credential-acr";

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

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "no"))
}

fn settings_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ACR_AUTH_HELPER_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))?;
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

/// The cache root: `None` when `ACR_AUTH_CACHE_DISABLE` is set.
fn cache_root() -> Option<PathBuf> {
    if flag("ACR_AUTH_CACHE_DISABLE") {
        return None;
    }
    if let Some(dir) = var("ACR_AUTH_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("acr-auth").join(APP))
}

/// A hash of everything that decides which identity the default chain signs with: the
/// `ALIBABA_CLOUD_*` variables (keys, role, OIDC, profile, file paths, metadata settings), the
/// endpoint overrides, the profile setting, and the contents of the credential files. Secrets
/// go into the hash (so a wrong secret never meets a cached login), never into a name.
fn identity_key(settings: &Settings) -> String {
    let mut inputs: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("ALIBABA_CLOUD_")
                || (k.starts_with("ACR_AUTH_") && k.ends_with("_ENDPOINT"))
        })
        .collect();
    if let Some(p) = &settings.profile {
        inputs.insert("settings.profile".into(), p.clone());
    }
    let home = var("HOME").map(PathBuf::from);
    let mut files: Vec<PathBuf> = Vec::new();
    match var("ALIBABA_CLOUD_CONFIG_FILE") {
        Some(f) => files.push(f.into()),
        None => files.extend(home.as_ref().map(|h| h.join(".aliyun/config.json"))),
    }
    match var("ALIBABA_CLOUD_CREDENTIALS_FILE") {
        Some(f) => files.push(f.into()),
        None => files.extend(home.iter().flat_map(|h| {
            [
                h.join(".alibabacloud/credentials"),
                h.join(".alibabacloud/credentials.ini"),
            ]
        })),
    }
    files.extend(var("ALIBABA_CLOUD_OIDC_TOKEN_FILE").map(PathBuf::from));
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            inputs.insert(format!("file:{}", f.display()), hex(&Sha256::digest(bytes)));
        }
    }
    let mut h = Sha256::new();
    h.update(b"acr-auth docker-credential-acr identity v1\0");
    for (k, v) in &inputs {
        for part in [k.as_bytes(), v.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    hex(&h.finalize())[..32].to_owned()
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error for docker: `not_ours` when the host is not an ACR host (docker then tries its
/// other credential stores).
struct Failure {
    not_ours: bool,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            not_ours: false,
            message,
        }
    }
}

async fn get(server_url: &str) -> Result<String, Failure> {
    let settings = load_settings()?;
    let threshold = match &settings.threshold {
        Some(t) => parse_go_duration(t).map_err(|e| format!("threshold: {e}"))?,
        None => Duration::from_secs(15 * 60),
    };
    let host = normalize_host(server_url);
    let cache = cache_root()
        .map(|root| DiskTokenCache::new(root.join(format!("id-{}", identity_key(&settings)))));
    let now = SystemClock.now();
    let token = match cache.as_ref().and_then(|c| c.get(&host, now, threshold)) {
        Some(t) => t,
        None => {
            let mut chain = DefaultCredentialsChain::new(ProviderEnv::process());
            if let Some(p) = &settings.profile {
                chain = chain.with_profile(p);
            }
            let resolver = LoginResolver::new(Arc::new(chain), settings.hosts);
            let token = resolver.login(&host).await.map_err(|e| Failure {
                not_ours: e.kind() == ErrorKind::NotConfigured,
                message: e.to_string(),
            })?;
            if let Some(c) = &cache {
                if let Err(e) = c.put(&host, &token) {
                    // A warning, not an error: the login itself is good.
                    eprintln!("{APP}: warning: {e}");
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

/// `store`: the input is checked as docker-credential-helpers checks it, then refused (or
/// ignored with `ACR_AUTH_IGNORE_CREDS_STORAGE=true`).
fn store(input: &str) -> Result<(), String> {
    if input.trim().is_empty() {
        return Err(MISSING_SERVER_URL.into());
    }
    // Read as a JSON value, not a struct, so no message can quote the secret. Field names match
    // case-insensitively, as Go's encoding/json matches them.
    let obj = match serde_json::from_str::<serde_json::Value>(input) {
        Ok(serde_json::Value::Object(o)) => o,
        Ok(_) => return Err("invalid credentials: not a JSON object".into()),
        Err(e) => {
            return Err(format!(
                "invalid credentials: not JSON (line {} column {})",
                e.line(),
                e.column()
            ))
        }
    };
    let field = |name: &str| -> Result<String, String> {
        match obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            None | Some((_, serde_json::Value::Null)) => Ok(String::new()),
            Some((_, serde_json::Value::String(s))) => Ok(s.clone()),
            Some(_) => Err(format!("invalid credentials: field {name} is not a string")),
        }
    };
    let server = field("ServerURL")?;
    field("Secret")?;
    if server.is_empty() {
        return Err(MISSING_SERVER_URL.into());
    }
    if field("Username")?.is_empty() {
        return Err(MISSING_USERNAME.into());
    }
    if flag("ACR_AUTH_IGNORE_CREDS_STORAGE") {
        eprintln!(
            "{APP}: warning: ignoring the request to store credentials for {} \
             (ACR_AUTH_IGNORE_CREDS_STORAGE is set); logins are fetched from Alibaba Cloud",
            normalize_host(&server)
        );
        return Ok(());
    }
    Err(format!(
        "not implemented: {APP} fetches temporary logins from Alibaba Cloud and stores none; \
         docker login is not needed (set ACR_AUTH_IGNORE_CREDS_STORAGE=true to ignore store requests)"
    ))
}

/// `erase`: forgets the cached logins for the host, for every identity.
fn erase(input: &str) -> Result<(), String> {
    let server = input.trim();
    if server.is_empty() {
        return Err(MISSING_SERVER_URL.into());
    }
    let Some(root) = cache_root() else {
        return Ok(());
    };
    // Also the files of the former host-only layout, directly in the root.
    DiskTokenCache::new(&root).remove(server);
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let is_identity = entry.file_name().to_string_lossy().starts_with("id-")
                && entry.file_type().is_ok_and(|t| t.is_dir());
            if is_identity {
                DiskTokenCache::new(entry.path()).remove(server);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // docker-credential-helpers: the answer, or one line of error, on stdout.
    let respond = |out: Result<String, String>| match out {
        Ok(text) => {
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            let _ = writeln!(std::io::stdout(), "{}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    };
    let done = |r: Result<(), String>| match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => respond(Err(e)),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [action] = args.as_slice() else {
        return respond(Err(format!("Usage: {APP} <store|get|erase|list|version>")));
    };
    match action.as_str() {
        "get" => {
            let server = match read_stdin() {
                Ok(s) => s.trim().to_owned(),
                Err(e) => return respond(Err(e)),
            };
            if server.is_empty() {
                return respond(Err(MISSING_SERVER_URL.into()));
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return respond(Err(format!("cannot start the runtime: {e}"))),
            };
            respond(runtime.block_on(get(&server)).map_err(|f| {
                if f.not_ours {
                    NOT_FOUND.to_owned()
                } else {
                    f.message
                }
            }))
        }
        "store" => done(read_stdin().and_then(|s| store(&s))),
        "erase" => done(read_stdin().and_then(|s| erase(&s))),
        "list" => respond(Ok("{}".to_owned())),
        "version" | "--version" | "-v" => respond(Ok(format!(
            "{APP} (acr-auth) {}",
            env!("CARGO_PKG_VERSION")
        ))),
        "--help" | "-h" => {
            let _ = writeln!(
                std::io::stdout(),
                "Usage: {APP} <store|get|erase|list|version>"
            );
            ExitCode::SUCCESS
        }
        other => respond(Err(format!("{APP}: unknown action: {other}"))),
    }
}
