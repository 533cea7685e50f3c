//! The fake Kubernetes API server: its semantics over raw HTTP, and its fidelity with the real
//! `kubectl` (Debian `kubernetes-client` or any kubectl on PATH).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use acr_auth_testkit::distribution::require_tool;
use acr_auth_testkit::kube::FakeKube;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};

async fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(require_tool("kubectl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_get_apply_patch_label_delete_and_watch() {
    let kube = FakeKube::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kc).unwrap();

    let (ok, out, err) = kubectl(
        &kc,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n"),
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "namespace/team-a created");
    let (_, out, _) = kubectl(&kc, &["get", "namespace", "team-a", "-o", "json"], None).await;
    let ns: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ns["status"]["phase"], "Active");
    let (_, out, _) = kubectl(
        &kc,
        &["get", "serviceaccounts", "-n", "team-a", "-o", "name"],
        None,
    )
    .await;
    assert_eq!(
        out.trim(),
        "serviceaccount/default",
        "a new namespace gets its default ServiceAccount"
    );

    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: acr-configuration\n  namespace: team-a\ndata:\n  watch-namespace: all\n";
    let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], Some(cm)).await;
    assert!(ok && out.contains("created"), "{out}{err}");
    let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], Some(&cm.replace("all", "dev"))).await;
    assert!(ok && out.contains("configured"), "{out}{err}");
    let (ok, out, _) = kubectl(&kc, &["apply", "-f", "-"], Some(&cm.replace("all", "dev"))).await;
    assert!(ok && out.contains("unchanged"), "{out}");

    let (ok, _, err) = kubectl(
        &kc,
        &[
            "label",
            "configmap",
            "acr-configuration",
            "-n",
            "team-a",
            "tier=ops",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let (_, out, _) = kubectl(
        &kc,
        &[
            "get",
            "configmaps",
            "-n",
            "team-a",
            "-l",
            "tier=ops",
            "-o",
            "name",
        ],
        None,
    )
    .await;
    assert_eq!(out.trim(), "configmap/acr-configuration");
    let (_, out, _) = kubectl(
        &kc,
        &[
            "get",
            "configmaps",
            "-n",
            "team-a",
            "-l",
            "tier!=ops",
            "-o",
            "name",
        ],
        None,
    )
    .await;
    assert_eq!(out.trim(), "");

    let (ok, _, err) = kubectl(
        &kc,
        &[
            "patch",
            "configmap",
            "acr-configuration",
            "-n",
            "team-a",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"x":"y"}}"#,
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(
        &kc,
        &[
            "patch",
            "configmap",
            "acr-configuration",
            "-n",
            "team-a",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/data/x","value":"nope"},{"op":"remove","path":"/data/x"}]"#,
        ],
        None,
    )
    .await;
    assert!(
        !ok && err.contains("The request is invalid"),
        "a failed test op is refused: {err}"
    );
    let (ok, _, err) = kubectl(
        &kc,
        &[
            "patch",
            "configmap",
            "acr-configuration",
            "-n",
            "team-a",
            "-p",
            r#"{"data":{"z":"1"}}"#,
        ],
        None,
    )
    .await;
    assert!(ok, "strategic merge patch: {err}");
    let stored = kube
        .get("configmaps", "team-a", "acr-configuration")
        .unwrap();
    assert_eq!(
        stored["data"],
        json!({"watch-namespace": "dev", "x": "y", "z": "1"})
    );
    assert_eq!(stored["metadata"]["labels"], json!({"tier": "ops"}));

    // get --watch prints the existing object, then the changes as they happen.
    let mut watch = tokio::process::Command::new(require_tool("kubectl"))
        .args(["get", "configmaps", "-n", "team-a", "--watch", "-o", "name"])
        .env("KUBECONFIG", &kc)
        .env("HOME", dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("configmap/acr-configuration"));
    let (ok, _, err) = kubectl(
        &kc,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n  namespace: team-a\n"),
    )
    .await;
    assert!(ok, "{err}");
    let next = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.as_deref(), Some("configmap/second"));
    let _ = watch.kill().await;

    let (ok, out, _) = kubectl(
        &kc,
        &["delete", "configmap", "second", "-n", "team-a"],
        None,
    )
    .await;
    assert!(ok && out.contains("deleted"));
    let (ok, _, err) = kubectl(&kc, &["get", "configmap", "second", "-n", "team-a"], None).await;
    assert!(!ok && err.contains("NotFound"), "{err}");

    // Deleting the namespace removes what was in it.
    let (ok, _, _) = kubectl(&kc, &["delete", "namespace", "team-a"], None).await;
    assert!(ok);
    assert!(kube.list("configmaps", Some("team-a")).is_empty());
    assert!(kube.list("serviceaccounts", Some("team-a")).is_empty());
    assert!(kube.get("namespaces", "", "team-a").is_none());
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", content_type).body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn secret(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels}, "type": "Opaque", "data": {}})
}

#[tokio::test]
async fn resource_versions_conflicts_and_patches() {
    let kube = FakeKube::start().await.unwrap();
    let api = Api {
        http: acr_auth_testkit::http_client(),
        base: kube.url(),
    };
    let path = "/api/v1/namespaces/default/secrets";
    let (code, created) = api
        .send(
            "POST",
            path,
            "application/json",
            Some(secret("s1", json!({"a": "1"}))),
        )
        .await;
    assert_eq!(code, 201);
    let rv1 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, body) = api
        .send(
            "POST",
            path,
            "application/json",
            Some(secret("s1", json!({}))),
        )
        .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    // Update with the current version succeeds and bumps it; with a stale one conflicts.
    let mut next = created.clone();
    next["data"] = json!({"k": "dg=="});
    let (code, updated) = api
        .send(
            "PUT",
            &format!("{path}/s1"),
            "application/json",
            Some(next.clone()),
        )
        .await;
    assert_eq!(code, 200);
    assert_ne!(
        updated["metadata"]["resourceVersion"].as_str().unwrap(),
        rv1
    );
    let (code, body) = api
        .send("PUT", &format!("{path}/s1"), "application/json", Some(next))
        .await;
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));

    // JSON patch with a failing test is 422; a merge patch carrying a stale version conflicts.
    let (code, _) = api.send("PATCH", &format!("{path}/s1"), "application/json-patch+json",
        Some(json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv1}, {"op": "add", "path": "/metadata/labels/b", "value": "2"}]))).await;
    assert_eq!(code, 422);
    let (code, _) = api
        .send(
            "PATCH",
            &format!("{path}/s1"),
            "application/merge-patch+json",
            Some(json!({"metadata": {"resourceVersion": rv1, "labels": {"b": "2"}}})),
        )
        .await;
    assert_eq!(code, 409);
    // A no-op patch changes nothing, not even the version.
    let before = kube.resource_version();
    let (code, _) = api
        .send(
            "PATCH",
            &format!("{path}/s1"),
            "application/merge-patch+json",
            Some(json!({"metadata": {"labels": {"a": "1"}}})),
        )
        .await;
    assert_eq!((code, kube.resource_version()), (200, before));
    let (code, _) = api
        .send(
            "PATCH",
            &format!("{path}/s1"),
            "application/apply-patch+yaml",
            Some(json!({})),
        )
        .await;
    assert_eq!(code, 415);

    // Deletion with a stale precondition conflicts.
    let (code, _) = api
        .send(
            "DELETE",
            &format!("{path}/s1"),
            "application/json",
            Some(json!({"preconditions": {"resourceVersion": rv1}})),
        )
        .await;
    assert_eq!(code, 409);
    let (code, _) = api
        .send("DELETE", &format!("{path}/s1"), "application/json", None)
        .await;
    assert_eq!(code, 200);
    let (code, _) = api.send("GET", &format!("{path}/s1"), "", None).await;
    assert_eq!(code, 404);
    let (code, body) = api
        .send(
            "POST",
            "/api/v1/namespaces/nowhere/secrets",
            "application/json",
            Some(secret("x", json!({}))),
        )
        .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (404, Some("namespaces \"nowhere\" not found"))
    );
}

#[tokio::test]
async fn lists_select_and_paginate() {
    let kube = FakeKube::start().await.unwrap();
    let api = Api {
        http: acr_auth_testkit::http_client(),
        base: kube.url(),
    };
    for i in 0..7 {
        let labels = if i % 2 == 0 {
            json!({"app.kubernetes.io/managed-by": "aliyun-acr-credential-helper"})
        } else {
            json!({})
        };
        api.send(
            "POST",
            "/api/v1/namespaces/default/secrets",
            "application/json",
            Some(secret(&format!("s{i}"), labels)),
        )
        .await;
    }
    let (_, all) = api.send("GET", "/api/v1/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Daliyun-acr-credential-helper", "", None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    assert_eq!(all["kind"], "SecretList");
    let (_, one) = api
        .send(
            "GET",
            "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ds3",
            "",
            None,
        )
        .await;
    assert_eq!(one["items"][0]["metadata"]["name"], "s3");

    let mut names = Vec::new();
    let mut cont = String::new();
    loop {
        let (code, page) = api
            .send(
                "GET",
                &format!("/api/v1/namespaces/default/secrets?limit=3&continue={cont}"),
                "",
                None,
            )
            .await;
        assert_eq!(code, 200);
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(c) => cont = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(names, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);

    let (_, page) = api
        .send(
            "GET",
            "/api/v1/namespaces/default/secrets?limit=2",
            "",
            None,
        )
        .await;
    let token = page["metadata"]["continue"].as_str().unwrap().to_owned();
    kube.compact();
    let (code, body) = api
        .send(
            "GET",
            &format!("/api/v1/namespaces/default/secrets?limit=2&continue={token}"),
            "",
            None,
        )
        .await;
    assert_eq!((code, body["reason"].as_str()), (410, Some("Expired")));
    let (code, _) = api
        .send("GET", "/api/v1/secrets?labelSelector=a%20in%20b", "", None)
        .await;
    assert_eq!(code, 400);
}

async fn read_events(resp: reqwest::Response, n: usize) -> Vec<Value> {
    use futures_util::StreamExt as _;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event in time");
        let Some(chunk) = chunk else { break };
        buf.extend_from_slice(&chunk.unwrap());
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            events.push(serde_json::from_slice(&line).unwrap());
        }
    }
    events
}

#[tokio::test]
async fn watches_replay_bookmark_expire_and_drop() {
    let kube = FakeKube::start_with_bookmarks(Duration::from_millis(200))
        .await
        .unwrap();
    let api = Api {
        http: acr_auth_testkit::http_client(),
        base: kube.url(),
    };
    let from = kube.resource_version();
    api.send(
        "POST",
        "/api/v1/namespaces/default/secrets",
        "application/json",
        Some(secret("w1", json!({}))),
    )
    .await;
    api.send(
        "DELETE",
        "/api/v1/namespaces/default/secrets/w1",
        "application/json",
        None,
    )
    .await;

    // From a version: the changes since, then bookmarks.
    let resp = api.http.get(format!("{}/api/v1/namespaces/default/secrets?watch=true&resourceVersion={from}&allowWatchBookmarks=true", kube.url())).send().await.unwrap();
    let events = read_events(resp, 3).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "DELETED", "BOOKMARK"]);
    assert_eq!(
        events[2]["object"]["metadata"]["resourceVersion"],
        kube.resource_version().to_string()
    );

    // Without a version: the current state first.
    let resp = api
        .http
        .get(format!("{}/api/v1/serviceaccounts?watch=true", kube.url()))
        .send()
        .await
        .unwrap();
    let events = read_events(resp, 3).await;
    assert!(events
        .iter()
        .all(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "default"));

    // After compaction an old version is gone: an ERROR event with 410.
    kube.compact();
    let resp = api
        .http
        .get(format!(
            "{}/api/v1/namespaces/default/secrets?watch=true&resourceVersion={from}",
            kube.url()
        ))
        .send()
        .await
        .unwrap();
    let events = read_events(resp, 1).await;
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);

    // drop_watches ends open streams; a server-side timeout ends them too.
    let resp = api
        .http
        .get(format!(
            "{}/api/v1/namespaces/default/secrets?watch=true&resourceVersion={}",
            kube.url(),
            kube.resource_version()
        ))
        .send()
        .await
        .unwrap();
    kube.drop_watches();
    let body = tokio::time::timeout(Duration::from_secs(5), resp.text())
        .await
        .expect("the watch ended");
    assert!(body.unwrap().is_empty());
    let resp = api
        .http
        .get(format!(
            "{}/api/v1/namespaces/default/secrets?watch=true&timeoutSeconds=1",
            kube.url()
        ))
        .send()
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), resp.text())
            .await
            .is_ok(),
        "timeoutSeconds is honoured"
    );
}

#[tokio::test]
async fn faults_and_the_request_log() {
    let kube = FakeKube::start().await.unwrap();
    let api = Api {
        http: acr_auth_testkit::http_client(),
        base: kube.url(),
    };
    kube.fail_next("create", Some("secrets"), 1, 500);
    kube.fail_next("*", None, 1, 429);
    let (code, _) = api.send("GET", "/api/v1/namespaces", "", None).await;
    assert_eq!(code, 429);
    let (code, body) = api
        .send(
            "POST",
            "/api/v1/namespaces/default/secrets",
            "application/json",
            Some(secret("f", json!({}))),
        )
        .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (500, Some("InternalError"))
    );
    let (code, _) = api
        .send(
            "POST",
            "/api/v1/namespaces/default/secrets",
            "application/json",
            Some(secret("f", json!({}))),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(kube.count("create", Some("secrets")), 2);
    assert_eq!(kube.count("list", Some("namespaces")), 1);
    let (code, _) = api.send("GET", "/api/v1/pods", "", None).await;
    assert_eq!(code, 404, "unserved resources are not found");
}

/// A webhook that never answers: the fake gives up after `timeoutSeconds` and follows the
/// failure policy (`Fail` refuses the ServiceAccount, `Ignore` admits it unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_webhooks_time_out_and_follow_their_failure_policy() {
    let kube = FakeKube::start().await.unwrap();
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/mutate", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let http = acr_auth_testkit::http_client();
    let configure = |policy: &str| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
               "metadata": {"name": "slow"},
               "webhooks": [{"name": "slow.example.com", "failurePolicy": policy, "timeoutSeconds": 1,
                             "sideEffects": "None", "admissionReviewVersions": ["v1"],
                             "clientConfig": {"url": url},
                             "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                        "resources": ["serviceaccounts"]}]}]})
    };
    let configs = format!(
        "{}/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        kube.url()
    );
    let r = http
        .post(&configs)
        .json(&configure("Fail"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let create = |name: &str| {
        http.post(format!(
            "{}/api/v1/namespaces/default/serviceaccounts",
            kube.url()
        ))
        .json(&json!({"metadata": {"name": name}}))
        .send()
    };
    let started = std::time::Instant::now();
    let refused = create("first").await.unwrap();
    let waited = started.elapsed();
    assert_eq!(refused.status().as_u16(), 500);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("failed calling webhook \"slow.example.com\": context deadline exceeded"),
        "{body}"
    );
    assert!(
        waited >= Duration::from_secs(1),
        "the timeout was honoured: {waited:?}"
    );
    assert!(kube.get("serviceaccounts", "default", "first").is_none());

    // Ignore: admitted unchanged after the timeout.
    let current = kube
        .get(
            "admissionregistration.k8s.io/mutatingwebhookconfigurations",
            "",
            "slow",
        )
        .unwrap();
    let mut ignore = configure("Ignore");
    ignore["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let r = http
        .put(format!("{configs}/slow"))
        .json(&ignore)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let admitted = create("second").await.unwrap();
    assert_eq!(admitted.status().as_u16(), 201);
    assert_eq!(
        kube.webhook_calls(),
        ["slow.example.com", "slow.example.com"]
    );
    holder.abort();
}
