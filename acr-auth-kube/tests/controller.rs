//! End to end: the controller against the fake cloud and the fake API server, all real HTTP.

use std::time::{Duration, Instant};

use acr_auth_kube::plan::MANAGED_ENTRIES_ANNOTATION;
use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use base64::Engine as _;
use serde_json::{json, Value};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_serves_converges_and_keeps_the_last_good_configuration() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    for ns in ["dev", "prod"] {
        create_namespace(&kube, ns).await;
    }
    // Someone else's entry on dev/default: it must survive everything.
    let http = acr_auth_testkit::http_client();
    let resp = http
        .patch(format!(
            "{}/api/v1/namespaces/dev/serviceaccounts/default",
            kube.url()
        ))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"imagePullSecrets": [{"name": "theirs"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    put_config(
        &kube,
        json!({
            "watch-namespace": "all",
            "exclude-namespace": "kube-*",
            "service-account": "default",
            "acr-registry-info": "- instanceId: cri-testinstance01\n- instanceId: \"\"\n",
        }),
    )
    .await;

    let running = start(&kube, &cloud);

    // Every served namespace gets the Secret with every host; matching SAs get the entry.
    eventually("Secrets in default, dev and prod", || {
        ["default", "dev", "prod"]
            .iter()
            .all(|ns| secret_hosts(&kube, ns).is_some())
    })
    .await;
    let hosts = secret_hosts(&kube, "dev").unwrap();
    for h in [
        "acme-registry.cn-hangzhou.cr.aliyuncs.com",
        "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
        "registry.acme.example",
        "registry.cn-hangzhou.aliyuncs.com",
        "registry-vpc.cn-hangzhou.aliyuncs.com",
    ] {
        assert!(hosts.contains(&h.to_owned()), "{h} missing from {hosts:?}");
    }
    assert!(
        secret_hosts(&kube, "kube-system").is_none()
            && secret_hosts(&kube, "kube-public").is_none(),
        "excluded"
    );
    eventually("SA entries", || {
        ["default", "dev", "prod"]
            .iter()
            .all(|ns| sa_entries(&kube, ns, "default").contains(&OURS.to_owned()))
    })
    .await;
    assert_eq!(sa_entries(&kube, "dev", "default"), ["theirs", OURS]);
    let sa = kube.get("serviceaccounts", "dev", "default").unwrap();
    assert_eq!(
        sa["metadata"]["annotations"][MANAGED_ENTRIES_ANNOTATION],
        OURS
    );
    // One token per registry, whatever the number of namespaces.
    assert_eq!(cloud.calls("GetAuthorizationToken"), 1);
    assert_eq!(cloud.calls("GET /tokens"), 1);

    // A new namespace is served as soon as the watch sees it.
    create_namespace_and_wait_until_served(&kube, "team-new").await;

    // Narrowing the configuration removes what left scope, and only that.
    put_config(
        &kube,
        json!({"watch-namespace": "default,prod", "service-account": "default",
        "acr-registry-info": "- instanceId: cri-testinstance01\n- instanceId: \"\"\n"}),
    )
    .await;
    eventually("dev and team-new cleaned", || {
        secret_hosts(&kube, "dev").is_none()
            && secret_hosts(&kube, "team-new").is_none()
            && sa_entries(&kube, "dev", "default") == ["theirs"]
    })
    .await;
    assert!(secret_hosts(&kube, "prod").is_some());

    // An invalid edit keeps the last good configuration and records a Warning Event.
    let writes_before =
        kube.count("create", Some("secrets")) + kube.count("delete", Some("secrets"));
    put_config(
        &kube,
        json!({"watch-namespace": "default", "expiring-threshold": "15"}),
    )
    .await;
    eventually("an InvalidConfiguration Event", || {
        !events(&kube, "InvalidConfiguration").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        secret_hosts(&kube, "prod").is_some(),
        "the last good configuration stays in force"
    );
    assert_eq!(
        kube.count("create", Some("secrets")) + kube.count("delete", Some("secrets")),
        writes_before
    );

    // Idle: no writes at all.
    let idle_before = kube
        .requests()
        .iter()
        .filter(|r| {
            matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete")
                && r.resource != "events"
        })
        .count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_after = kube
        .requests()
        .iter()
        .filter(|r| {
            matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete")
                && r.resource != "events"
        })
        .count();
    assert_eq!(idle_before, idle_after, "no writes while nothing changes");

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acr_outage_keeps_the_last_good_secret_warns_and_recovers() {
    let mut config = FakeCloudConfig::sample();
    config.token_lifetime_secs = 4;
    let cloud = FakeCloud::start(config).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(
        &kube,
        json!({"expiring-threshold": "2s", "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    let running = start(&kube, &cloud);
    let host = "registry.cn-hangzhou.aliyuncs.com";
    eventually("the first Secret", || {
        password(&kube, "default", host).is_some()
    })
    .await;
    let first = password(&kube, "default", host).unwrap();

    // ACR goes down past the threshold and past the token's expiry.
    cloud.fail_next(10_000, acr_auth_testkit::Fault::ServiceUnavailable);
    eventually("a TokenRenewalFailed Warning Event", || {
        events(&kube, "TokenRenewalFailed")
            .iter()
            .any(|e| e["type"] == "Warning")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        password(&kube, "default", host).as_deref(),
        Some(first.as_str()),
        "the last good Secret is left untouched"
    );
    assert_eq!(
        writes(&kube, "secrets") - kube.count("create", Some("secrets")),
        0,
        "nothing written during the outage"
    );

    // ACR comes back: renewed in place.
    cloud.clear_faults();
    eventually("the renewed Secret", || {
        password(&kube, "default", host).is_some_and(|p| p != first)
    })
    .await;
    assert!(kube.count("patch", Some("secrets")) >= 1);
    assert_eq!(
        kube.count("create", Some("secrets")),
        1,
        "updated in place, never recreated"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_a_concurrent_writer_never_lose_anyones_entries() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    create_namespace(&kube, "dev").await;
    put_config(
        &kube,
        json!({"watch-namespace": "default,dev", "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    kube.fail_next("patch", Some("serviceaccounts"), 3, 409);
    kube.fail_next("create", Some("secrets"), 1, 500);

    // Another writer keeps adding its own entries to dev/default while the controller works.
    let url = kube.url();
    let writer = tokio::spawn(async move {
        let http = acr_auth_testkit::http_client();
        let mut added = Vec::new();
        for i in 0..20 {
            let sa: Value = http
                .get(format!(
                    "{url}/api/v1/namespaces/dev/serviceaccounts/default"
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut list = sa["imagePullSecrets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            list.push(json!({"name": format!("writer-{i}")}));
            let mut next = sa.clone();
            next["imagePullSecrets"] = Value::Array(list);
            // Optimistic concurrency, like any well-behaved writer: retry on 409.
            let status = http
                .put(format!(
                    "{url}/api/v1/namespaces/dev/serviceaccounts/default"
                ))
                .json(&next)
                .send()
                .await
                .unwrap()
                .status();
            if status.is_success() {
                added.push(format!("writer-{i}"));
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        added
    });
    let running = start(&kube, &cloud);
    let added = writer.await.unwrap();
    assert!(!added.is_empty());
    eventually("our entry next to every entry the writer added", || {
        let entries = sa_entries(&kube, "dev", "default");
        entries.contains(&OURS.to_owned()) && added.iter().all(|a| entries.contains(a))
    })
    .await;
    assert!(
        kube.count("patch", Some("serviceaccounts")) >= 4,
        "the injected conflicts were retried"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_and_410_gone_recover() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    put_config(&kube, json!({"watch-namespace": "all", "exclude-namespace": "kube-*", "acr-registry-info": "- instanceId: \"\"\n"})).await;
    let running = start(&kube, &cloud);
    eventually("default served", || {
        secret_hosts(&kube, "default").is_some()
    })
    .await;

    // History is compacted and every watch is cut: resuming gets 410, the watcher re-lists.
    kube.compact();
    kube.drop_watches();
    create_namespace_and_wait_until_served(&kube, "after-gone").await;
    assert!(
        kube.count("list", Some("namespaces")) >= 2,
        "re-listed after the watch was lost"
    );
    running.stop().await;
}

/// The real pull path end to end: the controller writes the Secret, `kubectl` reads it back, and
/// `skopeo` pulls from a Distribution registry whose token realm is the fake cloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_with_the_secret_the_controller_wrote() {
    use acr_auth_testkit::distribution::{
        inspect_image, push_test_image, require_tool, DistributionRegistry,
    };

    let dir = tempfile::tempdir().unwrap();
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let registry = DistributionRegistry::start(dir.path(), &cloud).await;
    let kube = FakeKube::start().await.unwrap();
    // The test registry stands in for the instance's custom domain.
    put_config(&kube, json!({"acr-registry-info": format!("- instanceId: cri-testinstance01\n  customDomains: \"{}\"\n", registry.addr())})).await;
    let running = start(&kube, &cloud);
    eventually("the Secret", || {
        secret_hosts(&kube, "default").is_some_and(|h| h.contains(&registry.addr().to_owned()))
    })
    .await;

    // Read it back as a user would.
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig).unwrap();
    let out = tokio::process::Command::new(require_tool("kubectl"))
        .args([
            "get",
            "secret",
            OURS,
            "-n",
            "default",
            "-o",
            "jsonpath={.data.\\.dockerconfigjson}",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let auth = base64::engine::general_purpose::STANDARD
        .decode(out.stdout.trim_ascii())
        .unwrap();
    let authfile = dir.path().join("auth.json");
    std::fs::write(&authfile, &auth).unwrap();
    let authfile = authfile.display().to_string();

    let (image, digest) = push_test_image(dir.path(), registry.addr(), &authfile, &[]).await;
    let inspect = inspect_image(dir.path(), &image, &authfile, &[]).await;
    assert!(
        inspect.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let info: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    running.stop().await;
}

/// Edits of `service-account`, `acr-registry-info` and `secret-name` converge: entries and
/// Secrets that left the configuration go, someone else's entries stay; a new ServiceAccount in
/// a served namespace gets the entry as soon as the watch sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_registry_and_secret_name_edits_converge() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    create_namespace(&kube, "dev").await;
    for sa in [
        json!({"metadata": {"name": "builder"}}),
        json!({"metadata": {"name": "deployer"}, "imagePullSecrets": [{"name": "theirs"}]}),
    ] {
        assert_eq!(
            post(&kube, "/api/v1/namespaces/dev/serviceaccounts", sa).await,
            201
        );
    }
    let pe = "- instanceId: \"\"\n";
    let ee = "- instanceId: cri-testinstance01\n";
    put_config(
        &kube,
        json!({"watch-namespace": "dev", "service-account": "default,builder,deployer",
               "acr-registry-info": pe}),
    )
    .await;
    let running = start(&kube, &cloud);
    eventually("dev/builder and dev/deployer served", || {
        sa_entries(&kube, "dev", "builder") == [OURS]
            && sa_entries(&kube, "dev", "deployer") == ["theirs", OURS]
    })
    .await;
    assert!(secret_hosts(&kube, "dev")
        .unwrap()
        .contains(&"registry.cn-hangzhou.aliyuncs.com".to_owned()));

    // Service accounts narrowed: builder loses our entry, deployer keeps theirs.
    put_config(
        &kube,
        json!({"watch-namespace": "dev", "service-account": "default", "acr-registry-info": pe}),
    )
    .await;
    eventually("builder and deployer detached", || {
        sa_entries(&kube, "dev", "builder").is_empty()
            && sa_entries(&kube, "dev", "deployer") == ["theirs"]
            && sa_entries(&kube, "dev", "default") == [OURS]
    })
    .await;

    // `*`: a ServiceAccount created now is served as soon as the watch sees it.
    put_config(
        &kube,
        json!({"watch-namespace": "dev", "service-account": "*", "acr-registry-info": pe}),
    )
    .await;
    eventually("every SA in dev", || {
        sa_entries(&kube, "dev", "builder") == [OURS]
    })
    .await;
    let created = Instant::now();
    let (status, _) = create_service_account(&kube, "dev", "fresh", json!({})).await;
    assert_eq!(status, 201);
    eventually("the new SA served", || {
        sa_entries(&kube, "dev", "fresh") == [OURS]
    })
    .await;
    let latency = created.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "a new ServiceAccount waited {latency:?}"
    );

    // Registries: the Enterprise instance replaces the Personal Edition registry.
    put_config(
        &kube,
        json!({"watch-namespace": "dev", "service-account": "*", "acr-registry-info": ee}),
    )
    .await;
    eventually("EE hosts only", || {
        secret_hosts(&kube, "dev").is_some_and(|h| {
            h.contains(&"acme-registry.cn-hangzhou.cr.aliyuncs.com".to_owned())
                && !h.contains(&"registry.cn-hangzhou.aliyuncs.com".to_owned())
        })
    })
    .await;
    assert_eq!(kube.count("create", Some("secrets")), 1, "updated in place");

    // secret-name: the new Secret replaces ours everywhere, foreign entries stay.
    put_config(
        &kube,
        json!({"watch-namespace": "dev", "service-account": "*", "acr-registry-info": ee,
               "secret-name": "pull-secret"}),
    )
    .await;
    eventually("renamed", || {
        kube.get("secrets", "dev", "pull-secret").is_some()
            && kube.get("secrets", "dev", OURS).is_none()
            && sa_entries(&kube, "dev", "deployer") == ["theirs", "pull-secret"]
            && sa_entries(&kube, "dev", "fresh") == ["pull-secret"]
    })
    .await;
    let sa = kube.get("serviceaccounts", "dev", "deployer").unwrap();
    assert_eq!(
        sa["metadata"]["annotations"][MANAGED_ENTRIES_ANNOTATION], "pull-secret",
        "the record names only what we added"
    );
    running.stop().await;
}

/// Each registry has its own `TokenRenewalFailed` series, and a series carries its latest
/// message: after the configuration moves from one failing registry to another, an Event names
/// the new one (kube-runtime's recorder patched the first Event's count and kept its note, so a
/// count of 33 still named a registry no longer configured).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_failure_events_are_one_series_per_registry_with_the_latest_message() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let kube = FakeKube::start().await.unwrap();
    let item = |id: &str| json!({"acr-registry-info": format!("- instanceId: \"{id}\"\n")});
    put_config(&kube, item("cri-missing00001")).await;
    let running = start(&kube, &cloud);
    let naming = |id: &str| {
        events(&kube, "TokenRenewalFailed")
            .into_iter()
            .filter(|e| e["note"].as_str().unwrap_or_default().contains(id))
            .collect::<Vec<_>>()
    };
    eventually("an Event naming the first registry", || {
        !naming("cri-missing00001").is_empty()
    })
    .await;

    put_config(&kube, item("cri-missing00002")).await;
    eventually("an Event naming the second registry", || {
        !naming("cri-missing00002").is_empty()
    })
    .await;
    // Back to the first: its own series goes on (count 2), nothing is created for it anew.
    put_config(&kube, item("cri-missing00001")).await;
    eventually("the first registry's series counted on", || {
        naming("cri-missing00001")
            .iter()
            .any(|e| e["series"]["count"] == 2)
    })
    .await;
    running.stop().await;

    let all = events(&kube, "TokenRenewalFailed");
    assert_eq!(all.len(), 2, "one Event per registry: {all:#?}");
    for e in &all {
        let note = e["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("cri-missing00001") != note.contains("cri-missing00002"),
            "each series names its own registry: {note}"
        );
        assert_eq!(e["type"], "Warning");
    }
}
