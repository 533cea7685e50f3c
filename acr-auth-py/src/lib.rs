//! Python bindings for acr-auth.
//!
//! The PyO3 module `acr_auth._acr_auth` will live here (built with maturin). Until then the
//! crate only compiles against the core crate so the workspace layout is final.

pub use acr_auth_core as core;
