//! Benchmarks for acr-auth; see `benches/`.
