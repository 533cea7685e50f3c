//! Alibaba's percent-encoding (RFC 3986 unreserved set) and its inverse, on the
//! `percent-encoding` crate.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Everything but `A-Z a-z 0-9 - _ . ~` is escaped.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// [`UNRESERVED`], and `/` stays as is too.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Appends `percent_encode(percent_encode(s))` to `out` in one pass: unreserved bytes as is,
/// every other byte as `%25XY` (the `%` of its escape encoded again). This is how names and
/// values appear in the RPC string to sign.
pub(crate) fn double_encode_into(out: &mut Vec<u8>, s: &str) {
    // The encoder yields each escaped byte as its own `%XY` chunk and unreserved runs as they
    // are; encoding again changes only the `%` of each escape.
    for chunk in percent_encoding::utf8_percent_encode(s, UNRESERVED) {
        match chunk.strip_prefix('%') {
            Some(hex) => {
                out.extend_from_slice(b"%25");
                out.extend_from_slice(hex.as_bytes());
            }
            None => out.extend_from_slice(chunk.as_bytes()),
        }
    }
}

/// Percent-encodes `s` the way every Alibaba signature scheme expects: UTF-8 bytes, with
/// everything but `A-Z a-z 0-9 - _ . ~` written as `%XY` in upper-case hex. A space is `%20`
/// (never `+`), `*` is `%2A`, `~` stays `~`, `/` is `%2F`.
///
/// ```
/// use acr_auth_core::sign::percent_encode;
/// assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
/// ```
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    percent_encode_into(&mut out, s);
    out
}

/// [`percent_encode`] appending to `out`, for building strings without extra allocations.
pub fn percent_encode_into(out: &mut String, s: &str) {
    out.extend(percent_encoding::utf8_percent_encode(s, UNRESERVED));
}

/// Percent-encodes a URL path: like [`percent_encode`] but `/` stays `/`
/// (`quote(path, safe='/~')` in the official SDK).
///
/// ```
/// use acr_auth_core::sign::percent_encode_path;
/// assert_eq!(percent_encode_path("/repos/a b"), "/repos/a%20b");
/// ```
pub fn percent_encode_path(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, PATH).to_string()
}

/// Decodes `%XY` escapes (either hex case) and, when `plus_as_space`, `+` as a space (HTML form
/// encoding). Returns `None` for a malformed escape or bytes that are not UTF-8.
///
/// ```
/// use acr_auth_core::sign::percent_decode;
/// assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
/// assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
/// assert_eq!(percent_decode("%zz", false), None);
/// ```
pub fn percent_decode(s: &str, plus_as_space: bool) -> Option<String> {
    // The crate passes a malformed escape through as text; a signature check must not.
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    let decoded: Vec<u8> = if plus_as_space {
        // A literal `+` would have been sent as `%2B`, so every raw `+` is a space.
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced).collect()
    } else {
        percent_encoding::percent_decode_str(s).collect()
    };
    String::from_utf8(decoded).ok()
}

/// Splits an `application/x-www-form-urlencoded` string or a URL query into decoded pairs.
/// `+` decodes to a space, as servers do for both. `None` when any part is malformed.
///
/// ```
/// use acr_auth_core::sign::parse_query;
/// let pairs = parse_query("b=2&a=x%20y&flag").unwrap();
/// assert_eq!(pairs, vec![("b".into(), "2".into()), ("a".into(), "x y".into()), ("flag".into(), "".into())]);
/// ```
pub fn parse_query(s: &str) -> Option<Vec<(String, String)>> {
    s.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_special_cases() {
        assert_eq!(percent_encode(" "), "%20");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("~"), "~");
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("+=&?%"), "%2B%3D%26%3F%25");
        assert_eq!(
            percent_encode("2016-02-23T12:46:24Z"),
            "2016-02-23T12%3A46%3A24Z"
        );
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
    }

    #[test]
    fn decode_rejects_truncated_escapes() {
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%", false), None);
        assert_eq!(percent_decode("%FF", false), None, "lone 0xFF is not UTF-8");
    }
}
