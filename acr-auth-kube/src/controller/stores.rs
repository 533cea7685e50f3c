//! The controller's watches: compact watch-fed maps of what the planner reads (Namespaces,
//! ServiceAccounts, managed Secrets), trimmed reflectors for the few objects read whole (the
//! ConfigMap, the credential Secrets), and the planner's snapshot.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Config as WatchConfig};
use kube::runtime::WatchStreamExt as _;
use tokio::sync::Notify;

use super::quiet::LogLimiter;
use crate::plan::{
    ClusterSnapshot, NamespaceInfo, SecretInfo, ServiceAccountInfo, SKIP_ANNOTATION,
};

/// Aborts the watch tasks when the controller returns, so nothing outlives a shutdown.
pub(super) struct WatchTasks(pub(super) Vec<tokio::task::JoinHandle<()>>);

impl Drop for WatchTasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A reflector on `api` whose objects are `trim`med before they are stored; every change wakes
/// `trigger`.
pub(super) fn reflect<K>(
    api: Api<K>,
    config: WatchConfig,
    trim: fn(&mut K),
    trigger: Arc<Notify>,
    tasks: &mut WatchTasks,
) -> Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&Default::default()).into_owned();
    let watch = watcher::watcher(api, config).default_backoff().modify(trim);
    let stream = reflector::reflector(writer, watch).touched_objects();
    tasks.0.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut logs = WatchLogs::new(kind);
        while let Some(item) = stream.next().await {
            match item {
                Err(e) => logs.failed(&e),
                Ok(_) => logs.ok(),
            }
            trigger.notify_one();
        }
    }));
    reader
}

/// The configuration ConfigMap is read whole.
pub(super) fn trim_configmap(_: &mut ConfigMap) {}

/// Credential Secrets are only watched for changes (their content is read when needed): the
/// store keeps name, namespace and resourceVersion.
pub(super) fn trim_credential_secret(secret: &mut Secret) {
    let meta = std::mem::take(&mut secret.metadata);
    *secret = Secret {
        metadata: ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            resource_version: meta.resource_version,
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
}

/// `(name, resourceVersion)` of every credential Secret present, sorted.
pub(super) fn credential_versions(stores: &[Store<Secret>]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = stores
        .iter()
        .flat_map(|s| s.state())
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                s.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A watch-fed map of compact records keyed by (namespace, name): what the planner reads of
/// every Namespace, ServiceAccount and managed Secret, without the API objects. At 10,000
/// namespaces this is a fraction of a reflector store of full objects.
pub(super) struct Compact<T> {
    map: Arc<RwLock<HashMap<(String, String), T>>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl<T> Clone for Compact<T> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<T: Clone> Compact<T> {
    /// Resolves once the first full list has arrived (`Err` if the watch task ended first).
    pub(super) async fn wait_until_ready(&self) -> Result<(), ()> {
        let mut ready = self.ready.clone();
        ready.wait_for(|r| *r).await.map(drop).map_err(drop)
    }

    /// Every record, cloned.
    pub(super) fn values(&self) -> Vec<T> {
        self.read().values().cloned().collect()
    }

    /// The record of `namespace/name`.
    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<T> {
        self.read()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// How many records satisfy `f`.
    pub(super) fn count(&self, f: impl Fn(&T) -> bool) -> usize {
        self.read().values().filter(|v| f(v)).count()
    }

    /// Puts what a read of `namespace/name` returned (`None`: it is gone), ahead of the watch.
    /// The watch's own events for the object still apply when they arrive.
    pub(super) fn put(&self, namespace: &str, name: &str, record: Option<T>) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        match record {
            Some(r) => map.insert(key, r),
            None => map.remove(&key),
        };
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String), T>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Watches `api` and keeps `convert`ed records: a re-list replaces the whole map at once (as a
/// reflector does), changes and deletions apply one by one, and every change wakes `trigger`.
pub(super) fn watch_compact<K, T>(
    api: Api<K>,
    config: WatchConfig,
    convert: fn(&K) -> T,
    trigger: Arc<Notify>,
    tasks: &mut WatchTasks,
) -> Compact<T>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    T: Send + Sync + 'static,
{
    let mut logs = WatchLogs::new(K::kind(&()).into_owned());
    let map = Arc::new(RwLock::new(HashMap::new()));
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    let key = |o: &K| {
        let meta = o.meta();
        (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    };
    let shared = map.clone();
    tasks.0.push(tokio::spawn(async move {
        let stream = watcher::watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut relist: Option<HashMap<(String, String), T>> = None;
        while let Some(event) = stream.next().await {
            let write = || shared.write().unwrap_or_else(|e| e.into_inner());
            match event {
                Ok(watcher::Event::Init) => {
                    relist = Some(HashMap::new());
                    continue;
                }
                Ok(watcher::Event::InitApply(o)) => {
                    relist
                        .get_or_insert_with(HashMap::new)
                        .insert(key(&o), convert(&o));
                    continue;
                }
                Ok(watcher::Event::InitDone) => {
                    logs.ok();
                    *write() = relist.take().unwrap_or_default();
                    ready_tx.send_replace(true);
                }
                Ok(watcher::Event::Apply(o)) => {
                    logs.ok();
                    write().insert(key(&o), convert(&o));
                }
                Ok(watcher::Event::Delete(o)) => {
                    write().remove(&key(&o));
                }
                Err(e) => logs.failed(&e),
            }
            trigger.notify_one();
        }
    }));
    Compact { map, ready }
}

/// A watch's failure logs: the first of an outage at once, then one line per window.
struct WatchLogs {
    kind: String,
    limiter: LogLimiter,
}

impl WatchLogs {
    fn new(kind: String) -> Self {
        Self {
            kind,
            limiter: LogLimiter::default(),
        }
    }

    fn failed(&mut self, e: &watcher::Error) {
        if let Some(left_out) = self.limiter.allow("watch", tokio::time::Instant::now()) {
            tracing::warn!(kind = %self.kind, error = %e, similar_left_out = left_out, "watch error; retrying with backoff (logged at most every 30 s)");
        }
    }

    fn ok(&mut self) {
        if self.limiter.active().next().is_some() {
            let left_out = self.limiter.recovered("watch");
            tracing::info!(kind = %self.kind, similar_left_out = left_out, "watch works again");
        }
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The planner's view of a Namespace.
pub(super) fn namespace_info(ns: &Namespace) -> NamespaceInfo {
    let meta = &ns.metadata;
    NamespaceInfo {
        name: meta.name.clone().unwrap_or_default(),
        skip: annotation(meta, SKIP_ANNOTATION) == Some("true"),
        terminating: meta.deletion_timestamp.is_some()
            || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating"),
    }
}

/// The planner's view of a ServiceAccount.
pub(super) fn service_account_info(sa: &ServiceAccount) -> ServiceAccountInfo {
    ServiceAccountInfo::from_service_account(sa)
}

/// The planner's view of a Secret: its `.dockerconfigjson` only as a digest.
pub(super) fn secret_info(secret: &Secret) -> SecretInfo {
    SecretInfo::from_secret(secret)
}

/// The planner's view of the cluster.
pub(super) fn snapshot<'a>(
    namespaces: &Compact<NamespaceInfo>,
    service_accounts: &Compact<ServiceAccountInfo>,
    secrets: &Compact<SecretInfo>,
    not_ours: impl IntoIterator<Item = &'a (String, String)>,
) -> ClusterSnapshot {
    let mut snap = ClusterSnapshot {
        namespaces: namespaces.values(),
        service_accounts: service_accounts.values(),
        secrets: secrets.values(),
    };
    // Secrets of our name that turned out not to be ours (409 on create).
    for (namespace, name) in not_ours {
        snap.secrets.push(SecretInfo {
            namespace: namespace.clone(),
            name: name.clone(),
            managed: false,
            ..SecretInfo::default()
        });
    }
    snap.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    snap
}
