//! The discovery documents kubectl and kube-rs read.

use serde_json::{json, Value};

use super::store::RESOURCES;

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_list(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind, "verbs": VERBS, "shortNames": r.short_names,
            })
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// A minimal OpenAPI v3 document for a group version: the PATCH operation of every resource with
/// its group-version-kind and the `fieldValidation` parameter, which is what kubectl looks for
/// to leave validation to the server.
fn openapi_v3(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        paths.insert(path, json!({
            "patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
                "x-kubernetes-action": "patch",
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}},
            }
        }));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0-acr-auth-fake"}, "paths": paths})
}

/// The document at `path`, if it is a discovery path.
pub fn document(path: &str, host: &str) -> Option<Value> {
    let coordination = json!({
        "name": "coordination.k8s.io",
        "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"},
    });
    let events = json!({
        "name": "events.k8s.io",
        "versions": [{"groupVersion": "events.k8s.io/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "events.k8s.io/v1", "version": "v1"},
    });
    Some(match path.trim_end_matches('/') {
        "/version" => json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-acr-auth-fake", "gitCommit": "0000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
            "compiler": "gc", "platform": "linux/amd64",
        }),
        "/api" => json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }),
        "/api/v1" => resource_list("", "v1"),
        "/apis" => {
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [coordination, events]})
        }
        "/apis/coordination.k8s.io" => {
            let mut g = coordination;
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            g
        }
        "/apis/coordination.k8s.io/v1" => resource_list("coordination.k8s.io", "v1"),
        "/apis/events.k8s.io/v1" => resource_list("events.k8s.io", "v1"),
        "/openapi/v3" => json!({"paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=fake1"},
            "apis/coordination.k8s.io/v1": {"serverRelativeURL": "/openapi/v3/apis/coordination.k8s.io/v1?hash=fake1"},
            "apis/events.k8s.io/v1": {"serverRelativeURL": "/openapi/v3/apis/events.k8s.io/v1?hash=fake1"},
        }}),
        "/openapi/v3/api/v1" => openapi_v3("", "v1"),
        "/openapi/v3/apis/coordination.k8s.io/v1" => openapi_v3("coordination.k8s.io", "v1"),
        "/openapi/v3/apis/events.k8s.io/v1" => openapi_v3("events.k8s.io", "v1"),
        _ => return None,
    })
}
