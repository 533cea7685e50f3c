//! TLS as users configure it: the binaries trust a private CA named by `SSL_CERT_FILE` or
//! `SSL_CERT_DIR` (on top of the system store), and without it refuse the endpoint with an error
//! that names the certificate problem. The fake cloud sits behind an HTTPS front whose
//! certificate a CA made for the test signed; each binary runs as a subprocess with its own
//! environment.

use std::process::{Output, Stdio};

use acr_auth_testkit::{FakeCloud, FakeCloudConfig, TlsFront};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

const HELPER: &str = env!("CARGO_BIN_EXE_aliyun-acr-credential-helper");
const DOCKER_HELPER: &str = env!("CARGO_BIN_EXE_docker-credential-acr");

struct Rig {
    cloud: FakeCloud,
    front: TlsFront,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
        let front = TlsFront::start(cloud.addr()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        std::fs::write(dir.path().join("ca.pem"), front.ca_pem()).unwrap();
        std::fs::write(dir.path().join("certs/private-ca.pem"), front.ca_pem()).unwrap();
        Self { cloud, front, dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Keys from the variables, the HTTPS front as the ACR endpoint, `extra` on top; nothing
    /// inherited but PATH.
    fn env(&self, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), self.path("")),
            ("XDG_CACHE_HOME".into(), self.path("cache")),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), "LTAItestkey".into()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(),
                "test-secret".into(),
            ),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED".into(), "true".into()),
            ("ACR_AUTH_ACR_ENDPOINT".into(), self.front.url()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    }
}

async fn run(bin: &str, args: &[&str], stdin: &str, env: &[(String, String)]) -> Output {
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const TOKEN_ARGS: &[&str] = &[
    "token",
    "--region",
    "cn-hangzhou",
    "--instance-id",
    "cri-testinstance01",
];

#[tokio::test]
async fn ssl_cert_file_makes_a_private_ca_trusted() {
    let rig = Rig::start().await;
    let env = rig.env(&[("SSL_CERT_FILE", rig.path("ca.pem"))]);
    let out = run(HELPER, TOKEN_ARGS, "", &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["username"], "temp_user_cr");
    assert_eq!(rig.cloud.calls("GetAuthorizationToken"), 1);

    // docker-credential-acr goes through the same client.
    let out = run(
        DOCKER_HELPER,
        &["get"],
        "https://acme-registry.cn-hangzhou.cr.aliyuncs.com",
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Username"], "temp_user_cr");
}

#[tokio::test]
async fn ssl_cert_dir_makes_a_private_ca_trusted() {
    let rig = Rig::start().await;
    let env = rig.env(&[("SSL_CERT_DIR", rig.path("certs"))]);
    let out = run(HELPER, TOKEN_ARGS, "", &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rig.cloud.calls("GetAuthorizationToken"), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_with_a_clear_error() {
    let rig = Rig::start().await;
    // The system store only: the private CA is not in it.
    let out = run(HELPER, TOKEN_ARGS, "", &rig.env(&[])).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    assert!(
        err.contains("SSL_CERT_FILE"),
        "the hint names the remedy: {err}"
    );
    assert!(!err.contains("test-secret"), "{err}");
    assert_eq!(rig.cloud.calls("GetAuthorizationToken"), 0);

    // Another CA in SSL_CERT_FILE does not make this one trusted either (it has the same name,
    // so rustls reports the signature that does not verify).
    let other = TlsFront::start(rig.cloud.addr()).await.unwrap();
    std::fs::write(rig.path("other.pem"), other.ca_pem()).unwrap();
    let out = run(
        HELPER,
        TOKEN_ARGS,
        "",
        &rig.env(&[("SSL_CERT_FILE", rig.path("other.pem"))]),
    )
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid peer certificate: BadSignature"),
        "{err}"
    );
    assert_eq!(rig.cloud.calls("GetAuthorizationToken"), 0);
}
