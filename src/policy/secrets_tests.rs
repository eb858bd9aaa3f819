//! Unit tests of the secrets planner: lifecycle decisions, due times, consumer detection, the
//! restart-marker rule, the Secret content of each write, and the checks.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::*;
use crate::crd::{Charset, CheckResult, GoREALSecurityPolicy};
use crate::model::validate;
use crate::observed::WorkloadResource;

const T0: &str = "2026-01-01T00:00:00Z";

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// A validated policy `p` (uid `u-1`) in namespace `shop` with the given secretRotation body
/// and optional metadata annotations.
fn policy_with(secrets: &str, annotations: &str) -> ValidatedPolicy {
    let body: String = secrets.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
         metadata: {{name: p, namespace: shop, uid: u-1, annotations: {{{annotations}}}}}\n\
         spec:\n  secretRotation:\n{body}"
    );
    let raw: GoREALSecurityPolicy = serde_saphyr::from_str(&yaml).expect("policy YAML");
    validate(&raw).expect("valid policy")
}

const DB: &str = "secrets:\n- name: db\n  interval: 90d\n  keys:\n  - {key: password, length: 24}\n  - {key: user-token, charset: hex}";

fn policy() -> ValidatedPolicy {
    policy_with(DB, "")
}

fn settings(policy: &ValidatedPolicy) -> &SecretSettings {
    policy.secrets.as_ref().expect("secrets section")
}

/// Metadata of the operator's Secret `db` at `version`, rotated at `rotated`.
fn ours(version: u64, rotated: &str) -> SecretMeta {
    SecretMeta {
        name: "db".into(),
        labels: BTreeMap::from([
            (
                names::MANAGED_BY_LABEL.into(),
                names::MANAGED_BY_VALUE.into(),
            ),
            (names::POLICY_LABEL.into(), "p".into()),
            (names::COMPONENT_LABEL.into(), COMPONENT.into()),
        ]),
        annotations: BTreeMap::from([
            (names::SECRET_VERSION_ANNOTATION.into(), version.to_string()),
            (names::ROTATED_AT_ANNOTATION.into(), rotated.into()),
            (
                names::SECRET_KEYS_ANNOTATION.into(),
                "password,user-token".into(),
            ),
        ]),
        uid: Some("s-1".into()),
        resource_version: Some("5".into()),
        created: Some(at(T0)),
    }
}

fn deployment(name: &str, created: &str, pod_spec: serde_json::Value) -> Workload {
    deployment_with_marker(name, created, pod_spec, None)
}

fn deployment_with_marker(
    name: &str,
    created: &str,
    pod_spec: serde_json::Value,
    marker: Option<&str>,
) -> Workload {
    let annotations = marker.map_or(json!({}), |m| json!({ marker_key("db"): m }));
    let object: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": "shop", "creationTimestamp": created },
        "spec": { "selector": { "matchLabels": { "app": name } },
                  "template": { "metadata": { "labels": { "app": name }, "annotations": annotations },
                                "spec": pod_spec } }
    }))
    .expect("deployment");
    object.to_workload().expect("workload")
}

fn env_key(key: &str) -> serde_json::Value {
    json!({ "containers": [{ "name": "app", "image": "i:1", "env": [
        { "name": "X", "valueFrom": { "secretKeyRef": { "name": "db", "key": key } } }
    ] }] })
}

fn observed(secrets: Vec<SecretMeta>, workloads: Vec<Workload>, now: &str) -> Observed {
    Observed {
        secrets,
        workloads,
        now: at(now),
        ..Observed::default()
    }
}

fn only(plan: &SecretsPlan) -> &SecretPlan {
    assert_eq!(plan.secrets.len(), 1);
    &plan.secrets[0]
}

fn plan_for(policy: &ValidatedPolicy, observed: &Observed) -> SecretsPlan {
    plan(
        policy,
        settings(policy),
        observed,
        observed.workloads.clone(),
    )
}

#[test]
fn a_missing_secret_is_created() {
    let policy = policy();
    let plan = plan_for(&policy, &observed(vec![], vec![], T0));
    assert_eq!(only(&plan).action, Some(SecretAction::Create));
    assert_eq!(only(&plan).state, SecretState::Missing);
}

#[test]
fn rotation_falls_due_exactly_at_last_rotation_plus_interval() {
    let policy = policy();
    let rotated = "2026-01-01T00:00:00Z";
    // 90 days after 2026-01-01 is 2026-04-01.
    let before = plan_for(
        &policy,
        &observed(vec![ours(3, rotated)], vec![], "2026-03-31T23:59:59Z"),
    );
    assert_eq!(only(&before).action, None);
    assert_eq!(
        only(&before).next_rotation,
        Some(at("2026-04-01T00:00:00Z"))
    );
    assert_eq!(
        before.next_due(at("2026-03-31T23:59:59Z")),
        Some(at("2026-04-01T00:00:00Z"))
    );
    let due = plan_for(
        &policy,
        &observed(vec![ours(3, rotated)], vec![], "2026-04-01T00:00:00Z"),
    );
    assert_eq!(
        only(&due).action,
        Some(SecretAction::Rotate(RotationCause::Due))
    );
    assert_eq!(due.next_due(at("2026-04-01T00:00:00Z")), None);
}

#[test]
fn due_times_count_leap_days_and_both_spellings_agree() {
    let hours = policy_with(
        "secrets:\n- name: db\n  interval: 2160h\n  keys: [{key: password}]",
        "",
    );
    let days = policy_with(
        "secrets:\n- name: db\n  interval: 90d\n  keys: [{key: password}]",
        "",
    );
    // 2028 is a leap year: 90 days after 2028-01-01 is 2028-03-31, not 2028-04-01.
    let live = vec![ours(1, "2028-01-01T00:00:00Z")];
    let now = "2028-02-01T00:00:00Z";
    let a = plan_for(&hours, &observed(live.clone(), vec![], now));
    let b = plan_for(&days, &observed(live, vec![], now));
    assert_eq!(only(&a).next_rotation, Some(at("2028-03-31T00:00:00Z")));
    assert_eq!(only(&a).next_rotation, only(&b).next_rotation);
}

#[test]
fn an_unreadable_rotation_time_falls_back_to_the_creation_time() {
    let policy = policy();
    let mut live = ours(2, "yesterday");
    live.created = Some(at("2026-01-01T00:00:00Z"));
    let plan = plan_for(
        &policy,
        &observed(vec![live], vec![], "2026-01-02T00:00:00Z"),
    );
    assert_eq!(only(&plan).rotated_at, Some(at("2026-01-01T00:00:00Z")));
}

#[test]
fn each_new_rotate_now_value_rotates_once() {
    let requested = policy_with(DB, "security.goreal.io/rotate-now: r1");
    let now = "2026-01-02T00:00:00Z";
    let fresh = plan_for(&requested, &observed(vec![ours(1, T0)], vec![], now));
    assert_eq!(
        only(&fresh).action,
        Some(SecretAction::Rotate(RotationCause::Requested))
    );
    let mut handled = ours(2, now);
    handled
        .annotations
        .insert(names::ROTATION_REQUEST_ANNOTATION.into(), "r1".into());
    let again = plan_for(&requested, &observed(vec![handled], vec![], now));
    assert_eq!(only(&again).action, None);
}

#[test]
fn a_request_naming_another_secret_rotates_nothing_here() {
    let other = policy_with(DB, "security.goreal.io/rotate-now: api@r1");
    let plan = plan_for(
        &other,
        &observed(vec![ours(1, T0)], vec![], "2026-01-02T00:00:00Z"),
    );
    assert_eq!(only(&plan).action, None);
    let this = policy_with(DB, "security.goreal.io/rotate-now: db@r1");
    let plan = plan_for(
        &this,
        &observed(vec![ours(1, T0)], vec![], "2026-01-02T00:00:00Z"),
    );
    assert_eq!(
        only(&plan).action,
        Some(SecretAction::Rotate(RotationCause::Requested))
    );
}

#[test]
fn a_foreign_secret_is_a_conflict_unless_adopted() {
    let policy = policy();
    let foreign = SecretMeta {
        name: "db".into(),
        ..SecretMeta::default()
    };
    let plan = plan_for(&policy, &observed(vec![foreign.clone()], vec![], T0));
    assert!(matches!(only(&plan).state, SecretState::Conflict(ref why) if why.contains("adopt")));
    assert_eq!(only(&plan).action, None);
    let adopting = policy_with(
        "secrets:\n- name: db\n  adopt: true\n  keys: [{key: password}]",
        "",
    );
    let plan = plan_for(&adopting, &observed(vec![foreign], vec![], T0));
    assert_eq!(only(&plan).action, Some(SecretAction::Adopt));
}

#[test]
fn another_policys_secret_is_never_taken_even_with_adopt() {
    let adopting = policy_with(
        "secrets:\n- name: db\n  adopt: true\n  keys: [{key: password}]",
        "",
    );
    let mut theirs = ours(4, T0);
    theirs.labels.insert(names::POLICY_LABEL.into(), "q".into());
    let plan = plan_for(&adopting, &observed(vec![theirs], vec![], T0));
    assert_eq!(
        only(&plan).state,
        SecretState::Conflict("managed by policy q".into())
    );
    assert_eq!(only(&plan).action, None);
}

#[test]
fn keys_added_to_the_spec_are_generated_without_a_rotation() {
    let policy = policy();
    let mut live = ours(3, T0);
    live.annotations
        .insert(names::SECRET_KEYS_ANNOTATION.into(), "password".into());
    let plan = plan_for(
        &policy,
        &observed(vec![live], vec![], "2026-01-02T00:00:00Z"),
    );
    assert_eq!(
        only(&plan).action,
        Some(SecretAction::AddKeys(vec!["user-token".into()]))
    );
}

#[test]
fn every_reference_form_is_found() {
    let spec: PodSpec = serde_json::from_value(json!({
        "initContainers": [{ "name": "init", "image": "i:1",
            "envFrom": [{ "secretRef": { "name": "db" } }] }],
        "containers": [{ "name": "app", "image": "i:1",
            "env": [{ "name": "P", "valueFrom": { "secretKeyRef": { "name": "db", "key": "password" } } },
                    { "name": "O", "valueFrom": { "secretKeyRef": { "name": "other", "key": "password" } } }] }],
        "ephemeralContainers": [{ "name": "debug", "image": "d:1",
            "env": [{ "name": "T", "valueFrom": { "secretKeyRef": { "name": "db", "key": "debug-token" } } }],
            "envFrom": [{ "secretRef": { "name": "db" } }] }],
        "volumes": [
            { "name": "whole", "secret": { "secretName": "db" } },
            { "name": "one", "secret": { "secretName": "db", "items": [{ "key": "user-token", "path": "t" }] } },
            { "name": "proj", "projected": { "sources": [
                { "secret": { "name": "db", "items": [{ "key": "extra", "path": "e" }] } },
                { "configMap": { "name": "db" } } ] } }
        ]
    }))
    .expect("pod spec");
    let reads = references(&spec, "db");
    assert_eq!(
        reads,
        vec![
            SecretRead::Key("password".into()),
            SecretRead::Whole,
            SecretRead::Key("debug-token".into()),
            SecretRead::Whole,
            SecretRead::Whole,
            SecretRead::Key("user-token".into()),
            SecretRead::Key("extra".into()),
        ]
    );
    assert!(references(&spec, "nothing").is_empty());
}

#[test]
fn only_readers_of_rotated_keys_restart_and_only_after_a_rotation() {
    let policy = policy();
    let now = "2026-02-01T00:00:00Z";
    let reader = deployment("reader", T0, env_key("password"));
    let bystander = deployment("bystander", T0, env_key("hand-added"));
    let whole = deployment(
        "whole",
        T0,
        json!({ "containers": [{ "name": "app", "image": "i:1",
            "envFrom": [{ "secretRef": { "name": "db" } }] }] }),
    );
    let workloads = vec![reader, bystander, whole];
    let first = plan_for(
        &policy,
        &observed(vec![ours(1, T0)], workloads.clone(), now),
    );
    assert!(first.restarts.is_empty(), "version 1 restarts nothing");
    assert_eq!(
        only(&first).restarted,
        ["Deployment/reader", "Deployment/whole"]
    );
    let rotated = plan_for(
        &policy,
        &observed(vec![ours(2, "2026-01-15T00:00:00Z")], workloads, now),
    );
    let targets: Vec<String> = rotated
        .restarts
        .iter()
        .map(RestartPatch::reference)
        .collect();
    assert_eq!(targets, ["Deployment/reader", "Deployment/whole"]);
    assert_eq!(
        only(&rotated).pending,
        ["Deployment/reader", "Deployment/whole"]
    );
    assert_eq!(
        rotated.restarts[0]
            .body
            .pointer("/spec/template/metadata/annotations")
            .expect("markers"),
        &json!({ marker_key("db"): "2" })
    );
}

#[test]
fn the_marker_depends_only_on_the_version() {
    let policy = policy();
    let rotated = ours(2, "2026-01-15T00:00:00Z");
    let marked = deployment_with_marker("reader", T0, env_key("password"), Some("2"));
    // Any time later, any number of re-plans: nothing to restart.
    for now in ["2026-01-16T00:00:00Z", "2026-03-01T00:00:00Z"] {
        let plan = plan_for(
            &policy,
            &observed(vec![rotated.clone()], vec![marked.clone()], now),
        );
        assert!(plan.restarts.is_empty());
        assert_eq!(only(&plan).restarted, ["Deployment/reader"]);
    }
    let behind = deployment_with_marker("reader", T0, env_key("password"), Some("1"));
    let plan = plan_for(
        &policy,
        &observed(
            vec![ours(3, "2026-02-15T00:00:00Z")],
            vec![behind],
            "2026-02-16T00:00:00Z",
        ),
    );
    assert_eq!(plan.restarts.len(), 1);
}

#[test]
fn a_marker_never_goes_back_when_the_secret_cache_lags() {
    let two = policy_with(
        "secrets:\n- name: db\n  keys: [{key: password}]\n- name: api\n  keys: [{key: token}]",
        "",
    );
    let spec = json!({ "containers": [{ "name": "app", "image": "i:1", "envFrom": [
        { "secretRef": { "name": "db" } }, { "secretRef": { "name": "api" } } ] }] });
    // The workload already carries db version 3; the cache still shows db at 2 and api rotated.
    let reader = deployment_with_marker("reader", T0, spec, Some("3"));
    let mut api = ours(2, "2026-01-15T00:00:00Z");
    api.name = "api".into();
    api.annotations
        .insert(names::SECRET_KEYS_ANNOTATION.into(), "token".into());
    let plan = plan_for(
        &two,
        &observed(
            vec![ours(2, "2026-01-15T00:00:00Z"), api],
            vec![reader],
            "2026-01-16T00:00:00Z",
        ),
    );
    let db = plan.secrets.iter().find(|s| s.name == "db").expect("db");
    assert_eq!(db.restarted, ["Deployment/reader"]);
    assert_eq!(plan.restarts.len(), 1, "api is pending");
    assert_eq!(
        plan.restarts[0]
            .body
            .pointer("/spec/template/metadata/annotations"),
        Some(&json!({ marker_key("db"): "3", marker_key("api"): "2" }))
    );
}

#[test]
fn a_workload_created_after_the_rotation_already_runs_it() {
    let policy = policy();
    let newer = deployment("reader", "2026-01-20T00:00:00Z", env_key("password"));
    let plan = plan_for(
        &policy,
        &observed(
            vec![ours(2, "2026-01-15T00:00:00Z")],
            vec![newer],
            "2026-01-21T00:00:00Z",
        ),
    );
    assert!(plan.restarts.is_empty());
    assert_eq!(only(&plan).restarted, ["Deployment/reader"]);
}

#[test]
fn a_restart_carries_along_markers_it_already_has() {
    let two = policy_with(
        "secrets:\n- name: db\n  keys: [{key: password}]\n- name: api\n  keys: [{key: token}]",
        "",
    );
    let mut api = ours(5, "2026-01-15T00:00:00Z");
    api.name = "api".into();
    api.annotations
        .insert(names::SECRET_KEYS_ANNOTATION.into(), "token".into());
    let spec = json!({ "containers": [{ "name": "app", "image": "i:1", "envFrom": [
        { "secretRef": { "name": "db" } }, { "secretRef": { "name": "api" } } ] }] });
    let mut reader = deployment_with_marker("reader", T0, spec, Some("1"));
    reader
        .template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
        .expect("annotations")
        .insert(marker_key("api"), "5".into());
    let plan = plan_for(
        &two,
        &observed(
            vec![ours(2, "2026-01-15T00:00:00Z"), api],
            vec![reader],
            "2026-01-16T00:00:00Z",
        ),
    );
    assert_eq!(plan.restarts.len(), 1);
    // Dropping the api marker from the apply would remove it and roll the workload again.
    assert_eq!(
        plan.restarts[0]
            .body
            .pointer("/spec/template/metadata/annotations"),
        Some(&json!({ marker_key("db"): "2", marker_key("api"): "5" }))
    );
}

#[test]
fn strategies_none_and_selector() {
    let none = policy_with(
        "secrets:\n- name: db\n  keys: [{key: password}]\n  restart: {strategy: None}",
        "",
    );
    let selector = policy_with(
        "secrets:\n- name: db\n  keys: [{key: password}]\n  restart: {strategy: Selector, selector: {matchLabels: {app: other}}}",
        "",
    );
    let reader = deployment("reader", T0, env_key("password"));
    let other = deployment(
        "other",
        T0,
        json!({ "containers": [{ "name": "a", "image": "i:1" }] }),
    );
    let world = observed(
        vec![ours(2, "2026-01-15T00:00:00Z")],
        vec![reader, other],
        "2026-01-16T00:00:00Z",
    );
    assert!(plan_for(&none, &world).restarts.is_empty());
    let by_label = plan_for(&selector, &world);
    let targets: Vec<String> = by_label
        .restarts
        .iter()
        .map(RestartPatch::reference)
        .collect();
    assert_eq!(targets, ["Deployment/other"]);
}

#[test]
fn consumers_controlled_by_another_operator_are_reported_not_restarted() {
    let policy = policy();
    let mut rollout_owned = deployment("reader", T0, env_key("password"));
    rollout_owned.owner_references = vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Rollout".into(),
            name: "r".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    ];
    let plan = plan_for(
        &policy,
        &observed(
            vec![ours(2, "2026-01-15T00:00:00Z")],
            vec![rollout_owned],
            "2026-01-16T00:00:00Z",
        ),
    );
    assert!(plan.restarts.is_empty());
    assert_eq!(only(&plan).unmanaged, ["Deployment/reader"]);
}

#[test]
fn audit_mode_plans_no_restart() {
    let audit = {
        let mut p = policy();
        p.mode = crate::crd::Mode::Audit;
        p
    };
    let reader = deployment("reader", T0, env_key("password"));
    let plan = plan_for(
        &audit,
        &observed(
            vec![ours(2, "2026-01-15T00:00:00Z")],
            vec![reader],
            "2026-01-16T00:00:00Z",
        ),
    );
    assert!(plan.restarts.is_empty());
    assert_eq!(only(&plan).pending, ["Deployment/reader"]);
}

/// Values of the key's length, from the real generator (hex, so they never equal a fixture).
fn hex_values() -> impl FnMut(&KeySpec) -> Result<SecretValue, RandomSourceError> {
    |key: &KeySpec| crate::secret_value::generate(key.length, Charset::Hex)
}

fn live_secret(data: &[(&str, &str)], version: &str) -> Secret {
    serde_json::from_value(json!({
        "metadata": {
            "name": "db", "namespace": "shop", "resourceVersion": "42",
            "labels": { "team": "data" },
            "annotations": { names::SECRET_VERSION_ANNOTATION: version, "note": "keep" },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "c-1", "controller": true }]
        },
        "type": "kubernetes.io/basic-auth",
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(base64(v)))).collect::<serde_json::Map<_, _>>(),
    }))
    .expect("secret")
}

fn base64(text: &str) -> String {
    // Tiny encoder for test fixtures.
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get(key).map(|b| b.0.clone())
}

#[test]
fn a_rotation_keeps_previous_values_and_touches_no_other_key() {
    let policy = policy();
    let live = live_secret(
        &[
            ("password", "old-pass"),
            ("user-token", "old-token"),
            ("hand", "mine"),
        ],
        "3",
    );
    let next = secret_content(
        &policy,
        &settings(&policy).secrets[0],
        Some(&live),
        &SecretAction::Rotate(RotationCause::Due),
        at("2026-05-01T00:00:00Z"),
        &mut hex_values(),
    )
    .expect("content");
    assert_eq!(
        value(&next, "password.previous").as_deref(),
        Some(&b"old-pass"[..])
    );
    assert_eq!(
        value(&next, "user-token.previous").as_deref(),
        Some(&b"old-token"[..])
    );
    assert_eq!(value(&next, "hand").as_deref(), Some(&b"mine"[..]));
    assert_eq!(value(&next, "password").map(|v| v.len()), Some(24));
    assert_ne!(value(&next, "password").as_deref(), Some(&b"old-pass"[..]));
    let annotations = next.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(annotations[names::SECRET_VERSION_ANNOTATION], "4");
    assert_eq!(
        annotations[names::ROTATED_AT_ANNOTATION],
        "2026-05-01T00:00:00Z"
    );
    assert_eq!(annotations["note"], "keep");
    // Guarded by the version it was read at; type, labels and other owners kept.
    assert_eq!(next.metadata.resource_version.as_deref(), Some("42"));
    assert_eq!(next.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(
        next.metadata.labels.as_ref().expect("labels")["team"],
        "data"
    );
    let owners = next.metadata.owner_references.as_ref().expect("owners");
    assert_eq!(owners.len(), 2);
    assert_eq!(
        owners[1].controller,
        Some(false),
        "a second controller is never added"
    );
}

#[test]
fn without_keep_previous_a_stale_previous_value_goes() {
    let policy = policy_with(
        "secrets:\n- name: db\n  keepPrevious: false\n  keys: [{key: password}]",
        "",
    );
    let live = live_secret(&[("password", "b"), ("password.previous", "a")], "2");
    let next = secret_content(
        &policy,
        &settings(&policy).secrets[0],
        Some(&live),
        &SecretAction::Rotate(RotationCause::Requested),
        at(T0),
        &mut hex_values(),
    )
    .expect("content");
    assert_eq!(value(&next, "password.previous"), None);
    assert_eq!(value(&next, "password").map(|v| v.len()), Some(32));
}

#[test]
fn adoption_keeps_values_and_fills_missing_keys() {
    let policy = policy_with(
        "secrets:\n- name: db\n  adopt: true\n  keys: [{key: password}, {key: api-key, length: 40}]",
        "security.goreal.io/rotate-now: r7",
    );
    let live = live_secret(&[("password", "theirs")], "");
    let next = secret_content(
        &policy,
        &settings(&policy).secrets[0],
        Some(&live),
        &SecretAction::Adopt,
        at(T0),
        &mut hex_values(),
    )
    .expect("content");
    assert_eq!(value(&next, "password").as_deref(), Some(&b"theirs"[..]));
    assert_eq!(value(&next, "api-key").map(|v| v.len()), Some(40));
    let annotations = next.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(annotations[names::SECRET_VERSION_ANNOTATION], "1");
    assert_eq!(annotations[names::ROTATION_REQUEST_ANNOTATION], "r7");
    assert_eq!(
        annotations[names::SECRET_KEYS_ANNOTATION],
        "password,api-key"
    );
    let labels = next.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels[names::COMPONENT_LABEL], COMPONENT);
}

#[test]
fn a_new_secret_is_owned_labelled_and_of_exact_lengths() {
    let policy = policy();
    let next = secret_content(
        &policy,
        &settings(&policy).secrets[0],
        None,
        &SecretAction::Create,
        at(T0),
        &mut |key: &KeySpec| crate::secret_value::generate(key.length, key.charset),
    )
    .expect("content");
    assert_eq!(next.type_.as_deref(), Some("Opaque"));
    assert_eq!(value(&next, "password").map(|v| v.len()), Some(24));
    let token = value(&next, "user-token").expect("token");
    assert_eq!(token.len(), 32);
    assert!(token.iter().all(u8::is_ascii_hexdigit));
    let owner = &next.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));
    assert_eq!(next.metadata.resource_version, None);
}

#[test]
fn a_failing_random_source_writes_nothing() {
    let policy = policy();
    let result = secret_content(
        &policy,
        &settings(&policy).secrets[0],
        None,
        &SecretAction::Create,
        at(T0),
        &mut |_: &KeySpec| Err(RandomSourceError),
    );
    assert!(result.is_err());
}

#[test]
fn status_lists_versions_and_consumers_but_no_values() {
    let policy = policy();
    let reader = deployment("reader", T0, env_key("password"));
    let plan = plan_for(
        &policy,
        &observed(
            vec![ours(2, "2026-01-15T00:00:00Z")],
            vec![reader],
            "2026-01-16T00:00:00Z",
        ),
    );
    let status = status(&plan);
    assert_eq!(status[0].state, "Managed");
    assert_eq!(status[0].version, Some(2));
    assert_eq!(status[0].pending, ["Deployment/reader"]);
    assert_eq!(status[0].pending_total, 1);
    assert_eq!(
        status[0].next_rotation_time.as_ref().map(|t| t.0),
        Some(at("2026-04-15T00:00:00Z"))
    );
}

fn result_of(evaluations: &[Evaluation], check: &str) -> Vec<String> {
    evaluations
        .iter()
        .filter(|e| e.check == check)
        .flat_map(|e| {
            e.violations
                .iter()
                .map(|v| format!("{}: {}", v.object, v.detail))
        })
        .collect()
}

#[test]
fn overdue_missing_and_conflicting_secrets_fail_the_rotation_check() {
    let policy = policy();
    let overdue = plan_for(
        &policy,
        &observed(vec![ours(2, T0)], vec![], "2026-06-01T00:00:00Z"),
    );
    let found = result_of(&evaluate(&overdue), compliance::SECRETS_ROTATED);
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("overdue"), "{found:?}");
    let fresh = plan_for(
        &policy,
        &observed(vec![ours(2, T0)], vec![], "2026-01-02T00:00:00Z"),
    );
    assert!(result_of(&evaluate(&fresh), compliance::SECRETS_ROTATED).is_empty());
    let missing = plan_for(&policy, &observed(vec![], vec![], T0));
    assert_eq!(
        result_of(&evaluate(&missing), compliance::SECRETS_ROTATED),
        ["Secret/db: does not exist"]
    );
}

#[test]
fn literal_secret_like_env_values_fail_without_quoting_them() {
    let policy = policy();
    let leaky = deployment(
        "leaky",
        T0,
        json!({ "containers": [{ "name": "app", "image": "i:1", "env": [
            { "name": "DB_PASSWORD", "value": "hunter2" },
            { "name": "api_key", "value": "k-123" },
            { "name": "LOG_LEVEL", "value": "debug" },
            { "name": "SESSION_TOKEN", "valueFrom": { "secretKeyRef": { "name": "db", "key": "t" } } }
        ] }] }),
    );
    let plan = plan_for(&policy, &observed(vec![ours(1, T0)], vec![leaky], T0));
    let evaluations = evaluate(&plan);
    let found = result_of(&evaluations, compliance::SECRETS_NOT_LITERAL);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|f| !f.contains("hunter2") && !f.contains("k-123"))
    );
    let report = crate::compliance::report(&[crate::compliance::Capability::Secrets], &evaluations);
    let check = report
        .checks
        .iter()
        .find(|c| c.id == compliance::SECRETS_NOT_LITERAL)
        .expect("check");
    assert_eq!(check.result, CheckResult::Fail);
}

#[test]
fn secret_files_wider_than_0440_fail_and_the_default_mode_counts() {
    let policy = policy();
    let volumes = |volumes: serde_json::Value| json!({ "containers": [{ "name": "app", "image": "i:1" }], "volumes": volumes });
    let cases = [
        (
            json!([{ "name": "v", "secret": { "secretName": "db" } }]),
            1,
        ),
        (
            json!([{ "name": "v", "secret": { "secretName": "db", "defaultMode": 0o400 } }]),
            0,
        ),
        (
            json!([{ "name": "v", "secret": { "secretName": "db", "defaultMode": 0o440 } }]),
            0,
        ),
        (
            json!([{ "name": "v", "secret": { "secretName": "db", "defaultMode": 0o600 } }]),
            1,
        ),
        (
            json!([{ "name": "v", "secret": { "secretName": "db", "defaultMode": 0o400,
                "items": [{ "key": "k", "path": "k", "mode": 0o444 }] } }]),
            1,
        ),
        (
            json!([{ "name": "p", "projected": { "sources": [{ "secret": { "name": "db" } }] } }]),
            1,
        ),
        (
            json!([{ "name": "p", "projected": { "defaultMode": 0o440,
                "sources": [{ "secret": { "name": "db" } }] } }]),
            0,
        ),
        (
            json!([{ "name": "p", "projected": { "sources": [{ "configMap": { "name": "c" } }] } }]),
            0,
        ),
    ];
    for (i, (spec, expected)) in cases.into_iter().enumerate() {
        let workload = deployment("files", T0, volumes(spec));
        let plan = plan_for(&policy, &observed(vec![ours(1, T0)], vec![workload], T0));
        let found = result_of(&evaluate(&plan), compliance::SECRET_FILE_MODE);
        assert_eq!(found.len(), expected, "case {i}: {found:?}");
    }
}

#[test]
fn workload_checks_skip_without_selected_workloads() {
    let policy = policy();
    let plan = plan_for(&policy, &observed(vec![ours(1, T0)], vec![], T0));
    let evaluations = evaluate(&plan);
    let literal = evaluations
        .iter()
        .find(|e| e.check == compliance::SECRETS_NOT_LITERAL)
        .expect("evaluation");
    assert!(!literal.applicable);
}
