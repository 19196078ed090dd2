//! STS, answered by kmsd (it knows who a caller is, and issues role sessions), with
//! botocore's STS model's member names (`botocore/data/sts/2011-06-15/service-2.json`).
//! Handlers: `service/sts.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::Params;
use super::types::Timestamp;
use super::{Operation, Service};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GetCallerIdentityRequest {}

/// STS's `GetCallerIdentityResponse`: exactly AWS's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCallerIdentityResponse {
    /// The principal's unique id: a user's `AIDA...`, a role session's
    /// `AROA...:SESSION`, the root's account id.
    pub user_id: String,
    pub account: String,
    pub arn: String,
}

impl Operation for GetCallerIdentityRequest {
    type Response = GetCallerIdentityResponse;
    const NAME: &'static str = "GetCallerIdentity";
    const SERVICE: Service = Service::Sts;
    const READ_ONLY: bool = true;

    fn request_parameters(&self) -> Value {
        Params::new().build()
    }
}

/// STS `AssumeRole`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssumeRoleRequest {
    pub role_arn: String,
    pub role_session_name: String,
    /// 900 to 43200 and at most the role's `MaxSessionDuration` (default 3600).
    #[serde(default)]
    pub duration_seconds: Option<i32>,
    /// What the role's trust policy may require (`sts:ExternalId`).
    #[serde(default)]
    pub external_id: Option<String>,
}

/// Temporary credentials. The secret and the token are secrets: `Debug` redacts them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: zeroize::Zeroizing<String>,
    pub session_token: zeroize::Zeroizing<String>,
    pub expiration: Timestamp,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Temporary credentials as the trail records them (AssumeRole's and GetSessionToken's
/// `responseElements`): the key id and expiry, never the secret or the token.
fn credentials_element(c: &Credentials) -> Value {
    Params::new()
        .put("accessKeyId", &c.access_key_id)
        .put("expiration", c.expiration)
        .build()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssumedRoleUser {
    /// `AROA...:SESSION`.
    pub assumed_role_id: String,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssumeRoleResponse {
    pub credentials: Credentials,
    pub assumed_role_user: AssumedRoleUser,
}

impl Operation for AssumeRoleRequest {
    type Response = AssumeRoleResponse;
    const NAME: &'static str = "AssumeRole";
    const SERVICE: Service = Service::Sts;
    const READ_ONLY: bool = false;
    const UNSUPPORTED: &'static [&'static str] = &[
        "PolicyArns",
        "Policy",
        "Tags",
        "TransitiveTagKeys",
        "SerialNumber",
        "TokenCode",
        "SourceIdentity",
        "ProvidedContexts",
        "MinimumSessionTokenSize",
    ];

    fn request_parameters(&self) -> Value {
        super::trail::camel_members(self)
    }

    /// As AWS records it, without the secret and the session token.
    fn response_elements(r: &Self::Response) -> Value {
        Params::new()
            .put_value("credentials", credentials_element(&r.credentials))
            .put_value(
                "assumedRoleUser",
                super::trail::camel_members(&r.assumed_role_user),
            )
            .build()
    }
}

/// STS `GetSessionToken`: temporary credentials for an IAM user (or the account's
/// root) whose requests act as that same principal, with its own policies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSessionTokenRequest {
    /// 900 to 129600 for a user (default 43200), at most 3600 for the root.
    #[serde(default)]
    pub duration_seconds: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSessionTokenResponse {
    pub credentials: Credentials,
}

impl Operation for GetSessionTokenRequest {
    type Response = GetSessionTokenResponse;
    const NAME: &'static str = "GetSessionToken";
    const SERVICE: Service = Service::Sts;
    const READ_ONLY: bool = false;
    const UNSUPPORTED: &'static [&'static str] =
        &["SerialNumber", "TokenCode", "MinimumSessionTokenSize"];

    fn request_parameters(&self) -> Value {
        super::trail::camel_members(self)
    }

    /// As AWS records it, without the secret and the session token.
    fn response_elements(r: &Self::Response) -> Value {
        Params::new()
            .put_value("credentials", credentials_element(&r.credentials))
            .build()
    }
}
