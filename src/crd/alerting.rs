//! The `alerting` section of the spec: the guide's security alerts, the operator's own alerts and
//! custom rules. Expressions are parsed as PromQL by the operator (`model::alerting`), which the
//! API server cannot do.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prometheus alert rules for the policy's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AlertingSpec {
    /// Labels on the generated PrometheusRule (or ConfigMap), so that a Prometheus rule selector
    /// picks it up, such as `release: kube-prometheus-stack`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub rule_labels: BTreeMap<String, String>,
    /// High failed-login rate: `rate(metric[window]) > threshold` (guide: 0.1 per second over
    /// 5m, for 2m, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_logins: Option<BuiltInRuleSpec>,
    /// Suspicious API activity: the rate of 4xx responses (guide: above 10 per second over 5m,
    /// for 1m, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicious_api_activity: Option<BuiltInRuleSpec>,
    /// Unauthorized access burst: `increase(metric[window]) > threshold` (guide: above 10 in 1m,
    /// critical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unauthorized_access: Option<BuiltInRuleSpec>,
    /// The policy's compliance score below a threshold (default 80, for 15m, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_score: Option<BuiltInRuleSpec>,
    /// The policy's reconciles failing without pause (default: for 15m, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_errors: Option<BuiltInRuleSpec>,
    /// A managed Secret's scheduled rotation overdue by more than `threshold` seconds (default
    /// 0, for 15m, warning), from the operator's next-rotation gauge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_rotation_overdue: Option<BuiltInRuleSpec>,
    /// Further rules, evaluated in the same group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub custom: Vec<CustomRuleSpec>,
}

/// Overrides of one built-in rule; every field falls back to the guide's value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BuiltInRuleSpec {
    /// Generate this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The value the expression compares against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub threshold: Option<f64>,
    /// Range of the rate or increase, a Prometheus duration such as `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub window: Option<String>,
    /// How long the condition must hold before the alert fires, such as `2m`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub for_: Option<String>,
    /// The `severity` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<AlertSeverity>,
    /// The metric the expression reads (the guide's name by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub metric: Option<String>,
    /// Extra labels on the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub labels: BTreeMap<String, String>,
}

/// Alert severities, as the `severity` label carries them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    /// Informational.
    Info,
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

impl AlertSeverity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
}

/// A rule written out in full.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomRuleSpec {
    /// Alert name, such as `TooManyPasswordResets`.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    )]
    pub name: String,
    /// PromQL expression; the alert fires for every series it returns.
    #[schemars(length(min = 1, max = 4096))]
    pub expr: String,
    /// How long the expression must return a series before the alert fires.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub for_: Option<String>,
    /// Labels on the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub labels: BTreeMap<String, String>,
    /// Annotations such as `summary` and `description`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub annotations: BTreeMap<String, String>,
}
