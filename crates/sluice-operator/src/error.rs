//! Errors of the reconcile pipeline, one enum per stage, plus the reconcile-level wrapper the
//! controller's `error_policy` inspects. Every error has a stable `category` used as a metric
//! label and as the Event/condition reason, so those stay bounded.

use thiserror::Error;

/// The spec cannot be served as written. Permanent: only a spec change helps.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ValidationError {
    /// The resource name cannot name the owned Service/Deployment.
    #[error(
        "failed to validate InferenceService {namespace}/{name}: the name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters) because it names the Service"
    )]
    InvalidName { namespace: String, name: String },
    /// A field value the schema could not rule out.
    #[error("failed to validate InferenceService {namespace}/{name}: {field}: {reason}")]
    InvalidField {
        namespace: String,
        name: String,
        field: &'static str,
        reason: String,
    },
    /// The object has no namespace (cannot happen for a namespaced kind, but is not trusted).
    #[error("failed to validate InferenceService {name}: it has no namespace")]
    MissingNamespace { name: String },
}

impl ValidationError {
    /// Stable category for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        "InvalidSpec"
    }
}

/// Reading the current state failed.
#[derive(Debug, Error)]
pub enum FetchError {
    /// A GET against the API server failed (not a 404, which means "absent").
    #[error("failed to get {kind} {namespace}/{name}: {source}")]
    Get {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Writing an owned object failed.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The API server refused the object (HTTP 400/422): it will refuse it again until the spec
    /// changes.
    #[error("failed to apply {kind} {namespace}/{name}: the API server rejected it: {message}")]
    Rejected {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    /// An object of that name exists and belongs to someone else; the operator will not take it.
    #[error(
        "failed to apply {kind} {namespace}/{name}: it exists and is not controlled by this InferenceService"
    )]
    NotOwned {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// Any other API failure (network, 5xx, conflicts, throttling): retried with backoff.
    #[error("failed to apply {kind} {namespace}/{name}: {source}")]
    Api {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Serializing the desired object failed (a bug, reported rather than panicking).
    #[error("failed to serialize {kind} {namespace}/{name}: {source}")]
    Serialize {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// Deriving an object's content failed (the admin TLS identity: a crypto library fault,
    /// retried).
    #[error(transparent)]
    Identity(#[from] crate::admin_tls::IdentityError),
}

impl ApplyError {
    /// Permanent: retrying cannot help until the spec (or the foreign object) changes.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Rejected { .. } | Self::NotOwned { .. })
    }
}

/// Writing status failed.
#[derive(Debug, Error)]
pub enum StatusError {
    /// The status patch failed.
    #[error("failed to update status of InferenceService {namespace}/{name}: {source}")]
    Patch {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Any failure of one reconcile.
#[derive(Debug, Error)]
pub enum ReconcileError {
    /// See [`ValidationError`].
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// See [`FetchError`].
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// See [`ApplyError`].
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// See [`StatusError`].
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The watched object could not be deserialized (wrong shape, e.g. written by an older CRD).
    #[error("failed to read InferenceService {namespace}/{name}: {message}")]
    Malformed {
        namespace: String,
        name: String,
        message: String,
    },
}

impl ReconcileError {
    /// Stable, bounded category: metric label value and Event/condition reason.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Invalid(e) => e.category(),
            Self::Fetch(_) => "FetchFailed",
            Self::Apply(ApplyError::Rejected { .. }) => "ApplyRejected",
            Self::Apply(ApplyError::NotOwned { .. }) => "NotOwned",
            Self::Apply(
                ApplyError::Api { .. } | ApplyError::Serialize { .. } | ApplyError::Identity(_),
            ) => "ApplyFailed",
            Self::Status(_) => "StatusUpdateFailed",
            Self::Malformed { .. } => "MalformedObject",
        }
    }

    /// Permanent errors wait for the object to change; retrying cannot fix them.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Malformed { .. })
            || matches!(self, Self::Apply(e) if e.is_permanent())
    }
}

/// Every category [`ReconcileError::category`] can return, for pre-registering metric series.
pub const CATEGORIES: &[&str] = &[
    "InvalidSpec",
    "FetchFailed",
    "ApplyRejected",
    "NotOwned",
    "ApplyFailed",
    "StatusUpdateFailed",
    "MalformedObject",
];
