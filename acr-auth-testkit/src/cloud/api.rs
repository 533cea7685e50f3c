//! The ACR and STS APIs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acr_auth_core::time::{epoch_secs, format_iso8601};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::verify::{self, Caller, Identified};
use super::{
    alibaba_error, json_response, random_token, request_id, Fault, IssuedRegistryLogin, IssuedSts,
    RawRequest, RecordedRequest, Shared,
};

pub(crate) async fn handle(shared: &Arc<Shared>, req: RawRequest) -> Response {
    let id = match verify::identify(&req) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let fault = {
        let mut inner = shared.lock();
        *inner.calls.entry(id.action.clone()).or_default() += 1;
        let pos = inner
            .faults
            .iter()
            .position(|(action, _)| action.as_deref().is_none_or(|a| a == id.action));
        pos.and_then(|p| inner.faults.remove(p)).map(|(_, f)| f)
    };
    match fault {
        Some(Fault::DelayMs(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Some(f) => return fault_response(&f),
        None => {}
    }
    let authenticated = verify::authenticate(shared, &req, &id);
    {
        let mut inner = shared.lock();
        let access_key_id = authenticated
            .as_ref()
            .ok()
            .and_then(|c| c.access_key_id())
            .map(str::to_owned);
        let assumed_role = access_key_id
            .as_ref()
            .and_then(|k| inner.sts_roles.get(k).cloned());
        inner.requests.push(RecordedRequest {
            action: id.action.clone(),
            params: id
                .params
                .iter()
                .filter(|(k, _)| k.as_str() != "Signature")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            access_key_id,
            assumed_role,
        });
    }
    let caller = match authenticated {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match (id.version.as_str(), id.action.as_str()) {
        ("2018-12-01", "GetAuthorizationToken") => enterprise_token(shared, &id, &caller),
        ("2018-12-01", "ListInstanceEndpoint") => list_instance_endpoint(shared, &id, &caller),
        ("2018-12-01", "ListInstance") => list_instance(shared, &id, &caller),
        ("2016-06-07", "GET /tokens") => personal_token(shared, &caller),
        ("2015-04-01", "AssumeRole") => assume_role(shared, &id, &caller),
        ("2015-04-01", "AssumeRoleWithOIDC") => assume_role_with_oidc(shared, &id),
        _ => alibaba_error(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        ),
    }
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::ServiceUnavailable => alibaba_error(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        ),
        Fault::Throttling => alibaba_error(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        ),
        Fault::InternalError => alibaba_error(
            500,
            "InternalError",
            "The request processing has failed due to some unknown error.",
        ),
        Fault::MalformedBody => (
            axum::http::StatusCode::OK,
            [("content-type", "application/json;charset=utf-8")],
            "{\"RequestId\":\"1\",\"AuthorizationTok",
        )
            .into_response(),
        Fault::OversizedBody => (
            axum::http::StatusCode::OK,
            [("content-type", "application/json;charset=utf-8")],
            format!("{{\"RequestId\":\"{}\"}}", " ".repeat(2 * 1024 * 1024)),
        )
            .into_response(),
        Fault::DelayMs(_) => unreachable!("delays are served normally"),
    }
}

fn acr_allowed(shared: &Shared, caller: &Caller) -> Result<(), Response> {
    if let Caller::AccessKey(id) = caller {
        let allowed = shared
            .config
            .access_keys
            .iter()
            .any(|k| &k.id == id && k.acr_allowed);
        if !allowed {
            return Err(alibaba_error(
                403,
                "NoPrivilege",
                "Access denied for this user.",
            ));
        }
    }
    Ok(())
}

/// A registry login, valid for the configured lifetime but never beyond the caller's STS expiry.
fn issue_registry_login(shared: &Shared, caller: &Caller, username: &str) -> (String, SystemTime) {
    let now = shared.now();
    let mut expires_at = now + Duration::from_secs(shared.config.token_lifetime_secs);
    if let Caller::Sts(_, sts_expiry) = caller {
        expires_at = expires_at.min(*sts_expiry);
    }
    let password = random_token(64);
    shared.lock().registry_logins.insert(
        password.clone(),
        IssuedRegistryLogin {
            username: username.to_owned(),
            expires_at,
        },
    );
    (password, expires_at)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn instance<'a>(
    shared: &'a Shared,
    id: &Identified,
) -> Result<&'a super::InstanceConfig, Response> {
    let instance_id = id.params.get("InstanceId").ok_or_else(|| {
        alibaba_error(
            400,
            "MissingParameter",
            "InstanceId is mandatory for this action.",
        )
    })?;
    shared
        .config
        .instances
        .iter()
        .find(|i| &i.id == instance_id)
        .ok_or_else(|| {
            alibaba_error(
                404,
                "Forbidden.InstanceNotFound",
                &format!("The specified instance {instance_id} does not exist."),
            )
        })
}

fn enterprise_token(shared: &Shared, id: &Identified, caller: &Caller) -> Response {
    if let Err(r) = acr_allowed(shared, caller) {
        return r;
    }
    if let Err(r) = instance(shared, id) {
        return r;
    }
    let (password, expires_at) = issue_registry_login(shared, caller, "temp_user_cr");
    json_response(
        200,
        &json!({
            "RequestId": request_id(),
            "ExpireTime": millis(expires_at),
            "Code": "success",
            "IsSuccess": true,
            "TempUsername": "temp_user_cr",
            "AuthorizationToken": password,
        }),
    )
}

fn list_instance_endpoint(shared: &Shared, id: &Identified, caller: &Caller) -> Response {
    if let Err(r) = acr_allowed(shared, caller) {
        return r;
    }
    let instance = match instance(shared, id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut public_domains = vec![json!({"Domain": instance.public_domain(), "Type": "SYSTEM"})];
    public_domains.extend(
        instance
            .custom_domains
            .iter()
            .map(|d| json!({"Domain": d, "Type": "USER"})),
    );
    json_response(
        200,
        &json!({
            "RequestId": request_id(),
            "Code": "success",
            "IsSuccess": true,
            "Endpoints": [
                {"EndpointType": "internet", "Enable": true, "Status": "RUNNING", "AclEnable": false,
                 "Domains": public_domains, "AclEntries": [], "LinkedVpcs": []},
                {"EndpointType": "vpc", "Enable": true, "Status": "RUNNING", "AclEnable": false,
                 "Domains": [{"Domain": instance.vpc_domain(), "Type": "SYSTEM"}],
                 "AclEntries": [], "LinkedVpcs": [{"VpcId": "vpc-fake0001"}]},
            ],
        }),
    )
}

/// `ListInstance`: like the service, `InstanceName` matches as a substring and results are paged.
fn list_instance(shared: &Shared, id: &Identified, caller: &Caller) -> Response {
    if let Err(r) = acr_allowed(shared, caller) {
        return r;
    }
    let name = id.params.get("InstanceName").cloned().unwrap_or_default();
    let page_no: usize = id
        .params
        .get("PageNo")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let page_size: usize = id
        .params
        .get("PageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let matching: Vec<&super::InstanceConfig> = shared
        .config
        .instances
        .iter()
        .filter(|i| i.name.contains(&name))
        .collect();
    let page: Vec<serde_json::Value> = matching
        .iter()
        .skip((page_no - 1) * page_size)
        .take(page_size)
        .map(|i| {
            json!({
                "InstanceId": i.id, "InstanceName": i.name, "InstanceStatus": "RUNNING",
                "InstanceSpecification": "Enterprise_Basic", "RegionId": i.region,
                "ResourceGroupId": "rg-fake0001", "CreateTime": "2024-01-01 00:00:00",
                "ModifiedTime": "2024-01-01 00:00:00", "Tags": [],
            })
        })
        .collect();
    json_response(
        200,
        &json!({
            "RequestId": request_id(), "Code": "success", "IsSuccess": true,
            "PageNo": page_no, "PageSize": page_size, "TotalCount": matching.len(),
            "Instances": page,
        }),
    )
}

fn personal_token(shared: &Shared, caller: &Caller) -> Response {
    if let Err(r) = acr_allowed(shared, caller) {
        return r;
    }
    let (password, expires_at) = issue_registry_login(shared, caller, "cr_temp_user");
    json_response(
        200,
        &json!({
            "data": {
                "authorizationToken": password,
                "tempUserName": "cr_temp_user",
                "expireDate": millis(expires_at),
            },
            "requestId": request_id(),
        }),
    )
}

/// Issues STS credentials valid for `lifetime`. Tokens contain `+`, `/` and `=` as real ones do.
pub(crate) fn issue_sts(shared: &Shared, lifetime: Duration) -> (String, IssuedSts) {
    let id = format!("STS.N{}", random_token(20));
    let sts = IssuedSts {
        secret: random_token(40),
        token: format!("CAIS{}+/{}==", random_token(120), random_token(60)),
        expires_at: shared.now() + lifetime,
    };
    shared.lock().sts.insert(id.clone(), sts.clone());
    (id, sts)
}

fn session_params(id: &Identified, max_session: u64) -> Result<(String, Duration), Response> {
    let name = id
        .params
        .get("RoleSessionName")
        .cloned()
        .unwrap_or_default();
    let valid_name = (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if !valid_name {
        return Err(alibaba_error(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        ));
    }
    let duration = match id.params.get("DurationSeconds") {
        None => 3600,
        Some(d) => d.parse::<u64>().unwrap_or(0),
    };
    if !(900..=max_session).contains(&duration) {
        return Err(alibaba_error(
            400,
            "InvalidParameter.DurationSeconds",
            &format!("The Min/Max value of DurationSeconds is 900/{max_session} seconds."),
        ));
    }
    Ok((name, Duration::from_secs(duration)))
}

fn role<'a>(shared: &'a Shared, id: &Identified) -> Result<&'a super::RoleConfig, Response> {
    let arn = id.params.get("RoleArn").ok_or_else(|| {
        alibaba_error(
            400,
            "MissingRoleArn",
            "RoleArn is mandatory for this action.",
        )
    })?;
    shared
        .config
        .roles
        .iter()
        .find(|r| &r.arn == arn)
        .ok_or_else(|| {
            alibaba_error(
                404,
                "EntityNotExist.Role",
                &format!("The specified Role not exists: {arn}."),
            )
        })
}

fn sts_response(
    shared: &Shared,
    role_arn: &str,
    session: &str,
    lifetime: Duration,
) -> serde_json::Value {
    let (access_key_id, sts) = issue_sts(shared, lifetime);
    shared
        .lock()
        .sts_roles
        .insert(access_key_id.clone(), role_arn.to_owned());
    json!({
        "RequestId": request_id(),
        "AssumedRoleUser": {
            "Arn": format!("{role_arn}/{session}"),
            "AssumedRoleId": format!("3{}:{session}", epoch_secs(shared.now())),
        },
        "Credentials": {
            "AccessKeyId": access_key_id,
            "AccessKeySecret": sts.secret,
            "SecurityToken": sts.token,
            "Expiration": format_iso8601(sts.expires_at),
        },
    })
}

fn assume_role(shared: &Shared, id: &Identified, caller: &Caller) -> Response {
    let role = match role(shared, id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let caller_id = caller.access_key_id().unwrap_or_default();
    if !role.trusted.iter().any(|t| t == "*" || t == caller_id) {
        return alibaba_error(
            403,
            "NoPermission",
            "You are not authorized to do this action. You should be authorized by RAM.",
        );
    }
    match session_params(id, role.max_session_secs) {
        Ok((session, lifetime)) => {
            json_response(200, &sts_response(shared, &role.arn, &session, lifetime))
        }
        Err(r) => r,
    }
}

fn assume_role_with_oidc(shared: &Shared, id: &Identified) -> Response {
    let provider_arn = id
        .params
        .get("OIDCProviderArn")
        .cloned()
        .unwrap_or_default();
    let Some(provider) = shared
        .config
        .oidc_providers
        .iter()
        .find(|p| p.arn == provider_arn)
    else {
        return alibaba_error(
            401,
            "AuthenticationFail.NoPermission",
            "No such OIDC Provider registered.",
        );
    };
    let token = id.params.get("OIDCToken").cloned().unwrap_or_default();
    if !provider.tokens.contains(&token) {
        return alibaba_error(
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDC token is invalid.",
        );
    }
    let role = match role(shared, id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match session_params(id, role.max_session_secs) {
        Ok((session, lifetime)) => {
            let mut body = sts_response(shared, &role.arn, &session, lifetime);
            body["OIDCTokenInfo"] = json!({
                "Subject": "system:serviceaccount:kube-system:aliyun-acr-credential-helper",
                "Issuer": "https://oidc-ack.fake/test",
                "ClientIds": "sts.aliyuncs.com",
            });
            json_response(200, &body)
        }
        Err(r) => r,
    }
}
