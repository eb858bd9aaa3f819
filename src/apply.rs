//! Server-side apply of the planned patches: skip what is already in effect, report field
//! conflicts and permanent refusals per object instead of forcing or failing the whole policy,
//! and release fields on cleanup.

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::error::Error;
use crate::names::FIELD_MANAGER;
use crate::observed::{NamespaceState, WorkloadKind};
use crate::policy::{
    Conflict, NamespacePlan, Rejection, WorkloadPatch, WorkloadTarget, namespace_body,
};

/// What happened to one planned patch.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplyOutcome {
    /// The live object already had every field; nothing was sent.
    Unchanged,
    /// The patch was written.
    Applied,
    /// Another manager holds some fields with other values; nothing was written.
    Conflict(Conflict),
    /// The API server refused the patch for good (invalid, forbidden); nothing was written.
    Rejected(Rejection),
}

fn api_for(client: &Client, namespace: &str, kind: WorkloadKind) -> Api<DynamicObject> {
    let (group, version) = kind.api_version().split_once('/').unwrap_or(("", "v1"));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind.as_str()));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn params(force: bool) -> PatchParams {
    let params = PatchParams::apply(FIELD_MANAGER);
    if force { params.force() } else { params }
}

/// Sorts an apply error: field conflicts and permanent refusals concern this one object and are
/// reported; everything else (stale versions, throttling, server errors, transport, expired
/// credentials) is an error that the controller retries.
fn classify(object: String, error: kube::Error) -> Result<ApplyOutcome, Error> {
    match error {
        kube::Error::Api(status) if is_field_conflict(&status) => {
            let (managers, fields) = parse_conflict(&status.message);
            Ok(ApplyOutcome::Conflict(Conflict {
                object,
                managers,
                fields,
            }))
        }
        kube::Error::Api(status) if is_permanent(status.code) => {
            Ok(ApplyOutcome::Rejected(Rejection {
                object,
                code: status.code,
                reason: status.reason,
            }))
        }
        error => Err(error.into()),
    }
}

/// Client errors that retrying the same request cannot fix.
fn is_permanent(code: u16) -> bool {
    (400..500).contains(&code) && ![401, 409, 429].contains(&code)
}

/// Applies one workload patch unless it is already in effect.
pub async fn apply_workload(
    client: &Client,
    namespace: &str,
    patch: &WorkloadPatch,
    force: bool,
) -> Result<ApplyOutcome, Error> {
    if patch.up_to_date {
        return Ok(ApplyOutcome::Unchanged);
    }
    let api = api_for(client, namespace, patch.target.kind);
    match api
        .patch(
            &patch.target.name,
            &params(force),
            &Patch::Apply(&patch.body),
        )
        .await
    {
        Ok(_) => Ok(ApplyOutcome::Applied),
        Err(error) => classify(patch.target.reference(), error),
    }
}

/// Releases every field the operator holds on a workload, and its marks, by applying an empty
/// body under the operator's field manager. A workload that is gone (the apply then fails as
/// not found or as an invalid creation) needs no release.
pub async fn release_workload(
    client: &Client,
    namespace: &str,
    target: &WorkloadTarget,
) -> Result<(), Error> {
    let api = api_for(client, namespace, target.kind);
    let body = json!({
        "apiVersion": target.kind.api_version(),
        "kind": target.kind.as_str(),
        "metadata": { "name": target.name },
    });
    match api
        .patch(&target.name, &params(false), &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 422 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Whether the live namespace already reflects the plan for this policy.
pub fn namespace_current(namespace: &NamespaceState, plan: &NamespacePlan, policy: &str) -> bool {
    match plan {
        NamespacePlan::Leave => true,
        NamespacePlan::Release => !namespace.labelled_by_us,
        NamespacePlan::Apply(labels) => {
            namespace.labelled_by_us
                && namespace.labelled_by.as_deref() == Some(policy)
                && labels
                    .iter()
                    .all(|(k, v)| namespace.labels.get(k) == Some(v))
        }
    }
}

/// Applies or releases the namespace's Pod Security Admission labels with `body` (from
/// `policy::namespace_body`).
pub async fn apply_namespace(
    client: &Client,
    namespace: &str,
    body: &Value,
    force: bool,
) -> Result<ApplyOutcome, Error> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api
        .patch(namespace, &params(force), &Patch::Apply(body))
        .await
    {
        Ok(_) => Ok(ApplyOutcome::Applied),
        Err(error) => classify(format!("Namespace/{namespace}"), error),
    }
}

/// The namespace apply body when the plan needs a write, else `None`.
pub fn namespace_write(
    namespace: &NamespaceState,
    plan: &NamespacePlan,
    policy: &str,
) -> Option<Value> {
    if namespace_current(namespace, plan, policy) {
        return None;
    }
    namespace_body(&namespace.name, plan, policy)
}

/// A 409 from server-side apply that names conflicting managers, as opposed to a stale
/// resourceVersion, which is transient.
fn is_field_conflict(status: &kube::core::Status) -> bool {
    status.code == 409 && status.message.starts_with("Apply failed with")
}

/// Extracts manager names and field paths from the API server's conflict message, e.g.
/// `Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.x`.
pub fn parse_conflict(message: &str) -> (Vec<String>, Vec<String>) {
    let mut managers: Vec<String> = message
        .split("with \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect();
    managers.sort();
    managers.dedup();
    let mut fields: Vec<String> = message
        .split(|c: char| c.is_whitespace())
        .filter(|token| token.starts_with(".spec") || token.starts_with(".metadata"))
        .map(|token| token.trim_end_matches([',', ';']).to_string())
        .collect();
    fields.sort();
    fields.dedup();
    (managers, fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_message_yields_managers_and_fields() {
        let message = "Apply failed with 2 conflicts: conflicts with \"argocd-controller\" using apps/v1:\n- .spec.template.spec.securityContext.runAsNonRoot\n- .spec.template.spec.containers[name=\"app\"].securityContext.privileged";
        let (managers, fields) = parse_conflict(message);
        assert_eq!(managers, vec!["argocd-controller"]);
        assert_eq!(fields.len(), 2);
        assert!(fields[1].contains("runAsNonRoot"));
    }

    #[test]
    fn single_conflict_with_two_managers() {
        let message = "Apply failed with 1 conflict: conflict with \"helm\" using apps/v1: .spec.template.spec.securityContext.runAsNonRoot; conflict with \"kubectl-edit\": .spec.x";
        let (managers, _) = parse_conflict(message);
        assert_eq!(managers, vec!["helm", "kubectl-edit"]);
    }
}
