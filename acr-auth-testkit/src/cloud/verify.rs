//! Authenticating an API request the way Alibaba's gateway does: find the scheme, check the
//! timestamp window and nonce, resolve the AccessKey (long-lived or issued STS), check the STS
//! token, and recompute the signature from the raw request.
//!
//! The signature is recomputed with `acr_auth_core::sign`, fed from this module's own parsing
//! of the raw request. The signers themselves are proven against Alibaba's published vectors
//! and the official SDKs elsewhere; what the fake proves is that the client sends exactly what
//! it signed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use acr_auth_core::sign::{
    self, Method, RoaStringToSign, RpcStringToSign, V3Authorization, V3Signature,
};
use axum::response::Response;

use super::{alibaba_error, RawRequest, Shared};

/// Alibaba accepts timestamps within 15 minutes of its own clock.
const TIMESTAMP_WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Rpc,
    AnonymousRpc,
    Roa,
    V3,
}

/// Who made a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A configured long-lived AccessKey.
    AccessKey(String),
    /// STS credentials the fake issued, with their expiry.
    Sts(String, SystemTime),
    /// No credentials (`AssumeRoleWithOIDC`).
    Anonymous,
}

impl Caller {
    pub(crate) fn access_key_id(&self) -> Option<&str> {
        match self {
            Caller::AccessKey(id) | Caller::Sts(id, _) => Some(id),
            Caller::Anonymous => None,
        }
    }
}

/// What a request asks for, before authentication.
pub(crate) struct Identified {
    pub scheme: Scheme,
    /// `GetAuthorizationToken`, `GET /tokens`, `AssumeRole`...
    pub action: String,
    pub version: String,
    /// Query and form parameters, decoded.
    pub params: HashMap<String, String>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
}

fn header<'a>(req: &'a RawRequest, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn bad_request(code: &str, message: &str) -> Response {
    alibaba_error(400, code, message)
}

/// Works out the scheme, action and parameters.
pub(crate) fn identify(req: &RawRequest) -> Result<Identified, Response> {
    let malformed = || bad_request("InvalidParameter", "The request could not be decoded.");
    let query = sign::parse_query(req.uri.query().unwrap_or("")).ok_or_else(malformed)?;
    let is_form = header(req, "content-type")
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        let text = std::str::from_utf8(&req.body).map_err(|_| malformed())?;
        sign::parse_query(text).ok_or_else(malformed)?
    } else {
        Vec::new()
    };
    let params: HashMap<String, String> = query.iter().chain(&form).cloned().collect();
    let auth = header(req, "authorization").unwrap_or("");
    let scheme = if auth.starts_with("ACS3-HMAC-SHA256 ") {
        Scheme::V3
    } else if auth.starts_with("acs ") {
        Scheme::Roa
    } else if params.contains_key("Signature") {
        Scheme::Rpc
    } else if params.contains_key("Action") && !params.contains_key("AccessKeyId") {
        Scheme::AnonymousRpc
    } else {
        return Err(bad_request(
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        ));
    };
    let path = req.uri.path();
    let (action, version) = match scheme {
        Scheme::Rpc | Scheme::AnonymousRpc => (
            params.get("Action").cloned().unwrap_or_default(),
            params.get("Version").cloned().unwrap_or_default(),
        ),
        Scheme::V3 | Scheme::Roa => (
            header(req, "x-acs-action").unwrap_or_default().to_owned(),
            header(req, "x-acs-version").unwrap_or_default().to_owned(),
        ),
    };
    if version.is_empty() {
        return Err(bad_request(
            "MissingParameter",
            "Version is mandatory for this action.",
        ));
    }
    let action = if path == "/tokens" && req.method == axum::http::Method::GET {
        "GET /tokens".to_owned()
    } else if action.is_empty() {
        return Err(bad_request(
            "MissingParameter",
            "Action is mandatory for this action.",
        ));
    } else {
        action
    };
    Ok(Identified {
        scheme,
        action,
        version,
        params,
        query,
        form,
    })
}

/// Checks everything Alibaba checks before running an API.
pub(crate) fn authenticate(
    shared: &Shared,
    req: &RawRequest,
    id: &Identified,
) -> Result<Caller, Response> {
    let method: Method = req.method.as_str().parse().map_err(|_| {
        bad_request(
            "UnsupportedHTTPMethod",
            "This http method is not supported.",
        )
    })?;

    // Timestamp and nonce: RPC carries them as parameters, V3 and ROA as headers.
    type ParseTime = fn(&str) -> Option<SystemTime>;
    let (raw_time, parse_time, time_name, nonce): (Option<&str>, ParseTime, &str, Option<String>) =
        match id.scheme {
            Scheme::Rpc | Scheme::AnonymousRpc => (
                id.params.get("Timestamp").map(String::as_str),
                acr_auth_core::time::parse_iso8601,
                "Timestamp",
                id.params.get("SignatureNonce").cloned(),
            ),
            Scheme::V3 => (
                header(req, "x-acs-date"),
                acr_auth_core::time::parse_iso8601,
                "x-acs-date",
                header(req, "x-acs-signature-nonce").map(str::to_owned),
            ),
            Scheme::Roa => (
                header(req, "date"),
                acr_auth_core::time::parse_rfc1123,
                "Date",
                header(req, "x-acs-signature-nonce").map(str::to_owned),
            ),
        };
    let raw_time = raw_time.ok_or_else(|| {
        bad_request(
            "MissingParameter",
            &format!("{time_name} is mandatory for this action."),
        )
    })?;
    let timestamp = parse_time(raw_time).ok_or_else(|| {
        bad_request(
            "InvalidTimeStamp.Format",
            "Specified time stamp or date header is not in the right format.",
        )
    })?;
    let now = shared.now();
    let skew = now
        .duration_since(timestamp)
        .unwrap_or_else(|e| e.duration());
    if skew > TIMESTAMP_WINDOW {
        return Err(bad_request(
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date header is expired.",
        ));
    }
    match nonce {
        Some(n) if !n.is_empty() => {
            if !shared.lock().nonces.insert(n) {
                return Err(bad_request(
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.",
                ));
            }
        }
        // The legacy SDK sends no nonce on ROA requests; every other scheme needs one.
        _ if id.scheme == Scheme::Roa => {}
        _ => {
            return Err(bad_request(
                "MissingSignatureNonce",
                "SignatureNonce is mandatory for this action.",
            ))
        }
    }

    if id.scheme == Scheme::AnonymousRpc {
        return if id.action == "AssumeRoleWithOIDC" {
            Ok(Caller::Anonymous)
        } else {
            Err(bad_request(
                "MissingAccessKeyId",
                "AccessKeyId is mandatory for this action.",
            ))
        };
    }

    // Who is calling, and with what claimed signature.
    let auth = header(req, "authorization").unwrap_or("");
    let (access_key_id, claimed, v3) = match id.scheme {
        Scheme::Rpc => {
            if id.params.get("SignatureMethod").map(String::as_str) != Some("HMAC-SHA1")
                || id.params.get("SignatureVersion").map(String::as_str) != Some("1.0")
            {
                return Err(bad_request(
                    "InvalidSignatureMethod",
                    "Specified signature method or version is not supported.",
                ));
            }
            let ak = id.params.get("AccessKeyId").cloned().unwrap_or_default();
            (ak, id.params["Signature"].clone(), None)
        }
        Scheme::Roa => {
            let rest = auth.trim_start_matches("acs ");
            let (ak, sig) = rest.split_once(':').ok_or_else(|| {
                bad_request(
                    "IncompleteSignature",
                    "The Authorization header is malformed.",
                )
            })?;
            (ak.to_owned(), sig.to_owned(), None)
        }
        Scheme::V3 => {
            let parsed = V3Authorization::parse(auth).ok_or_else(|| {
                bad_request(
                    "IncompleteSignature",
                    "The Authorization header is malformed.",
                )
            })?;
            (
                parsed.access_key_id.clone(),
                parsed.signature.clone(),
                Some(parsed),
            )
        }
        Scheme::AnonymousRpc => unreachable!("handled above"),
    };

    // Resolve the AccessKey.
    let configured = shared
        .config
        .access_keys
        .iter()
        .find(|k| k.id == access_key_id)
        .map(|k| k.secret.clone());
    let issued = shared.lock().sts.get(&access_key_id).cloned();
    let presented_token = match id.scheme {
        Scheme::Rpc => id.params.get("SecurityToken").cloned(),
        _ => header(req, "x-acs-security-token").map(str::to_owned),
    };
    let (secret, caller) = match (configured, issued) {
        (Some(secret), _) => {
            if presented_token.is_some() {
                return Err(bad_request(
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "Specified SecurityToken mismatch with the AccessKey.",
                ));
            }
            (secret, Caller::AccessKey(access_key_id.clone()))
        }
        (None, Some(sts)) => {
            let token = presented_token.ok_or_else(|| {
                bad_request(
                    "MissingSecurityToken",
                    "SecurityToken is mandatory for this action.",
                )
            })?;
            if token != sts.token {
                return Err(bad_request(
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "Specified SecurityToken mismatch with the AccessKey.",
                ));
            }
            if now >= sts.expires_at {
                return Err(bad_request(
                    "InvalidSecurityToken.Expired",
                    "Specified SecurityToken is expired.",
                ));
            }
            (
                sts.secret,
                Caller::Sts(access_key_id.clone(), sts.expires_at),
            )
        }
        (None, None) => {
            return Err(alibaba_error(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            ))
        }
    };

    // Recompute the signature from what arrived.
    let path = sign::percent_decode(req.uri.path(), false).unwrap_or_default();
    let (expected, server_string) = match id.scheme {
        Scheme::Rpc => {
            let params = id
                .query
                .iter()
                .chain(&id.form)
                .filter(|(k, _)| k != "Signature")
                .map(|(k, v)| (k.as_str(), v.as_str()));
            let sts = RpcStringToSign::new(method, params);
            (sts.sign(&secret), sts.to_string())
        }
        Scheme::Roa => {
            let headers: Vec<(&str, &str)> = req
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
                .collect();
            let query = id.query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let sts = RoaStringToSign::new(method, &path, headers, query);
            (sts.sign(&secret), sts.to_string())
        }
        Scheme::V3 => {
            let v3 = v3.expect("parsed above");
            let body_hash = sign::sha256_hex(&req.body);
            if header(req, "x-acs-content-sha256") != Some(body_hash.as_str()) {
                return Err(bad_request(
                    "SignatureDoesNotMatch",
                    "The x-acs-content-sha256 header does not match the request body.",
                ));
            }
            let must_sign = req
                .headers
                .keys()
                .map(|k| k.as_str())
                .filter(|k| k.starts_with("x-acs-") || *k == "host");
            for name in must_sign {
                if !v3.signed_headers.iter().any(|s| s == name) {
                    return Err(bad_request(
                        "IncompleteSignature",
                        &format!("Header {name} must be signed."),
                    ));
                }
            }
            let mut headers: Vec<(&str, &str)> = Vec::new();
            for name in &v3.signed_headers {
                for value in req.headers.get_all(name.as_str()) {
                    headers.push((name.as_str(), value.to_str().unwrap_or("")));
                }
            }
            let query = id.query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let sig = V3Signature::new(method, &path, query, headers, &body_hash, &secret);
            (
                sig.signature().to_owned(),
                sig.canonical_request().to_owned(),
            )
        }
        Scheme::AnonymousRpc => unreachable!("handled above"),
    };
    if expected != claimed {
        return Err(bad_request(
            "SignatureDoesNotMatch",
            &format!(
                "Specified signature is not matched with our calculation. server string to sign is:{server_string}"
            ),
        ));
    }
    Ok(caller)
}
