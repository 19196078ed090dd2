//! IAM's users, groups, roles and their inline policies, with botocore's IAM model's
//! member names (`botocore/data/iam/2010-05-08/service-2.json`). Handlers:
//! `service/iam.rs`. The shapes every IAM file shares ([`User`], [`Group`],
//! [`Role`]) are here too.
//!
//! CloudTrail's `requestParameters` of an IAM call are its request members in
//! camelCase ([`super::trail::camel_members`]), and its `responseElements` those
//! of the response for the calls that change something, as AWS records them.

use serde::{Deserialize, Serialize};

use super::types::{Empty, Timestamp};
use super::Paginator;

impl Paginator {
    /// IAM's list operations all page with `Marker` / `Marker` / `IsTruncated` /
    /// `MaxItems`.
    pub const fn iam(result_key: &'static str) -> Self {
        Paginator {
            input_token: "Marker",
            output_token: "Marker",
            more_results: "IsTruncated",
            limit_key: "MaxItems",
            result_key,
        }
    }
}

/// An IAM operation: its names and metadata from one line. `read_only` calls record
/// no `responseElements`; the others record their response in camelCase.
macro_rules! iam_operation {
    ($req:ty => $resp:ty, $name:literal, $service:ident, read_only: $ro:expr
     $(, paginator: $key:literal)? $(, unsupported: [$($u:literal),*])?) => {
        impl $crate::api::Operation for $req {
            type Response = $resp;
            const NAME: &'static str = $name;
            const SERVICE: $crate::api::Service = $crate::api::Service::$service;
            const READ_ONLY: bool = $ro;
            $(const UNSUPPORTED: &'static [&'static str] = &[$($u),*];)?
            $(const PAGINATOR: Option<$crate::api::Paginator> =
                Some($crate::api::Paginator::iam($key));)?

            fn request_parameters(&self) -> serde_json::Value {
                $crate::api::trail::camel_members(self)
            }

            fn response_elements(r: &Self::Response) -> serde_json::Value {
                if $ro {
                    serde_json::Value::Null
                } else {
                    $crate::api::trail::camel_members(r)
                }
            }
        }
    };
}
pub(crate) use iam_operation;

/// IAM's `User`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct User {
    pub path: String,
    pub user_name: String,
    pub user_id: String,
    pub arn: String,
    pub create_date: Timestamp,
}

/// IAM's `Group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Group {
    pub path: String,
    pub group_name: String,
    pub group_id: String,
    pub arn: String,
    pub create_date: Timestamp,
}

/// IAM's `Role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Role {
    pub path: String,
    pub role_name: String,
    pub role_id: String,
    pub arn: String,
    pub create_date: Timestamp,
    /// The trust policy, as given to `CreateRole`.
    #[serde(default)]
    pub assume_role_policy_document: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub max_session_duration: Option<i32>,
}

// ---- users ----

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateUserRequest {
    #[serde(default)]
    pub path: Option<String>,
    pub user_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateUserResponse {
    pub user: User,
}

iam_operation!(CreateUserRequest => CreateUserResponse, "CreateUser", Iam, read_only: false,
    unsupported: ["PermissionsBoundary", "Tags"]);

/// `GetUser`: without `UserName`, the caller's own user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetUserRequest {
    #[serde(default)]
    pub user_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetUserResponse {
    pub user: User,
}

iam_operation!(GetUserRequest => GetUserResponse, "GetUser", Iam, read_only: true);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListUsersRequest {
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListUsersResponse {
    pub users: Vec<User>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub marker: Option<String>,
}

iam_operation!(ListUsersRequest => ListUsersResponse, "ListUsers", Iam, read_only: true,
    paginator: "Users");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteUserRequest {
    pub user_name: String,
}

iam_operation!(DeleteUserRequest => Empty, "DeleteUser", Iam, read_only: false);

// ---- groups ----

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGroupRequest {
    #[serde(default)]
    pub path: Option<String>,
    pub group_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGroupResponse {
    pub group: Group,
}

iam_operation!(CreateGroupRequest => CreateGroupResponse, "CreateGroup", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetGroupRequest {
    pub group_name: String,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetGroupResponse {
    pub group: Group,
    /// The group's members.
    pub users: Vec<User>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub marker: Option<String>,
}

iam_operation!(GetGroupRequest => GetGroupResponse, "GetGroup", Iam, read_only: true,
    paginator: "Users");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupsRequest {
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupsResponse {
    pub groups: Vec<Group>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub marker: Option<String>,
}

iam_operation!(ListGroupsRequest => ListGroupsResponse, "ListGroups", Iam, read_only: true,
    paginator: "Groups");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupsForUserRequest {
    pub user_name: String,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

iam_operation!(ListGroupsForUserRequest => ListGroupsResponse, "ListGroupsForUser", Iam,
    read_only: true, paginator: "Groups");

/// `AddUserToGroup` and `RemoveUserFromGroup`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupMembershipRequest {
    pub group_name: String,
    pub user_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AddUserToGroupRequest(pub GroupMembershipRequest);

iam_operation!(AddUserToGroupRequest => Empty, "AddUserToGroup", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RemoveUserFromGroupRequest(pub GroupMembershipRequest);

iam_operation!(RemoveUserFromGroupRequest => Empty, "RemoveUserFromGroup", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteGroupRequest {
    pub group_name: String,
}

iam_operation!(DeleteGroupRequest => Empty, "DeleteGroup", Iam, read_only: false);

// ---- roles ----

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRoleRequest {
    #[serde(default)]
    pub path: Option<String>,
    pub role_name: String,
    pub assume_role_policy_document: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub max_session_duration: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRoleResponse {
    pub role: Role,
}

iam_operation!(CreateRoleRequest => CreateRoleResponse, "CreateRole", Iam, read_only: false,
    unsupported: ["PermissionsBoundary", "Tags", "MaxSigninSessionDuration"]);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRoleRequest {
    pub role_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRoleResponse {
    pub role: Role,
}

iam_operation!(GetRoleRequest => GetRoleResponse, "GetRole", Iam, read_only: true);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRolesRequest {
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRolesResponse {
    pub roles: Vec<Role>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub marker: Option<String>,
}

iam_operation!(ListRolesRequest => ListRolesResponse, "ListRoles", Iam, read_only: true,
    paginator: "Roles");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteRoleRequest {
    pub role_name: String,
}

iam_operation!(DeleteRoleRequest => Empty, "DeleteRole", Iam, read_only: false);

// ---- inline policies ----

/// `PutUserPolicy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutUserPolicyRequest {
    pub user_name: String,
    pub policy_name: String,
    pub policy_document: String,
}

iam_operation!(PutUserPolicyRequest => Empty, "PutUserPolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetUserPolicyRequest {
    pub user_name: String,
    pub policy_name: String,
}

/// `GetUserPolicy`'s answer (the same members as its request, and the document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetUserPolicyResponse {
    pub user_name: String,
    pub policy_name: String,
    pub policy_document: String,
}

iam_operation!(GetUserPolicyRequest => GetUserPolicyResponse, "GetUserPolicy", Iam, read_only: true);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeleteUserPolicyRequest(pub GetUserPolicyRequest);

iam_operation!(DeleteUserPolicyRequest => Empty, "DeleteUserPolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListUserPoliciesRequest {
    pub user_name: String,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

/// The inline policy names of a user, group or role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListPolicyNamesResponse {
    pub policy_names: Vec<String>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub marker: Option<String>,
}

iam_operation!(ListUserPoliciesRequest => ListPolicyNamesResponse, "ListUserPolicies", Iam,
    read_only: true, paginator: "PolicyNames");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutGroupPolicyRequest {
    pub group_name: String,
    pub policy_name: String,
    pub policy_document: String,
}

iam_operation!(PutGroupPolicyRequest => Empty, "PutGroupPolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetGroupPolicyRequest {
    pub group_name: String,
    pub policy_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetGroupPolicyResponse {
    pub group_name: String,
    pub policy_name: String,
    pub policy_document: String,
}

iam_operation!(GetGroupPolicyRequest => GetGroupPolicyResponse, "GetGroupPolicy", Iam, read_only: true);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeleteGroupPolicyRequest(pub GetGroupPolicyRequest);

iam_operation!(DeleteGroupPolicyRequest => Empty, "DeleteGroupPolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGroupPoliciesRequest {
    pub group_name: String,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

iam_operation!(ListGroupPoliciesRequest => ListPolicyNamesResponse, "ListGroupPolicies", Iam,
    read_only: true, paginator: "PolicyNames");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRolePolicyRequest {
    pub role_name: String,
    pub policy_name: String,
    pub policy_document: String,
}

iam_operation!(PutRolePolicyRequest => Empty, "PutRolePolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRolePolicyRequest {
    pub role_name: String,
    pub policy_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRolePolicyResponse {
    pub role_name: String,
    pub policy_name: String,
    pub policy_document: String,
}

iam_operation!(GetRolePolicyRequest => GetRolePolicyResponse, "GetRolePolicy", Iam, read_only: true);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeleteRolePolicyRequest(pub GetRolePolicyRequest);

iam_operation!(DeleteRolePolicyRequest => Empty, "DeleteRolePolicy", Iam, read_only: false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRolePoliciesRequest {
    pub role_name: String,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub max_items: Option<i32>,
}

iam_operation!(ListRolePoliciesRequest => ListPolicyNamesResponse, "ListRolePolicies", Iam,
    read_only: true, paginator: "PolicyNames");
