//! `acr_auth._acr_auth`: the native module of the Python package `acr_auth`.
//!
//! A thin layer over `acr-auth-core` and `acr-auth-kube`: every blocking call releases the GIL
//! while Rust works on one shared tokio runtime; `*_async` methods return asyncio futures.

mod client;
mod config;
mod convert;
mod credentials;
mod errors;
mod login;
mod options;
mod plan;
mod runtime;
mod sign;

use pyo3::prelude::*;

#[pymodule]
fn _acr_auth(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(sign::percent_encode, m)?)?;
    m.add_function(wrap_pyfunction!(sign::sign_rpc, m)?)?;
    m.add_function(wrap_pyfunction!(sign::sign_roa, m)?)?;
    m.add_function(wrap_pyfunction!(sign::sign_v3, m)?)?;
    m.add_function(wrap_pyfunction!(plan::docker_config_json, m)?)?;
    m.add_function(wrap_pyfunction!(plan::desired_secret, m)?)?;
    m.add_function(wrap_pyfunction!(plan::service_account_patch, m)?)?;
    m.add_class::<credentials::Credentials>()?;
    m.add_class::<credentials::CredentialsProvider>()?;
    m.add_class::<credentials::StaticCredentials>()?;
    m.add_class::<credentials::EnvCredentials>()?;
    m.add_class::<credentials::ProfileCredentials>()?;
    m.add_class::<credentials::EcsMetadataCredentials>()?;
    m.add_class::<credentials::AssumeRoleCredentials>()?;
    m.add_class::<credentials::OidcCredentials>()?;
    m.add_class::<credentials::DefaultCredentialChain>()?;
    m.add_class::<client::AcrClient>()?;
    m.add_class::<client::RegistryToken>()?;
    m.add_class::<login::LoginResolver>()?;
    m.add_class::<config::HelperConfig>()?;
    Ok(())
}
