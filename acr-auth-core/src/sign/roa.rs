//! ROA-style HMAC-SHA1 signatures (`Authorization: acs <AccessKeyId>:<signature>`), used by the
//! ACR Personal Edition API (2016-06-07).

use std::fmt;

use super::rpc::hmac_sha1_base64;
use super::Method;

/// The ROA string to sign:
///
/// ```text
/// METHOD \n Accept \n Content-MD5 \n Content-Type \n Date \n
/// x-acs-* headers (lower-case, sorted, "name:value\n") + path[?sorted query, values not encoded]
/// ```
///
/// `Display` shows it exactly; `Debug` and [`RoaStringToSign::redacted`] hide
/// `x-acs-security-token`.
#[derive(Clone, PartialEq, Eq)]
pub struct RoaStringToSign(String);

impl RoaStringToSign {
    /// Builds the string to sign. Header names match case-insensitively; values are trimmed.
    /// A query parameter with an empty value is written `name` without `=` (as the official
    /// SDK runtime does).
    ///
    /// ```
    /// use acr_auth_core::sign::{Method, RoaStringToSign};
    /// let sts = RoaStringToSign::new(
    ///     Method::Get,
    ///     "/tokens",
    ///     [("Accept", "application/json"), ("Date", "Wed, 01 May 2024 08:00:00 GMT"),
    ///      ("x-acs-version", "2016-06-07")],
    ///     [],
    /// );
    /// assert_eq!(
    ///     sts.to_string(),
    ///     "GET\napplication/json\n\n\nWed, 01 May 2024 08:00:00 GMT\nx-acs-version:2016-06-07\n/tokens"
    /// );
    /// ```
    pub fn new<'a, H, Q>(method: Method, path: &str, headers: H, query: Q) -> Self
    where
        H: IntoIterator<Item = (&'a str, &'a str)>,
        Q: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut accept = "";
        let mut content_md5 = "";
        let mut content_type = "";
        let mut date = "";
        let mut acs: Vec<(String, &str)> = Vec::new();
        for (name, value) in headers {
            let value = value.trim();
            if name.eq_ignore_ascii_case("accept") {
                accept = value;
            } else if name.eq_ignore_ascii_case("content-md5") {
                content_md5 = value;
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = value;
            } else if name.eq_ignore_ascii_case("date") {
                date = value;
            } else if name.len() > 6
                // `get`, not `[..6]`: a non-ASCII name must not panic on a char boundary.
                && name.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("x-acs-"))
            {
                acs.push((name.to_ascii_lowercase(), value));
            }
        }
        acs.sort_unstable();

        let mut s = String::with_capacity(256);
        for part in [method.as_str(), accept, content_md5, content_type, date] {
            s.push_str(part);
            s.push('\n');
        }
        for (name, value) in &acs {
            s.push_str(name);
            s.push(':');
            s.push_str(value);
            s.push('\n');
        }
        s.push_str(path);
        let mut query: Vec<(&str, &str)> = query.into_iter().collect();
        if !query.is_empty() {
            query.sort_unstable();
            s.push('?');
            for (i, (k, v)) in query.iter().enumerate() {
                if i > 0 {
                    s.push('&');
                }
                s.push_str(k);
                if !v.is_empty() {
                    s.push('=');
                    s.push_str(v);
                }
            }
        }
        Self(s)
    }

    /// The exact string to sign.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string with the `x-acs-security-token` value replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        super::redact_security_token_lines(&self.0)
    }

    /// `Base64(HMAC-SHA1(secret, self))`; the key has no `&` suffix, unlike RPC.
    pub fn sign(&self, access_key_secret: &str) -> String {
        hmac_sha1_base64(access_key_secret.as_bytes(), self.0.as_bytes())
    }
}

impl fmt::Display for RoaStringToSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoaStringToSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RoaStringToSign")
            .field(&self.redacted())
            .finish()
    }
}

/// The ROA signature of a request (the value after `acs <AccessKeyId>:`).
pub fn roa_signature<'a, H, Q>(
    method: Method,
    path: &str,
    headers: H,
    query: Q,
    access_key_secret: &str,
) -> String
where
    H: IntoIterator<Item = (&'a str, &'a str)>,
    Q: IntoIterator<Item = (&'a str, &'a str)>,
{
    RoaStringToSign::new(method, path, headers, query).sign(access_key_secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_query_value_has_no_equals_sign() {
        let sts = RoaStringToSign::new(Method::Get, "/p", [], [("b", "2"), ("a", "")]);
        assert!(sts.as_str().ends_with("/p?a&b=2"), "{sts}");
    }

    #[test]
    fn header_names_are_case_insensitive_and_values_trimmed() {
        let a = RoaStringToSign::new(
            Method::Get,
            "/t",
            [("ACCEPT", " application/json "), ("X-Acs-Version", "1")],
            [],
        );
        let b = RoaStringToSign::new(
            Method::Get,
            "/t",
            [("accept", "application/json"), ("x-acs-version", "1")],
            [],
        );
        assert_eq!(a, b);
    }

    #[test]
    fn non_ascii_header_names_are_ignored_without_panicking() {
        // "x-acs" then a two-byte character across byte 6.
        let odd = RoaStringToSign::new(Method::Get, "/t", [("x-acs\u{e9}x", "v")], []);
        let plain = RoaStringToSign::new(Method::Get, "/t", [], []);
        assert_eq!(odd, plain);
    }

    #[test]
    fn redacted_hides_token_only() {
        let sts = RoaStringToSign::new(
            Method::Get,
            "/tokens",
            [
                ("x-acs-security-token", "CAIS-secret"),
                ("x-acs-version", "v"),
            ],
            [],
        );
        let red = sts.redacted();
        assert!(!red.contains("CAIS-secret"));
        assert!(red.contains("x-acs-version:v"));
        assert!(!format!("{sts:?}").contains("CAIS-secret"));
    }
}
