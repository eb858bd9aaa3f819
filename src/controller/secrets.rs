//! The secrets step of a reconcile: writes each Secret the plan says (read fresh first, so the
//! resourceVersion guards the update and a stale cache never causes a second rotation), then
//! restarts the consumers that still run an older version, then re-plans so that the status
//! describes what is now in place. Values exist only between generation and the write.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::events::EventType;

use super::Context;
use super::reconcile::{Applied, Recalled, Remembered, apply_remembered, publish};
use crate::apply::{self, ApplyOutcome, NAME_TAKEN};
use crate::crd::ResourceRef;
use crate::error::Error;
use crate::model::{SecretSettings, ValidatedPolicy};
use crate::observed::{Observed, SecretMeta};
use crate::policy::secrets::{self, SecretAction, SecretState, SecretsPlan};
use crate::policy::{Rejection, WorkloadTarget};
use crate::secret_value;
use crate::status::reasons;

fn secret_ref(name: &str) -> ResourceRef {
    ResourceRef {
        api_version: "v1".into(),
        kind: "Secret".into(),
        name: name.into(),
    }
}

/// Runs the secrets step; returns the plan as it stands after the writes.
pub(super) async fn apply_secrets(
    policy: &ValidatedPolicy,
    settings: &SecretSettings,
    plan: &SecretsPlan,
    observed: &Observed,
    ctx: &Context,
    applied: &mut Applied,
) -> Result<SecretsPlan, Error> {
    let mut observed = observed.clone();
    for (secret, planned) in settings.secrets.iter().zip(&plan.secrets) {
        let reference = secret_ref(&secret.name);
        if let SecretState::Conflict(why) = &planned.state {
            let live_version = observed
                .secrets
                .iter()
                .find(|s| s.name == secret.name)
                .and_then(|s| s.resource_version.clone());
            report_taken(ctx, policy, &secret.name, live_version, why, applied).await?;
            continue;
        }
        if planned.action.is_none() {
            applied.resources.push(reference);
            continue;
        }
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &policy.namespace);
        // Read the whole Secret now: the cache may be behind (another replica, a rotation a
        // moment ago), and the update must carry the version it was computed from.
        let live = if planned.action == Some(SecretAction::Create) {
            None
        } else {
            api.get_opt(&secret.name).await?
        };
        let fresh = secrets::plan_one(
            policy,
            secret,
            live.as_ref()
                .map(|l| SecretMeta::from_meta(&l.metadata))
                .as_ref(),
            observed.now,
        );
        let Some(action) = fresh.action else {
            applied.resources.push(reference);
            continue;
        };
        if let SecretState::Conflict(why) = &fresh.state {
            let version = live
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone());
            report_taken(ctx, policy, &secret.name, version, why, applied).await?;
            continue;
        }
        let content = secrets::secret_content(
            policy,
            secret,
            live.as_ref(),
            &action,
            observed.now,
            &mut |key| secret_value::generate(key.length, key.charset),
        )?;
        match apply::write_secret(&ctx.client, &policy.namespace, &content, live.is_some()).await? {
            Ok(metadata) => {
                ctx.metrics
                    .applied_objects
                    .with_label_values(&["Secret"])
                    .inc();
                announce(ctx, policy, &secret.name, &action, &metadata).await;
                let written = SecretMeta::from_meta(&metadata);
                observed.secrets.retain(|s| s.name != secret.name);
                observed.secrets.push(written);
                applied.resources.push(reference);
            }
            Err(rejection) => {
                let recalled = Recalled {
                    outcome: ApplyOutcome::Rejected(rejection),
                    new: true,
                };
                applied.record(ctx, policy, recalled, reference).await;
            }
        }
    }

    let after_writes = secrets::plan(policy, settings, &observed, plan.selected.clone());
    let mut restarted: Vec<String> = Vec::new();
    for patch in &after_writes.restarts {
        let outcome =
            apply::apply_restart(&ctx.client, &policy.namespace, patch, &policy.name).await?;
        if outcome == ApplyOutcome::Applied {
            secrets::mark_restarted(&mut observed.workloads, patch);
            restarted.push(patch.reference());
        }
        let target = WorkloadTarget {
            kind: patch.kind,
            name: patch.name.clone(),
        };
        let recalled = Recalled { outcome, new: true };
        applied
            .record(ctx, policy, recalled, target.resource_ref())
            .await;
    }
    if !restarted.is_empty() {
        let note = format!(
            "restarting {} onto the current Secret versions",
            restarted.join(", ")
        );
        publish(
            ctx,
            policy,
            EventType::Normal,
            reasons::CONSUMERS_RESTARTED,
            &note,
        )
        .await;
    }
    let settled = secrets::plan(policy, settings, &observed, plan.selected.clone());
    export_next_rotations(ctx, policy, &settled);
    Ok(settled)
}

/// A Secret name held by someone else: reported once as a refusal (and looked at again soon, as
/// for every taken name), never written.
async fn report_taken(
    ctx: &Context,
    policy: &ValidatedPolicy,
    name: &str,
    version: Option<String>,
    why: &str,
    applied: &mut Applied,
) -> Result<(), Error> {
    let rejection = Rejection {
        object: format!("Secret/{name}"),
        code: 409,
        reason: NAME_TAKEN.into(),
    };
    let key = format!("{}/{}/Secret/{name}", policy.namespace, policy.name);
    let body = serde_json::json!({ "taken": why });
    let outcome = apply_remembered(
        ctx,
        Remembered {
            key,
            version,
            recheck: false,
        },
        &body,
        policy.force,
        async { Ok(ApplyOutcome::Rejected(rejection)) },
    )
    .await?;
    if outcome.new {
        let note = format!("Secret {name} {why}");
        publish(
            ctx,
            policy,
            EventType::Warning,
            reasons::SECRET_CONFLICT,
            &note,
        )
        .await;
    }
    applied
        .record(
            ctx,
            policy,
            Recalled {
                new: false,
                ..outcome
            },
            secret_ref(name),
        )
        .await;
    Ok(())
}

/// An event per write, with the version and cause, never a value.
async fn announce(
    ctx: &Context,
    policy: &ValidatedPolicy,
    name: &str,
    action: &SecretAction,
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    let version = SecretMeta::from_meta(metadata)
        .annotations
        .get(crate::names::SECRET_VERSION_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let (reason, note) = match action {
        SecretAction::Create => (
            reasons::SECRET_CREATED,
            format!("generated Secret {name} (version {version})"),
        ),
        SecretAction::Adopt => (
            reasons::SECRET_ADOPTED,
            format!("adopted Secret {name}, keeping its values until the first rotation"),
        ),
        SecretAction::Rotate(cause) => {
            ctx.metrics
                .secret_rotations
                .with_label_values(&[&policy.namespace, &policy.name, name, cause.as_str()])
                .inc();
            (
                reasons::SECRET_ROTATED,
                format!(
                    "rotated Secret {name} to version {version} ({})",
                    cause.as_str()
                ),
            )
        }
        SecretAction::AddKeys(keys) => (
            reasons::SECRET_KEYS_ADDED,
            format!("generated key(s) {} of Secret {name}", keys.join(", ")),
        ),
    };
    tracing::info!(secret = %name, %version, reason, "secret written");
    publish(ctx, policy, EventType::Normal, reason, &note).await;
}

/// Sets the next-rotation gauge of each managed Secret and drops those of Secrets the policy no
/// longer manages, so that no overdue alert fires for a Secret that left the spec.
fn export_next_rotations(ctx: &Context, policy: &ValidatedPolicy, plan: &SecretsPlan) {
    let current: BTreeSet<String> = plan
        .secrets
        .iter()
        .filter(|s| s.state == SecretState::Managed)
        .map(|s| s.name.clone())
        .collect();
    for secret in &plan.secrets {
        if let Some(next) = secret
            .next_rotation
            .filter(|_| current.contains(&secret.name))
        {
            ctx.metrics
                .secret_next_rotation
                .with_label_values(&[&policy.namespace, &policy.name, &secret.name])
                .set(next.as_second());
        }
    }
    let key = format!("{}/{}", policy.namespace, policy.name);
    let previous = super::reconcile::lock(&ctx.rotation_gauges).insert(key, current.clone());
    for gone in previous.unwrap_or_default().difference(&current) {
        let _ = ctx.metrics.secret_next_rotation.remove_label_values(&[
            &policy.namespace,
            &policy.name,
            gone,
        ]);
    }
}

/// Drops every next-rotation gauge of a policy (on cleanup, or when its section goes).
pub(super) fn forget_policy(ctx: &Context, namespace: &str, name: &str) {
    let key = format!("{namespace}/{name}");
    let previous = super::reconcile::lock(&ctx.rotation_gauges).remove(&key);
    for secret in previous.unwrap_or_default() {
        let _ = ctx
            .metrics
            .secret_next_rotation
            .remove_label_values(&[namespace, name, &secret]);
    }
}
