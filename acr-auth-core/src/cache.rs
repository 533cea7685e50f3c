//! [`ExpiringCache`]: the one cache for every expiring value (STS credentials, the metadata
//! session token, registry tokens).
//!
//! - A value is renewed once `now >= expires_at - threshold - jitter` (the jitter spreads the
//!   renewals of many caches); a threshold at least as long as the value's lifetime renews at
//!   half-life instead.
//! - Single flight: concurrent callers that find the value due wait for one load, and the value is
//!   re-checked under the lock, so a burst of callers causes one fetch.
//! - Static stability: when a renewal fails, the last good value is served until it really
//!   expires (with a backoff between renewal attempts), then the error is returned. An expired
//!   value is never returned.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rand::Rng as _;

use crate::error::{Error, ErrorKind};
use crate::time::SharedClock;

/// Wait at least this long between two failed renewal attempts while a last good value is served.
const MIN_FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// And at most this long.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    expires_at: SystemTime,
    /// When to try to renew (before expiry).
    renew_at: SystemTime,
    /// Consecutive failed renewals since this value was loaded.
    failures: u32,
}

/// An expiring value with renewal ahead of expiry. See the module documentation.
#[derive(Debug)]
pub struct ExpiringCache<T> {
    entry: Mutex<Option<Entry<T>>>,
    renewal: tokio::sync::Mutex<()>,
    threshold: Duration,
    max_jitter: Duration,
    clock: SharedClock,
}

impl<T: Clone + Send> ExpiringCache<T> {
    /// A cache renewing `threshold` before expiry, with up to 10 % of the threshold (at most
    /// 30 s) of random jitter.
    pub fn new(threshold: Duration, clock: SharedClock) -> Self {
        Self {
            entry: Mutex::new(None),
            renewal: tokio::sync::Mutex::new(()),
            threshold,
            max_jitter: (threshold / 10).min(Duration::from_secs(30)),
            clock,
        }
    }

    /// Sets the largest random amount by which a renewal is moved earlier.
    pub fn with_max_jitter(mut self, max_jitter: Duration) -> Self {
        self.max_jitter = max_jitter;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Entry<T>>> {
        self.entry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached value if it is not yet due for renewal at `now`.
    fn fresh(&self, now: SystemTime) -> Option<T> {
        self.lock()
            .as_ref()
            .filter(|e| now < e.renew_at && now < e.expires_at)
            .map(|e| e.value.clone())
    }

    /// The cached value if it is not due for renewal within `early` from now; an `early` too
    /// large to add to the clock means "due".
    fn fresh_within(&self, early: Duration) -> Option<T> {
        self.clock
            .now()
            .checked_add(early)
            .and_then(|at| self.fresh(at))
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
        if let Some(v) = self.fresh_within(early) {
            return Ok(v);
        }
        let _renewing = self.renewal.lock().await;
        // Another caller may have renewed while we waited for the lock.
        if let Some(v) = self.fresh_within(early) {
            return Ok(v);
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
        match loaded {
            Ok((value, expires_at)) => {
                let renew_at = self.renew_at(now, expires_at);
                *self.lock() = Some(Entry {
                    value: value.clone(),
                    expires_at,
                    renew_at,
                    failures: 0,
                });
                Ok(value)
            }
            Err(e) => {
                let mut guard = self.lock();
                match guard.as_mut().filter(|entry| now < entry.expires_at) {
                    Some(entry) => {
                        entry.failures = entry.failures.saturating_add(1);
                        let backoff = MIN_FAILURE_BACKOFF
                            .saturating_mul(1 << entry.failures.min(6))
                            .min(MAX_FAILURE_BACKOFF);
                        entry.renew_at = now
                            .checked_add(backoff)
                            .map_or(entry.expires_at, |t| t.min(entry.expires_at));
                        tracing::warn!(
                            error = %e,
                            failures = entry.failures,
                            expires_in_s = entry.expires_at.duration_since(now).unwrap_or_default().as_secs(),
                            "renewal failed; serving the last good value until it expires"
                        );
                        Ok(entry.value.clone())
                    }
                    None => Err(e),
                }
            }
        }
    }

    fn renew_at(&self, now: SystemTime, expires_at: SystemTime) -> SystemTime {
        let lifetime = expires_at.duration_since(now).unwrap_or_default();
        if self.threshold >= lifetime {
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
            .as_ref()
            .filter(|e| now < e.expires_at)
            .map(|e| (e.value.clone(), e.expires_at))
    }

    /// When the cached value is due for renewal, if there is one.
    pub fn renew_at_time(&self) -> Option<SystemTime> {
        self.lock().as_ref().map(|e| e.renew_at)
    }

    /// Drops the cached value: the next call loads.
    pub fn invalidate(&self) {
        *self.lock() = None;
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
}
