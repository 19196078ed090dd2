//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant.
//! Handlers: `service/grants.rs`.
//!
//! A grant token is a credential: CloudTrail records the grant ID it names, never
//! the token.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::trail::{self, Params};
use super::types::{Empty, GrantConstraints, Timestamp};
use super::{Operation, Paginator, Service};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGrantRequest {
    pub key_id: String,
    /// Optional in AWS's model (for `GranteeServicePrincipal`); atrest needs it.
    #[serde(default)]
    pub grantee_principal: String,
    #[serde(default)]
    pub retiring_principal: Option<String>,
    /// AWS operation names: `Decrypt`, `GenerateDataKey`, ...
    pub operations: Vec<String>,
    #[serde(default)]
    pub constraints: Option<GrantConstraints>,
    #[serde(default)]
    pub grant_tokens: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGrantResponse {
    pub grant_token: String,
    pub grant_id: String,
}

impl Operation for CreateGrantRequest {
    type Response = CreateGrantResponse;
    const NAME: &'static str = "CreateGrant";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;
    const UNSUPPORTED: &'static [&'static str] = &[
        "DryRun",
        "GranteeServicePrincipal",
        "RetiringServicePrincipal",
        "Constraints.SourceArn",
    ];

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("keyId", &self.key_id)
            .put("granteePrincipal", &self.grantee_principal)
            .opt("retiringPrincipal", self.retiring_principal.as_ref())
            .put("operations", &self.operations)
            .opt(
                "constraints",
                self.constraints.as_ref().map(trail::constraints),
            )
            .opt("name", self.name.as_ref())
            .build()
    }

    fn response_elements(r: &CreateGrantResponse) -> Value {
        json!({ "grantId": r.grant_id })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGrantsRequest {
    /// 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<i32>,
    #[serde(default)]
    pub marker: Option<String>,
    pub key_id: String,
    #[serde(default)]
    pub grant_id: Option<String>,
    #[serde(default)]
    pub grantee_principal: Option<String>,
}

/// One grant (AWS's `GrantListEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantListEntry {
    /// The key ARN.
    pub key_id: String,
    pub grant_id: String,
    pub name: Option<String>,
    pub creation_date: Timestamp,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    /// `arn:aws:iam::ACCOUNT:root`.
    pub issuing_account: String,
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
}

/// ListGrants' and ListRetirableGrants' answer (one shape in AWS too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGrantsResponse {
    pub grants: Vec<GrantListEntry>,
    pub next_marker: Option<String>,
    pub truncated: bool,
}

impl Operation for ListGrantsRequest {
    type Response = ListGrantsResponse;
    const NAME: &'static str = "ListGrants";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["GranteeServicePrincipal"];
    const PAGINATOR: Option<Paginator> = Some(Paginator::marker("Grants"));

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("keyId", &self.key_id)
            .opt("grantId", self.grant_id.as_ref())
            .opt("granteePrincipal", self.grantee_principal.as_ref())
            .opt("limit", self.limit)
            .build()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRetirableGrantsRequest {
    /// 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<i32>,
    #[serde(default)]
    pub marker: Option<String>,
    /// Optional in AWS's model (for `RetiringServicePrincipal`); atrest needs it.
    #[serde(default)]
    pub retiring_principal: String,
}

impl Operation for ListRetirableGrantsRequest {
    type Response = ListGrantsResponse;
    const NAME: &'static str = "ListRetirableGrants";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const UNSUPPORTED: &'static [&'static str] = &["RetiringServicePrincipal"];
    const PAGINATOR: Option<Paginator> = Some(Paginator::marker("Grants"));

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("retiringPrincipal", &self.retiring_principal)
            .opt("limit", self.limit)
            .build()
    }
}

/// RetireGrant names the grant by its token, or by key and grant ID.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetireGrantRequest {
    #[serde(default)]
    pub grant_token: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub grant_id: Option<String>,
}

impl Operation for RetireGrantRequest {
    type Response = Empty;
    const NAME: &'static str = "RetireGrant";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;
    const UNSUPPORTED: &'static [&'static str] = &["DryRun"];

    fn request_parameters(&self) -> Value {
        // The token itself is a credential: only the grant it names is logged.
        let id = self.grant_id.clone().or_else(|| {
            self.grant_token
                .as_deref()
                .and_then(|t| crate::grants::grant_id_from_token(t).ok())
        });
        Params::new()
            .opt("keyId", self.key_id.as_ref())
            .opt("grantId", id)
            .build()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RevokeGrantRequest {
    pub key_id: String,
    pub grant_id: String,
}

impl Operation for RevokeGrantRequest {
    type Response = Empty;
    const NAME: &'static str = "RevokeGrant";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;
    const UNSUPPORTED: &'static [&'static str] = &["DryRun"];

    fn request_parameters(&self) -> Value {
        Params::new()
            .put("keyId", &self.key_id)
            .put("grantId", &self.grant_id)
            .build()
    }
}
