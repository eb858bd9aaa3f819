//! One reconcile of one policy: gather, validate, plan, apply, status — and the finalizer's
//! cleanup that releases what the policy applied to objects it does not own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info_span};

use super::{Context, RememberedConflict};
use crate::apply::{self, ApplyOutcome};
use crate::crd::{GoREALSecurityPolicy, GoREALSecurityPolicyStatus, Mode, ResourceRef};
use crate::error::Error;
use crate::model::{self, ValidatedPolicy};
use crate::names;
use crate::observed::{NamespaceState, Observed};
use crate::policy::{self, Conflict, Desired};
use crate::status::{self, Outcome, conditions, reasons};

/// Safety net: re-check every policy this often even without events.
const RESYNC: Duration = Duration::from_secs(3600);

/// Reconciles one policy; the finalizer is the only top-level action.
pub async fn reconcile(
    policy: Arc<GoREALSecurityPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let span = info_span!(
        "reconcile",
        namespace = %namespace,
        policy = %policy.name_any(),
        generation = policy.metadata.generation.unwrap_or_default(),
    );
    let failure_key = format!("{namespace}/{}", policy.name_any());
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let api: Api<GoREALSecurityPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, names::FINALIZER, policy, |event| async {
        match event {
            FinalizerEvent::Apply(policy) => reconcile_policy(&policy, &ctx).await,
            FinalizerEvent::Cleanup(policy) => cleanup(&policy, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(Error::from);
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures.lock().await.remove(&failure_key);
    }
    result
}

async fn gather(policy: &GoREALSecurityPolicy, ctx: &Context) -> Result<Observed, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let live = Api::<Namespace>::all(ctx.client.clone())
        .get(&namespace)
        .await?;
    let labelled_by_us = live.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some(names::FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry.fields_v1.as_ref().is_some_and(|f| {
                f.0.get("f:metadata")
                    .and_then(|m| m.get("f:labels"))
                    .is_some()
            })
    });
    // Policies being deleted no longer hold anything: others may take over.
    let policies = ctx
        .policies
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    Ok(Observed {
        namespace: NamespaceState {
            name: namespace.clone(),
            labels: live.labels().clone(),
            labelled_by_us,
            labelled_by: live
                .annotations()
                .get(names::NAMESPACE_LABELLED_BY_ANNOTATION)
                .cloned(),
        },
        workloads: ctx.workloads.in_namespace(&namespace),
        policies,
    })
}

async fn reconcile_policy(policy: &GoREALSecurityPolicy, ctx: &Context) -> Result<Action, Error> {
    let observed = gather(policy, ctx).instrument(info_span!("gather")).await?;
    let validated = match model::validate(policy) {
        Ok(validated) => validated,
        Err(problems) => {
            let outcome = Outcome::Invalid(model::describe(&problems));
            write_status(policy, ctx, &outcome, None).await?;
            return Ok(Action::await_change());
        }
    };
    let desired = info_span!("plan").in_scope(|| policy::plan(&validated, &observed));
    let applied = match validated.mode {
        Mode::Enforce => {
            match apply_desired(&validated, &desired, &observed, ctx)
                .instrument(info_span!("apply"))
                .await
            {
                Ok(applied) => applied,
                Err(error) => {
                    // Transient or not, Ready keeps its last value: only Degraded reports it.
                    let degraded = format!("{}: {error}", error.category());
                    if let Some(previous) = &policy.status {
                        let outcome = previous_outcome(previous);
                        let _ = write_status(policy, ctx, &outcome, Some(&degraded)).await;
                    }
                    return Err(error);
                }
            }
        }
        Mode::Audit => Applied::default(),
    };
    let in_effect = |reference: &str| !applied.not_in_effect.iter().any(|r| r == reference);
    let (compliance, workloads) =
        policy::report(&validated, &desired, &in_effect, &applied.conflicts);
    ctx.metrics
        .compliance_score
        .with_label_values(&[validated.namespace.as_str(), validated.name.as_str()])
        .set(i64::from(compliance.score));
    let outcome = Outcome::Planned {
        audit: validated.mode == Mode::Audit,
        conflicts: applied.conflicts.iter().map(describe_conflict).collect(),
        compliance,
        workloads,
        resources: applied.resources,
    };
    write_status(policy, ctx, &outcome, None)
        .instrument(info_span!("status"))
        .await?;
    Ok(Action::requeue(RESYNC))
}

/// Rebuilds the outcome a previous status described, to change only its Degraded condition.
fn previous_outcome(previous: &GoREALSecurityPolicyStatus) -> Outcome {
    let ready = previous
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY);
    match ready {
        Some(c) if c.reason == reasons::INVALID_SPEC => Outcome::Invalid(c.message.clone()),
        _ => Outcome::Planned {
            audit: ready.is_some_and(|c| c.reason == reasons::AUDITING),
            conflicts: ready
                .filter(|c| c.reason == reasons::FIELD_CONFLICT)
                .map(|c| vec![c.message.clone()])
                .unwrap_or_default(),
            compliance: previous.compliance.clone().unwrap_or_default(),
            workloads: previous.workloads.clone().unwrap_or_default(),
            resources: previous.resources.clone(),
        },
    }
}

fn describe_conflict(conflict: &Conflict) -> String {
    format!(
        "{} held by {}",
        conflict.object,
        conflict.managers.join(", ")
    )
}

/// What the apply step achieved.
#[derive(Default)]
struct Applied {
    conflicts: Vec<Conflict>,
    not_in_effect: Vec<String>,
    resources: Vec<ResourceRef>,
}

/// Writes in a deliberate order: workloads first, so that no pod of an unhardened workload is
/// refused by Pod Security Admission; then releases; the namespace labels last.
async fn apply_desired(
    policy: &ValidatedPolicy,
    desired: &Desired,
    observed: &Observed,
    ctx: &Context,
) -> Result<Applied, Error> {
    let Desired {
        workload_patches,
        workload_releases,
        namespace: namespace_plan,
        selected: _,
        governed_elsewhere: _,
    } = desired;
    let mut applied = Applied::default();
    for patch in workload_patches {
        let key = format!("{}/{}", policy.namespace, patch.target.reference());
        let live = observed
            .workloads
            .iter()
            .find(|w| w.kind == patch.target.kind && w.name == patch.target.name);
        let resource_version = live.and_then(|w| w.resource_version.clone());
        let remembered = ctx.conflicts.lock().await.get(&key).cloned().filter(|r| {
            r.resource_version == resource_version
                && r.body == patch.body
                && r.force == policy.force
        });
        let outcome = match remembered {
            Some(remembered) => ApplyOutcome::Conflict(remembered.conflict),
            None => {
                apply::apply_workload(&ctx.client, &policy.namespace, patch, policy.force).await?
            }
        };
        match outcome {
            ApplyOutcome::Unchanged => {}
            ApplyOutcome::Applied => {
                ctx.metrics
                    .applied_objects
                    .with_label_values(&[patch.target.kind.as_str()])
                    .inc();
            }
            ApplyOutcome::Conflict(conflict) => {
                let mut conflicts = ctx.conflicts.lock().await;
                if !conflicts.contains_key(&key)
                    || conflicts.get(&key).is_some_and(|r| {
                        r.resource_version != resource_version || r.body != patch.body
                    })
                {
                    ctx.metrics
                        .conflicts
                        .with_label_values(&[patch.target.kind.as_str()])
                        .inc();
                    publish(
                        ctx,
                        policy,
                        EventType::Warning,
                        reasons::FIELD_CONFLICT,
                        &describe_conflict(&conflict),
                    )
                    .await;
                }
                conflicts.insert(
                    key.clone(),
                    RememberedConflict {
                        resource_version,
                        body: patch.body.clone(),
                        force: policy.force,
                        conflict: conflict.clone(),
                    },
                );
                applied.not_in_effect.push(patch.target.reference());
                applied.conflicts.push(conflict);
                continue;
            }
        }
        ctx.conflicts.lock().await.remove(&key);
        applied.resources.push(ResourceRef {
            api_version: patch.target.kind.api_version().into(),
            kind: patch.target.kind.as_str().into(),
            name: patch.target.name.clone(),
        });
    }
    for target in workload_releases {
        apply::release_workload(&ctx.client, &policy.namespace, target).await?;
    }
    let outcome = apply::apply_namespace(
        &ctx.client,
        &observed.namespace,
        namespace_plan,
        &policy.name,
        policy.force,
    )
    .await?;
    match outcome {
        ApplyOutcome::Conflict(conflict) => applied.conflicts.push(conflict),
        _ if matches!(namespace_plan, policy::NamespacePlan::Apply(_)) => {
            applied.resources.push(ResourceRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                name: policy.namespace.clone(),
            })
        }
        _ => {}
    }
    applied.resources.sort();
    Ok(applied)
}

/// Patches the status only when it differs, and publishes an event per condition transition.
async fn write_status(
    policy: &GoREALSecurityPolicy,
    ctx: &Context,
    outcome: &Outcome,
    degraded: Option<&str>,
) -> Result<(), Error> {
    let previous = policy.status.as_ref();
    let next = status::build(
        previous,
        policy.metadata.generation,
        outcome,
        degraded,
        jiff::Timestamp::now(),
    );
    if previous == Some(&next) {
        return Ok(());
    }
    let api: Api<GoREALSecurityPolicy> =
        Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": GoREALSecurityPolicy::api_version(&()),
        "kind": GoREALSecurityPolicy::kind(&()),
        "status": next,
    });
    // The operator is the only writer of status, so taking ownership is always right here.
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch_status(&policy.name_any(), &params, &Patch::Apply(&body))
        .await?;
    for condition in status::transitions(previous, &next) {
        let type_ = match (condition.type_.as_str(), condition.status.as_str()) {
            (conditions::DEGRADED, "False") | (_, "True") => EventType::Normal,
            _ => EventType::Warning,
        };
        if previous.is_none()
            && type_ == EventType::Normal
            && condition.type_ == conditions::DEGRADED
        {
            continue;
        }
        let note = format!(
            "{} is {}: {}",
            condition.type_, condition.status, condition.message
        );
        publish_for(ctx, policy, type_, &condition.reason, &note).await;
    }
    Ok(())
}

async fn publish(
    ctx: &Context,
    policy: &ValidatedPolicy,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(GoREALSecurityPolicy::api_version(&()).into()),
        kind: Some(GoREALSecurityPolicy::kind(&()).into()),
        name: Some(policy.name.clone()),
        namespace: Some(policy.namespace.clone()),
        uid: policy.uid.clone(),
        ..Default::default()
    };
    send(ctx, &reference, type_, reason, note).await;
}

async fn publish_for(
    ctx: &Context,
    policy: &GoREALSecurityPolicy,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    send(ctx, &policy.object_ref(&()), type_, reason, note).await;
}

async fn send(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    // Event notes stay under 1 KiB.
    let note: String = note.chars().take(1000).collect();
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(%error, "could not publish event");
    }
}

/// Releases every field the policy applied to workloads and the namespace. Idempotent, and
/// correct even if apply never ran.
async fn cleanup(policy: &GoREALSecurityPolicy, ctx: &Context) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    for workload in ctx.workloads.in_namespace(&namespace) {
        if workload.annotations.get(names::HARDENED_BY_ANNOTATION) == Some(&name) {
            let target = policy::WorkloadTarget {
                kind: workload.kind,
                name: workload.name.clone(),
            };
            apply::release_workload(&ctx.client, &namespace, &target).await?;
        }
    }
    let observed = gather(policy, ctx).await?;
    if observed.namespace.labelled_by.as_deref() == Some(name.as_str()) {
        let plan = policy::NamespacePlan::Release;
        apply::apply_namespace(&ctx.client, &observed.namespace, &plan, &name, false).await?;
    }
    let _ = ctx
        .metrics
        .compliance_score
        .remove_label_values(&[namespace.as_str(), name.as_str()]);
    ctx.conflicts
        .lock()
        .await
        .retain(|key, _| !key.starts_with(&format!("{namespace}/")));
    Ok(Action::await_change())
}
