//! Key lifecycle: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
//! UpdateKeyDescription, and tags: ListResourceTags, TagResource, UntagResource.
//! Handlers: `service/keys.rs`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::trail::{self, Params};
use super::types::{Empty, KeyMetadata, Tag, SYMMETRIC_DEFAULT};
use super::{Operation, Paginator, Service};
use plumbing::awstime::format_rfc3339;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateKeyRequest {
    /// The key policy document (default: AWS's default key policy).
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `ENCRYPT_DECRYPT` (the default) is the only usage supported.
    #[serde(default)]
    pub key_usage: Option<String>,
    /// Deprecated name of `KeySpec`: `SYMMETRIC_DEFAULT` only.
    #[serde(default)]
    pub customer_master_key_spec: Option<String>,
    /// `SYMMETRIC_DEFAULT` (the default) is the only spec supported.
    #[serde(default)]
    pub key_spec: Option<String>,
    /// `AWS_KMS` (the default) is the only origin supported.
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub bypass_policy_lockout_safety_check: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// `false` (the default): atrest keys are single-Region.
    #[serde(default)]
    pub multi_region: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateKeyResponse {
    pub key_metadata: KeyMetadata,
}

impl Operation for CreateKeyRequest {
    type Response = CreateKeyResponse;
    const NAME: &'static str = "CreateKey";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;
    const UNSUPPORTED: &'static [&'static str] = &["CustomKeyStoreId", "XksKeyId"];

    fn request_parameters(&self) -> Value {
        let tags = (!self.tags.is_empty()).then(|| trail_tags(&self.tags));
        Params::new()
            .opt("description", self.description.as_ref())
            .put(
                "keyUsage",
                self.key_usage.as_deref().unwrap_or("ENCRYPT_DECRYPT"),
            )
            .put(
                "keySpec",
                self.key_spec.as_deref().unwrap_or(SYMMETRIC_DEFAULT),
            )
            .opt("policy", self.policy.as_ref())
            .opt("tags", tags)
            .opt(
                "bypassPolicyLockoutSafetyCheck",
                self.bypass_policy_lockout_safety_check.then_some(true),
            )
            .build()
    }

    fn response_elements(r: &CreateKeyResponse) -> Value {
        let m = &r.key_metadata;
        json!({
            "keyMetadata": {
                "aWSAccountId": m.aws_account_id,
                "keyId": m.key_id,
                "arn": m.arn,
                "creationDate": format_rfc3339(m.creation_date.as_millis()),
                "enabled": m.enabled,
                "description": m.description,
                "keyUsage": m.key_usage,
                "keyState": m.key_state.as_str(),
                "origin": m.origin,
                "keyManager": m.key_manager,
                "keySpec": m.key_spec,
                "encryptionAlgorithms": m.encryption_algorithms,
                "multiRegion": m.multi_region,
            }
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeKeyRequest {
    pub key_id: String,
    #[serde(default)]
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeKeyResponse {
    pub key_metadata: KeyMetadata,
}

impl Operation for DescribeKeyRequest {
    type Response = DescribeKeyResponse;
    const NAME: &'static str = "DescribeKey";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeysRequest {
    /// 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<i32>,
    #[serde(default)]
    pub marker: Option<String>,
}

/// `ListKeys` entry (AWS's `KeyListEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeysResponse {
    pub keys: Vec<KeyListEntry>,
    pub next_marker: Option<String>,
    pub truncated: bool,
}

impl Operation for ListKeysRequest {
    type Response = ListKeysResponse;
    const NAME: &'static str = "ListKeys";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["ResourceOwners"];
    const PAGINATOR: Option<Paginator> = Some(Paginator::marker("Keys"));

    fn request_parameters(&self) -> Value {
        Params::new().opt("limit", self.limit).build()
    }
}

/// A request that names only a key (`KeyId`): the requests of EnableKey,
/// DisableKey, CancelKeyDeletion, and the rotation calls.
macro_rules! key_id_request {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            pub key_id: String,
        }

        impl $name {
            pub fn new(key_id: impl Into<String>) -> Self {
                $name {
                    key_id: key_id.into(),
                }
            }
        }
    };
}
pub(crate) use key_id_request;

/// A paged list of something of one key (`KeyId`, `Limit`, `Marker`): the requests of
/// ListResourceTags, ListKeyPolicies and ListKeyRotations.
macro_rules! key_list_request {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            pub key_id: String,
            /// Most items in a page (1 to the operation's maximum, which is the default).
            #[serde(default)]
            pub limit: Option<i32>,
            #[serde(default)]
            pub marker: Option<String>,
        }
    };
}
pub(crate) use key_list_request;

key_id_request!(EnableKeyRequest);
key_id_request!(DisableKeyRequest);

impl Operation for EnableKeyRequest {
    type Response = Empty;
    const NAME: &'static str = "EnableKey";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }
}

impl Operation for DisableKeyRequest {
    type Response = Empty;
    const NAME: &'static str = "DisableKey";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateKeyDescriptionRequest {
    pub key_id: String,
    pub description: String,
}

impl Operation for UpdateKeyDescriptionRequest {
    type Response = Empty;
    const NAME: &'static str = "UpdateKeyDescription";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("keyId", &self.key_id)
            .put("description", &self.description)
            .build()
    }
}

key_list_request!(
    /// `Limit`: 1 to 50 (default 50).
    ListResourceTagsRequest
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListResourceTagsResponse {
    pub tags: Vec<Tag>,
    pub next_marker: Option<String>,
    pub truncated: bool,
}

impl Operation for ListResourceTagsRequest {
    type Response = ListResourceTagsResponse;
    const NAME: &'static str = "ListResourceTags";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const PAGINATOR: Option<Paginator> = Some(Paginator::marker("Tags"));

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }
}

/// CloudTrail's `tags`: `[{"tagKey": ..., "tagValue": ...}]`.
fn trail_tags(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"tagKey": t.tag_key, "tagValue": t.tag_value}))
            .collect(),
    )
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceRequest {
    pub key_id: String,
    /// Added, or replacing the value of a tag with the same key.
    pub tags: Vec<Tag>,
}

impl Operation for TagResourceRequest {
    type Response = Empty;
    const NAME: &'static str = "TagResource";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("keyId", &self.key_id)
            .put_value("tags", trail_tags(&self.tags))
            .build()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceRequest {
    pub key_id: String,
    /// Keys of the tags to remove (a key the key has not is ignored).
    pub tag_keys: Vec<String>,
}

impl Operation for UntagResourceRequest {
    type Response = Empty;
    const NAME: &'static str = "UntagResource";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("keyId", &self.key_id)
            .put("tagKeys", &self.tag_keys)
            .build()
    }
}
