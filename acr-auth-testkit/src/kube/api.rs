//! The REST verbs of the fake API server.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
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

fn param(q: &[(String, String)], name: &str) -> Option<String> {
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
    use rand::Rng as _;
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

fn matches(obj: &Value, labels: &Option<LabelSelector>, fields: &Option<FieldSelector>) -> bool {
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
            list(shared, route, &q, &labels, &fields)
        }
        "watch" => {
            let (labels, fields) = match selectors() {
                Ok(s) => s,
                Err(resp) => return resp,
            };
            watch(shared.clone(), route, &q, labels, fields)
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
                    return status(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
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
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.insert("uid".into(), json!(uuid()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    }
    let stored = shared.store().put(r, obj, true);
    let _ = shared.changed.send(());
    json_response(201, &stored)
}

fn list_kind(r: &ResourceType) -> String {
    format!("{}List", r.kind)
}

fn list(
    shared: &Shared,
    route: &Route,
    q: &[(String, String)],
    labels: &Option<LabelSelector>,
    fields: &Option<FieldSelector>,
) -> Response {
    let r = route.resource;
    let store = shared.store();
    let limit: usize = param(q, "limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let (list_rv, after): (u64, Option<(String, String)>) = match param(q, "continue")
        .filter(|c| !c.is_empty())
    {
        None => (store.rv, None),
        Some(token) => {
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((rv, ns, name)) = decoded.as_deref().and_then(|d| {
                let mut parts = d.splitn(3, '|');
                Some((
                    parts.next()?.parse::<u64>().ok()?,
                    parts.next()?.to_owned(),
                    parts.next()?.to_owned(),
                ))
            }) else {
                return status(400, "BadRequest", "invalid continue token");
            };
            // A token snapshot from before the last compaction can no longer be continued.
            if rv < store.compacted_below {
                return status(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.");
            }
            (rv, Some((ns, name)))
        }
    };
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    for ((res, ns, name), obj) in store.objects.range((r.key, String::new(), String::new())..) {
        if *res != r.key {
            break;
        }
        if route.namespace.as_ref().is_some_and(|want| want != ns) {
            continue;
        }
        if after
            .as_ref()
            .is_some_and(|(ans, aname)| (ns, name) <= (ans, aname))
        {
            continue;
        }
        if !matches(obj, labels, fields) {
            continue;
        }
        if items.len() == limit {
            let (lns, lname) = items
                .last()
                .map(|o: &Value| {
                    (
                        o["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        o["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .unwrap_or_default();
            next = Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(format!("{list_rv}|{lns}|{lname}")),
            );
            break;
        }
        items.push(obj.clone());
    }
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let Some(n) = next {
        metadata["continue"] = json!(n);
    }
    json_response(
        200,
        &json!({"kind": list_kind(r), "apiVersion": r.api_version(), "metadata": metadata, "items": items}),
    )
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch(
    shared: Arc<Shared>,
    route: &Route,
    q: &[(String, String)],
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
) -> Response {
    let r = route.resource;
    let namespace = route.namespace.clone();
    let from: Option<u64> = param(q, "resourceVersion")
        .filter(|v| !v.is_empty() && v != "0")
        .and_then(|v| v.parse().ok());
    let bookmarks = param(q, "allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = Duration::from_secs(
        param(q, "timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(300),
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let mut changed = shared.changed.subscribe();
    let mut closed = shared.close_watches.subscribe();
    let selects = move |obj: &Value| {
        namespace
            .as_ref()
            .is_none_or(|n| obj["metadata"]["namespace"].as_str() == Some(n.as_str()))
            && matches(obj, &labels, &fields)
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        enum Start {
            Gone(Value),
            From(u64),
            Initial(Vec<Bytes>, u64),
        }
        // Decide under the lock, send after releasing it.
        let start = {
            let store = shared.store();
            match from {
                Some(rv) if rv + 1 < store.compacted_below => Start::Gone(json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {rv} ({})", store.compacted_below - 1),
                    "reason": "Expired", "code": 410})),
                Some(rv) => Start::From(rv),
                // No version: the current state as ADDED events first.
                None => Start::Initial(
                    store
                        .objects
                        .iter()
                        .filter(|((res, _, _), o)| *res == r.key && selects(o))
                        .map(|(_, o)| event_line("ADDED", o))
                        .collect(),
                    store.rv,
                ),
            }
        };
        let mut last = match start {
            Start::Gone(status) => {
                let _ = tx.send(event_line("ERROR", &status)).await;
                return;
            }
            Start::From(rv) => rv,
            Start::Initial(lines, rv) => {
                for line in lines {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                rv
            }
        };
        loop {
            let (lines, gone, current_rv) = {
                let store = shared.store();
                if last + 1 < store.compacted_below {
                    (Vec::new(), true, store.rv)
                } else {
                    let start = store.log.partition_point(|c| c.rv <= last);
                    let lines: Vec<(u64, Bytes)> = store.log[start..]
                        .iter()
                        .filter(|c| c.resource == r.key && selects(&c.object))
                        .map(|c| (c.rv, event_line(c.kind, &c.object)))
                        .collect();
                    (lines, false, store.rv)
                }
            };
            if gone {
                let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410});
                let _ = tx.send(event_line("ERROR", &gone)).await;
                return;
            }
            for (_, line) in lines {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            last = current_rv;
            tokio::select! {
                _ = changed.recv() => {}
                _ = tokio::time::sleep(shared.bookmark_interval) => {
                    if bookmarks {
                        let bm = json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": {"resourceVersion": last.to_string()}});
                        if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = closed.changed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    (
        axum::http::StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("transfer-encoding", "chunked"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
