//! Answers that a broken or hostile server can send over real HTTP (absurd timestamps, bare HTTP
//! errors): each must come back as a typed error naming the field, never a panic, and never
//! with a secret in its text.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;

use acr_auth_core::acr::{AcrClient, Endpoint};
use acr_auth_core::credentials::{
    AssumeRoleProvider, Credentials, CredentialsUriProvider, EcsMetadataProvider,
    ProvideCredentials, ProviderEnv, METADATA_ENDPOINT_ENV,
};
use acr_auth_core::http::RetryPolicy;
use acr_auth_core::{Error, ErrorKind};

/// A loopback HTTP/1.1 server answering each request with `answer(method, path)` =
/// `(status, body)`, on its own thread for the life of the test process. Returns its base URL.
fn serve(answer: impl Fn(&str, &str) -> (u16, String) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let target = parts.next().unwrap_or_default();
            let path = target.split('?').next().unwrap_or_default().to_owned();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            // Read the request body so the client never sees a reset before our answer.
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, text) = answer(&method, &path);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    base
}

const SECRET: &str = "hostile-test-secret";
const TOKEN: &str = "CAIShostileSecurityToken";

/// An ECS-metadata / credentials-URI body with `expiration`.
fn credentials_body(expiration: &str) -> String {
    serde_json::json!({
        "Code": "Success",
        "AccessKeyId": "STS.hostile",
        "AccessKeySecret": SECRET,
        "SecurityToken": TOKEN,
        "Expiration": expiration,
    })
    .to_string()
}

/// Expirations that name no time from 1970 to 9999: a leap second after the last second of
/// 9999, a five-digit year, year 10000 once the offset is applied, and before 1970.
const ABSURD_EXPIRATIONS: [&str; 4] = [
    "9999-12-31T23:59:60Z",
    "99999-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "1969-12-31T23:59:59Z",
];

fn assert_bad_expiration(e: &Error, context: &str, expiration: &str) {
    assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{context}: field Expiration {expiration:?} is not an ISO 8601 time from \
             1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
        )
    );
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn acr_expire_times_past_year_9999_are_typed_errors() {
    for (personal, body) in [
        (
            false,
            r#"{"TempUsername":"u","AuthorizationToken":"p","ExpireTime":9223372036854775807}"#,
        ),
        (
            true,
            r#"{"data":{"tempUserName":"u","authorizationToken":"p","expireDate":253402300800000}}"#,
        ),
    ] {
        let base = serve(move |_, _| (200, body.to_owned()));
        let client = AcrClient::builder("cn-hangzhou")
            .endpoint(Endpoint::Url(base))
            .credentials(Credentials::new("LTAIhostile", SECRET))
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let e = if personal {
            client.get_personal_token().await
        } else {
            client.get_authorization_token("cri-hostile").await
        }
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{e}");
        let want = if personal {
            "field expireDate is 253402300800000 ms after the Unix epoch, later than 9999-12-31T23:59:59Z"
        } else {
            "field ExpireTime is 9223372036854775807 ms after the Unix epoch, later than 9999-12-31T23:59:59Z"
        };
        assert_eq!(e.message(), want);
    }
}

#[tokio::test]
async fn credentials_uri_with_absurd_expiration() {
    for expiration in ABSURD_EXPIRATIONS {
        let body = credentials_body(expiration);
        let base = serve(move |_, _| (200, body.clone()));
        let env = ProviderEnv::from_vars([("", "")]);
        let e = CredentialsUriProvider::new(&format!("{base}/creds"), &env)
            .unwrap()
            .provide_credentials()
            .await
            .unwrap_err();
        assert_bad_expiration(&e, "credentials URI", expiration);
    }
}

#[tokio::test]
async fn ecs_metadata_with_absurd_expiration() {
    for expiration in ABSURD_EXPIRATIONS {
        let body = credentials_body(expiration);
        let base = serve(move |method, path| match (method, path) {
            ("PUT", "/latest/api/token") => (200, "session-token".to_owned()),
            (_, "/latest/meta-data/ram/security-credentials/") => (200, "Role".to_owned()),
            (_, "/latest/meta-data/ram/security-credentials/Role") => (200, body.clone()),
            _ => (404, String::new()),
        });
        let env = ProviderEnv::from_vars([(METADATA_ENDPOINT_ENV, base.as_str())]);
        let e = EcsMetadataProvider::from_env(&env)
            .unwrap()
            .provide_credentials()
            .await
            .unwrap_err();
        assert_bad_expiration(&e, "ECS metadata", expiration);
    }
}

#[tokio::test]
async fn sts_assume_role_with_absurd_expiration() {
    for expiration in ABSURD_EXPIRATIONS {
        let body = serde_json::json!({
            "RequestId": "r",
            "Credentials": {
                "AccessKeyId": "STS.hostile",
                "AccessKeySecret": SECRET,
                "SecurityToken": TOKEN,
                "Expiration": expiration,
            },
        })
        .to_string();
        let base = serve(move |_, _| (200, body.clone()));
        let source: Arc<dyn ProvideCredentials> =
            Arc::new(Credentials::new("LTAIhostile", "source-secret"));
        let e = AssumeRoleProvider::builder(source, "acs:ram::1234567890:role/acr-puller")
            .sts_endpoint(&base)
            .env(ProviderEnv::from_vars([("", "")]))
            .build()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap_err();
        assert_bad_expiration(&e, "STS AssumeRole", expiration);
        assert!(!format!("{e} {e:?}").contains("source-secret"), "{e}");
    }
}

#[tokio::test]
async fn bare_http_error_names_its_status_once() {
    let base = serve(|_, _| (501, "<html>Not Implemented</html>".to_owned()));
    let e = AcrClient::builder("cn-hangzhou")
        .endpoint(Endpoint::Url(base))
        .credentials(Credentials::new("LTAIhostile", SECRET))
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
        .get_personal_token()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Api);
    assert_eq!(
        e.to_string(),
        "ACR GET /tokens: HTTP 501: the response body is not Alibaba's error JSON"
    );
}
