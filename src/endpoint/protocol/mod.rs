//! The wire protocols of AWS's non-S3 services, apart from the services behind them:
//! [`json`] (AWS JSON 1.1: KMS, CloudTrail), [`query`] (STS, IAM: form in, XML out) and
//! [`ec2query`] (EC2's variant of Query), the last two driven by the trimmed botocore
//! [`model`]s. S3's REST-XML is `s3s`'s (`crate::s3::http`).
//!
//! Every failure a request can meet is one [`Failure`]; each protocol writes it in its
//! own shape, with AWS's code for that protocol (`InvalidSignatureException` in JSON is
//! `SignatureDoesNotMatch` in Query and `AuthFailure` in EC2) and AWS's status.

pub mod ec2query;
pub mod json;
pub mod model;
pub mod query;

use kmsd::protocol::KmsError;

use super::sigv4::AuthError;

/// Why a request failed, before it is put in a protocol's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The signature: missing, malformed, wrong, out of its window or scope.
    Auth(AuthError),
    /// An access key (or session token) kmsd does not know, or that is not active.
    UnrecognizedClient,
    /// Temporary credentials past their expiry.
    ExpiredToken,
    /// The body is larger than the protocol's limit.
    TooLarge { limit: usize },
    /// The body or a member does not parse (JSON: `SerializationException`).
    Malformed(String),
    /// An operation the service (as atrest serves it) has not.
    UnknownOperation(String),
    /// A parameter whose value does not fit its member (Query).
    InvalidParameter(String),
    /// The service's own error (kmsd's answer).
    Service(KmsError),
    /// The volume service's own error (ec2.sock's answer), already named as EC2 names it.
    Ec2(crate::ec2::Ec2Error),
    /// Something on atrest's side (kmsd unreachable, a response that does not encode).
    Internal(String),
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Failure::Auth(e)
    }
}

/// A failure as a protocol writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Rendered {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Rendered {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// Whether the fault is the server's (Query's `<Type>Receiver`).
    pub fn server_fault(&self) -> bool {
        self.status >= 500
    }
}

/// The message AWS gives a body over the limit.
pub fn too_large_message(limit: usize) -> String {
    format!("Request body is larger than the {limit}-byte limit")
}

/// The message of an unknown or inactive access key.
pub const UNRECOGNIZED: &str = "The security token included in the request is invalid.";
/// The message of expired temporary credentials.
pub const EXPIRED_TOKEN: &str = "The security token included in the request is expired";
