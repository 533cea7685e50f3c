//! Rate-limited logging per cause: during an outage the first failure of each cause is logged at
//! once, then at most one line per window with the number of lines left out.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// How often one cause may log during an episode.
pub(super) const LOG_WINDOW: Duration = Duration::from_secs(30);

/// Per-cause log limiter.
#[derive(Debug)]
pub(super) struct LogLimiter {
    window: Duration,
    causes: HashMap<String, Cause>,
}

#[derive(Debug)]
struct Cause {
    logged: Instant,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(LOG_WINDOW)
    }
}

impl LogLimiter {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            causes: HashMap::new(),
        }
    }

    /// Whether an occurrence of `cause` at `now` is logged: `Some(n)` with the number of
    /// occurrences left out since the last line, or `None` to leave this one out.
    pub(super) fn allow(&mut self, cause: &str, now: Instant) -> Option<u64> {
        match self.causes.get_mut(cause) {
            Some(c) if now.saturating_duration_since(c.logged) < self.window => {
                c.suppressed += 1;
                None
            }
            Some(c) => {
                let n = c.suppressed;
                c.logged = now;
                c.suppressed = 0;
                Some(n)
            }
            None => {
                self.causes.insert(
                    cause.to_owned(),
                    Cause {
                        logged: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// The episode of `cause` is over (it succeeded): its next failure is logged at once.
    /// Returns how many lines were left out since the last one.
    pub(super) fn recovered(&mut self, cause: &str) -> u64 {
        self.causes.remove(cause).map_or(0, |c| c.suppressed)
    }

    /// Causes with an episode in progress.
    pub(super) fn active(&self) -> impl Iterator<Item = &str> {
        self.causes.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_logs_once_per_window_with_the_count_left_out() {
        let mut l = LogLimiter::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(l.allow("api", t0), Some(0));
        // Another cause is not held back by the first.
        assert_eq!(l.allow("conflict", t0), Some(0));
        for s in 1..30 {
            assert_eq!(l.allow("api", t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(l.allow("api", t0 + Duration::from_secs(30)), Some(29));
        assert_eq!(l.allow("api", t0 + Duration::from_secs(31)), None);
        assert_eq!(l.recovered("api"), 1);
        assert_eq!(l.recovered("api"), 0);
        // A new episode logs at once.
        assert_eq!(l.allow("api", t0 + Duration::from_secs(32)), Some(0));
        let mut active: Vec<&str> = l.active().collect();
        active.sort_unstable();
        assert_eq!(active, ["api", "conflict"]);
    }
}
