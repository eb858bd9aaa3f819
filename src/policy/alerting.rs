//! Alert rules: one rule group per policy, written as a `monitoring.coreos.com/v1`
//! PrometheusRule when that API exists, else as a ConfigMap holding a Prometheus rules file. Pure.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Refusals;
use super::generated::{self, GeneratedObject, PruneTarget};
use crate::compliance::{self, Evaluation, Violation};
use crate::crd::Mode;
use crate::model::{AlertingSettings, ValidatedPolicy};
use crate::observed::Observed;

/// API version and kind of a PrometheusRule.
pub const PROMETHEUS_RULE: (&str, &str) = ("monitoring.coreos.com/v1", "PrometheusRule");
/// API version and kind of a ConfigMap.
pub const CONFIG_MAP: (&str, &str) = ("v1", "ConfigMap");
/// The component label value of the rules object.
const COMPONENT: &str = "alert-rules";
/// Key of the rules file in the ConfigMap.
pub const RULES_FILE_KEY: &str = "goreal-security.rules.yaml";

/// Where the rules go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesOutput {
    /// A PrometheusRule for the Prometheus Operator.
    PrometheusRule,
    /// A ConfigMap with a rules file, for a Prometheus that mounts it.
    ConfigMap,
}

impl RulesOutput {
    /// The kind written.
    pub fn kind(self) -> &'static str {
        match self {
            RulesOutput::PrometheusRule => PROMETHEUS_RULE.1,
            RulesOutput::ConfigMap => CONFIG_MAP.1,
        }
    }
}

/// What the alerting plan decided, for the checks and the status condition.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertingPlan {
    /// The kind written.
    pub output: RulesOutput,
    /// Name of the object.
    pub name: String,
    /// Number of rules.
    pub rules: usize,
    /// Labels set for a rule selector.
    pub rule_labels: BTreeMap<String, String>,
}

/// The Prometheus rules file (`groups:` with one group) for the settings.
pub fn rules_file(policy: &ValidatedPolicy, settings: &AlertingSettings) -> Value {
    json!({ "groups": [{ "name": group_name(policy), "rules": settings.rules }] })
}

fn group_name(policy: &ValidatedPolicy) -> String {
    format!("goreal-security.{}.{}", policy.namespace, policy.name)
}

/// The object holding the rules, judged against the live objects.
pub fn plan(
    policy: &ValidatedPolicy,
    settings: &AlertingSettings,
    observed: &Observed,
) -> (GeneratedObject, AlertingPlan) {
    let output = if observed.prometheus_rule_api {
        RulesOutput::PrometheusRule
    } else {
        RulesOutput::ConfigMap
    };
    let metadata = generated::metadata(policy, COMPONENT, "alert-rules", &settings.rule_labels);
    let file = rules_file(policy, settings);
    let (kind, body, payload) = match output {
        RulesOutput::PrometheusRule => (
            PROMETHEUS_RULE,
            json!({ "metadata": metadata, "spec": file }),
            "spec",
        ),
        RulesOutput::ConfigMap => {
            // The same bytes for the same rules: YAML of a value whose maps are sorted.
            let text = serde_saphyr::to_string(&file).unwrap_or_default();
            (
                CONFIG_MAP,
                json!({ "metadata": metadata, "data": { RULES_FILE_KEY: text } }),
                "data",
            )
        }
    };
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let live = generated::live(&observed.generated_objects, kind.1, &name);
    let object = GeneratedObject::new(policy, kind, body, live, &[payload]);
    let plan = AlertingPlan {
        output,
        name,
        rules: settings.rules.len(),
        rule_labels: settings.rule_labels.clone(),
    };
    (object, plan)
}

/// Rule objects the policy wrote earlier and no longer wants (the other output kind after the
/// PrometheusRule API appears or goes, or all of them once the section is removed).
pub fn unwanted(
    policy: &str,
    observed: &Observed,
    generated: &[GeneratedObject],
) -> Vec<PruneTarget> {
    generated::unwanted(
        policy,
        COMPONENT,
        observed.generated_objects.iter(),
        generated,
    )
}

/// The one sentence the status gives about the rules' destination; it does not claim that
/// Prometheus loaded them.
pub fn describe(plan: &AlertingPlan) -> String {
    let labels = if plan.rule_labels.is_empty() {
        "no rule labels".to_string()
    } else {
        let pairs: Vec<String> = plan
            .rule_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("labels {}", pairs.join(", "))
    };
    let loaded_by = match plan.output {
        RulesOutput::PrometheusRule => "a Prometheus whose rule selector matches those labels",
        RulesOutput::ConfigMap => "a Prometheus that mounts the ConfigMap as a rules file",
    };
    format!(
        "{} rule(s) written as {} {} with {labels}; they are evaluated only by {loaded_by}",
        plan.rules,
        plan.output.kind(),
        plan.name,
    )
}

/// The alerting check: the rules object is in place.
pub fn evaluate(
    policy: &ValidatedPolicy,
    object: &GeneratedObject,
    plan: &AlertingPlan,
    in_effect: &dyn Fn(&str) -> bool,
    refusals: &Refusals,
) -> Vec<Evaluation> {
    if policy.mode == Mode::Audit {
        return vec![Evaluation::skipped(
            compliance::ALERT_RULES_IN_PLACE,
            "Audit mode applies nothing",
        )];
    }
    let reference = object.reference();
    let mut violations = Vec::new();
    if object.taken {
        violations.push(Violation {
            object: reference.clone(),
            detail: format!(
                "has a name taken by a {} this policy does not own: not written",
                object.kind
            ),
            exempt: None,
        });
    } else if !in_effect(&reference) {
        let why = refusals
            .rejections
            .iter()
            .find(|r| r.object == reference)
            .map_or("was not applied".to_string(), |r| {
                format!("was rejected by the API server ({} {})", r.code, r.reason)
            });
        violations.push(Violation {
            object: reference.clone(),
            detail: why,
            exempt: None,
        });
    }
    vec![Evaluation::of(compliance::ALERT_RULES_IN_PLACE, violations).with_note(describe(plan))]
}

/// The `AlertRules` condition for the status.
pub fn state(
    object: &GeneratedObject,
    plan: &AlertingPlan,
    in_effect: &dyn Fn(&str) -> bool,
) -> crate::status::OutputState {
    let in_place = !object.taken && in_effect(&object.reference());
    let message = if in_place {
        describe(plan)
    } else {
        format!(
            "{} {} is not in place (see check {})",
            plan.output.kind(),
            plan.name,
            compliance::ALERT_RULES_IN_PLACE
        )
    };
    crate::status::OutputState {
        in_place,
        kind: plan.output.kind().to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GoREALSecurityPolicy;
    use crate::model::validate;
    use crate::policy::{Desired, plan as plan_all};

    fn policy(mode: &str) -> ValidatedPolicy {
        let raw: GoREALSecurityPolicy = serde_saphyr::from_str(&format!(
            "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
             metadata: {{name: p, namespace: shop, uid: u-1}}\n\
             spec:\n  mode: {mode}\n  alerting:\n    ruleLabels: {{release: prom}}\n"
        ))
        .expect("policy");
        validate(&raw).expect("valid")
    }

    fn live(desired: &Desired) -> Value {
        let mut object = desired.generated[0].body.clone();
        object["metadata"]["resourceVersion"] = "9".into();
        object
    }

    #[test]
    fn rules_go_to_a_config_map_until_the_prometheus_rule_api_exists() {
        let p = policy("Enforce");
        let mut world = Observed::default();
        let desired = plan_all(&p, &world);
        let object = &desired.generated[0];
        assert_eq!(
            (object.kind, object.name.as_str()),
            ("ConfigMap", "p-alert-rules")
        );
        assert_eq!(object.body["metadata"]["labels"]["release"], "prom");
        assert_eq!(object.body["metadata"]["ownerReferences"][0]["uid"], "u-1");
        let text = object.body["data"][RULES_FILE_KEY]
            .as_str()
            .expect("rules file");
        assert!(text.contains("name: goreal-security.shop.p"), "{text}");
        assert!(text.contains("alert: HighFailedLoginAttempts"), "{text}");

        // The ConfigMap exists; the API appears: a PrometheusRule replaces it.
        world.generated_objects = vec![live(&desired)];
        world.prometheus_rule_api = true;
        let switched = plan_all(&p, &world);
        let object = &switched.generated[0];
        assert_eq!(object.kind, "PrometheusRule");
        assert_eq!(
            object.body["spec"]["groups"][0]["rules"][0]["alert"],
            "HighFailedLoginAttempts"
        );
        let pruned: Vec<(&str, &str)> = switched
            .prune
            .iter()
            .map(|r| (r.object.kind.as_str(), r.object.name.as_str()))
            .collect();
        assert_eq!(pruned, [("ConfigMap", "p-alert-rules")]);
    }

    #[test]
    fn a_current_object_needs_no_write_and_a_foreign_one_is_left_alone() {
        let p = policy("Enforce");
        let mut world = Observed::default();
        world.generated_objects = vec![live(&plan_all(&p, &world))];
        let desired = plan_all(&p, &world);
        assert!(desired.generated[0].up_to_date);
        assert!(desired.prune.is_empty());
        // Someone else's ConfigMap holds the name.
        let mut foreign = world.generated_objects[0].clone();
        foreign["metadata"]["labels"] = json!({});
        world.generated_objects = vec![foreign];
        let desired = plan_all(&p, &world);
        assert!(desired.generated[0].taken);
        assert!(desired.prune.is_empty());
        let state = desired.alert_rules_state(&p, &|_| true).expect("state");
        assert!(!state.in_place);
    }

    #[test]
    fn the_condition_names_the_output_and_does_not_claim_prometheus_loaded_it() {
        let p = policy("Enforce");
        let desired = plan_all(&p, &Observed::default());
        let state = desired.alert_rules_state(&p, &|_| true).expect("state");
        assert!(state.in_place);
        assert_eq!(state.kind, "ConfigMap");
        assert!(
            state.message.contains("labels release=prom"),
            "{}",
            state.message
        );
        assert!(
            state.message.contains("evaluated only by"),
            "{}",
            state.message
        );
        let audit = policy("Audit");
        let state = plan_all(&audit, &Observed::default())
            .alert_rules_state(&audit, &|_| true)
            .expect("state");
        assert!(!state.in_place && state.message.starts_with("Audit mode writes nothing"));
    }

    #[test]
    fn only_alert_rule_objects_are_pruned_and_only_the_ones_seen() {
        let p = policy("Enforce");
        let mut world = Observed::default();
        let mut other_component = live(&plan_all(&p, &world));
        other_component["metadata"]["name"] = "p-nginx".into();
        other_component["metadata"]["labels"]["security.goreal.io/component"] = "nginx".into();
        let mut old_rules = live(&plan_all(&p, &world));
        old_rules["metadata"]["name"] = "p-old-rules".into();
        old_rules["metadata"]["uid"] = "uid-old".into();
        world.generated_objects = vec![other_component, old_rules];
        let pruned = plan_all(&p, &world).prune;
        assert_eq!(pruned.len(), 1, "{pruned:?}");
        assert_eq!(pruned[0].object.name, "p-old-rules");
        assert_eq!(pruned[0].uid.as_deref(), Some("uid-old"));
    }

    #[test]
    fn the_same_rules_give_the_same_bytes() {
        let p = policy("Enforce");
        let a = plan_all(&p, &Observed::default()).generated[0].body.clone();
        let b = plan_all(&p, &Observed::default()).generated[0].body.clone();
        assert_eq!(a, b);
    }
}
