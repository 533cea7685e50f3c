//! Time: the [`Clock`] trait, the one place that reads the system clock, and the wire formats
//! Alibaba Cloud uses for timestamps.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

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

/// The latest time accepted from the network or a file, 9999-12-31T23:59:59Z in seconds since
/// the Unix epoch: the last whole second that the four-digit-year formats (ISO 8601, RFC 1123)
/// can write.
pub const LATEST_EPOCH_SECS: u64 = 253_402_300_799;

/// `t` if it lies between the Unix epoch and [`LATEST_EPOCH_SECS`] (both included), else `None`.
///
/// Timestamps read from responses and files go through this, so that later formatting and
/// arithmetic cannot overflow.
///
/// ```
/// use acr_auth_core::time::{checked_wire_time, LATEST_EPOCH_SECS};
/// use std::time::{Duration, UNIX_EPOCH};
/// let last = UNIX_EPOCH + Duration::from_secs(LATEST_EPOCH_SECS);
/// assert_eq!(checked_wire_time(last), Some(last));
/// assert_eq!(checked_wire_time(last + Duration::from_millis(1)), None);
/// assert_eq!(checked_wire_time(UNIX_EPOCH - Duration::from_secs(1)), None);
/// ```
pub fn checked_wire_time(t: SystemTime) -> Option<SystemTime> {
    let since_epoch = t.duration_since(UNIX_EPOCH).ok()?;
    (since_epoch <= Duration::from_secs(LATEST_EPOCH_SECS)).then_some(t)
}

/// `t` as an `OffsetDateTime`, saturated to the years `time` can represent (-9999..=9999):
/// `OffsetDateTime::from(SystemTime)` panics outside them, and a `SystemTime` can be anything.
fn to_offset(t: SystemTime) -> OffsetDateTime {
    let (later, distance) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (true, d),
        Err(e) => (false, e.duration()),
    };
    let shifted = time::Duration::try_from(distance).ok().and_then(|d| {
        if later {
            OffsetDateTime::UNIX_EPOCH.checked_add(d)
        } else {
            OffsetDateTime::UNIX_EPOCH.checked_sub(d)
        }
    });
    shifted.unwrap_or(if later {
        PrimitiveDateTime::MAX.assume_utc()
    } else {
        PrimitiveDateTime::MIN.assume_utc()
    })
}

/// ISO 8601 UTC with seconds, `2024-05-01T08:00:00Z`: RPC `Timestamp` and V3 `x-acs-date`.
///
/// Never panics: a time after year 9999 (or before year -9999) is written as the last (first)
/// second `time` can represent.
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
/// Never panics; out-of-range times saturate as in [`format_iso8601`].
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_714_550_400);
/// assert_eq!(acr_auth_core::time::format_rfc1123(t), "Wed, 01 May 2024 08:00:00 GMT");
/// ```
pub fn format_rfc1123(t: SystemTime) -> String {
    // By hand too: `time`'s formatter returns a `Result` although this layout cannot fail.
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = to_offset(t);
    let day = DAYS[usize::from(t.weekday().number_days_from_monday())];
    let month = MONTHS[usize::from(u8::from(t.month())) - 1];
    format!(
        "{day}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an ISO 8601 / RFC 3339 timestamp such as STS `Expiration` (`2021-08-02T04:42:19Z`).
///
/// `None` when the text is not such a timestamp, or when it names a time outside the range of
/// [`checked_wire_time`] (an offset can push `9999-12-31T23:59:59-01:00` into year 10000).
///
/// ```
/// use acr_auth_core::time::parse_iso8601;
/// assert!(parse_iso8601("2021-08-02T04:42:19Z").is_some());
/// assert_eq!(parse_iso8601("9999-12-31T23:59:59-01:00"), None);
/// ```
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    checked_wire_time(SystemTime::from(t))
}

/// Parses an RFC 1123 GMT date (`Wed, 01 May 2024 08:00:00 GMT`); `None` when malformed or
/// before the Unix epoch.
pub fn parse_rfc1123(s: &str) -> Option<SystemTime> {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = PrimitiveDateTime::parse(s.trim(), &fmt).ok()?;
    checked_wire_time(SystemTime::from(t.assume_utc()))
}

/// Converts Unix epoch milliseconds (ACR `ExpireTime`/`expireDate`) into a `SystemTime`;
/// `None` after 9999-12-31T23:59:59Z ([`LATEST_EPOCH_SECS`]).
///
/// ```
/// use acr_auth_core::time::{epoch_secs, from_epoch_millis};
/// assert_eq!(from_epoch_millis(1_571_242_083_000).map(epoch_secs), Some(1_571_242_083));
/// assert_eq!(from_epoch_millis(u64::MAX), None);
/// ```
pub fn from_epoch_millis(ms: u64) -> Option<SystemTime> {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .and_then(checked_wire_time)
}

/// Converts Unix epoch seconds into a `SystemTime`; `None` after [`LATEST_EPOCH_SECS`].
///
/// ```
/// use acr_auth_core::time::{from_epoch_secs, LATEST_EPOCH_SECS};
/// assert!(from_epoch_secs(LATEST_EPOCH_SECS).is_some());
/// assert_eq!(from_epoch_secs(LATEST_EPOCH_SECS + 1), None);
/// ```
pub fn from_epoch_secs(secs: u64) -> Option<SystemTime> {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .and_then(checked_wire_time)
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
    fn rfc1123_names_weekday_and_month() {
        // 2016-02-23T12:46:24Z plus six days: a leap day, and a Monday.
        let t = UNIX_EPOCH + Duration::from_secs(1_456_231_584 + 6 * 86_400);
        assert_eq!(format_rfc1123(t), "Mon, 29 Feb 2016 12:46:24 GMT");
    }

    #[test]
    fn formatting_saturates_instead_of_panicking() {
        // About year 36 800 and year -32 900: far outside what `time` represents.
        let far = Duration::from_secs(1 << 40);
        let (late, early) = (UNIX_EPOCH + far, UNIX_EPOCH - far);
        assert_eq!(format_iso8601(late), "9999-12-31T23:59:59Z");
        // 9999-12-31 is a Friday: the calendar repeats every 400 years and 1999-12-31 was one.
        assert_eq!(format_rfc1123(late), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(format_iso8601(early), "-9999-01-01T00:00:00Z");
    }

    #[test]
    fn wire_times_are_limited_to_1970_through_9999() {
        let last = UNIX_EPOCH + Duration::from_secs(LATEST_EPOCH_SECS);
        assert_eq!(parse_iso8601("9999-12-31T23:59:59Z"), Some(last));
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        for refused in [
            // A leap second after the last whole second of year 9999.
            "9999-12-31T23:59:60Z",
            // Year 10000 in UTC once the offset is applied.
            "9999-12-31T23:59:59-01:00",
            "99999-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_iso8601(refused), None, "{refused}");
        }
        assert_eq!(parse_rfc1123("Wed, 31 Dec 1969 23:59:59 GMT"), None);
        assert_eq!(from_epoch_millis(LATEST_EPOCH_SECS * 1000), Some(last));
        assert_eq!(from_epoch_millis(LATEST_EPOCH_SECS * 1000 + 1), None);
        assert_eq!(from_epoch_millis(i64::MAX as u64), None);
        assert_eq!(from_epoch_secs(u64::MAX), None);
    }

    #[test]
    fn rejects_garbage_timestamps() {
        assert_eq!(parse_iso8601("yesterday"), None);
        assert_eq!(parse_rfc1123("2024-05-01T08:00:00Z"), None);
    }
}
