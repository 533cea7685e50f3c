//! Pure planning: from the configuration, a snapshot of the cluster and the current registry
//! credentials to the writes that make the cluster right ([`plan`]), plus the object builders it
//! uses ([`desired_secret`], [`attach_patch`], [`detach_patch`]). Objects are plain JSON in the
//! Kubernetes API's shape, so the same functions serve the controller and the Python bindings.
//!
//! The rules ([docs/behaviour.md][written]): every served namespace holds one managed
//! `kubernetes.io/dockerconfigjson` Secret with every host of every registry; every matching
//! ServiceAccount lists it in `imagePullSecrets`; nothing we did not create is modified; what
//! leaves the configuration is removed; Secrets are updated in place and only when their content
//! changes; an empty credential set is never written. Planning again after applying a plan
//! yields nothing.
//!
//! [written]: https://github.com/acr-auth/acr-auth/blob/main/docs/behaviour.md#what-is-written-into-the-cluster

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use acr_auth_core::config::HelperConfig;
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::source::RegistryCredential;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use serde_json::{json, Value};

/// The label on everything we write.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY_VALUE: &str = "aliyun-acr-credential-helper";
/// Annotation with the earliest expiry among the Secret's credentials (RFC 3339).
pub const EXPIRES_ANNOTATION: &str = "acr-credential-helper.alibabacloud.com/expires-at";
/// Annotation recording which registry source wrote which hosts, valid until when (JSON, see
/// [`RegistryRecord`]): a new process or leader adopts these tokens instead of fetching and
/// rewriting everything.
pub const REGISTRIES_ANNOTATION: &str = "acr-credential-helper.alibabacloud.com/registries";

/// One entry of [`REGISTRIES_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryRecord {
    /// The source's adoption key (`RegistrySource::adoption_key`).
    pub source: String,
    /// The hosts written with its credential.
    pub hosts: Vec<String>,
    /// When its token expires (RFC 3339).
    pub expires_at: String,
}

/// The [`REGISTRIES_ANNOTATION`] value for `credentials` (the hosts each one was written for;
/// a host named by two registries belongs to the first), `None` when nothing is written.
pub fn registries_record(credentials: &[RegistryCredential]) -> Option<String> {
    let mut seen = BTreeSet::new();
    let records: Vec<RegistryRecord> = credentials
        .iter()
        .filter(|c| !c.source.is_empty())
        .filter_map(|c| {
            let hosts: Vec<String> = c
                .hosts
                .iter()
                .filter(|h| seen.insert(h.as_str()))
                .cloned()
                .collect();
            (!hosts.is_empty()).then(|| RegistryRecord {
                source: c.source.clone(),
                hosts,
                expires_at: acr_auth_core::time::format_iso8601(c.token.expires_at),
            })
        })
        .collect();
    (!records.is_empty()).then(|| serde_json::to_string(&records).unwrap_or_default())
}

/// The `kubernetes.io/dockerconfigjson` Secret `name` in `namespace` carrying `config`.
///
/// ```
/// use acr_auth_core::docker_config::DockerConfig;
/// use acr_auth_kube::plan::desired_secret;
/// let mut c = DockerConfig::default();
/// c.insert("registry.cn-hangzhou.aliyuncs.com", "u", "p");
/// let s = desired_secret("dev", "acr-credential-secret-aggregation", &c, None);
/// assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
/// assert_eq!(s["metadata"]["labels"]["app.kubernetes.io/managed-by"], "aliyun-acr-credential-helper");
/// ```
pub fn desired_secret(
    namespace: &str,
    name: &str,
    config: &DockerConfig,
    earliest_expiry: Option<SystemTime>,
) -> Value {
    secret_object(namespace, name, &config.to_json(), earliest_expiry, None)
}

fn secret_object(
    namespace: &str,
    name: &str,
    docker_config_json: &str,
    earliest_expiry: Option<SystemTime>,
    registries: Option<&str>,
) -> Value {
    let mut metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
    });
    let mut annotations = serde_json::Map::new();
    if let Some(t) = earliest_expiry {
        annotations.insert(
            EXPIRES_ANNOTATION.into(),
            json!(acr_auth_core::time::format_iso8601(t)),
        );
    }
    if let Some(r) = registries {
        annotations.insert(REGISTRIES_ANNOTATION.into(), json!(r));
    }
    if !annotations.is_empty() {
        metadata["annotations"] = Value::Object(annotations);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": PULL_SECRET_TYPE,
        "data": {
            DOCKER_CONFIG_KEY: base64::engine::general_purpose::STANDARD.encode(docker_config_json),
        },
    })
}

/// Whether `object` carries our managed-by label (only such objects are ever modified).
pub fn is_managed(object: &Value) -> bool {
    object["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
}

/// [`is_managed`] for a typed object's metadata.
pub fn has_managed_label(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

/// Annotation on a ServiceAccount listing the `imagePullSecrets` entries we added
/// (comma-separated). Only entries listed here are ever removed: an entry someone else added is
/// never ours, even if it names our Secret.
pub const MANAGED_ENTRIES_ANNOTATION: &str =
    "acr-credential-helper.alibabacloud.com/managed-image-pull-secrets";

/// The entries a ServiceAccount object records as ours.
pub fn managed_entries(service_account: &Value) -> Vec<String> {
    service_account["metadata"]["annotations"][MANAGED_ENTRIES_ANNOTATION]
        .as_str()
        .map(parse_managed_entries)
        .unwrap_or_default()
}

/// The entry names in a value of [`MANAGED_ENTRIES_ANNOTATION`] (comma-separated).
pub fn parse_managed_entries(annotation: &str) -> Vec<String> {
    annotation
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `key` as one segment of a JSON pointer (RFC 6901: `~` as `~0`, `/` as `~1`).
fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// JSON pointer of annotation `key`.
fn annotation_pointer(key: &str) -> String {
    format!("/metadata/annotations/{}", pointer_segment(key))
}

fn op_test(path: &str, value: Value) -> json_patch::PatchOperation {
    json_patch::PatchOperation::Test(json_patch::TestOperation {
        path: pointer(path),
        value,
    })
}

fn op_add(path: &str, value: Value) -> json_patch::PatchOperation {
    json_patch::PatchOperation::Add(json_patch::AddOperation {
        path: pointer(path),
        value,
    })
}

fn op_remove(path: &str) -> json_patch::PatchOperation {
    json_patch::PatchOperation::Remove(json_patch::RemoveOperation {
        path: pointer(path),
    })
}

/// The paths built here are valid pointers by construction (every segment is escaped).
fn pointer(path: &str) -> json_patch::jsonptr::PointerBuf {
    json_patch::jsonptr::PointerBuf::parse(path).unwrap_or_else(|_| {
        // Unreachable: `path` starts with `/` and its segments are escaped.
        json_patch::jsonptr::PointerBuf::new()
    })
}

/// The operations that set annotation `key` to `value` (removing it for `None`) and nothing
/// else: one key is added or removed, the map is created only when the object has none, and
/// every other annotation stays as it is.
fn annotation_ops(
    has_annotations: bool,
    key: &str,
    current: Option<&str>,
    value: Option<&str>,
) -> Vec<json_patch::PatchOperation> {
    match (current, value) {
        (a, b) if a == b => Vec::new(),
        (Some(_), None) => vec![op_remove(&annotation_pointer(key))],
        (_, Some(v)) if has_annotations => vec![op_add(&annotation_pointer(key), json!(v))],
        (_, Some(v)) => vec![op_add("/metadata/annotations", json!({ key: v }))],
        (None, None) => Vec::new(),
    }
}

/// The JSON patch (RFC 6902, as JSON) that removes our recorded entries named in `remove`,
/// adds `add` when it is missing, and updates the record; `None` when nothing changes.
///
/// Only the entries and the one annotation we own are touched: entries are appended or removed
/// one by one (each removal `test`s the entry it removes), our annotation is set by its own
/// key, and the annotation map is created only when the object has none. The patch also
/// `test`s the `resourceVersion` when the object has one, so a concurrent change makes it fail
/// with a conflict instead of being overwritten.
pub fn service_account_patch(
    service_account: &Value,
    add: Option<&str>,
    remove: &[&str],
) -> Option<Value> {
    ServiceAccountInfo::from_json(service_account)
        .patch(add, remove)
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
}

/// [`service_account_patch`] adding `secret_name`.
///
/// ```
/// use acr_auth_kube::plan::attach_patch;
/// use serde_json::json;
/// let sa = json!({"metadata": {"name": "default", "resourceVersion": "7",
///                              "annotations": {"meta.helm.sh/release-name": "web"}},
///                 "imagePullSecrets": [{"name": "theirs"}]});
/// let patch = attach_patch(&sa, "ours").unwrap();
/// assert_eq!(patch[1], json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}}));
/// // Our record is one key of the existing map: the Helm annotation is not rewritten.
/// assert_eq!(patch[2]["path"], "/metadata/annotations/acr-credential-helper.alibabacloud.com~1managed-image-pull-secrets");
/// assert!(attach_patch(&json!({"imagePullSecrets": [{"name": "ours"}]}), "ours").is_none());
/// ```
pub fn attach_patch(service_account: &Value, secret_name: &str) -> Option<Value> {
    service_account_patch(service_account, Some(secret_name), &[])
}

/// [`service_account_patch`] removing our entries named `names`.
pub fn detach_patch(service_account: &Value, names: &[&str]) -> Option<Value> {
    service_account_patch(service_account, None, names)
}

/// Annotation that keeps a namespace out of scope even under `watch-namespace: all`.
pub const SKIP_ANNOTATION: &str = "acr-credential-helper.alibabacloud.com/skip";

/// A namespace as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamespaceInfo {
    /// Name.
    pub name: String,
    /// Whether it carries the skip annotation set to `"true"`.
    pub skip: bool,
    /// Whether it is being deleted (nothing is written into it then).
    pub terminating: bool,
}

/// A ServiceAccount as the planner sees it: what it needs to patch exactly the entries and the
/// annotation it owns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceAccountInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.resourceVersion` (empty: unknown, no guard).
    pub resource_version: String,
    /// `imagePullSecrets[].name`, in order.
    pub image_pull_secrets: Vec<String>,
    /// The entries recorded as ours ([`MANAGED_ENTRIES_ANNOTATION`]).
    pub managed_entries: Vec<String>,
    /// Whether `metadata.annotations` holds any annotation (ours or anyone's): our record is then
    /// added as one key of that map, never as a new map.
    pub has_annotations: bool,
}

impl ServiceAccountInfo {
    /// The planner's view of a ServiceAccount.
    pub fn from_service_account(sa: &ServiceAccount) -> Self {
        let meta = &sa.metadata;
        let annotations = meta.annotations.as_ref();
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            image_pull_secrets: sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect(),
            managed_entries: annotations
                .and_then(|a| a.get(MANAGED_ENTRIES_ANNOTATION))
                .map(|v| parse_managed_entries(v))
                .unwrap_or_default(),
            has_annotations: annotations.is_some_and(|a| !a.is_empty()),
        }
    }

    /// The planner's view of a ServiceAccount given as JSON (an AdmissionReview's object, a
    /// Python dict).
    pub fn from_json(service_account: &Value) -> Self {
        let meta = &service_account["metadata"];
        Self {
            namespace: meta["namespace"].as_str().unwrap_or_default().to_owned(),
            name: meta["name"].as_str().unwrap_or_default().to_owned(),
            resource_version: meta["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            image_pull_secrets: service_account["imagePullSecrets"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|e| e["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            managed_entries: managed_entries(service_account),
            has_annotations: meta["annotations"]
                .as_object()
                .is_some_and(|a| !a.is_empty()),
        }
    }

    /// The JSON patch that removes our recorded entries named in `remove`, appends `add` when
    /// it is missing, and updates our record; `None` when nothing changes. See
    /// [`service_account_patch`].
    pub fn patch(&self, add: Option<&str>, remove: &[&str]) -> Option<json_patch::Patch> {
        self.edit(add, remove).map(|e| e.patch())
    }

    /// What [`ServiceAccountInfo::patch`] changes, without building the patch yet; `None` when
    /// nothing changes.
    pub fn edit(&self, add: Option<&str>, remove: &[&str]) -> Option<ServiceAccountEdit> {
        let recorded = &self.managed_entries;
        let list = &self.image_pull_secrets;
        let removing: Vec<&str> = remove
            .iter()
            .copied()
            .filter(|n| recorded.iter().any(|r| r == n))
            .collect();
        let removed: Vec<(usize, String)> = list
            .iter()
            .enumerate()
            .filter(|(_, e)| removing.contains(&e.as_str()))
            .map(|(i, e)| (i, e.clone()))
            .collect();
        let mut new_record: Vec<String> = recorded
            .iter()
            .filter(|r| !removing.contains(&r.as_str()))
            .cloned()
            .collect();
        let appended = add.filter(|name| {
            !list
                .iter()
                .enumerate()
                .any(|(i, e)| e == name && !removed.iter().any(|(r, _)| *r == i))
        });
        if let Some(name) = appended {
            if !new_record.iter().any(|r| r == name) {
                new_record.push(name.to_owned());
            }
        }
        let record_before = (!recorded.is_empty()).then(|| recorded.join(","));
        let record_after = (!new_record.is_empty()).then(|| new_record.join(","));
        if removed.is_empty() && appended.is_none() && record_before == record_after {
            return None;
        }
        Some(ServiceAccountEdit {
            resource_version: self.resource_version.clone(),
            list_len: list.len(),
            removed,
            appended: appended.map(str::to_owned),
            has_annotations: self.has_annotations,
            record_before,
            record_after,
        })
    }
}

/// A planned change of one ServiceAccount: the entries removed (each `test`ed by its index in
/// the list as read), the entry appended, and our record annotation before and after. The JSON
/// patch is built when it is sent ([`ServiceAccountEdit::patch`]), so a plan over tens of
/// thousands of ServiceAccounts holds a few short strings for each, not a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountEdit {
    resource_version: String,
    list_len: usize,
    removed: Vec<(usize, String)>,
    appended: Option<String>,
    has_annotations: bool,
    record_before: Option<String>,
    record_after: Option<String>,
}

impl ServiceAccountEdit {
    /// The JSON patch (RFC 6902): a `test` of the resourceVersion (when known), a `test` and a
    /// `remove` per entry removed, the `add` of the new entry, and our record annotation as one
    /// key. See [`service_account_patch`].
    pub fn patch(&self) -> json_patch::Patch {
        let mut ops = Vec::new();
        if !self.resource_version.is_empty() {
            ops.push(op_test(
                "/metadata/resourceVersion",
                json!(self.resource_version),
            ));
        }
        // Each entry removed is tested first (by its index in the list as read), then removed
        // from the end backwards so the earlier indices stay right.
        for (i, name) in &self.removed {
            ops.push(op_test(
                &format!("/imagePullSecrets/{i}"),
                json!({ "name": name }),
            ));
        }
        if !self.removed.is_empty()
            && self.removed.len() == self.list_len
            && self.appended.is_none()
        {
            // Every entry was ours: the field goes, as the API server itself drops an empty list.
            ops.push(op_remove("/imagePullSecrets"));
        } else {
            for (i, _) in self.removed.iter().rev() {
                ops.push(op_remove(&format!("/imagePullSecrets/{i}")));
            }
        }
        if let Some(name) = &self.appended {
            if self.list_len == 0 {
                ops.push(op_add("/imagePullSecrets", json!([{ "name": name }])));
            } else {
                ops.push(op_add("/imagePullSecrets/-", json!({ "name": name })));
            }
        }
        ops.extend(annotation_ops(
            self.has_annotations,
            MANAGED_ENTRIES_ANNOTATION,
            self.record_before.as_deref(),
            self.record_after.as_deref(),
        ));
        json_patch::Patch(ops)
    }
}

/// A Secret as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// Whether it carries our managed-by label.
    pub managed: bool,
    /// SHA-256 of the decoded `.dockerconfigjson` ([`content_digest`]), if it has one. The
    /// planner compares digests, so a snapshot of thousands of Secrets does not hold their
    /// content.
    pub content_digest: Option<[u8; 32]>,
    /// Whether `metadata.annotations` holds any annotation: an update then sets our expiry
    /// annotation as one key of that map.
    pub has_annotations: bool,
    /// Our expiry annotation ([`EXPIRES_ANNOTATION`]), as written.
    pub expires_annotation: Option<String>,
    /// Whether it is a pull Secret (`type: kubernetes.io/dockerconfigjson`). Only pull Secrets
    /// are ever deleted by the planner: other Secrets with our label (the webhook certificate)
    /// are not written by it and never pruned.
    pub pull_secret: bool,
    /// [`registries_shape`] of its [`REGISTRIES_ANNOTATION`]: which registries and hosts it
    /// holds, without their expiry.
    pub registries_shape: Option<[u8; 32]>,
}

impl SecretInfo {
    /// The planner's view of a Secret: its `.dockerconfigjson` only as a digest.
    pub fn from_secret(secret: &Secret) -> Self {
        let meta = &secret.metadata;
        let annotations = meta.annotations.as_ref();
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            managed: has_managed_label(meta),
            content_digest: secret
                .data
                .as_ref()
                .and_then(|d| d.get(DOCKER_CONFIG_KEY))
                .map(|b| content_digest(&b.0)),
            has_annotations: annotations.is_some_and(|a| !a.is_empty()),
            expires_annotation: annotations.and_then(|a| a.get(EXPIRES_ANNOTATION)).cloned(),
            pull_secret: secret.type_.as_deref() == Some(PULL_SECRET_TYPE),
            registries_shape: annotations
                .and_then(|a| a.get(REGISTRIES_ANNOTATION))
                .and_then(|r| registries_shape(r)),
        }
    }
}

/// A digest of which registries (sources) and hosts a [`REGISTRIES_ANNOTATION`] value names,
/// leaving out their expiry: two Secrets with the same shape differ at most by renewed tokens.
/// `None` when the value does not parse.
pub fn registries_shape(annotation: &str) -> Option<[u8; 32]> {
    use sha2::Digest as _;
    let mut records: Vec<RegistryRecord> = serde_json::from_str(annotation).ok()?;
    records.sort_by(|a, b| a.source.cmp(&b.source));
    let mut h = sha2::Sha256::new();
    for r in &records {
        let mut hosts: Vec<&str> = r.hosts.iter().map(String::as_str).collect();
        hosts.sort_unstable();
        h.update(r.source.as_bytes());
        for host in hosts {
            h.update([0]);
            h.update(host.as_bytes());
        }
        h.update([b'\n']);
    }
    Some(h.finalize().into())
}

/// The type of a pull Secret.
pub const PULL_SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

/// SHA-256 of a `.dockerconfigjson` document, as [`SecretInfo::content_digest`] holds it.
pub fn content_digest(docker_config_json: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(docker_config_json).into()
}

/// Our Secret's content in one pass: the `.dockerconfigjson` and its earliest expiry. One value
/// is shared (through an [`Arc`]) by the writes of every namespace; the object for one namespace
/// is built when it is sent ([`SecretContent::object`]). `Debug` shows the digest, never the
/// credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretContent {
    docker_config_json: String,
    digest: [u8; 32],
    expires_at: Option<SystemTime>,
    registries: Option<String>,
}

impl SecretContent {
    /// The content carrying `config`.
    pub fn new(config: &DockerConfig, expires_at: Option<SystemTime>) -> Self {
        let docker_config_json = config.to_json();
        Self {
            digest: content_digest(docker_config_json.as_bytes()),
            docker_config_json,
            expires_at,
            registries: None,
        }
    }

    /// Its [`REGISTRIES_ANNOTATION`] value, if any.
    pub fn registries(&self) -> Option<&str> {
        self.registries.as_deref()
    }

    /// With the [`REGISTRIES_ANNOTATION`] value `registries` (see [`registries_record`]).
    pub fn with_registries(mut self, registries: Option<String>) -> Self {
        self.registries = registries;
        self
    }

    /// The `.dockerconfigjson` document (it holds registry passwords).
    pub fn docker_config_json(&self) -> &str {
        &self.docker_config_json
    }

    /// Its SHA-256 ([`content_digest`]).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The earliest expiry among its credentials.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The whole Secret object `name` in `namespace` (see [`desired_secret`]).
    pub fn object(&self, namespace: &str, name: &str) -> Value {
        secret_object(
            namespace,
            name,
            &self.docker_config_json,
            self.expires_at,
            self.registries.as_deref(),
        )
    }
}

impl std::fmt::Debug for SecretContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digest: String = self.digest[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        f.debug_struct("SecretContent")
            .field("sha256", &format_args!("{digest}…"))
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the cluster holds (the parts the planner reads).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterSnapshot {
    /// Every namespace.
    pub namespaces: Vec<NamespaceInfo>,
    /// Every ServiceAccount (of the namespaces).
    pub service_accounts: Vec<ServiceAccountInfo>,
    /// Our managed Secrets, and any Secret named like ours (to leave it alone).
    pub secrets: Vec<SecretInfo>,
}

/// One write to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create our Secret.
    CreateSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The content (the object is [`SecretContent::object`]).
        content: Arc<SecretContent>,
    },
    /// Replace our Secret's content in place: a JSON patch of its `.dockerconfigjson` and our
    /// expiry annotation, guarded by its resourceVersion ([`Write::secret_patch`]); labels and
    /// annotations others added stay.
    UpdateSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The version the update is based on.
        resource_version: String,
        /// The new content.
        content: Arc<SecretContent>,
        /// Whether the Secret has annotations (see [`SecretInfo::has_annotations`]).
        has_annotations: bool,
        /// Its expiry annotation as read.
        expires_annotation: Option<String>,
    },
    /// Add our Secret to a ServiceAccount's `imagePullSecrets` and/or remove entries we
    /// recorded (one JSON patch with `test` guards).
    PatchServiceAccount {
        /// Namespace.
        namespace: String,
        /// ServiceAccount name.
        service_account: String,
        /// The entry added, if any.
        attach: Option<String>,
        /// The recorded entries removed.
        detach: Vec<String>,
        /// The change; [`ServiceAccountEdit::patch`] builds the JSON patch (RFC 6902) sent.
        edit: ServiceAccountEdit,
    },
    /// Delete a managed Secret that is out of scope or stale.
    DeleteSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The version the deletion is based on.
        resource_version: String,
    },
}

impl Write {
    /// `(namespace, name)` of the object the write is about: the Secret, or the
    /// ServiceAccount of a ServiceAccount patch.
    pub fn target(&self) -> (&str, &str) {
        match self {
            Write::CreateSecret {
                namespace, name, ..
            }
            | Write::UpdateSecret {
                namespace, name, ..
            }
            | Write::DeleteSecret {
                namespace, name, ..
            } => (namespace, name),
            Write::PatchServiceAccount {
                namespace,
                service_account,
                ..
            } => (namespace, service_account),
        }
    }

    /// The Secret object a create sends (and the content an update writes, as a whole
    /// object); `None` for the other writes.
    pub fn secret(&self) -> Option<Value> {
        match self {
            Write::CreateSecret {
                namespace,
                name,
                content,
            }
            | Write::UpdateSecret {
                namespace,
                name,
                content,
                ..
            } => Some(content.object(namespace, name)),
            _ => None,
        }
    }

    /// The JSON patch an update sends: `test` of the resourceVersion, our `.dockerconfigjson`,
    /// our expiry annotation (one key); `None` for the other writes.
    pub fn secret_patch(&self) -> Option<json_patch::Patch> {
        let Write::UpdateSecret {
            resource_version,
            content,
            has_annotations,
            expires_annotation,
            ..
        } = self
        else {
            return None;
        };
        let mut ops = vec![
            op_test("/metadata/resourceVersion", json!(resource_version)),
            op_add(
                &format!("/data/{}", pointer_segment(DOCKER_CONFIG_KEY)),
                json!(
                    base64::engine::general_purpose::STANDARD.encode(content.docker_config_json())
                ),
            ),
        ];
        let expiry = content.expires_at.map(acr_auth_core::time::format_iso8601);
        let mut ours: Vec<(&str, String)> = Vec::new();
        if let Some(e) = expiry {
            if expires_annotation.as_deref() != Some(e.as_str()) {
                ours.push((EXPIRES_ANNOTATION, e));
            }
        }
        if let Some(r) = &content.registries {
            ours.push((REGISTRIES_ANNOTATION, r.clone()));
        }
        if *has_annotations {
            // One key each: the annotations others added stay.
            for (key, value) in ours {
                ops.push(op_add(&annotation_pointer(key), json!(value)));
            }
        } else if !ours.is_empty() {
            let map: serde_json::Map<String, Value> = ours
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect();
            ops.push(op_add("/metadata/annotations", Value::Object(map)));
        }
        Some(json_patch::Patch(ops))
    }
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one character).
///
/// ```
/// use acr_auth_kube::plan::glob_match;
/// assert!(glob_match("kube-*", "kube-system"));
/// assert!(!glob_match("kube-*", "default"));
/// assert!(glob_match("team-?", "team-a"));
/// ```
pub fn glob_match(pattern: &str, name: &str) -> bool {
    // `wildmatch` runs in linear time: a hostile pattern such as `*a*a*a*a*b` on a long name
    // cannot stall the planner or the webhook.
    wildmatch::WildMatch::new(pattern).matches(name)
}

/// Whether the configuration serves `ns`.
pub fn namespace_in_scope(config: &HelperConfig, ns: &NamespaceInfo) -> bool {
    !ns.skip
        && !ns.terminating
        && config.watch_namespaces.contains(&ns.name)
        && !config
            .exclude_namespaces
            .iter()
            .any(|g| glob_match(g, &ns.name))
}

/// The `.dockerconfigjson` content for `credentials` (every host of every registry; a host named
/// by two registries keeps the first) and its earliest expiry; `None` when there is nothing.
pub fn desired_docker_config(
    credentials: &[RegistryCredential],
) -> Option<(DockerConfig, SystemTime)> {
    let mut config = DockerConfig::default();
    let mut earliest: Option<SystemTime> = None;
    for c in credentials {
        for host in &c.hosts {
            if !config.auths.contains_key(host) {
                config.insert(
                    host.clone(),
                    c.token.username.clone(),
                    c.token.password.clone(),
                );
            }
        }
        if !c.hosts.is_empty() {
            earliest = Some(earliest.map_or(c.token.expires_at, |e| e.min(c.token.expires_at)));
        }
    }
    earliest.map(|e| (config, e))
}

/// The writes that bring `snapshot` to what `config` and `credentials` ask for
/// ([`Planner::plan`]).
///
/// With no credentials (none fetched yet, or every registry failing) no Secret is created or
/// changed: the last good content stays. Deletions and detachments still happen for what left
/// the configuration.
pub fn plan(
    config: &HelperConfig,
    snapshot: &ClusterSnapshot,
    credentials: &[RegistryCredential],
) -> Vec<Write> {
    Planner::new(config, credentials).plan(snapshot)
}

/// The planner of one pass: the configuration and the Secret content every served namespace
/// gets, built once. Every namespace is planned from its own objects only, so a pass may plan
/// the cluster in parts: a snapshot holding some namespaces and every ServiceAccount and Secret
/// in them gets exactly the writes a whole snapshot has for them.
#[derive(Debug)]
pub struct Planner<'a> {
    config: &'a HelperConfig,
    desired: Option<Arc<SecretContent>>,
}

impl<'a> Planner<'a> {
    /// The planner for `config` and `credentials`.
    pub fn new(config: &'a HelperConfig, credentials: &[RegistryCredential]) -> Self {
        let desired = desired_docker_config(credentials).map(|(docker, expiry)| {
            Arc::new(
                SecretContent::new(&docker, Some(expiry))
                    .with_registries(registries_record(credentials)),
            )
        });
        Self { config, desired }
    }

    /// The content every served namespace's Secret gets (`None`: no credentials, nothing is
    /// created or changed).
    pub fn content(&self) -> Option<&Arc<SecretContent>> {
        self.desired.as_ref()
    }

    /// The writes that bring the namespaces of `snapshot` to the plan (see [`plan`]).
    pub fn plan(&self, snapshot: &ClusterSnapshot) -> Vec<Write> {
        let config = self.config;
        let desired = &self.desired;
        let in_scope: BTreeSet<&str> = snapshot
            .namespaces
            .iter()
            .filter(|ns| namespace_in_scope(config, ns))
            .map(|ns| ns.name.as_str())
            .collect();
        let secret_name = config.secret_name.as_str();
        let mut existing_secrets: HashMap<&str, &SecretInfo> = HashMap::new();
        for s in snapshot.secrets.iter().filter(|s| s.name == secret_name) {
            existing_secrets.entry(s.namespace.as_str()).or_insert(s);
        }

        let mut upserts = Vec::new();
        let mut patches = Vec::new();
        let mut deletes = Vec::new();
        let mut ours_in: BTreeSet<&str> = BTreeSet::new();

        for ns in &in_scope {
            let existing = existing_secrets.get(ns).copied();
            if let Some(content) = &desired {
                match existing {
                    None => upserts.push(Write::CreateSecret {
                        namespace: ns.to_string(),
                        name: secret_name.to_owned(),
                        content: content.clone(),
                    }),
                    // Never modify a Secret we did not create.
                    Some(s) if !s.managed => {}
                    Some(s) if s.content_digest == Some(content.digest()) => {}
                    Some(s) => upserts.push(Write::UpdateSecret {
                        namespace: ns.to_string(),
                        name: s.name.clone(),
                        resource_version: s.resource_version.clone(),
                        content: content.clone(),
                        has_annotations: s.has_annotations,
                        expires_annotation: s.expires_annotation.clone(),
                    }),
                }
            }
            if existing.is_some_and(|s| s.managed) || (existing.is_none() && desired.is_some()) {
                ours_in.insert(*ns);
            }
        }

        // One patch per ServiceAccount: add our entry where it belongs, remove the entries we
        // recorded that no longer belong (SA deselected, namespace out of scope, stale name).
        for sa in &snapshot.service_accounts {
            let wanted = in_scope.contains(sa.namespace.as_str())
                && config.service_accounts.contains(&sa.name);
            let add = (wanted && ours_in.contains(sa.namespace.as_str())).then_some(secret_name);
            // A renamed Secret's old entry stays until the new Secret is there: with no credentials
            // to write the new one, the old one is what still lets the pods pull.
            let served = ours_in.contains(sa.namespace.as_str());
            let remove: Vec<&str> = sa
                .managed_entries
                .iter()
                .map(String::as_str)
                .filter(|name| !(wanted && *name == secret_name))
                .filter(|_| !wanted || served)
                .collect();
            if let Some(edit) = sa.edit(add, &remove) {
                let before = &sa.image_pull_secrets;
                let attach = add
                    .filter(|a| !before.iter().any(|e| e == a))
                    .map(str::to_owned);
                let detach: Vec<String> = remove
                    .iter()
                    .filter(|r| before.iter().any(|e| e == *r))
                    .map(|r| r.to_string())
                    .collect();
                patches.push(Write::PatchServiceAccount {
                    namespace: sa.namespace.clone(),
                    service_account: sa.name.clone(),
                    attach,
                    detach,
                    edit,
                });
            }
        }

        // Delete our pull Secrets that are out of scope or have a stale name (never a Secret of
        // another type that carries our label, such as the webhook certificate).
        for s in snapshot
            .secrets
            .iter()
            .filter(|s| s.managed && s.pull_secret)
        {
            let in_scope_here = in_scope.contains(s.namespace.as_str());
            // Out of scope: removed. Stale name: removed once the new Secret is there (or about to
            // be created), never leaving a served namespace without pull credentials.
            if !in_scope_here || (s.name != secret_name && ours_in.contains(s.namespace.as_str())) {
                deletes.push(Write::DeleteSecret {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    resource_version: s.resource_version.clone(),
                });
            }
        }

        upserts.into_iter().chain(patches).chain(deletes).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_round_trips_its_docker_config() {
        let mut c = DockerConfig::default();
        c.insert("h1", "u", "p");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_714_554_000);
        let s = desired_secret("ns", "name", &c, Some(t));
        let data = s["data"][".dockerconfigjson"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(
            DockerConfig::parse(std::str::from_utf8(&decoded).unwrap()).unwrap(),
            c
        );
        assert_eq!(
            s["metadata"]["annotations"][EXPIRES_ANNOTATION],
            "2024-05-01T09:00:00Z"
        );
        assert!(is_managed(&s));
    }

    #[test]
    fn foreign_annotations_are_never_rewritten() {
        // The reported defect: an SA with RRSA and Helm annotations and no entry of ours.
        let sa = json!({"metadata": {"name": "default", "resourceVersion": "3", "annotations": {
            "pod-identity.alibabacloud.com/role-name": "app-role",
            "meta.helm.sh/release-name": "web",
        }}});
        let p = attach_patch(&sa, "ours").unwrap();
        let mut after = sa.clone();
        json_patch::patch(
            &mut after,
            &serde_json::from_value::<json_patch::Patch>(p.clone()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            after["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"],
            "app-role"
        );
        assert_eq!(
            after["metadata"]["annotations"]["meta.helm.sh/release-name"],
            "web"
        );
        assert_eq!(
            after["metadata"]["annotations"][MANAGED_ENTRIES_ANNOTATION],
            "ours"
        );
        assert_eq!(after["imagePullSecrets"], json!([{"name": "ours"}]));
        // No operation replaces the annotation map or the list as a whole.
        for op in p.as_array().unwrap() {
            assert!(
                !(op["op"] == "add" && op["path"] == "/metadata/annotations"),
                "{op}"
            );
            assert_ne!(op["op"], "replace", "{op}");
        }
    }

    #[test]
    fn glob_matching_is_linear() {
        // A pattern that makes a backtracking matcher exponential.
        let pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let name = "a".repeat(60);
        assert!(!glob_match(pattern, &name));
        assert!(glob_match("*a*b", "xxaxxb"));
        assert!(glob_match("kube-?ystem", "kube-system"));
    }

    #[test]
    fn attach_records_and_detach_removes_only_recorded_entries() {
        let sa = json!({"metadata": {"name": "default"}});
        let p = attach_patch(&sa, "ours").unwrap();
        assert_eq!(
            p[0],
            json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": "ours"}]})
        );
        assert_eq!(p[1]["path"], "/metadata/annotations");
        let recorded = json!({"metadata": {"resourceVersion": "9", "annotations": {MANAGED_ENTRIES_ANNOTATION: "ours"}},
                              "imagePullSecrets": [{"name": "ours"}, {"name": "theirs"}]});
        let p = detach_patch(&recorded, &["ours"]).unwrap();
        assert_eq!(
            p,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "9"},
                {"op": "test", "path": "/imagePullSecrets/0", "value": {"name": "ours"}},
                {"op": "remove", "path": "/imagePullSecrets/0"},
                {"op": "remove", "path": "/metadata/annotations/acr-credential-helper.alibabacloud.com~1managed-image-pull-secrets"},
            ])
        );
        // Not recorded: someone else's entry, even with our name.
        assert!(
            detach_patch(&json!({"imagePullSecrets": [{"name": "ours"}]}), &["ours"]).is_none()
        );
        assert!(!is_managed(
            &json!({"metadata": {"labels": {MANAGED_BY_LABEL: "someone"}}})
        ));
    }
}
