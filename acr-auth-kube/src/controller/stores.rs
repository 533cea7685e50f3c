//! The controller's watches: reflectors whose stores are trimmed to what the planner reads, and
//! the planner's snapshot of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Config as WatchConfig};
use kube::runtime::WatchStreamExt as _;
use tokio::sync::Notify;

use crate::plan::{
    content_digest, parse_managed_entries, ClusterSnapshot, NamespaceInfo, SecretInfo,
    ServiceAccountInfo, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MANAGED_ENTRIES_ANNOTATION,
    SKIP_ANNOTATION,
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
    let watch = watcher::watcher(api, config).default_backoff().modify(trim);
    let stream = reflector::reflector(writer, watch).touched_objects();
    tasks.0.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                tracing::warn!(error = %e, "watch error; retrying with backoff");
            }
            trigger.notify_one();
        }
    }));
    reader
}

/// Where a trimmed Secret keeps the SHA-256 of its `.dockerconfigjson` in the reflector's store
/// (the content itself is dropped). Only in memory, never sent to the API server.
const DIGEST_KEY: &str = "acr-auth.internal/dockerconfigjson-sha256";

/// Keeps only `keep` of an object's annotations, and drops what the planner never reads:
/// managed fields, labels (unless `keep_labels`), owner references, finalizers.
fn trim_meta(meta: &mut ObjectMeta, keep: &str, keep_labels: bool) {
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.generate_name = None;
    if !keep_labels {
        meta.labels = None;
    }
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k == keep);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// The reflector stores hold every Namespace, ServiceAccount and managed Secret of the cluster;
/// trimming them to what the planner reads keeps a cluster of 10,000 namespaces small.
pub(super) fn trim_namespace(ns: &mut Namespace) {
    trim_meta(&mut ns.metadata, SKIP_ANNOTATION, false);
    ns.spec = None;
    if let Some(status) = ns.status.as_mut() {
        status.conditions = None;
    }
}

pub(super) fn trim_service_account(sa: &mut ServiceAccount) {
    trim_meta(&mut sa.metadata, MANAGED_ENTRIES_ANNOTATION, false);
    sa.secrets = None;
    sa.automount_service_account_token = None;
}

pub(super) fn trim_secret(secret: &mut Secret) {
    trim_meta(&mut secret.metadata, "", true);
    let digest = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .map(|b| content_digest(&b.0));
    secret.string_data = None;
    secret.data = digest
        .map(|d| BTreeMap::from([(DIGEST_KEY.to_owned(), k8s_openapi::ByteString(d.to_vec()))]));
}

pub(super) fn trim_configmap(_: &mut ConfigMap) {}

/// Credential Secrets are only watched for changes: their content is read when needed.
pub(super) fn trim_credential_secret(secret: &mut Secret) {
    trim_meta(&mut secret.metadata, "", false);
    secret.data = None;
    secret.string_data = None;
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

/// Reads the planner's view of the cluster from the reflector stores.
pub(super) fn snapshot(
    namespaces: &Store<Namespace>,
    service_accounts: &Store<ServiceAccount>,
    secrets: &Store<Secret>,
    not_ours: &BTreeSet<(String, String)>,
) -> ClusterSnapshot {
    let mut snap = ClusterSnapshot::default();
    for ns in namespaces.state() {
        let meta = &ns.metadata;
        snap.namespaces.push(NamespaceInfo {
            name: meta.name.clone().unwrap_or_default(),
            skip: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(SKIP_ANNOTATION))
                .is_some_and(|v| v == "true"),
            terminating: meta.deletion_timestamp.is_some()
                || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating"),
        });
    }
    for sa in service_accounts.state() {
        let meta = &sa.metadata;
        snap.service_accounts.push(ServiceAccountInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            image_pull_secrets: sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect(),
            managed_entries: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(MANAGED_ENTRIES_ANNOTATION))
                .map(|v| parse_managed_entries(v))
                .unwrap_or_default(),
        });
    }
    for s in secrets.state() {
        let meta = &s.metadata;
        let managed = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .is_some_and(|v| v == MANAGED_BY_VALUE);
        snap.secrets.push(SecretInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            managed,
            content_digest: s
                .data
                .as_ref()
                .and_then(|d| d.get(DIGEST_KEY))
                .and_then(|b| <[u8; 32]>::try_from(b.0.as_slice()).ok()),
        });
    }
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
