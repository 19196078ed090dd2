//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. Handlers:
//! `service/aliases.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::Params;
use super::types::{Empty, Timestamp};
use super::{Operation, Paginator, Service};

/// `{"aliasName": ..., "targetKeyId": ...}`: CreateAlias's and UpdateAlias's parameters.
fn alias_parameters(alias_name: &str, target_key_id: &str) -> Value {
    Params::new()
        .put("aliasName", alias_name)
        .put("targetKeyId", target_key_id)
        .build()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAliasRequest {
    pub alias_name: String,
    pub target_key_id: String,
}

impl Operation for CreateAliasRequest {
    type Response = Empty;
    const NAME: &'static str = "CreateAlias";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        alias_parameters(&self.alias_name, &self.target_key_id)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateAliasRequest {
    pub alias_name: String,
    pub target_key_id: String,
}

impl Operation for UpdateAliasRequest {
    type Response = Empty;
    const NAME: &'static str = "UpdateAlias";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        alias_parameters(&self.alias_name, &self.target_key_id)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteAliasRequest {
    pub alias_name: String,
}

impl Operation for DeleteAliasRequest {
    type Response = Empty;
    const NAME: &'static str = "DeleteAlias";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        Params::new().put("aliasName", &self.alias_name).build()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesRequest {
    /// Only the aliases of this key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<i32>,
    #[serde(default)]
    pub marker: Option<String>,
}

/// `ListAliases` entry (AWS's `AliasListEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasListEntry {
    pub alias_name: String,
    pub alias_arn: String,
    pub target_key_id: String,
    pub creation_date: Timestamp,
    pub last_updated_date: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesResponse {
    pub aliases: Vec<AliasListEntry>,
    pub next_marker: Option<String>,
    pub truncated: bool,
}

impl Operation for ListAliasesRequest {
    type Response = ListAliasesResponse;
    const NAME: &'static str = "ListAliases";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const PAGINATOR: Option<Paginator> = Some(Paginator::marker("Aliases"));

    fn request_parameters(&self) -> Value {
        Params::new().opt("keyId", self.key_id.as_ref()).build()
    }
}
