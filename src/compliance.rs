//! The check catalogue (stable ids, titles, severities) and the compliance report built from
//! per-workload evaluations: results, bounded offender lists, and the score. Pure.

use std::collections::BTreeMap;

use crate::crd::{CheckResult, CheckStatus, ComplianceStatus, Severity};

/// The capability that owns a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Pod security hardening.
    PodSecurity,
    /// Network isolation.
    NetworkPolicy,
    /// Prometheus alert rules.
    Alerting,
    /// Generated and rotated Secrets.
    Secrets,
    /// Rate limits, security headers and TLS settings.
    RateLimiting,
    /// Checklist items no cluster object shows: always Skip, never Pass.
    Manual,
}

impl Capability {
    /// The spec section that owns the capability's checks.
    pub fn section(self) -> &'static str {
        match self {
            Capability::PodSecurity => "podSecurity",
            Capability::NetworkPolicy => "networkPolicy",
            Capability::Alerting => "alerting",
            Capability::Secrets => "secretRotation",
            Capability::RateLimiting => "rateLimiting",
            Capability::Manual => "none (manual)",
        }
    }
}

/// A catalogue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckDef {
    /// Stable id, never reused.
    pub id: &'static str,
    /// Short title.
    pub title: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Owning capability.
    pub capability: Capability,
    /// The item of the GoREAL security guide's checklist this check implements.
    pub guide_item: &'static str,
}

macro_rules! checks {
    ($($konst:ident = $id:literal, $title:literal, $sev:ident, $cap:ident, $guide:literal;)*) => {
        $(
            #[doc = $title]
            pub const $konst: &str = $id;
        )*
        /// Every check, ordered by id.
        pub const CATALOGUE: &[CheckDef] = &[
            $(CheckDef {
                id: $id,
                title: $title,
                severity: Severity::$sev,
                capability: Capability::$cap,
                guide_item: $guide,
            },)*
        ];
    };
}

checks! {
    ALERT_RULES_IN_PLACE = "alerting.rules-in-place",
        "Security alert rules are written where Prometheus can load them", Medium, Alerting, "Monitoring: security alerts are configured";
    MANUAL_ACCESS_REVIEWS = "manual.access-reviews",
        "Access is reviewed quarterly", Low, Manual, "Access reviews conducted quarterly";
    MANUAL_AUDIT_LOGGING = "manual.audit-logging",
        "Audit logging is enabled and its logs kept off the host", Medium, Manual, "Audit logging is enabled";
    MANUAL_BACKUPS = "manual.backup-integrity",
        "Backups are verified weekly", Medium, Manual, "Backup integrity verified weekly";
    MANUAL_HOST_FIREWALL = "manual.host-firewall",
        "The hosts' firewalls allow only the web and admin ports", High, Manual, "Firewall rules are configured";
    MANUAL_INCIDENT_RESPONSE = "manual.incident-response",
        "Incident response procedures are tested yearly", Low, Manual, "Incident response procedures tested annually";
    MANUAL_INPUT_VALIDATION = "manual.input-validation",
        "The application validates its input", High, Manual, "Input validation is implemented";
    MANUAL_LOG_MONITORING = "manual.log-monitoring",
        "Security logs are read daily", Medium, Manual, "Security logs monitored daily";
    MANUAL_SECURITY_TRAINING = "manual.security-training",
        "The team is trained in security yearly", Low, Manual, "Security training completed annually";
    MANUAL_SECURITY_UPDATES = "manual.security-updates",
        "Security updates are applied regularly", High, Manual, "Regular security updates applied";
    MANUAL_TLS_CERTIFICATES = "manual.tls-certificates",
        "TLS certificates are valid and renewed in time", High, Manual, "SSL certificates are valid and properly configured";
    MANUAL_VULNERABILITY_SCANS = "manual.vulnerability-scans",
        "Images and hosts are scanned for vulnerabilities monthly", Medium, Manual, "Vulnerability scans run monthly";
    NETWORK_API_SERVER_EGRESS = "network.api-server-egress",
        "Egress to the API server reaches its current endpoints", Low, NetworkPolicy, "Network security: firewall rules are configured";
    NETWORK_DEFAULT_DENY = "network.default-deny",
        "Selected pods are isolated by a default deny in each configured direction", High, NetworkPolicy, "Network security: default deny incoming";
    NETWORK_DNS_EGRESS = "network.dns-egress",
        "Pods isolated for egress can still reach the cluster DNS", Medium, NetworkPolicy, "Network security: firewall rules are configured";
    NETWORK_POLICIES_ACCEPTED = "network.policies-accepted",
        "Every generated NetworkPolicy is in place", High, NetworkPolicy, "Network security: firewall rules are configured";
    NETWORK_RULES_WITHIN_SPEC = "network.rules-within-spec",
        "No NetworkPolicy admits more to the selected pods than the spec says", High, NetworkPolicy, "Network security: only the listed ports, from the listed networks";
    ALLOW_PRIVILEGE_ESCALATION = "pod.allow-privilege-escalation",
        "Containers cannot gain privileges", High, PodSecurity, "Pod hardening: no privilege escalation";
    APPARMOR_PROFILE = "pod.apparmor-profile",
        "Pods run under an AppArmor profile", Low, PodSecurity, "Pod hardening: mandatory access control";
    AUTOMOUNT_SERVICE_ACCOUNT_TOKEN = "pod.automount-service-account-token",
        "Service account token mounting is as configured", Medium, PodSecurity, "Pod hardening: no API credentials by default";
    CAPABILITIES_ADD = "pod.capabilities-add",
        "Containers add only allowed capabilities", High, PodSecurity, "Pod hardening: minimal capabilities";
    CAPABILITIES_DROP_ALL = "pod.capabilities-drop-all",
        "Containers drop the configured capabilities", High, PodSecurity, "Pod hardening: drop ALL capabilities";
    FIELD_OWNERSHIP = "pod.field-ownership",
        "No other field manager holds a hardened field with a conflicting value", High, PodSecurity, "Pod hardening: settings actually applied";
    PATCH_ACCEPTED = "pod.hardening-accepted",
        "The API server accepts every hardening patch", High, PodSecurity, "Pod hardening: settings actually applied";
    HOST_NAMESPACES = "pod.host-namespaces",
        "Pods do not share the host's network, PID or IPC namespace", Critical, PodSecurity, "Pod hardening: isolation from the node";
    IMAGE_PINNED = "pod.image-pinned",
        "Images are pinned to a version tag or a digest, never latest", Medium, PodSecurity, "Container security: images pinned to a version";
    PRIVILEGED = "pod.privileged",
        "Containers are not privileged", Critical, PodSecurity, "Pod hardening: no privileged containers";
    READ_ONLY_ROOT_FILESYSTEM = "pod.read-only-root-filesystem",
        "Containers have a read-only root filesystem", Medium, PodSecurity, "Pod hardening: read-only root filesystem";
    RESOURCE_LIMITS = "pod.resource-limits",
        "Containers set CPU and memory limits", Medium, PodSecurity, "DoS protection: resource limits on every container";
    RUN_AS_NON_ROOT = "pod.run-as-non-root",
        "Containers run as a non-root user", High, PodSecurity, "Pod hardening: run as non-root";
    RUN_AS_USER = "pod.run-as-user",
        "Pods run with the configured user, group and fsGroup", Medium, PodSecurity, "Pod hardening: fixed unprivileged ids";
    SECCOMP_PROFILE = "pod.seccomp-profile",
        "Containers run under a seccomp profile", High, PodSecurity, "Pod hardening: seccomp RuntimeDefault";
    WRITABLE_PATHS = "pod.writable-paths",
        "Writable paths are size-limited emptyDir mounts", Low, PodSecurity, "Pod hardening: read-only root filesystem";
    RATE_LIMIT_LOGIN_STRICTER = "ratelimit.login-stricter-than-api",
        "The login zone lets through no more than the API zone", Medium, RateLimiting, "Rate limiting: stricter limits on authentication endpoints";
    RATE_LIMIT_PATHS = "ratelimit.paths-limited",
        "Every declared path is rate limited by an output in place", High, RateLimiting, "Rate limiting is enabled";
    SECURITY_HEADERS = "ratelimit.security-headers",
        "Responses carry HSTS, X-Frame-Options, X-Content-Type-Options and Referrer-Policy", Medium, RateLimiting, "Security headers are set";
    TLS_FLOOR = "ratelimit.tls-floor",
        "No TLS protocol older than TLSv1.2 is offered", High, RateLimiting, "SSL/TLS: modern protocols only";
    SECRET_FILE_MODE = "secrets.file-permissions",
        "Secret volumes are mounted with file modes no wider than 0440", Medium, Secrets, "File permissions are correctly set (600 for secrets)";
    SECRETS_NOT_LITERAL = "secrets.no-literal-values",
        "Secret-like environment variables come from Secrets, not literal values", High, Secrets, "All secrets are properly configured and not in version control";
    SECRETS_ROTATED = "secrets.rotated-within-interval",
        "Every managed Secret exists and was rotated within its interval", High, Secrets, "Secrets rotated quarterly";
}

/// Why a manual check is never Pass.
pub const MANUAL_SKIP: &str = "not visible in the cluster: confirm it by hand";

/// The manual checklist items, each skipped with [`MANUAL_SKIP`]: listed in every report so
/// that it never looks complete without them.
pub fn manual_evaluations() -> Vec<Evaluation> {
    ids_of(Capability::Manual)
        .map(|id| Evaluation::skipped(id, MANUAL_SKIP))
        .collect()
}

/// The catalogue as the Markdown page `docs/checks.md` (a test fails when that file is stale).
pub fn catalogue_markdown() -> String {
    let mut text = String::from(
        "# Compliance checks\n\n\
         Generated from `src/compliance.rs` (`cargo test` fails while this page is stale; \
         `UPDATE_GOLDEN=1 cargo test --lib catalogue` rewrites it). Every check a policy's report \
         can hold, with its stable id, severity, the spec section that owns it (a check appears \
         only when its section is present) and the item of the GoREAL security guide's checklist \
         it implements. Checks owned by no section cannot be verified from the cluster: they are \
         always reported as Skip, never as Pass.\n\n\
         The score is the severity-weighted share of passing checks among those that passed or \
         failed (Low 1, Medium 2, High 4, Critical 8).\n\n\
         | id | severity | section | title | guide item |\n|---|---|---|---|---|\n",
    );
    for def in CATALOGUE {
        text.push_str(&format!(
            "| `{}` | {:?} | {} | {} | {} |\n",
            def.id,
            def.severity,
            def.capability.section(),
            def.title,
            def.guide_item
        ));
    }
    text
}

/// Looks up a check by id.
pub fn definition(id: &str) -> Option<&'static CheckDef> {
    CATALOGUE.iter().find(|c| c.id == id)
}

/// Ids of the checks a capability owns.
pub fn ids_of(capability: Capability) -> impl Iterator<Item = &'static str> {
    CATALOGUE
        .iter()
        .filter(move |c| c.capability == capability)
        .map(|c| c.id)
}

/// At most this many offending objects are listed per check; the total is always stated.
pub const MAX_LISTED_OBJECTS: usize = 20;

/// One offending object (or container) for a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// `Kind/name` or `Kind/name container c`.
    pub object: String,
    /// What is wrong.
    pub detail: String,
    /// The exemption's reason when the object is exempt.
    pub exempt: Option<String>,
}

/// The result of one check for one object (usually a workload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// Check id.
    pub check: &'static str,
    /// Whether the check applies to the object at all.
    pub applicable: bool,
    /// Why it does not apply, when it does not.
    pub skip_reason: Option<&'static str>,
    /// Offending parts of the object.
    pub violations: Vec<Violation>,
    /// Something the reader should know whatever the result, appended to the message.
    pub note: Option<String>,
}

impl Evaluation {
    /// An evaluation of an object the check does not apply to.
    pub fn skipped(check: &'static str, reason: &'static str) -> Self {
        Evaluation {
            check,
            applicable: false,
            skip_reason: Some(reason),
            violations: Vec::new(),
            note: None,
        }
    }

    /// An applicable evaluation with its violations.
    pub fn of(check: &'static str, violations: Vec<Violation>) -> Self {
        Evaluation {
            check,
            applicable: true,
            skip_reason: None,
            violations,
            note: None,
        }
    }

    /// The same evaluation with a note for the message.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Builds the report: one entry per check of the given capabilities, in catalogue order.
pub fn report(capabilities: &[Capability], evaluations: &[Evaluation]) -> ComplianceStatus {
    let mut by_check: BTreeMap<&str, Vec<&Evaluation>> = BTreeMap::new();
    for evaluation in evaluations {
        by_check
            .entry(evaluation.check)
            .or_default()
            .push(evaluation);
    }
    let checks: Vec<CheckStatus> = CATALOGUE
        .iter()
        .filter(|def| capabilities.contains(&def.capability))
        .map(|def| {
            summarize(
                def,
                by_check.get(def.id).map(Vec::as_slice).unwrap_or_default(),
            )
        })
        .collect();
    let count = |r: CheckResult| saturating_i32(checks.iter().filter(|c| c.result == r).count());
    ComplianceStatus {
        score: score(&checks),
        passed: count(CheckResult::Pass),
        failed: count(CheckResult::Fail),
        skipped: count(CheckResult::Skip),
        checks,
    }
}

fn summarize(def: &CheckDef, evaluations: &[&Evaluation]) -> CheckStatus {
    let applicable = evaluations.iter().filter(|e| e.applicable).count();
    let (exempt, offending): (Vec<&Violation>, Vec<&Violation>) = evaluations
        .iter()
        .flat_map(|e| e.violations.iter())
        .partition(|v| v.exempt.is_some());
    // One line per exempt object, however many of its fields the exemption covers.
    let mut exemptions: Vec<String> = exempt
        .iter()
        .map(|v| format!("{}: {}", v.object, v.exempt.as_deref().unwrap_or_default()))
        .collect();
    exemptions.dedup();
    let exempt_objects = exemptions.len();
    exemptions.truncate(MAX_LISTED_OBJECTS);
    let (result, message) = if applicable == 0 {
        let reason = evaluations
            .iter()
            .find_map(|e| e.skip_reason)
            .unwrap_or("no selected workload to check");
        (CheckResult::Skip, reason.to_string())
    } else if offending.is_empty() {
        let mut message = format!("{applicable} object(s) checked, none offending");
        if !exempt.is_empty() {
            message.push_str(&format!("; {exempt_objects} exempt"));
        }
        (CheckResult::Pass, message)
    } else {
        let first = offending[0];
        let mut message = format!(
            "{} offending: {} {}",
            offending.len(),
            first.object,
            first.detail
        );
        if offending.len() > 1 {
            message.push_str(&format!(" (and {} more)", offending.len() - 1));
        }
        (CheckResult::Fail, message)
    };
    let message = match evaluations.iter().find_map(|e| e.note.as_deref()) {
        Some(note) => format!("{message}; {note}"),
        None => message,
    };
    CheckStatus {
        id: def.id.to_string(),
        title: def.title.to_string(),
        severity: def.severity,
        result,
        message,
        objects: offending
            .iter()
            .take(MAX_LISTED_OBJECTS)
            .map(|v| v.object.clone())
            .collect(),
        total_objects: saturating_i32(offending.len()),
        exemptions,
    }
}

/// Counts as the API's int32, saturating instead of wrapping.
pub fn saturating_i32(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

fn weight(severity: Severity) -> u32 {
    match severity {
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 4,
        Severity::Critical => 8,
    }
}

/// Severity-weighted share of passing checks among those that passed or failed; 100 when
/// nothing could be checked.
pub fn score(checks: &[CheckStatus]) -> i32 {
    let (passed, total) = checks
        .iter()
        .fold((0u32, 0u32), |(p, t), c| match c.result {
            CheckResult::Pass => (p + weight(c.severity), t + weight(c.severity)),
            CheckResult::Fail => (p, t + weight(c.severity)),
            CheckResult::Skip => (p, t),
        });
    (passed * 100 + total / 2)
        .checked_div(total)
        .map_or(100, |score| i32::try_from(score).unwrap_or(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_page_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/checks.md");
        let generated = catalogue_markdown();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &generated).expect("write docs/checks.md");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/checks.md is stale: run UPDATE_GOLDEN=1 cargo test --lib catalogue"
        );
    }

    #[test]
    fn every_report_lists_the_manual_checks_as_skipped() {
        let ids: Vec<&str> = ids_of(Capability::Manual).collect();
        assert!(
            ids.len() >= 10,
            "the guide's unverifiable checklist items: {ids:?}"
        );
        let report = report(&[Capability::Manual], &manual_evaluations());
        assert_eq!(report.checks.len(), ids.len());
        assert!(
            report
                .checks
                .iter()
                .all(|c| c.result == CheckResult::Skip && c.message == MANUAL_SKIP)
        );
        assert_eq!(report.score, 100, "skips weigh nothing");
    }

    fn violation(object: &str, exempt: Option<&str>) -> Violation {
        Violation {
            object: object.into(),
            detail: "bad".into(),
            exempt: exempt.map(Into::into),
        }
    }

    #[test]
    fn catalogue_ids_are_unique_and_sorted() {
        let ids: Vec<&str> = CATALOGUE.iter().map(|c| c.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn offender_list_is_bounded_but_total_is_exact() {
        let violations = (0..50)
            .map(|i| violation(&format!("Deployment/d{i}"), None))
            .collect();
        let report = report(
            &[Capability::PodSecurity],
            &[Evaluation::of(PRIVILEGED, violations)],
        );
        let check = report
            .checks
            .iter()
            .find(|c| c.id == PRIVILEGED)
            .expect("check");
        assert_eq!(check.result, CheckResult::Fail);
        assert_eq!(check.objects.len(), MAX_LISTED_OBJECTS);
        assert_eq!(check.total_objects, 50);
        assert!(check.message.contains("and 49 more"));
    }

    #[test]
    fn exempt_violations_pass_and_carry_their_reason() {
        let evaluation = Evaluation::of(
            PRIVILEGED,
            vec![violation("DaemonSet/cni", Some("needs the host"))],
        );
        let report = report(&[Capability::PodSecurity], &[evaluation]);
        let check = report
            .checks
            .iter()
            .find(|c| c.id == PRIVILEGED)
            .expect("check");
        assert_eq!(check.result, CheckResult::Pass);
        assert_eq!(
            check.exemptions,
            vec!["DaemonSet/cni: needs the host".to_string()]
        );
    }

    #[test]
    fn checks_without_applicable_objects_skip_with_reason() {
        let evaluation = Evaluation::skipped(SECCOMP_PROFILE, "not applicable to Windows pods");
        let report = report(&[Capability::PodSecurity], &[evaluation]);
        let check = report
            .checks
            .iter()
            .find(|c| c.id == SECCOMP_PROFILE)
            .expect("check");
        assert_eq!(check.result, CheckResult::Skip);
        assert_eq!(check.message, "not applicable to Windows pods");
    }

    #[test]
    fn score_weights_by_severity() {
        let evaluations = [
            Evaluation::of(PRIVILEGED, vec![]),
            Evaluation::of(WRITABLE_PATHS, vec![violation("Deployment/a", None)]),
        ];
        let report = report(&[Capability::PodSecurity], &evaluations);
        // Critical pass (8) against a Low failure (1): 8/9.
        assert_eq!(report.score, 89);
        assert_eq!((report.passed, report.failed), (1, 1));
    }
}
