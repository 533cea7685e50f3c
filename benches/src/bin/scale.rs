//! The scale bench: N namespaces (default 10,000) with two ServiceAccounts each in the fake API
//! server, one Enterprise and one Personal Edition registry. The fake API server, the fake cloud
//! and the controllers (`aliyun-acr-credential-helper run --leader-elect`) each run as their own
//! process.
//!
//! Phases, each reported with its writes (by verb and by response status, 409 and 429 included),
//! its peak (over one second) and mean write rate, and its ACR calls:
//! 1. cold start: time to converge, the controller's peak RSS;
//! 2. idle (expect zero writes, zero ACR calls);
//! 3. one renewal (one Secret update per namespace, spread over `--renewal-spread-secs`; one
//!    token call per registry);
//! 4. SIGKILL and restart: the new process adopts the tokens in the Secrets (expect zero
//!    writes and zero token calls while they are valid);
//! 5. failover: a standby takes over from a leader stopped with SIGTERM (expect zero writes);
//! 6. an unrelated ConfigMap edit (`notify-email`; expect zero writes);
//! 7. API errors: every Secret write fails with 500 while every Secret needs an update (a new
//!    custom domain); write attempts per object must stay within what the per-object backoff
//!    allows; then the faults stop and everything converges.
//!
//! ```text
//! cargo build --release -p acr-auth-examples -p acr-auth-testkit
//! cargo run --release -p acr-auth-benches --bin scale -- --namespaces 10000
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt as _;
use serde_json::{json, Value};

/// The scale bench: the controller against N namespaces x 2 ServiceAccounts in the fake API
/// server (see the module documentation for the phases and goals).
#[derive(Debug, Parser)]
#[command(name = "scale")]
struct Args {
    /// Namespaces to create (each with ServiceAccounts `default` and `builder`).
    #[arg(long, default_value_t = 10_000)]
    namespaces: u64,
    /// Length of the idle phase, in seconds.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Lifetime of the fake's registry tokens, in seconds (renewed 60 s before expiry; the
    /// restart, failover and edit phases must fit in the lifetime minus 60 s after the renewal).
    #[arg(long, default_value_t = 150)]
    token_lifetime_secs: u64,
    /// Length of the API-error phase, in seconds.
    #[arg(long, default_value_t = 20)]
    error_secs: u64,
    /// Goal for cold-start convergence, in seconds.
    #[arg(long, default_value_t = 10.0)]
    goal_converge_secs: f64,
    /// Goal for the controller's peak RSS, in MB.
    #[arg(long, default_value_t = 60.0)]
    goal_rss_mb: f64,
    /// The controller's `--renewal-spread`, in seconds. Renewals are spread only while the old
    /// tokens stay valid for more than twice the window: with the bench's `expiring-threshold`
    /// of 60 s, windows under 30 s.
    #[arg(long, default_value_t = 20)]
    renewal_spread_secs: u64,
    /// Stop after the cold start: the controller is stopped with SIGTERM (a clean shutdown,
    /// so a profiler given with `--wrap` writes its data) and the bench ends.
    #[arg(long)]
    cold_start_only: bool,
    /// Runs the controller under this command, split at spaces (for example
    /// `--wrap "heaptrack -o /tmp/cold"`). Its RSS figures are then the wrapper's.
    #[arg(long)]
    wrap: Option<String>,
}

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

impl Proc {
    fn signal(&mut self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status();
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

/// Where the controller `identity` logs (beside the kubeconfig).
fn log_path(kubeconfig: &Path, identity: &str) -> PathBuf {
    kubeconfig.with_file_name(format!("{identity}.log"))
}

/// Log lines of every controller so far.
fn log_lines(kubeconfig: &Path) -> usize {
    ["replica-a", "replica-a2", "replica-b"]
        .iter()
        .filter_map(|id| std::fs::read_to_string(log_path(kubeconfig, id)).ok())
        .map(|text| text.lines().count())
        .sum()
}

/// A controller process (`run --leader-elect`) with this replica identity.
fn start_controller(
    kubeconfig: &Path,
    cloud: &str,
    identity: &str,
    args: &Args,
) -> Result<Proc, String> {
    let wrap = args.wrap.as_deref();
    let controller = binary("aliyun-acr-credential-helper")?;
    let mut command = match wrap.map(|w| w.split_whitespace().collect::<Vec<_>>()) {
        Some(words) if !words.is_empty() => {
            let mut c = Command::new(words[0]);
            c.args(&words[1..]).arg(&controller);
            c
        }
        _ => Command::new(&controller),
    };
    command
        .args([
            "run",
            "--leader-elect",
            "--lease-namespace",
            "kube-system",
            "--identity",
            identity,
            "--renewal-spread",
            &format!("{}s", args.renewal_spread_secs),
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("ACR_AUTH_ACR_ENDPOINT", cloud)
        .env("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log_path(kubeconfig, identity)).map_err(|e| e.to_string())?)
        .spawn()
        .map(Proc)
        .map_err(|e| e.to_string())
}

type Counts = BTreeMap<String, u64>;

async fn counts(http: &reqwest::Client, url: &str) -> Counts {
    match http.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => BTreeMap::new(),
    }
}

fn delta(after: &Counts, before: &Counts, key: &str) -> u64 {
    after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0)
}

/// Whether `verb resource ...` is a write by the controller (not Events, not its Lease, not the
/// ConfigMap the bench edits).
fn is_controller_write(key: &str) -> bool {
    let mut parts = key.split(' ');
    let (verb, resource) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    ["create", "update", "patch", "delete"].contains(&verb)
        && !["events", "leases", "configmaps"].contains(&resource)
}

fn writes(c: &Counts) -> u64 {
    c.iter()
        .filter(|(k, _)| is_controller_write(k))
        .map(|(_, v)| v)
        .sum()
}

fn acr_token_calls(c: &Counts, b: &Counts) -> u64 {
    delta(c, b, "GetAuthorizationToken") + delta(c, b, "GET /tokens")
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

async fn send_all(
    http: &reqwest::Client,
    method: reqwest::Method,
    requests: Vec<(String, Value)>,
) -> Result<(), String> {
    let results: Vec<Result<(), String>> = futures_util::stream::iter(requests)
        .map(|(url, body)| {
            let method = method.clone();
            async move {
                let r = http
                    .request(method, &url)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("{url}: HTTP {}", r.status()))
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Samples the controller's writes every 100 ms, for write rates.
#[derive(Clone, Default)]
struct Sampler(Arc<Mutex<Vec<(Instant, u64)>>>);

impl Sampler {
    fn start(http: reqwest::Client, url: String) -> Self {
        let s = Sampler::default();
        let samples = s.0.clone();
        tokio::spawn(async move {
            loop {
                let w = writes(&counts(&http, &url).await);
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now(), w));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        s
    }

    /// (peak writes in any one-second window, mean writes per second) between `from` and `to`.
    fn rates(&self, from: Instant, to: Instant) -> (f64, f64) {
        let samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let inside: Vec<(Instant, u64)> = samples
            .iter()
            .copied()
            .filter(|(t, _)| *t >= from && *t <= to)
            .collect();
        let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
            return (0.0, 0.0);
        };
        let span = last.0.duration_since(first.0).as_secs_f64();
        let mean = if span > 0.0 {
            (last.1 - first.1) as f64 / span
        } else {
            0.0
        };
        let mut peak = 0u64;
        let mut j = 0;
        for i in 0..inside.len() {
            while inside[i].0.duration_since(inside[j].0) > Duration::from_secs(1) {
                j += 1;
            }
            peak = peak.max(inside[i].1 - inside[j].1);
        }
        (peak as f64, mean)
    }
}

/// What the bench reads at a point in time.
struct Snapshot {
    at: Instant,
    requests: Counts,
    responses: Counts,
    cloud: Counts,
}

struct Bench {
    http: reqwest::Client,
    kube: String,
    cloud: String,
    sampler: Sampler,
    /// One line per phase for the summary table.
    table: Vec<String>,
}

impl Bench {
    async fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            requests: counts(&self.http, &format!("{}/_fake/requests", self.kube)).await,
            responses: counts(&self.http, &format!("{}/_fake/responses", self.kube)).await,
            cloud: counts(&self.http, &format!("{}/_fake/calls", self.cloud)).await,
        }
    }

    async fn leader(&self) -> Option<String> {
        let lease: Value = self
            .http
            .get(format!("{}/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/aliyun-acr-credential-helper", self.kube))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        lease["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    }

    async fn wait_for_leader(&self, identity: &str, within: Duration) -> Result<f64, String> {
        let t0 = Instant::now();
        while self.leader().await.as_deref() != Some(identity) {
            if t0.elapsed() > within {
                return Err(format!(
                    "{identity} did not become the leader within {within:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    /// Prints what happened between `a` and `b` and adds a table row; returns the controller's
    /// writes and token calls.
    fn report(&mut self, phase: &str, a: &Snapshot, b: &Snapshot, extra: &str) -> (u64, u64) {
        let w = writes(&b.requests) - writes(&a.requests);
        let tokens = acr_token_calls(&b.cloud, &a.cloud);
        let endpoints = delta(&b.cloud, &a.cloud, "ListInstanceEndpoint");
        let (peak, mean) = self.sampler.rates(a.at, b.at);
        println!(
            "\n[{phase}] {:.1} s: {w} writes (peak {peak:.0}/s, mean {mean:.0}/s), ACR token calls {tokens}, ListInstanceEndpoint {endpoints} {extra}",
            b.at.duration_since(a.at).as_secs_f64()
        );
        let mut by_result = Vec::new();
        for (k, v) in &b.responses {
            let d = v - a.responses.get(k).copied().unwrap_or(0);
            if d > 0 && is_controller_write(k) {
                by_result.push(format!("{k}: {d}"));
            }
        }
        if !by_result.is_empty() {
            println!("  writes by result: {}", by_result.join(", "));
        }
        let mut reads = Vec::new();
        for (k, v) in &b.requests {
            let d = v - a.requests.get(k).copied().unwrap_or(0);
            if d > 0 && !is_controller_write(k) {
                reads.push(format!("{k}: {d}"));
            }
        }
        if !reads.is_empty() {
            println!("  other requests: {}", reads.join(", "));
        }
        let conflicts: u64 = b
            .responses
            .iter()
            .filter(|(k, _)| is_controller_write(k) && (k.ends_with(" 409") || k.ends_with(" 429")))
            .map(|(k, v)| v - a.responses.get(k).copied().unwrap_or(0))
            .sum();
        self.table.push(format!(
            "| {phase} | {:.1} | {w} | {conflicts} | {peak:.0} | {mean:.0} | {tokens} | {endpoints} | {extra} |",
            b.at.duration_since(a.at).as_secs_f64()
        ));
        (w, tokens)
    }

    /// Waits `secs`, or longer while the controller is still writing (until 2 s without writes).
    async fn settle(&self, secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let mut last = writes(&self.snapshot().await.requests);
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = writes(&self.snapshot().await.requests);
            if now == last {
                return;
            }
            last = now;
        }
    }
}

fn goal(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn configmap(notify: Option<&str>, custom_domain: bool) -> Value {
    let pe = if custom_domain {
        "- instanceId: \"\"\n  customDomains: \"mirror.example.com\"\n"
    } else {
        "- instanceId: \"\"\n"
    };
    let mut data = json!({
        "watch-namespace": "all", "exclude-namespace": "kube-*", "service-account": "default,builder",
        "expiring-threshold": "60s",
        "acr-registry-info": format!("- instanceId: \"cri-testinstance01\"\n{pe}"),
    });
    if let Some(n) = notify {
        data["notify-email"] = json!(n);
    }
    json!({"metadata": {"name": "acr-configuration"}, "data": data})
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let n = args.namespaces;
    let dir = std::env::temp_dir().join(format!("acr-auth-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = run(&args, n, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(args: &Args, n: u64, dir: &Path) -> Result<(), String> {
    let cloud_config = dir.join("cloud.json");
    std::fs::write(
        &cloud_config,
        json!({
            "access_keys": [{"id": "LTAItestkey", "secret": "test-secret"}],
            "instances": [{"id": "cri-testinstance01", "name": "acme", "region": "cn-hangzhou"}],
            "token_lifetime_secs": args.token_lifetime_secs,
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
    let (kube_proc, kube) = start_fake(
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
    send_all(&http, reqwest::Method::POST, namespaces).await?;
    let namespaces_created = started.elapsed();
    let builders: Vec<(String, Value)> = (1..=n)
        .map(|i| {
            (
                format!("{kube}/api/v1/namespaces/ns-{i:05}/serviceaccounts"),
                json!({"metadata": {"name": "builder"}}),
            )
        })
        .collect();
    send_all(&http, reqwest::Method::POST, builders).await?;
    send_all(&http, reqwest::Method::POST, vec![
        (format!("{kube}/api/v1/namespaces/kube-system/secrets"), json!({"metadata": {"name": "alibaba-addon-secret"},
            "data": {"access-key-id": "TFRBSXRlc3RrZXk=", "access-key-secret": "dGVzdC1zZWNyZXQ="}})),
        (format!("{kube}/api/v1/namespaces/kube-system/configmaps"), configmap(None, false)),
    ]).await?;
    println!(
        "cluster: {n} namespaces created in {:.1} s, with 2 ServiceAccounts each in {:.1} s (fake API server RSS {:.0} MB)",
        namespaces_created.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        peak_rss_mb(kube_proc.0.id()).unwrap_or(f64::NAN)
    );

    let mut bench = Bench {
        sampler: Sampler::start(http.clone(), format!("{kube}/_fake/requests")),
        http: http.clone(),
        kube: kube.clone(),
        cloud: cloud.clone(),
        table: Vec::new(),
    };
    let served = n + 1; // plus `default`
    let patches = 2 * n + 1; // `default` has one ServiceAccount, every ns-* two

    // 1. Cold start.
    let base = bench.snapshot().await;
    let mut a = start_controller(&kubeconfig, &cloud, "replica-a", args)?;
    loop {
        let c = bench.snapshot().await;
        if delta(&c.requests, &base.requests, "create secrets") >= served
            && delta(&c.requests, &base.requests, "patch serviceaccounts") >= patches
        {
            break;
        }
        if base.at.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "no convergence within 10 minutes: {:?}",
                c.requests
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged_at = bench.snapshot().await;
    let converged = converged_at.at.duration_since(base.at).as_secs_f64();
    let rss_cold = peak_rss_mb(a.0.id()).unwrap_or(f64::NAN);
    bench.report(
        "cold start",
        &base,
        &converged_at,
        &format!("converged; RSS {rss_cold:.1} MB"),
    );

    if args.cold_start_only {
        // The wrapper (if any) is the child: signal the controller itself, by name.
        let _ = Command::new("pkill")
            .args(["-TERM", "-x", "aliyun-acr-cred"])
            .status();
        let _ = a.0.wait();
        return Ok(());
    }

    // 2. Idle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_start = bench.snapshot().await;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle_end = bench.snapshot().await;
    let (idle_writes, idle_acr) = bench.report("idle", &idle_start, &idle_end, "");

    // 3. One renewal.
    loop {
        let c = bench.snapshot().await;
        if delta(&c.requests, &idle_end.requests, "patch secrets") >= served {
            break;
        }
        if idle_end.at.elapsed() > Duration::from_secs(args.token_lifetime_secs + 60) {
            return Err("no renewal within the token lifetime".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bench.settle(1).await;
    let renewed = bench.snapshot().await;
    let rss = peak_rss_mb(a.0.id()).unwrap_or(f64::NAN);
    bench.report("renewal", &idle_end, &renewed, &format!("RSS {rss:.1} MB"));

    // 4. SIGKILL and restart: the Lease of the killed process runs out (15 s), the new one
    //    leads and adopts the tokens in the Secrets.
    let before = bench.snapshot().await;
    a.signal("-KILL");
    let a2 = start_controller(&kubeconfig, &cloud, "replica-a2", args)?;
    let took = bench
        .wait_for_leader("replica-a2", Duration::from_secs(120))
        .await?;
    bench.settle(5 + n / 5_000).await;
    let after = bench.snapshot().await;
    let rss_restart = peak_rss_mb(a2.0.id()).unwrap_or(f64::NAN);
    let (restart_writes, restart_tokens) = bench.report(
        "SIGKILL + restart",
        &before,
        &after,
        &format!("leader after {took:.1} s; RSS {rss_restart:.1} MB"),
    );

    // 5. Failover: a standby takes over from a leader stopped with SIGTERM.
    let mut a2 = a2;
    let b = start_controller(&kubeconfig, &cloud, "replica-b", args)?;
    tokio::time::sleep(Duration::from_secs(3 + n / 5_000)).await;
    let before = bench.snapshot().await;
    a2.signal("-TERM");
    let took = bench
        .wait_for_leader("replica-b", Duration::from_secs(60))
        .await?;
    bench.settle(5 + n / 5_000).await;
    let after = bench.snapshot().await;
    let (failover_writes, _) = bench.report(
        "failover",
        &before,
        &after,
        &format!("standby led after {took:.1} s"),
    );
    drop(a2);

    // 6. An unrelated ConfigMap edit.
    let before = bench.snapshot().await;
    send_all(
        &http,
        reqwest::Method::PUT,
        vec![(
            format!("{kube}/api/v1/namespaces/kube-system/configmaps/acr-configuration"),
            configmap(Some("ops@example.com"), false),
        )],
    )
    .await?;
    bench.settle(5).await;
    let after = bench.snapshot().await;
    let (edit_writes, edit_tokens) = bench.report("notify-email edit", &before, &after, "");

    // 7. API errors: every Secret write fails while every Secret needs an update.
    let faults = format!("{kube}/_fake/faults");
    for verb in ["patch", "update", "create"] {
        http.post(&faults)
            .json(&json!({"verb": verb, "resource": "secrets", "count": u32::MAX, "status": 500}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    let before = bench.snapshot().await;
    let lines_before = log_lines(&kubeconfig);
    send_all(
        &http,
        reqwest::Method::PUT,
        vec![(
            format!("{kube}/api/v1/namespaces/kube-system/configmaps/acr-configuration"),
            configmap(Some("ops@example.com"), true),
        )],
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(args.error_secs)).await;
    let during = bench.snapshot().await;
    let attempts = delta(&during.requests, &before.requests, "patch secrets")
        + delta(&during.requests, &before.requests, "update secrets")
        + delta(&during.requests, &before.requests, "create secrets");
    let per_object = attempts as f64 / served as f64;
    // 1 s doubling, each wait shortened by jitter to no less than half: in T seconds at most
    // the first attempt and the retries after 0.5, 1.5, 3.5, 7.5, 15.5... s (0.5 (2^k - 1) <= T).
    let bound = 1 + (2.0 * args.error_secs as f64 + 1.0).log2().floor() as u64;
    bench.report(
        "API errors (500 on Secret writes)",
        &before,
        &during,
        &format!(
            "{per_object:.2} attempts per Secret (backoff bound {bound}); {} log lines (warn)",
            log_lines(&kubeconfig) - lines_before
        ),
    );
    http.delete(&faults)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let cleared = bench.snapshot().await;
    loop {
        let c = bench.snapshot().await;
        if delta(&c.responses, &before.responses, "patch secrets 200") >= served {
            break;
        }
        if cleared.at.elapsed() > Duration::from_secs(400) {
            return Err("no recovery within 400 s of the faults ending".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = bench.snapshot().await;
    bench.report("recovery", &cleared, &recovered, "all Secrets updated");
    let rss_b = peak_rss_mb(b.0.id()).unwrap_or(f64::NAN);

    println!("\n| phase | s | controller writes | 409+429 | peak writes/s | mean writes/s | ACR token calls | ListInstanceEndpoint | notes |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &bench.table {
        println!("{row}");
    }
    println!("\nstandby-turned-leader peak RSS: {rss_b:.1} MB");
    println!(
        "\ngoals: converge <= {} s: {} ({converged:.2} s); RSS <= {} MB: {} ({:.1} MB); idle 0 writes/0 ACR: {}; restart 0 writes/0 token calls: {}; failover 0 writes: {}; edit 0 writes/0 token calls: {}; attempts per object <= {bound}: {}",
        args.goal_converge_secs,
        goal(converged <= args.goal_converge_secs),
        args.goal_rss_mb,
        goal(rss.max(rss_cold) <= args.goal_rss_mb),
        rss.max(rss_cold),
        goal(idle_writes == 0 && idle_acr == 0),
        goal(restart_writes == 0 && restart_tokens == 0),
        goal(failover_writes == 0),
        goal(edit_writes == 0 && edit_tokens == 0),
        goal(per_object <= bound as f64),
    );
    Ok(())
}
