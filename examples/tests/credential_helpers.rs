//! `docker-credential-acr` and `acr-credential-provider`, run as docker/skopeo and the kubelet
//! run them, against the fake cloud (and, for skopeo, a real Distribution registry).

use std::path::Path;
use std::process::{Output, Stdio};

use acr_auth_core::config::parse_go_duration;
use acr_auth_testkit::distribution::{inspect_image, push_test_image, DistributionRegistry};
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

const DOCKER_HELPER: &str = env!("CARGO_BIN_EXE_docker-credential-acr");
const KUBELET_PLUGIN: &str = env!("CARGO_BIN_EXE_acr-credential-provider");

/// The environment a helper gets: keys from the variables, the fake as ACR, a private cache
/// and config, and never the real ECS metadata address.
fn helper_env(cloud: &FakeCloud, dir: &Path) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), "LTAItestkey".into()),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(),
            "test-secret".into(),
        ),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED".into(), "true".into()),
        ("ACR_AUTH_ACR_ENDPOINT".into(), cloud.url()),
        (
            "XDG_CACHE_HOME".into(),
            dir.join("cache").display().to_string(),
        ),
        (
            "ACR_AUTH_HELPER_CONFIG".into(),
            dir.join("helper.json").display().to_string(),
        ),
        ("HOME".into(), dir.display().to_string()),
    ]
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
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .await
        .unwrap();
    child.wait_with_output().await.unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[tokio::test]
async fn docker_helper_get_finds_the_instance_by_name_and_caches_the_token() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = helper_env(&cloud, dir.path());
    let server = "https://acme-registry.cn-hangzhou.cr.aliyuncs.com";
    let first = run(DOCKER_HELPER, &["get"], server, &env).await;
    assert!(
        first.status.success(),
        "{}{}",
        out(&first),
        String::from_utf8_lossy(&first.stderr)
    );
    let v: Value = serde_json::from_str(&out(&first)).unwrap();
    assert_eq!(v["ServerURL"], server);
    assert_eq!(v["Username"], "temp_user_cr");
    assert_eq!(v["Secret"].as_str().unwrap().len(), 64);
    assert_eq!(
        cloud.calls("ListInstance"),
        1,
        "the instance id was looked up by name"
    );
    assert_eq!(cloud.calls("GetAuthorizationToken"), 1);

    // The token is on disk, readable only by the user, and reused.
    let file = dir.path().join(
        "cache/acr-auth/docker-credential-acr/acme-registry.cn-hangzhou.cr.aliyuncs.com.json",
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let second = run(DOCKER_HELPER, &["get"], server, &env).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out(&second)).unwrap()["Secret"],
        v["Secret"]
    );
    assert_eq!(
        cloud.calls("GetAuthorizationToken"),
        1,
        "served from the disk cache"
    );

    // A cached token within the threshold of its expiry is not used.
    let mut cached: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let now = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_secs();
    cached["expiresAtUnix"] = (now + 60).into();
    std::fs::write(&file, cached.to_string()).unwrap();
    let third = run(DOCKER_HELPER, &["get"], server, &env).await;
    assert!(third.status.success());
    assert_eq!(cloud.calls("GetAuthorizationToken"), 2, "renewed");

    // erase forgets it; store and list are accepted.
    assert!(run(DOCKER_HELPER, &["erase"], server, &env)
        .await
        .status
        .success());
    assert!(!file.exists());
    assert!(run(
        DOCKER_HELPER,
        &["store"],
        r#"{"ServerURL":"x","Username":"u","Secret":"s"}"#,
        &env
    )
    .await
    .status
    .success());
    assert_eq!(out(&run(DOCKER_HELPER, &["list"], "", &env).await), "{}");
}

#[tokio::test]
async fn docker_helper_declines_other_registries_and_reports_errors() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = helper_env(&cloud, dir.path());
    let other = run(DOCKER_HELPER, &["get"], "https://index.docker.io/v1/", &env).await;
    assert_eq!(other.status.code(), Some(1));
    assert_eq!(out(&other), "credentials not found in native keychain");

    let unknown = run(
        DOCKER_HELPER,
        &["get"],
        "nobody-registry.cn-hangzhou.cr.aliyuncs.com",
        &env,
    )
    .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        out(&unknown).contains("no Enterprise Edition instance named \"nobody\""),
        "{}",
        out(&unknown)
    );

    std::fs::write(
        dir.path().join("helper.json"),
        r#"{"hosts": {"x": {"instanceID": "cri-1"}}}"#,
    )
    .unwrap();
    let bad = run(
        DOCKER_HELPER,
        &["get"],
        "registry.cn-hangzhou.aliyuncs.com",
        &env,
    )
    .await;
    assert!(
        out(&bad).contains("invalid settings file") && out(&bad).contains("instanceID"),
        "{}",
        out(&bad)
    );
    assert_eq!(
        run(DOCKER_HELPER, &["frobnicate"], "", &env)
            .await
            .status
            .code(),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_through_cred_helpers() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = DistributionRegistry::start(dir.path(), &cloud).await;
    // The test registry is not an ACR host, so the override says which instance backs it.
    std::fs::write(
        dir.path().join("helper.json"),
        format!(r#"{{"threshold": "10m", "hosts": {{"{}": {{"instanceId": "cri-testinstance01", "region": "cn-hangzhou"}}}}}}"#, registry.addr()),
    )
    .unwrap();
    let authfile = dir.path().join("auth.json");
    std::fs::write(
        &authfile,
        format!(r#"{{"credHelpers": {{"{}": "acr"}}}}"#, registry.addr()),
    )
    .unwrap();
    let authfile = authfile.display().to_string();

    // skopeo finds docker-credential-acr on PATH.
    let bin_dir = Path::new(DOCKER_HELPER)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let mut env = helper_env(&cloud, dir.path());
    env[0].1 = format!("{bin_dir}:{}", env[0].1);
    let env_refs: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| k != "HOME")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let (image, digest) = push_test_image(dir.path(), registry.addr(), &authfile, &env_refs).await;
    let inspect = inspect_image(dir.path(), &image, &authfile, &env_refs).await;
    assert!(
        inspect.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let info: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(
        cloud.calls("GetAuthorizationToken"),
        1,
        "push and pull share the cached token"
    );
    assert!(cloud.calls("RegistryToken") >= 2);
}

fn request(image: &str) -> String {
    serde_json::json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest", "image": image}).to_string()
}

#[tokio::test]
async fn kubelet_plugin_answers_for_acr_images() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = helper_env(&cloud, dir.path());
    for (image, host, user) in [
        (
            "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com/team/app:1.2",
            "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
            "temp_user_cr",
        ),
        (
            "registry.cn-beijing.aliyuncs.com/ns/app@sha256:0123",
            "registry.cn-beijing.aliyuncs.com",
            "cr_temp_user",
        ),
    ] {
        let o = run(KUBELET_PLUGIN, &[], &request(image), &env).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_str(&out(&o)).unwrap();
        assert_eq!(v["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
        assert_eq!(v["kind"], "CredentialProviderResponse");
        assert_eq!(v["cacheKeyType"], "Registry");
        assert_eq!(v["auth"][host]["username"], user);
        assert_eq!(v["auth"][host]["password"].as_str().unwrap().len(), 64);
        // One hour of token minus the 15-minute threshold.
        let d = parse_go_duration(v["cacheDuration"].as_str().unwrap())
            .unwrap()
            .as_secs();
        assert!((2690..=2700).contains(&d), "{v}");
    }
    let o = run(
        KUBELET_PLUGIN,
        &["--threshold", "50m"],
        &request("registry.cn-beijing.aliyuncs.com/ns/app"),
        &env,
    )
    .await;
    let v: Value = serde_json::from_str(&out(&o)).unwrap();
    let d = parse_go_duration(v["cacheDuration"].as_str().unwrap())
        .unwrap()
        .as_secs();
    assert!((590..=600).contains(&d), "{v}");
}

#[tokio::test]
async fn kubelet_plugin_handles_other_images_and_bad_input() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = helper_env(&cloud, dir.path());
    for image in [
        "nginx:latest",
        "docker.io/library/nginx",
        "quay.io/org/app:1",
    ] {
        let o = run(KUBELET_PLUGIN, &[], &request(image), &env).await;
        assert!(o.status.success(), "{image}");
        let v: Value = serde_json::from_str(&out(&o)).unwrap();
        assert_eq!(v["auth"], serde_json::json!({}), "{image}");
    }
    let beta = serde_json::json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1beta1", "kind": "CredentialProviderRequest", "image": "registry.cn-hangzhou.aliyuncs.com/a/b"});
    let v: Value = serde_json::from_str(&out(
        &run(KUBELET_PLUGIN, &[], &beta.to_string(), &env).await
    ))
    .unwrap();
    assert_eq!(
        v["apiVersion"], "credentialprovider.kubelet.k8s.io/v1beta1",
        "answers in the request's version"
    );
    for (input, message) in [
        ("{not json", "not a CredentialProviderRequest"),
        (
            r#"{"apiVersion": "credentialprovider.kubelet.k8s.io/v9", "kind": "CredentialProviderRequest", "image": "x/y"}"#,
            "apiVersion \"credentialprovider.kubelet.k8s.io/v9\" is not supported",
        ),
        (
            r#"{"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "Pod", "image": "x/y"}"#,
            "kind \"Pod\" is not CredentialProviderRequest",
        ),
    ] {
        let o = run(KUBELET_PLUGIN, &[], input, &env).await;
        assert_eq!(o.status.code(), Some(1), "{input}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(message),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out(&o).is_empty());
    }
    // An ACR failure is an error for the kubelet to log, without the secret.
    let mut bad_env = env.clone();
    bad_env[2].1 = "wrong-secret".into();
    let o = run(
        KUBELET_PLUGIN,
        &[],
        &request("registry.cn-hangzhou.aliyuncs.com/a/b"),
        &bad_env,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("SignatureDoesNotMatch") && !err.contains("wrong-secret"),
        "{err}"
    );
}
