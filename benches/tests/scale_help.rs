//! `scale --help` prints usage and runs nothing.

#[test]
fn scale_help_prints_usage_instead_of_running() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scale"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage: scale"), "{text}");
    assert!(text.contains("--namespaces"), "{text}");
    assert!(!text.contains("cluster:"), "it ran: {text}");
}
