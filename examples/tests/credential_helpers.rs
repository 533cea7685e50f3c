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

    // The token is on disk, under the identity's directory, readable only by the user, and
    // reused.
    let file = cache_file(
        &dir.path().join("cache/acr-auth/docker-credential-acr"),
        "acme-registry.cn-hangzhou.cr.aliyuncs.com.json",
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

    // erase forgets it; list is empty.
    assert!(run(DOCKER_HELPER, &["erase"], server, &env)
        .await
        .status
        .success());
    assert!(!file.exists());
    assert_eq!(out(&run(DOCKER_HELPER, &["list"], "", &env).await), "{}");
}

/// The one `<identity>/<name>` file under `root`.
fn cache_file(root: &Path, name: &str) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].join(name)
}

/// Every file and directory name under `root`.
fn names_under(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            names.push(e.file_name().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    names
}

fn set(env: &[(String, String)], k: &str, v: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<_> = env.iter().filter(|(n, _)| n != k).cloned().collect();
    if let Some(v) = v {
        env.push((k.into(), v.into()));
    }
    env
}

fn secret_of(o: &Output) -> String {
    let v: Value = serde_json::from_str(&out(o)).unwrap_or_else(|_| panic!("{}", out(o)));
    v["Secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn docker_helper_cache_is_per_identity() {
    let mut config = FakeCloudConfig::sample();
    config.access_keys.push(acr_auth_testkit::AccessKeyConfig {
        id: "LTAIsecondkey".into(),
        secret: "second-secret".into(),
        acr_allowed: true,
    });
    let cloud = FakeCloud::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = helper_env(&cloud, dir.path());
    let second = set(
        &set(&first, "ALIBABA_CLOUD_ACCESS_KEY_ID", Some("LTAIsecondkey")),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        Some("second-secret"),
    );
    let server = "registry.cn-hangzhou.aliyuncs.com";
    let get = |env: Vec<(String, String)>| async move {
        run(DOCKER_HELPER, &["get"], server, &env).await
    };

    let a = secret_of(&get(first.clone()).await);
    let b = secret_of(&get(second.clone()).await);
    assert_ne!(a, b);
    let calls = cloud.requests(Some("GET /tokens"));
    assert_eq!(
        calls
            .iter()
            .map(|r| r.access_key_id.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["LTAItestkey", "LTAIsecondkey"],
        "two identities, two ACR calls"
    );
    // Each is then served its own login from the cache.
    assert_eq!(secret_of(&get(first.clone()).await), a);
    assert_eq!(secret_of(&get(second.clone()).await), b);
    assert_eq!(cloud.calls("GET /tokens"), 2);

    // A wrong secret for a cached AccessKey, an unknown AccessKey, no credentials at all: an
    // error from Alibaba Cloud or the chain, never a cached login.
    for (env, message) in [
        (
            set(
                &first,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                Some("wrong-secret"),
            ),
            "SignatureDoesNotMatch",
        ),
        (
            set(&first, "ALIBABA_CLOUD_ACCESS_KEY_ID", Some("LTAIbogus")),
            "InvalidAccessKeyId",
        ),
        (
            set(
                &set(&first, "ALIBABA_CLOUD_ACCESS_KEY_ID", None),
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                None,
            ),
            "no credentials found",
        ),
    ] {
        let o = get(env).await;
        assert_eq!(o.status.code(), Some(1), "{}", out(&o));
        assert!(out(&o).contains(message), "{}", out(&o));
        assert!(!out(&o).contains(&a) && !out(&o).contains(&b));
        assert!(!out(&o).contains("wrong-secret"));
    }

    // No id or secret in any file name.
    let root = dir.path().join("cache/acr-auth/docker-credential-acr");
    let names = names_under(&root);
    assert_eq!(
        names.iter().filter(|n| n.starts_with("id-")).count(),
        2,
        "{names:?}"
    );
    for n in &names {
        for s in ["LTAI", "secret", "bogus"] {
            assert!(!n.contains(s), "{n}");
        }
    }

    // erase forgets the host for every identity.
    assert!(run(
        DOCKER_HELPER,
        &["erase"],
        "https://registry.cn-hangzhou.aliyuncs.com/",
        &first
    )
    .await
    .status
    .success());
    assert!(!names_under(&root).iter().any(|n| n.ends_with(".json")));

    // ACR_AUTH_CACHE_DISABLE: nothing read or written; ACR_AUTH_CACHE_DIR moves the cache.
    let before = cloud.calls("GET /tokens");
    let disabled = set(&first, "ACR_AUTH_CACHE_DISABLE", Some("1"));
    secret_of(&get(disabled.clone()).await);
    secret_of(&get(disabled).await);
    assert_eq!(cloud.calls("GET /tokens"), before + 2);
    assert!(!names_under(&root).iter().any(|n| n.ends_with(".json")));
    let moved = dir.path().join("elsewhere");
    let env = set(
        &first,
        "ACR_AUTH_CACHE_DIR",
        Some(&moved.display().to_string()),
    );
    let c = secret_of(&get(env.clone()).await);
    assert_eq!(secret_of(&get(env).await), c);
    assert_eq!(cloud.calls("GET /tokens"), before + 3);
    assert!(cache_file(&moved, "registry.cn-hangzhou.aliyuncs.com.json").exists());
    assert!(!names_under(&root).iter().any(|n| n.ends_with(".json")));
}

#[tokio::test]
async fn docker_helper_follows_the_credential_helper_protocol() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = helper_env(&cloud, dir.path());
    let valid = r#"{"ServerURL":"registry.cn-hangzhou.aliyuncs.com","Username":"u","Secret":"pw-secret-1234"}"#;
    // (args, stdin, exit code, stdout)
    let cases: Vec<(&[&str], &str, i32, &str)> = vec![
        (&["get"], "", 1, "no credentials server URL"),
        (&["get"], " \n", 1, "no credentials server URL"),
        (&["erase"], "", 1, "no credentials server URL"),
        (&["store"], "", 1, "no credentials server URL"),
        (&["store"], "{}", 1, "no credentials server URL"),
        (
            &["store"],
            r#"{"serverurl":"h","Secret":"pw-secret-1234"}"#,
            1,
            "no credentials username",
        ),
        (
            &["store"],
            "garbage",
            1,
            "invalid credentials: not JSON (line 1 column 1)",
        ),
        (
            &["store"],
            "[1]",
            1,
            "invalid credentials: not a JSON object",
        ),
        (
            &["store"],
            r#"{"ServerURL":"h","Username":"u","Secret":1234}"#,
            1,
            "invalid credentials: field Secret is not a string",
        ),
        (
            &["get"],
            "https://index.docker.io/v1/",
            1,
            "credentials not found in native keychain",
        ),
        (
            &["frobnicate"],
            "",
            1,
            "docker-credential-acr: unknown action: frobnicate",
        ),
        (
            &[],
            "",
            1,
            "Usage: docker-credential-acr <store|get|erase|list|version>",
        ),
        (
            &["get", "extra"],
            "",
            1,
            "Usage: docker-credential-acr <store|get|erase|list|version>",
        ),
        (&["list"], "", 0, "{}"),
    ];
    for (args, stdin, code, want) in cases {
        let o = run(DOCKER_HELPER, args, stdin, &env).await;
        assert_eq!(o.status.code(), Some(code), "{args:?} {stdin}: {}", out(&o));
        assert_eq!(out(&o), want, "{args:?} {stdin}");
        assert!(
            o.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A valid store is refused, as ecr-login refuses it: temporary logins are not stored.
    let o = run(DOCKER_HELPER, &["store"], valid, &env).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).starts_with("not implemented: "), "{}", out(&o));
    assert!(out(&o).contains("ACR_AUTH_IGNORE_CREDS_STORAGE"));
    assert!(o.stderr.is_empty());
    assert!(!out(&o).contains("pw-secret-1234"));
    // ... or ignored, with one warning line, when asked.
    let ignoring = set(&env, "ACR_AUTH_IGNORE_CREDS_STORAGE", Some("true"));
    let o = run(DOCKER_HELPER, &["store"], valid, &ignoring).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(out(&o).is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ignoring") && !err.contains("pw-secret-1234"),
        "{err}"
    );
    // Garbage is refused even then.
    let o = run(DOCKER_HELPER, &["store"], "garbage", &ignoring).await;
    assert_eq!(o.status.code(), Some(1));

    // An error from Alibaba Cloud: one line, on stdout only (docker and skopeo quote stdout and
    // relay stderr: a copy on stderr would show it twice).
    let bad = set(
        &env,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        Some("wrong-secret"),
    );
    let o = run(
        DOCKER_HELPER,
        &["get"],
        "registry.cn-hangzhou.aliyuncs.com",
        &bad,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(out(&o).lines().count(), 1, "{}", out(&o));
    assert!(out(&o).contains("SignatureDoesNotMatch"), "{}", out(&o));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
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
