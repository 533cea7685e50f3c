//! Items of `acr-registry-info` (and the managed edition's `AcrInstanceInfo`).

use std::fmt;
use std::time::Duration;

use super::yaml::{self, plain_kind, Node, PlainKind};
use super::{ItemsSource, Report};
use crate::SecretString;

/// Default `expireDuration` of an assumed role session.
pub const DEFAULT_EXPIRE_DURATION: Duration = Duration::from_secs(3600);

/// One registry to serve.
///
/// Fields may be added in minor releases: start from [`RegistryItem::enterprise`] or
/// [`RegistryItem::personal`] and set what you need.
///
/// ```
/// use acr_auth_core::config::RegistryItem;
/// let mut item = RegistryItem::enterprise("cri-abcdefghijklmnop");
/// item.region_id = Some("cn-beijing".into());
/// item.assume_role_arn = Some("acs:ram::1234567890:role/acr-puller".into());
/// assert!(item.is_enterprise());
/// assert!(!RegistryItem::personal().is_enterprise());
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RegistryItem {
    /// `instanceId`: `cri-...` for Enterprise Edition; `None` for Personal Edition.
    pub instance_id: Option<String>,
    /// `regionId`; `None` = the cluster's region.
    pub region_id: Option<String>,
    /// `domains`; empty = every domain of the instance.
    pub domains: Vec<String>,
    /// `customDomains` (extension): extra hosts with the same credential.
    pub custom_domains: Vec<String>,
    /// `assumeRoleARN`: cross-account role to assume before calling ACR.
    pub assume_role_arn: Option<String>,
    /// `expireDuration`: length of that session (900-43200 s, default 3600 s).
    pub expire_duration: Duration,
    /// `roleSessionName` (extension).
    pub role_session_name: Option<String>,
    /// `stsEndpoint` (extension).
    pub sts_endpoint: Option<String>,
    /// `rrsaRoleARN`.
    pub rrsa_role_arn: Option<String>,
    /// `rrsaOIDCProviderRoleARN`.
    pub rrsa_oidc_provider_arn: Option<String>,
    /// `customAccessKey`.
    pub custom_access_key: Option<String>,
    /// `customAccessKeySecret` (redacted in `Debug`).
    pub custom_access_key_secret: Option<SecretString>,
}

impl RegistryItem {
    /// An Enterprise Edition instance (`cri-...`) in the cluster's region, every domain, the
    /// base identity, default session length.
    pub fn enterprise(instance_id: impl Into<String>) -> Self {
        Self {
            instance_id: Some(instance_id.into()),
            ..Self::personal()
        }
    }

    /// The Personal Edition registry of the cluster's region, with the base identity.
    pub fn personal() -> Self {
        Self {
            expire_duration: DEFAULT_EXPIRE_DURATION,
            ..Self::default()
        }
    }

    /// Whether this is an Enterprise Edition instance.
    pub fn is_enterprise(&self) -> bool {
        self.instance_id.is_some()
    }
}

impl fmt::Debug for RegistryItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryItem")
            .field("instance_id", &self.instance_id)
            .field("region_id", &self.region_id)
            .field("domains", &self.domains)
            .field("custom_domains", &self.custom_domains)
            .field("assume_role_arn", &self.assume_role_arn)
            .field("expire_duration", &self.expire_duration)
            .field("role_session_name", &self.role_session_name)
            .field("sts_endpoint", &self.sts_endpoint)
            .field("rrsa_role_arn", &self.rrsa_role_arn)
            .field("rrsa_oidc_provider_arn", &self.rrsa_oidc_provider_arn)
            .field("custom_access_key", &self.custom_access_key)
            .field("custom_access_key_secret", &self.custom_access_key_secret)
            .finish()
    }
}

const FIELDS: [&str; 12] = [
    "instanceId",
    "regionId",
    "domains",
    "customDomains",
    "assumeRoleARN",
    "expireDuration",
    "roleSessionName",
    "stsEndpoint",
    "rrsaRoleARN",
    "rrsaOIDCProviderRoleARN",
    "customAccessKey",
    "customAccessKeySecret",
];

/// The text of a scalar; `None` for collections and YAML null.
pub(crate) fn scalar_text(node: &Node) -> Option<String> {
    match node {
        Node::Scalar { value, plain, .. } if !(*plain && plain_kind(value) == PlainKind::Null) => {
            Some(value.clone())
        }
        _ => None,
    }
}

/// A string field: quoted or plain text. A plain scalar YAML reads as a number or boolean is
/// refused with a hint to quote it; null is `None`.
pub(crate) fn string_value(
    key: &str,
    path: &str,
    node: &Node,
    report: &mut Report,
) -> Option<String> {
    match node {
        Node::Scalar {
            value,
            plain: true,
            at,
        } => match plain_kind(value) {
            PlainKind::Null => None,
            PlainKind::Bool | PlainKind::Number => {
                let field = path.rsplit('.').next().unwrap_or(path);
                report.error(
                    key,
                    path,
                    Some(*at),
                    format!(
                        "expected a string, found {} (YAML reads it unquoted as a {}); quote it: {field}: \"{value}\"",
                        node.describe(),
                        if plain_kind(value) == PlainKind::Bool { "boolean" } else { "number" }
                    ),
                );
                None
            }
            PlainKind::String => Some(value.clone()),
        },
        Node::Scalar { value, .. } => Some(value.clone()),
        other => {
            report.error(
                key,
                path,
                Some(other.at()),
                format!("expected a string, found {}", other.describe()),
            );
            None
        }
    }
}

/// A list of strings: a comma-separated string or a YAML list of strings.
pub(crate) fn string_list(
    key: &str,
    path: &str,
    node: &Node,
    report: &mut Report,
) -> Option<Vec<String>> {
    match node {
        Node::Seq { items, .. } => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(s) = string_value(key, &format!("{path}[{i}]"), item, report) {
                    out.extend(super::split_list(&s));
                }
            }
            Some(out)
        }
        Node::Map { at, .. } => {
            report.error(
                key,
                path,
                Some(*at),
                "expected a comma-separated string or a list, found a mapping",
            );
            None
        }
        scalar => string_value(key, path, scalar, report).map(|s| super::split_list(&s)),
    }
}

/// A boolean: YAML `true`/`false` in any case, quoted or not.
pub(crate) fn bool_value(key: &str, path: &str, node: &Node, report: &mut Report) -> Option<bool> {
    match scalar_text(node)
        .map(|t| t.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => {
            report.error(
                key,
                path,
                Some(node.at()),
                format!("expected true or false, found {}", node.describe()),
            );
            None
        }
    }
}

fn hint_for_yaml_error(text: &str, e: &yaml::YamlError) -> String {
    let line =
        e.at.and_then(|at| text.lines().nth(at.line.saturating_sub(1)))
            .unwrap_or_default();
    let mut msg = format!("not valid YAML: {}", e.message);
    if line.contains("\",\"") || line.contains("\", \"") {
        msg.push_str(
            "; several values must be one string (domains: \"a.com,b.com\") or a list (domains: [\"a.com\", \"b.com\"])",
        );
    } else if e.message.contains("indent")
        || e.message.contains("block")
        || e.message.contains("expected")
    {
        msg.push_str("; check the indentation: every field of an item lines up under the first one, after \"- \"");
    }
    msg
}

/// Parses the item list.
pub(super) fn parse_items(
    key: &str,
    source: &ItemsSource<'_>,
    report: &mut Report,
) -> Vec<RegistryItem> {
    let parsed;
    let root = match source {
        ItemsSource::Node(n) => *n,
        ItemsSource::Text(text) => match yaml::parse(text) {
            Ok(Some(n)) => {
                parsed = n;
                &parsed
            }
            Ok(None) => return Vec::new(),
            Err(e) => {
                report.error(key, "", e.at, hint_for_yaml_error(text, &e));
                return Vec::new();
            }
        },
    };
    // A JSON array inside a string is also accepted (the managed edition passes it so).
    let reparsed;
    let root = match root {
        Node::Scalar {
            value,
            plain: false,
            ..
        } if matches!(source, ItemsSource::Node(_)) => match yaml::parse(value) {
            Ok(Some(n)) => {
                reparsed = n;
                &reparsed
            }
            Ok(None) => return Vec::new(),
            Err(e) => {
                report.error(key, "", e.at, hint_for_yaml_error(value, &e));
                return Vec::new();
            }
        },
        other => other,
    };
    let items = match root {
        Node::Seq { items, .. } => items,
        Node::Map { at, .. } => {
            report.error(
                key,
                "",
                Some(*at),
                "expected a list of items, found a single mapping; start each item with \"- \"",
            );
            return Vec::new();
        }
        Node::Scalar { at, .. } => {
            report.error(
                key,
                "",
                Some(*at),
                format!("expected a list of items, found {}", root.describe()),
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, node)| parse_item(key, i, node, report))
        .collect()
}

fn parse_item(key: &str, index: usize, node: &Node, report: &mut Report) -> Option<RegistryItem> {
    let base = format!("[{index}]");
    let Node::Map { entries, .. } = node else {
        report.error(
            key,
            &base,
            Some(node.at()),
            format!(
                "expected an item mapping (instanceId, regionId, ...), found {}",
                node.describe()
            ),
        );
        return None;
    };
    let entries = match yaml::map_entries(entries) {
        Ok(e) => e,
        Err(e) => {
            report.error(key, &base, e.at, e.message);
            return None;
        }
    };
    let errors_before = report.errors.len();
    let mut item = RegistryItem {
        expire_duration: DEFAULT_EXPIRE_DURATION,
        ..RegistryItem::default()
    };
    for (field, value) in entries {
        let path = format!("{base}.{field}");
        let text = |report: &mut Report| {
            string_value(key, &path, value, report)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        match field {
            "instanceId" => {
                item.instance_id = text(report);
                if let Some(id) = &item.instance_id {
                    if !id.starts_with("cri-") || id.len() < 5 {
                        report.error(key, &path, Some(value.at()), format!("{id:?} is not an Enterprise Edition instance id (cri-...); use \"\" for Personal Edition"));
                    }
                }
            }
            "regionId" => {
                item.region_id = text(report);
                if let Some(r) = &item.region_id {
                    if !super::is_dns_label(r) {
                        report.error(
                            key,
                            &path,
                            Some(value.at()),
                            format!("{r:?} is not a region id such as cn-hangzhou"),
                        );
                    }
                }
            }
            "domains" | "customDomains" => {
                let hosts = string_list(key, &path, value, report).unwrap_or_default();
                for h in &hosts {
                    if h.contains("://") || h.contains('/') || h.contains(char::is_whitespace) {
                        report.error(
                            key,
                            &path,
                            Some(value.at()),
                            format!("{h:?} is not a registry host (no scheme, path or spaces)"),
                        );
                    }
                }
                if field == "domains" {
                    item.domains = hosts
                } else {
                    item.custom_domains = hosts
                }
            }
            "assumeRoleARN" => item.assume_role_arn = text(report),
            "expireDuration" => match scalar_text(value).and_then(|t| t.trim().parse::<u64>().ok())
            {
                Some(s) if (900..=43200).contains(&s) => {
                    item.expire_duration = Duration::from_secs(s)
                }
                _ => report.error(
                    key,
                    &path,
                    Some(value.at()),
                    format!(
                        "expected a whole number of seconds from 900 to 43200, found {}",
                        value.describe()
                    ),
                ),
            },
            "roleSessionName" => item.role_session_name = text(report),
            "stsEndpoint" => item.sts_endpoint = text(report),
            "rrsaRoleARN" => item.rrsa_role_arn = text(report),
            "rrsaOIDCProviderRoleARN" => item.rrsa_oidc_provider_arn = text(report),
            "customAccessKey" => item.custom_access_key = text(report),
            "customAccessKeySecret" => {
                item.custom_access_key_secret = text(report).map(SecretString::from)
            }
            other => {
                let hint = FIELDS
                    .iter()
                    .find(|f| f.eq_ignore_ascii_case(other))
                    .map(|f| format!(" (did you mean {f}?)"))
                    .unwrap_or_default();
                report.warnings.push(format!(
                    "{key}{base}: unknown field {other:?} ignored{hint}"
                ));
            }
        }
    }
    for arn_field in [
        ("assumeRoleARN", &item.assume_role_arn, "role"),
        ("rrsaRoleARN", &item.rrsa_role_arn, "role"),
        (
            "rrsaOIDCProviderRoleARN",
            &item.rrsa_oidc_provider_arn,
            "oidc-provider",
        ),
    ] {
        if let (name, Some(arn), kind) = arn_field {
            if !arn.starts_with("acs:ram::") || !arn.contains(&format!(":{kind}/")) {
                report.error(
                    key,
                    &format!("{base}.{name}"),
                    Some(node.at()),
                    format!("{arn:?} is not a RAM {kind} ARN (acs:ram::<account>:{kind}/<name>)"),
                );
            }
        }
    }
    match (&item.custom_access_key, &item.custom_access_key_secret) {
        (Some(_), None) | (None, Some(_)) => report.error(key, &base, Some(node.at()), "customAccessKey and customAccessKeySecret go together"),
        (Some(_), Some(_)) => report.warnings.push(format!(
            "{key}{base}: customAccessKeySecret is stored in plain text in the ConfigMap; a Secret is safer"
        )),
        _ => {}
    }
    if item.rrsa_role_arn.is_some() != item.rrsa_oidc_provider_arn.is_some() {
        report.error(
            key,
            &base,
            Some(node.at()),
            "rrsaRoleARN and rrsaOIDCProviderRoleARN go together",
        );
    }
    (report.errors.len() == errors_before).then_some(item)
}
