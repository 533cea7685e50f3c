//! Kubernetes adapter for acr-auth.
//!
//! - [`plan`]: the pure function from configuration, cluster snapshot and credentials to writes.
//! - [`apply`]: executes a write with its concurrency control.
//! - [`controller`]: watches, live configuration, credentials, and plan + apply on every change.
//! - [`leader`]: leader election on a Lease (one writer among replicas).
//! - [`ops`]: Prometheus metrics, health and readiness, and their HTTP endpoint.

pub mod apply;
pub mod cleanup;
pub mod controller;
pub mod identity;
pub mod leader;
pub mod ops;
pub mod plan;

pub use acr_auth_core as core;
