//! IAM's managed policies: customer managed policies of the caller's account (one
//! version, `v1`, the default), the AWS managed policies atrest knows
//! ([`crate::iam::aws_managed`]), and attaching either to users, groups and roles of
//! the caller's account. An attachment takes effect on the next request like any IAM
//! change (`service/iam.rs`).

use super::iam::{check_document, limit, no_such, permissions, permissions_mut, quota, Kind};
use super::{Call, Caller, KeyService};
use crate::api::{
    AttachGroupPolicyRequest, AttachRolePolicyRequest, AttachUserPolicyRequest, AttachedPolicy,
    CreatePolicyRequest, DeletePolicyRequest, DetachGroupPolicyRequest, DetachRolePolicyRequest,
    DetachUserPolicyRequest, Empty, GetPolicyRequest, GetPolicyVersionRequest,
    GetPolicyVersionResponse, Handle, ListAttachedGroupPoliciesRequest,
    ListAttachedPoliciesResponse, ListAttachedRolePoliciesRequest, ListAttachedUserPoliciesRequest,
    ListPoliciesRequest, ListPoliciesResponse, Policy, PolicyResponse, PolicyVersion, Timestamp,
};
use crate::iam::names::{self, check_max_items, check_name, page};
use crate::iam::{aws_managed, new_id, AccountIam, ManagedPolicyRecord, PolicyVersionRecord};
use crate::policy::PolicyDocument;
use crate::protocol::{ErrorCode, KmsError};

/// A managed policy's largest document (characters other than white space).
const MAX_MANAGED_POLICY_CHARS: usize = 6144;

fn not_attachable(arn: &str) -> KmsError {
    KmsError::new(
        ErrorCode::NoSuchEntity,
        format!("Policy {arn} does not exist or is not attachable."),
    )
}

fn invalid_arn(arn: &str) -> KmsError {
    KmsError::new(ErrorCode::InvalidInput, format!("ARN {arn} is not valid."))
}

/// How many users, groups and roles of `a` have `arn` attached.
fn attachment_count(a: &AccountIam, arn: &str) -> i32 {
    let users = a.users.values().map(|u| &u.permissions);
    let groups = a.groups.values().map(|g| &g.permissions);
    let roles = a.roles.values().map(|r| &r.permissions);
    let n = users
        .chain(groups)
        .chain(roles)
        .filter(|p| p.attached_policies.iter().any(|x| x == arn))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The policy `arn` names, as the caller's account `a` sees it (AWS managed, or one
/// of `account`'s), with its default version's document.
fn find_policy(account: &str, a: &AccountIam, arn: &str) -> Result<(Policy, String), KmsError> {
    if let Some(p) = aws_managed::by_arn(arn) {
        let policy = Policy {
            policy_name: p.name.into(),
            policy_id: p.id(),
            arn: p.arn(),
            path: p.path.into(),
            default_version_id: "v1".into(),
            attachment_count: attachment_count(a, arn),
            permissions_boundary_usage_count: 0,
            is_attachable: true,
            description: Some(p.description.into()),
            create_date: p.create_date(),
            update_date: p.create_date(),
        };
        return Ok((policy, p.document.into()));
    }
    let (acct, path_name) = names::split_policy_arn(arn).ok_or_else(|| invalid_arn(arn))?;
    let (path, name) = names::split_path_name(path_name);
    if acct != account {
        return Err(not_attachable(arn));
    }
    let r = a
        .policies
        .get(name)
        .filter(|r| r.path == path)
        .ok_or_else(|| not_attachable(arn))?;
    let doc = r
        .default_document()
        .ok_or_else(|| not_attachable(arn))?
        .to_string();
    Ok((policy_of(account, name, r, attachment_count(a, arn)), doc))
}

fn policy_of(account: &str, name: &str, r: &ManagedPolicyRecord, attachments: i32) -> Policy {
    Policy {
        policy_name: name.into(),
        policy_id: r.id.clone(),
        arn: names::arn(account, "policy", &r.path, name),
        path: r.path.clone(),
        default_version_id: r.default_version_id.clone(),
        attachment_count: attachments,
        permissions_boundary_usage_count: 0,
        is_attachable: true,
        description: r.description.clone(),
        create_date: Timestamp::from_millis(r.create_date_ms),
        update_date: Timestamp::from_millis(r.update_date_ms),
    }
}

impl KeyService {
    fn attach(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        arn: &str,
        attach: bool,
    ) -> Result<Empty, KmsError> {
        let verb = if attach { "Attach" } else { "Detach" };
        check_name(&format!("{}Name", kind.word()), name, 128)?;
        let account = self.iam_account(caller)?;
        let path = self
            .iam_read(&account, |a| {
                permissions(a, kind, name).map(|(p, _)| p.to_string())
            })
            .unwrap_or_else(|| "/".into());
        self.authorize_iam(
            caller,
            &format!("iam:{verb}{}Policy", kind.title()),
            &names::arn(&account, kind.word(), &path, name),
        )?;
        if names::split_policy_arn(arn).is_none() {
            return Err(invalid_arn(arn));
        }
        self.iam_change(&account, |a, _| {
            if attach {
                find_policy(&account, a, arn)?;
            }
            let p = permissions_mut(a, kind, name).ok_or_else(|| no_such(kind.word(), name))?;
            let there = p.attached_policies.iter().any(|x| x == arn);
            match (attach, there) {
                (true, true) => Ok(((), false)),
                (true, false) => {
                    if p.attached_policies.len() >= quota::ATTACHED {
                        return Err(limit(
                            &format!("PoliciesPer{}", kind.title()),
                            quota::ATTACHED,
                        ));
                    }
                    p.attached_policies.push(arn.to_string());
                    Ok(((), true))
                }
                (false, true) => {
                    p.attached_policies.retain(|x| x != arn);
                    Ok(((), true))
                }
                (false, false) => Err(KmsError::new(
                    ErrorCode::NoSuchEntity,
                    format!("Policy {arn} was not found."),
                )),
            }
        })?;
        Ok(Empty {})
    }

    fn list_attached(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        prefix: Option<&str>,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<ListAttachedPoliciesResponse, KmsError> {
        check_name(&format!("{}Name", kind.word()), name, 128)?;
        let max = check_max_items(max_items)?;
        let account = self.iam_account(caller)?;
        let (path, arns) = self
            .iam_read(&account, |a| {
                permissions(a, kind, name)
                    .map(|(path, p)| (path.to_string(), p.attached_policies.clone()))
            })
            .ok_or_else(|| no_such(kind.word(), name))?;
        self.authorize_iam(
            caller,
            &format!("iam:ListAttached{}Policies", kind.title()),
            &names::arn(&account, kind.word(), &path, name),
        )?;
        let prefix = prefix.unwrap_or("/");
        let mut all: Vec<AttachedPolicy> = arns
            .iter()
            .filter_map(|arn| {
                let (_, path_name) = names::split_policy_arn(arn)?;
                let (path, policy_name) = names::split_path_name(path_name);
                path.starts_with(prefix).then(|| AttachedPolicy {
                    policy_name: policy_name.to_string(),
                    policy_arn: arn.clone(),
                })
            })
            .collect();
        all.sort_by(|a, b| a.policy_name.cmp(&b.policy_name));
        let (attached_policies, next) = page(all, |p| p.policy_name.as_str(), marker, max)?;
        Ok(ListAttachedPoliciesResponse {
            attached_policies,
            is_truncated: next.is_some(),
            marker: next,
        })
    }
}

impl Handle<Call<'_>, CreatePolicyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: CreatePolicyRequest,
    ) -> Result<PolicyResponse, KmsError> {
        check_name("policyName", &r.policy_name, 128)?;
        let path = match r.path.as_deref() {
            None => "/".to_string(),
            Some(p)
                if p.starts_with('/')
                    && p.ends_with('/')
                    && p.len() <= 512
                    && p.split('/')
                        .all(|seg| seg.is_empty() || names::is_entity_name(seg, 512)) =>
            {
                p.to_string()
            }
            Some(p) => return Err(names::validation(
                "path",
                p,
                "Member must satisfy regular expression pattern: ((/[A-Za-z0-9\\.,\\+@=_-]+)*)/",
            )),
        };
        if let Some(d) = &r.description {
            if d.chars().count() > 1000 {
                return Err(names::validation(
                    "description",
                    d,
                    "Member must have length less than or equal to 1000",
                ));
            }
        }
        let account = self.iam_account(cx.caller)?;
        let arn = names::arn(&account, "policy", &path, &r.policy_name);
        self.authorize_iam(cx.caller, "iam:CreatePolicy", &arn)?;
        check_document(
            "policyDocument",
            &r.policy_document,
            PolicyDocument::parse_identity_policy,
        )?;
        let size = r
            .policy_document
            .chars()
            .filter(|c| !c.is_whitespace())
            .count();
        if size > MAX_MANAGED_POLICY_CHARS {
            return Err(limit("PolicySize", MAX_MANAGED_POLICY_CHARS));
        }
        let policy = self.iam_change(&account, |a, now| {
            if a.policies
                .keys()
                .any(|n| n.eq_ignore_ascii_case(&r.policy_name))
            {
                return Err(KmsError::new(
                    ErrorCode::EntityAlreadyExists,
                    format!(
                        "A policy called {} already exists. Duplicate names are not allowed.",
                        r.policy_name
                    ),
                ));
            }
            let rec = ManagedPolicyRecord {
                id: new_id("ANPA"),
                path: path.clone(),
                create_date_ms: now,
                update_date_ms: now,
                description: r.description.clone(),
                default_version_id: "v1".into(),
                versions: vec![PolicyVersionRecord {
                    version_id: "v1".into(),
                    document: r.policy_document.clone(),
                    create_date_ms: now,
                }],
            };
            let policy = policy_of(&account, &r.policy_name, &rec, 0);
            a.policies.insert(r.policy_name.clone(), rec);
            Ok((policy, true))
        })?;
        Ok(PolicyResponse { policy })
    }
}

impl Handle<Call<'_>, GetPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: GetPolicyRequest) -> Result<PolicyResponse, KmsError> {
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(cx.caller, "iam:GetPolicy", &r.policy_arn)?;
        let (policy, _) = self.iam_read(&account, |a| find_policy(&account, a, &r.policy_arn))?;
        Ok(PolicyResponse { policy })
    }
}

impl Handle<Call<'_>, GetPolicyVersionRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: GetPolicyVersionRequest,
    ) -> Result<GetPolicyVersionResponse, KmsError> {
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(cx.caller, "iam:GetPolicyVersion", &r.policy_arn)?;
        let (policy, document) =
            self.iam_read(&account, |a| find_policy(&account, a, &r.policy_arn))?;
        if r.version_id != policy.default_version_id {
            return Err(KmsError::new(
                ErrorCode::NoSuchEntity,
                format!(
                    "Policy {} version {} does not exist or is not attachable.",
                    r.policy_arn, r.version_id
                ),
            ));
        }
        Ok(GetPolicyVersionResponse {
            policy_version: PolicyVersion {
                document,
                version_id: policy.default_version_id,
                is_default_version: true,
                create_date: policy.create_date,
            },
        })
    }
}

impl Handle<Call<'_>, ListPoliciesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListPoliciesRequest,
    ) -> Result<ListPoliciesResponse, KmsError> {
        let max = check_max_items(r.max_items)?;
        let scope = r.scope.as_deref().unwrap_or("All");
        if !matches!(scope, "All" | "AWS" | "Local") {
            return Err(names::validation(
                "scope",
                scope,
                "Member must satisfy enum value set: [All, AWS, Local]",
            ));
        }
        let prefix = r.path_prefix.as_deref().unwrap_or("/");
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(
            cx.caller,
            "iam:ListPolicies",
            &format!("arn:aws:iam::{account}:policy/"),
        )?;
        let mut all = self.iam_read(&account, |a| {
            let mut v = Vec::new();
            if scope != "Local" {
                for p in aws_managed::POLICIES {
                    if let Ok((policy, _)) = find_policy(&account, a, &p.arn()) {
                        v.push(policy);
                    }
                }
            }
            if scope != "AWS" {
                for (name, rec) in &a.policies {
                    let arn = names::arn(&account, "policy", &rec.path, name);
                    v.push(policy_of(&account, name, rec, attachment_count(a, &arn)));
                }
            }
            v
        });
        all.retain(|p| p.path.starts_with(prefix) && (!r.only_attached || p.attachment_count > 0));
        all.sort_by(|a, b| a.policy_name.cmp(&b.policy_name));
        let (policies, next) = page(all, |p| p.policy_name.as_str(), r.marker.as_deref(), max)?;
        Ok(ListPoliciesResponse {
            policies,
            is_truncated: next.is_some(),
            marker: next,
        })
    }
}

impl Handle<Call<'_>, DeletePolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DeletePolicyRequest) -> Result<Empty, KmsError> {
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(cx.caller, "iam:DeletePolicy", &r.policy_arn)?;
        if aws_managed::by_arn(&r.policy_arn).is_some() {
            return Err(KmsError::new(
                ErrorCode::InvalidInput,
                format!(
                    "{} is an AWS managed policy: it cannot be deleted.",
                    r.policy_arn
                ),
            ));
        }
        let arn = r.policy_arn.clone();
        self.iam_change(&account, |a, _| {
            let (policy, _) = find_policy(&account, a, &arn)?;
            if policy.attachment_count > 0 {
                return Err(KmsError::new(
                    ErrorCode::DeleteConflict,
                    "Cannot delete a policy attached to entities.",
                ));
            }
            a.policies.remove(&policy.policy_name);
            Ok(((), true))
        })?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, AttachUserPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: AttachUserPolicyRequest) -> Result<Empty, KmsError> {
        self.attach(cx.caller, Kind::User, &r.0.user_name, &r.0.policy_arn, true)
    }
}

impl Handle<Call<'_>, DetachUserPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DetachUserPolicyRequest) -> Result<Empty, KmsError> {
        self.attach(
            cx.caller,
            Kind::User,
            &r.0.user_name,
            &r.0.policy_arn,
            false,
        )
    }
}

impl Handle<Call<'_>, AttachGroupPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: AttachGroupPolicyRequest) -> Result<Empty, KmsError> {
        self.attach(
            cx.caller,
            Kind::Group,
            &r.0.group_name,
            &r.0.policy_arn,
            true,
        )
    }
}

impl Handle<Call<'_>, DetachGroupPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DetachGroupPolicyRequest) -> Result<Empty, KmsError> {
        self.attach(
            cx.caller,
            Kind::Group,
            &r.0.group_name,
            &r.0.policy_arn,
            false,
        )
    }
}

impl Handle<Call<'_>, AttachRolePolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: AttachRolePolicyRequest) -> Result<Empty, KmsError> {
        self.attach(cx.caller, Kind::Role, &r.0.role_name, &r.0.policy_arn, true)
    }
}

impl Handle<Call<'_>, DetachRolePolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DetachRolePolicyRequest) -> Result<Empty, KmsError> {
        self.attach(
            cx.caller,
            Kind::Role,
            &r.0.role_name,
            &r.0.policy_arn,
            false,
        )
    }
}

impl Handle<Call<'_>, ListAttachedUserPoliciesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListAttachedUserPoliciesRequest,
    ) -> Result<ListAttachedPoliciesResponse, KmsError> {
        self.list_attached(
            cx.caller,
            Kind::User,
            &r.user_name,
            r.path_prefix.as_deref(),
            r.marker.as_deref(),
            r.max_items,
        )
    }
}

impl Handle<Call<'_>, ListAttachedGroupPoliciesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListAttachedGroupPoliciesRequest,
    ) -> Result<ListAttachedPoliciesResponse, KmsError> {
        self.list_attached(
            cx.caller,
            Kind::Group,
            &r.group_name,
            r.path_prefix.as_deref(),
            r.marker.as_deref(),
            r.max_items,
        )
    }
}

impl Handle<Call<'_>, ListAttachedRolePoliciesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListAttachedRolePoliciesRequest,
    ) -> Result<ListAttachedPoliciesResponse, KmsError> {
        self.list_attached(
            cx.caller,
            Kind::Role,
            &r.role_name,
            r.path_prefix.as_deref(),
            r.marker.as_deref(),
            r.max_items,
        )
    }
}
