//! `LoginResolver`: registry host -> (region, instance) -> login, as docker credential helpers
//! and the kubelet credential provider do it.

use std::collections::HashMap;
use std::sync::Arc;

use acr_auth_core::acr::{is_instance_id, Endpoint};
use acr_auth_core::credentials::{DefaultCredentialsChain, ProviderEnv, SharedProvider};
use acr_auth_core::login::{HostOverride, LoginResolver as CoreResolver, ResolvedHost};
use acr_auth_core::Error;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::client::RegistryToken;
use crate::credentials::CredentialsProvider;
use crate::errors::IntoPyResult;
use crate::options::ClientOptions;
use crate::runtime;

/// Registry logins by host (or server URL): the host grammar of ACR tells the region and
/// edition, an Enterprise instance named in the host is looked up (``ListInstance``), and
/// ``overrides`` map other hosts (custom domains, mirrors) to an instance and region.
#[pyclass(frozen, module = "acr_auth._acr_auth")]
pub(crate) struct LoginResolver {
    inner: Arc<CoreResolver>,
}

/// `{"instance_id": ..., "region": ...}` (both optional) as a `HostOverride`.
fn host_override(host: &str, d: &Bound<'_, PyDict>) -> Result<HostOverride, Error> {
    const CTX: &str = "LoginResolver overrides";
    let mut o = HostOverride::default();
    for (k, v) in d.iter() {
        let key: String = k
            .extract()
            .map_err(|_| Error::invalid_input(CTX, format!("{host}: keys must be strings")))?;
        let value: Option<String> = v.extract().map_err(|_| {
            Error::invalid_input(CTX, format!("{host}: {key} must be a string or None"))
        })?;
        match key.as_str() {
            "instance_id" => o.instance_id = value,
            "region" => o.region = value,
            _ => {
                return Err(Error::invalid_input(
                    CTX,
                    format!("{host}: unknown key {key:?} (instance_id, region)"),
                ))
            }
        }
    }
    if let Some(id) = o.instance_id.as_deref().filter(|id| !is_instance_id(id)) {
        return Err(Error::invalid_input(
            CTX,
            format!("{host}: {id:?} is not an Enterprise Edition instance id (cri-xxxxxxxx)"),
        ));
    }
    Ok(o)
}

fn resolved_to_py(py: Python<'_>, r: &ResolvedHost) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    d.set_item("host", &r.host)?;
    d.set_item("region", &r.region)?;
    d.set_item("instance_id", &r.instance_id)?;
    Ok(d.into_any().unbind())
}

#[pymethods]
impl LoginResolver {
    #[new]
    #[pyo3(signature = (
        credentials=None,
        overrides=None,
        endpoint=None,
        *,
        connect_timeout=None,
        read_timeout=None,
        max_attempts=None,
        initial_backoff=None,
        max_backoff=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        credentials: Option<PyRef<'_, CredentialsProvider>>,
        overrides: Option<HashMap<String, Bound<'_, PyDict>>>,
        endpoint: Option<String>,
        connect_timeout: Option<f64>,
        read_timeout: Option<f64>,
        max_attempts: Option<u32>,
        initial_backoff: Option<f64>,
        max_backoff: Option<f64>,
    ) -> PyResult<Self> {
        let options = ClientOptions {
            connect_timeout,
            read_timeout,
            max_attempts,
            initial_backoff,
            max_backoff,
        };
        let provider: SharedProvider = match credentials {
            Some(c) => c.inner.clone(),
            None => Arc::new(DefaultCredentialsChain::new(ProviderEnv::process())),
        };
        let mut map = HashMap::new();
        for (host, d) in overrides.unwrap_or_default() {
            let o = host_override(&host, &d).py_err(py)?;
            map.insert(host, o);
        }
        let mut r = CoreResolver::new(provider, map)
            .with_timeouts(options.timeouts(py)?)
            .with_retry(options.retry(py)?);
        if let Some(e) = endpoint {
            r = r.with_endpoint(Endpoint::Url(e));
        }
        Ok(Self { inner: Arc::new(r) })
    }

    /// ``{"host", "region", "instance_id"}`` of ``server`` (``instance_id`` is ``None`` for the
    /// Personal Edition). A host that is not ACR's and not overridden raises
    /// ``CredentialsError`` (kind ``not_configured``).
    fn resolve(&self, py: Python<'_>, server: String) -> PyResult<Py<PyAny>> {
        let r = self.inner.clone();
        let resolved =
            runtime::block_on(py, async move { r.resolve(&server).await })?.py_err(py)?;
        resolved_to_py(py, &resolved)
    }

    /// ``resolve()`` for asyncio.
    fn resolve_async<'py>(&self, py: Python<'py>, server: String) -> PyResult<Bound<'py, PyAny>> {
        let r = self.inner.clone();
        runtime::coroutine(py, async move { r.resolve(&server).await }, |py, out| {
            resolved_to_py(py, &out.py_err(py)?)
        })
    }

    /// The registry login for ``server`` (a host or URL).
    fn login(&self, py: Python<'_>, server: String) -> PyResult<RegistryToken> {
        let r = self.inner.clone();
        runtime::block_on(py, async move { r.login(&server).await })?
            .py_err(py)
            .map(|inner| RegistryToken { inner })
    }

    /// ``login()`` for asyncio.
    fn login_async<'py>(&self, py: Python<'py>, server: String) -> PyResult<Bound<'py, PyAny>> {
        let r = self.inner.clone();
        runtime::coroutine(py, async move { r.login(&server).await }, |py, out| {
            Ok(Py::new(
                py,
                RegistryToken {
                    inner: out.py_err(py)?,
                },
            )?
            .into_any())
        })
    }

    fn __repr__(&self) -> String {
        "LoginResolver()".to_owned()
    }
}
