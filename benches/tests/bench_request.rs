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
