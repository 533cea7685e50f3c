//! The REST verbs of the fake API server (list and watch are in `list_watch`).

use std::sync::Arc;

use axum::response::Response;
use serde_json::{json, Value};

use super::selector::{FieldSelector, LabelSelector};
use super::store::{resource, Key, ResourceType};
use super::{json_response, status, KubeRequest, Shared};

/// Where a request points.
pub(crate) struct Route {
    pub resource: &'static ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...`.
pub(crate) fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, "v1", rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, *plural, None),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return None,
    };
    let r = resource(group, plural)?;
    if !r.namespaced && namespace.is_some() {
        return None;
    }
    Some(Route {
        resource: r,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

fn query(req: &KubeRequest) -> Vec<(String, String)> {
    acr_auth_core::sign::parse_query(req.uri.query().unwrap_or("")).unwrap_or_default()
}

pub(crate) fn param(q: &[(String, String)], name: &str) -> Option<String> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The Kubernetes verb of a request.
pub(crate) fn verb(req: &KubeRequest, route: &Route) -> &'static str {
    match (req.method.as_str(), route.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if param(&query(req), "watch").is_some_and(|w| w == "true" || w == "1") => {
            "watch"
        }
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn random_suffix(n: usize) -> String {
    use rand::RngExt as _;
    const CH: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CH[rng.random_range(0..CH.len())] as char)
        .collect()
}

fn now_rfc3339() -> String {
    acr_auth_core::time::format_iso8601(acr_auth_core::time::Clock::now(
        &acr_auth_core::time::SystemClock,
    ))
}

fn not_found(r: &ResourceType, name: &str) -> Response {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", r.plural),
    )
}

fn conflict(r: &ResourceType, name: &str) -> Response {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            r.plural
        ),
    )
}

/// Creates a namespace and its `default` ServiceAccount (as the ServiceAccount controller does).
pub(crate) fn create_namespace_object(shared: &Shared, name: &str) -> Value {
    let ns_type = resource("", "namespaces").expect("namespaces are served");
    let sa_type = resource("", "serviceaccounts").expect("serviceaccounts are served");
    let mut store = shared.store();
    let ns = store.put(
        ns_type,
        json!({"metadata": {"name": name, "uid": uuid(), "creationTimestamp": now_rfc3339()},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        true,
    );
    store.put(
        sa_type,
        json!({"metadata": {"name": "default", "namespace": name, "uid": uuid(), "creationTimestamp": now_rfc3339()}}),
        true,
    );
    drop(store);
    let _ = shared.changed.send(());
    ns
}

/// A new object uid.
pub(crate) fn new_uid() -> String {
    uuid()
}

fn uuid() -> String {
    let a = random_suffix(8);
    format!("{a}-0000-4000-8000-{}", random_suffix(12))
}

/// Objects ignoring `metadata.resourceVersion`, to tell a no-op write.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

/// Strategic merge patch for the fields kubectl patches here: maps merge (null deletes), lists
/// with a merge key (`imagePullSecrets`, `secrets` by `name`) merge by that key, other lists
/// are replaced.
fn strategic_merge(target: &mut Value, patch: &Value) {
    const MERGE_KEYS: [(&str, &str); 2] = [("imagePullSecrets", "name"), ("secrets", "name")];
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if k.starts_with("$") {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                if let (Some((_, key)), Some(items)) =
                    (MERGE_KEYS.iter().find(|(f, _)| f == k), v.as_array())
                {
                    let list = t.entry(k.clone()).or_insert_with(|| json!([]));
                    if let Some(existing) = list.as_array_mut() {
                        for item in items {
                            match existing.iter_mut().find(|e| e[*key] == item[*key]) {
                                Some(e) => strategic_merge(e, item),
                                None => existing.push(item.clone()),
                            }
                        }
                    }
                    continue;
                }
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                if v.is_object() && slot.is_object() {
                    strategic_merge(slot, v);
                } else {
                    *slot = v.clone();
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

pub(crate) fn matches(
    obj: &Value,
    labels: &Option<LabelSelector>,
    fields: &Option<FieldSelector>,
) -> bool {
    labels
        .as_ref()
        .is_none_or(|l| l.matches(&obj["metadata"]["labels"]))
        && fields.as_ref().is_none_or(|f| f.matches(obj))
}

pub(crate) async fn handle(
    shared: &Arc<Shared>,
    req: &KubeRequest,
    route: &Route,
    verb: &str,
) -> Response {
    let r = route.resource;
    let q = query(req);
    if let Some(ns) = &route.namespace {
        if r.namespaced
            && verb == "create"
            && !shared
                .store()
                .objects
                .contains_key(&("namespaces", String::new(), ns.clone()))
        {
            return status(404, "NotFound", format!("namespaces \"{ns}\" not found"));
        }
    }
    let selectors = || -> Result<(Option<LabelSelector>, Option<FieldSelector>), Response> {
        let labels = param(&q, "labelSelector")
            .map(|s| LabelSelector::parse(&s))
            .transpose()
            .map_err(|e| {
                status(
                    400,
                    "BadRequest",
                    format!("unable to parse requirement: {e}"),
                )
            })?;
        let fields = param(&q, "fieldSelector")
            .map(|s| FieldSelector::parse(&s))
            .transpose()
            .map_err(|e| status(400, "BadRequest", e))?;
        Ok((labels, fields))
    };
    let key = |name: &str| -> Key {
        (
            r.key,
            route.namespace.clone().unwrap_or_default(),
            name.to_owned(),
        )
    };
    match verb {
        "get" => {
            let name = route.name.as_deref().unwrap_or_default();
            match shared.store().objects.get(&key(name)) {
                Some(o) => json_response(200, o),
                None => not_found(r, name),
            }
        }
        "list" => {
            let (labels, fields) = match selectors() {
                Ok(s) => s,
                Err(resp) => return resp,
            };
            super::list_watch::list(shared, route, &q, &labels, &fields)
        }
        "watch" => {
            let (labels, fields) = match selectors() {
                Ok(s) => s,
                Err(resp) => return resp,
            };
            super::list_watch::watch(shared.clone(), route, &q, labels, fields)
        }
        "create" => create(shared, req, route, &q).await,
        "update" | "patch" => {
            let name = route.name.clone().unwrap_or_default();
            let mut store = shared.store();
            let Some(current) = store.objects.get(&key(&name)).cloned() else {
                return not_found(r, &name);
            };
            let body: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", format!("the body is not JSON: {e}")),
            };
            let content_type = req
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let mut next = current.clone();
            if verb == "update" {
                next = body;
            } else if content_type.starts_with("application/json-patch+json") {
                let patch: json_patch::Patch = match serde_json::from_value(body) {
                    Ok(p) => p,
                    Err(e) => return status(400, "BadRequest", format!("invalid JSON patch: {e}")),
                };
                if let Err(e) = json_patch::patch(&mut next, &patch) {
                    // As kube-apiserver answers (NewGenericServerResponse): a generic message,
                    // the patch library's error as the one cause.
                    return json_response(
                        422,
                        &json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "Invalid", "code": 422,
                            "message": "the server rejected our request due to an error in our request",
                            "details": {"causes": [
                                {"reason": "UnexpectedServerResponse", "message": e.to_string()}
                            ]},
                        }),
                    );
                }
            } else if content_type.starts_with("application/merge-patch+json") {
                json_patch::merge(&mut next, &body);
            } else if content_type.starts_with("application/strategic-merge-patch+json") {
                strategic_merge(&mut next, &body);
            } else {
                return status(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"));
            }
            let claimed_rv = next["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !claimed_rv.is_empty()
                && claimed_rv
                    != current["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
            {
                return conflict(r, &name);
            }
            if next["metadata"]["name"] != current["metadata"]["name"]
                || (r.namespaced
                    && next["metadata"]["namespace"] != current["metadata"]["namespace"]
                    && !next["metadata"]["namespace"].is_null())
            {
                return status(
                    422,
                    "Invalid",
                    "metadata.name and metadata.namespace cannot be changed",
                );
            }
            // Fields the server owns.
            for f in ["uid", "creationTimestamp", "namespace"] {
                if !current["metadata"][f].is_null() {
                    next["metadata"][f] = current["metadata"][f].clone();
                }
            }
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            if same_content(&next, &current) {
                return json_response(200, &current);
            }
            if let Err(refused) = validate(r, &next) {
                return refused;
            }
            let stored = store.put(r, next, false);
            drop(store);
            let _ = shared.changed.send(());
            json_response(200, &stored)
        }
        "delete" => {
            let name = route.name.clone().unwrap_or_default();
            let precondition = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|b| {
                    b["preconditions"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned)
                });
            let mut store = shared.store();
            let Some(current) = store.objects.get(&key(&name)).cloned() else {
                return not_found(r, &name);
            };
            if precondition.is_some_and(|rv| {
                Some(rv.as_str()) != current["metadata"]["resourceVersion"].as_str()
            }) {
                return conflict(r, &name);
            }
            if r.plural == "namespaces" {
                // Terminating, then every object of the namespace, then the namespace.
                let mut terminating = current.clone();
                terminating["status"]["phase"] = json!("Terminating");
                terminating["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                let ns_type = r;
                let shown = store.put(ns_type, terminating, false);
                let inside: Vec<Key> = store
                    .objects
                    .keys()
                    .filter(|(_, ns, _)| *ns == name)
                    .cloned()
                    .collect();
                for k in inside {
                    store.remove(&k);
                }
                store.remove(&key(&name));
                drop(store);
                let _ = shared.changed.send(());
                return json_response(200, &shown);
            }
            let removed = store.remove(&key(&name)).expect("checked above");
            drop(store);
            let _ = shared.changed.send(());
            json_response(200, &removed)
        }
        _ => status(
            405,
            "MethodNotAllowed",
            format!("{} is not supported on {}", req.method, r.plural),
        ),
    }
}

async fn create(
    shared: &Arc<Shared>,
    req: &KubeRequest,
    route: &Route,
    q: &[(String, String)],
) -> Response {
    let r = route.resource;
    let mut obj: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return status(400, "BadRequest", "the body is not a JSON object"),
    };
    if let Some(kind) = obj["kind"].as_str() {
        if kind != r.kind {
            return status(
                400,
                "BadRequest",
                format!("the kind {kind} does not match {}", r.kind),
            );
        }
    }
    if obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        match obj["metadata"]["generateName"].as_str() {
            Some(prefix) => obj["metadata"]["name"] = json!(format!("{prefix}{}", random_suffix(5))),
            None => return status(422, "Invalid", format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", r.kind)),
        }
    }
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if r.namespaced {
        let ns = route.namespace.clone().unwrap_or_default();
        match obj["metadata"]["namespace"].as_str() {
            Some(body_ns) if body_ns != ns => {
                return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            }
            _ => obj["metadata"]["namespace"] = json!(ns),
        }
        let terminating = shared
            .store()
            .objects
            .get(&("namespaces", String::new(), ns.clone()))
            .is_some_and(|n| n["status"]["phase"] == "Terminating");
        if terminating {
            return status(403, "Forbidden", format!("{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated", r.plural));
        }
    }
    let key: Key = (
        r.key,
        route.namespace.clone().unwrap_or_default(),
        name.clone(),
    );
    if shared.store().objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", r.plural),
        );
    }
    if param(q, "dryRun").is_some() {
        return json_response(201, &obj);
    }
    if r.plural == "namespaces" {
        return json_response(201, &create_namespace_object(shared, &name));
    }
    if r.plural == "serviceaccounts" {
        let user = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ns = route.namespace.clone().unwrap_or_default();
        obj = match super::admission::mutate(shared, r, &ns, user, obj).await {
            Ok(o) => o,
            Err(refused) => return refused,
        };
    }
    if let Err(refused) = validate(r, &obj) {
        return refused;
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.insert("uid".into(), json!(uuid()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    }
    let stored = shared.store().put(r, obj, true);
    let _ = shared.changed.send(());
    json_response(201, &stored)
}

/// The validation of kube-apiserver that the adapter can run into: a
/// `kubernetes.io/dockerconfigjson` Secret must carry `.dockerconfigjson` (in `data` or
/// `stringData`) holding JSON. Found by the differential test against the real server.
fn validate(r: &ResourceType, obj: &Value) -> Result<(), Response> {
    use base64::Engine as _;
    if r.plural != "secrets" || obj["type"] != "kubernetes.io/dockerconfigjson" {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let key = ".dockerconfigjson";
    let text = match (obj["stringData"][key].as_str(), obj["data"][key].as_str()) {
        (Some(plain), _) => Some(plain.as_bytes().to_vec()),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
        (None, None) => {
            return Err(status(
                422,
                "Invalid",
                format!("Secret \"{name}\" is invalid: data[{key}]: Required value"),
            ))
        }
    };
    match text.and_then(|t| serde_json::from_slice::<Value>(&t).ok()) {
        Some(_) => Ok(()),
        None => Err(status(
            422,
            "Invalid",
            format!("Secret \"{name}\" is invalid: data[{key}]: Invalid value: \"<secret contents redacted>\": invalid character"),
        )),
    }
}
