//! Per-object pacing of failed writes.

use std::collections::BTreeSet;
use std::time::Duration;

use acr_auth_core::cache::FailureBackoff;

use crate::plan::Write;

/// Failing writes, each paced on its own: capped exponential backoff with jitter from its first
/// failure, forgotten on success or when the write is no longer wanted. A failing object never
/// holds up the others, and never turns into a loop of full passes.
#[derive(Default)]
pub(super) struct WriteBackoff {
    objects: std::collections::HashMap<String, (u32, tokio::time::Instant)>,
}

/// Conflicts clear as soon as the watch delivers the newer object: they start shorter.
const CONFLICT_BACKOFF: FailureBackoff = FailureBackoff {
    min: Duration::from_millis(250),
    max: Duration::from_secs(300),
    when_empty: true,
};

impl WriteBackoff {
    pub(super) fn key(write: &Write) -> String {
        let (namespace, name) = write.target();
        let kind = match write {
            Write::PatchServiceAccount { .. } => "serviceaccount",
            _ => "secret",
        };
        format!("{kind} {namespace}/{name}")
    }

    /// Whether `write` waits out a backoff at `now`.
    pub(super) fn waiting(&self, write: &Write, now: tokio::time::Instant) -> bool {
        self.objects
            .get(&Self::key(write))
            .is_some_and(|(_, at)| now < *at)
    }

    /// Records a failure of `write`; it waits its backoff, and at least `at_least` (a
    /// `Retry-After`). Returns the wait.
    pub(super) fn failed(
        &mut self,
        write: &Write,
        conflict: bool,
        at_least: Option<Duration>,
    ) -> Duration {
        let policy = if conflict {
            CONFLICT_BACKOFF
        } else {
            FailureBackoff::CONTROLLER
        };
        let entry = self
            .objects
            .entry(Self::key(write))
            .or_insert((0, tokio::time::Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        let delay = policy.delay(entry.0).max(at_least.unwrap_or_default());
        entry.1 = tokio::time::Instant::now() + delay;
        delay
    }

    pub(super) fn succeeded(&mut self, write: &Write) {
        self.objects.remove(&Self::key(write));
    }

    /// Forgets objects the latest plan no longer writes.
    pub(super) fn retain_planned(&mut self, planned: &BTreeSet<String>) {
        self.objects.retain(|k, _| planned.contains(k));
    }

    /// When the next backed-off write may go.
    pub(super) fn next(&self) -> Option<tokio::time::Instant> {
        self.objects.values().map(|(_, at)| *at).min()
    }
}
