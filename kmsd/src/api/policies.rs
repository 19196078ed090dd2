//! Key policies: GetKeyPolicy, PutKeyPolicy, ListKeyPolicies. Handlers:
//! `service/policies.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trail::{self, Params};
use super::types::Empty;
use super::{Operation, Paginator, Service};

/// The only key policy name AWS KMS has.
pub const DEFAULT_POLICY_NAME: &str = "default";

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
        Params::new()
            .put("keyId", &self.key_id)
            .put(
                "policyName",
                self.policy_name.as_deref().unwrap_or(DEFAULT_POLICY_NAME),
            )
            .build()
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
        Params::new()
            .put("keyId", &self.key_id)
            .put(
                "policyName",
                self.policy_name.as_deref().unwrap_or(DEFAULT_POLICY_NAME),
            )
            .put("policy", &self.policy)
            .put(
                "bypassPolicyLockoutSafetyCheck",
                self.bypass_policy_lockout_safety_check,
            )
            .build()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyPoliciesRequest {
    pub key_id: String,
    /// 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<i32>,
    #[serde(default)]
    pub marker: Option<String>,
}

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
