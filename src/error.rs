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
}

impl Error {
    /// Stable, low-cardinality category.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(error) => kube_category(error),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e) => kube_category(e),
                _ => "finalizer",
            },
            Error::Encoding(_) => "encoding",
        }
    }

    /// Whether retrying may succeed without a change to the policy: stale resourceVersion (409
    /// that is not an apply conflict), throttling (429), server errors and transport failures.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.category(),
            "conflict" | "throttled" | "server" | "transport"
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
