//! Writing manifests to the API server as they are: creates during setup, and the floor's
//! writes (server-side apply, creates and status patches) with no controller logic.

use futures::{StreamExt, TryStreamExt, stream};
use goreal_operator::names::FIELD_MANAGER;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// The dynamic API for a manifest's kind in its namespace (cluster scope without one).
pub fn api_for(client: &kube::Client, manifest: &Value) -> Api<DynamicObject> {
    let api_version = manifest["apiVersion"].as_str().unwrap_or("v1");
    let kind = manifest["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    match manifest["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

fn name_of(manifest: &Value) -> String {
    manifest["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Creates every manifest, `concurrency` at a time.
pub async fn create_all(client: &kube::Client, manifests: Vec<Value>, concurrency: usize) {
    stream::iter(manifests)
        .map(|manifest| async move {
            let object: DynamicObject =
                serde_json::from_value(manifest.clone()).expect("a manifest object");
            api_for(client, &manifest)
                .create(&PostParams::default(), &object)
                .await
                .map_err(|e| format!("creating {}: {e}", name_of(&manifest)))
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .expect("setup");
}

/// One write the operator makes, as the floor makes it.
pub enum Write {
    /// Server-side apply under the operator's field manager.
    Apply(Value),
    /// Server-side apply of a policy's status.
    Status(Value),
    /// A create (generated Secrets and events).
    Create(Value),
    /// A JSON merge patch (the finalizer).
    Merge(Value),
}

impl Write {
    pub async fn send(&self, client: &kube::Client) -> Result<(), kube::Error> {
        let apply = PatchParams::apply(FIELD_MANAGER);
        match self {
            Write::Apply(body) => {
                api_for(client, body)
                    .patch(&name_of(body), &apply, &Patch::Apply(body))
                    .await?;
            }
            Write::Status(body) => {
                api_for(client, body)
                    .patch_status(&name_of(body), &apply, &Patch::Apply(body))
                    .await?;
            }
            Write::Create(body) => {
                let object: DynamicObject =
                    serde_json::from_value(body.clone()).map_err(kube::Error::SerdeError)?;
                let params = PostParams {
                    dry_run: false,
                    field_manager: Some(FIELD_MANAGER.into()),
                };
                api_for(client, body).create(&params, &object).await?;
            }
            Write::Merge(body) => {
                api_for(client, body)
                    .patch(&name_of(body), &PatchParams::default(), &Patch::Merge(body))
                    .await?;
            }
        }
        Ok(())
    }
}
