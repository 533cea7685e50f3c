//! `ListInstanceEndpoint` results: the registry endpoints and domains of an Enterprise instance.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::response::{self, field, type_name};

/// One entry of `ListInstanceEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEndpoint {
    /// `internet`, `vpc`, ...
    pub endpoint_type: String,
    /// Whether the endpoint is turned on.
    pub enabled: bool,
    /// e.g. `RUNNING`.
    pub status: String,
    /// The registry domains served on this endpoint.
    pub domains: Vec<InstanceDomain>,
}

/// A domain of an instance endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDomain {
    /// The host name.
    pub domain: String,
    /// `SYSTEM` (assigned by ACR) or `USER` (a custom domain).
    pub kind: String,
}

/// The registry hosts of an Enterprise instance: every domain of every enabled endpoint, in
/// order, without duplicates.
pub fn enterprise_registry_hosts(endpoints: &[InstanceEndpoint]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for ep in endpoints.iter().filter(|e| e.enabled) {
        for d in &ep.domains {
            if !hosts.contains(&d.domain) {
                hosts.push(d.domain.clone());
            }
        }
    }
    hosts
}

pub(crate) fn parse_endpoints(
    obj: &Map<String, Value>,
    context: &str,
) -> Result<Vec<InstanceEndpoint>, Error> {
    let bad = |what: String| Error::invalid_response(context, what);
    let list = match field(obj, "Endpoints") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(bad(format!(
                "field Endpoints should be an array, found {}",
                type_name(other)
            )))
        }
        None => return Err(bad("field Endpoints is missing".into())),
    };
    list.iter()
        .enumerate()
        .map(|(i, ep)| {
            let ep = ep
                .as_object()
                .ok_or_else(|| bad(format!("Endpoints[{i}] should be an object")))?;
            let domains = match field(ep, "Domains") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(ds)) => ds
                    .iter()
                    .enumerate()
                    .map(|(j, d)| {
                        let d = d.as_object().ok_or_else(|| {
                            bad(format!("Endpoints[{i}].Domains[{j}] should be an object"))
                        })?;
                        Ok(InstanceDomain {
                            domain: response::required_str(d, "Domain", context)?,
                            kind: field(d, "Type")
                                .and_then(Value::as_str)
                                .unwrap_or("SYSTEM")
                                .to_owned(),
                        })
                    })
                    .collect::<Result<_, Error>>()?,
                Some(other) => {
                    return Err(bad(format!(
                        "Endpoints[{i}].Domains should be an array, found {}",
                        type_name(other)
                    )))
                }
            };
            Ok(InstanceEndpoint {
                endpoint_type: field(ep, "EndpointType")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                enabled: field(ep, "Enable").and_then(Value::as_bool).unwrap_or(true),
                status: field(ep, "Status")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                domains,
            })
        })
        .collect()
}
