//! The webhook certificate over time, against the fake API server: a certificate from an earlier
//! run that does not name the host the API server is told to call is re-issued (by the same CA
//! once its key is kept) and shared by every replica; a running server picks up a renewal
//! without a restart, and clients that trust the CA keep connecting.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acr_auth_kube::webhook::{
    self, LiveContext, ServerLimits, ServingCertificate, WebhookCertificate,
};
use acr_auth_testkit::kube::FakeKube;
use common::*;
use serde_json::json;

const DAY: u64 = 86400;

fn dns() -> Vec<String> {
    vec!["aliyun-acr-credential-helper.kube-system.svc".to_owned()]
}

fn localhost() -> Vec<std::net::IpAddr> {
    vec!["127.0.0.1".parse().unwrap()]
}

fn cert_secret(kube: &FakeKube) -> serde_json::Value {
    kube.get("secrets", "kube-system", webhook::CERT_SECRET)
        .expect("the certificate Secret")
}

fn data(secret: &serde_json::Value, key: &str) -> Option<String> {
    use base64::Engine as _;
    let b = secret["data"][key].as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_earlier_run_that_misses_the_url_host_is_reissued_and_shared() {
    let kube = FakeKube::start().await.unwrap();
    let client = client(&kube, "controller");
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    // An earlier run (an older version: no CA key) named only the Service.
    let earlier = WebhookCertificate::generate(&dns(), &[], now).unwrap();
    assert_eq!(
        post(
            &kube,
            "/api/v1/namespaces/kube-system/secrets",
            json!({"metadata": {"name": webhook::CERT_SECRET,
                                "labels": {"app.kubernetes.io/managed-by": "aliyun-acr-credential-helper",
                                           "backup.example.com/include": "true"}},
                   "type": "kubernetes.io/tls",
                   "stringData": {"ca.crt": earlier.ca_pem, "tls.crt": earlier.cert_pem,
                                  "tls.key": earlier.key_pem()}}),
        )
        .await,
        201
    );
    // This run is told to call https://127.0.0.1:.../ .
    let c = webhook::ensure_certificate(&client, "kube-system", &dns(), &localhost(), now)
        .await
        .unwrap();
    assert_eq!(c.renewal_reason(&dns(), &localhost(), now), None);
    assert_ne!(c.cert_pem, earlier.cert_pem);
    let secret = cert_secret(&kube);
    assert_eq!(
        data(&secret, "tls.crt").as_deref(),
        Some(c.cert_pem.as_str())
    );
    assert!(
        data(&secret, "ca.key").is_some(),
        "the CA key is kept from now on"
    );
    assert_eq!(
        secret["metadata"]["labels"]["backup.example.com/include"],
        "true"
    );
    // The old CA stays in the bundle after the new one.
    assert!(c.ca_pem.ends_with(earlier.ca_pem.trim_start()));

    // Another replica (or a restart) with the same settings uses it as it is: no rewrite.
    let updates = kube.count("update", Some("secrets"));
    let again = webhook::ensure_certificate(&client, "kube-system", &dns(), &localhost(), now)
        .await
        .unwrap();
    assert_eq!(again, c);
    assert_eq!(kube.count("update", Some("secrets")), updates);

    // A year on, the serving certificate is re-issued by the same CA: the caBundle stays.
    let later = now + Duration::from_secs(300 * DAY);
    let renewed = webhook::ensure_certificate(&client, "kube-system", &dns(), &localhost(), later)
        .await
        .unwrap();
    assert_eq!(renewed.ca_pem, c.ca_pem);
    assert_ne!(renewed.cert_pem, c.cert_pem);
    assert_eq!(renewed.renewal_reason(&dns(), &localhost(), later), None);
}

/// The certificate (DER) a TLS handshake with `addr` presents, trusting `ca_pem`.
async fn presented(addr: std::net::SocketAddr, ca_pem: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

fn leaf_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_presents_the_renewed_certificate_without_a_restart() {
    let kube = FakeKube::start().await.unwrap();
    let client = client(&kube, "controller");
    // The certificate was issued 300 days ago: 65 days left, so it is due (90 days ahead).
    let start = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock)
        - Duration::from_secs(300 * DAY);
    let first = webhook::ensure_certificate(&client, "kube-system", &dns(), &localhost(), start)
        .await
        .unwrap();
    let serving = ServingCertificate::new(&first).unwrap();
    let (stop, _) = tokio::sync::watch::channel(false);
    let stopped = |mut s: tokio::sync::watch::Receiver<bool>| async move {
        let _ = s.wait_for(|v| *v).await;
    };
    let (addr, server) = webhook::serve_certificate(
        "127.0.0.1:0".parse().unwrap(),
        serving.clone(),
        Arc::new(LiveContext::default()),
        ServerLimits::default(),
        stopped(stop.subscribe()),
    )
    .await
    .unwrap();
    assert_eq!(
        presented(addr, &first.ca_pem).await.unwrap(),
        leaf_der(&first.cert_pem)
    );

    // The clock the refresher reads, moved by the test: first still 300 days ago, then now.
    let offset = Arc::new(AtomicU64::new(0));
    let clock = offset.clone();
    let keeper = tokio::spawn(webhook::keep_certificate(
        client.clone(),
        "kube-system".to_owned(),
        (dns(), localhost()),
        serving.clone(),
        move || start + Duration::from_secs(clock.load(Ordering::SeqCst)),
        Duration::from_millis(100),
        stopped(stop.subscribe()),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(serving.current(), first, "nothing to renew yet");

    offset.store(300 * DAY, Ordering::SeqCst);
    eventually("the renewed certificate served", || {
        serving.current() != first
    })
    .await;
    let renewed = serving.current();
    assert_eq!(renewed.ca_pem, first.ca_pem);
    let secret = cert_secret(&kube);
    assert_eq!(
        data(&secret, "tls.crt").as_deref(),
        Some(renewed.cert_pem.as_str())
    );
    // A new handshake gets the new certificate, trusted through the unchanged CA.
    assert_eq!(
        presented(addr, &first.ca_pem).await.unwrap(),
        leaf_der(&renewed.cert_pem)
    );
    let _ = stop.send(true);
    keeper.await.unwrap();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ca_is_published_before_it_is_served_and_a_deleted_secret_is_restored_from_memory() {
    use base64::Engine as _;
    let kube = FakeKube::start().await.unwrap();
    let client = client(&kube, "controller");
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    // An older version's Secret (no CA key), and the configuration trusting its CA.
    let old = WebhookCertificate::generate(&dns(), &[], now).unwrap();
    assert_eq!(
        post(
            &kube,
            "/api/v1/namespaces/kube-system/secrets",
            json!({"metadata": {"name": webhook::CERT_SECRET,
                                "labels": {"app.kubernetes.io/managed-by": "aliyun-acr-credential-helper"}},
                   "type": "kubernetes.io/tls",
                   "stringData": {"ca.crt": old.ca_pem, "tls.crt": old.cert_pem, "tls.key": old.key_pem()}}),
        )
        .await,
        201
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let configuration = |bundle: &str| {
        json!({"metadata": {"name": webhook::CONFIGURATION_NAME},
               "webhooks": [{"name": webhook::WEBHOOK_NAME, "admissionReviewVersions": ["v1"],
                             "sideEffects": "None",
                             "clientConfig": {"url": "https://127.0.0.1:9/x", "caBundle": b64(bundle)}}]})
    };
    assert_eq!(
        post(
            &kube,
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            configuration(&old.ca_pem),
        )
        .await,
        201
    );
    let serving = ServingCertificate::new(&old).unwrap();
    let (stop, _) = tokio::sync::watch::channel(false);
    let stopped = |mut s: tokio::sync::watch::Receiver<bool>| async move {
        let _ = s.wait_for(|v| *v).await;
    };
    // This run also needs 127.0.0.1: a re-issue, and without the CA key a new CA.
    let keeper = tokio::spawn(webhook::keep_certificate(
        client.clone(),
        "kube-system".to_owned(),
        (dns(), localhost()),
        serving.clone(),
        move || now,
        Duration::from_millis(100),
        stopped(stop.subscribe()),
    ));
    eventually("the new CA staged", || serving.ca_pem() != old.ca_pem).await;
    let staged = serving.ca_pem();
    assert!(
        staged.contains(old.ca_pem.trim()),
        "the old CA stays in the bundle"
    );
    // Still serving the old certificate: the API server does not trust the new CA yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(serving.current(), old);

    // The leader writes the bundle into caBundle: then the new certificate is served.
    let status = common::patch(
        &kube,
        &format!(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{}",
            webhook::CONFIGURATION_NAME
        ),
        json!({"webhooks": configuration(&staged)["webhooks"]}),
    )
    .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    while serving.current() == old {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never switched"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new = serving.current();
    assert_eq!(new.renewal_reason(&dns(), &localhost(), now), None);
    assert!(new.has_ca_key());

    // `cleanup` (or a person) deletes the Secret: it comes back from memory, same CA.
    let deleted = acr_auth_testkit::http_client()
        .delete(format!(
            "{}/api/v1/namespaces/kube-system/secrets/{}",
            kube.url(),
            webhook::CERT_SECRET
        ))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    eventually("the Secret restored", || {
        kube.get("secrets", "kube-system", webhook::CERT_SECRET)
            .is_some()
    })
    .await;
    let restored = cert_secret(&kube);
    assert_eq!(
        data(&restored, "ca.crt").as_deref(),
        Some(new.ca_pem.as_str())
    );
    assert_eq!(serving.current(), new);
    let _ = stop.send(true);
    keeper.await.unwrap();
}

/// Posts a certificate Secret as an earlier run (or someone else) left it.
async fn seed_secret(kube: &FakeKube, labels: serde_json::Value, data: serde_json::Value) {
    assert_eq!(
        post(
            kube,
            "/api/v1/namespaces/kube-system/secrets",
            json!({"metadata": {"name": webhook::CERT_SECRET, "labels": labels},
                   "type": "kubernetes.io/tls", "stringData": data}),
        )
        .await,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_a_garbage_ca_key_and_a_failing_api_server_lose_nothing() {
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    let ours = json!({"app.kubernetes.io/managed-by": "aliyun-acr-credential-helper"});

    // A Secret of that name that is not ours: refused by name, left as it was.
    let kube = FakeKube::start().await.unwrap();
    let client = common::client(&kube, "controller");
    seed_secret(
        &kube,
        json!({"team": "platform"}),
        json!({"tls.crt": "theirs"}),
    )
    .await;
    let e = webhook::ensure_certificate(&client, "kube-system", &dns(), &localhost(), now)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("not created by aliyun-acr-credential-helper"),
        "{e}"
    );
    assert_eq!(
        data(&cert_secret(&kube), "tls.crt").as_deref(),
        Some("theirs")
    );

    // A garbage ca.key (edited by hand): the renewal makes a new CA instead of failing for ever.
    let kube = FakeKube::start().await.unwrap();
    let client = common::client(&kube, "controller");
    let earlier = WebhookCertificate::generate(&dns(), &[], now).unwrap();
    seed_secret(
        &kube,
        ours.clone(),
        json!({"ca.crt": earlier.ca_pem, "tls.crt": earlier.cert_pem,
               "tls.key": earlier.key_pem(), "ca.key": "not a key"}),
    )
    .await;
    let c = webhook::ensure_certificate(&client, "kube-system", &dns(), &localhost(), now)
        .await
        .unwrap();
    assert_eq!(c.renewal_reason(&dns(), &localhost(), now), None);
    assert!(c.has_ca_key());
    assert!(
        c.ca_pem.ends_with(earlier.ca_pem.trim_start()),
        "old CA kept second"
    );

    // The API server fails the write (500): an error, the Secret as it was; then it works.
    let before = cert_secret(&kube);
    let later = now + Duration::from_secs(300 * DAY);
    kube.fail_next("patch", Some("secrets"), 1, 500);
    assert!(
        webhook::ensure_certificate(&client, "kube-system", &dns(), &localhost(), later)
            .await
            .is_err()
    );
    assert_eq!(cert_secret(&kube)["data"], before["data"]);
    let renewed = webhook::ensure_certificate(&client, "kube-system", &dns(), &localhost(), later)
        .await
        .unwrap();
    assert_eq!(renewed.ca_pem, c.ca_pem);
    assert_ne!(renewed.cert_pem, c.cert_pem);
}
