//! The `aliyun-acr-credential-helper` binary, run as a user would, against the fake cloud.

use acr_auth_core::docker_config::DockerConfig;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig, Fault};
use serde_json::Value;

mod common;

use common::*;

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

/// Keeps the default chain away from the real ECS metadata address: tests talk to loopback only.
const NO_ECS: (&str, &str) = ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");

#[tokio::test]
async fn token_without_credentials_lists_every_source_tried() {
    let out = run(&["token", "--region", "cn-hangzhou"], &[NO_ECS]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no credentials found"), "{err}");
    assert!(err.contains("1. environment: skipped, ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET not set"), "{err}");
    assert!(err.contains("6. credentials URI: skipped"), "{err}");
    let half = run(
        &["token", "--region", "cn-hangzhou"],
        &[NO_ECS, ("ALIBABA_CLOUD_ACCESS_KEY_ID", "x")],
    )
    .await;
    let err = stderr(&half);
    assert!(
        err.contains("1. environment: FAILED")
            && err.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET is not"),
        "{err}"
    );
}

#[tokio::test]
async fn token_with_an_aliyun_cli_profile() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aliyun")).unwrap();
    std::fs::write(
        home.path().join(".aliyun/config.json"),
        r#"{"current": "other", "profiles": [
            {"name": "other", "mode": "AK", "access_key_id": "LTAIwrong", "access_key_secret": "x"},
            {"name": "ci", "mode": "AK", "access_key_id": "LTAItestkey", "access_key_secret": "test-secret"}]}"#,
    )
    .unwrap();
    let home_dir = home.path().display().to_string();
    let url = cloud.url();
    let env = [
        NO_ECS,
        ("HOME", home_dir.as_str()),
        ("ACR_AUTH_ACR_ENDPOINT", url.as_str()),
    ];
    let out = run(
        &["token", "--region", "cn-hangzhou", "--profile", "ci"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let current = run(&["token", "--region", "cn-hangzhou"], &env).await;
    let err = stderr(&current);
    assert!(
        err.contains("InvalidAccessKeyId.NotFound"),
        "the current profile is used by default: {err}"
    );
}

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn check_config_summarises_a_valid_configmap() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_file(
        &dir,
        "cm.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: acr-configuration
  namespace: kube-system
data:
  service-account: "default,builder"
  watch-namespace: "all"
  exclude-namespace: "kube-*"
  expiring-threshold: "30m"
  acr-registry-info: |
    - instanceId: "cri-abc"
      regionId: "cn-beijing"
      assumeRoleARN: "acs:ram::123:role/puller"
    - instanceId: ""
      customDomains: "mirror.example.com"
  colour: blue
"#,
    );
    let out = run(&["check-config", &manifest], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for part in [
        "cm.yaml: valid",
        "namespaces:         all namespaces, including new ones (excluding kube-*)",
        "service accounts:   default, builder",
        "renew:              30m0s before expiry",
        "1. Enterprise Edition cri-abc in cn-beijing",
        "identity: the base identity (tokenMode) -> AssumeRole acs:ram::123:role/puller (3600s)",
        "2. Personal Edition in the cluster's region",
        "custom:   mirror.example.com",
        "unknown key \"colour\" ignored",
    ] {
        assert!(text.contains(part), "missing {part:?} in\n{text}");
    }
    // A plain data mapping works too.
    let plain = write_file(&dir, "data.yaml", "watch-namespace: dev\n");
    let out = run(&["check-config", &plain], &[]).await;
    assert!(
        out.status.success() && stdout(&out).contains("namespaces:         dev"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn check_config_lists_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_file(
        &dir,
        "bad.yaml",
        r#"kind: ConfigMap
data:
  expiring-threshold: "15"
  acr-registry-info: |
    - instanceId: 12345
      domains: "a.com","b.com"
  webhook-configuration: |
    timeout-seconds: 60
"#,
    );
    let out = run(&["check-config", &manifest], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for part in [
        "invalid configuration (3 errors)",
        "expiring-threshold: \"15\": missing unit",
        "acr-registry-info (line 2, column",
        "domains: \"a.com,b.com\"",
        "webhook-configuration.timeout-seconds",
    ] {
        assert!(err.contains(part), "missing {part:?} in\n{err}");
    }
    let wrong_kind = write_file(&dir, "secret.yaml", "kind: Secret\ndata: {}\n");
    let err = stderr(&run(&["check-config", &wrong_kind], &[]).await);
    assert!(
        err.contains("kind: expected ConfigMap, found \"Secret\""),
        "{err}"
    );
    let number = write_file(
        &dir,
        "num.yaml",
        "kind: ConfigMap\ndata:\n  expiring-threshold: 15\n",
    );
    let err = stderr(&run(&["check-config", &number], &[]).await);
    assert!(
        err.contains("ConfigMap data values must be strings, found the number 15"),
        "{err}"
    );
    let missing = run(&["check-config", "/nonexistent/cm.yaml"], &[]).await;
    assert!(stderr(&missing).contains("cannot read /nonexistent/cm.yaml"));
}

/// `text` indented by four spaces, as a block scalar under a `data` key needs.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Values the parser accepts but `run` refuses when it builds the registry sources fail
/// check-config too, the same way as parse errors.
#[tokio::test]
async fn check_config_refuses_what_run_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "- instanceId: cri-abc\n  assumeRoleARN: acs:ram::1:role/puller\n  roleSessionName: \"a b\"\n",
            "acr-registry-info[0]: STS AssumeRole: role session name \"a b\" must be 2-64 characters of letters, digits and . @ - _",
        ),
        (
            "- instanceId: \"\"\n- instanceId: cri-abc\n  assumeRoleARN: acs:ram::1:role/puller\n  stsEndpoint: \"ftp://x y\"\n",
            "acr-registry-info[1]: STS AssumeRole: STS endpoint \"ftp://x y\" is not a URL",
        ),
    ];
    for (i, (items, expected)) in cases.iter().enumerate() {
        let manifest = write_file(
            &dir,
            &format!("bad{i}.yaml"),
            &format!(
                "kind: ConfigMap\ndata:\n  acr-registry-info: |\n{}",
                indent(items)
            ),
        );
        let out = run(&["check-config", &manifest], &[]).await;
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("invalid configuration"), "{err}");
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
        assert!(!stdout(&out).contains("valid"), "{}", stdout(&out));
    }
}

#[tokio::test]
async fn check_config_shows_legacy_hosts_as_the_registries_they_become() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_file(
        &dir,
        "legacy.yaml",
        "kind: ConfigMap\ndata:\n  acr-registry: \"acme-registry.*.cr.aliyuncs.com, registry.cn-beijing.aliyuncs.com, acme-registry-vpc.*.cr.aliyuncs.com\"\n",
    );
    let out = run(&["check-config", &manifest], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let expected = "  registries:
    1. Enterprise Edition instance named acme in the cluster's region (its id from ListInstance)
       hosts:    acme-registry.*.cr.aliyuncs.com, acme-registry-vpc.*.cr.aliyuncs.com
       identity: the base identity (tokenMode)
    2. Personal Edition in cn-beijing
       hosts:    registry.cn-beijing.aliyuncs.com
       identity: the base identity (tokenMode)
    (from the legacy acr-registry key; * in a host is the cluster's region)
";
    assert!(text.contains(expected), "expected\n{expected}\nin\n{text}");

    let bad = write_file(
        &dir,
        "bad-legacy.yaml",
        "acr-registry: \"registry.*.aliyuncs.com,acme.*.cr.aliyuncs.com\"\n",
    );
    let out = run(&["check-config", &bad], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("acr-registry[1]: \"acme.*.cr.aliyuncs.com\" is not an ACR registry host"),
        "{err}"
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
async fn demo_runs_the_controller_on_embedded_defaults_and_redacts_passwords() {
    let out = run(&["demo"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for part in [
        "base identity: tokenMode=auto: Secret kube-system/alibaba-addon-secret is present",
        "team-b: Secret acr-credential-secret-aggregation (5 hosts); ServiceAccount default imagePullSecrets: [\"acr-credential-secret-aggregation\"]",
        "acme-registry.cn-hangzhou.cr.aliyuncs.com: Enterprise / Public / cn-hangzhou",
        "renewed after",
        "summary: 3 namespaces served, 5 registry hosts, 4 ACR token calls",
        "Secrets: 3 created, 3 updated in place",
    ] {
        assert!(text.contains(part), "missing {part:?} in\n{text}");
    }
    // Every password and auth field is redacted.
    for line in text
        .lines()
        .filter(|l| l.contains("\"password\"") || l.contains("\"auth\""))
    {
        assert!(line.contains("<redacted>"), "{line}");
    }
}
