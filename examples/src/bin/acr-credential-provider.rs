//! `acr-credential-provider`: a kubelet image credential provider plugin
//! (`credentialprovider.kubelet.k8s.io/v1`) for Alibaba Cloud Container Registry.
//!
//! The kubelet writes a `CredentialProviderRequest` on stdin; the plugin answers a
//! `CredentialProviderResponse` with a temporary login for the image's registry host,
//! `cacheKeyType: Registry`, and `cacheDuration` = the token's remaining lifetime minus the
//! renewal threshold (`--threshold`, default 15m). Pods then need no pull Secret.
//!
//! Two identities:
//!
//! - **Per ServiceAccount** (Kubernetes 1.33+, KEP-4412): when the kubelet's
//!   `tokenAttributes` make it send the pod's ServiceAccount token (`serviceAccountToken`) and
//!   the ServiceAccount carries `pod-identity.alibabacloud.com/role-name` (the ACK RRSA
//!   annotation), the token is exchanged with STS `AssumeRoleWithOIDC` for
//!   `acs:ram::<account>:role/<role-name>`, the account and OIDC provider coming from
//!   `--oidc-provider-arn` or `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`; the registry login is fetched
//!   with that role. No node credentials are read. A token without the annotation is an error:
//!   a workload that sent its own identity never gets the node's.
//! - **Node**: no token in the request: the Alibaba Cloud default chain (on a node, the ECS
//!   instance role).
//!
//! Hosts that the registry host grammar does not cover (custom domains) are mapped to an
//! instance with `--host HOST=INSTANCE_ID@REGION` or `--hosts-file`. An image outside ACR gets
//! an empty `auth`.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::config::{format_go_duration, parse_go_duration};
use acr_auth_core::credentials::{
    DefaultCredentialsChain, OidcProvider, ProviderEnv, SharedProvider,
};
use acr_auth_core::login::{normalize_host, registry_host_of_image, HostOverride, LoginResolver};
use acr_auth_core::time::{Clock, SystemClock};
use acr_auth_core::{ErrorKind, SecretString};
use clap::Parser;
use serde_json::{json, Map, Value};

const SUPPORTED_VERSIONS: [&str; 2] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
];

/// The ServiceAccount annotation naming the RAM role (ACK RRSA).
const ROLE_ANNOTATION: &str = "pod-identity.alibabacloud.com/role-name";
/// The RRSA variable naming the cluster's OIDC provider.
const PROVIDER_ARN_ENV: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
const DEFAULT_SESSION_NAME: &str = "acr-credential-provider";

/// Kubelet credential provider for Alibaba Cloud Container Registry.
#[derive(Debug, Parser)]
#[command(name = "acr-credential-provider", version, about)]
struct Args {
    /// Stop reusing a login this long before it expires (Go duration).
    #[arg(long, default_value = "15m")]
    threshold: String,
    /// aliyun CLI profile to use (node identity).
    #[arg(long)]
    profile: Option<String>,
    /// The cluster's RAM OIDC provider (`acs:ram::<account>:oidc-provider/<name>`), for
    /// per-ServiceAccount identity. Default: $ALIBABA_CLOUD_OIDC_PROVIDER_ARN.
    #[arg(long, value_name = "ARN")]
    oidc_provider_arn: Option<String>,
    /// `RoleSessionName` of per-ServiceAccount sessions. Default:
    /// $ALIBABA_CLOUD_ROLE_SESSION_NAME, else acr-credential-provider.
    #[arg(long, value_name = "NAME")]
    role_session_name: Option<String>,
    /// A registry host the grammar does not cover (a custom domain), and the Enterprise
    /// instance behind it: HOST=INSTANCE_ID@REGION. Repeatable; wins over --hosts-file.
    #[arg(long = "host", value_name = "HOST=INSTANCE_ID@REGION")]
    hosts: Vec<String>,
    /// A JSON file mapping hosts to instances:
    /// {"registry.example.com": {"instanceId": "cri-...", "region": "cn-hangzhou"}}.
    #[arg(long, value_name = "PATH")]
    hosts_file: Option<PathBuf>,
}

/// What the kubelet asked, read field by field so that no error message can quote the token.
#[derive(Debug)]
struct Request {
    api_version: String,
    image: String,
    service_account_token: Option<SecretString>,
    annotations: HashMap<String, String>,
}

fn parse_request(input: &str) -> Result<Request, String> {
    let not_request = |why: String| format!("stdin is not a CredentialProviderRequest: {why}");
    let obj: Map<String, Value> = match serde_json::from_str::<Value>(input) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(not_request("not a JSON object".into())),
        Err(e) => {
            return Err(not_request(format!(
                "not JSON (line {} column {})",
                e.line(),
                e.column()
            )))
        }
    };
    let string = |name: &str, required: bool| -> Result<Option<String>, String> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(not_request(format!("field {name} is missing"))),
            Some(_) => Err(not_request(format!("field {name} is not a string"))),
        }
    };
    let api_version = string("apiVersion", true)?.unwrap_or_default();
    if !SUPPORTED_VERSIONS.contains(&api_version.as_str()) {
        return Err(format!(
            "apiVersion {api_version:?} is not supported (expected one of {})",
            SUPPORTED_VERSIONS.join(", ")
        ));
    }
    let kind = string("kind", true)?.unwrap_or_default();
    if kind != "CredentialProviderRequest" {
        return Err(format!("kind {kind:?} is not CredentialProviderRequest"));
    }
    let image = string("image", true)?.unwrap_or_default();
    let service_account_token = string("serviceAccountToken", false)?
        .filter(|t| !t.trim().is_empty())
        .map(SecretString::from);
    let annotations = match obj.get("serviceAccountAnnotations") {
        None | Some(Value::Null) => HashMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(not_request(format!(
                    "serviceAccountAnnotations[{k:?}] is not a string"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(not_request(
                "field serviceAccountAnnotations is not an object".into(),
            ))
        }
    };
    Ok(Request {
        api_version,
        image,
        service_account_token,
        annotations,
    })
}

/// The account id of `acs:ram::<account>:oidc-provider/<name>`.
fn provider_account(arn: &str) -> Result<&str, String> {
    let bad = || {
        format!(
            "OIDC provider ARN {arn:?} is malformed (expected acs:ram::<account-id>:oidc-provider/<name>)"
        )
    };
    let rest = arn.strip_prefix("acs:ram::").ok_or_else(bad)?;
    let (account, name) = rest.split_once(":oidc-provider/").ok_or_else(bad)?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) || !name_ok {
        return Err(bad());
    }
    Ok(account)
}

/// RAM role names: 1-64 letters, digits, `.` and `-`.
fn valid_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
}

fn host_overrides(args: &Args) -> Result<HashMap<String, HostOverride>, String> {
    let mut map: HashMap<String, HostOverride> = HashMap::new();
    if let Some(path) = &args.hosts_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--hosts-file {}: {e}", path.display()))?;
        let file: HashMap<String, HostOverride> = serde_json::from_str(&text)
            .map_err(|e| format!("--hosts-file {}: {e}", path.display()))?;
        map.extend(file.into_iter().map(|(k, v)| (normalize_host(&k), v)));
    }
    for spec in &args.hosts {
        let bad = || format!("--host {spec:?}: expected HOST=INSTANCE_ID@REGION");
        let (host, target) = spec.split_once('=').ok_or_else(bad)?;
        let (instance, region) = target.split_once('@').ok_or_else(bad)?;
        if host.trim().is_empty() || instance.is_empty() || region.is_empty() {
            return Err(bad());
        }
        map.insert(normalize_host(host), {
            let mut o = HostOverride::enterprise(instance);
            o.region = Some(region.to_owned());
            o
        });
    }
    Ok(map)
}

/// The credentials for this request: the ServiceAccount's role, or the node's chain.
fn credentials_for(args: &Args, req: &Request) -> Result<SharedProvider, String> {
    let role_name = req.annotations.get(ROLE_ANNOTATION);
    let Some(token) = &req.service_account_token else {
        if role_name.is_some() {
            return Err(format!(
                "the ServiceAccount has {ROLE_ANNOTATION} but the kubelet sent no ServiceAccount \
                 token: set tokenAttributes.serviceAccountTokenAudience in the kubelet's \
                 CredentialProviderConfig"
            ));
        }
        let mut chain = DefaultCredentialsChain::new(ProviderEnv::process());
        if let Some(p) = &args.profile {
            chain = chain.with_profile(p);
        }
        return Ok(Arc::new(chain));
    };
    // A workload that sent its own identity is never served with the node's.
    let role_name = role_name.ok_or_else(|| {
        format!(
            "the kubelet sent a ServiceAccount token but the ServiceAccount has no {ROLE_ANNOTATION} \
             annotation; annotate the ServiceAccount with the RAM role to pull as, and list the key \
             in tokenAttributes.requiredServiceAccountAnnotationKeys (the node identity is not used \
             for a pod whose token was sent)"
        )
    })?;
    if !valid_role_name(role_name) {
        return Err(format!(
            "annotation {ROLE_ANNOTATION} {role_name:?} is not a RAM role name (1-64 letters, digits, '.', '-')"
        ));
    }
    let provider_arn = args
        .oidc_provider_arn
        .clone()
        .or_else(|| std::env::var(PROVIDER_ARN_ENV).ok())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            format!(
                "a ServiceAccount token needs the cluster's OIDC provider: set --oidc-provider-arn or {PROVIDER_ARN_ENV}"
            )
        })?;
    let account = provider_account(&provider_arn)?;
    let role_arn = format!("acs:ram::{account}:role/{role_name}");
    let session = args
        .role_session_name
        .clone()
        .or_else(|| std::env::var("ALIBABA_CLOUD_ROLE_SESSION_NAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned());
    let provider = OidcProvider::builder_with_token(&role_arn, &provider_arn, token.clone())
        .session_name(session)
        .env(ProviderEnv::process())
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(provider))
}

async fn respond(args: &Args, input: &str) -> Result<String, String> {
    let threshold: Duration =
        parse_go_duration(&args.threshold).map_err(|e| format!("--threshold: {e}"))?;
    let overrides = host_overrides(args)?;
    let req = parse_request(input)?;
    // Checked before the image: a misconfigured per-ServiceAccount setup is reported for
    // every image, not only for ACR ones.
    let credentials = credentials_for(args, &req)?;
    let empty = json!({"apiVersion": req.api_version, "kind": "CredentialProviderResponse",
                       "cacheKeyType": "Registry", "auth": {}});
    let Some(host) = registry_host_of_image(&req.image) else {
        return Ok(empty.to_string());
    };
    let resolver = LoginResolver::new(credentials, overrides);
    let token = match resolver.login(host).await {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotConfigured => return Ok(empty.to_string()),
        Err(e) => return Err(e.to_string()),
    };
    let cache_for = token.remaining(SystemClock.now()).saturating_sub(threshold);
    // `Registry`: an ACR login is good for every image of the host. In per-ServiceAccount mode
    // the kubelet adds the ServiceAccount (tokenAttributes.cacheType: ServiceAccount) to the
    // key, so one workload's login is never served to another.
    Ok(json!({
        "apiVersion": req.api_version,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": format_go_duration(Duration::from_secs(cache_for.as_secs())),
        "auth": {host: {"username": token.username, "password": token.password.expose()}},
    })
    .to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("acr-credential-provider: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acr-credential-provider: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(respond(&args, &input)) {
        Ok(out) => {
            let _ = writeln!(std::io::stdout(), "{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("acr-credential-provider: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_arns() {
        assert_eq!(
            provider_account("acs:ram::1234567890:oidc-provider/ack-rrsa-c1"),
            Ok("1234567890")
        );
        for bad in [
            "",
            "acs:ram::1234:role/x",
            "acs:ram:::oidc-provider/x",
            "acs:ram::12a4:oidc-provider/x",
            "acs:ram::1234:oidc-provider/",
            "acs:ram::1234:oidc-provider/a/b",
            "arn:aws:iam::1234:oidc-provider/x",
        ] {
            assert!(provider_account(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_names() {
        assert!(valid_role_name("acr-puller.v2"));
        for bad in ["", "a/b", "acs:ram::1:role/x", &"x".repeat(65)] {
            assert!(!valid_role_name(bad), "{bad}");
        }
    }
}
