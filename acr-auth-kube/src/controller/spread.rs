//! Spreading renewal writes over a window: when a registry's token is renewed, every namespace's
//! Secret changes at once, but each one's old token stays valid until its own expiry. Updates
//! that only renew are sent at a per-namespace offset within the window, so 10,000 namespaces
//! are not one burst. Everything else (a new namespace, a new registry or host, an old token
//! close to its expiry) is written at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::Digest as _;
use tokio::time::Instant;

use super::stores::Compact;
use super::{Live, PassReport};
use crate::plan::{registries_shape, SecretContent, SecretInfo, Write};

/// The default window.
pub const DEFAULT_RENEWAL_SPREAD: Duration = Duration::from_secs(60);

/// Where in the window `namespace`'s renewal goes: a stable fraction of it (the same on every
/// pass and every replica), from a hash of the name.
pub(super) fn offset(namespace: &str, window: Duration) -> Duration {
    let h = sha2::Sha256::digest(namespace.as_bytes());
    let x = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    window.mul_f64(x as f64 / (u64::MAX as f64 + 1.0))
}

/// One pass's renewal window: the content being rolled out (its registries' shape), since
/// when, and the clock.
pub(super) struct Rollout {
    /// [`registries_shape`] of the new content, computed once per pass.
    shape: Option<[u8; 32]>,
    since: Instant,
    now: SystemTime,
    window: Duration,
}

impl Rollout {
    /// The rollout of `content` (its [`crate::plan::SecretContent::registries`] annotation),
    /// started at `since`.
    pub(super) fn new(
        registries: Option<&str>,
        since: Instant,
        now: SystemTime,
        window: Duration,
    ) -> Self {
        Self {
            shape: registries.and_then(registries_shape),
            since,
            now,
            window,
        }
    }

    /// When an update may go: `None` to write at once, `Some(t)` when it only renews the
    /// tokens of `existing` (same registries and hosts) whose old credentials stay valid for
    /// more than twice the window; `t` is `since` plus the namespace's offset.
    pub(super) fn due(&self, write: &Write, existing: Option<&SecretInfo>) -> Option<Instant> {
        if self.window.is_zero() {
            return None;
        }
        let Write::UpdateSecret { namespace, .. } = write else {
            return None;
        };
        let existing = existing?;
        if self.shape.is_none() || existing.registries_shape != self.shape {
            return None;
        }
        let old_expiry = existing
            .expires_annotation
            .as_deref()
            .and_then(acr_auth_core::time::parse_iso8601)?;
        if old_expiry.duration_since(self.now).unwrap_or_default() <= self.window * 2 {
            return None;
        }
        Some(self.since + offset(namespace, self.window))
    }
}

/// One pass's holding back of renewal writes: the pass's [`Rollout`], the earliest held write
/// and how many were held.
pub(super) struct Spread {
    rollout: Rollout,
    /// Digest of the content rolled out (`None`: no credentials).
    digest: Option<[u8; 32]>,
    /// Whether the pass planned an update (a rollout is under way).
    updating: bool,
    next: Option<Instant>,
    held: usize,
}

impl Spread {
    /// The spreading of one pass that rolls out `content`: the rollout started when the
    /// content was first planned ([`Live::rollout`]), or now.
    pub(super) fn begin(
        content: Option<&Arc<SecretContent>>,
        live: &Live,
        window: Duration,
        clock_now: SystemTime,
        now: Instant,
    ) -> Self {
        let digest = content.map(|c| c.digest());
        let since = match live.rollout {
            Some((current, since)) if Some(current) == digest => since,
            _ => now,
        };
        Self {
            rollout: Rollout::new(
                content.and_then(|c| c.registries()),
                since,
                clock_now,
                window,
            ),
            digest,
            updating: false,
            next: None,
            held: 0,
        }
    }

    /// Holds back the renewal writes among `writes` whose place in the renewal window has not
    /// come yet; returns the others.
    pub(super) fn filter(
        &mut self,
        writes: Vec<Write>,
        secrets: &Compact<SecretInfo>,
        now: Instant,
    ) -> Vec<Write> {
        let before = writes.len();
        let ready: Vec<Write> = writes
            .into_iter()
            .filter(|w| {
                if !matches!(w, Write::UpdateSecret { .. }) {
                    return true;
                }
                self.updating = true;
                let (namespace, name) = w.target();
                match self.rollout.due(w, secrets.get(namespace, name).as_ref()) {
                    Some(due) if due > now => {
                        self.next = Some(self.next.map_or(due, |n| n.min(due)));
                        false
                    }
                    _ => true,
                }
            })
            .collect();
        self.held += before - ready.len();
        ready
    }

    /// Ends the pass: remembers the rollout (while updates are planned) and when the next held
    /// write is due.
    pub(super) fn end(self, live: &mut Live, report: &mut PassReport, now: Instant) {
        report.spread = self.held;
        let since = self.rollout.since;
        live.rollout = match self.digest {
            Some(d) if self.updating => Some((d, since)),
            _ => None,
        };
        if self.held > 0 && since == now {
            tracing::info!(
                writes = self.held,
                window_s = self.rollout.window.as_secs(),
                "spreading renewal writes over the renewal window (old tokens stay valid meanwhile)"
            );
        }
        live.spread_next = self.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{RegistryRecord, SecretContent};
    use acr_auth_core::docker_config::DockerConfig;

    fn record(hosts: &[&str], expires: &str) -> String {
        serde_json::to_string(&[RegistryRecord {
            source: "s1".into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            expires_at: expires.into(),
        }])
        .unwrap()
    }

    fn update(ns: &str, registries: String) -> Write {
        Write::UpdateSecret {
            namespace: ns.into(),
            name: "pull".into(),
            resource_version: "1".into(),
            content: Arc::new(
                SecretContent::new(&DockerConfig::default(), None)
                    .with_registries(Some(registries)),
            ),
            has_annotations: true,
            expires_annotation: None,
        }
    }

    fn existing(ns: &str, registries: &str, expires: &str) -> SecretInfo {
        SecretInfo {
            namespace: ns.into(),
            name: "pull".into(),
            managed: true,
            expires_annotation: Some(expires.into()),
            registries_shape: registries_shape(registries),
            ..SecretInfo::default()
        }
    }

    /// The rollout of `write`'s content, asked about `write`.
    fn renewal_due(
        write: &Write,
        existing: Option<&SecretInfo>,
        now: SystemTime,
        since: Instant,
        window: Duration,
    ) -> Option<Instant> {
        let Write::UpdateSecret { content, .. } = write else {
            panic!("not an update");
        };
        Rollout::new(content.registries(), since, now, window).due(write, existing)
    }

    #[test]
    fn only_renewals_of_still_valid_tokens_wait() {
        let now = acr_auth_core::time::parse_iso8601("2026-11-30T12:00:00Z").unwrap();
        let since = Instant::now();
        let window = Duration::from_secs(60);
        let old = record(&["a.example", "b.example"], "2026-11-30T12:30:00Z");
        let renewed = record(&["b.example", "a.example"], "2026-11-30T13:30:00Z");
        let w = update("dev", renewed.clone());
        // Same registries and hosts (in another order), old token valid 30 min: spread.
        let due = renewal_due(
            &w,
            Some(&existing("dev", &old, "2026-11-30T12:30:00Z")),
            now,
            since,
            window,
        )
        .expect("a renewal is spread");
        assert!(due >= since && due < since + window);
        // The same namespace always gets the same place.
        assert_eq!(offset("dev", window), offset("dev", window));
        // Old token expiring within two windows: at once.
        assert_eq!(
            renewal_due(
                &w,
                Some(&existing("dev", &old, "2026-11-30T12:01:59Z")),
                now,
                since,
                window
            ),
            None
        );
        // A host added: at once.
        let grown = record(
            &["a.example", "b.example", "c.example"],
            "2026-11-30T13:30:00Z",
        );
        assert_eq!(
            renewal_due(
                &update("dev", grown),
                Some(&existing("dev", &old, "2026-11-30T12:30:00Z")),
                now,
                since,
                window
            ),
            None
        );
        // No record on the old Secret (written by an older version): at once.
        assert_eq!(
            renewal_due(
                &w,
                Some(&existing("dev", "not json", "2026-11-30T12:30:00Z")),
                now,
                since,
                window
            ),
            None
        );
        // Spreading off.
        assert_eq!(
            renewal_due(
                &w,
                Some(&existing("dev", &old, "2026-11-30T12:30:00Z")),
                now,
                since,
                Duration::ZERO
            ),
            None
        );
    }

    #[test]
    fn offsets_cover_the_window() {
        let window = Duration::from_secs(60);
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| offset(&format!("ns-{i}"), window))
            .collect();
        assert!(offsets.iter().all(|o| *o < window));
        // Roughly uniform: every tenth of the window gets some, none gets a third.
        for tenth in 0..10 {
            let lo = window / 10 * tenth;
            let n = offsets
                .iter()
                .filter(|o| **o >= lo && **o < lo + window / 10)
                .count();
            assert!((50..=333).contains(&n), "tenth {tenth}: {n}");
        }
    }
}
