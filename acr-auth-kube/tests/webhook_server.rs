//! The admission webhook's HTTPS server under hostile or broken clients: a huge announced body is
//! refused before it is read, a slow body and dripping headers are cut, and connections beyond
//! the cap are closed at once. Raw TLS connections (tokio-rustls) so each misbehaviour is exact.

use std::sync::Arc;
use std::time::Duration;

use acr_auth_kube::webhook::{self, LiveContext, ServerLimits, WebhookCertificate};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::client::TlsStream;

fn limits() -> ServerLimits {
    let mut l = ServerLimits::default();
    l.handshake_timeout = Duration::from_secs(2);
    l.header_timeout = Duration::from_secs(1);
    l.body_timeout = Duration::from_secs(1);
    l.max_body_bytes = 4096;
    l.max_connections = 4;
    l
}

struct Server {
    addr: std::net::SocketAddr,
    connector: tokio_rustls::TlsConnector,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn server() -> Server {
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    let cert = WebhookCertificate::generate(&[], &["127.0.0.1".parse().unwrap()], now).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, _) = webhook::serve_with_limits(
        "127.0.0.1:0".parse().unwrap(),
        &cert,
        Arc::new(LiveContext::default()),
        limits(),
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use base64::Engine as _;
    let der: String = cert
        .ca_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            base64::engine::general_purpose::STANDARD
                .decode(der)
                .unwrap(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Server {
        addr,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        stop: Some(stop),
    }
}

impl Server {
    async fn connect(&self) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        self.connector.connect(name, tcp).await
    }
}

/// Reads until the server closes the connection (or `within` passes: then `None`).
async fn read_until_closed(
    conn: &mut TlsStream<tokio::net::TcpStream>,
    within: Duration,
) -> Option<String> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let done = tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    done.ok()
        .map(|()| String::from_utf8_lossy(&all).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_huge_body_is_refused_before_it_is_read() {
    let s = server().await;
    let mut conn = s.connect().await.unwrap();
    conn.write_all(
        b"POST /mutate-serviceaccounts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000000000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("an answer without sending the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_and_a_large_chunked_body_refused() {
    let s = server().await;
    let mut conn = s.connect().await.unwrap();
    conn.write_all(
        b"POST /mutate-serviceaccounts HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"api",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut conn, Duration::from_secs(10))
        .await
        .expect("the server answers and closes");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let mut conn = s.connect().await.unwrap();
    let mut request =
        b"POST /mutate-serviceaccounts HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        request.extend_from_slice(b"800\r\n");
        request.extend_from_slice(&[b'a'; 0x800]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&request).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dripping_header_bytes_is_cut() {
    let s = server().await;
    let mut conn = s.connect().await.unwrap();
    let drip = async {
        for b in b"POST /mutate-serviceaccounts HTTP/1.1\r\nhost: x\r\nx-slow: "
            .iter()
            .cycle()
        {
            if conn.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The server closes the connection after its header timeout; the drip then fails.
    tokio::time::timeout(Duration::from_secs(15), drip)
        .await
        .expect("the server never closed a connection dripping its headers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed() {
    let s = server().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(s.connect().await.unwrap());
    }
    // The fifth is accepted by the kernel and closed by the server: no TLS session.
    let fifth = s.connect().await;
    assert!(fifth.is_err(), "a fifth connection was served");
    // A slot frees up: a new connection is served again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = s.connect().await.expect("a connection after one closed");
    again
        .write_all(
            b"POST /mutate-serviceaccounts HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = again.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"),
        "a malformed review is answered 400"
    );
}

/// The webhook answers with the configuration the controller handed over, not with anything it
/// parses itself: a request never reads the ConfigMap.
#[test]
fn the_live_context_answers_with_the_accepted_configuration() {
    use acr_auth_core::config::HelperConfig;
    use webhook::ReviewContext as _;

    let context = LiveContext::default();
    assert!(context.config().service_accounts.contains("default"));
    assert!(!context.config().service_accounts.contains("builder"));
    let accepted = HelperConfig::from_configmap([("service-account", "builder")])
        .unwrap()
        .config;
    context.set_config(Arc::new(accepted));
    assert!(context.config().service_accounts.contains("builder"));
    assert!(!context.config().service_accounts.contains("default"));
}
