//! `acr-credential-provider` per-ServiceAccount identity (KEP-4412): the kubelet sends the
//! pod's ServiceAccount token and annotations; the plugin exchanges the token with STS
//! `AssumeRoleWithOIDC` for the annotated role and fetches the login with it. Run as the
//! kubelet runs it, against the fake cloud.

use std::path::Path;
use std::process::{Output, Stdio};

use acr_auth_core::config::parse_go_duration;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

/// Environment variables for the plugin.
type Env = Vec<(String, String)>;

const PLUGIN: &str = env!("CARGO_BIN_EXE_acr-credential-provider");
const TOKEN: &str = "eyJ.test-oidc-token.sig";
const PROVIDER_ARN: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa-test";
const ROLE_ARN: &str = "acs:ram::1234567890:role/acr-puller";
const ANNOTATION: &str = "pod-identity.alibabacloud.com/role-name";
const EE_IMAGE: &str = "acme-registry.cn-hangzhou.cr.aliyuncs.com/team/app:1.2";
const EE_HOST: &str = "acme-registry.cn-hangzhou.cr.aliyuncs.com";

/// No AccessKey anywhere; STS and ACR are the fake. The ECS metadata service is the fake too,
/// and it has an instance role: a plugin that fell back to the node identity would succeed
/// with it, and the tests would see it.
fn base_env(cloud: &FakeCloud, dir: &Path) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".into(), dir.display().to_string()),
        ("ACR_AUTH_ACR_ENDPOINT".into(), cloud.url()),
        ("ACR_AUTH_STS_ENDPOINT".into(), cloud.url()),
        ("ACR_AUTH_METADATA_ENDPOINT".into(), cloud.url()),
    ]
}

fn with(mut env: Vec<(String, String)>, k: &str, v: &str) -> Vec<(String, String)> {
    env.push((k.into(), v.into()));
    env
}

async fn run(args: &[&str], stdin: &str, env: &[(String, String)]) -> Output {
    let mut child = tokio::process::Command::new(PLUGIN)
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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sa_request(image: &str, token: &str, annotations: Value) -> String {
    json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": image,
        "serviceAccountToken": token,
        "serviceAccountAnnotations": annotations,
    })
    .to_string()
}

fn assert_no_node_identity(cloud: &FakeCloud) {
    let metadata: Vec<String> = cloud
        .all_calls()
        .into_keys()
        .filter(|k| k.starts_with("metadata:"))
        .collect();
    assert!(
        metadata.is_empty(),
        "the node identity was read: {metadata:?}"
    );
}

#[tokio::test]
async fn service_account_token_is_exchanged_for_the_annotated_role() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = with(
        base_env(&cloud, dir.path()),
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        PROVIDER_ARN,
    );
    let o = run(
        &[],
        &sa_request(EE_IMAGE, TOKEN, json!({ANNOTATION: "acr-puller"})),
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["kind"], "CredentialProviderResponse");
    assert_eq!(v["cacheKeyType"], "Registry");
    assert_eq!(v["auth"][EE_HOST]["username"], "temp_user_cr");
    assert_eq!(v["auth"][EE_HOST]["password"].as_str().unwrap().len(), 64);
    // The login lives as long as the one-hour STS session; minus the 15-minute threshold.
    let d = parse_go_duration(v["cacheDuration"].as_str().unwrap())
        .unwrap()
        .as_secs();
    assert!((2690..=2700).contains(&d), "{v}");

    // STS got the role built from the provider's account and the annotation, and the token.
    let sts = cloud.requests(Some("AssumeRoleWithOIDC"));
    assert_eq!(sts.len(), 1);
    assert_eq!(sts[0].params["RoleArn"], ROLE_ARN);
    assert_eq!(sts[0].params["OIDCProviderArn"], PROVIDER_ARN);
    assert_eq!(sts[0].params["OIDCToken"], TOKEN);
    assert_eq!(sts[0].params["RoleSessionName"], "acr-credential-provider");
    assert_eq!(sts[0].access_key_id, None, "anonymous");
    assert!(!format!("{:?}", sts[0]).contains(TOKEN), "Debug redacts it");
    // Every ACR call was signed with that role's credentials.
    let acr: Vec<_> = cloud
        .requests(None)
        .into_iter()
        .filter(|r| r.action != "AssumeRoleWithOIDC")
        .collect();
    assert_eq!(
        acr.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["ListInstance", "GetAuthorizationToken"]
    );
    for r in &acr {
        assert_eq!(r.assumed_role.as_deref(), Some(ROLE_ARN), "{r:?}");
    }
    assert_no_node_identity(&cloud);
    assert!(!stdout(&o).contains(TOKEN) && !stderr(&o).contains(TOKEN));
}

#[tokio::test]
async fn flags_name_the_provider_and_map_custom_domains() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = with(
        with(
            base_env(&cloud, dir.path()),
            "ALIBABA_CLOUD_ROLE_SESSION_NAME",
            "pull-session",
        ),
        // The flag wins over the variable.
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "acs:ram::1:oidc-provider/other",
    );
    let arn_flag = format!("--oidc-provider-arn={PROVIDER_ARN}");
    let o = run(
        &[
            &arn_flag,
            "--host",
            "Registry.Acme.Example=cri-testinstance01@cn-hangzhou",
        ],
        &sa_request(
            "registry.acme.example/team/app:1",
            TOKEN,
            json!({ANNOTATION: "acr-puller", "other/annotation": "x"}),
        ),
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["auth"]["registry.acme.example"]["username"],
        "temp_user_cr"
    );
    let sts = cloud.requests(Some("AssumeRoleWithOIDC"));
    assert_eq!(sts[0].params["OIDCProviderArn"], PROVIDER_ARN);
    assert_eq!(sts[0].params["RoleSessionName"], "pull-session");
    let token_calls = cloud.requests(Some("GetAuthorizationToken"));
    assert_eq!(token_calls[0].params["InstanceId"], "cri-testinstance01");
    assert_eq!(
        cloud.calls("ListInstance"),
        0,
        "the mapping names the instance"
    );

    // The same mapping from a file, in node mode (AccessKey from the environment).
    let file = dir.path().join("hosts.json");
    std::fs::write(
        &file,
        r#"{"registry.acme.example": {"instanceId": "cri-testinstance01", "region": "cn-hangzhou"}}"#,
    )
    .unwrap();
    let node_env = with(
        with(
            base_env(&cloud, dir.path()),
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "LTAItestkey",
        ),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "test-secret",
    );
    let request = json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest", "image": "registry.acme.example/team/app:1"});
    let o = run(
        &["--hosts-file", &file.display().to_string()],
        &request.to_string(),
        &node_env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["auth"]["registry.acme.example"]["username"],
        "temp_user_cr"
    );
    let last = cloud.requests(Some("GetAuthorizationToken")).pop().unwrap();
    assert_eq!(last.access_key_id.as_deref(), Some("LTAItestkey"));

    // Without a mapping the custom domain is not ours: empty auth, as before.
    let o = run(&[], &request.to_string(), &node_env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["auth"], json!({}));

    for bad in ["registry.acme.example", "h=cri-1", "=cri-1@r", "h=@r"] {
        let o = run(&["--host", bad], &request.to_string(), &node_env).await;
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(
            stderr(&o).contains("expected HOST=INSTANCE_ID@REGION"),
            "{}",
            stderr(&o)
        );
    }
}

#[tokio::test]
async fn node_mode_is_unchanged_without_a_token() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The provider ARN is configured, but the request carries no token: the node's identity
    // (here the ECS instance role from the fake metadata service).
    let env = with(
        base_env(&cloud, dir.path()),
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        PROVIDER_ARN,
    );
    for request in [
        json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
               "kind": "CredentialProviderRequest", "image": EE_IMAGE}),
        json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
               "kind": "CredentialProviderRequest", "image": EE_IMAGE,
               "serviceAccountToken": "", "serviceAccountAnnotations": {}}),
    ] {
        let o = run(&[], &request.to_string(), &env).await;
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["auth"][EE_HOST]["username"], "temp_user_cr");
    }
    assert_eq!(cloud.calls("AssumeRoleWithOIDC"), 0);
    assert!(
        cloud.all_calls().keys().any(|k| k.starts_with("metadata:")),
        "the node's instance role was used"
    );
}

#[tokio::test]
async fn bad_requests_fail_clearly_without_the_token() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = base_env(&cloud, dir.path());
    let with_arn = with(
        base.clone(),
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        PROVIDER_ARN,
    );
    let cases: Vec<(Env, String, &str)> = vec![
        // A token without the role annotation: never the node identity.
        (
            with_arn.clone(),
            sa_request(EE_IMAGE, TOKEN, json!({})),
            "has no pod-identity.alibabacloud.com/role-name annotation",
        ),
        (
            with_arn.clone(),
            json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                   "kind": "CredentialProviderRequest", "image": EE_IMAGE,
                   "serviceAccountToken": TOKEN})
            .to_string(),
            "requiredServiceAccountAnnotationKeys",
        ),
        // Even for an image that is not ACR's: the setup is wrong for every image.
        (
            with_arn.clone(),
            sa_request("quay.io/org/app:1", TOKEN, json!({"x": "y"})),
            "has no pod-identity.alibabacloud.com/role-name annotation",
        ),
        (
            with_arn.clone(),
            sa_request(EE_IMAGE, TOKEN, json!({ANNOTATION: "../admin"})),
            "\"../admin\" is not a RAM role name",
        ),
        (
            base.clone(),
            sa_request(EE_IMAGE, TOKEN, json!({ANNOTATION: "acr-puller"})),
            "set --oidc-provider-arn or ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        ),
        (
            with(
                base.clone(),
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1234567890:role/acr-puller",
            ),
            sa_request(EE_IMAGE, TOKEN, json!({ANNOTATION: "acr-puller"})),
            "OIDC provider ARN \"acs:ram::1234567890:role/acr-puller\" is malformed",
        ),
        (
            with_arn.clone(),
            json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                   "kind": "CredentialProviderRequest", "image": EE_IMAGE,
                   ANNOTATION: "acr-puller",
                   "serviceAccountAnnotations": {ANNOTATION: "acr-puller"}})
            .to_string(),
            "sent no ServiceAccount token",
        ),
        (
            with_arn.clone(),
            format!(
                r#"{{"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest", "image": "x/y", "serviceAccountToken": "{TOKEN}""#
            ),
            "not JSON (line 1 column",
        ),
        (
            with_arn.clone(),
            json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                   "kind": "CredentialProviderRequest", "image": EE_IMAGE,
                   "serviceAccountToken": [TOKEN]})
            .to_string(),
            "field serviceAccountToken is not a string",
        ),
        (
            with_arn.clone(),
            json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                   "kind": "CredentialProviderRequest", "image": EE_IMAGE,
                   "serviceAccountToken": TOKEN,
                   "serviceAccountAnnotations": {ANNOTATION: [TOKEN]}})
            .to_string(),
            "is not a string",
        ),
    ];
    for (env, input, message) in &cases {
        let o = run(&[], input, env).await;
        assert_eq!(o.status.code(), Some(1), "{input}");
        let err = stderr(&o);
        assert!(err.contains(message), "{input}: {err}");
        assert!(err.starts_with("acr-credential-provider: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(stdout(&o).is_empty(), "{input}");
        assert!(!err.contains(TOKEN), "{err}");
    }
    assert!(
        cloud.requests(None).is_empty(),
        "no STS or ACR call for a bad request"
    );
    assert_no_node_identity(&cloud);

    // STS refuses the token: its error, without the token.
    let wrong = "eyJ.not-a-valid-token-4242.sig";
    let o = run(
        &[],
        &sa_request(EE_IMAGE, wrong, json!({ANNOTATION: "acr-puller"})),
        &with_arn,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("AuthenticationFail.OIDCToken.Invalid"),
        "{err}"
    );
    assert!(!err.contains(wrong) && stdout(&o).is_empty(), "{err}");
    assert_eq!(
        cloud.requests(Some("AssumeRoleWithOIDC"))[0].params["OIDCToken"],
        wrong
    );
    assert_eq!(cloud.calls("GetAuthorizationToken"), 0);
    assert_no_node_identity(&cloud);
}

/// The shipped sample configuration uses the kubelet's field names and values, and the plugin
/// accepts the arguments it passes.
#[tokio::test]
async fn sample_kubelet_config_parses_and_its_args_work() {
    use yaml_rust2::{Yaml, YamlLoader};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubelet/credential-provider-config.service-account.yaml"
    );
    let docs = YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let doc = &docs[0];
    assert_eq!(doc["apiVersion"].as_str(), Some("kubelet.config.k8s.io/v1"));
    assert_eq!(doc["kind"].as_str(), Some("CredentialProviderConfig"));
    let keys = |y: &Yaml| -> Vec<String> {
        y.as_hash()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    };
    // The kubelet's CredentialProvider and ServiceAccountTokenAttributes fields
    // (k8s.io/kubelet/config/v1): an unknown or misspelt key fails here.
    const PROVIDER_FIELDS: [&str; 7] = [
        "name",
        "matchImages",
        "defaultCacheDuration",
        "apiVersion",
        "args",
        "env",
        "tokenAttributes",
    ];
    const TOKEN_FIELDS: [&str; 5] = [
        "serviceAccountTokenAudience",
        "cacheType",
        "requireServiceAccount",
        "requiredServiceAccountAnnotationKeys",
        "optionalServiceAccountAnnotationKeys",
    ];
    let providers = doc["providers"].as_vec().unwrap();
    assert_eq!(providers.len(), 1);
    let p = &providers[0];
    for k in keys(p) {
        assert!(PROVIDER_FIELDS.contains(&k.as_str()), "unknown field {k}");
    }
    assert_eq!(p["name"].as_str(), Some("acr-credential-provider"));
    assert_eq!(
        p["apiVersion"].as_str(),
        Some("credentialprovider.kubelet.k8s.io/v1")
    );
    parse_go_duration(p["defaultCacheDuration"].as_str().unwrap()).unwrap();
    let t = &p["tokenAttributes"];
    for k in keys(t) {
        assert!(TOKEN_FIELDS.contains(&k.as_str()), "unknown field {k}");
    }
    assert_eq!(
        t["serviceAccountTokenAudience"].as_str(),
        Some("sts.aliyuncs.com")
    );
    assert_eq!(t["cacheType"].as_str(), Some("ServiceAccount"));
    assert_eq!(t["requireServiceAccount"].as_bool(), Some(true));
    let required: Vec<&str> = t["requiredServiceAccountAnnotationKeys"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|y| y.as_str().unwrap())
        .collect();
    assert_eq!(required, [ANNOTATION]);
    for e in p["env"].as_vec().unwrap() {
        assert_eq!(keys(e), ["name", "value"]);
    }
    let images: Vec<&str> = p["matchImages"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|y| y.as_str().unwrap())
        .collect();
    assert!(images.contains(&"*.*.cr.aliyuncs.com"), "{images:?}");

    // The plugin takes the sample's args; pointed at the fake's provider, it serves the
    // sample's custom domain.
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = p["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|y| y.as_str().unwrap().to_owned())
        .collect();
    assert!(args.iter().any(|a| a.starts_with("--oidc-provider-arn=")));
    for a in &mut args {
        if a.starts_with("--oidc-provider-arn=") {
            *a = format!("--oidc-provider-arn={PROVIDER_ARN}");
        }
        if a.starts_with("--host=") {
            *a = "--host=registry.example.com=cri-testinstance01@cn-hangzhou".into();
        }
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(
        &arg_refs,
        &sa_request(
            "registry.example.com/team/app:1",
            TOKEN,
            json!({ANNOTATION: "acr-puller"}),
        ),
        &base_env(&cloud, dir.path()),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["auth"]["registry.example.com"]["username"],
        "temp_user_cr"
    );
    assert_eq!(
        cloud.requests(Some("AssumeRoleWithOIDC"))[0].params["RoleArn"],
        ROLE_ARN
    );
}

/// A real ServiceAccount token, requested from a real kube-apiserver with the audience the
/// sample configuration asks for (as the kubelet requests it), goes to STS unchanged. Runs when
/// `ACR_AUTH_CONTROL_PLANE_DIR` names the kube-apiserver and etcd binaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_service_account_token_from_the_api_server() {
    use acr_auth_testkit::control_plane::{ControlPlane, ADMIN_TOKEN};
    use base64::Engine as _;
    if std::env::var_os("ACR_AUTH_CONTROL_PLANE_DIR").is_none() {
        eprintln!("skipped: ACR_AUTH_CONTROL_PLANE_DIR is not set");
        return;
    }
    let plane = ControlPlane::start(&[]).await.unwrap();
    let http = plane.http();
    let post = |path: &str, body: Value| {
        let req = http
            .post(format!("{}{path}", plane.url()))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert!(status.is_success(), "{status}: {v}");
            v
        }
    };
    post(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .await;
    let sa = post(
        "/api/v1/namespaces/team/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "puller", "annotations": {ANNOTATION: "acr-puller"}}}),
    )
    .await;
    let tr = post(
        "/api/v1/namespaces/team/serviceaccounts/puller/token",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"audiences": ["sts.aliyuncs.com"], "expirationSeconds": 3600}}),
    )
    .await;
    let token = tr["status"]["token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], json!(["sts.aliyuncs.com"]));
    assert_eq!(claims["sub"], "system:serviceaccount:team:puller");

    // STS trusts this token (the fake's stand-in for checking its signature and audience).
    let mut config = FakeCloudConfig::sample();
    config.oidc_providers[0].tokens.push(token.clone());
    let cloud = FakeCloud::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let request = json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": EE_IMAGE,
        "serviceAccountToken": token,
        "serviceAccountAnnotations": {ANNOTATION: sa["metadata"]["annotations"][ANNOTATION]},
    });
    let o = run(
        &[&format!("--oidc-provider-arn={PROVIDER_ARN}")],
        &request.to_string(),
        &base_env(&cloud, dir.path()),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["auth"][EE_HOST]["username"], "temp_user_cr");
    let sts = cloud.requests(Some("AssumeRoleWithOIDC"));
    assert_eq!(sts[0].params["OIDCToken"], token);
    assert_eq!(sts[0].params["RoleArn"], ROLE_ARN);
    assert!(!stdout(&o).contains(&token) && !stderr(&o).contains(&token));
    assert_no_node_identity(&cloud);
}
