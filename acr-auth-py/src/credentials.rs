//! `Credentials` and the provider classes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use acr_auth_core::credentials::{
    cli_profile_provider, AssumeRoleProvider, Credentials as CoreCredentials,
    DefaultCredentialsChain, EcsMetadataProvider, EnvironmentProvider, OidcProvider, ProviderEnv,
    SharedProvider,
};
use pyo3::prelude::*;

use crate::convert;
use crate::errors::IntoPyResult;
use crate::runtime;

/// An AccessKey pair, optionally temporary (STS). ``repr`` never shows the secret or token.
#[pyclass(frozen, module = "acr_auth._acr_auth")]
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) inner: CoreCredentials,
}

#[pymethods]
impl Credentials {
    #[new]
    #[pyo3(signature = (access_key_id, access_key_secret, security_token=None))]
    fn new(
        access_key_id: String,
        access_key_secret: String,
        security_token: Option<String>,
    ) -> Self {
        let c = CoreCredentials::new(access_key_id, access_key_secret);
        Self {
            inner: match security_token {
                Some(t) => c.with_security_token(t),
                None => c,
            },
        }
    }

    /// The AccessKey ID.
    #[getter]
    fn access_key_id(&self) -> &str {
        self.inner.access_key_id()
    }

    /// The AccessKey secret.
    #[getter]
    fn access_key_secret(&self) -> &str {
        self.inner.access_key_secret().expose()
    }

    /// The STS security token, for temporary credentials.
    #[getter]
    fn security_token(&self) -> Option<&str> {
        self.inner.security_token().map(|t| t.expose())
    }

    /// When they expire (aware UTC ``datetime``), if they do.
    #[getter]
    fn expiration<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .expires_at()
            .map(|t| convert::datetime(py, t))
            .transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "Credentials(access_key_id='{}', access_key_secret=<redacted>, security_token={})",
            self.inner.access_key_id(),
            if self.inner.security_token().is_some() {
                "<redacted>"
            } else {
                "None"
            }
        )
    }
}

/// Base class of every credentials provider: ``get()`` and ``await get_async()``.
#[pyclass(subclass, frozen, module = "acr_auth._acr_auth")]
pub(crate) struct CredentialsProvider {
    pub(crate) inner: SharedProvider,
    name: &'static str,
}

impl CredentialsProvider {
    fn wrap(inner: SharedProvider, name: &'static str) -> Self {
        Self { inner, name }
    }
}

#[pymethods]
impl CredentialsProvider {
    /// The current credentials (cached and renewed ahead of expiry where they expire).
    fn get(&self, py: Python<'_>) -> PyResult<Credentials> {
        let p = self.inner.clone();
        runtime::block_on(py, async move { p.provide_credentials().await })?
            .py_err(py)
            .map(|inner| Credentials { inner })
    }

    /// ``get()`` for asyncio.
    fn get_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let p = self.inner.clone();
        runtime::coroutine(py, async move { p.provide_credentials().await }, |py, r| {
            let inner = r.py_err(py)?;
            Ok(Py::new(py, Credentials { inner })?.into_any())
        })
    }

    fn __repr__(&self) -> String {
        format!("<{}>", self.name)
    }
}

/// `sub` constructed over its `CredentialsProvider` base.
fn sub<T: pyo3::PyClass<BaseType = CredentialsProvider>>(
    sub: T,
    base: CredentialsProvider,
) -> PyClassInitializer<T> {
    PyClassInitializer::from(base).add_subclass(sub)
}

fn env() -> ProviderEnv {
    ProviderEnv::process()
}

/// Fixed credentials.
#[pyclass(extends = CredentialsProvider, frozen, module = "acr_auth._acr_auth")]
pub(crate) struct StaticCredentials;

#[pymethods]
impl StaticCredentials {
    #[new]
    #[pyo3(signature = (access_key_id, access_key_secret, security_token=None))]
    fn new(
        access_key_id: String,
        access_key_secret: String,
        security_token: Option<String>,
    ) -> PyClassInitializer<Self> {
        let c = Credentials::new(access_key_id, access_key_secret, security_token).inner;
        sub(
            Self,
            CredentialsProvider::wrap(Arc::new(c), "StaticCredentials"),
        )
    }
}

/// ``ALIBABA_CLOUD_ACCESS_KEY_ID``, ``_SECRET`` and ``_SECURITY_TOKEN``, read at every ``get()``.
#[pyclass(extends = CredentialsProvider, frozen, module = "acr_auth._acr_auth")]
pub(crate) struct EnvCredentials;

#[pymethods]
impl EnvCredentials {
    #[new]
    fn new() -> PyClassInitializer<Self> {
        sub(
            Self,
            CredentialsProvider::wrap(Arc::new(EnvironmentProvider::new(env())), "EnvCredentials"),
        )
    }
}

/// A profile of the aliyun CLI config (``~/.aliyun/config.json``).
#[pyclass(extends = CredentialsProvider, frozen, module = "acr_auth._acr_auth")]
pub(crate) struct ProfileCredentials;

#[pymethods]
impl ProfileCredentials {
    #[new]
    #[pyo3(signature = (profile=None))]
    fn new(py: Python<'_>, profile: Option<&str>) -> PyResult<PyClassInitializer<Self>> {
        let p = cli_profile_provider(&env(), profile).py_err(py)?;
        Ok(sub(
            Self,
            CredentialsProvider::wrap(p, "ProfileCredentials"),
        ))
    }
}

/// The ECS instance RAM role, from the metadata service (hardened mode first).
#[pyclass(extends = CredentialsProvider, frozen, module = "acr_auth._acr_auth")]
pub(crate) struct EcsMetadataCredentials;

#[pymethods]
impl EcsMetadataCredentials {
    #[new]
    #[pyo3(signature = (role_name=None))]
    fn new(py: Python<'_>, role_name: Option<String>) -> PyResult<PyClassInitializer<Self>> {
        let mut p = EcsMetadataProvider::from_env(&env()).py_err(py)?;
        if let Some(r) = role_name {
            p = p.with_role_name(r);
        }
        Ok(sub(
            Self,
            CredentialsProvider::wrap(Arc::new(p), "EcsMetadataCredentials"),
        ))
    }
}

/// STS ``AssumeRole`` with credentials from ``source``.
#[pyclass(extends = CredentialsProvider, frozen, module = "acr_auth._acr_auth")]
pub(crate) struct AssumeRoleCredentials;

#[pymethods]
impl AssumeRoleCredentials {
    #[new]
    #[pyo3(signature = (source, role_arn, session_name=None, duration_seconds=3600, policy=None, external_id=None, sts_endpoint=None, sts_region=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        source: PyRef<'_, CredentialsProvider>,
        role_arn: String,
        session_name: Option<String>,
        duration_seconds: u64,
        policy: Option<String>,
        external_id: Option<String>,
        sts_endpoint: Option<String>,
        sts_region: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mut b = AssumeRoleProvider::builder(source.inner.clone(), role_arn)
            .duration(Duration::from_secs(duration_seconds))
            .env(env());
        if let Some(n) = session_name {
            b = b.session_name(n);
        }
        if let Some(p) = policy {
            b = b.policy(p);
        }
        if let Some(x) = external_id {
            b = b.external_id(x);
        }
        if let Some(e) = sts_endpoint {
            b = b.sts_endpoint(e);
        }
        if let Some(r) = sts_region {
            b = b.sts_region(r);
        }
        Ok(sub(
            Self,
            CredentialsProvider::wrap(Arc::new(b.build().py_err(py)?), "AssumeRoleCredentials"),
        ))
    }
}

/// STS ``AssumeRoleWithOIDC`` (RRSA). Arguments left out come from ``ALIBABA_CLOUD_ROLE_ARN``,
/// ``ALIBABA_CLOUD_OIDC_PROVIDER_ARN``, ``ALIBABA_CLOUD_OIDC_TOKEN_FILE`` and
/// ``ALIBABA_CLOUD_ROLE_SESSION_NAME``. The token file is re-read at every renewal.
#[pyclass(extends = CredentialsProvider, frozen, module = "acr_auth._acr_auth")]
pub(crate) struct OidcCredentials;

#[pymethods]
impl OidcCredentials {
    #[new]
    #[pyo3(signature = (role_arn=None, oidc_provider_arn=None, oidc_token_file=None, session_name=None, duration_seconds=3600, sts_endpoint=None))]
    fn new(
        py: Python<'_>,
        role_arn: Option<String>,
        oidc_provider_arn: Option<String>,
        oidc_token_file: Option<PathBuf>,
        session_name: Option<String>,
        duration_seconds: u64,
        sts_endpoint: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let env = env();
        let pick = |given: Option<String>, var: &str| -> PyResult<String> {
            given.or_else(|| env.var(var)).ok_or_else(|| {
                crate::errors::to_pyerr(
                    py,
                    &acr_auth_core::Error::credentials(
                        "OidcCredentials",
                        format!("pass it or set {var}"),
                    ),
                )
            })
        };
        let role = pick(role_arn, "ALIBABA_CLOUD_ROLE_ARN")?;
        let provider = pick(oidc_provider_arn, "ALIBABA_CLOUD_OIDC_PROVIDER_ARN")?;
        let file = match oidc_token_file {
            Some(f) => f,
            None => PathBuf::from(pick(None, "ALIBABA_CLOUD_OIDC_TOKEN_FILE")?),
        };
        let mut b = OidcProvider::builder(role, provider, file)
            .duration(Duration::from_secs(duration_seconds))
            .env(env.clone());
        if let Some(n) = session_name.or_else(|| env.var("ALIBABA_CLOUD_ROLE_SESSION_NAME")) {
            b = b.session_name(n);
        }
        if let Some(e) = sts_endpoint {
            b = b.sts_endpoint(e);
        }
        Ok(sub(
            Self,
            CredentialsProvider::wrap(Arc::new(b.build().py_err(py)?), "OidcCredentials"),
        ))
    }
}

/// The default chain: environment, OIDC (RRSA), aliyun CLI profile, credentials file, ECS
/// instance role, credentials URI.
#[pyclass(extends = CredentialsProvider, frozen, module = "acr_auth._acr_auth")]
pub(crate) struct DefaultCredentialChain;

#[pymethods]
impl DefaultCredentialChain {
    #[new]
    #[pyo3(signature = (profile=None))]
    fn new(profile: Option<String>) -> PyClassInitializer<Self> {
        let mut chain = DefaultCredentialsChain::new(env());
        if let Some(p) = profile {
            chain = chain.with_profile(p);
        }
        sub(
            Self,
            CredentialsProvider::wrap(Arc::new(chain), "DefaultCredentialChain"),
        )
    }
}
