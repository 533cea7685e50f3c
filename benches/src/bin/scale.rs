//! The scale bench: N namespaces (default 10,000) with two ServiceAccounts each in the fake API
//! server, one Enterprise and one Personal Edition registry. The fake API server, the fake cloud
//! and the controller (`aliyun-acr-credential-helper run`) each run as their own process.
//!
//! Measures: cold-start convergence, API requests by verb, ACR calls, the controller's peak RSS;
//! then an idle period (expect zero writes and zero ACR calls); then one renewal (expect one
//! Secret update per namespace and one ACR call per registry).
//!
//! ```text
//! cargo build --release -p acr-auth-examples -p acr-auth-testkit
//! cargo run --release -p acr-auth-benches --bin scale -- [--namespaces 10000] [--idle-secs 60]
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{json, Value};

fn binary(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} not found: build it first with `cargo build --release -p acr-auth-examples -p acr-auth-testkit`", path.display()))
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a fake server binary and reads its URL from the first line it prints.
fn start_fake(bin: &str, arg: &str, prefix: &str) -> Result<(Proc, String), String> {
    let mut child = Command::new(binary(bin)?)
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    // Read through a borrow: the pipe stays open for as long as the process runs.
    BufReader::new(child.stdout.as_mut().ok_or("no stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .trim()
        .strip_prefix(prefix)
        .ok_or_else(|| format!("{bin} printed {line:?}"))?
        .to_owned();
    Ok((Proc(child), url))
}

async fn counts(http: &reqwest::Client, url: &str) -> BTreeMap<String, u64> {
    match http.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => BTreeMap::new(),
    }
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>, key: &str) -> u64 {
    after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0)
}

fn writes(c: &BTreeMap<String, u64>) -> u64 {
    c.iter()
        .filter(|(k, _)| {
            ["create ", "update ", "patch ", "delete "]
                .iter()
                .any(|v| k.starts_with(v))
                && !k.ends_with(" events")
        })
        .map(|(_, v)| v)
        .sum()
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

async fn post_all(http: &reqwest::Client, requests: Vec<(String, Value)>) -> Result<(), String> {
    let results: Vec<Result<(), String>> = futures_util::stream::iter(requests)
        .map(|(url, body)| async move {
            let r = http
                .post(&url)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("{url}: HTTP {}", r.status()))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = arg("--namespaces", 10_000);
    let idle = Duration::from_secs(arg("--idle-secs", 60));
    let dir = std::env::temp_dir().join(format!("acr-auth-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    // Tokens live 150 s and renew 60 s before expiry: the renewal comes after the idle period.
    let cloud_config = dir.join("cloud.json");
    std::fs::write(
        &cloud_config,
        json!({
            "access_keys": [{"id": "LTAItestkey", "secret": "test-secret"}],
            "instances": [{"id": "cri-testinstance01", "name": "acme", "region": "cn-hangzhou"}],
            "token_lifetime_secs": 150,
        })
        .to_string(),
    )
    .map_err(|e| e.to_string())?;
    let (_cloud, cloud) = start_fake(
        "acr-fake-cloud",
        &cloud_config.display().to_string(),
        "ACR_FAKE_CLOUD_URL=",
    )?;
    let kubeconfig = dir.join("kubeconfig");
    let (_kube, kube) = start_fake(
        "acr-fake-kube",
        &kubeconfig.display().to_string(),
        "ACR_FAKE_KUBE_URL=",
    )?;
    // reqwest is built without a crypto provider of its own (see the workspace Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    let started = Instant::now();
    let namespaces: Vec<(String, Value)> = (1..=n)
        .map(|i| {
            (
                format!("{kube}/api/v1/namespaces"),
                json!({"metadata": {"name": format!("ns-{i:05}")}}),
            )
        })
        .collect();
    post_all(&http, namespaces).await?;
    let builders: Vec<(String, Value)> = (1..=n)
        .map(|i| {
            (
                format!("{kube}/api/v1/namespaces/ns-{i:05}/serviceaccounts"),
                json!({"metadata": {"name": "builder"}}),
            )
        })
        .collect();
    post_all(&http, builders).await?;
    post_all(&http, vec![
        (format!("{kube}/api/v1/namespaces/kube-system/secrets"), json!({"metadata": {"name": "alibaba-addon-secret"},
            "data": {"access-key-id": "TFRBSXRlc3RrZXk=", "access-key-secret": "dGVzdC1zZWNyZXQ="}})),
        (format!("{kube}/api/v1/namespaces/kube-system/configmaps"), json!({"metadata": {"name": "acr-configuration"}, "data": {
            "watch-namespace": "all", "exclude-namespace": "kube-*", "service-account": "default,builder",
            "expiring-threshold": "60s",
            "acr-registry-info": "- instanceId: \"cri-testinstance01\"\n- instanceId: \"\"\n"}})),
    ]).await?;
    println!(
        "cluster: {n} namespaces x 2 ServiceAccounts created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let kube_counts = format!("{kube}/_fake/requests");
    let cloud_counts = format!("{cloud}/_fake/calls");
    let base = counts(&http, &kube_counts).await;
    let base_cloud = counts(&http, &cloud_counts).await;
    let served = n + 1; // plus `default`
    let patches = 2 * n + 1; // `default` has one ServiceAccount, every ns-* two
    let controller = Command::new(binary("aliyun-acr-credential-helper")?)
        .arg("run")
        .env("KUBECONFIG", &kubeconfig)
        .env("ACR_AUTH_ACR_ENDPOINT", &cloud)
        .env("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = controller.id();
    let _controller = Proc(controller);
    let t0 = Instant::now();
    loop {
        let c = counts(&http, &kube_counts).await;
        if delta(&c, &base, "create secrets") >= served
            && delta(&c, &base, "patch serviceaccounts") >= patches
        {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err(format!("no convergence within 10 minutes: {c:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged = t0.elapsed();
    let after = counts(&http, &kube_counts).await;
    let cloud_after = counts(&http, &cloud_counts).await;
    println!(
        "\ncold start: converged in {:.2} s ({} namespaces, {} ServiceAccounts)",
        converged.as_secs_f64(),
        served,
        2 * n + 1
    );
    println!("API requests by the controller:");
    for (k, v) in &after {
        let d = v - base.get(k).copied().unwrap_or(0);
        if d > 0 {
            println!("  {k}: {d}");
        }
    }
    let acr = |c: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
        delta(c, b, "GetAuthorizationToken")
            + delta(c, b, "GET /tokens")
            + delta(c, b, "ListInstanceEndpoint")
    };
    println!(
        "ACR calls: {} (GetAuthorizationToken {}, GET /tokens {}, ListInstanceEndpoint {})",
        acr(&cloud_after, &base_cloud),
        delta(&cloud_after, &base_cloud, "GetAuthorizationToken"),
        delta(&cloud_after, &base_cloud, "GET /tokens"),
        delta(&cloud_after, &base_cloud, "ListInstanceEndpoint")
    );
    println!(
        "controller peak RSS so far: {:.1} MB",
        peak_rss_mb(pid).unwrap_or(f64::NAN)
    );

    // Idle: nothing changes, so nothing may be written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_start = counts(&http, &kube_counts).await;
    let idle_cloud = counts(&http, &cloud_counts).await;
    tokio::time::sleep(idle).await;
    let idle_end = counts(&http, &kube_counts).await;
    let idle_cloud_end = counts(&http, &cloud_counts).await;
    let idle_writes = writes(&idle_end) - writes(&idle_start);
    let idle_acr = acr(&idle_cloud_end, &idle_cloud);
    println!(
        "\nidle {} s: {idle_writes} writes, {idle_acr} ACR calls",
        idle.as_secs()
    );

    // One renewal.
    let t1 = Instant::now();
    loop {
        let c = counts(&http, &kube_counts).await;
        if delta(&c, &idle_end, "patch secrets") >= served {
            break;
        }
        if t1.elapsed() > Duration::from_secs(180) {
            return Err("no renewal within 3 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let renewed = counts(&http, &kube_counts).await;
    let renewed_cloud = counts(&http, &cloud_counts).await;
    println!("renewal: {} Secret updates for {} namespaces, {} ACR token calls for 2 registries, {} other writes",
        delta(&renewed, &idle_end, "patch secrets"), served,
        delta(&renewed_cloud, &idle_cloud_end, "GetAuthorizationToken") + delta(&renewed_cloud, &idle_cloud_end, "GET /tokens"),
        writes(&renewed) - writes(&idle_end) - delta(&renewed, &idle_end, "patch secrets"));
    let rss = peak_rss_mb(pid).unwrap_or(f64::NAN);
    println!("controller peak RSS: {rss:.1} MB");
    println!(
        "\ngoals: converge <= 20 s: {}; RSS <= 100 MB: {}; zero idle writes: {}",
        if converged <= Duration::from_secs(20) {
            "met"
        } else {
            "MISSED"
        },
        if rss <= 100.0 { "met" } else { "MISSED" },
        if idle_writes == 0 && idle_acr == 0 {
            "met"
        } else {
            "MISSED"
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
