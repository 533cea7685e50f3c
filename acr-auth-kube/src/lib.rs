//! Kubernetes adapter for acr-auth.
//!
//! [`plan`] holds the pure functions from configuration and cluster objects to the objects and
//! patches to write. The controller runtime on kube-rs (apply, watches, the token manager) is
//! built on them in a later step.

pub mod plan;

pub use acr_auth_core as core;
