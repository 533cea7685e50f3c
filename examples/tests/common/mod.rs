//! Helpers shared by the tests that run the `aliyun-acr-credential-helper` binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::Output;

pub const BIN: &str = env!("CARGO_BIN_EXE_aliyun-acr-credential-helper");

/// Runs the binary with `args` and only `env` (plus PATH).
pub async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
