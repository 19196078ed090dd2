//! EC2's Query protocol: [`super::query`]'s codec in [`Dialect::Ec2`] (EC2 names input
//! members by `queryName` or the capitalized `locationName`, lists are always
//! `Name.N`, answers carry `<requestId>` first and `item` lists), with EC2's error
//! codes and statuses: `AuthFailure` (401) where STS says `SignatureDoesNotMatch`,
//! `RequestExpired` for a request outside its window, errors as
//! `<Response><Errors><Error>...</Errors><RequestID>`.
//!
//! Ready for EC2's operations (the vendored model lists them); the endpoint answers
//! EC2 requests with `UnsupportedOperation` until ec2.sock can speak for a SigV4
//! signer as kmsd.sock does.

pub use super::query::Dialect;
use super::{too_large_message, Failure, Rendered, EXPIRED_TOKEN, UNRECOGNIZED};
use crate::endpoint::sigv4::AuthError;

/// A failure as EC2 names it.
pub fn render(f: &Failure) -> Rendered {
    match f {
        Failure::Auth(AuthError::Missing) => Rendered::new(
            401,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ),
        Failure::Auth(AuthError::Incomplete(m)) => Rendered::new(400, "IncompleteSignature", m),
        Failure::Auth(AuthError::Invalid(m)) if m.starts_with("Signature ") => {
            Rendered::new(400, "RequestExpired", m)
        }
        Failure::Auth(AuthError::Invalid(m) | AuthError::Scope(m)) => {
            Rendered::new(401, "AuthFailure", m)
        }
        Failure::Auth(AuthError::Expired(m)) => Rendered::new(400, "RequestExpired", m),
        Failure::UnrecognizedClient => Rendered::new(401, "AuthFailure", UNRECOGNIZED),
        Failure::ExpiredToken => Rendered::new(400, "RequestExpired", EXPIRED_TOKEN),
        Failure::TooLarge { limit } => {
            Rendered::new(413, "RequestEntityTooLarge", too_large_message(*limit))
        }
        Failure::Malformed(m) => Rendered::new(400, "MalformedQueryString", m),
        Failure::UnknownOperation(m) => Rendered::new(400, "InvalidAction", m),
        Failure::InvalidParameter(m) => Rendered::new(400, "InvalidParameterValue", m),
        Failure::Service(e) => Rendered::new(400, e.code.as_str(), &e.message),
        Failure::Internal(m) => Rendered::new(500, "InternalError", m),
    }
}

/// An EC2 error body.
pub fn error_body(r: &Rendered, request_id: &str) -> Vec<u8> {
    super::query::error(
        Dialect::Ec2,
        "",
        &r.code,
        &r.message,
        r.server_fault(),
        request_id,
    )
}
