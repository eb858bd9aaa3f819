//! Validation of the `secretRotation` section, and the rotation request carried by the policy's
//! `security.goreal.io/rotate-now` annotation.

use std::collections::BTreeSet;

use jiff::SignedDuration;

use super::{Problems, Selector, parse_duration_ms, parse_selector};
use crate::crd::{Charset, RestartStrategy, SecretRotationSpec};

/// Shortest rotation interval: each rotation restarts consumers, so nothing rotates on a schedule
/// more often than hourly (a forced rotation can always come sooner).
pub const MIN_INTERVAL: SignedDuration = SignedDuration::from_hours(1);
/// Longest rotation interval (ten years): beyond it a schedule means nothing.
pub const MAX_INTERVAL: SignedDuration = SignedDuration::from_hours(24 * 3650);
/// Suffix of the key holding a key's previous value.
pub const PREVIOUS_SUFFIX: &str = ".previous";

/// Validated settings: the Secrets to manage, in spec order.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretSettings {
    /// The Secrets.
    pub secrets: Vec<ManagedSecret>,
}

/// One managed Secret.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedSecret {
    /// Secret name.
    pub name: String,
    /// Generated keys.
    pub keys: Vec<KeySpec>,
    /// Time between scheduled rotations.
    pub interval: SignedDuration,
    /// Keep previous values under `<key>.previous`.
    pub keep_previous: bool,
    /// Which workloads restart after a rotation.
    pub restart: Restart,
    /// Take over an existing foreign Secret of this name.
    pub adopt: bool,
}

impl ManagedSecret {
    /// The generated key names.
    pub fn key_names(&self) -> BTreeSet<&str> {
        self.keys.iter().map(|k| k.key.as_str()).collect()
    }
}

/// One generated key.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySpec {
    /// Data key.
    pub key: String,
    /// Number of characters.
    pub length: usize,
    /// Alphabet.
    pub charset: Charset,
}

/// Which workloads restart after a rotation.
#[derive(Clone, Debug, PartialEq)]
pub enum Restart {
    /// Those that read a rotated key or the whole Secret.
    Auto,
    /// None.
    None,
    /// Those whose pod template labels match.
    Selector(Selector),
}

/// A request to rotate now, from the policy's annotation: any new value rotates once; a value
/// `NAME@TOKEN` rotates only the Secret `NAME` (names cannot contain `@`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotateRequest {
    /// The annotation's whole value, recorded on each Secret it rotated.
    pub value: String,
    /// The one Secret it concerns, if any.
    pub secret: Option<String>,
}

impl RotateRequest {
    /// Parses the annotation value; an empty value requests nothing.
    pub fn parse(value: &str) -> Option<RotateRequest> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let secret = value
            .split_once('@')
            .map(|(name, _)| name.to_string())
            .filter(|name| !name.is_empty());
        Some(RotateRequest {
            value: value.to_string(),
            secret,
        })
    }

    /// Whether the request concerns the Secret `name`.
    pub fn concerns(&self, name: &str) -> bool {
        self.secret.as_deref().is_none_or(|s| s == name)
    }
}

/// Parses an interval such as `2160h`, `90d` or `1d12h`.
pub fn parse_interval(text: &str) -> Result<SignedDuration, String> {
    let millis = parse_duration_ms(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 2160h or 90d"))?;
    let interval = i64::try_from(millis)
        .ok()
        .map(SignedDuration::from_millis)
        .filter(|d| *d <= MAX_INTERVAL)
        .ok_or_else(|| format!("{text:?} is longer than ten years"))?;
    if interval < MIN_INTERVAL {
        return Err(format!("{text:?} is shorter than one hour"));
    }
    Ok(interval)
}

pub(super) fn validate_secrets(
    spec: &SecretRotationSpec,
    problems: &mut Problems,
) -> SecretSettings {
    const F: &str = "spec.secretRotation.secrets";
    let mut names = BTreeSet::new();
    let mut secrets = Vec::new();
    for (i, secret) in spec.secrets.iter().enumerate() {
        let field = format!("{F}[{i}]");
        if !is_secret_name(&secret.name) {
            problems.add(
                format!("{field}.name"),
                format!(
                    "{:?} is not a Secret name of at most 63 characters (lower case, digits, '-', '.')",
                    secret.name
                ),
            );
        }
        if !names.insert(secret.name.as_str()) {
            problems.add(
                format!("{field}.name"),
                format!("{:?} is named twice", secret.name),
            );
        }
        if secret.keys.is_empty() {
            problems.add(format!("{field}.keys"), "at least one key is needed");
        }
        let mut keys = BTreeSet::new();
        for (j, key) in secret.keys.iter().enumerate() {
            let key_field = format!("{field}.keys[{j}]");
            if let Err(message) = check_key(&key.key) {
                problems.add(format!("{key_field}.key"), message);
            }
            if !keys.insert(key.key.as_str()) {
                problems.add(
                    format!("{key_field}.key"),
                    format!("{:?} is named twice", key.key),
                );
            }
            if !(16..=4096).contains(&key.length) {
                problems.add(format!("{key_field}.length"), "must be between 16 and 4096");
            }
        }
        let interval = parse_interval(&secret.interval).unwrap_or_else(|message| {
            problems.add(format!("{field}.interval"), message);
            MIN_INTERVAL
        });
        let restart = match (secret.restart.strategy, &secret.restart.selector) {
            (RestartStrategy::Selector, Some(selector)) => Restart::Selector(parse_selector(
                Some(selector),
                &format!("{field}.restart.selector"),
                problems,
            )),
            (RestartStrategy::Selector, None) => {
                problems.add(
                    format!("{field}.restart.selector"),
                    "strategy Selector needs a selector",
                );
                Restart::None
            }
            (_, Some(_)) => {
                problems.add(
                    format!("{field}.restart.selector"),
                    "a selector is only allowed with strategy Selector",
                );
                Restart::None
            }
            (RestartStrategy::Auto, None) => Restart::Auto,
            (RestartStrategy::None, None) => Restart::None,
        };
        secrets.push(ManagedSecret {
            name: secret.name.clone(),
            keys: secret
                .keys
                .iter()
                .map(|k| KeySpec {
                    key: k.key.clone(),
                    length: usize::try_from(k.length).unwrap_or(usize::MAX),
                    charset: k.charset,
                })
                .collect(),
            interval,
            keep_previous: secret.keep_previous,
            restart,
            adopt: secret.adopt,
        });
    }
    SecretSettings { secrets }
}

/// A Secret name short enough to name its restart marker annotation (63 characters).
fn is_secret_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.split('.').all(super::is_dns_label)
}

fn check_key(key: &str) -> Result<(), String> {
    let valid_chars = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if key.is_empty() || key.len() > 244 || !valid_chars || key == "." || key == ".." {
        return Err(format!(
            "{key:?} is not a Secret data key (letters, digits, '-', '_', '.'; at most 244)"
        ));
    }
    if key.ends_with(PREVIOUS_SUFFIX) {
        return Err(format!(
            "{key:?} ends in {PREVIOUS_SUFFIX}, which holds previous values"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GoREALSecurityPolicy;

    /// Validation errors of a policy with this secretRotation body, as `field: message`.
    fn errors(section: &str) -> Vec<String> {
        let body: String = section.lines().map(|l| format!("    {l}\n")).collect();
        let yaml = format!(
            "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
             metadata: {{name: p, namespace: shop}}\nspec:\n  secretRotation:\n{body}"
        );
        let raw: GoREALSecurityPolicy = serde_saphyr::from_str(&yaml).expect("policy YAML");
        match super::super::validate(&raw) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_complete_section_is_valid_with_the_guides_defaults() {
        assert!(errors("secrets:\n- name: db\n  keys: [{key: password}]").is_empty());
        let raw: GoREALSecurityPolicy = serde_saphyr::from_str(
            "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
             metadata: {name: p, namespace: shop}\n\
             spec: {secretRotation: {secrets: [{name: db, keys: [{key: password}]}]}}",
        )
        .expect("policy");
        let validated = super::super::validate(&raw).expect("valid");
        let secret = &validated.secrets.expect("section").secrets[0];
        assert_eq!(secret.interval, SignedDuration::from_hours(2160));
        assert!(secret.keep_previous && !secret.adopt);
        assert_eq!(secret.restart, Restart::Auto);
        assert_eq!(
            (secret.keys[0].length, secret.keys[0].charset),
            (32, Charset::Alphanumeric)
        );
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let found = errors(
            "secrets:\n\
             - name: Bad_Name\n  interval: 30m\n  keys: [{key: a, length: 8}, {key: a}, {key: x.previous}]\n\
             - name: Bad_Name\n  keys: []\n  restart: {strategy: Selector}\n\
             - name: ok\n  keys: [{key: k}]\n  restart: {strategy: Auto, selector: {matchLabels: {a: b}}}",
        );
        let expected = [
            "spec.secretRotation.secrets[0].name: \"Bad_Name\" is not a Secret name",
            "spec.secretRotation.secrets[0].keys[0].length: must be between 16 and 4096",
            "spec.secretRotation.secrets[0].keys[1].key: \"a\" is named twice",
            "spec.secretRotation.secrets[0].keys[2].key: \"x.previous\" ends in .previous",
            "spec.secretRotation.secrets[0].interval: \"30m\" is shorter than one hour",
            "spec.secretRotation.secrets[1].name: \"Bad_Name\" is named twice",
            "spec.secretRotation.secrets[1].keys: at least one key is needed",
            "spec.secretRotation.secrets[1].restart.selector: strategy Selector needs a selector",
            "spec.secretRotation.secrets[2].restart.selector: a selector is only allowed with strategy Selector",
        ];
        for fragment in expected {
            assert!(
                found.iter().any(|f| f.starts_with(fragment)),
                "{fragment} not in {found:#?}"
            );
        }
    }

    #[test]
    fn names_longer_than_a_marker_annotation_allows_are_refused() {
        let long = "a".repeat(64);
        let found = errors(&format!("secrets:\n- name: {long}\n  keys: [{{key: k}}]"));
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn intervals_in_hours_days_and_sums() {
        assert_eq!(
            parse_interval("2160h"),
            Ok(SignedDuration::from_hours(2160))
        );
        assert_eq!(parse_interval("90d"), Ok(SignedDuration::from_hours(2160)));
        assert_eq!(parse_interval("1d12h"), Ok(SignedDuration::from_hours(36)));
        assert_eq!(parse_interval("1h"), Ok(MIN_INTERVAL));
    }

    #[test]
    fn intervals_too_short_too_long_or_malformed_are_refused() {
        for (text, fragment) in [
            ("59m", "shorter than one hour"),
            ("0d", "shorter than one hour"),
            ("3651d", "longer than ten years"),
            ("90", "not a duration"),
            ("d90", "not a duration"),
            ("", "not a duration"),
            ("99999999999999999999d", "not a duration"),
        ] {
            let error = parse_interval(text).expect_err(text);
            assert!(error.contains(fragment), "{text}: {error}");
        }
    }

    #[test]
    fn rotate_request_may_name_one_secret() {
        let all = RotateRequest::parse("2026-12-03T10:00:00Z").expect("request");
        assert!(all.concerns("db") && all.concerns("api"));
        let one = RotateRequest::parse("db@2026-12-03T10:00:00Z").expect("request");
        assert_eq!(one.secret.as_deref(), Some("db"));
        assert!(one.concerns("db") && !one.concerns("api"));
        assert_eq!(RotateRequest::parse("  "), None);
        let anonymous = RotateRequest::parse("@x").expect("request");
        assert!(anonymous.concerns("db"));
    }

    #[test]
    fn keys_are_data_keys_and_never_previous_slots() {
        assert!(check_key("DB_PASSWORD").is_ok());
        assert!(check_key("tls.key-2").is_ok());
        assert!(check_key("password.previous").is_err());
        assert!(check_key("a/b").is_err());
        assert!(check_key("..").is_err());
        assert!(check_key("").is_err());
    }
}
