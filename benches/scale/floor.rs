//! The floor: the writes the operator makes for one namespace, taken from `render` over the same
//! manifests, sent by a plain writer with no watches, caches or planning.

use std::path::Path;

use goreal_operator::names::FINALIZER;
use goreal_operator::render;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use serde_json::{Value, json};

use crate::cluster::Write;
use crate::world;

/// Every write for `namespace`, in the operator's order: the finalizer, the generated Secrets,
/// workload patches, namespace labels and generated objects as `render` prints them, the
/// events (as many per policy as the operator created), then the status.
pub fn writes_for(namespace: &str, events: usize) -> Vec<Write> {
    let mut manifests = render::Manifests::default();
    let mut documents = vec![world::namespace(namespace), world::policy(namespace)];
    documents.extend(world::workloads(namespace));
    let text = documents
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n");
    render::parse_into(Path::new("scale.yaml"), &text, &mut manifests).expect("parse manifests");
    let rendered = render::render(&manifests, jiff::Timestamp::now()).expect("render");
    assert!(rendered.all_valid, "the benchmark policy is valid");
    let rendered: Vec<Value> = serde_saphyr::from_multiple(&rendered.yaml).expect("render output");

    let mut writes = vec![Write::Merge(json!({
        "apiVersion": "security.goreal.io/v1alpha1",
        "kind": "GoREALSecurityPolicy",
        "metadata": {"name": "goreal-scale", "namespace": namespace, "finalizers": [FINALIZER]},
    }))];
    let mut status = None;
    for mut document in rendered {
        let kind = document["kind"].as_str().unwrap_or_default().to_string();
        if kind != "Namespace" {
            document["metadata"]["namespace"] = json!(namespace);
        }
        match kind.as_str() {
            "GoREALSecurityPolicy" => status = Some(Write::Status(document)),
            "Secret" => writes.push(Write::Create(document)),
            _ => writes.push(Write::Apply(document)),
        }
    }
    writes.extend((0..events).map(|i| Write::Create(event(namespace, i))));
    writes.extend(status);
    writes
}

fn event(namespace: &str, index: usize) -> Value {
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("goreal-scale.floor-{index}")),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(jiff::Timestamp::now())),
        action: Some("Reconcile".into()),
        reason: Some("Ready".into()),
        type_: Some("Normal".into()),
        note: Some("policy applied".into()),
        reporting_controller: Some("security.goreal.io/goreal-operator".into()),
        reporting_instance: Some("floor".into()),
        regarding: Some(ObjectReference {
            api_version: Some("security.goreal.io/v1alpha1".into()),
            kind: Some("GoREALSecurityPolicy".into()),
            name: Some("goreal-scale".into()),
            namespace: Some(namespace.into()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    };
    let mut value = serde_json::to_value(event).expect("event");
    value["apiVersion"] = json!("events.k8s.io/v1");
    value["kind"] = json!("Event");
    value
}
