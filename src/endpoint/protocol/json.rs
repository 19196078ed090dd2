//! AWS JSON 1.1 (KMS, CloudTrail): the operation is the `X-Amz-Target` suffix, the
//! body its members as JSON (decoded by the operation types themselves:
//! `kmsd::api::Request::from_aws_json_of`), the answer JSON with
//! `Content-Type: application/x-amz-json-1.1`, and an error
//! `{"__type": CODE, "message": MESSAGE}` with HTTP 400 (500 and 503 for the server
//! faults AWS's model marks so).

use kmsd::protocol::ErrorCode;
use serde_json::{json, Value};

use super::{too_large_message, Failure, Rendered, EXPIRED_TOKEN, UNRECOGNIZED};
use crate::endpoint::sigv4::AuthError;

/// The content type of requests and answers.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The status AWS's models give a service error (400 unless the model says otherwise).
fn status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::KMSInternalException | ErrorCode::KeyUnavailableException => 500,
        ErrorCode::DependencyTimeoutException => 503,
        _ => 400,
    }
}

/// A failure as AWS JSON names it.
pub fn render(f: &Failure) -> Rendered {
    match f {
        Failure::Auth(AuthError::Missing) => Rendered::new(
            400,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ),
        Failure::Auth(AuthError::Incomplete(m)) => {
            Rendered::new(400, "IncompleteSignatureException", m)
        }
        Failure::Auth(AuthError::Invalid(m) | AuthError::Scope(m) | AuthError::Expired(m)) => {
            Rendered::new(400, "InvalidSignatureException", m)
        }
        Failure::UnrecognizedClient => {
            Rendered::new(400, "UnrecognizedClientException", UNRECOGNIZED)
        }
        Failure::ExpiredToken => Rendered::new(400, "ExpiredTokenException", EXPIRED_TOKEN),
        Failure::TooLarge { limit } => Rendered::new(
            413,
            "RequestEntityTooLargeException",
            too_large_message(*limit),
        ),
        Failure::Malformed(m) => Rendered::new(400, "SerializationException", m),
        Failure::UnknownOperation(m) => Rendered::new(400, "UnknownOperationException", m),
        Failure::InvalidParameter(m) => Rendered::new(400, "ValidationException", m),
        Failure::Service(e) => Rendered::new(status(e.code), e.code.as_str(), &e.message),
        Failure::Ec2(_) => super::ec2query::render(f),
        Failure::Internal(m) => Rendered::new(500, "InternalFailure", m),
    }
}

/// The JSON body of an error.
pub fn error_body(r: &Rendered) -> Vec<u8> {
    let v: Value = json!({"__type": r.code, "message": r.message});
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmsd::protocol::KmsError;

    #[test]
    fn auth_and_service_errors_have_aws_names_and_statuses() {
        let r = render(&Failure::Auth(AuthError::Missing));
        assert_eq!(
            (r.status, r.code.as_str()),
            (400, "MissingAuthenticationTokenException")
        );
        let r = render(&Failure::Auth(AuthError::Invalid(
            "Signature expired: x".into(),
        )));
        assert_eq!(r.code, "InvalidSignatureException");
        assert_eq!(
            render(&Failure::UnrecognizedClient).code,
            "UnrecognizedClientException"
        );
        let r = render(&Failure::Service(KmsError::internal("x")));
        assert_eq!((r.status, r.code.as_str()), (500, "KMSInternalException"));
        let r = render(&Failure::Service(KmsError::not_found("gone")));
        assert_eq!(r.status, 400);
        assert_eq!(
            String::from_utf8(error_body(&r)).unwrap(),
            r#"{"__type":"NotFoundException","message":"gone"}"#
        );
    }
}
