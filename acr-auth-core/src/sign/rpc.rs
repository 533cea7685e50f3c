//! RPC-style HMAC-SHA1 signatures (`SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`).

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac};
use sha1::Sha1;

use super::encode::{double_encode_into, percent_encode_into};
use super::Method;
use crate::credentials::Credentials;

/// The RPC string to sign: `METHOD&%2F&percentEncode(canonicalized query)`.
///
/// `Display` shows it exactly; [`RpcStringToSign::redacted`] hides the `SecurityToken` value for
/// logs.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcStringToSign(String);

impl RpcStringToSign {
    /// Builds the string to sign from every parameter that will be sent (query and form body,
    /// never `Signature`), in any order.
    ///
    /// ```
    /// use acr_auth_core::sign::{Method, RpcStringToSign};
    /// let sts = RpcStringToSign::new(Method::Get, [("b", "2"), ("a", "x y")]);
    /// assert_eq!(sts.to_string(), "GET&%2F&a%3Dx%2520y%26b%3D2");
    /// ```
    pub fn new<'a, I>(method: Method, params: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut sorted: Vec<(&str, &str)> = params.into_iter().collect();
        // Code-point order of the names; Rust's `str` ordering is byte order, which for UTF-8 is
        // the same as code-point order.
        sorted.sort_unstable();
        // `METHOD&%2F&` + percentEncode(canonical query), written in one pass: the separators
        // `=` and `&` of the canonical query become `%3D` and `%26`, and each name and value is
        // percent-encoded twice.
        let raw_len: usize = sorted.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut out = Vec::with_capacity(16 + raw_len + raw_len / 2 + sorted.len() * 6);
        out.extend_from_slice(method.as_str().as_bytes());
        out.extend_from_slice(b"&%2F&");
        for (i, (k, v)) in sorted.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"%26");
            }
            double_encode_into(&mut out, k);
            out.extend_from_slice(b"%3D");
            double_encode_into(&mut out, v);
        }
        let s = String::from_utf8(out).expect("percent-encoded output is ASCII");
        Self(s)
    }

    /// The exact string to sign.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string with the value of `SecurityToken` (if any) replaced by `<redacted>`, safe to log.
    pub fn redacted(&self) -> String {
        redact_param(&self.0, "SecurityToken%3D")
    }

    /// `Base64(HMAC-SHA1(secret + "&", self))`.
    pub fn sign(&self, access_key_secret: &str) -> String {
        hmac_sha1_base64(
            format!("{access_key_secret}&").as_bytes(),
            self.0.as_bytes(),
        )
    }
}

impl fmt::Display for RpcStringToSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RpcStringToSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RpcStringToSign")
            .field(&self.redacted())
            .finish()
    }
}

/// Replaces the doubly-encoded value after `marker` up to the next `%26` (`&`) with `<redacted>`.
fn redact_param(s: &str, marker: &str) -> String {
    match s.find(marker) {
        None => s.to_owned(),
        Some(at) => {
            let value_start = at + marker.len();
            let value_end = s[value_start..]
                .find("%26")
                .map_or(s.len(), |i| value_start + i);
            format!("{}<redacted>{}", &s[..value_start], &s[value_end..])
        }
    }
}

pub(crate) fn hmac_sha1_base64(key: &[u8], data: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The RPC signature of a request: the parameters are everything sent except `Signature`.
///
/// ```
/// use acr_auth_core::sign::{rpc_signature, Method};
/// // Alibaba's documented example (DescribeRegions, secret "testsecret").
/// let params = [
///     ("AccessKeyId", "testid"), ("Action", "DescribeRegions"), ("Format", "XML"),
///     ("SignatureMethod", "HMAC-SHA1"), ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
///     ("SignatureVersion", "1.0"), ("Timestamp", "2016-02-23T12:46:24Z"), ("Version", "2014-05-26"),
/// ];
/// assert_eq!(rpc_signature(Method::Get, params, "testsecret"), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
/// ```
pub fn rpc_signature<'a, I>(method: Method, params: I, access_key_secret: &str) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    RpcStringToSign::new(method, params).sign(access_key_secret)
}

/// An RPC API call to sign: action, version, and the operation's parameters, either in the URL
/// query or in a form body (POST only).
#[derive(Debug, Clone)]
pub struct RpcRequest {
    /// HTTP method; the string to sign starts with it.
    pub method: Method,
    /// The API name, e.g. `GetAuthorizationToken`.
    pub action: String,
    /// The API version, e.g. `2018-12-01`.
    pub version: String,
    /// Operation parameters sent in the URL query.
    pub query: Vec<(String, String)>,
    /// Operation parameters sent as an `application/x-www-form-urlencoded` body (POST).
    pub form: Vec<(String, String)>,
}

impl RpcRequest {
    /// A request with no operation parameters yet.
    pub fn new(method: Method, action: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            method,
            action: action.into(),
            version: version.into(),
            query: Vec::new(),
            form: Vec::new(),
        }
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// Adds a form-body parameter.
    pub fn form(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.form.push((name.into(), value.into()));
        self
    }
}

/// What goes on the wire for a signed RPC request.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRpcRequest {
    /// The URL query string (without `?`), percent-encoded, including `Signature` when signed.
    pub query: String,
    /// The form body, if the request has form parameters.
    pub body: Option<String>,
}

impl fmt::Debug for SignedRpcRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = self.body.as_deref().map(|b| redact_form(b, "OIDCToken="));
        f.debug_struct("SignedRpcRequest")
            .field("query", &redact_form(&self.query, "SecurityToken="))
            .field("body", &body)
            .finish()
    }
}

fn redact_form(s: &str, marker: &str) -> String {
    match s.find(marker) {
        None => s.to_owned(),
        Some(at) => {
            let start = at + marker.len();
            let end = s[start..].find('&').map_or(s.len(), |i| start + i);
            format!("{}<redacted>{}", &s[..start], &s[end..])
        }
    }
}

/// Adds the common parameters to `request` and signs it.
///
/// With `credentials`, the request carries `AccessKeyId`, `SignatureMethod`, `SignatureVersion`,
/// `SecurityToken` (STS) and `Signature`; without, it is anonymous (only `AssumeRoleWithOIDC`
/// accepts that): `Action`, `Format`, `Version`, `Timestamp` and `SignatureNonce` only.
///
/// ```
/// use acr_auth_core::credentials::Credentials;
/// use acr_auth_core::sign::{sign_rpc_request, Method, RpcRequest};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let req = RpcRequest::new(Method::Post, "GetAuthorizationToken", "2018-12-01")
///     .query("InstanceId", "cri-abcdefghijklmnop");
/// let creds = Credentials::new("LTAI-id", "secret");
/// let at = UNIX_EPOCH + Duration::from_secs(1_714_550_400);
/// let signed = sign_rpc_request(&req, Some(&creds), at, "0123456789abcdef0123456789abcdef");
/// assert!(signed.query.contains("Timestamp=2024-05-01T08%3A00%3A00Z"));
/// assert!(signed.query.contains("&Signature="));
/// assert_eq!(signed.body, None);
/// ```
pub fn sign_rpc_request(
    request: &RpcRequest,
    credentials: Option<&Credentials>,
    timestamp: SystemTime,
    nonce: &str,
) -> SignedRpcRequest {
    let timestamp = crate::time::format_iso8601(timestamp);
    let mut query: Vec<(&str, &str)> = Vec::with_capacity(request.query.len() + 9);
    query.extend([
        ("Action", request.action.as_str()),
        ("Format", "JSON"),
        ("Version", request.version.as_str()),
        ("Timestamp", timestamp.as_str()),
        ("SignatureNonce", nonce),
    ]);
    if let Some(c) = credentials {
        query.extend([
            ("AccessKeyId", c.access_key_id()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
        ]);
        if let Some(token) = c.security_token() {
            query.push(("SecurityToken", token.expose()));
        }
    }
    query.extend(request.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let form: Vec<(&str, &str)> = request
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let mut query_string = encode_pairs(&query);
    if let Some(c) = credentials {
        let signature = RpcStringToSign::new(request.method, query.iter().chain(&form).copied())
            .sign(c.access_key_secret().expose());
        query_string.push_str("&Signature=");
        percent_encode_into(&mut query_string, &signature);
    }
    SignedRpcRequest {
        query: query_string,
        body: (!form.is_empty()).then(|| encode_pairs(&form)),
    }
}

fn encode_pairs(pairs: &[(&str, &str)]) -> String {
    let len: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(len + len / 2 + 48);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(&mut out, k);
        out.push('=');
        percent_encode_into(&mut out, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_security_token_in_string_to_sign() {
        let sts = RpcStringToSign::new(
            Method::Get,
            [("SecurityToken", "CAIS+secret/="), ("Z", "z"), ("A", "a")],
        );
        assert!(sts.as_str().contains("CAIS"));
        let red = sts.redacted();
        assert!(!red.contains("CAIS"), "{red}");
        assert!(red.contains("SecurityToken%3D<redacted>%26Z%3Dz"), "{red}");
        assert!(!format!("{sts:?}").contains("CAIS"));
    }

    #[test]
    fn signed_request_debug_hides_token() {
        let creds = Credentials::new("STS.id", "sk").with_security_token("CAIS-tok");
        let req = RpcRequest::new(Method::Post, "AssumeRoleWithOIDC", "2015-04-01")
            .form("OIDCToken", "eyJ-jwt");
        let signed = sign_rpc_request(&req, Some(&creds), SystemTime::UNIX_EPOCH, "n");
        assert!(signed.query.contains("SecurityToken=CAIS-tok"));
        let shown = format!("{signed:?}");
        assert!(
            !shown.contains("CAIS-tok") && !shown.contains("eyJ-jwt"),
            "{shown}"
        );
    }

    #[test]
    fn anonymous_request_has_no_signature_fields() {
        let req = RpcRequest::new(Method::Post, "AssumeRoleWithOIDC", "2015-04-01")
            .form("RoleArn", "acs:ram::1:role/r");
        let signed = sign_rpc_request(&req, None, SystemTime::UNIX_EPOCH, "n");
        for forbidden in ["AccessKeyId=", "Signature=", "SignatureMethod="] {
            assert!(!signed.query.contains(forbidden), "{}", signed.query);
        }
        assert_eq!(
            signed.body.as_deref(),
            Some("RoleArn=acs%3Aram%3A%3A1%3Arole%2Fr")
        );
    }
}
