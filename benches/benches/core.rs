//! Criterion benchmarks of the hot pure functions: signing, `.dockerconfigjson` rendering and
//! registry host parsing.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, UNIX_EPOCH};

use acr_auth_benches::{get_authorization_token_params, SECRET};
use acr_auth_core::acr::{RegistryHost, RegistryToken};
use acr_auth_core::credentials::Credentials;
use acr_auth_core::docker_config::DockerConfig;
use acr_auth_core::sign::{
    rpc_signature, sign_rpc_request, Method, RoaStringToSign, RpcRequest, V3Signature, EMPTY_SHA256,
};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

fn sign_rpc(c: &mut Criterion) {
    let params = get_authorization_token_params();
    c.bench_function("sign_rpc/signature", |b| {
        b.iter(|| {
            rpc_signature(
                Method::Post,
                black_box(params.iter().copied()),
                black_box(SECRET),
            )
        })
    });

    let request = RpcRequest::new(Method::Post, "GetAuthorizationToken", "2018-12-01")
        .query("InstanceId", "cri-abcdefghijklmnop");
    let creds = Credentials::new("LTAI5tExampleAccessKeyId", SECRET);
    let at = UNIX_EPOCH + Duration::from_secs(1_714_550_400);
    c.bench_function("sign_rpc/full_request", |b| {
        b.iter(|| {
            sign_rpc_request(
                black_box(&request),
                Some(&creds),
                at,
                "0123456789abcdef0123456789abcdef",
            )
        })
    });
    // A realistic STS token is several hundred characters, all of it signed.
    let sts = creds
        .clone()
        .with_security_token(format!("CAIS{}+/=", "x".repeat(800)));
    c.bench_function("sign_rpc/full_request_sts", |b| {
        b.iter(|| {
            sign_rpc_request(
                black_box(&request),
                Some(&sts),
                at,
                "0123456789abcdef0123456789abcdef",
            )
        })
    });
}

fn sign_roa(c: &mut Criterion) {
    let headers = [
        ("accept", "application/json"),
        ("date", "Wed, 01 May 2024 08:00:00 GMT"),
        ("x-acs-action", "GetAuthorizationToken"),
        ("x-acs-signature-method", "HMAC-SHA1"),
        ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
        ("x-acs-signature-version", "1.0"),
        ("x-acs-version", "2016-06-07"),
    ];
    c.bench_function("sign_roa", |b| {
        b.iter(|| {
            RoaStringToSign::new(Method::Get, "/tokens", black_box(headers), [])
                .sign(black_box(SECRET))
        })
    });
}

fn sign_v3(c: &mut Criterion) {
    let headers = [
        ("host", "cr.cn-hangzhou.aliyuncs.com"),
        ("x-acs-action", "GetAuthorizationToken"),
        ("x-acs-content-sha256", EMPTY_SHA256),
        ("x-acs-date", "2024-05-01T08:00:00Z"),
        ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
        ("x-acs-version", "2018-12-01"),
    ];
    c.bench_function("sign_v3", |b| {
        b.iter(|| {
            V3Signature::new(
                Method::Post,
                "/",
                [("InstanceId", "cri-abcdefghijklmnop")],
                black_box(headers),
                EMPTY_SHA256,
                black_box(SECRET),
            )
            .authorization("LTAI5tExampleAccessKeyId")
        })
    });
}

fn render_docker_config(c: &mut Criterion) {
    let token = RegistryToken {
        username: "temp_user_cr".into(),
        password: "a".repeat(64).into(),
        expires_at: UNIX_EPOCH + Duration::from_secs(1_714_554_000),
    };
    let hosts = [
        "acme-registry.cn-hangzhou.cr.aliyuncs.com",
        "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
        "registry.cn-hangzhou.aliyuncs.com",
        "registry-vpc.cn-hangzhou.aliyuncs.com",
    ];
    c.bench_function("render_docker_config", |b| {
        b.iter(|| DockerConfig::from_token(black_box(hosts), black_box(&token)).to_json())
    });
}

fn parse_config(c: &mut Criterion) {
    let data = acr_auth_benches::configmap_with_items(50);
    c.bench_function("parse_config/50_items", |b| {
        b.iter(|| {
            acr_auth_core::config::HelperConfig::from_configmap(
                black_box(&data).iter().map(|(k, v)| (k, v)),
            )
            .unwrap()
        })
    });
}

/// `watch-namespace` and `service-account` with n names each: the time per name must stay flat
/// from 1,000 to 90,000 names (a quadratic dedup grows it 90 times; 90,000 names took 46 s).
fn parse_config_names(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_config_names");
    group.sample_size(10);
    for n in [1_000usize, 10_000, 90_000] {
        let list = (0..n)
            .map(|i| format!("ns-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let data = [
            ("watch-namespace".to_owned(), list.clone()),
            ("service-account".to_owned(), list),
        ];
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_function(criterion::BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                acr_auth_core::config::HelperConfig::from_configmap(
                    black_box(&data).iter().map(|(k, v)| (k, v)),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

fn parse_registry_host(c: &mut Criterion) {
    c.bench_function("parse_registry_host", |b| {
        b.iter(|| RegistryHost::parse(black_box("acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com")))
    });
}

criterion_group!(
    benches,
    sign_rpc,
    sign_roa,
    sign_v3,
    render_docker_config,
    parse_registry_host,
    parse_config,
    parse_config_names
);
criterion_main!(benches);
