//! `acr-auth-core`: short-lived Alibaba Cloud Container Registry (ACR) credentials.
//!
//! No Kubernetes and no Python here: request signing ([`sign`]), credentials
//! ([`credentials`]), the ACR client ([`acr`]), `.dockerconfigjson` ([`docker_config`]), and the
//! clock ([`time`]).
//!
//! ```no_run
//! use acr_auth_core::acr::AcrClient;
//!
//! # async fn run() -> Result<(), acr_auth_core::Error> {
//! // Credentials from the default chain (environment, RRSA, CLI profile, credentials file,
//! // ECS instance role, credentials URI), as the official SDKs; or pass
//! // `.credentials(Credentials::new(..))` / `.credentials_provider(..)`.
//! let client = AcrClient::builder("cn-hangzhou").build()?;
//! let token = client.get_authorization_token("cri-abcdefghijklmnop").await?;
//! println!("{} until {:?}", token.username, token.expires_at);
//! # Ok(()) }
//! ```
//!
//! # Runtime
//!
//! The network calls are `async` and must run inside a [Tokio](https://tokio.rs) runtime with
//! the I/O and time drivers enabled (`enable_all()`, or `#[tokio::main]`), current-thread or
//! multi-thread: reqwest needs the I/O driver, timeouts and retry backoff need the timer.
//! Building clients and providers needs no runtime and does no I/O. One client (and one
//! [`reqwest::Client`], shared by everything built without one: see [`http`]) can be used from
//! many tasks at once.
//!
//! ```
//! use acr_auth_core::acr::{AcrClient, Endpoint};
//! use acr_auth_core::credentials::Credentials;
//! use acr_auth_core::http::RetryPolicy;
//! use acr_auth_core::ErrorKind;
//!
//! let runtime = tokio::runtime::Builder::new_current_thread()
//!     .enable_all()
//!     .build()
//!     .unwrap();
//! let client = AcrClient::builder("cn-hangzhou")
//!     .credentials(Credentials::new("LTAI-example", "example-secret"))
//!     // Nothing listens on port 1: the call fails fast, without retries.
//!     .endpoint(Endpoint::Url("http://127.0.0.1:1".into()))
//!     .retry(RetryPolicy::none())
//!     .build()
//!     .unwrap();
//! let e = runtime
//!     .block_on(client.get_authorization_token("cri-abcdefghijklmnop"))
//!     .unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::Transport);
//! assert!(e.is_retryable());
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
