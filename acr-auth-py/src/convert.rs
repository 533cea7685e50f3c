//! Conversions to Python values: aware datetimes, timedeltas, JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

/// An aware UTC `datetime`.
pub(crate) fn datetime<'py>(py: Python<'py>, t: SystemTime) -> PyResult<Bound<'py, PyAny>> {
    let dt = py.import("datetime")?;
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    dt.getattr("datetime")?
        .call_method1("fromtimestamp", (secs, utc))
}

/// A `timedelta`.
pub(crate) fn timedelta<'py>(py: Python<'py>, d: Duration) -> PyResult<Bound<'py, PyAny>> {
    py.import("datetime")?
        .getattr("timedelta")?
        .call1((0, d.as_secs_f64()))
}

/// A JSON value as Python objects (through the `json` module, so types are exactly json's).
pub(crate) fn from_json<'py>(
    py: Python<'py>,
    v: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

/// A Python object (dicts, lists, str, numbers) as JSON.
pub(crate) fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let text: String = obj
        .py()
        .import("json")?
        .call_method1("dumps", (obj,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}
