//! The real image-pull path: a CNCF Distribution registry (Debian `docker-registry`) with token
//! authentication whose realm is the fake cloud, and `skopeo` authenticating with the
//! `.dockerconfigjson` that acr-auth-core renders from a token fetched from the fake ACR.
//!
//! The registry only admits bearer tokens signed by the fake's token server, which only issues
//! them for registry logins handed out through `GetAuthorizationToken` and not yet expired.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::acr::{AcrClient, Endpoint};
use acr_auth_core::credentials::Credentials;
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::time::{Clock, ManualClock, SystemClock};
use acr_auth_testkit::distribution::{inspect_image, push_test_image, DistributionRegistry};
use acr_auth_testkit::{FakeCloud, FakeCloudConfig};

fn write_authfile(dir: &Path, name: &str, config: &DockerConfig) -> String {
    let path = dir.join(name);
    std::fs::write(&path, config.to_json()).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_with_the_rendered_dockerconfigjson_until_the_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let cloud = FakeCloud::start_with_clock(FakeCloudConfig::sample(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let registry = DistributionRegistry::start(dir.path(), &cloud).await;
    let addr = registry.addr().to_owned();

    let client = AcrClient::builder("cn-hangzhou")
        .endpoint(Endpoint::Url(cloud.url()))
        .credentials(Credentials::new("LTAItestkey", "test-secret"))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let token = client
        .get_authorization_token("cri-testinstance01")
        .await
        .unwrap();
    let good = DockerConfig::from_token([addr.clone()], &token);
    let authfile = write_authfile(dir.path(), "auth.json", &good);

    let (image, digest) = push_test_image(dir.path(), &addr, &authfile, &[]).await;
    let inspect = |authfile: String| {
        let image = image.clone();
        let dir = dir.path().to_path_buf();
        async move { inspect_image(&dir, &image, &authfile, &[]).await }
    };
    let ok = inspect(authfile.clone()).await;
    assert!(
        ok.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Name"], format!("{addr}/team/hello"));
    let issued = cloud.calls("RegistryToken");
    assert!(issued >= 2, "push and inspect both fetched bearer tokens");

    // A tampered password is refused by the token server, so the registry never admits it.
    let mut tampered = good.clone();
    let mut p = token.password.expose().to_owned();
    p.replace_range(0..1, if p.starts_with('x') { "y" } else { "x" });
    tampered.insert(addr.clone(), token.username.clone(), p);
    let refused = inspect(write_authfile(dir.path(), "tampered.json", &tampered)).await;
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("unauthorized") || err.contains("401"), "{err}");

    // No credentials at all: refused too.
    let empty = inspect(write_authfile(
        dir.path(),
        "empty.json",
        &DockerConfig::default(),
    ))
    .await;
    assert!(!empty.status.success());

    // After the ACR token expires, the same authfile stops working.
    clock.advance(token.remaining(clock.now()) + Duration::from_secs(1));
    let expired = inspect(authfile).await;
    assert!(
        !expired.status.success(),
        "an expired ACR token must not pull"
    );
    assert!(cloud.calls("RegistryToken") > issued);
}
