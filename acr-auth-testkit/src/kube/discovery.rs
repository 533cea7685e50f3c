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

/// The API groups served besides the core group.
const GROUPS: &[&str] = &[
    "coordination.k8s.io",
    "events.k8s.io",
    "admissionregistration.k8s.io",
];

fn group(name: &str) -> Value {
    json!({
        "name": name,
        "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
        "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"},
    })
}

/// The document at `path`, if it is a discovery path.
pub fn document(path: &str, host: &str) -> Option<Value> {
    let path = path.trim_end_matches('/');
    Some(match path {
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
            let groups: Vec<Value> = GROUPS.iter().map(|g| group(g)).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/openapi/v3" => {
            let mut paths = serde_json::Map::new();
            paths.insert(
                "api/v1".into(),
                json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=fake1"}),
            );
            for g in GROUPS {
                paths.insert(
                    format!("apis/{g}/v1"),
                    json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/v1?hash=fake1")}),
                );
            }
            json!({"paths": paths})
        }
        "/openapi/v3/api/v1" => openapi_v3("", "v1"),
        _ => {
            let g = GROUPS.iter().find(|g| {
                path == format!("/apis/{g}")
                    || path == format!("/apis/{g}/v1")
                    || path == format!("/openapi/v3/apis/{g}/v1")
            })?;
            if path.starts_with("/openapi") {
                openapi_v3(g, "v1")
            } else if path.ends_with("/v1") {
                resource_list(g, "v1")
            } else {
                let mut doc = group(g);
                doc["kind"] = json!("APIGroup");
                doc["apiVersion"] = json!("v1");
                doc
            }
        }
    })
}
