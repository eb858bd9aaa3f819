//! Fault injection: a mock API server (tower-test) answers the reconcile's requests with
//! transient failures, to prove classification, capped backoff, and that `Ready` never flips
//! because of them. Real behaviour is tested against a real API server in `tests/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Mutex;

use super::{Context, WorkloadStores, error_policy, reconcile};
use crate::crd::GoREALSecurityPolicy;
use crate::metrics::Metrics;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn policy() -> GoREALSecurityPolicy {
    serde_json::from_value(json!({
        "apiVersion": "security.goreal.io/v1alpha1",
        "kind": "GoREALSecurityPolicy",
        "metadata": {
            "name": "p", "namespace": "shop", "uid": "u-1", "generation": 1,
            "finalizers": [crate::names::FINALIZER],
        },
        "spec": { "podSecurity": {} },
        "status": {
            "observedGeneration": 1,
            "conditions": [
                { "type": "Ready", "status": "True", "reason": "Reconciled", "message": "1 workload(s) governed",
                  "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1 },
                { "type": "Compliant", "status": "True", "reason": "AllChecksPass", "message": "score 100",
                  "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1 },
                { "type": "Degraded", "status": "False", "reason": "ApiHealthy", "message": "API requests succeed",
                  "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1 }
            ]
        }
    }))
    .expect("policy fixture")
}

/// An empty cache that has synced, as after an initial list with no objects.
fn synced<K>() -> reflector::Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn dynamic_synced() -> reflector::Store<kube::api::DynamicObject> {
    let mut writer = reflector::store::Writer::new(kube::core::ApiResource::erase::<
        k8s_openapi::api::core::v1::ConfigMap,
    >(&()));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    writer.as_reader()
}

fn context(handle_service: tower_test::mock::Mock<Request<Body>, Response<Body>>) -> Arc<Context> {
    let client = kube::Client::new(handle_service, "shop");
    let (deployments, mut writer) = reflector::store();
    let deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "shop", "resourceVersion": "7" },
        "spec": {
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                          "spec": { "containers": [{ "name": "app", "image": "shop/web:1.0" }] } }
        }
    }))
    .expect("deployment fixture");
    let deployment: k8s_openapi::api::apps::v1::Deployment = deployment;
    // Synced first: InitDone swaps in the (empty) initial list.
    writer.apply_watcher_event(&watcher::Event::InitDone);
    writer.apply_watcher_event(&watcher::Event::Apply(super::Compact::new(&deployment)));
    let workloads = WorkloadStores {
        deployments,
        stateful_sets: synced(),
        daemon_sets: synced(),
        replica_sets: synced(),
        jobs: synced(),
        cron_jobs: synced(),
    };
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        client,
        workloads,
        policies: reflector::store().0,
        namespaces: reflector::store().0,
        network: super::NetworkStores {
            network_policies: synced(),
            dns_services: synced(),
            api_server_slices: synced(),
        },
        alerting: super::AlertingStores {
            config_maps: synced(),
            prometheus_rules: reflector::store::Writer::new(kube::core::ApiResource::erase::<
                k8s_openapi::api::core::v1::ConfigMap,
            >(&()))
            .as_reader(),
            rule_crd: synced(),
        },
        secrets: synced(),
        ingresses: synced(),
        reports: super::ReportStores {
            reports: dynamic_synced(),
            crd: synced(),
        },
        gateway: super::GatewayStores {
            routes: dynamic_synced(),
            traffic_policies: dynamic_synced(),
            route_crd: synced(),
            traffic_policy_crd: synced(),
        },
        metrics: Metrics::new().expect("metrics"),
        is_leader: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        refusals: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        rotation_gauges: Mutex::new(HashMap::new()),
    })
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn api_error(code: u16, reason: &str, message: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code,
            "reason": reason, "message": message })
}

async fn body_of(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Answers the namespace read, fails the workload apply with `failure`, and returns the status
/// body the operator then sends.
async fn serve_failing_apply(
    mut handle: Handle,
    failure: (u16, &'static str, &'static str),
) -> Value {
    let (request, send) = handle.next_request().await.expect("namespace read");
    assert_eq!(request.uri().path(), "/api/v1/namespaces/shop");
    send.send_response(respond(
        StatusCode::OK,
        &json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } }),
    ));

    let (request, send) = handle.next_request().await.expect("workload apply");
    assert_eq!(request.method(), http::Method::PATCH);
    assert_eq!(
        request.uri().path(),
        "/apis/apps/v1/namespaces/shop/deployments/web"
    );
    let (code, reason, message) = failure;
    let status = StatusCode::from_u16(code).expect("status code");
    send.send_response(respond(status, &api_error(code, reason, message)));

    let (request, send) = handle.next_request().await.expect("status patch");
    assert_eq!(
        request.uri().path(),
        "/apis/security.goreal.io/v1alpha1/namespaces/shop/gorealsecuritypolicies/p/status"
    );
    let body = body_of(request).await;
    send.send_response(respond(
        StatusCode::OK,
        &serde_json::to_value(policy()).expect("json"),
    ));
    body
}

fn condition<'a>(status_body: &'a Value, type_: &str) -> &'a Value {
    status_body["status"]["conditions"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn transient_api_failures_mark_degraded_and_keep_ready() {
    for failure in [
        (500, "InternalError", "etcdserver: request timed out"),
        (429, "TooManyRequests", "too many requests"),
        (
            409,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified",
        ),
        (
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
    ] {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let ctx = context(service);
        let server = tokio::spawn(serve_failing_apply(handle, failure));
        let error = reconcile(Arc::new(policy()), ctx.clone())
            .await
            .expect_err("apply failed");
        assert!(
            error.is_transient(),
            "{failure:?} must be transient, got {}",
            error.category()
        );
        let status = server.await.expect("mock server");
        let ready = condition(&status, "Ready");
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("True"), Some("Reconciled"))
        );
        assert_eq!(
            ready["lastTransitionTime"], "2026-01-01T00:00:00Z",
            "Ready did not move"
        );
        let degraded = condition(&status, "Degraded");
        assert_eq!(
            (degraded["status"].as_str(), degraded["reason"].as_str()),
            (Some("True"), Some("ApiErrors"))
        );
    }
}

#[tokio::test]
async fn transient_failures_back_off_exponentially_up_to_a_cap() {
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(service);
    let error = crate::error::Error::Kube(kube::Error::Api(
        serde_json::from_value(api_error(500, "InternalError", "boom")).expect("status"),
    ));
    let delays: Vec<Action> = (0..12)
        .map(|_| error_policy(Arc::new(policy()), &error, ctx.clone()))
        .collect();
    assert_eq!(delays[0], Action::requeue(Duration::from_secs(2)));
    assert_eq!(delays[1], Action::requeue(Duration::from_secs(4)));
    assert_eq!(delays[2], Action::requeue(Duration::from_secs(8)));
    assert_eq!(delays[11], Action::requeue(Duration::from_secs(256)));
    let errors = ctx
        .metrics
        .reconcile_errors
        .with_label_values(&["server"])
        .get();
    assert_eq!(errors, 12);
}

#[tokio::test]
async fn a_rejected_patch_is_reported_for_its_object_without_quoting_the_server() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = context(service);
    let server = tokio::spawn(async move {
        let (mut status, mut notes) = (Value::Null, Vec::new());
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_string();
            let body = body_of(request).await;
            let response = if path.ends_with("/deployments/web") {
                let message = "deployments.apps \"web\" is forbidden: env PASSWORD=hunter2";
                respond(StatusCode::FORBIDDEN, &api_error(403, "Forbidden", message))
            } else if path.contains("/events") {
                notes.push(body["note"].as_str().unwrap_or_default().to_string());
                respond(StatusCode::CREATED, &body)
            } else if path.ends_with("/status") {
                status = body;
                respond(
                    StatusCode::OK,
                    &serde_json::to_value(policy()).expect("json"),
                )
            } else {
                assert!(
                    path.starts_with("/api/v1/namespaces/shop"),
                    "unexpected {path}"
                );
                respond(
                    StatusCode::OK,
                    &json!({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } }),
                )
            };
            send.send_response(response);
        }
        (status, notes)
    });
    reconcile(Arc::new(policy()), ctx)
        .await
        .expect("a refused object does not fail the reconcile");
    let (status, notes) = server.await.expect("mock server");
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ApplyRejected"))
    );
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("Deployment/web (403 Forbidden)")),
        "{ready}"
    );
    let checks = status["status"]["compliance"]["checks"]
        .as_array()
        .expect("checks");
    let accepted = checks
        .iter()
        .find(|c| c["id"] == "pod.hardening-accepted")
        .expect("check");
    assert_eq!(accepted["result"], "Fail");
    assert!(
        notes.iter().any(|n| n.contains("Deployment/web")),
        "{notes:?}"
    );
    assert!(!status.to_string().contains("hunter2"));
    assert!(notes.iter().all(|n| !n.contains("hunter2")), "{notes:?}");
}

#[test]
fn api_errors_display_without_the_servers_message() {
    let error = crate::error::Error::Kube(kube::Error::Api(
        serde_json::from_value(api_error(422, "Invalid", "env[0].value: \"hunter2\""))
            .expect("status"),
    ));
    assert_eq!(
        error.to_string(),
        "kubernetes API request failed: 422 Invalid"
    );
}

#[test]
fn the_controller_wakes_up_for_the_next_rotation() {
    use std::time::Duration;
    let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
    let due: jiff::Timestamp = "2026-01-01T00:10:00Z".parse().expect("time");
    let until = super::reconcile::until_rotation;
    assert_eq!(until(Some(due), now), Some(Duration::from_secs(600)));
    assert_eq!(until(None, now), None);
    // Never a busy loop, even for a time already passed.
    assert_eq!(until(Some(now), due), Some(Duration::from_secs(1)));
}
