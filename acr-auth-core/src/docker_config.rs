//! `.dockerconfigjson`: the content of a `kubernetes.io/dockerconfigjson` Secret and of a
//! docker/skopeo auth file.
//!
//! ```
//! use acr_auth_core::docker_config::DockerConfig;
//! let mut config = DockerConfig::default();
//! config.insert("registry.cn-hangzhou.aliyuncs.com", "cr_temp_user", "pa55");
//! let json = config.to_json();
//! assert_eq!(json, r#"{"auths":{"registry.cn-hangzhou.aliyuncs.com":{"username":"cr_temp_user","password":"pa55","auth":"Y3JfdGVtcF91c2VyOnBhNTU="}}}"#);
//! assert_eq!(DockerConfig::parse(&json).unwrap(), config);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde_json::Value;

use crate::acr::RegistryToken;
use crate::SecretString;

const B64: base64::engine::general_purpose::GeneralPurpose =
    base64::engine::general_purpose::STANDARD;

/// One registry login.
#[derive(Clone, PartialEq, Eq)]
pub struct DockerAuth {
    /// User name.
    pub username: String,
    /// Password (redacted in `Debug`).
    pub password: SecretString,
}

impl fmt::Debug for DockerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerAuth")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// A docker config: registry host -> login. Hosts are kept sorted so rendering is
/// deterministic (the same content always gives the same bytes, so unchanged Secrets are
/// never rewritten).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// Logins by registry host.
    pub auths: BTreeMap<String, DockerAuth>,
}

/// A `.dockerconfigjson` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid .dockerconfigjson: {0}")]
pub struct DockerConfigError(String);

impl DockerConfig {
    /// A config with `token` for every host in `hosts`.
    pub fn from_token<I, S>(hosts: I, token: &RegistryToken) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut c = Self::default();
        for host in hosts {
            c.insert(host, token.username.clone(), token.password.clone());
        }
        c
    }

    /// Adds or replaces the login for `host`.
    pub fn insert(
        &mut self,
        host: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<SecretString>,
    ) {
        self.auths.insert(
            host.into(),
            DockerAuth {
                username: username.into(),
                password: password.into(),
            },
        );
    }

    fn render(&self, redact: bool) -> String {
        fn json_str(out: &mut String, s: &str) {
            out.push_str(&Value::String(s.to_owned()).to_string());
        }
        // Written by hand to keep the conventional field order (username, password, auth);
        // hosts come sorted from the BTreeMap, so equal content gives equal bytes.
        let mut out = String::with_capacity(32 + self.auths.len() * 192);
        out.push_str("{\"auths\":{");
        for (i, (host, a)) in self.auths.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, host);
            out.push_str(":{\"username\":");
            json_str(&mut out, &a.username);
            out.push_str(",\"password\":");
            if redact {
                out.push_str("\"<redacted>\",\"auth\":\"<redacted>\"}");
            } else {
                let p = a.password.expose();
                json_str(&mut out, p);
                out.push_str(",\"auth\":\"");
                B64.encode_string(format!("{}:{p}", a.username), &mut out);
                out.push_str("\"}");
            }
        }
        out.push_str("}}");
        out
    }

    /// The `.dockerconfigjson` text: `{"auths":{host:{"username","password","auth"}}}` with
    /// `auth = base64(username:password)`. Contains secrets.
    pub fn to_json(&self) -> String {
        self.render(false)
    }

    /// The same shape with passwords and `auth` replaced by `<redacted>`, for display.
    pub fn to_json_redacted(&self) -> String {
        self.render(true)
    }

    /// Reads a `.dockerconfigjson`. Each entry needs `username` and `password`, or `auth`
    /// (`base64(username:password)`), or both, in which case they must agree.
    pub fn parse(text: &str) -> Result<Self, DockerConfigError> {
        let err = |m: String| DockerConfigError(m);
        let root: Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON ({e})")))?;
        let auths = root
            .get("auths")
            .ok_or_else(|| err("missing \"auths\"".into()))?
            .as_object()
            .ok_or_else(|| err("\"auths\" is not an object".into()))?;
        let mut config = Self::default();
        for (host, entry) in auths {
            let entry = entry
                .as_object()
                .ok_or_else(|| err(format!("auths.{host} is not an object")))?;
            let text_field = |name: &str| -> Result<Option<&str>, DockerConfigError> {
                match entry.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.as_str())),
                    Some(_) => Err(err(format!("auths.{host}.{name} is not a string"))),
                }
            };
            let from_auth = match text_field("auth")?.filter(|a| !a.is_empty()) {
                None => None,
                Some(a) => {
                    let decoded = B64
                        .decode(a)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| err(format!("auths.{host}.auth is not base64 of UTF-8")))?;
                    let (u, p) = decoded.split_once(':').ok_or_else(|| {
                        err(format!(
                            "auths.{host}.auth does not decode to username:password"
                        ))
                    })?;
                    Some((u.to_owned(), p.to_owned()))
                }
            };
            let explicit = match (text_field("username")?, text_field("password")?) {
                (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
                (None, None) => None,
                _ => {
                    return Err(err(format!(
                        "auths.{host} has only one of username and password"
                    )))
                }
            };
            let (username, password) = match (explicit, from_auth) {
                (Some(e), Some(a)) if e != a => {
                    return Err(err(format!(
                        "auths.{host}: auth disagrees with username/password"
                    )))
                }
                (Some(e), _) => e,
                (None, Some(a)) => a,
                (None, None) => {
                    return Err(err(format!(
                        "auths.{host} has neither username/password nor auth"
                    )))
                }
            };
            config.insert(host.clone(), username, password);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_rendering_has_no_password() {
        let mut c = DockerConfig::default();
        c.insert("h", "u", "s3cr3t-pw");
        let r = c.to_json_redacted();
        assert!(
            !r.contains("s3cr3t-pw") && !r.contains(&B64.encode("u:s3cr3t-pw")),
            "{r}"
        );
        assert!(!format!("{c:?}").contains("s3cr3t-pw"));
    }

    #[test]
    fn parses_auth_only_entries_and_rejects_inconsistent_ones() {
        let only_auth = format!(
            r#"{{"auths":{{"h":{{"auth":"{}"}}}}}}"#,
            B64.encode("u:p:q")
        );
        let c = DockerConfig::parse(&only_auth).unwrap();
        assert_eq!(c.auths["h"].password.expose(), "p:q");
        let inconsistent = format!(
            r#"{{"auths":{{"h":{{"username":"u","password":"x","auth":"{}"}}}}}}"#,
            B64.encode("u:y")
        );
        assert!(DockerConfig::parse(&inconsistent)
            .unwrap_err()
            .to_string()
            .contains("disagrees"));
        for bad in [
            r#"[]"#,
            r#"{"auths":1}"#,
            r#"{"auths":{"h":{}}}"#,
            r#"{"auths":{"h":{"auth":"!!"}}}"#,
        ] {
            assert!(DockerConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn special_characters_are_json_escaped() {
        let mut c = DockerConfig::default();
        c.insert("h", "u\"", "p\\\n");
        assert_eq!(DockerConfig::parse(&c.to_json()).unwrap(), c);
    }
}
