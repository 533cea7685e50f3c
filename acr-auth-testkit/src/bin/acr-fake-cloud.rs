//! `acr-fake-cloud`: the fake Alibaba Cloud as a process, for the Python tests and manual use.
//!
//! ```text
//! acr-fake-cloud [CONFIG.json]
//! ```
//!
//! Prints `ACR_FAKE_CLOUD_URL=http://127.0.0.1:PORT` on the first line of stdout, then serves
//! until stdin closes or it receives Ctrl-C. Without a config file it serves
//! `FakeCloudConfig::sample()`.
//!
//! With `ACR_FAKE_CLOUD_TLS_CA_FILE=PATH` it also serves HTTPS (a [`TlsFront`] whose certificate
//! a fresh private CA signed), writes that CA's PEM to PATH and prints
//! `ACR_FAKE_CLOUD_HTTPS_URL=https://127.0.0.1:PORT` on the second line.

use std::io::Write as _;

use acr_auth_testkit::{FakeCloud, FakeCloudConfig, TlsFront};

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
    let mut _front = None;
    if let Some(ca_file) = std::env::var_os("ACR_FAKE_CLOUD_TLS_CA_FILE") {
        let front = TlsFront::start(cloud.addr()).await?;
        std::fs::write(&ca_file, front.ca_pem())?;
        writeln!(out, "ACR_FAKE_CLOUD_HTTPS_URL={}", front.url())?;
        _front = Some(front);
    }
    out.flush()?;
    drop(out);

    acr_auth_testkit::wait_for_stdin_close_or_ctrl_c().await;
    Ok(())
}
