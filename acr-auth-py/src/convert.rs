//! Conversions to Python values: aware datetimes, timedeltas, JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

/// The Unix epoch as an aware UTC `datetime`, and `timedelta(microseconds=1)`.
fn epoch_and_microsecond(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    let dt = py.import("datetime")?;
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("tzinfo", utc)?;
    let epoch = dt.getattr("datetime")?.call((1970, 1, 1), Some(&kwargs))?;
    let micro = dt.getattr("timedelta")?.call((0, 0, 1), None)?;
    Ok((epoch, micro))
}

/// An aware UTC `datetime`, exact to the microsecond (no float rounding), so that
/// [`from_datetime`] gives the same time back.
pub(crate) fn datetime<'py>(py: Python<'py>, t: SystemTime) -> PyResult<Bound<'py, PyAny>> {
    let micros = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let (epoch, micro) = epoch_and_microsecond(py)?;
    epoch.add(micro.mul(micros)?)
}

/// An aware `datetime` as a time, to the microsecond. A naive `datetime` (no time zone) is a
/// `TypeError` from Python's own subtraction.
pub(crate) fn from_datetime(value: &Bound<'_, PyAny>) -> PyResult<SystemTime> {
    let (epoch, micro) = epoch_and_microsecond(value.py())?;
    let micros: i64 = value.sub(epoch)?.floor_div(micro)?.extract()?;
    let since = Duration::from_micros(micros.unsigned_abs());
    Ok(if micros >= 0 {
        UNIX_EPOCH + since
    } else {
        UNIX_EPOCH - since
    })
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
