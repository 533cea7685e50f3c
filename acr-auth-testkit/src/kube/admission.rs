//! Mutating admission, as the API server does it: on CREATE, every MutatingWebhookConfiguration
//! whose rules match is called over HTTPS with an AdmissionReview v1, trusting its `caBundle`,
//! within its `timeoutSeconds`; its JSON patch is applied; a call that fails follows its
//! `failurePolicy` (`Fail`, the v1 default, refuses the object; `Ignore` admits it unchanged).
//! Only `clientConfig.url` is reachable from the fake (a `service` reference fails the call).

use std::time::Duration;

use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

use super::store::ResourceType;
use super::{status, Shared};

const CONFIGS: &str = "admissionregistration.k8s.io/mutatingwebhookconfigurations";

fn listed(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == wanted))
}

fn matches(hook: &Value, r: &ResourceType, operation: &str) -> bool {
    hook["rules"].as_array().is_some_and(|rules| {
        rules.iter().any(|rule| {
            listed(&rule["operations"], operation)
                && listed(&rule["apiGroups"], r.group)
                && listed(&rule["apiVersions"], r.version)
                && listed(&rule["resources"], r.plural)
        })
    })
}

/// Calls one webhook; the patched object, or why the call failed.
async fn call(hook: &Value, review: &Value, object: &Value) -> Result<Value, String> {
    let config = &hook["clientConfig"];
    let url = config["url"]
        .as_str()
        .ok_or("the fake API server only reaches clientConfig.url")?;
    let timeout = Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap_or(10));
    let ca_bundle = config["caBundle"].as_str().unwrap_or_default().to_owned();
    // Like kube-apiserver, one client per webhook configuration, reused across calls: its
    // keep-alive connections stay open between admissions (a webhook server must close them
    // when it stops, or it keeps answering).
    type Clients = std::collections::HashMap<(String, String, u64), reqwest::Client>;
    static CLIENTS: std::sync::OnceLock<std::sync::Mutex<Clients>> = std::sync::OnceLock::new();
    let key = (url.to_owned(), ca_bundle.clone(), timeout.as_secs());
    let cached = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    let client = match cached {
        Some(c) => c,
        None => {
            let mut builder = crate::tls::http_client_builder().timeout(timeout);
            if !ca_bundle.is_empty() {
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(&ca_bundle)
                    .map_err(|e| format!("caBundle is not base64: {e}"))?;
                let cert =
                    reqwest::Certificate::from_pem(&pem).map_err(|e| format!("caBundle: {e}"))?;
                builder = builder.tls_certs_only([cert]);
            }
            let c = builder.build().map_err(|e| e.to_string())?;
            CLIENTS
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, c.clone());
            c
        }
    };
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(review.to_string())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "context deadline exceeded".to_owned()
            } else {
                format!("Post \"{url}\": {e}")
            }
        })?;
    if !response.status().is_success() {
        return Err(format!(
            "the server responded with status {}",
            response.status()
        ));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the response is not an AdmissionReview: {e}"))?;
    let r = &answer["response"];
    if r["uid"] != review["request"]["uid"] {
        return Err("the response uid does not match the request".into());
    }
    if r["allowed"] != true {
        return Err(format!(
            "denied the request: {}",
            r["status"]["message"].as_str().unwrap_or_default()
        ));
    }
    let mut patched = object.clone();
    if !r["patch"].is_null() {
        if r["patchType"] != "JSONPatch" {
            return Err("patchType must be JSONPatch".into());
        }
        // `patch` is a Go []byte: encoding/json reads base64 text or an array of numbers
        // (what kube-rs writes).
        let raw: Vec<u8> = match &r["patch"] {
            Value::String(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("the patch is not base64: {e}"))?,
            other => serde_json::from_value(other.clone())
                .map_err(|e| format!("the patch is neither base64 nor bytes: {e}"))?,
        };
        let patch: json_patch::Patch = serde_json::from_slice(&raw)
            .map_err(|e| format!("the patch is not a JSON patch: {e}"))?;
        json_patch::patch(&mut patched, &patch)
            .map_err(|e| format!("the patch does not apply: {e}"))?;
    }
    Ok(patched)
}

/// Runs the mutating webhooks for a CREATE of `object`; the object to store, or the error
/// response that refuses it.
pub(crate) async fn mutate(
    shared: &Shared,
    r: &ResourceType,
    namespace: &str,
    user: Option<&str>,
    mut object: Value,
) -> Result<Value, Response> {
    let configs: Vec<Value> = {
        let store = shared.store();
        // Only the configurations' own key range: a scan of every object made each create
        // linear in the cluster's size (50,000 namespaces took 172 s to create).
        store
            .objects
            .range((CONFIGS, String::new(), String::new())..)
            .take_while(|((key, _, _), _)| *key == CONFIGS)
            .map(|(_, v)| v.clone())
            .collect()
    };
    for config in configs {
        for hook in config["webhooks"].as_array().cloned().unwrap_or_default() {
            if !matches(&hook, r, "CREATE") {
                continue;
            }
            let name = hook["name"].as_str().unwrap_or_default().to_owned();
            let review = json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": super::api::new_uid(),
                    "kind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "resource": {"group": r.group, "version": r.version, "resource": r.plural},
                    "requestKind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "requestResource": {"group": r.group, "version": r.version, "resource": r.plural},
                    "name": object["metadata"]["name"],
                    "namespace": namespace,
                    "operation": "CREATE",
                    "userInfo": {"username": user.unwrap_or("system:anonymous")},
                    "object": object,
                    "oldObject": null,
                    "dryRun": false,
                    "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
                },
            });
            shared.record_webhook_call(&name);
            match call(&hook, &review, &object).await {
                Ok(patched) => object = patched,
                Err(e) if hook["failurePolicy"] == "Ignore" => {
                    tracing::debug!(webhook = %name, error = %e, "webhook failed; failurePolicy Ignore");
                }
                Err(e) => {
                    return Err(status(
                        500,
                        "InternalError",
                        format!("Internal error occurred: failed calling webhook \"{name}\": {e}"),
                    ))
                }
            }
        }
    }
    Ok(object)
}
