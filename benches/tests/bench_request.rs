//! The request the Rust benches sign is the one `sdk_rpc_signer_bench.py` times: both sides
//! produce the signature below, printed by the official SDK signers when the script runs.

use acr_auth_benches::{get_authorization_token_params, SECRET};
use acr_auth_core::sign::{rpc_signature, Method};

/// Printed by `.venv/bin/python benches/sdk_rpc_signer_bench.py` (official SDK signers).
const SDK_SIGNATURE: &str = "ijNSbQB6G7T5OQXAAqARMIk5kdo=";

#[test]
fn rust_and_python_benches_sign_the_same_request() {
    let ours = rpc_signature(Method::Post, get_authorization_token_params(), SECRET);
    assert_eq!(ours, SDK_SIGNATURE);
}

#[test]
fn the_bench_configuration_is_valid_and_complete() {
    let parsed = acr_auth_core::config::HelperConfig::from_configmap(
        acr_auth_benches::configmap_with_items(50),
    )
    .unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    assert_eq!(parsed.config.registries.len(), 50);
    assert_eq!(
        parsed
            .config
            .registries
            .iter()
            .filter(|r| r.is_enterprise())
            .count(),
        25
    );
}
