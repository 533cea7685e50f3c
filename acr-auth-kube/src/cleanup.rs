//! Removing everything we ever wrote (uninstall): our Secrets and our ServiceAccount entries,
//! cluster-wide. Nothing else is touched.

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Client;

use crate::plan::{detach_patch, managed_entries, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// What `cleanup` removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Secrets deleted (in a dry run: that would be deleted).
    pub secrets_deleted: usize,
    /// ServiceAccounts whose recorded entries were removed (in a dry run: would be).
    pub service_accounts_patched: usize,
    /// Nothing was removed: the counts are what a real run would remove.
    pub dry_run: bool,
}

impl std::fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secrets, entries) = if self.dry_run {
            ("dry run: would delete", "would remove our entries from")
        } else {
            ("deleted", "removed our entries from")
        };
        write!(
            f,
            "{secrets} {} Secrets, {entries} {} ServiceAccounts",
            self.secrets_deleted, self.service_accounts_patched
        )
    }
}

/// Deletes every Secret with our managed-by label and removes every ServiceAccount entry we
/// recorded as ours (with `dry_run`, only counts them).
pub async fn cleanup(client: &Client, dry_run: bool) -> Result<CleanupReport, kube::Error> {
    let mut report = CleanupReport {
        dry_run,
        ..CleanupReport::default()
    };
    let secrets: Api<Secret> = Api::all(client.clone());
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    for s in secrets
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        let (Some(ns), Some(name)) = (s.metadata.namespace.as_deref(), s.metadata.name.as_deref())
        else {
            continue;
        };
        if !dry_run {
            match Api::<Secret>::namespaced(client.clone(), ns)
                .delete(name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        if dry_run {
            tracing::info!(namespace = ns, name, "dry run: would delete our Secret");
        } else {
            tracing::info!(namespace = ns, name, "deleted our Secret");
        }
        report.secrets_deleted += 1;
    }
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    for sa in sas.list(&ListParams::default()).await? {
        let Ok(value) = serde_json::to_value(&sa) else {
            continue;
        };
        let recorded = managed_entries(&value);
        let names: Vec<&str> = recorded.iter().map(String::as_str).collect();
        let Some(patch) = detach_patch(&value, &names) else {
            continue;
        };
        let (Some(ns), Some(name)) = (
            sa.metadata.namespace.as_deref(),
            sa.metadata.name.as_deref(),
        ) else {
            continue;
        };
        if !dry_run {
            let p: json_patch::Patch =
                serde_json::from_value(patch).expect("the planner builds valid JSON patches");
            Api::<ServiceAccount>::namespaced(client.clone(), ns)
                .patch(name, &PatchParams::default(), &Patch::Json::<()>(p))
                .await?;
        }
        if dry_run {
            tracing::info!(namespace = ns, name, entries = ?recorded, "dry run: would remove our entries");
        } else {
            tracing::info!(namespace = ns, name, entries = ?recorded, "removed our entries");
        }
        report.service_accounts_patched += 1;
    }
    Ok(report)
}

/// Records a Normal `Cleanup` Event on the configuration ConfigMap with what `report` removed.
pub async fn record_cleanup_event(
    client: &Client,
    config_namespace: &str,
    config_name: &str,
    report: &CleanupReport,
) -> Result<(), kube::Error> {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "aliyun-acr-credential-helper".into(),
            instance: None,
        },
    );
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(config_name.to_owned()),
        namespace: Some(config_namespace.to_owned()),
        ..Default::default()
    };
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Cleanup".into(),
                note: Some(format!(
                    "removed {} Secrets and our entries from {} ServiceAccounts",
                    report.secrets_deleted, report.service_accounts_patched
                )),
                action: "Cleanup".into(),
                secondary: None,
            },
            &reference,
        )
        .await
}
