//! The one tokio runtime behind every call, with the GIL released while Rust works, and the
//! bridge from Rust futures to asyncio futures.
//!
//! After `fork()` the child has no runtime threads; the runtime is keyed by process id, so the
//! child builds a fresh one on first use (the parent's is leaked there, never dropped, since its
//! threads do not exist in the child).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The runtime of this process.
pub(crate) fn runtime() -> PyResult<Arc<Runtime>> {
    let pid = std::process::id();
    let mut guard = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, rt)) = guard.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("acr-auth")
            .enable_all()
            .build()
            .map_err(|e| {
                pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the runtime: {e}"))
            })?,
    );
    if let Some(inherited) = guard.replace((pid, rt.clone())) {
        // Inherited across fork(): its worker threads are gone, so dropping it could hang.
        std::mem::forget(inherited);
    }
    Ok(rt)
}

/// How often a blocking call looks for a pending signal (Ctrl-C) while it waits.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Runs `future` to completion with the GIL released, so other Python threads keep running.
///
/// Every [`SIGNAL_POLL`] the GIL is taken back briefly to run Python's signal handlers: when
/// one raises (`KeyboardInterrupt` on Ctrl-C), the future is dropped (the request is
/// abandoned) and that exception is raised. Handlers only run on the main thread; elsewhere
/// the check does nothing.
pub(crate) fn block_on<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = runtime()?;
    py.detach(|| {
        rt.block_on(async move {
            let mut future = std::pin::pin!(future);
            loop {
                match tokio::time::timeout(SIGNAL_POLL, &mut future).await {
                    Ok(output) => return Ok(output),
                    Err(_) => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    })
}

/// A coroutine that, when awaited, runs `future` on the runtime and returns `convert(output)`
/// (or raises what it raises). Like a coroutine function's result, nothing starts before it is
/// awaited, so `asyncio.run(obj.method_async())` works.
pub(crate) fn coroutine<'py, F, T, C>(
    py: Python<'py>,
    future: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let slot = Mutex::new(Some((future, convert)));
    let start = pyo3::types::PyCFunction::new_closure(
        py,
        None,
        None,
        move |args: &Bound<'_, pyo3::types::PyTuple>,
              _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>|
              -> PyResult<Py<PyAny>> {
            let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            let (future, convert) = taken.ok_or_else(|| {
                pyo3::exceptions::PyRuntimeError::new_err("this coroutine was already awaited")
            })?;
            awaitable(args.py(), future, convert).map(Bound::unbind)
        },
    )?;
    py.import("acr_auth._bridge")?
        .getattr("await_native")?
        .call1((start,))
}

/// Starts `future` on the runtime and returns an asyncio future of the running loop that
/// completes with `convert(output)` (or the exception it raises).
fn awaitable<'py, F, T, C>(py: Python<'py>, future: F, convert: C) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let asyncio = py.import("asyncio")?;
    let event_loop = asyncio.call_method0("get_running_loop")?;
    let py_future = event_loop.call_method0("create_future")?;
    let loop_ref = event_loop.unbind();
    let future_ref = py_future.clone().unbind();
    runtime()?.spawn(async move {
        let output = future.await;
        Python::attach(|py| {
            let (ok, value) = match convert(py, output) {
                Ok(v) => (true, v),
                Err(e) => (false, e.into_value(py).into_any()),
            };
            let complete = py
                .import("acr_auth._bridge")
                .and_then(|m| m.getattr("complete"));
            let scheduled = complete.and_then(|complete| {
                loop_ref
                    .bind(py)
                    .call_method1("call_soon_threadsafe", (complete, future_ref, ok, value))
            });
            // The loop may be closed already (the awaiting task was abandoned): nothing to do.
            drop(scheduled);
        });
    });
    Ok(py_future)
}
