//! A real CNCF Distribution registry (Debian's `docker-registry`) whose token realm is a
//! [`FakeCloud`], a tiny OCI image to push, and `skopeo` to push and pull it: the real image-pull
//! path, for tests.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use acr_auth_core::sign::sha256_hex;
use tokio::process::{Child, Command};

use crate::cloud::{REGISTRY_ISSUER, REGISTRY_SERVICE};
use crate::FakeCloud;

/// The path of `tool` on `PATH`; panics naming the package to install.
pub fn require_tool(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{tool}` is needed: run scripts/test, which installs it (apt-get install skopeo docker-registry)")
    })
}

/// A running `docker-registry` on 127.0.0.1, killed when dropped; its log is printed if the
/// test panicked.
#[derive(Debug)]
pub struct DistributionRegistry {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl DistributionRegistry {
    /// Starts a registry storing into `dir`, with token authentication backed by `cloud`.
    pub async fn start(dir: &Path, cloud: &FakeCloud) -> Self {
        let cert = dir.join("token-signer.crt");
        std::fs::write(&cert, cloud.registry_cert_pem()).expect("write the token certificate");
        // Bind-and-release: the registry cannot report an OS-chosen port back to us.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {addr}\n\
             auth:\n  token:\n    realm: {realm}\n    service: {REGISTRY_SERVICE}\n    issuer: {REGISTRY_ISSUER}\n    rootcertbundle: {cert}\n",
            data = dir.join("registry-data").display(),
            realm = cloud.registry_token_realm(),
            cert = cert.display(),
        );
        let config_path = dir.join("registry.yml");
        std::fs::write(&config_path, config).expect("write the registry config");
        let log = dir.join("registry.log");
        let child = Command::new(require_tool("docker-registry"))
            .arg("serve")
            .arg(&config_path)
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the registry log"))
            .spawn()
            .expect("start docker-registry");
        let registry = Self { child, addr, log };
        let http = crate::tls::http_client();
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

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for DistributionRegistry {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- docker-registry log ---\n{log}");
        }
    }
}

/// Writes a one-layer OCI image layout tagged `v1` under `dir/image`; returns its path and the
/// manifest digest. The layer is gzip-compressed, as registries store layers, so skopeo pushes
/// the manifest byte for byte and the registry reports this digest.
pub async fn build_oci_image(dir: &Path) -> (PathBuf, String) {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).expect("create rootfs");
    std::fs::write(root.join("hello.txt"), "hello from acr-auth\n").expect("write a file");
    let layer_path = dir.join("layer.tar");
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&layer_path)
        .arg("-C")
        .arg(&root)
        .arg("hello.txt")
        .status()
        .await
        .expect("run tar");
    assert!(tar.success());
    let layout = dir.join("image");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create blobs");
    let put = |bytes: &[u8]| {
        let digest = sha256_hex(bytes);
        std::fs::write(blobs.join(&digest), bytes).expect("write a blob");
        (format!("sha256:{digest}"), bytes.len())
    };
    let tar_bytes = std::fs::read(&layer_path).expect("read the layer");
    let gz = Command::new("gzip")
        .arg("-n")
        .arg("-c")
        .arg(&layer_path)
        .output()
        .await
        .expect("run gzip");
    assert!(gz.status.success());
    let diff_id = format!("sha256:{}", sha256_hex(&tar_bytes));
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
    std::fs::write(layout.join("index.json"), index.to_string()).expect("write index.json");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    (layout, manifest_digest)
}

/// Runs `skopeo` with `HOME` and `XDG_RUNTIME_DIR` inside `dir` and extra environment `env`.
pub async fn skopeo(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(require_tool("skopeo"));
    cmd.args(args).env("HOME", dir).env("XDG_RUNTIME_DIR", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run skopeo")
}

/// Builds the test image ([`build_oci_image`]) and pushes it to `registry_addr` as
/// `team/hello:v1` with `authfile`; panics with skopeo's error when the push is refused.
/// Returns the image reference (`docker://...`) and the manifest digest.
pub async fn push_test_image(
    dir: &Path,
    registry_addr: &str,
    authfile: &str,
    env: &[(&str, &str)],
) -> (String, String) {
    let (layout, digest) = build_oci_image(dir).await;
    let image = format!("docker://{registry_addr}/team/hello:v1");
    let source = format!("oci:{}:v1", layout.display());
    let push = skopeo(
        dir,
        &[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--dest-authfile",
            authfile,
            &source,
            &image,
        ],
        env,
    )
    .await;
    assert!(
        push.status.success(),
        "push: {}",
        String::from_utf8_lossy(&push.stderr)
    );
    (image, digest)
}

/// `skopeo inspect` of `image` over plain HTTP with `authfile`.
pub async fn inspect_image(
    dir: &Path,
    image: &str,
    authfile: &str,
    env: &[(&str, &str)],
) -> Output {
    skopeo(
        dir,
        &[
            "inspect",
            "--tls-verify=false",
            "--authfile",
            authfile,
            image,
        ],
        env,
    )
    .await
}
