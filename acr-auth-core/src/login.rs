//! Registry logins by host, for credential helpers (docker, the kubelet): parse the host with
//! the registry host grammar (or look it up in overrides), find an Enterprise instance by name,
//! fetch the token; plus an on-disk token cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::acr::{AcrClient, Edition, Endpoint, RegistryHost, RegistryToken};
use crate::credentials::SharedProvider;
use crate::error::{Error, ErrorKind};
use crate::http::{RetryPolicy, Timeouts};
use crate::time::SharedClock;

/// How to reach one registry host when the grammar alone does not say (custom domains, a
/// mirror, a test registry), or to skip the `ListInstance` look-up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct HostOverride {
    /// Enterprise Edition instance id (`cri-...`); absent = Personal Edition unless the host
    /// names an Enterprise instance.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Region; absent = the host's region.
    #[serde(default)]
    pub region: Option<String>,
}

impl HostOverride {
    /// The host is Enterprise Edition instance `instance_id` (`cri-...`), in the host's region.
    ///
    /// ```
    /// use acr_auth_core::login::HostOverride;
    /// let mut o = HostOverride::enterprise("cri-abcdefghijklmnop");
    /// o.region = Some("cn-beijing".into());
    /// assert_eq!(o.instance_id.as_deref(), Some("cri-abcdefghijklmnop"));
    /// ```
    pub fn enterprise(instance_id: impl Into<String>) -> Self {
        Self {
            instance_id: Some(instance_id.into()),
            region: None,
        }
    }

    /// The host is the Personal Edition registry of `region`.
    pub fn personal(region: impl Into<String>) -> Self {
        Self {
            instance_id: None,
            region: Some(region.into()),
        }
    }
}

/// The host part of a server URL or host: no scheme, no path, lower-case; the port is kept.
///
/// ```
/// use acr_auth_core::login::normalize_host;
/// assert_eq!(normalize_host("https://Registry.CN-Hangzhou.aliyuncs.com/v1/"), "registry.cn-hangzhou.aliyuncs.com");
/// assert_eq!(normalize_host("127.0.0.1:5000"), "127.0.0.1:5000");
/// ```
pub fn normalize_host(server: &str) -> String {
    let s = server.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    s.split('/').next().unwrap_or_default().to_ascii_lowercase()
}

/// The registry host of an image reference, as the kubelet and docker read it: the first path
/// component when it looks like a host (has a `.` or `:`, or is `localhost`); `None` for Docker
/// Hub images.
///
/// ```
/// use acr_auth_core::login::registry_host_of_image;
/// assert_eq!(registry_host_of_image("registry.cn-hangzhou.aliyuncs.com/ns/app:1"), Some("registry.cn-hangzhou.aliyuncs.com"));
/// assert_eq!(registry_host_of_image("library/nginx:latest"), None);
/// assert_eq!(registry_host_of_image("nginx"), None);
/// ```
pub fn registry_host_of_image(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// Fetches registry logins for hosts.
#[derive(Debug)]
pub struct LoginResolver {
    credentials: SharedProvider,
    overrides: HashMap<String, HostOverride>,
    endpoint: Option<Endpoint>,
    retry: RetryPolicy,
    timeouts: Timeouts,
    http: Option<reqwest::Client>,
    clock: SharedClock,
    clients: Mutex<HashMap<String, Arc<AcrClient>>>,
}

impl LoginResolver {
    /// A resolver using `credentials` and per-host `overrides` (keys as [`normalize_host`] gives).
    pub fn new(credentials: SharedProvider, overrides: HashMap<String, HostOverride>) -> Self {
        Self {
            credentials,
            overrides: overrides
                .into_iter()
                .map(|(k, v)| (normalize_host(&k), v))
                .collect(),
            endpoint: None,
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            http: None,
            clock: crate::time::system_clock(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Calls this ACR endpoint instead of the regional one (or `ACR_AUTH_ACR_ENDPOINT`).
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Sets the clock (request timestamps).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn client(&self, region: &str) -> Result<Arc<AcrClient>, Error> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(region) {
            return Ok(c.clone());
        }
        let mut b = AcrClient::builder(region)
            .credentials_provider(self.credentials.clone())
            .retry(self.retry)
            .timeouts(self.timeouts)
            .clock(self.clock.clone());
        if let Some(e) = &self.endpoint {
            b = b.endpoint(e.clone());
        }
        if let Some(h) = &self.http {
            b = b.http_client(h.clone());
        }
        let c = Arc::new(b.build()?);
        clients.insert(region.to_owned(), c.clone());
        Ok(c)
    }

    /// The retry policy of the ACR calls (default [`RetryPolicy::default`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Connect and read timeouts of the ACR calls (default [`Timeouts::default`]).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The HTTP client of the ACR calls (default: the process-wide shared client).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The login for `server` (a host or URL). A host that is neither an ACR host nor overridden
    /// is an [`ErrorKind::NotConfigured`] error: not ours to answer.
    pub async fn login(&self, server: &str) -> Result<RegistryToken, Error> {
        let resolved = self.resolve(server).await?;
        let client = self.client(&resolved.region)?;
        match resolved.instance_id {
            Some(id) => client.get_authorization_token(&id).await,
            None => client.get_personal_token().await,
        }
    }

    /// Which registry `server` (a host or URL) is: its region and, for an Enterprise Edition
    /// instance, the instance id (overrides first, then the host grammar; an instance named in
    /// the host is looked up with `ListInstance`). A host that is neither an ACR host nor
    /// overridden is an [`ErrorKind::NotConfigured`] error.
    pub async fn resolve(&self, server: &str) -> Result<ResolvedHost, Error> {
        let host = normalize_host(server);
        let parsed = RegistryHost::parse(&host);
        let (region, instance) = match (self.overrides.get(&host), &parsed) {
            (Some(o), _) => {
                let region = o
                    .region
                    .clone()
                    .or_else(|| parsed.as_ref().ok().map(|p| p.region.clone()))
                    .ok_or_else(|| {
                        Error::invalid_input(
                            "registry login",
                            format!("the override for {host} needs a region"),
                        )
                    })?;
                let instance = match (&o.instance_id, &parsed) {
                    (Some(id), _) => Some(id.clone()),
                    (None, Ok(p)) if p.edition == Edition::Enterprise => {
                        let name = p.instance.clone().unwrap_or_default();
                        Some(self.client(&region)?.find_instance_id(&name).await?)
                    }
                    _ => None,
                };
                (region, instance)
            }
            (None, Ok(p)) => {
                let instance = match p.edition {
                    Edition::Enterprise => {
                        let name = p.instance.clone().unwrap_or_default();
                        Some(self.client(&p.region)?.find_instance_id(&name).await?)
                    }
                    Edition::Personal => None,
                };
                (p.region.clone(), instance)
            }
            (None, Err(e)) => return Err(Error::not_configured("registry login", e.to_string())),
        };
        Ok(ResolvedHost {
            host,
            region,
            instance_id: instance,
        })
    }
}

/// A registry host resolved by [`LoginResolver::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedHost {
    /// The host, normalised ([`normalize_host`]).
    pub host: String,
    /// The region of its registry.
    pub region: String,
    /// The Enterprise Edition instance id; `None` for the Personal Edition.
    pub instance_id: Option<String>,
}

/// Registry tokens kept on disk, one file per host, readable only by the user (0600 in a 0700
/// directory), for short-lived processes such as a docker credential helper.
#[derive(Debug, Clone)]
pub struct DiskTokenCache {
    dir: PathBuf,
}

impl DiskTokenCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$XDG_CACHE_HOME/acr-auth/<app>` or `$HOME/.cache/acr-auth/<app>`, from `lookup`.
    pub fn user_default(app: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let base = lookup("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                lookup("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| Path::new(&h).join(".cache"))
            })?;
        Some(Self::new(base.join("acr-auth").join(app)))
    }

    /// The file for `host`.
    pub fn path_for(&self, host: &str) -> PathBuf {
        let safe: String = normalize_host(host)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// The cached token for `host` if it is still good for longer than `threshold` at `now`.
    /// A missing, unreadable or malformed file is simply a miss (see [`DiskTokenCache::read`]
    /// for the reason).
    pub fn get(&self, host: &str, now: SystemTime, threshold: Duration) -> Option<RegistryToken> {
        self.read(host, now, threshold).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring the cached registry token");
            None
        })
    }

    /// Like [`DiskTokenCache::get`], but an unreadable or malformed file (truncated, not JSON,
    /// a wrong field, an expiry after year 9999) is an error saying what is wrong, rather than a
    /// miss. `Ok(None)` when there is no file or the token expires within `threshold`.
    pub fn read(
        &self,
        host: &str,
        now: SystemTime,
        threshold: Duration,
    ) -> Result<Option<RegistryToken>, Error> {
        const CTX: &str = "token cache";
        let path = self.path_for(host);
        let bad = |what: String| {
            Error::invalid_response(
                CTX,
                format!("{} is not a cached token: {what}", path.display()),
            )
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    CTX,
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        };
        // Field by field rather than serde's derive: its messages can quote a mistyped value,
        // and the password is one.
        let obj = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(obj)) => obj,
            Ok(other) => {
                return Err(bad(format!(
                    "expected a JSON object, found {}",
                    crate::response::type_name(&other)
                )))
            }
            Err(e) => {
                return Err(bad(format!(
                    "not JSON (line {} column {})",
                    e.line(),
                    e.column()
                )))
            }
        };
        let in_file = |e: Error| bad(e.message().to_owned());
        let username = crate::response::required_str(&obj, "username", CTX).map_err(in_file)?;
        let password = crate::response::required_str(&obj, "password", CTX).map_err(in_file)?;
        let secs = crate::response::required_u64(&obj, "expiresAtUnix", CTX).map_err(in_file)?;
        let expires_at = crate::time::from_epoch_secs(secs).ok_or_else(|| {
            bad(format!(
                "field expiresAtUnix is {secs} s after the Unix epoch, later than 9999-12-31T23:59:59Z"
            ))
        })?;
        // A threshold too large to add to `now` is longer than any token lives: a miss.
        let good = now
            .checked_add(threshold)
            .is_some_and(|due| expires_at > due);
        Ok(good.then(|| RegistryToken {
            username,
            password: password.into(),
            expires_at,
        }))
    }

    /// Stores `token` for `host`, atomically (write then rename), readable only by the user.
    pub fn put(&self, host: &str, token: &RegistryToken) -> Result<(), Error> {
        let io = |e: std::io::Error| {
            Error::new(
                ErrorKind::InvalidInput,
                "token cache",
                format!("cannot write {}: {e}", self.dir.display()),
            )
        };
        create_private_dir(&self.dir).map_err(io)?;
        let body = serde_json::json!({
            "username": token.username,
            "password": token.password.expose(),
            "expiresAtUnix": crate::time::epoch_secs(token.expires_at),
        })
        .to_string();
        let path = self.path_for(host);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        write_private_file(&tmp, body.as_bytes()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Forgets the token for `host`.
    pub fn remove(&self, host: &str) {
        let _ = std::fs::remove_file(self.path_for(host));
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_cache_round_trip_threshold_and_permissions() {
        let dir = std::env::temp_dir().join(format!("acr-auth-cache-test-{}", std::process::id()));
        let cache = DiskTokenCache::new(&dir);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = RegistryToken {
            username: "u".into(),
            password: "p".into(),
            expires_at: now + Duration::from_secs(3600),
        };
        assert!(cache.get("h", now, Duration::ZERO).is_none());
        cache.put("https://H/v2/", &token).unwrap();
        assert_eq!(
            cache.get("h", now, Duration::from_secs(900)),
            Some(token.clone())
        );
        assert!(
            cache.get("h", now, Duration::from_secs(3600)).is_none(),
            "within the threshold"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(cache.path_for("h"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        std::fs::write(cache.path_for("h"), "garbage").unwrap();
        assert!(cache.get("h", now, Duration::ZERO).is_none());
        cache.remove("h");
        assert!(!cache.path_for("h").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_cache_files_are_typed_errors_and_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskTokenCache::new(dir.path());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let path = cache.path_for("h");
        let shown = path.display().to_string();
        std::fs::create_dir_all(dir.path()).unwrap();
        let cases = [
            (
                "garbage".to_owned(),
                "not JSON (line 1 column 1)".to_owned(),
            ),
            (
                "[1,2]".to_owned(),
                "expected a JSON object, found an array".to_owned(),
            ),
            (
                r#"{"username":"u","password":"pw-secret","expiresAtUnix":18446744073709551615}"#
                    .to_owned(),
                "field expiresAtUnix is 18446744073709551615 s after the Unix epoch, later than 9999-12-31T23:59:59Z"
                    .to_owned(),
            ),
            (
                r#"{"username":"u","password":"pw-secret","expiresAtUnix":-1}"#.to_owned(),
                "field expiresAtUnix should be a non-negative integer, found the negative number -1"
                    .to_owned(),
            ),
            // A mistyped password must not be quoted back.
            (
                r#"{"username":"u","password":987654321,"expiresAtUnix":1800000000}"#.to_owned(),
                "field password should be a string, found a number".to_owned(),
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&path, &text).unwrap();
            let e = cache.read("h", now, Duration::ZERO).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{text}");
            assert_eq!(
                e.to_string(),
                format!("token cache: {shown} is not a cached token: {want}"),
                "{text}"
            );
            assert!(!e.to_string().contains("pw-secret") && !e.to_string().contains("987654321"));
            assert_eq!(cache.get("h", now, Duration::ZERO), None, "{text}");
        }
        // Truncated, and a number beyond f64: serde's exact column is its business, not ours.
        for text in [
            r#"{"username":"u","password":"pw-secret","expiresAtUni"#,
            r#"{"username":"u","password":"pw-secret","expiresAtUnix":1e400}"#,
        ] {
            std::fs::write(&path, text).unwrap();
            let e = cache.read("h", now, Duration::ZERO).unwrap_err();
            let want =
                format!("token cache: {shown} is not a cached token: not JSON (line 1 column ");
            assert!(e.to_string().starts_with(&want), "{e}");
            assert!(!e.to_string().contains("pw-secret"), "{e}");
            assert_eq!(cache.get("h", now, Duration::ZERO), None, "{text}");
        }
        assert!(cache.read("absent", now, Duration::ZERO).unwrap().is_none());
    }

    #[test]
    fn huge_threshold_is_a_miss_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskTokenCache::new(dir.path());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = RegistryToken {
            username: "u".into(),
            password: "p".into(),
            expires_at: now + Duration::from_secs(3600),
        };
        cache.put("h", &token).unwrap();
        assert_eq!(cache.get("h", now, Duration::from_secs(60)), Some(token));
        assert_eq!(cache.get("h", now, Duration::MAX), None);
    }

    #[test]
    fn cache_file_names_are_safe() {
        let cache = DiskTokenCache::new("/c");
        assert_eq!(
            cache.path_for("127.0.0.1:5000"),
            PathBuf::from("/c/127.0.0.1_5000.json")
        );
        assert_eq!(
            cache.path_for("../../etc/passwd"),
            PathBuf::from("/c/...json")
        );
    }
}
