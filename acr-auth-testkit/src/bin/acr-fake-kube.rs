//! `acr-fake-kube [KUBECONFIG-PATH]`: the fake Kubernetes API server as a process.
//!
//! Prints `ACR_FAKE_KUBE_URL=http://127.0.0.1:PORT` and writes a kubeconfig (default
//! `./fake-kubeconfig`), then serves until stdin closes or Ctrl-C.

use std::io::Write as _;
use std::path::PathBuf;

use acr_auth_testkit::kube::FakeKube;
use clap::Parser;

/// The fake Kubernetes API server (HTTP on loopback) for tests, benches and the demo.
///
/// Prints `ACR_FAKE_KUBE_URL=http://127.0.0.1:PORT` and `KUBECONFIG=PATH` on stdout, then
/// serves until stdin closes or Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "acr-fake-kube", version)]
struct Args {
    /// Where to write a kubeconfig pointing at the fake server.
    #[arg(default_value = "fake-kubeconfig")]
    kubeconfig: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let path = args.kubeconfig;
    let kube = FakeKube::start().await?;
    kube.write_kubeconfig(&path)
        .map_err(|e| format!("cannot write the kubeconfig {}: {e}", path.display()))?;
    let mut out = std::io::stdout().lock();
    // One write, so a reader that stops after the first line cannot make the second one fail.
    write!(
        out,
        "ACR_FAKE_KUBE_URL={}\nKUBECONFIG={}\n",
        kube.url(),
        path.display()
    )?;
    out.flush()?;
    drop(out);
    acr_auth_testkit::wait_for_stdin_close_or_ctrl_c().await;
    Ok(())
}
