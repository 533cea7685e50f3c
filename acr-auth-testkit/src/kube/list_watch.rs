//! List (with selectors and pagination) and watch (from a resourceVersion, with bookmarks,
//! server-side timeouts and 410 Gone) of the fake API server.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};

use super::api::{matches, param, Route};
use super::selector::{FieldSelector, LabelSelector};
use super::store::ResourceType;
use super::{json_response, status, Shared};

fn list_kind(r: &ResourceType) -> String {
    format!("{}List", r.kind)
}

pub(crate) fn list(
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

pub(crate) fn watch(
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
    let mut paused = shared.watches_paused.subscribe();
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
                        .range((r.key, String::new(), String::new())..)
                        .take_while(|((res, _, _), _)| *res == r.key)
                        .filter(|(_, o)| selects(o))
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
            // A paused (lagging) watch sends nothing, bookmarks included, until resumed.
            if *paused.borrow_and_update() {
                tokio::select! {
                    _ = paused.wait_for(|p| !*p) => {}
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = closed.changed() => return,
                }
            }
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
