//! Rust errors as the Python exception hierarchy of `acr_auth._errors`.

use acr_auth_core::config::ConfigErrors;
use acr_auth_core::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The Python class for an error kind.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Api | ErrorKind::InvalidResponse => "ApiError",
        ErrorKind::Transport | ErrorKind::Timeout => "TransportError",
        ErrorKind::Credentials | ErrorKind::NotConfigured => "CredentialsError",
        ErrorKind::InvalidInput => "InvalidArgumentError",
        // ErrorKind is non-exhaustive: a kind added later is still an AcrAuthError.
        _ => "AcrAuthError",
    }
}

fn build(py: Python<'_>, class: &str, text: String, kwargs: Bound<'_, PyDict>) -> PyErr {
    let made = py
        .import("acr_auth._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call((text,), Some(&kwargs)));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// The Python exception for `e`; its text never contains a secret (the Rust error's does not).
pub(crate) fn to_pyerr(py: Python<'_>, e: &Error) -> PyErr {
    let kwargs = PyDict::new(py);
    let filled = (|| -> PyResult<()> {
        kwargs.set_item("kind", e.kind().as_str())?;
        kwargs.set_item("message", e.message())?;
        kwargs.set_item("code", e.code())?;
        kwargs.set_item("request_id", e.request_id())?;
        kwargs.set_item("status", e.status())?;
        kwargs.set_item("retryable", e.is_retryable())?;
        Ok(())
    })();
    if let Err(err) = filled {
        return err;
    }
    build(py, class_name(e.kind()), e.to_string(), kwargs)
}

/// `ConfigError`, with every problem in `errors` (dicts of key, path, line, column, message).
pub(crate) fn config_error(py: Python<'_>, e: &ConfigErrors) -> PyErr {
    let kwargs = PyDict::new(py);
    let filled = (|| -> PyResult<()> {
        let list = pyo3::types::PyList::empty(py);
        for item in &e.0 {
            let d = PyDict::new(py);
            d.set_item("key", &item.key)?;
            d.set_item("path", &item.path)?;
            d.set_item("line", item.at.map(|p| p.line))?;
            d.set_item("column", item.at.map(|p| p.column))?;
            d.set_item("message", &item.message)?;
            list.append(d)?;
        }
        kwargs.set_item("errors", list)?;
        Ok(())
    })();
    if let Err(err) = filled {
        return err;
    }
    build(
        py,
        "ConfigError",
        e.to_string().trim_end().to_owned(),
        kwargs,
    )
}

/// Converts a core result, raising the mapped exception.
pub(crate) trait IntoPyResult<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, &e))
    }
}
