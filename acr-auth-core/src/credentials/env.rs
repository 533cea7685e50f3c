//! [`ProviderEnv`]: the environment variables, files, clock and endpoints a credentials
//! provider sees. Injected, so every provider is tested without touching the real `$HOME` or
//! process environment.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::time::{system_clock, SharedClock};

/// Reads files; [`RealFs`] in production, [`InMemoryFs`] in tests.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// The whole file as UTF-8.
    fn read_to_string(&self, path: &Path) -> std::io::Result<String>;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl FileSystem for RealFs {
    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Files held in memory; files can be replaced while in use (to rotate a token file).
#[derive(Debug, Clone, Default)]
pub struct InMemoryFs(Arc<Mutex<HashMap<PathBuf, String>>>);

impl InMemoryFs {
    /// Creates or replaces a file.
    pub fn write(&self, path: impl Into<PathBuf>, contents: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.into(), contents.into());
    }
}

impl FileSystem for InMemoryFs {
    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

type VarLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a provider may read: variables, files, the home directory and the clock.
///
/// ```
/// use acr_auth_core::credentials::ProviderEnv;
/// let env = ProviderEnv::from_vars([("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")])
///     .with_file("/home/u/.aliyun/config.json", "{}")
///     .with_home("/home/u");
/// assert_eq!(env.var("ALIBABA_CLOUD_ACCESS_KEY_ID").as_deref(), Some("id"));
/// assert_eq!(env.var("ALIBABA_CLOUD_ACCESS_KEY_SECRET"), None);
/// assert!(env.read_file(&env.home().unwrap().join(".aliyun/config.json")).is_ok());
/// ```
#[derive(Clone)]
pub struct ProviderEnv {
    vars: VarLookup,
    fs: Arc<dyn FileSystem>,
    memory_fs: Option<InMemoryFs>,
    home: Option<PathBuf>,
    clock: SharedClock,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for ProviderEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Variables may hold secrets: never print them.
        f.debug_struct("ProviderEnv")
            .field("fs", &self.fs)
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl ProviderEnv {
    /// The process environment, the real filesystem, `$HOME` and the system clock.
    pub fn process() -> Self {
        Self {
            vars: Arc::new(|k| std::env::var(k).ok()),
            fs: Arc::new(RealFs),
            memory_fs: None,
            home: std::env::var_os("HOME").map(PathBuf::from),
            clock: system_clock(),
            http: None,
        }
    }

    /// Only the given variables, an empty in-memory filesystem, no home directory and the
    /// system clock.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let fs = InMemoryFs::default();
        Self {
            vars: Arc::new(move |k| map.get(k).cloned()),
            fs: Arc::new(fs.clone()),
            memory_fs: Some(fs),
            home: None,
            clock: system_clock(),
            http: None,
        }
    }

    /// Adds a file to the in-memory filesystem (only for [`ProviderEnv::from_vars`]).
    ///
    /// # Panics
    /// On an environment using the real filesystem.
    pub fn with_file(self, path: impl Into<PathBuf>, contents: impl Into<String>) -> Self {
        self.memory_fs
            .as_ref()
            .expect("with_file needs an in-memory filesystem (ProviderEnv::from_vars)")
            .write(path, contents);
        self
    }

    /// The in-memory filesystem, to change files later (only for [`ProviderEnv::from_vars`]).
    pub fn memory_fs(&self) -> Option<&InMemoryFs> {
        self.memory_fs.as_ref()
    }

    /// Sets the home directory.
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The HTTP client every provider built from this environment uses (STS, ECS metadata,
    /// credentials URI, and the default chain's sources), instead of the process-wide shared
    /// one ([`crate::http::shared_client`]). Its own settings (timeouts, proxy, TLS) apply.
    ///
    /// ```
    /// use acr_auth_core::credentials::ProviderEnv;
    /// let client = acr_auth_core::http::client_builder().unwrap().no_proxy().build().unwrap();
    /// let env = ProviderEnv::process().with_http_client(client);
    /// assert!(env.http_client().is_some());
    /// ```
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The HTTP client given with [`ProviderEnv::with_http_client`], if any.
    pub fn http_client(&self) -> Option<&reqwest::Client> {
        self.http.as_ref()
    }

    /// A variable, `None` when unset or empty.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.vars)(name).filter(|v| !v.is_empty())
    }

    /// Whether a variable is `true` (case-insensitive).
    pub fn flag(&self, name: &str) -> bool {
        self.var(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Reads a file.
    pub fn read_file(&self, path: &Path) -> std::io::Result<String> {
        self.fs.read_to_string(path)
    }

    /// The home directory.
    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}
