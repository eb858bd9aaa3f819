//! `goreal-operator audit` over manifests as written: the example namespace's report is checked
//! in (insta snapshot), the built-in policy applies when the files hold none, the exit code
//! follows `--fail-on`, unreadable or empty input exits 2 naming the file, and SARIF points at
//! the offending object's file and line.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use goreal_operator::{audit, render};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/audit").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_goreal-operator"))
        .arg("audit")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run goreal-operator audit")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The first SARIF result of a rule.
fn sarif_result(sarif: &Value, rule: &str) -> Value {
    sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == rule)
        .unwrap_or_else(|| panic!("no {rule} result"))
        .clone()
}

#[test]
fn the_example_namespace_as_written_gives_the_checked_in_report() {
    let manifests = render::load(&[root().join("examples/goreal")]).expect("load examples");
    let audits = audit::audit(&manifests, jiff::Timestamp::UNIX_EPOCH);
    insta::assert_yaml_snapshot!("examples_as_written", audit::json(&audits));
    // As written, the workloads are hardened by nobody yet: the audit fails on High checks,
    // and passes with the bar above them (no Critical check fails).
    assert!(audit::fails(
        &audits,
        Some(goreal_operator::crd::Severity::High)
    ));
    assert!(!audit::fails(
        &audits,
        Some(goreal_operator::crd::Severity::Critical)
    ));
}

#[test]
fn the_exit_code_follows_fail_on() {
    let examples = root().join("examples/goreal");
    let examples = examples.to_str().unwrap();
    assert_eq!(
        code(&run(&["-f", examples])),
        1,
        "High checks fail as written"
    );
    assert_eq!(code(&run(&["-f", examples, "--fail-on", "critical"])), 0);
    let bad = run(&["-f", examples, "--fail-on", "severe"]);
    assert_eq!(code(&bad), 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a severity"));
}

#[test]
fn without_a_policy_the_built_in_one_audits_each_namespace() {
    let output = run(&[
        "-f",
        fixture("hardened.yaml").to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(
        code(&output),
        0,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = stdout_json(&output);
    assert_eq!(report[0]["namespace"], "shop");
    assert_eq!(report[0]["policy"], audit::DEFAULT_POLICY);
    assert_eq!(report[0]["compliance"]["failed"], 0);
    assert_eq!(report[0]["compliance"]["score"], 100);
    // Manual checklist items are listed, as Skip, never Pass.
    let checks = report[0]["compliance"]["checks"].as_array().unwrap();
    let manual: Vec<&Value> = checks
        .iter()
        .filter(|c| c["id"].as_str().unwrap().starts_with("manual."))
        .collect();
    assert!(!manual.is_empty());
    assert!(manual.iter().all(|c| c["result"] == "Skip"));

    let latest = run(&["-f", fixture("latest.yaml").to_str().unwrap(), "-o", "json"]);
    assert_eq!(code(&latest), 1);
    let report = stdout_json(&latest);
    let pinned = report[0]["compliance"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "pod.image-pinned")
        .unwrap()
        .clone();
    assert_eq!(pinned["result"], "Fail");
    assert_eq!(pinned["objects"][0], "Deployment/cache container redis");
}

#[test]
fn sarif_names_each_rule_and_points_at_the_offending_objects_file_and_line() {
    let path = fixture("latest.yaml");
    let output = run(&["-f", path.to_str().unwrap(), "-o", "sarif"]);
    assert_eq!(code(&output), 1);
    let sarif = stdout_json(&output);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"pod.image-pinned") && rules.contains(&"pod.resource-limits"));
    let result = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "pod.image-pinned")
        .expect("an image-pinned result");
    assert_eq!(result["level"], "warning");
    let location = &result["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], path.to_str().unwrap());
    assert_eq!(location["region"]["startLine"], 1);
    assert!(
        result["message"]["text"]
            .as_str()
            .unwrap()
            .contains("redis:latest")
    );
}

#[test]
fn the_line_of_a_later_document_is_where_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.yaml");
    let hardened = std::fs::read_to_string(fixture("hardened.yaml")).unwrap();
    let latest = std::fs::read_to_string(fixture("latest.yaml")).unwrap();
    std::fs::write(&path, format!("{hardened}---\n{latest}")).unwrap();
    let output = run(&["-f", path.to_str().unwrap(), "-o", "sarif"]);
    let sarif = stdout_json(&output);
    let result = sarif_result(&sarif, "pod.image-pinned");
    let line = hardened.lines().count() + 2;
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        line
    );
}

#[test]
fn unreadable_malformed_and_empty_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: [\n",
    )
    .unwrap();
    let output = run(&["-f", broken.to_str().unwrap()]);
    assert_eq!(code(&output), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.yaml") && stderr.contains("line"),
        "{stderr}"
    );

    let missing = run(&["-f", "no/such/file.yaml"]);
    assert_eq!(code(&missing), 2);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/file.yaml"));

    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing here\n").unwrap();
    let output = run(&["-f", empty.to_str().unwrap()]);
    assert_eq!(code(&output), 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing to audit"));

    // Kinds no check reads are said on stderr, not errors.
    let services = dir.path().join("mixed.yaml");
    std::fs::write(
        &services,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{}",
            std::fs::read_to_string(fixture("hardened.yaml")).unwrap()
        ),
    )
    .unwrap();
    let output = run(&["-f", services.to_str().unwrap()]);
    assert_eq!(code(&output), 0);
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 ConfigMap object(s) not audited"));
}

#[test]
fn widely_used_public_manifests_give_their_checked_in_reports() {
    // ingress-nginx's Helm chart (a web server) rendered with its defaults, and Envoy Gateway's
    // Redis example (a cache), both from their Go modules; see the first line of each file.
    for (name, file) in [
        ("ingress_nginx_chart", "ingress-nginx.yaml"),
        ("envoy_gateway_redis", "envoy-gateway-redis.yaml"),
    ] {
        let path = root().join("tests/fixtures/charts").join(file);
        let manifests = render::load(&[path]).expect("load rendered chart");
        let audits = audit::audit(&manifests, jiff::Timestamp::UNIX_EPOCH);
        insta::assert_yaml_snapshot!(name, audit::json(&audits));
    }
}

#[test]
fn documents_after_comment_only_ones_keep_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("helm.yaml");
    let latest = std::fs::read_to_string(fixture("latest.yaml")).unwrap();
    // Helm output: a comment-only document, then a Source comment before the object.
    std::fs::write(
        &path,
        format!("---\n# Source: empty.yaml\n---\n# Source: cache.yaml\n{latest}"),
    )
    .unwrap();
    let output = run(&["-f", path.to_str().unwrap(), "-o", "sarif"]);
    let sarif = stdout_json(&output);
    let result = sarif_result(&sarif, "pod.image-pinned");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        4
    );
    // Every result has a location, as code-scanning uploads require.
    assert!(
        sarif["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["locations"][0].is_object())
    );
}
