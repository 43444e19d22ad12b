//! ECS error shapes: every failure of an API call becomes one of these, serialised as
//! `{"__type": ..., "message": ...}` with HTTP 400 (client) or 500 (server).

use crate::store::StoreError;

/// The ECS error shapes wasmgate answers with: every error shape of botocore's ECS model, and
/// the protocol's own (unknown operation, bad JSON, bad signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    AccessDeniedException,
    AttributeLimitExceededException,
    BlockedException,
    ClientException,
    ClusterContainsCapacityProviderException,
    ClusterContainsContainerInstancesException,
    ClusterContainsServicesException,
    ClusterContainsTasksException,
    ClusterNotFoundException,
    ConflictException,
    DaemonNotActiveException,
    DaemonNotFoundException,
    GatewayNotFoundException,
    InvalidParameterException,
    LimitExceededException,
    MissingVersionException,
    NamespaceNotFoundException,
    NoUpdateAvailableException,
    PlatformTaskDefinitionIncompatibilityException,
    PlatformUnknownException,
    ResourceInUseException,
    ResourceNotFoundException,
    ServerException,
    ServiceDeploymentNotFoundException,
    ServiceNotActiveException,
    ServiceNotFoundException,
    TargetNotConnectedException,
    TargetNotFoundException,
    TaskSetNotFoundException,
    UnsupportedFeatureException,
    UpdateInProgressException,
    UnknownOperationException,
    SerializationException,
    UnrecognizedClientException,
    InvalidSignatureException,
    /// A request body over the API's limit (HTTP 413).
    RequestEntityTooLargeException,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDeniedException => "AccessDeniedException",
            Self::AttributeLimitExceededException => "AttributeLimitExceededException",
            Self::BlockedException => "BlockedException",
            Self::ClientException => "ClientException",
            Self::ClusterContainsCapacityProviderException => {
                "ClusterContainsCapacityProviderException"
            }
            Self::ClusterContainsContainerInstancesException => {
                "ClusterContainsContainerInstancesException"
            }
            Self::ClusterContainsServicesException => "ClusterContainsServicesException",
            Self::ClusterContainsTasksException => "ClusterContainsTasksException",
            Self::ClusterNotFoundException => "ClusterNotFoundException",
            Self::ConflictException => "ConflictException",
            Self::DaemonNotActiveException => "DaemonNotActiveException",
            Self::DaemonNotFoundException => "DaemonNotFoundException",
            Self::GatewayNotFoundException => "GatewayNotFoundException",
            Self::InvalidParameterException => "InvalidParameterException",
            Self::LimitExceededException => "LimitExceededException",
            Self::MissingVersionException => "MissingVersionException",
            Self::NamespaceNotFoundException => "NamespaceNotFoundException",
            Self::NoUpdateAvailableException => "NoUpdateAvailableException",
            Self::PlatformTaskDefinitionIncompatibilityException => {
                "PlatformTaskDefinitionIncompatibilityException"
            }
            Self::PlatformUnknownException => "PlatformUnknownException",
            Self::ResourceInUseException => "ResourceInUseException",
            Self::ResourceNotFoundException => "ResourceNotFoundException",
            Self::ServerException => "ServerException",
            Self::ServiceDeploymentNotFoundException => "ServiceDeploymentNotFoundException",
            Self::ServiceNotActiveException => "ServiceNotActiveException",
            Self::ServiceNotFoundException => "ServiceNotFoundException",
            Self::TargetNotConnectedException => "TargetNotConnectedException",
            Self::TargetNotFoundException => "TargetNotFoundException",
            Self::TaskSetNotFoundException => "TaskSetNotFoundException",
            Self::UnsupportedFeatureException => "UnsupportedFeatureException",
            Self::UpdateInProgressException => "UpdateInProgressException",
            Self::UnknownOperationException => "UnknownOperationException",
            Self::SerializationException => "SerializationException",
            Self::UnrecognizedClientException => "UnrecognizedClientException",
            Self::InvalidSignatureException => "InvalidSignatureException",
            Self::RequestEntityTooLargeException => "RequestEntityTooLargeException",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::ServerException => 500,
            Self::RequestEntityTooLargeException => 413,
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

    /// An operation of the model that cannot run here, with the reason (the coverage script
    /// counts these as "not applicable").
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedFeatureException, message)
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
            other @ (StoreError::Backend(_)
            | StoreError::LeaseExpired(_)
            | StoreError::Deposed { .. }) => {
                Self::new(ErrorKind::ServerException, other.to_string())
            }
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
