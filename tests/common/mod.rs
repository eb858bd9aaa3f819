//! Shared pieces of the integration tests: the CRD install, an in-process operator whose client
//! records every write it sends, and waiting on conditions (never sleeping).
#![allow(dead_code, clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use goreal_operator::controller::{self, RunOptions};
use goreal_operator::crd::GoREALSecurityPolicy;
use goreal_operator::metrics::Metrics;
use goreal_testenv::ControlPlane;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use serde::de::DeserializeOwned;

/// How long a condition may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Installs (or updates) the CRD with server-side apply and waits until it is Established.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = GoREALSecurityPolicy::crd();
    let name = crd.metadata.name.clone().expect("crd name");
    crds.patch(
        &name,
        &PatchParams::apply("goreal-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    wait_until("CRD established", || async {
        crds.get(&name)
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| {
                s.conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    })
    .await;
}

/// A client, the CRD installed, and a fresh namespace.
pub async fn setup(prefix: &str) -> (Client, String) {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    install_crd(&client).await;
    let namespace = goreal_testenv::temp_namespace(&client, prefix).await;
    (client, namespace)
}

/// Polls `condition` every 100 ms until it holds; fails the test after [`WAIT`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a fetch until `accept` returns a value.
pub async fn wait_for<T, F, Fut, A, R>(what: &str, mut fetch: F, accept: A) -> R
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
    A: Fn(&T) -> Option<R>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = fetch().await.as_ref().and_then(&accept) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The operator running in-process on one namespace, with a log of every request its client sent
/// (watches aside).
pub struct Operator {
    /// Its metrics (reconcile counts).
    pub metrics: Metrics,
    requests: Arc<Mutex<Vec<String>>>,
    trigger: mpsc::UnboundedSender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    /// Starts the controller for `namespace`.
    pub async fn start(namespace: &str) -> Operator {
        let plane = ControlPlane::shared();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let recorder =
            tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
                let watch = request
                    .uri()
                    .query()
                    .is_some_and(|q| q.contains("watch=true"));
                if !watch {
                    let line = format!("{} {}", request.method(), request.uri().path());
                    log.lock().expect("request log").push(line);
                }
                request
            });
        let client = kube::client::ClientBuilder::try_from(plane.config())
            .expect("client builder")
            .with_layer(&recorder)
            .build();
        let metrics = Metrics::new().expect("metrics");
        let (trigger, triggered) = mpsc::unbounded();
        let options = RunOptions {
            namespace: Some(namespace.to_string()),
            concurrency: 4,
        };
        let task = tokio::spawn(controller::run(
            client,
            options,
            metrics.clone(),
            Arc::new(AtomicBool::new(false)),
            triggered,
            futures::future::pending(),
        ));
        Operator {
            metrics,
            requests,
            trigger,
            task,
        }
    }

    /// Requests (method and path) sent since the last call, draining the log.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().expect("request log"))
    }

    /// Writes sent since the last call of either method, draining the log.
    pub fn take_writes(&self) -> Vec<String> {
        let requests = self.take_requests();
        requests
            .into_iter()
            .filter(|r| !r.starts_with("GET "))
            .collect()
    }

    /// Asks the controller to reconcile every policy once more.
    pub fn trigger(&self) {
        self.trigger.unbounded_send(()).expect("trigger");
    }

    /// Reconciles every policy once more and waits until those reconciles have finished.
    pub async fn reconcile_all_and_wait(&self) {
        let finished = || self.metrics.reconcile_duration.get_sample_count();
        let before = finished();
        self.trigger();
        wait_until("a triggered reconcile to finish", || async {
            finished() > before && finished() >= self.metrics.reconcile_count()
        })
        .await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses one YAML document.
pub fn yaml<T: DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("fixture YAML")
}
