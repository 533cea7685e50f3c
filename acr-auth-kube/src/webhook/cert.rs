//! The webhook's certificate: a CA and a serving certificate it signed, kept in one Secret that
//! every replica shares (never pruned), re-issued before it expires or when it does not name the
//! host the API server is told to call, and swapped into running servers without a restart.
//!
//! - The CA lives ten years ([`CA_VALIDITY`]) and its key is kept in the Secret (`ca.key`), so
//!   the serving certificate ([`SERVING_VALIDITY`], one year) is re-issued by the same CA and the
//!   `caBundle` does not change.
//! - A serving certificate within [`RENEW_BEFORE`] of its end, or one that does not name every
//!   host required, is re-issued ([`WebhookCertificate::renewal_reason`]).
//! - A CA too close to its end (or a Secret without `ca.key`, from an older version) is replaced:
//!   `ca.crt` then holds the new CA followed by the old one, so servers still presenting the old
//!   certificate stay trusted while every replica reloads.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use super::CERT_SECRET;

/// How long a generated CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);
/// How long a serving certificate is valid.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A serving certificate is re-issued when it ends within this.
pub const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);
/// The annotation on the certificate Secret with the CA's end (RFC 3339).
pub const CA_NOT_AFTER_ANNOTATION: &str = "acr-credential-helper.alibabacloud.com/ca-not-after";

const CA_COMMON_NAME: &str = "aliyun-acr-credential-helper webhook CA";

/// A CA and the serving certificate it signed, in PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookCertificate {
    /// The CA certificate(s) (`caBundle`, `ca.crt`): the current CA first, then, during a CA
    /// rotation, the previous one.
    pub ca_pem: String,
    /// The serving certificate (`tls.crt`).
    pub cert_pem: String,
    /// The serving key (`tls.key`).
    key_pem: String,
    /// The CA's key (`ca.key`), when this process or the Secret has it.
    ca_key_pem: Option<String>,
    /// When the CA ends, when known.
    ca_not_after: Option<SystemTime>,
}

impl std::fmt::Debug for WebhookCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCertificate")
            .field("key_pem", &"<redacted>")
            .field(
                "ca_key_pem",
                &self.ca_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_not_after", &self.ca_not_after)
            .finish_non_exhaustive()
    }
}

/// Why a certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Generating failed.
    #[error("cannot generate the webhook certificate: {0}")]
    Generate(String),
    /// The PEM given is unusable.
    #[error("invalid webhook certificate or key: {0}")]
    Invalid(String),
    /// Binding or reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn ca_params(
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> rcgen::CertificateParams {
    use rcgen::{BasicConstraints, DnType, IsCa};
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    ca.not_before = not_before;
    ca.not_after = not_after;
    ca
}

fn leaf_params(
    dns_names: &[String],
    ips: &[std::net::IpAddr],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Result<rcgen::CertificateParams, rcgen::Error> {
    use rcgen::{DnType, SanType};
    let mut leaf = rcgen::CertificateParams::new(dns_names.to_vec())?;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    for ip in ips {
        leaf.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    leaf.distinguished_name.push(
        DnType::CommonName,
        dns_names
            .first()
            .cloned()
            .unwrap_or_else(|| "webhook".into()),
    );
    Ok(leaf)
}

fn certificates(
    pem: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, CertificateError> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::Invalid(e.to_string()))
}

impl WebhookCertificate {
    /// A new CA ([`CA_VALIDITY`]) and a serving certificate ([`SERVING_VALIDITY`]) for
    /// `dns_names` and `ips` (`<service>.<namespace>.svc` and its short forms; the host of
    /// `--webhook-url`).
    pub fn generate(
        dns_names: &[String],
        ips: &[std::net::IpAddr],
        now: SystemTime,
    ) -> Result<Self, CertificateError> {
        let err = |e: rcgen::Error| CertificateError::Generate(e.to_string());
        let ca_key = rcgen::KeyPair::generate().map_err(err)?;
        let not_before = time::OffsetDateTime::from(now) - time::Duration::hours(1);
        // Whole seconds: the end is also kept as an RFC 3339 annotation.
        let ca_end = whole_seconds(now + CA_VALIDITY);
        let ca_not_after = time::OffsetDateTime::from(ca_end);
        let ca_cert = ca_params(not_before, ca_not_after)
            .self_signed(&ca_key)
            .map_err(err)?;
        let mut c = Self {
            ca_pem: ca_cert.pem(),
            cert_pem: String::new(),
            key_pem: String::new(),
            ca_key_pem: Some(ca_key.serialize_pem()),
            ca_not_after: Some(ca_end),
        };
        c.issue_serving(dns_names, ips, now)?;
        Ok(c)
    }

    /// Signs a new serving certificate with this CA (whose key must be known).
    fn issue_serving(
        &mut self,
        dns_names: &[String],
        ips: &[std::net::IpAddr],
        now: SystemTime,
    ) -> Result<(), CertificateError> {
        let err = |e: rcgen::Error| CertificateError::Generate(e.to_string());
        let (Some(ca_key_pem), Some(ca_not_after)) = (&self.ca_key_pem, self.ca_not_after) else {
            return Err(CertificateError::Generate("the CA key is not known".into()));
        };
        let ca_key = rcgen::KeyPair::from_pem(ca_key_pem).map_err(err)?;
        let not_before = time::OffsetDateTime::from(now) - time::Duration::hours(1);
        // The issuer: the same name and key as the stored CA, which is what a signature and
        // the chain to it depend on.
        let issuer = rcgen::Issuer::new(
            ca_params(not_before, time::OffsetDateTime::from(ca_not_after)),
            ca_key,
        );
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let not_after = (now + SERVING_VALIDITY).min(ca_not_after);
        let cert = leaf_params(
            dns_names,
            ips,
            not_before,
            time::OffsetDateTime::from(not_after),
        )
        .map_err(err)?
        .signed_by(&key, &issuer)
        .map_err(err)?;
        self.cert_pem = cert.pem();
        self.key_pem = key.serialize_pem();
        Ok(())
    }

    /// A certificate from PEM (as mounted from a Secret: `ca.crt`, `tls.crt`, `tls.key`).
    pub fn from_pem(
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
    ) -> Result<Self, CertificateError> {
        let c = Self {
            ca_pem,
            cert_pem,
            key_pem,
            ca_key_pem: None,
            ca_not_after: None,
        };
        c.certified_key()?;
        Ok(c)
    }

    /// The key, PEM (it is secret: store it only in a Secret).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Whether the CA's key is known (the serving certificate can be re-issued by the same CA).
    pub fn has_ca_key(&self) -> bool {
        self.ca_key_pem.is_some()
    }

    fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>, CertificateError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::PrivateKeyDer;
        let invalid = |e: &dyn std::fmt::Display| CertificateError::Invalid(e.to_string());
        let certs = certificates(&self.cert_pem)?;
        if certs.is_empty() {
            return Err(CertificateError::Invalid(
                "no certificate in tls.crt".into(),
            ));
        }
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| invalid(&e))?;
        let key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| invalid(&e))?;
        let certified = rustls::sign::CertifiedKey::new(certs, key);
        certified.keys_match().map_err(|e| invalid(&e))?;
        Ok(Arc::new(certified))
    }

    /// The rustls server configuration serving this certificate.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, CertificateError> {
        ServingCertificate::new(self)?.server_config()
    }

    /// Why this certificate must be re-issued to serve `dns_names` and `ips` from `now`, or
    /// `None` when it is good: it must chain to `ca.crt`, still be valid [`RENEW_BEFORE`] from
    /// now, and name every host.
    pub fn renewal_reason(
        &self,
        dns_names: &[String],
        ips: &[std::net::IpAddr],
        now: SystemTime,
    ) -> Option<String> {
        use rustls::pki_types::{ServerName, UnixTime};
        let check = || -> Result<Option<String>, String> {
            let leaf = certificates(&self.cert_pem).map_err(|e| e.to_string())?;
            let leaf = leaf.first().ok_or("no certificate in tls.crt")?;
            let cas = certificates(&self.ca_pem).map_err(|e| e.to_string())?;
            let anchors = cas
                .iter()
                .map(webpki::anchor_from_trusted_cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("ca.crt: {e}"))?;
            let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("tls.crt: {e}"))?;
            let at = (now + RENEW_BEFORE)
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_err(|e| e.to_string())?;
            if let Err(e) = ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &[],
                UnixTime::since_unix_epoch(at),
                webpki::KeyUsage::server_auth(),
                None,
                None,
            ) {
                return Ok(Some(format!(
                    "the serving certificate is not valid {} days from now ({e:?})",
                    RENEW_BEFORE.as_secs() / 86400
                )));
            }
            for name in dns_names {
                let server =
                    ServerName::try_from(name.as_str()).map_err(|e| format!("{name}: {e}"))?;
                if ee.verify_is_valid_for_subject_name(&server).is_err() {
                    return Ok(Some(format!(
                        "the serving certificate does not name {name}"
                    )));
                }
            }
            for ip in ips {
                let server = ServerName::IpAddress((*ip).into());
                if ee.verify_is_valid_for_subject_name(&server).is_err() {
                    return Ok(Some(format!("the serving certificate does not name {ip}")));
                }
            }
            Ok(None)
        };
        check().unwrap_or_else(|e| Some(format!("the certificate cannot be read: {e}")))
    }

    /// A certificate that serves `dns_names` and `ips` from `now`: a new serving certificate
    /// from the same CA when its key is known and it has at least a serving lifetime left, else
    /// a new CA (with the old one kept after it in `ca.crt`) and serving certificate.
    pub fn renewed(
        &self,
        dns_names: &[String],
        ips: &[std::net::IpAddr],
        now: SystemTime,
    ) -> Result<Self, CertificateError> {
        let ca_lasts = self
            .ca_not_after
            .is_some_and(|end| end > now + SERVING_VALIDITY);
        if self.has_ca_key() && ca_lasts {
            let mut c = self.clone();
            // A CA key that does not parse, or does not belong to `ca.crt`, gives a certificate
            // that does not chain: checked here, and then a new CA is made instead.
            match c.issue_serving(dns_names, ips, now) {
                Ok(()) if c.renewal_reason(dns_names, ips, now).is_none() => return Ok(c),
                Ok(()) => tracing::warn!("the stored CA key does not sign certificates that chain to ca.crt; making a new CA"),
                Err(e) => tracing::warn!(error = %e, "the stored CA key is unusable; making a new CA"),
            }
        }
        let mut c = Self::generate(dns_names, ips, now)?;
        // The previous CA (only the first: the bundle does not grow) stays trusted while
        // servers still present certificates it signed.
        if let Some(previous) = pem_blocks(&self.ca_pem).into_iter().next() {
            c.ca_pem.push_str(&previous);
        }
        Ok(c)
    }

    pub(super) fn from_secret(s: &Secret) -> Result<Self, CertificateError> {
        let field = |k: &str| {
            s.data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let required = |k: &str| {
            field(k).ok_or_else(|| {
                CertificateError::Invalid(format!("Secret {CERT_SECRET} has no {k}"))
            })
        };
        let mut c = Self::from_pem(
            required("ca.crt")?,
            required("tls.crt")?,
            required("tls.key")?,
        )?;
        c.ca_key_pem =
            field("ca.key").filter(|k| !k.trim().is_empty() && rcgen::KeyPair::from_pem(k).is_ok());
        c.ca_not_after = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CA_NOT_AFTER_ANNOTATION))
            .and_then(|t| acr_auth_core::time::parse_iso8601(t));
        if c.ca_not_after.is_none() {
            c.ca_key_pem = None;
        }
        Ok(c)
    }

    /// A JSON merge patch that writes this certificate into an existing Secret: its keys (and
    /// `ca.key` removed when it is not known) and the CA end annotation; other keys, labels and
    /// annotations stay.
    pub(super) fn merge_patch(&self) -> serde_json::Value {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        json!({
            "metadata": {
                "annotations": {CA_NOT_AFTER_ANNOTATION:
                    self.ca_not_after.map(acr_auth_core::time::format_iso8601)},
            },
            "data": {
                "ca.crt": b64(&self.ca_pem),
                "tls.crt": b64(&self.cert_pem),
                "tls.key": b64(&self.key_pem),
                "ca.key": self.ca_key_pem.as_deref().map(b64),
            },
        })
    }

    pub(super) fn secret_body(&self, namespace: &str) -> serde_json::Value {
        let mut data =
            json!({"ca.crt": self.ca_pem, "tls.crt": self.cert_pem, "tls.key": self.key_pem});
        if let Some(k) = &self.ca_key_pem {
            data["ca.key"] = json!(k);
        }
        let mut annotations = serde_json::Map::new();
        if let Some(end) = self.ca_not_after {
            annotations.insert(
                CA_NOT_AFTER_ANNOTATION.into(),
                json!(acr_auth_core::time::format_iso8601(end)),
            );
        }
        json!({
            "metadata": {"name": CERT_SECRET, "namespace": namespace,
                         "labels": {crate::plan::MANAGED_BY_LABEL: crate::plan::MANAGED_BY_VALUE},
                         "annotations": annotations},
            "type": "kubernetes.io/tls",
            "stringData": data,
        })
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Checks that every name can be put on a certificate and checked by a TLS client.
pub fn validate_names(dns_names: &[String]) -> Result<(), CertificateError> {
    for name in dns_names {
        if name.ends_with('.')
            || rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
            || name.parse::<std::net::IpAddr>().is_ok()
        {
            return Err(CertificateError::Invalid(format!(
                "{name:?} is not a DNS name a certificate can carry"
            )));
        }
    }
    Ok(())
}

/// The PEM blocks of `pem`, each with its armour.
pub(super) fn pem_blocks(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    pem.split_inclusive(END)
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .map(|b| format!("{}\n", b.trim()))
        .collect()
}

/// The certificate a running server presents, replaceable while it runs (new handshakes get
/// the new one). Clones share it.
#[derive(Clone)]
pub struct ServingCertificate {
    current: Arc<RwLock<(WebhookCertificate, Arc<rustls::sign::CertifiedKey>)>>,
    /// During a CA rotation, the bundle to publish as `caBundle` before the new certificate
    /// is served.
    staged: Arc<RwLock<Option<String>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCertificate").finish_non_exhaustive()
    }
}

impl ServingCertificate {
    /// Serves `certificate`.
    pub fn new(certificate: &WebhookCertificate) -> Result<Self, CertificateError> {
        let key = certificate.certified_key()?;
        Ok(Self {
            current: Arc::new(RwLock::new((certificate.clone(), key))),
            staged: Arc::new(RwLock::new(None)),
            changed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Publishes `next`'s CA bundle (see [`ServingCertificate::ca_pem`]) while the current
    /// certificate is still served: the first step of a CA rotation.
    pub fn stage(&self, next: &WebhookCertificate) {
        *self.staged.write().unwrap_or_else(|e| e.into_inner()) = Some(next.ca_pem.clone());
        self.changed.notify_waiters();
    }

    /// Resolves when the CA bundle to publish changes.
    pub async fn bundle_changed(&self) {
        self.changed.notified().await;
    }

    /// Serves `certificate` from the next handshake on.
    pub fn replace(&self, certificate: &WebhookCertificate) -> Result<(), CertificateError> {
        let key = certificate.certified_key()?;
        let before = self.ca_pem();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (certificate.clone(), key);
        *self.staged.write().unwrap_or_else(|e| e.into_inner()) = None;
        if self.ca_pem() != before {
            self.changed.notify_waiters();
        }
        Ok(())
    }

    /// The certificate served now.
    pub fn current(&self) -> WebhookCertificate {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The CA bundle to publish as `caBundle`: the staged one during a CA rotation, else that of
    /// the certificate served now.
    pub fn ca_pem(&self) -> String {
        if let Some(staged) = self
            .staged
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return staged;
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .ca_pem
            .clone()
    }

    /// A rustls server configuration that presents whatever this holds at each handshake.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, CertificateError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| CertificateError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(self.clone()));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl rustls::server::ResolvesServerCert for ServingCertificate {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .clone(),
        )
    }
}

/// The name a serving certificate must carry for the API server to call `url` (the host of
/// `--webhook-url`): a DNS name or an IP address.
pub fn url_host(url: &str) -> Result<(Option<String>, Option<std::net::IpAddr>), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("webhook URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "webhook URL {url:?}: the API server calls webhooks over https only"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("webhook URL {url:?} has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => (None, Some(ip)),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            validate_names(std::slice::from_ref(&name)).map_err(|e| e.to_string())?;
            (Some(name), None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn svc() -> Vec<String> {
        vec!["hook.kube-system.svc".to_owned()]
    }

    fn localhost() -> Vec<std::net::IpAddr> {
        vec!["127.0.0.1".parse().unwrap()]
    }

    #[test]
    fn a_fresh_certificate_is_good_and_becomes_due_before_it_ends() {
        let c = WebhookCertificate::generate(&svc(), &localhost(), t0()).unwrap();
        assert!(c.has_ca_key());
        assert_eq!(c.renewal_reason(&svc(), &localhost(), t0()), None);
        // 274 days in: more than 90 days left. 276 days in: less.
        assert_eq!(
            c.renewal_reason(&svc(), &localhost(), t0() + DAY * 274),
            None
        );
        let due = c.renewal_reason(&svc(), &localhost(), t0() + DAY * 276);
        assert!(due.is_some_and(|r| r.contains("not valid 90 days from now")));
        // A host it does not name.
        let other: Vec<std::net::IpAddr> = vec!["10.0.0.7".parse().unwrap()];
        assert!(c
            .renewal_reason(&svc(), &other, t0())
            .is_some_and(|r| r.contains("does not name 10.0.0.7")));
        assert!(c
            .renewal_reason(&["elsewhere.example".into()], &[], t0())
            .is_some_and(|r| r.contains("does not name elsewhere.example")));
    }

    #[test]
    fn renewal_keeps_the_ca_when_its_key_is_known() {
        let c = WebhookCertificate::generate(&svc(), &[], t0()).unwrap();
        let later = t0() + DAY * 300;
        let r = c.renewed(&svc(), &localhost(), later).unwrap();
        assert_eq!(r.ca_pem, c.ca_pem, "the caBundle does not change");
        assert_ne!(r.cert_pem, c.cert_pem);
        assert_ne!(r.key_pem(), c.key_pem());
        // It chains to the same CA, names the new host and is good for a year from then.
        assert_eq!(r.renewal_reason(&svc(), &localhost(), later), None);
        assert_eq!(
            r.renewal_reason(&svc(), &localhost(), later + DAY * 270),
            None
        );
        // The old one is not valid for the new host.
        assert!(c.renewal_reason(&svc(), &localhost(), t0()).is_some());
    }

    #[test]
    fn without_the_ca_key_a_new_ca_is_made_and_the_old_one_stays_in_the_bundle() {
        let old = WebhookCertificate::generate(&svc(), &[], t0()).unwrap();
        // As mounted, or as an older version stored it: no CA key.
        let mounted = WebhookCertificate::from_pem(
            old.ca_pem.clone(),
            old.cert_pem.clone(),
            old.key_pem().into(),
        )
        .unwrap();
        assert!(!mounted.has_ca_key());
        let r = mounted.renewed(&svc(), &localhost(), t0()).unwrap();
        let blocks = pem_blocks(&r.ca_pem);
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            blocks[1],
            pem_blocks(&old.ca_pem)[0],
            "the old CA is kept, second"
        );
        assert_ne!(blocks[0], blocks[1]);
        assert_eq!(r.renewal_reason(&svc(), &localhost(), t0()), None);
        // The old serving certificate is still trusted by the new bundle.
        let old_leaf_new_bundle = WebhookCertificate {
            ca_pem: r.ca_pem.clone(),
            ..old.clone()
        };
        assert_eq!(old_leaf_new_bundle.renewal_reason(&svc(), &[], t0()), None);
        // A second rotation does not grow the bundle beyond two.
        let again =
            WebhookCertificate::from_pem(r.ca_pem.clone(), r.cert_pem.clone(), r.key_pem().into())
                .unwrap()
                .renewed(&svc(), &[], t0())
                .unwrap();
        assert_eq!(pem_blocks(&again.ca_pem).len(), 2);
    }

    #[test]
    fn a_ca_near_its_end_is_replaced() {
        let c = WebhookCertificate::generate(&svc(), &[], t0()).unwrap();
        // Nine and a half years on, less than a serving lifetime is left on the CA.
        let late = t0() + DAY * (3650 - 180);
        let r = c.renewed(&svc(), &[], late).unwrap();
        assert_ne!(pem_blocks(&r.ca_pem)[0], pem_blocks(&c.ca_pem)[0]);
        assert_eq!(r.renewal_reason(&svc(), &[], late), None);
    }

    #[test]
    fn the_ca_key_never_shows_in_debug() {
        let c = WebhookCertificate::generate(&svc(), &[], t0()).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn webhook_url_hosts() {
        assert_eq!(
            url_host("https://127.0.0.1:9443/mutate").unwrap(),
            (None, Some("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            url_host("https://[::1]:9443/x").unwrap(),
            (None, Some("::1".parse().unwrap()))
        );
        assert_eq!(
            url_host("https://Hook.Example.com/x").unwrap(),
            (Some("hook.example.com".into()), None)
        );
        assert!(url_host("http://127.0.0.1/x")
            .unwrap_err()
            .contains("https only"));
        assert!(url_host("not a url").is_err());
        // A trailing dot (which certificates cannot carry) is dropped.
        assert_eq!(
            url_host("https://hook.example.com./x").unwrap(),
            (Some("hook.example.com".into()), None)
        );
        assert!(validate_names(&["hook.example.com".into()]).is_ok());
        for bad in ["a b", "hook.example.com.", "10.0.0.1", ""] {
            assert!(validate_names(&[bad.into()]).is_err(), "{bad:?}");
        }
    }
}
