//! EC2's Query protocol: [`super::query`]'s codec in [`Dialect::Ec2`] (EC2 names input
//! members by `queryName` or the capitalized `locationName`, lists are always
//! `Name.N`, answers carry `<requestId>` first and `item` lists), with EC2's error
//! codes and statuses: `AuthFailure` (401) where STS says `SignatureDoesNotMatch`,
//! `RequestExpired` for a request outside its window, errors as
//! `<Response><Errors><Error>...</Errors><RequestID>`.
//!
//! The volume service's own errors ([`Failure::Ec2`]) keep their EC2 code
//! (`InvalidInstanceID.NotFound`, `IncorrectInstanceState`, ...) and get EC2's status
//! ([`status`]); kmsd's refusals it carries are answered in EC2's words
//! ([`Ec2Error::in_ec2_terms`]: `CustomerKeyHasBeenRevoked`, ...), never as KMS's
//! exception names.

pub use super::query::Dialect;
use super::{too_large_message, Failure, Rendered, EXPIRED_TOKEN, UNRECOGNIZED};
use crate::ec2::{Ec2Code, Ec2Error};
use crate::endpoint::sigv4::AuthError;

/// The HTTP status EC2 answers an error of the volume service with: 500 for its own
/// failures, 503 when it cannot serve now (SDKs retry both), 403 for a caller not
/// allowed, 401 for a signer not trusted, 400 for everything the request got wrong.
pub fn status(e: &Ec2Error) -> u16 {
    match e.code {
        Ec2Code::InternalError => 500,
        Ec2Code::ServiceUnavailable | Ec2Code::RequestLimitExceeded => 503,
        Ec2Code::UnauthorizedOperation => 403,
        Ec2Code::AuthFailure => 401,
        _ => 400,
    }
}

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
        Failure::Ec2(e) => {
            let e = e.in_ec2_terms();
            Rendered::new(status(&e), e.code.as_str(), &e.message)
        }
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
