//! Pacing of the requests a [`kube::Client`] sends: an optional client-side rate limit (a token
//! bucket, as client-go's `--kube-api-qps`/`--kube-api-burst`) and the API server's
//! `Retry-After`.
//!
//! When the API server answers 429 with `Retry-After: N` (priority and fairness does), it asks
//! this client, not one object, to slow down: every request the client sends waits until then,
//! so a throttled controller does not keep knocking with its other objects.
//!
//! Build the client with [`PacingLayer`]:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use acr_auth_kube::pacing::{PacingLayer, RateLimit};
//!
//! let mut config = kube::Config::infer().await?;
//! // The controller retries per object itself; see `Controller::new`.
//! config.default_retry = false;
//! let pacing = PacingLayer::new(Some(RateLimit::new(20.0, 40)?));
//! let client = kube::client::ClientBuilder::try_from(config)?
//!     .with_layer(&pacing)
//!     .build();
//! # let _ = client;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// The longest `Retry-After` honoured: a larger (or absurd) value is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A client-side rate limit: `qps` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    qps: f64,
    burst: u32,
}

impl RateLimit {
    /// The lowest rate accepted: one request every 100 s.
    pub const MIN_QPS: f64 = 0.01;

    /// `qps` must be a finite number of at least [`RateLimit::MIN_QPS`], `burst` at least 1.
    pub fn new(qps: f64, burst: u32) -> Result<Self, String> {
        if !(qps.is_finite() && qps >= Self::MIN_QPS) {
            return Err(format!(
                "the API request rate must be at least {} a second, got {qps}",
                Self::MIN_QPS
            ));
        }
        if burst == 0 {
            return Err("the API request burst must be at least 1".to_owned());
        }
        Ok(Self { qps, burst })
    }

    /// Requests a second.
    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// Requests at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

#[derive(Debug)]
struct State {
    tokens: f64,
    refilled: Instant,
    not_before: Option<Instant>,
}

/// The shared pacing state of one client: clones share it.
#[derive(Debug, Clone)]
pub struct Pacer {
    limit: Option<RateLimit>,
    state: Arc<Mutex<State>>,
}

impl Pacer {
    /// A pacer with an optional rate limit (`None`: only `Retry-After` is honoured).
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limit,
            state: Arc::new(Mutex::new(State {
                tokens: limit.map_or(0.0, |l| f64::from(l.burst)),
                refilled: Instant::now(),
                not_before: None,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for one request at `now`, or says when to ask again.
    pub fn try_admit(&self, now: Instant) -> Result<(), Instant> {
        let mut s = self.state();
        if let Some(t) = s.not_before {
            if now < t {
                return Err(t);
            }
            s.not_before = None;
        }
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * limit.qps).min(f64::from(limit.burst));
        s.refilled = now;
        // (A hair below 1 is float rounding of a whole token.)
        if s.tokens >= 1.0 - 1e-9 {
            s.tokens = (s.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            let wait = (1.0 - s.tokens) / limit.qps;
            Err(now + Duration::from_secs_f64(wait))
        }
    }

    /// The API server asked to wait `delay` (capped at [`MAX_RETRY_AFTER`]) from `now`. Returns
    /// `true` when this starts a new episode (no hold was in force), so it is logged once.
    pub fn hold(&self, now: Instant, delay: Duration) -> bool {
        let until = now + delay.min(MAX_RETRY_AFTER);
        let mut s = self.state();
        let new_episode = s.not_before.is_none_or(|t| t <= now);
        if s.not_before.is_none_or(|t| t < until) {
            s.not_before = Some(until);
        }
        new_episode
    }

    /// Until when requests are held back by a `Retry-After`, if they are.
    pub fn held_until(&self) -> Option<Instant> {
        self.state().not_before
    }
}

/// The `tower` layer that paces a client's requests with a [`Pacer`].
#[derive(Debug, Clone)]
pub struct PacingLayer {
    pacer: Pacer,
}

impl PacingLayer {
    /// A layer with an optional rate limit; `Retry-After` is always honoured.
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self {
            pacer: Pacer::new(limit),
        }
    }

    /// The shared state (to inspect it, or to share it with another client).
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }
}

impl<S> tower::Layer<S> for PacingLayer {
    type Service = Paced<S>;

    fn layer(&self, inner: S) -> Paced<S> {
        Paced {
            inner,
            pacer: self.pacer.clone(),
            wait: None,
            admitted: false,
        }
    }
}

/// A service whose requests wait for the [`Pacer`]. See [`PacingLayer`].
pub struct Paced<S> {
    inner: S,
    pacer: Pacer,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    admitted: bool,
}

impl<S> std::fmt::Debug for Paced<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced")
            .field("pacer", &self.pacer)
            .finish_non_exhaustive()
    }
}

/// The seconds of a `Retry-After` header (the HTTP-date form is not used by the API server).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl<S, B, RB> tower::Service<http::Request<B>> for Paced<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while !self.admitted {
            if let Some(sleep) = self.wait.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            match self.pacer.try_admit(Instant::now()) {
                Ok(()) => self.admitted = true,
                Err(at) => self.wait = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.admitted = false;
        let pacer = self.pacer.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            if response.status() == http::StatusCode::TOO_MANY_REQUESTS {
                if let Some(delay) = retry_after(response.headers()) {
                    if pacer.hold(Instant::now(), delay) {
                        tracing::warn!(
                            retry_after_s = delay.min(MAX_RETRY_AFTER).as_secs(),
                            "the API server throttles us (429); holding every request until its Retry-After"
                        );
                    }
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_validated() {
        assert!(RateLimit::new(0.0, 1).is_err());
        assert!(RateLimit::new(-1.0, 1).is_err());
        assert!(RateLimit::new(f64::NAN, 1).is_err());
        assert!(RateLimit::new(f64::INFINITY, 1).is_err());
        assert!(RateLimit::new(1.0, 0).is_err());
        assert!(RateLimit::new(1e-30, 1).is_err());
        assert!(RateLimit::new(0.5, 1).is_ok());
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let pacer = Pacer::new(Some(RateLimit::new(10.0, 3).unwrap()));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(pacer.try_admit(t0), Ok(()));
        }
        // Empty: the next slot is one token (100 ms) away.
        let next = pacer.try_admit(t0).unwrap_err();
        assert_eq!(next, t0 + Duration::from_millis(100));
        assert!(pacer.try_admit(t0 + Duration::from_millis(99)).is_err());
        assert_eq!(pacer.try_admit(t0 + Duration::from_millis(100)), Ok(()));
        // In one second at most 10 more get in, however often one asks.
        let mut admitted = 0;
        for ms in 101..=1100 {
            if pacer.try_admit(t0 + Duration::from_millis(ms)).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 10);
    }

    #[test]
    fn retry_after_holds_everything_and_is_one_episode() {
        let pacer = Pacer::new(None);
        let t0 = Instant::now();
        assert_eq!(pacer.try_admit(t0), Ok(()));
        assert!(pacer.hold(t0, Duration::from_secs(2)));
        // A second 429 of the same episode is not a new one, and a shorter one does not shorten.
        assert!(!pacer.hold(t0 + Duration::from_millis(10), Duration::from_secs(1)));
        assert_eq!(
            pacer.try_admit(t0 + Duration::from_secs(1)),
            Err(t0 + Duration::from_secs(2))
        );
        assert_eq!(pacer.try_admit(t0 + Duration::from_secs(2)), Ok(()));
        assert_eq!(pacer.held_until(), None);
        // After it ended, a new 429 is a new episode; absurd values are capped.
        assert!(pacer.hold(t0 + Duration::from_secs(3), Duration::from_secs(1 << 40)));
        assert_eq!(
            pacer.held_until(),
            Some(t0 + Duration::from_secs(3) + MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, "-1".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
