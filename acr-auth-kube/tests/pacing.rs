//! End to end, against the fake cloud and the fake API server: how the controller paces itself
//! when the API server pushes back (a `Retry-After`, a client-side rate limit) and how it gets
//! past a conflict when its watch lags behind.

mod common;

use std::time::{Duration, Instant};

use acr_auth_kube::pacing::RateLimit;
use acr_auth_testkit::cloud::FakeCloudConfig;
use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::FakeCloud;
use common::*;
use serde_json::json;

const HOST: &str = "registry.cn-hangzhou.aliyuncs.com";

/// The controller's requests (as the fake recorded them), oldest first.
fn controller_requests(kube: &FakeKube) -> Vec<acr_auth_testkit::kube::RequestRecord> {
    kube.requests()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some("controller"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_holds_every_request_of_the_client_until_it_ends() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(
        &kube,
        json!({"watch-namespace": "all", "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    // The first Secret create is throttled with Retry-After: 3 (longer than the object's own
    // first backoff, 0.5 to 1 s).
    kube.throttle_next("create", Some("secrets"), 1, 3);
    let running = start_with(paced_client(&kube, "controller", None), settings(&cloud));
    eventually("the throttled create", || {
        kube.count("create", Some("secrets")) >= 1
    })
    .await;
    // Work for other objects arrives during the Retry-After: it waits too.
    create_namespace(&kube, "late").await;
    eventually("every namespace served after the throttling", || {
        ["default", "kube-public", "kube-system", "late"]
            .iter()
            .all(|ns| secret_hosts(&kube, ns).is_some())
    })
    .await;
    let requests = controller_requests(&kube);
    let throttled = requests
        .iter()
        .position(|r| r.verb == "create" && r.resource == "secrets")
        .expect("the throttled create");
    let at = requests[throttled].at;
    // Nothing was sent in the 3 s after the 429 (the 429 answer itself takes a moment, so
    // allow what was already on its way in the first 100 ms).
    let during: Vec<_> = requests[throttled + 1..]
        .iter()
        .filter(|r| {
            r.at > at + Duration::from_millis(100) && r.at < at + Duration::from_millis(2900)
        })
        .map(|r| format!("{} {} {:?}", r.verb, r.resource, r.namespace))
        .collect();
    assert!(during.is_empty(), "sent during the Retry-After: {during:?}");
    for ns in [requests[throttled].namespace.as_deref(), Some("late")] {
        let create = requests[throttled + 1..]
            .iter()
            .find(|r| r.verb == "create" && r.resource == "secrets" && r.namespace.as_deref() == ns)
            .expect("the create");
        assert!(
            create.at >= at + Duration::from_millis(2900),
            "{ns:?}: created {:?} after the 429",
            create.at - at
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_side_rate_limit_bounds_every_second() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    for i in 0..20 {
        create_namespace(&kube, &format!("ns-{i}")).await;
    }
    put_config(
        &kube,
        json!({"watch-namespace": "all", "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    let (qps, burst) = (10.0, 5);
    let limit = RateLimit::new(qps, burst).unwrap();
    let running = start_with(
        paced_client(&kube, "controller", Some(limit)),
        settings(&cloud),
    );
    eventually("every namespace served", || {
        (0..20).all(|i| {
            let ns = format!("ns-{i}");
            secret_hosts(&kube, &ns).is_some()
                && sa_entries(&kube, &ns, "default").contains(&OURS.to_owned())
        })
    })
    .await;
    let at: Vec<Instant> = controller_requests(&kube).iter().map(|r| r.at).collect();
    // 20 namespaces need at least 40 writes (Secret + ServiceAccount): well over one burst.
    assert!(at.len() >= 40, "{} requests", at.len());
    // A token bucket lets through at most burst + qps * t in any window of length t.
    for (i, start) in at.iter().enumerate() {
        let window = Duration::from_secs(1);
        let in_window = at[i..].iter().take_while(|t| **t < *start + window).count();
        assert!(
            in_window as f64 <= f64::from(burst) + qps + 1.0,
            "{in_window} requests within a second of request {i}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_rereads_the_object_instead_of_waiting_for_a_lagging_watch() {
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = 8;
    let cloud = FakeCloud::start(config).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(
        &kube,
        json!({"watch-namespace": "default", "expiring-threshold": "4s",
               "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    let running = start(&kube, &cloud);
    eventually("the first Secret", || {
        password(&kube, "default", HOST).is_some()
    })
    .await;
    let first = password(&kube, "default", HOST).unwrap();

    // The watch cache lags (as after an outage) and someone labels our Secret meanwhile: our
    // view of its resourceVersion is now stale.
    kube.pause_watches();
    let status = common::patch(
        &kube,
        &format!("/api/v1/namespaces/default/secrets/{OURS}"),
        json!({"metadata": {"labels": {"team": "payments"}}}),
    )
    .await;
    assert_eq!(status, 200);

    // The renewal (due 4 s before expiry) conflicts once, re-reads the Secret and succeeds,
    // with the watch still paused.
    let start = Instant::now();
    while password(&kube, "default", HOST).as_deref() == Some(first.as_str()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the renewal never landed while the watch lagged ({} patches)",
            kube.count("patch", Some("secrets"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secret = kube.get("secrets", "default", OURS).unwrap();
    assert_eq!(secret["metadata"]["labels"]["team"], "payments");
    // One refused patch, then the one that landed (not a string of refusals).
    assert!(
        kube.count("patch", Some("secrets")) <= 3,
        "{} patches",
        kube.count("patch", Some("secrets"))
    );
    kube.resume_watches();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_finds_our_own_secret_is_a_conflict_not_a_foreign_secret() {
    use acr_auth_core::docker_config::DockerConfig;
    use acr_auth_kube::apply::{apply, ApplyError};
    use acr_auth_kube::plan::{SecretContent, Write};
    use std::sync::Arc;

    let kube = FakeKube::start().await.unwrap();
    let client = client(&kube, "controller");
    let content = Arc::new(SecretContent::new(&DockerConfig::default(), None));
    let create = |ns: &str| Write::CreateSecret {
        namespace: ns.into(),
        name: OURS.into(),
        content: content.clone(),
    };
    // Ours already (created by us, or another replica, before our watch saw it): a conflict
    // that re-plans, and no "not ours" Warning.
    apply(&client, &create("default")).await.unwrap();
    let again = apply(&client, &create("default")).await;
    assert!(matches!(again, Err(ApplyError::Conflict(_))), "{again:?}");
    // Someone else's Secret of that name: left alone.
    assert_eq!(
        post(
            &kube,
            "/api/v1/namespaces/kube-public/secrets",
            json!({"metadata": {"name": OURS}, "type": "Opaque"}),
        )
        .await,
        201
    );
    let foreign = apply(&client, &create("kube-public")).await;
    assert!(
        matches!(foreign, Err(ApplyError::NotOurs { .. })),
        "{foreign:?}"
    );
    // An update of a Secret deleted meanwhile: our view is behind, as in a conflict (re-read
    // and planned again, here as a create), not an error retried for ever.
    let update = Write::UpdateSecret {
        namespace: "dev".into(),
        name: OURS.into(),
        resource_version: "1".into(),
        content: content.clone(),
        has_annotations: false,
        expires_annotation: None,
    };
    let gone = apply(&client, &update).await;
    assert!(matches!(gone, Err(ApplyError::Conflict(_))), "{gone:?}");
}

/// 20 namespaces served by the Personal Edition registry, with tokens living `lifetime_secs`
/// and renewed `threshold` before their end.
async fn rollout_cluster(
    lifetime_secs: u64,
    threshold: &str,
) -> (FakeCloud, FakeKube, Vec<String>) {
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = lifetime_secs;
    let cloud = FakeCloud::start(config).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("team-{i}")).collect();
    for ns in &names {
        create_namespace(&kube, ns).await;
    }
    put_config(
        &kube,
        json!({"watch-namespace": "all", "expiring-threshold": threshold,
               "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    (cloud, kube, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_writes_are_spread_over_the_window_and_new_namespaces_are_not_held() {
    let (cloud, kube, names) = rollout_cluster(30, "20s").await;
    let mut s = settings(&cloud);
    // Renewal 10 s after the first token, the old one valid 20 s more: well over 2 windows.
    s.renewal_spread = Duration::from_secs(4);
    let running = start_with(client(&kube, "controller"), s);
    eventually("every namespace served", || {
        names.iter().all(|ns| password(&kube, ns, HOST).is_some())
    })
    .await;
    let first: Vec<String> = names
        .iter()
        .map(|ns| password(&kube, ns, HOST).unwrap())
        .collect();
    let patches_before = kube.count("patch", Some("secrets"));
    let started = Instant::now();
    while kube.count("patch", Some("secrets")) == patches_before {
        assert!(started.elapsed() < Duration::from_secs(30), "no renewal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A namespace created while the renewal rolls out is served at once, not in the window.
    create_namespace(&kube, "newcomer").await;
    let started = Instant::now();
    while names
        .iter()
        .zip(&first)
        .any(|(ns, old)| password(&kube, ns, HOST).as_ref() == Some(old))
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not every namespace renewed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests = controller_requests(&kube);
    let renewals: Vec<Instant> = requests
        .iter()
        .filter(|r| r.verb == "patch" && r.resource == "secrets")
        .map(|r| r.at)
        .collect();
    assert_eq!(renewals.len(), names.len() + 3, "one patch per Secret");
    let span = *renewals.last().unwrap() - renewals[0];
    assert!(
        span >= Duration::from_millis(1500),
        "renewals within {span:?}"
    );
    for (i, t) in renewals.iter().enumerate() {
        let in_second = renewals[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_secs(1))
            .count();
        assert!(in_second <= 14, "{in_second} renewals within a second");
    }
    let newcomer = requests
        .iter()
        .find(|r| {
            r.verb == "create"
                && r.resource == "secrets"
                && r.namespace.as_deref() == Some("newcomer")
        })
        .expect("the newcomer's Secret");
    assert!(
        newcomer.at < *renewals.last().unwrap(),
        "the new namespace waited for the renewal window"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_renewal_rollout_converges_without_losing_a_namespace() {
    let (cloud, kube, names) = rollout_cluster(40, "30s").await;
    let settings = || {
        let mut s = settings(&cloud);
        s.renewal_spread = Duration::from_secs(4);
        s
    };
    let running = start_with(client(&kube, "controller"), settings());
    eventually("every namespace served", || {
        names.iter().all(|ns| password(&kube, ns, HOST).is_some())
    })
    .await;
    let first: Vec<String> = names
        .iter()
        .map(|ns| password(&kube, ns, HOST).unwrap())
        .collect();
    let renewed = || {
        names
            .iter()
            .zip(&first)
            .filter(|(ns, old)| password(&kube, ns, HOST).as_ref() != Some(*old))
            .count()
    };
    // The renewal (10 s in) rolls out over 4 s: crash once a few namespaces have it.
    let started = Instant::now();
    while renewed() < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "no renewal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.kill().await;
    let at_crash = renewed();
    assert!(
        at_crash < names.len(),
        "the rollout was over before the crash"
    );
    let token_calls = || cloud.calls("GET /tokens");
    let calls_before = token_calls();

    let running = start_with(client(&kube, "controller"), settings());
    // Every namespace ends up with one and the same valid token; none is left without.
    let started = Instant::now();
    loop {
        let now: Vec<Option<String>> = names.iter().map(|ns| password(&kube, ns, HOST)).collect();
        assert!(
            now.iter().all(Option::is_some),
            "a namespace lost its Secret"
        );
        let distinct: std::collections::BTreeSet<_> = now.iter().flatten().collect();
        if distinct.len() == 1 && !first.contains(distinct.iter().next().unwrap()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no convergence: {} distinct tokens",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At most one new token for the whole cluster (none when the renewed token won the vote).
    assert!(
        token_calls() - calls_before <= 1,
        "{} token calls after the restart",
        token_calls() - calls_before
    );
    running.stop().await;
}
