//! Key policies: GetKeyPolicy, PutKeyPolicy, ListKeyPolicies. Handlers:
//! `service/policies.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys::key_list_request;
use super::trail::{self, Params};
use super::types::Empty;
use super::{Operation, Paginator, Service};

/// The only key policy name AWS KMS has.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// `keyId` and `policyName` (default `default`), as GetKeyPolicy and PutKeyPolicy
/// record them.
fn key_and_policy_name(key_id: &str, policy_name: Option<&str>) -> Params {
    Params::new()
        .put("keyId", key_id)
        .put("policyName", policy_name.unwrap_or(DEFAULT_POLICY_NAME))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyPolicyRequest {
    pub key_id: String,
    /// Only `default` exists (the default).
    #[serde(default)]
    pub policy_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyPolicyResponse {
    pub policy: String,
    pub policy_name: String,
}

impl Operation for GetKeyPolicyRequest {
    type Response = GetKeyPolicyResponse;
    const NAME: &'static str = "GetKeyPolicy";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;

    fn request_parameters(&self) -> Value {
        key_and_policy_name(&self.key_id, self.policy_name.as_deref()).build()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutKeyPolicyRequest {
    pub key_id: String,
    #[serde(default)]
    pub policy_name: Option<String>,
    pub policy: String,
    #[serde(default)]
    pub bypass_policy_lockout_safety_check: bool,
}

impl Operation for PutKeyPolicyRequest {
    type Response = Empty;
    const NAME: &'static str = "PutKeyPolicy";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = false;

    fn request_parameters(&self) -> Value {
        key_and_policy_name(&self.key_id, self.policy_name.as_deref())
            .put("policy", &self.policy)
            .put(
                "bypassPolicyLockoutSafetyCheck",
                self.bypass_policy_lockout_safety_check,
            )
            .build()
    }
}

key_list_request!(
    /// `Limit`: 1 to 1000 (default 100).
    ListKeyPoliciesRequest
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyPoliciesResponse {
    pub policy_names: Vec<String>,
    pub next_marker: Option<String>,
    pub truncated: bool,
}

impl Operation for ListKeyPoliciesRequest {
    type Response = ListKeyPoliciesResponse;
    const NAME: &'static str = "ListKeyPolicies";
    const SERVICE: Service = Service::Kms;
    const READ_ONLY: bool = true;
    const PAGINATOR: Option<Paginator> = Some(Paginator::marker("PolicyNames"));

    fn request_parameters(&self) -> Value {
        trail::key_id(&self.key_id)
    }
}
