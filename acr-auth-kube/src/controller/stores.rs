//! The controller's watches: compact watch-fed maps of what the planner reads (Namespaces,
//! ServiceAccounts, managed Secrets), trimmed reflectors for the few objects read whole (the
//! ConfigMap, the credential Secrets), and the planner's snapshot.

use std::collections::BTreeMap;
use std::ops::Bound;
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

/// A watch-fed map of compact records keyed by (namespace, name), in order: what the planner
/// reads of every Namespace, ServiceAccount and managed Secret, without the API objects. At
/// 10,000 namespaces this is a fraction of a reflector store of full objects. The order lets a
/// pass read the records of a range of namespaces at a time ([`snapshot_range`]).
///
/// A stored record does not repeat its namespace and name (the key holds them,
/// [`Record::take_key`]); records read out of the map have them back.
pub(super) struct Compact<T> {
    map: Arc<RwLock<Dense<T>>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

type Key = (String, String);
type Records<T> = BTreeMap<Key, T>;

/// A record the planner reads, stored under its `(namespace, name)`.
pub(super) trait Record: Clone + Send + Sync + 'static {
    /// Moves the namespace and name out of the record (left empty) into the key.
    fn take_key(&mut self) -> Key;
    /// The record with its namespace and name back from `key`.
    fn with_key(self, key: &Key) -> Self;
}

impl Record for NamespaceInfo {
    fn take_key(&mut self) -> Key {
        (String::new(), std::mem::take(&mut self.name))
    }
    fn with_key(mut self, key: &Key) -> Self {
        self.name.clone_from(&key.1);
        self
    }
}

/// [`Record`] for a namespaced record with `namespace` and `name` fields.
macro_rules! namespaced_record {
    ($t:ty) => {
        impl Record for $t {
            fn take_key(&mut self) -> Key {
                (
                    std::mem::take(&mut self.namespace),
                    std::mem::take(&mut self.name),
                )
            }
            fn with_key(mut self, key: &Key) -> Self {
                self.namespace.clone_from(&key.0);
                self.name.clone_from(&key.1);
                self
            }
        }
    };
}

namespaced_record!(ServiceAccountInfo);
namespaced_record!(SecretInfo);

/// The records, and how many there were at the last rebuild.
///
/// A B-tree filled in key order (a list from the API server, or a cold start creating Secrets
/// namespace after namespace) leaves its nodes half full: at 50,000 namespaces that was about
/// 30 MB of empty slots. The map is rebuilt densely after a list, and whenever it has grown by
/// half since the last rebuild (linear time, amortised over the insertions).
struct Dense<T> {
    records: Records<T>,
    built_at: usize,
}

impl<T> Dense<T> {
    fn new(records: Records<T>) -> Self {
        let mut dense = Self {
            records,
            built_at: 0,
        };
        dense.rebuild();
        dense
    }

    fn insert(&mut self, key: Key, record: T) {
        self.records.insert(key, record);
        if self.records.len() > self.built_at + self.built_at / 2 + 64 {
            self.rebuild();
        }
    }

    /// Rebuilds the tree with full nodes. `append` into a non-empty map builds the result from
    /// both sorted sequences, and frees the old nodes while it goes.
    fn rebuild(&mut self) {
        let mut all = std::mem::take(&mut self.records);
        if let Some((k, v)) = all.pop_first() {
            self.records.insert(k, v);
            self.records.append(&mut all);
        }
        self.built_at = self.records.len();
    }
}

impl<T> Clone for Compact<T> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<T: Record> Compact<T> {
    /// A map holding `records` (tests).
    #[cfg(test)]
    fn from_records(records: impl IntoIterator<Item = T>) -> Self {
        let (_, ready) = tokio::sync::watch::channel(true);
        let records = records.into_iter().map(|mut r| (r.take_key(), r)).collect();
        Self {
            map: Arc::new(RwLock::new(Dense::new(records))),
            ready,
        }
    }

    /// Resolves once the first full list has arrived (`Err` if the watch task ended first).
    pub(super) async fn wait_until_ready(&self) -> Result<(), ()> {
        let mut ready = self.ready.clone();
        ready.wait_for(|r| *r).await.map(drop).map_err(drop)
    }

    /// The records whose keys are within `bounds`, cloned, in order.
    fn range(&self, bounds: (Bound<Key>, Bound<Key>)) -> Vec<T> {
        self.read()
            .records
            .range(bounds)
            .map(|(k, v)| v.clone().with_key(k))
            .collect()
    }

    /// The record of `namespace/name`.
    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<T> {
        let key = (namespace.to_owned(), name.to_owned());
        let map = self.read();
        map.records.get(&key).map(|v| v.clone().with_key(&key))
    }

    /// How many records have the name `name`.
    pub(super) fn count_named(&self, name: &str) -> usize {
        self.read().records.keys().filter(|k| k.1 == name).count()
    }

    /// Puts what a read of `namespace/name` returned (`None`: it is gone), ahead of the watch.
    /// The watch's own events for the object still apply when they arrive.
    pub(super) fn put(&self, namespace: &str, name: &str, record: Option<T>) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        match record {
            Some(mut r) => {
                r.take_key();
                map.insert(key, r);
            }
            None => {
                map.records.remove(&key);
            }
        };
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Dense<T>> {
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
    T: Record,
{
    let mut logs = WatchLogs::new(K::kind(&()).into_owned());
    let map = Arc::new(RwLock::new(Dense::new(BTreeMap::new())));
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    let keyed = move |o: &K| {
        let mut record = convert(o);
        (record.take_key(), record)
    };
    let shared = map.clone();
    tasks.0.push(tokio::spawn(async move {
        let stream = watcher::watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut relist: Option<Records<T>> = None;
        while let Some(event) = stream.next().await {
            let write = || shared.write().unwrap_or_else(|e| e.into_inner());
            match event {
                Ok(watcher::Event::Init) => {
                    relist = Some(BTreeMap::new());
                    continue;
                }
                Ok(watcher::Event::InitApply(o)) => {
                    let (key, record) = keyed(&o);
                    relist.get_or_insert_with(BTreeMap::new).insert(key, record);
                    continue;
                }
                Ok(watcher::Event::InitDone) => {
                    logs.ok();
                    let fresh = Dense::new(relist.take().unwrap_or_default());
                    *write() = fresh;
                    ready_tx.send_replace(true);
                }
                Ok(watcher::Event::Apply(o)) => {
                    logs.ok();
                    let (key, record) = keyed(&o);
                    write().insert(key, record);
                }
                Ok(watcher::Event::Delete(o)) => {
                    let (key, _) = keyed(&o);
                    write().records.remove(&key);
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

/// Namespace names from `from` (inclusive; `None`: from the first) to `to` (exclusive;
/// `None`: to the last): one part of a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct NamespaceRange {
    from: Option<String>,
    to: Option<String>,
}

impl NamespaceRange {
    /// Whether `namespace` is in the range.
    fn contains(&self, namespace: &str) -> bool {
        self.from.as_deref().is_none_or(|f| namespace >= f)
            && self.to.as_deref().is_none_or(|t| namespace < t)
    }

    /// The keys `(namespace, name)` of the namespaced records in the range.
    fn keys(&self) -> (Bound<Key>, Bound<Key>) {
        self.bounds(|ns| (ns.to_owned(), String::new()))
    }

    /// The keys `("", name)` of the Namespaces in the range.
    fn names(&self) -> (Bound<Key>, Bound<Key>) {
        self.bounds(|ns| (String::new(), ns.to_owned()))
    }

    fn bounds(&self, key: impl Fn(&str) -> Key) -> (Bound<Key>, Bound<Key>) {
        (
            self.from
                .as_deref()
                .map_or(Bound::Unbounded, |f| Bound::Included(key(f))),
            self.to
                .as_deref()
                .map_or(Bound::Unbounded, |t| Bound::Excluded(key(t))),
        )
    }
}

/// The namespace ranges that split the cluster into parts of at most `size` namespaces. Every
/// namespace name, also one with ServiceAccounts or Secrets but no Namespace (being deleted),
/// is in exactly one range.
pub(super) fn namespace_ranges(
    namespaces: &Compact<NamespaceInfo>,
    size: usize,
) -> Vec<NamespaceRange> {
    let size = size.max(1);
    // Cluster-scoped: every key is ("", name), in name order.
    let cuts: Vec<String> = namespaces
        .read()
        .records
        .keys()
        .skip(size)
        .step_by(size)
        .map(|(_, name)| name.clone())
        .collect();
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    let mut from = None;
    for cut in cuts {
        ranges.push(NamespaceRange {
            from: from.take(),
            to: Some(cut.clone()),
        });
        from = Some(cut);
    }
    ranges.push(NamespaceRange { from, to: None });
    ranges
}

/// The planner's view of the namespaces in `range`: the Namespaces, and the ServiceAccounts and
/// Secrets in them.
pub(super) fn snapshot_range<'a>(
    range: &NamespaceRange,
    namespaces: &Compact<NamespaceInfo>,
    service_accounts: &Compact<ServiceAccountInfo>,
    secrets: &Compact<SecretInfo>,
    not_ours: impl IntoIterator<Item = &'a (String, String)>,
) -> ClusterSnapshot {
    let mut snap = ClusterSnapshot {
        namespaces: namespaces.range(range.names()),
        service_accounts: service_accounts.range(range.keys()),
        secrets: secrets.range(range.keys()),
    };
    // Secrets of our name that turned out not to be ours (409 on create).
    for (namespace, name) in not_ours {
        if range.contains(namespace) {
            snap.secrets.push(SecretInfo {
                namespace: namespace.clone(),
                name: name.clone(),
                managed: false,
                ..SecretInfo::default()
            });
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn namespace(name: &str) -> (Key, NamespaceInfo) {
        let info = NamespaceInfo {
            name: name.to_owned(),
            ..NamespaceInfo::default()
        };
        ((String::new(), name.to_owned()), info)
    }

    fn secret(namespace: &str, name: &str) -> (Key, SecretInfo) {
        let info = SecretInfo {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ..SecretInfo::default()
        };
        ((namespace.to_owned(), name.to_owned()), info)
    }

    fn account(namespace: &str, name: &str) -> (Key, ServiceAccountInfo) {
        let info = ServiceAccountInfo {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ..ServiceAccountInfo::default()
        };
        ((namespace.to_owned(), name.to_owned()), info)
    }

    #[test]
    fn a_record_is_stored_without_its_key_and_read_with_it() {
        let store = Compact::from_records([account("dev", "builder").1]);
        let stored = store.read().records.values().next().cloned().unwrap();
        assert!(stored.namespace.is_empty() && stored.name.is_empty());
        assert_eq!(
            store.get("dev", "builder"),
            Some(account("dev", "builder").1)
        );
        store.put("dev", "other", Some(account("dev", "other").1));
        assert_eq!(store.count_named("other"), 1);
        assert_eq!(store.get("dev", "other").unwrap().name, "other");
    }

    proptest! {
        /// Rebuilding the tree as it grows keeps exactly the records a plain map would.
        #[test]
        fn a_dense_map_holds_what_a_plain_map_holds(
            ops in prop::collection::vec((0u16..400, any::<bool>()), 0..1500),
        ) {
            let mut dense = Dense::new(BTreeMap::new());
            let mut plain = BTreeMap::new();
            for (i, remove) in ops {
                let key = (format!("ns-{i:03}"), String::new());
                if remove {
                    dense.records.remove(&key);
                    plain.remove(&key);
                } else {
                    dense.insert(key.clone(), i);
                    plain.insert(key, i);
                }
            }
            prop_assert_eq!(dense.records, plain);
        }

        /// Every record is in exactly one part, every part holds at most `size` Namespaces, and
        /// the objects of a namespace go with it, also when the Namespace itself is gone (and
        /// for names sorting before the first or after the last Namespace).
        #[test]
        fn the_parts_of_a_pass_cover_every_record_once(
            present in prop::collection::btree_set("[a-e][a-e]?", 0..12),
            objects in prop::collection::vec(("[a-f][a-f]?", "[xy]"), 0..30),
            size in 1usize..5,
        ) {
            let namespaces = Compact::from_records(present.iter().map(|n| namespace(n).1));
            let accounts = Compact::from_records(objects.iter().map(|(ns, n)| account(ns, n).1));
            let secrets = Compact::from_records(objects.iter().map(|(ns, n)| secret(ns, n).1));
            let not_ours: Vec<(String, String)> =
                objects.iter().map(|(ns, _)| (ns.clone(), "foreign".to_owned())).collect();
            let ranges = namespace_ranges(&namespaces, size);
            let mut seen_namespaces = Vec::new();
            let mut seen_accounts = Vec::new();
            let mut seen_secrets = Vec::new();
            for range in &ranges {
                let snap = snapshot_range(range, &namespaces, &accounts, &secrets, &not_ours);
                prop_assert!(snap.namespaces.len() <= size);
                let in_part: BTreeSet<&str> = snap.namespaces.iter().map(|n| n.name.as_str()).collect();
                for sa in &snap.service_accounts {
                    // A present namespace's objects are in its part.
                    prop_assert!(!present.contains(&sa.namespace) || in_part.contains(sa.namespace.as_str()));
                    seen_accounts.push((sa.namespace.clone(), sa.name.clone()));
                }
                for s in &snap.secrets {
                    seen_secrets.push((s.namespace.clone(), s.name.clone()));
                }
                seen_namespaces.extend(snap.namespaces.iter().map(|n| n.name.clone()));
            }
            let mut want: Vec<(String, String)> = objects.clone();
            want.sort();
            want.dedup();
            seen_accounts.sort();
            prop_assert_eq!(&seen_accounts, &want);
            let mut want_secrets = want.clone();
            want_secrets.extend(not_ours.iter().cloned());
            want_secrets.sort();
            seen_secrets.sort();
            prop_assert_eq!(seen_secrets, want_secrets);
            seen_namespaces.sort();
            prop_assert_eq!(seen_namespaces, present.iter().cloned().collect::<Vec<_>>());
        }
    }
}
