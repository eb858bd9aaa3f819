//! Planning: from a validated policy and the observed snapshot to the `Desired` bundle of
//! patches, releases and check inputs. One module per capability; nothing here calls the API,
//! reads the clock or draws randomness.

pub mod alerting;
pub mod generated;
pub mod network;
pub mod pod_security;
pub mod policy_report;
pub mod rate_limit;
pub mod secrets;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use generated::GeneratedObject;

use crate::compliance::{self, Capability, Evaluation, Violation};
use crate::crd::{ComplianceStatus, Mode, ResourceRef, WorkloadsStatus};
use crate::model::ValidatedPolicy;
use crate::names;
use crate::observed::{Observed, Workload, WorkloadKind};

/// Everything a policy wants applied, by kind of write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// Field patches on workloads the policy governs.
    pub workload_patches: Vec<WorkloadPatch>,
    /// Workloads this policy hardened earlier and no longer governs: their fields are released.
    pub workload_releases: Vec<WorkloadTarget>,
    /// What to do with the namespace's Pod Security Admission labels.
    pub namespace: NamespacePlan,
    /// Selected workloads with what the checks need.
    pub selected: Vec<Selected>,
    /// Objects this policy would write that another existing policy governs, with its name.
    pub governed_elsewhere: Vec<(String, String)>,
    /// Objects the policy generates and owns (NetworkPolicies, ...).
    pub generated: Vec<GeneratedObject>,
    /// Objects the policy generated earlier that it no longer wants: deleted.
    pub prune: Vec<generated::PruneTarget>,
    /// What the network checks need, when network isolation is managed.
    pub network: Option<network::NetworkPlan>,
    /// What the rate limit outputs need, when rate limiting is managed.
    pub rate_limit: Option<rate_limit::RateLimitPlan>,
    /// Ingresses this policy annotated earlier and no longer limits: released (also when the
    /// section is gone).
    pub ingress_releases: Vec<String>,
    /// Where the alert rules go, when alerting is managed.
    pub alerting: Option<alerting::AlertingPlan>,
    /// The Secrets and their consumers' restarts, when secrets are managed.
    pub secrets: Option<secrets::SecretsPlan>,
}

impl Desired {
    /// The `RateLimits` condition's content, when rate limiting is managed.
    pub fn rate_limits_state(
        &self,
        policy: &ValidatedPolicy,
        in_effect: &dyn Fn(&str) -> bool,
    ) -> Option<crate::status::OutputState> {
        let plan = self.rate_limit.as_ref()?;
        Some(rate_limit::state(policy, plan, &self.generated, in_effect))
    }

    /// The alert rules object and its plan, when alerting is managed.
    pub fn alert_rules(&self) -> Option<(&GeneratedObject, &alerting::AlertingPlan)> {
        let plan = self.alerting.as_ref()?;
        let object = self
            .generated
            .iter()
            .find(|g| g.kind == plan.output.kind() && g.name == plan.name)?;
        Some((object, plan))
    }

    /// The `AlertRules` condition's content, when alerting is managed (Audit mode writes none).
    pub fn alert_rules_state(
        &self,
        policy: &ValidatedPolicy,
        in_effect: &dyn Fn(&str) -> bool,
    ) -> Option<crate::status::OutputState> {
        let (object, plan) = self.alert_rules()?;
        let mut state = alerting::state(object, plan, in_effect);
        if policy.mode == Mode::Audit {
            state.in_place = false;
            state.message = format!("Audit mode writes nothing; would be: {}", state.message);
        }
        Some(state)
    }
}

/// The namespace labels step.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum NamespacePlan {
    /// Apply these labels, marking the namespace as labelled by this policy.
    Apply(BTreeMap<String, String>),
    /// Release the labels this policy set.
    Release,
    /// Not this policy's business.
    #[default]
    Leave,
}

/// A workload addressed by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadTarget {
    /// Kind.
    pub kind: WorkloadKind,
    /// Name.
    pub name: String,
}

impl WorkloadTarget {
    /// `Kind/name`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }

    /// The workload as a status resource entry.
    pub fn resource_ref(&self) -> ResourceRef {
        ResourceRef {
            api_version: self.kind.api_version().into(),
            kind: self.kind.as_str().into(),
            name: self.name.clone(),
        }
    }
}

/// The namespace as a status resource entry.
pub fn namespace_ref(namespace: &str) -> ResourceRef {
    ResourceRef {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        name: namespace.into(),
    }
}

/// A server-side apply body for one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadPatch {
    /// Which workload.
    pub target: WorkloadTarget,
    /// The full apply body: apiVersion, kind, metadata and the partial spec.
    pub body: Value,
    /// Whether the live object already carries every field of the body (no write needed).
    pub up_to_date: bool,
}

/// A selected workload and the template it will have once hardened.
#[derive(Clone, Debug, PartialEq)]
pub struct Selected {
    /// The workload as observed.
    pub workload: Workload,
    /// Controlled by another operator: checked, never patched.
    pub unmanaged: bool,
    /// The template after the patch, when a patch is planned.
    pub hardened: Option<PodTemplateSpec>,
}

/// The server-side apply body of the namespace step: labels and the labelled-by mark, or an
/// empty body that releases them; `None` when there is nothing to send.
pub fn namespace_body(namespace: &str, plan: &NamespacePlan, policy: &str) -> Option<Value> {
    let metadata = match plan {
        NamespacePlan::Leave => return None,
        NamespacePlan::Release => json!({ "name": namespace }),
        NamespacePlan::Apply(labels) => json!({
            "name": namespace,
            "labels": labels,
            "annotations": { names::NAMESPACE_LABELLED_BY_ANNOTATION: policy },
        }),
    };
    Some(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": metadata }))
}

/// Plans every capability of the policy against the observed snapshot.
pub fn plan(policy: &ValidatedPolicy, observed: &Observed) -> Desired {
    let mut desired = Desired::default();
    plan_pod_security(policy, observed, &mut desired);
    if let Some(settings) = &policy.network {
        let pods = governed(policy, observed)
            .map(|w| (w.reference(), w.template_labels()))
            .collect();
        let (generated, plan) = network::plan(policy, settings, observed, pods);
        desired.generated.extend(generated);
        desired.network = Some(plan);
    }
    if let Some(settings) = &policy.rate_limit {
        let (generated, plan) = rate_limit::plan(policy, settings, observed);
        desired.generated.extend(generated);
        desired.rate_limit = Some(plan);
    }
    if let Some(settings) = &policy.alerting {
        let (object, plan) = alerting::plan(policy, settings, observed);
        desired.generated.push(object);
        desired.alerting = Some(plan);
    }
    if let Some(settings) = &policy.secrets {
        let selected = governed(policy, observed).cloned().collect();
        desired.secrets = Some(secrets::plan(policy, settings, observed, selected));
    }
    desired.ingress_releases = rate_limit::ingress_releases(
        policy,
        observed,
        desired
            .rate_limit
            .as_ref()
            .map_or(&[], |p| p.ingress_patches.as_slice()),
    );
    desired.prune = network::unwanted(&policy.name, observed, &desired.generated);
    desired.prune.extend(alerting::unwanted(
        &policy.name,
        observed,
        &desired.generated,
    ));
    desired.prune.extend(rate_limit::unwanted(
        &policy.name,
        observed,
        &desired.generated,
    ));
    desired
}

/// Pod security: workload patches and releases, and the namespace labels.
fn plan_pod_security(policy: &ValidatedPolicy, observed: &Observed, desired: &mut Desired) {
    let labelled_by_self = observed.namespace.labelled_by.as_deref() == Some(&policy.name);
    let Some(settings) = &policy.pod_security else {
        desired.workload_releases = hardened_by(policy, observed, |_| true);
        if labelled_by_self {
            desired.namespace = NamespacePlan::Release;
        }
        return;
    };
    // Two policies writing the same fields under one field manager would undo each other on
    // every event; the one that got there first keeps the object while it exists.
    let other_owner = |owner: Option<&String>| {
        owner
            .filter(|o| **o != policy.name && observed.policies.contains(*o))
            .cloned()
    };
    for workload in governed(policy, observed) {
        let unmanaged = workload.is_unmanaged();
        if let Some(other) = other_owner(workload.annotations.get(names::HARDENED_BY_ANNOTATION)) {
            desired
                .governed_elsewhere
                .push((workload.reference(), other));
            desired.selected.push(Selected {
                workload: workload.clone(),
                unmanaged,
                hardened: None,
            });
            continue;
        }
        let whole_exempt = settings
            .exemptions
            .iter()
            .any(|e| e.workload == workload.name && e.container.is_none() && e.checks.is_empty());
        // A Job's pod template cannot change once created: it is checked, never patched.
        let immutable = workload.kind == WorkloadKind::Job;
        let patch = (!unmanaged && !whole_exempt && !immutable)
            .then(|| pod_security::harden(workload, settings))
            .flatten();
        let hardened = patch
            .as_ref()
            .map(|p| pod_security::hardened_template(&workload.template, p));
        if let (Some(patch), Some(hardened)) = (patch, &hardened) {
            desired
                .workload_patches
                .push(workload_patch(policy, workload, patch, hardened));
        }
        desired.selected.push(Selected {
            workload: workload.clone(),
            unmanaged,
            hardened,
        });
    }
    let patched: Vec<String> = desired
        .workload_patches
        .iter()
        .map(|p| p.target.reference())
        .collect();
    desired.workload_releases =
        hardened_by(policy, observed, |w| !patched.contains(&w.reference()));
    let namespace_owner = other_owner(observed.namespace.labelled_by.as_ref());
    desired.namespace = match (settings.label_namespace, namespace_owner) {
        (true, Some(other)) => {
            desired
                .governed_elsewhere
                .push((format!("Namespace/{}", policy.namespace), other));
            NamespacePlan::Leave
        }
        (true, None) => NamespacePlan::Apply(
            names::PSA_MODES
                .iter()
                .map(|mode| {
                    let key = format!("{}{mode}", names::PSA_LABEL_PREFIX);
                    (key, settings.level.as_str().to_string())
                })
                .collect(),
        ),
        (false, _) if labelled_by_self => NamespacePlan::Release,
        (false, _) => NamespacePlan::Leave,
    };
}

/// Selected workloads that are workloads of their own (not a Deployment's ReplicaSet).
fn governed<'a>(
    policy: &'a ValidatedPolicy,
    observed: &'a Observed,
) -> impl Iterator<Item = &'a Workload> {
    observed
        .workloads
        .iter()
        .filter(|w| !w.is_built_in_child() && policy.selector.matches(&w.template_labels()))
}

/// Workloads carrying this policy's hardened-by mark that pass `filter`.
fn hardened_by(
    policy: &ValidatedPolicy,
    observed: &Observed,
    filter: impl Fn(&Workload) -> bool,
) -> Vec<WorkloadTarget> {
    observed
        .workloads
        .iter()
        // A Deployment's ReplicaSets inherit its annotations; they were never patched themselves.
        .filter(|w| !w.is_built_in_child())
        .filter(|w| w.annotations.get(names::HARDENED_BY_ANNOTATION) == Some(&policy.name))
        .filter(|w| filter(w))
        .map(|w| WorkloadTarget {
            kind: w.kind,
            name: w.name.clone(),
        })
        .collect()
}

fn workload_patch(
    policy: &ValidatedPolicy,
    workload: &Workload,
    template_patch: Value,
    hardened: &PodTemplateSpec,
) -> WorkloadPatch {
    let digest = digest(&template_patch);
    let up_to_date = workload.annotations.get(names::APPLIED_DIGEST_ANNOTATION) == Some(&digest)
        && workload.annotations.get(names::HARDENED_BY_ANNOTATION) == Some(&policy.name)
        && pod_security::same_template(hardened, &workload.template);
    let profiles = pod_security::pod_profiles_of(&template_patch).to_string();
    let body = json!({
        "apiVersion": workload.kind.api_version(),
        "kind": workload.kind.as_str(),
        "metadata": {
            "name": workload.name,
            "namespace": policy.namespace,
            "annotations": {
                names::HARDENED_BY_ANNOTATION: policy.name,
                names::APPLIED_DIGEST_ANNOTATION: digest,
                names::APPLIED_PROFILES_ANNOTATION: profiles,
            },
        },
        "spec": workload.kind.nest_template(template_patch),
    });
    WorkloadPatch {
        target: WorkloadTarget {
            kind: workload.kind,
            name: workload.name.clone(),
        },
        body,
        up_to_date,
    }
}

/// Short digest of a JSON value; `serde_json` keeps object keys sorted, so equal values give
/// equal digests.
fn digest(value: &Value) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the API server refused while applying; everything else planned is in effect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Field conflicts with other managers.
    pub conflicts: Vec<Conflict>,
    /// Patches the API server rejected as invalid or forbidden.
    pub rejections: Vec<Rejection>,
}

/// A patch the API server rejected. Only the status code and reason are kept: the server's
/// message can quote the object, environment values included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `Kind/name` of the object.
    pub object: String,
    /// HTTP status code.
    pub code: u16,
    /// The API server's reason, such as `Invalid` or `Forbidden`.
    pub reason: String,
}

/// A field conflict with another field manager, found while applying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// `Kind/name` of the workload.
    pub object: String,
    /// Field managers holding the conflicting fields.
    pub managers: Vec<String>,
    /// The conflicting fields, as the API server names them.
    pub fields: Vec<String>,
}

/// The compliance report and workload counts. `applied` says, per workload reference, whether
/// its planned patch is in effect (written now or earlier); other workloads are judged by their
/// live template.
pub fn report(
    policy: &ValidatedPolicy,
    desired: &Desired,
    applied: &dyn Fn(&str) -> bool,
    refusals: &Refusals,
) -> (ComplianceStatus, WorkloadsStatus) {
    let mut capabilities = Vec::new();
    let mut evaluations: Vec<Evaluation> = Vec::new();
    let mut workloads = WorkloadsStatus::default();
    if let Some(settings) = &policy.pod_security {
        capabilities.push(Capability::PodSecurity);
        workloads = pod_security_evaluations(
            policy,
            settings,
            desired,
            applied,
            refusals,
            &mut evaluations,
        );
    }
    if let (Some(settings), Some(plan)) = (&policy.network, &desired.network) {
        capabilities.push(Capability::NetworkPolicy);
        evaluations.extend(network::evaluate(
            policy,
            settings,
            &desired.generated,
            plan,
            applied,
            refusals,
        ));
    }
    if let (Some(settings), Some(plan)) = (&policy.rate_limit, &desired.rate_limit) {
        capabilities.push(Capability::RateLimiting);
        evaluations.extend(rate_limit::evaluate(
            policy,
            settings,
            plan,
            &desired.generated,
            applied,
            refusals,
        ));
    }
    if let Some((object, plan)) = desired.alert_rules() {
        capabilities.push(Capability::Alerting);
        evaluations.extend(alerting::evaluate(policy, object, plan, applied, refusals));
    }
    if let Some(plan) = &desired.secrets {
        capabilities.push(Capability::Secrets);
        evaluations.extend(secrets::evaluate(plan));
    }
    capabilities.push(Capability::Manual);
    evaluations.extend(compliance::manual_evaluations());
    (compliance::report(&capabilities, &evaluations), workloads)
}

fn pod_security_evaluations(
    policy: &ValidatedPolicy,
    settings: &crate::model::PodSecuritySettings,
    desired: &Desired,
    applied: &dyn Fn(&str) -> bool,
    refusals: &Refusals,
    evaluations: &mut Vec<Evaluation>,
) -> WorkloadsStatus {
    let mut workloads = WorkloadsStatus::default();
    for selected in &desired.selected {
        let reference = selected.workload.reference();
        let in_effect = policy.mode == Mode::Enforce && applied(&reference);
        let template = match (&selected.hardened, in_effect) {
            (Some(hardened), true) => hardened,
            _ => &selected.workload.template,
        };
        let found = pod_security::evaluate(&selected.workload, template, settings);
        let failing = found
            .iter()
            .any(|e| e.violations.iter().any(|v| v.exempt.is_none()));
        workloads.matched += 1;
        if failing {
            workloads.failing += 1;
        } else {
            workloads.hardened += 1;
        }
        if selected.unmanaged {
            workloads.unmanaged.push(reference);
        } else if selected.workload.kind == WorkloadKind::Job {
            workloads.immutable.push(reference);
        }
        evaluations.extend(found);
    }
    // One ownership evaluation per written object (each patched workload, the namespace), so
    // the check counts objects, not conflicts.
    let mut written: Vec<String> = desired
        .workload_patches
        .iter()
        .map(|p| p.target.reference())
        .collect();
    if matches!(desired.namespace, NamespacePlan::Apply(_)) {
        written.push(format!("Namespace/{}", policy.namespace));
    }
    written.extend(
        desired
            .governed_elsewhere
            .iter()
            .map(|(object, _)| object.clone()),
    );
    for object in written {
        evaluations.push(if policy.mode == Mode::Audit {
            Evaluation::skipped(compliance::FIELD_OWNERSHIP, "Audit mode applies nothing")
        } else {
            let held = refusals
                .conflicts
                .iter()
                .filter(|c| c.object == object)
                .map(|conflict| Violation {
                    object: conflict.object.clone(),
                    detail: format!(
                        "has fields held by {} ({})",
                        conflict.managers.join(", "),
                        conflict.fields.join(", ")
                    ),
                    exempt: None,
                });
            let elsewhere = desired
                .governed_elsewhere
                .iter()
                .filter(|(o, _)| *o == object)
                .map(|(object, other)| Violation {
                    object: object.clone(),
                    detail: format!("is governed by policy {other}, which hardened it first"),
                    exempt: None,
                });
            Evaluation::of(compliance::FIELD_OWNERSHIP, held.chain(elsewhere).collect())
        });
        evaluations.push(if policy.mode == Mode::Audit {
            Evaluation::skipped(compliance::PATCH_ACCEPTED, "Audit mode applies nothing")
        } else {
            let rejected = refusals
                .rejections
                .iter()
                .filter(|r| r.object == object)
                .map(|r| Violation {
                    object: r.object.clone(),
                    detail: format!("patch rejected by the API server ({} {})", r.code, r.reason),
                    exempt: None,
                });
            Evaluation::of(compliance::PATCH_ACCEPTED, rejected.collect())
        });
    }
    workloads
}
