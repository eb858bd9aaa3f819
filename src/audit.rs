//! `audit`: the compliance report of manifests as they are written, before any hardening,
//! through the controller's own validation, planning and checks (each policy evaluated in Audit
//! mode, so nothing counts as applied). Output as a table, JSON or SARIF. No cluster, no clock
//! of its own: the time is an argument.

use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::compliance::{self, CATALOGUE};
use crate::crd::{CheckResult, ComplianceStatus, GoREALSecurityPolicy, Mode, Severity};
use crate::model;
use crate::policy;
use crate::render::{Manifests, Source};

/// The audit of one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyAudit {
    /// Namespace.
    pub namespace: String,
    /// Policy name (`goreal-default` for the built-in one).
    pub policy: String,
    /// The report, or why the policy is invalid.
    pub report: Result<ComplianceStatus, String>,
    /// The policy's own bar (`spec.compliance.failOn`), used when `--fail-on` is not given.
    pub fail_on: Severity,
}

/// Checks whose facts live in the cluster, not in manifests: skipped by `audit` instead of
/// failing on what no file can show (the Secrets the operator generates and rotates there, the
/// cluster DNS Service, the API server's endpoints).
fn cluster_only(manifests: &Manifests, id: &str) -> Option<&'static str> {
    match id {
        compliance::SECRETS_ROTATED => Some(
            "the operator generates and rotates the Secrets in the cluster: not visible in manifests",
        ),
        compliance::NETWORK_DNS_EGRESS if manifests.services.is_empty() => {
            Some("needs the cluster DNS Service, which the manifests do not hold")
        }
        compliance::NETWORK_API_SERVER_EGRESS if manifests.endpoint_slices.is_empty() => {
            Some("needs the API server's EndpointSlices, which the manifests do not hold")
        }
        _ => None,
    }
}

/// The report with the cluster-only checks skipped, counts and score recomputed.
fn without_cluster_facts(manifests: &Manifests, mut report: ComplianceStatus) -> ComplianceStatus {
    for check in &mut report.checks {
        if let Some(reason) = cluster_only(manifests, &check.id) {
            check.result = CheckResult::Skip;
            check.message = reason.to_string();
            check.objects.clear();
            check.total_objects = 0;
            check.exemptions.clear();
        }
    }
    let count = |r: CheckResult| {
        compliance::saturating_i32(report.checks.iter().filter(|c| c.result == r).count())
    };
    report.passed = count(CheckResult::Pass);
    report.failed = count(CheckResult::Fail);
    report.skipped = count(CheckResult::Skip);
    report.score = compliance::score(&report.checks);
    report
}

/// Name of the built-in policy used when the manifests hold none.
pub const DEFAULT_POLICY: &str = "goreal-default";

/// The built-in policy: the guide's pod hardening at `restricted` for every workload of the
/// namespace. Built from JSON as a user would write it, so every default is serde's.
pub fn default_policy(namespace: &str) -> Result<GoREALSecurityPolicy, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "security.goreal.io/v1alpha1",
        "kind": "GoREALSecurityPolicy",
        "metadata": { "name": DEFAULT_POLICY, "namespace": namespace },
        "spec": { "podSecurity": {} },
    }))
}

/// Audits every policy of the manifests, or the built-in policy in each namespace the workloads
/// are in when there is none.
pub fn audit(manifests: &Manifests, now: Timestamp) -> Vec<PolicyAudit> {
    let mut policies = manifests.policies.clone();
    let mut manifests = manifests.clone();
    if policies.is_empty() {
        // An object without a namespace is in `default`, once: not in every namespace's audit.
        for (namespace, _) in &mut manifests.workloads {
            namespace.get_or_insert_with(|| "default".into());
        }
        let mut namespaces: Vec<String> = manifests
            .workloads
            .iter()
            .map(|(ns, _)| ns.clone().unwrap_or_else(|| "default".into()))
            .collect();
        namespaces.sort();
        namespaces.dedup();
        if namespaces.is_empty() {
            namespaces.push("default".into());
        }
        let mut audits = Vec::new();
        for namespace in &namespaces {
            match default_policy(namespace) {
                Ok(policy) => policies.push(policy),
                Err(error) => audits.push(PolicyAudit {
                    namespace: namespace.clone(),
                    policy: DEFAULT_POLICY.into(),
                    report: Err(error.to_string()),
                    fail_on: Severity::Low,
                }),
            }
        }
        if !audits.is_empty() {
            return audits;
        }
    }
    policies
        .into_iter()
        .map(|mut raw| {
            let namespace = raw.namespace().unwrap_or_else(|| "default".into());
            raw.metadata.namespace = Some(namespace.clone());
            // As written: nothing the operator would apply counts.
            raw.spec.mode = Mode::Audit;
            let validated = model::validate(&raw).map_err(|errors| model::describe(&errors));
            let fail_on = validated.as_ref().map_or(Severity::Low, |v| v.fail_on);
            let report = validated.map(|validated| {
                let mut observed = crate::render::observed_for(&manifests, &namespace);
                observed.now = now;
                let desired = policy::plan(&validated, &observed);
                let report = policy::report(
                    &validated,
                    &desired,
                    &|_| false,
                    &policy::Refusals::default(),
                )
                .0;
                without_cluster_facts(&manifests, report)
            });
            PolicyAudit {
                namespace,
                policy: raw.name_any(),
                report,
                fail_on,
            }
        })
        .collect()
}

/// Whether the audit fails: an invalid policy, or a failing check at or above `fail_on` (each
/// policy's own `spec.compliance.failOn` when `None`).
pub fn fails(audits: &[PolicyAudit], fail_on: Option<Severity>) -> bool {
    audits.iter().any(|audit| match &audit.report {
        Err(_) => true,
        Ok(report) => {
            let bar = fail_on.unwrap_or(audit.fail_on);
            report
                .checks
                .iter()
                .any(|c| c.result == CheckResult::Fail && c.severity >= bar)
        }
    })
}

/// A readable table: per policy its score, then one line per check.
pub fn table(audits: &[PolicyAudit]) -> String {
    let mut out = String::new();
    for audit in audits {
        match &audit.report {
            Err(problems) => out.push_str(&format!(
                "{}/{}: INVALID: {problems}\n\n",
                audit.namespace, audit.policy
            )),
            Ok(report) => {
                out.push_str(&format!(
                    "{}/{}: score {} ({} passed, {} failed, {} skipped)\n",
                    audit.namespace,
                    audit.policy,
                    report.score,
                    report.passed,
                    report.failed,
                    report.skipped
                ));
                for check in &report.checks {
                    out.push_str(&format!(
                        "  {:<4}  {:<8}  {:<40}  {}\n",
                        match check.result {
                            CheckResult::Pass => "PASS",
                            CheckResult::Fail => "FAIL",
                            CheckResult::Skip => "SKIP",
                        },
                        format!("{:?}", check.severity),
                        check.id,
                        check.message
                    ));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// The audits as JSON: one entry per policy with its report or its validation problems.
pub fn json(audits: &[PolicyAudit]) -> Value {
    Value::Array(
        audits
            .iter()
            .map(|audit| match &audit.report {
                Ok(report) => json!({
                    "namespace": audit.namespace,
                    "policy": audit.policy,
                    "valid": true,
                    "compliance": report,
                }),
                Err(problems) => json!({
                    "namespace": audit.namespace,
                    "policy": audit.policy,
                    "valid": false,
                    "problems": problems,
                }),
            })
            .collect(),
    )
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// The file and line of an offending object (`Kind/name` or `Kind/name container c`).
fn location(sources: &[Source], namespace: &str, object: &str) -> Option<Value> {
    let reference = object.split(' ').next()?;
    let (kind, name) = reference.split_once('/')?;
    let source = sources.iter().find(|s| {
        s.kind == kind && s.name == name && s.namespace.as_deref().is_none_or(|ns| ns == namespace)
    })?;
    Some(json!({
        "physicalLocation": {
            "artifactLocation": { "uri": source.path },
            "region": { "startLine": source.line },
        },
        "logicalLocations": [{ "fullyQualifiedName": format!("{namespace}/{object}") }],
    }))
}

/// The SARIF rule of an invalid policy (not a check: nothing of it was evaluated).
const INVALID_POLICY: &str = "goreal.policy-valid";

/// The file of the policy (or, for the built-in policy, of the first object read), at its line.
fn fallback_location(manifests: &Manifests, audit: &PolicyAudit) -> Option<Value> {
    let source = manifests
        .sources
        .iter()
        .find(|s| s.kind == "GoREALSecurityPolicy" && s.name == audit.policy)
        .or_else(|| manifests.sources.first())?;
    Some(json!({
        "physicalLocation": {
            "artifactLocation": { "uri": source.path },
            "region": { "startLine": source.line },
        },
    }))
}

/// SARIF 2.1.0 for code-scanning UIs: the catalogue as rules, one result per failing check and
/// offending object, located at the object's file and line when known.
pub fn sarif(audits: &[PolicyAudit], manifests: &Manifests) -> Value {
    let mut rules: Vec<Value> = CATALOGUE
        .iter()
        .map(|def| {
            json!({
                "id": def.id,
                "shortDescription": { "text": def.title },
                "fullDescription": { "text": format!("{} (GoREAL guide: {})", def.title, def.guide_item) },
                "defaultConfiguration": { "level": level(def.severity) },
                "properties": { "severity": format!("{:?}", def.severity) },
            })
        })
        .collect();
    rules.push(json!({
        "id": INVALID_POLICY,
        "shortDescription": { "text": "The policy passes the operator's validation" },
        "defaultConfiguration": { "level": "error" },
    }));
    let mut results = Vec::new();
    for audit in audits {
        let report = match &audit.report {
            Ok(report) => report,
            Err(problems) => {
                let mut result = json!({
                    "ruleId": INVALID_POLICY,
                    "level": "error",
                    "message": { "text": format!(
                        "policy {}/{} is invalid: {problems}",
                        audit.namespace, audit.policy
                    ) },
                });
                if let Some(location) = fallback_location(manifests, audit) {
                    result["locations"] = json!([location]);
                }
                results.push(result);
                continue;
            }
        };
        for check in report
            .checks
            .iter()
            .filter(|c| c.result == CheckResult::Fail)
        {
            let objects: Vec<Option<&str>> = if check.objects.is_empty() {
                vec![None]
            } else {
                check.objects.iter().map(|o| Some(o.as_str())).collect()
            };
            for object in objects {
                let mut result = json!({
                    "ruleId": check.id,
                    "level": level(check.severity),
                    "message": { "text": match object {
                        Some(object) => format!("{object}: {} ({}/{})", check.message, audit.namespace, audit.policy),
                        None => format!("{} ({}/{})", check.message, audit.namespace, audit.policy),
                    } },
                });
                // Code-scanning UIs need a location: the object's, else the policy's file.
                let found = object
                    .and_then(|o| location(&manifests.sources, &audit.namespace, o))
                    .or_else(|| fallback_location(manifests, audit));
                if let Some(location) = found {
                    result["locations"] = json!([location]);
                }
                results.push(result);
            }
        }
        // The listed objects are bounded; the total is always said.
        for check in report
            .checks
            .iter()
            .filter(|c| c.result == CheckResult::Fail)
            .filter(|c| usize::try_from(c.total_objects).unwrap_or(0) > c.objects.len())
        {
            let mut result = json!({
                "ruleId": check.id,
                "level": level(check.severity),
                "message": { "text": format!(
                    "{} more offending objects not listed ({} in all)",
                    usize::try_from(check.total_objects).unwrap_or(0) - check.objects.len(),
                    check.total_objects
                ) },
            });
            if let Some(location) = fallback_location(manifests, audit) {
                result["locations"] = json!([location]);
            }
            results.push(result);
        }
    }
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": {
                "name": "goreal-operator",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            } },
            "results": results,
        }],
    })
}

/// Severity names as `--fail-on` takes them.
pub fn parse_severity(text: &str) -> Option<Severity> {
    match text.to_ascii_lowercase().as_str() {
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}
