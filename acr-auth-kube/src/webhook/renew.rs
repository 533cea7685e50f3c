//! The webhook certificate in the cluster: kept in one Secret that every replica shares
//! ([`ensure_certificate`]), and kept fresh in running servers ([`keep_certificate`],
//! [`keep_mounted_certificate`]), with a new CA published in `caBundle` before it is served.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use super::cert::{
    pem_blocks, validate_names, CertificateError, ServingCertificate, WebhookCertificate,
};
use super::CERT_SECRET;

/// The webhook certificate kept in Secret `namespace/CERT_SECRET`, good for `dns_names`/`ips`
/// at `now`: the one found when it is; else re-issued (by the same CA when `ca.key` is there)
/// and written back, guarded by the Secret's resourceVersion; generated and created when there
/// is none. When another replica writes first, its certificate is read and used.
pub async fn ensure_certificate(
    client: &kube::Client,
    namespace: &str,
    dns_names: &[String],
    ips: &[std::net::IpAddr],
    now: SystemTime,
) -> Result<WebhookCertificate, CertificateError> {
    ensure_certificate_held(client, namespace, dns_names, ips, now, None).await
}

/// [`ensure_certificate`] by a process that serves `held`: when the Secret is gone (deleted by
/// `cleanup` or by hand), it is written again from `held` (re-issued by the same CA when due)
/// rather than from a new CA the API server does not trust yet.
pub async fn ensure_certificate_held(
    client: &kube::Client,
    namespace: &str,
    dns_names: &[String],
    ips: &[std::net::IpAddr],
    now: SystemTime,
    held: Option<&WebhookCertificate>,
) -> Result<WebhookCertificate, CertificateError> {
    validate_names(dns_names)?;
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let api_error = |e: kube::Error| {
        CertificateError::Generate(format!("Secret {namespace}/{CERT_SECRET}: {e}"))
    };
    // A conflict means another replica wrote meanwhile: read again (a few times at most).
    for _ in 0..5 {
        let Some(existing) = api.get_opt(CERT_SECRET).await.map_err(api_error)? else {
            let cert = match held.filter(|h| h.has_ca_key()) {
                Some(h) if h.renewal_reason(dns_names, ips, now).is_none() => h.clone(),
                Some(h) => h.renewed(dns_names, ips, now)?,
                None => WebhookCertificate::generate(dns_names, ips, now)?,
            };
            let secret: Secret = serde_json::from_value(cert.secret_body(namespace))
                .map_err(|e| CertificateError::Generate(e.to_string()))?;
            match api.create(&kube::api::PostParams::default(), &secret).await {
                Ok(_) => {
                    tracing::info!(%namespace, name = CERT_SECRET, "stored the webhook certificate");
                    return Ok(cert);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(api_error(e)),
            }
        };
        if !crate::plan::has_managed_label(&existing.metadata) {
            return Err(CertificateError::Invalid(format!(
                "Secret {namespace}/{CERT_SECRET} exists and was not created by aliyun-acr-credential-helper; remove it, or mount a certificate with --webhook-cert-dir"
            )));
        }
        let (renewed, reason) = match WebhookCertificate::from_secret(&existing) {
            Ok(current) => match current.renewal_reason(dns_names, ips, now) {
                None => return Ok(current),
                Some(reason) => (current.renewed(dns_names, ips, now)?, reason),
            },
            // Unreadable (edited by hand, say): replaced by a new one.
            Err(e) => (
                WebhookCertificate::generate(dns_names, ips, now)?,
                format!("the Secret is unusable: {e}"),
            ),
        };
        match patch_secret(&api, &existing, &renewed, namespace, &reason).await? {
            Some(c) => return Ok(c),
            None => continue,
        }
    }
    Err(CertificateError::Generate(format!(
        "Secret {namespace}/{CERT_SECRET} kept changing while it was being renewed"
    )))
}

/// Writes `renewed` into `existing` with a JSON merge patch guarded by its resourceVersion
/// (other keys, labels and annotations stay; RBAC `patch`); `Ok(None)` on a conflict.
async fn patch_secret(
    api: &kube::Api<Secret>,
    existing: &Secret,
    renewed: &WebhookCertificate,
    namespace: &str,
    reason: &str,
) -> Result<Option<WebhookCertificate>, CertificateError> {
    let mut patch = renewed.merge_patch();
    patch["metadata"]["resourceVersion"] = json!(existing.metadata.resource_version);
    match api
        .patch(
            CERT_SECRET,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(%namespace, name = CERT_SECRET, %reason, same_ca = renewed.ca_pem.starts_with(&existing_ca_first(existing)), "renewed the webhook certificate");
            Ok(Some(renewed.clone()))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(CertificateError::Generate(format!(
            "Secret {namespace}/{CERT_SECRET}: {e}"
        ))),
    }
}

fn existing_ca_first(s: &Secret) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .and_then(|p| pem_blocks(&p).into_iter().next())
        .unwrap_or_default()
}

/// Keeps `serving` in line with the certificate Secret: every `interval` (and at once), the
/// Secret is read through [`ensure_certificate`] for the DNS names and IP addresses given, which re-issues it when it is due (the first
/// replica to see that writes it; the others read it), and a certificate that changed is served
/// from the next handshake on. Runs until `shutdown`.
pub async fn keep_certificate(
    client: kube::Client,
    namespace: String,
    (dns_names, ips): (Vec<String>, Vec<std::net::IpAddr>),
    serving: ServingCertificate,
    now: impl Fn() -> SystemTime + Send,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let held = serving.current();
        let mut wait = interval;
        match ensure_certificate_held(&client, &namespace, &dns_names, &ips, now(), Some(&held))
            .await
        {
            Ok(c) if c != held => {
                let same_ca = pem_blocks(&c.ca_pem).first() == pem_blocks(&held.ca_pem).first();
                if same_ca || trusted_by_api_server(&client, &c).await {
                    match serving.replace(&c) {
                        Ok(()) => tracing::info!("serving the renewed webhook certificate"),
                        Err(e) => {
                            tracing::error!(error = %e, "the renewed webhook certificate cannot be served; keeping the current one")
                        }
                    }
                } else {
                    // A new CA: published first (the leader writes it into caBundle, next to
                    // the old one), served once the API server trusts it.
                    serving.stage(&c);
                    tracing::info!("a new webhook CA is published; its certificate is served once the webhook configuration trusts it");
                    wait = interval.min(Duration::from_secs(10));
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not check the webhook certificate; will try again")
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Whether the MutatingWebhookConfiguration's `caBundle` (if there is one) trusts `next`'s CA.
async fn trusted_by_api_server(client: &kube::Client, next: &WebhookCertificate) -> bool {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let api: kube::Api<MutatingWebhookConfiguration> = kube::Api::all(client.clone());
    let Some(new_ca) = pem_blocks(&next.ca_pem).into_iter().next() else {
        return false;
    };
    match api.get_opt(super::CONFIGURATION_NAME).await {
        // No configuration: nobody calls the webhook yet.
        Ok(None) => true,
        Ok(Some(c)) => c.webhooks.unwrap_or_default().iter().all(|w| {
            w.client_config
                .ca_bundle
                .as_ref()
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .is_some_and(|bundle| {
                    pem_blocks(&bundle)
                        .iter()
                        .any(|b| b.trim() == new_ca.trim())
                })
        }),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the webhook configuration");
            false
        }
    }
}

/// Keeps `serving` in line with certificate files mounted in `dir` (`ca.crt`, `tls.crt`,
/// `tls.key`, as cert-manager or a mounted Secret provides them, renewed by their owner): read
/// every `interval`; a changed, valid certificate is served from the next handshake on.
pub async fn keep_mounted_certificate(
    dir: std::path::PathBuf,
    serving: ServingCertificate,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match read_mounted(&dir) {
            Ok(c) if c != serving.current() => match serving.replace(&c) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "serving the renewed webhook certificate")
                }
                Err(e) => {
                    tracing::error!(error = %e, "the new webhook certificate cannot be served; keeping the current one")
                }
            },
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not read the mounted webhook certificate; keeping the current one")
            }
        }
    }
}

/// Reads `ca.crt`, `tls.crt` and `tls.key` from `dir`.
pub fn read_mounted(dir: &std::path::Path) -> Result<WebhookCertificate, CertificateError> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| {
            CertificateError::Invalid(format!(
                "webhook certificate {}: {e}",
                dir.join(f).display()
            ))
        })
    };
    WebhookCertificate::from_pem(read("ca.crt")?, read("tls.crt")?, read("tls.key")?)
}
