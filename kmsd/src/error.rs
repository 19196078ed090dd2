//! The errors kmsd returns to callers, named after AWS KMS's error codes.
//!
//! `KmsError` crosses the wire (it is part of [`crate::protocol`]), so its shape is
//! stable: new codes are appended at the END of [`ErrorCode`] to keep postcard's
//! variant indices unchanged.

use serde::{Deserialize, Serialize};

/// An AWS KMS error code. The variant name is the code (`as_str`).
///
/// APPEND NEW CODES AT THE END: postcard encodes variants by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    NotFoundException,
    DisabledException,
    KMSInvalidStateException,
    InvalidCiphertextException,
    AccessDeniedException,
    ValidationException,
    IncorrectKeyException,
    AlreadyExistsException,
    UnsupportedOperationException,
    KMSInternalException,
    DependencyTimeoutException,
    InvalidGrantTokenException,
    InvalidGrantIdException,
    MalformedPolicyDocumentException,
    LimitExceededException,
    InvalidAliasNameException,
    InvalidArnException,
    InvalidKeyUsageException,
    InvalidMarkerException,
    TagException,
    KeyUnavailableException,
    InvalidLookupAttributesException,
    InvalidTimeRangeException,
    InvalidMaxResultsException,
    InvalidNextTokenException,
    /// The AWS JSON edge: a body that is not JSON, or a member of the wrong type.
    SerializationException,
    /// The AWS JSON edge: an operation name KMS (or atrest) has not.
    UnknownOperationException,
    /// An access key (or session token) that does not exist or is not active.
    UnrecognizedClientException,
    /// Temporary credentials past their expiry.
    ExpiredTokenException,
    /// IAM: the entity (user, group, role, policy, access key) does not exist.
    NoSuchEntity,
    /// IAM: an entity of that name exists.
    EntityAlreadyExists,
    /// IAM: the entity still has what must be removed first.
    DeleteConflict,
    /// IAM and STS: a policy document that does not parse or is wrong for its use.
    MalformedPolicyDocument,
    /// IAM: a quota (access keys, attached policies, policy size) would be exceeded.
    LimitExceeded,
    /// IAM: an input (an ARN, a version) that is not valid.
    InvalidInput,
    /// IAM and STS (Query protocol): a member outside its model constraints.
    ValidationError,
    /// IAM and STS: the caller is not allowed (`AccessDenied`, without KMS's `Exception`).
    AccessDenied,
    /// IAM: kmsd could not write its IAM store.
    ServiceFailure,
}

impl ErrorCode {
    /// The AWS name of the code, as the AWS CLI prints it.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            NotFoundException => "NotFoundException",
            DisabledException => "DisabledException",
            KMSInvalidStateException => "KMSInvalidStateException",
            InvalidCiphertextException => "InvalidCiphertextException",
            AccessDeniedException => "AccessDeniedException",
            ValidationException => "ValidationException",
            IncorrectKeyException => "IncorrectKeyException",
            AlreadyExistsException => "AlreadyExistsException",
            UnsupportedOperationException => "UnsupportedOperationException",
            KMSInternalException => "KMSInternalException",
            DependencyTimeoutException => "DependencyTimeoutException",
            InvalidGrantTokenException => "InvalidGrantTokenException",
            InvalidGrantIdException => "InvalidGrantIdException",
            MalformedPolicyDocumentException => "MalformedPolicyDocumentException",
            LimitExceededException => "LimitExceededException",
            InvalidAliasNameException => "InvalidAliasNameException",
            InvalidArnException => "InvalidArnException",
            InvalidKeyUsageException => "InvalidKeyUsageException",
            InvalidMarkerException => "InvalidMarkerException",
            TagException => "TagException",
            KeyUnavailableException => "KeyUnavailableException",
            InvalidLookupAttributesException => "InvalidLookupAttributesException",
            InvalidTimeRangeException => "InvalidTimeRangeException",
            InvalidMaxResultsException => "InvalidMaxResultsException",
            InvalidNextTokenException => "InvalidNextTokenException",
            SerializationException => "SerializationException",
            UnknownOperationException => "UnknownOperationException",
            UnrecognizedClientException => "UnrecognizedClientException",
            ExpiredTokenException => "ExpiredTokenException",
            NoSuchEntity => "NoSuchEntity",
            EntityAlreadyExists => "EntityAlreadyExists",
            DeleteConflict => "DeleteConflict",
            MalformedPolicyDocument => "MalformedPolicyDocument",
            LimitExceeded => "LimitExceeded",
            InvalidInput => "InvalidInput",
            ValidationError => "ValidationError",
            AccessDenied => "AccessDenied",
            ServiceFailure => "ServiceFailure",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply: an AWS error code and its message (AWS's wording where AWS has one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct KmsError {
    pub code: ErrorCode,
    pub message: String,
}

impl KmsError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        KmsError {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFoundException, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationException, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::KMSInvalidStateException, message)
    }
    pub fn disabled(key_arn: &str) -> Self {
        Self::new(
            ErrorCode::DisabledException,
            format!("{key_arn} is disabled."),
        )
    }
    pub fn pending_deletion(key_arn: &str) -> Self {
        Self::invalid_state(format!("{key_arn} is pending deletion."))
    }
    /// AWS sends `InvalidCiphertextException` with an empty message: it says nothing
    /// about which check failed.
    pub fn invalid_ciphertext() -> Self {
        Self::new(ErrorCode::InvalidCiphertextException, "")
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::KMSInternalException, message)
    }
    /// AWS's answer to an access key or session token it does not know.
    pub fn unrecognized_client() -> Self {
        Self::new(
            ErrorCode::UnrecognizedClientException,
            "The security token included in the request is invalid.",
        )
    }
    /// AWS's one-constraint validation message shape.
    pub fn constraint(field: &str, constraint: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }
}
