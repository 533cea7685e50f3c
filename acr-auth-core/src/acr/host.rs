//! The ACR registry host grammar: which edition, instance, region and network a registry
//! host belongs to.

use std::fmt;

/// ACR edition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edition {
    /// Enterprise Edition: `<name>-registry[-vpc].<region>.cr.aliyuncs.com`.
    Enterprise,
    /// Personal Edition: `registry[-intl][-vpc|-internal].<region>.aliyuncs.com` or
    /// `crpi-<id>[-vpc].<region>.personal.cr.aliyuncs.com`.
    Personal,
}

/// Which network a registry host is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// The public endpoint.
    Public,
    /// The VPC endpoint (`-vpc`).
    Vpc,
    /// The classic-network internal endpoint (`-internal`, Personal Edition only).
    Internal,
}

/// A parsed ACR registry host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryHost {
    /// The host, lower-case, without scheme, port or path.
    pub host: String,
    /// Enterprise or Personal Edition.
    pub edition: Edition,
    /// Enterprise: the instance *name* (not its `cri-` id). New Personal Edition: the `crpi-`
    /// instance id. Classic Personal Edition: `None`.
    pub instance: Option<String>,
    /// The region, e.g. `cn-hangzhou`.
    pub region: String,
    /// Public, VPC or internal.
    pub network: Network,
    /// Classic Personal Edition on the international site (`registry-intl`).
    pub intl: bool,
}

/// A host that is not an ACR registry host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host:?} is not an ACR registry host: {reason} (expected <instance>-registry[-vpc].<region>.cr.aliyuncs.com, registry[-intl][-vpc|-internal].<region>.aliyuncs.com or crpi-<id>[-vpc].<region>.personal.cr.aliyuncs.com)")]
pub struct NotAcrHost {
    /// The input.
    pub host: String,
    /// What did not match.
    pub reason: &'static str,
}

/// The region label of a legacy `acr-registry` host that means "the cluster's region".
const WILDCARD_REGION: &str = "*";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl RegistryHost {
    /// Parses a registry host. A scheme (`https://`), a path (`/v2/`) and a port are tolerated
    /// and dropped, and case is ignored, since docker and the kubelet pass hosts in those forms.
    ///
    /// ```
    /// use acr_auth_core::acr::{Edition, Network, RegistryHost};
    /// let h = RegistryHost::parse("my-team-registry-vpc.cn-hangzhou.cr.aliyuncs.com").unwrap();
    /// assert_eq!((h.edition, h.instance.as_deref(), h.region.as_str(), h.network),
    ///            (Edition::Enterprise, Some("my-team"), "cn-hangzhou", Network::Vpc));
    /// assert!(RegistryHost::parse("docker.io").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, NotAcrHost> {
        Self::parse_region(input, false)
    }

    /// Parses a host of the legacy `acr-registry` key, where the region label may be `*`: "the
    /// cluster's region". Such a host has the region `*` until [`RegistryHost::in_region`].
    ///
    /// ```
    /// use acr_auth_core::acr::RegistryHost;
    /// let h = RegistryHost::parse_wildcard_region("acme-registry.*.cr.aliyuncs.com").unwrap();
    /// assert_eq!(h.region, "*");
    /// assert_eq!(h.in_region("cn-beijing").host, "acme-registry.cn-beijing.cr.aliyuncs.com");
    /// assert!(RegistryHost::parse_wildcard_region("*-registry.cn-beijing.cr.aliyuncs.com").is_err());
    /// ```
    pub fn parse_wildcard_region(input: &str) -> Result<Self, NotAcrHost> {
        Self::parse_region(input, true)
    }

    /// Whether the region label is the wildcard `*`.
    pub fn has_wildcard_region(&self) -> bool {
        self.region == WILDCARD_REGION
    }

    /// This host with a wildcard region label replaced by `region`; other hosts unchanged.
    pub fn in_region(&self, region: &str) -> Self {
        if !self.has_wildcard_region() {
            return self.clone();
        }
        // The region is the only label that can be `*`, and it sits between two dots in every
        // form of the grammar.
        Self {
            host: self.host.replacen(".*.", &format!(".{region}."), 1),
            region: region.to_owned(),
            ..self.clone()
        }
    }

    fn parse_region(input: &str, wildcard_region: bool) -> Result<Self, NotAcrHost> {
        let err = |reason| NotAcrHost {
            host: input.to_owned(),
            reason,
        };
        let mut host = input.trim();
        if let Some((scheme, rest)) = host.split_once("://") {
            if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
                return Err(err("unsupported URL scheme"));
            }
            host = rest;
        }
        let host = host.split('/').next().unwrap_or_default();
        let host = match host.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return Err(err("malformed port")),
            None => host,
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(err("empty host"));
        }

        let make = |edition, instance: Option<&str>, region: &str, network, intl| {
            let wildcard = wildcard_region && region == WILDCARD_REGION;
            if !(is_label(region) || wildcard) {
                return Err(err("malformed region label"));
            }
            Ok(RegistryHost {
                host: host.clone(),
                edition,
                instance: instance.map(str::to_owned),
                region: region.to_owned(),
                network,
                intl,
            })
        };

        if let Some(rest) = host.strip_suffix(".personal.cr.aliyuncs.com") {
            let (first, region) = rest.split_once('.').ok_or_else(|| err("missing region"))?;
            if region.contains('.') {
                return Err(err("too many labels before .personal.cr.aliyuncs.com"));
            }
            let (id, network) = match first.strip_suffix("-vpc") {
                Some(id) => (id, Network::Vpc),
                None => (first, Network::Public),
            };
            if !id.starts_with("crpi-") || id.len() == 5 || !is_label(id) {
                return Err(err(
                    "a personal.cr.aliyuncs.com host must start with crpi-<id>",
                ));
            }
            return make(Edition::Personal, Some(id), region, network, false);
        }
        if let Some(rest) = host.strip_suffix(".cr.aliyuncs.com") {
            let (first, region) = rest.split_once('.').ok_or_else(|| err("missing region"))?;
            if region.contains('.') {
                return Err(err("too many labels before .cr.aliyuncs.com"));
            }
            let (base, network) = match first.strip_suffix("-vpc") {
                Some(base) => (base, Network::Vpc),
                None => (first, Network::Public),
            };
            let name = base
                .strip_suffix("-registry")
                .ok_or_else(|| err("an Enterprise Edition host is <instance>-registry[-vpc]"))?;
            if !is_label(name) {
                return Err(err("malformed instance name"));
            }
            return make(Edition::Enterprise, Some(name), region, network, false);
        }
        if let Some(rest) = host.strip_suffix(".aliyuncs.com") {
            let (first, region) = rest.split_once('.').ok_or_else(|| err("missing region"))?;
            if region.contains('.') {
                return Err(err("too many labels before .aliyuncs.com"));
            }
            let (rest, network) = if let Some(r) = first.strip_suffix("-vpc") {
                (r, Network::Vpc)
            } else if let Some(r) = first.strip_suffix("-internal") {
                (r, Network::Internal)
            } else {
                (first, Network::Public)
            };
            let intl = match rest {
                "registry" => false,
                "registry-intl" => true,
                _ => {
                    return Err(err(
                        "a Personal Edition host is registry[-intl][-vpc|-internal]",
                    ))
                }
            };
            return make(Edition::Personal, None, region, network, intl);
        }
        Err(err("not under aliyuncs.com"))
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

/// The classic Personal Edition registry hosts of a region: public and VPC.
///
/// ```
/// assert_eq!(acr_auth_core::acr::personal_registry_hosts("cn-beijing"),
///            ["registry.cn-beijing.aliyuncs.com", "registry-vpc.cn-beijing.aliyuncs.com"]);
/// ```
pub fn personal_registry_hosts(region: &str) -> [String; 2] {
    [
        format!("registry.{region}.aliyuncs.com"),
        format!("registry-vpc.{region}.aliyuncs.com"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(h: &str) -> (Edition, Option<String>, String, Network, bool) {
        let p = RegistryHost::parse(h).unwrap_or_else(|e| panic!("{e}"));
        (p.edition, p.instance, p.region, p.network, p.intl)
    }

    #[test]
    fn accepted_forms() {
        use Edition::*;
        use Network::*;
        let s = |x: &str| Some(x.to_owned());
        let cases = [
            (
                "acme-registry.cn-shanghai.cr.aliyuncs.com",
                (Enterprise, s("acme"), "cn-shanghai", Public, false),
            ),
            (
                "acme-registry-vpc.cn-shanghai.cr.aliyuncs.com",
                (Enterprise, s("acme"), "cn-shanghai", Vpc, false),
            ),
            (
                "a-b-c-registry.ap-southeast-1.cr.aliyuncs.com",
                (Enterprise, s("a-b-c"), "ap-southeast-1", Public, false),
            ),
            (
                "registry.cn-hangzhou.aliyuncs.com",
                (Personal, None, "cn-hangzhou", Public, false),
            ),
            (
                "registry-vpc.cn-hangzhou.aliyuncs.com",
                (Personal, None, "cn-hangzhou", Vpc, false),
            ),
            (
                "registry-internal.cn-hangzhou.aliyuncs.com",
                (Personal, None, "cn-hangzhou", Internal, false),
            ),
            (
                "registry-intl.ap-southeast-1.aliyuncs.com",
                (Personal, None, "ap-southeast-1", Public, true),
            ),
            (
                "registry-intl-vpc.ap-southeast-1.aliyuncs.com",
                (Personal, None, "ap-southeast-1", Vpc, true),
            ),
            (
                "crpi-abc123.cn-hangzhou.personal.cr.aliyuncs.com",
                (Personal, s("crpi-abc123"), "cn-hangzhou", Public, false),
            ),
            (
                "crpi-abc123-vpc.cn-hangzhou.personal.cr.aliyuncs.com",
                (Personal, s("crpi-abc123"), "cn-hangzhou", Vpc, false),
            ),
            (
                "HTTPS://Acme-Registry.CN-Shanghai.cr.aliyuncs.com:443/v2/",
                (Enterprise, s("acme"), "cn-shanghai", Public, false),
            ),
        ];
        for (host, (edition, instance, region, network, intl)) in cases {
            assert_eq!(
                parsed(host),
                (edition, instance, region.to_owned(), network, intl),
                "{host}"
            );
        }
    }

    #[test]
    fn rejected_forms() {
        for host in [
            "",
            "docker.io",
            "registry.cn-hangzhou.aliyuncs.com.evil.com",
            "evil.com/registry.cn-hangzhou.aliyuncs.com",
            "acme.cn-shanghai.cr.aliyuncs.com",
            "-registry.cn-shanghai.cr.aliyuncs.com",
            "registry.aliyuncs.com",
            "oss.cn-hangzhou.aliyuncs.com",
            "registry.a.b.aliyuncs.com",
            "crpi-.cn-hangzhou.personal.cr.aliyuncs.com",
            "abc.cn-hangzhou.personal.cr.aliyuncs.com",
            "ftp://registry.cn-hangzhou.aliyuncs.com",
            "registry.cn-hangzhou.aliyuncs.com:port",
        ] {
            let e = RegistryHost::parse(host).expect_err(host);
            assert!(e.to_string().contains("not an ACR registry host"), "{e}");
        }
    }

    #[test]
    fn wildcard_region_only_where_allowed_and_only_in_the_region_label() {
        let cases = [
            (
                "acme-registry.*.cr.aliyuncs.com",
                "acme-registry.cn-beijing.cr.aliyuncs.com",
            ),
            (
                "Registry-VPC.*.aliyuncs.com",
                "registry-vpc.cn-beijing.aliyuncs.com",
            ),
            (
                "crpi-abc123.*.personal.cr.aliyuncs.com",
                "crpi-abc123.cn-beijing.personal.cr.aliyuncs.com",
            ),
            (
                "registry.cn-hangzhou.aliyuncs.com",
                "registry.cn-hangzhou.aliyuncs.com",
            ),
        ];
        for (input, expanded) in cases {
            let h = RegistryHost::parse_wildcard_region(input).unwrap_or_else(|e| panic!("{e}"));
            let e = h.in_region("cn-beijing");
            assert_eq!(e.host, expanded, "{input}");
            assert!(!e.has_wildcard_region(), "{input}");
            assert_eq!(e, parsed_full(expanded), "{input}");
        }
        assert!(RegistryHost::parse("registry.*.aliyuncs.com").is_err());
        for host in [
            "*.cn-hangzhou.aliyuncs.com",
            "*-registry.cn-hangzhou.cr.aliyuncs.com",
            "acme-registry.*.*.cr.aliyuncs.com",
            "registry.cn-*.aliyuncs.com",
            "registry.*",
        ] {
            let e = RegistryHost::parse_wildcard_region(host).expect_err(host);
            assert_eq!(e.host, host);
        }
    }

    fn parsed_full(h: &str) -> RegistryHost {
        RegistryHost::parse(h).unwrap_or_else(|e| panic!("{e}"))
    }
}
