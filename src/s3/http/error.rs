//! Errors of the S3 operations, and the one place they become S3's wire errors.
//!
//! Handlers return [`ApiError`]: an access [`Denial`], a [`StoreError`] (with the object's
//! KMS key when S3's message names it), a request S3 refuses with its own code, or a failed
//! worker task. [`From<ApiError> for S3Error`](ApiError) maps each to S3's code, HTTP status
//! and message, so no handler spells out a status.

use s3s::{S3Error, S3ErrorCode};

use super::super::access::Denial;
use super::super::auth::KeysUnavailable;
use super::super::kms::KmsFailure;
use super::super::store::StoreError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Refused by the access rules (BPA, ownership, ACLs, signature version).
    #[error(transparent)]
    Denied(#[from] Denial),
    /// The store refused or failed; `key_arn` names the object's KMS key, which S3's
    /// disabled-key message quotes.
    #[error("{source}")]
    Store {
        #[source]
        source: StoreError,
        key_arn: Option<String>,
    },
    /// A request S3 refuses, with S3's code, HTTP status and message.
    #[error("{code}: {message}")]
    Refused {
        code: &'static str,
        status: u16,
        message: String,
    },
    /// A blocking worker task panicked or was cancelled.
    #[error("worker task failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

impl From<KeysUnavailable> for ApiError {
    fn from(_: KeysUnavailable) -> Self {
        ApiError::Refused {
            code: "ServiceUnavailable",
            status: 503,
            message: "Service is unable to handle request.".into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(source: StoreError) -> Self {
        ApiError::Store {
            source,
            key_arn: None,
        }
    }
}

impl ApiError {
    /// A request S3 refuses with `code`, `status` and `message`.
    pub fn refused(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        ApiError::Refused {
            code,
            status,
            message: message.into(),
        }
    }

    /// `InvalidArgument` (400) with `message`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::refused("InvalidArgument", 400, message)
    }

    /// A store error about an object whose data key is under `key_arn`.
    pub fn store_for_key(source: StoreError, key_arn: Option<&str>) -> Self {
        ApiError::Store {
            source,
            key_arn: key_arn.map(str::to_string),
        }
    }
}

impl From<ApiError> for S3Error {
    fn from(e: ApiError) -> S3Error {
        match e {
            ApiError::Denied(d) => error(d.code(), d.status(), d.to_string()),
            ApiError::Store { source, key_arn } => store_error(source, key_arn.as_deref()),
            ApiError::Refused {
                code,
                status,
                message,
            } => error(code, status, message),
            ApiError::Worker(e) => {
                tracing::error!(error = %e, "worker task failed");
                internal_error()
            }
        }
    }
}

/// An S3 error with this code, HTTP status and message (an unknown code becomes
/// `InternalError`, which never happens for the codes used here).
pub fn error(code: &str, status: u16, message: impl Into<String>) -> S3Error {
    let code = S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InternalError);
    let mut e = S3Error::with_message(code, message.into());
    if let Ok(s) = hyper::StatusCode::from_u16(status) {
        e.set_status_code(s);
    }
    e
}

fn internal_error() -> S3Error {
    error(
        "InternalError",
        500,
        "We encountered an internal error. Please try again.",
    )
}

/// A KMS refusal as S3 reports it: `KMS.<Exception>` with kmsd's message; a disabled key's
/// message names the key's ARN exactly as AWS does.
fn kms_error(f: &KmsFailure, key_arn: Option<&str>) -> S3Error {
    match f.code.as_str() {
        "AccessDeniedException" => error("AccessDenied", 403, f.message.clone()),
        "KMSUnavailable" => error(
            "ServiceUnavailable",
            503,
            format!("The key service is unavailable: {}", f.message),
        ),
        "DisabledException" => {
            let msg = match key_arn {
                Some(arn) => format!("{arn} is disabled."),
                None => f.message.clone(),
            };
            error("KMS.DisabledException", 400, msg)
        }
        code => error(&format!("KMS.{code}"), 400, f.message.clone()),
    }
}

fn store_error(e: StoreError, key_arn: Option<&str>) -> S3Error {
    match &e {
        StoreError::NoSuchBucket => error("NoSuchBucket", 404, e.to_string()),
        StoreError::NoSuchKey => error("NoSuchKey", 404, e.to_string()),
        StoreError::BucketAlreadyOwnedByYou => error("BucketAlreadyOwnedByYou", 409, e.to_string()),
        StoreError::BucketAlreadyExists => error("BucketAlreadyExists", 409, e.to_string()),
        StoreError::BucketNotEmpty => error("BucketNotEmpty", 409, e.to_string()),
        StoreError::InvalidBucketName(_) => error("InvalidBucketName", 400, e.to_string()),
        StoreError::InvalidKey(why) if why.contains("1024") => {
            error("KeyTooLongError", 400, "Your key is too long")
        }
        StoreError::InvalidKey(_) => error("InvalidArgument", 400, e.to_string()),
        StoreError::EntityTooLarge => error("EntityTooLarge", 400, e.to_string()),
        StoreError::Incomplete => error(
            "IncompleteBody",
            400,
            "You did not provide the number of bytes specified by the Content-Length HTTP header",
        ),
        StoreError::Kms(f) => kms_error(f, key_arn),
        StoreError::NoSuchUpload => error("NoSuchUpload", 404, e.to_string()),
        StoreError::CustomerKeyRequired | StoreError::CustomerKeyNotApplicable => {
            error("InvalidRequest", 400, e.to_string())
        }
        StoreError::CustomerKeyMismatch => error("AccessDenied", 403, e.to_string()),
        StoreError::ChecksumRequest(_) => error("InvalidRequest", 400, e.to_string()),
        StoreError::BadChecksum(_) => error("BadDigest", 400, e.to_string()),
        StoreError::PreconditionFailed(_) => error("PreconditionFailed", 412, e.to_string()),
        StoreError::ConditionalRequestConflict => {
            error("ConditionalRequestConflict", 409, e.to_string())
        }
        StoreError::Parts(p) => error(p.code(), 400, p.to_string()),
        StoreError::TooManyUploads(_) | StoreError::TooManyOpenFiles => {
            tracing::warn!(error = %e, "refusing a request for lack of resources");
            error("SlowDown", 503, "Please reduce your request rate.")
        }
        StoreError::Integrity { .. } => {
            tracing::error!(error = %e, "object failed its integrity check");
            error(
                "InternalError",
                500,
                format!("We encountered an internal error: {e}"),
            )
        }
        StoreError::Corrupt(_)
        | StoreError::Io { .. }
        | StoreError::StoreKey(_)
        | StoreError::InUse { .. } => {
            tracing::error!(error = %e, "store error");
            internal_error()
        }
    }
}

/// What a failed request body means to the client. s3s checks a signed payload's
/// SHA-256 as the body streams and fails the stream on a mismatch; its error type lives
/// in a private module, so only its text can tell that case from a short body.
pub fn refused_body(e: &(dyn std::error::Error + 'static)) -> ApiError {
    if e.to_string().contains("Sha256Mismatch") {
        ApiError::refused(
            "XAmzContentSHA256Mismatch",
            400,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    } else {
        StoreError::Incomplete.into()
    }
}

/// `NotImplemented` for ACLs given as grants or XML rather than a canned name.
pub fn not_canned() -> ApiError {
    ApiError::refused(
        "NotImplemented",
        501,
        "atrest supports canned ACLs only (x-amz-acl: private, public-read, ...)",
    )
}
