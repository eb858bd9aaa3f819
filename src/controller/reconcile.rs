//! One reconcile of one policy: gather, validate, plan, apply, status — and the finalizer's
//! cleanup that releases what the policy applied to objects it does not own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
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
use crate::observed::{NamespaceState, Observed, SecretMeta};
use crate::policy::{self, Conflict, Desired, NamespacePlan, Refusals, Rejection};
use crate::status::{self, Outcome, conditions, reasons};

/// Safety net: re-check every policy this often even without events.
const RESYNC: Duration = Duration::from_secs(3600);
/// How soon to look again at a generated object's name held by a foreign object.
const TAKEN_RETRY: Duration = Duration::from_secs(30);

/// Reconciles one policy; the finalizer is the only top-level action.
pub async fn reconcile(
    policy: Arc<GoREALSecurityPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    // A follower keeps its caches warm and leaves the policy alone: the leader reconciles it,
    // and a takeover reconciles every policy again.
    if !ctx.is_leader.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(Action::await_change());
    }
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
    if result.is_ok() && lock(&ctx.failures).remove(&failure_key).is_some() {
        let (namespace, name) = failure_key.split_once('/').unwrap_or_default();
        ctx.metrics
            .reconcile_failures
            .with_label_values(&[namespace, name])
            .set(0);
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
        network_policies: ctx.network.network_policies_in(&namespace),
        dns_services: cloned(&ctx.network.dns_services),
        api_server_slices: cloned(&ctx.network.api_server_slices),
        generated_objects: ctx
            .alerting
            .generated_objects_in(&namespace)
            .into_iter()
            .chain(ctx.gateway.traffic_policies_in(&namespace))
            .chain(ctx.reports.reports_in(&namespace))
            .collect(),
        policy_report_api: ctx.reports.usable().await,
        http_routes: ctx.gateway.routes_in(&namespace),
        traffic_policy_api: ctx.gateway.traffic_policy_api(),
        prometheus_rule_api: ctx.alerting.prometheus_rule_api(),
        ingresses: ingresses_in(ctx, &namespace),
        secrets: secrets_of(policy, ctx, &namespace).await?,
        now: jiff::Timestamp::now(),
    })
}

/// Ingresses of a namespace from the watch cache, sorted by name.
fn ingresses_in(ctx: &Context, namespace: &str) -> Vec<crate::observed::IngressInfo> {
    let mut ingresses: Vec<_> = ctx
        .ingresses
        .state()
        .iter()
        .filter(|i| i.metadata.namespace.as_deref() == Some(namespace))
        .map(|i| crate::observed::IngressInfo::from_ingress(i))
        .collect();
    ingresses.sort_by(|a, b| a.name.cmp(&b.name));
    ingresses
}

/// Metadata of the Secrets the policy names: the operator's from the watch cache, others (not
/// watched: they may be foreign) read by name.
async fn secrets_of(
    policy: &GoREALSecurityPolicy,
    ctx: &Context,
    namespace: &str,
) -> Result<Vec<SecretMeta>, Error> {
    let Some(section) = &policy.spec.secret_rotation else {
        return Ok(Vec::new());
    };
    let mut found: Vec<SecretMeta> = ctx
        .secrets
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .map(|s| SecretMeta::from_meta(&s.metadata))
        .collect();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    for secret in &section.secrets {
        if found.iter().any(|s| s.name == secret.name) {
            continue;
        }
        if let Some(meta) = api.get_metadata_opt(&secret.name).await? {
            found.push(SecretMeta::from_meta(&meta.metadata));
        }
    }
    Ok(found)
}

fn cloned<K: Resource + Clone>(store: &kube::runtime::reflector::Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state().iter().map(|o| o.as_ref().clone()).collect()
}

async fn reconcile_policy(policy: &GoREALSecurityPolicy, ctx: &Context) -> Result<Action, Error> {
    // Planning from a cache that has not synced would see missing cluster facts (the API
    // server's endpoints, the DNS Service, owned objects) and prune or rewrite what is right.
    if !ctx.caches_synced(policy).await {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
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
    let mut desired = info_span!("plan").in_scope(|| policy::plan(&validated, &observed));
    if validated.secrets.is_none() {
        super::secrets::forget_policy(ctx, &validated.namespace, &validated.name);
    }
    let mut applied = match validated.mode {
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
    if let Some(settled) = applied.secrets.take() {
        desired.secrets = Some(settled);
    }
    let in_effect = |reference: &str| !applied.not_in_effect.iter().any(|r| r == reference);
    // A name held by an object the caches do not watch frees up without an event: look again
    // soon rather than at the next resync.
    let name_taken = applied
        .refusals
        .rejections
        .iter()
        .any(|r| r.reason == apply::NAME_TAKEN);
    let (compliance, workloads) =
        policy::report(&validated, &desired, &in_effect, &applied.refusals);
    ctx.metrics
        .compliance_score
        .with_label_values(&[validated.namespace.as_str(), validated.name.as_str()])
        .set(i64::from(compliance.score));
    // Every catalogue check: a check the report no longer holds (its section removed) or skips
    // has no series, so none stays at an old value.
    for def in crate::compliance::CATALOGUE {
        let labels = [
            validated.namespace.as_str(),
            validated.name.as_str(),
            def.id,
        ];
        match compliance
            .checks
            .iter()
            .find(|c| c.id == def.id)
            .map(|c| c.result)
        {
            Some(crate::crd::CheckResult::Pass) => {
                ctx.metrics.check_failed.with_label_values(&labels).set(0)
            }
            Some(crate::crd::CheckResult::Fail) => {
                ctx.metrics.check_failed.with_label_values(&labels).set(1)
            }
            Some(crate::crd::CheckResult::Skip) | None => {
                let _ = ctx.metrics.check_failed.remove_label_values(&labels);
            }
        }
    }
    let alert_rules = desired.alert_rules_state(&validated, &in_effect);
    let rate_limits = desired.rate_limits_state(&validated, &in_effect);
    let secrets = desired
        .secrets
        .as_ref()
        .map(policy::secrets::status)
        .unwrap_or_default();
    let next_rotation = desired
        .secrets
        .as_ref()
        .filter(|_| validated.mode == Mode::Enforce)
        .and_then(|plan| plan.next_due(observed.now));
    // The report is written in Audit mode too: reports are what Audit mode is for.
    let mut resources = applied.resources;
    if observed.policy_report_api {
        let report = policy::policy_report::report_object(&validated, &compliance, &observed);
        // Optional output: a failure to write it is logged and never holds up the status.
        if report.taken {
            tracing::warn!("the PolicyReport's name is held by another object");
        } else {
            let written = apply::apply_generated(
                &ctx.client,
                &validated.namespace,
                &report,
                &validated.name,
                false,
            )
            .await;
            match written {
                Ok(ApplyOutcome::Applied | ApplyOutcome::Unchanged) => {
                    resources.push(report.resource_ref());
                    resources.sort();
                }
                Ok(refused) => tracing::warn!(?refused, "the PolicyReport was not written"),
                Err(error) => {
                    tracing::warn!(%error, "the PolicyReport was not written; retried next reconcile")
                }
            }
        }
    }
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
        resources,
        alert_rules,
        rate_limits,
        secrets,
        fail_on: validated.fail_on,
    };
    write_status(policy, ctx, &outcome)
        .instrument(info_span!("status"))
        .await?;
    let wait = if name_taken { TAKEN_RETRY } else { RESYNC };
    Ok(Action::requeue(
        until_rotation(next_rotation, observed.now).map_or(wait, |due| due.min(wait)),
    ))
}

/// Time until the next scheduled rotation (at least a second), so that the controller wakes up
/// for it instead of polling.
pub(super) fn until_rotation(
    next: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let left = next?.duration_since(now);
    let left = Duration::try_from(left).unwrap_or_default();
    Some(left.max(Duration::from_secs(1)))
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
pub(super) struct Applied {
    pub(super) refusals: Refusals,
    pub(super) not_in_effect: Vec<String>,
    pub(super) resources: Vec<ResourceRef>,
    /// The secrets plan as it stands after the writes.
    pub(super) secrets: Option<crate::policy::secrets::SecretsPlan>,
}

impl Applied {
    /// Records one object's outcome; refusals are published as events the first time.
    pub(super) async fn record(
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
pub(super) struct Recalled {
    pub(super) outcome: ApplyOutcome,
    pub(super) new: bool,
}

/// Which object a refusal is remembered for, against which version; `recheck` sends the request
/// even when the same refusal is remembered (for objects no watch reports on).
pub(super) struct Remembered {
    pub(super) key: String,
    pub(super) version: Option<String>,
    pub(super) recheck: bool,
}

fn remembered(key: String, version: Option<String>) -> Remembered {
    Remembered {
        key,
        version,
        recheck: false,
    }
}

/// Applies `body` unless the same body against the same object version was refused before, in
/// which case the remembered refusal is returned without a request.
pub(super) async fn apply_remembered<F>(
    ctx: &Context,
    Remembered {
        key,
        version,
        recheck,
    }: Remembered,
    body: &Value,
    force: bool,
    apply: F,
) -> Result<Recalled, Error>
where
    F: std::future::Future<Output = Result<ApplyOutcome, Error>>,
{
    let remembered = lock(&ctx.refusals)
        .get(&key)
        .filter(|r| !recheck && r.version == version && r.body == *body && r.force == force)
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

pub(super) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        generated,
        prune,
        network: _,
        rate_limit: rate_limit_plan,
        ingress_releases,
        alerting: _,
        secrets: secrets_plan,
    } = desired;
    let mut applied = Applied::default();
    // Secrets first: consumers created with this reconcile's hardening then start on them.
    if let (Some(settings), Some(plan)) = (&policy.secrets, secrets_plan) {
        let settled =
            super::secrets::apply_secrets(policy, settings, plan, observed, ctx, &mut applied)
                .await?;
        applied.secrets = Some(settled);
    }
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
        let outcome = apply_remembered(
            ctx,
            remembered(key, generation),
            &patch.body,
            policy.force,
            apply,
        )
        .await?;
        applied
            .record(ctx, policy, outcome, patch.target.resource_ref())
            .await;
    }
    for target in workload_releases {
        apply::release_workload(&ctx.client, &policy.namespace, target).await?;
    }
    for object in generated.iter().filter(|g| !g.taken) {
        let key = format!(
            "{}/{}/{}",
            policy.namespace,
            policy.name,
            object.reference()
        );
        let apply = apply::apply_generated(
            &ctx.client,
            &policy.namespace,
            object,
            &policy.name,
            policy.force,
        );
        // A refusal is remembered until the body or the live object changes; a name taken by
        // an object the caches do not see is read again on every reconcile (its removal sends no
        // event), while the refusal's event is still published only once.
        let version = object.live_version.clone();
        let recheck = version.is_none() && !apply::CACHED_WHOLE.contains(&object.kind);
        let outcome = apply_remembered(
            ctx,
            Remembered {
                key,
                version,
                recheck,
            },
            &object.body,
            policy.force,
            apply,
        )
        .await?;
        applied
            .record(ctx, policy, outcome, object.resource_ref())
            .await;
    }
    for object in prune {
        apply::delete_generated(&ctx.client, &policy.namespace, object).await?;
    }
    // Ingress annotations after the nginx files: both read the same zones.
    if let Some(plan) = rate_limit_plan {
        for patch in &plan.ingress_patches {
            let version = observed
                .ingresses
                .iter()
                .find(|i| i.name == patch.name)
                .and_then(|i| i.resource_version.clone());
            let key = format!("{}/{}/{}", policy.namespace, policy.name, patch.reference());
            let apply = apply::apply_ingress(&ctx.client, &policy.namespace, patch, policy.force);
            let outcome = apply_remembered(
                ctx,
                remembered(key, version),
                &patch.body,
                policy.force,
                apply,
            )
            .await?;
            applied
                .record(ctx, policy, outcome, patch.resource_ref())
                .await;
        }
    }
    for name in ingress_releases {
        apply::release_ingress(&ctx.client, &policy.namespace, name).await?;
    }
    let namespace = &observed.namespace;
    if let Some(body) = apply::namespace_write(namespace, namespace_plan, &policy.name) {
        let key = format!("{}/{}/Namespace", policy.namespace, policy.name);
        let apply = apply::apply_namespace(&ctx.client, &namespace.name, &body, policy.force);
        let version = namespace.resource_version.clone();
        let outcome =
            apply_remembered(ctx, remembered(key, version), &body, policy.force, apply).await?;
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

pub(super) async fn publish(
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
    // What to release is read from the caches: before they sync, nothing would be found and the
    // finalizer would go with the patches still in place. Retried.
    if !ctx.caches_synced(policy).await {
        return Err(Error::NotSynced);
    }
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
    for ingress in &observed.ingresses {
        if ingress.annotations.get(names::RATE_LIMITED_BY_ANNOTATION) == Some(&name) {
            apply::release_ingress(&ctx.client, &namespace, &ingress.name).await?;
        }
    }
    if observed.namespace.labelled_by.as_deref() == Some(name.as_str()) {
        let plan = NamespacePlan::Release;
        if let Some(body) = apply::namespace_write(&observed.namespace, &plan, &name) {
            apply::apply_namespace(&ctx.client, &namespace, &body, false).await?;
        }
    }
    for gauge in [
        &ctx.metrics.compliance_score,
        &ctx.metrics.reconcile_failures,
    ] {
        let _ = gauge.remove_label_values(&[namespace.as_str(), name.as_str()]);
    }
    for check in crate::compliance::CATALOGUE {
        let _ = ctx.metrics.check_failed.remove_label_values(&[
            namespace.as_str(),
            name.as_str(),
            check.id,
        ]);
    }
    super::secrets::forget_policy(ctx, &namespace, &name);
    let prefix = format!("{namespace}/{name}/");
    lock(&ctx.refusals).retain(|key, _| !key.starts_with(&prefix));
    Ok(Action::await_change())
}
