//! Example programs for acr-auth and the reference controller binary
//! `aliyun-acr-credential-helper` (see `src/bin/`).
