//! The ACR client against the fake Alibaba Cloud over real HTTP: both signature schemes, STS
//! credentials, retries, timeouts and every error path.

use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::acr::{enterprise_registry_hosts, AcrClient, Endpoint, SignatureAlgorithm};
use acr_auth_core::credentials::Credentials;
use acr_auth_core::http::{RetryPolicy, Timeouts};
use acr_auth_core::time::{Clock, ManualClock, SystemClock};
use acr_auth_core::ErrorKind;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig, Fault};

const INSTANCE: &str = "cri-testinstance01";

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::new(
        max_attempts,
        Duration::from_millis(1),
        Duration::from_millis(5),
    )
}

fn client(cloud: &FakeCloud, creds: Credentials, algorithm: SignatureAlgorithm) -> AcrClient {
    AcrClient::builder("cn-hangzhou")
        .endpoint(Endpoint::Url(cloud.url()))
        .credentials(creds)
        .signature_algorithm(algorithm)
        .retry(fast_retry(4))
        .build()
        .unwrap()
}

fn sample_key() -> Credentials {
    Credentials::new("LTAItestkey", "test-secret")
}

const BOTH: [SignatureAlgorithm; 2] = [SignatureAlgorithm::V3, SignatureAlgorithm::HmacSha1];

#[tokio::test]
async fn enterprise_and_personal_tokens_with_both_signature_schemes() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    for algorithm in BOTH {
        let c = client(&cloud, sample_key(), algorithm);
        let now = SystemClock.now();
        let ee = c.get_authorization_token(INSTANCE).await.unwrap();
        assert_eq!(ee.username, "temp_user_cr");
        assert!(!ee.password.is_empty());
        let lifetime = ee.expires_at.duration_since(now).unwrap();
        assert!(
            lifetime > Duration::from_secs(3500) && lifetime <= Duration::from_secs(3601),
            "{lifetime:?}"
        );

        let pe = c.get_personal_token().await.unwrap();
        assert_eq!(pe.username, "cr_temp_user");
        assert_ne!(pe.password, ee.password);
    }
    assert_eq!(cloud.calls("GetAuthorizationToken"), 2);
    assert_eq!(cloud.calls("GET /tokens"), 2);
}

#[tokio::test]
async fn list_instance_endpoint_yields_every_domain() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    for algorithm in BOTH {
        let eps = client(&cloud, sample_key(), algorithm)
            .list_instance_endpoint(INSTANCE)
            .await
            .unwrap();
        assert_eq!(
            enterprise_registry_hosts(&eps),
            [
                "acme-registry.cn-hangzhou.cr.aliyuncs.com",
                "registry.acme.example",
                "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com"
            ]
        );
        assert_eq!(eps[0].domains[1].kind, "USER");
    }
}

#[tokio::test]
async fn sts_credentials_cap_the_token_lifetime() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let sts = cloud.issue_sts_credentials(Duration::from_secs(1200));
    let sts_expiry = sts.expires_at().unwrap();
    for algorithm in BOTH {
        let c = client(&cloud, sts.clone(), algorithm);
        let ee = c.get_authorization_token(INSTANCE).await.unwrap();
        // ExpireTime is whole milliseconds, so allow the sub-millisecond truncation.
        assert!(
            ee.expires_at <= sts_expiry
                && sts_expiry.duration_since(ee.expires_at).unwrap() < Duration::from_millis(1)
        );
        let pe = c.get_personal_token().await.unwrap();
        assert!(pe.expires_at <= sts_expiry);
    }
}

#[tokio::test]
async fn wrong_secret_is_a_non_retryable_signature_error_without_secrets_in_it() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let sts = cloud.issue_sts_credentials(Duration::from_secs(1200));
    let token = sts.security_token().unwrap().expose().to_owned();
    let wrong =
        Credentials::new(sts.access_key_id(), "not-the-secret").with_security_token(token.clone());
    for algorithm in BOTH {
        let before = cloud.calls("GetAuthorizationToken");
        let e = client(&cloud, wrong.clone(), algorithm)
            .get_authorization_token(INSTANCE)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Api);
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"));
        assert_eq!(e.status(), Some(400));
        assert!(e.request_id().is_some());
        assert!(!e.is_retryable());
        assert_eq!(
            cloud.calls("GetAuthorizationToken"),
            before + 1,
            "not retried"
        );
        // The server echoes its string to sign, which contains the STS token.
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains(&token[..40]), "{shown}");
            assert!(!shown.contains("not-the-secret"));
        }
        assert!(e.message().contains("<redacted>"), "{}", e.message());
    }
}

#[tokio::test]
async fn unknown_key_and_denied_key_are_typed_api_errors() {
    let mut config = FakeCloudConfig::sample();
    config.access_keys.push(acr_auth_testkit::AccessKeyConfig {
        id: "LTAIdenied".into(),
        secret: "s".into(),
        acr_allowed: false,
    });
    let cloud = FakeCloud::start(config).await.unwrap();
    let e = client(
        &cloud,
        Credentials::new("LTAInobody", "x"),
        SignatureAlgorithm::V3,
    )
    .get_personal_token()
    .await
    .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(404), Some("InvalidAccessKeyId.NotFound"))
    );

    let e = client(
        &cloud,
        Credentials::new("LTAIdenied", "s"),
        SignatureAlgorithm::V3,
    )
    .get_authorization_token(INSTANCE)
    .await
    .unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(403), Some("NoPrivilege")));
    assert!(!e.is_retryable());
    assert_eq!(cloud.calls("GetAuthorizationToken"), 1);

    let e = client(&cloud, sample_key(), SignatureAlgorithm::V3)
        .get_authorization_token("cri-doesnotexist")
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(404), Some("Forbidden.InstanceNotFound"))
    );
}

#[tokio::test]
async fn retryable_faults_are_retried_with_fresh_nonces() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    for fault in [
        Fault::ServiceUnavailable,
        Fault::Throttling,
        Fault::InternalError,
    ] {
        let before = cloud.calls("GetAuthorizationToken");
        cloud.fail_next(2, fault.clone());
        let token = client(&cloud, sample_key(), SignatureAlgorithm::HmacSha1)
            .get_authorization_token(INSTANCE)
            .await;
        assert!(token.is_ok(), "{fault:?}: {token:?}");
        // Two failures and a success; a reused nonce would have been refused.
        assert_eq!(
            cloud.calls("GetAuthorizationToken"),
            before + 3,
            "{fault:?}"
        );
    }
}

#[tokio::test]
async fn retries_stop_at_the_policy_limit() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    cloud.fail_next(10, Fault::ServiceUnavailable);
    let c = AcrClient::builder("cn-hangzhou")
        .endpoint(Endpoint::Url(cloud.url()))
        .credentials(sample_key())
        .retry(fast_retry(3))
        .build()
        .unwrap();
    let e = c.get_personal_token().await.unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(503), Some("ServiceUnavailable"))
    );
    assert!(e.is_retryable());
    assert_eq!(cloud.calls("GET /tokens"), 3);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_invalid_responses() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let c = client(&cloud, sample_key(), SignatureAlgorithm::V3);
    cloud.fail_next(1, Fault::MalformedBody);
    let e = c.get_authorization_token(INSTANCE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidResponse);
    assert!(!e.is_retryable());

    cloud.fail_next(1, Fault::OversizedBody);
    let e = c.get_authorization_token(INSTANCE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidResponse);
    assert!(e.message().contains("larger than 1048576 bytes"), "{e}");
}

#[tokio::test]
async fn slow_responses_time_out_and_are_retried() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let c = AcrClient::builder("cn-hangzhou")
        .endpoint(Endpoint::Url(cloud.url()))
        .credentials(sample_key())
        .timeouts(Timeouts::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
        ))
        .retry(fast_retry(2))
        .build()
        .unwrap();
    cloud.fail_next(1, Fault::DelayMs(2000));
    let token = c.get_personal_token().await;
    assert!(token.is_ok(), "second attempt succeeds: {token:?}");
    assert_eq!(cloud.calls("GET /tokens"), 2);

    cloud.fail_next(2, Fault::DelayMs(2000));
    let e = c.get_personal_token().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.is_retryable());
}

#[tokio::test]
async fn a_skewed_client_clock_is_refused() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let skewed = ManualClock::new(SystemClock.now() + Duration::from_secs(20 * 60));
    for algorithm in BOTH {
        let c = AcrClient::builder("cn-hangzhou")
            .endpoint(Endpoint::Url(cloud.url()))
            .credentials(sample_key())
            .signature_algorithm(algorithm)
            .clock(Arc::new(skewed.clone()))
            .build()
            .unwrap();
        let e = c.get_personal_token().await.unwrap_err();
        assert_eq!(e.code(), Some("InvalidTimeStamp.Expired"), "{algorithm:?}");
    }
}

#[tokio::test]
async fn expired_sts_credentials_are_refused() {
    let clock = ManualClock::new(SystemClock.now());
    let cloud = FakeCloud::start_with_clock(FakeCloudConfig::sample(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let sts = cloud.issue_sts_credentials(Duration::from_secs(900));
    clock.advance(Duration::from_secs(901));
    // Client and cloud share the clock, so only the token's expiry is at stake.
    let e = AcrClient::builder("cn-hangzhou")
        .endpoint(Endpoint::Url(cloud.url()))
        .credentials(sts)
        .clock(Arc::new(clock))
        .build()
        .unwrap()
        .get_authorization_token(INSTANCE)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidSecurityToken.Expired"));
}

#[tokio::test]
async fn unreachable_endpoint_is_a_retryable_transport_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = AcrClient::builder("cn-hangzhou")
        .endpoint(Endpoint::Url(format!("http://127.0.0.1:{port}")))
        .credentials(sample_key())
        .retry(fast_retry(2))
        .build()
        .unwrap();
    let e = c.get_personal_token().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert!(e.is_retryable());
    assert!(!e.to_string().contains("test-secret"));
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn logs_at_trace_level_contain_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let sts = cloud.issue_sts_credentials(Duration::from_secs(1200));
    let token = sts.security_token().unwrap().expose().to_owned();
    let secret = sts.access_key_secret().expose().to_owned();
    let c = client(&cloud, sts.clone(), SignatureAlgorithm::HmacSha1);
    // A success, a retried failure and a signature error with the server's string to sign.
    cloud.fail_next(1, Fault::ServiceUnavailable);
    let registry = c.get_authorization_token(INSTANCE).await.unwrap();
    let wrong =
        Credentials::new(sts.access_key_id(), "bad-secret-123").with_security_token(token.clone());
    let _ = client(&cloud, wrong, SignatureAlgorithm::HmacSha1)
        .get_personal_token()
        .await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "the retry is logged: {logs}");
    for s in [
        &token[..30],
        &secret,
        registry.password.expose(),
        "bad-secret-123",
    ] {
        assert!(!logs.contains(s), "secret {s:?} in logs:\n{logs}");
    }
}

#[test]
fn registry_token_debug_and_display_hide_the_password() {
    let t = acr_auth_core::acr::RegistryToken {
        username: "temp_user_cr".into(),
        password: "p4ssw0rd-value".into(),
        expires_at: std::time::UNIX_EPOCH + Duration::from_secs(1_714_554_000),
    };
    for shown in [format!("{t:?}"), t.to_string()] {
        assert!(
            shown.contains("temp_user_cr") && shown.contains("2024-05-01T09:00:00Z"),
            "{shown}"
        );
        assert!(!shown.contains("p4ssw0rd-value"), "{shown}");
    }
}

#[tokio::test]
async fn find_instance_id_by_exact_name_across_pages() {
    let mut config = FakeCloudConfig::sample();
    // Names that contain "acme" too, so the substring search returns several.
    for i in 0..150 {
        config.instances.push(acr_auth_testkit::InstanceConfig {
            id: format!("cri-other{i:05}"),
            name: format!("acme-{i}"),
            region: "cn-hangzhou".into(),
            custom_domains: vec![],
        });
    }
    config.instances.rotate_left(1); // the exact match comes last, on the second page
    let cloud = FakeCloud::start(config).await.unwrap();
    for algorithm in BOTH {
        let c = client(&cloud, sample_key(), algorithm);
        assert_eq!(c.find_instance_id("acme").await.unwrap(), INSTANCE);
        assert_eq!(
            c.find_instance_id("acme-7").await.unwrap(),
            "cri-other00007"
        );
        let e = c.find_instance_id("nothing").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("no Enterprise Edition instance named \"nothing\" in cn-hangzhou"),
            "{e}"
        );
    }
}
