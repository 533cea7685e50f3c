//! The MutatingWebhookConfiguration, kept in line with `webhook-configuration` by the leader.

use kube::api::Api;

use super::{Controller, Live};
use crate::plan::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Whether the MutatingWebhookConfiguration in the cluster already says what `desired` says
/// (the fields we set; the API server adds defaults to the rest).
fn same_webhook(
    current: &k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    desired: &serde_json::Value,
) -> bool {
    let Ok(current) = serde_json::to_value(current) else {
        return false;
    };
    let (c, d) = (&current["webhooks"], &desired["webhooks"]);
    let same = |f: &str| c[0][f] == d[0][f];
    c.as_array().map(Vec::len) == Some(1)
        && [
            "name",
            "failurePolicy",
            "timeoutSeconds",
            "clientConfig",
            "namespaceSelector",
        ]
        .iter()
        .all(|f| same(f))
        && [
            "sideEffects",
            "admissionReviewVersions",
            "reinvocationPolicy",
            "rules",
        ]
        .iter()
        .all(|f| same(f))
        && current["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
}

impl Controller {
    /// Keeps the MutatingWebhookConfiguration as `webhook-configuration` asks; written only
    /// when it changes.
    pub(super) async fn sync_webhook_configuration(&self, live: &mut Live) {
        use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
        let Some(settings) = &self.settings.webhook else {
            return;
        };
        // Without an accepted configuration nothing is known about the webhook: in particular it
        // is never removed because the ConfigMap could not be read.
        let Some(accepted) = live.accepted() else {
            return;
        };
        let desired = accepted.config.webhook.enabled.then(|| {
            crate::webhook::configuration(
                &accepted.config,
                settings.client_config.clone(),
                &settings.ca_bundle(),
            )
        });
        if live.webhook_checked.elapsed() >= self.settings.resync {
            live.webhook_applied = None;
        }
        if live.webhook_applied.as_ref() == Some(&desired) || self.settings.dry_run {
            return;
        }
        // After a failure, wait out the backoff (not one GET and one write per pass).
        if live
            .webhook_retry
            .is_some_and(|(_, at)| tokio::time::Instant::now() < at)
        {
            return;
        }
        live.webhook_checked = tokio::time::Instant::now();
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let name = crate::webhook::CONFIGURATION_NAME;
        let result: Result<(), kube::Error> = async {
            let current = api.get_opt(name).await?;
            match (&desired, current) {
                (Some(d), None) => {
                    let obj: MutatingWebhookConfiguration = serde_json::from_value(d.clone())
                        .map_err(kube::Error::SerdeError)?;
                    api.create(&kube::api::PostParams::default(), &obj).await?;
                    tracing::info!(%name, "created the MutatingWebhookConfiguration");
                }
                (Some(d), Some(cur)) if same_webhook(&cur, d) => {}
                (Some(d), Some(cur)) => {
                    let mut obj: MutatingWebhookConfiguration =
                        serde_json::from_value(d.clone()).map_err(kube::Error::SerdeError)?;
                    obj.metadata.resource_version = cur.metadata.resource_version.clone();
                    // Labels and annotations others put on it stay (ours win on our keys).
                    for (mine, theirs) in [
                        (&mut obj.metadata.labels, &cur.metadata.labels),
                        (&mut obj.metadata.annotations, &cur.metadata.annotations),
                    ] {
                        if let Some(theirs) = theirs {
                            let mine = mine.get_or_insert_with(Default::default);
                            for (k, v) in theirs {
                                mine.entry(k.clone()).or_insert_with(|| v.clone());
                            }
                        }
                    }
                    api.replace(name, &kube::api::PostParams::default(), &obj).await?;
                    tracing::info!(%name, "updated the MutatingWebhookConfiguration");
                }
                (None, Some(cur)) => {
                    if crate::plan::has_managed_label(&cur.metadata) {
                        api.delete(name, &kube::api::DeleteParams::default()).await?;
                        tracing::info!(%name, "webhook disabled: deleted the MutatingWebhookConfiguration");
                    }
                }
                (None, None) => {}
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                live.webhook_applied = Some(desired);
                live.webhook_retry = None;
            }
            Err(e) => {
                let failures = live.webhook_retry.map_or(1, |(n, _)| n.saturating_add(1));
                let delay = acr_auth_core::cache::FailureBackoff::CONTROLLER.delay(failures);
                live.webhook_retry = Some((failures, tokio::time::Instant::now() + delay));
                tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "could not update the MutatingWebhookConfiguration; will retry")
            }
        }
    }
}
