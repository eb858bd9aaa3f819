//! `rotate NAMESPACE/POLICY [SECRET]`: asks the controller for an immediate rotation by setting
//! the policy's rotate-now annotation to a new value. The controller does the rotation (one
//! writer for Secrets); this only records the request, after checking that it names something.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::crd::GoREALSecurityPolicy;
use crate::names;

/// Why a rotation could not be requested.
#[derive(thiserror::Error, Debug)]
pub enum RotateError {
    /// The target is not `NAMESPACE/POLICY`.
    #[error("{0:?} is not NAMESPACE/POLICY")]
    Target(String),
    /// No such policy.
    #[error("policy {namespace}/{name} not found")]
    NoPolicy {
        /// Namespace.
        namespace: String,
        /// Policy name.
        name: String,
    },
    /// The policy manages no Secret of that name (or none at all).
    #[error("policy {policy} manages no Secret {secret:?}; it manages: {managed}")]
    NoSecret {
        /// Policy name.
        policy: String,
        /// The Secret asked for.
        secret: String,
        /// The Secrets it manages.
        managed: String,
    },
    /// The API request failed.
    #[error(transparent)]
    Api(#[from] crate::error::Error),
}

/// Splits `NAMESPACE/POLICY`.
pub fn parse_target(target: &str) -> Result<(String, String), RotateError> {
    match target.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok((namespace.to_string(), name.to_string()))
        }
        _ => Err(RotateError::Target(target.to_string())),
    }
}

/// Sets the rotate-now annotation of the policy to a value not used before (the time, to the
/// nanosecond), prefixed with `SECRET@` when one Secret is named. Returns the value written.
pub async fn request_rotation(
    client: &Client,
    namespace: &str,
    name: &str,
    secret: Option<&str>,
    now: jiff::Timestamp,
) -> Result<String, RotateError> {
    let api: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), namespace);
    let policy = api
        .get_opt(name)
        .await
        .map_err(crate::error::Error::from)?
        .ok_or_else(|| RotateError::NoPolicy {
            namespace: namespace.into(),
            name: name.into(),
        })?;
    let managed: Vec<String> = policy
        .spec
        .secret_rotation
        .iter()
        .flat_map(|s| s.secrets.iter().map(|s| s.name.clone()))
        .collect();
    let unknown = match secret {
        Some(secret) => !managed.iter().any(|m| m == secret),
        None => managed.is_empty(),
    };
    if unknown {
        return Err(RotateError::NoSecret {
            policy: policy.name_any(),
            secret: secret.unwrap_or("*").into(),
            managed: if managed.is_empty() {
                "none".into()
            } else {
                managed.join(", ")
            },
        });
    }
    let value = match secret {
        Some(secret) => format!("{secret}@{now}"),
        None => now.to_string(),
    };
    let patch = json!({ "metadata": { "annotations": { names::ROTATE_NOW_ANNOTATION: value } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(crate::error::Error::from)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_namespace_slash_policy() {
        assert_eq!(
            parse_target("goreal/baseline").expect("target"),
            ("goreal".to_string(), "baseline".to_string())
        );
        for bad in ["baseline", "/baseline", "goreal/", "a/b/c"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
