//! Offline `render`: reads a policy and workload manifests from files and prints what the
//! controller would apply and the compliance result, through the same validate and plan code.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::crd::{GoREALSecurityPolicy, Mode};
use crate::model;
use crate::observed::{NamespaceState, Observed, Workload, WorkloadResource};
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
    for (i, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
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
            (_, Some(parse)) => manifests.workloads.push(parse(document).map_err(error)?),
            // Kinds the operator does not read (Services, ConfigMaps, ...).
            (_, None) => {}
        }
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
        let observed = observed_for(manifests, &namespace);
        let outcome = match model::validate(&raw) {
            Err(problems) => {
                all_valid = false;
                Outcome::Invalid(model::describe(&problems))
            }
            Ok(validated) => {
                let desired = policy::plan(&validated, &observed);
                let enforce = validated.mode == Mode::Enforce;
                let mut resources = Vec::new();
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
                }
                resources.sort();
                let (compliance, workloads) = policy::report(
                    &validated,
                    &desired,
                    &|_| true,
                    &policy::Refusals::default(),
                );
                Outcome::Planned {
                    audit: !enforce,
                    conflicts: vec![],
                    rejected: vec![],
                    compliance,
                    workloads,
                    resources,
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

fn observed_for(manifests: &Manifests, namespace: &str) -> Observed {
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
        workloads: manifests
            .workloads
            .iter()
            .filter(|(ns, _)| ns.as_deref().unwrap_or(namespace) == namespace)
            .map(|(_, w)| w.clone())
            .collect(),
    }
}
