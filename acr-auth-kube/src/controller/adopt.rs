//! Adopting the cluster: the tokens our Secrets record are put back into their sources' caches
//! when a process starts, a replica becomes leader or the sources are rebuilt.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::{Accepted, Controller};
use crate::plan::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

impl Controller {
    /// A new process or leader starts from what the cluster holds: a token recorded in our
    /// Secrets (`REGISTRIES_ANNOTATION`, with its expiry and hosts) is put into its source's
    /// cache, so it is used until its renewal point: no ACR call and no Secret write for a
    /// restart, a failover or a configuration edit. Anything unreadable is skipped (a fetch
    /// follows, as without adoption).
    pub(super) async fn adopt_tokens(&self, accepted: &Accepted) {
        let pending: Vec<_> = accepted
            .sources
            .sources()
            .iter()
            .filter(|s| !s.has_token())
            .collect();
        if pending.is_empty() {
            return;
        }
        let api: Api<Secret> = Api::all(self.client.clone());
        let params = kube::api::ListParams::default()
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
            .fields(&format!("metadata.name={}", accepted.config.secret_name))
            .limit(20);
        let secrets = match api.list(&params).await {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!(error = %e, "could not read our Secrets to adopt their tokens; fetching new ones");
                return;
            }
        };
        let now = self.settings.sources.env.clock().now();
        let chosen = choose_adoptions(&secrets, now);
        for source in pending {
            if let Some(token) = chosen.get(source.adoption_key()) {
                let expires_at = token.expires_at;
                if source.adopt(token.clone()) {
                    tracing::info!(
                        registry = %source.description(),
                        expires_at = %acr_auth_core::time::format_iso8601(expires_at),
                        "adopted the token our Secrets hold; a new one is fetched at its renewal point"
                    );
                }
            }
        }
    }
}

/// The longest a registry token can live: an STS session of `expireDuration` 43200 s bounds it.
/// A recorded expiry beyond this from now is not believed.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(43_200);

/// Which token to adopt per source, from our Secrets: each `REGISTRIES_ANNOTATION` record whose
/// login is the same on every recorded host, unexpired and not further away than a token can
/// live, is a vote; the login found in the most Secrets wins (a record edited in one namespace
/// cannot outvote the others), then the latest expiry.
fn choose_adoptions(
    secrets: &[Secret],
    now: std::time::SystemTime,
) -> BTreeMap<String, acr_auth_core::acr::RegistryToken> {
    use acr_auth_core::acr::RegistryToken;
    use acr_auth_core::docker_config::DockerConfig;

    use crate::plan::{RegistryRecord, DOCKER_CONFIG_KEY, REGISTRIES_ANNOTATION};

    // (source, username, password, expiry) -> how many Secrets carry it.
    type Vote = (String, String, String, std::time::SystemTime);
    let mut votes: BTreeMap<Vote, usize> = BTreeMap::new();
    for secret in secrets {
        let records: Vec<RegistryRecord> = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REGISTRIES_ANNOTATION))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        let Some(config) = secret
            .data
            .as_ref()
            .and_then(|d| d.get(DOCKER_CONFIG_KEY))
            .and_then(|b| std::str::from_utf8(&b.0).ok())
            .and_then(|t| DockerConfig::parse(t).ok())
        else {
            continue;
        };
        for r in records {
            let Some(expires_at) = acr_auth_core::time::parse_iso8601(&r.expires_at) else {
                continue;
            };
            if expires_at <= now || expires_at > now + MAX_TOKEN_LIFETIME {
                continue;
            }
            let Some(first) = r.hosts.first().and_then(|h| config.auths.get(h)) else {
                continue;
            };
            let consistent = r.hosts.iter().all(|h| {
                config.auths.get(h).is_some_and(|a| {
                    a.username == first.username && a.password.expose() == first.password.expose()
                })
            });
            if consistent {
                let key = (
                    r.source.clone(),
                    first.username.clone(),
                    first.password.expose().to_owned(),
                    expires_at,
                );
                *votes.entry(key).or_default() += 1;
            }
        }
    }
    let mut chosen: BTreeMap<String, (usize, RegistryToken)> = BTreeMap::new();
    for ((source, username, password, expires_at), count) in votes {
        let better = chosen
            .get(&source)
            .is_none_or(|(c, t)| count > *c || (count == *c && expires_at > t.expires_at));
        if better {
            let token = RegistryToken {
                username,
                password: password.into(),
                expires_at,
            };
            chosen.insert(source, (count, token));
        }
    }
    chosen.into_iter().map(|(k, (_, t))| (k, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use acr_auth_core::docker_config::DockerConfig;
    use std::time::UNIX_EPOCH;

    fn secret(user: &str, password: &str, expires_at: &str) -> Secret {
        use base64::Engine as _;
        let mut config = DockerConfig::default();
        config.insert("h1", user, password);
        config.insert("h2", user, password);
        let record =
            format!(r#"[{{"source":"s","hosts":["h1","h2"],"expiresAt":"{expires_at}"}}]"#);
        serde_json::from_value(serde_json::json!({
            "metadata": {"annotations": {crate::plan::REGISTRIES_ANNOTATION: record}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson":
                base64::engine::general_purpose::STANDARD.encode(config.to_json())},
        }))
        .unwrap()
    }

    #[test]
    fn adoption_follows_the_majority_and_refuses_absurd_expiries() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let in_30_min = acr_auth_core::time::format_iso8601(now + Duration::from_secs(1800));
        let in_50_min = acr_auth_core::time::format_iso8601(now + Duration::from_secs(3000));
        // Three Secrets agree; one namespace's copy was edited to another login and a later
        // expiry; one claims year 9999.
        let secrets = [
            secret("u", "good", &in_30_min),
            secret("u", "good", &in_30_min),
            secret("u", "good", &in_30_min),
            secret("u", "forged", &in_50_min),
            secret("u", "forever", "9999-12-31T23:59:59Z"),
        ];
        let chosen = choose_adoptions(&secrets, now);
        assert_eq!(chosen["s"].password.expose(), "good");
        assert_eq!(chosen["s"].expires_at, now + Duration::from_secs(1800));
        assert!(
            choose_adoptions(&secrets[4..], now).is_empty(),
            "an expiry no token can reach is not believed"
        );
        let past = acr_auth_core::time::format_iso8601(now - Duration::from_secs(1));
        assert!(choose_adoptions(&[secret("u", "p", &past)], now).is_empty());
    }
}
