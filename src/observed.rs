//! The `Observed` snapshot: what the planners may know about the cluster, gathered by the
//! controller from its caches or by `render` from files. Plain data; no API access.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::Value;

/// Everything a policy's plan depends on.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The policy's namespace.
    pub namespace: NamespaceState,
    /// Every workload of the namespace, selected or not (deselected ones may need releasing).
    pub workloads: Vec<Workload>,
    /// Names of the policies that exist in the namespace, this one included.
    pub policies: BTreeSet<String>,
    /// NetworkPolicies of the namespace: the operator's and everyone else's.
    pub network_policies: Vec<NetworkPolicy>,
    /// The cluster DNS Service(s): `kube-system` Services labelled `k8s-app=kube-dns`.
    pub dns_services: Vec<Service>,
    /// EndpointSlices of the `kubernetes` Service in `default`: the API server's addresses.
    pub api_server_slices: Vec<EndpointSlice>,
    /// Generated objects of the namespace whose kinds are watched by the operator's managed-by
    /// label (ConfigMaps, PrometheusRules, BackendTrafficPolicies), as JSON with `apiVersion`
    /// and `kind`; each planner picks its own by component label.
    pub generated_objects: Vec<serde_json::Value>,
    /// The `monitoring.coreos.com/v1` PrometheusRule API is served.
    pub prometheus_rule_api: bool,
    /// Ingresses of the namespace (for ingress-nginx rate limit annotations).
    pub ingresses: Vec<IngressInfo>,
    /// HTTPRoutes of the namespace (for the Envoy Gateway rate limit policy).
    pub http_routes: Vec<RouteInfo>,
    /// Envoy Gateway's `gateway.envoyproxy.io/v1alpha1` BackendTrafficPolicy API is served.
    pub traffic_policy_api: bool,
    /// The `wgpolicyk8s.io/v1alpha2` PolicyReport API is served.
    pub policy_report_api: bool,
    /// Secrets of the namespace that the policy names or that carry the operator's managed-by
    /// label: metadata only, never values.
    pub secrets: Vec<SecretMeta>,
    /// The time of the snapshot: rotations fall due against it.
    pub now: jiff::Timestamp,
}

/// A Secret's metadata, as the secrets planner reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretMeta {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// UID.
    pub uid: Option<String>,
    /// resourceVersion.
    pub resource_version: Option<String>,
    /// Creation time.
    pub created: Option<jiff::Timestamp>,
}

impl SecretMeta {
    /// The Secret's metadata view.
    pub fn from_meta(meta: &ObjectMeta) -> SecretMeta {
        SecretMeta {
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// Namespace of the cluster DNS Service.
pub const DNS_NAMESPACE: &str = "kube-system";
/// Label that marks the cluster DNS Service (CoreDNS and kube-dns alike).
pub const DNS_SERVICE_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// Namespace of the `kubernetes` Service.
pub const API_SERVER_NAMESPACE: &str = "default";
/// Label that ties EndpointSlices to their Service, and the API server Service's name.
pub const API_SERVER_SLICE_LABEL: (&str, &str) = ("kubernetes.io/service-name", "kubernetes");

/// An HTTPRoute, as the rate limit planner reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The parts of an Ingress the rate limit planner reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngressInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Every path its rules route (`/` for a default backend or a rule without paths).
    pub paths: Vec<String>,
    /// `metadata.resourceVersion`: a refused patch is retried once the Ingress changes (its
    /// annotations included, which do not move the generation).
    pub resource_version: Option<String>,
}

impl IngressInfo {
    /// The planner's view of an Ingress.
    pub fn from_ingress(ingress: &k8s_openapi::api::networking::v1::Ingress) -> IngressInfo {
        let spec = ingress.spec.clone().unwrap_or_default();
        let mut paths: Vec<String> = spec
            .rules
            .iter()
            .flatten()
            .flat_map(|rule| match &rule.http {
                Some(http) => http
                    .paths
                    .iter()
                    .map(|p| p.path.clone().unwrap_or_else(|| "/".into()))
                    .collect(),
                None => vec!["/".to_string()],
            })
            .collect();
        if spec.default_backend.is_some() {
            paths.push("/".into());
        }
        paths.sort();
        paths.dedup();
        IngressInfo {
            name: ingress.metadata.name.clone().unwrap_or_default(),
            labels: ingress.metadata.labels.clone().unwrap_or_default(),
            annotations: ingress.metadata.annotations.clone().unwrap_or_default(),
            paths,
            resource_version: ingress.metadata.resource_version.clone(),
        }
    }
}

/// The parts of the Namespace object the planners read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceState {
    /// Namespace name.
    pub name: String,
    /// Current labels.
    pub labels: BTreeMap<String, String>,
    /// Whether the operator's field manager holds fields of the namespace.
    pub labelled_by_us: bool,
    /// The policy named by the namespace's labelled-by annotation.
    pub labelled_by: Option<String>,
    /// resourceVersion, when read from the API server.
    pub resource_version: Option<String>,
}

/// The workload kinds whose pod templates a policy hardens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 ReplicaSet without an owner.
    ReplicaSet,
    /// batch/v1 Job without an owning CronJob.
    Job,
    /// batch/v1 CronJob.
    CronJob,
}

impl WorkloadKind {
    /// Every kind, in the order workloads are reported.
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::ReplicaSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
    ];

    /// `apiVersion` of the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            WorkloadKind::Job | WorkloadKind::CronJob => "batch/v1",
            _ => "apps/v1",
        }
    }

    /// `kind` as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
        }
    }

    /// Parses a `kind` value.
    pub fn from_kind(kind: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Wraps a pod template patch in the object structure of this kind.
    pub fn nest_template(self, template: Value) -> Value {
        match self {
            WorkloadKind::CronJob => {
                serde_json::json!({ "jobTemplate": { "spec": { "template": template } } })
            }
            _ => serde_json::json!({ "template": template }),
        }
    }
}

/// A workload reduced to what hardening needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Kind.
    pub kind: WorkloadKind,
    /// Name.
    pub name: String,
    /// `metadata.generation`: changes with the spec only, not with status updates.
    pub generation: Option<i64>,
    /// Annotations of the workload object (not of its template).
    pub annotations: BTreeMap<String, String>,
    /// Owner references.
    pub owner_references: Vec<OwnerReference>,
    /// Creation time, when known.
    pub created: Option<jiff::Timestamp>,
    /// The pod template.
    pub template: PodTemplateSpec,
}

impl Workload {
    /// `Kind/name`, the form used in status and events.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }

    /// Labels of the pod template, which the policy selector matches.
    pub fn template_labels(&self) -> BTreeMap<String, String> {
        self.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }

    /// The controller owner reference, if any.
    pub fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|o| o.controller == Some(true))
    }

    /// A ReplicaSet or Job created by a built-in controller (Deployment, CronJob): its parent is
    /// hardened instead, so it is not a workload of its own.
    pub fn is_built_in_child(&self) -> bool {
        matches!(self.kind, WorkloadKind::ReplicaSet | WorkloadKind::Job)
            && self
                .controller()
                .is_some_and(|o| is_built_in_api(&o.api_version))
    }

    /// Controlled by another operator's custom resource: reported, never patched.
    pub fn is_unmanaged(&self) -> bool {
        self.controller()
            .is_some_and(|o| !is_built_in_api(&o.api_version))
    }
}

/// API groups served by Kubernetes itself (as opposed to custom resources).
fn is_built_in_api(api_version: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io")
}

/// A typed workload object the operator can harden.
pub trait WorkloadResource {
    /// The kind.
    const KIND: WorkloadKind;
    /// Object metadata.
    fn object_meta(&self) -> &ObjectMeta;
    /// The pod template, when the object has one.
    fn template(&self) -> Option<Cow<'_, PodTemplateSpec>>;

    /// The workload view of the object; `None` without a spec.
    fn to_workload(&self) -> Option<Workload> {
        let meta = self.object_meta();
        Some(Workload {
            kind: Self::KIND,
            name: meta.name.clone()?,
            generation: meta.generation,
            annotations: meta.annotations.clone().unwrap_or_default(),
            owner_references: meta.owner_references.clone().unwrap_or_default(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            template: self.template()?.into_owned(),
        })
    }
}

macro_rules! workload_resource {
    ($ty:ty, $kind:expr, |$spec:ident| $template:expr) => {
        impl WorkloadResource for $ty {
            const KIND: WorkloadKind = $kind;
            fn object_meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
                {
                    let $spec = &self.spec;
                    Some(Cow::Borrowed($template))
                }
            }
        }
    };
}

workload_resource!(Deployment, WorkloadKind::Deployment, |s| &s.template);
workload_resource!(StatefulSet, WorkloadKind::StatefulSet, |s| &s.template);
workload_resource!(DaemonSet, WorkloadKind::DaemonSet, |s| &s.template);

impl WorkloadResource for ReplicaSet {
    const KIND: WorkloadKind = WorkloadKind::ReplicaSet;
    fn object_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        self.spec.template.as_ref().map(Cow::Borrowed)
    }
}

impl WorkloadResource for Job {
    const KIND: WorkloadKind = WorkloadKind::Job;
    fn object_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        self.spec.as_ref().map(|s| Cow::Borrowed(&s.template))
    }
}

impl WorkloadResource for CronJob {
    const KIND: WorkloadKind = WorkloadKind::CronJob;
    fn object_meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        self.spec
            .job_template
            .spec
            .as_ref()
            .map(|j| Cow::Borrowed(&j.template))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_by(api_version: &str, kind: &str) -> Workload {
        Workload {
            kind: WorkloadKind::ReplicaSet,
            name: "rs".into(),
            generation: None,
            annotations: BTreeMap::new(),
            owner_references: vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: "owner".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: None,
            }],
            created: None,
            template: PodTemplateSpec::default(),
        }
    }

    #[test]
    fn replica_set_of_a_deployment_is_a_built_in_child() {
        let rs = owned_by("apps/v1", "Deployment");
        assert!(rs.is_built_in_child());
        assert!(!rs.is_unmanaged());
    }

    #[test]
    fn workload_controlled_by_a_custom_resource_is_unmanaged() {
        let rs = owned_by("argoproj.io/v1alpha1", "Rollout");
        assert!(rs.is_unmanaged());
        assert!(!rs.is_built_in_child());
    }

    #[test]
    fn cronjob_templates_nest_under_job_template() {
        let nested = WorkloadKind::CronJob.nest_template(serde_json::json!({"spec": {}}));
        assert!(nested.pointer("/jobTemplate/spec/template/spec").is_some());
    }
}
