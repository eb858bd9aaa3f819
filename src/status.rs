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
    /// Where the alert rules were written (only with an `alerting` section).
    pub const ALERT_RULES: &str = "AlertRules";
    /// Which rate limit outputs were written (only with a `rateLimiting` section).
    pub const RATE_LIMITS: &str = "RateLimits";
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
    /// The alert rules object could not be written.
    pub const NOT_IN_PLACE: &str = "NotInPlace";
    /// A managed Secret was generated.
    pub const SECRET_CREATED: &str = "SecretCreated";
    /// A foreign Secret was taken over.
    pub const SECRET_ADOPTED: &str = "SecretAdopted";
    /// A managed Secret got new values.
    pub const SECRET_ROTATED: &str = "SecretRotated";
    /// Keys the spec added were generated into a managed Secret.
    pub const SECRET_KEYS_ADDED: &str = "SecretKeysAdded";
    /// A Secret name is held by a Secret the policy may not take.
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    /// Consumers of rotated Secrets got their restart markers.
    pub const CONSUMERS_RESTARTED: &str = "ConsumersRestarted";
}

/// The content of a condition that says where an output went (`AlertRules`, `RateLimits`).
#[derive(Clone, Debug, PartialEq)]
pub struct OutputState {
    /// The output is in place.
    pub in_place: bool,
    /// The reason when in place, such as the kind written (`PrometheusRule`, `ConfigMap`).
    pub kind: String,
    /// What was written and what reads it.
    pub message: String,
}

/// What one reconcile found, as input to the status. Built once per reconcile, so the size
/// difference between the variants does not matter.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
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
        /// The alert rules' destination, when alerting is managed.
        alert_rules: Option<OutputState>,
        /// The rate limit outputs, when rate limiting is managed.
        rate_limits: Option<OutputState>,
        /// The managed Secrets' versions and restarts.
        secrets: Vec<crate::crd::SecretStatus>,
        /// The lowest severity whose failure makes the policy not Compliant.
        fail_on: crate::crd::Severity,
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
            secrets: Vec::new(),
        },
        Outcome::Planned {
            audit,
            conflicts,
            rejected,
            compliance,
            workloads,
            resources,
            alert_rules,
            rate_limits,
            secrets,
            fail_on,
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
            let (failing, below): (Vec<&crate::crd::CheckStatus>, Vec<&crate::crd::CheckStatus>) =
                compliance
                    .checks
                    .iter()
                    .filter(|c| c.result == CheckResult::Fail)
                    .partition(|c| c.severity >= *fail_on);
            let ids = |checks: &[&crate::crd::CheckStatus]| {
                checks
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let below = if below.is_empty() {
                String::new()
            } else {
                format!("; failing below {fail_on:?}: {}", ids(&below))
            };
            let compliant = if failing.is_empty() {
                condition(
                    conditions::COMPLIANT,
                    true,
                    reasons::ALL_CHECKS_PASS,
                    if below.is_empty() {
                        format!("score {}: no check fails", compliance.score)
                    } else {
                        format!(
                            "score {}: no check at or above {fail_on:?} fails{below}",
                            compliance.score
                        )
                    },
                )
            } else {
                condition(
                    conditions::COMPLIANT,
                    false,
                    reasons::CHECKS_FAILING,
                    format!(
                        "score {}: failing {}{below}",
                        compliance.score,
                        ids(&failing)
                    ),
                )
            };
            let mut conditions = vec![ready, compliant, degraded_condition];
            for (type_, output) in [
                (conditions::ALERT_RULES, alert_rules),
                (conditions::RATE_LIMITS, rate_limits),
            ] {
                let Some(output) = output else { continue };
                let reason = if output.in_place {
                    output.kind.as_str()
                } else {
                    reasons::NOT_IN_PLACE
                };
                conditions.push(condition(
                    type_,
                    output.in_place,
                    reason,
                    output.message.clone(),
                ));
            }
            GoREALSecurityPolicyStatus {
                observed_generation: generation,
                conditions,
                compliance: Some(compliance.clone()),
                workloads: Some(workloads.clone()),
                resources: resources.clone(),
                secrets: secrets.clone(),
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
            alert_rules: None,
            rate_limits: None,
            secrets: vec![],
            fail_on: crate::crd::Severity::Low,
        }
    }

    #[test]
    fn compliant_ignores_failures_below_the_configured_severity_but_says_them() {
        let Outcome::Planned { mut compliance, .. } = planned(true) else {
            panic!("planned");
        };
        compliance.checks[0].severity = crate::crd::Severity::Medium;
        let outcome = |fail_on| match planned(true) {
            Outcome::Planned {
                audit,
                conflicts,
                rejected,
                workloads,
                resources,
                alert_rules,
                rate_limits,
                secrets,
                ..
            } => Outcome::Planned {
                audit,
                conflicts,
                rejected,
                workloads,
                resources,
                alert_rules,
                rate_limits,
                secrets,
                compliance: compliance.clone(),
                fail_on,
            },
            other => other,
        };
        let compliant = |fail_on| {
            let status = build(
                None,
                Some(1),
                &outcome(fail_on),
                None,
                Timestamp::UNIX_EPOCH,
            );
            let c = status
                .conditions
                .into_iter()
                .find(|c| c.type_ == conditions::COMPLIANT)
                .unwrap();
            (c.status, c.message)
        };
        let (status, message) = compliant(crate::crd::Severity::Medium);
        assert_eq!(status, "False");
        assert!(message.contains("failing pod.privileged"), "{message}");
        let (status, message) = compliant(crate::crd::Severity::High);
        assert_eq!(status, "True");
        assert!(
            message.contains("failing below High: pod.privileged"),
            "{message}"
        );
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
