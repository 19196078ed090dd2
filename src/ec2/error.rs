//! The errors the volume service answers with, named after AWS EC2's error codes. This
//! is the bottom of `src/ec2`: it imports nothing from its siblings.
//!
//! `Ec2Error` crosses the ec2.sock wire, so [`Ec2Code`] is append-only (postcard
//! encodes variants by index). The layers below the service have their own typed
//! errors with sources (`registry::RegistryError`, `storage::StorageError`,
//! `runtime::RuntimeError`, `kms::KmsError`, `daemon::DaemonError`); each converts
//! into an `Ec2Error` at the service boundary, its message carrying the whole chain
//! ([`chain`]).

use serde::{Deserialize, Serialize};

/// kmsd's error codes, carried inside [`Ec2Code::Kms`].
pub type KmsCode = kmsd::protocol::ErrorCode;

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
    /// ec2.sock is serving as many connections as it takes (none could be closed).
    RequestLimitExceeded,
    InvalidAmiIdMalformed,
    /// The AMI exists but cannot be used yet (its snapshots are pending) or any more.
    InvalidAmiIdUnavailable,
    /// The snapshot backs a registered AMI.
    InvalidSnapshotInUse,
    /// The caller may not use another account's AMI storage.
    AuthFailure,
    InvalidAmiNameDuplicate,
    /// EC2's name for a KMS key the volume service may not use (disabled, pending
    /// deletion, or the caller may not use it): what [`Ec2Error::in_ec2_terms`] answers
    /// for kmsd's refusals.
    CustomerKeyHasBeenRevoked,
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
            Kms(code) => code.as_str(),
            UnauthorizedOperation => "UnauthorizedOperation",
            RequestLimitExceeded => "RequestLimitExceeded",
            InvalidAmiIdMalformed => "InvalidAMIID.Malformed",
            InvalidAmiIdUnavailable => "InvalidAMIID.Unavailable",
            InvalidSnapshotInUse => "InvalidSnapshot.InUse",
            AuthFailure => "AuthFailure",
            InvalidAmiNameDuplicate => "InvalidAMIName.Duplicate",
            CustomerKeyHasBeenRevoked => "CustomerKeyHasBeenRevoked",
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
    /// `code` with `e`'s message and every source under it.
    pub fn caused_by(code: Ec2Code, e: &(dyn std::error::Error + 'static)) -> Self {
        Self::new(code, chain(e))
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
    pub fn image_not_found(id: &str) -> Self {
        Self::new(
            Ec2Code::InvalidAmiIdNotFound,
            format!("The image id '[{id}]' does not exist"),
        )
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(Ec2Code::InvalidParameterValue, message)
    }
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            Ec2Code::MissingParameter,
            format!("The request must contain the parameter {name}"),
        )
    }
    pub fn incorrect_state(message: impl Into<String>) -> Self {
        Self::new(Ec2Code::IncorrectState, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Ec2Code::InternalError, message)
    }

    /// This error as EC2's API answers it (the AWS endpoint's EC2 Query protocol).
    ///
    /// Inside the service a refusal by kmsd keeps kmsd's own code ([`Ec2Code::Kms`]):
    /// atrest's CLI, the volume's `StatusMessage` and the trail print it. EC2 never
    /// answers with a KMS exception name. AWS checks the key of CreateVolume,
    /// CopySnapshot and CopyImage asynchronously (the volume or snapshot fails later;
    /// botocore's model says so of `KmsKeyId`) and a launch ends with a StateReason;
    /// where EC2 refuses at once for a key it cannot use (AttachVolume), it says
    /// `CustomerKeyHasBeenRevoked` ("The customer master key cannot be accessed", EC2's
    /// error code list). The volume service refuses these synchronously, so it answers
    /// in those words: a key disabled, pending deletion, unavailable or not usable by
    /// the caller is `CustomerKeyHasBeenRevoked`; a key that does not exist or cannot
    /// protect a volume (a malformed ID, an asymmetric key) is the parameter's fault,
    /// `InvalidParameterValue`; kmsd failing is `InternalError`, kmsd throttling
    /// `RequestLimitExceeded`. The message keeps KMS's code and words.
    pub fn in_ec2_terms(&self) -> Ec2Error {
        use kmsd::protocol::ErrorCode as K;
        let Ec2Code::Kms(kms) = self.code else {
            return self.clone();
        };
        let (code, what) = match kms {
            K::DisabledException
            | K::KMSInvalidStateException
            | K::KeyUnavailableException
            | K::AccessDeniedException
            | K::InvalidGrantTokenException => (
                Ec2Code::CustomerKeyHasBeenRevoked,
                "The customer master key cannot be accessed",
            ),
            K::NotFoundException
            | K::InvalidArnException
            | K::InvalidAliasNameException
            | K::InvalidKeyUsageException
            | K::UnsupportedOperationException
            | K::ValidationException => (
                Ec2Code::InvalidParameterValue,
                "The specified KMS key is not valid for Amazon EBS",
            ),
            K::LimitExceededException => (
                Ec2Code::RequestLimitExceeded,
                "KMS is throttling the calls EC2 makes for you",
            ),
            _ => (Ec2Code::InternalError, "EC2 could not use the KMS key"),
        };
        Ec2Error::new(
            code,
            format!("{what} ({kms}: {})", self.message, kms = kms.as_str()),
        )
    }
}

/// `e` and its sources, `outer: inner: innermost`, as a user reads a failure.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        // A wrapper whose message already ends with its source's adds nothing.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the header of vol-1")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn chain_names_every_source_once() {
        let e = Outer {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(chain(&e), "cannot read the header of vol-1: no such file");
        let e = Ec2Error::caused_by(Ec2Code::InternalError, &e);
        assert_eq!(e.code.as_str(), "InternalError");
        assert!(e.message.ends_with(": no such file"), "{e}");
    }

    #[test]
    fn kms_refusals_in_ec2_terms() {
        use kmsd::protocol::ErrorCode as K;
        let kms = |k: K| {
            Ec2Error::new(
                Ec2Code::Kms(k),
                "arn:aws:kms:us-east-1:1:key/k is disabled.",
            )
        };
        let e = kms(K::DisabledException).in_ec2_terms();
        assert_eq!(e.code.as_str(), "CustomerKeyHasBeenRevoked");
        assert_eq!(
            e.message,
            "The customer master key cannot be accessed (DisabledException: \
             arn:aws:kms:us-east-1:1:key/k is disabled.)"
        );
        for (k, want) in [
            (K::KMSInvalidStateException, "CustomerKeyHasBeenRevoked"),
            (K::AccessDeniedException, "CustomerKeyHasBeenRevoked"),
            (K::NotFoundException, "InvalidParameterValue"),
            (K::InvalidKeyUsageException, "InvalidParameterValue"),
            (K::LimitExceededException, "RequestLimitExceeded"),
            (K::KMSInternalException, "InternalError"),
        ] {
            assert_eq!(kms(k).in_ec2_terms().code.as_str(), want, "{k:?}");
        }
        // EC2's own codes pass as they are.
        let own = Ec2Error::volume_not_found("vol-1");
        assert_eq!(own.in_ec2_terms(), own);
    }
}
