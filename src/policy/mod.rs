//! Planning: from a validated policy and the observed snapshot to the `Desired` bundle of
//! patches, releases and check inputs. One module per capability; nothing here calls the API,
//! reads the clock or draws randomness.

pub mod pod_security;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::compliance::{self, Capability, Evaluation, Violation};
use crate::crd::{ComplianceStatus, Mode, WorkloadsStatus};
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
    /// Pod Security Admission labels for the namespace; `None` releases ours.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// Selected workloads with what the checks need.
    pub selected: Vec<Selected>,
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

/// Plans every capability of the policy against the observed snapshot.
pub fn plan(policy: &ValidatedPolicy, observed: &Observed) -> Desired {
    let mut desired = Desired::default();
    let Some(settings) = &policy.pod_security else {
        desired.workload_releases = hardened_by(policy, observed, |_| true);
        return desired;
    };
    for workload in governed(policy, observed) {
        let unmanaged = workload.is_unmanaged();
        let whole_exempt = settings
            .exemptions
            .iter()
            .any(|e| e.workload == workload.name && e.container.is_none() && e.checks.is_empty());
        let patch = (!unmanaged && !whole_exempt)
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
    desired.namespace_labels = settings.label_namespace.then(|| {
        names::PSA_MODES
            .iter()
            .map(|mode| {
                (
                    format!("{}{mode}", names::PSA_LABEL_PREFIX),
                    settings.level.as_str().to_string(),
                )
            })
            .collect()
    });
    desired
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
        && *hardened == workload.template;
    let body = json!({
        "apiVersion": workload.kind.api_version(),
        "kind": workload.kind.as_str(),
        "metadata": {
            "name": workload.name,
            "namespace": policy.namespace,
            "annotations": {
                names::HARDENED_BY_ANNOTATION: policy.name,
                names::APPLIED_DIGEST_ANNOTATION: digest,
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
    conflicts: &[Conflict],
) -> (ComplianceStatus, WorkloadsStatus) {
    let Some(settings) = &policy.pod_security else {
        return (compliance::report(&[], &[]), WorkloadsStatus::default());
    };
    let mut evaluations: Vec<Evaluation> = Vec::new();
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
    if desired.namespace_labels.is_some() {
        written.push(format!("Namespace/{}", policy.namespace));
    }
    for object in written {
        evaluations.push(if policy.mode == Mode::Audit {
            Evaluation::skipped(compliance::FIELD_OWNERSHIP, "Audit mode applies nothing")
        } else {
            let held = conflicts
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
            Evaluation::of(compliance::FIELD_OWNERSHIP, held.collect())
        });
    }
    (
        compliance::report(&[Capability::PodSecurity], &evaluations),
        workloads,
    )
}
