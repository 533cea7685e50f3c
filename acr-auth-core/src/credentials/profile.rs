//! Profile files: the aliyun CLI's `~/.aliyun/config.json` and the credentials SDKs' INI file
//! `~/.alibabacloud/credentials[.ini]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{
    AssumeRoleProvider, Credentials, EcsMetadataProvider, OidcProvider, ProvideCredentials,
    ProviderEnv,
};
use crate::error::Error;

/// A shared provider.
pub type SharedProvider = Arc<dyn ProvideCredentials>;

const CLI: &str = "aliyun CLI profile";
const INI: &str = "credentials file";

#[derive(Debug, Default, Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: Option<String>,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct CliProfile {
    name: String,
    mode: String,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    sts_token: Option<String>,
    ram_role_arn: Option<String>,
    ram_session_name: Option<String>,
    role_session_name: Option<String>,
    expired_seconds: Option<u64>,
    sts_region: Option<String>,
    sts_endpoint: Option<String>,
    enable_vpc: Option<bool>,
    policy: Option<String>,
    external_id: Option<String>,
    ram_role_name: Option<String>,
    oidc_provider_arn: Option<String>,
    oidc_token_file: Option<String>,
    source_profile: Option<String>,
}

fn read_optional(env: &ProviderEnv, path: &Path, source: &str) -> Result<Option<String>, Error> {
    match env.read_file(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::credentials(
            source,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// The provider described by the aliyun CLI config: profile `profile`, else
/// `ALIBABA_CLOUD_PROFILE`, else the file's `current`. The file is `ALIBABA_CLOUD_CONFIG_FILE`
/// or `~/.aliyun/config.json`. Not configured when the file does not exist or
/// `ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true`.
///
/// Modes: `AK`, `StsToken`, `RamRoleArn`, `EcsRamRole`, `OIDC`, `ChainableRamRoleArn`.
pub fn cli_profile_provider(
    env: &ProviderEnv,
    profile: Option<&str>,
) -> Result<SharedProvider, Error> {
    if env.flag("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
        return Err(Error::not_configured(
            CLI,
            "ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true",
        ));
    }
    let path = match env.var("ALIBABA_CLOUD_CONFIG_FILE") {
        Some(p) => PathBuf::from(p),
        None => match env.home() {
            Some(h) => h.join(".aliyun/config.json"),
            None => return Err(Error::not_configured(CLI, "no home directory")),
        },
    };
    let Some(text) = read_optional(env, &path, CLI)? else {
        return Err(Error::not_configured(
            CLI,
            format!("{} not found", path.display()),
        ));
    };
    let config: CliConfig = serde_json::from_str(&text).map_err(|e| {
        Error::credentials(
            CLI,
            format!("{} is not a valid aliyun CLI config: {e}", path.display()),
        )
    })?;
    let name = profile
        .map(str::to_owned)
        .or_else(|| env.var("ALIBABA_CLOUD_PROFILE"))
        .or(config.current.clone())
        .ok_or_else(|| {
            Error::credentials(CLI, format!("{} names no current profile", path.display()))
        })?;
    cli_profile(env, &config, &name, &path, 0)
}

fn cli_profile(
    env: &ProviderEnv,
    config: &CliConfig,
    name: &str,
    path: &Path,
    depth: usize,
) -> Result<SharedProvider, Error> {
    if depth > 8 {
        return Err(Error::credentials(
            CLI,
            format!("source_profile chain through {name:?} is too deep (a cycle?)"),
        ));
    }
    let p = config
        .profiles
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
            Error::credentials(
                CLI,
                format!(
                    "profile {name:?} not found in {} (profiles: {})",
                    path.display(),
                    names.join(", ")
                ),
            )
        })?;
    let need = |v: &Option<String>, key: &str| -> Result<String, Error> {
        v.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            Error::credentials(
                CLI,
                format!(
                    "profile {name:?} (mode {}) in {} needs {key}",
                    p.mode,
                    path.display()
                ),
            )
        })
    };
    let static_key = || -> Result<Credentials, Error> {
        Ok(Credentials::new(
            need(&p.access_key_id, "access_key_id")?,
            need(&p.access_key_secret, "access_key_secret")?,
        ))
    };
    let assume = |source: SharedProvider| -> Result<SharedProvider, Error> {
        let mut b = AssumeRoleProvider::builder(source, need(&p.ram_role_arn, "ram_role_arn")?)
            .env(env.clone());
        if let Some(s) = p.ram_session_name.clone().filter(|s| !s.is_empty()) {
            b = b.session_name(s);
        }
        if let Some(secs) = p.expired_seconds {
            b = b.duration(Duration::from_secs(secs));
        }
        if let Some(r) = &p.sts_region {
            b = b.sts_region(r);
        }
        if let Some(e) = &p.sts_endpoint {
            b = b.sts_endpoint(e);
        }
        if let Some(pol) = &p.policy {
            b = b.policy(pol);
        }
        if let Some(x) = &p.external_id {
            b = b.external_id(x);
        }
        Ok(Arc::new(b.vpc(p.enable_vpc.unwrap_or(false)).build()?))
    };
    match p.mode.as_str() {
        "AK" => Ok(Arc::new(static_key()?)),
        "StsToken" => Ok(Arc::new(static_key()?.with_security_token(need(&p.sts_token, "sts_token")?))),
        "RamRoleArn" => assume(Arc::new(static_key()?)),
        "ChainableRamRoleArn" => {
            let source = need(&p.source_profile, "source_profile")?;
            assume(cli_profile(env, config, &source, path, depth + 1)?)
        }
        "EcsRamRole" => {
            let mut provider = EcsMetadataProvider::from_env(env)?;
            if let Some(role) = p.ram_role_name.clone().filter(|s| !s.is_empty()) {
                provider = provider.with_role_name(role);
            }
            Ok(Arc::new(provider))
        }
        "OIDC" => {
            let mut b = OidcProvider::builder(
                need(&p.ram_role_arn, "ram_role_arn")?,
                need(&p.oidc_provider_arn, "oidc_provider_arn")?,
                need(&p.oidc_token_file, "oidc_token_file")?,
            )
            .env(env.clone());
            if let Some(s) = p.role_session_name.clone().or(p.ram_session_name.clone()).filter(|s| !s.is_empty()) {
                b = b.session_name(s);
            }
            if let Some(secs) = p.expired_seconds {
                b = b.duration(Duration::from_secs(secs));
            }
            if let Some(r) = &p.sts_region {
                b = b.sts_region(r);
            }
            Ok(Arc::new(b.build()?))
        }
        other => Err(Error::credentials(
            CLI,
            format!("profile {name:?} has mode {other:?}; supported: AK, StsToken, RamRoleArn, EcsRamRole, OIDC, ChainableRamRoleArn"),
        )),
    }
}

/// Sections of an INI file (rust-ini): `[name]` then `key = value` lines. Comment lines start
/// with `#` or `;`, and so does an inline comment after whitespace (`key = value # note`). Quotes
/// and backslashes are kept as written: a secret is taken verbatim.
fn parse_ini(text: &str, path: &Path) -> Result<HashMap<String, HashMap<String, String>>, Error> {
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ini::ParseOption::default()
    };
    let parsed = ini::Ini::load_from_str_opt(text, options).map_err(|e| {
        // rust-ini counts lines from 0, and reports a line without `=` at the end of the file.
        let what = if e.msg.contains("EOF") {
            "expected `key = value` (a line without `=`)".into()
        } else {
            e.msg
        };
        Error::credentials(
            INI,
            format!("{} near line {}: {what}", path.display(), e.line + 1),
        )
    })?;
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    for (name, props) in parsed.iter() {
        let Some(name) = name else {
            if let Some((key, _)) = props.iter().next() {
                return Err(Error::credentials(
                    INI,
                    format!("{}: key {key:?} outside any [section]", path.display()),
                ));
            }
            continue;
        };
        let section = sections.entry(name.trim().to_owned()).or_default();
        for (k, v) in props.iter() {
            // rust-ini reads a key up to the next `=`, across lines: a line without `=` ends up
            // at the front of the next key.
            if let Some((line, _)) = k.split_once('\n') {
                return Err(Error::credentials(
                    INI,
                    format!(
                        "{}: expected `key = value`, found {:?} in [{name}]",
                        path.display(),
                        line.trim()
                    ),
                ));
            }
            section.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(sections)
}

/// The provider described by the INI credentials file: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else
/// `~/.alibabacloud/credentials`, else `~/.alibabacloud/credentials.ini`; section
/// `ALIBABA_CLOUD_PROFILE` or `default`. Types: `access_key`, `ecs_ram_role`, `ram_role_arn`,
/// `oidc_role_arn`.
pub fn ini_file_provider(env: &ProviderEnv) -> Result<SharedProvider, Error> {
    let (path, text) = match env.var("ALIBABA_CLOUD_CREDENTIALS_FILE") {
        Some(p) => {
            let path = PathBuf::from(p);
            let text = read_optional(env, &path, INI)?.ok_or_else(|| {
                Error::credentials(
                    INI,
                    format!(
                        "ALIBABA_CLOUD_CREDENTIALS_FILE names {}, which does not exist",
                        path.display()
                    ),
                )
            })?;
            (path, text)
        }
        None => {
            let Some(home) = env.home() else {
                return Err(Error::not_configured(INI, "no home directory"));
            };
            let candidates = [
                home.join(".alibabacloud/credentials"),
                home.join(".alibabacloud/credentials.ini"),
            ];
            let mut found = None;
            for c in candidates {
                if let Some(text) = read_optional(env, &c, INI)? {
                    found = Some((c, text));
                    break;
                }
            }
            found.ok_or_else(|| {
                Error::not_configured(INI, "~/.alibabacloud/credentials[.ini] not found")
            })?
        }
    };
    let sections = parse_ini(&text, &path)?;
    let explicit = env.var("ALIBABA_CLOUD_PROFILE");
    let name = explicit.clone().unwrap_or_else(|| "default".to_owned());
    let Some(s) = sections.get(&name) else {
        let msg = format!("no [{name}] section in {}", path.display());
        return Err(if explicit.is_some() {
            Error::credentials(INI, msg)
        } else {
            Error::not_configured(INI, msg)
        });
    };
    let need = |key: &str| -> Result<String, Error> {
        s.get(key)
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .ok_or_else(|| {
                Error::credentials(INI, format!("[{name}] in {} needs {key}", path.display()))
            })
    };
    let kind = need("type")?;
    match kind.as_str() {
        "access_key" => Ok(Arc::new(Credentials::new(need("access_key_id")?, need("access_key_secret")?))),
        "ecs_ram_role" => Ok(Arc::new(EcsMetadataProvider::from_env(env)?.with_role_name(need("role_name")?))),
        "ram_role_arn" => {
            let source: SharedProvider = Arc::new(Credentials::new(need("access_key_id")?, need("access_key_secret")?));
            let mut b = AssumeRoleProvider::builder(source, need("role_arn")?)
                .session_name(need("role_session_name")?)
                .env(env.clone());
            if let Some(p) = s.get("policy").filter(|p| !p.is_empty()) {
                b = b.policy(p);
            }
            Ok(Arc::new(b.build()?))
        }
        "oidc_role_arn" => {
            let mut b = OidcProvider::builder(need("role_arn")?, need("oidc_provider_arn")?, need("oidc_token_file_path")?)
                .env(env.clone());
            if let Some(n) = s.get("role_session_name").filter(|n| !n.is_empty()) {
                b = b.session_name(n);
            }
            Ok(Arc::new(b.build()?))
        }
        other => Err(Error::credentials(
            INI,
            format!("[{name}] in {} has type {other:?}; supported: access_key, ecs_ram_role, ram_role_arn, oidc_role_arn", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_comments_sections_and_errors() {
        let text = "# top comment\n[default]\ntype = access_key\naccess_key_id = foo # trailing\n; other comment\n\n[p2]\nk=v\n";
        let s = parse_ini(text, Path::new("f")).unwrap();
        assert_eq!(s["default"]["access_key_id"], "foo");
        assert_eq!(s["p2"]["k"], "v");
        let e = parse_ini("k = v\n", Path::new("f")).unwrap_err();
        assert!(
            e.to_string().contains("f: key \"k\" outside any [section]"),
            "{e}"
        );
        // Quotes and backslashes are part of the value.
        let s = parse_ini("[a]\nk = \"x\\y\"\n", Path::new("f")).unwrap();
        assert_eq!(s["a"]["k"], "\"x\\y\"");
        let e = parse_ini("[a]\nnonsense\n", Path::new("f")).unwrap_err();
        assert!(e.to_string().contains("expected `key = value`"), "{e}");
        let e = parse_ini("[a]\nnonsense\nk = v\n", Path::new("f")).unwrap_err();
        assert!(
            e.to_string()
                .contains("f: expected `key = value`, found \"nonsense\" in [a]"),
            "{e}"
        );
    }
}
