//! Test doubles for acr-auth: a fake Alibaba Cloud that behaves like the real one on the wire.
//!
//! [`FakeCloud`] serves, on one loopback port:
//! - ACR Enterprise Edition (`GetAuthorizationToken`, `ListInstanceEndpoint`, RPC 2018-12-01)
//!   and Personal Edition (`GET /tokens`, 2016-06-07), signed with RPC HMAC-SHA1, ROA HMAC-SHA1
//!   or V3;
//! - STS `AssumeRole` and anonymous `AssumeRoleWithOIDC`;
//! - ECS instance metadata (hardened session token, role name, credentials, `region-id`);
//! - a Docker registry token server that issues bearer tokens only for registry credentials it
//!   handed out, until they expire (so a real Distribution registry can use it as its realm).
//!
//! [`kube::FakeKube`] is a fake Kubernetes API server with the semantics a controller relies
//! on, checked against the real `kubectl`; [`control_plane::ControlPlane`] is the real one
//! (etcd and kube-apiserver built from their Go modules), for the end-to-end suites.
//!
//! The cloud verifies every signature, the timestamp window (15 minutes), nonce reuse and STS tokens,
//! answers with Alibaba's JSON shapes and error codes, counts calls, and injects faults.

pub mod cloud;
pub mod control_plane;
pub mod distribution;
pub mod kube;
pub mod tls;

pub use cloud::{
    AccessKeyConfig, FakeCloud, FakeCloudConfig, Fault, InstanceConfig, MetadataConfig,
    OidcProviderConfig, RecordedRequest, RoleConfig, METADATA_FAULT_TARGET,
};
pub use tls::{http_client, http_client_builder, TlsFront};

/// Waits until standard input closes (the parent process went away or closed the pipe) or
/// Ctrl-C: how the `acr-fake-*` binaries know to stop, so a crashed test leaves no server behind.
pub async fn wait_for_stdin_close_or_ctrl_c() {
    use tokio::io::AsyncReadExt as _;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    tokio::select! {
        _ = async { while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {} } => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
