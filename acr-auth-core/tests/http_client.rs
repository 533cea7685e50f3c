//! The HTTP client: one shared client for everything built without one, and a user-given
//! client used as given. Its own test binary: the count of shared clients is per process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acr_auth_core::acr::{AcrClient, Endpoint};
use acr_auth_core::credentials::{
    AssumeRoleProvider, Credentials, CredentialsUriProvider, DefaultCredentialsChain,
    EcsMetadataProvider, OidcProvider, ProvideCredentials, ProviderEnv,
};
use acr_auth_core::http::{shared_clients_built, RetryPolicy, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROLE: &str = "acs:ram::1234567890:role/acr-puller";
const OIDC_PROVIDER: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa-test";

#[test]
fn clients_and_providers_built_without_a_client_share_one() {
    let env = ProviderEnv::from_vars([("ACR_AUTH_STS_ENDPOINT", "http://127.0.0.1:1")]);
    let key: Arc<dyn ProvideCredentials> = Arc::new(Credentials::new("LTAIx", "secret"));
    let mut keep: Vec<Box<dyn std::fmt::Debug>> = Vec::new();
    for region in ["cn-hangzhou", "cn-beijing", "eu-central-1"] {
        let c = AcrClient::builder(region)
            .credentials(Credentials::new("LTAIx", "secret"))
            .read_env(false)
            .build()
            .unwrap();
        keep.push(Box::new(c));
    }
    // Without credentials: the default chain, built without I/O.
    keep.push(Box::new(
        AcrClient::builder("cn-shanghai")
            .read_env(false)
            .build()
            .unwrap(),
    ));
    for _ in 0..2 {
        keep.push(Box::new(
            AssumeRoleProvider::builder(key.clone(), ROLE)
                .env(env.clone())
                .build()
                .unwrap(),
        ));
        keep.push(Box::new(
            OidcProvider::builder(ROLE, OIDC_PROVIDER, "/tokens/oidc")
                .env(env.clone())
                .build()
                .unwrap(),
        ));
        keep.push(Box::new(
            CredentialsUriProvider::new("http://127.0.0.1:1/creds", &env).unwrap(),
        ));
        keep.push(Box::new(DefaultCredentialsChain::new(env.clone())));
    }
    assert_eq!(
        shared_clients_built(),
        1,
        "one client for everything with the default timeouts"
    );
    // The metadata service has its own (1 s) timeouts: a second shared client, once.
    for _ in 0..3 {
        keep.push(Box::new(EcsMetadataProvider::from_env(&env).unwrap()));
    }
    assert_eq!(shared_clients_built(), 2);
    // Other timeouts: one more, shared by every client that asks for them.
    let t = Timeouts::new(Duration::from_secs(2), Duration::from_secs(3));
    for _ in 0..2 {
        keep.push(Box::new(
            AcrClient::builder("cn-hangzhou")
                .credentials(Credentials::new("LTAIx", "secret"))
                .timeouts(t)
                .build()
                .unwrap(),
        ));
    }
    assert_eq!(shared_clients_built(), 3);
    drop(keep);
}

/// A one-connection-at-a-time HTTP/1.1 server answering `body` to everything and recording
/// every request head.
async fn recording_server(body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).to_lowercase());
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    (url, heads)
}

fn user_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-test-client", "user-given".parse().unwrap());
    acr_auth_core::http::client_builder()
        .unwrap()
        .default_headers(headers)
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_user_given_client_is_used_by_the_acr_client_and_the_providers() {
    let (url, heads) = recording_server(
        r#"{"TempUsername":"u","AuthorizationToken":"p","ExpireTime":4102444800000,"RequestId":"r"}"#,
    )
    .await;
    let token = AcrClient::builder("cn-hangzhou")
        .credentials(Credentials::new("LTAIx", "secret"))
        .endpoint(Endpoint::Url(url))
        .http_client(user_client())
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
        .get_authorization_token("cri-abcdefghijklmnop")
        .await
        .unwrap();
    assert_eq!(token.username, "u");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].contains("x-test-client: user-given"),
        "{}",
        heads[0]
    );

    // Providers built over an environment with a client use it for STS.
    let (url, heads) = recording_server(
        r#"{"RequestId":"r","Credentials":{"AccessKeyId":"STS.x","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2099-01-01T00:00:00Z"}}"#,
    )
    .await;
    let env = ProviderEnv::from_vars([("ACR_AUTH_STS_ENDPOINT", url.as_str())])
        .with_file("/tokens/oidc", "eyJ.token.sig")
        .with_http_client(user_client());
    let creds = OidcProvider::builder(ROLE, OIDC_PROVIDER, "/tokens/oidc")
        .env(env.clone())
        .build()
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(creds.access_key_id(), "STS.x");
    // And so does the builder's own setting, without the environment's.
    let key: Arc<dyn ProvideCredentials> = Arc::new(Credentials::new("LTAIx", "secret"));
    AssumeRoleProvider::builder(key, ROLE)
        .env(ProviderEnv::from_vars([(
            "ACR_AUTH_STS_ENDPOINT",
            url.as_str(),
        )]))
        .http_client(user_client())
        .build()
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    for head in &heads {
        assert!(head.contains("x-test-client: user-given"), "{head}");
    }
}
