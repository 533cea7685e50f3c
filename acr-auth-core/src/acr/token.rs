//! [`RegistryToken`]: a temporary registry login, and its parsing from ACR responses.

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::response::{field, required_epoch_millis, required_str, type_name};
use crate::SecretString;

/// A temporary registry credential: `docker login -u username -p password`, valid until
/// `expires_at`. The password is redacted in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryToken {
    /// The temporary user name (`TempUsername` / `tempUserName`).
    pub username: String,
    /// The password (`AuthorizationToken` / `authorizationToken`).
    pub password: SecretString,
    /// When it stops working.
    pub expires_at: SystemTime,
}

impl RegistryToken {
    /// Time left at `now`, zero once expired.
    pub fn remaining(&self, now: SystemTime) -> std::time::Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }

    /// Parses an Enterprise Edition `GetAuthorizationToken` success body.
    pub(crate) fn from_enterprise(obj: &Map<String, Value>, context: &str) -> Result<Self, Error> {
        Ok(Self {
            username: required_str(obj, "TempUsername", context)?,
            password: required_str(obj, "AuthorizationToken", context)?.into(),
            expires_at: required_epoch_millis(obj, "ExpireTime", context)?,
        })
    }

    /// Parses a Personal Edition `GET /tokens` success body (`{"data": {...}}`).
    pub(crate) fn from_personal(obj: &Map<String, Value>, context: &str) -> Result<Self, Error> {
        let data = match field(obj, "data") {
            Some(Value::Object(d)) => d,
            Some(other) => {
                return Err(Error::invalid_response(
                    context,
                    format!("field data should be an object, found {}", type_name(other)),
                ))
            }
            None => return Err(Error::invalid_response(context, "field data is missing")),
        };
        Ok(Self {
            username: required_str(data, "tempUserName", context)?,
            password: required_str(data, "authorizationToken", context)?.into(),
            expires_at: required_epoch_millis(data, "expireDate", context)?,
        })
    }
}

impl fmt::Debug for RegistryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryToken")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("expires_at", &crate::time::format_iso8601(self.expires_at))
            .finish()
    }
}

impl fmt::Display for RegistryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (password <redacted>, expires {})",
            self.username,
            crate::time::format_iso8601(self.expires_at)
        )
    }
}
