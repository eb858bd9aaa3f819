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
/// On a generated object: which capability generated it (each prunes only its own).
pub const COMPONENT_LABEL: &str = "security.goreal.io/component";

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

/// Annotation on an Ingress naming the policy whose rate limit annotations it carries (the first
/// policy to limit it keeps it; cleanup releases what it names).
pub const RATE_LIMITED_BY_ANNOTATION: &str = "security.goreal.io/rate-limited-by";
/// Annotation on a policy requesting an immediate rotation: each new value rotates its Secrets
/// once (`NAME@TOKEN` only the Secret `NAME`).
pub const ROTATE_NOW_ANNOTATION: &str = "security.goreal.io/rotate-now";
/// Annotation on a managed Secret: its content version, 1 when generated, one more per rotation.
pub const SECRET_VERSION_ANNOTATION: &str = "security.goreal.io/secret-version";
/// Annotation on a managed Secret: when its values were last generated or adopted (RFC 3339).
pub const ROTATED_AT_ANNOTATION: &str = "security.goreal.io/rotated-at";
/// Annotation on a managed Secret: the rotate-now value it last acted on, so that each value
/// rotates once.
pub const ROTATION_REQUEST_ANNOTATION: &str = "security.goreal.io/rotation-request";
/// Annotation on a managed Secret: the keys the operator generates, comma-separated, so that a
/// metadata-only watch shows when a key is missing.
pub const SECRET_KEYS_ANNOTATION: &str = "security.goreal.io/generated-keys";
/// Prefix of the pod-template annotation that restarts a Secret's consumers: followed by the
/// Secret's name, valued with its content version.
pub const RESTART_MARKER_PREFIX: &str = "secrets.security.goreal.io/";
/// Field manager of the restart markers, one per policy: apart from the hardening patches'
/// manager so that neither apply releases the other's fields.
pub fn restart_field_manager(policy: &str) -> String {
    format!("goreal-operator-restarts-{}", policy_label_value(policy))
}

/// Pod Security Admission namespace labels, one per mode.
pub const PSA_MODES: [&str; 3] = ["enforce", "audit", "warn"];
/// Prefix of the Pod Security Admission labels.
pub const PSA_LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// Prefix of the emptyDir volumes the operator adds for writable paths.
pub const WRITABLE_VOLUME_PREFIX: &str = "goreal-writable-";

/// The [`POLICY_LABEL`] value for a policy: its name, or when longer than a label value may be
/// (63), a prefix with a digest of the whole name so that distinct names stay distinct.
pub fn policy_label_value(policy: &str) -> String {
    shortened(policy, "", 63)
}

/// Name of an object a policy generates: `<policy>-<suffix>`, shortened with a digest when it
/// would pass the 253 characters of an object name.
pub fn generated_name(policy: &str, suffix: &str) -> String {
    shortened(policy, &format!("-{suffix}"), 253)
}

fn shortened(base: &str, suffix: &str, max: usize) -> String {
    use sha2::{Digest, Sha256};
    if base.len() + suffix.len() <= max {
        return format!("{base}{suffix}");
    }
    let digest: String = Sha256::digest(base.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    // Policy names are ASCII (DNS subdomains), so byte slicing stays on character boundaries.
    let keep = max.saturating_sub(suffix.len() + digest.len() + 1);
    let prefix = base
        .get(..keep)
        .unwrap_or(base)
        .trim_end_matches(['-', '.']);
    format!("{prefix}-{digest}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_shortened_distinctly() {
        assert_eq!(policy_label_value("goreal-baseline"), "goreal-baseline");
        assert_eq!(generated_name("p", "default-deny"), "p-default-deny");
        let long_a = format!("{}a", "x".repeat(70));
        let long_b = format!("{}b", "x".repeat(70));
        let (a, b) = (policy_label_value(&long_a), policy_label_value(&long_b));
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        let name = generated_name(&"y".repeat(253), "ingress-web");
        assert!(name.len() <= 253 && name.ends_with("-ingress-web"));
    }
}
