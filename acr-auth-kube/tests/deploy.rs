//! What `deploy/` renders to with the real `kubectl kustomize`: the base, the private-registry
//! overlay, and the base with the RRSA component (through `deploy/overlays/rrsa` and through a
//! user's own kustomization, as deploy/README.md tells users to write it).

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

mod common;

use common::*;

const NAME: &str = "aliyun-acr-credential-helper";
/// Where release images are published (scripts/dist names the same reference).
const IMAGE: &str = "ghcr.io/acr-auth/aliyun-acr-credential-helper";

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn pod_spec(docs: &[Value]) -> &Value {
    &find(docs, "Deployment")["spec"]["template"]["spec"]
}

/// The one container of the Deployment.
fn container(docs: &[Value]) -> &Value {
    let containers = pod_spec(docs)["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    &containers[0]
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

#[test]
fn the_base_runs_the_release_image_under_the_original_names_with_a_pdb() {
    let docs = render("deploy");
    // The workspace version is the tag: a release bumps both together.
    assert_eq!(
        container(&docs)["image"],
        format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION"))
    );
    // Alibaba's container name: applying over the original replaces its container.
    assert_eq!(container(&docs)["name"], NAME);
    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["name"], NAME);
    assert_eq!(deployment["metadata"]["namespace"], "kube-system");
    assert_eq!(
        pod_spec(&docs)["priorityClassName"],
        "system-cluster-critical"
    );

    let pdb = find(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["metadata"]["namespace"], "kube-system");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"]["minAvailable"].is_null());
    // It covers the Deployment's pods, and still leaves one of them running.
    assert_eq!(
        pdb["spec"]["selector"], deployment["spec"]["selector"],
        "the PDB selects the Deployment's pods"
    );
    assert_eq!(deployment["spec"]["replicas"], 2);

    // deploy/ and deploy/base render the same objects.
    assert_eq!(render("deploy/base"), docs);
}

#[test]
fn the_private_registry_overlay_changes_the_image_and_nothing_else() {
    let base = render("deploy");
    let overlay = render("deploy/overlays/private-registry");
    let image = container(&overlay)["image"].as_str().unwrap().to_owned();
    assert_eq!(
        image,
        format!(
            "registry.example.com/platform/aliyun-acr-credential-helper:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let mut expected = base.clone();
    for d in expected.iter_mut().filter(|d| d["kind"] == "Deployment") {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image.clone().into();
    }
    assert_eq!(overlay, expected);
}

/// `to` relative to the directory `from` (both absolute): kustomize refuses absolute paths.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out: PathBuf = from[common..].iter().map(|_| "..").collect();
    out.extend(&to[common..]);
    out
}

fn assert_rrsa_token_mounted(docs: &[Value]) {
    let c = container(docs);
    // The file the code reads when ALIBABA_CLOUD_OIDC_TOKEN_FILE is unset, and the variable.
    let file = acr_auth_core::source::DEFAULT_RRSA_TOKEN_FILE;
    assert_eq!(env(c, "ALIBABA_CLOUD_OIDC_TOKEN_FILE"), Some(file));
    // The base's variables are still there (the patch merged, not replaced, the list).
    assert_eq!(env(c, "ACR_AUTH_TOKEN_MODE"), Some("auto"));
    // The roles come from the registry items: the pod-wide variables would be wrong.
    assert_eq!(env(c, "ALIBABA_CLOUD_ROLE_ARN"), None);

    let mounts = c["volumeMounts"].as_array().unwrap();
    let volumes = pod_spec(docs)["volumes"].as_array().unwrap();
    let served: Vec<String> = mounts
        .iter()
        .filter_map(|m| {
            let volume = volumes.iter().find(|v| v["name"] == m["name"])?;
            let sources = volume["projected"]["sources"].as_array()?;
            sources.iter().find_map(|s| {
                let token = &s["serviceAccountToken"];
                (token["audience"] == "sts.aliyuncs.com").then(|| {
                    format!(
                        "{}/{}",
                        m["mountPath"].as_str().unwrap_or_default(),
                        token["path"].as_str().unwrap_or_default()
                    )
                })
            })
        })
        .collect();
    assert_eq!(served, [file], "{mounts:?} {volumes:?}");
    assert!(mounts.iter().all(|m| m["readOnly"] == true));
}

#[test]
fn the_rrsa_component_mounts_the_token_where_the_code_reads_it() {
    assert_rrsa_token_mounted(&render("deploy/overlays/rrsa"));

    // A user's kustomization elsewhere, naming deploy/ and the component (deploy/README.md).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = repo_root().canonicalize().unwrap();
    let deploy = relative(&dir.path().canonicalize().unwrap(), &root.join("deploy"));
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "resources: [{0}]\ncomponents: [{0}/components/rrsa]\n",
            deploy.display()
        ),
    )
    .unwrap();
    let docs = render_dir(dir.path());
    assert_rrsa_token_mounted(&docs);
    // Nothing but the Deployment changed.
    let base = render("deploy");
    assert_eq!(docs.len(), base.len());
    for (a, b) in docs.iter().zip(&base) {
        if a["kind"] != "Deployment" {
            assert_eq!(a, b);
        }
    }
}
