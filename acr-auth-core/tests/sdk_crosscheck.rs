//! Cross-check of our signers against the official Alibaba Cloud Python SDK signers
//! (`alibabacloud-openapi-util` and `aliyun-python-sdk-core`) over randomized requests.
//!
//! The SDK runs in the Python found at `$ACR_AUTH_SDK_PYTHON`, else `<workspace>/.venv/bin/python`
//! (`scripts/test` creates it). This test is part of the normal test command; without the SDK it
//! fails and says how to install it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use acr_auth_core::sign::{sha256_hex, Method, RoaStringToSign, RpcStringToSign, V3Signature};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

const CASES_PER_SCHEME: usize = 300;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sdk_python() -> PathBuf {
    if let Some(p) = std::env::var_os("ACR_AUTH_SDK_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the official Alibaba Python SDK is needed for this test: run scripts/test (it creates \
         .venv with alibabacloud-openapi-util and aliyun-python-sdk-core) or set ACR_AUTH_SDK_PYTHON"
    );
    venv
}

/// Runs the SDK over every request, one JSON line each way.
fn sdk_sign(requests: &[Value]) -> Vec<Value> {
    let mut child = Command::new(sdk_python())
        .arg(workspace_root().join("scripts/sdk_signers.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python SDK signer");
    // Feed stdin from another thread: the answers fill the stdout pipe while we write.
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<String> = requests.iter().map(Value::to_string).collect();
    let writer = std::thread::spawn(move || {
        for line in input {
            writeln!(stdin, "{line}").unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "the Python SDK signer failed");
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), requests.len());
    answers
}

/// Characters that stress the encoders: unreserved, reserved, `%`, space, unicode (2-4 bytes).
const ALPHABET: &[&str] = &[
    "a", "Z", "0", "9", "-", "_", ".", "~", " ", "*", "+", "/", "=", "&", "?", "%", ":", "#", "@",
    "!", "$", "'", "(", ")", ",", ";", "[", "]", "\"", "<", ">", "\\", "^", "`", "{", "|", "}",
    "é", "中", "文", "ß", "🚀", "Ω",
];

fn random_value(rng: &mut StdRng) -> String {
    let len = match rng.random_range(0..10) {
        0 => rng.random_range(500..2500), // long values
        _ => rng.random_range(1..24),
    };
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

/// An STS-like token: long base64 with `+`, `/`, `=`.
fn sts_token(rng: &mut StdRng) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::from("CAIS");
    for _ in 0..rng.random_range(200..1200) {
        s.push(B64[rng.random_range(0..B64.len())] as char);
    }
    s.push_str("==");
    s
}

fn random_name(rng: &mut StdRng) -> String {
    const CH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..rng.random_range(1..16))
        .map(|_| CH[rng.random_range(0..CH.len())] as char)
        .collect()
}

/// A header value: no leading/trailing blanks and no control characters, as HTTP allows.
fn header_value(rng: &mut StdRng) -> String {
    let v = random_value(rng);
    let v = v.trim().to_owned();
    if v.is_empty() {
        "v".to_owned()
    } else {
        v
    }
}

fn secret(rng: &mut StdRng) -> String {
    match rng.random_range(0..3) {
        0 => random_value(rng),
        _ => random_name(rng),
    }
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn method(rng: &mut StdRng) -> Method {
    [Method::Get, Method::Post, Method::Put, Method::Delete][rng.random_range(0..4)]
}

/// Distinct random names (the SDKs take dicts).
fn unique_params(
    rng: &mut StdRng,
    count: std::ops::Range<usize>,
    value: impl Fn(&mut StdRng) -> String,
) -> Vec<(String, String)> {
    let n = rng.random_range(count);
    let mut out: Vec<(String, String)> = Vec::new();
    while out.len() < n {
        let k = random_name(rng);
        if !out.iter().any(|(e, _)| *e == k) {
            let v = value(rng);
            out.push((k, v));
        }
    }
    out
}

fn seed() -> u64 {
    let seed = std::env::var("ACR_AUTH_CROSSCHECK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("cross-check seed {seed} (set ACR_AUTH_CROSSCHECK_SEED to replay)");
    seed
}

#[test]
fn rpc_signatures_match_both_official_sdks() {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut requests = Vec::new();
    let mut ours = Vec::new();
    for i in 0..CASES_PER_SCHEME {
        let m = [Method::Get, Method::Post][rng.random_range(0..2)];
        let mut params = unique_params(&mut rng, 1..8, random_value);
        params.extend([
            ("AccessKeyId".to_owned(), random_name(&mut rng)),
            ("Action".to_owned(), "GetAuthorizationToken".to_owned()),
            ("Timestamp".to_owned(), "2024-05-01T08:00:00Z".to_owned()),
        ]);
        if i % 2 == 0 {
            params.push(("SecurityToken".to_owned(), sts_token(&mut rng)));
        }
        params.sort();
        params.dedup_by(|a, b| a.0 == b.0);
        let secret = secret(&mut rng);
        ours.push(RpcStringToSign::new(m, pairs(&params)).sign(&secret));
        requests.push(
            json!({"scheme": "rpc", "method": m.as_str(), "params": params, "secret": secret}),
        );
    }
    let answers = sdk_sign(&requests);
    for ((ours, theirs), req) in ours.iter().zip(&answers).zip(&requests) {
        assert_eq!(
            ours, &theirs["openapi_util"],
            "openapi-util disagrees on {req}"
        );
        assert_eq!(ours, &theirs["core"], "aliyunsdkcore disagrees on {req}");
    }
}

#[test]
fn roa_signatures_match_official_sdk() {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut requests = Vec::new();
    let mut ours = Vec::new();
    for i in 0..CASES_PER_SCHEME {
        let m = method(&mut rng);
        let path = format!("/{}", random_name(&mut rng));
        let mut headers: Vec<(String, String)> = vec![
            ("accept".into(), "application/json".into()),
            ("date".into(), "Wed, 01 May 2024 08:00:00 GMT".into()),
            ("x-acs-signature-nonce".into(), random_name(&mut rng)),
            ("x-acs-version".into(), "2016-06-07".into()),
            ("user-agent".into(), header_value(&mut rng)),
        ];
        if i % 3 == 0 {
            headers.push((
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ));
            headers.push(("content-md5".into(), "q2qaEcR4P47+Z7CUzHRTBw==".into()));
        }
        if i % 2 == 0 {
            headers.push(("x-acs-security-token".into(), sts_token(&mut rng)));
        }
        for (k, v) in unique_params(&mut rng, 0..4, header_value) {
            headers.push((format!("x-acs-{}", k.to_ascii_lowercase()), v));
        }
        headers.sort();
        headers.dedup_by(|a, b| a.0 == b.0);
        let query = unique_params(&mut rng, 0..5, random_value);
        let secret = secret(&mut rng);
        ours.push(RoaStringToSign::new(m, &path, pairs(&headers), pairs(&query)).sign(&secret));
        requests.push(json!({"scheme": "roa", "method": m.as_str(), "path": path,
            "headers": headers, "query": query, "secret": secret}));
    }
    let answers = sdk_sign(&requests);
    for ((ours, theirs), req) in ours.iter().zip(&answers).zip(&requests) {
        assert_eq!(
            ours, &theirs["openapi_util"],
            "openapi-util disagrees on {req}"
        );
    }
}

#[test]
fn v3_signatures_match_official_sdk() {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut requests = Vec::new();
    let mut ours = Vec::new();
    for i in 0..CASES_PER_SCHEME {
        let m = method(&mut rng);
        let path = if i % 2 == 0 {
            "/".to_owned()
        } else {
            format!(
                "/{}/{}",
                random_name(&mut rng),
                random_value(&mut rng).replace('/', "-")
            )
        };
        let body = random_value(&mut rng);
        let payload = sha256_hex(body.as_bytes());
        let ak = random_name(&mut rng);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), "cr.cn-hangzhou.aliyuncs.com".into()),
            ("x-acs-action".into(), "GetAuthorizationToken".into()),
            ("x-acs-version".into(), "2018-12-01".into()),
            ("x-acs-date".into(), "2024-05-01T08:00:00Z".into()),
            ("x-acs-signature-nonce".into(), random_name(&mut rng)),
            ("x-acs-content-sha256".into(), payload.clone()),
        ];
        if i % 2 == 0 {
            headers.push(("x-acs-accesskey-id".into(), ak.clone()));
            headers.push(("x-acs-security-token".into(), sts_token(&mut rng)));
        }
        for (k, v) in unique_params(&mut rng, 0..3, header_value) {
            headers.push((format!("x-acs-{}", k.to_ascii_lowercase()), v));
        }
        headers.sort();
        headers.dedup_by(|a, b| a.0 == b.0);
        let query = unique_params(&mut rng, 0..6, random_value);
        let secret = secret(&mut rng);
        let sig = V3Signature::new(m, &path, pairs(&query), pairs(&headers), &payload, &secret);
        ours.push(sig.authorization(&ak));
        requests.push(
            json!({"scheme": "v3", "method": m.as_str(), "path": path, "query": query,
            "headers": headers, "payload_sha256": payload, "access_key_id": ak, "secret": secret}),
        );
    }
    let answers = sdk_sign(&requests);
    for ((ours, theirs), req) in ours.iter().zip(&answers).zip(&requests) {
        assert_eq!(
            ours, &theirs["openapi_util"],
            "openapi-util disagrees on {req}"
        );
    }
}
