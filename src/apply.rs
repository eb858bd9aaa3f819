//! Server-side apply of the planned patches: skip what is already in effect, report field
//! conflicts and permanent refusals per object instead of forcing or failing the whole policy,
//! and release fields on cleanup.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::error::Error;
use crate::names::{self, FIELD_MANAGER};
use crate::observed::{NamespaceState, WorkloadKind};
use crate::policy::generated::PruneTarget;
use crate::policy::rate_limit::IngressPatch;
use crate::policy::secrets::RestartPatch;
use crate::policy::{
    Conflict, GeneratedObject, NamespacePlan, Rejection, WorkloadPatch, WorkloadTarget,
    namespace_body,
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
    dynamic_api(client, namespace, kind.api_version(), kind.as_str())
}

fn dynamic_api(
    client: &Client,
    namespace: &str,
    api_version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The refusal reason of a generated object whose name a foreign object holds (the API server's
/// own reason for creating over an existing name).
pub const NAME_TAKEN: &str = "AlreadyExists";

/// Kinds the controller caches whole (every object, not only the operator's): the planner marks
/// a name someone else holds as taken from the cache, so their first apply needs no read. As
/// with a read, an object created in the moment before the apply is not seen.
pub const CACHED_WHOLE: &[&str] = &["NetworkPolicy"];

/// Applies a generated object unless it is already current. Objects whose name another owner
/// holds are never sent: the caches see only the operator's own objects of some kinds, so an
/// object they do not hold is read first (unless its kind is [`CACHED_WHOLE`]), and one that
/// exists without the operator's labels is reported as taken (409 AlreadyExists) instead of
/// being merged into and later deleted.
pub async fn apply_generated(
    client: &Client,
    namespace: &str,
    object: &GeneratedObject,
    policy: &str,
    force: bool,
) -> Result<ApplyOutcome, Error> {
    if object.up_to_date {
        return Ok(ApplyOutcome::Unchanged);
    }
    let api = dynamic_api(client, namespace, object.api_version, object.kind);
    if object.live_version.is_none() && !CACHED_WHOLE.contains(&object.kind) {
        match api.get_opt(&object.name).await {
            Ok(Some(live)) => {
                let live = serde_json::to_value(&live)?;
                if !crate::policy::generated::owned_by(policy, &live) {
                    return Ok(ApplyOutcome::Rejected(Rejection {
                        object: object.reference(),
                        code: 409,
                        reason: NAME_TAKEN.into(),
                    }));
                }
            }
            Ok(None) => {}
            Err(error) => return classify(object.reference(), error),
        }
    }
    match api
        .patch(&object.name, &params(force), &Patch::Apply(&object.body))
        .await
    {
        Ok(_) => Ok(ApplyOutcome::Applied),
        Err(error) => classify(object.reference(), error),
    }
}

/// Deletes a generated object the policy no longer wants, only if it is still the object the
/// plan saw (uid precondition); one already gone or replaced is left alone.
pub async fn delete_generated(
    client: &Client,
    namespace: &str,
    target: &PruneTarget,
) -> Result<(), Error> {
    let object = &target.object;
    let api = dynamic_api(client, namespace, &object.api_version, &object.kind);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: target.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&object.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn params(force: bool) -> PatchParams {
    let params = PatchParams::apply(FIELD_MANAGER);
    if force { params.force() } else { params }
}

/// Sorts an apply error: field conflicts and permanent refusals concern this one object and are
/// reported; everything else (stale versions, throttling, server errors, transport, expired
/// credentials) is an error that the controller retries.
pub(crate) fn classify(object: String, error: kube::Error) -> Result<ApplyOutcome, Error> {
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
    apply_partial(
        &api,
        &patch.target.name,
        &patch.body,
        force,
        patch.target.reference(),
    )
    .await
}

/// Applies the rate limit annotations of one Ingress unless they are already in effect.
pub async fn apply_ingress(
    client: &Client,
    namespace: &str,
    patch: &IngressPatch,
    force: bool,
) -> Result<ApplyOutcome, Error> {
    if patch.up_to_date {
        return Ok(ApplyOutcome::Unchanged);
    }
    let api = dynamic_api(client, namespace, INGRESS.0, INGRESS.1);
    apply_partial(&api, &patch.name, &patch.body, force, patch.reference()).await
}

/// API version and kind of an Ingress.
const INGRESS: (&str, &str) = ("networking.k8s.io/v1", "Ingress");

/// A server-side apply of our fields on an object someone else owns; conflicts and refusals
/// are reported for `reference`.
async fn apply_partial(
    api: &Api<DynamicObject>,
    name: &str,
    body: &Value,
    force: bool,
    reference: String,
) -> Result<ApplyOutcome, Error> {
    match api.patch(name, &params(force), &Patch::Apply(body)).await {
        Ok(_) => Ok(ApplyOutcome::Applied),
        Err(error) => classify(reference, error),
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
    release(
        &api,
        target.kind.api_version(),
        target.kind.as_str(),
        &target.name,
    )
    .await
}

/// Releases the rate limit annotations (and mark) the operator set on an Ingress.
pub async fn release_ingress(client: &Client, namespace: &str, name: &str) -> Result<(), Error> {
    let api = dynamic_api(client, namespace, INGRESS.0, INGRESS.1);
    release(&api, INGRESS.0, INGRESS.1, name).await
}

/// An empty apply under the operator's field manager: every field it held goes.
async fn release(
    api: &Api<DynamicObject>,
    api_version: &str,
    kind: &str,
    name: &str,
) -> Result<(), Error> {
    let body = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "name": name },
    });
    match api.patch(name, &params(false), &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 422 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Applies restart markers to one workload's pod template under the policy's restart field
/// manager. Forced: the markers mean nothing to anyone else, and another policy's manager may
/// share a marker it carried along at the same value.
pub async fn apply_restart(
    client: &Client,
    namespace: &str,
    patch: &RestartPatch,
    policy: &str,
) -> Result<ApplyOutcome, Error> {
    let api = api_for(client, namespace, patch.kind);
    let params = PatchParams::apply(&names::restart_field_manager(policy)).force();
    match api
        .patch(&patch.name, &params, &Patch::Apply(&patch.body))
        .await
    {
        Ok(_) => Ok(ApplyOutcome::Applied),
        Err(error) => classify(patch.reference(), error),
    }
}

/// Writes a managed Secret: created when `live` is false, else replaced as one update guarded by
/// the resourceVersion it carries (a Secret changed since it was read fails with a conflict and
/// is read again on the retry). Returns the written Secret's metadata on success.
pub async fn write_secret(
    client: &Client,
    namespace: &str,
    secret: &Secret,
    live: bool,
) -> Result<Result<ObjectMeta, Rejection>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    let name = secret.metadata.name.clone().unwrap_or_default();
    let result = if live {
        api.replace(&name, &params, secret).await
    } else {
        api.create(&params, secret).await
    };
    match result {
        Ok(written) => Ok(Ok(written.metadata)),
        Err(error) => match classify(format!("Secret/{name}"), error)? {
            ApplyOutcome::Rejected(rejection) => Ok(Err(rejection)),
            // Only server-side apply reports field conflicts; nothing else is returned here.
            _ => Ok(Err(Rejection {
                object: format!("Secret/{name}"),
                code: 409,
                reason: "Conflict".into(),
            })),
        },
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
