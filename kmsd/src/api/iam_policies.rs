//! IAM's managed policies: customer managed ones (`CreatePolicy`...), the AWS managed
//! ones atrest knows, and attaching them to users, groups and roles, with botocore's
//! IAM model's member names. Handlers: `service/iam_policies.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::{Empty, Timestamp};
use super::{Operation, Paginator, Service};

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

macro_rules! op {
    ($req:ty => $resp:ty, $name:literal, read_only: $ro:expr
     $(, paginator: $key:literal)? $(, unsupported: [$($u:literal),*])?) => {
        impl Operation for $req {
            type Response = $resp;
            const NAME: &'static str = $name;
            const SERVICE: Service = Service::Iam;
            const READ_ONLY: bool = $ro;
            $(const UNSUPPORTED: &'static [&'static str] = &[$($u),*];)?
            $(const PAGINATOR: Option<Paginator> = Some(Paginator::iam($key));)?

            fn request_parameters(&self) -> Value {
                super::trail::camel_members(self)
            }

            fn response_elements(r: &Self::Response) -> Value {
                if $ro {
                    Value::Null
                } else {
                    super::trail::camel_members(r)
                }
            }
        }
    };
}

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

op!(CreatePolicyRequest => PolicyResponse, "CreatePolicy", read_only: false,
    unsupported: ["Tags"]);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPolicyRequest {
    pub policy_arn: String,
}

op!(GetPolicyRequest => PolicyResponse, "GetPolicy", read_only: true);

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

op!(GetPolicyVersionRequest => GetPolicyVersionResponse, "GetPolicyVersion", read_only: true);

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

op!(ListPoliciesRequest => ListPoliciesResponse, "ListPolicies", read_only: true,
    paginator: "Policies", unsupported: ["PolicyUsageFilter"]);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeletePolicyRequest {
    pub policy_arn: String,
}

op!(DeletePolicyRequest => Empty, "DeletePolicy", read_only: false);

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
op!(AttachUserPolicyRequest => Empty, "AttachUserPolicy", read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetachUserPolicyRequest(pub UserPolicyArn);
op!(DetachUserPolicyRequest => Empty, "DetachUserPolicy", read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttachGroupPolicyRequest(pub GroupPolicyArn);
op!(AttachGroupPolicyRequest => Empty, "AttachGroupPolicy", read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetachGroupPolicyRequest(pub GroupPolicyArn);
op!(DetachGroupPolicyRequest => Empty, "DetachGroupPolicy", read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttachRolePolicyRequest(pub RolePolicyArn);
op!(AttachRolePolicyRequest => Empty, "AttachRolePolicy", read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetachRolePolicyRequest(pub RolePolicyArn);
op!(DetachRolePolicyRequest => Empty, "DetachRolePolicy", read_only: false);

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
op!(ListAttachedUserPoliciesRequest => ListAttachedPoliciesResponse, "ListAttachedUserPolicies",
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
op!(ListAttachedGroupPoliciesRequest => ListAttachedPoliciesResponse, "ListAttachedGroupPolicies",
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
op!(ListAttachedRolePoliciesRequest => ListAttachedPoliciesResponse, "ListAttachedRolePolicies",
    read_only: true, paginator: "AttachedPolicies");
