//! IAM's managed policies: customer managed ones (`CreatePolicy`...), the AWS managed
//! ones atrest knows, and attaching them to users, groups and roles, with botocore's
//! IAM model's member names. Handlers: `service/iam_policies.rs`.

use serde::{Deserialize, Serialize};

use super::types::{Empty, Timestamp};

/// IAM's `Policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    pub policy_name: String,
    pub policy_id: String,
    pub arn: String,
    pub path: String,
    pub default_version_id: String,
    /// Users, groups and roles of the caller's account it is attached to.
    pub attachment_count: i32,
    pub permissions_boundary_usage_count: i32,
    pub is_attachable: bool,
    #[serde(default)]
    pub description: Option<String>,
    pub create_date: Timestamp,
    pub update_date: Timestamp,
}

/// IAM's `PolicyVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyVersion {
    pub document: String,
    pub version_id: String,
    pub is_default_version: bool,
    pub create_date: Timestamp,
}

/// IAM's `AttachedPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedPolicy {
    pub policy_name: String,
    pub policy_arn: String,
}

use super::iam::iam_operation as op;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatePolicyRequest {
    pub policy_name: String,
    #[serde(default)]
    pub path: Option<String>,
    pub policy_document: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyResponse {
    pub policy: Policy,
}

op!(CreatePolicyRequest => PolicyResponse, "CreatePolicy", Iam, read_only: false,
    unsupported: ["Tags"]);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPolicyRequest {
    pub policy_arn: String,
}

op!(GetPolicyRequest => PolicyResponse, "GetPolicy", Iam, read_only: true);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPolicyVersionRequest {
    pub policy_arn: String,
    pub version_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPolicyVersionResponse {
    pub policy_version: PolicyVersion,
}

op!(GetPolicyVersionRequest => GetPolicyVersionResponse, "GetPolicyVersion", Iam, read_only: true);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListPoliciesRequest {
    /// `All` (default), `AWS` or `Local`.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub only_attached: bool,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListPoliciesResponse {
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub marker: Option<String>,
}

op!(ListPoliciesRequest => ListPoliciesResponse, "ListPolicies", Iam, read_only: true,
    paginator: "Policies", unsupported: ["PolicyUsageFilter"]);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeletePolicyRequest {
    pub policy_arn: String,
}

op!(DeletePolicyRequest => Empty, "DeletePolicy", Iam, read_only: false);

/// `AttachUserPolicy` and `DetachUserPolicy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserPolicyArn {
    pub user_name: String,
    pub policy_arn: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupPolicyArn {
    pub group_name: String,
    pub policy_arn: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RolePolicyArn {
    pub role_name: String,
    pub policy_arn: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttachUserPolicyRequest(pub UserPolicyArn);
op!(AttachUserPolicyRequest => Empty, "AttachUserPolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetachUserPolicyRequest(pub UserPolicyArn);
op!(DetachUserPolicyRequest => Empty, "DetachUserPolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttachGroupPolicyRequest(pub GroupPolicyArn);
op!(AttachGroupPolicyRequest => Empty, "AttachGroupPolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetachGroupPolicyRequest(pub GroupPolicyArn);
op!(DetachGroupPolicyRequest => Empty, "DetachGroupPolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttachRolePolicyRequest(pub RolePolicyArn);
op!(AttachRolePolicyRequest => Empty, "AttachRolePolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetachRolePolicyRequest(pub RolePolicyArn);
op!(DetachRolePolicyRequest => Empty, "DetachRolePolicy", Iam, read_only: false);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAttachedPoliciesResponse {
    pub attached_policies: Vec<AttachedPolicy>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub marker: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAttachedUserPoliciesRequest {
    pub user_name: String,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}
op!(ListAttachedUserPoliciesRequest => ListAttachedPoliciesResponse, "ListAttachedUserPolicies", Iam,
    read_only: true, paginator: "AttachedPolicies");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAttachedGroupPoliciesRequest {
    pub group_name: String,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}
op!(ListAttachedGroupPoliciesRequest => ListAttachedPoliciesResponse, "ListAttachedGroupPolicies", Iam,
    read_only: true, paginator: "AttachedPolicies");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAttachedRolePoliciesRequest {
    pub role_name: String,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}
op!(ListAttachedRolePoliciesRequest => ListAttachedPoliciesResponse, "ListAttachedRolePolicies", Iam,
    read_only: true, paginator: "AttachedPolicies");
