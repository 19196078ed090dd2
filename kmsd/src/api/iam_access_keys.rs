//! IAM's access keys of users, with botocore's IAM model's member names. They are
//! the keys of kmsd's access-key store ([`crate::credentials`]), the ones the AWS
//! endpoint verifies signatures with. Handlers: `service/iam_access_keys.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::Params;
use super::types::{Empty, Timestamp};
use super::{Operation, Paginator, Service};

/// `CreateAccessKey`: without `UserName`, for the caller's own user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAccessKeyRequest {
    #[serde(default)]
    pub user_name: Option<String>,
}

/// IAM's `AccessKey`: the only answer that carries the secret (`Debug` redacts it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKey {
    pub user_name: String,
    pub access_key_id: String,
    /// `Active` or `Inactive`.
    pub status: String,
    pub secret_access_key: zeroize::Zeroizing<String>,
    pub create_date: Timestamp,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("user_name", &self.user_name)
            .field("access_key_id", &self.access_key_id)
            .field("status", &self.status)
            .field("secret_access_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAccessKeyResponse {
    pub access_key: AccessKey,
}

impl Operation for CreateAccessKeyRequest {
    type Response = CreateAccessKeyResponse;
    const NAME: &'static str = "CreateAccessKey";
    const SERVICE: Service = Service::Iam;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        super::trail::camel_members(self)
    }

    /// As AWS records it: without the secret.
    fn response_elements(r: &Self::Response) -> Value {
        let k = &r.access_key;
        Params::new()
            .put_value(
                "accessKey",
                Params::new()
                    .put("userName", &k.user_name)
                    .put("accessKeyId", &k.access_key_id)
                    .put("status", &k.status)
                    .put("createDate", k.create_date)
                    .build(),
            )
            .build()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAccessKeysRequest {
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

/// IAM's `AccessKeyMetadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyMetadata {
    pub user_name: String,
    pub access_key_id: String,
    pub status: String,
    pub create_date: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAccessKeysResponse {
    pub access_key_metadata: Vec<AccessKeyMetadata>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub marker: Option<String>,
}

impl Operation for ListAccessKeysRequest {
    type Response = ListAccessKeysResponse;
    const NAME: &'static str = "ListAccessKeys";
    const SERVICE: Service = Service::Iam;
    const READ_ONLY: bool = true;
    const PAGINATOR: Option<Paginator> = Some(Paginator::iam("AccessKeyMetadata"));

    fn request_parameters(&self) -> Value {
        super::trail::camel_members(self)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteAccessKeyRequest {
    #[serde(default)]
    pub user_name: Option<String>,
    pub access_key_id: String,
}

impl Operation for DeleteAccessKeyRequest {
    type Response = Empty;
    const NAME: &'static str = "DeleteAccessKey";
    const SERVICE: Service = Service::Iam;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        super::trail::camel_members(self)
    }
}

/// `UpdateAccessKey`: makes a key `Active` or `Inactive` (an inactive key fails the
/// next request signed with it, and works again once made active).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateAccessKeyRequest {
    #[serde(default)]
    pub user_name: Option<String>,
    pub access_key_id: String,
    /// `Active` or `Inactive`.
    pub status: String,
}

impl Operation for UpdateAccessKeyRequest {
    type Response = Empty;
    const NAME: &'static str = "UpdateAccessKey";
    const SERVICE: Service = Service::Iam;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        super::trail::camel_members(self)
    }
}
