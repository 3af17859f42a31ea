//! The one place where errors become gRPC statuses.
//!
//! Codes are precise (`INVALID_ARGUMENT` names the field, `OUT_OF_RANGE`
//! for sizes and indexes beyond the tree, `NOT_FOUND`, `ALREADY_EXISTS`
//! naming the original index, `RESOURCE_EXHAUSTED` when the queue is full,
//! `UNAVAILABLE` when storage fails). Internal detail is logged, not sent.

use tlog_core::event::EventError;
use tlog_core::merkle::prove::ProofError;
use tlog_core::merkle::store::StoreError;
use tonic::Status;

use crate::sequencer::AppendError;
use crate::storage::StorageError;

/// An error a request can end with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A request field is wrong.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// An index or size beyond the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// Nothing matches.
    #[error("{0}")]
    NotFound(String),
    /// The idempotency key exists with different content.
    #[error("{0}")]
    AlreadyExists(String),
    /// The credentials presented did not verify.
    #[error("{0}")]
    CredentialsRefused(crate::access::auth::AuthError),
    /// An anonymous caller asked for something that needs credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The policy does not allow it. The message is the same whether or
    /// not the resource exists.
    #[error("{0}")]
    PermissionDenied(String),
    /// The queue stayed full.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Storage or the sequencer is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or corruption; details are logged only.
    #[error("internal error: {0}")]
    Internal(String),
    /// Stored data failed verification (a proof that does not reach the
    /// signed root, a leaf that does not match its tree hash): it is not
    /// served.
    #[error("stored data failed verification: {0}")]
    DataLoss(String),
}

impl ServiceError {
    /// An `INVALID_ARGUMENT` about `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ServiceError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidArgument { field, reason } => {
                Status::invalid_argument(format!("{field}: {reason}"))
            }
            ServiceError::OutOfRange(m) => Status::out_of_range(m),
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::AlreadyExists(m) => Status::already_exists(m),
            ServiceError::PermissionDenied(m) => Status::permission_denied(m),
            ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            ServiceError::CredentialsRefused(e) => {
                Status::unauthenticated(format!("credentials refused: {e}"))
            }
            ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ServiceError::Unavailable(m) => {
                tracing::warn!(error = %m, "unavailable");
                Status::unavailable(format!("the log cannot serve this now: {m}; retry later"))
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error; the server log has details")
            }
            ServiceError::DataLoss(m) => {
                tracing::error!(error = %m, "stored data failed verification; not served");
                Status::data_loss(format!(
                    "stored data failed verification ({m}); the log refuses to serve it. \
                     Operators: restore the data directory from a backup"
                ))
            }
        }
    }
}

impl From<EventError> for ServiceError {
    fn from(e: EventError) -> Self {
        ServiceError::InvalidArgument {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<AppendError> for ServiceError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Conflict { .. } => ServiceError::AlreadyExists(e.to_string()),
            AppendError::SelfConflict { second, .. } => {
                ServiceError::invalid(format!("events[{second}].event_id"), e.to_string())
            }
            AppendError::Overloaded(_) => ServiceError::ResourceExhausted(e.to_string()),
            AppendError::TooLarge { position, .. } => {
                ServiceError::invalid(format!("events[{position}]"), e.to_string())
            }
            // By the storage error's kind: damaged data is DATA_LOSS.
            AppendError::Storage(s) if s.is_corruption() => ServiceError::DataLoss(s.to_string()),
            AppendError::Storage(_)
            | AppendError::Sign(_)
            | AppendError::EarlierBatchFailed
            | AppendError::ShuttingDown
            | AppendError::Halted(_) => ServiceError::Unavailable(e.to_string()),
        }
    }
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => ServiceError::Unavailable(e.to_string()),
            // The store's checksums caught bytes that changed on disk, or
            // a value has the wrong shape.
            StorageError::Damaged(_)
            | StorageError::Corrupt(_)
            | StorageError::CorruptAtOpen { .. } => ServiceError::DataLoss(e.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ServiceError::Unavailable(e.to_string()),
            // A hash the tree's size says exists is not stored, or is
            // damaged: the store lost data.
            StoreError::Missing { .. } | StoreError::Corrupt(_) => {
                ServiceError::DataLoss(e.to_string())
            }
            StoreError::Gap { .. } => ServiceError::Internal(e.to_string()),
        }
    }
}

impl From<ProofError> for ServiceError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::IndexOutOfRange { .. } => ServiceError::OutOfRange(e.to_string()),
            ProofError::SizesReversed { .. } => ServiceError::invalid("size1", e.to_string()),
            ProofError::Store(s) => ServiceError::from(s),
        }
    }
}
