//! The controller against a REAL kube-apiserver and etcd (built from their Go modules by
//! `scripts/control-plane`), authenticated as its own ServiceAccount and authorized by the RBAC
//! rendered from `deploy/`: the API server itself answers 403 for anything the manifests do not
//! grant. ACR is the fake cloud (no real one is reachable).
//!
//! Scenarios: foreign annotations and labels kept (ServiceAccounts and our Secrets), a renewal
//! patched in place, a restart with an invalid ConfigMap destroying nothing, narrowing the
//! configuration, and cleanup; leader election on a real Lease; the admission webhook called
//! by the real API server over HTTPS, trusting our caBundle (a certificate without the right
//! SAN is refused), with its timeout and both failure policies; watches without a watch cache
//! under compaction (real 410 Gone); namespace deletion; a stale patch (a conflict) told apart
//! from an admission policy's denial (an error), both 422.
//!
//! Fault injection (5xx, 429, dropped watches, 410) stays with the fake API server
//! (`controller.rs`, `operation.rs`): the real one cannot be made to fail on demand.

mod common;

use std::time::Duration;

use acr_auth_kube::cleanup::cleanup;
use acr_auth_testkit::control_plane::{ControlPlane, User, ADMIN_TOKEN};
use acr_auth_testkit::distribution::require_tool;
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const SA_NAMESPACE: &str = "kube-system";
const SA_NAME: &str = "aliyun-acr-credential-helper";

fn client(plane: &ControlPlane, token: &str) -> kube::Client {
    let mut config = kube::Config::new(plane.url().parse().unwrap());
    config.root_cert = Some(vec![plane.ca_der()]);
    config.auth_info.token = Some(token.to_owned().into());
    kube::Client::try_from(config).unwrap()
}

/// Applies the RBAC objects of `kubectl kustomize deploy/` with the real kubectl, as the admin.
fn apply_deploy_rbac(plane: &ControlPlane) {
    let kubectl = require_tool("kubectl");
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let rendered = std::process::Command::new(&kubectl)
        .arg("kustomize")
        .arg(&deploy)
        .output()
        .unwrap();
    assert!(rendered.status.success());
    let text = String::from_utf8(rendered.stdout).unwrap();
    let keep = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let docs: Vec<&str> = text
        .split("\n---\n")
        .filter(|d| {
            d.lines()
                .any(|l| keep.iter().any(|k| l.trim() == format!("kind: {k}")))
        })
        .collect();
    assert!(docs.len() >= 4, "RBAC objects in deploy/: {}", docs.len());
    kubectl_apply(plane, &docs.join("\n---\n"));
}

/// `kubectl apply -f -` of `manifests`, as the admin, with the real kubectl.
fn kubectl_apply(plane: &ControlPlane, manifests: &str) {
    let kubectl = require_tool("kubectl");
    let file = plane.kubeconfig("admin", ADMIN_TOKEN);
    let mut child = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&file)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn create<K>(api: &Api<K>, obj: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let typed: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &typed).await.unwrap()
}

async fn put_config(admin: &kube::Client, data: Value) {
    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), "kube-system");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "acr-configuration"}, "data": data});
    api.patch(
        "acr-configuration",
        &PatchParams::apply("acr-auth-test").force(),
        &Patch::Apply(cm),
    )
    .await
    .unwrap();
}

async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn secret(admin: &kube::Client, ns: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(admin.clone(), ns)
        .get_opt(OURS)
        .await
        .unwrap()
}

async fn service_account(admin: &kube::Client, ns: &str, name: &str) -> ServiceAccount {
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

fn entries(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

fn docker_config(s: &Secret) -> String {
    let data = s.data.as_ref().unwrap();
    String::from_utf8(data[".dockerconfigjson"].0.clone()).unwrap()
}

/// A control plane with the deploy/ RBAC applied; the admin's and the controller's clients.
async fn plane() -> (ControlPlane, kube::Client, kube::Client) {
    let controller_user = User::service_account(SA_NAMESPACE, SA_NAME);
    let plane = ControlPlane::start(std::slice::from_ref(&controller_user))
        .await
        .expect("a real control plane (scripts/control-plane builds it)");
    let admin = client(&plane, ADMIN_TOKEN);
    apply_deploy_rbac(&plane);
    let as_controller = client(&plane, plane.token_for(&controller_user.name));
    (plane, admin, as_controller)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_as_its_own_service_account_against_a_real_api_server() {
    let (_plane, admin, as_controller) = plane().await;

    // RBAC is real: the deploy/ ClusterRole lets the controller list Secrets (label-selected by
    // convention) but not get one by name outside kube-system, nor touch ConfigMaps.
    let forbidden = Api::<Secret>::namespaced(as_controller.clone(), "default")
        .get("anything")
        .await
        .unwrap_err();
    assert!(
        matches!(&forbidden, kube::Error::Api(s) if s.code == 403),
        "{forbidden:?}"
    );
    let forbidden = Api::<ConfigMap>::namespaced(as_controller.clone(), "kube-system")
        .delete("acr-configuration", &Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&forbidden, kube::Error::Api(s) if s.code == 403),
        "{forbidden:?}"
    );

    // No controller-manager: namespaces and ServiceAccounts are made here.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    create(&namespaces, json!({"metadata": {"name": "dev"}})).await;
    for ns in ["default", "dev"] {
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
        create(
            &sas,
            json!({"metadata": {"name": "default", "annotations": {
                "pod-identity.alibabacloud.com/role-name": "app-role",
                "meta.helm.sh/release-name": "web"
            }, "labels": {"team": "platform"}},
            "imagePullSecrets": [{"name": "theirs"}]}),
        )
        .await;
    }

    let mut cloud_config = FakeCloudConfig::sample();
    cloud_config.token_lifetime_secs = 6;
    let cloud = FakeCloud::start(cloud_config).await.unwrap();
    put_config(
        &admin,
        json!({"watch-namespace": "default,dev", "service-account": "default",
               "expiring-threshold": "3s", "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    let running = start_with(as_controller.clone(), settings(&cloud));

    wait_for("Secrets and entries in default and dev", || async {
        let mut ok = true;
        for ns in ["default", "dev"] {
            ok &= secret(&admin, ns).await.is_some()
                && entries(&service_account(&admin, ns, "default").await) == ["theirs", OURS];
        }
        ok
    })
    .await;
    for ns in ["default", "dev"] {
        let sa = service_account(&admin, ns, "default").await;
        let annotations = sa.metadata.annotations.unwrap();
        assert_eq!(
            annotations["pod-identity.alibabacloud.com/role-name"],
            "app-role"
        );
        assert_eq!(annotations["meta.helm.sh/release-name"], "web");
        assert_eq!(sa.metadata.labels.unwrap()["team"], "platform");
    }

    // Someone labels and annotates our Secret; the renewal patches it in place and keeps both.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "default");
    secrets
        .patch(
            OURS,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"backup": "yes"},
                                              "annotations": {"owner": "platform"}}})),
        )
        .await
        .unwrap();
    let before = docker_config(&secret(&admin, "default").await.unwrap());
    let uid = secret(&admin, "default").await.unwrap().metadata.uid;
    wait_for("a renewal", || async {
        docker_config(&secret(&admin, "default").await.unwrap()) != before
    })
    .await;
    let renewed = secret(&admin, "default").await.unwrap();
    assert_eq!(renewed.metadata.uid, uid, "updated in place");
    assert_eq!(renewed.metadata.labels.as_ref().unwrap()["backup"], "yes");
    assert_eq!(
        renewed.metadata.annotations.as_ref().unwrap()["owner"],
        "platform"
    );
    running.stop().await;

    // Restart with an invalid ConfigMap: nothing is deleted or detached.
    put_config(
        &admin,
        json!({"watch-namespace": "default", "expiring-threshold": "banana"}),
    )
    .await;
    let running = start_with(as_controller.clone(), settings(&cloud));
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(admin.clone(), "kube-system");
    wait_for("an InvalidConfiguration Event", || async {
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("InvalidConfiguration"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        secret(&admin, "dev").await.is_some(),
        "dev's Secret survives"
    );
    assert_eq!(
        entries(&service_account(&admin, "dev", "default").await),
        ["theirs", OURS]
    );

    // A valid, narrower configuration: dev is cleaned up, its foreign content stays.
    put_config(
        &admin,
        json!({"watch-namespace": "default", "expiring-threshold": "3s",
               "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    wait_for("dev cleaned up", || async {
        secret(&admin, "dev").await.is_none()
            && entries(&service_account(&admin, "dev", "default").await) == ["theirs"]
    })
    .await;
    let dev_sa = service_account(&admin, "dev", "default").await;
    assert_eq!(
        dev_sa.metadata.annotations.unwrap()["meta.helm.sh/release-name"],
        "web"
    );
    running.stop().await;

    // Cleanup, as the controller's ServiceAccount: everything we wrote goes, nothing else.
    let report = cleanup(&as_controller, false).await.unwrap();
    assert_eq!(report.secrets_deleted, 1);
    assert!(secret(&admin, "default").await.is_none());
    let sa = service_account(&admin, "default", "default").await;
    assert_eq!(entries(&sa), ["theirs"]);
    assert_eq!(
        sa.metadata.annotations.unwrap()["meta.helm.sh/release-name"],
        "web"
    );
}

fn lease(identity: &str) -> acr_auth_kube::leader::LeaseSettings {
    // The Lease the deploy/ Role is meant for, with short timings.
    let mut l = acr_auth_kube::leader::LeaseSettings::new(SA_NAMESPACE, SA_NAME, identity);
    l.lease_duration = Duration::from_secs(3);
    l.renew_deadline = Duration::from_secs(2);
    l.retry_period = Duration::from_millis(200);
    l
}

async fn holder(admin: &kube::Client) -> Option<(String, i32)> {
    let lease =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(admin.clone(), SA_NAMESPACE)
            .get_opt(SA_NAME)
            .await
            .unwrap()?;
    let spec = lease.spec?;
    Some((spec.holder_identity?, spec.lease_transitions.unwrap_or(0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_on_a_real_lease() {
    let (_plane, admin, as_controller) = plane().await;
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    create(&sas, json!({"metadata": {"name": "default"}})).await;
    put_config(&admin, json!({"acr-registry-info": "- instanceId: \"\"\n"})).await;
    let replica = |name: &str| {
        let mut s = settings(&cloud);
        s.leader_election = Some(lease(name));
        start_with(as_controller.clone(), s)
    };
    let a = replica("replica-a");
    wait_for("replica-a leads", || async {
        holder(&admin).await.is_some_and(|(h, _)| h == "replica-a")
    })
    .await;
    let b = replica("replica-b");
    wait_for("the default namespace served", || async {
        secret(&admin, "default").await.is_some()
    })
    .await;
    assert!(a.ops.health.is_leader() && !b.ops.health.is_leader());
    assert_eq!(
        cloud.calls("GET /tokens"),
        1,
        "the standby fetches no token"
    );

    // A graceful stop releases the Lease: replica-b takes it at its next retry.
    a.stop().await;
    wait_for("replica-b leads", || async {
        holder(&admin).await.is_some_and(|(h, _)| h == "replica-b") && b.ops.health.is_leader()
    })
    .await;
    assert_eq!(holder(&admin).await.unwrap().1, 1, "one transition");

    // A crashed leader keeps the Lease until it runs out.
    let c = replica("replica-c");
    b.kill().await;
    let killed = std::time::Instant::now();
    wait_for("replica-c leads", || async {
        holder(&admin).await.is_some_and(|(h, _)| h == "replica-c") && c.ops.health.is_leader()
    })
    .await;
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "the Lease was honoured until it ran out ({:?})",
        killed.elapsed()
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_api_server_calls_the_webhook_over_https_with_our_ca_bundle() {
    use acr_auth_kube::webhook::{self, WebhookSettings};
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;

    let (_plane, admin, as_controller) = plane().await;
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    create(&namespaces, json!({"metadata": {"name": "dev"}})).await;
    let pe = "- instanceId: \"\"\n";
    let webhook_config = |policy: &str| {
        json!({"watch-namespace": "dev", "service-account": "*", "acr-registry-info": pe,
               "webhook-configuration": format!("enable: true\nfailure-policy: {policy}\ntimeout-seconds: 2\n")})
    };
    put_config(&admin, webhook_config("Fail")).await;
    let now = acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock);
    // As the controller's ServiceAccount: the certificate Secret is created in kube-system.
    let cert = webhook::ensure_certificate(
        &as_controller,
        SA_NAMESPACE,
        &["aliyun-acr-credential-helper.kube-system.svc".into()],
        &["127.0.0.1".parse().unwrap()],
        now,
    )
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = settings(&cloud);
    s.webhook = Some(WebhookSettings::new(
        json!({"url": format!("https://127.0.0.1:{port}{}", webhook::PATH)}),
        cert.ca_pem.clone(),
    ));
    s.resync = Duration::from_millis(500);
    let running = start_with(as_controller.clone(), s);
    let (stop_hook, hook_stopped) = tokio::sync::oneshot::channel::<()>();
    let (_, hook) = webhook::serve(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &cert,
        running.webhook_context.clone(),
        async move {
            let _ = hook_stopped.await;
        },
    )
    .await
    .unwrap();
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
    wait_for("the MutatingWebhookConfiguration", || async {
        configurations
            .get_opt(webhook::CONFIGURATION_NAME)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    wait_for("dev served", || async {
        secret(&admin, "dev").await.is_some()
    })
    .await;

    // The API server calls the webhook on CREATE: the object it returns carries our entry. Its
    // webhook informer may take a moment to see the new configuration, so retry a few names.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "dev");
    let mut served = None;
    for i in 0..40 {
        let created = create(
            &sas,
            json!({"metadata": {"name": format!("helm-release-{i}")},
                   "imagePullSecrets": [{"name": "theirs"}]}),
        )
        .await;
        if entries(&created).len() == 2 {
            served = Some(created);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let served = served.expect("the API server never called the webhook");
    assert_eq!(entries(&served), ["theirs", OURS]);
    assert_eq!(
        served.metadata.annotations.unwrap()
            ["acr-credential-helper.alibabacloud.com/managed-image-pull-secrets"],
        OURS
    );
    // Outside the watched namespaces nothing changes.
    let public: Api<ServiceAccount> = Api::namespaced(admin.clone(), "kube-public");
    let other = create(&public, json!({"metadata": {"name": "other"}})).await;
    assert!(entries(&other).is_empty());

    // The webhook goes down: failurePolicy Fail makes the real API server refuse the create.
    let _ = stop_hook.send(());
    hook.await.unwrap();
    let typed: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "while-down"}})).unwrap();
    let refused = sas
        .create(&PostParams::default(), &typed)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.message.contains("failed calling webhook")),
        "{refused:?}"
    );
    // Outside the namespaces it serves the API server does not call it at all
    // (namespaceSelector): a ServiceAccount there is admitted even with the webhook down.
    let unaffected = create(&public, json!({"metadata": {"name": "while-down"}})).await;
    assert!(entries(&unaffected).is_empty());
    // A certificate whose SANs do not name 127.0.0.1 (signed by another CA): the API server's
    // TLS check refuses it, and Fail refuses the ServiceAccount.
    let wrong = webhook::WebhookCertificate::generate(&["wrong.example".into()], &[], now).unwrap();
    let (stop_wrong, wrong_stopped) = tokio::sync::oneshot::channel::<()>();
    let (_, wrong_hook) = webhook::serve(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &wrong,
        running.webhook_context.clone(),
        async move {
            let _ = wrong_stopped.await;
        },
    )
    .await
    .unwrap();
    let refused = sas
        .create(&PostParams::default(), &typed)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.message.contains("x509") || s.message.contains("certificate")),
        "{refused:?}"
    );
    let _ = stop_wrong.send(());
    wrong_hook.await.unwrap();

    // A webhook that accepts and never answers: timeoutSeconds (2) ends the call, Fail refuses.
    let black_hole = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = black_hole.accept().await {
            held.push(conn);
        }
    });
    let refused = sas
        .create(&PostParams::default(), &typed)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.message.contains("deadline") || s.message.contains("timeout") || s.message.contains("Timeout")),
        "{refused:?}"
    );
    holder.abort();

    // A live edit to Ignore: the ServiceAccount is admitted, and the controller adds the entry.
    put_config(&admin, webhook_config("Ignore")).await;
    wait_for("failurePolicy Ignore", || async {
        configurations
            .get(webhook::CONFIGURATION_NAME)
            .await
            .unwrap()
            .webhooks
            .unwrap_or_default()
            .first()
            .and_then(|w| w.failure_policy.clone())
            .as_deref()
            == Some("Ignore")
    })
    .await;
    let mut admitted = false;
    for _ in 0..40 {
        if sas.create(&PostParams::default(), &typed).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(admitted, "refused although the failure policy is Ignore");
    wait_for("the controller serves it", || async {
        entries(&service_account(&admin, "dev", "while-down").await) == [OURS]
    })
    .await;
    running.stop().await;

    // 300 days on, the serving certificate is due: the controller's ServiceAccount (the
    // shipped RBAC) may re-issue it in the shared Secret, by the same CA.
    let later = now + Duration::from_secs(300 * 86400);
    let renewed = webhook::ensure_certificate(
        &as_controller,
        SA_NAMESPACE,
        &["aliyun-acr-credential-helper.kube-system.svc".into()],
        &["127.0.0.1".parse().unwrap()],
        later,
    )
    .await
    .expect("the renewal is allowed by the shipped RBAC");
    assert_eq!(renewed.ca_pem, cert.ca_pem);
    assert_ne!(renewed.cert_pem, cert.cert_pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_survive_real_timeouts_and_compaction_and_namespace_deletion() {
    // Watches go to etcd (no watch cache), etcd is compacted every 2 s and the API server ends
    // every watch after 3-6 s: each re-watch may resume from a compacted revision and get a
    // real 410 Gone.
    let controller_user = User::service_account(SA_NAMESPACE, SA_NAME);
    let plane = ControlPlane::start_with(
        std::slice::from_ref(&controller_user),
        &[
            "--watch-cache=false",
            "--etcd-compaction-interval=2s",
            "--min-request-timeout=3",
        ],
    )
    .await
    .expect("a real control plane");
    let admin = client(&plane, ADMIN_TOKEN);
    apply_deploy_rbac(&plane);
    let as_controller = client(&plane, plane.token_for(&controller_user.name));

    // Compaction is real here: a watch from the first revision is refused with 410 Gone.
    let first_rv = Api::<Namespace>::all(admin.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    put_config(
        &admin,
        json!({"watch-namespace": "all", "exclude-namespace": "kube-*",
               "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    let running = start_with(as_controller.clone(), settings(&cloud));

    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for i in 0..4 {
        let name = format!("team-{i}");
        create(&namespaces, json!({"metadata": {"name": name}})).await;
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &name);
        create(&sas, json!({"metadata": {"name": "default"}})).await;
        wait_for(&format!("{name} served"), || async {
            secret(&admin, &name).await.is_some()
                && entries(&service_account(&admin, &name, "default").await) == [OURS]
        })
        .await;
        // Let watches time out and etcd compact between namespaces.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let http = plane.http();
    let gone = http
        .get(format!(
            "{}/api/v1/namespaces?watch=true&resourceVersion={first_rv}",
            plane.url()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let text = gone.text().await.unwrap();
    assert!(
        text.contains("\"code\":410"),
        "a watch from a compacted revision: {text}"
    );

    // Namespace deletion: without a namespace controller it stays Terminating. The controller
    // stops serving it (removes our Secret, as it may while the namespace terminates) and
    // keeps serving the others.
    namespaces
        .delete("team-0", &Default::default())
        .await
        .unwrap();
    wait_for("our Secret gone from the terminating namespace", || async {
        secret(&admin, "team-0").await.is_none()
    })
    .await;
    create(&namespaces, json!({"metadata": {"name": "after-deletion"}})).await;
    wait_for("a new namespace still served", || async {
        secret(&admin, "after-deletion").await.is_some()
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_writer_never_loses_anything_on_a_real_api_server() {
    let (_plane, admin, as_controller) = plane().await;
    let cloud = FakeCloud::start(FakeCloudConfig::sample()).await.unwrap();
    put_config(
        &admin,
        json!({"watch-namespace": "busy", "service-account": "*",
               "acr-registry-info": "- instanceId: \"\"\n"}),
    )
    .await;
    let running = start_with(as_controller.clone(), settings(&cloud));
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    create(&namespaces, json!({"metadata": {"name": "busy"}})).await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "busy");
    // Several ServiceAccounts appear while another writer keeps editing them: its annotations
    // and entries race the controller's patches (409s and failed `test`s on the real server).
    let names: Vec<String> = (0..5).map(|i| format!("app-{i}")).collect();
    for n in &names {
        create(
            &sas,
            json!({"metadata": {"name": n}, "imagePullSecrets": [{"name": "theirs"}]}),
        )
        .await;
    }
    for round in 0..10 {
        for n in &names {
            sas.patch(
                n,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {format!("foreign-{round}"): "x"}}}),
                ),
            )
            .await
            .unwrap();
        }
    }
    wait_for("every ServiceAccount served", || async {
        let mut ok = true;
        for n in &names {
            ok &= entries(&service_account(&admin, "busy", n).await).contains(&OURS.to_owned());
        }
        ok
    })
    .await;
    for n in &names {
        let sa = service_account(&admin, "busy", n).await;
        assert_eq!(entries(&sa), ["theirs", OURS], "{n}");
        let annotations = sa.metadata.annotations.unwrap();
        for round in 0..10 {
            assert!(
                annotations.contains_key(&format!("foreign-{round}")),
                "{n} lost foreign-{round}"
            );
        }
    }
    running.stop().await;
}

/// The two kinds of 422 a real API server answers our writes with: a `test` of a patch that no
/// longer holds (our view is stale: a conflict, read again and re-planned) and a denial by a
/// ValidatingAdmissionPolicy (an error the operator must see: logged, not retried quietly as
/// a conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_patch_is_a_conflict_and_a_policy_denial_is_an_error() {
    use acr_auth_kube::apply::{apply, ApplyError};
    use acr_auth_kube::plan::{plan, ClusterSnapshot, NamespaceInfo, ServiceAccountInfo, Write};

    let (plane, admin, as_controller) = plane().await;
    let _ = create(
        &Api::<Namespace>::all(admin.clone()),
        json!({"metadata": {"name": "guarded"}}),
    )
    .await;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "guarded");
    let robot = create(&accounts, json!({"metadata": {"name": "robot"}})).await;

    // A patch planned from the ServiceAccount as read, then someone else changes it.
    let config = acr_auth_core::config::HelperConfig::from_configmap([
        ("watch-namespace", "all"),
        ("service-account", "robot"),
    ])
    .unwrap()
    .config;
    let snapshot = ClusterSnapshot {
        namespaces: vec![NamespaceInfo {
            name: "guarded".into(),
            ..Default::default()
        }],
        service_accounts: vec![ServiceAccountInfo::from_service_account(&robot)],
        secrets: vec![],
    };
    let credential = acr_auth_core::source::RegistryCredential {
        token: acr_auth_core::acr::RegistryToken {
            username: "cr_temp_user".into(),
            password: "token".into(),
            expires_at: acr_auth_core::time::Clock::now(&acr_auth_core::time::SystemClock)
                + Duration::from_secs(3600),
        },
        hosts: vec!["registry.example.com".into()],
        source: "test".into(),
    };
    let writes = plan(&config, &snapshot, &[credential]);
    let patch = writes
        .iter()
        .find(|w| matches!(w, Write::PatchServiceAccount { .. }))
        .expect("a patch of robot");
    accounts
        .patch(
            "robot",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .unwrap();
    match apply(&as_controller, patch).await {
        Err(ApplyError::Conflict(_)) => {}
        other => panic!("a stale patch must be a conflict, got {other:?}"),
    }

    // A policy denying our Secrets in this namespace.
    let policy = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-pull-secrets}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["secrets"]}
  validations:
  - {expression: "false", message: "pull secrets are not allowed in this namespace"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-pull-secrets}
spec:
  policyName: no-pull-secrets
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: guarded}
"#;
    kubectl_apply(&plane, policy);
    let create_secret = writes
        .iter()
        .find(|w| matches!(w, Write::CreateSecret { .. }))
        .expect("a Secret create");
    // The API server loads the policy within a second or so.
    let start = std::time::Instant::now();
    let denied = loop {
        match apply(&as_controller, create_secret).await {
            Err(e @ ApplyError::Kube(_)) => break e,
            Err(ApplyError::Conflict(m)) => panic!("a policy denial is not a conflict: {m}"),
            Ok(()) => {
                // Created before the policy was active: remove it and try again.
                Api::<Secret>::namespaced(admin.clone(), "guarded")
                    .delete(OURS, &Default::default())
                    .await
                    .unwrap();
            }
            Err(other) => panic!("unexpected: {other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the policy never applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(denied.reason(), "api");
    assert!(
        denied
            .to_string()
            .contains("pull secrets are not allowed in this namespace"),
        "the denial names the policy's message: {denied}"
    );
}
