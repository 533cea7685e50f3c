//! Time: the [`Clock`] trait, the one place that reads the system clock, and the wire formats
//! Alibaba Cloud uses for timestamps.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// A source of the current time. Everything that needs "now" takes one, so tests can run on a
/// [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the system clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to; for tests.
///
/// ```
/// use acr_auth_core::time::{Clock, ManualClock};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_700_000_060));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("clock lock poisoned") += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: SystemTime) {
        *self.0.lock().expect("clock lock poisoned") = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().expect("clock lock poisoned")
    }
}

/// The shared clock handle passed around the library.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a [`SharedClock`].
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

/// ISO 8601 UTC with seconds, `2024-05-01T08:00:00Z`: RPC `Timestamp` and V3 `x-acs-date`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_714_550_400);
/// assert_eq!(acr_auth_core::time::format_iso8601(t), "2024-05-01T08:00:00Z");
/// ```
pub fn format_iso8601(t: SystemTime) -> String {
    // Written by hand: it is on every request's path and `time`'s generic formatter is several
    // times slower for this fixed layout.
    let t = to_offset(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// RFC 1123 GMT, `Wed, 01 May 2024 08:00:00 GMT`: the ROA `Date` header.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_714_550_400);
/// assert_eq!(acr_auth_core::time::format_rfc1123(t), "Wed, 01 May 2024 08:00:00 GMT");
/// ```
pub fn format_rfc1123(t: SystemTime) -> String {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    to_offset(t)
        .format(&fmt)
        .expect("a SystemTime always formats as RFC 1123")
}

/// Parses an ISO 8601 / RFC 3339 UTC timestamp such as STS `Expiration` (`2021-08-02T04:42:19Z`).
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Parses an RFC 1123 GMT date (`Wed, 01 May 2024 08:00:00 GMT`).
pub fn parse_rfc1123(s: &str) -> Option<SystemTime> {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &fmt)
        .ok()
        .map(|t| SystemTime::from(t.assume_utc()))
}

/// Converts Unix epoch milliseconds (ACR `ExpireTime`/`expireDate`) into a `SystemTime`.
pub fn from_epoch_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Seconds since the Unix epoch (negative times clamp to 0).
pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_456_231_584);
        let s = format_iso8601(t);
        assert_eq!(s, "2016-02-23T12:46:24Z");
        assert_eq!(parse_iso8601(&s), Some(t));
    }

    #[test]
    fn rfc1123_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(0);
        let s = format_rfc1123(t);
        assert_eq!(s, "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(parse_rfc1123(&s), Some(t));
    }

    #[test]
    fn rejects_garbage_timestamps() {
        assert_eq!(parse_iso8601("yesterday"), None);
        assert_eq!(parse_rfc1123("2024-05-01T08:00:00Z"), None);
    }
}
