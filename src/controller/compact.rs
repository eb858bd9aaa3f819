//! Workloads as the watch caches hold them: metadata typed, the pod template as compact JSON that
//! is parsed again only when a reconcile or an event mapping reads it. A typed pod template
//! takes several times the memory of its JSON (every optional field of every container is
//! allocated inline), and the caches hold every workload of the watched namespaces.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::Resource;
use kube::core::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::observed::{WorkloadKind, WorkloadResource};

/// A workload of type `K` with its pod template kept as JSON.
pub struct Compact<K> {
    metadata: ObjectMeta,
    template: Option<Box<str>>,
    kind: PhantomData<fn() -> K>,
}

impl<K: WorkloadResource> Compact<K> {
    /// The cached form of `object`, without managedFields and the last-applied annotation
    /// (never read).
    pub fn new(object: &K) -> Compact<K> {
        let mut metadata = object.object_meta().clone();
        metadata.managed_fields = None;
        if let Some(annotations) = metadata.annotations.as_mut() {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        Compact {
            metadata,
            // Serialising a typed template cannot fail; an empty text would read as no template.
            template: object
                .template()
                .and_then(|t| serde_json::to_string(t.as_ref()).ok())
                .map(String::into_boxed_str),
            kind: PhantomData,
        }
    }
}

impl<K> Clone for Compact<K> {
    fn clone(&self) -> Self {
        Compact {
            metadata: self.metadata.clone(),
            template: self.template.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Compact<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compact")
            .field("metadata", &self.metadata)
            .field(
                "template_bytes",
                &self.template.as_ref().map_or(0, |t| t.len()),
            )
            .finish()
    }
}

impl<'de, K: WorkloadResource + DeserializeOwned> Deserialize<'de> for Compact<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(deserializer).map(|object| Compact::new(&object))
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Compact<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<K: WorkloadResource> WorkloadResource for Compact<K> {
    const KIND: WorkloadKind = K::KIND;

    fn object_meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn template(&self) -> Option<Cow<'_, PodTemplateSpec>> {
        let template = self.template.as_deref()?;
        serde_json::from_str(template).ok().map(Cow::Owned)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_cached_form_keeps_metadata_and_template_and_drops_what_is_never_read() {
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "shop", "resourceVersion": "7", "generation": 3,
                "labels": {"app": "web"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                    "team": "payments",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "app", "image": "shop/web:1.0",
                        "securityContext": {"readOnlyRootFilesystem": true},
                    }]},
                },
            },
            "status": {"replicas": 3},
        }))
        .expect("fixture");
        let cached: Compact<Deployment> =
            serde_json::from_value(serde_json::to_value(&deployment).expect("json"))
                .expect("deserialises as the cache does");

        let meta = cached.meta();
        assert_eq!(meta.name.as_deref(), Some("web"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert_eq!(meta.generation, Some(3));
        assert!(meta.managed_fields.is_none());
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.len(), 1);
        assert_eq!(
            annotations.get("team").map(String::as_str),
            Some("payments")
        );

        let workload = cached.to_workload().expect("a workload");
        let typed = deployment.to_workload().expect("a workload");
        assert_eq!(workload.template, typed.template);
        assert_eq!(workload.kind, WorkloadKind::Deployment);
        assert_eq!(
            <Compact<Deployment> as Resource>::plural(&()),
            "deployments"
        );
        assert_eq!(<Compact<Deployment> as Resource>::group(&()), "apps");
    }
}
