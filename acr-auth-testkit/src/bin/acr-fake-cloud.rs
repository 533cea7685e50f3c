//! `acr-fake-cloud`: the fake Alibaba Cloud as a process, for the Python tests and manual use.
//!
//! ```text
//! acr-fake-cloud [CONFIG.json]
//! ```
//!
//! Prints `ACR_FAKE_CLOUD_URL=http://127.0.0.1:PORT` on the first line of stdout, then serves
//! until stdin closes or it receives Ctrl-C. Without a config file it serves
//! `FakeCloudConfig::sample()`.

use std::io::Write as _;

use acr_auth_testkit::{FakeCloud, FakeCloudConfig};
use tokio::io::AsyncReadExt as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = match std::env::args().nth(1) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read config file {path}: {e}"))?;
            let mut de = serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize::<_, FakeCloudConfig>(&mut de).map_err(|e| {
                format!("invalid config file {path}: at {}: {}", e.path(), e.inner())
            })?
        }
        None => FakeCloudConfig::sample(),
    };
    let cloud = FakeCloud::start(config).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACR_FAKE_CLOUD_URL={}", cloud.url())?;
    out.flush()?;
    drop(out);

    // Stop when the parent closes our stdin (so a crashed test leaves no server behind) or on
    // Ctrl-C.
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    tokio::select! {
        _ = async { while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {} } => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
