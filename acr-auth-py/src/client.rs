//! `AcrClient` and `RegistryToken`.

use std::sync::Arc;

use acr_auth_core::acr::{
    AcrClient as CoreClient, Endpoint, InstanceEndpoint, RegistryToken as CoreToken,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert;
use crate::credentials::CredentialsProvider;
use crate::errors::IntoPyResult;
use crate::options::ClientOptions;
use crate::runtime;

/// What `RegistryToken.__reduce__` returns: the class and its constructor's arguments.
type Reduced<'py> = (Bound<'py, PyAny>, (String, String, Bound<'py, PyAny>));

/// A temporary registry login. ``repr`` and ``str`` never show the password; it pickles (the
/// pickle holds the password, as the token itself does).
#[pyclass(frozen, module = "acr_auth._acr_auth")]
#[derive(Clone)]
pub(crate) struct RegistryToken {
    pub(crate) inner: CoreToken,
}

#[pymethods]
impl RegistryToken {
    /// A token from its parts (``expires_at`` an aware ``datetime``).
    #[new]
    fn new(username: String, password: String, expires_at: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            inner: CoreToken {
                username,
                password: password.into(),
                expires_at: convert::from_datetime(expires_at)?,
            },
        })
    }

    /// The temporary user name.
    #[getter]
    fn username(&self) -> &str {
        &self.inner.username
    }

    /// The password.
    #[getter]
    fn password(&self) -> &str {
        self.inner.password.expose()
    }

    /// When it stops working (aware UTC ``datetime``).
    #[getter]
    fn expires_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::datetime(py, self.inner.expires_at)
    }

    /// Pickling and ``copy``: ``RegistryToken(username, password, expires_at)``.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let t = &slf.get().inner;
        Ok((
            slf.get_type().into_any(),
            (
                t.username.clone(),
                t.password.expose().to_owned(),
                convert::datetime(slf.py(), t.expires_at)?,
            ),
        ))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<RegistryToken>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.username.hash(&mut h);
        self.inner.expires_at.hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        format!(
            "RegistryToken(username='{}', password=<redacted>, expires_at={})",
            self.inner.username,
            acr_auth_core::time::format_iso8601(self.inner.expires_at)
        )
    }
}

pub(crate) fn endpoints_to_py(py: Python<'_>, eps: &[InstanceEndpoint]) -> PyResult<Py<PyAny>> {
    let list = PyList::empty(py);
    for ep in eps {
        let d = PyDict::new(py);
        d.set_item("endpoint_type", &ep.endpoint_type)?;
        d.set_item("enabled", ep.enabled)?;
        d.set_item("status", &ep.status)?;
        let domains = PyList::empty(py);
        for dom in &ep.domains {
            let x = PyDict::new(py);
            x.set_item("domain", &dom.domain)?;
            x.set_item("type", &dom.kind)?;
            domains.append(x)?;
        }
        d.set_item("domains", domains)?;
        list.append(d)?;
    }
    Ok(list.into_any().unbind())
}

/// The ACR OpenAPI client of one region.
#[pyclass(frozen, module = "acr_auth._acr_auth")]
pub(crate) struct AcrClient {
    inner: Arc<CoreClient>,
}

#[pymethods]
impl AcrClient {
    #[new]
    #[pyo3(signature = (
        region,
        credentials=None,
        endpoint=None,
        vpc=false,
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
        region: &str,
        credentials: Option<PyRef<'_, CredentialsProvider>>,
        endpoint: Option<String>,
        vpc: bool,
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
        // Without credentials, the Rust builder uses the default chain.
        let mut b = CoreClient::builder(region)
            .vpc(vpc)
            .timeouts(options.timeouts(py)?)
            .retry(options.retry(py)?);
        if let Some(c) = credentials {
            b = b.credentials_provider(c.inner.clone());
        }
        if let Some(e) = endpoint {
            b = b.endpoint(Endpoint::Url(e));
        }
        Ok(Self {
            inner: Arc::new(b.build().py_err(py)?),
        })
    }

    /// A login for Enterprise Edition instance ``instance_id``, or for the Personal Edition
    /// registry of the region when it is ``None``. An empty or malformed id raises
    /// ``InvalidArgumentError``.
    #[pyo3(signature = (instance_id=None))]
    fn get_authorization_token(
        &self,
        py: Python<'_>,
        instance_id: Option<String>,
    ) -> PyResult<RegistryToken> {
        let c = self.inner.clone();
        runtime::block_on(py, async move { token(&c, instance_id).await })?
            .py_err(py)
            .map(|inner| RegistryToken { inner })
    }

    /// ``get_authorization_token()`` for asyncio.
    #[pyo3(signature = (instance_id=None))]
    fn get_authorization_token_async<'py>(
        &self,
        py: Python<'py>,
        instance_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        runtime::coroutine(py, async move { token(&c, instance_id).await }, |py, r| {
            Ok(Py::new(
                py,
                RegistryToken {
                    inner: r.py_err(py)?,
                },
            )?
            .into_any())
        })
    }

    /// The registry endpoints of an Enterprise Edition instance, as dicts.
    fn list_instance_endpoints(&self, py: Python<'_>, instance_id: String) -> PyResult<Py<PyAny>> {
        let c = self.inner.clone();
        let eps = runtime::block_on(
            py,
            async move { c.list_instance_endpoint(&instance_id).await },
        )?
        .py_err(py)?;
        endpoints_to_py(py, &eps)
    }

    /// ``list_instance_endpoints()`` for asyncio.
    fn list_instance_endpoints_async<'py>(
        &self,
        py: Python<'py>,
        instance_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        runtime::coroutine(
            py,
            async move { c.list_instance_endpoint(&instance_id).await },
            |py, r| endpoints_to_py(py, &r.py_err(py)?),
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "AcrClient(region='{}', endpoint='{}')",
            self.inner.region(),
            self.inner.endpoint_url()
        )
    }
}

/// `None` is the Personal Edition; any string must be an Enterprise Edition instance id (an
/// empty or malformed one is an `InvalidArgumentError`, never a Personal Edition token).
async fn token(
    c: &CoreClient,
    instance_id: Option<String>,
) -> Result<CoreToken, acr_auth_core::Error> {
    match instance_id {
        Some(id) => c.get_authorization_token(&id).await,
        None => c.get_personal_token().await,
    }
}
