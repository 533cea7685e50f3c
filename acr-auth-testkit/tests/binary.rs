//! The `acr-fake-cloud` binary: configuration from a JSON file, the URL on stdout, and stopping
//! when its stdin closes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serves_the_configured_cloud_and_stops_when_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let config = dir.join("cloud.json");
    std::fs::write(
        &config,
        r#"{"region": "ap-southeast-1",
            "access_keys": [{"id": "LTAIfile", "secret": "from-file"}],
            "instances": [{"id": "cri-fromfile0001", "name": "filed", "region": "ap-southeast-1"}]}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_acr-fake-cloud"))
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("ACR_FAKE_CLOUD_URL=")
        .expect(&line)
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // The configured region is served by the metadata endpoint.
    let region = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            acr_auth_testkit::http_client()
                .get(format!("{url}/latest/meta-data/region-id"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    })
    .join()
    .unwrap();
    assert_eq!(region, "ap-southeast-1");

    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acr-fake-cloud did not stop after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let config = dir.join("bad.json");
    std::fs::write(&config, r#"{"access_keys": "nope"}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_acr-fake-cloud"))
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid config file") && err.contains("access_keys"),
        "{err}"
    );
}

/// `acr-fake-kube --help` prints usage and writes no kubeconfig named `--help`.
#[test]
fn fake_kube_help_prints_usage_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--help", "-h"] {
        let out = Command::new(env!("CARGO_BIN_EXE_acr-fake-kube"))
            .arg(flag)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: acr-fake-kube"), "{text}");
    }
    let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(written.is_empty(), "{written:?}");
}
