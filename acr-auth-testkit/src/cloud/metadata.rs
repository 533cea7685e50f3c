//! ECS instance metadata: the hardened-mode session token, the instance RAM role and its
//! credentials, and the region.

use std::time::Duration;

use acr_auth_core::time::format_iso8601;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{api::issue_sts, random_token, RawRequest, Shared};

/// The `fail_next_action` target that makes metadata reads fail with HTTP 500.
pub const METADATA_FAULT_TARGET: &str = "metadata";
const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
const TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
const ROLE_PREFIX: &str = "/latest/meta-data/ram/security-credentials/";

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [("content-type", "text/plain")], body.into()).into_response()
}

pub(crate) fn handle(shared: &Shared, req: &RawRequest) -> Response {
    let path = req.uri.path();
    let fault = {
        let mut inner = shared.lock();
        *inner.calls.entry(format!("metadata:{path}")).or_default() += 1;
        // Only faults aimed at "metadata" apply here; `fail_next` targets the APIs.
        let pos = inner
            .faults
            .iter()
            .position(|(action, _)| action.as_deref() == Some(METADATA_FAULT_TARGET));
        pos.and_then(|p| inner.faults.remove(p))
    };
    if fault.is_some() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }

    if req.method == Method::PUT && path == "/latest/api/token" {
        let ttl = req
            .headers
            .get(TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ttl| (1..=21600).contains(ttl));
        let Some(ttl) = ttl else {
            return text(
                StatusCode::BAD_REQUEST,
                "missing or invalid token TTL (1-21600 seconds)",
            );
        };
        let token = random_token(56);
        shared
            .lock()
            .metadata_tokens
            .insert(token.clone(), shared.now() + Duration::from_secs(ttl));
        return text(StatusCode::OK, token);
    }
    if req.method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }

    match req.headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        Some(token) => {
            let valid = shared
                .lock()
                .metadata_tokens
                .get(token)
                .is_some_and(|exp| shared.now() < *exp);
            if !valid {
                return text(
                    StatusCode::UNAUTHORIZED,
                    "invalid or expired metadata token",
                );
            }
        }
        None if shared.config.metadata.hardened_only => {
            return text(
                StatusCode::FORBIDDEN,
                "security hardening mode: a metadata token is required",
            );
        }
        None => {}
    }

    let role = shared.config.metadata.role_name.as_deref();
    match path {
        "/latest/meta-data/region-id" => text(StatusCode::OK, shared.config.region.clone()),
        p if p == ROLE_PREFIX => match role {
            Some(r) => text(StatusCode::OK, r),
            None => text(StatusCode::NOT_FOUND, "not found"),
        },
        p if p.starts_with(ROLE_PREFIX) && Some(&p[ROLE_PREFIX.len()..]) == role => {
            let lifetime = Duration::from_secs(shared.config.metadata.credentials_lifetime_secs);
            let (id, sts) = issue_sts(shared, lifetime);
            let body = json!({
                "AccessKeyId": id,
                "AccessKeySecret": sts.secret,
                "Expiration": format_iso8601(sts.expires_at),
                "SecurityToken": sts.token,
                "LastUpdated": format_iso8601(shared.now()),
                "Code": "Success",
            });
            (
                StatusCode::OK,
                [("content-type", "text/plain")],
                body.to_string(),
            )
                .into_response()
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `GET /credentials-uri`: fresh STS credentials in the credentials-URI format.
pub(crate) fn credentials_uri(shared: &Shared) -> Response {
    *shared
        .lock()
        .calls
        .entry("CredentialsUri".to_owned())
        .or_default() += 1;
    let (id, sts) = issue_sts(shared, Duration::from_secs(3600));
    let body = json!({
        "Code": "Success",
        "AccessKeyId": id,
        "AccessKeySecret": sts.secret,
        "SecurityToken": sts.token,
        "Expiration": format_iso8601(sts.expires_at),
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}
