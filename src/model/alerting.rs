//! Validation of the `alerting` section: built-in rules resolved against the guide's defaults and
//! scoped to the policy's namespace, custom rules, and every expression parsed as PromQL before
//! anything is applied.

use std::collections::BTreeMap;

use super::{Problems, check_label_key, check_label_value};
use crate::crd::{AlertSeverity, AlertingSpec, BuiltInRuleSpec};

/// Validated alerting settings: the rules to write and the labels of the object holding them.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertingSettings {
    /// Labels for a Prometheus rule selector.
    pub rule_labels: BTreeMap<String, String>,
    /// Rules in order: built-ins first, then custom rules as written.
    pub rules: Vec<AlertRule>,
}

/// One alerting rule, as Prometheus reads it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AlertRule {
    /// Alert name.
    #[serde(rename = "alert")]
    pub name: String,
    /// PromQL expression (parsed successfully).
    pub expr: String,
    /// Hold time before firing.
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Alert labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Alert annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A built-in rule: its spec key, alert name, defaults and expression shape.
struct BuiltIn {
    key: &'static str,
    alert: &'static str,
    metric: &'static str,
    threshold: f64,
    window: &'static str,
    for_: &'static str,
    severity: AlertSeverity,
    summary: &'static str,
    /// Builds the expression from (metric, namespace, policy, window, threshold).
    expr: fn(&str, &str, &str, &str, &str) -> String,
}

/// Metric the operator exports with each policy's compliance score.
pub const COMPLIANCE_SCORE_METRIC: &str = "goreal_policy_compliance_score";
/// Metric the operator exports with each policy's consecutive failed reconciles.
pub const RECONCILE_FAILURES_METRIC: &str = "goreal_policy_reconcile_failures";
/// Metric the operator exports with each managed Secret's next scheduled rotation (Unix time).
pub const NEXT_ROTATION_METRIC: &str = "goreal_secret_next_rotation_timestamp_seconds";

const BUILT_INS: [BuiltIn; 6] = [
    BuiltIn {
        key: "failedLogins",
        alert: "HighFailedLoginAttempts",
        metric: "goreal_failed_login_attempts_total",
        threshold: 0.1,
        window: "5m",
        for_: "2m",
        severity: AlertSeverity::Warning,
        summary: "High failed login attempts detected",
        expr: |m, ns, _, w, t| format!("rate({m}{{namespace=\"{ns}\"}}[{w}]) > {t}"),
    },
    BuiltIn {
        key: "suspiciousApiActivity",
        alert: "SuspiciousAPIActivity",
        metric: "http_requests_total",
        threshold: 10.0,
        window: "5m",
        for_: "1m",
        severity: AlertSeverity::Warning,
        summary: "Suspicious rate of 4xx API responses",
        expr: |m, ns, _, w, t| {
            format!("rate({m}{{namespace=\"{ns}\",status=~\"4[0-9][0-9]\"}}[{w}]) > {t}")
        },
    },
    BuiltIn {
        key: "unauthorizedAccess",
        alert: "UnauthorizedAccessAttempt",
        metric: "goreal_unauthorized_access_total",
        threshold: 10.0,
        window: "1m",
        for_: "0m",
        severity: AlertSeverity::Critical,
        summary: "Burst of unauthorized access attempts",
        expr: |m, ns, _, w, t| format!("increase({m}{{namespace=\"{ns}\"}}[{w}]) > {t}"),
    },
    BuiltIn {
        key: "complianceScore",
        alert: "GoREALComplianceScoreLow",
        metric: COMPLIANCE_SCORE_METRIC,
        threshold: 80.0,
        window: "5m",
        for_: "15m",
        severity: AlertSeverity::Warning,
        summary: "Compliance score of the security policy is below its threshold",
        expr: |m, ns, p, _, t| format!("{m}{{namespace=\"{ns}\",policy=\"{p}\"}} < {t}"),
    },
    BuiltIn {
        key: "reconcileErrors",
        alert: "GoREALReconcileFailing",
        metric: RECONCILE_FAILURES_METRIC,
        threshold: 0.0,
        window: "5m",
        for_: "15m",
        severity: AlertSeverity::Warning,
        summary: "The security policy keeps failing to reconcile",
        expr: |m, ns, p, _, t| format!("{m}{{namespace=\"{ns}\",policy=\"{p}\"}} > {t}"),
    },
    BuiltIn {
        key: "secretRotationOverdue",
        alert: "GoREALSecretRotationOverdue",
        metric: NEXT_ROTATION_METRIC,
        threshold: 0.0,
        window: "5m",
        for_: "15m",
        severity: AlertSeverity::Warning,
        summary: "A managed Secret's scheduled rotation is overdue",
        expr: |m, ns, p, _, t| format!("time() - {m}{{namespace=\"{ns}\",policy=\"{p}\"}} > {t}"),
    },
];

/// Alert names of the built-in rules (custom rules may not reuse them).
pub fn built_in_alerts() -> impl Iterator<Item = &'static str> {
    BUILT_INS.iter().map(|b| b.alert)
}

/// Validates the section for a policy `policy` in `namespace`.
pub(super) fn validate_alerting(
    spec: &AlertingSpec,
    namespace: &str,
    policy: &str,
    problems: &mut Problems,
) -> AlertingSettings {
    const F: &str = "spec.alerting";
    for (key, value) in &spec.rule_labels {
        check_label_key(key, &format!("{F}.ruleLabels"), problems);
        check_label_value(value, &format!("{F}.ruleLabels[{key}]"), problems);
    }
    let overrides = [
        &spec.failed_logins,
        &spec.suspicious_api_activity,
        &spec.unauthorized_access,
        &spec.compliance_score,
        &spec.reconcile_errors,
        &spec.secret_rotation_overdue,
    ];
    let mut rules = Vec::new();
    for (built_in, spec) in BUILT_INS.iter().zip(overrides) {
        let default = BuiltInRuleSpec::default();
        let spec = spec.as_ref().unwrap_or(&default);
        if spec.enabled == Some(false) {
            continue;
        }
        let field = format!("{F}.{}", built_in.key);
        let threshold = spec.threshold.unwrap_or(built_in.threshold);
        if !threshold.is_finite() || threshold < 0.0 {
            problems.add(
                format!("{field}.threshold"),
                "must be a finite number, 0 or more",
            );
        }
        let window = spec.window.as_deref().unwrap_or(built_in.window);
        check_duration(window, &format!("{field}.window"), false, problems);
        let for_ = spec.for_.as_deref().unwrap_or(built_in.for_);
        check_duration(for_, &format!("{field}.for"), true, problems);
        let metric = spec.metric.as_deref().unwrap_or(built_in.metric);
        if !is_metric_name(metric) {
            problems.add(
                format!("{field}.metric"),
                format!("{metric:?} is not a Prometheus metric name"),
            );
        }
        let mut labels = BTreeMap::from([
            (
                "severity".to_string(),
                spec.severity
                    .unwrap_or(built_in.severity)
                    .as_str()
                    .to_string(),
            ),
            ("category".to_string(), "security".to_string()),
        ]);
        for (key, value) in &spec.labels {
            check_rule_label(key, &format!("{field}.labels"), problems);
            check_template(value, &format!("{field}.labels[{key}]"), problems);
            labels.insert(key.clone(), value.clone());
        }
        let expr = (built_in.expr)(metric, namespace, policy, window, &format_number(threshold));
        check_expr(&expr, &field, built_in.alert, problems);
        rules.push(AlertRule {
            name: built_in.alert.to_string(),
            expr,
            for_: Some(for_.to_string()),
            labels,
            annotations: BTreeMap::from([
                ("summary".to_string(), built_in.summary.to_string()),
                (
                    "description".to_string(),
                    format!(
                        "{} in namespace {namespace} (policy {policy})",
                        built_in.summary
                    ),
                ),
            ]),
        });
    }
    for (i, custom) in spec.custom.iter().enumerate() {
        let field = format!("{F}.custom[{i}]");
        if !is_rule_label_name(&custom.name) {
            problems.add(
                format!("{field}.name"),
                format!(
                    "{:?} is not an alert name (letters, digits and _)",
                    custom.name
                ),
            );
        }
        if rules.iter().any(|r| r.name == custom.name)
            || built_in_alerts().any(|b| b == custom.name)
        {
            problems.add(
                format!("{field}.name"),
                format!("alert {:?} is already defined", custom.name),
            );
        }
        if let Some(for_) = &custom.for_ {
            check_duration(for_, &format!("{field}.for"), true, problems);
        }
        for (key, value) in &custom.labels {
            check_rule_label(key, &format!("{field}.labels"), problems);
            check_template(value, &format!("{field}.labels[{key}]"), problems);
        }
        for (key, value) in &custom.annotations {
            check_rule_label(key, &format!("{field}.annotations"), problems);
            check_template(value, &format!("{field}.annotations[{key}]"), problems);
        }
        check_expr(&custom.expr, &field, &custom.name, problems);
        rules.push(AlertRule {
            name: custom.name.clone(),
            expr: custom.expr.clone(),
            for_: custom.for_.clone(),
            labels: custom.labels.clone(),
            annotations: custom.annotations.clone(),
        });
    }
    AlertingSettings {
        rule_labels: spec.rule_labels.clone(),
        rules,
    }
}

/// Label and annotation values are Go templates to Prometheus: an unbalanced `{{` or `}}` makes
/// it refuse the whole rules file, so it is refused here first.
fn check_template(value: &str, field: &str, problems: &mut Problems) {
    let mut open = false;
    let mut rest = value;
    while let Some(at) = rest.find(if open { "}}" } else { "{{" }) {
        open = !open;
        rest = &rest[at + 2..];
    }
    if open || rest.contains("}}") {
        problems.add(
            field,
            "has an unbalanced {{ or }}: Prometheus reads it as a template",
        );
    }
}

/// Parses the expression as PromQL; the error names the rule and quotes the parser.
fn check_expr(expr: &str, field: &str, alert: &str, problems: &mut Problems) {
    if let Err(error) = promql_parser::parser::parse(expr) {
        problems.add(
            format!("{field}.expr"),
            format!("rule {alert}: not valid PromQL: {error}"),
        );
    }
}

/// A threshold as PromQL writes it: integers without a fraction, others as Rust prints them.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// A Prometheus duration: units y, w, d, h, m, s, ms in that order, each at most once, such as
/// `1h30m`; `0` units are allowed only where `zero_ok` (a `for` of `0m` means "at once").
fn check_duration(text: &str, field: &str, zero_ok: bool, problems: &mut Problems) {
    match parse_duration_ms(text) {
        None => problems.add(
            field,
            format!("{text:?} is not a Prometheus duration such as 30s, 5m or 1h30m"),
        ),
        Some(0) if !zero_ok => problems.add(field, "must be longer than zero"),
        Some(_) => {}
    }
}

/// Milliseconds of a Prometheus duration, or `None` when it is malformed.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let letters = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let position = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        total = total.checked_add(number.checked_mul(UNITS[position].1)?)?;
        next_unit = position + 1;
    }
    Some(total)
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_rule_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_rule_label(name: &str, field: &str, problems: &mut Problems) {
    if !is_rule_label_name(name) || name.starts_with("__") {
        problems.add(
            field,
            format!("{name:?} is not a Prometheus label name (letters, digits and _, not starting with __)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GoREALSecurityPolicy;
    use crate::model::validate;

    /// Validates a policy `p` in namespace `shop` with the given `spec.alerting` YAML.
    #[allow(clippy::unwrap_in_result)]
    fn check(alerting: &str) -> Result<AlertingSettings, String> {
        let body: String = alerting.lines().map(|l| format!("    {l}\n")).collect();
        let yaml = format!(
            "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
             metadata: {{name: p, namespace: shop}}\nspec:\n  alerting:\n{body}"
        );
        let raw: GoREALSecurityPolicy = serde_saphyr::from_str(&yaml).expect("policy YAML");
        validate(&raw)
            .map(|v| v.alerting.expect("alerting settings"))
            .map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    fn rule<'a>(settings: &'a AlertingSettings, name: &str) -> &'a AlertRule {
        settings
            .rules
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no rule {name}"))
    }

    #[test]
    fn defaults_are_the_guides_rules_scoped_to_the_namespace() {
        let settings = check("{}").expect("valid");
        let names: Vec<&str> = settings.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "HighFailedLoginAttempts",
                "SuspiciousAPIActivity",
                "UnauthorizedAccessAttempt",
                "GoREALComplianceScoreLow",
                "GoREALReconcileFailing",
                "GoREALSecretRotationOverdue"
            ]
        );
        let logins = rule(&settings, "HighFailedLoginAttempts");
        assert_eq!(
            logins.expr,
            "rate(goreal_failed_login_attempts_total{namespace=\"shop\"}[5m]) > 0.1"
        );
        assert_eq!(logins.for_.as_deref(), Some("2m"));
        assert_eq!(logins.labels["severity"], "warning");
        let api = rule(&settings, "SuspiciousAPIActivity");
        assert_eq!(
            api.expr,
            "rate(http_requests_total{namespace=\"shop\",status=~\"4[0-9][0-9]\"}[5m]) > 10"
        );
        assert_eq!(api.for_.as_deref(), Some("1m"));
        let unauthorized = rule(&settings, "UnauthorizedAccessAttempt");
        assert_eq!(
            unauthorized.expr,
            "increase(goreal_unauthorized_access_total{namespace=\"shop\"}[1m]) > 10"
        );
        assert_eq!(unauthorized.labels["severity"], "critical");
        assert_eq!(unauthorized.for_.as_deref(), Some("0m"));
        let score = rule(&settings, "GoREALComplianceScoreLow");
        assert_eq!(
            score.expr,
            "goreal_policy_compliance_score{namespace=\"shop\",policy=\"p\"} < 80"
        );
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let settings = check(
            "failedLogins: {threshold: 0.5, window: 10m, for: 5m, severity: critical, metric: app_login_failures_total, labels: {team: sec}}\n\
             unauthorizedAccess: {enabled: false}",
        )
        .expect("valid");
        let logins = rule(&settings, "HighFailedLoginAttempts");
        assert_eq!(
            logins.expr,
            "rate(app_login_failures_total{namespace=\"shop\"}[10m]) > 0.5"
        );
        assert_eq!(logins.for_.as_deref(), Some("5m"));
        assert_eq!(logins.labels["severity"], "critical");
        assert_eq!(logins.labels["team"], "sec");
        assert!(
            !settings
                .rules
                .iter()
                .any(|r| r.name == "UnauthorizedAccessAttempt")
        );
        assert_eq!(settings.rules.len(), 5);
    }

    #[test]
    fn custom_rules_follow_the_built_ins() {
        let settings = check(
            "custom:\n- name: TooManyResets\n  expr: 'sum(rate(password_resets_total[5m])) > 3'\n  for: 10m\n  labels: {severity: info}\n  annotations: {summary: resets}",
        )
        .expect("valid");
        let custom = settings.rules.last().expect("rule");
        assert_eq!(custom.name, "TooManyResets");
        assert_eq!(custom.annotations["summary"], "resets");
    }

    #[test]
    fn invalid_promql_names_the_rule_and_the_parser_error() {
        let e = check("custom:\n- name: Broken\n  expr: 'rate(x[5m] > 1'").expect_err("refused");
        assert!(
            e.contains("spec.alerting.custom[0].expr: rule Broken: not valid PromQL:"),
            "{e}"
        );
        let e = check("failedLogins: {metric: 'bad metric'}").expect_err("refused");
        assert!(
            e.contains("failedLogins.metric: \"bad metric\" is not a Prometheus metric name"),
            "{e}"
        );
    }

    #[test]
    fn durations_names_labels_and_thresholds_are_checked() {
        let e = check(
            "failedLogins: {window: 0m, for: 2 minutes, threshold: -1}\n\
             suspiciousApiActivity: {window: 5m1h, labels: {'__private': x, 'bad-label': y}}\n\
             ruleLabels: {'bad key!': x}\n\
             custom:\n- {name: HighFailedLoginAttempts, expr: up}\n- {name: 'has space', expr: up}\n- {name: Twice, expr: up}\n- {name: Twice, expr: up, annotations: {'a.b': c}}",
        )
        .expect_err("refused");
        for wanted in [
            "failedLogins.window: must be longer than zero",
            "failedLogins.for: \"2 minutes\" is not a Prometheus duration",
            "failedLogins.threshold: must be a finite number",
            "suspiciousApiActivity.window: \"5m1h\" is not a Prometheus duration",
            "suspiciousApiActivity.labels: \"__private\" is not a Prometheus label name",
            "suspiciousApiActivity.labels: \"bad-label\"",
            "spec.alerting.ruleLabels: \"bad key!\" is not a valid label key",
            "custom[0].name: alert \"HighFailedLoginAttempts\" is already defined",
            "custom[1].name: \"has space\" is not an alert name",
            "custom[3].name: alert \"Twice\" is already defined",
            "custom[3].annotations: \"a.b\"",
        ] {
            assert!(e.contains(wanted), "missing {wanted:?} in\n{e}");
        }
    }

    #[test]
    fn templates_in_labels_and_annotations_must_balance() {
        let e = check(
            "custom:\n- name: A\n  expr: up == 0\n  annotations: {summary: 'down: {{ $labels.instance', ok: 'value {{ $value }}', stray: 'a }} b'}",
        )
        .expect_err("refused");
        assert!(e.contains("annotations[summary]: has an unbalanced"), "{e}");
        assert!(e.contains("annotations[stray]: has an unbalanced"), "{e}");
        assert!(!e.contains("annotations[ok]"), "{e}");
    }

    #[test]
    fn prometheus_durations_parse_like_prometheus() {
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms("0m"), Some(0));
        for bad in ["", "5", "m", "5x", "1m1h", "1h1h", "-5m", "5 m"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }
}
