//! The timeout and retry keyword arguments shared by `AcrClient` and `LoginResolver`, as the
//! Rust builders' `Timeouts` and `RetryPolicy`.

use std::time::Duration;

use acr_auth_core::http::{RetryPolicy, Timeouts};
use acr_auth_core::Error;
use pyo3::prelude::*;

use crate::errors::IntoPyResult;

/// Seconds as a duration: finite, positive (zero allowed for backoffs), at most a day.
fn seconds(name: &str, value: f64, zero_ok: bool) -> Result<Duration, Error> {
    let ok = value.is_finite() && value <= 86_400.0 && (value > 0.0 || (zero_ok && value == 0.0));
    if !ok {
        return Err(Error::invalid_input(
            "client options",
            format!(
                "{name} must be {} number of seconds up to 86400, not {value}",
                if zero_ok {
                    "a non-negative"
                } else {
                    "a positive"
                }
            ),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// The Python keyword arguments, `None` meaning the Rust default.
pub(crate) struct ClientOptions {
    pub(crate) connect_timeout: Option<f64>,
    pub(crate) read_timeout: Option<f64>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) initial_backoff: Option<f64>,
    pub(crate) max_backoff: Option<f64>,
}

impl ClientOptions {
    /// The timeouts, or `InvalidArgumentError`.
    pub(crate) fn timeouts(&self, py: Python<'_>) -> PyResult<Timeouts> {
        let mut t = Timeouts::default();
        if let Some(v) = self.connect_timeout {
            t.connect = seconds("connect_timeout", v, false).py_err(py)?;
        }
        if let Some(v) = self.read_timeout {
            t.read = seconds("read_timeout", v, false).py_err(py)?;
        }
        Ok(t)
    }

    /// The retry policy, or `InvalidArgumentError`.
    pub(crate) fn retry(&self, py: Python<'_>) -> PyResult<RetryPolicy> {
        let mut r = RetryPolicy::default();
        if let Some(n) = self.max_attempts {
            if n == 0 {
                return Err(Error::invalid_input(
                    "client options",
                    "max_attempts must be at least 1 (1 = no retry)",
                ))
                .py_err(py);
            }
            r.max_attempts = n;
        }
        if let Some(v) = self.initial_backoff {
            r.initial_backoff = seconds("initial_backoff", v, true).py_err(py)?;
        }
        if let Some(v) = self.max_backoff {
            r.max_backoff = seconds("max_backoff", v, true).py_err(py)?;
        }
        Ok(r)
    }
}
