//! [`ExpiringCache`]: the one cache for every expiring value (STS credentials, the metadata
//! session token, registry tokens).
//!
//! - A value is renewed once `now >= expires_at - threshold - jitter` (the jitter spreads the
//!   renewals of many caches); a threshold at least as long as the value's lifetime renews at
//!   half-life instead.
//! - Single flight: concurrent callers that find the value due wait for one load, and the value is
//!   re-checked under the lock, so a burst of callers causes one fetch.
//! - Static stability: when a renewal fails, the last good value is served until it really
//!   expires, then the error is returned. An expired value is never returned.
//! - Failed attempts back off: capped exponential with jitter ([`FailureBackoff`]), reset by a
//!   success. [`ExpiringCache::get_or_load_status`] tells a caller that it is being served a last
//!   good value because renewals fail, from the first failed attempt on.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rand::RngExt as _;

use crate::error::{Error, ErrorKind};
use crate::time::SharedClock;

/// How failed loads are paced: the n-th consecutive failure waits `min * 2^(n-1)`, capped at
/// `max`, scaled by a random factor in [0.5, 1] (so many caches failing together spread out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureBackoff {
    /// The first wait.
    pub min: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Whether a cache with no value to serve also waits before the next attempt (a caller
    /// then gets the last error again without a load). Off for caches read by one-shot
    /// callers, on for a controller's registry tokens.
    pub when_empty: bool,
}

impl FailureBackoff {
    /// 1 s doubling to 60 s, only while a last good value is served (the default).
    pub const DEFAULT: Self = Self {
        min: Duration::from_secs(1),
        max: Duration::from_secs(60),
        when_empty: false,
    };

    /// 1 s doubling to 5 minutes, with or without a value: a long-running controller's pace.
    pub const CONTROLLER: Self = Self {
        min: Duration::from_secs(1),
        max: Duration::from_secs(300),
        when_empty: true,
    };

    /// The wait after the `failures`-th consecutive failure (1-based), before jitter.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        self.min
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait after the `failures`-th consecutive failure, with jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        self.ceiling(failures)
            .mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

impl Default for FailureBackoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    expires_at: SystemTime,
    /// When to try to renew (before expiry).
    renew_at: SystemTime,
}

/// Consecutive failed loads since the last success.
#[derive(Debug, Clone)]
struct Failure {
    count: u32,
    retry_at: SystemTime,
    error: Error,
}

#[derive(Debug)]
struct State<T> {
    entry: Option<Entry<T>>,
    failure: Option<Failure>,
    failed_attempts: u64,
}

/// A value served by [`ExpiringCache::get_or_load_status`].
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The value (never expired).
    pub value: T,
    /// When it expires.
    pub expires_at: SystemTime,
    /// `Some` when this is a last good value kept because its renewal fails: the latest error.
    pub renewal_error: Option<Error>,
}

/// An expiring value with renewal ahead of expiry. See the module documentation.
#[derive(Debug)]
pub struct ExpiringCache<T> {
    state: Mutex<State<T>>,
    renewal: tokio::sync::Mutex<()>,
    threshold: Duration,
    max_jitter: Duration,
    backoff: FailureBackoff,
    clock: SharedClock,
    /// The clamped-threshold warning went out: it is said once per cache, not at every renewal.
    threshold_warned: std::sync::atomic::AtomicBool,
}

/// What a call finds in the cache.
enum Found<T> {
    /// Nothing to load now: this value (and the renewal error, if it is a last good value).
    Serve(Loaded<T>),
    /// Failing, in backoff, nothing valid to serve: this error.
    Fail(Error),
    /// Load.
    Due,
}

impl<T: Clone + Send> ExpiringCache<T> {
    /// A cache renewing `threshold` before expiry, with up to 10 % of the threshold (at most
    /// 30 s) of random jitter, and the [`FailureBackoff::DEFAULT`] pacing of failures.
    pub fn new(threshold: Duration, clock: SharedClock) -> Self {
        Self {
            state: Mutex::new(State {
                entry: None,
                failure: None,
                failed_attempts: 0,
            }),
            renewal: tokio::sync::Mutex::new(()),
            threshold,
            max_jitter: (threshold / 10).min(Duration::from_secs(30)),
            backoff: FailureBackoff::DEFAULT,
            clock,
            threshold_warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sets the largest random amount by which a renewal is moved earlier.
    pub fn with_max_jitter(mut self, max_jitter: Duration) -> Self {
        self.max_jitter = max_jitter;
        self
    }

    /// Sets how failed loads are paced.
    pub fn with_failure_backoff(mut self, backoff: FailureBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The renewal threshold.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a call at `now` (treating renewals due before `now + early` as due) finds.
    fn find(&self, now: SystemTime, early: Duration) -> Found<T> {
        let state = self.lock();
        let valid = state
            .entry
            .as_ref()
            .filter(|e| now < e.expires_at)
            .map(|e| Loaded {
                value: e.value.clone(),
                expires_at: e.expires_at,
                renewal_error: state.failure.as_ref().map(|f| f.error.clone()),
            });
        match (&state.failure, valid) {
            // Failing: the backoff decides, whatever the value's own renewal time says.
            (Some(f), Some(v)) if now < f.retry_at => Found::Serve(v),
            (Some(f), None) if now < f.retry_at && self.backoff.when_empty => {
                Found::Fail(f.error.clone())
            }
            (Some(_), _) => Found::Due,
            (None, Some(v)) => {
                let renew_at = state.entry.as_ref().map_or(now, |e| e.renew_at);
                // An `early` too large to add to the clock means "due".
                match now.checked_add(early) {
                    Some(at) if at < renew_at => Found::Serve(v),
                    _ => Found::Due,
                }
            }
            (None, None) => Found::Due,
        }
    }

    /// The cached value, renewed with `load` when due. `load` returns the new value and when it
    /// expires.
    pub async fn get_or_load<F, Fut>(&self, load: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, SystemTime), Error>>,
    {
        self.get_or_load_early(Duration::ZERO, load).await
    }

    /// Like [`ExpiringCache::get_or_load`], treating the value as due when its renewal time is
    /// within `early` from now: values renewed together stay together (one Secret update for
    /// all the registry tokens of a controller, rather than one per token).
    pub async fn get_or_load_early<F, Fut>(&self, early: Duration, load: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, SystemTime), Error>>,
    {
        self.get_or_load_status(early, load).await.map(|l| l.value)
    }

    /// Like [`ExpiringCache::get_or_load_early`], and says whether the value served is a last
    /// good one whose renewal fails ([`Loaded::renewal_error`]).
    pub async fn get_or_load_status<F, Fut>(
        &self,
        early: Duration,
        load: F,
    ) -> Result<Loaded<T>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, SystemTime), Error>>,
    {
        match self.find(self.clock.now(), early) {
            Found::Serve(v) => return Ok(v),
            Found::Fail(e) => return Err(e),
            Found::Due => {}
        }
        let _renewing = self.renewal.lock().await;
        // Another caller may have renewed (or failed) while we waited for the lock.
        match self.find(self.clock.now(), early) {
            Found::Serve(v) => return Ok(v),
            Found::Fail(e) => return Err(e),
            Found::Due => {}
        }
        let loaded = match load().await {
            Ok((_, expires_at)) if expires_at <= self.clock.now() => Err(Error::new(
                ErrorKind::InvalidResponse,
                "expiring cache",
                "the source returned a value that has already expired",
            )),
            other => other,
        };
        let now = self.clock.now();
        let mut state = self.lock();
        match loaded {
            Ok((value, expires_at)) => {
                let renew_at = self.renew_at(now, expires_at);
                state.entry = Some(Entry {
                    value: value.clone(),
                    expires_at,
                    renew_at,
                });
                state.failure = None;
                Ok(Loaded {
                    value,
                    expires_at,
                    renewal_error: None,
                })
            }
            Err(e) => {
                let count = state
                    .failure
                    .as_ref()
                    .map_or(1, |f| f.count.saturating_add(1));
                let delay = self.backoff.delay(count);
                state.failed_attempts = state.failed_attempts.saturating_add(1);
                state.failure = Some(Failure {
                    count,
                    retry_at: now.checked_add(delay).unwrap_or(now),
                    error: e.clone(),
                });
                match state.entry.as_ref().filter(|entry| now < entry.expires_at) {
                    Some(entry) => {
                        tracing::warn!(
                            error = %e,
                            failures = count,
                            retry_in_ms = delay.as_millis() as u64,
                            expires_in_s = entry.expires_at.duration_since(now).unwrap_or_default().as_secs(),
                            "renewal failed; serving the last good value until it expires"
                        );
                        Ok(Loaded {
                            value: entry.value.clone(),
                            expires_at: entry.expires_at,
                            renewal_error: Some(e),
                        })
                    }
                    None => {
                        state.entry = None;
                        Err(e)
                    }
                }
            }
        }
    }

    fn renew_at(&self, now: SystemTime, expires_at: SystemTime) -> SystemTime {
        let lifetime = expires_at.duration_since(now).unwrap_or_default();
        if self.threshold >= lifetime {
            if self
                .threshold_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                return now.checked_add(lifetime / 2).unwrap_or(expires_at);
            }
            tracing::warn!(
                threshold_s = self.threshold.as_secs(),
                lifetime_s = lifetime.as_secs(),
                "the renewal threshold is not shorter than the value's lifetime; renewing at half-life"
            );
            return now.checked_add(lifetime / 2).unwrap_or(expires_at);
        }
        let jitter = if self.max_jitter.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..=self.max_jitter)
        };
        // Never earlier than now: with a large jitter the renewal is simply due at once.
        expires_at
            .checked_sub(self.threshold)
            .and_then(|t| t.checked_sub(jitter))
            .map_or(now, |t| t.max(now))
    }

    /// The cached value and its expiry, without loading; `None` when empty or expired.
    pub fn peek(&self) -> Option<(T, SystemTime)> {
        let now = self.clock.now();
        self.lock()
            .entry
            .as_ref()
            .filter(|e| now < e.expires_at)
            .map(|e| (e.value.clone(), e.expires_at))
    }

    /// Puts `value` in the cache as if it had been loaded (for instance a value found where a
    /// previous process left it), unless it has expired or the cache holds a later one.
    pub fn seed(&self, value: T, expires_at: SystemTime) -> bool {
        let now = self.clock.now();
        if expires_at <= now {
            return false;
        }
        let mut state = self.lock();
        if state
            .entry
            .as_ref()
            .is_some_and(|e| e.expires_at >= expires_at)
        {
            return false;
        }
        // A value already within its threshold is due at once: its original lifetime is not
        // known, so the half-life rule of `renew_at` would only postpone the renewal.
        let remaining = expires_at.duration_since(now).unwrap_or_default();
        let renew_at = if remaining <= self.threshold {
            now
        } else {
            self.renew_at(now, expires_at)
        };
        state.entry = Some(Entry {
            value,
            expires_at,
            renew_at,
        });
        true
    }

    /// When the cached value is due for renewal, if there is one.
    pub fn renew_at_time(&self) -> Option<SystemTime> {
        self.lock().entry.as_ref().map(|e| e.renew_at)
    }

    /// When a call would load next: the end of the failure backoff while loads fail, else the
    /// value's renewal time; `None` when nothing is cached and nothing failed (a call loads).
    pub fn next_attempt_at(&self) -> Option<SystemTime> {
        let state = self.lock();
        match &state.failure {
            Some(f) => Some(f.retry_at),
            None => state.entry.as_ref().map(|e| e.renew_at),
        }
    }

    /// Failed loads since the cache was made (a counter for metrics: each failed attempt counts
    /// once, when it happens).
    pub fn failed_attempts(&self) -> u64 {
        self.lock().failed_attempts
    }

    /// Drops the cached value and the failure backoff: the next call loads.
    pub fn invalidate(&self) {
        let mut state = self.lock();
        state.entry = None;
        state.failure = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::time::ManualClock;

    const T0: Duration = Duration::from_secs(1_700_000_000);

    fn setup(threshold_s: u64) -> (ManualClock, ExpiringCache<u32>) {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + T0);
        let cache = ExpiringCache::new(Duration::from_secs(threshold_s), Arc::new(clock.clone()))
            .with_max_jitter(Duration::ZERO);
        (clock, cache)
    }

    fn at(clock: &ManualClock, secs: u64) -> SystemTime {
        clock.now() + Duration::from_secs(secs)
    }

    async fn load_ok(
        cache: &ExpiringCache<u32>,
        v: u32,
        expires: SystemTime,
        calls: &AtomicUsize,
    ) -> u32 {
        cache
            .get_or_load(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok((v, expires))
            })
            .await
            .unwrap()
    }

    use crate::time::Clock as _;

    #[tokio::test]
    async fn serves_cached_value_until_threshold_then_renews() {
        let (clock, cache) = setup(900);
        let calls = AtomicUsize::new(0);
        let exp = at(&clock, 3600);
        assert_eq!(load_ok(&cache, 1, exp, &calls).await, 1);
        clock.advance(Duration::from_secs(2699));
        assert_eq!(
            load_ok(&cache, 2, at(&clock, 3600), &calls).await,
            1,
            "not yet due"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(1)); // exactly expires_at - threshold
        assert_eq!(load_ok(&cache, 2, at(&clock, 3600), &calls).await, 2, "due");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn early_renewal_takes_values_due_within_the_window() {
        let (clock, cache) = setup(900);
        let calls = AtomicUsize::new(0);
        load_ok(&cache, 1, at(&clock, 3600), &calls).await;
        clock.advance(Duration::from_secs(2699)); // due in 1 s
        let early = |v| {
            cache.get_or_load_early(Duration::from_secs(2), move || async move {
                Ok((v, SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(9999)))
            })
        };
        assert_eq!(
            early(2).await.unwrap(),
            2,
            "due within the window: renewed now"
        );
        assert_eq!(
            cache
                .get_or_load_early(Duration::from_secs(2), || async {
                    Ok((3, SystemTime::UNIX_EPOCH))
                })
                .await
                .unwrap(),
            2,
            "fresh again"
        );
    }

    #[tokio::test]
    async fn an_early_window_past_the_end_of_time_means_due() {
        let (clock, cache) = setup(900);
        let calls = AtomicUsize::new(0);
        load_ok(&cache, 1, at(&clock, 3600), &calls).await;
        let renewed = cache
            .get_or_load_early(Duration::MAX, || async { Ok((2, at(&clock, 3600))) })
            .await
            .unwrap();
        assert_eq!(renewed, 2);
    }

    #[tokio::test]
    async fn threshold_longer_than_lifetime_renews_at_half_life() {
        let (clock, cache) = setup(7200);
        let calls = AtomicUsize::new(0);
        load_ok(&cache, 1, at(&clock, 3600), &calls).await;
        assert_eq!(cache.renew_at_time(), Some(at(&clock, 1800)));
    }

    /// The clamped-threshold warning is logged at the first renewal only, not at every one.
    #[tokio::test(flavor = "current_thread")]
    async fn the_clamped_threshold_is_warned_about_once() {
        #[derive(Clone, Default)]
        struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (clock, cache) = setup(7200);
        let calls = AtomicUsize::new(0);
        for v in 1..=4 {
            load_ok(&cache, v, at(&clock, 3600), &calls).await;
            clock.advance(Duration::from_secs(1801));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "renewed at every half-life"
        );
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logs.matches("renewal threshold").count(), 1, "{logs}");
    }

    #[tokio::test]
    async fn jitter_moves_renewal_earlier_but_never_past_now() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + T0);
        let cache = ExpiringCache::new(Duration::from_secs(900), Arc::new(clock.clone()))
            .with_max_jitter(Duration::from_secs(60));
        for _ in 0..50 {
            cache.invalidate();
            let exp = at(&clock, 3600);
            cache
                .get_or_load(|| async { Ok((1u32, exp)) })
                .await
                .unwrap();
            let renew = cache.renew_at_time().unwrap();
            assert!(
                renew <= at(&clock, 2700) && renew >= at(&clock, 2640),
                "{renew:?}"
            );
        }
    }

    #[tokio::test]
    async fn failed_renewal_serves_last_good_until_expiry_then_errors() {
        let (clock, cache) = setup(900);
        let calls = AtomicUsize::new(0);
        load_ok(&cache, 7, at(&clock, 3600), &calls).await;
        clock.advance(Duration::from_secs(3000)); // due, 600 s left
        let fail =
            || async { Err::<(u32, SystemTime), _>(Error::new(ErrorKind::Transport, "t", "down")) };
        assert_eq!(cache.get_or_load(fail).await.unwrap(), 7);
        // Within the failure backoff, no new attempt is made.
        let attempts = AtomicUsize::new(0);
        let counting_fail = || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err::<(u32, SystemTime), _>(Error::new(ErrorKind::Transport, "t", "down"))
        };
        assert_eq!(cache.get_or_load(counting_fail).await.unwrap(), 7);
        assert_eq!(attempts.load(Ordering::SeqCst), 0);
        clock.advance(Duration::from_secs(599));
        assert_eq!(
            cache.get_or_load(fail).await.unwrap(),
            7,
            "one second of validity left"
        );
        clock.advance(Duration::from_secs(1));
        let e = cache.get_or_load(fail).await.unwrap_err();
        assert_eq!(e.message(), "down");
        assert!(cache.peek().is_none(), "never an expired value");
    }

    #[tokio::test]
    async fn an_already_expired_value_is_refused() {
        let (clock, cache) = setup(60);
        let past = clock.now() - Duration::from_secs(1);
        let e = cache
            .get_or_load(|| async { Ok((1u32, past)) })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidResponse);
        assert!(cache.peek().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_hundred_concurrent_callers_cause_one_fetch() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + T0);
        let cache = Arc::new(ExpiringCache::<u32>::new(
            Duration::from_secs(60),
            Arc::new(clock.clone()),
        ));
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let exp = at(&clock, 3600);
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, calls, started, mut gate) =
                (cache.clone(), calls.clone(), started.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                cache
                    .get_or_load(|| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Hold the load open until every caller is waiting.
                        let _ = gate.wait_for(|open| *open).await;
                        Ok((42, exp))
                    })
                    .await
                    .unwrap()
            }));
        }
        // Release the load only once every caller is inside `get_or_load`.
        while started.load(Ordering::SeqCst) < 100 {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 42);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    fn down() -> Error {
        Error::new(ErrorKind::Transport, "t", "down")
    }

    #[tokio::test]
    async fn the_first_failed_renewal_is_reported_with_the_last_good_value() {
        let (clock, cache) = setup(900);
        let calls = AtomicUsize::new(0);
        load_ok(&cache, 7, at(&clock, 3600), &calls).await;
        clock.advance(Duration::from_secs(2700)); // due, 900 s left
        let fail = || async { Err::<(u32, SystemTime), _>(down()) };
        let served = cache
            .get_or_load_status(Duration::ZERO, fail)
            .await
            .unwrap();
        assert_eq!(served.value, 7);
        assert_eq!(served.renewal_error.unwrap().message(), "down");
        assert_eq!(cache.failed_attempts(), 1);
        // Within the backoff no attempt is made, and the value is still reported as stale.
        let again = cache
            .get_or_load_status(Duration::ZERO, fail)
            .await
            .unwrap();
        assert!(again.renewal_error.is_some());
        assert_eq!(cache.failed_attempts(), 1);
        // A success clears the failure.
        clock.advance(Duration::from_secs(1));
        let renewed = cache
            .get_or_load_status(Duration::ZERO, || async { Ok((8, at(&clock, 3600))) })
            .await
            .unwrap();
        assert_eq!(renewed.value, 8);
        assert!(renewed.renewal_error.is_none());
        assert!(cache.next_attempt_at().unwrap() > at(&clock, 2000));
    }

    #[tokio::test]
    async fn with_nothing_to_serve_the_controller_policy_backs_off_exponentially() {
        let (clock, cache) = setup(900);
        let cache = cache.with_failure_backoff(FailureBackoff::CONTROLLER);
        let attempts = AtomicUsize::new(0);
        let fail = || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err::<(u32, SystemTime), _>(down())
        };
        // Call every 100 ms for 20 minutes: the attempts are 1 s, 2 s, 4 s ... apart, capped at
        // 5 minutes, so a few over 10, never one per call.
        for _ in 0..12_000 {
            let e = cache.get_or_load(fail).await.unwrap_err();
            assert_eq!(e.message(), "down");
            clock.advance(Duration::from_millis(100));
        }
        let n = attempts.load(Ordering::SeqCst);
        assert!((9..=16).contains(&n), "{n} attempts in 20 minutes");
        assert_eq!(cache.failed_attempts(), n as u64);
        let wait = cache
            .next_attempt_at()
            .unwrap()
            .duration_since(clock.now())
            .unwrap_or_default();
        assert!(wait <= Duration::from_secs(300), "{wait:?}");
        // Without the controller policy (one-shot callers), every call tries again.
        let (_, plain) = setup(900);
        let before = attempts.load(Ordering::SeqCst);
        for _ in 0..3 {
            plain.get_or_load(fail).await.unwrap_err();
        }
        assert_eq!(attempts.load(Ordering::SeqCst), before + 3);
    }

    #[test]
    fn backoff_doubles_from_the_minimum_to_the_cap_with_jitter() {
        let b = FailureBackoff::CONTROLLER;
        let ceilings: Vec<u64> = (1..=11).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(300));
        for n in 1..20 {
            let d = b.delay(n);
            assert!(d <= b.ceiling(n) && d >= b.ceiling(n) / 2, "{n}: {d:?}");
        }
    }

    #[tokio::test]
    async fn a_seeded_value_is_served_until_its_renewal_point() {
        let (clock, cache) = setup(900);
        assert!(!cache.seed(1, clock.now()), "expired values are refused");
        assert!(cache.seed(5, at(&clock, 3600)));
        let calls = AtomicUsize::new(0);
        assert_eq!(load_ok(&cache, 6, at(&clock, 7200), &calls).await, 5);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(
            !cache.seed(4, at(&clock, 1800)),
            "an earlier expiry never replaces a later one"
        );
        // Seeded within its threshold: due at once, not at half of what is left.
        let (clock, cache) = setup(900);
        assert!(cache.seed(7, at(&clock, 600)));
        let calls = AtomicUsize::new(0);
        assert_eq!(load_ok(&cache, 8, at(&clock, 3600), &calls).await, 8);
    }
}
