//! EventBridge Scheduler's error shapes, as REST-JSON carries them: the class in the
//! `x-amzn-errortype` header, `{"Message": ...}` in the body, each with its HTTP status, so
//! boto3 raises `ValidationException`, `ResourceNotFoundException`, `ConflictException`.

use crate::api::{ApiError, ErrorKind};
use crate::store::StoreError;

/// The scheduler's error classes (botocore's `scheduler` model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerErrorKind {
    Validation,
    NotFound,
    Conflict,
    ServiceQuotaExceeded,
    Internal,
    /// A signature that does not check (the API's own classes).
    Unrecognized,
    InvalidSignature,
}

impl SchedulerErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::NotFound => "ResourceNotFoundException",
            Self::Conflict => "ConflictException",
            Self::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            Self::Internal => "InternalServerException",
            Self::Unrecognized => "UnrecognizedClientException",
            Self::InvalidSignature => "InvalidSignatureException",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::Validation => 400,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::ServiceQuotaExceeded => 402,
            Self::Internal => 500,
            Self::Unrecognized | Self::InvalidSignature => 403,
        }
    }
}

/// A scheduler call's failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct SchedulerError {
    pub kind: SchedulerErrorKind,
    pub message: String,
}

impl SchedulerError {
    pub fn new(kind: SchedulerErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A ValidationException about `member` (lowerCamel path, as the service names it).
    pub fn member(
        member: &str,
        value: impl std::fmt::Display,
        rule: impl std::fmt::Display,
    ) -> Self {
        Self::new(
            SchedulerErrorKind::Validation,
            format!(
                "1 validation error detected: Value '{value}' at '{member}' failed to satisfy \
                 constraint: {rule}"
            ),
        )
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(SchedulerErrorKind::Validation, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(SchedulerErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(SchedulerErrorKind::Conflict, message)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"Message": self.message})
    }
}

impl From<StoreError> for SchedulerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { key, .. } => {
                Self::conflict(format!("{key} changed concurrently; retry the request"))
            }
            other @ (StoreError::Backend(_)
            | StoreError::LeaseExpired(_)
            | StoreError::Deposed { .. }) => {
                Self::new(SchedulerErrorKind::Internal, other.to_string())
            }
        }
    }
}

impl From<ApiError> for SchedulerError {
    fn from(error: ApiError) -> Self {
        let kind = match error.kind {
            ErrorKind::UnrecognizedClientException => SchedulerErrorKind::Unrecognized,
            ErrorKind::InvalidSignatureException => SchedulerErrorKind::InvalidSignature,
            ErrorKind::ServerException => SchedulerErrorKind::Internal,
            _ => SchedulerErrorKind::Validation,
        };
        Self::new(kind, error.message)
    }
}

/// The same failure for wasmgate's own (ECS JSON) actions.
impl From<SchedulerError> for ApiError {
    fn from(error: SchedulerError) -> Self {
        let kind = match error.kind {
            SchedulerErrorKind::Validation => ErrorKind::InvalidParameterException,
            SchedulerErrorKind::NotFound => ErrorKind::ResourceNotFoundException,
            SchedulerErrorKind::Conflict => ErrorKind::ConflictException,
            SchedulerErrorKind::ServiceQuotaExceeded => ErrorKind::LimitExceededException,
            SchedulerErrorKind::Internal => ErrorKind::ServerException,
            SchedulerErrorKind::Unrecognized => ErrorKind::UnrecognizedClientException,
            SchedulerErrorKind::InvalidSignature => ErrorKind::InvalidSignatureException,
        };
        ApiError::new(kind, error.message)
    }
}
