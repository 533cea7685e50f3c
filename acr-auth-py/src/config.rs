//! `HelperConfig`.

use std::collections::HashMap;

use acr_auth_core::config::{HelperConfig as CoreConfig, ParsedConfig, Selection};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert;
use crate::errors::config_error;

/// A parsed ``acr-configuration``.
#[pyclass(frozen, module = "acr_auth._acr_auth")]
pub(crate) struct HelperConfig {
    parsed: ParsedConfig,
}

fn selection(s: &Selection) -> Option<Vec<String>> {
    match s {
        Selection::All => None,
        Selection::Names(n) => Some(n.to_vec()),
    }
}

#[pymethods]
impl HelperConfig {
    /// Parses ConfigMap ``data`` (a dict of strings). Raises ``ConfigError`` listing every problem.
    #[staticmethod]
    fn from_configmap(py: Python<'_>, data: HashMap<String, String>) -> PyResult<Self> {
        CoreConfig::from_configmap(&data)
            .map(|parsed| Self { parsed })
            .map_err(|e| config_error(py, &e))
    }

    /// Parses a ConfigMap manifest (``kind: ConfigMap``) or a plain mapping of its data, as
    /// YAML or JSON.
    #[staticmethod]
    fn from_yaml(py: Python<'_>, text: &str) -> PyResult<Self> {
        CoreConfig::from_manifest(text)
            .map(|parsed| Self { parsed })
            .map_err(|e| config_error(py, &e))
    }

    /// Parses the managed edition's JSON parameters.
    #[staticmethod]
    fn from_managed_json(py: Python<'_>, text: &str) -> PyResult<Self> {
        CoreConfig::from_managed_json(text)
            .map(|parsed| Self { parsed })
            .map_err(|e| config_error(py, &e))
    }

    /// Namespaces served; ``None`` means all.
    #[getter]
    fn watch_namespaces(&self) -> Option<Vec<String>> {
        selection(&self.parsed.config.watch_namespaces)
    }

    /// ServiceAccounts attached; ``None`` means all.
    #[getter]
    fn service_accounts(&self) -> Option<Vec<String>> {
        selection(&self.parsed.config.service_accounts)
    }

    /// Namespace globs never served.
    #[getter]
    fn exclude_namespaces(&self) -> Vec<String> {
        self.parsed.config.exclude_namespaces.clone()
    }

    /// Renewal threshold.
    #[getter]
    fn expiring_threshold<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::timedelta(py, self.parsed.config.expiring_threshold)
    }

    /// Name of the pull Secret.
    #[getter]
    fn secret_name(&self) -> &str {
        &self.parsed.config.secret_name
    }

    /// ``rrsa.enable``.
    #[getter]
    fn rrsa_enabled(&self) -> bool {
        self.parsed.config.rrsa_enabled
    }

    /// Warnings raised while parsing.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.parsed.warnings.clone()
    }

    /// The registry items as dicts (``customAccessKeySecret`` is left out).
    #[getter]
    fn registries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for r in &self.parsed.config.registries {
            let d = PyDict::new(py);
            d.set_item("instance_id", &r.instance_id)?;
            d.set_item("region_id", &r.region_id)?;
            d.set_item("domains", &r.domains)?;
            d.set_item("custom_domains", &r.custom_domains)?;
            d.set_item("assume_role_arn", &r.assume_role_arn)?;
            d.set_item(
                "expire_duration",
                convert::timedelta(py, r.expire_duration)?,
            )?;
            d.set_item("role_session_name", &r.role_session_name)?;
            d.set_item("sts_endpoint", &r.sts_endpoint)?;
            d.set_item("rrsa_role_arn", &r.rrsa_role_arn)?;
            d.set_item("rrsa_oidc_provider_arn", &r.rrsa_oidc_provider_arn)?;
            d.set_item("custom_access_key", &r.custom_access_key)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// ``webhook-configuration`` as a dict.
    #[getter]
    fn webhook<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let w = &self.parsed.config.webhook;
        let d = PyDict::new(py);
        d.set_item("enabled", w.enabled)?;
        d.set_item("failure_policy", format!("{:?}", w.failure_policy))?;
        d.set_item("timeout_seconds", w.timeout_seconds)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        // Python-style: None for "all", ['a', 'b'] for names.
        let show = |s: &Selection| match selection(s) {
            None => "None".to_owned(),
            Some(names) => format!(
                "[{}]",
                names
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let c = &self.parsed.config;
        format!(
            "HelperConfig(watch_namespaces={}, service_accounts={}, registries={}, secret_name='{}')",
            show(&c.watch_namespaces),
            show(&c.service_accounts),
            c.registries.len(),
            c.secret_name
        )
    }
}
