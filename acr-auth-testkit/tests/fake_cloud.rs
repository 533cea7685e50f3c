//! The fake cloud behaves like Alibaba's gateway: these tests drive it with raw HTTP requests
//! signed by hand through `acr_auth_core::sign`, so each check (nonce, window, token, signature)
//! is exercised directly.

use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::credentials::Credentials;
use acr_auth_core::sign::{sign_rpc_request, Method, RpcRequest};
use acr_auth_core::time::{format_iso8601, Clock, ManualClock, SystemClock};
use acr_auth_testkit::{FakeCloud, FakeCloudConfig, MetadataConfig};
use base64::Engine as _;
use serde_json::Value;

fn key() -> Credentials {
    Credentials::new("LTAItestkey", "test-secret")
}

async fn send_rpc(
    cloud: &FakeCloud,
    req: &RpcRequest,
    creds: Option<&Credentials>,
    nonce: &str,
) -> (u16, Value) {
    let signed = sign_rpc_request(req, creds, SystemClock.now(), nonce);
    let url = format!("{}/?{}", cloud.url(), signed.query);
    let http = acr_auth_testkit::http_client();
    let mut builder = http.request(
        reqwest::Method::from_bytes(req.method.as_str().as_bytes()).unwrap(),
        url,
    );
    if let Some(body) = signed.body {
        builder = builder
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
    }
    let resp = builder.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn ee_token_request() -> RpcRequest {
    RpcRequest::new(Method::Post, "GetAuthorizationToken", "2018-12-01")
        .query("InstanceId", "cri-testinstance01")
}

#[tokio::test]
async fn a_reused_nonce_is_refused() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let (status, body) = send_rpc(&cloud, &ee_token_request(), Some(&key()), "nonce-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send_rpc(&cloud, &ee_token_request(), Some(&key()), "nonce-1").await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureNonceUsed"))
    );
}

#[tokio::test]
async fn unsigned_and_tampered_requests_are_refused() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let http = acr_auth_testkit::http_client();
    let resp = http
        .post(format!(
            "{}/?Action=GetAuthorizationToken&Version=2018-12-01&AccessKeyId=LTAItestkey",
            cloud.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Code"], "IncompleteSignature");

    // Change a signed parameter after signing.
    let signed = sign_rpc_request(&ee_token_request(), Some(&key()), SystemClock.now(), "n-2");
    let tampered = signed
        .query
        .replace("cri-testinstance01", "cri-otherinstance1");
    let resp = http
        .post(format!("{}/?{tampered}", cloud.url()))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Code"], "SignatureDoesNotMatch");
    assert!(body["Message"]
        .as_str()
        .unwrap()
        .contains("server string to sign is:POST&%2F&"));
}

#[tokio::test]
async fn anonymous_calls_are_only_accepted_for_oidc() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let (status, body) = send_rpc(&cloud, &ee_token_request(), None, "n-3").await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("MissingAccessKeyId"))
    );
}

#[tokio::test]
async fn assume_role_issues_working_sts_credentials() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let req = RpcRequest::new(Method::Post, "AssumeRole", "2015-04-01")
        .form("RoleArn", "acs:ram::1234567890:role/acr-puller")
        .form("RoleSessionName", "acr-auth-test")
        .form("DurationSeconds", "1800");
    let (status, body) = send_rpc(&cloud, &req, Some(&key()), "n-4").await;
    assert_eq!(status, 200, "{body}");
    let c = &body["Credentials"];
    assert!(c["AccessKeyId"].as_str().unwrap().starts_with("STS."));
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        "acs:ram::1234567890:role/acr-puller/acr-auth-test"
    );
    let expiry = acr_auth_core::time::parse_iso8601(c["Expiration"].as_str().unwrap()).unwrap();
    let left = expiry.duration_since(SystemClock.now()).unwrap();
    assert!(left > Duration::from_secs(1790) && left <= Duration::from_secs(1800));

    // The issued credentials work, and only with their token.
    let sts = Credentials::new(
        c["AccessKeyId"].as_str().unwrap(),
        c["AccessKeySecret"].as_str().unwrap(),
    )
    .with_security_token(c["SecurityToken"].as_str().unwrap());
    let (status, body) = send_rpc(&cloud, &ee_token_request(), Some(&sts), "n-5").await;
    assert_eq!(status, 200, "{body}");
    let without_token = Credentials::new(sts.access_key_id(), sts.access_key_secret().expose());
    let (_, body) = send_rpc(&cloud, &ee_token_request(), Some(&without_token), "n-6").await;
    assert_eq!(body["Code"], "MissingSecurityToken");
    let wrong_token = without_token.clone().with_security_token("CAISwrong");
    let (_, body) = send_rpc(&cloud, &ee_token_request(), Some(&wrong_token), "n-7").await;
    assert_eq!(body["Code"], "InvalidSecurityToken.MismatchWithAccessKey");
}

#[tokio::test]
async fn assume_role_validates_its_parameters() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let base = || RpcRequest::new(Method::Post, "AssumeRole", "2015-04-01");
    let cases = [
        (
            base()
                .form("RoleArn", "acs:ram::1:role/nope")
                .form("RoleSessionName", "ok-name"),
            404,
            "EntityNotExist.Role",
        ),
        (
            base()
                .form("RoleArn", "acs:ram::1234567890:role/acr-puller")
                .form("RoleSessionName", "x"),
            400,
            "InvalidParameter.RoleSessionName",
        ),
        (
            base()
                .form("RoleArn", "acs:ram::1234567890:role/acr-puller")
                .form("RoleSessionName", "ok-name")
                .form("DurationSeconds", "600"),
            400,
            "InvalidParameter.DurationSeconds",
        ),
    ];
    for (i, (req, status, code)) in cases.into_iter().enumerate() {
        let (s, body) = send_rpc(&cloud, &req, Some(&key()), &format!("v-{i}")).await;
        assert_eq!((s, body["Code"].as_str()), (status, Some(code)));
    }
}

#[tokio::test]
async fn assume_role_with_oidc_is_anonymous_and_checks_the_token() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let req = |token: &str| {
        RpcRequest::new(Method::Post, "AssumeRoleWithOIDC", "2015-04-01")
            .form(
                "OIDCProviderArn",
                "acs:ram::1234567890:oidc-provider/ack-rrsa-test",
            )
            .form("RoleArn", "acs:ram::1234567890:role/acr-puller")
            .form("RoleSessionName", "rrsa-session")
            .form("OIDCToken", token)
    };
    let (status, body) = send_rpc(&cloud, &req("eyJ.test-oidc-token.sig"), None, "o-1").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["Credentials"]["SecurityToken"]
        .as_str()
        .unwrap()
        .starts_with("CAIS"));
    assert!(body["OIDCTokenInfo"]["Subject"].is_string());
    let (status, body) = send_rpc(&cloud, &req("eyJ.forged.sig"), None, "o-2").await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (401, Some("AuthenticationFail.OIDCToken.Invalid"))
    );
    assert_eq!(cloud.calls("AssumeRoleWithOIDC"), 2);
}

#[tokio::test]
async fn metadata_serves_role_credentials_in_both_modes() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let http = acr_auth_testkit::http_client();
    let base = format!("{}/latest", cloud.url());
    let token = http
        .put(format!("{base}/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |path: &str, token: Option<&str>| {
        let mut b = http.get(format!("{base}{path}"));
        if let Some(t) = token {
            b = b.header("X-aliyun-ecs-metadata-token", t);
        }
        b.send()
    };
    let role = get("/meta-data/ram/security-credentials/", Some(&token))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(role, "KubernetesWorkerRole");
    let creds: Value = serde_json::from_str(
        &get(
            &format!("/meta-data/ram/security-credentials/{role}"),
            Some(&token),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(creds["Code"], "Success");
    assert!(creds["AccessKeyId"].as_str().unwrap().starts_with("STS."));
    assert_eq!(
        get("/meta-data/region-id", None)
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "cn-hangzhou"
    );
    assert_eq!(
        get("/meta-data/region-id", Some("bogus"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("/meta-data/ram/security-credentials/OtherRole", None)
            .await
            .unwrap()
            .status(),
        404
    );
    let bad_ttl = http
        .put(format!("{base}/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_ttl.status(), 400);
}

#[tokio::test]
async fn metadata_hardened_only_requires_a_token_and_tokens_expire() {
    let clock = ManualClock::new(SystemClock.now());
    let config = FakeCloudConfig {
        metadata: MetadataConfig {
            role_name: None,
            hardened_only: true,
            ..MetadataConfig::default()
        },
        ..FakeCloudConfig::sample()
    };
    let cloud = FakeCloud::start_with_clock(config, Arc::new(clock.clone()))
        .await
        .unwrap();
    let http = acr_auth_testkit::http_client();
    let url = format!("{}/latest/meta-data/ram/security-credentials/", cloud.url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 403);
    let token = http
        .put(format!("{}/latest/api/token", cloud.url()))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let with_token = || {
        http.get(&url)
            .header("X-aliyun-ecs-metadata-token", &token)
            .send()
    };
    assert_eq!(
        with_token().await.unwrap().status(),
        404,
        "no role attached"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(with_token().await.unwrap().status(), 401, "token expired");
}

#[tokio::test]
async fn registry_token_server_only_honours_issued_unexpired_logins() {
    let clock = ManualClock::new(SystemClock.now());
    let cloud = FakeCloud::start_with_clock(FakeCloudConfig::sample(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let (status, body) = send_rpc(&cloud, &ee_token_request(), Some(&key()), "r-1").await;
    assert_eq!(status, 200);
    let user = body["TempUsername"].as_str().unwrap();
    let pass = body["AuthorizationToken"].as_str().unwrap();
    let http = acr_auth_testkit::http_client();
    let realm = format!(
        "{}?service=fake-acr-registry&scope=repository:team/app:pull,push",
        cloud.registry_token_realm()
    );

    let ok: Value = http
        .get(&realm)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = ok["token"].as_str().unwrap();
    let mut parts = jwt.split('.');
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value =
        serde_json::from_slice(&b64.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims: Value =
        serde_json::from_slice(&b64.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
    assert_eq!(claims["aud"], "fake-acr-registry");
    assert_eq!(claims["sub"], user);
    assert_eq!(claims["access"][0]["name"], "team/app");
    assert_eq!(
        claims["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );

    let wrong = http
        .get(&realm)
        .basic_auth(user, Some("tampered"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let anonymous = http.get(&realm).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    clock.advance(Duration::from_secs(3601));
    let expired = http
        .get(&realm)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401);
    assert_eq!(cloud.calls("RegistryToken"), 4);
    let _ = format_iso8601(clock.now());
}

#[tokio::test]
async fn the_server_stops_when_dropped() {
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let addr = cloud.addr();
    drop(cloud);
    // Give the graceful shutdown a moment to close the listener.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the fake cloud still accepts connections after drop"
    );
}
