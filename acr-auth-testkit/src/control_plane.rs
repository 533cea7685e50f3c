//! A real Kubernetes control plane for end-to-end tests: etcd and kube-apiserver, built from
//! their published Go modules by `scripts/control-plane` and started on 127.0.0.1 with
//! OS-chosen ports in a temporary directory (the practice of controller-runtime's envtest,
//! written here in Rust).
//!
//! - Serving certificate from a CA made here, so clients verify TLS (`ca_pem`).
//! - Authentication by static bearer tokens: an admin in `system:masters`, and any identity a
//!   test asks for ([`ControlPlane::token_for`] registers users up front, such as the
//!   controller's ServiceAccount `system:serviceaccount:kube-system:aliyun-acr-credential-helper`).
//! - Authorization `RBAC`: a user without a binding gets the real 403.
//! - No controller-manager or scheduler: namespaces are not finalized (a deleted namespace stays
//!   `Terminating`) and no `default` ServiceAccount is created in new namespaces; tests create
//!   what they need.
//!
//! Both processes are killed, and the directory removed, when the [`ControlPlane`] is dropped;
//! their logs are printed if the test panicked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A user the API server knows by a bearer token.
#[derive(Debug, Clone)]
pub struct User {
    /// The user name (for a ServiceAccount: `system:serviceaccount:NS:NAME`).
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
}

impl User {
    /// The user of ServiceAccount `namespace/name`, with the groups the API server gives it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// A running etcd + kube-apiserver.
pub struct ControlPlane {
    etcd: Child,
    apiserver: Child,
    dir: tempfile::TempDir,
    url: String,
    ca_pem: String,
    tokens: Vec<(String, User)>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// Why the control plane could not start.
#[derive(Debug)]
pub struct ControlPlaneError(pub String);

impl std::fmt::Display for ControlPlaneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ControlPlaneError {}

fn fail(what: impl std::fmt::Display) -> ControlPlaneError {
    ControlPlaneError(what.to_string())
}

/// The token of the admin user (`system:masters`).
pub const ADMIN_TOKEN: &str = "acr-auth-test-admin";

/// The folder holding `kube-apiserver` and `etcd`: `ACR_AUTH_CONTROL_PLANE_DIR`, else what
/// `scripts/control-plane` prints (it builds them once per machine).
pub fn binaries() -> Result<PathBuf, ControlPlaneError> {
    if let Some(dir) = std::env::var_os("ACR_AUTH_CONTROL_PLANE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    static DIR: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/control-plane");
        let out = std::process::Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}); a real kube-apiserver and etcd are needed for these tests",
                script.display(),
                out.status
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
    .map_err(ControlPlaneError)
}

fn free_port() -> Result<u16, ControlPlaneError> {
    // Bind-and-release: etcd and kube-apiserver cannot report an OS-chosen port back.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| fail(format!("no free port: {e}")))
}

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    sa_private_pem: String,
    sa_public_pem: String,
}

fn pki() -> Result<Pki, ControlPlaneError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let err = |e: rcgen::Error| fail(format!("certificates: {e}"));
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "acr-auth test control plane CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default.svc".to_owned(),
    ])
    .map_err(err)?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let cert = leaf.signed_by(&key, &issuer).map_err(err)?;
    // ServiceAccount tokens are signed with an ECDSA key (ES256).
    let sa = KeyPair::generate().map_err(err)?;
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        sa_private_pem: sa.serialize_pem(),
        sa_public_pem: sa.public_key_pem(),
    })
}

fn write(path: &Path, content: &str) -> Result<(), ControlPlaneError> {
    std::fs::write(path, content).map_err(|e| fail(format!("write {}: {e}", path.display())))
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, with `users` known by a token each (see
    /// [`ControlPlane::token_for`]); resolves once `/readyz` answers 200.
    pub async fn start(users: &[User]) -> Result<Self, ControlPlaneError> {
        Self::start_with(users, &[]).await
    }

    /// [`ControlPlane::start`] with extra kube-apiserver flags (for instance
    /// `--watch-cache=false`, `--etcd-compaction-interval=2s`, `--min-request-timeout=3`: watches
    /// served by etcd, compacted and closed often, so a client must handle 410 Gone for real).
    pub async fn start_with(
        users: &[User],
        apiserver_args: &[&str],
    ) -> Result<Self, ControlPlaneError> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("acr-auth-control-plane-")
            .tempdir()
            .map_err(|e| fail(format!("temporary directory: {e}")))?;
        let d = dir.path();
        let pki = pki()?;
        write(&d.join("ca.crt"), &pki.ca_pem)?;
        write(&d.join("apiserver.crt"), &pki.cert_pem)?;
        write(&d.join("apiserver.key"), &pki.key_pem)?;
        write(&d.join("sa.key"), &pki.sa_private_pem)?;
        write(&d.join("sa.pub"), &pki.sa_public_pem)?;
        let mut tokens = vec![(
            ADMIN_TOKEN.to_owned(),
            User {
                name: "acr-auth-test-admin".into(),
                groups: vec!["system:masters".into()],
            },
        )];
        for (i, u) in users.iter().enumerate() {
            tokens.push((format!("acr-auth-test-token-{i}"), u.clone()));
        }
        let csv: String = tokens
            .iter()
            .map(|(t, u)| format!("{t},{},{},\"{}\"\n", u.name, u.name, u.groups.join(",")))
            .collect();
        write(&d.join("tokens.csv"), &csv)?;

        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let etcd = Command::new(bin.join("etcd"))
            .arg(format!("--data-dir={}", d.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{etcd_peer}"
            ))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn")
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .stderr(log_file(&d.join("etcd.log"))?)
            .spawn()
            .map_err(|e| fail(format!("start etcd: {e}")))?;

        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let apiserver = Command::new(bin.join("kube-apiserver"))
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!(
                "--tls-cert-file={}",
                d.join("apiserver.crt").display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                d.join("apiserver.key").display()
            ))
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-issuer={url}"))
            .arg(format!(
                "--service-account-key-file={}",
                d.join("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            // There is no controller-manager to create ServiceAccount tokens.
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--v=1")
            .args(apiserver_args)
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .stderr(log_file(&d.join("kube-apiserver.log"))?)
            .spawn()
            .map_err(|e| fail(format!("start kube-apiserver: {e}")))?;

        let plane = Self {
            etcd,
            apiserver,
            dir,
            url,
            ca_pem: pki.ca_pem,
            tokens,
        };
        plane.wait_until_ready().await?;
        Ok(plane)
    }

    async fn wait_until_ready(&self) -> Result<(), ControlPlaneError> {
        let http = self.http();
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < Duration::from_secs(60) {
            match http
                .get(format!("{}/readyz", self.url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(fail(format!(
            "kube-apiserver was not ready within 60 s ({last}); its log:\n{}",
            self.log("kube-apiserver")
        )))
    }

    /// An HTTP client that trusts the API server's CA.
    pub fn http(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("our CA");
        crate::tls::http_client_builder()
            .tls_certs_only([ca])
            .build()
            .expect("an HTTP client")
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the serving certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate in DER (for `kube::Config::root_cert`).
    pub fn ca_der(&self) -> Vec<u8> {
        use base64::Engine as _;
        let body: String = self
            .ca_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("our CA is valid PEM")
    }

    /// The bearer token of `user_name` (one of the users given to [`ControlPlane::start`], or
    /// the admin's name); panics for an unknown user.
    pub fn token_for(&self, user_name: &str) -> &str {
        self.tokens
            .iter()
            .find(|(_, u)| u.name == user_name)
            .map(|(t, _)| t.as_str())
            .unwrap_or_else(|| panic!("no token for {user_name}: pass it to ControlPlane::start"))
    }

    /// A kubeconfig (YAML) for `token`, written into the control plane's directory; returns
    /// its path (for `kubectl --kubeconfig`).
    pub fn kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: test\n    user: {name}\ncurrent-context: {name}\n",
            url = self.url
        );
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, text).expect("write a kubeconfig");
        path
    }

    /// The log of `etcd` or `kube-apiserver` so far.
    pub fn log(&self, process: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{process}.log"))).unwrap_or_default()
    }
}

fn log_file(path: &Path) -> Result<std::fs::File, ControlPlaneError> {
    std::fs::File::create(path).map_err(|e| fail(format!("create {}: {e}", path.display())))
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.apiserver.start_kill();
        let _ = self.etcd.start_kill();
        if std::thread::panicking() {
            let log = self.log("kube-apiserver");
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- kube-apiserver log (last 40 lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}
