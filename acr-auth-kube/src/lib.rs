//! Kubernetes adapter for acr-auth.
//!
//! - [`plan`]: the pure function from configuration, cluster snapshot and credentials to writes.
//! - [`apply`]: executes a write with its concurrency control.
//! - [`events`]: Kubernetes Events in series per object, reason and subject, with the latest note.
//! - [`controller`]: watches, live configuration, credentials, and plan + apply on every change.
//! - [`leader`]: leader election on a Lease (one writer among replicas).
//! - [`webhook`]: the mutating admission webhook (handler, certificates, HTTPS server).
//! - [`ops`]: Prometheus metrics, health and readiness, and their HTTP endpoint.
//! - [`pacing`]: a client-side rate limit and the API server's `Retry-After`, as a client layer.

pub mod apply;
pub mod cleanup;
pub mod controller;
pub mod events;
pub mod identity;
pub mod leader;
pub mod ops;
pub mod pacing;
pub mod plan;
pub mod webhook;

pub use acr_auth_core as core;
