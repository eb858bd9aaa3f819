//! Secret rotation against a real kube-apiserver: generated Secrets with exact lengths and
//! charsets, owned by the policy; forced rotations keeping previous values and never touching
//! keys the spec does not name; restart markers only on the workloads that read a rotated key;
//! no writes from a restarted operator; an interrupted rotation finished by the next operator
//! without rotating twice; foreign Secrets left alone unless adopted; and no generated value in
//! logs, events, status or metrics.
#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::unwrap_in_result
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use common::{
    Operator, condition, condition_message, create_policy, setup, wait_for, wait_status, wait_until,
};
use goreal_operator::crd::{GoREALSecurityPolicy, GoREALSecurityPolicyStatus, SecretStatus};
use goreal_operator::rotate::request_rotation;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Image of every test workload (no kubelet runs: pods never start).
const IMAGE: &str = "registry.example/app:1.0";
/// Pod-template annotation prefix of the restart markers.
const MARKER_PREFIX: &str = "secrets.security.goreal.io/";
const VERSION: &str = "security.goreal.io/secret-version";
const ROTATED_AT: &str = "security.goreal.io/rotated-at";
const GENERATED_KEYS: &str = "security.goreal.io/generated-keys";

// ---------------------------------------------------------------------------------------------
// Building objects

/// A policy with only a `secretRotation` section (`secrets` is its list).
fn policy(name: &str, secrets: Value) -> GoREALSecurityPolicy {
    serde_json::from_value(json!({
        "apiVersion": "security.goreal.io/v1alpha1",
        "kind": "GoREALSecurityPolicy",
        "metadata": { "name": name },
        "spec": { "secretRotation": { "secrets": secrets } },
    }))
    .expect("policy")
}

/// An application container with the given extra fields (env, envFrom, volumeMounts).
fn container(extra: Value) -> Value {
    let mut container = json!({ "name": "app", "image": IMAGE });
    if let (Some(container), Some(extra)) = (container.as_object_mut(), extra.as_object()) {
        container.extend(extra.clone());
    }
    container
}

/// A Deployment running `container` with `volumes`.
fn deployment(name: &str, container: Value, volumes: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [container], "volumes": volumes },
            },
        },
    }))
    .expect("deployment")
}

/// A Deployment reading `key` of Secret `secret` into an environment variable.
fn reads_key(name: &str, secret: &str, key: &str) -> Deployment {
    deployment(
        name,
        container(json!({ "env": [{
            "name": "APP_SECRET",
            "valueFrom": { "secretKeyRef": { "name": secret, "key": key } },
        }] })),
        json!([]),
    )
}

/// A Deployment reading every key of Secret `secret` through `envFrom`.
fn reads_env_from(name: &str, secret: &str) -> Deployment {
    deployment(
        name,
        container(json!({ "envFrom": [{ "secretRef": { "name": secret } }] })),
        json!([]),
    )
}

async fn create_deployment(client: &Client, namespace: &str, deployment: &Deployment) {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), deployment)
        .await
        .expect("create deployment");
}

// ---------------------------------------------------------------------------------------------
// Reading state

fn secrets_api(client: &Client, namespace: &str) -> Api<Secret> {
    Api::namespaced(client.clone(), namespace)
}

async fn get_secret(client: &Client, namespace: &str, name: &str) -> Secret {
    secrets_api(client, namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get Secret {name}: {e}"))
}

/// Waits until the Secret exists with content version `version`.
async fn wait_secret_version(client: &Client, namespace: &str, name: &str, version: u64) -> Secret {
    let api = secrets_api(client, namespace);
    let want = version.to_string();
    wait_for(
        &format!("Secret {name} at version {version}"),
        || async { api.get_opt(name).await.ok().flatten() },
        |secret: &Secret| {
            (annotation(secret, VERSION) == Some(want.as_str())).then(|| secret.clone())
        },
    )
    .await
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret.annotations().get(key).map(String::as_str)
}

/// The Secret's data as plain bytes.
fn data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

fn value<'a>(data: &'a BTreeMap<String, Vec<u8>>, key: &str) -> &'a [u8] {
    data.get(key)
        .unwrap_or_else(|| panic!("no key {key} in {:?}", data.keys().collect::<Vec<_>>()))
}

/// Whether every byte of `value` belongs to the charset, by its spec name.
fn in_charset(value: &[u8], charset: &str) -> bool {
    value.iter().all(|&b| match charset {
        "alphanumeric" => b.is_ascii_alphanumeric(),
        "base64" => b.is_ascii_alphanumeric() || b == b'+' || b == b'/',
        "hex" => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        "ascii-printable" => (b'!'..=b'~').contains(&b),
        other => panic!("unknown charset {other}"),
    })
}

/// Asserts each `(key, length, charset)` of the Secret.
fn assert_generated(data: &BTreeMap<String, Vec<u8>>, keys: &[(&str, usize, &str)]) {
    for (key, length, charset) in keys {
        let value = value(data, key);
        assert_eq!(value.len(), *length, "length of {key}");
        assert!(in_charset(value, charset), "{key} is not all {charset}");
    }
}

/// The workload as JSON (Deployment or CronJob).
async fn workload_json(client: &Client, namespace: &str, kind: &str, name: &str) -> Value {
    let object = match kind {
        "Deployment" => serde_json::to_value(
            Api::<Deployment>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .expect("get deployment"),
        ),
        "CronJob" => serde_json::to_value(
            Api::<CronJob>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .expect("get cron job"),
        ),
        other => panic!("no workload kind {other}"),
    };
    object.expect("workload json")
}

fn template_annotations(workload: &Value) -> &Value {
    let pointer = if workload["kind"] == "CronJob" {
        "/spec/jobTemplate/spec/template/metadata/annotations"
    } else {
        "/spec/template/metadata/annotations"
    };
    workload.pointer(pointer).unwrap_or(&Value::Null)
}

/// The restart marker of `secret` on a workload's pod template.
async fn marker(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
    secret: &str,
) -> Option<String> {
    let workload = workload_json(client, namespace, kind, name).await;
    template_annotations(&workload)
        .get(format!("{MARKER_PREFIX}{secret}"))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Every restart marker on a workload's pod template.
async fn markers(client: &Client, namespace: &str, kind: &str, name: &str) -> Vec<String> {
    let workload = workload_json(client, namespace, kind, name).await;
    template_annotations(&workload)
        .as_object()
        .map(|a| {
            a.keys()
                .filter(|k| k.starts_with(MARKER_PREFIX))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_marker(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
    secret: &str,
    version: &str,
) {
    wait_until(
        &format!("{kind}/{name} marked with {secret} version {version}"),
        || async {
            marker(client, namespace, kind, name, secret)
                .await
                .as_deref()
                == Some(version)
        },
    )
    .await;
}

async fn resource_version(client: &Client, namespace: &str, kind: &str, name: &str) -> String {
    let workload = workload_json(client, namespace, kind, name).await;
    workload["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string()
}

fn secret_status<'a>(status: &'a GoREALSecurityPolicyStatus, name: &str) -> &'a SecretStatus {
    status
        .secrets
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no status of Secret {name} in {:?}", status.secrets))
}

/// Whether the status shows Secret `name` managed at `version` with no consumer pending.
fn settled(status: &GoREALSecurityPolicyStatus, name: &str, version: i64) -> bool {
    status.secrets.iter().any(|s| {
        s.name == name && s.state == "Managed" && s.version == Some(version) && s.pending_total == 0
    })
}

fn sorted(items: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = items.iter().cloned().collect();
    set.into_iter().collect()
}

/// The value of one sample of `name` whose labels include every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.split_once("} "))
        .find(|(set, _)| {
            labels
                .iter()
                .all(|(k, v)| set.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.trim().parse().expect("metric value"))
}

/// The resource a logged request (`METHOD /api[s]/.../namespaces/NS/RESOURCE[/NAME]`) addresses.
fn resource_of(request: &str) -> Option<&str> {
    let mut segments = request.split('/').skip_while(|s| *s != "namespaces");
    segments.nth(2)
}

/// Requests (from the operator's log) that wrote to Secrets or workloads.
fn writes_to_secrets_or_workloads(writes: &[String]) -> Vec<String> {
    writes
        .iter()
        .filter(|w| {
            resource_of(w).is_some_and(|r| {
                [
                    "secrets",
                    "deployments",
                    "cronjobs",
                    "statefulsets",
                    "daemonsets",
                ]
                .contains(&r)
            })
        })
        .cloned()
        .collect()
}

/// Every event of the namespace (events.k8s.io/v1) as JSON.
async fn events_json(client: &Client, namespace: &str) -> Vec<Value> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .iter()
        .map(|e| serde_json::to_value(e).expect("event json"))
        .collect()
}

async fn wait_event(client: &Client, namespace: &str, reason: &str, note_part: &str) -> Value {
    wait_for(
        &format!("a {reason} event mentioning {note_part}"),
        || async { Some(events_json(client, namespace).await) },
        |events: &Vec<Value>| {
            events
                .iter()
                .find(|e| {
                    e["reason"] == reason
                        && e["note"].as_str().is_some_and(|n| n.contains(note_part))
                })
                .cloned()
        },
    )
    .await
}

/// Rotates via the rotate-now annotation, as `goreal-operator rotate` does.
async fn rotate(client: &Client, namespace: &str, policy: &str, secret: Option<&str>) -> String {
    request_rotation(client, namespace, policy, secret, jiff::Timestamp::now())
        .await
        .expect("request rotation")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_missing_secret_is_generated_with_exact_lengths_and_charsets_and_owned() {
    let (client, ns) = setup("secrets-create").await;
    let operator = Operator::start(&ns).await;
    let keys = [
        ("password", 32, "alphanumeric"),
        ("api-token", 64, "base64"),
        ("hmac-key", 16, "hex"),
        ("passphrase", 4096, "ascii-printable"),
    ];
    create_policy(
        &client,
        &ns,
        &policy(
            "gen",
            json!([{
                "name": "app-creds",
                "interval": "1d12h",
                "keys": [
                    { "key": "password" },
                    { "key": "api-token", "length": 64, "charset": "base64" },
                    { "key": "hmac-key", "length": 16, "charset": "hex" },
                    { "key": "passphrase", "length": 4096, "charset": "ascii-printable" },
                ],
            }]),
        ),
    )
    .await;
    let status = wait_status(&client, &ns, "gen", "Secret managed at version 1", |s| {
        settled(s, "app-creds", 1)
    })
    .await;
    assert_eq!(condition(&status, "Ready"), Some(("True", "Reconciled")));
    let entry = secret_status(&status, "app-creds");
    assert_eq!(entry.state, "Managed");
    assert_eq!(entry.version, Some(1));
    assert!(entry.message.is_empty(), "{}", entry.message);
    assert!(
        status
            .resources
            .iter()
            .any(|r| r.kind == "Secret" && r.name == "app-creds" && r.api_version == "v1"),
        "{:?}",
        status.resources
    );

    let secret = get_secret(&client, &ns, "app-creds").await;
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let labels = secret.labels();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "goreal-operator");
    assert_eq!(labels["security.goreal.io/policy"], "gen");
    assert_eq!(labels["security.goreal.io/component"], "secrets");
    assert_eq!(annotation(&secret, VERSION), Some("1"));
    assert_eq!(
        annotation(&secret, GENERATED_KEYS),
        Some("password,api-token,hmac-key,passphrase")
    );
    let rotated_at: jiff::Timestamp = annotation(&secret, ROTATED_AT)
        .expect("rotated-at")
        .parse()
        .expect("rotated-at is RFC 3339");
    let created = secret.creation_timestamp().expect("created").0;
    assert!(
        rotated_at.duration_since(created).abs() <= jiff::SignedDuration::from_secs(5),
        "rotated-at {rotated_at} vs created {created}"
    );
    let policy_uid = Api::<GoREALSecurityPolicy>::namespaced(client.clone(), &ns)
        .get("gen")
        .await
        .expect("policy")
        .uid();
    let owners = secret.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].kind, "GoREALSecurityPolicy");
    assert_eq!(owners[0].api_version, "security.goreal.io/v1alpha1");
    assert_eq!(owners[0].name, "gen");
    assert_eq!(Some(&owners[0].uid), policy_uid.as_ref());
    assert_eq!(owners[0].controller, Some(true));

    let data = data(&secret);
    assert_eq!(
        data.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        keys.iter().map(|k| k.0).collect::<BTreeSet<_>>(),
        "exactly the spec's keys, no .previous yet"
    );
    assert_generated(&data, &keys);
    // 4096 printable characters drawn uniformly use most of the alphabet; a constant or a
    // narrowed alphabet would not.
    let distinct: BTreeSet<u8> = value(&data, "passphrase").iter().copied().collect();
    assert!(
        distinct.len() > 80,
        "{} distinct characters",
        distinct.len()
    );
    assert_ne!(value(&data, "password"), &value(&data, "api-token")[..32]);

    // Status times: last rotation as annotated, the next one an interval (36h) later.
    let last = entry
        .last_rotation_time
        .as_ref()
        .expect("lastRotationTime")
        .0;
    let next = entry
        .next_rotation_time
        .as_ref()
        .expect("nextRotationTime")
        .0;
    assert_eq!(last, rotated_at);
    assert_eq!(
        next.duration_since(last),
        jiff::SignedDuration::from_hours(36)
    );
    let metrics = operator.metrics.encode();
    let labels = [
        ("namespace", ns.as_str()),
        ("policy", "gen"),
        ("secret", "app-creds"),
    ];
    assert_eq!(
        metric(
            &metrics,
            "goreal_secret_next_rotation_timestamp_seconds",
            &labels
        ),
        Some(next.as_second() as f64),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "goreal_secret_rotations_total", &labels),
        None,
        "a creation is not a rotation"
    );
    wait_event(&client, &ns, "SecretCreated", "app-creds").await;
}

#[tokio::test]
async fn a_forced_rotation_keeps_previous_values_and_never_touches_other_keys() {
    let (client, ns) = setup("secrets-rotate").await;
    let operator = Operator::start(&ns).await;
    create_policy(
        &client,
        &ns,
        &policy(
            "rot",
            json!([
                {
                    "name": "db",
                    "keys": [
                        { "key": "password" },
                        { "key": "user-token", "length": 24, "charset": "hex" },
                    ],
                },
                { "name": "api", "keepPrevious": false, "keys": [{ "key": "key" }] },
            ]),
        ),
    )
    .await;
    wait_status(&client, &ns, "rot", "both Secrets at version 1", |s| {
        settled(s, "db", 1) && settled(s, "api", 1)
    })
    .await;

    // A key added by hand, with bytes that are not even UTF-8.
    let hand_made = vec![0u8, 255, 10, b'x', 0x80, b'"'];
    secrets_api(&client, &ns)
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "owner-note": ByteString(hand_made.clone()) } })),
        )
        .await
        .expect("add a key by hand");
    let db_v1 = data(&get_secret(&client, &ns, "db").await);
    let api_v1 = data(&get_secret(&client, &ns, "api").await);
    assert_eq!(value(&db_v1, "owner-note"), hand_made.as_slice());

    rotate(&client, &ns, "rot", None).await;
    let db_v2 = data(&wait_secret_version(&client, &ns, "db", 2).await);
    let api_v2 = data(&wait_secret_version(&client, &ns, "api", 2).await);
    assert_generated(
        &db_v2,
        &[("password", 32, "alphanumeric"), ("user-token", 24, "hex")],
    );
    for key in ["password", "user-token"] {
        assert_ne!(value(&db_v2, key), value(&db_v1, key), "{key} rotated");
        assert_eq!(
            value(&db_v2, &format!("{key}.previous")),
            value(&db_v1, key),
            "{key}.previous holds the old value"
        );
    }
    assert_eq!(
        value(&db_v2, "owner-note"),
        hand_made.as_slice(),
        "a key the spec does not name is byte-for-byte unchanged"
    );
    assert_eq!(db_v2.len(), 5, "{:?}", db_v2.keys().collect::<Vec<_>>());
    // keepPrevious: false keeps no previous value.
    assert_ne!(value(&api_v2, "key"), value(&api_v1, "key"));
    assert_eq!(
        api_v2.keys().map(String::as_str).collect::<Vec<_>>(),
        ["key"],
        "no key.previous without keepPrevious"
    );
    let status = wait_status(&client, &ns, "rot", "both Secrets at version 2", |s| {
        settled(s, "db", 2) && settled(s, "api", 2)
    })
    .await;
    assert!(
        secret_status(&status, "db")
            .last_rotation_time
            .as_ref()
            .expect("time")
            .0
            >= jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)
    );

    // NAME@TOKEN rotates only that Secret.
    let api_before = get_secret(&client, &ns, "api").await;
    rotate(&client, &ns, "rot", Some("db")).await;
    let db_v3 = data(&wait_secret_version(&client, &ns, "db", 3).await);
    assert_ne!(value(&db_v3, "password"), value(&db_v2, "password"));
    assert_eq!(
        value(&db_v3, "password.previous"),
        value(&db_v2, "password"),
        "previous is the value just replaced, not an older one"
    );
    assert_eq!(value(&db_v3, "owner-note"), hand_made.as_slice());
    wait_status(&client, &ns, "rot", "db at version 3", |s| {
        settled(s, "db", 3) && settled(s, "api", 2)
    })
    .await;
    operator.reconcile_all_and_wait().await;
    let api_after = get_secret(&client, &ns, "api").await;
    assert_eq!(api_after.resource_version(), api_before.resource_version());
    assert_eq!(data(&api_after), api_v2);

    let metrics = operator.metrics.encode();
    let rotations = |secret: &str| {
        metric(
            &metrics,
            "goreal_secret_rotations_total",
            &[
                ("namespace", ns.as_str()),
                ("policy", "rot"),
                ("secret", secret),
                ("cause", "requested"),
            ],
        )
    };
    assert_eq!(rotations("db"), Some(2.0), "{metrics}");
    assert_eq!(rotations("api"), Some(1.0), "{metrics}");
}

/// The consumers of Secret `app-creds` (spec key `password`; `extra` is added by hand) and the
/// workloads that only look like consumers.
async fn create_consumers(client: &Client, ns: &str) {
    let projected = deployment(
        "projected",
        container(json!({
            "volumeMounts": [{ "name": "creds", "mountPath": "/etc/creds", "readOnly": true }],
        })),
        json!([{
            "name": "creds",
            "projected": { "defaultMode": 0o440, "sources": [{ "secret": { "name": "app-creds" } }] },
        }]),
    );
    let volume_extra = deployment(
        "volume-extra",
        container(json!({
            "volumeMounts": [{ "name": "extra", "mountPath": "/etc/extra", "readOnly": true }],
        })),
        json!([{
            "name": "extra",
            "secret": {
                "secretName": "app-creds",
                "defaultMode": 0o440,
                "items": [{ "key": "extra", "path": "extra" }],
            },
        }]),
    );
    for workload in [
        reads_key("reads-key", "app-creds", "password"),
        reads_key("reads-extra", "app-creds", "extra"),
        reads_key("other-secret", "unrelated", "password"),
        reads_env_from("env-from", "app-creds"),
        projected,
        volume_extra,
    ] {
        create_deployment(client, ns, &workload).await;
    }
    let cron_job: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": { "name": "nightly" },
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": { "spec": { "template": {
                "metadata": { "labels": { "app": "nightly" } },
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [container(json!({ "envFrom": [{ "secretRef": { "name": "app-creds" } }] }))],
                },
            } } },
        },
    }))
    .expect("cron job");
    Api::<CronJob>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cron_job)
        .await
        .expect("create cron job");
}

const CONSUMERS: [(&str, &str); 4] = [
    ("Deployment", "reads-key"),
    ("Deployment", "env-from"),
    ("Deployment", "projected"),
    ("CronJob", "nightly"),
];
const NOT_CONSUMERS: [(&str, &str); 3] = [
    ("Deployment", "reads-extra"),
    ("Deployment", "volume-extra"),
    ("Deployment", "other-secret"),
];

fn consumer_refs() -> Vec<String> {
    sorted(
        &CONSUMERS
            .iter()
            .map(|(kind, name)| format!("{kind}/{name}"))
            .collect::<Vec<_>>(),
    )
}

fn app_creds_policy(name: &str) -> GoREALSecurityPolicy {
    policy(
        name,
        json!([{ "name": "app-creds", "keys": [{ "key": "password" }] }]),
    )
}

/// Creates the consumers and the policy, waits until the operator's caches list every consumer
/// at version 1, then adds the `extra` key by hand.
async fn consumers_at_version_one(client: &Client, ns: &str, policy: &str) {
    create_consumers(client, ns).await;
    create_policy(client, ns, &app_creds_policy(policy)).await;
    let status = wait_status(
        client,
        ns,
        policy,
        "every consumer seen at version 1",
        |s| {
            settled(s, "app-creds", 1)
                && sorted(&secret_status(s, "app-creds").restarted) == consumer_refs()
        },
    )
    .await;
    assert_eq!(condition(&status, "Ready"), Some(("True", "Reconciled")));
    for (kind, name) in CONSUMERS.iter().chain(&NOT_CONSUMERS) {
        assert!(
            markers(client, ns, kind, name).await.is_empty(),
            "no marker for version 1 on {kind}/{name}"
        );
    }
    secrets_api(client, ns)
        .patch(
            "app-creds",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "extra": ByteString(b"kept-by-hand".to_vec()) } })),
        )
        .await
        .expect("add a key by hand");
}

#[tokio::test]
async fn only_the_consumers_of_a_rotated_key_roll() {
    let (client, ns) = setup("secrets-consumers").await;
    let operator = Operator::start(&ns).await;
    consumers_at_version_one(&client, &ns, "roll").await;

    rotate(&client, &ns, "roll", None).await;
    wait_secret_version(&client, &ns, "app-creds", 2).await;
    for (kind, name) in CONSUMERS {
        wait_marker(&client, &ns, kind, name, "app-creds", "2").await;
    }
    let status = wait_status(&client, &ns, "roll", "every consumer restarted", |s| {
        settled(s, "app-creds", 2)
    })
    .await;
    let entry = secret_status(&status, "app-creds");
    assert_eq!(sorted(&entry.restarted), consumer_refs());
    assert!(
        entry.pending.is_empty() && entry.unmanaged.is_empty(),
        "{entry:?}"
    );

    // A reconcile more, then the workloads that only look like consumers still carry nothing.
    operator.reconcile_all_and_wait().await;
    for (kind, name) in NOT_CONSUMERS {
        assert_eq!(
            markers(&client, &ns, kind, name).await,
            Vec::<String>::new(),
            "{kind}/{name} reads no rotated key"
        );
    }
    // The marker is held by the policy's restart field manager, apart from other managers.
    for (kind, name) in CONSUMERS {
        let workload = workload_json(&client, &ns, kind, name).await;
        let managers: Vec<&str> = workload["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .filter(|f| {
                f["operation"] == "Apply"
                    && f.to_string()
                        .contains(&format!("f:{MARKER_PREFIX}app-creds"))
            })
            .filter_map(|f| f["manager"].as_str())
            .collect();
        assert_eq!(managers, ["goreal-operator-restarts-roll"], "{kind}/{name}");
    }
    let event = wait_event(&client, &ns, "ConsumersRestarted", "Deployment/reads-key").await;
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        !note.contains("reads-extra") && !note.contains("volume-extra"),
        "{note}"
    );
    let secret = get_secret(&client, &ns, "app-creds").await;
    assert_eq!(value(&data(&secret), "extra"), b"kept-by-hand");
}

#[tokio::test]
async fn a_restarted_operator_writes_nothing_to_secrets_or_workloads() {
    let (client, ns) = setup("secrets-restart").await;
    let first = Operator::start(&ns).await;
    consumers_at_version_one(&client, &ns, "calm").await;
    rotate(&client, &ns, "calm", None).await;
    wait_secret_version(&client, &ns, "app-creds", 2).await;
    for (kind, name) in CONSUMERS {
        wait_marker(&client, &ns, kind, name, "app-creds", "2").await;
    }
    wait_status(&client, &ns, "calm", "every consumer restarted", |s| {
        settled(s, "app-creds", 2)
    })
    .await;
    first.reconcile_all_and_wait().await;
    drop(first);

    let secret_before = get_secret(&client, &ns, "app-creds").await;
    let mut versions_before = Vec::new();
    for (kind, name) in CONSUMERS.iter().chain(&NOT_CONSUMERS) {
        versions_before.push(resource_version(&client, &ns, kind, name).await);
    }

    let second = Operator::start(&ns).await;
    // Its initial reconcile (started by the policy watch), then two triggered ones.
    for _ in 0..3 {
        second.reconcile_all_and_wait().await;
    }
    let writes = second.take_writes();
    assert_eq!(
        writes_to_secrets_or_workloads(&writes),
        Vec::<String>::new(),
        "all writes: {writes:?}"
    );
    let secret_after = get_secret(&client, &ns, "app-creds").await;
    assert_eq!(
        secret_after.resource_version(),
        secret_before.resource_version()
    );
    assert_eq!(data(&secret_after), data(&secret_before));
    let mut versions_after = Vec::new();
    for (kind, name) in CONSUMERS.iter().chain(&NOT_CONSUMERS) {
        versions_after.push(resource_version(&client, &ns, kind, name).await);
    }
    assert_eq!(versions_after, versions_before);
    let metrics = second.metrics.encode();
    assert!(
        !metrics.contains("goreal_secret_rotations_total{"),
        "{metrics}"
    );
    let status = wait_status(&client, &ns, "calm", "still settled", |s| {
        settled(s, "app-creds", 2)
    })
    .await;
    assert_eq!(
        sorted(&secret_status(&status, "app-creds").restarted),
        consumer_refs()
    );
}

#[tokio::test]
async fn an_interrupted_rotation_restarts_its_consumers_later_without_rotating_twice() {
    let (client, ns) = setup("secrets-interrupt").await;
    create_deployment(&client, &ns, &reads_key("api", "app-creds", "password")).await;
    let first = Operator::start(&ns).await;
    create_policy(&client, &ns, &app_creds_policy("intr")).await;
    wait_status(&client, &ns, "intr", "consumer seen at version 1", |s| {
        settled(s, "app-creds", 1) && secret_status(s, "app-creds").restarted == ["Deployment/api"]
    })
    .await;
    rotate(&client, &ns, "intr", None).await;
    wait_marker(&client, &ns, "Deployment", "api", "app-creds", "2").await;
    drop(first);

    // Every restart-marker apply fails as if the connection dropped.
    let faulty = Operator::start_with_fault(&ns, |method, uri| {
        *method == http::Method::PATCH
            && uri
                .query()
                .is_some_and(|q| q.contains("fieldManager=goreal-operator-restarts"))
    })
    .await;
    faulty.reconcile_all_and_wait().await;
    rotate(&client, &ns, "intr", None).await;
    let rotated = wait_secret_version(&client, &ns, "app-creds", 3).await;
    let mut log = Vec::new();
    wait_until("the restart apply attempted (and failed)", || {
        log.extend(faulty.take_requests());
        let attempted = log
            .iter()
            .any(|r| r.starts_with("PATCH ") && r.ends_with("/deployments/api"));
        let failed = faulty
            .metrics
            .reconcile_errors
            .with_label_values(&["transport"])
            .get()
            > 0;
        async move { attempted && failed }
    })
    .await;
    assert_eq!(
        marker(&client, &ns, "Deployment", "api", "app-creds")
            .await
            .as_deref(),
        Some("2"),
        "the consumer still runs the old version"
    );
    let puts = log
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.ends_with("/secrets/app-creds"))
        .count();
    assert_eq!(puts, 1, "one Secret write: {log:?}");
    drop(faulty);

    let recovered = Operator::start(&ns).await;
    wait_marker(&client, &ns, "Deployment", "api", "app-creds", "3").await;
    wait_status(
        &client,
        &ns,
        "intr",
        "consumer restarted onto version 3",
        |s| {
            settled(s, "app-creds", 3)
                && secret_status(s, "app-creds").restarted == ["Deployment/api"]
        },
    )
    .await;
    recovered.reconcile_all_and_wait().await;
    let secret = get_secret(&client, &ns, "app-creds").await;
    assert_eq!(
        annotation(&secret, VERSION),
        Some("3"),
        "no second rotation"
    );
    assert_eq!(secret.resource_version(), rotated.resource_version());
    assert_eq!(data(&secret), data(&rotated));
    let writes = recovered.take_writes();
    assert!(
        !writes.iter().any(|w| resource_of(w) == Some("secrets")),
        "the recovering operator wrote no Secret: {writes:?}"
    );
    assert!(
        writes
            .iter()
            .any(|w| w.starts_with("PATCH ") && w.ends_with("/deployments/api")),
        "the recovering operator applied the marker: {writes:?}"
    );
    let metrics = recovered.metrics.encode();
    assert!(
        !metrics.contains("goreal_secret_rotations_total{"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_foreign_secret_of_the_same_name_is_left_untouched_and_reported() {
    let (client, ns) = setup("secrets-foreign").await;
    let foreign: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "shared-creds" },
        "type": "Opaque",
        "data": { "password": ByteString(b"not-the-operators".to_vec()) },
    }))
    .expect("secret");
    let foreign = secrets_api(&client, &ns)
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create foreign secret");
    let operator = Operator::start(&ns).await;
    create_policy(
        &client,
        &ns,
        &policy(
            "clash",
            json!([{ "name": "shared-creds", "keys": [{ "key": "password" }] }]),
        ),
    )
    .await;
    let status = wait_status(&client, &ns, "clash", "Secret conflict reported", |s| {
        condition(s, "Ready") == Some(("False", "ApplyRejected"))
    })
    .await;
    let message = condition_message(&status, "Ready");
    assert!(message.contains("Secret/shared-creds"), "{message}");
    let entry = secret_status(&status, "shared-creds");
    assert_eq!(entry.state, "Conflict");
    assert_eq!(entry.version, None);
    assert!(entry.message.contains("adopt"), "{}", entry.message);
    wait_event(&client, &ns, "SecretConflict", "shared-creds").await;

    // Asking for a rotation of it changes nothing either.
    rotate(&client, &ns, "clash", Some("shared-creds")).await;
    wait_status(&client, &ns, "clash", "still a conflict", |s| {
        secret_status(s, "shared-creds").state == "Conflict"
    })
    .await;
    operator.reconcile_all_and_wait().await;
    operator.reconcile_all_and_wait().await;
    let writes = operator.take_writes();
    assert_eq!(
        writes_to_secrets_or_workloads(&writes),
        Vec::<String>::new(),
        "all writes: {writes:?}"
    );
    let live = get_secret(&client, &ns, "shared-creds").await;
    assert_eq!(live.resource_version(), foreign.resource_version());
    assert_eq!(data(&live), data(&foreign));
    assert!(live.labels().is_empty(), "{:?}", live.labels());
    assert!(live.annotations().is_empty(), "{:?}", live.annotations());
    assert!(live.owner_references().is_empty());
    let metrics = operator.metrics.encode();
    assert!(
        !metrics.contains("goreal_secret_rotations_total{"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_adopted_secret_keeps_its_values_until_the_first_rotation() {
    let (client, ns) = setup("secrets-adopt").await;
    let legacy: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "legacy-db", "labels": { "team": "data" } },
        "type": "Opaque",
        "data": {
            "password": ByteString(b"set-by-a-human-long-ago".to_vec()),
            "host": ByteString(b"db.internal".to_vec()),
        },
    }))
    .expect("secret");
    secrets_api(&client, &ns)
        .create(&PostParams::default(), &legacy)
        .await
        .expect("create legacy secret");
    let operator = Operator::start(&ns).await;
    create_policy(
        &client,
        &ns,
        &policy(
            "adopter",
            json!([{
                "name": "legacy-db",
                "adopt": true,
                "keys": [{ "key": "password" }, { "key": "api-key", "length": 48, "charset": "hex" }],
            }]),
        ),
    )
    .await;
    let status = wait_status(&client, &ns, "adopter", "adopted at version 1", |s| {
        settled(s, "legacy-db", 1)
    })
    .await;
    assert_eq!(condition(&status, "Ready"), Some(("True", "Reconciled")));
    let adopted = get_secret(&client, &ns, "legacy-db").await;
    let adopted_data = data(&adopted);
    assert_eq!(value(&adopted_data, "password"), b"set-by-a-human-long-ago");
    assert_eq!(value(&adopted_data, "host"), b"db.internal");
    assert_generated(&adopted_data, &[("api-key", 48, "hex")]);
    assert_eq!(
        adopted_data.len(),
        3,
        "{:?}",
        adopted_data.keys().collect::<Vec<_>>()
    );
    let labels = adopted.labels();
    assert_eq!(labels["team"], "data", "the owner's own labels stay");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "goreal-operator");
    assert_eq!(labels["security.goreal.io/policy"], "adopter");
    assert_eq!(labels["security.goreal.io/component"], "secrets");
    assert_eq!(annotation(&adopted, VERSION), Some("1"));
    assert!(annotation(&adopted, ROTATED_AT).is_some());
    assert_eq!(
        annotation(&adopted, GENERATED_KEYS),
        Some("password,api-key")
    );
    let owners = adopted.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].name.as_str()),
        ("GoREALSecurityPolicy", "adopter")
    );
    wait_event(&client, &ns, "SecretAdopted", "legacy-db").await;

    // Reconciling again does not touch it.
    operator.reconcile_all_and_wait().await;
    let again = get_secret(&client, &ns, "legacy-db").await;
    assert_eq!(again.resource_version(), adopted.resource_version());

    rotate(&client, &ns, "adopter", None).await;
    let rotated = data(&wait_secret_version(&client, &ns, "legacy-db", 2).await);
    assert_generated(
        &rotated,
        &[("password", 32, "alphanumeric"), ("api-key", 48, "hex")],
    );
    assert_ne!(value(&rotated, "password"), b"set-by-a-human-long-ago");
    assert_eq!(
        value(&rotated, "password.previous"),
        b"set-by-a-human-long-ago"
    );
    assert_ne!(value(&rotated, "api-key"), value(&adopted_data, "api-key"));
    assert_eq!(
        value(&rotated, "api-key.previous"),
        value(&adopted_data, "api-key")
    );
    assert_eq!(value(&rotated, "host"), b"db.internal", "not a spec key");
    wait_status(&client, &ns, "adopter", "rotated to version 2", |s| {
        settled(s, "legacy-db", 2)
    })
    .await;
}

/// A `tracing` writer into memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture")).into_owned()
    }
}

/// Forms in which a value could leak into text: its first 16 characters as they are, escaped as
/// in JSON or Rust's `Debug`, base64-encoded (as a Secret's data is), and as a `Debug` byte list.
fn leak_forms(value: &[u8]) -> Vec<String> {
    let prefix = &value[..16];
    let text = String::from_utf8(prefix.to_vec()).expect("generated values are ASCII");
    let escaped = serde_json::to_string(&text).expect("json");
    let base64 = serde_json::to_string(&ByteString(value[..15].to_vec())).expect("json");
    let bytes = format!("{:?}", &value[..12]);
    vec![
        text,
        escaped.trim_matches('"').to_string(),
        base64.trim_matches('"').to_string(),
        bytes.trim_matches(['[', ']']).to_string(),
    ]
}

/// The log of every test of this binary from the moment the first caller installs it: a
/// process-wide debug-level subscriber, since a thread-scoped one misses events whose callsites
/// other threads' tests registered first.
fn captured_logs() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        capture
    })
}

#[tokio::test]
async fn no_generated_value_appears_in_logs_events_status_or_metrics() {
    let capture = captured_logs();
    let (client, ns) = setup("secrets-leak").await;
    create_deployment(&client, &ns, &reads_env_from("web", "app-creds")).await;
    let operator = Operator::start(&ns).await;
    create_policy(
        &client,
        &ns,
        &policy(
            "quiet",
            json!([{
                "name": "app-creds",
                "keys": [
                    { "key": "password" },
                    { "key": "token", "length": 48, "charset": "base64" },
                    { "key": "hmac", "length": 40, "charset": "hex" },
                    { "key": "phrase", "length": 64, "charset": "ascii-printable" },
                ],
            }]),
        ),
    )
    .await;
    wait_status(&client, &ns, "quiet", "created", |s| {
        settled(s, "app-creds", 1) && secret_status(s, "app-creds").restarted == ["Deployment/web"]
    })
    .await;
    rotate(&client, &ns, "quiet", None).await;
    wait_marker(&client, &ns, "Deployment", "web", "app-creds", "2").await;
    wait_status(&client, &ns, "quiet", "rotated", |s| {
        settled(s, "app-creds", 2)
    })
    .await;
    wait_event(&client, &ns, "SecretRotated", "app-creds").await;
    wait_event(&client, &ns, "ConsumersRestarted", "Deployment/web").await;
    operator.reconcile_all_and_wait().await;

    let secret = data(&get_secret(&client, &ns, "app-creds").await);
    assert_eq!(secret.len(), 8, "four current and four previous values");
    let logs = capture.text();
    // This operator's own lines (its reconcile span names the namespace) are in the log.
    for message in ["secret written", "reconcile"] {
        assert!(
            logs.lines()
                .any(|l| l.contains(&format!("namespace={ns}")) && l.contains(message)),
            "no {message:?} line of namespace {ns} among {} bytes of logs",
            logs.len()
        );
    }
    let events = serde_json::to_string(&events_json(&client, &ns).await).expect("json");
    let core_events = serde_json::to_string(
        &Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .expect("list core events")
            .items,
    )
    .expect("json");
    let policy_json = serde_json::to_string(
        &Api::<GoREALSecurityPolicy>::namespaced(client.clone(), &ns)
            .get("quiet")
            .await
            .expect("policy"),
    )
    .expect("json");
    assert!(policy_json.contains("\"secrets\""), "{policy_json}");
    let metrics = operator.metrics.encode();
    assert!(
        metrics.contains("goreal_secret_rotations_total"),
        "{metrics}"
    );
    let places = [
        ("logs", &logs),
        ("events", &events),
        ("core events", &core_events),
        ("policy", &policy_json),
        ("metrics", &metrics),
    ];
    for (key, value) in &secret {
        for form in leak_forms(value) {
            for (place, text) in places {
                assert!(
                    !text.contains(&form),
                    "the value of {key} appears in the {place} (as {form:?})"
                );
            }
        }
    }
}
