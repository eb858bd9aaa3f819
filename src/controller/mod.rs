//! Controller wiring: watches on policies and the workload kinds, the mapping from a workload
//! event to the policies that govern it, readiness, and the shared reconcile context.

mod compact;
mod reconcile;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
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
use crate::leader::{LeaderElection, Leadership, SettingsError};
use crate::metrics::Metrics;
use crate::names;
use crate::observed::{
    API_SERVER_NAMESPACE, API_SERVER_SLICE_LABEL, DNS_NAMESPACE, DNS_SERVICE_LABEL, Workload,
    WorkloadResource,
};

use compact::Compact;
pub use reconcile::reconcile;

/// Read-only caches of every workload kind.
#[derive(Clone)]
pub struct WorkloadStores {
    deployments: Store<Compact<Deployment>>,
    stateful_sets: Store<Compact<StatefulSet>>,
    daemon_sets: Store<Compact<DaemonSet>>,
    replica_sets: Store<Compact<ReplicaSet>>,
    jobs: Store<Compact<Job>>,
    cron_jobs: Store<Compact<CronJob>>,
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

/// Caches the network capability reads: every NetworkPolicy of the watched namespaces, the
/// cluster DNS Service and the API server's EndpointSlices.
#[derive(Clone)]
pub struct NetworkStores {
    /// NetworkPolicies.
    pub network_policies: Store<NetworkPolicy>,
    /// `kube-system` Services labelled as the cluster DNS.
    pub dns_services: Store<Service>,
    /// EndpointSlices of the `kubernetes` Service.
    pub api_server_slices: Store<EndpointSlice>,
}

impl NetworkStores {
    /// NetworkPolicies of one namespace.
    pub fn network_policies_in(&self, namespace: &str) -> Vec<NetworkPolicy> {
        let mut policies: Vec<NetworkPolicy> = self
            .network_policies
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .map(|p| p.as_ref().clone())
            .collect();
        // Store order is a hash map's: sort, so that reports do not change between runs.
        policies.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        policies
    }

    async fn wait_until_ready(&self) -> bool {
        self.network_policies.wait_until_ready().await.is_ok()
            && self.dns_services.wait_until_ready().await.is_ok()
            && self.api_server_slices.wait_until_ready().await.is_ok()
    }
}

/// Caches the alerting capability reads: the operator's rule ConfigMaps, its PrometheusRules
/// (watched once the CRD is established) and the PrometheusRule CRD itself.
#[derive(Clone)]
pub struct AlertingStores {
    /// ConfigMaps labelled as the operator's (alert rules, and the nginx files of rate limiting).
    pub config_maps: Store<ConfigMap>,
    /// PrometheusRules labelled as the operator's.
    pub prometheus_rules: Store<DynamicObject>,
    /// The `prometheusrules.monitoring.coreos.com` CRD, when installed.
    pub rule_crd: Store<CustomResourceDefinition>,
}

/// Caches the Gateway API rate limit output reads: the HTTPRoutes, the operator's
/// BackendTrafficPolicies (each watched once its CRD is established) and both CRDs.
#[derive(Clone)]
pub struct GatewayStores {
    /// HTTPRoutes.
    pub routes: Store<DynamicObject>,
    /// BackendTrafficPolicies labelled as the operator's.
    pub traffic_policies: Store<DynamicObject>,
    /// The HTTPRoute CRD, when installed.
    pub route_crd: Store<CustomResourceDefinition>,
    /// Envoy Gateway's BackendTrafficPolicy CRD, when installed.
    pub traffic_policy_crd: Store<CustomResourceDefinition>,
}

/// Caches of the PolicyReport output: the operator's reports (watched once the CRD is
/// established) and the CRD.
#[derive(Clone)]
pub struct ReportStores {
    /// PolicyReports labelled as the operator's.
    pub reports: Store<DynamicObject>,
    /// The `policyreports.wgpolicyk8s.io` CRD, when installed.
    pub crd: Store<CustomResourceDefinition>,
}

/// Name of the PolicyReport CRD.
const POLICY_REPORT_CRD: &str = "policyreports.wgpolicyk8s.io";

impl ReportStores {
    /// Whether the PolicyReport v1alpha2 API is established and served.
    pub fn api(&self) -> bool {
        self.crd
            .state()
            .iter()
            .any(|crd| crd_serves(crd, "v1alpha2"))
    }

    /// Whether the report API exists and the operator's reports are known. The report is
    /// optional: its cache is waited for a moment at most (it syncs right after the CRD
    /// appears), never so long that it holds up a policy, say when its RBAC is missing.
    pub(crate) async fn usable(&self) -> bool {
        let within = |ms| Duration::from_millis(ms);
        tokio::time::timeout(within(10), self.crd.wait_until_ready())
            .await
            .is_ok_and(|r| r.is_ok())
            && self.api()
            && tokio::time::timeout(within(3000), self.reports.wait_until_ready())
                .await
                .is_ok_and(|r| r.is_ok())
    }

    /// The operator's PolicyReports of a namespace, as JSON with apiVersion and kind.
    pub fn reports_in(&self, namespace: &str) -> Vec<serde_json::Value> {
        typed_json(
            &self.reports,
            namespace,
            crate::policy::policy_report::POLICY_REPORT,
        )
    }
}

/// Name of the HTTPRoute CRD.
const HTTP_ROUTE_CRD: &str = "httproutes.gateway.networking.k8s.io";
/// Name of Envoy Gateway's BackendTrafficPolicy CRD.
const TRAFFIC_POLICY_CRD: &str = "backendtrafficpolicies.gateway.envoyproxy.io";

impl GatewayStores {
    /// Whether the CRD caches have synced and, for each API that exists, its objects too.
    async fn synced(&self) -> bool {
        self.route_crd.wait_until_ready().await.is_ok()
            && self.traffic_policy_crd.wait_until_ready().await.is_ok()
            && (!self
                .route_crd
                .state()
                .iter()
                .any(|crd| crd_serves(crd, "v1"))
                || self.routes.wait_until_ready().await.is_ok())
            && (!self.traffic_policy_api()
                || self.traffic_policies.wait_until_ready().await.is_ok())
    }

    /// Whether the BackendTrafficPolicy API is established and served.
    pub fn traffic_policy_api(&self) -> bool {
        self.traffic_policy_crd
            .state()
            .iter()
            .any(|crd| crd_serves(crd, "v1alpha1"))
    }

    /// HTTPRoutes of a namespace, sorted by name.
    pub fn routes_in(&self, namespace: &str) -> Vec<crate::observed::RouteInfo> {
        let mut routes: Vec<crate::observed::RouteInfo> = self
            .routes
            .state()
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
            .map(|r| crate::observed::RouteInfo {
                name: r.name_any(),
                labels: r.labels().clone(),
            })
            .collect();
        routes.sort_by(|a, b| a.name.cmp(&b.name));
        routes
    }

    /// The operator's BackendTrafficPolicies of a namespace, as JSON with apiVersion and kind.
    pub fn traffic_policies_in(&self, namespace: &str) -> Vec<serde_json::Value> {
        typed_json(
            &self.traffic_policies,
            namespace,
            crate::policy::rate_limit::TRAFFIC_POLICY,
        )
    }
}

/// Cached dynamic objects of a namespace as JSON, with their type set (list items may come
/// without it; the planners match on it).
fn typed_json(
    store: &Store<DynamicObject>,
    namespace: &str,
    (api_version, kind): (&str, &str),
) -> Vec<serde_json::Value> {
    store
        .state()
        .iter()
        .filter(|o| o.metadata.namespace.as_deref() == Some(namespace))
        .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
        .map(|mut value| {
            value["apiVersion"] = api_version.into();
            value["kind"] = kind.into();
            value
        })
        .collect()
}

/// Name of the PrometheusRule CRD.
const PROMETHEUS_RULE_CRD: &str = "prometheusrules.monitoring.coreos.com";

impl AlertingStores {
    /// Whether the PrometheusRule v1 API is established and served.
    pub fn prometheus_rule_api(&self) -> bool {
        self.rule_crd
            .state()
            .iter()
            .any(|crd| crd_serves(crd, "v1"))
    }

    /// The operator's ConfigMaps and PrometheusRules in a namespace, as JSON with apiVersion and
    /// kind.
    pub fn generated_objects_in(&self, namespace: &str) -> Vec<serde_json::Value> {
        let in_namespace =
            |meta: &kube::core::ObjectMeta| meta.namespace.as_deref() == Some(namespace);
        let mut objects: Vec<serde_json::Value> = self
            .config_maps
            .state()
            .iter()
            .filter(|c| in_namespace(&c.metadata))
            .filter_map(|c| serde_json::to_value(c.as_ref()).ok())
            .collect();
        objects.extend(typed_json(
            &self.prometheus_rules,
            namespace,
            crate::policy::alerting::PROMETHEUS_RULE,
        ));
        objects
    }
}

fn crd_serves(crd: &CustomResourceDefinition, version: &str) -> bool {
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
    established
        && crd
            .spec
            .versions
            .iter()
            .any(|v| v.name == version && v.served)
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
    /// Cluster facts and NetworkPolicies for network isolation.
    pub network: NetworkStores,
    /// Alert rule objects and the PrometheusRule CRD.
    pub alerting: AlertingStores,
    /// The operator's Secrets, metadata only (never values).
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Ingresses, for the ingress-nginx rate limit annotations.
    pub ingresses: Store<Ingress>,
    /// HTTPRoutes and BackendTrafficPolicies, for the Gateway API rate limit output.
    pub gateway: GatewayStores,
    /// The operator's PolicyReports and their CRD.
    pub reports: ReportStores,
    /// Event publisher.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Whether this replica holds the Lease: only then does a reconcile run (and write).
    pub is_leader: Arc<AtomicBool>,
    refusals: Mutex<HashMap<String, RememberedRefusal>>,
    failures: Mutex<HashMap<String, u32>>,
    /// Per policy, the Secrets whose next-rotation gauge is exported.
    rotation_gauges: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Context {
    /// Waits (at most a moment) until every cache the policy's plan reads has synced; `false` if
    /// not yet. Only the sections the policy has count, so a cache that cannot sync (say, no
    /// permission to read kube-system Services) holds up only the policies that need it.
    pub(crate) async fn caches_synced(&self, policy: &GoREALSecurityPolicy) -> bool {
        let needed = async {
            self.workloads.wait_until_ready().await
                && (policy.spec.network_policy.is_none() || self.network.wait_until_ready().await)
                && (policy.spec.alerting.is_none()
                    || (self.alerting.config_maps.wait_until_ready().await.is_ok()
                        && self.alerting.rule_crd.wait_until_ready().await.is_ok()
                        // Once the API exists its objects must be known, or the plan would
                        // prune and recreate them.
                        && (!self.alerting.prometheus_rule_api()
                            || self.alerting.prometheus_rules.wait_until_ready().await.is_ok())))
                && (policy.spec.rate_limiting.is_none()
                    || (self.alerting.config_maps.wait_until_ready().await.is_ok()
                        && self.ingresses.wait_until_ready().await.is_ok()
                        && self.gateway.synced().await))
                && (policy.spec.secret_rotation.is_none()
                    || self.secrets.wait_until_ready().await.is_ok())
        };
        let synced = tokio::time::timeout(Duration::from_secs(5), needed)
            .await
            .unwrap_or(false);
        if !synced {
            tracing::warn!(policy = %policy.name_any(), "watch caches not synced yet: nothing planned");
        }
        synced
    }
}

/// Options of `run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Watch one namespace only.
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Elect one writer on a Lease; `None` runs as the only replica, always writing.
    pub leader_election: Option<LeaderElection>,
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

fn watch_namespaced<K>(client: &Client, namespace: Option<&str>) -> (Store<K>, WatchStream<K>)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    watch_cached(
        api_for::<K>(client, namespace),
        watcher::Config::default().any_semantic(),
    )
}

/// A reflector cache over `api` and the stream of objects it touched.
fn watch_cached<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, WatchStream<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
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

/// The policy a generated object names in its policy label, in the object's namespace.
fn owner_policy(
    policies: &Store<GoREALSecurityPolicy>,
    metadata: &kube::core::ObjectMeta,
) -> Vec<ObjectRef<GoREALSecurityPolicy>> {
    let namespace = metadata.namespace.clone().unwrap_or_default();
    let label = metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::POLICY_LABEL));
    policies_in(policies, &namespace)
        .iter()
        .filter(|p| Some(&names::policy_label_value(&p.name_any())) == label)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// A watch of a custom resource whose API may not exist when the operator starts: a task waits
/// until the CRD cache shows `version` established (no request while waiting), then runs the
/// watch into the cache and forwards the objects it touched to the controller.
fn watch_once_established(
    client: &Client,
    namespace: Option<&str>,
    resource: ApiResource,
    config: watcher::Config,
    crd: Store<CustomResourceDefinition>,
    version: &'static str,
) -> (
    Store<DynamicObject>,
    WatchStream<DynamicObject>,
    tokio::task::JoinHandle<()>,
) {
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    let kind = resource.kind.clone();
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    let task = tokio::spawn(async move {
        while !crd.state().iter().any(|crd| crd_serves(crd, version)) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tracing::info!(%kind, "API established: watching");
        let mut touched = std::pin::pin!(
            watcher(api, config)
                .default_backoff()
                .modify(slim::<DynamicObject>)
                .reflect(writer)
                .touched_objects()
        );
        while let Some(item) = touched.next().await {
            match item {
                Ok(object) => {
                    if sender.unbounded_send(object).is_err() {
                        break;
                    }
                }
                Err(error) => tracing::debug!(%kind, %error, "watch error; retrying"),
            }
        }
    });
    (reader, Box::pin(receiver.map(Ok)), task)
}

/// A watch of one CustomResourceDefinition, by name.
fn watch_crd(
    client: &Client,
    name: &str,
) -> (
    Store<CustomResourceDefinition>,
    WatchStream<CustomResourceDefinition>,
) {
    watch_cached(
        Api::<CustomResourceDefinition>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
}

/// The API resource of an `(apiVersion, kind)` pair.
fn resource_of((group_version, kind): (&str, &str)) -> ApiResource {
    let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// The cached policies that have a section (`has`), in `namespace` or everywhere: those to
/// reconcile for an event on something that section reads.
fn policies_with(
    policies: &Store<GoREALSecurityPolicy>,
    namespace: Option<&str>,
    has: fn(&GoREALSecurityPolicy) -> bool,
) -> Vec<ObjectRef<GoREALSecurityPolicy>> {
    policies
        .state()
        .iter()
        .filter(|p| has(p))
        .filter(|p| namespace.is_none_or(|ns| p.namespace().as_deref() == Some(ns)))
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

fn has_network(policy: &GoREALSecurityPolicy) -> bool {
    policy.spec.network_policy.is_some()
}

fn has_rate_limit(policy: &GoREALSecurityPolicy) -> bool {
    policy.spec.rate_limiting.is_some()
}

/// Runs the controller until `shutdown` resolves. `ready` turns true once every cache synced;
/// each item of `reconcile_all` reconciles every policy again. With leader election, every
/// replica watches (so its caches stay warm and it is ready), only the Lease holder reconciles,
/// and a replica that takes over reconciles every policy once. Fails only on lease settings the
/// Lease cannot use.
pub async fn run(
    client: Client,
    options: RunOptions,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    reconcile_all: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), SettingsError> {
    let mut leadership = match &options.leader_election {
        Some(settings) => {
            let gauge = metrics.leader.clone();
            Leadership::campaign(client.clone(), settings, move |leader| {
                gauge.set(i64::from(leader));
            })?
        }
        None => Leadership::sole(),
    };
    let is_leader = leadership.is_leader.clone();
    metrics
        .leader
        .set(i64::from(is_leader.load(Ordering::SeqCst)));
    let reconcile_all = futures::stream::select(
        reconcile_all,
        std::mem::replace(
            &mut leadership.takeovers,
            Box::pin(futures::stream::empty()),
        ),
    );
    let namespace = options.namespace.as_deref();
    // Workloads are cached compactly (see `compact`): the caches hold every workload.
    let (deployments, deployment_events) =
        watch_namespaced::<Compact<Deployment>>(&client, namespace);
    let (stateful_sets, stateful_set_events) =
        watch_namespaced::<Compact<StatefulSet>>(&client, namespace);
    let (daemon_sets, daemon_set_events) =
        watch_namespaced::<Compact<DaemonSet>>(&client, namespace);
    let (replica_sets, replica_set_events) =
        watch_namespaced::<Compact<ReplicaSet>>(&client, namespace);
    let (jobs, job_events) = watch_namespaced::<Compact<Job>>(&client, namespace);
    let (cron_jobs, cron_job_events) = watch_namespaced::<Compact<CronJob>>(&client, namespace);
    let workloads = WorkloadStores {
        deployments,
        stateful_sets,
        daemon_sets,
        replica_sets,
        jobs,
        cron_jobs,
    };

    // Every NetworkPolicy, not only the operator's: the checks read them all, and applies rely
    // on it (`apply::CACHED_WHOLE`).
    let (network_policies, network_policy_events) =
        watch_namespaced::<NetworkPolicy>(&client, namespace);
    let (ingresses, ingress_events) = watch_namespaced::<Ingress>(&client, namespace);
    let label = |(key, value): (&str, &str)| format!("{key}={value}");
    let (dns_services, dns_events) = watch_cached(
        Api::<Service>::namespaced(client.clone(), DNS_NAMESPACE),
        watcher::Config::default().labels(&label(DNS_SERVICE_LABEL)),
    );
    let (api_server_slices, api_server_events) = watch_cached(
        Api::<EndpointSlice>::namespaced(client.clone(), API_SERVER_NAMESPACE),
        watcher::Config::default().labels(&label(API_SERVER_SLICE_LABEL)),
    );
    let network = NetworkStores {
        network_policies,
        dns_services,
        api_server_slices,
    };

    let managed = format!("{}={}", names::MANAGED_BY_LABEL, names::MANAGED_BY_VALUE);
    let (config_maps, config_map_events) = watch_cached(
        api_for::<ConfigMap>(&client, namespace),
        watcher::Config::default().labels(&managed).any_semantic(),
    );
    let (rule_crd, rule_crd_events) = watch_crd(&client, PROMETHEUS_RULE_CRD);
    let (prometheus_rules, prometheus_rule_events, prometheus_rule_task) = watch_once_established(
        &client,
        namespace,
        resource_of(crate::policy::alerting::PROMETHEUS_RULE),
        watcher::Config::default().labels(&managed).any_semantic(),
        rule_crd.clone(),
        "v1",
    );
    // HTTPRoutes (all of them: the selector is the policy's) and the operator's
    // BackendTrafficPolicies, each once its CRD exists.
    let (route_crd, route_crd_events) = watch_crd(&client, HTTP_ROUTE_CRD);
    let (traffic_policy_crd, traffic_policy_crd_events) = watch_crd(&client, TRAFFIC_POLICY_CRD);
    let (routes, route_events, route_task) = watch_once_established(
        &client,
        namespace,
        resource_of(crate::policy::rate_limit::HTTP_ROUTE),
        watcher::Config::default().any_semantic(),
        route_crd.clone(),
        "v1",
    );
    let (traffic_policies, traffic_policy_events, traffic_policy_task) = watch_once_established(
        &client,
        namespace,
        resource_of(crate::policy::rate_limit::TRAFFIC_POLICY),
        watcher::Config::default().labels(&managed).any_semantic(),
        traffic_policy_crd.clone(),
        "v1alpha1",
    );
    let (report_crd, report_crd_events) = watch_crd(&client, POLICY_REPORT_CRD);
    let (policy_reports, policy_report_events, policy_report_task) = watch_once_established(
        &client,
        namespace,
        resource_of(crate::policy::policy_report::POLICY_REPORT),
        watcher::Config::default().labels(&managed).any_semantic(),
        report_crd.clone(),
        "v1alpha2",
    );
    let reports = ReportStores {
        reports: policy_reports,
        crd: report_crd,
    };
    let gateway = GatewayStores {
        routes,
        traffic_policies,
        route_crd,
        traffic_policy_crd,
    };
    let alerting = AlertingStores {
        config_maps,
        prometheus_rules,
        rule_crd,
    };

    // Only the operator's own Secrets are watched, and only their metadata: values are read
    // right before a write, never cached.
    let secrets_selector = format!(
        "{managed},{}={}",
        names::COMPONENT_LABEL,
        crate::policy::secrets::COMPONENT
    );
    let (secrets, secrets_writer) = reflector::store();
    let secret_events = watcher(
        match namespace {
            Some(namespace) => {
                Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), namespace)
            }
            None => Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        },
        watcher::Config::default()
            .labels(&secrets_selector)
            .any_semantic(),
    )
    .default_backoff()
    .modify(slim::<PartialObjectMeta<Secret>>)
    .reflect(secrets_writer)
    .touched_objects();

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
        .watches_stream(network_policy_events, {
            // Any NetworkPolicy of a namespace can change what its policies' pods are open to.
            let policies = policies.clone();
            move |object: NetworkPolicy| {
                policies_with(&policies, object.metadata.namespace.as_deref(), has_network)
            }
        })
        .watches_stream(ingress_events, {
            let policies = policies.clone();
            move |object: Ingress| {
                policies_with(
                    &policies,
                    object.metadata.namespace.as_deref(),
                    has_rate_limit,
                )
            }
        })
        .watches_stream(dns_events, {
            let policies = policies.clone();
            move |_: Service| policies_with(&policies, None, has_network)
        })
        .watches_stream(api_server_events, {
            let policies = policies.clone();
            move |_: EndpointSlice| policies_with(&policies, None, has_network)
        })
        .watches_stream(config_map_events, {
            let policies = policies.clone();
            move |object: ConfigMap| owner_policy(&policies, &object.metadata)
        })
        .watches_stream_with(
            prometheus_rule_events,
            {
                let policies = policies.clone();
                move |object: DynamicObject| owner_policy(&policies, &object.metadata)
            },
            resource_of(crate::policy::alerting::PROMETHEUS_RULE),
        )
        .watches_stream(rule_crd_events, {
            // The PrometheusRule API appearing or going switches every alerting policy's output.
            let policies = policies.clone();
            move |_: CustomResourceDefinition| {
                policies_with(&policies, None, |p| p.spec.alerting.is_some())
            }
        })
        .watches_stream_with(
            route_events,
            {
                let policies = policies.clone();
                move |object: DynamicObject| {
                    policies_with(
                        &policies,
                        object.metadata.namespace.as_deref(),
                        has_rate_limit,
                    )
                }
            },
            resource_of(crate::policy::rate_limit::HTTP_ROUTE),
        )
        .watches_stream_with(
            traffic_policy_events,
            {
                let policies = policies.clone();
                move |object: DynamicObject| owner_policy(&policies, &object.metadata)
            },
            resource_of(crate::policy::rate_limit::TRAFFIC_POLICY),
        )
        .watches_stream_with(
            policy_report_events,
            {
                let policies = policies.clone();
                move |object: DynamicObject| owner_policy(&policies, &object.metadata)
            },
            resource_of(crate::policy::policy_report::POLICY_REPORT),
        )
        .watches_stream(report_crd_events, {
            // The report API appearing makes every policy write its report.
            let policies = policies.clone();
            move |_: CustomResourceDefinition| policies_with(&policies, None, |_| true)
        })
        .watches_stream(route_crd_events, {
            let policies = policies.clone();
            move |_: CustomResourceDefinition| policies_with(&policies, None, has_rate_limit)
        })
        .watches_stream(traffic_policy_crd_events, {
            let policies = policies.clone();
            move |_: CustomResourceDefinition| policies_with(&policies, None, has_rate_limit)
        })
        .watches_stream(secret_events, {
            let policies = policies.clone();
            move |object: PartialObjectMeta<Secret>| owner_policy(&policies, &object.metadata)
        })
        .watches_stream(deployment_events, map!(Compact<Deployment>))
        .watches_stream(stateful_set_events, map!(Compact<StatefulSet>))
        .watches_stream(daemon_set_events, map!(Compact<DaemonSet>))
        .watches_stream(replica_set_events, map!(Compact<ReplicaSet>))
        .watches_stream(job_events, map!(Compact<Job>))
        .watches_stream(cron_job_events, map!(Compact<CronJob>))
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
        network: network.clone(),
        alerting: alerting.clone(),
        secrets: secrets.clone(),
        ingresses: ingresses.clone(),
        gateway: gateway.clone(),
        reports: reports.clone(),
        metrics,
        is_leader,
        refusals: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        rotation_gauges: Mutex::new(HashMap::new()),
    });
    let readiness = {
        let policies = policies.clone();
        tokio::spawn(async move {
            if workloads.wait_until_ready().await
                && network.wait_until_ready().await
                && alerting.config_maps.wait_until_ready().await.is_ok()
                && alerting.rule_crd.wait_until_ready().await.is_ok()
                && secrets.wait_until_ready().await.is_ok()
                && ingresses.wait_until_ready().await.is_ok()
                && gateway.route_crd.wait_until_ready().await.is_ok()
                && gateway.traffic_policy_crd.wait_until_ready().await.is_ok()
                && reports.crd.wait_until_ready().await.is_ok()
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
    for task in [
        prometheus_rule_task,
        route_task,
        traffic_policy_task,
        policy_report_task,
    ] {
        task.abort();
    }
    // Releasing the Lease lets another replica take over at once, not after it expires.
    leadership.resign().await;
    Ok(())
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
    ctx.metrics
        .reconcile_failures
        .with_label_values(&[
            policy.namespace().unwrap_or_default().as_str(),
            policy.name_any().as_str(),
        ])
        .set(i64::from(attempts));
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
