//! Builds a policy's whole status purely: conditions with stable transition times, the
//! compliance report and the owned-resource list. The controller only decides whether to patch.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{
    CheckResult, ComplianceStatus, GoREALSecurityPolicyStatus, ResourceRef, WorkloadsStatus,
};

/// Condition types.
pub mod conditions {
    /// The policy is valid and fully applied.
    pub const READY: &str = "Ready";
    /// No check fails.
    pub const COMPLIANT: &str = "Compliant";
    /// The last reconcile hit transient API errors.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition and event reasons.
pub mod reasons {
    /// Everything planned is in effect.
    pub const RECONCILED: &str = "Reconciled";
    /// Audit mode: nothing applied by design.
    pub const AUDITING: &str = "Auditing";
    /// The spec failed validation; nothing was applied.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The API server rejected a patch as invalid or forbidden.
    pub const APPLY_REJECTED: &str = "ApplyRejected";
    /// Another field manager holds fields the policy wants.
    pub const FIELD_CONFLICT: &str = "FieldConflict";
    /// Every check passes.
    pub const ALL_CHECKS_PASS: &str = "AllChecksPass";
    /// At least one check fails.
    pub const CHECKS_FAILING: &str = "ChecksFailing";
    /// No compliance result yet (invalid spec).
    pub const NOT_EVALUATED: &str = "NotEvaluated";
    /// API requests succeed.
    pub const API_HEALTHY: &str = "ApiHealthy";
    /// API requests failed transiently and are retried.
    pub const API_ERRORS: &str = "ApiErrors";
}

/// What one reconcile found, as input to the status.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The spec is invalid; the message lists every problem.
    Invalid(String),
    /// The policy was planned (and, in Enforce mode, applied).
    Planned {
        /// Audit mode.
        audit: bool,
        /// Conflicts reported instead of applied, as human-readable lines.
        conflicts: Vec<String>,
        /// Patches the API server rejected, as human-readable lines.
        rejected: Vec<String>,
        /// The compliance report.
        compliance: ComplianceStatus,
        /// Workload counts.
        workloads: WorkloadsStatus,
        /// Objects written to.
        resources: Vec<ResourceRef>,
    },
}

/// The full new status. `previous` supplies the transition times of unchanged conditions;
/// `degraded` carries a transient-error message, if any.
pub fn build(
    previous: Option<&GoREALSecurityPolicyStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    degraded: Option<&str>,
    now: Timestamp,
) -> GoREALSecurityPolicyStatus {
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let earlier = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status);
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: earlier.map_or(Time(now), |c| c.last_transition_time.clone()),
        }
    };
    let degraded_condition = match degraded {
        Some(message) => condition(
            conditions::DEGRADED,
            true,
            reasons::API_ERRORS,
            message.into(),
        ),
        None => condition(
            conditions::DEGRADED,
            false,
            reasons::API_HEALTHY,
            "API requests succeed".into(),
        ),
    };
    match outcome {
        Outcome::Invalid(message) => GoREALSecurityPolicyStatus {
            observed_generation: generation,
            conditions: vec![
                condition(
                    conditions::READY,
                    false,
                    reasons::INVALID_SPEC,
                    message.clone(),
                ),
                condition(
                    conditions::COMPLIANT,
                    false,
                    reasons::NOT_EVALUATED,
                    "the spec is invalid; nothing was evaluated or applied".into(),
                ),
                degraded_condition,
            ],
            compliance: None,
            workloads: None,
            resources: Vec::new(),
        },
        Outcome::Planned {
            audit,
            conflicts,
            rejected,
            compliance,
            workloads,
            resources,
        } => {
            let ready = if !rejected.is_empty() {
                condition(
                    conditions::READY,
                    false,
                    reasons::APPLY_REJECTED,
                    format!("the API server rejected: {}", rejected.join("; ")),
                )
            } else if !conflicts.is_empty() {
                condition(
                    conditions::READY,
                    false,
                    reasons::FIELD_CONFLICT,
                    format!(
                        "not applied where other managers hold fields: {}",
                        conflicts.join("; ")
                    ),
                )
            } else if *audit {
                condition(
                    conditions::READY,
                    true,
                    reasons::AUDITING,
                    "Audit mode: checks evaluated, nothing applied".into(),
                )
            } else {
                condition(
                    conditions::READY,
                    true,
                    reasons::RECONCILED,
                    format!("{} workload(s) governed", workloads.matched),
                )
            };
            let failing: Vec<&str> = compliance
                .checks
                .iter()
                .filter(|c| c.result == CheckResult::Fail)
                .map(|c| c.id.as_str())
                .collect();
            let compliant = if failing.is_empty() {
                condition(
                    conditions::COMPLIANT,
                    true,
                    reasons::ALL_CHECKS_PASS,
                    format!("score {}: no check fails", compliance.score),
                )
            } else {
                condition(
                    conditions::COMPLIANT,
                    false,
                    reasons::CHECKS_FAILING,
                    format!("score {}: failing {}", compliance.score, failing.join(", ")),
                )
            };
            GoREALSecurityPolicyStatus {
                observed_generation: generation,
                conditions: vec![ready, compliant, degraded_condition],
                compliance: Some(compliance.clone()),
                workloads: Some(workloads.clone()),
                resources: resources.clone(),
            }
        }
    }
}

/// The previous status with only `Degraded` set to report a failed reconcile: `Ready`,
/// compliance and `observedGeneration` keep describing what was last achieved.
pub fn with_degraded(
    previous: &GoREALSecurityPolicyStatus,
    message: &str,
    now: Timestamp,
) -> GoREALSecurityPolicyStatus {
    let mut next = previous.clone();
    let earlier = previous
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::DEGRADED);
    let unchanged = earlier.is_some_and(|c| c.status == "True");
    let degraded = Condition {
        type_: conditions::DEGRADED.into(),
        status: "True".into(),
        reason: reasons::API_ERRORS.into(),
        message: message.into(),
        observed_generation: earlier.and_then(|c| c.observed_generation),
        last_transition_time: match earlier.filter(|_| unchanged) {
            Some(c) => c.last_transition_time.clone(),
            None => Time(now),
        },
    };
    next.conditions.retain(|c| c.type_ != conditions::DEGRADED);
    next.conditions.push(degraded);
    next
}

/// Conditions whose status differs between two statuses, as `(type, new status, reason)`.
pub fn transitions<'a>(
    previous: Option<&GoREALSecurityPolicyStatus>,
    next: &'a GoREALSecurityPolicyStatus,
) -> Vec<&'a Condition> {
    next.conditions
        .iter()
        .filter(|c| {
            previous
                .and_then(|p| p.conditions.iter().find(|old| old.type_ == c.type_))
                .is_none_or(|old| old.status != c.status || old.reason != c.reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(failing: bool) -> Outcome {
        let mut compliance = ComplianceStatus {
            score: 100,
            ..Default::default()
        };
        if failing {
            compliance.checks.push(crate::crd::CheckStatus {
                id: "pod.privileged".into(),
                title: "t".into(),
                severity: crate::crd::Severity::Critical,
                result: CheckResult::Fail,
                message: "m".into(),
                objects: vec![],
                total_objects: 1,
                exemptions: vec![],
            });
        }
        Outcome::Planned {
            audit: false,
            conflicts: vec![],
            rejected: vec![],
            compliance,
            workloads: WorkloadsStatus::default(),
            resources: vec![],
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().expect("time");
        let first = build(None, Some(1), &planned(false), None, t0);
        let same = build(Some(&first), Some(2), &planned(false), None, t1);
        assert_eq!(
            first.conditions,
            same.conditions
                .iter()
                .cloned()
                .map(|mut c| {
                    c.observed_generation = Some(1);
                    c
                })
                .collect::<Vec<_>>()
        );
        let flipped = build(Some(&same), Some(2), &planned(true), None, t1);
        let compliant = flipped
            .conditions
            .iter()
            .find(|c| c.type_ == "Compliant")
            .expect("c");
        assert_eq!(compliant.status, "False");
        assert_eq!(compliant.last_transition_time.0, t1);
        let ready = flipped
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("r");
        assert_eq!(ready.last_transition_time.0, t0);
        assert_eq!(transitions(Some(&same), &flipped).len(), 1);
    }

    #[test]
    fn invalid_spec_is_not_ready_and_reports_no_compliance() {
        let status = build(
            None,
            Some(3),
            &Outcome::Invalid("spec.x: bad".into()),
            None,
            Timestamp::UNIX_EPOCH,
        );
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert_eq!(ready.message, "spec.x: bad");
        assert!(status.compliance.is_none());
        assert_eq!(status.observed_generation, Some(3));
    }
}
