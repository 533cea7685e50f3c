//! End to end: a ConfigMap with only the legacy `acr-registry` key. The controller resolves the
//! Enterprise Edition instance by name, writes the Secret for exactly the listed host, and
//! `skopeo` pulls through a real Distribution registry with it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acr_auth_testkit::distribution::{inspect_image, push_test_image, DistributionRegistry};
use acr_auth_testkit::kube::FakeKube;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::*;

/// The public host of the sample cloud's instance `acme` (`cri-testinstance01`) in the
/// cluster's region, cn-hangzhou.
const ACME_HOST: &str = "acme-registry.cn-hangzhou.cr.aliyuncs.com";

/// A forward proxy for skopeo: every plain-HTTP request goes to `upstream`, whatever host it
/// names, and `CONNECT` (HTTPS) is refused so that skopeo, with TLS verification off, falls back
/// to plain HTTP. So skopeo talks to "acme-registry.cn-hangzhou.cr.aliyuncs.com", and looks up
/// its credential under that host, while the bytes go to the local registry; no DNS involved.
struct Proxy {
    addr: String,
    /// Connections forwarded to the registry.
    forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_proxy(upstream: String) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let forwarded = Arc::new(AtomicUsize::new(0));
    let count = forwarded.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(forward(client, upstream.clone(), count.clone()));
        }
    });
    Proxy {
        addr,
        forwarded,
        task,
    }
}

async fn forward(mut client: TcpStream, upstream: String, forwarded: Arc<AtomicUsize>) {
    // Enough of the request to see its method.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.starts_with(b"CONNECT ") {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    // The registry (Go net/http) accepts the absolute-form request target a proxy receives.
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    forwarded.fetch_add(1, Ordering::SeqCst);
    if server.write_all(&head).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

fn docker_config_json(kube: &FakeKube) -> Vec<u8> {
    let secret = kube.get("secrets", "default", OURS).expect("our Secret");
    base64::engine::general_purpose::STANDARD
        .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_from_a_legacy_acr_registry_host_with_the_secret_the_controller_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let registry = DistributionRegistry::start(dir.path(), &cloud).await;
    let proxy = start_proxy(registry.addr().to_owned()).await;
    let kube = FakeKube::start().await.unwrap();
    put_config(
        &kube,
        json!({"acr-registry": "acme-registry.*.cr.aliyuncs.com"}),
    )
    .await;
    let running = start(&kube, &cloud);
    eventually("the Secret in default", || {
        secret_hosts(&kube, "default").is_some()
    })
    .await;

    // Exactly the listed host, its region the cluster's; the instance found by name.
    assert_eq!(secret_hosts(&kube, "default").unwrap(), [ACME_HOST]);
    assert_eq!(cloud.calls("ListInstance"), 1);
    assert_eq!(cloud.calls("GetAuthorizationToken"), 1);
    assert_eq!(cloud.calls("ListInstanceEndpoint"), 0);
    assert_eq!(cloud.calls("GET /tokens"), 0);
    eventually("the default ServiceAccount entry", || {
        sa_entries(&kube, "default", "default").contains(&OURS.to_owned())
    })
    .await;

    let authfile = dir.path().join("auth.json");
    std::fs::write(&authfile, docker_config_json(&kube)).unwrap();
    let authfile = authfile.display().to_string();
    let proxy_url = format!("http://{}", proxy.addr);
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("HTTPS_PROXY", proxy_url.as_str()),
    ];
    let (image, digest) = push_test_image(dir.path(), ACME_HOST, &authfile, &env).await;
    assert_eq!(image, format!("docker://{ACME_HOST}/team/hello:v1"));
    let inspect = inspect_image(dir.path(), &image, &authfile, &env).await;
    assert!(
        inspect.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let info: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    assert!(
        proxy.forwarded.load(Ordering::SeqCst) > 0,
        "skopeo reached the registry as {ACME_HOST}"
    );

    // The credential is what opened the registry: without it the same pull is refused.
    let empty = dir.path().join("empty-auth.json");
    std::fs::write(&empty, r#"{"auths": {}}"#).unwrap();
    let refused = inspect_image(dir.path(), &image, &empty.display().to_string(), &env).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") || stderr.to_lowercase().contains("unauthorized"),
        "{stderr}"
    );

    // Idle: the token and the resolved id are reused, nothing is called again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (
            cloud.calls("ListInstance"),
            cloud.calls("GetAuthorizationToken")
        ),
        (1, 1)
    );
    running.stop().await;
    proxy.task.abort();
}
