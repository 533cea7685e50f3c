//! Kubernetes adapter for acr-auth.
//!
//! This crate will hold the pure `plan` function (configuration + cluster snapshot + tokens ->
//! writes), `apply` and the controller runtime on kube-rs. It is not built yet; see the
//! project's issue tracker. Today it only re-exports the core crate so dependants can already
//! name it.

pub use acr_auth_core as core;
