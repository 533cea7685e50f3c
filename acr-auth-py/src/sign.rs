//! The signers and the percent-encoder.

use std::collections::HashMap;

use acr_auth_core::sign::{self, Method, RoaStringToSign, RpcStringToSign, V3Signature};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn method(m: &str) -> PyResult<Method> {
    m.parse()
        .map_err(|e: sign::UnsupportedMethod| PyValueError::new_err(e.to_string()))
}

fn pairs(map: &HashMap<String, String>) -> Vec<(&str, &str)> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Alibaba's percent-encoding: UTF-8, everything but ``A-Z a-z 0-9 - _ . ~`` as ``%XY``.
#[pyfunction]
pub(crate) fn percent_encode(s: &str) -> String {
    sign::percent_encode(s)
}

/// The RPC (HMAC-SHA1, ``SignatureVersion=1.0``) signature over every parameter sent except
/// ``Signature``.
#[pyfunction]
pub(crate) fn sign_rpc(
    method: &str,
    params: HashMap<String, String>,
    access_key_secret: &str,
) -> PyResult<String> {
    Ok(RpcStringToSign::new(self::method(method)?, pairs(&params)).sign(access_key_secret))
}

/// The ROA (HMAC-SHA1, ``Authorization: acs AK:signature``) signature.
#[pyfunction]
pub(crate) fn sign_roa(
    method: &str,
    path: &str,
    headers: HashMap<String, String>,
    query: HashMap<String, String>,
    access_key_secret: &str,
) -> PyResult<String> {
    Ok(
        RoaStringToSign::new(self::method(method)?, path, pairs(&headers), pairs(&query))
            .sign(access_key_secret),
    )
}

/// The V3 (``ACS3-HMAC-SHA256``) signature: returns the headers to add, ``x-acs-content-sha256``
/// (when not given) and ``Authorization``. Every header given is signed.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign_v3(
    method: &str,
    path: &str,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: &[u8],
    access_key_id: &str,
    access_key_secret: &str,
) -> PyResult<HashMap<String, String>> {
    let payload = sign::sha256_hex(body);
    let mut signed: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let mut added = HashMap::new();
    if !signed.iter().any(|(k, _)| k == "x-acs-content-sha256") {
        signed.push(("x-acs-content-sha256".to_owned(), payload.clone()));
        added.insert("x-acs-content-sha256".to_owned(), payload.clone());
    }
    let sig = V3Signature::new(
        self::method(method)?,
        path,
        pairs(&query),
        signed.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &payload,
        access_key_secret,
    );
    added.insert("Authorization".to_owned(), sig.authorization(access_key_id));
    Ok(added)
}
