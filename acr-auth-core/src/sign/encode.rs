//! Alibaba's percent-encoding (RFC 3986 unreserved set) and its inverse.

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `b` is left as is: `A-Z a-z 0-9 - _ . ~`.
#[inline]
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// [`is_unreserved`] as a table, for the hot loops.
const UNRESERVED: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = is_unreserved(i as u8);
        i += 1;
    }
    t
};

/// Appends `percent_encode(percent_encode(s))` to `out` in one pass: unreserved bytes as is,
/// every other byte as `%25XY` (the `%` of its escape encoded again). This is how names and
/// values appear in the RPC string to sign.
pub(crate) fn double_encode_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if UNRESERVED[b as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(&[
            b'%',
            b'2',
            b'5',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xF) as usize],
        ]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
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
    encode_bytes(out, s, false);
}

/// Percent-encodes a URL path: like [`percent_encode`] but `/` stays `/`
/// (`quote(path, safe='/~')` in the official SDK).
///
/// ```
/// use acr_auth_core::sign::percent_encode_path;
/// assert_eq!(percent_encode_path("/repos/a b"), "/repos/a%20b");
/// ```
pub fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    encode_bytes(&mut out, path, true);
    out
}

fn encode_bytes(out: &mut String, s: &str, keep_slash: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if UNRESERVED[b as usize] || (keep_slash && b == b'/') {
            continue;
        }
        // Copy the unreserved run verbatim. A non-empty run starts and ends at ASCII bytes, so
        // both ends are char boundaries; an empty one may not be, so it is skipped.
        if start < i {
            out.push_str(&s[start..i]);
        }
        out.push('%');
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xF) as usize] as char);
        start = i + 1;
    }
    if start < bytes.len() {
        out.push_str(&s[start..]);
    }
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
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
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
