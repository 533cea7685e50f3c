//! Registry credential sources built from a configuration, against the fake cloud.

use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::acr::Endpoint;
use acr_auth_core::config::HelperConfig;
use acr_auth_core::credentials::{Credentials, ProviderEnv};
use acr_auth_core::http::RetryPolicy;
use acr_auth_core::source::{RegistrySources, SourceSettings};
use acr_auth_core::time::{Clock, ManualClock, SystemClock};
use acr_auth_testkit::{AccessKeyConfig, FakeCloud, FakeCloudConfig};

struct World {
    cloud: FakeCloud,
    clock: ManualClock,
}

async fn world() -> World {
    let mut config = FakeCloudConfig::sample();
    config.access_keys.push(AccessKeyConfig {
        id: "LTAIcustom".into(),
        secret: "custom-secret".into(),
        acr_allowed: true,
    });
    config.access_keys.push(AccessKeyConfig {
        id: "LTAIdenied".into(),
        secret: "denied-secret".into(),
        acr_allowed: false,
    });
    let clock = ManualClock::new(SystemClock.now());
    let cloud = FakeCloud::start_with_clock(config, Arc::new(clock.clone()))
        .await
        .unwrap();
    World { cloud, clock }
}

impl World {
    fn settings(&self, env: ProviderEnv) -> SourceSettings {
        let mut s = SourceSettings::new(
            "cn-hangzhou",
            Arc::new(Credentials::new("LTAItestkey", "test-secret")),
            "static test key",
        );
        s.env = env.with_clock(Arc::new(self.clock.clone()));
        s.acr_endpoint = Some(Endpoint::Url(self.cloud.url()));
        s.retry = RetryPolicy::none();
        s
    }

    fn env(&self) -> ProviderEnv {
        ProviderEnv::from_vars([("ACR_AUTH_STS_ENDPOINT", self.cloud.url())])
    }

    fn sources(
        &self,
        items_yaml: &str,
        extra: &[(&str, &str)],
        env: ProviderEnv,
    ) -> RegistrySources {
        let mut data = vec![("acr-registry-info", items_yaml)];
        data.extend_from_slice(extra);
        let config = HelperConfig::from_configmap(data).unwrap().config;
        RegistrySources::build(&config, &self.settings(env)).unwrap()
    }

    /// Sources of a configuration with only the legacy `acr-registry` key, in a cluster in
    /// `cluster_region`.
    fn legacy(&self, hosts: &str, cluster_region: &str) -> RegistrySources {
        let config = HelperConfig::from_configmap([("acr-registry", hosts)])
            .unwrap()
            .config;
        let mut settings = self.settings(self.env());
        settings.cluster_region = cluster_region.into();
        RegistrySources::build(&config, &settings).unwrap()
    }
}

#[tokio::test]
async fn empty_configuration_serves_the_personal_registry_of_the_cluster_region() {
    let w = world().await;
    let config = HelperConfig::from_configmap(Vec::<(String, String)>::new())
        .unwrap()
        .config;
    let sources = RegistrySources::build(&config, &w.settings(w.env())).unwrap();
    assert_eq!(sources.sources().len(), 1);
    let cred = sources.sources()[0].credential().await.unwrap();
    assert_eq!(
        cred.hosts,
        [
            "registry.cn-hangzhou.aliyuncs.com",
            "registry-vpc.cn-hangzhou.aliyuncs.com"
        ]
    );
    assert_eq!(cred.token.username, "cr_temp_user");
    assert_eq!(sources.sources()[0].identity_chain(), "static test key");
}

#[tokio::test]
async fn the_same_instance_region_and_identity_share_one_token() {
    let w = world().await;
    let items =
        "- instanceId: cri-testinstance01\n  domains: acme-registry.cn-hangzhou.cr.aliyuncs.com\n\
                 - instanceId: cri-testinstance01\n  customDomains: mirror.example.com\n\
                 - instanceId: \"\"\n  regionId: cn-beijing\n";
    let sources = w.sources(items, &[], w.env());
    let creds: Vec<_> = futures_join(&sources).await;
    assert_eq!(creds[0].token, creds[1].token, "shared");
    assert_eq!(w.cloud.calls("GetAuthorizationToken"), 1);
    assert_eq!(w.cloud.calls("ListInstanceEndpoint"), 1);
    assert_eq!(
        creds[0].hosts,
        ["acme-registry.cn-hangzhou.cr.aliyuncs.com"],
        "narrowed by domains"
    );
    assert_eq!(
        creds[1].hosts,
        [
            "acme-registry.cn-hangzhou.cr.aliyuncs.com",
            "registry.acme.example",
            "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
            "mirror.example.com"
        ]
    );
    assert_eq!(
        creds[2].hosts,
        [
            "registry.cn-beijing.aliyuncs.com",
            "registry-vpc.cn-beijing.aliyuncs.com"
        ]
    );

    // Asking again within the threshold costs nothing.
    futures_join(&sources).await;
    assert_eq!(w.cloud.calls("GetAuthorizationToken"), 1);
    assert_eq!(w.cloud.calls("GET /tokens"), 1);

    // At expires_at - 15m (minus jitter) the shared token is renewed once for both items.
    w.clock.advance(Duration::from_secs(3600 - 15 * 60 + 1));
    let renewed = futures_join(&sources).await;
    assert_ne!(renewed[0].token, creds[0].token);
    assert_eq!(renewed[0].token, renewed[1].token);
    assert_eq!(w.cloud.calls("GetAuthorizationToken"), 2);
}

async fn futures_join(sources: &RegistrySources) -> Vec<acr_auth_core::source::RegistryCredential> {
    let mut out = Vec::new();
    for s in sources.sources() {
        out.push(s.credential().await.unwrap());
    }
    out
}

#[tokio::test]
async fn assume_role_items_use_sts_and_different_identities_do_not_share() {
    let w = world().await;
    let items = "- instanceId: cri-testinstance01\n  assumeRoleARN: acs:ram::1234567890:role/acr-puller\n  expireDuration: 1200\n\
                 - instanceId: cri-testinstance01\n";
    let sources = w.sources(items, &[], w.env());
    assert_eq!(
        sources.sources()[0].identity_chain(),
        "static test key -> AssumeRole acs:ram::1234567890:role/acr-puller (1200s)"
    );
    let creds = futures_join(&sources).await;
    assert_ne!(creds[0].token, creds[1].token);
    assert_eq!(w.cloud.calls("AssumeRole"), 1);
    assert_eq!(w.cloud.calls("GetAuthorizationToken"), 2);
    // The token made with the 1200 s session lasts no longer than it.
    let left = creds[0]
        .token
        .expires_at
        .duration_since(w.clock.now())
        .unwrap();
    assert!(left <= Duration::from_secs(1200), "{left:?}");
}

#[tokio::test]
async fn custom_access_keys_are_used_per_item() {
    let w = world().await;
    let items = "- instanceId: \"\"\n  customAccessKey: LTAIcustom\n  customAccessKeySecret: custom-secret\n\
                 - instanceId: \"\"\n  regionId: cn-shanghai\n  customAccessKey: LTAIdenied\n  customAccessKeySecret: denied-secret\n";
    let sources = w.sources(items, &[], w.env());
    assert_eq!(
        sources.sources()[0].identity_chain(),
        "customAccessKey LTAIcu***"
    );
    assert!(sources.sources()[0].credential().await.is_ok());
    let e = sources.sources()[1].credential().await.unwrap_err();
    assert_eq!(e.code(), Some("NoPrivilege"), "the item's own key was used");
    assert!(!format!("{sources:?}").contains("denied-secret"));
}

#[tokio::test]
async fn rrsa_items_assume_their_role_with_the_pod_token_when_enabled() {
    let w = world().await;
    let items = "- instanceId: cri-testinstance01\n  rrsaRoleARN: acs:ram::1234567890:role/acr-puller\n  rrsaOIDCProviderRoleARN: acs:ram::1234567890:oidc-provider/ack-rrsa-test\n";
    let env = ProviderEnv::from_vars([
        ("ACR_AUTH_STS_ENDPOINT", w.cloud.url().as_str()),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/var/run/rrsa/token"),
    ])
    .with_file("/var/run/rrsa/token", "eyJ.test-oidc-token.sig");
    let sources = w.sources(items, &[("rrsa", "enable: true")], env.clone());
    assert!(sources.sources()[0].identity_chain().starts_with("RRSA"));
    sources.sources()[0].credential().await.unwrap();
    assert_eq!(w.cloud.calls("AssumeRoleWithOIDC"), 1);

    // Without rrsa.enable the base identity is used.
    let sources = w.sources(items, &[], env);
    assert_eq!(sources.sources()[0].identity_chain(), "static test key");
    sources.sources()[0].credential().await.unwrap();
    assert_eq!(w.cloud.calls("AssumeRoleWithOIDC"), 1);
}

#[tokio::test]
async fn legacy_hosts_become_registries_with_exactly_those_hosts() {
    let w = world().await;
    let sources = w.legacy(
        "acme-registry.*.cr.aliyuncs.com, registry.*.aliyuncs.com, \
         acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com, registry-vpc.cn-beijing.aliyuncs.com",
        "cn-hangzhou",
    );
    let described: Vec<&str> = sources.sources().iter().map(|s| s.description()).collect();
    assert_eq!(
        described,
        [
            "Enterprise Edition instance named acme in cn-hangzhou",
            "Personal Edition in cn-hangzhou",
            "Personal Edition in cn-beijing"
        ]
    );
    let creds = futures_join(&sources).await;
    assert_eq!(
        creds[0].hosts,
        [
            "acme-registry.cn-hangzhou.cr.aliyuncs.com",
            "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com"
        ],
        "the listed hosts only: not the custom domain ListInstanceEndpoint would add"
    );
    assert_eq!(
        creds[0].token.username, "temp_user_cr",
        "an Enterprise token"
    );
    assert_eq!(creds[1].hosts, ["registry.cn-hangzhou.aliyuncs.com"]);
    assert_eq!(creds[1].token.username, "cr_temp_user", "a Personal token");
    assert_eq!(creds[2].hosts, ["registry-vpc.cn-beijing.aliyuncs.com"]);
    assert_eq!(w.cloud.calls("ListInstance"), 1);
    assert_eq!(
        w.cloud.calls("GetAuthorizationToken"),
        1,
        "one token for both hosts"
    );
    assert_eq!(w.cloud.calls("GET /tokens"), 2, "one per region");
    assert_eq!(w.cloud.calls("ListInstanceEndpoint"), 0);
}

#[tokio::test]
async fn a_wildcard_region_is_the_cluster_region() {
    let w = world().await;
    let sources = w.legacy(
        "registry.*.aliyuncs.com,registry-vpc.*.aliyuncs.com",
        "cn-shanghai",
    );
    assert_eq!(sources.sources().len(), 1, "one registry, one token");
    assert_eq!(sources.sources()[0].region(), "cn-shanghai");
    let cred = sources.sources()[0].credential().await.unwrap();
    assert_eq!(
        cred.hosts,
        [
            "registry.cn-shanghai.aliyuncs.com",
            "registry-vpc.cn-shanghai.aliyuncs.com"
        ]
    );
}

#[tokio::test]
async fn hosts_of_one_instance_share_one_token_and_the_resolved_id_is_cached() {
    let w = world().await;
    // `*` and the cluster's region spelled out are the same instance.
    let sources = w.legacy(
        "acme-registry.*.cr.aliyuncs.com,acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
        "cn-hangzhou",
    );
    assert_eq!(sources.sources().len(), 1);
    let first = sources.sources()[0].credential().await.unwrap();
    assert_eq!(first.hosts.len(), 2);
    assert_eq!(
        (
            w.cloud.calls("ListInstance"),
            w.cloud.calls("GetAuthorizationToken")
        ),
        (1, 1)
    );

    // The token renews at expires_at - 15m; the id resolved 45 minutes ago is still good.
    w.clock.advance(Duration::from_secs(3600 - 15 * 60 + 1));
    let renewed = sources.sources()[0].credential().await.unwrap();
    assert_ne!(renewed.token, first.token);
    assert_eq!(
        (
            w.cloud.calls("ListInstance"),
            w.cloud.calls("GetAuthorizationToken")
        ),
        (1, 2)
    );

    // An hour after it was resolved, the next renewal resolves the name again.
    w.clock.advance(Duration::from_secs(3600));
    sources.sources()[0].credential().await.unwrap();
    assert_eq!(
        (
            w.cloud.calls("ListInstance"),
            w.cloud.calls("GetAuthorizationToken")
        ),
        (2, 3)
    );
}

#[tokio::test]
async fn an_unknown_instance_name_is_an_error_naming_the_host() {
    let w = world().await;
    // The service matches InstanceName as a substring ("acm" finds "acme"); only an exact name
    // counts.
    for (host, name) in [
        ("nosuch-registry.*.cr.aliyuncs.com", "nosuch"),
        ("acm-registry-vpc.*.cr.aliyuncs.com", "acm"),
    ] {
        let sources = w.legacy(host, "cn-hangzhou");
        let e = sources.sources()[0].credential().await.unwrap_err();
        assert_eq!(e.kind(), acr_auth_core::ErrorKind::InvalidInput, "{e}");
        assert!(!e.is_retryable());
        let expanded = host.replace('*', "cn-hangzhou");
        assert_eq!(e.context(), format!("acr-registry {expanded}"));
        assert_eq!(
            e.message(),
            format!("no Enterprise Edition instance named \"{name}\" in cn-hangzhou")
        );
    }
    assert_eq!(w.cloud.calls("GetAuthorizationToken"), 0);
}

#[tokio::test]
async fn an_unparsable_legacy_host_fails_the_build() {
    let w = world().await;
    // The ConfigMap parser refuses it already; a configuration built by hand reaches the sources.
    let mut config = HelperConfig::default();
    config.legacy_registries = vec!["registry.*.aliyuncs.com".into(), "docker.io".into()];
    let e = RegistrySources::build(&config, &w.settings(w.env())).unwrap_err();
    assert_eq!(e.kind(), acr_auth_core::ErrorKind::InvalidInput);
    assert_eq!(e.context(), "acr-registry");
    assert!(
        e.message()
            .starts_with("\"docker.io\" is not an ACR registry host: not under aliyuncs.com"),
        "{e}"
    );
    assert_eq!(w.cloud.all_calls().values().sum::<usize>(), 0);
}

#[tokio::test]
async fn legacy_hosts_are_ignored_when_acr_registry_info_is_set() {
    let w = world().await;
    let sources = w.sources(
        "- instanceId: \"\"\n",
        &[("acr-registry", "acme-registry.*.cr.aliyuncs.com")],
        w.env(),
    );
    let described: Vec<&str> = sources.sources().iter().map(|s| s.description()).collect();
    assert_eq!(described, ["Personal Edition in cn-hangzhou"]);
}

#[tokio::test]
async fn enterprise_domains_are_used_as_given_without_listing_the_endpoints() {
    let w = world().await;
    // pull.acme.example is not a domain ListInstanceEndpoint reports for the instance.
    let sources = w.sources(
        "- instanceId: cri-testinstance01\n  domains: \"acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com,pull.acme.example\"\n  customDomains: mirror.example.com\n",
        &[],
        w.env(),
    );
    let cred = sources.sources()[0].credential().await.unwrap();
    assert_eq!(
        cred.hosts,
        [
            "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
            "pull.acme.example",
            "mirror.example.com"
        ]
    );
    assert_eq!(w.cloud.calls("ListInstanceEndpoint"), 0);
    assert_eq!(w.cloud.calls("GetAuthorizationToken"), 1);
}

/// A configuration edit that leaves an item alone keeps its STS session and its token; a changed
/// item (here a new role session name) gets new ones.
#[tokio::test]
async fn a_rebuild_keeps_the_caches_of_unchanged_items() {
    let w = world().await;
    let settings = w.settings(w.env());
    let config = |data: &[(&str, &str)]| {
        HelperConfig::from_configmap(data.iter().copied())
            .unwrap()
            .config
    };
    let items = "- instanceId: \"\"\n  assumeRoleARN: acs:ram::1234567890:role/acr-puller\n";
    let first = RegistrySources::rebuild(&config(&[("acr-registry-info", items)]), &settings, None)
        .unwrap();
    let token = first.sources()[0].credential().await.unwrap().token;
    assert_eq!(w.cloud.calls("AssumeRole"), 1);

    // Only notify-email changes, and a second registry is added.
    let more = format!("{items}- instanceId: cri-testinstance01\n");
    let second = RegistrySources::rebuild(
        &config(&[
            ("acr-registry-info", &more),
            ("notify-email", "ops@example.com"),
        ]),
        &settings,
        Some(&first),
    )
    .unwrap();
    assert_eq!(second.sources()[0].credential().await.unwrap().token, token);
    assert_eq!(w.cloud.calls("AssumeRole"), 1, "no new STS session");
    assert_eq!(
        w.cloud.calls("GET /tokens") + w.cloud.calls("GetAuthorizationToken"),
        1
    );
    second.sources()[1].credential().await.unwrap();
    assert_eq!(
        w.cloud.calls("GetAuthorizationToken"),
        1,
        "the new item fetches its own"
    );

    // The item itself changes: a new session and a new token.
    let changed = format!("{items}  roleSessionName: renamed\n");
    let third = RegistrySources::rebuild(
        &config(&[("acr-registry-info", &changed)]),
        &settings,
        Some(&second),
    )
    .unwrap();
    third.sources()[0].credential().await.unwrap();
    assert_eq!(w.cloud.calls("AssumeRole"), 2);
}
