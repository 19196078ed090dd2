//! atrest's own access-key calls (socket only): what the AWS endpoint verifies SigV4
//! signatures with, and the key `atrest env` hands out. Handlers:
//! `service/credentials.rs`; store: [`crate::credentials`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::Params;
use super::types::{SecretBlob, Timestamp};
use super::{Operation, Service};

/// The secret and principal of an access key (and session token), for the AWS
/// endpoint to verify a signature with. Only `[kmsd] endpoint_uids` may ask.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolveAccessKeyRequest {
    pub access_key_id: String,
    /// `x-amz-security-token`, for temporary (`ASIA...`) credentials.
    #[serde(default)]
    pub session_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolveAccessKeyResponse {
    pub access_key_id: String,
    /// The secret access key's UTF-8 bytes.
    pub secret_access_key: SecretBlob,
    /// The principal requests signed with the key act as.
    pub principal_arn: String,
    /// When temporary credentials expire.
    pub expiration: Option<Timestamp>,
}

impl Operation for ResolveAccessKeyRequest {
    type Response = ResolveAccessKeyResponse;
    const NAME: &'static str = "ResolveAccessKey";
    const SERVICE: Service = Service::Atrest;
    const READ_ONLY: bool = true;

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("accessKeyId", &self.access_key_id)
            .build()
    }
}

/// The caller's own access key for the AWS endpoint (`atrest env`): the oldest active
/// one `atrest env` made for the caller's principal (after `--as`), made now if there
/// is none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EnsureAccessKeyRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnsureAccessKeyResponse {
    pub access_key_id: String,
    /// The secret access key's UTF-8 bytes.
    pub secret_access_key: SecretBlob,
    pub principal_arn: String,
    /// Whether the key was made by this call.
    pub created: bool,
}

impl Operation for EnsureAccessKeyRequest {
    type Response = EnsureAccessKeyResponse;
    const NAME: &'static str = "EnsureAccessKey";
    const SERVICE: Service = Service::Atrest;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new().build()
    }

    fn response_elements(r: &Self::Response) -> Value {
        Params::new()
            .put("accessKeyId", &r.access_key_id)
            .put("created", r.created)
            .build()
    }
}
