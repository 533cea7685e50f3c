//! The `aliyun-acr-credential-helper` binary, run as a user would, against the fake cloud.

use std::process::Output;

use acr_auth_core::docker_config::DockerConfig;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig, Fault};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aliyun-acr-credential-helper");

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn env_for(cloud: &FakeCloud) -> Vec<(&'static str, String)> {
    vec![
        ("ACR_AUTH_ACR_ENDPOINT", cloud.url()),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAItestkey".into()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test-secret".into()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn token_prints_an_enterprise_credential_with_its_hosts() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let env = env_for(&cloud);
    let out = run(
        &[
            "token",
            "--region",
            "cn-hangzhou",
            "--instance-id",
            "cri-testinstance01",
        ],
        &as_refs(&env),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["username"], "temp_user_cr");
    assert_eq!(v["password"].as_str().unwrap().len(), 64);
    assert_eq!(v["hosts"][0], "acme-registry.cn-hangzhou.cr.aliyuncs.com");
    assert!(acr_auth_core::time::parse_iso8601(v["expiresAt"].as_str().unwrap()).is_some());
    assert_eq!(cloud.calls("GetAuthorizationToken"), 1);
    assert_eq!(cloud.calls("ListInstanceEndpoint"), 1);
}

#[tokio::test]
async fn token_renders_dockerconfigjson_for_personal_edition() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let env = env_for(&cloud);
    let out = run(
        &[
            "token",
            "--region",
            "cn-beijing",
            "--format",
            "dockerconfigjson",
        ],
        &as_refs(&env),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let config = DockerConfig::parse(stdout(&out).trim()).unwrap();
    let hosts: Vec<&String> = config.auths.keys().collect();
    assert_eq!(
        hosts,
        [
            "registry-vpc.cn-beijing.aliyuncs.com",
            "registry.cn-beijing.aliyuncs.com"
        ]
    );
    assert_eq!(config.auths[hosts[0]].username, "cr_temp_user");
}

#[tokio::test]
async fn token_without_credentials_says_what_to_set() {
    let out = run(&["token", "--region", "cn-hangzhou"], &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{}",
        stderr(&out)
    );
    let half = run(
        &["token", "--region", "cn-hangzhou"],
        &[("ALIBABA_CLOUD_ACCESS_KEY_ID", "x")],
    )
    .await;
    assert!(
        stderr(&half).contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET is not"),
        "{}",
        stderr(&half)
    );
}

#[tokio::test]
async fn token_reports_api_errors_on_stderr_without_the_secret() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let mut env = env_for(&cloud);
    env[2].1 = "wrong-secret-value".into();
    let out = run(&["token", "--region", "cn-hangzhou"], &as_refs(&env)).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("RequestId"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-value"));
    assert!(stdout(&out).is_empty());
}

#[tokio::test]
async fn token_retries_transient_failures() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    cloud.fail_next(1, Fault::ServiceUnavailable);
    let env = env_for(&cloud);
    let out = run(&["token", "--region", "cn-hangzhou"], &as_refs(&env)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cloud.calls("GET /tokens"), 2);
}

#[tokio::test]
async fn demo_runs_on_embedded_defaults_and_redacts_passwords() {
    let out = run(&["demo"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("acme-registry.cn-hangzhou.cr.aliyuncs.com"),
        "{text}"
    );
    assert!(text.contains("registry.cn-hangzhou.aliyuncs.com"));
    assert!(
        text.contains("summary: 5 registry hosts, 3 ACR API calls"),
        "{text}"
    );
    // Every password and auth field is redacted.
    for line in text
        .lines()
        .filter(|l| l.contains("\"password\"") || l.contains("\"auth\""))
    {
        assert!(line.contains("<redacted>"), "{line}");
    }
}
