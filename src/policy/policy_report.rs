//! The compliance report as a `wgpolicyk8s.io/v1alpha2` PolicyReport, one per policy in its
//! namespace, for the tools that read that format. The whole mapping lives here (a successor
//! format such as OpenReports would be a second function beside it). Pure; the same report
//! always gives the same object (no timestamps), so an unchanged world writes nothing.

use serde_json::{Value, json};

use super::generated::{self, GeneratedObject};
use crate::compliance::definition;
use crate::crd::{CheckResult, ComplianceStatus, Severity};
use crate::model::ValidatedPolicy;
use crate::observed::Observed;

/// API version and kind of a PolicyReport.
pub const POLICY_REPORT: (&str, &str) = ("wgpolicyk8s.io/v1alpha2", "PolicyReport");
/// The component label value of the report.
pub const COMPONENT: &str = "policy-report";
/// At most this many results per report; the summary always counts every check.
pub const MAX_RESULTS: usize = 1000;

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn result(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "pass",
        CheckResult::Fail => "fail",
        CheckResult::Skip => "skip",
    }
}

/// The report's resource entry for an offending object (`Kind/name` or `Kind/name container
/// c`), when its kind is one the report can name.
fn resource(namespace: &str, object: &str) -> Option<Value> {
    let reference = object.split(' ').next()?;
    let (kind, name) = reference.split_once('/')?;
    let api_version = match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "NetworkPolicy" | "Ingress" => "networking.k8s.io/v1",
        "Secret" | "ConfigMap" | "Namespace" | "Service" => "v1",
        _ => return None,
    };
    Some(json!({ "apiVersion": api_version, "kind": kind, "name": name, "namespace": namespace }))
}

/// The PolicyReport for a compliance report: one result per check, or per offending object of
/// a failing check, bounded by [`MAX_RESULTS`], with a summary of every check.
pub fn report_object(
    policy: &ValidatedPolicy,
    compliance: &ComplianceStatus,
    observed: &Observed,
) -> GeneratedObject {
    let mut results = Vec::new();
    for check in &compliance.checks {
        let category = definition(&check.id)
            .map(|d| d.capability.section())
            .unwrap_or_default();
        let base = json!({
            "policy": format!("goreal/{}", policy.name),
            "rule": check.id,
            "result": result(check.result),
            "severity": severity(check.severity),
            "category": category,
            "source": "goreal-operator",
            "scored": check.result != CheckResult::Skip,
        });
        let objects: Vec<&String> = if check.result == CheckResult::Fail {
            check.objects.iter().collect()
        } else {
            Vec::new()
        };
        if objects.is_empty() {
            let mut entry = base.clone();
            entry["message"] = json!(check.message);
            results.push(entry);
        }
        for object in objects {
            let mut entry = base.clone();
            entry["message"] = json!(format!("{object}: {}", check.message));
            if let Some(resource) = resource(&policy.namespace, object) {
                entry["resources"] = json!([resource]);
            }
            results.push(entry);
        }
    }
    results.truncate(MAX_RESULTS);
    let body = json!({
        "metadata": generated::metadata(policy, COMPONENT, "report", &Default::default()),
        "results": results,
        "summary": {
            "pass": compliance.passed,
            "fail": compliance.failed,
            "skip": compliance.skipped,
            "warn": 0,
            "error": 0,
        },
    });
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let live = generated::live(&observed.generated_objects, POLICY_REPORT.1, &name);
    GeneratedObject::new(policy, POLICY_REPORT, body, live, &["results", "summary"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CheckStatus;

    fn policy() -> ValidatedPolicy {
        let raw: crate::crd::GoREALSecurityPolicy = serde_saphyr::from_str(
            "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
             metadata: {name: p, namespace: shop, uid: u-1}\nspec: {podSecurity: {}}\n",
        )
        .expect("policy");
        crate::model::validate(&raw).expect("valid")
    }

    fn check(id: &str, result: CheckResult, objects: &[&str]) -> CheckStatus {
        CheckStatus {
            id: id.into(),
            title: "t".into(),
            severity: Severity::High,
            result,
            message: "m".into(),
            objects: objects.iter().map(|o| o.to_string()).collect(),
            total_objects: crate::compliance::saturating_i32(objects.len()),
            exemptions: vec![],
        }
    }

    #[test]
    fn each_check_and_offending_object_is_a_result_with_a_summary_of_every_check() {
        let compliance = ComplianceStatus {
            score: 50,
            passed: 1,
            failed: 1,
            skipped: 1,
            checks: vec![
                check("pod.privileged", CheckResult::Pass, &[]),
                check(
                    "pod.run-as-non-root",
                    CheckResult::Fail,
                    &[
                        "Deployment/web container app",
                        "StatefulSet/db container pg",
                    ],
                ),
                check("manual.host-firewall", CheckResult::Skip, &[]),
            ],
        };
        let object = report_object(&policy(), &compliance, &Observed::default());
        assert_eq!(object.name, "p-report");
        assert_eq!(object.body["metadata"]["ownerReferences"][0]["uid"], "u-1");
        let results = object.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[1]["rule"], "pod.run-as-non-root");
        assert_eq!(results[1]["result"], "fail");
        assert_eq!(results[1]["severity"], "high");
        assert_eq!(
            results[1]["resources"][0],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "shop"})
        );
        assert_eq!(results[2]["resources"][0]["kind"], "StatefulSet");
        assert_eq!(results[3]["result"], "skip");
        assert_eq!(
            object.body["summary"],
            json!({"pass": 1, "fail": 1, "skip": 1, "warn": 0, "error": 0})
        );
        // The same report twice is the same object, and a live copy counts as current.
        let again = report_object(&policy(), &compliance, &Observed::default());
        assert_eq!(again.body, object.body);
        let world = Observed {
            generated_objects: vec![object.body.clone()],
            ..Observed::default()
        };
        assert!(report_object(&policy(), &compliance, &world).up_to_date);
    }

    #[test]
    fn the_results_are_bounded_but_the_summary_counts_everything() {
        let objects: Vec<String> = (0..30).map(|i| format!("Deployment/w{i}")).collect();
        let refs: Vec<&str> = objects.iter().map(String::as_str).collect();
        let checks: Vec<CheckStatus> = (0..50)
            .map(|i| check(&format!("pod.c{i}"), CheckResult::Fail, &refs))
            .collect();
        let compliance = ComplianceStatus {
            failed: 50,
            checks,
            ..Default::default()
        };
        let object = report_object(&policy(), &compliance, &Observed::default());
        assert_eq!(
            object.body["results"].as_array().unwrap().len(),
            MAX_RESULTS
        );
        assert_eq!(object.body["summary"]["fail"], 50);
    }
}
