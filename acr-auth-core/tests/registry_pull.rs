//! The real image-pull path: a CNCF Distribution registry (Debian `docker-registry`) with token
//! authentication whose realm is the fake cloud, and `skopeo` authenticating with the
//! `.dockerconfigjson` that acr-auth-core renders from a token fetched from the fake ACR.
//!
//! The registry only admits bearer tokens signed by the fake's token server, which only issues
//! them for registry logins handed out through `GetAuthorizationToken` and not yet expired.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::acr::{AcrClient, Endpoint};
use acr_auth_core::credentials::Credentials;
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::sign::sha256_hex;
use acr_auth_core::time::{Clock, ManualClock, SystemClock};
use acr_auth_testkit::cloud::{REGISTRY_ISSUER, REGISTRY_SERVICE};
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use tokio::process::{Child, Command};

fn require(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{tool}` is needed for the registry pull test: run scripts/test, which installs it (apt-get install skopeo docker-registry)")
    })
}

/// A running `docker-registry`, killed when dropped; its log is shown if the test failed.
struct Registry {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- docker-registry log ---\n{log}");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_registry(dir: &Path, cloud: &FakeCloud) -> Registry {
    let cert = dir.join("token-signer.crt");
    std::fs::write(&cert, cloud.registry_cert_pem()).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n\
         http:\n  addr: {addr}\n\
         auth:\n  token:\n    realm: {realm}\n    service: {REGISTRY_SERVICE}\n    issuer: {REGISTRY_ISSUER}\n    rootcertbundle: {cert}\n",
        data = dir.join("data").display(),
        realm = cloud.registry_token_realm(),
        cert = cert.display(),
    );
    let config_path = dir.join("registry.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.join("registry.log");
    let child = Command::new(require("docker-registry"))
        .arg("serve")
        .arg(&config_path)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start docker-registry");
    let registry = Registry { child, addr, log };
    // Ready when /v2/ answers (401: it wants a token).
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("http://{}/v2/", registry.addr))
            .send()
            .await
        {
            assert_eq!(r.status(), 401, "the registry must require token auth");
            return registry;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("docker-registry did not start on {}", registry.addr);
}

/// A one-layer OCI image layout with tag `v1`; returns the manifest digest.
async fn build_image(dir: &Path) -> String {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hello from acr-auth\n").unwrap();
    let layer_path = dir.join("layer.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&layer_path)
        .arg("-C")
        .arg(&root)
        .arg("hello.txt")
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let layout = dir.join("image");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256_hex(bytes);
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    // A gzip layer, as registries store them, so skopeo pushes the manifest unchanged and the
    // digest the registry reports is the one computed here.
    let tar = std::fs::read(&layer_path).unwrap();
    let gz = Command::new("gzip")
        .arg("-n")
        .arg("-c")
        .arg(&layer_path)
        .output()
        .await
        .unwrap();
    assert!(gz.status.success());
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let (layer_digest, layer_size) = put(&gz.stdout);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                        "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    manifest_digest
}

async fn skopeo(dir: &Path, args: &[&str]) -> Output {
    Command::new(require("skopeo"))
        .args(args)
        // Keep skopeo's own state (auth caches, blob info) inside the test directory.
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", dir)
        .output()
        .await
        .expect("run skopeo")
}

fn write_authfile(dir: &Path, name: &str, config: &DockerConfig) -> String {
    let path = dir.join(name);
    std::fs::write(&path, config.to_json()).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_with_the_rendered_dockerconfigjson_until_the_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let cloud = FakeCloud::start_with_clock(FakeCloudConfig::sample(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let registry = start_registry(dir.path(), &cloud).await;

    let client = AcrClient::builder("cn-hangzhou")
        .endpoint(Endpoint::Url(cloud.url()))
        .credentials(Credentials::new("LTAItestkey", "test-secret"))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let token = client
        .get_authorization_token("cri-testinstance01")
        .await
        .unwrap();
    let good = DockerConfig::from_token([registry.addr.clone()], &token);
    let authfile = write_authfile(dir.path(), "auth.json", &good);

    let digest = build_image(dir.path()).await;
    let image = format!("docker://{}/team/hello:v1", registry.addr);
    let source = format!("oci:{}:v1", dir.path().join("image").display());
    let push = skopeo(
        dir.path(),
        &[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--dest-authfile",
            &authfile,
            &source,
            &image,
        ],
    )
    .await;
    assert!(
        push.status.success(),
        "push: {}",
        String::from_utf8_lossy(&push.stderr)
    );

    let inspect = |authfile: String| {
        let image = image.clone();
        let dir = dir.path().to_path_buf();
        async move {
            skopeo(
                &dir,
                &[
                    "inspect",
                    "--tls-verify=false",
                    "--authfile",
                    &authfile,
                    &image,
                ],
            )
            .await
        }
    };
    let ok = inspect(authfile.clone()).await;
    assert!(
        ok.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Name"], format!("{}/team/hello", registry.addr));
    let issued = cloud.calls("RegistryToken");
    assert!(issued >= 2, "push and inspect both fetched bearer tokens");

    // A tampered password is refused by the token server, so the registry never admits it.
    let mut tampered = good.clone();
    let mut p = token.password.expose().to_owned();
    p.replace_range(0..1, if p.starts_with('x') { "y" } else { "x" });
    tampered.insert(registry.addr.clone(), token.username.clone(), p);
    let refused = inspect(write_authfile(dir.path(), "tampered.json", &tampered)).await;
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("unauthorized") || err.contains("401"), "{err}");

    // No credentials at all: refused too.
    let empty = inspect(write_authfile(
        dir.path(),
        "empty.json",
        &DockerConfig::default(),
    ))
    .await;
    assert!(!empty.status.success());

    // After the ACR token expires, the same authfile stops working.
    clock.advance(token.remaining(clock.now()) + Duration::from_secs(1));
    let expired = inspect(authfile).await;
    assert!(
        !expired.status.success(),
        "an expired ACR token must not pull"
    );
    assert!(cloud.calls("RegistryToken") > issued);
}
