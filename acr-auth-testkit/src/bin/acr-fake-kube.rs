//! `acr-fake-kube [KUBECONFIG-PATH]`: the fake Kubernetes API server as a process.
//!
//! Prints `ACR_FAKE_KUBE_URL=http://127.0.0.1:PORT` and writes a kubeconfig (default
//! `./fake-kubeconfig`), then serves until stdin closes or Ctrl-C.

use std::io::Write as _;

use acr_auth_testkit::kube::FakeKube;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fake-kubeconfig".to_owned());
    let kube = FakeKube::start().await?;
    kube.write_kubeconfig(std::path::Path::new(&path))
        .map_err(|e| format!("cannot write the kubeconfig {path}: {e}"))?;
    let mut out = std::io::stdout().lock();
    // One write, so a reader that stops after the first line cannot make the second one fail.
    write!(out, "ACR_FAKE_KUBE_URL={}\nKUBECONFIG={path}\n", kube.url())?;
    out.flush()?;
    drop(out);
    acr_auth_testkit::wait_for_stdin_close_or_ctrl_c().await;
    Ok(())
}
