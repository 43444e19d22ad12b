//! ECS error shapes: every failure of an API call becomes one of these, serialised as
//! `{"__type": ..., "message": ...}` with HTTP 400 (client) or 500 (server).

use crate::store::StoreError;

/// The ECS error shapes wasmgate answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    ClientException,
    InvalidParameterException,
    ClusterNotFoundException,
    ClusterContainsContainerInstancesException,
    ClusterContainsServicesException,
    ClusterContainsTasksException,
    ServiceNotFoundException,
    ServiceNotActiveException,
    UnknownOperationException,
    SerializationException,
    UnrecognizedClientException,
    InvalidSignatureException,
    ServerException,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientException => "ClientException",
            Self::InvalidParameterException => "InvalidParameterException",
            Self::ClusterNotFoundException => "ClusterNotFoundException",
            Self::ClusterContainsContainerInstancesException => {
                "ClusterContainsContainerInstancesException"
            }
            Self::ClusterContainsServicesException => "ClusterContainsServicesException",
            Self::ClusterContainsTasksException => "ClusterContainsTasksException",
            Self::ServiceNotFoundException => "ServiceNotFoundException",
            Self::ServiceNotActiveException => "ServiceNotActiveException",
            Self::UnknownOperationException => "UnknownOperationException",
            Self::SerializationException => "SerializationException",
            Self::UnrecognizedClientException => "UnrecognizedClientException",
            Self::InvalidSignatureException => "InvalidSignatureException",
            Self::ServerException => "ServerException",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::ServerException => 500,
            _ => 400,
        }
    }
}

/// An API call's failure: its shape and a message that names what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn client(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ClientException, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterException, message)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"__type": self.kind.as_str(), "message": self.message})
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { key, .. } => {
                Self::client(format!("{key} changed concurrently; retry the request"))
            }
            StoreError::Backend(message) => Self::new(ErrorKind::ServerException, message),
        }
    }
}

impl From<crate::control::hosts::HostError> for ApiError {
    fn from(error: crate::control::hosts::HostError) -> Self {
        use crate::control::hosts::HostError;
        match error {
            HostError::Store(store) => store.into(),
            other => Self::new(ErrorKind::ClientException, other.to_string()),
        }
    }
}

impl From<crate::control::ControlError> for ApiError {
    fn from(error: crate::control::ControlError) -> Self {
        use crate::control::ControlError;
        match error {
            ControlError::Store(store) => store.into(),
            ControlError::Hosts(hosts) => hosts.into(),
            ControlError::NotFound(message) => Self::client(message),
            ControlError::Invalid(message) => Self::invalid(message),
        }
    }
}
