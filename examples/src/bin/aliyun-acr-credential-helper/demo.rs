//! `demo`: the main job on embedded defaults. Starts the fake Alibaba Cloud and the fake
//! Kubernetes API server in-process, writes a sample configuration (three namespaces, one
//! Enterprise and one Personal Edition registry, 30-second tokens renewed 20 seconds before they
//! expire), runs the real controller against them over HTTP, shows the Secrets and
//! ServiceAccounts it wrote, waits for one renewal, and prints a summary. Passwords are never
//! shown.

use std::time::{Duration, Instant};

use acr_auth_core::acr::RegistryHost;
use acr_auth_core::credentials::{ProviderEnv, TokenMode};
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::source::SourceSettings;
use acr_auth_kube::controller::{Controller, ControllerSettings};
use acr_auth_kube::identity::resolve_base_identity;
use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use serde_json::{json, Value};

const SECRET: &str = "acr-credential-secret-aggregation";
const NAMESPACES: [&str; 3] = ["default", "team-a", "team-b"];

fn docker_config(kube: &FakeKube, ns: &str) -> Option<DockerConfig> {
    let s = kube.get("secrets", ns, SECRET)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s["data"][".dockerconfigjson"].as_str()?)
        .ok()?;
    DockerConfig::parse(std::str::from_utf8(&raw).ok()?).ok()
}

/// Creates an object from JSON through the typed API, as a user's tooling would.
async fn create<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    object: Value,
) -> Result<(), String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let obj: K = serde_json::from_value(object).map_err(|e| e.to_string())?;
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), namespace.unwrap_or("default"));
    api.create(&Default::default(), &obj)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(start.elapsed())
}

pub async fn run() -> Result<(), String> {
    let mut cloud_config = FakeCloudConfig::sample();
    cloud_config.token_lifetime_secs = 30;
    let cloud = FakeCloud::start(cloud_config)
        .await
        .map_err(|e| format!("cannot start the fake cloud: {e}"))?;
    let kube = FakeKube::start()
        .await
        .map_err(|e| format!("cannot start the fake API server: {e}"))?;
    println!("fake Alibaba Cloud:        {}", cloud.url());
    println!("fake Kubernetes API server: {}", kube.url());

    let client = kube::Client::try_from(kube::Config::new(
        kube.url().parse().map_err(|e| format!("{e}"))?,
    ))
    .map_err(|e| e.to_string())?;
    for ns in &NAMESPACES[1..] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).map_err(|e| e.to_string())?;
        kube::Api::<Namespace>::all(client.clone())
            .create(&Default::default(), &namespace)
            .await
            .map_err(|e| e.to_string())?;
    }
    // A registered cluster's AccessKey Secret: tokenMode auto picks it.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    create::<Secret>(
        &client,
        Some("kube-system"),
        json!({
            "metadata": {"name": "alibaba-addon-secret"},
            "data": {"access-key-id": b64("LTAItestkey"), "access-key-secret": b64("test-secret")},
        }),
    )
    .await?;
    let registry_info = "- instanceId: \"cri-testinstance01\"\n  regionId: \"cn-hangzhou\"\n- instanceId: \"\"\n  regionId: \"cn-hangzhou\"\n";
    create::<ConfigMap>(
        &client,
        Some("kube-system"),
        json!({
            "metadata": {"name": "acr-configuration"},
            "data": {
                "watch-namespace": NAMESPACES.join(","),
                "service-account": "default",
                "expiring-threshold": "20s",
                "acr-registry-info": registry_info,
            },
        }),
    )
    .await?;
    println!("\nConfigMap kube-system/acr-configuration:");
    println!(
        "  watch-namespace: {}\n  service-account: default\n  expiring-threshold: 20s",
        NAMESPACES.join(",")
    );
    println!("  acr-registry-info: Enterprise Edition cri-testinstance01, Personal Edition (cn-hangzhou)");

    let env = ProviderEnv::from_vars([
        ("ACR_AUTH_STS_ENDPOINT", cloud.url()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".into()),
    ]);
    let identity = resolve_base_identity(&client, TokenMode::Auto, &env)
        .await
        .map_err(|e| e.to_string())?;
    println!("\nbase identity: {}", identity.reason);
    let mut sources = SourceSettings::new(
        "cn-hangzhou",
        identity.provider,
        format!("{:?}", identity.source),
    );
    sources.env = env;
    sources.acr_endpoint = Some(acr_auth_core::acr::Endpoint::Url(cloud.url()));
    let settings = ControllerSettings::new(sources);
    let setup_writes = kube.count("create", Some("secrets"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(Controller::new(client, settings).run(async {
        let _ = stopped.await;
    }));

    let took = wait_for("the pull Secrets", Duration::from_secs(20), || {
        NAMESPACES
            .iter()
            .all(|ns| docker_config(&kube, ns).is_some())
    })
    .await?;
    println!("\ncontroller converged in {} ms:", took.as_millis());
    let first: Vec<DockerConfig> = NAMESPACES
        .iter()
        .filter_map(|ns| docker_config(&kube, ns))
        .collect();
    for (ns, cfg) in NAMESPACES.iter().zip(&first) {
        let sa = kube
            .get("serviceaccounts", ns, "default")
            .unwrap_or_default();
        let entries: Vec<&str> = sa["imagePullSecrets"]
            .as_array()
            .map(|l| l.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        println!("  {ns}: Secret {SECRET} ({} hosts); ServiceAccount default imagePullSecrets: {entries:?}", cfg.auths.len());
    }
    println!("\n.dockerconfigjson in default (passwords redacted):");
    let pretty: Value =
        serde_json::from_str(&first[0].to_json_redacted()).map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&pretty).map_err(|e| e.to_string())?
    );
    for host in first[0].auths.keys() {
        let kind = RegistryHost::parse(host)
            .map(|h| format!("{:?} / {:?} / {}", h.edition, h.network, h.region))
            .unwrap_or_else(|_| "custom domain".to_owned());
        println!("  {host}: {kind}");
    }

    println!("\nwaiting for the renewal (30 s tokens, renewed 20 s before expiry)...");
    // Renewed when every host's password differs from the first one served.
    let renewed = |before: &DockerConfig, now: &DockerConfig| {
        before.auths.iter().all(|(host, a)| {
            now.auths
                .get(host)
                .is_some_and(|b| b.password != a.password)
        })
    };
    let renewal = wait_for("the renewal", Duration::from_secs(40), || {
        NAMESPACES
            .iter()
            .zip(&first)
            .all(|(ns, before)| docker_config(&kube, ns).is_some_and(|now| renewed(before, &now)))
    })
    .await?;
    println!(
        "renewed after {:.1} s in every namespace",
        renewal.as_secs_f64()
    );

    let _ = stop.send(());
    controller
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let writes = |verb: &str| kube.count(verb, Some("secrets"));
    println!(
        "\nsummary: {} namespaces served, {} registry hosts, {} ACR token calls (2 registries x 2 tokens), Secrets: {} created, {} updated in place; ServiceAccount patches: {}",
        NAMESPACES.len(),
        first[0].auths.len(),
        cloud.calls("GetAuthorizationToken") + cloud.calls("GET /tokens"),
        writes("create") - setup_writes,
        writes("patch"),
        kube.count("patch", Some("serviceaccounts")),
    );
    Ok(())
}
