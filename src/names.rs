//! Every label, annotation, finalizer and field-manager name the operator writes, in one place.
//! Nothing else in the crate spells these strings.

/// API group of the GoREALSecurityPolicy resource.
pub const GROUP: &str = "security.goreal.io";
/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "goreal-operator";
/// Finalizer that releases what a policy applied to objects it does not own.
pub const FINALIZER: &str = "security.goreal.io/release";

/// Standard label on every object the operator generates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "goreal-operator";
/// Names the policy that generated or patched an object.
pub const POLICY_LABEL: &str = "security.goreal.io/policy";

/// Annotation on a patched workload naming the policy that hardened it, so that a workload the
/// policy no longer selects can be found and released.
pub const HARDENED_BY_ANNOTATION: &str = "security.goreal.io/hardened-by";
/// Annotation on a patched workload holding a digest of the fields the operator applied; equal
/// digests (and matching live values) mean the apply can be skipped.
pub const APPLIED_DIGEST_ANNOTATION: &str = "security.goreal.io/applied-digest";

/// Annotation on a labelled namespace naming the policy that set its Pod Security Admission
/// labels; another policy in the namespace leaves them alone while that policy exists.
pub const NAMESPACE_LABELLED_BY_ANNOTATION: &str = "security.goreal.io/psa-labels-by";

/// Annotation on a patched workload recording the pod-level seccomp and AppArmor profiles the
/// operator wrote (JSON), so that a later policy change can tell its own earlier Localhost
/// profile from one the workload's author set.
pub const APPLIED_PROFILES_ANNOTATION: &str = "security.goreal.io/applied-pod-profiles";

/// Pod Security Admission namespace labels, one per mode.
pub const PSA_MODES: [&str; 3] = ["enforce", "audit", "warn"];
/// Prefix of the Pod Security Admission labels.
pub const PSA_LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// Prefix of the emptyDir volumes the operator adds for writable paths.
pub const WRITABLE_VOLUME_PREFIX: &str = "goreal-writable-";
