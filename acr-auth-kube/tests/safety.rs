//! End to end, against the fake cloud and the fake API server: the controller never destroys on
//! doubt (a restart with an invalid ConfigMap), one failing registry never starves the others,
//! and an ACR outage across expiry is reported at the first failure, retried at a bounded pace
//! and recovered from.

mod common;

use std::time::Duration;

use acr_auth_testkit::cloud::FakeCloudConfig;
use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::FakeCloud;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_an_invalid_configmap_deletes_nothing() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    create_namespace(&kube, "dev").await;
    put_config(
        &kube,
        json!({"watch-namespace": "default,dev", "service-account": "default"}),
    )
    .await;
    let running = start(&kube, &cloud);
    eventually("Secrets and entries in default and dev", || {
        ["default", "dev"].iter().all(|ns| {
            secret_hosts(&kube, ns).is_some() && sa_entries(&kube, ns, "default") == [OURS]
        })
    })
    .await;
    running.stop().await;

    // The ConfigMap becomes invalid while the controller is down; it starts again.
    put_config(
        &kube,
        json!({"watch-namespace": "default", "expiring-threshold": "banana"}),
    )
    .await;
    let writes_before = writes(&kube, "secrets") + writes(&kube, "serviceaccounts");
    let running = start(&kube, &cloud);
    eventually("an InvalidConfiguration Warning Event", || {
        events(&kube, "InvalidConfiguration").iter().any(|e| {
            e["type"] == "Warning"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("expiring-threshold"))
        })
    })
    .await;
    // Give it time to do damage, if it would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for ns in ["default", "dev"] {
        assert!(
            secret_hosts(&kube, ns).is_some(),
            "the Secret in {ns} survives"
        );
        assert_eq!(
            sa_entries(&kube, ns, "default"),
            [OURS],
            "the entry in {ns} survives"
        );
    }
    assert_eq!(
        writes(&kube, "secrets") + writes(&kube, "serviceaccounts"),
        writes_before,
        "nothing written without an accepted configuration"
    );
    let now = acr_auth_core::time::system_clock().now();
    assert_eq!(
        running.ops.health.not_ready_reason(now),
        Some("no valid configuration accepted yet")
    );
    assert!(running
        .ops
        .metrics
        .encode()
        .contains("acr_auth_configuration_valid 0"));

    // A valid configuration arrives: now the narrower scope is applied.
    put_config(&kube, json!({"watch-namespace": "default"})).await;
    eventually("dev cleaned up once a configuration is accepted", || {
        secret_hosts(&kube, "dev").is_none() && sa_entries(&kube, "dev", "default").is_empty()
    })
    .await;
    assert!(secret_hosts(&kube, "default").is_some());
    assert_eq!(
        running
            .ops
            .health
            .not_ready_reason(acr_auth_core::time::system_clock().now()),
        None
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_registry_never_starves_the_others() {
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = 4;
    let cloud = FakeCloud::start(config).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    // The Personal Edition registry works; the Enterprise instance does not exist.
    put_config(
        &kube,
        json!({
            "expiring-threshold": "2s",
            "acr-registry-info": "- instanceId: \"\"\n- instanceId: cri-doesnotexist\n",
        }),
    )
    .await;
    let running = start(&kube, &cloud);
    let pe_host = "registry.cn-hangzhou.aliyuncs.com";
    eventually("the healthy registry is served", || {
        secret_hosts(&kube, "default").is_some_and(|h| h.iter().any(|x| x == pe_host))
    })
    .await;
    assert_eq!(sa_entries(&kube, "default", "default"), [OURS]);
    eventually("a Warning Event naming the failing registry", || {
        events(&kube, "TokenRenewalFailed").iter().any(|e| {
            e["type"] == "Warning"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("cri-doesnotexist"))
        })
    })
    .await;
    let first = password(&kube, "default", pe_host).unwrap();
    // The healthy registry is renewed (its token lives 4 s, renewed 2 s before expiry).
    eventually("the healthy registry renewed while the other fails", || {
        password(&kube, "default", pe_host).is_some_and(|p| p != first)
    })
    .await;
    let metrics = running.ops.metrics.encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("acr_auth_token_renewal_failures_total{")
                && l.contains("cri-doesnotexist")),
        "{metrics}"
    );
    // The failing one is retried with backoff (1 s, 2 s, 4 s, ...), not on every pass.
    let calls_before = cloud.calls("GetAuthorizationToken");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let failing_calls = cloud.calls("GetAuthorizationToken") - calls_before;
    assert!(
        failing_calls <= 4,
        "{failing_calls} GetAuthorizationToken calls for the failing registry in 6 s"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_across_expiry_warns_at_once_retries_gently_and_recovers() {
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = 6;
    let cloud = FakeCloud::start(config).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(
        &kube,
        json!({"expiring-threshold": "3s", "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    let running = start(&kube, &cloud);
    let host = "registry.cn-hangzhou.aliyuncs.com";
    eventually("the first Secret", || {
        password(&kube, "default", host).is_some()
    })
    .await;
    let expires_at = kube.get("secrets", "default", OURS).unwrap()["metadata"]["annotations"]
        ["acr-credential-helper.alibabacloud.com/expires-at"]
        .as_str()
        .map(acr_auth_core::time::parse_iso8601)
        .unwrap()
        .unwrap();

    cloud.fail_next(10_000, acr_auth_testkit::Fault::ServiceUnavailable);
    eventually("a TokenRenewalFailed Warning Event", || {
        !events(&kube, "TokenRenewalFailed").is_empty()
    })
    .await;
    // At the first failed renewal (3 s before expiry), not at expiry.
    assert!(
        acr_auth_core::time::system_clock().now() < expires_at,
        "the Warning came only after the token expired"
    );
    assert!(running
        .ops
        .metrics
        .encode()
        .lines()
        .any(|l| l.starts_with("acr_auth_token_renewal_failures_total{")));

    // Through expiry and beyond: a bounded number of calls (backoff), not one a second.
    let all_before: usize = cloud.all_calls().values().sum();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls: usize = cloud.all_calls().values().sum::<usize>() - all_before;
    assert!(calls <= 6, "{calls} calls to the cloud in 10 s of outage");
    assert!(
        password(&kube, "default", host).is_some(),
        "the expired Secret is left as it was, not deleted"
    );

    cloud.clear_faults();
    let first = password(&kube, "default", host).unwrap();
    let start = std::time::Instant::now();
    while password(&kube, "default", host).as_deref() == Some(first.as_str()) {
        // The longest backoff reached in this outage is under 16 s.
        assert!(start.elapsed() < Duration::from_secs(30), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("a TokenRenewed Event", || {
        !events(&kube, "TokenRenewed").is_empty()
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_expire_time_is_an_error_not_a_crash() {
    // ACR answers with an expiry about 12,700 years away (past year 9999).
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = 400_000_000_000;
    let cloud = FakeCloud::start(config).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(&kube, json!({"acr-registry-info": "- instanceId: \"\"\n"})).await;
    let running = start(&kube, &cloud);
    eventually("a TokenRenewalFailed Warning Event", || {
        !events(&kube, "TokenRenewalFailed").is_empty()
    })
    .await;
    let note = events(&kube, "TokenRenewalFailed")[0]["note"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        note.contains("expireDate"),
        "the Event names the field: {note}"
    );
    assert!(
        secret_hosts(&kube, "default").is_none(),
        "nothing written with it"
    );
    // Still alive and serving: a graceful stop returns Ok (a panic would surface here).
    assert_eq!(
        running
            .ops
            .health
            .not_ready_reason(acr_auth_core::time::system_clock().now()),
        Some("leader without valid registry credentials")
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_or_an_unrelated_edit_adopts_the_tokens_in_the_cluster() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    create_namespace(&kube, "dev").await;
    let data = json!({"watch-namespace": "all", "exclude-namespace": "kube-*",
        "acr-registry-info": "- instanceId: \"\"\n- instanceId: cri-testinstance01\n"});
    put_config(&kube, data.clone()).await;
    let running = start(&kube, &cloud);
    eventually("both namespaces served", || {
        ["default", "dev"]
            .iter()
            .all(|ns| secret_hosts(&kube, ns).is_some_and(|h| h.len() >= 3))
    })
    .await;
    // Token calls: what adoption saves. (An Enterprise instance's host list is read again once
    // after a restart, so that hosts follow the configuration as it is now.)
    let calls = || cloud.calls("GET /tokens") + cloud.calls("GetAuthorizationToken");
    let cloud_before = calls();
    let endpoints_before = cloud.calls("ListInstanceEndpoint");
    let writes_before = writes(&kube, "secrets") + writes(&kube, "serviceaccounts");

    // A crash and a restart: the new process adopts the tokens in our Secrets.
    running.kill().await;
    let running = start(&kube, &cloud);
    eventually("the restarted controller is ready", || {
        running
            .ops
            .health
            .not_ready_reason(acr_auth_core::time::system_clock().now())
            .is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        calls(),
        cloud_before,
        "no token call after a restart: {:?}",
        cloud.all_calls()
    );
    assert_eq!(
        writes(&kube, "secrets") + writes(&kube, "serviceaccounts"),
        writes_before,
        "no write after a restart"
    );

    assert_eq!(cloud.calls("ListInstanceEndpoint"), endpoints_before + 1);

    // An edit that changes no registry item: nothing is fetched or written either.
    let mut edited = data.clone();
    edited["notify-email"] = json!("ops@example.com");
    put_config(&kube, edited).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        calls(),
        cloud_before,
        "no token call after an unrelated edit"
    );
    assert_eq!(
        writes(&kube, "secrets") + writes(&kube, "serviceaccounts"),
        writes_before,
        "no write after an unrelated edit"
    );

    // A new namespace is still served at once, with the adopted tokens.
    create_namespace(&kube, "late").await;
    eventually("the new namespace served", || {
        secret_hosts(&kube, "late").is_some()
    })
    .await;
    assert_eq!(calls(), cloud_before);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_writes_are_counted_backed_off_and_completed() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    create_namespace(&kube, "dev").await;
    put_config(
        &kube,
        json!({"watch-namespace": "default,dev", "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    // The API server answers the first three Secret creates with 429.
    kube.fail_next("create", Some("secrets"), 3, 429);
    let running = start(&kube, &cloud);
    eventually("both namespaces served despite the throttling", || {
        secret_hosts(&kube, "default").is_some() && secret_hosts(&kube, "dev").is_some()
    })
    .await;
    let metrics = running.ops.metrics.encode();
    let throttled: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("acr_auth_writes_total{") && l.contains("result=\"throttled\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(throttled, 3.0, "every 429 is counted: {metrics}");
    // Each 429 was one request: the client did not retry behind the controller's back.
    assert_eq!(kube.count("create", Some("secrets")), 2 + 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_webhook_configuration_is_retried_with_backoff_not_every_pass() {
    use acr_auth_kube::webhook::WebhookSettings;
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(
        &kube,
        json!({"watch-namespace": "all", "acr-registry-info": "- instanceId: \"\"\n",
               "webhook-configuration": "enable: true\n"}),
    )
    .await;
    // The API server refuses every create of the configuration (RBAC missing, say).
    kube.fail_next("create", Some("mutatingwebhookconfigurations"), 1000, 403);
    let mut s = settings(&cloud);
    s.webhook = Some(WebhookSettings::new(
        json!({"url": "https://127.0.0.1:9/mutate-serviceaccounts"}),
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_owned(),
    ));
    let running = start_with(client(&kube, "controller"), s);
    eventually("the first attempt", || {
        kube.count("create", Some("mutatingwebhookconfigurations")) >= 1
    })
    .await;
    // Watch churn makes many passes: namespaces keep appearing for 4 s.
    let started = std::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(4) {
        create_namespace(&kube, &format!("churn-{i}")).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = kube.count("create", Some("mutatingwebhookconfigurations"));
    // 1 s, 2 s, 4 s ... (with jitter down to half): at most 5 attempts in about 4 s.
    assert!(
        (2..=5).contains(&attempts),
        "{attempts} attempts to create the configuration during {i} passes' worth of churn"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_write_error_is_paced_per_object_not_a_hot_loop() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    create_namespace(&kube, "dev").await;
    put_config(
        &kube,
        json!({"watch-namespace": "default,dev", "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    // Every Secret create fails with 500, while namespaces keep changing (many passes).
    kube.fail_next("create", Some("secrets"), 10_000, 500);
    let running = start(&kube, &cloud);
    let started = std::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(4) {
        create_namespace(&kube, &format!("churn-{i}")).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two objects, each retried after 1 s, 2 s, 4 s ... (jitter down to half): at most 5
    // attempts each in about 4 s, whatever the number of passes.
    let attempts = kube.count("create", Some("secrets"));
    assert!(
        (2..=10).contains(&attempts),
        "{attempts} Secret creates in 4 s for 2 namespaces"
    );
    // The failure is counted per attempt.
    let metrics = running.ops.metrics.encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("acr_auth_writes_total{") && l.contains("result=\"api\"")),
        "{metrics}"
    );
    // The API server recovers: both namespaces are served.
    kube.clear_faults();
    let recovered = std::time::Instant::now();
    while !(secret_hosts(&kube, "default").is_some() && secret_hosts(&kube, "dev").is_some()) {
        assert!(recovered.elapsed() < Duration::from_secs(30), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;
}
