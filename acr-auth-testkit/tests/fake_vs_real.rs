//! The fake API server against the real one: the same requests go to `FakeKube` and to a real
//! kube-apiserver (built by `scripts/control-plane`), and what the adapter relies on must agree:
//! status codes, `Status.reason`, and the stored shape of objects (omitted empty fields, folded
//! `stringData`, resourceVersion preconditions, JSON patch `test` failures).

use acr_auth_testkit::control_plane::{ControlPlane, ADMIN_TOKEN};
use acr_auth_testkit::kube::FakeKube;
use serde_json::{json, Value};

/// One server, as a plain HTTP client sees it.
struct Server {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Server {
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.header("content-type", content_type).body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// What must agree for one response: the status code, the Status reason on failure, and the
/// given fields of the object on success.
fn shape(status: u16, body: &Value, fields: &[&str]) -> Value {
    if status >= 400 {
        return json!({"status": status, "reason": body["reason"]});
    }
    let picked: serde_json::Map<String, Value> = fields
        .iter()
        .map(|f| {
            let v = f.split('.').fold(body, |v, k| &v[k]);
            ((*f).to_owned(), v.clone())
        })
        .collect();
    json!({"status": status, "fields": picked})
}

const JSON: &str = "application/json";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_answers_like_the_real_api_server() {
    let plane = ControlPlane::start(&[])
        .await
        .expect("a real control plane");
    let fake = FakeKube::start().await.unwrap();
    let servers = [
        (
            "real",
            Server {
                http: plane.http(),
                url: plane.url().to_owned(),
                token: Some(ADMIN_TOKEN.to_owned()),
            },
        ),
        (
            "fake",
            Server {
                http: acr_auth_testkit::http_client(),
                url: fake.url(),
                token: None,
            },
        ),
    ];
    let ns = "/api/v1/namespaces/diff";
    let sa = |name: &str| format!("{ns}/serviceaccounts/{name}");
    let secret = |name: &str| format!("{ns}/secrets/{name}");
    // (what, method, path, content type, body, fields compared on success), in order: later
    // steps act on what earlier ones created.
    type Step<'a> = (
        &'a str,
        &'a str,
        String,
        &'a str,
        Option<Value>,
        Vec<&'a str>,
    );
    let steps: Vec<Step<'_>> = vec![
        ("create namespace", "POST", "/api/v1/namespaces".into(), JSON,
            Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "diff"}})), vec!["metadata.name"]),
        ("create SA with empty maps and lists", "POST", format!("{ns}/serviceaccounts"), JSON,
            Some(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "a", "annotations": {}, "labels": {}}, "imagePullSecrets": []})),
            vec!["imagePullSecrets", "metadata.annotations", "metadata.labels"]),
        ("create it again", "POST", format!("{ns}/serviceaccounts"), JSON,
            Some(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}})), vec![]),
        ("JSON patch whose resourceVersion test fails", "PATCH", sa("a"), JSON_PATCH,
            Some(json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                        {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "x"}]}])), vec![]),
        ("JSON patch removing a missing path", "PATCH", sa("a"), JSON_PATCH,
            Some(json!([{"op": "remove", "path": "/imagePullSecrets/0"}])), vec![]),
        ("JSON patch adding one annotation key to a missing map", "PATCH", sa("a"), JSON_PATCH,
            Some(json!([{"op": "add", "path": "/metadata/annotations/k", "value": "v"}])), vec![]),
        ("JSON patch creating the map, then appending", "PATCH", sa("a"), JSON_PATCH,
            Some(json!([{"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}},
                        {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "x"}]},
                        {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "y"}}])),
            vec!["imagePullSecrets", "metadata.annotations"]),
        ("JSON patch removing every entry by index", "PATCH", sa("a"), JSON_PATCH,
            Some(json!([{"op": "remove", "path": "/imagePullSecrets/1"},
                        {"op": "remove", "path": "/imagePullSecrets/0"}])),
            vec!["imagePullSecrets", "metadata.annotations"]),
        ("merge patch of a missing object", "PATCH", sa("nope"), MERGE_PATCH,
            Some(json!({"metadata": {"labels": {"a": "b"}}})), vec![]),
        ("get a missing object", "GET", sa("nope"), JSON, None, vec![]),
        ("replace with a stale resourceVersion", "PUT", sa("a"), JSON,
            Some(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "a", "resourceVersion": "1"}})), vec![]),
        ("Secret with stringData", "POST", format!("{ns}/secrets"), JSON,
            Some(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"app.kubernetes.io/managed-by": "aliyun-acr-credential-helper"}},
                "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\":{}}"}})),
            vec!["data", "stringData", "type"]),
        ("delete with a stale resourceVersion precondition", "DELETE", secret("s"), JSON,
            Some(json!({"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"resourceVersion": "1"}})), vec![]),
        ("list by label selector", "GET",
            format!("{ns}/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Daliyun-acr-credential-helper"),
            JSON, None, vec!["kind"]),
        ("a dockerconfigjson Secret without its key", "POST", format!("{ns}/secrets"), JSON,
            Some(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
                "type": "kubernetes.io/dockerconfigjson", "data": {}})), vec![]),
    ];
    let mut differences = Vec::new();
    for (what, method, path, content_type, body, fields) in &steps {
        let mut shapes = Vec::new();
        for (name, server) in &servers {
            let (status, answer) = server.send(method, path, content_type, body.clone()).await;
            shapes.push((name, shape(status, &answer, fields)));
        }
        if shapes[0].1 != shapes[1].1 {
            differences.push(format!(
                "{what}:\n  real {}\n  fake {}",
                shapes[0].1, shapes[1].1
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "the fake differs from kube-apiserver:\n{}",
        differences.join("\n")
    );
}

/// kubectl against both servers: the generator commands (which send protobuf bodies) create the
/// same objects in the fake as in the real kube-apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_generator_commands_create_the_same_objects() {
    use acr_auth_testkit::distribution::require_tool;
    let plane = ControlPlane::start(&[])
        .await
        .expect("a real control plane");
    let fake = FakeKube::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake_config = dir.path().join("fake.kubeconfig");
    fake.write_kubeconfig(&fake_config).unwrap();
    let real_config = plane.kubeconfig("admin", ADMIN_TOKEN);
    let kubectl = |config: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(require_tool("kubectl"))
            .arg("--kubeconfig")
            .arg(config)
            .args(args)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let commands: [&[&str]; 4] = [
        &["create", "namespace", "gen"],
        &["-n", "gen", "create", "serviceaccount", "builder"],
        &[
            "-n",
            "gen",
            "create",
            "secret",
            "docker-registry",
            "regcred",
            "--docker-server=registry.example.com",
            "--docker-username=u",
            "--docker-password=p",
        ],
        &[
            "-n",
            "gen",
            "create",
            "configmap",
            "settings",
            "--from-literal=a=b",
        ],
    ];
    for args in commands {
        kubectl(&real_config, args);
        kubectl(&fake_config, args);
    }
    let fields = |v: &Value| {
        json!({"name": v["metadata"]["name"], "namespace": v["metadata"]["namespace"],
               "type": v["type"], "data": v["data"], "kind": v["kind"]})
    };
    for (kind, name) in [
        ("namespace", "gen"),
        ("serviceaccount", "builder"),
        ("secret", "regcred"),
        ("configmap", "settings"),
    ] {
        let get = |config: &std::path::Path| -> Value {
            serde_json::from_str(&kubectl(
                config,
                &["-n", "gen", "get", kind, name, "-o", "json"],
            ))
            .unwrap()
        };
        let (real, fake) = (get(&real_config), get(&fake_config));
        assert_eq!(fields(&fake), fields(&real), "{kind}/{name}");
    }
}
