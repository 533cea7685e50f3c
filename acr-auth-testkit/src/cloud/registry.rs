//! The Docker registry token server (the `realm` of a Distribution registry's token auth).
//!
//! It issues a bearer token only to a client presenting (HTTP Basic) a registry login that the
//! fake ACR handed out and that has not expired, so a real registry proves the whole path.

use std::time::Duration;

use acr_auth_core::time::{epoch_secs, format_iso8601};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use super::{random_token, RawRequest, Shared};

/// The `service` a registry must be configured with.
pub const REGISTRY_SERVICE: &str = "fake-acr-registry";
/// The `issuer` a registry must be configured with.
pub const REGISTRY_ISSUER: &str = "fake-acr-token-issuer";

/// Bearer tokens live at most this long.
const BEARER_LIFETIME: Duration = Duration::from_secs(300);

/// The ES256 key that signs bearer tokens, and its self-signed certificate.
pub(crate) struct SigningKeys {
    pub cert_pem: String,
    cert_der_b64: String,
    key: ring::signature::EcdsaKeyPair,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

impl SigningKeys {
    pub(crate) fn generate() -> Self {
        let key_pair = rcgen::KeyPair::generate().expect("generate an ECDSA P-256 key");
        let params = rcgen::CertificateParams::new(vec![REGISTRY_ISSUER.to_owned()])
            .expect("certificate parameters");
        let cert = params
            .self_signed(&key_pair)
            .expect("self-sign the certificate");
        Self {
            cert_pem: cert.pem(),
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(cert.der()),
            key: ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &key_pair.serialize_der(),
                &ring::rand::SystemRandom::new(),
            )
            .expect("rcgen's PKCS#8 P-256 key"),
        }
    }

    /// A compact JWS (RFC 7515) of `claims`: ES256, the certificate in `x5c`, as Distribution's
    /// token auth expects (ring signs, with the fixed-length `r || s` signature JWS uses).
    fn sign_jwt(&self, claims: &serde_json::Value) -> Result<String, &'static str> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [self.cert_der_b64]});
        let input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|_| "ECDSA signing failed")?;
        Ok(format!("{input}.{}", b64.encode(signature.as_ref())))
    }
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            ("content-type", "application/json"),
            ("www-authenticate", "Basic realm=\"fake-acr\""),
        ],
        json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]}).to_string(),
    )
        .into_response()
}

fn basic_credentials(req: &RawRequest) -> Option<(String, String)> {
    let value = req.headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

pub(crate) fn handle(shared: &Shared, req: &RawRequest) -> Response {
    *shared
        .lock()
        .calls
        .entry("RegistryToken".to_owned())
        .or_default() += 1;
    let Some((username, password)) = basic_credentials(req) else {
        return unauthorized("authentication required");
    };
    let now = shared.now();
    let login = shared.lock().registry_logins.get(&password).cloned();
    let Some(login) = login.filter(|l| l.username == username) else {
        return unauthorized("invalid username or password");
    };
    if now >= login.expires_at {
        return unauthorized("the registry credential has expired");
    }

    let query = acr_auth_core::sign::parse_query(req.uri.query().unwrap_or("")).unwrap_or_default();
    let service = query
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| REGISTRY_SERVICE.to_owned());
    let access: Vec<serde_json::Value> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|scope| {
            // repository:<name>:<actions>; the name may itself contain ':' only before a tag,
            // which scopes never carry, so split from both ends.
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();

    let expires_at = (now + BEARER_LIFETIME).min(login.expires_at);
    let claims = json!({
        "iss": REGISTRY_ISSUER,
        "sub": username,
        "aud": service,
        "exp": epoch_secs(expires_at),
        "nbf": epoch_secs(now).saturating_sub(10),
        "iat": epoch_secs(now),
        "jti": random_token(24),
        "access": access,
    });
    let token = match shared.registry_keys.sign_jwt(&claims) {
        Ok(t) => t,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot sign token: {e}"),
            )
                .into_response()
        }
    };
    let expires_in = expires_at.duration_since(now).unwrap_or_default().as_secs();
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": format_iso8601(now),
        })
        .to_string(),
    )
        .into_response()
}
