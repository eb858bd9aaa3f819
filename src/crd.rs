//! The `GoREALSecurityPolicy` custom resource: spec and status types, schema validation (CEL) and
//! printer columns. This file is the only source of the CRD; `crds/` is generated from it.
//! It holds types and schema rules only; semantic validation lives in `model.rs`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod alerting;
mod network;
mod rate_limit;
mod secrets;
pub use alerting::{AlertSeverity, AlertingSpec, BuiltInRuleSpec, CustomRuleSpec};
pub use network::{
    Direction, EgressRule, IngressRule, IpBlockSpec, NetworkPolicySpec, Peer, PortSpec, Protocol,
};
pub use rate_limit::{
    NginxSpec, RateLimitOutput, RateLimitZoneSpec, RateLimitingSpec, RealIpHeader, RealIpSpec,
    SecurityHeadersSpec, TlsProtocol, TlsSpec,
};
pub use secrets::{
    Charset, ManagedSecretSpec, RestartSpec, RestartStrategy, SecretKeySpec, SecretRotationSpec,
};

/// Spec of a GoREALSecurityPolicy: which workloads of its namespace it governs and how.
// Each printer column repeats `type_`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "security.goreal.io",
    version = "v1alpha1",
    kind = "GoREALSecurityPolicy",
    plural = "gorealsecuritypolicies",
    shortname = "gsp",
    category = "goreal",
    namespaced,
    status = "GoREALSecurityPolicyStatus",
    derive = "PartialEq",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Score",
        type_ = "integer",
        json_path = ".status.compliance.score"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Compliant",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Compliant\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GoREALSecurityPolicySpec {
    /// `Enforce` applies the hardening; `Audit` only reports (status, events, PolicyReport).
    #[serde(default)]
    pub mode: Mode,
    /// Take ownership of fields that another field manager (Helm, Argo CD, kubectl) holds with a
    /// different value. Off by default: such conflicts are reported instead.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    /// Label selector over pod template labels; empty or absent selects every workload of the
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Pod security hardening; absent means pod security is not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecuritySpec>,
    /// Network isolation of the selected pods; absent means network policies are not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
    /// Rate limits, security headers and TLS settings for the HTTP entry points; absent means
    /// none are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiting: Option<RateLimitingSpec>,
    /// Prometheus alert rules; absent means no rules are generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting: Option<AlertingSpec>,
    /// How the compliance report is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<ComplianceSpec>,
    /// Generated Secrets, rotated on a schedule; absent means no Secrets are managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_rotation: Option<SecretRotationSpec>,
}

/// How the compliance report is judged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceSpec {
    /// `Compliant` is False only when a check of at least this severity fails (default `Low`:
    /// any failing check). Lower failures are still reported and still lower the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on: Option<Severity>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn yes() -> bool {
    true
}

/// Whether a policy changes the cluster or only reports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Mode {
    /// Apply hardening and report.
    #[default]
    Enforce,
    /// Report only; write nothing but status and events.
    Audit,
}

/// Pod Security Standards level, as Pod Security Admission names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The `restricted` profile: hardened pods.
    #[default]
    Restricted,
    /// The `baseline` profile: prevents known privilege escalations.
    Baseline,
}

impl Level {
    /// The value Pod Security Admission expects in its namespace labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Restricted => "restricted",
            Level::Baseline => "baseline",
        }
    }
}

/// Pod-level and container-level hardening settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.level != 'restricted' || !self.allowPrivilegeEscalation").message("allowPrivilegeEscalation must be false at level restricted"))]
#[x_kube(validation = Rule::new("self.level != 'restricted' || self.runAsNonRoot").message("runAsNonRoot must be true at level restricted"))]
#[x_kube(validation = Rule::new("!self.runAsNonRoot || !has(self.runAsUser) || self.runAsUser != 0").message("runAsUser 0 contradicts runAsNonRoot"))]
#[x_kube(validation = Rule::new("self.level != 'restricted' || self.capabilities.drop.exists(c, c == 'ALL')").message("capabilities.drop must contain ALL at level restricted"))]
#[x_kube(validation = Rule::new("self.level != 'restricted' || self.capabilities.add.all(c, c == 'NET_BIND_SERVICE')").message("level restricted allows only NET_BIND_SERVICE in capabilities.add"))]
pub struct PodSecuritySpec {
    /// Pod Security Standards level the workloads must meet.
    #[serde(default)]
    pub level: Level,
    /// Label the namespace for Pod Security Admission (enforce, audit, warn) at `level`.
    #[serde(default = "yes")]
    pub label_namespace: bool,
    /// Require containers to run as a non-root user.
    #[serde(default = "yes")]
    pub run_as_non_root: bool,
    /// User id for all containers; the image's user when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_user: Option<i64>,
    /// Primary group id for all containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_group: Option<i64>,
    /// Group that owns mounted volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub fs_group: Option<i64>,
    /// Mount the root filesystem read-only; `writablePaths` get emptyDir volumes.
    #[serde(default = "yes")]
    pub read_only_root_filesystem: bool,
    /// Allow a process to gain more privileges than its parent.
    #[serde(default)]
    pub allow_privilege_escalation: bool,
    /// Linux capabilities to drop and the allow-list of capabilities that may be added.
    #[serde(default)]
    pub capabilities: CapabilitiesSpec,
    /// Seccomp profile for every pod.
    #[serde(default)]
    pub seccomp_profile: SeccompProfileSpec,
    /// AppArmor profile for every pod; unset when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_armor_profile: Option<AppArmorProfileSpec>,
    /// Whether pods mount the service account token; `false` when absent, and `null` leaves it
    /// to each workload.
    #[serde(default = "default_automount", skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    /// Paths that stay writable under a read-only root filesystem, as size-limited emptyDirs.
    #[serde(default = "default_writable_paths")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.path == p.path))").message("writable paths must be unique"))]
    pub writable_paths: Vec<WritablePath>,
    /// Workloads or containers exempt from some or all checks; each needs a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub exemptions: Vec<Exemption>,
}

fn default_automount() -> Option<bool> {
    Some(false)
}

fn default_writable_paths() -> Vec<WritablePath> {
    vec![WritablePath {
        path: "/tmp".into(),
        size_limit: "100Mi".into(),
    }]
}

impl Default for PodSecuritySpec {
    fn default() -> Self {
        PodSecuritySpec {
            level: Level::Restricted,
            label_namespace: true,
            run_as_non_root: true,
            run_as_user: None,
            run_as_group: None,
            fs_group: None,
            read_only_root_filesystem: true,
            allow_privilege_escalation: false,
            capabilities: CapabilitiesSpec::default(),
            seccomp_profile: SeccompProfileSpec::default(),
            app_armor_profile: None,
            automount_service_account_token: default_automount(),
            writable_paths: default_writable_paths(),
            exemptions: Vec::new(),
        }
    }
}

/// Capabilities to drop from and add to every container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CapabilitiesSpec {
    /// Capabilities removed from every container; `ALL` removes every capability.
    #[serde(default = "default_drop")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = r"^(ALL|[A-Z][A-Z_]*)$"), length(max = 64))
    )]
    pub drop: Vec<String>,
    /// Capabilities a container may keep when it asks for them; anything else it asks for is
    /// removed. `ALL` is not allowed here.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub add: Vec<AddCapability>,
}

impl Default for CapabilitiesSpec {
    fn default() -> Self {
        CapabilitiesSpec {
            drop: default_drop(),
            add: Vec::new(),
        }
    }
}

fn default_drop() -> Vec<String> {
    vec!["ALL".into()]
}

/// Capabilities that may be re-added after dropping ALL: the harmless part of the container
/// runtime's default set. Privileged ones (SYS_ADMIN, NET_ADMIN, ...) cannot be named at all.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[allow(non_camel_case_types)]
#[allow(clippy::upper_case_acronyms)]
pub enum AddCapability {
    /// Bind ports below 1024.
    NET_BIND_SERVICE,
    /// Change file ownership.
    CHOWN,
    /// Bypass file permission checks.
    DAC_OVERRIDE,
    /// Bypass permission checks on operations that need the file owner.
    FOWNER,
    /// Keep set-user-id bits on modified files.
    FSETID,
    /// Send signals to processes of other users.
    KILL,
    /// Change group ids.
    SETGID,
    /// Change user ids.
    SETUID,
    /// Transfer capabilities.
    SETPCAP,
    /// Use chroot.
    SYS_CHROOT,
    /// Create special files.
    MKNOD,
    /// Write the kernel audit log.
    AUDIT_WRITE,
    /// Set file capabilities.
    SETFCAP,
}

impl AddCapability {
    /// The capability name as the container runtime spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AddCapability::NET_BIND_SERVICE => "NET_BIND_SERVICE",
            AddCapability::CHOWN => "CHOWN",
            AddCapability::DAC_OVERRIDE => "DAC_OVERRIDE",
            AddCapability::FOWNER => "FOWNER",
            AddCapability::FSETID => "FSETID",
            AddCapability::KILL => "KILL",
            AddCapability::SETGID => "SETGID",
            AddCapability::SETUID => "SETUID",
            AddCapability::SETPCAP => "SETPCAP",
            AddCapability::SYS_CHROOT => "SYS_CHROOT",
            AddCapability::MKNOD => "MKNOD",
            AddCapability::AUDIT_WRITE => "AUDIT_WRITE",
            AddCapability::SETFCAP => "SETFCAP",
        }
    }
}

/// Seccomp profile types that restrict system calls.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SeccompProfileType {
    /// The container runtime's default profile.
    #[default]
    RuntimeDefault,
    /// A profile file on the node.
    Localhost,
}

/// Seccomp profile for the pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.type == 'Localhost') == has(self.localhostProfile)").message("localhostProfile is required for type Localhost and only allowed there"))]
pub struct SeccompProfileSpec {
    /// Profile type.
    #[serde(default, rename = "type")]
    pub type_: SeccompProfileType,
    /// Path of the profile relative to the kubelet's seccomp directory (type Localhost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub localhost_profile: Option<String>,
}

/// AppArmor profile types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AppArmorProfileType {
    /// The container runtime's default profile.
    #[default]
    RuntimeDefault,
    /// A profile loaded on the node.
    Localhost,
}

/// AppArmor profile for the pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.type == 'Localhost') == has(self.localhostProfile)").message("localhostProfile is required for type Localhost and only allowed there"))]
pub struct AppArmorProfileSpec {
    /// Profile type.
    #[serde(default, rename = "type")]
    pub type_: AppArmorProfileType,
    /// Name of the profile loaded on the node (type Localhost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub localhost_profile: Option<String>,
}

/// A path that stays writable under a read-only root filesystem.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WritablePath {
    /// Absolute path inside the container, such as `/tmp`.
    #[schemars(length(min = 2, max = 256))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("path must be absolute"))]
    #[x_kube(validation = Rule::new("!self.endsWith('/') && !self.contains('/./') && !self.contains('/../') && !self.endsWith('/.') && !self.endsWith('/..')").message("path must be clean: no . or .. segments, no trailing slash"))]
    pub path: String,
    /// Size limit of the emptyDir backing the path, a quantity such as `100Mi`.
    #[serde(default = "default_size_limit")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("sizeLimit must be a positive quantity such as 100Mi"))]
    pub size_limit: String,
}

fn default_size_limit() -> String {
    "100Mi".into()
}

/// An exemption from hardening and checks, always with a reason.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Exemption {
    /// Name of the exempt workload.
    #[schemars(length(min = 1, max = 253))]
    pub workload: String,
    /// Name of the exempt container; the whole workload when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
    /// Check ids the exemption covers (such as `pod.read-only-root-filesystem`); all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 64)))]
    pub checks: Vec<String>,
    /// Why the exemption is acceptable; shown in the compliance report.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"\S"))]
    pub reason: String,
}

/// Observed state of a policy, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoREALSecurityPolicyStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Compliant` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The compliance report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<ComplianceStatus>,
    /// Counts of the workloads the policy selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<WorkloadsStatus>,
    /// Objects the policy wrote to: generated objects and objects it patched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceRef>,
    /// The managed Secrets: versions, rotation times and consumer restarts (never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretStatus>,
}

/// One managed Secret's rotation state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStatus {
    /// Secret name.
    pub name: String,
    /// `Managed`, `Missing` (not created yet, or Audit mode) or `Conflict` (the name is held by
    /// a Secret the policy may not take).
    pub state: String,
    /// Content version: 1 when generated or adopted, one more per rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// When the values were last generated (or adopted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// When the next scheduled rotation is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,
    /// Workloads that read the Secret and run its current version (at most 20 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<String>,
    /// Workloads still to restart onto the current version (at most 20 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Number of pending workloads, also those not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub pending_total: i32,
    /// Consumers controlled by another operator's resource: reported, never restarted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<String>,
    /// What happened or what is wrong.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Compliance score and per-check results.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceStatus {
    /// 0 to 100, weighted by severity over the checks that passed or failed.
    #[schemars(range(min = 0, max = 100))]
    pub score: i32,
    /// Number of passing checks.
    #[schemars(range(min = 0))]
    pub passed: i32,
    /// Number of failing checks.
    #[schemars(range(min = 0))]
    pub failed: i32,
    /// Number of checks that could not apply.
    #[schemars(range(min = 0))]
    pub skipped: i32,
    /// One entry per check, ordered by id.
    #[serde(default)]
    pub checks: Vec<CheckStatus>,
}

/// Outcome of one check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CheckResult {
    /// The rule holds for every object.
    Pass,
    /// The rule fails for at least one object.
    Fail,
    /// The rule does not apply here (no objects, or not verifiable).
    Skip,
}

/// Severity of a check.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum Severity {
    /// Hardening that helps but is rarely exploitable alone.
    Low,
    /// A real weakness.
    Medium,
    /// Exploitable in common setups.
    High,
    /// Direct path to node or cluster compromise.
    Critical,
}

/// One check's result in status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    /// Stable id, such as `pod.run-as-non-root`.
    pub id: String,
    /// Short title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Pass, Fail or Skip.
    pub result: CheckResult,
    /// What was found, or why the check was skipped.
    pub message: String,
    /// Offending objects, at most a bounded number; `totalObjects` has the full count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// Number of offending objects, also those not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub total_objects: i32,
    /// Exempt objects and their reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemptions: Vec<String>,
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

/// Counts of the selected workloads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadsStatus {
    /// Workloads the selector matches.
    #[schemars(range(min = 0))]
    pub matched: i32,
    /// Workloads whose templates carry every hardened field.
    #[schemars(range(min = 0))]
    pub hardened: i32,
    /// Workloads that fail at least one check.
    #[schemars(range(min = 0))]
    pub failing: i32,
    /// Workloads controlled by another operator's resource: checked, not patched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<String>,
    /// Jobs, whose pod templates cannot change after creation: checked, not patched (harden
    /// their manifest or their CronJob).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub immutable: Vec<String>,
}

/// Reference to an object the policy wrote to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// API version of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
}

/// The CRD as YAML, exactly as committed in `crds/`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&GoREALSecurityPolicy::crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const COMMITTED: &str = include_str!("../crds/gorealsecuritypolicies.security.goreal.io.yaml");

    #[test]
    fn committed_crd_matches_the_code() {
        let generated = crd_yaml().expect("serialize CRD");
        assert!(
            generated == COMMITTED,
            "crds/ is stale: run `cargo run -- crd > crds/gorealsecuritypolicies.security.goreal.io.yaml`"
        );
    }

    /// A structural schema has a type on every node, except where Kubernetes allows it to be
    /// absent (int-or-string, preserve-unknown-fields), and no unions of object shapes.
    fn assert_structural(schema: &Value, path: &str) {
        let Some(object) = schema.as_object() else {
            return;
        };
        let exempt = object.contains_key("x-kubernetes-int-or-string")
            || object.contains_key("x-kubernetes-preserve-unknown-fields");
        assert!(exempt || object.contains_key("type"), "{path} has no type");
        for key in ["oneOf", "anyOf", "allOf"] {
            for (i, branch) in object
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                assert!(
                    branch.get("type").is_none() && branch.get("properties").is_none(),
                    "{path}.{key}[{i}] declares a type or properties"
                );
            }
        }
        for (name, child) in object
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            assert_structural(child, &format!("{path}.{name}"));
        }
        if let Some(items) = object.get("items") {
            assert_structural(items, &format!("{path}[]"));
        }
        if let Some(additional) = object.get("additionalProperties").filter(|v| v.is_object()) {
            assert_structural(additional, &format!("{path}{{}}"));
        }
    }

    #[test]
    fn schema_is_structural() {
        let crd = serde_json::to_value(GoREALSecurityPolicy::crd()).expect("json");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_structural(schema, "");
    }

    #[test]
    fn enums_are_plain_string_enums() {
        let crd = serde_json::to_value(GoREALSecurityPolicy::crd()).expect("json");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["mode"]["enum"],
            serde_json::json!(["Enforce", "Audit"])
        );
        let level = &spec["properties"]["podSecurity"]["properties"]["level"];
        assert_eq!(level["type"], "string");
        assert_eq!(level["enum"], serde_json::json!(["restricted", "baseline"]));
        let add =
            &spec["properties"]["podSecurity"]["properties"]["capabilities"]["properties"]["add"];
        assert!(
            add["items"]["enum"]
                .as_array()
                .is_some_and(|v| v.contains(&"NET_BIND_SERVICE".into()))
        );
        assert!(
            !add["items"]["enum"]
                .as_array()
                .is_some_and(|v| v.contains(&"ALL".into()))
        );
    }

    #[test]
    fn printer_columns_show_mode_score_ready_compliant_age() {
        let crd = GoREALSecurityPolicy::crd();
        let columns: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(columns, ["Mode", "Score", "Ready", "Compliant", "Age"]);
        assert_eq!(crd.spec.names.short_names, Some(vec!["gsp".to_string()]));
    }
}
