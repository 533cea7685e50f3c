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

/// ConfigMap `data` with `items` registry items (alternating Enterprise with assumed roles and
/// domains, and Personal Edition), as a large real configuration would look.
pub fn configmap_with_items(items: usize) -> Vec<(String, String)> {
    let mut registry_info = String::new();
    for i in 0..items {
        if i % 2 == 0 {
            registry_info.push_str(&format!(
                "- instanceId: \"cri-instance{i:04}\"\n  regionId: \"cn-hangzhou\"\n  domains: \"team{i}-registry.cn-hangzhou.cr.aliyuncs.com,team{i}-registry-vpc.cn-hangzhou.cr.aliyuncs.com\"\n  assumeRoleARN: \"acs:ram::1234567890:role/puller-{i}\"\n  expireDuration: 3600\n"
            ));
        } else {
            registry_info.push_str(&format!(
                "- instanceId: \"\"\n  regionId: \"cn-region-{i}\"\n"
            ));
        }
    }
    vec![
        ("service-account".into(), "default,builder,deployer".into()),
        ("watch-namespace".into(), "all".into()),
        ("exclude-namespace".into(), "kube-*,istio-system".into()),
        ("expiring-threshold".into(), "15m".into()),
        ("acr-registry-info".into(), registry_info),
        (
            "webhook-configuration".into(),
            "enable: true\nfailure-policy: Ignore\ntimeout-seconds: 10\n".into(),
        ),
        ("rrsa".into(), "enable: false\n".into()),
    ]
}
