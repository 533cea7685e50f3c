//! Pure planning: from the configuration, a snapshot of the cluster and the current registry
//! credentials to the writes that make the cluster right ([`plan`]), plus the object builders it
//! uses ([`desired_secret`], [`attach_patch`], [`detach_patch`]). Objects are plain JSON in the
//! Kubernetes API's shape, so the same functions serve the controller and the Python bindings.
//!
//! The rules (BEHAVIOUR.md section 4): every served namespace holds one managed
//! `kubernetes.io/dockerconfigjson` Secret with every host of every registry; every matching
//! ServiceAccount lists it in `imagePullSecrets`; nothing we did not create is modified; what
//! leaves the configuration is removed; Secrets are updated in place and only when their content
//! changes; an empty credential set is never written. Planning again after applying a plan
//! yields nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use acr_auth_core::config::HelperConfig;
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::source::RegistryCredential;
use base64::Engine as _;
use serde_json::{json, Value};

/// The label on everything we write.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY_VALUE: &str = "aliyun-acr-credential-helper";
/// Annotation with the earliest expiry among the Secret's credentials (RFC 3339).
pub const EXPIRES_ANNOTATION: &str = "acr-credential-helper.alibabacloud.com/expires-at";

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
    secret_object(namespace, name, &config.to_json(), earliest_expiry)
}

fn secret_object(
    namespace: &str,
    name: &str,
    docker_config_json: &str,
    earliest_expiry: Option<SystemTime>,
) -> Value {
    let mut metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
    });
    if let Some(t) = earliest_expiry {
        metadata["annotations"] =
            json!({EXPIRES_ANNOTATION: acr_auth_core::time::format_iso8601(t)});
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/dockerconfigjson",
        "data": {
            ".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(docker_config_json),
        },
    })
}

/// Whether `object` carries our managed-by label (only such objects are ever modified).
pub fn is_managed(object: &Value) -> bool {
    object["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
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

/// JSON pointer of the annotation (`/` escaped as `~1`).
fn annotation_path() -> String {
    format!(
        "/metadata/annotations/{}",
        MANAGED_ENTRIES_ANNOTATION
            .replace('~', "~0")
            .replace('/', "~1")
    )
}

/// Operations that set our annotation to `names` (removing it when empty).
fn record_ops(service_account: &Value, names: &[String]) -> Vec<Value> {
    let has_annotations = service_account["metadata"]["annotations"].is_object();
    let has_ours =
        service_account["metadata"]["annotations"][MANAGED_ENTRIES_ANNOTATION].is_string();
    match (names.is_empty(), has_annotations, has_ours) {
        (true, _, true) => vec![json!({"op": "remove", "path": annotation_path()})],
        (true, _, false) => Vec::new(),
        (false, true, _) => {
            vec![json!({"op": "add", "path": annotation_path(), "value": names.join(",")})]
        }
        (false, false, _) => vec![json!({
            "op": "add",
            "path": "/metadata/annotations",
            "value": {MANAGED_ENTRIES_ANNOTATION: names.join(",")},
        })],
    }
}

/// The JSON patch (RFC 6902) that removes our recorded entries named in `remove`, adds `add`
/// when it is missing, and updates the record; `None` when nothing changes.
///
/// Entries we did not record are never removed, and the list keeps their order. The patch
/// `test`s the `resourceVersion` (when the object has one) and the whole current list, so a
/// concurrent change makes it fail with a conflict instead of being overwritten.
pub fn service_account_patch(
    service_account: &Value,
    add: Option<&str>,
    remove: &[&str],
) -> Option<Value> {
    let recorded = managed_entries(service_account);
    let current: Vec<Value> = service_account["imagePullSecrets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let removing: Vec<&str> = remove
        .iter()
        .copied()
        .filter(|n| recorded.iter().any(|r| r == n))
        .collect();
    let mut list: Vec<Value> = current
        .iter()
        .filter(|e| !removing.iter().any(|n| e["name"] == *n))
        .cloned()
        .collect();
    let mut new_record: Vec<String> = recorded
        .iter()
        .filter(|r| !removing.contains(&r.as_str()))
        .cloned()
        .collect();
    if let Some(name) = add {
        if !list.iter().any(|e| e["name"] == name) {
            list.push(json!({"name": name}));
            if !new_record.iter().any(|r| r == name) {
                new_record.push(name.to_owned());
            }
        }
    }
    if list == current && new_record == recorded {
        return None;
    }
    let mut ops = guard(service_account);
    match (current.is_empty(), list.is_empty()) {
        (true, true) => {}
        (true, false) => ops.push(json!({"op": "add", "path": "/imagePullSecrets", "value": list})),
        (false, empty) => {
            ops.push(json!({"op": "test", "path": "/imagePullSecrets", "value": current}));
            ops.push(if empty {
                json!({"op": "remove", "path": "/imagePullSecrets"})
            } else {
                json!({"op": "replace", "path": "/imagePullSecrets", "value": list})
            });
        }
    }
    if new_record != recorded {
        ops.extend(record_ops(service_account, &new_record));
    }
    Some(Value::Array(ops))
}

/// [`service_account_patch`] adding `secret_name`.
///
/// ```
/// use acr_auth_kube::plan::attach_patch;
/// use serde_json::json;
/// let sa = json!({"metadata": {"name": "default", "resourceVersion": "7"}, "imagePullSecrets": [{"name": "theirs"}]});
/// let patch = attach_patch(&sa, "ours").unwrap();
/// assert_eq!(patch[2], json!({"op": "replace", "path": "/imagePullSecrets", "value": [{"name": "theirs"}, {"name": "ours"}]}));
/// assert!(attach_patch(&json!({"imagePullSecrets": [{"name": "ours"}]}), "ours").is_none());
/// ```
pub fn attach_patch(service_account: &Value, secret_name: &str) -> Option<Value> {
    service_account_patch(service_account, Some(secret_name), &[])
}

/// [`service_account_patch`] removing our entries named `names`.
pub fn detach_patch(service_account: &Value, names: &[&str]) -> Option<Value> {
    service_account_patch(service_account, None, names)
}

fn guard(object: &Value) -> Vec<Value> {
    match object["metadata"]["resourceVersion"].as_str() {
        Some(rv) => vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv})],
        None => Vec::new(),
    }
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

/// A ServiceAccount as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceAccountInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `imagePullSecrets[].name`, in order.
    pub image_pull_secrets: Vec<String>,
    /// The entries recorded as ours ([`MANAGED_ENTRIES_ANNOTATION`]).
    pub managed_entries: Vec<String>,
}

impl ServiceAccountInfo {
    /// The object as the API server returns it: an empty `imagePullSecrets` is omitted.
    fn as_json(&self) -> Value {
        let mut v = json!({
            "metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": self.resource_version},
        });
        if !self.image_pull_secrets.is_empty() {
            v["imagePullSecrets"] = self
                .image_pull_secrets
                .iter()
                .map(|n| json!({"name": n}))
                .collect();
        }
        if !self.managed_entries.is_empty() {
            v["metadata"]["annotations"] =
                json!({MANAGED_ENTRIES_ANNOTATION: self.managed_entries.join(",")});
        }
        v
    }

    /// Reads the planner's view from a ServiceAccount object.
    pub fn from_object(service_account: &Value) -> Self {
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
        }
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
}

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
}

impl SecretContent {
    /// The content carrying `config`.
    pub fn new(config: &DockerConfig, expires_at: Option<SystemTime>) -> Self {
        let docker_config_json = config.to_json();
        Self {
            digest: content_digest(docker_config_json.as_bytes()),
            docker_config_json,
            expires_at,
        }
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
        secret_object(namespace, name, &self.docker_config_json, self.expires_at)
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
    /// Replace our Secret's content, in place (with a resourceVersion precondition).
    UpdateSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The version the update is based on.
        resource_version: String,
        /// The new content (the object is [`SecretContent::object`]).
        content: Arc<SecretContent>,
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
        /// The JSON patch (RFC 6902), serialized: thousands of pending patches stay small.
        patch: String,
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
    /// The Secret object a create or update sends; `None` for the other writes.
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
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
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

/// The writes that bring `snapshot` to what `config` and `credentials` ask for.
///
/// With no credentials (none fetched yet, or every registry failing) no Secret is created or
/// changed: the last good content stays. Deletions and detachments still happen for what left
/// the configuration.
pub fn plan(
    config: &HelperConfig,
    snapshot: &ClusterSnapshot,
    credentials: &[RegistryCredential],
) -> Vec<Write> {
    let desired = desired_docker_config(credentials)
        .map(|(config, expiry)| Arc::new(SecretContent::new(&config, Some(expiry))));
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
        let wanted =
            in_scope.contains(sa.namespace.as_str()) && config.service_accounts.contains(&sa.name);
        let add = (wanted && ours_in.contains(sa.namespace.as_str())).then_some(secret_name);
        let remove: Vec<&str> = sa
            .managed_entries
            .iter()
            .map(String::as_str)
            .filter(|name| !(wanted && *name == secret_name))
            .collect();
        let json = sa.as_json();
        if let Some(patch) = service_account_patch(&json, add, &remove) {
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
                patch: patch.to_string(),
            });
        }
    }

    // Delete our Secrets that are out of scope or have a stale name.
    for s in snapshot.secrets.iter().filter(|s| s.managed) {
        if !in_scope.contains(s.namespace.as_str()) || s.name != secret_name {
            deletes.push(Write::DeleteSecret {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                resource_version: s.resource_version.clone(),
            });
        }
    }

    upserts.into_iter().chain(patches).chain(deletes).collect()
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
            p[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "9"})
        );
        assert_eq!(p[1]["op"], "test");
        assert_eq!(
            p[2],
            json!({"op": "replace", "path": "/imagePullSecrets", "value": [{"name": "theirs"}]})
        );
        assert_eq!(p[3]["op"], "remove");
        assert_eq!(p[3]["path"], "/metadata/annotations/acr-credential-helper.alibabacloud.com~1managed-image-pull-secrets");
        // Not recorded: someone else's entry, even with our name.
        assert!(
            detach_patch(&json!({"imagePullSecrets": [{"name": "ours"}]}), &["ours"]).is_none()
        );
        assert!(!is_managed(
            &json!({"metadata": {"labels": {MANAGED_BY_LABEL: "someone"}}})
        ));
    }
}
