//! Offline `render` over the example namespace: output snapshot, and clear errors for bad input.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use goreal_operator::render::{self, Manifests, RenderError};

fn epoch() -> jiff::Timestamp {
    jiff::Timestamp::UNIX_EPOCH
}

#[test]
fn rendering_the_example_namespace_matches_the_snapshot() {
    let manifests = render::load(&[PathBuf::from("examples/goreal")]).expect("load examples");
    assert_eq!(manifests.policies.len(), 1);
    assert_eq!(manifests.workloads.len(), 4);
    let rendered = render::render(&manifests, epoch()).expect("render");
    assert!(rendered.all_valid);
    insta::assert_snapshot!("example_namespace", rendered.yaml);
}

#[test]
fn rendering_is_deterministic() {
    let manifests = render::load(&[PathBuf::from("examples/goreal")]).expect("load examples");
    let first = render::render(&manifests, epoch()).expect("render").yaml;
    let second = render::render(&manifests, epoch()).expect("render").yaml;
    assert_eq!(first, second);
}

#[test]
fn broken_yaml_is_reported_with_file_and_line() {
    let mut manifests = Manifests::default();
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n   bad: [\n";
    let error = render::parse_into(Path::new("broken.yaml"), text, &mut manifests)
        .expect_err("must fail")
        .to_string();
    assert!(error.starts_with("broken.yaml: "), "{error}");
    assert!(error.contains("line"), "{error}");
}

#[test]
fn an_object_of_the_wrong_shape_names_the_document_and_object() {
    let mut manifests = Manifests::default();
    let text = "kind: Namespace\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: many}\n";
    let error =
        render::parse_into(Path::new("app.yaml"), text, &mut manifests).expect_err("must fail");
    assert!(
        matches!(error, RenderError::Object { index: 2, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("Deployment web"), "{error}");
}

#[test]
fn an_invalid_policy_renders_not_ready_and_no_patches() {
    let mut manifests = Manifests::default();
    let text = "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  podSecurity:\n    writablePaths: [{path: relative}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: n}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n";
    render::parse_into(Path::new("p.yaml"), text, &mut manifests).expect("parse");
    let rendered = render::render(&manifests, epoch()).expect("render");
    assert!(!rendered.all_valid);
    assert!(
        !rendered.yaml.contains("kind: Deployment"),
        "{}",
        rendered.yaml
    );
    assert!(rendered.yaml.contains("InvalidSpec"));
    assert!(rendered.yaml.contains("must be an absolute path"));
}

#[test]
fn no_policy_in_the_input_is_an_error() {
    let mut manifests = Manifests::default();
    render::parse_into(
        Path::new("x.yaml"),
        "kind: Namespace\nmetadata: {name: a}\n",
        &mut manifests,
    )
    .expect("parse");
    assert!(matches!(
        render::render(&manifests, epoch()),
        Err(RenderError::NoPolicy)
    ));
}

#[test]
fn a_symlink_loop_in_a_directory_is_not_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        "examples/goreal/10-policy.yaml",
        dir.path().join("policy.yaml"),
    )
    .expect("copy");
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).expect("symlink");
    let manifests = render::load(&[dir.path().to_path_buf()]).expect("load");
    assert_eq!(manifests.policies.len(), 1);
}
