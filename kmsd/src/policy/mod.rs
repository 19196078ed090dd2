//! Authorization as AWS KMS does it, as pure code: the policy grammar ([`document`]),
//! conditions ([`condition`]), the caller ([`principal`]), the request ([`context`]),
//! evaluation ([`evaluate`]) and PutKeyPolicy's lockout
//! check ([`lockout`]). No I/O: the daemon supplies the documents and the caller.
//! See `docs/POLICY.md`.

pub mod condition;
pub mod context;
pub mod document;
pub mod evaluate;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzz_support;
pub mod lockout;
pub mod matching;
pub mod principal;

#[cfg(test)]
mod tests;

pub use context::RequestContext;
pub use document::PolicyDocument;
pub use evaluate::{
    authorize, authorize_account_action, evaluate_statements, Authorization, Decision, DenyReason,
    Outcome,
};
pub use principal::{Principal, PrincipalKind};

/// Errors of the policy layer, each with the AWS error code the service returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy document is malformed, or fails the lockout safety check.
    #[error("{0}")]
    Malformed(String),
    /// A principal (in configuration or a request) is not a valid principal.
    #[error("invalid principal {0}")]
    InvalidPrincipal(String),
    /// A key ARN is not a KMS key ARN.
    #[error("{0}")]
    InvalidArn(String),
}

impl PolicyError {
    /// The AWS error code for this error.
    #[cfg(any(test, feature = "testing"))]
    pub fn aws_error_code(&self) -> &'static str {
        match self {
            PolicyError::Malformed(_) => "MalformedPolicyDocumentException",
            PolicyError::InvalidPrincipal(_) => "ValidationException",
            PolicyError::InvalidArn(_) => "InvalidArnException",
        }
    }
}
