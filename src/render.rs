//! Offline `render`: reads a policy and workload manifests from files and prints what the
//! controller would apply and the compliance result, through the same validate and plan code.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::crd::{GoREALSecurityPolicy, Mode};
use crate::model;
use crate::observed::{
    IngressInfo, NamespaceState, Observed, RouteInfo, SecretMeta, Workload, WorkloadResource,
};
use crate::policy;
use crate::status::{self, Outcome};

/// A manifest that could not be read or understood.
#[derive(thiserror::Error, Debug)]
pub enum RenderError {
    /// The file could not be read.
    #[error("{path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why (not a `source`: the message already says it).
        cause: std::io::Error,
    },
    /// The YAML did not parse.
    #[error("{path}: {message}")]
    Yaml {
        /// The file.
        path: String,
        /// Parser message, with line and column.
        message: String,
    },
    /// A document is not a valid object of its kind.
    #[error("{path}: document {index} ({kind} {name}): {message}")]
    Object {
        /// The file.
        path: String,
        /// 1-based document index in the file.
        index: usize,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The input holds no policy.
    #[error("no GoREALSecurityPolicy found in the given files")]
    NoPolicy,
}

/// Objects read from manifests.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Policies.
    pub policies: Vec<GoREALSecurityPolicy>,
    /// Workloads with their namespace (absent: the policy's).
    pub workloads: Vec<(Option<String>, Workload)>,
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// NetworkPolicies already in place.
    pub network_policies: Vec<NetworkPolicy>,
    /// Services (the cluster DNS Service is read from them).
    pub services: Vec<Service>,
    /// EndpointSlices (the API server's addresses are read from them).
    pub endpoint_slices: Vec<EndpointSlice>,
    /// The PrometheusRule CRD is among the manifests: alert rules render as a PrometheusRule.
    pub prometheus_rule_crd: bool,
    /// Metadata of the Secrets among the manifests (their values are never kept).
    pub secrets: Vec<(Option<String>, SecretMeta)>,
    /// Ingresses with their namespace (absent: the policy's).
    pub ingresses: Vec<(Option<String>, IngressInfo)>,
    /// HTTPRoutes with their namespace (absent: the policy's).
    pub http_routes: Vec<(Option<String>, RouteInfo)>,
    /// Envoy Gateway's BackendTrafficPolicy CRD is among the manifests.
    pub traffic_policy_crd: bool,
    /// Where each object came from, for reports that point at a file and line.
    pub sources: Vec<Source>,
    /// Kinds of the documents that were skipped (nothing reads them), with their counts.
    pub skipped_kinds: std::collections::BTreeMap<String, usize>,
}

/// The file and line of one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Source {
    /// Kind.
    pub kind: String,
    /// Namespace as written (absent: the policy's).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The file.
    pub path: String,
    /// 1-based line where its document starts.
    pub line: usize,
}

/// The 1-based first line of each document of a multi-document YAML text. Segments with no
/// content (only comments or blank lines) are no document, as the parser sees it.
fn document_lines(text: &str) -> Vec<usize> {
    // (first line of the segment, whether it has content)
    let mut segments = vec![(1, false)];
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if line.starts_with("---") {
            segments.push((i + 2, false));
        } else if !trimmed.is_empty()
            && !trimmed.starts_with('#')
            && !trimmed.starts_with('%')
            && let Some(last) = segments.last_mut()
        {
            last.1 = true;
        }
    }
    segments
        .into_iter()
        .filter(|(_, content)| *content)
        .map(|(line, _)| line)
        .collect()
}

/// The YAML files under the given paths: files as given, directories searched recursively for
/// `.yaml` and `.yml` in name order.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RenderError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|cause| RenderError::Read {
                    path: path.display().to_string(),
                    cause,
                })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            // Symlinked directories inside a tree are not followed, so a link loop cannot recurse.
            let nested: Vec<PathBuf> = entries
                .into_iter()
                .filter(|p| {
                    let real_dir = p.symlink_metadata().is_ok_and(|m| m.file_type().is_dir());
                    real_dir
                        || (!p.is_dir() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                })
                .collect();
            files.extend(collect_files(&nested)?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Reads every manifest of the given files and directories.
pub fn load(paths: &[PathBuf]) -> Result<Manifests, RenderError> {
    let mut manifests = Manifests::default();
    for file in collect_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|cause| RenderError::Read {
            path: file.display().to_string(),
            cause,
        })?;
        parse_into(&file, &text, &mut manifests)?;
    }
    Ok(manifests)
}

/// Parses a multi-document YAML text into `manifests`; kinds the operator does not read are
/// skipped.
pub fn parse_into(file: &Path, text: &str, manifests: &mut Manifests) -> Result<(), RenderError> {
    let path = file.display().to_string();
    // YAML 1.2 booleans only: `n`, `no` or `on` as a name must stay a string, as in kubectl.
    let options = serde_saphyr::options! { strict_booleans: true, with_snippet: false };
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| RenderError::Yaml {
            path: path.clone(),
            message: e.to_string().trim_start_matches("error: ").to_string(),
        })?;
    let lines = document_lines(text);
    for (i, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let source = Source {
            kind: document
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            namespace: document
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            name: document
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            path: path.clone(),
            line: lines.get(i).copied().unwrap_or(1),
        };
        let kind = document
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = document
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
            .to_string();
        let error = |message: String| RenderError::Object {
            path: path.clone(),
            index: i + 1,
            kind: kind.clone(),
            name: name.clone(),
            message,
        };
        /// Decodes a document, naming the offending field's path on error.
        fn typed<T: DeserializeOwned>(value: Value) -> Result<T, String> {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                }
            })
        }
        fn workload<T: DeserializeOwned + WorkloadResource>(
            value: Value,
        ) -> Result<(Option<String>, Workload), String> {
            let object: T = typed(value)?;
            let namespace = object.object_meta().namespace.clone();
            let workload = object.to_workload().ok_or("has no spec.template")?;
            Ok((namespace, workload))
        }
        type Parse = fn(Value) -> Result<(Option<String>, Workload), String>;
        let parse_workload: Option<Parse> = match kind.as_str() {
            "Deployment" => Some(workload::<Deployment>),
            "StatefulSet" => Some(workload::<StatefulSet>),
            "DaemonSet" => Some(workload::<DaemonSet>),
            "ReplicaSet" => Some(workload::<ReplicaSet>),
            "Job" => Some(workload::<Job>),
            "CronJob" => Some(workload::<CronJob>),
            _ => None,
        };
        match (kind.as_str(), parse_workload) {
            ("GoREALSecurityPolicy", _) => manifests.policies.push(typed(document).map_err(error)?),
            ("Namespace", _) => manifests.namespaces.push(typed(document).map_err(error)?),
            ("NetworkPolicy", _) => manifests
                .network_policies
                .push(typed(document).map_err(error)?),
            ("Service", _) => manifests.services.push(typed(document).map_err(error)?),
            ("CustomResourceDefinition", _) if name == "prometheusrules.monitoring.coreos.com" => {
                manifests.prometheus_rule_crd = true;
            }
            ("CustomResourceDefinition", _)
                if name == "backendtrafficpolicies.gateway.envoyproxy.io" =>
            {
                manifests.traffic_policy_crd = true;
            }
            ("HTTPRoute", _) => {
                let metadata: ObjectMeta =
                    typed(document.get("metadata").cloned().unwrap_or_default()).map_err(error)?;
                manifests.http_routes.push((
                    metadata.namespace.clone(),
                    RouteInfo {
                        name: metadata.name.clone().unwrap_or_default(),
                        labels: metadata.labels.clone().unwrap_or_default(),
                    },
                ));
            }
            ("Secret", _) => {
                let metadata: ObjectMeta =
                    typed(document.get("metadata").cloned().unwrap_or_default()).map_err(error)?;
                manifests
                    .secrets
                    .push((metadata.namespace.clone(), SecretMeta::from_meta(&metadata)));
            }
            ("Ingress", _) => {
                let ingress: k8s_openapi::api::networking::v1::Ingress =
                    typed(document).map_err(error)?;
                manifests.ingresses.push((
                    ingress.metadata.namespace.clone(),
                    IngressInfo::from_ingress(&ingress),
                ));
            }
            ("EndpointSlice", _) => manifests
                .endpoint_slices
                .push(typed(document).map_err(error)?),
            (_, Some(parse)) => manifests.workloads.push(parse(document).map_err(error)?),
            // Kinds the operator does not read (Services, ConfigMaps, ...).
            (_, None) => {
                *manifests
                    .skipped_kinds
                    .entry(source.kind.clone())
                    .or_default() += 1;
                continue;
            }
        }
        manifests.sources.push(source);
    }
    Ok(())
}

/// The result of rendering: YAML documents and whether every policy was valid.
pub struct Rendered {
    /// Multi-document YAML: per policy its patches, namespace labels and status.
    pub yaml: String,
    /// Every policy passed validation.
    pub all_valid: bool,
}

/// Plans every policy of the manifests as the controller would, assuming every patch applies.
pub fn render(manifests: &Manifests, now: Timestamp) -> Result<Rendered, RenderError> {
    if manifests.policies.is_empty() {
        return Err(RenderError::NoPolicy);
    }
    let mut documents: Vec<Value> = Vec::new();
    let mut all_valid = true;
    for raw in &manifests.policies {
        let mut raw = raw.clone();
        let namespace = raw.namespace().unwrap_or_else(|| "default".into());
        raw.metadata.namespace = Some(namespace.clone());
        let mut observed = observed_for(manifests, &namespace);
        observed.now = now;
        let outcome = match model::validate(&raw) {
            Err(problems) => {
                all_valid = false;
                Outcome::Invalid(model::describe(&problems))
            }
            Ok(validated) => {
                let enforce = validated.mode == Mode::Enforce;
                let mut resources = Vec::new();
                if enforce {
                    for secret in created_secrets(&validated, &mut observed)? {
                        resources.push(policy::secrets::secret_reference(&secret));
                        documents.push(serde_json::to_value(&secret).map_err(|e| {
                            RenderError::Yaml {
                                path: "<output>".into(),
                                message: e.to_string(),
                            }
                        })?);
                    }
                }
                let desired = policy::plan(&validated, &observed);
                if enforce {
                    for patch in &desired.workload_patches {
                        documents.push(patch.body.clone());
                        resources.push(patch.target.resource_ref());
                    }
                    let body =
                        policy::namespace_body(&namespace, &desired.namespace, &raw.name_any());
                    if let (Some(body), policy::NamespacePlan::Apply(_)) =
                        (body, &desired.namespace)
                    {
                        documents.push(body);
                        resources.push(policy::namespace_ref(&namespace));
                    }
                    for patch in desired.rate_limit.iter().flat_map(|p| &p.ingress_patches) {
                        documents.push(patch.body.clone());
                        resources.push(patch.resource_ref());
                    }
                    for object in desired.generated.iter().filter(|g| !g.taken) {
                        documents.push(object.body.clone());
                        resources.push(object.resource_ref());
                    }
                }
                resources.sort();
                let (compliance, workloads) = policy::report(
                    &validated,
                    &desired,
                    &|_| true,
                    &policy::Refusals::default(),
                );
                let alert_rules = desired.alert_rules_state(&validated, &|_| true);
                let rate_limits = desired.rate_limits_state(&validated, &|_| true);
                Outcome::Planned {
                    audit: !enforce,
                    conflicts: vec![],
                    rejected: vec![],
                    compliance,
                    workloads,
                    resources,
                    alert_rules,
                    rate_limits,
                    fail_on: validated.fail_on,
                    secrets: desired
                        .secrets
                        .as_ref()
                        .map(policy::secrets::status)
                        .unwrap_or_default(),
                }
            }
        };
        let status = status::build(None, raw.metadata.generation, &outcome, None, now);
        documents.push(json!({
            "apiVersion": "security.goreal.io/v1alpha1",
            "kind": "GoREALSecurityPolicy",
            "metadata": { "name": raw.name_any(), "namespace": namespace },
            "status": status,
        }));
    }
    let yaml = serde_saphyr::to_string_multiple(&documents).map_err(|e| RenderError::Yaml {
        path: "<output>".into(),
        message: e.to_string(),
    })?;
    Ok(Rendered { yaml, all_valid })
}

/// What the planners may know about `namespace` from the manifests.
pub fn observed_for(manifests: &Manifests, namespace: &str) -> Observed {
    let labels = manifests
        .namespaces
        .iter()
        .find(|n| n.name_any() == namespace)
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    Observed {
        namespace: NamespaceState {
            name: namespace.into(),
            labels,
            labelled_by_us: false,
            labelled_by: None,
            resource_version: None,
        },
        policies: manifests
            .policies
            .iter()
            .filter(|p| p.namespace().as_deref().unwrap_or("default") == namespace)
            .map(|p| p.name_any())
            .collect(),
        workloads: in_namespace(&manifests.workloads, namespace),
        network_policies: manifests
            .network_policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref().unwrap_or(namespace) == namespace)
            .map(|p| {
                let mut p = p.clone();
                p.metadata.namespace = Some(namespace.into());
                p
            })
            .collect(),
        dns_services: manifests.services.clone(),
        api_server_slices: manifests.endpoint_slices.clone(),
        generated_objects: Vec::new(),
        prometheus_rule_api: manifests.prometheus_rule_crd,
        secrets: in_namespace(&manifests.secrets, namespace),
        ingresses: in_namespace(&manifests.ingresses, namespace),
        http_routes: in_namespace(&manifests.http_routes, namespace),
        traffic_policy_api: manifests.traffic_policy_crd,
        policy_report_api: false,
        now: Timestamp::UNIX_EPOCH,
    }
}

/// The items of `namespace` (an item without one is in every policy's namespace).
fn in_namespace<T: Clone>(items: &[(Option<String>, T)], namespace: &str) -> Vec<T> {
    items
        .iter()
        .filter(|(ns, _)| ns.as_deref().unwrap_or(namespace) == namespace)
        .map(|(_, item)| item.clone())
        .collect()
}

/// The Secrets the policy would create, without their values (render never prints generated
/// values), recorded in `observed` as created. Existing Secrets are rotated only in a cluster.
fn created_secrets(
    policy: &model::ValidatedPolicy,
    observed: &mut Observed,
) -> Result<Vec<Secret>, RenderError> {
    let Some(settings) = &policy.secrets else {
        return Ok(Vec::new());
    };
    let mut created = Vec::new();
    for secret in &settings.secrets {
        let live = observed.secrets.iter().find(|s| s.name == secret.name);
        let planned = policy::secrets::plan_one(policy, secret, live, observed.now);
        if planned.action != Some(policy::secrets::SecretAction::Create) {
            continue;
        }
        let mut content = policy::secrets::secret_content(
            policy,
            secret,
            None,
            &policy::secrets::SecretAction::Create,
            observed.now,
            &mut |key| crate::secret_value::generate(key.length, key.charset),
        )
        .map_err(|e| RenderError::Yaml {
            path: "<output>".into(),
            message: e.to_string(),
        })?;
        content.data = None;
        let mut meta = SecretMeta::from_meta(&content.metadata);
        meta.created = Some(observed.now);
        observed.secrets.push(meta);
        created.push(content);
    }
    Ok(created)
}
