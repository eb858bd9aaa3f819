//! The alert rules the operator writes, checked by an independent oracle: Prometheus's own
//! `promtool` (built by `hack/promtool/build.sh`). `check rules` loads the rules file exactly as
//! the ConfigMap carries it; `test rules` evaluates the rules over synthetic series
//! (`tests/fixtures/promtool/*.test.yaml`) and compares the firing alerts, with all their labels
//! and annotations, against what the built-in rules are meant to do.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use goreal_operator::crd::GoREALSecurityPolicy;
use goreal_operator::model;
use goreal_operator::policy::alerting::{self, RULES_FILE_KEY};
use goreal_operator::render;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the build script once per test binary (a no-op once cached) and returns promtool's path.
fn promtool() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| common::go_tool("promtool", "promtool"))
}

fn parse_policy(yaml: &str) -> GoREALSecurityPolicy {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("policy YAML: {e}\n{yaml}"))
}

/// The rules file as the operator's ConfigMap holds it, and the alert names in order.
fn rules_text(policy: &GoREALSecurityPolicy) -> (String, Vec<String>) {
    let validated = model::validate(policy).unwrap_or_else(|errors| {
        panic!("policy invalid: {}", model::describe(&errors));
    });
    let settings = validated
        .alerting
        .as_ref()
        .expect("the policy has an alerting section");
    let file = alerting::rules_file(&validated, settings);
    let text = serde_saphyr::to_string(&file).expect("serialize rules file");
    let names = settings.rules.iter().map(|r| r.name.clone()).collect();
    (text, names)
}

/// Writes the rules file (under the ConfigMap key's name) and the given promtool test files into
/// a fresh directory.
fn workdir(rules: &str, tests: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(RULES_FILE_KEY), rules).expect("write rules file");
    for name in tests {
        let fixture = root().join("tests/fixtures/promtool").join(name);
        std::fs::copy(&fixture, dir.path().join(name))
            .unwrap_or_else(|e| panic!("copy {}: {e}", fixture.display()));
    }
    dir
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool().display()))
}

/// promtool's output and every file it read, for failure messages.
fn report(output: &Output, dir: &Path, files: &[&str]) -> String {
    let mut text = format!(
        "promtool exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for name in files {
        let content = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let _ = write!(text, "--- {name} ---\n{content}\n");
    }
    text
}

/// `promtool check rules` on the rules file; returns the rule count it reports.
fn check_rules(dir: &Path) -> usize {
    let output = run(dir, &["check", "rules", RULES_FILE_KEY]);
    let details = report(&output, dir, &[RULES_FILE_KEY]);
    assert!(output.status.success(), "check rules failed\n{details}");
    // `SUCCESS: 6 rules found` (on stdout; older versions used stderr).
    let both = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    both.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("SUCCESS: ")?
                .strip_suffix(" rules found")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no rule count in promtool's output\n{details}"))
}

/// `promtool test rules` on a fixture; panics with promtool's output and the files on failure.
fn test_rules(dir: &Path, test_file: &str) {
    let output = run(dir, &["test", "rules", test_file]);
    let details = report(&output, dir, &[RULES_FILE_KEY, test_file]);
    assert!(output.status.success(), "test rules failed\n{details}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("SUCCESS"),
        "test rules printed no SUCCESS\n{details}"
    );
}

/// The ConfigMap's rules file in the offline render of the example namespace.
fn rendered_rules_file() -> String {
    let manifests = render::load(&[root().join("examples/goreal")]).expect("load examples/goreal");
    let rendered = render::render(&manifests, jiff::Timestamp::UNIX_EPOCH).expect("render");
    serde_saphyr::from_multiple::<Value>(&rendered.yaml)
        .expect("split rendered YAML")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"].get(RULES_FILE_KEY).is_some())
        .and_then(|d| d["data"][RULES_FILE_KEY].as_str().map(str::to_owned))
        .expect("a ConfigMap with the rules file in the render")
}

#[test]
fn example_policy_rules_load_in_prometheus() {
    let path = root().join("examples/goreal/10-policy.yaml");
    let yaml = std::fs::read_to_string(&path).expect("read example policy");
    let (rules, names) = rules_text(&parse_policy(&yaml));
    assert_eq!(
        rules,
        rendered_rules_file(),
        "the rules file differs from the ConfigMap of `render`"
    );
    assert_eq!(
        names,
        [
            "HighFailedLoginAttempts",
            "SuspiciousAPIActivity",
            "UnauthorizedAccessAttempt",
            "GoREALComplianceScoreLow",
            "GoREALReconcileFailing",
            "GoREALSecretRotationOverdue",
            "GoREALAdminEndpointBurst",
        ]
    );
    let dir = workdir(&rules, &[]);
    assert_eq!(check_rules(dir.path()), 7, "6 built-ins + 1 custom rule");
}

const DEFAULTS: &str = r"
apiVersion: security.goreal.io/v1alpha1
kind: GoREALSecurityPolicy
metadata:
  name: p
  namespace: goreal
spec:
  alerting: {}
";

#[test]
fn default_built_in_alerts_fire_above_and_stay_silent_below_their_thresholds() {
    let (rules, names) = rules_text(&parse_policy(DEFAULTS));
    assert_eq!(names.len(), 6, "{names:?}");
    let dir = workdir(&rules, &["defaults.test.yaml"]);
    assert_eq!(check_rules(dir.path()), 6);
    test_rules(dir.path(), "defaults.test.yaml");
}

const OVERRIDES: &str = r"
apiVersion: security.goreal.io/v1alpha1
kind: GoREALSecurityPolicy
metadata:
  name: p
  namespace: goreal
spec:
  alerting:
    failedLogins:
      threshold: 0.5
      for: 5m
      labels:
        team: sec
    unauthorizedAccess:
      enabled: false
";

#[test]
fn overrides_change_threshold_hold_labels_and_drop_disabled_rules() {
    let (rules, names) = rules_text(&parse_policy(OVERRIDES));
    assert_eq!(
        names,
        [
            "HighFailedLoginAttempts",
            "SuspiciousAPIActivity",
            "GoREALComplianceScoreLow",
            "GoREALReconcileFailing",
            "GoREALSecretRotationOverdue",
        ]
    );
    assert!(
        !rules.contains("UnauthorizedAccessAttempt"),
        "disabled rule still in the file:\n{rules}"
    );
    let dir = workdir(&rules, &["overrides.test.yaml"]);
    assert_eq!(check_rules(dir.path()), 5, "unauthorizedAccess is disabled");
    test_rules(dir.path(), "overrides.test.yaml");
}
