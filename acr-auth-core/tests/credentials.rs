//! Every credentials provider and the default chain, against the fake cloud over HTTP, with an
//! injected environment and filesystem (never the real `$HOME` or process environment).

use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::acr::{AcrClient, Endpoint};
use acr_auth_core::credentials::{
    cli_profile_provider, decode_managed_role_token, from_env_vars, ini_file_provider,
    AssumeRoleProvider, Credentials, CredentialsUriProvider, DefaultCredentialsChain,
    EcsMetadataProvider, OidcProvider, ProvideCredentials, ProviderEnv,
};
use acr_auth_core::time::{Clock, ManualClock, SystemClock};
use acr_auth_core::ErrorKind;
use acr_auth_testkit::cloud::METADATA_FAULT_TARGET;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig, RoleConfig};

const ROLE: &str = "acs:ram::1234567890:role/acr-puller";
const OIDC_PROVIDER: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa-test";
const OIDC_TOKEN: &str = "eyJ.test-oidc-token.sig";
const OIDC_TOKEN_2: &str = "eyJ.rotated-oidc-token.sig";
const HOME: &str = "/home/tester";

struct World {
    cloud: FakeCloud,
    clock: ManualClock,
}

async fn world() -> World {
    let mut config = FakeCloudConfig::sample();
    config.oidc_providers[0].tokens.push(OIDC_TOKEN_2.into());
    config.roles.push(RoleConfig {
        arn: "acs:ram::1234567890:role/untrusting".into(),
        trusted: vec!["LTAIsomeoneelse".into()],
        max_session_secs: 3600,
    });
    let clock = ManualClock::new(SystemClock.now());
    let cloud = FakeCloud::start_with_clock(config, Arc::new(clock.clone()))
        .await
        .unwrap();
    World { cloud, clock }
}

impl World {
    /// An environment pointing STS and metadata at the fake, sharing its clock.
    fn env<const N: usize>(&self, vars: [(&str, &str); N]) -> ProviderEnv {
        let url = self.cloud.url();
        let mut all: Vec<(String, String)> = vec![
            ("ACR_AUTH_STS_ENDPOINT".into(), url.clone()),
            ("ACR_AUTH_METADATA_ENDPOINT".into(), url),
        ];
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        ProviderEnv::from_vars(all)
            .with_home(HOME)
            .with_clock(Arc::new(self.clock.clone()))
    }

    /// Proves credentials work by getting an ACR token with them.
    async fn usable(&self, creds: &Credentials) {
        AcrClient::builder("cn-hangzhou")
            .endpoint(Endpoint::Url(self.cloud.url()))
            .credentials(creds.clone())
            .clock(Arc::new(self.clock.clone()))
            .build()
            .unwrap()
            .get_personal_token()
            .await
            .unwrap_or_else(|e| panic!("credentials rejected by ACR: {e}"));
    }
}

fn key() -> Arc<dyn ProvideCredentials> {
    Arc::new(Credentials::new("LTAItestkey", "test-secret"))
}

#[tokio::test]
async fn assume_role_caches_and_renews_ahead_of_expiry() {
    let w = world().await;
    let provider = AssumeRoleProvider::builder(key(), ROLE)
        .session_name("acr-auth-test")
        .duration(Duration::from_secs(3600))
        .env(w.env([]))
        .build()
        .unwrap();
    let first = provider.provide_credentials().await.unwrap();
    assert!(first.access_key_id().starts_with("STS."));
    assert!(first.security_token().is_some());
    w.usable(&first).await;
    let again = provider.provide_credentials().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(w.cloud.calls("AssumeRole"), 1, "served from the cache");

    // 15 minutes (plus at most 30 s of jitter) before expiry it renews.
    w.clock.advance(Duration::from_secs(3600 - 15 * 60 + 1));
    let renewed = provider.provide_credentials().await.unwrap();
    assert_ne!(renewed.access_key_id(), first.access_key_id());
    assert_eq!(w.cloud.calls("AssumeRole"), 2);
    w.usable(&renewed).await;
}

#[tokio::test]
async fn assume_role_errors_are_typed_and_validated_early() {
    let w = world().await;
    let e = AssumeRoleProvider::builder(key(), "acs:ram::1234567890:role/untrusting")
        .env(w.env([]))
        .build()
        .unwrap()
        .provide_credentials()
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(403), Some("NoPermission")));

    let bad_name = AssumeRoleProvider::builder(key(), ROLE)
        .session_name("x")
        .env(w.env([]))
        .build()
        .unwrap_err();
    assert!(
        bad_name.to_string().contains("2-64 characters"),
        "{bad_name}"
    );
    let bad_duration = AssumeRoleProvider::builder(key(), ROLE)
        .duration(Duration::from_secs(100))
        .env(w.env([]))
        .build()
        .unwrap_err();
    assert!(
        bad_duration.to_string().contains("between 900 and 43200"),
        "{bad_duration}"
    );
    let bad_arn = AssumeRoleProvider::builder(key(), "role/x")
        .env(w.env([]))
        .build()
        .unwrap_err();
    assert!(
        bad_arn.to_string().contains("not a RAM role ARN"),
        "{bad_arn}"
    );
    assert_eq!(w.cloud.calls("AssumeRole"), 1);
}

#[tokio::test]
async fn oidc_rereads_the_token_file_on_every_renewal() {
    let w = world().await;
    let env = w
        .env([
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                "/var/run/secrets/tokens/oidc-token",
            ),
            ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "rrsa-test"),
        ])
        .with_file(
            "/var/run/secrets/tokens/oidc-token",
            format!("{OIDC_TOKEN}\n"),
        );
    let provider = OidcProvider::from_env(&env).unwrap();
    let first = provider.provide_credentials().await.unwrap();
    w.usable(&first).await;

    // The kubelet rotates the projected token; the next renewal must send the new one.
    env.memory_fs()
        .unwrap()
        .write("/var/run/secrets/tokens/oidc-token", OIDC_TOKEN_2);
    w.clock.advance(Duration::from_secs(3600 - 15 * 60 + 1));
    let second = provider.provide_credentials().await.unwrap();
    assert_ne!(second, first);

    // A token the provider does not accept fails the renewal (the old value is served while it
    // lasts), and the error after expiry carries Alibaba's code without the token.
    env.memory_fs()
        .unwrap()
        .write("/var/run/secrets/tokens/oidc-token", "eyJ.forged-token.sig");
    w.clock.advance(Duration::from_secs(3600));
    let e = provider.provide_credentials().await.unwrap_err();
    assert_eq!(e.code(), Some("AuthenticationFail.OIDCToken.Invalid"));
    assert!(!e.to_string().contains("forged-token"));
    assert_eq!(w.cloud.calls("AssumeRoleWithOIDC"), 3);
}

#[tokio::test]
async fn oidc_not_configured_names_the_missing_variables() {
    let env = ProviderEnv::from_vars([("ALIBABA_CLOUD_ROLE_ARN", ROLE)]);
    let e = OidcProvider::from_env(&env).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConfigured);
    assert!(
        e.message()
            .contains("ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
        "{e}"
    );
}

#[tokio::test]
async fn ecs_metadata_hardened_mode_and_last_good_credentials() {
    let w = world().await;
    let provider = EcsMetadataProvider::from_env(&w.env([])).unwrap();
    let creds = provider.provide_credentials().await.unwrap();
    w.usable(&creds).await;
    assert_eq!(w.cloud.calls("metadata:/latest/api/token"), 1);
    assert_eq!(
        w.cloud
            .calls("metadata:/latest/meta-data/ram/security-credentials/"),
        1,
        "role discovered"
    );
    assert_eq!(provider.region().await.unwrap(), "cn-hangzhou");

    // Due for renewal while the metadata service fails: the last good credentials are served.
    w.clock.advance(Duration::from_secs(6 * 3600 - 10 * 60));
    w.cloud.fail_next_action(
        METADATA_FAULT_TARGET,
        20,
        acr_auth_testkit::Fault::InternalError,
    );
    assert_eq!(provider.provide_credentials().await.unwrap(), creds);
    // Once they expire, the error.
    w.clock.advance(Duration::from_secs(10 * 60));
    let e = provider.provide_credentials().await.unwrap_err();
    assert_eq!(e.status(), Some(500));
}

#[tokio::test]
async fn ecs_metadata_with_configured_role_and_imdsv1_rules() {
    let mut config = FakeCloudConfig::sample();
    config.metadata.hardened_only = false;
    let cloud = FakeCloud::start(config).await.unwrap();
    let env = |extra: &[(&str, &str)]| {
        let mut v = vec![
            ("ACR_AUTH_METADATA_ENDPOINT".to_owned(), cloud.url()),
            (
                "ALIBABA_CLOUD_ECS_METADATA".into(),
                "KubernetesWorkerRole".into(),
            ),
        ];
        v.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        ProviderEnv::from_vars(v)
    };
    let p = EcsMetadataProvider::from_env(&env(&[])).unwrap();
    p.provide_credentials().await.unwrap();
    assert_eq!(
        cloud.calls("metadata:/latest/meta-data/ram/security-credentials/"),
        0,
        "role not discovered"
    );

    // The token request fails: plain mode is used, unless IMDSv1 is disabled.
    cloud.fail_next_action(
        METADATA_FAULT_TARGET,
        1,
        acr_auth_testkit::Fault::InternalError,
    );
    EcsMetadataProvider::from_env(&env(&[]))
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    cloud.fail_next_action(
        METADATA_FAULT_TARGET,
        1,
        acr_auth_testkit::Fault::InternalError,
    );
    let e = EcsMetadataProvider::from_env(&env(&[("ALIBABA_CLOUD_IMDSV1_DISABLED", "true")]))
        .unwrap()
        .provide_credentials()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials);
    assert!(
        e.message().contains("ALIBABA_CLOUD_IMDSV1_DISABLED=true"),
        "{e}"
    );
}

#[tokio::test]
async fn ecs_metadata_unreachable_is_not_configured() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = ProviderEnv::from_vars([(
        "ACR_AUTH_METADATA_ENDPOINT",
        format!("http://127.0.0.1:{port}"),
    )]);
    let e = EcsMetadataProvider::from_env(&env)
        .unwrap()
        .provide_credentials()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConfigured, "{e}");
    assert!(e.message().contains("not on ECS"), "{e}");
}

#[tokio::test]
async fn credentials_uri_provider() {
    let w = world().await;
    let env = w.env([("ALIBABA_CLOUD_CREDENTIALS_URI", &w.cloud.credentials_uri())]);
    let p = CredentialsUriProvider::from_env(&env).unwrap();
    let c = p.provide_credentials().await.unwrap();
    w.usable(&c).await;
    p.provide_credentials().await.unwrap();
    assert_eq!(w.cloud.calls("CredentialsUri"), 1);
    assert_eq!(
        CredentialsUriProvider::from_env(&ProviderEnv::from_vars([("", "")]))
            .unwrap_err()
            .kind(),
        ErrorKind::NotConfigured
    );
}

const CLI_CONFIG: &str = r#"{
  "current": "ak",
  "profiles": [
    {"name": "ak", "mode": "AK", "access_key_id": "LTAItestkey", "access_key_secret": "test-secret", "region_id": "cn-hangzhou"},
    {"name": "sts", "mode": "StsToken", "access_key_id": "STS.x", "access_key_secret": "s", "sts_token": "CAIS-t"},
    {"name": "role", "mode": "RamRoleArn", "access_key_id": "LTAItestkey", "access_key_secret": "test-secret",
     "ram_role_arn": "acs:ram::1234567890:role/acr-puller", "ram_session_name": "cli-role", "expired_seconds": 900},
    {"name": "chain", "mode": "ChainableRamRoleArn", "source_profile": "role", "ram_role_arn": "acs:ram::1234567890:role/acr-puller", "ram_session_name": "chained"},
    {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "KubernetesWorkerRole"},
    {"name": "oidc", "mode": "OIDC", "ram_role_arn": "acs:ram::1234567890:role/acr-puller",
     "oidc_provider_arn": "acs:ram::1234567890:oidc-provider/ack-rrsa-test", "oidc_token_file": "/tok", "role_session_name": "oidc-sess"},
    {"name": "loop", "mode": "ChainableRamRoleArn", "source_profile": "loop", "ram_role_arn": "acs:ram::1234567890:role/acr-puller"},
    {"name": "sso", "mode": "CloudSSO"},
    {"name": "broken", "mode": "RamRoleArn", "access_key_id": "LTAItestkey", "access_key_secret": "test-secret"}
  ]
}"#;

#[tokio::test]
async fn cli_profiles_of_every_mode() {
    let w = world().await;
    let env = w
        .env([])
        .with_file(format!("{HOME}/.aliyun/config.json"), CLI_CONFIG)
        .with_file("/tok", OIDC_TOKEN);
    let current = cli_profile_provider(&env, None)
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(current.access_key_id(), "LTAItestkey");
    let sts = cli_profile_provider(&env, Some("sts"))
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(sts.security_token().unwrap().expose(), "CAIS-t");
    for (profile, action) in [
        ("role", "AssumeRole"),
        ("chain", "AssumeRole"),
        ("oidc", "AssumeRoleWithOIDC"),
    ] {
        let before = w.cloud.calls(action);
        let c = cli_profile_provider(&env, Some(profile))
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert!(c.access_key_id().starts_with("STS."), "{profile}");
        w.usable(&c).await;
        assert!(w.cloud.calls(action) > before, "{profile} called {action}");
    }
    assert_eq!(w.cloud.calls("AssumeRole"), 3, "chain = role + role again");
    let ecs = cli_profile_provider(&env, Some("ecs"))
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    w.usable(&ecs).await;

    let by_env = w
        .env([("ALIBABA_CLOUD_PROFILE", "sts")])
        .with_file(format!("{HOME}/.aliyun/config.json"), CLI_CONFIG);
    let c = cli_profile_provider(&by_env, None)
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(c.access_key_id(), "STS.x");

    let err = |p: &str| {
        cli_profile_provider(&env, Some(p))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert!(
        err("nope").contains("profile \"nope\" not found")
            && err("nope").contains("profiles: ak, sts, role"),
        "{}",
        err("nope")
    );
    assert!(err("loop").contains("too deep"), "{}", err("loop"));
    assert!(
        err("sso").contains("mode \"CloudSSO\"; supported: AK"),
        "{}",
        err("sso")
    );
    assert!(
        err("broken").contains("needs ram_role_arn"),
        "{}",
        err("broken")
    );
}

#[tokio::test]
async fn cli_config_absent_disabled_or_broken() {
    let nothing = ProviderEnv::from_vars([("", "")]).with_home(HOME);
    assert_eq!(
        cli_profile_provider(&nothing, None)
            .map(|_| ())
            .unwrap_err()
            .kind(),
        ErrorKind::NotConfigured
    );
    let disabled = ProviderEnv::from_vars([("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "TRUE")])
        .with_home(HOME)
        .with_file(format!("{HOME}/.aliyun/config.json"), CLI_CONFIG);
    assert_eq!(
        cli_profile_provider(&disabled, None)
            .map(|_| ())
            .unwrap_err()
            .kind(),
        ErrorKind::NotConfigured
    );
    let broken = ProviderEnv::from_vars([("ALIBABA_CLOUD_CONFIG_FILE", "/etc/aliyun.json")])
        .with_file("/etc/aliyun.json", "{\"profiles\": [");
    let e = cli_profile_provider(&broken, None).map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials);
    assert!(
        e.message()
            .contains("/etc/aliyun.json is not a valid aliyun CLI config"),
        "{e}"
    );
}

#[tokio::test]
async fn ini_credentials_file() {
    let w = world().await;
    let ini = "[default]\ntype = access_key\naccess_key_id = LTAItestkey\naccess_key_secret = test-secret\n\n\
               [role]\ntype = ram_role_arn\naccess_key_id = LTAItestkey\naccess_key_secret = test-secret\n\
               role_arn = acs:ram::1234567890:role/acr-puller\nrole_session_name = ini-session\n\n\
               [ecs]\ntype = ecs_ram_role\nrole_name = KubernetesWorkerRole\n\n\
               [half]\ntype = access_key\naccess_key_id = x\n\n[rsa]\ntype = rsa_key_pair\n";
    let env = |profile: Option<&str>| {
        let mut e = w
            .env([])
            .with_file(format!("{HOME}/.alibabacloud/credentials.ini"), ini);
        if let Some(p) = profile {
            e = w
                .env([("ALIBABA_CLOUD_PROFILE", p)])
                .with_file(format!("{HOME}/.alibabacloud/credentials.ini"), ini);
        }
        e
    };
    let c = ini_file_provider(&env(None))
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(c.access_key_id(), "LTAItestkey");
    for p in ["role", "ecs"] {
        let c = ini_file_provider(&env(Some(p)))
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        w.usable(&c).await;
    }
    let err = |p: &str| ini_file_provider(&env(Some(p))).map(|_| ()).unwrap_err();
    assert!(
        err("half").to_string().contains(
            "[half] in /home/tester/.alibabacloud/credentials.ini needs access_key_secret"
        ),
        "{}",
        err("half")
    );
    assert!(err("rsa").to_string().contains("type \"rsa_key_pair\""));
    assert_eq!(
        err("missing").kind(),
        ErrorKind::Credentials,
        "an explicit profile that does not exist is an error"
    );

    let explicit_missing =
        ProviderEnv::from_vars([("ALIBABA_CLOUD_CREDENTIALS_FILE", "/nope.ini")]);
    assert!(ini_file_provider(&explicit_missing)
        .map(|_| ())
        .unwrap_err()
        .to_string()
        .contains("/nope.ini, which does not exist"));
    let none = ProviderEnv::from_vars([("", "")]).with_home(HOME);
    assert_eq!(
        ini_file_provider(&none).map(|_| ()).unwrap_err().kind(),
        ErrorKind::NotConfigured
    );
}

#[tokio::test]
async fn default_chain_lists_every_source_when_nothing_is_configured() {
    let env =
        ProviderEnv::from_vars([("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]).with_home(HOME);
    let e = DefaultCredentialsChain::new(env)
        .provide_credentials()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials);
    let m = e.message();
    for part in [
        "no credentials found",
        "1. environment: skipped, ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET not set",
        "2. OIDC (RRSA): skipped",
        "3. aliyun CLI profile: skipped, /home/tester/.aliyun/config.json not found",
        "4. credentials file: skipped",
        "5. ECS instance RAM role: skipped, ALIBABA_CLOUD_ECS_METADATA_DISABLED=true",
        "6. credentials URI: skipped, ALIBABA_CLOUD_CREDENTIALS_URI not set",
    ] {
        assert!(m.contains(part), "missing {part:?} in {m}");
    }
}

#[tokio::test]
async fn default_chain_order_failure_and_memory() {
    let w = world().await;
    // Environment wins over a profile file.
    let env = w
        .env([
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAItestkey"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test-secret"),
        ])
        .with_file(format!("{HOME}/.aliyun/config.json"), CLI_CONFIG);
    let chain = DefaultCredentialsChain::new(env);
    chain.provide_credentials().await.unwrap();
    assert_eq!(chain.chosen_source(), Some("environment"));

    // A configured source that fails stops the chain, and the error says what came before.
    let env = w.env([("ALIBABA_CLOUD_ACCESS_KEY_ID", "only-the-id")]);
    let e = DefaultCredentialsChain::new(env)
        .provide_credentials()
        .await
        .unwrap_err();
    assert!(e.message().contains("1. environment: FAILED"), "{e}");

    let env = w
        .env([("ALIBABA_CLOUD_PROFILE", "broken")])
        .with_file(format!("{HOME}/.aliyun/config.json"), CLI_CONFIG);
    let e = DefaultCredentialsChain::new(env)
        .provide_credentials()
        .await
        .unwrap_err();
    let m = e.message();
    assert!(
        m.contains("1. environment: skipped") && m.contains("3. aliyun CLI profile: FAILED"),
        "{m}"
    );
    assert!(
        !m.contains("4. credentials file"),
        "stops at the failure: {m}"
    );

    // Nothing else configured: the ECS role (the fake's metadata) is found, then remembered.
    let chain = DefaultCredentialsChain::new(w.env([]));
    let c = chain.provide_credentials().await.unwrap();
    w.usable(&c).await;
    assert_eq!(chain.chosen_source(), Some("ECS instance RAM role"));
    let token_calls = w.cloud.calls("metadata:/latest/api/token");
    chain.provide_credentials().await.unwrap();
    assert_eq!(
        w.cloud.calls("metadata:/latest/api/token"),
        token_calls,
        "cached, not re-resolved"
    );

    // With a CLI profile chosen explicitly.
    let env = w
        .env([])
        .with_file(format!("{HOME}/.aliyun/config.json"), CLI_CONFIG);
    let chain = DefaultCredentialsChain::new(env).with_profile("sts");
    assert_eq!(
        chain.provide_credentials().await.unwrap().access_key_id(),
        "STS.x"
    );
    assert_eq!(chain.chosen_source(), Some("aliyun CLI profile"));
}

#[tokio::test]
async fn default_chain_failure_keeps_status_code_and_request_id() {
    let w = world().await;
    let env = w
        .env([
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/tokens/oidc"),
        ])
        .with_file("/tokens/oidc", "eyJ.forged-token.sig");
    let e = DefaultCredentialsChain::new(env)
        .provide_credentials()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials);
    assert!(e.message().contains("2. OIDC (RRSA): FAILED"), "{e}");
    assert_eq!(
        e.code(),
        Some("AuthenticationFail.OIDCToken.Invalid"),
        "{e}"
    );
    assert!(e.status().is_some_and(|s| s >= 400), "{e:?}");
    let id = e.request_id().expect("the RequestId of the STS answer");
    // Said once, at the end, not once per wrapping.
    assert_eq!(e.to_string().matches(id).count(), 1, "{e}");
    // The STS error is the source.
    let source = std::error::Error::source(&e).expect("a source");
    assert!(
        source.to_string().contains("STS AssumeRoleWithOIDC"),
        "{source}"
    );
    assert!(!e.to_string().contains("forged-token"));
}

#[tokio::test]
async fn providers_never_show_secrets_in_debug() {
    let w = world().await;
    let env = w.env([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAItestkey"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test-secret"),
    ]);
    let role = AssumeRoleProvider::builder(key(), ROLE)
        .env(env.clone())
        .build()
        .unwrap();
    let c = role.provide_credentials().await.unwrap();
    let chain = DefaultCredentialsChain::new(env.clone());
    chain.provide_credentials().await.unwrap();
    for shown in [
        format!("{role:?}"),
        format!("{chain:?}"),
        format!("{env:?}"),
        format!("{c:?}"),
    ] {
        for secret in [
            "test-secret",
            c.access_key_secret().expose(),
            c.security_token().unwrap().expose(),
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}

/// Encrypts like ACK does, with the `openssl` command (not our code): base64(IV || AES-128-CBC).
fn openssl_encrypt(plaintext: &str, key: &[u8; 16], iv: &[u8; 16]) -> String {
    use base64::Engine as _;
    use std::io::Write as _;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut child = std::process::Command::new("openssl")
        .args([
            "enc",
            "-aes-128-cbc",
            "-nosalt",
            "-K",
            &hex(key),
            "-iv",
            &hex(iv),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the openssl command is needed for this test");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plaintext.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut blob = iv.to_vec();
    blob.extend_from_slice(&out.stdout);
    base64::engine::general_purpose::STANDARD.encode(blob)
}

#[test]
fn managed_role_payload_decrypts_openssl_ciphertexts() {
    let keyring = *b"0123456789abcdef";
    let payload = serde_json::json!({
        "access.key.id": openssl_encrypt("STS.NmanagedRoleKeyId", &keyring, b"iv-for-the-id-01"),
        "access.key.secret": openssl_encrypt("managed-secret-of-32-bytes-long!", &keyring, b"iv-for-secret-02"),
        "security.token": openssl_encrypt(&format!("CAIS{}", "t".repeat(300)), &keyring, b"iv-for-tokens-03"),
        "expiration": "2030-01-01T00:00:00Z",
        "keyring": "0123456789abcdef",
    });
    let c = decode_managed_role_token(&payload.to_string()).unwrap();
    assert_eq!(c.access_key_id(), "STS.NmanagedRoleKeyId");
    assert_eq!(
        c.access_key_secret().expose(),
        "managed-secret-of-32-bytes-long!"
    );
    assert_eq!(c.security_token().unwrap().expose().len(), 304);
    assert_eq!(
        acr_auth_core::time::format_iso8601(c.expires_at().unwrap()),
        "2030-01-01T00:00:00Z"
    );

    let mut wrong_key = payload.clone();
    wrong_key["keyring"] = "fedcba9876543210".into();
    let e = decode_managed_role_token(&wrong_key.to_string()).unwrap_err();
    assert!(
        e.message().contains("does not decrypt under the keyring"),
        "{e}"
    );
    for (field, value, expect) in [
        ("keyring", "short", "keyring must be 16 bytes"),
        ("access.key.id", "!!!", "access.key.id: not base64"),
        ("access.key.secret", "AAAA", "not a 16-byte IV"),
        (
            "expiration",
            "soon",
            "field expiration \"soon\" is not an ISO 8601 time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z",
        ),
        (
            "expiration",
            "9999-12-31T23:59:60Z",
            "field expiration \"9999-12-31T23:59:60Z\" is not an ISO 8601 time",
        ),
        (
            "expiration",
            "99999-01-01T00:00:00Z",
            "field expiration \"99999-01-01T00:00:00Z\" is not an ISO 8601 time",
        ),
    ] {
        let mut p = payload.clone();
        p[field] = value.into();
        let e = decode_managed_role_token(&p.to_string()).unwrap_err();
        assert!(e.message().contains(expect), "{field}: {e}");
    }
    assert!(decode_managed_role_token("[]").is_err());
    let _ = SystemClock.now();
}

/// `--profile ci` (an explicit profile) wins over `ALIBABA_CLOUD_ACCESS_KEY_*` in the
/// environment, and a missing explicit profile is an error, not a fall-through to the variables.
#[tokio::test]
async fn an_explicit_profile_wins_over_environment_keys() {
    let w = world().await;
    let env = || {
        w.env([
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIfromenv"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"),
        ])
        .with_file(format!("{HOME}/.aliyun/config.json"), CLI_CONFIG)
    };
    let chain = DefaultCredentialsChain::new(env()).with_profile("sts");
    let c = chain.provide_credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "STS.x");
    assert_eq!(chain.chosen_source(), Some("aliyun CLI profile"));

    let e = DefaultCredentialsChain::new(env())
        .with_profile("no-such-profile")
        .provide_credentials()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials);
    assert!(e.message().contains("no-such-profile"), "{e}");
    assert!(!e.to_string().contains("env-secret"), "{e}");

    // Without a profile the environment still comes first.
    let chain = DefaultCredentialsChain::new(env());
    let c = chain.provide_credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "LTAIfromenv");
}

/// A whitespace-only AccessKey secret (or id) is never used: an error names the variable or
/// profile key.
#[tokio::test]
async fn blank_access_keys_are_rejected_naming_the_key() {
    let e = from_env_vars(|k| match k {
        "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("LTAItestkey".to_owned()),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some(" \t\n".to_owned()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Credentials);
    assert!(
        e.message().contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{e}"
    );
    let e = from_env_vars(|k| match k {
        "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("   ".to_owned()),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("test-secret".to_owned()),
        _ => None,
    })
    .unwrap_err();
    assert!(
        e.message().contains("ALIBABA_CLOUD_ACCESS_KEY_ID is not"),
        "{e}"
    );
    assert!(!e.to_string().contains("test-secret"), "{e}");

    let w = world().await;
    let config = r#"{"current": "ak", "profiles": [
        {"name": "ak", "mode": "AK", "access_key_id": "LTAItestkey", "access_key_secret": "   "}]}"#;
    let env = w
        .env([])
        .with_file(format!("{HOME}/.aliyun/config.json"), config);
    let e = match cli_profile_provider(&env, None) {
        Err(e) => e,
        Ok(p) => p.provide_credentials().await.unwrap_err(),
    };
    assert_eq!(e.kind(), ErrorKind::Credentials);
    assert!(e.message().contains("access_key_secret"), "{e}");
    let ini = "[default]\ntype = access_key\naccess_key_id = LTAItestkey\naccess_key_secret =   \n";
    let env = w
        .env([])
        .with_file(format!("{HOME}/.alibabacloud/credentials.ini"), ini);
    let e = match ini_file_provider(&env) {
        Err(e) => e,
        Ok(p) => p.provide_credentials().await.unwrap_err(),
    };
    assert!(e.message().contains("access_key_secret"), "{e}");
}
