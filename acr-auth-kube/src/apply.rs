//! Executing the planner's writes against the API server, with the concurrency control the plan
//! asks for: resourceVersion preconditions on updates and deletions, `test` guards in patches.

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Client;

use crate::plan::{has_managed_label, Write};

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Someone changed the object since it was read (409, or a failed `test`): plan again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A Secret with our name exists and is not ours: it is left alone.
    #[error("Secret {namespace}/{name} exists and was not created by us; leaving it alone")]
    NotOurs {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The API server throttled the request (HTTP 429): the object waits out its backoff, and
    /// at least the `Retry-After` the server asked for.
    #[error("throttled by the API server (429): {message}")]
    Throttled {
        /// The server's message.
        message: String,
        /// `details.retryAfterSeconds` of the Status, when the server gave one.
        retry_after: Option<std::time::Duration>,
    },
    /// The planner produced an object the API types do not accept.
    #[error("invalid object: {0}")]
    Invalid(String),
    /// Any other API or transport error.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl ApplyError {
    /// A stable name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflict(_) => "conflict",
            ApplyError::NotOurs { .. } => "not_ours",
            ApplyError::Throttled { .. } => "throttled",
            ApplyError::Invalid(_) => "invalid",
            ApplyError::Kube(_) => "api",
        }
    }
}

fn classify(e: kube::Error) -> ApplyError {
    match &e {
        kube::Error::Api(s) if s.code == 429 => ApplyError::Throttled {
            message: s.message.clone(),
            retry_after: s
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|s| *s > 0)
                .map(|s| {
                    std::time::Duration::from_secs(u64::from(s)).min(crate::pacing::MAX_RETRY_AFTER)
                }),
        },
        kube::Error::Api(s) if s.is_conflict() || patch_did_not_apply(s) => {
            ApplyError::Conflict(s.message.clone())
        }
        _ => ApplyError::Kube(e),
    }
}

/// Whether a 422 says our JSON patch did not apply to the object as it is now: a `test` that no
/// longer holds, or an entry index that is gone. Both mean our view of the object is stale (a
/// conflict). The API server answers such a patch with a generic 422 message, the patch
/// library's error among the causes. Any other 422 (the object is invalid, or an admission
/// policy denied it) is an error the operator must see, not a conflict retried quietly.
fn patch_did_not_apply(s: &kube::core::Status) -> bool {
    const GENERIC: &str = "the server rejected our request due to an error in our request";
    const PATCH_ERRORS: [&str; 3] = [
        "testing value",
        "test operation does not apply",
        "error in test for path",
    ];
    let causes = s
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .map(|c| c.message.as_str());
    s.code == 422
        && (s.message.starts_with(GENERIC)
            || std::iter::once(s.message.as_str())
                .chain(causes)
                .any(|m| PATCH_ERRORS.iter().any(|p| m.contains(p))))
}

/// For a write to an existing object: gone (404) means our view is behind, as a conflict does
/// (the object is read again and planned anew: a create, or nothing).
fn gone_is_conflict(e: kube::Error) -> ApplyError {
    match &e {
        kube::Error::Api(s) if s.is_not_found() => {
            ApplyError::Conflict(format!("gone: {}", s.message))
        }
        _ => classify(e),
    }
}

/// Performs one write.
pub async fn apply(client: &Client, write: &Write) -> Result<(), ApplyError> {
    match write {
        Write::CreateSecret {
            namespace,
            name,
            content,
        } => {
            let obj: Secret = serde_json::from_value(content.object(namespace, name))
                .map_err(|e| ApplyError::Invalid(e.to_string()))?;
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.is_already_exists() => {
                    // Our watch had not seen it: either ours and the watch lags (after an
                    // outage, or created by another replica), or someone else's.
                    match api.get_opt(name).await {
                        Ok(Some(existing)) if has_managed_label(&existing.metadata) => {
                            Err(ApplyError::Conflict(format!(
                                "Secret {namespace}/{name} already exists"
                            )))
                        }
                        Ok(Some(_)) => Err(ApplyError::NotOurs {
                            namespace: namespace.clone(),
                            name: name.clone(),
                        }),
                        // Deleted meanwhile: plan again.
                        Ok(None) => Err(ApplyError::Conflict(format!(
                            "Secret {namespace}/{name} was deleted while being created"
                        ))),
                        Err(e) => Err(classify(e)),
                    }
                }
                Err(e) => Err(classify(e)),
            }
        }
        Write::UpdateSecret {
            namespace, name, ..
        } => {
            // A JSON patch of our data key and annotation: labels and annotations others added
            // to our Secret stay, and the resourceVersion `test` makes a concurrent change a
            // conflict.
            let Some(p) = write.secret_patch() else {
                return Err(ApplyError::Invalid("no patch for an update".into()));
            };
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            api.patch(name, &PatchParams::default(), &Patch::Json::<()>(p))
                .await
                .map(drop)
                .map_err(gone_is_conflict)
        }
        Write::PatchServiceAccount {
            namespace,
            service_account,
            edit,
            ..
        } => {
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
            api.patch(
                service_account,
                &PatchParams::default(),
                &Patch::Json::<()>(edit.patch()),
            )
            .await
            .map(drop)
            .map_err(gone_is_conflict)
        }
        Write::DeleteSecret {
            namespace,
            name,
            resource_version,
        } => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(resource_version.clone()),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => Ok(()),
                // Already gone: the goal is reached.
                Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
                Err(e) => Err(classify(e)),
            }
        }
    }
}

/// The object a write is about, as the API server has it now.
#[derive(Debug, Clone)]
pub enum Current {
    /// The Secret of a Secret write (`None`: there is none).
    Secret(Option<Box<Secret>>),
    /// The ServiceAccount of a ServiceAccount patch (`None`: there is none).
    ServiceAccount(Option<Box<ServiceAccount>>),
}

/// Reads the object `write` is about. After a conflict the caller plans that object again from
/// this rather than from a watch that may lag behind the write that beat ours.
pub async fn reread(client: &Client, write: &Write) -> Result<Current, kube::Error> {
    match write {
        Write::CreateSecret {
            namespace, name, ..
        }
        | Write::UpdateSecret {
            namespace, name, ..
        }
        | Write::DeleteSecret {
            namespace, name, ..
        } => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map(|s| Current::Secret(s.map(Box::new))),
        Write::PatchServiceAccount {
            namespace,
            service_account,
            ..
        } => Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .get_opt(service_account)
            .await
            .map(|s| Current::ServiceAccount(s.map(Box::new))),
    }
}

/// The kind of a write, as the `kind` label of `acr_auth_writes_total`.
pub fn kind(write: &Write) -> &'static str {
    match write {
        Write::CreateSecret { .. } => "create_secret",
        Write::UpdateSecret { .. } => "update_secret",
        Write::PatchServiceAccount { .. } => "patch_serviceaccount",
        Write::DeleteSecret { .. } => "delete_secret",
    }
}

/// A one-line description of a write, without secrets (for logs and `--dry-run`).
pub fn describe(write: &Write) -> String {
    match write {
        Write::CreateSecret {
            namespace, name, ..
        } => format!("create Secret {namespace}/{name}"),
        Write::UpdateSecret {
            namespace, name, ..
        } => format!("update Secret {namespace}/{name}"),
        Write::PatchServiceAccount {
            namespace,
            service_account,
            attach,
            detach,
            ..
        } => {
            let mut parts = Vec::new();
            if let Some(a) = attach {
                parts.push(format!("add {a}"));
            }
            if !detach.is_empty() {
                parts.push(format!("remove {}", detach.join(", ")));
            }
            if parts.is_empty() {
                parts.push("update the record of our entries".to_owned());
            }
            format!(
                "ServiceAccount {namespace}/{service_account}: {}",
                parts.join("; ")
            )
        }
        Write::DeleteSecret {
            namespace, name, ..
        } => format!("delete Secret {namespace}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str, causes: &[&str]) -> kube::Error {
        let causes: Vec<serde_json::Value> = causes
            .iter()
            .map(|m| serde_json::json!({"reason": "UnexpectedServerResponse", "message": m}))
            .collect();
        let s: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "reason": reason, "message": message,
            "details": {"causes": causes},
        }))
        .unwrap();
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn only_a_patch_that_no_longer_applies_is_a_conflict() {
        let generic = "the server rejected our request due to an error in our request";
        // What kube-apiserver answers for a failed `test` (and a removed index that is gone).
        for e in [
            status(
                422,
                "Invalid",
                generic,
                &["testing value /metadata/resourceVersion failed: test failed"],
            ),
            status(422, "Invalid", generic, &[]),
            status(409, "Conflict", "the object has been modified", &[]),
        ] {
            assert_eq!(classify(e).reason(), "conflict");
        }
        // An admission policy's denial and a field validation error are errors to report.
        for e in [
            status(422, "Invalid", "secrets \"pull\" is forbidden: ValidatingAdmissionPolicy 'no-pull' with binding 'no-pull' denied request: not here", &[]),
            status(422, "Invalid", "Secret \"pull\" is invalid: data[.dockerconfigjson]: Required value", &[]),
        ] {
            assert_eq!(classify(e).reason(), "api");
        }
    }
}
