//! Benchmarks for acr-auth: criterion benches in `benches/` (`cargo bench -p acr-auth-benches`)
//! and `sdk_rpc_signer_bench.py`, which times the official Python SDK signer on the same request.
//!
//! The request benchmarked everywhere is [`get_authorization_token_params`], so figures compare.

/// The RPC parameters of an Enterprise Edition `GetAuthorizationToken` call with long-lived
/// AccessKey credentials, as sent on the wire (everything but `Signature`).
pub fn get_authorization_token_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AccessKeyId", "LTAI5tExampleAccessKeyId"),
        ("Action", "GetAuthorizationToken"),
        ("Format", "JSON"),
        ("InstanceId", "cri-abcdefghijklmnop"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "0123456789abcdef0123456789abcdef"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2024-05-01T08:00:00Z"),
        ("Version", "2018-12-01"),
    ]
}

/// The AccessKey secret used by the benchmarks.
pub const SECRET: &str = "ExampleAccessKeySecret0123456789";
