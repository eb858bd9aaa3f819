//! Controller wiring: watches on policies and the workload kinds, the mapping from a workload
//! event to the policies that govern it, readiness, and the shared reconcile context.

mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::sync::Mutex;

use crate::apply::ApplyOutcome;
use crate::crd::GoREALSecurityPolicy;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::names;
use crate::observed::{Workload, WorkloadResource};

pub use reconcile::reconcile;

/// Read-only caches of every workload kind.
#[derive(Clone)]
pub struct WorkloadStores {
    deployments: Store<Deployment>,
    stateful_sets: Store<StatefulSet>,
    daemon_sets: Store<DaemonSet>,
    replica_sets: Store<ReplicaSet>,
    jobs: Store<Job>,
    cron_jobs: Store<CronJob>,
}

impl WorkloadStores {
    /// Every cached workload of a namespace, from the watch caches (no API request).
    pub fn in_namespace(&self, namespace: &str) -> Vec<Workload> {
        fn collect<K: WorkloadResource + Resource + Clone>(
            store: &Store<K>,
            namespace: &str,
            out: &mut Vec<Workload>,
        ) where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            out.extend(
                store
                    .state()
                    .iter()
                    .filter(|o| o.object_meta().namespace.as_deref() == Some(namespace))
                    .filter_map(|o| o.to_workload()),
            );
        }
        let mut out = Vec::new();
        collect(&self.deployments, namespace, &mut out);
        collect(&self.stateful_sets, namespace, &mut out);
        collect(&self.daemon_sets, namespace, &mut out);
        collect(&self.replica_sets, namespace, &mut out);
        collect(&self.jobs, namespace, &mut out);
        collect(&self.cron_jobs, namespace, &mut out);
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        out
    }

    async fn wait_until_ready(&self) -> bool {
        self.deployments.wait_until_ready().await.is_ok()
            && self.stateful_sets.wait_until_ready().await.is_ok()
            && self.daemon_sets.wait_until_ready().await.is_ok()
            && self.replica_sets.wait_until_ready().await.is_ok()
            && self.jobs.wait_until_ready().await.is_ok()
            && self.cron_jobs.wait_until_ready().await.is_ok()
    }
}

/// A refused apply, remembered per object so that an unchanged world is not retried in a loop:
/// the same body against the same object version (and force setting) meets the same refusal.
#[derive(Clone, Debug)]
pub(crate) struct RememberedRefusal {
    version: Option<String>,
    body: serde_json::Value,
    force: bool,
    outcome: ApplyOutcome,
}

/// State shared by every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Workload caches.
    pub workloads: WorkloadStores,
    /// The policy cache.
    pub policies: Store<GoREALSecurityPolicy>,
    /// Namespace metadata cache.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Event publisher.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    refusals: Mutex<HashMap<String, RememberedRefusal>>,
    failures: Mutex<HashMap<String, u32>>,
}

/// Options of `run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Watch one namespace only.
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Drops what the operator never reads from cached objects, to bound memory.
fn slim<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

type WatchStream<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

fn watch_workloads<K>(client: &Client, namespace: Option<&str>) -> (Store<K>, WatchStream<K>)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(
        api_for::<K>(client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(slim::<K>)
    .reflect(writer)
    .touched_objects();
    (reader, Box::pin(stream))
}

/// The cached policies of a namespace.
pub(crate) fn policies_in(
    policies: &Store<GoREALSecurityPolicy>,
    namespace: &str,
) -> Vec<Arc<GoREALSecurityPolicy>> {
    let in_namespace = |p: &Arc<GoREALSecurityPolicy>| p.namespace().as_deref() == Some(namespace);
    policies.state().into_iter().filter(in_namespace).collect()
}

/// The policies to reconcile for a workload event: those whose selector matches its template
/// labels, and the one that hardened it (which may need to release it).
fn policies_for<K: WorkloadResource>(
    policies: &Store<GoREALSecurityPolicy>,
    object: &K,
) -> Vec<ObjectRef<GoREALSecurityPolicy>> {
    // A Deployment's ReplicaSets and a CronJob's Jobs copy its labels; their events (rollouts,
    // scaling) are not the policy's business.
    let Some(workload) = object.to_workload().filter(|w| !w.is_built_in_child()) else {
        return Vec::new();
    };
    let namespace = object.object_meta().namespace.clone().unwrap_or_default();
    let hardened_by = workload.annotations.get(names::HARDENED_BY_ANNOTATION);
    let labels = workload.template_labels();
    policies_in(policies, &namespace)
        .iter()
        .filter(|p| {
            hardened_by == Some(&p.name_any())
                || crate::model::validate(p).is_ok_and(|v| v.selector.matches(&labels))
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Runs the controller until `shutdown` resolves. `ready` turns true once every cache synced;
/// each item of `reconcile_all` reconciles every policy again.
pub async fn run(
    client: Client,
    options: RunOptions,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    reconcile_all: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = options.namespace.as_deref();
    let (deployments, deployment_events) = watch_workloads::<Deployment>(&client, namespace);
    let (stateful_sets, stateful_set_events) = watch_workloads::<StatefulSet>(&client, namespace);
    let (daemon_sets, daemon_set_events) = watch_workloads::<DaemonSet>(&client, namespace);
    let (replica_sets, replica_set_events) = watch_workloads::<ReplicaSet>(&client, namespace);
    let (jobs, job_events) = watch_workloads::<Job>(&client, namespace);
    let (cron_jobs, cron_job_events) = watch_workloads::<CronJob>(&client, namespace);
    let workloads = WorkloadStores {
        deployments,
        stateful_sets,
        daemon_sets,
        replica_sets,
        jobs,
        cron_jobs,
    };

    let policies_api = api_for::<GoREALSecurityPolicy>(&client, namespace);
    let controller = Controller::new(policies_api, watcher::Config::default().any_semantic());
    let policies = controller.store();
    macro_rules! map {
        ($ty:ty) => {{
            let policies = policies.clone();
            move |object: $ty| policies_for(&policies, &object)
        }};
    }
    // Namespace labels matter to the policies of that namespace (PSA labels removed by hand, or
    // released by another policy); only metadata is watched.
    let namespaces_config = match namespace {
        Some(name) => watcher::Config::default().fields(&format!("metadata.name={name}")),
        None => watcher::Config::default(),
    };
    // The cache also serves each reconcile's namespace read; managedFields are kept, as they
    // say whether the operator holds the labels (few objects, so little memory).
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_events = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        namespaces_config,
    )
    .default_backoff()
    .reflect(namespace_writer)
    .touched_objects();
    let namespace_policies = policies.clone();
    let controller = controller
        .watches_stream(namespace_events, move |ns: PartialObjectMeta<Namespace>| {
            policies_in(&namespace_policies, &ns.name_any())
                .iter()
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(deployment_events, map!(Deployment))
        .watches_stream(stateful_set_events, map!(StatefulSet))
        .watches_stream(daemon_set_events, map!(DaemonSet))
        .watches_stream(replica_set_events, map!(ReplicaSet))
        .watches_stream(job_events, map!(Job))
        .watches_stream(cron_job_events, map!(CronJob))
        .reconcile_all_on(reconcile_all)
        .with_config(ControllerConfig::default().concurrency(options.concurrency.max(1)))
        .graceful_shutdown_on(shutdown);

    let reporter = Reporter {
        controller: names::FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        workloads: workloads.clone(),
        policies: policies.clone(),
        namespaces: namespaces.clone(),
        metrics,
        refusals: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
    });
    let readiness = {
        let policies = policies.clone();
        tokio::spawn(async move {
            if workloads.wait_until_ready().await
                && policies.wait_until_ready().await.is_ok()
                && namespaces.wait_until_ready().await.is_ok()
            {
                ready.store(true, Ordering::Relaxed);
                tracing::info!("watch caches synced");
            }
        })
    };
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile attempt ended in error");
            }
        })
        .await;
    readiness.abort();
}

/// Transient errors retry with capped exponential backoff per policy; others wait longer.
fn error_policy(policy: Arc<GoREALSecurityPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.category()])
        .inc();
    let key = format!(
        "{}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    );
    let attempts = {
        let mut failures = ctx
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    tracing::warn!(
        policy = %policy.name_any(),
        category = error.category(),
        transient = error.is_transient(),
        %error,
        "reconcile failed"
    );
    if error.is_transient() {
        let seconds = 2u64.saturating_pow(attempts.min(8)).min(300);
        Action::requeue(Duration::from_secs(seconds))
    } else {
        Action::requeue(Duration::from_secs(300))
    }
}
