//! The legacy `acr-registry` key: a comma list of registry hosts, each turned by the registry
//! host grammar into the registry it belongs to.
//!
//! Personal Edition hosts become Personal Edition items of their region. Enterprise Edition
//! hosts name their instance by *name*; [`InstanceByName`] resolves it to the `cri-` id with
//! `ListInstance` when a token is fetched. Hosts of one registry share one item, so one token.

use std::sync::Arc;
use std::time::Duration;

use crate::acr::{AcrClient, Edition, NotAcrHost, RegistryHost};
use crate::cache::ExpiringCache;
use crate::config::{HelperConfig, RegistryItem, DEFAULT_EXPIRE_DURATION};
use crate::error::{Error, ErrorKind};
use crate::time::SharedClock;

use super::ENDPOINTS_TTL;

/// A registry named by hosts of the legacy `acr-registry` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyRegistry {
    /// Enterprise Edition: the instance name (the host label before `-registry`), resolved to
    /// its id with `ListInstance`. Personal Edition: `None`.
    pub instance_name: Option<String>,
    /// The region; `None` for "the cluster's region" (`*` in the region label).
    pub region: Option<String>,
    /// The hosts written into the Secret, in the order listed, lower-case, without scheme, port
    /// or path. While the region is `None` they keep their `*`.
    pub hosts: Vec<String>,
}

impl LegacyRegistry {
    /// "Enterprise Edition instance named acme in cn-hangzhou", "Personal Edition in the
    /// cluster's region".
    pub fn description(&self) -> String {
        let region = self.region.as_deref().unwrap_or("the cluster's region");
        match &self.instance_name {
            Some(name) => format!("Enterprise Edition instance named {name} in {region}"),
            None => format!("Personal Edition in {region}"),
        }
    }
}

/// The registries of the legacy `acr-registry` hosts, in the order first named. With
/// `cluster_region`, `*` region labels become that region (so `acme-registry.*` and
/// `acme-registry.<cluster region>` are one registry); without it they stay `*`.
///
/// Classic Personal Edition hosts (`registry[-intl][-vpc|-internal]`) and `crpi-` hosts become
/// Personal Edition registries (`GET /tokens` in their region), as an `acr-registry-info` item
/// `instanceId: ""` listing them as `domains` would.
///
/// ```
/// use acr_auth_core::source::{legacy_registries, LegacyRegistry};
/// let hosts = ["acme-registry.*.cr.aliyuncs.com".to_owned(),
///              "acme-registry-vpc.cn-beijing.cr.aliyuncs.com".to_owned()];
/// assert_eq!(legacy_registries(&hosts, Some("cn-beijing")).unwrap(), [LegacyRegistry {
///     instance_name: Some("acme".into()),
///     region: Some("cn-beijing".into()),
///     hosts: vec!["acme-registry.cn-beijing.cr.aliyuncs.com".into(),
///                 "acme-registry-vpc.cn-beijing.cr.aliyuncs.com".into()],
/// }]);
/// assert!(legacy_registries(&["docker.io".to_owned()], None).is_err());
/// ```
pub fn legacy_registries(
    hosts: &[String],
    cluster_region: Option<&str>,
) -> Result<Vec<LegacyRegistry>, NotAcrHost> {
    let mut out: Vec<LegacyRegistry> = Vec::new();
    for raw in hosts {
        let parsed = RegistryHost::parse_wildcard_region(raw)?;
        let parsed = match cluster_region {
            Some(region) => parsed.in_region(region),
            None => parsed,
        };
        let instance_name = match parsed.edition {
            Edition::Enterprise => parsed.instance.clone(),
            Edition::Personal => None,
        };
        let region = (!parsed.has_wildcard_region()).then(|| parsed.region.clone());
        match out
            .iter_mut()
            .find(|r| r.instance_name == instance_name && r.region == region)
        {
            Some(r) if r.hosts.contains(&parsed.host) => {}
            Some(r) => r.hosts.push(parsed.host),
            None => out.push(LegacyRegistry {
                instance_name,
                region,
                hosts: vec![parsed.host],
            }),
        }
    }
    Ok(out)
}

/// An item to serve and, for a legacy Enterprise Edition host, the name of its instance.
pub(super) type NamedItem = (RegistryItem, Option<String>);

/// The legacy `acr-registry` registries as items, each with the name of its Enterprise Edition
/// instance to resolve; `None` when `acr-registry-info` is set or `acr-registry` is empty.
pub(super) fn legacy_items(
    config: &HelperConfig,
    cluster_region: &str,
) -> Result<Option<Vec<NamedItem>>, Error> {
    if !config.registries.is_empty() || config.legacy_registries.is_empty() {
        return Ok(None);
    }
    let registries = legacy_registries(&config.legacy_registries, Some(cluster_region))
        .map_err(|e| Error::invalid_input("acr-registry", e.to_string()))?;
    Ok(Some(
        registries
            .into_iter()
            .map(|r| {
                let item = RegistryItem {
                    region_id: r.region,
                    domains: r.hosts,
                    expire_duration: DEFAULT_EXPIRE_DURATION,
                    ..RegistryItem::default()
                };
                (item, r.instance_name)
            })
            .collect(),
    ))
}

/// An Enterprise Edition instance known by name only (legacy `acr-registry`), resolved to its
/// id with `ListInstance` and cached like the endpoints.
#[derive(Debug)]
pub(super) struct InstanceByName {
    name: String,
    hosts: Vec<String>,
    ids: Arc<ExpiringCache<String>>,
    clock: SharedClock,
}

impl InstanceByName {
    pub(super) fn new(
        name: String,
        hosts: Vec<String>,
        ids: Arc<ExpiringCache<String>>,
        clock: SharedClock,
    ) -> Self {
        Self {
            name,
            hosts,
            ids,
            clock,
        }
    }

    /// A cache for resolved ids: no renewal threshold, no jitter (see `ENDPOINTS_TTL`).
    pub(super) fn id_cache(clock: SharedClock) -> ExpiringCache<String> {
        ExpiringCache::new(Duration::ZERO, clock).with_max_jitter(Duration::ZERO)
    }

    /// "Enterprise Edition instance named acme in cn-hangzhou".
    pub(super) fn description(&self, region: &str) -> String {
        format!(
            "Enterprise Edition instance named {} in {region}",
            self.name
        )
    }

    /// The instance id. "No such instance" names the hosts that led to it; other failures
    /// (permissions, transport) keep Alibaba's code and request id.
    pub(super) async fn resolve(&self, client: &AcrClient) -> Result<String, Error> {
        self.ids
            .get_or_load(|| async {
                let id = client.find_instance_id(&self.name).await.map_err(|e| {
                    if e.kind() == ErrorKind::InvalidInput {
                        Error::invalid_input(
                            format!("acr-registry {}", self.hosts.join(", ")),
                            e.message().to_owned(),
                        )
                    } else {
                        e
                    }
                })?;
                tracing::info!(instance = %self.name, id = %id, "resolved an Enterprise Edition instance by name");
                Ok((id, self.clock.now() + ENDPOINTS_TTL))
            })
            .await
    }
}
