//! Errors of the API layer, each with a stable category for metric labels and event reasons,
//! and the transient/permanent split that decides retries.

/// An error of one reconcile.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// A Kubernetes API request failed. Shown by code and reason only: the API server's message
    /// can quote the object it refused, environment values included.
    #[error("kubernetes API request failed: {}", describe_kube(.0))]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed (adding, removing or running a branch).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A body could not be encoded or decoded.
    #[error("encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    /// The operating system's random source failed while generating a secret value.
    #[error(transparent)]
    Random(#[from] crate::secret_value::RandomSourceError),
    /// A watch cache a step reads has not synced yet; the step is retried.
    #[error("watch caches not synced yet")]
    NotSynced,
}

impl Error {
    /// Stable, low-cardinality category.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(error) => kube_category(error),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
                // The finalizer patch tests the cached finalizer list first; a 422 means the
                // cache was stale (an earlier reconcile already changed it), a conflict.
                kube::runtime::finalizer::Error::AddFinalizer(kube::Error::Api(status))
                | kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(status))
                    if status.code == 422 =>
                {
                    "conflict"
                }
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e) => kube_category(e),
                _ => "finalizer",
            },
            Error::Encoding(_) => "encoding",
            Error::Random(_) => "random",
            Error::NotSynced => "not-synced",
        }
    }

    /// Whether retrying may succeed without a change to the policy: stale resourceVersion (409
    /// that is not an apply conflict), throttling (429), server errors and transport failures.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.category(),
            "conflict" | "throttled" | "server" | "transport" | "random" | "not-synced"
        )
    }
}

fn describe_kube(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} {}", status.code, status.reason),
        other => other.to_string(),
    }
}

fn kube_category(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) => match status.code {
            409 => "conflict",
            429 => "throttled",
            500..=599 => "server",
            403 => "forbidden",
            404 => "not-found",
            _ => "api",
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => "transport",
        _ => "client",
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(error: kube::runtime::finalizer::Error<Error>) -> Self {
        Error::Finalizer(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("refused", "Invalid").with_code(code),
        ))
    }

    #[test]
    fn a_stale_finalizer_patch_is_a_transient_conflict() {
        let stale: Error = kube::runtime::finalizer::Error::AddFinalizer(api(422)).into();
        assert_eq!(stale.category(), "conflict");
        assert!(stale.is_transient());
        let forbidden: Error = kube::runtime::finalizer::Error::AddFinalizer(api(403)).into();
        assert!(!forbidden.is_transient());
        assert_eq!(Error::Kube(api(422)).category(), "api");
    }
}
