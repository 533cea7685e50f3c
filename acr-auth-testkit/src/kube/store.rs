//! The object store of the fake API server: a global resourceVersion, objects by resource,
//! namespace and name, and the event log that watches replay.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// A resource the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// Plural name in URLs (`secrets`).
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// `Kind`.
    pub kind: &'static str,
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// The store key: the plural, prefixed with the group outside the core group.
    pub key: &'static str,
}

impl ResourceType {
    /// `v1` or `coordination.k8s.io/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every resource served.
pub const RESOURCES: &[ResourceType] = &[
    ResourceType {
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        group: "",
        version: "v1",
        namespaced: false,
        key: "namespaces",
        short_names: &["ns"],
    },
    ResourceType {
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        group: "",
        version: "v1",
        namespaced: true,
        key: "secrets",
        short_names: &[],
    },
    ResourceType {
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        group: "",
        version: "v1",
        namespaced: true,
        key: "serviceaccounts",
        short_names: &["sa"],
    },
    ResourceType {
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        group: "",
        version: "v1",
        namespaced: true,
        key: "configmaps",
        short_names: &["cm"],
    },
    ResourceType {
        plural: "events",
        singular: "event",
        kind: "Event",
        group: "",
        version: "v1",
        namespaced: true,
        key: "events",
        short_names: &["ev"],
    },
    ResourceType {
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        group: "coordination.k8s.io",
        version: "v1",
        namespaced: true,
        key: "coordination.k8s.io/leases",
        short_names: &[],
    },
    ResourceType {
        plural: "events",
        singular: "event",
        kind: "Event",
        group: "events.k8s.io",
        version: "v1",
        namespaced: true,
        key: "events.k8s.io/events",
        short_names: &[],
    },
    ResourceType {
        plural: "mutatingwebhookconfigurations",
        singular: "mutatingwebhookconfiguration",
        kind: "MutatingWebhookConfiguration",
        group: "admissionregistration.k8s.io",
        version: "v1",
        namespaced: false,
        key: "admissionregistration.k8s.io/mutatingwebhookconfigurations",
        short_names: &[],
    },
];

/// Finds a resource by group and plural.
pub fn resource(group: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// (resource key, namespace, name); namespace is `""` for cluster-scoped objects. The resource
/// key is the plural, prefixed with the group for non-core groups (`events.k8s.io/events`).
pub type Key = (&'static str, String, String);

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// Resource plural.
    pub resource: &'static str,
    /// The object after the change (before it, for deletions, with the new resourceVersion).
    pub object: Value,
}

/// The state.
#[derive(Debug, Default)]
pub struct Store {
    /// The last resourceVersion handed out.
    pub rv: u64,
    /// Every live object.
    pub objects: BTreeMap<Key, Value>,
    /// Every change, oldest first.
    pub log: Vec<Change>,
    /// Watches and continue tokens older than this get 410 Gone.
    pub compacted_below: u64,
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// As the API server does: a Secret's write-only `stringData` is merged into `data` (base64),
/// taking precedence, and never stored.
fn fold_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(Value::Object(plain)) = secret.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    for (k, v) in plain {
        let text = v.as_str().unwrap_or_default();
        secret["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// As the API server does when it stores an object (Go's `omitempty`): empty optional maps and
/// lists disappear. Seen against the real kube-apiserver: a ServiceAccount whose last entry was
/// removed has no `imagePullSecrets` field, not `[]`, and no `annotations: {}`.
fn drop_empty_optional_fields(object: &mut Value) {
    let empty = |v: &Value| {
        v.as_array().is_some_and(Vec::is_empty) || v.as_object().is_some_and(|m| m.is_empty())
    };
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in ["annotations", "labels", "finalizers", "ownerReferences"] {
            if meta.get(field).is_some_and(empty) {
                meta.remove(field);
            }
        }
    }
    if let Some(top) = object.as_object_mut() {
        for field in ["imagePullSecrets", "secrets", "data"] {
            if top.get(field).is_some_and(empty) {
                top.remove(field);
            }
        }
    }
}

impl Store {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores `object` (new or changed), stamping its resourceVersion; returns it.
    pub fn put(&mut self, r: &ResourceType, mut object: Value, created: bool) -> Value {
        let rv = self.next_rv();
        if r.key == "secrets" {
            fold_string_data(&mut object);
        }
        drop_empty_optional_fields(&mut object);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        object["apiVersion"] = json!(r.api_version());
        object["kind"] = json!(r.kind);
        let key = (
            r.key,
            meta_str(&object, "namespace").to_owned(),
            meta_str(&object, "name").to_owned(),
        );
        self.objects.insert(key, object.clone());
        self.log.push(Change {
            rv,
            kind: if created { "ADDED" } else { "MODIFIED" },
            resource: r.key,
            object: object.clone(),
        });
        object
    }

    /// Removes an object; returns it with the deletion's resourceVersion.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.log.push(Change {
            rv,
            kind: "DELETED",
            resource: key.0,
            object: object.clone(),
        });
        Some(object)
    }

    /// Forgets history: watches or continue tokens from before now get 410 Gone.
    pub fn compact(&mut self) {
        self.compacted_below = self.rv + 1;
        self.log.clear();
    }
}
