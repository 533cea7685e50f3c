//! `acr-auth-core`: short-lived Alibaba Cloud Container Registry (ACR) credentials.
//!
//! No Kubernetes and no Python here: request signing ([`sign`]), credentials
//! ([`credentials`]), the ACR client ([`acr`]), `.dockerconfigjson` ([`docker_config`]), and the
//! clock ([`time`]).
//!
//! ```no_run
//! use acr_auth_core::acr::AcrClient;
//! use acr_auth_core::credentials::Credentials;
//!
//! # async fn run() -> Result<(), acr_auth_core::Error> {
//! let client = AcrClient::builder("cn-hangzhou")
//!     .credentials(Credentials::new("LTAI...", "secret"))
//!     .build()?;
//! let token = client.get_authorization_token("cri-abcdefghijklmnop").await?;
//! println!("{} until {:?}", token.username, token.expires_at);
//! # Ok(()) }
//! ```

pub mod acr;
pub mod cache;
pub mod config;
pub mod credentials;
pub mod docker_config;
mod error;
pub mod http;
pub mod login;
mod response;
mod secret;
pub mod sign;
pub mod source;
pub mod time;

pub use error::{Error, ErrorKind};
pub use secret::SecretString;
