//! Per-object pacing of failed writes.

use std::time::Duration;

use acr_auth_core::cache::FailureBackoff;

use crate::plan::Write;

/// Failing writes, each paced on its own: capped exponential backoff with jitter from its first
/// failure, forgotten on success or when the write is no longer wanted. A failing object never
/// holds up the others, and never turns into a loop of full passes.
#[derive(Default)]
pub(super) struct WriteBackoff {
    objects: std::collections::HashMap<String, Paced>,
    /// The current pass (see [`WriteBackoff::begin_pass`]).
    pass: u64,
}

/// One failing object.
struct Paced {
    failures: u32,
    /// When its next attempt may go.
    at: tokio::time::Instant,
    /// The last pass that planned a write of it.
    planned_in: u64,
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

    /// Starts a pass: [`WriteBackoff::end_pass`] then forgets the objects it did not plan.
    pub(super) fn begin_pass(&mut self) {
        self.pass += 1;
    }

    /// Notes that this pass planned `write` (it keeps its backoff).
    pub(super) fn planned(&mut self, write: &Write) {
        if self.objects.is_empty() {
            return;
        }
        if let Some(paced) = self.objects.get_mut(&Self::key(write)) {
            paced.planned_in = self.pass;
        }
    }

    /// Whether `write` waits out a backoff at `now`.
    pub(super) fn waiting(&self, write: &Write, now: tokio::time::Instant) -> bool {
        !self.objects.is_empty()
            && self
                .objects
                .get(&Self::key(write))
                .is_some_and(|paced| now < paced.at)
    }

    /// Ends a pass: objects it planned no write for are forgotten (the write is no longer
    /// wanted).
    pub(super) fn end_pass(&mut self) {
        let pass = self.pass;
        self.objects.retain(|_, paced| paced.planned_in == pass);
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
        let now = tokio::time::Instant::now();
        let paced = self.objects.entry(Self::key(write)).or_insert(Paced {
            failures: 0,
            at: now,
            planned_in: self.pass,
        });
        paced.failures = paced.failures.saturating_add(1);
        paced.planned_in = self.pass;
        let delay = policy
            .delay(paced.failures)
            .max(at_least.unwrap_or_default());
        paced.at = now + delay;
        delay
    }

    pub(super) fn succeeded(&mut self, write: &Write) {
        if !self.objects.is_empty() {
            self.objects.remove(&Self::key(write));
        }
    }

    /// When the next backed-off write may go.
    pub(super) fn next(&self) -> Option<tokio::time::Instant> {
        self.objects.values().map(|p| p.at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete(namespace: &str) -> Write {
        Write::DeleteSecret {
            namespace: namespace.into(),
            name: "pull".into(),
            resource_version: "1".into(),
        }
    }

    #[tokio::test]
    async fn a_backoff_lasts_while_its_write_is_planned_in_some_part_of_the_pass() {
        let mut b = WriteBackoff::default();
        b.begin_pass();
        b.planned(&delete("a"));
        b.failed(&delete("a"), false, None);
        b.failed(&delete("b"), false, None);
        b.end_pass();
        let now = tokio::time::Instant::now();
        assert!(b.waiting(&delete("a"), now) && b.waiting(&delete("b"), now));
        // The next pass plans `a` (in its last part, say) but no longer `b`.
        b.begin_pass();
        b.planned(&delete("a"));
        b.end_pass();
        assert!(
            b.waiting(&delete("a"), now),
            "a still fails: it keeps its backoff"
        );
        assert!(
            !b.waiting(&delete("b"), now),
            "b is no longer wanted: forgotten"
        );
        b.succeeded(&delete("a"));
        assert_eq!(b.next(), None);
    }
}
