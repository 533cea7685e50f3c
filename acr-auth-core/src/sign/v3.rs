//! V3 signatures, `ACS3-HMAC-SHA256`, for both RPC- and ROA-style APIs.

use std::fmt;

use hmac::{Hmac, KeyInit as _, Mac};
use sha2::{Digest, Sha256};

use super::encode::{percent_encode_into, percent_encode_path};
use super::Method;

/// The algorithm name written in the string to sign and the `Authorization` header.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Lower-case hex SHA-256 of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lower-case hex SHA-256 of `data` (the `x-acs-content-sha256` value for a body).
///
/// ```
/// assert_eq!(acr_auth_core::sign::sha256_hex(b""), acr_auth_core::sign::EMPTY_SHA256);
/// ```
pub fn sha256_hex(data: &[u8]) -> String {
    hex_lower(&Sha256::digest(data))
}

fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xF) as usize] as char);
    }
    s
}

/// A V3 canonical request and everything derived from it.
///
/// `Display` of [`V3Signature::canonical_request`] is exact; `Debug` redacts the
/// `x-acs-security-token` header.
#[derive(Clone, PartialEq, Eq)]
pub struct V3Signature {
    canonical_request: String,
    signed_headers: String,
    string_to_sign: String,
    signature: String,
}

impl V3Signature {
    /// Signs a request. Every header given is signed (the caller chooses the set: at least
    /// `host`, every `x-acs-*` header and `content-type` when sent); names are lower-cased,
    /// values trimmed, repeated names joined with `,` in sorted order. `hashed_payload` is the
    /// lower-case hex SHA-256 of the body ([`sha256_hex`]).
    ///
    /// ```
    /// use acr_auth_core::sign::{Method, V3Signature, EMPTY_SHA256};
    /// // Alibaba's documented example (empty body).
    /// let sig = V3Signature::new(
    ///     Method::Post, "/",
    ///     [("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"), ("RegionId", "cn-shanghai")],
    ///     [("host", "ecs.cn-shanghai.aliyuncs.com"), ("x-acs-action", "RunInstances"),
    ///      ("x-acs-content-sha256", EMPTY_SHA256), ("x-acs-date", "2023-10-26T09:01:01Z"),
    ///      ("x-acs-signature-nonce", "d410180a5abf7fe235dd9b74aca91fc0"), ("x-acs-version", "2014-05-26")],
    ///     EMPTY_SHA256,
    ///     "YourAccessKeySecret",
    /// );
    /// assert_eq!(sig.signature(), "e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804");
    /// ```
    pub fn new<'a, Q, H>(
        method: Method,
        path: &str,
        query: Q,
        headers: H,
        hashed_payload: &str,
        access_key_secret: &str,
    ) -> Self
    where
        Q: IntoIterator<Item = (&'a str, &'a str)>,
        H: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut query: Vec<(&str, &str)> = query.into_iter().collect();
        query.sort_unstable();
        let mut headers: Vec<(String, &str)> = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
            .collect();
        headers.sort_unstable();

        let mut cr = String::with_capacity(512);
        cr.push_str(method.as_str());
        cr.push('\n');
        cr.push_str(&percent_encode_path(if path.is_empty() {
            "/"
        } else {
            path
        }));
        cr.push('\n');
        for (i, (k, v)) in query.iter().enumerate() {
            if i > 0 {
                cr.push('&');
            }
            percent_encode_into(&mut cr, k);
            cr.push('=');
            percent_encode_into(&mut cr, v);
        }
        cr.push('\n');
        let mut signed_headers = String::with_capacity(128);
        let mut i = 0;
        while i < headers.len() {
            let name = &headers[i].0;
            if !signed_headers.is_empty() {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
            cr.push_str(name);
            cr.push(':');
            let mut first = true;
            while i < headers.len() && &headers[i].0 == name {
                if !first {
                    cr.push(',');
                }
                cr.push_str(headers[i].1);
                first = false;
                i += 1;
            }
            cr.push('\n');
        }
        cr.push('\n');
        cr.push_str(&signed_headers);
        cr.push('\n');
        cr.push_str(hashed_payload);

        let string_to_sign = format!("{V3_ALGORITHM}\n{}", sha256_hex(cr.as_bytes()));
        let mut mac = Hmac::<Sha256>::new_from_slice(access_key_secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(string_to_sign.as_bytes());
        let signature = hex_lower(&mac.finalize().into_bytes());
        Self {
            canonical_request: cr,
            signed_headers,
            string_to_sign,
            signature,
        }
    }

    /// The canonical request, exactly as hashed.
    pub fn canonical_request(&self) -> &str {
        &self.canonical_request
    }

    /// The canonical request with the `x-acs-security-token` header value redacted.
    pub fn canonical_request_redacted(&self) -> String {
        super::redact_security_token_lines(&self.canonical_request)
    }

    /// `ACS3-HMAC-SHA256\n<hex sha256 of the canonical request>`.
    pub fn string_to_sign(&self) -> &str {
        &self.string_to_sign
    }

    /// The signed header names, `;`-separated.
    pub fn signed_headers(&self) -> &str {
        &self.signed_headers
    }

    /// The lower-case hex signature.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The `Authorization` header value.
    pub fn authorization(&self, access_key_id: &str) -> String {
        format!(
            "{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={}",
            self.signed_headers, self.signature
        )
    }
}

impl fmt::Debug for V3Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V3Signature")
            .field("canonical_request", &self.canonical_request_redacted())
            .field("string_to_sign", &self.string_to_sign)
            .field("signature", &self.signature)
            .finish()
    }
}

/// The parts of a V3 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    /// `Credential=`: the AccessKey ID.
    pub access_key_id: String,
    /// `SignedHeaders=`, split on `;`.
    pub signed_headers: Vec<String>,
    /// `Signature=`.
    pub signature: String,
}

impl V3Authorization {
    /// Parses `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`; `None` if malformed.
    ///
    /// ```
    /// use acr_auth_core::sign::V3Authorization;
    /// let a = V3Authorization::parse("ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-date,Signature=ab12").unwrap();
    /// assert_eq!(a.access_key_id, "ak");
    /// assert_eq!(a.signed_headers, ["host", "x-acs-date"]);
    /// ```
    pub fn parse(header: &str) -> Option<Self> {
        let rest = header.strip_prefix(V3_ALGORITHM)?.strip_prefix(' ')?;
        let (mut cred, mut signed, mut sig) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "Credential" => cred = Some(v.to_owned()),
                "SignedHeaders" => signed = Some(v.split(';').map(str::to_owned).collect()),
                "Signature" => sig = Some(v.to_owned()),
                _ => return None,
            }
        }
        Some(Self {
            access_key_id: cred?,
            signed_headers: signed?,
            signature: sig?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_join_sorted() {
        let sig = V3Signature::new(
            Method::Get,
            "/",
            [],
            [("x-acs-b", "2"), ("X-Acs-B", "1"), ("host", "h")],
            EMPTY_SHA256,
            "k",
        );
        assert!(sig
            .canonical_request()
            .contains("\nhost:h\nx-acs-b:1,2\n\nhost;x-acs-b\n"));
    }

    #[test]
    fn empty_query_value_keeps_equals_sign() {
        let sig = V3Signature::new(Method::Get, "/a b", [("k", "")], [], EMPTY_SHA256, "s");
        assert!(sig.canonical_request().starts_with("GET\n/a%20b\nk=\n"));
    }

    #[test]
    fn parse_rejects_other_algorithms() {
        assert!(V3Authorization::parse("acs ak:sig").is_none());
        assert!(V3Authorization::parse("ACS3-HMAC-SHA256 Credential=a").is_none());
    }
}
