//! Shared pieces of the integration tests: the CRD install, an in-process operator whose client
//! records every write it sends, and waiting on conditions (never sleeping).
#![allow(dead_code, clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use goreal_operator::controller::{self, RunOptions};
use goreal_operator::crd::{CheckStatus, GoREALSecurityPolicy, GoREALSecurityPolicyStatus};
use goreal_operator::metrics::Metrics;
use goreal_testenv::ControlPlane;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
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
    task: tokio::task::JoinHandle<Result<(), goreal_operator::leader::SettingsError>>,
}

impl Operator {
    /// Starts the controller for `namespace`.
    pub async fn start(namespace: &str) -> Operator {
        Operator::start_with_fault(namespace, |_, _| false).await
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

impl Operator {
    /// Starts the controller for `namespace` with a client on which every request that `fail`
    /// matches (by method and URI) fails before it reaches the API server, as a broken
    /// connection would: the controller sees a transport error and retries. Failed requests are
    /// still recorded in the request log.
    pub async fn start_with_fault<F>(namespace: &str, fail: F) -> Operator
    where
        F: Fn(&http::Method, &http::Uri) -> bool + Send + Sync + 'static,
    {
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
        let fail = Arc::new(fail);
        let fault =
            tower::filter::FilterLayer::new(move |request: http::Request<kube::client::Body>| {
                if fail(request.method(), request.uri()) {
                    Err(tower::BoxError::from(format!(
                        "injected fault: connection reset ({} {})",
                        request.method(),
                        request.uri().path()
                    )))
                } else {
                    Ok(request)
                }
            });
        // The recorder is outermost, so that it logs the requests the fault then fails.
        let client = kube::client::ClientBuilder::try_from(plane.config())
            .expect("client builder")
            .with_layer(&fault)
            .with_layer(&recorder)
            .build();
        let metrics = Metrics::new().expect("metrics");
        let (trigger, triggered) = mpsc::unbounded();
        let options = RunOptions {
            namespace: Some(namespace.to_string()),
            concurrency: 4,
            leader_election: None,
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
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates a policy in `namespace`.
pub async fn create_policy(client: &Client, namespace: &str, policy: &GoREALSecurityPolicy) {
    let api: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), policy)
        .await
        .expect("create policy");
}

/// Waits until the policy's status describes its current generation and satisfies `accept`.
pub async fn wait_status(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    accept: impl Fn(&GoREALSecurityPolicyStatus) -> bool,
) -> GoREALSecurityPolicyStatus {
    let api: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), namespace);
    wait_for(
        what,
        || async { api.get(name).await.ok() },
        |policy: &GoREALSecurityPolicy| {
            let status = policy.status.as_ref()?;
            (status.observed_generation == policy.metadata.generation && accept(status))
                .then(|| status.clone())
        },
    )
    .await
}

/// The status and reason of a condition.
pub fn condition<'a>(
    status: &'a GoREALSecurityPolicyStatus,
    type_: &str,
) -> Option<(&'a str, &'a str)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// A check of the compliance report, by id.
pub fn check<'a>(status: &'a GoREALSecurityPolicyStatus, id: &str) -> &'a CheckStatus {
    status
        .compliance
        .as_ref()
        .and_then(|c| c.checks.iter().find(|check| check.id == id))
        .unwrap_or_else(|| panic!("no check {id} in {status:?}"))
}

/// Builds (or finds cached) a test oracle with its `hack/<dir>/build.sh` and returns the path of
/// `binary`; fails the test with the script's output when the build fails (no skipping).
pub fn go_tool(dir: &str, binary: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("hack").join(dir).join("build.sh");
    let output = std::process::Command::new(&script)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}); it needs Go and the Go module proxy for the first build.\n\
         stdout:\n{stdout}\nstderr:\n{stderr}",
        script.display(),
        output.status
    );
    let bin_dir = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{} printed no bin dir; stderr:\n{stderr}", script.display()));
    let bin = std::path::Path::new(bin_dir.trim()).join(binary);
    assert!(
        bin.is_file(),
        "{} did not produce {}",
        script.display(),
        bin.display()
    );
    bin
}

/// The message of a condition, or "" when it is absent.
pub fn condition_message<'a>(status: &'a GoREALSecurityPolicyStatus, type_: &str) -> &'a str {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map_or("", |c| c.message.as_str())
}

/// Parses one YAML document.
pub fn yaml<T: DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).expect("fixture YAML")
}

/// Installs a CRD from `tests/fixtures/FILE` (a published schema kept as test data) with
/// `kubectl apply --server-side` and waits until it is Established.
pub fn install_crd_fixture(file: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let plane = ControlPlane::shared();
    for args in [
        vec!["apply", "--server-side", "-f"],
        vec!["wait", "--for=condition=Established", "--timeout=60s", "-f"],
    ] {
        let output = plane
            .kubectl()
            .args(args)
            .arg(&path)
            .output()
            .expect("kubectl");
        assert!(
            output.status.success(),
            "kubectl on {file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Creates one policy per `(spec, expected)` case (spec is the YAML under `spec:`) and asserts
/// that the API server refuses each with an error mentioning `expected`.
pub async fn assert_schema_refuses(client: &Client, namespace: &str, cases: &[(String, &str)]) {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &kube::core::ApiResource::erase::<GoREALSecurityPolicy>(&()),
    );
    for (i, (spec, expected)) in cases.iter().enumerate() {
        let body: kube::api::DynamicObject = yaml(&format!(
            "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\nmetadata:\n  name: bad-{i}\nspec:\n  {spec}\n"
        ));
        let error = api
            .create(&PostParams::default(), &body)
            .await
            .expect_err(spec)
            .to_string();
        assert!(
            error.contains(expected),
            "{spec}: expected {expected:?} in {error}"
        );
    }
}
