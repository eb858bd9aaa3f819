//! One reconcile of one policy: gather, validate, plan, apply, status — and the finalizer's
//! cleanup that releases what the policy applied to objects it does not own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{Instrument, info_span};

use super::{Context, RememberedRefusal};
use crate::apply::{self, ApplyOutcome};
use crate::crd::{GoREALSecurityPolicy, GoREALSecurityPolicyStatus, Mode, ResourceRef};
use crate::error::Error;
use crate::model::{self, ValidatedPolicy};
use crate::names;
use crate::observed::{NamespaceState, Observed};
use crate::policy::{self, Conflict, Desired, NamespacePlan, Refusals, Rejection};
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
        lock(&ctx.failures).remove(&failure_key);
    }
    result
}

async fn gather(policy: &GoREALSecurityPolicy, ctx: &Context) -> Result<Observed, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    // From the namespace watch cache; read from the API server only while it is not synced.
    let cached = ctx.namespaces.get(&ObjectRef::new(&namespace));
    let metadata = match cached {
        Some(cached) => cached.metadata.clone(),
        None => {
            Api::<Namespace>::all(ctx.client.clone())
                .get(&namespace)
                .await?
                .metadata
        }
    };
    let labelled_by_us = metadata.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(names::FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry.fields_v1.as_ref().is_some_and(|f| {
                f.0.get("f:metadata")
                    .and_then(|m| m.get("f:labels"))
                    .is_some()
            })
    });
    // Policies being deleted no longer hold anything: others may take over.
    let policies = super::policies_in(&ctx.policies, &namespace)
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    Ok(Observed {
        namespace: NamespaceState {
            name: namespace.clone(),
            labels: metadata.labels.unwrap_or_default(),
            labelled_by_us,
            resource_version: metadata.resource_version,
            labelled_by: metadata
                .annotations
                .and_then(|mut a| a.remove(names::NAMESPACE_LABELLED_BY_ANNOTATION)),
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
            let message = model::describe(&problems);
            tracing::warn!(%message, "invalid policy: nothing applied");
            let outcome = Outcome::Invalid(message);
            write_status(policy, ctx, &outcome).await?;
            return Ok(Action::await_change());
        }
    };
    let desired = info_span!("plan").in_scope(|| policy::plan(&validated, &observed));
    let applied = match validated.mode {
        Mode::Audit => Applied::default(),
        Mode::Enforce => {
            let result = apply_desired(&validated, &desired, &observed, ctx)
                .instrument(info_span!("apply"))
                .await;
            match result {
                Ok(applied) => applied,
                Err(error) => {
                    // Ready and compliance keep describing what was last achieved; only
                    // Degraded reports the failure, with a message that quotes nothing the
                    // API server returned.
                    if let Some(previous) = &policy.status {
                        let message = format!(
                            "retrying after {} errors from the API server",
                            error.category()
                        );
                        let next =
                            status::with_degraded(previous, &message, jiff::Timestamp::now());
                        let _ = patch_status(policy, ctx, previous.into(), &next).await;
                    }
                    return Err(error);
                }
            }
        }
    };
    let in_effect = |reference: &str| !applied.not_in_effect.iter().any(|r| r == reference);
    let (compliance, workloads) =
        policy::report(&validated, &desired, &in_effect, &applied.refusals);
    ctx.metrics
        .compliance_score
        .with_label_values(&[validated.namespace.as_str(), validated.name.as_str()])
        .set(i64::from(compliance.score));
    let outcome = Outcome::Planned {
        audit: validated.mode == Mode::Audit,
        conflicts: applied
            .refusals
            .conflicts
            .iter()
            .map(describe_conflict)
            .collect(),
        rejected: applied
            .refusals
            .rejections
            .iter()
            .map(describe_rejection)
            .collect(),
        compliance,
        workloads,
        resources: applied.resources,
    };
    write_status(policy, ctx, &outcome)
        .instrument(info_span!("status"))
        .await?;
    Ok(Action::requeue(RESYNC))
}

fn describe_conflict(conflict: &Conflict) -> String {
    format!(
        "{} held by {}",
        conflict.object,
        conflict.managers.join(", ")
    )
}

fn describe_rejection(rejection: &Rejection) -> String {
    format!(
        "{} ({} {})",
        rejection.object, rejection.code, rejection.reason
    )
}

/// What the apply step achieved.
#[derive(Default)]
struct Applied {
    refusals: Refusals,
    not_in_effect: Vec<String>,
    resources: Vec<ResourceRef>,
}

impl Applied {
    /// Records one object's outcome; refusals are published as events the first time.
    async fn record(
        &mut self,
        ctx: &Context,
        policy: &ValidatedPolicy,
        outcome: Recalled,
        written: ResourceRef,
    ) {
        let object = format!("{}/{}", written.kind, written.name);
        if outcome.outcome == ApplyOutcome::Applied {
            ctx.metrics
                .applied_objects
                .with_label_values(&[written.kind.as_str()])
                .inc();
        }
        match outcome.outcome {
            ApplyOutcome::Unchanged | ApplyOutcome::Applied => self.resources.push(written),
            ApplyOutcome::Conflict(conflict) => {
                if outcome.new {
                    tracing::warn!(object = %conflict.object, managers = ?conflict.managers, "field conflict: not applied");
                    ctx.metrics
                        .conflicts
                        .with_label_values(&[written.kind.as_str()])
                        .inc();
                    let note = describe_conflict(&conflict);
                    publish(
                        ctx,
                        policy,
                        EventType::Warning,
                        reasons::FIELD_CONFLICT,
                        &note,
                    )
                    .await;
                }
                self.not_in_effect.push(object);
                self.refusals.conflicts.push(conflict);
            }
            ApplyOutcome::Rejected(rejection) => {
                if outcome.new {
                    tracing::warn!(object = %rejection.object, code = rejection.code, reason = %rejection.reason, "patch rejected");
                    let note = describe_rejection(&rejection);
                    publish(
                        ctx,
                        policy,
                        EventType::Warning,
                        reasons::APPLY_REJECTED,
                        &note,
                    )
                    .await;
                }
                self.not_in_effect.push(object);
                self.refusals.rejections.push(rejection);
            }
        }
    }
}

/// An apply outcome and whether it is news (not the same refusal as last time).
struct Recalled {
    outcome: ApplyOutcome,
    new: bool,
}

/// Applies `body` unless the same body against the same object version was refused before, in
/// which case the remembered refusal is returned without a request.
async fn apply_remembered<F>(
    ctx: &Context,
    key: String,
    version: Option<String>,
    body: &Value,
    force: bool,
    apply: F,
) -> Result<Recalled, Error>
where
    F: std::future::Future<Output = Result<ApplyOutcome, Error>>,
{
    let remembered = lock(&ctx.refusals)
        .get(&key)
        .filter(|r| r.version == version && r.body == *body && r.force == force)
        .map(|r| r.outcome.clone());
    if let Some(outcome) = remembered {
        return Ok(Recalled {
            outcome,
            new: false,
        });
    }
    let outcome = apply.await?;
    let mut refusals = lock(&ctx.refusals);
    let new = match &outcome {
        ApplyOutcome::Conflict(_) | ApplyOutcome::Rejected(_) => {
            let previous = refusals.insert(
                key,
                RememberedRefusal {
                    version,
                    body: body.clone(),
                    force,
                    outcome: outcome.clone(),
                },
            );
            previous.is_none_or(|p| p.outcome != outcome)
        }
        ApplyOutcome::Applied | ApplyOutcome::Unchanged => {
            refusals.remove(&key);
            false
        }
    };
    Ok(Recalled { outcome, new })
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes in a deliberate order: workloads first, so that no pod of an unhardened workload is
/// refused by Pod Security Admission; then releases; the namespace labels last. A refusal of
/// one object is reported and the others are still applied.
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
        // Keyed on the generation: status updates (rollouts, scaling) do not change the spec and
        // must not bring a refused apply back.
        let generation = observed
            .workloads
            .iter()
            .find(|w| w.kind == patch.target.kind && w.name == patch.target.name)
            .and_then(|w| w.generation)
            .map(|g| g.to_string());
        let key = format!(
            "{}/{}/{}",
            policy.namespace,
            policy.name,
            patch.target.reference()
        );
        let apply = apply::apply_workload(&ctx.client, &policy.namespace, patch, policy.force);
        let outcome =
            apply_remembered(ctx, key, generation, &patch.body, policy.force, apply).await?;
        applied
            .record(ctx, policy, outcome, patch.target.resource_ref())
            .await;
    }
    for target in workload_releases {
        apply::release_workload(&ctx.client, &policy.namespace, target).await?;
    }
    let namespace = &observed.namespace;
    if let Some(body) = apply::namespace_write(namespace, namespace_plan, &policy.name) {
        let key = format!("{}/{}/Namespace", policy.namespace, policy.name);
        let apply = apply::apply_namespace(&ctx.client, &namespace.name, &body, policy.force);
        let version = namespace.resource_version.clone();
        let outcome = apply_remembered(ctx, key, version, &body, policy.force, apply).await?;
        // A release is not a resource of the policy, nor a refusal worth reporting.
        if matches!(namespace_plan, NamespacePlan::Apply(_)) {
            applied
                .record(ctx, policy, outcome, policy::namespace_ref(&namespace.name))
                .await;
        }
    } else if matches!(namespace_plan, NamespacePlan::Apply(_)) {
        applied
            .resources
            .push(policy::namespace_ref(&namespace.name));
    }
    applied.resources.sort();
    Ok(applied)
}

/// Builds the status from an outcome and patches it when it differs; an event per condition
/// transition.
async fn write_status(
    policy: &GoREALSecurityPolicy,
    ctx: &Context,
    outcome: &Outcome,
) -> Result<(), Error> {
    let previous = policy.status.as_ref();
    let next = status::build(
        previous,
        policy.metadata.generation,
        outcome,
        None,
        jiff::Timestamp::now(),
    );
    patch_status(policy, ctx, previous, &next).await
}

async fn patch_status(
    policy: &GoREALSecurityPolicy,
    ctx: &Context,
    previous: Option<&GoREALSecurityPolicyStatus>,
    next: &GoREALSecurityPolicyStatus,
) -> Result<(), Error> {
    if previous == Some(next) {
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
    for condition in status::transitions(previous, next) {
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
    // Event notes stay under 1 KiB (bytes), cut at a character boundary.
    let mut end = note.len().min(1024);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    let note = note[..end].to_string();
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
        // Child ReplicaSets inherit the mark from their Deployment but were never patched.
        if !workload.is_built_in_child()
            && workload.annotations.get(names::HARDENED_BY_ANNOTATION) == Some(&name)
        {
            let target = policy::WorkloadTarget {
                kind: workload.kind,
                name: workload.name.clone(),
            };
            apply::release_workload(&ctx.client, &namespace, &target).await?;
        }
    }
    let observed = gather(policy, ctx).await?;
    if observed.namespace.labelled_by.as_deref() == Some(name.as_str()) {
        let plan = NamespacePlan::Release;
        if let Some(body) = apply::namespace_write(&observed.namespace, &plan, &name) {
            apply::apply_namespace(&ctx.client, &namespace, &body, false).await?;
        }
    }
    let _ = ctx
        .metrics
        .compliance_score
        .remove_label_values(&[namespace.as_str(), name.as_str()]);
    let prefix = format!("{namespace}/{name}/");
    lock(&ctx.refusals).retain(|key, _| !key.starts_with(&prefix));
    Ok(Action::await_change())
}
