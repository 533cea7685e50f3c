//! `tokenMode`: which base identity the controller uses ([docs/configuration.md][tokenmode]), as
//! a pure function of what the cluster has.
//!
//! [tokenmode]: https://github.com/acr-auth/acr-auth/blob/main/docs/configuration.md#tokenmode-and-the-base-identity

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The install-time setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenMode {
    /// Pick from what the cluster has (default).
    #[default]
    Auto,
    /// The ACK-managed role `AliyunCSManagedAcrRole` (Secret `addon.aliyuncsmanagedacrrole.token`).
    ManagedRole,
    /// The node's ECS RAM role through the metadata service.
    WorkerRole,
}

/// An unknown `tokenMode` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokenMode {0:?} is not one of auto, managedRole, workerRole")]
pub struct UnknownTokenMode(pub String);

impl FromStr for TokenMode {
    type Err = UnknownTokenMode;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "managedrole" => Ok(Self::ManagedRole),
            "workerrole" => Ok(Self::WorkerRole),
            _ => Err(UnknownTokenMode(s.to_owned())),
        }
    }
}

impl fmt::Display for TokenMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::ManagedRole => "managedRole",
            Self::WorkerRole => "workerRole",
        })
    }
}

/// Where the base identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// Secret `kube-system/alibaba-addon-secret` (`access-key-id`, `access-key-secret`).
    AddonSecret,
    /// Secret `kube-system/addon.aliyuncsmanagedacrrole.token`.
    ManagedRole,
    /// The ECS instance RAM role.
    WorkerRole,
    /// The standard default credential chain.
    DefaultChain,
}

/// What the cluster has, as seen at start-up. Fields may be added in minor releases: start
/// from [`ClusterFacts::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClusterFacts {
    /// Creation time of namespace `kube-system` (the cluster's creation time).
    pub kube_system_created: Option<SystemTime>,
    /// Whether `kube-system/alibaba-addon-secret` exists.
    pub addon_secret: bool,
    /// Whether `kube-system/addon.aliyuncsmanagedacrrole.token` exists.
    pub managed_role_secret: bool,
    /// Whether the ECS metadata service answers.
    pub ecs_metadata: bool,
}

/// Clusters created on or after this day get the managed role in `auto`: 2023-04-03 00:00 UTC,
/// in seconds since the Unix epoch.
pub const MANAGED_ROLE_SINCE_EPOCH_SECS: u64 = 1_680_480_000;

/// [`MANAGED_ROLE_SINCE_EPOCH_SECS`] as a time.
pub fn managed_role_since() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(MANAGED_ROLE_SINCE_EPOCH_SECS)
}

/// Chooses the identity source and says why.
///
/// Explicit modes are honoured as given. `auto`: the addon Secret when present; else by cluster
/// age the managed role (created on or after 2023-04-03) or the worker role, falling through to
/// the other one and then to the default chain when the chosen source is absent.
///
/// ```
/// use acr_auth_core::credentials::{resolve_token_mode, ClusterFacts, IdentitySource, TokenMode};
/// let mut facts = ClusterFacts::default();
/// facts.addon_secret = true;
/// let (source, why) = resolve_token_mode(TokenMode::Auto, &facts);
/// assert_eq!(source, IdentitySource::AddonSecret);
/// assert!(why.contains("alibaba-addon-secret"));
/// ```
pub fn resolve_token_mode(mode: TokenMode, facts: &ClusterFacts) -> (IdentitySource, String) {
    match mode {
        TokenMode::ManagedRole => (
            IdentitySource::ManagedRole,
            "tokenMode=managedRole".to_owned(),
        ),
        TokenMode::WorkerRole => (
            IdentitySource::WorkerRole,
            "tokenMode=workerRole".to_owned(),
        ),
        TokenMode::Auto => {
            if facts.addon_secret {
                return (
                    IdentitySource::AddonSecret,
                    "tokenMode=auto: Secret kube-system/alibaba-addon-secret is present (registered or self-managed cluster)".to_owned(),
                );
            }
            let newer = facts
                .kube_system_created
                .is_some_and(|t| t >= managed_role_since());
            let age = match facts.kube_system_created {
                None => "the cluster's creation time is unknown".to_owned(),
                Some(_) if newer => "the cluster was created on or after 2023-04-03".to_owned(),
                Some(_) => "the cluster was created before 2023-04-03".to_owned(),
            };
            let (first, second) = if newer {
                (IdentitySource::ManagedRole, IdentitySource::WorkerRole)
            } else {
                (IdentitySource::WorkerRole, IdentitySource::ManagedRole)
            };
            let present = |s: IdentitySource| match s {
                IdentitySource::ManagedRole => facts.managed_role_secret,
                IdentitySource::WorkerRole => facts.ecs_metadata,
                _ => false,
            };
            let describe = |s: IdentitySource| match s {
                IdentitySource::ManagedRole => {
                    "the managed role (Secret kube-system/addon.aliyuncsmanagedacrrole.token)"
                }
                IdentitySource::WorkerRole => "the worker role (ECS metadata)",
                _ => "",
            };
            if present(first) {
                return (
                    first,
                    format!("tokenMode=auto: {age}, so {}", describe(first)),
                );
            }
            if present(second) {
                return (
                    second,
                    format!(
                        "tokenMode=auto: {age}, but {} is absent, so {}",
                        describe(first),
                        describe(second)
                    ),
                );
            }
            (
                IdentitySource::DefaultChain,
                format!(
                    "tokenMode=auto: {age}, but neither {} nor {} is available, so the default credential chain",
                    describe(first),
                    describe(second)
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days_after_cutoff: i64) -> Option<SystemTime> {
        let d = Duration::from_secs(days_after_cutoff.unsigned_abs() * 86400);
        Some(if days_after_cutoff >= 0 {
            managed_role_since() + d
        } else {
            managed_role_since() - d
        })
    }

    #[test]
    fn auto_mode_table() {
        use IdentitySource::*;
        let f = |created, addon, managed, ecs| ClusterFacts {
            kube_system_created: created,
            addon_secret: addon,
            managed_role_secret: managed,
            ecs_metadata: ecs,
        };
        let cases = [
            (f(at(10), true, true, true), AddonSecret),
            (f(at(0), false, true, true), ManagedRole),
            (f(at(-1), false, true, true), WorkerRole),
            (f(at(10), false, false, true), WorkerRole),
            (f(at(-10), false, true, false), ManagedRole),
            (f(at(10), false, false, false), DefaultChain),
            (f(None, false, true, true), WorkerRole),
        ];
        for (facts, want) in cases {
            let (got, why) = resolve_token_mode(TokenMode::Auto, &facts);
            assert_eq!(got, want, "{facts:?}: {why}");
            assert!(why.starts_with("tokenMode=auto: "), "{why}");
        }
    }

    #[test]
    fn explicit_modes_are_honoured_and_parse_case_insensitively() {
        let facts = ClusterFacts {
            addon_secret: true,
            ..ClusterFacts::default()
        };
        assert_eq!(
            resolve_token_mode("MANAGEDROLE".parse().unwrap(), &facts).0,
            IdentitySource::ManagedRole
        );
        assert_eq!(
            resolve_token_mode("workerRole".parse().unwrap(), &facts).0,
            IdentitySource::WorkerRole
        );
        assert!("nodeRole"
            .parse::<TokenMode>()
            .unwrap_err()
            .to_string()
            .contains("auto, managedRole, workerRole"));
    }

    #[test]
    fn cutoff_is_2023_04_03_utc() {
        assert_eq!(
            crate::time::format_iso8601(managed_role_since()),
            "2023-04-03T00:00:00Z"
        );
    }
}
