//! `.dockerconfigjson` rendering and the plan helpers on plain dicts.

use std::time::SystemTime;

use acr_auth_core::docker_config::DockerConfig;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::client::RegistryToken;
use crate::convert;

/// `{host: RegistryToken | (username, password)}` as a DockerConfig and its earliest expiry.
fn docker_config(entries: &Bound<'_, PyDict>) -> PyResult<(DockerConfig, Option<SystemTime>)> {
    let mut config = DockerConfig::default();
    let mut earliest: Option<SystemTime> = None;
    for (host, value) in entries.iter() {
        let host: String = host.extract()?;
        if let Ok(token) = value.cast::<RegistryToken>() {
            let t = &token.get().inner;
            config.insert(host, t.username.clone(), t.password.clone());
            earliest = Some(earliest.map_or(t.expires_at, |e| e.min(t.expires_at)));
        } else if let Ok((user, password)) = value.extract::<(String, String)>() {
            config.insert(host, user, password);
        } else {
            return Err(PyTypeError::new_err(format!(
                "entries[{host:?}] must be a RegistryToken or a (username, password) tuple"
            )));
        }
    }
    Ok((config, earliest))
}

/// The ``.dockerconfigjson`` text for ``{host: RegistryToken | (username, password)}``.
#[pyfunction]
pub(crate) fn docker_config_json(entries: &Bound<'_, PyDict>) -> PyResult<String> {
    Ok(docker_config(entries)?.0.to_json())
}

/// The ``kubernetes.io/dockerconfigjson`` Secret manifest (a dict) for ``namespace``.
#[pyfunction]
#[pyo3(signature = (namespace, entries, secret_name="acr-credential-secret-aggregation"))]
pub(crate) fn desired_secret<'py>(
    py: Python<'py>,
    namespace: &str,
    entries: &Bound<'py, PyDict>,
    secret_name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let (config, earliest) = docker_config(entries)?;
    convert::from_json(
        py,
        &acr_auth_kube::plan::desired_secret(namespace, secret_name, &config, earliest),
    )
}

/// The JSON patch (a list) adding ``secret_name`` to a ServiceAccount's ``imagePullSecrets``
/// and recording it as ours in an annotation, or ``None`` when it is there already. Other
/// entries and annotations are never touched (our entry is appended, our annotation is one
/// key); the patch tests ``resourceVersion``, so a concurrent change makes it fail instead of
/// being overwritten.
#[pyfunction]
#[pyo3(signature = (service_account, secret_name="acr-credential-secret-aggregation"))]
pub(crate) fn service_account_patch<'py>(
    py: Python<'py>,
    service_account: &Bound<'py, PyAny>,
    secret_name: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let sa = convert::to_json(service_account)?;
    acr_auth_kube::plan::attach_patch(&sa, secret_name)
        .map(|p| convert::from_json(py, &p))
        .transpose()
}
