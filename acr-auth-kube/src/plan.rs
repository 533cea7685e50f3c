//! Pure planning: the pull Secret a namespace should hold and the ServiceAccount patches that
//! attach it. Objects are plain JSON (`serde_json::Value`) in the Kubernetes API's shape, so the
//! same functions serve the controller and the Python bindings.

use std::time::SystemTime;

use acr_auth_core::docker_config::DockerConfig;
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
            ".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config.to_json()),
        },
    })
}

/// Whether `object` carries our managed-by label (only such objects are ever modified).
pub fn is_managed(object: &Value) -> bool {
    object["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
}

/// The JSON patch (RFC 6902) that adds `secret_name` to the ServiceAccount's
/// `imagePullSecrets`, or `None` when it is already there. Entries written by others are never
/// touched; a `test` on `resourceVersion` (when the object has one) makes the patch fail with a
/// conflict instead of overwriting a concurrent change.
///
/// ```
/// use acr_auth_kube::plan::attach_patch;
/// use serde_json::json;
/// let sa = json!({"metadata": {"name": "default", "resourceVersion": "7"}, "imagePullSecrets": [{"name": "theirs"}]});
/// let patch = attach_patch(&sa, "ours").unwrap();
/// assert_eq!(patch[1], json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}}));
/// assert!(attach_patch(&json!({"imagePullSecrets": [{"name": "ours"}]}), "ours").is_none());
/// ```
pub fn attach_patch(service_account: &Value, secret_name: &str) -> Option<Value> {
    let existing = service_account["imagePullSecrets"].as_array();
    if existing.is_some_and(|list| list.iter().any(|e| e["name"] == secret_name)) {
        return None;
    }
    let mut ops = guard(service_account);
    ops.push(match existing {
        Some(_) => {
            json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret_name}})
        }
        None => json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": secret_name}]}),
    });
    Some(Value::Array(ops))
}

/// The JSON patch that removes every `secret_name` entry from `imagePullSecrets` (and nothing
/// else), or `None` when there is none.
pub fn detach_patch(service_account: &Value, secret_name: &str) -> Option<Value> {
    let list = service_account["imagePullSecrets"].as_array()?;
    let mut ops = guard(service_account);
    // Remove from the end so earlier indexes stay valid; each removal is preceded by a test of
    // the entry it removes.
    for (i, e) in list.iter().enumerate().rev() {
        if e["name"] == secret_name {
            ops.push(json!({"op": "test", "path": format!("/imagePullSecrets/{i}/name"), "value": secret_name}));
            ops.push(json!({"op": "remove", "path": format!("/imagePullSecrets/{i}")}));
        }
    }
    (ops.len() > guard(service_account).len()).then_some(Value::Array(ops))
}

fn guard(object: &Value) -> Vec<Value> {
    match object["metadata"]["resourceVersion"].as_str() {
        Some(rv) => vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv})],
        None => Vec::new(),
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
    fn attach_to_an_sa_without_a_list_and_detach_only_ours() {
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(
            attach_patch(&sa, "ours").unwrap(),
            json!([{"op": "add", "path": "/imagePullSecrets", "value": [{"name": "ours"}]}])
        );
        let sa = json!({"metadata": {"resourceVersion": "9"},
                        "imagePullSecrets": [{"name": "ours"}, {"name": "theirs"}, {"name": "ours"}]});
        let p = detach_patch(&sa, "ours").unwrap();
        assert_eq!(
            p[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "9"})
        );
        assert_eq!(p[2], json!({"op": "remove", "path": "/imagePullSecrets/2"}));
        assert_eq!(p[4], json!({"op": "remove", "path": "/imagePullSecrets/0"}));
        assert!(detach_patch(&json!({"imagePullSecrets": [{"name": "theirs"}]}), "ours").is_none());
        assert!(!is_managed(
            &json!({"metadata": {"labels": {MANAGED_BY_LABEL: "someone"}}})
        ));
    }
}
