//! The `acr-configuration` model: ConfigMap `data` (and the managed edition's JSON parameters)
//! parsed into a typed [`HelperConfig`]. Every error names the key, the position inside a nested
//! YAML/JSON value, and what was expected; nothing is guessed.
//!
//! ```
//! use acr_auth_core::config::{HelperConfig, Selection};
//! use std::collections::BTreeMap;
//!
//! let data = BTreeMap::from([
//!     ("watch-namespace".to_owned(), "dev, prod".to_owned()),
//!     ("acr-registry-info".to_owned(), "- instanceId: \"cri-abc\"\n  regionId: cn-beijing\n".to_owned()),
//! ]);
//! let parsed = HelperConfig::from_configmap(&data).unwrap();
//! assert_eq!(parsed.config.watch_namespaces, Selection::Names(vec!["dev".to_owned(), "prod".to_owned()].into()));
//! assert_eq!(parsed.config.registries[0].instance_id.as_deref(), Some("cri-abc"));
//! ```

mod duration;
mod item;
mod yaml;

pub use duration::{format_go_duration, parse_go_duration};
pub use item::{RegistryItem, DEFAULT_EXPIRE_DURATION};
pub use yaml::Position;

use std::fmt;
use std::time::Duration;

use yaml::Node;

/// Default name of the Secret written in every namespace.
pub const DEFAULT_SECRET_NAME: &str = "acr-credential-secret-aggregation";
/// Default renewal threshold.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_secs(15 * 60);
/// The API version the original documents.
pub const DEFAULT_API_VERSION: &str = "2018-12-01";

/// Every name, or the listed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `*` (service accounts) or `all` (namespaces).
    All,
    /// These names.
    Names(NameList),
}

impl Selection {
    /// Whether `name` is selected (constant time: the planner and the webhook ask this for
    /// every namespace and ServiceAccount).
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Names(n) => n.contains(name),
        }
    }
}

/// Distinct names in the order first given, with a hash index: building one from `n` names and
/// looking a name up are linear and constant time (a ConfigMap may list tens of thousands).
///
/// ```
/// use acr_auth_core::config::NameList;
/// let names = NameList::from(vec!["b".to_owned(), "a".to_owned(), "b".to_owned()]);
/// assert_eq!(names.as_slice(), ["b", "a"]);
/// assert!(names.contains("a") && !names.contains("c"));
/// ```
#[derive(Clone, Default)]
pub struct NameList {
    names: Vec<String>,
    index: std::collections::HashSet<String>,
}

impl NameList {
    /// Whether `name` is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains(name)
    }

    /// The names, in the order first given.
    pub fn as_slice(&self) -> &[String] {
        &self.names
    }

    /// Appends `name` unless it is listed already; returns whether it was added.
    pub fn push(&mut self, name: String) -> bool {
        if self.index.contains(&name) {
            return false;
        }
        self.index.insert(name.clone());
        self.names.push(name);
        true
    }
}

impl std::ops::Deref for NameList {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.names
    }
}

impl fmt::Debug for NameList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.names.fmt(f)
    }
}

impl PartialEq for NameList {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

impl Eq for NameList {}

impl FromIterator<String> for NameList {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        let mut list = NameList::default();
        for n in iter {
            list.push(n);
        }
        list
    }
}

impl From<Vec<String>> for NameList {
    /// Keeps the first of each repeated name.
    fn from(names: Vec<String>) -> Self {
        names.into_iter().collect()
    }
}

/// What the mutating webhook does on ServiceAccount failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Admit the ServiceAccount anyway (default).
    #[default]
    Ignore,
    /// Refuse the ServiceAccount.
    Fail,
}

/// `webhook-configuration`. Fields may be added in minor releases: start from
/// [`WebhookConfig::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// `enable`.
    pub enabled: bool,
    /// `failure-policy`.
    pub failure_policy: FailurePolicy,
    /// `timeout-seconds`, 1-30.
    pub timeout_seconds: u8,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            failure_policy: FailurePolicy::Ignore,
            timeout_seconds: 10,
        }
    }
}

/// The whole configuration.
///
/// Fields may be added in minor releases: start from [`HelperConfig::default`] (or parse one
/// with [`HelperConfig::from_manifest`]) and set what you need.
///
/// ```
/// use acr_auth_core::config::{HelperConfig, RegistryItem};
/// let mut config = HelperConfig::default();
/// config.registries.push(RegistryItem::enterprise("cri-abcdefghijklmnop"));
/// config.webhook.enabled = true;
/// assert_eq!(config.secret_name, "acr-credential-secret-aggregation");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HelperConfig {
    /// `service-account` (default `default`).
    pub service_accounts: Selection,
    /// `watch-namespace` (default `default`).
    pub watch_namespaces: Selection,
    /// `exclude-namespace` globs (extension).
    pub exclude_namespaces: Vec<String>,
    /// `expiring-threshold` (default 15 minutes).
    pub expiring_threshold: Duration,
    /// `acr-registry-info`; empty = the Personal Edition registry of the cluster's region.
    pub registries: Vec<RegistryItem>,
    /// Legacy `acr-registry` hosts, honoured when `acr-registry-info` is absent.
    pub legacy_registries: Vec<String>,
    /// `acr-api-version` (accepted, no behaviour).
    pub acr_api_version: String,
    /// `notify-email` (accepted and ignored).
    pub notify_email: Option<String>,
    /// `rrsa.enable`.
    pub rrsa_enabled: bool,
    /// `webhook-configuration`.
    pub webhook: WebhookConfig,
    /// `secret-name` (extension; default `acr-credential-secret-aggregation`).
    pub secret_name: String,
}

impl Default for HelperConfig {
    fn default() -> Self {
        Self {
            service_accounts: Selection::Names(vec!["default".to_owned()].into()),
            watch_namespaces: Selection::Names(vec!["default".to_owned()].into()),
            exclude_namespaces: Vec::new(),
            expiring_threshold: DEFAULT_THRESHOLD,
            registries: Vec::new(),
            legacy_registries: Vec::new(),
            acr_api_version: DEFAULT_API_VERSION.to_owned(),
            notify_email: None,
            rrsa_enabled: false,
            webhook: WebhookConfig::default(),
            secret_name: DEFAULT_SECRET_NAME.to_owned(),
        }
    }
}

/// A parsed configuration and the warnings it raised (unknown keys, ignored settings...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedConfig {
    /// The configuration.
    pub config: HelperConfig,
    /// Human-readable warnings, each naming its key.
    pub warnings: Vec<String>,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The ConfigMap key (or managed-edition parameter).
    pub key: String,
    /// Where inside the key's value: `[1].instanceId`, or empty.
    pub path: String,
    /// Line and column inside the key's value, when it is YAML/JSON.
    pub at: Option<Position>,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.key, self.path)?;
        if let Some(at) = self.at {
            write!(f, " ({at})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "invalid configuration ({n} error{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Collects errors and warnings while parsing.
#[derive(Default)]
pub(crate) struct Report {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl Report {
    pub(crate) fn error(
        &mut self,
        key: &str,
        path: &str,
        at: Option<Position>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            key: key.to_owned(),
            path: path.to_owned(),
            at,
            message: message.into(),
        });
    }
}

/// A value as given: ConfigMap values are text; managed-edition parameters are JSON nodes.
enum Raw<'a> {
    Text(&'a str),
    Node(&'a Node),
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `s` is an RFC 1123 label, as namespace names are.
///
/// ```
/// use acr_auth_core::config::is_dns_label;
/// assert!(is_dns_label("team-a"));
/// assert!(!is_dns_label("team a"));
/// assert!(!is_dns_label("tmp-*"));
/// ```
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain (Secret and ServiceAccount names).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

impl HelperConfig {
    /// Parses ConfigMap `data`. Unknown keys are warnings; every error is reported, not just the
    /// first.
    pub fn from_configmap<I, K, V>(data: I) -> Result<ParsedConfig, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let data: Vec<(String, String)> = data
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let mut report = Report::default();
        let mut config = HelperConfig::default();
        let has_items = data.iter().any(|(k, _)| k == "acr-registry-info");
        for (key, value) in &data {
            let raw = Raw::Text(value);
            match key.as_str() {
                "service-account" => {
                    config.service_accounts =
                        selection(key, &raw, "*", is_dns_subdomain, &mut report)
                }
                "watch-namespace" => {
                    config.watch_namespaces = selection(key, &raw, "all", is_dns_label, &mut report)
                }
                "exclude-namespace" => config.exclude_namespaces = split_list(value),
                "expiring-threshold" => threshold(key, &raw, &mut config, &mut report),
                "acr-registry-info" => {
                    config.registries = item::parse_items(key, &raw_node_or_text(&raw), &mut report)
                }
                "acr-registry" => {
                    config.legacy_registries = split_list(value);
                    if has_items {
                        report.warnings.push(
                            "acr-registry: ignored because acr-registry-info is set".to_owned(),
                        );
                    } else {
                        legacy_hosts(key, &config.legacy_registries, &mut report);
                    }
                }
                "acr-api-version" => {
                    if value.trim() != DEFAULT_API_VERSION {
                        report.warnings.push(format!(
                            "acr-api-version: {:?} has no effect (only {DEFAULT_API_VERSION} is documented)",
                            value.trim()
                        ));
                    }
                    config.acr_api_version = value.trim().to_owned();
                }
                "notify-email" => {
                    config.notify_email = Some(value.trim().to_owned()).filter(|v| !v.is_empty())
                }
                "rrsa" => config.rrsa_enabled = rrsa(key, &raw, &mut report),
                "webhook-configuration" => config.webhook = webhook(key, &raw, &mut report),
                "secret-name" => {
                    let name = value.trim();
                    if is_dns_subdomain(name) {
                        config.secret_name = name.to_owned();
                    } else {
                        report.error(key, "", None, format!("{name:?} is not a valid Secret name (lower-case letters, digits, '-' and '.')"));
                    }
                }
                other => report
                    .warnings
                    .push(format!("unknown key {other:?} ignored")),
            }
        }
        finish(config, report)
    }

    /// Parses a ConfigMap manifest (`kind: ConfigMap`, its `data`) or a plain `data` mapping, as
    /// YAML or JSON. `data` values must be strings, as the Kubernetes API requires.
    /// Positions in errors about a key's value count from the start of that value.
    pub fn from_manifest(text: &str) -> Result<ParsedConfig, ConfigErrors> {
        const KEY: &str = "manifest";
        let mut report = Report::default();
        let root = match yaml::parse(text) {
            Ok(Some(root)) => root,
            Ok(None) => return Self::from_configmap(Vec::<(String, String)>::new()),
            Err(e) => {
                report.error(KEY, "", e.at, format!("not valid YAML: {}", e.message));
                return finish(HelperConfig::default(), report);
            }
        };
        let top = match &root {
            Node::Map { entries, .. } => yaml::map_entries(entries),
            other => {
                report.error(
                    KEY,
                    "",
                    Some(other.at()),
                    format!(
                        "expected a ConfigMap or a mapping of keys to strings, found {}",
                        other.describe()
                    ),
                );
                return finish(HelperConfig::default(), report);
            }
        };
        let top = match top {
            Ok(t) => t,
            Err(e) => {
                report.error(KEY, "", e.at, e.message);
                return finish(HelperConfig::default(), report);
            }
        };
        let kind = top
            .iter()
            .find(|(k, _)| *k == "kind")
            .and_then(|(_, v)| item::scalar_text(v));
        let data_entries: Vec<(&str, &Node)> = match kind.as_deref() {
            Some("ConfigMap") => match top.iter().find(|(k, _)| *k == "data") {
                None => Vec::new(),
                Some((_, Node::Map { entries, .. })) => match yaml::map_entries(entries) {
                    Ok(e) => e,
                    Err(e) => {
                        report.error("data", "", e.at, e.message);
                        return finish(HelperConfig::default(), report);
                    }
                },
                Some((_, other)) => {
                    report.error(
                        "data",
                        "",
                        Some(other.at()),
                        format!("expected a mapping, found {}", other.describe()),
                    );
                    return finish(HelperConfig::default(), report);
                }
            },
            Some(other) => {
                report.error(
                    "kind",
                    "",
                    None,
                    format!("expected ConfigMap, found {other:?}"),
                );
                return finish(HelperConfig::default(), report);
            }
            None => top,
        };
        let mut data = Vec::with_capacity(data_entries.len());
        for (key, node) in data_entries {
            match node {
                Node::Scalar { value, plain: false, .. } => data.push((key.to_owned(), value.clone())),
                Node::Scalar { value, plain: true, .. } if yaml::plain_kind(value) == yaml::PlainKind::String => {
                    data.push((key.to_owned(), value.clone()));
                }
                other => report.error(
                    key,
                    "",
                    Some(other.at()),
                    format!("ConfigMap data values must be strings, found {}; quote it or use a block (|)", other.describe()),
                ),
            }
        }
        if !report.errors.is_empty() {
            return finish(HelperConfig::default(), report);
        }
        Self::from_configmap(data)
    }

    /// Parses the managed edition's JSON parameters (`AcrInstanceInfo`, `watchNamespace`,
    /// `serviceAccount`, `expiringThreshold`, `notifyEmail`, `enableRRSA`).
    pub fn from_managed_json(text: &str) -> Result<ParsedConfig, ConfigErrors> {
        let mut report = Report::default();
        let mut config = HelperConfig::default();
        let root = match yaml::parse(text) {
            Ok(Some(root)) => root,
            Ok(None) => return finish(config, report),
            Err(e) => {
                report.error("managed parameters", "", e.at, e.message);
                return finish(config, report);
            }
        };
        let Node::Map { entries, .. } = &root else {
            report.error(
                "managed parameters",
                "",
                Some(root.at()),
                format!("expected a JSON object, found {}", root.describe()),
            );
            return finish(config, report);
        };
        let entries = match yaml::map_entries(entries) {
            Ok(e) => e,
            Err(e) => {
                report.error("managed parameters", "", e.at, e.message);
                return finish(config, report);
            }
        };
        for (key, node) in entries {
            let raw = match node {
                Node::Scalar { value, .. } => Raw::Text(value),
                other => Raw::Node(other),
            };
            match key {
                "AcrInstanceInfo" => {
                    config.registries =
                        item::parse_items(key, &raw_node_or_text(&Raw::Node(node)), &mut report)
                }
                "watchNamespace" => {
                    config.watch_namespaces = selection(key, &raw, "all", is_dns_label, &mut report)
                }
                "serviceAccount" => {
                    config.service_accounts =
                        selection(key, &raw, "*", is_dns_subdomain, &mut report)
                }
                "expiringThreshold" => threshold(key, &raw, &mut config, &mut report),
                "notifyEmail" => {
                    config.notify_email = item::scalar_text(node).filter(|v| !v.is_empty())
                }
                "enableRRSA" => {
                    config.rrsa_enabled =
                        item::bool_value(key, "", node, &mut report).unwrap_or(false)
                }
                other => report
                    .warnings
                    .push(format!("unknown managed parameter {other:?} ignored")),
            }
        }
        finish(config, report)
    }
}

/// For `acr-registry-info`: text is YAML to parse; a node is used as is.
enum ItemsSource<'a> {
    Text(&'a str),
    Node(&'a Node),
}

fn raw_node_or_text<'a>(raw: &'a Raw<'a>) -> ItemsSource<'a> {
    match raw {
        Raw::Text(t) => ItemsSource::Text(t),
        Raw::Node(n) => ItemsSource::Node(n),
    }
}

fn finish(config: HelperConfig, report: Report) -> Result<ParsedConfig, ConfigErrors> {
    if report.errors.is_empty() {
        // Not logged here: the caller reports them once (the controller logs them, check-config
        // prints them), so a user does not read every warning twice.
        Ok(ParsedConfig {
            config,
            warnings: report.warnings,
        })
    } else {
        Err(ConfigErrors(report.errors))
    }
}

fn selection(
    key: &str,
    raw: &Raw<'_>,
    all_word: &str,
    valid: fn(&str) -> bool,
    report: &mut Report,
) -> Selection {
    let (names, at) = match raw {
        Raw::Text(t) => (split_list(t), None),
        Raw::Node(n) => match item::string_list(key, "", n, report) {
            Some(list) => (list, Some(n.at())),
            None => return Selection::Names(vec!["default".to_owned()].into()),
        },
    };
    if names.is_empty() {
        report.error(
            key,
            "",
            at,
            format!("is empty: expected a comma-separated list of names, or {all_word}"),
        );
        return Selection::Names(vec!["default".to_owned()].into());
    }
    if names.iter().any(|n| n.eq_ignore_ascii_case(all_word)) {
        if names.len() > 1 {
            report.warnings.push(format!(
                "{key}: {all_word} selects everything; the other names are redundant"
            ));
        }
        return Selection::All;
    }
    let mut out = NameList::default();
    for n in names {
        // Keywords are case-insensitive; names are not.
        let n = if n.eq_ignore_ascii_case("default") {
            "default".to_owned()
        } else {
            n
        };
        if !valid(&n) {
            report.error(
                key,
                "",
                at,
                format!(
                    "{n:?} is not a valid Kubernetes name (lower-case letters, digits and '-')"
                ),
            );
        } else {
            out.push(n);
        }
    }
    Selection::Names(out)
}

/// Checks the hosts of the legacy `acr-registry` key against the registry host grammar (the
/// region label may be `*`); what they resolve to is decided later, with the cluster's region.
fn legacy_hosts(key: &str, hosts: &[String], report: &mut Report) {
    for (index, host) in hosts.iter().enumerate() {
        if let Err(e) = crate::acr::RegistryHost::parse_wildcard_region(host) {
            report.error(key, &format!("[{index}]"), None, e.to_string());
        }
    }
}

fn threshold(key: &str, raw: &Raw<'_>, config: &mut HelperConfig, report: &mut Report) {
    let (text, at) = match raw {
        Raw::Text(t) => ((*t).to_owned(), None),
        Raw::Node(n) => match item::scalar_text(n) {
            Some(t) => (t, Some(n.at())),
            None => {
                report.error(
                    key,
                    "",
                    Some(n.at()),
                    format!("expected a duration such as 15m, found {}", n.describe()),
                );
                return;
            }
        },
    };
    match parse_go_duration(&text) {
        Ok(d) if d.is_zero() => report.error(key, "", at, "must be longer than 0 (e.g. 15m)"),
        Ok(d) => config.expiring_threshold = d,
        Err(e) => report.error(key, "", at, e),
    }
}

/// Parses a YAML mapping value of a top-level key, reporting errors against `key`.
fn yaml_map<'a>(
    key: &str,
    text: &str,
    holder: &'a mut Option<Node>,
    report: &mut Report,
) -> Option<Vec<(&'a str, &'a Node)>> {
    match yaml::parse(text) {
        Ok(Some(n)) => *holder = Some(n),
        Ok(None) => return Some(Vec::new()),
        Err(e) => {
            report.error(key, "", e.at, format!("not valid YAML: {}", e.message));
            return None;
        }
    }
    let node = holder.as_ref().expect("just set");
    let Node::Map { entries, .. } = node else {
        report.error(
            key,
            "",
            Some(node.at()),
            format!(
                "expected a mapping such as `enable: true`, found {}",
                node.describe()
            ),
        );
        return None;
    };
    match yaml::map_entries(entries) {
        Ok(e) => Some(e),
        Err(e) => {
            report.error(key, "", e.at, e.message);
            None
        }
    }
}

fn rrsa(key: &str, raw: &Raw<'_>, report: &mut Report) -> bool {
    let Raw::Text(text) = raw else { return false };
    let mut holder = None;
    let Some(entries) = yaml_map(key, text, &mut holder, report) else {
        return false;
    };
    let mut enabled = false;
    for (k, v) in entries {
        match k {
            "enable" => enabled = item::bool_value(key, ".enable", v, report).unwrap_or(false),
            other => report
                .warnings
                .push(format!("{key}: unknown field {other:?} ignored")),
        }
    }
    enabled
}

fn webhook(key: &str, raw: &Raw<'_>, report: &mut Report) -> WebhookConfig {
    let mut w = WebhookConfig::default();
    let Raw::Text(text) = raw else { return w };
    let mut holder = None;
    let Some(entries) = yaml_map(key, text, &mut holder, report) else {
        return w;
    };
    for (k, v) in entries {
        match k {
            "enable" => w.enabled = item::bool_value(key, ".enable", v, report).unwrap_or(false),
            "failure-policy" => match item::scalar_text(v)
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("ignore") => w.failure_policy = FailurePolicy::Ignore,
                Some("fail") => w.failure_policy = FailurePolicy::Fail,
                _ => report.error(
                    key,
                    ".failure-policy",
                    Some(v.at()),
                    format!("expected Ignore or Fail, found {}", v.describe()),
                ),
            },
            "timeout-seconds" => {
                match item::scalar_text(v).and_then(|t| t.trim().parse::<u8>().ok()) {
                    Some(t) if (1..=30).contains(&t) => w.timeout_seconds = t,
                    _ => report.error(
                        key,
                        ".timeout-seconds",
                        Some(v.at()),
                        format!(
                            "expected a whole number of seconds from 1 to 30, found {}",
                            v.describe()
                        ),
                    ),
                }
            }
            other => report
                .warnings
                .push(format!("{key}: unknown field {other:?} ignored")),
        }
    }
    w
}
