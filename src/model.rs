//! Validation: turns a raw `GoREALSecurityPolicy` into a `ValidatedPolicy`, collecting every
//! problem at once. Pure: no API calls, no clock. The CRD's CEL rules are repeated here because
//! `render` and `audit` never pass through an API server.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

mod alerting;
mod network;
mod rate_limit;
mod secrets;

pub use alerting::{
    AlertRule, AlertingSettings, COMPLIANCE_SCORE_METRIC, RECONCILE_FAILURES_METRIC,
    built_in_alerts, parse_duration_ms,
};
pub use network::{NetworkRule, NetworkSettings, is_dns_label, is_port_name};
pub use rate_limit::{
    DEFAULT_CIPHERS, DEFAULT_HSTS, DEFAULT_TEMP_PATH, HEADER_NAMES, Rate, RateLimitSettings,
    RealIp, Zone,
};
pub use secrets::{
    KeySpec, ManagedSecret, PREVIOUS_SUFFIX, Restart, RotateRequest, SecretSettings, parse_interval,
};

use crate::compliance::{Capability, ids_of};
use crate::crd::{
    AddCapability, AppArmorProfileSpec, Exemption, GoREALSecurityPolicy, Level, Mode,
    SeccompProfileSpec, SeccompProfileType,
};

/// A policy whose spec passed every check; the only input the planners accept.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedPolicy {
    /// Policy name.
    pub name: String,
    /// Namespace the policy governs.
    pub namespace: String,
    /// UID, for owner references; absent for policies read from files.
    pub uid: Option<String>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Enforce or Audit.
    pub mode: Mode,
    /// Take over conflicting fields from other managers.
    pub force: bool,
    /// Which workloads the policy governs.
    pub selector: Selector,
    /// Pod security settings, when that capability is managed.
    pub pod_security: Option<PodSecuritySettings>,
    /// Network isolation settings, when that capability is managed.
    pub network: Option<NetworkSettings>,
    /// Rate limits and response hardening, when that capability is managed.
    pub rate_limit: Option<RateLimitSettings>,
    /// Alert rules, when that capability is managed.
    pub alerting: Option<AlertingSettings>,
    /// Generated Secrets, when that capability is managed.
    pub secrets: Option<SecretSettings>,
    /// The rotation request of the policy's rotate-now annotation, if any.
    pub rotate_request: Option<RotateRequest>,
    /// The selector as written, for objects that carry it (NetworkPolicy pod selectors).
    pub label_selector: LabelSelector,
    /// The lowest severity whose failing check makes the policy not Compliant.
    pub fail_on: crate::crd::Severity,
}

/// Validated pod security settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSecuritySettings {
    /// Pod Security Standards level.
    pub level: Level,
    /// Set the namespace's Pod Security Admission labels.
    pub label_namespace: bool,
    /// Require non-root containers.
    pub run_as_non_root: bool,
    /// Pod-level user id.
    pub run_as_user: Option<i64>,
    /// Pod-level group id.
    pub run_as_group: Option<i64>,
    /// Pod-level fsGroup.
    pub fs_group: Option<i64>,
    /// Read-only root filesystem for every container.
    pub read_only_root_filesystem: bool,
    /// Value for allowPrivilegeEscalation.
    pub allow_privilege_escalation: bool,
    /// Capabilities every container drops.
    pub drop_capabilities: Vec<String>,
    /// Capabilities a container may keep when it asks for them.
    pub allowed_add: BTreeSet<String>,
    /// Seccomp profile.
    pub seccomp: SeccompProfileSpec,
    /// AppArmor profile, when configured.
    pub app_armor: Option<AppArmorProfileSpec>,
    /// automountServiceAccountToken, when configured.
    pub automount_service_account_token: Option<bool>,
    /// Writable paths as emptyDir volumes.
    pub writable_paths: Vec<WritableVolume>,
    /// Exemptions by workload name.
    pub exemptions: Vec<Exemption>,
}

/// A writable path with the name of the emptyDir volume that backs it.
#[derive(Clone, Debug, PartialEq)]
pub struct WritableVolume {
    /// Mount path.
    pub path: String,
    /// emptyDir size limit.
    pub size_limit: String,
    /// Volume name, derived from the path.
    pub volume_name: String,
}

/// A parsed label selector.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Selector {
    match_labels: BTreeMap<String, String>,
    expressions: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Parses a selector read from the cluster; `None` when it is malformed (it then selects
    /// nothing, as the API server would never have accepted it).
    pub fn from_label_selector(selector: &LabelSelector) -> Option<Selector> {
        let mut problems = Problems(Vec::new());
        let parsed = parse_selector(Some(selector), "selector", &mut problems);
        problems.0.is_empty().then_some(parsed)
    }

    /// Whether the labels satisfy every term; the empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|req| match req {
                Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
                Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
                Requirement::Exists(k) => labels.contains_key(k),
                Requirement::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

/// One problem in a policy spec, with the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON path of the field, such as `spec.podSecurity.writablePaths[1].path`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins validation errors into one message for a condition or an event.
pub fn describe(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

struct Problems(Vec<ValidationError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Validates a policy, returning every problem found.
pub fn validate(policy: &GoREALSecurityPolicy) -> Result<ValidatedPolicy, Vec<ValidationError>> {
    let mut problems = Problems(Vec::new());
    let namespace = policy.namespace().unwrap_or_default();
    if namespace.is_empty() {
        problems.add("metadata.namespace", "a policy must live in a namespace");
    } else if !is_dns_label(&namespace) {
        // Only possible in files given to `render`; names end up in object names and PromQL.
        problems.add(
            "metadata.namespace",
            format!("{namespace:?} is not a namespace name"),
        );
    }
    let name = policy.name_any();
    if name.is_empty() || name.len() > 253 || !name.split('.').all(is_dns_label) {
        problems.add(
            "metadata.name",
            format!("{name:?} is not an object name (a DNS subdomain)"),
        );
    }
    let selector = parse_selector(
        policy.spec.selector.as_ref(),
        "spec.selector",
        &mut problems,
    );
    let pod_security = policy
        .spec
        .pod_security
        .as_ref()
        .map(|spec| validate_pod_security(spec, &mut problems));
    let network =
        policy.spec.network_policy.as_ref().map(|spec| {
            network::validate_network(spec, policy.spec.selector.as_ref(), &mut problems)
        });
    let rate_limit =
        policy.spec.rate_limiting.as_ref().map(|spec| {
            rate_limit::validate_rate_limiting(spec, pod_security.as_ref(), &mut problems)
        });
    let alerting = policy.spec.alerting.as_ref().map(|spec| {
        alerting::validate_alerting(spec, &namespace, &policy.name_any(), &mut problems)
    });
    let secrets = policy
        .spec
        .secret_rotation
        .as_ref()
        .map(|spec| secrets::validate_secrets(spec, &mut problems));
    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    Ok(ValidatedPolicy {
        name: policy.name_any(),
        namespace,
        uid: policy.uid(),
        generation: policy.metadata.generation,
        mode: policy.spec.mode,
        force: policy.spec.force,
        selector,
        pod_security,
        network,
        rate_limit,
        alerting,
        secrets,
        rotate_request: policy
            .annotations()
            .get(crate::names::ROTATE_NOW_ANNOTATION)
            .and_then(|value| RotateRequest::parse(value)),
        label_selector: policy.spec.selector.clone().unwrap_or_default(),
        fail_on: policy
            .spec
            .compliance
            .as_ref()
            .and_then(|c| c.fail_on)
            .unwrap_or(crate::crd::Severity::Low),
    })
}

fn validate_pod_security(
    spec: &crate::crd::PodSecuritySpec,
    problems: &mut Problems,
) -> PodSecuritySettings {
    const F: &str = "spec.podSecurity";
    let restricted = spec.level == Level::Restricted;
    if restricted && spec.allow_privilege_escalation {
        problems.add(
            format!("{F}.allowPrivilegeEscalation"),
            "must be false at level restricted",
        );
    }
    if restricted && !spec.run_as_non_root {
        problems.add(
            format!("{F}.runAsNonRoot"),
            "must be true at level restricted",
        );
    }
    if spec.run_as_non_root && spec.run_as_user == Some(0) {
        problems.add(
            format!("{F}.runAsUser"),
            "runAsUser 0 contradicts runAsNonRoot",
        );
    }
    for (field, value) in [
        ("runAsUser", spec.run_as_user),
        ("runAsGroup", spec.run_as_group),
        ("fsGroup", spec.fs_group),
    ] {
        if value.is_some_and(|id| !(0..=i64::from(i32::MAX)).contains(&id)) {
            problems.add(format!("{F}.{field}"), "must be between 0 and 2147483647");
        }
    }
    for (i, cap) in spec.capabilities.drop.iter().enumerate() {
        if !is_capability_name(cap) {
            problems.add(
                format!("{F}.capabilities.drop[{i}]"),
                format!("{cap:?} is not a capability name (upper case, like NET_RAW or ALL)"),
            );
        }
    }
    if restricted && !spec.capabilities.drop.iter().any(|c| c == "ALL") {
        problems.add(
            format!("{F}.capabilities.drop"),
            "must contain ALL at level restricted",
        );
    }
    if restricted {
        for cap in spec
            .capabilities
            .add
            .iter()
            .filter(|c| **c != AddCapability::NET_BIND_SERVICE)
        {
            problems.add(
                format!("{F}.capabilities.add"),
                format!(
                    "level restricted allows only NET_BIND_SERVICE, not {}",
                    cap.as_str()
                ),
            );
        }
    }
    check_profile(
        "seccompProfile",
        spec.seccomp_profile.type_ == SeccompProfileType::Localhost,
        spec.seccomp_profile.localhost_profile.is_some(),
        problems,
    );
    if let Some(profile) = &spec.app_armor_profile {
        check_profile(
            "appArmorProfile",
            profile.type_ == crate::crd::AppArmorProfileType::Localhost,
            profile.localhost_profile.is_some(),
            problems,
        );
    }
    let writable_paths = validate_writable_paths(spec, problems);
    for (i, exemption) in spec.exemptions.iter().enumerate() {
        let field = format!("{F}.exemptions[{i}]");
        if exemption.reason.trim().is_empty() {
            problems.add(format!("{field}.reason"), "every exemption needs a reason");
        }
        if exemption.workload.trim().is_empty() {
            problems.add(format!("{field}.workload"), "must name a workload");
        }
        for check in &exemption.checks {
            if !ids_of(Capability::PodSecurity).any(|id| id == check) {
                let known: Vec<&str> = ids_of(Capability::PodSecurity).collect();
                problems.add(
                    format!("{field}.checks"),
                    format!("unknown check id {check:?}; known: {}", known.join(", ")),
                );
            }
        }
    }
    PodSecuritySettings {
        level: spec.level,
        label_namespace: spec.label_namespace,
        run_as_non_root: spec.run_as_non_root,
        run_as_user: spec.run_as_user,
        run_as_group: spec.run_as_group,
        fs_group: spec.fs_group,
        read_only_root_filesystem: spec.read_only_root_filesystem,
        allow_privilege_escalation: spec.allow_privilege_escalation,
        drop_capabilities: spec.capabilities.drop.clone(),
        allowed_add: spec
            .capabilities
            .add
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        seccomp: spec.seccomp_profile.clone(),
        app_armor: spec.app_armor_profile.clone(),
        automount_service_account_token: spec.automount_service_account_token,
        writable_paths,
        exemptions: spec.exemptions.clone(),
    }
}

fn check_profile(field: &str, localhost: bool, has_profile: bool, problems: &mut Problems) {
    if localhost != has_profile {
        problems.add(
            format!("spec.podSecurity.{field}.localhostProfile"),
            "is required for type Localhost and only allowed there",
        );
    }
}

fn validate_writable_paths(
    spec: &crate::crd::PodSecuritySpec,
    problems: &mut Problems,
) -> Vec<WritableVolume> {
    let mut volumes: Vec<WritableVolume> = Vec::new();
    for (i, writable) in spec.writable_paths.iter().enumerate() {
        let field = format!("spec.podSecurity.writablePaths[{i}]");
        let path = writable.path.as_str();
        if !path.starts_with('/') {
            problems.add(
                format!("{field}.path"),
                format!("{path:?} must be an absolute path"),
            );
            continue;
        }
        if path == "/" || path.split('/').any(|s| s == "." || s == "..") || path.ends_with('/') {
            problems.add(
                format!("{field}.path"),
                format!("{path:?} must be a clean path below / (no ., .. or trailing slash)"),
            );
            continue;
        }
        if let Some(earlier) = volumes.iter().find(|v| v.path == path) {
            problems.add(
                format!("{field}.path"),
                format!("{} is listed twice", earlier.path),
            );
            continue;
        }
        if !is_positive_quantity(&writable.size_limit) {
            problems.add(
                format!("{field}.sizeLimit"),
                format!(
                    "{:?} is not a positive quantity such as 100Mi",
                    writable.size_limit
                ),
            );
        }
        volumes.push(WritableVolume {
            path: path.to_string(),
            size_limit: writable.size_limit.clone(),
            volume_name: writable_volume_name(path),
        });
    }
    volumes
}

/// Name of the emptyDir volume for a writable path: readable where it fits in a DNS label, with
/// a digest suffix so that different paths never share a name.
pub fn writable_volume_name(path: &str) -> String {
    use sha2::{Digest, Sha256};
    let slug: String = path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let digest = Sha256::digest(path.as_bytes());
    let suffix: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let room = 63 - crate::names::WRITABLE_VOLUME_PREFIX.len() - suffix.len() - 1;
    let slug: String = slug.chars().take(room).collect();
    let slug = slug.trim_matches('-');
    format!("{}{slug}-{suffix}", crate::names::WRITABLE_VOLUME_PREFIX)
}

fn is_capability_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c == '_')
}

/// The exact value of a Kubernetes quantity in the forms used for sizes (a decimal number with
/// an optional binary Ki..Ei or decimal m, k, M..E suffix, or a decimal exponent), as
/// `(digits, exponent)` meaning digits × 10^exponent with no trailing zeros in `digits`: equal
/// quantities in any notation give equal keys. `None` when the text is not such a quantity.
pub fn quantity_value(value: &str) -> Option<(i128, i32)> {
    const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    const DECIMAL: [(&str, i32); 7] = [
        ("m", -3),
        ("k", 3),
        ("M", 6),
        ("G", 9),
        ("T", 12),
        ("P", 15),
        ("E", 18),
    ];
    let (mut number, mut power_of_two, mut exponent) = (value, 0u32, 0i32);
    if let Some((i, rest)) = BINARY
        .iter()
        .enumerate()
        .find_map(|(i, s)| value.strip_suffix(s).map(|n| (i, n)))
    {
        (number, power_of_two) = (rest, 10 * (u32::try_from(i).ok()? + 1));
    } else if let Some((rest, e)) = DECIMAL
        .iter()
        .find_map(|(s, e)| value.strip_suffix(s).map(|n| (n, *e)))
    {
        (number, exponent) = (rest, e);
    } else if let Some((mantissa, power)) = value.split_once(['e', 'E']) {
        let digits = power.strip_prefix(['+', '-']).unwrap_or(power);
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        (number, exponent) = (mantissa, power.parse().ok()?);
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut mantissa: i128 = digits.parse().ok()?;
    mantissa = mantissa.checked_mul(1i128.checked_shl(power_of_two)?)?;
    exponent -= i32::try_from(fraction.len()).ok()?;
    if mantissa == 0 {
        return Some((0, 0));
    }
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    Some((mantissa, exponent))
}

fn is_positive_quantity(value: &str) -> bool {
    quantity_value(value).is_some_and(|(digits, _)| digits > 0)
}

fn parse_selector(
    selector: Option<&LabelSelector>,
    field: &str,
    problems: &mut Problems,
) -> Selector {
    let Some(selector) = selector else {
        return Selector::default();
    };
    let mut parsed = Selector::default();
    for (key, value) in selector.match_labels.iter().flatten() {
        check_label_key(key, &format!("{field}.matchLabels"), problems);
        check_label_value(value, &format!("{field}.matchLabels[{key}]"), problems);
        parsed.match_labels.insert(key.clone(), value.clone());
    }
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let efield = format!("{field}.matchExpressions[{i}]");
        check_label_key(&expr.key, &format!("{efield}.key"), problems);
        let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
        for value in &values {
            check_label_value(value, &format!("{efield}.values"), problems);
        }
        let needs_values = matches!(expr.operator.as_str(), "In" | "NotIn");
        if needs_values && values.is_empty() {
            problems.add(
                format!("{efield}.values"),
                "In and NotIn need at least one value",
            );
        }
        if !needs_values && !values.is_empty() {
            problems.add(
                format!("{efield}.values"),
                "Exists and DoesNotExist take no values",
            );
        }
        let key = expr.key.clone();
        match expr.operator.as_str() {
            "In" => parsed.expressions.push(Requirement::In(key, values)),
            "NotIn" => parsed.expressions.push(Requirement::NotIn(key, values)),
            "Exists" => parsed.expressions.push(Requirement::Exists(key)),
            "DoesNotExist" => parsed.expressions.push(Requirement::DoesNotExist(key)),
            other => problems.add(
                format!("{efield}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            ),
        }
    }
    parsed
}

/// Label keys: an optional DNS subdomain prefix and a name of at most 63 characters.
fn check_label_key(key: &str, field: &str, problems: &mut Problems) {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    if !prefix_ok || name.is_empty() || !is_label_name(name) {
        problems.add(field, format!("{key:?} is not a valid label key"));
    }
}

fn check_label_value(value: &str, field: &str, problems: &mut Problems) {
    if !value.is_empty() && !is_label_name(value) {
        problems.add(field, format!("{value:?} is not a valid label value"));
    }
}

/// A label name or value: at most 63 alphanumerics, `-`, `_` or `.`, alphanumeric at both ends.
fn is_label_name(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{GoREALSecurityPolicySpec, PodSecuritySpec, WritablePath};

    fn policy(pod_security: PodSecuritySpec) -> GoREALSecurityPolicy {
        let mut policy = GoREALSecurityPolicy::new(
            "baseline",
            GoREALSecurityPolicySpec {
                pod_security: Some(pod_security),
                ..Default::default()
            },
        );
        policy.metadata.namespace = Some("goreal".into());
        policy
    }

    fn errors(spec: PodSecuritySpec) -> Vec<String> {
        match validate(&policy(spec)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn default_spec_is_valid_and_has_tmp_writable() {
        let validated = validate(&policy(PodSecuritySpec::default())).expect("valid");
        let settings = validated.pod_security.expect("pod security");
        assert_eq!(settings.writable_paths.len(), 1);
        assert_eq!(settings.writable_paths[0].path, "/tmp");
        assert!(
            settings.writable_paths[0]
                .volume_name
                .starts_with("goreal-writable-tmp-")
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let mut spec = PodSecuritySpec {
            allow_privilege_escalation: true,
            writable_paths: vec![WritablePath {
                path: "tmp".into(),
                size_limit: "1Gi".into(),
            }],
            ..Default::default()
        };
        spec.capabilities.drop = vec!["net_raw".into()];
        let found = errors(spec);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found.iter().any(|e| e.contains("allowPrivilegeEscalation")));
        assert!(found.iter().any(|e| e.contains("absolute path")));
        assert!(found.iter().any(|e| e.contains("not a capability name")));
        assert!(found.iter().any(|e| e.contains("must contain ALL")));
    }

    #[test]
    fn restricted_level_refuses_adds_beyond_net_bind_service() {
        let mut spec = PodSecuritySpec::default();
        spec.capabilities.add = vec![AddCapability::NET_BIND_SERVICE, AddCapability::CHOWN];
        assert_eq!(errors(spec.clone()).len(), 1);
        spec.level = Level::Baseline;
        assert!(errors(spec).is_empty());
    }

    #[test]
    fn quantities_in_different_notations_have_equal_values() {
        for (a, b) in [
            ("1Gi", "1024Mi"),
            ("1k", "1e3"),
            ("0.7Gi", "751619276800m"),
            ("1.5Gi", "1536Mi"),
            ("2048Ki", "2Mi"),
            ("1000k", "1M"),
            ("0.5", "500m"),
        ] {
            assert_eq!(quantity_value(a), quantity_value(b), "{a} = {b}");
            assert!(quantity_value(a).is_some());
        }
        assert_ne!(quantity_value("1Gi"), quantity_value("1G"));
        assert_eq!(quantity_value("lots"), None);
    }

    #[test]
    fn size_limits_must_be_positive_quantities() {
        for good in ["100Mi", "1Gi", "500k", "1.5Gi", "1e3", "64"] {
            assert!(is_positive_quantity(good), "{good}");
        }
        for bad in ["", "0", "0Mi", "-1Mi", "ten", "10MB", "1..5Gi", "Mi", "1e"] {
            assert!(!is_positive_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn duplicate_and_unclean_writable_paths_are_refused() {
        let spec = PodSecuritySpec {
            writable_paths: vec![
                WritablePath {
                    path: "/tmp".into(),
                    size_limit: "1Mi".into(),
                },
                WritablePath {
                    path: "/tmp".into(),
                    size_limit: "1Mi".into(),
                },
                WritablePath {
                    path: "/var/../etc".into(),
                    size_limit: "1Mi".into(),
                },
                WritablePath {
                    path: "/".into(),
                    size_limit: "1Mi".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(errors(spec).len(), 3);
    }

    #[test]
    fn exemption_needs_reason_and_known_check_ids() {
        let spec = PodSecuritySpec {
            exemptions: vec![Exemption {
                workload: "legacy".into(),
                container: None,
                checks: vec!["pod.no-such-check".into()],
                reason: "  ".into(),
            }],
            ..Default::default()
        };
        let found = errors(spec);
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn bad_selector_label_syntax_is_refused() {
        let mut policy = policy(PodSecuritySpec::default());
        policy.spec.selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("bad key!".into(), "api".into())])),
            match_expressions: None,
        });
        let err = validate(&policy).expect_err("invalid");
        assert_eq!(err[0].field, "spec.selector.matchLabels");
    }

    #[test]
    fn selector_semantics_follow_kubernetes() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement as R;
        let mut policy = policy(PodSecuritySpec::default());
        policy.spec.selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "goreal".into())])),
            match_expressions: Some(vec![
                R {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["api".into()]),
                },
                R {
                    key: "legacy".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        });
        let selector = validate(&policy).expect("valid").selector;
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector.matches(&labels(&[("app", "goreal"), ("tier", "api")])));
        assert!(!selector.matches(&labels(&[("app", "goreal"), ("tier", "db")])));
        assert!(!selector.matches(&labels(&[
            ("app", "goreal"),
            ("tier", "api"),
            ("legacy", "")
        ])));
        assert!(Selector::default().matches(&labels(&[])));
    }

    #[test]
    fn long_writable_paths_get_distinct_dns_label_names() {
        let a = writable_volume_name(&format!("/{}", "a".repeat(100)));
        let b = writable_volume_name(&format!("/{}b", "a".repeat(100)));
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
    }
}
