//! Request signing for Alibaba Cloud APIs, as pure functions: time and nonce are inputs, and
//! nothing here reads a clock, the environment or the network.
//!
//! - [`RpcStringToSign`], [`sign_rpc_request`]: RPC style, HMAC-SHA1, `SignatureVersion=1.0`.
//! - [`RoaStringToSign`]: ROA style, HMAC-SHA1, `Authorization: acs AK:signature`.
//! - [`V3Signature`]: `ACS3-HMAC-SHA256`, for either style.
//!
//! The rules and test vectors are those of Alibaba's documentation and official SDKs.

mod encode;
mod roa;
mod rpc;
mod v3;

pub use encode::{
    parse_query, percent_decode, percent_encode, percent_encode_into, percent_encode_path,
};
pub use roa::{roa_signature, RoaStringToSign};
pub use rpc::{rpc_signature, sign_rpc_request, RpcRequest, RpcStringToSign, SignedRpcRequest};
pub use v3::{sha256_hex, V3Authorization, V3Signature, EMPTY_SHA256, V3_ALGORITHM};

use std::fmt;
use std::str::FromStr;

/// `text` with the value of every `x-acs-security-token:` line replaced by `<redacted>`; for
/// logging ROA strings to sign and V3 canonical requests.
fn redact_security_token_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| match line.strip_prefix("x-acs-security-token:") {
            Some(_) => "x-acs-security-token:<redacted>",
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The HTTP methods the signed APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The upper-case method name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method name that is not one of [`Method`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported HTTP method {0:?}: expected GET, POST, PUT or DELETE")]
pub struct UnsupportedMethod(pub String);

impl FromStr for Method {
    type Err = UnsupportedMethod;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Ok(Method::Get),
            "POST" => Ok(Method::Post),
            "PUT" => Ok(Method::Put),
            "DELETE" => Ok(Method::Delete),
            _ => Err(UnsupportedMethod(s.to_owned())),
        }
    }
}
