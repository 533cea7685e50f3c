//! Kubernetes Events (`events.k8s.io/v1`) grouped in series, each carrying its latest message.
//!
//! kube-runtime's `Recorder` groups repeats by object, reason and action and then patches only
//! the count: its series keep the first note, and every registry's failures on the ConfigMap
//! share one series. Here a series is (object, reason, subject) (the subject being, for
//! instance, the registry), and a repeat updates the note as well as the count.

use std::collections::HashMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something went as it should.
    Normal,
    /// Something needs attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One Event to record.
#[derive(Debug, Clone)]
pub struct EventNote<'a> {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// The machine-readable reason (`TokenRenewalFailed`).
    pub reason: &'a str,
    /// What the controller was doing (`Reconcile`).
    pub action: &'a str,
    /// What the series is about within `regarding` (a registry), or `""`: each subject has its
    /// own series.
    pub subject: &'a str,
    /// The human-readable message; a repeat replaces the previous one.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    namespace: String,
    kind: String,
    name: String,
    reason: String,
    subject: String,
}

#[derive(Debug, Clone)]
struct Series {
    name: String,
    count: i32,
}

/// Records Events in series; clone-free, share it behind the controller.
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    series: tokio::sync::Mutex<HashMap<SeriesKey, Series>>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// A recorder reporting as `controller` (also the reporting instance).
    pub fn new(client: Client, controller: impl Into<String>) -> Self {
        let controller = controller.into();
        Self {
            client,
            instance: controller.clone(),
            controller,
            series: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Records `event` on `regarding` at `now`: a new Event for a new series, else the series'
    /// Event with its count raised and its note replaced by this one. An Event that has gone
    /// (expired or deleted) starts the series again.
    pub async fn publish(
        &self,
        event: &EventNote<'_>,
        regarding: &ObjectReference,
        now: SystemTime,
    ) -> Result<(), kube::Error> {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let key = SeriesKey {
            namespace: namespace.clone(),
            kind: regarding.kind.clone().unwrap_or_default(),
            name: regarding.name.clone().unwrap_or_default(),
            reason: event.reason.to_owned(),
            subject: event.subject.to_owned(),
        };
        let stamp = MicroTime(Timestamp::try_from(now).unwrap_or(Timestamp::UNIX_EPOCH));
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        // Held across the request: two repeats of one series never race into two Events.
        let mut series = self.series.lock().await;
        if let Some(s) = series.get(&key).cloned() {
            let count = s.count + 1;
            let patch = serde_json::json!({
                "note": event.note,
                "series": EventSeries { count, last_observed_time: stamp.clone() },
            });
            match api
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    series.insert(
                        key,
                        Series {
                            name: s.name,
                            count,
                        },
                    );
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            stamp.0.as_nanosecond()
        );
        let object = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            action: Some(event.action.to_owned()),
            reason: Some(event.reason.to_owned()),
            note: Some(event.note.clone()),
            event_time: Some(stamp),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(event.type_.as_str().to_owned()),
            ..Event::default()
        };
        api.create(&PostParams::default(), &object).await?;
        series.insert(key, Series { name, count: 1 });
        Ok(())
    }
}
