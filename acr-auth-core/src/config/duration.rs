//! Go-style durations (`15m`, `1h30m`, `90s`, `1.5h`, `300ms`), as the original reads them.

use std::time::Duration;

/// Parses a Go duration: a sequence of decimal numbers, each with a unit (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`). `0` alone is allowed; negative durations are not.
///
/// ```
/// use acr_auth_core::config::parse_go_duration;
/// use std::time::Duration;
/// assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
/// assert!(parse_go_duration("15").unwrap_err().contains("missing unit"));
/// ```
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s.starts_with('-') {
        return Err(format!("{text:?} is negative"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(format!(
                "{text:?} is not a duration such as 15m, 1h30m or 90s"
            ));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "{text:?}: missing unit after {num} (use s, m or h, e.g. {num}m)"
                ))
            }
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a duration such as 15m, 1h30m or 90s"))?;
        total_ns += value * scale;
        rest = next;
    }
    if !total_ns.is_finite() || total_ns > 1e18 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

/// Formats a duration the way Go prints it (`1h30m0s`, `15m0s`, `90ms`).
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let frac = d.subsec_millis();
    let secs = if frac > 0 {
        format!("{s}.{frac:03}").trim_end_matches('0').to_owned()
    } else {
        s.to_string()
    };
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, _) => format!("{m}m{secs}s"),
        _ => format!("{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        for (s, secs_ms) in [
            ("15m", 900_000),
            ("1h30m", 5_400_000),
            ("90s", 90_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("2h45m30.5s", 9_930_500),
            ("0", 0),
            ("+5s", 5000),
            ("1h0m0s", 3_600_000),
        ] {
            assert_eq!(parse_go_duration(s).unwrap().as_millis(), secs_ms, "{s}");
        }
    }

    #[test]
    fn rejected_with_reasons() {
        for (s, why) in [
            ("15", "missing unit"),
            ("-5m", "negative"),
            ("5 minutes", "unknown unit"),
            ("1d", "unknown unit \"d\""),
            ("", "empty"),
            ("h", "not a duration"),
            ("1..5h", "not a duration"),
        ] {
            let e = parse_go_duration(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(900)), "15m0s");
        assert_eq!(format_go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(90)), "90ms");
    }
}
