//! The errors that cross the wire, and the one place they turn into `tonic::Status`.
//!
//! `ProtocolError` is a malformed or invalid request (the caller must fix it). `ApiError` is every
//! outcome a service can report; services return `Result<_, ApiError>` and convert with `?`/`into`
//! at the tonic boundary, so the code-to-meaning mapping lives only here.

use tonic::{Code, Status};

/// A request that fails validation at the boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl ProtocolError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Every error a KVS service reports to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// This node is not the leader; `leader` is the leader's endpoint when known.
    #[error("not the leader{}", leader.as_deref().map(|l| format!(" (leader: {l})")).unwrap_or_default())]
    NotLeader { leader: Option<String> },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        let message = err.to_string();
        match err {
            ApiError::Protocol(_) => Status::invalid_argument(message),
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::AlreadyExists(_) => Status::already_exists(message),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::PermissionDenied(_) => Status::permission_denied(message),
            ApiError::NotLeader { leader } => {
                let mut status = Status::unavailable(message);
                if let Some(leader) = leader
                    && let Ok(value) = leader.parse()
                {
                    status
                        .metadata_mut()
                        .insert(crate::metadata::LEADER_ENDPOINT, value);
                }
                status
            }
            ApiError::Unavailable(_) => Status::unavailable(message),
            ApiError::ResourceExhausted(_) => Status::resource_exhausted(message),
            ApiError::Internal(_) => Status::internal(message),
        }
    }
}

impl From<ProtocolError> for Status {
    fn from(err: ProtocolError) -> Status {
        ApiError::from(err).into()
    }
}

/// True for codes a client may retry after a pause (leader change, transient outage).
pub fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
    )
}
