//! The errors the volume service returns, named after AWS EC2's error codes.
//!
//! `Ec2Error` crosses the ec2.sock wire, so [`Ec2Code`] is append-only (postcard
//! encodes variants by index).

use serde::{Deserialize, Serialize};

use super::kms::KmsCode;

/// An AWS EC2 error code (`as_str` gives the AWS name). APPEND NEW CODES AT THE END.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ec2Code {
    InvalidVolumeNotFound,
    InvalidSnapshotNotFound,
    InvalidInstanceIdNotFound,
    InvalidVolumeIdMalformed,
    InvalidSnapshotIdMalformed,
    InvalidInstanceIdMalformed,
    InvalidVolumeZoneMismatch,
    VolumeInUse,
    IncorrectState,
    IncorrectInstanceState,
    InvalidParameterValue,
    InvalidParameterCombination,
    InvalidParameterDependency,
    MissingParameter,
    InvalidAttachmentNotFound,
    InvalidZoneNotFound,
    InvalidAmiIdNotFound,
    /// The volume service is not running and the operation needs it.
    ServiceUnavailable,
    /// Something failed inside the service (I/O, a corrupt registry); the message says what.
    InternalError,
    /// kmsd refused: its own code (`DisabledException`, `AccessDeniedException`, ...).
    Kms(KmsCode),
    /// The caller may not act on this resource (it belongs to another user).
    UnauthorizedOperation,
}

impl Ec2Code {
    pub fn as_str(&self) -> &str {
        use Ec2Code::*;
        match self {
            InvalidVolumeNotFound => "InvalidVolume.NotFound",
            InvalidSnapshotNotFound => "InvalidSnapshot.NotFound",
            InvalidInstanceIdNotFound => "InvalidInstanceID.NotFound",
            InvalidVolumeIdMalformed => "InvalidVolumeID.Malformed",
            InvalidSnapshotIdMalformed => "InvalidSnapshotID.Malformed",
            InvalidInstanceIdMalformed => "InvalidInstanceID.Malformed",
            InvalidVolumeZoneMismatch => "InvalidVolume.ZoneMismatch",
            VolumeInUse => "VolumeInUse",
            IncorrectState => "IncorrectState",
            IncorrectInstanceState => "IncorrectInstanceState",
            InvalidParameterValue => "InvalidParameterValue",
            InvalidParameterCombination => "InvalidParameterCombination",
            InvalidParameterDependency => "InvalidParameterDependency",
            MissingParameter => "MissingParameter",
            InvalidAttachmentNotFound => "InvalidAttachment.NotFound",
            InvalidZoneNotFound => "InvalidZone.NotFound",
            InvalidAmiIdNotFound => "InvalidAMIID.NotFound",
            ServiceUnavailable => "ServiceUnavailable",
            InternalError => "InternalError",
            Kms(code) => super::kms::code_str(code),
            UnauthorizedOperation => "UnauthorizedOperation",
        }
    }
}

impl std::fmt::Display for Ec2Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply: an AWS code and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    pub code: Ec2Code,
    pub message: String,
}

impl Ec2Error {
    pub fn new(code: Ec2Code, message: impl Into<String>) -> Self {
        Ec2Error {
            code,
            message: message.into(),
        }
    }
    pub fn volume_not_found(id: &str) -> Self {
        Self::new(
            Ec2Code::InvalidVolumeNotFound,
            format!("The volume '{id}' does not exist."),
        )
    }
    pub fn snapshot_not_found(id: &str) -> Self {
        Self::new(
            Ec2Code::InvalidSnapshotNotFound,
            format!("The snapshot '{id}' does not exist."),
        )
    }
    pub fn instance_not_found(id: &str) -> Self {
        Self::new(
            Ec2Code::InvalidInstanceIdNotFound,
            format!("The instance ID '{id}' does not exist"),
        )
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(Ec2Code::InvalidParameterValue, message)
    }
    pub fn incorrect_state(message: impl Into<String>) -> Self {
        Self::new(Ec2Code::IncorrectState, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Ec2Code::InternalError, message)
    }
    pub fn io(what: &str, e: &std::io::Error) -> Self {
        Self::internal(format!("{what}: {e}"))
    }
}
