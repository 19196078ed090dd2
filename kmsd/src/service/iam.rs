//! IAM's operations: users, groups, roles and their inline policies, over the IAM
//! store ([`crate::iam`]). Every call acts in the caller's own account and is
//! authorized by the caller's identity policies (`iam:ACTION` on the entity's ARN;
//! the account's root always may), as AWS does. A change is written durably, then
//! the directory is rebuilt with it, so the next request is evaluated with it.
//!
//! Users and roles the config file declares are in the store too (adopted at start
//! and on reload, [`adopt_declared`]): IAM calls work on them, except deleting them
//! (the config would declare them again).

use super::{Call, Caller, KeyService};
use crate::api::{
    AddUserToGroupRequest, CreateGroupRequest, CreateGroupResponse, CreateRoleRequest,
    CreateRoleResponse, CreateUserRequest, CreateUserResponse, DeleteGroupPolicyRequest,
    DeleteGroupRequest, DeleteRolePolicyRequest, DeleteRoleRequest, DeleteUserPolicyRequest,
    DeleteUserRequest, Empty, GetGroupPolicyRequest, GetGroupPolicyResponse, GetGroupRequest,
    GetGroupResponse, GetRolePolicyRequest, GetRolePolicyResponse, GetRoleRequest, GetRoleResponse,
    GetUserPolicyRequest, GetUserPolicyResponse, GetUserRequest, GetUserResponse, Group, Handle,
    ListGroupPoliciesRequest, ListGroupsForUserRequest, ListGroupsRequest, ListGroupsResponse,
    ListPolicyNamesResponse, ListRolePoliciesRequest, ListRolesRequest, ListRolesResponse,
    ListUserPoliciesRequest, ListUsersRequest, ListUsersResponse, PutGroupPolicyRequest,
    PutRolePolicyRequest, PutUserPolicyRequest, RemoveUserFromGroupRequest, Role, Timestamp, User,
};
use crate::config::Config;
use crate::iam::names::{self, check_max_items, check_name, check_path, page};
use crate::iam::store::IamStoreError;
use crate::iam::{
    compile, new_id, trust, AccountIam, GroupRecord, IamFile, Permissions, RoleRecord, UserRecord,
};
use crate::policy::condition::ConditionKeys;
use crate::policy::context::keys;
use crate::policy::{authorize_account_action, PolicyDocument, PrincipalKind, RequestContext};
use crate::protocol::{ErrorCode, KmsError};

/// IAM's quotas atrest enforces, with AWS's default values.
pub(crate) mod quota {
    /// Inline policies' total size (characters other than white space) per user,
    /// group and role.
    pub const USER_INLINE: usize = 2048;
    pub const GROUP_INLINE: usize = 5120;
    pub const ROLE_INLINE: usize = 10240;
    /// Managed policies attached to one user, group or role.
    pub const ATTACHED: usize = 10;
    /// Groups one user is in.
    pub const GROUPS_PER_USER: usize = 10;
    /// A policy document's largest size (IAM's `policyDocumentType`).
    pub const DOCUMENT: usize = 131_072;
}

impl From<IamStoreError> for KmsError {
    fn from(e: IamStoreError) -> KmsError {
        tracing::error!(error = %e, "IAM store write failed");
        KmsError::new(
            ErrorCode::ServiceFailure,
            "kmsd could not write its IAM store; nothing was changed",
        )
    }
}

pub(crate) fn no_such(kind: &str, name: &str) -> KmsError {
    KmsError::new(
        ErrorCode::NoSuchEntity,
        format!("The {kind} with name {name} cannot be found."),
    )
}

fn already_exists(kind: &str, name: &str) -> KmsError {
    KmsError::new(
        ErrorCode::EntityAlreadyExists,
        format!("{kind} with name {name} already exists."),
    )
}

fn delete_conflict(what: &str) -> KmsError {
    KmsError::new(
        ErrorCode::DeleteConflict,
        format!("Cannot delete entity, {what}."),
    )
}

pub(crate) fn limit(quota: &str, value: usize) -> KmsError {
    KmsError::new(
        ErrorCode::LimitExceeded,
        format!("Cannot exceed quota for {quota}: {value}"),
    )
}

/// A policy document's checks before it is stored: its size, then its grammar
/// for its use (`parse`).
pub(crate) fn check_document<T>(
    member: &str,
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, crate::policy::PolicyError>,
) -> Result<T, KmsError> {
    if text.is_empty() || text.len() > quota::DOCUMENT {
        return Err(names::validation(
            member,
            "...",
            &format!("Member must have length between 1 and {}", quota::DOCUMENT),
        ));
    }
    parse(text).map_err(|e| {
        let detail = e.to_string();
        tracing::debug!(member, %detail, "policy document refused");
        KmsError::new(ErrorCode::MalformedPolicyDocument, iam_wording(&detail))
    })
}

/// IAM's own words for why a policy document is refused: `Syntax errors in policy.`
/// for whatever it does not parse, and its few specific messages (a statement with no
/// actions or resources, an identity policy naming a principal, a trust policy naming
/// a resource or no principal). kmsd's parser says more (which statement, which
/// element); that detail is logged at debug level, as IAM gives none.
fn iam_wording(detail: &str) -> String {
    let words = if detail.ends_with("missing Resource or NotResource") {
        "Policy statement must contain resources."
    } else if detail.ends_with("missing Action or NotAction") {
        "Policy statement must contain actions."
    } else if detail.ends_with("an identity-based policy statement must not have a Principal") {
        "Policy document should not specify a principal."
    } else if [
        "Has prohibited field Resource",
        "Missing required field Principal",
        "AssumeRole policy may only specify STS AssumeRole actions.",
    ]
    .contains(&detail)
    {
        detail
    } else {
        "Syntax errors in policy."
    };
    words.to_string()
}

fn to_ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub(crate) fn user_of(account: &str, name: &str, u: &UserRecord) -> User {
    User {
        path: u.path.clone(),
        user_name: name.to_string(),
        user_id: u.id.clone(),
        arn: names::arn(account, "user", &u.path, name),
        create_date: to_ts(u.create_date_ms),
    }
}

fn group_of(account: &str, name: &str, g: &GroupRecord) -> Group {
    Group {
        path: g.path.clone(),
        group_name: name.to_string(),
        group_id: g.id.clone(),
        arn: names::arn(account, "group", &g.path, name),
        create_date: to_ts(g.create_date_ms),
    }
}

pub(crate) fn role_of(account: &str, name: &str, r: &RoleRecord) -> Role {
    Role {
        path: r.path.clone(),
        role_name: name.to_string(),
        role_id: r.id.clone(),
        arn: names::arn(account, "role", &r.path, name),
        create_date: to_ts(r.create_date_ms),
        assume_role_policy_document: Some(r.assume_role_policy.clone()),
        description: r.description.clone(),
        max_session_duration: Some(r.max_session_duration),
    }
}

/// Which kind of entity an inline-policy or attachment call names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Group,
    Role,
}

impl Kind {
    pub(crate) fn word(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Role => "role",
        }
    }
    /// `User`, for action names (`iam:PutUserPolicy`) and quota names.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
            Kind::Role => "Role",
        }
    }
    fn member(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "groupName",
            Kind::Role => "roleName",
        }
    }
    fn max_name(self) -> usize {
        match self {
            Kind::Group => 128,
            Kind::User | Kind::Role => 64,
        }
    }
    fn inline_quota(self) -> usize {
        match self {
            Kind::User => quota::USER_INLINE,
            Kind::Group => quota::GROUP_INLINE,
            Kind::Role => quota::ROLE_INLINE,
        }
    }
}

/// The permissions and path of entity `name` of `kind` in `a`.
pub(crate) fn permissions<'a>(
    a: &'a AccountIam,
    kind: Kind,
    name: &str,
) -> Option<(&'a str, &'a Permissions)> {
    match kind {
        Kind::User => a.users.get(name).map(|u| (u.path.as_str(), &u.permissions)),
        Kind::Group => a
            .groups
            .get(name)
            .map(|g| (g.path.as_str(), &g.permissions)),
        Kind::Role => a.roles.get(name).map(|r| (r.path.as_str(), &r.permissions)),
    }
}

pub(crate) fn permissions_mut<'a>(
    a: &'a mut AccountIam,
    kind: Kind,
    name: &str,
) -> Option<&'a mut Permissions> {
    match kind {
        Kind::User => a.users.get_mut(name).map(|u| &mut u.permissions),
        Kind::Group => a.groups.get_mut(name).map(|g| &mut g.permissions),
        Kind::Role => a.roles.get_mut(name).map(|r| &mut r.permissions),
    }
}

/// Users and roles `config` declares get a record in `f` (a role with a trust
/// policy naming its account, [`trust::account_trust_policy`]); records it no longer
/// declares become ordinary ones. Returns whether anything changed.
pub fn adopt_declared(f: &mut IamFile, config: &Config, now_ms: i64) -> bool {
    let mut changed = false;
    for (account, a) in f.accounts.iter_mut() {
        let declared = config.accounts.get(account);
        for (name, u) in a.users.iter_mut() {
            let is = declared.is_some_and(|d| d.users.contains_key(name));
            changed |= u.declared != is;
            u.declared = is;
        }
        for (name, r) in a.roles.iter_mut() {
            let is = declared.is_some_and(|d| d.roles.contains_key(name));
            changed |= r.declared != is;
            r.declared = is;
        }
    }
    for (account, d) in &config.accounts {
        let a = f.accounts.entry(account.clone()).or_default();
        for name in d.users.keys() {
            if let Some(u) = a.users.get_mut(name) {
                changed |= !u.declared;
                u.declared = true;
                continue;
            }
            a.users.insert(
                name.clone(),
                UserRecord {
                    id: new_id("AIDA"),
                    path: "/".into(),
                    create_date_ms: now_ms,
                    declared: true,
                    permissions: Permissions::default(),
                },
            );
            changed = true;
        }
        for name in d.roles.keys() {
            if let Some(r) = a.roles.get_mut(name) {
                changed |= !r.declared;
                r.declared = true;
                continue;
            }
            a.roles.insert(
                name.clone(),
                RoleRecord {
                    id: new_id("AROA"),
                    path: "/".into(),
                    create_date_ms: now_ms,
                    declared: true,
                    assume_role_policy: trust::account_trust_policy(account),
                    description: None,
                    max_session_duration: trust::DEFAULT_MAX_SESSION_DURATION,
                    permissions: Permissions::default(),
                },
            );
            changed = true;
        }
    }
    f.accounts.retain(|_, a| {
        !(a.users.is_empty() && a.groups.is_empty() && a.roles.is_empty() && a.policies.is_empty())
    });
    changed
}

impl KeyService {
    /// The account an IAM call acts in: the caller's own.
    pub(crate) fn iam_account(&self, caller: &Caller) -> Result<String, KmsError> {
        match (&caller.principal.kind, &caller.principal.account) {
            (PrincipalKind::Service { .. }, _) | (_, None) => Err(KmsError::new(
                ErrorCode::AccessDenied,
                format!(
                    "{} has no account to make IAM calls in",
                    caller.principal_arn
                ),
            )),
            (_, Some(a)) => Ok(a.clone()),
        }
    }

    /// May the caller do IAM `action` (`iam:CreateUser`) on `resource`? Its identity
    /// policies decide (the root always may): `AccessDenied` with AWS's message.
    pub(crate) fn authorize_iam(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
    ) -> Result<String, KmsError> {
        let account = self.iam_account(caller)?;
        let mut condition_keys = ConditionKeys::new();
        condition_keys.set(keys::PRINCIPAL_ARN, vec![caller.principal.arn.clone()]);
        condition_keys.set(keys::PRINCIPAL_ACCOUNT, vec![account.clone()]);
        let ctx = RequestContext {
            principal: caller.principal.clone(),
            action: action.to_string(),
            resource: resource.to_string(),
            key_account: account.clone(),
            condition_keys,
        };
        match authorize_account_action(&ctx, &caller.policies).access_denied_message() {
            None => Ok(account),
            Some(m) => Err(KmsError::new(ErrorCode::AccessDenied, m)),
        }
    }

    /// Authorizes `action` on entity `name` of `kind` (its ARN as it would be with
    /// path `/` when it does not exist) and returns the account.
    fn authorize_entity(
        &self,
        caller: &Caller,
        action: &str,
        kind: Kind,
        name: &str,
    ) -> Result<String, KmsError> {
        check_name(kind.member(), name, kind.max_name())?;
        let account = self.iam_account(caller)?;
        let snapshot = self.iam.snapshot();
        let path = snapshot
            .accounts
            .get(&account)
            .and_then(|a| permissions(a, kind, name))
            .map(|(p, _)| p.to_string())
            .unwrap_or_else(|| "/".into());
        self.authorize_iam(
            caller,
            action,
            &names::arn(&account, kind.word(), &path, name),
        )
    }

    /// Changes `account`'s part of the IAM store with `f` (which returns its answer
    /// and whether it changed anything), then rebuilds the directory with it.
    pub(crate) fn iam_change<T>(
        &self,
        account: &str,
        f: impl FnOnce(&mut AccountIam, i64) -> Result<(T, bool), KmsError>,
    ) -> Result<T, KmsError> {
        let now = self.now_ms();
        self.iam.change(
            |file| f(file.accounts.entry(account.to_string()).or_default(), now),
            |file, changed| {
                if changed {
                    self.publish_iam(file)?;
                }
                Ok(())
            },
        )
    }

    /// Rebuilds the directory with the IAM store `file`'s policies.
    pub(crate) fn publish_iam(&self, file: &IamFile) -> Result<(), KmsError> {
        let compiled = compile(file).map_err(|e| {
            // parse_file checked every rule compile relies on before the write.
            tracing::error!(error = %e, "IAM store does not compile");
            KmsError::new(
                ErrorCode::ServiceFailure,
                "kmsd could not apply the IAM change",
            )
        })?;
        self.set_directory(self.directory().with_store(&compiled));
        Ok(())
    }

    /// A read of `account`'s part of the store (empty if it has none).
    pub(crate) fn iam_read<T>(&self, account: &str, f: impl FnOnce(&AccountIam) -> T) -> T {
        let snapshot = self.iam.snapshot();
        match snapshot.accounts.get(account) {
            Some(a) => f(a),
            None => f(&AccountIam::default()),
        }
    }

    fn put_inline(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<Empty, KmsError> {
        let account = self.authorize_entity(
            caller,
            &format!("iam:Put{}Policy", kind.title()),
            kind,
            name,
        )?;
        check_name("policyName", policy_name, 128)?;
        check_document(
            "policyDocument",
            document,
            PolicyDocument::parse_identity_policy,
        )?;
        self.iam_change(&account, |a, _| {
            let p = permissions_mut(a, kind, name).ok_or_else(|| no_such(kind.word(), name))?;
            p.inline_policies
                .insert(policy_name.to_string(), document.to_string());
            let size: usize = p
                .inline_policies
                .values()
                .map(|d| d.chars().filter(|c| !c.is_whitespace()).count())
                .sum();
            if size > kind.inline_quota() {
                return Err(KmsError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "Maximum policy size of {} bytes exceeded for {} {name}",
                        kind.inline_quota(),
                        kind.word()
                    ),
                ));
            }
            Ok(((), true))
        })?;
        Ok(Empty {})
    }

    fn get_inline(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        policy_name: &str,
    ) -> Result<String, KmsError> {
        let account = self.authorize_entity(
            caller,
            &format!("iam:Get{}Policy", kind.title()),
            kind,
            name,
        )?;
        check_name("policyName", policy_name, 128)?;
        self.iam_read(&account, |a| {
            let (_, p) = permissions(a, kind, name).ok_or_else(|| no_such(kind.word(), name))?;
            p.inline_policies.get(policy_name).cloned().ok_or_else(|| {
                KmsError::new(
                    ErrorCode::NoSuchEntity,
                    format!(
                        "The {} policy with name {policy_name} cannot be found.",
                        kind.word()
                    ),
                )
            })
        })
    }

    fn delete_inline(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        policy_name: &str,
    ) -> Result<Empty, KmsError> {
        let account = self.authorize_entity(
            caller,
            &format!("iam:Delete{}Policy", kind.title()),
            kind,
            name,
        )?;
        check_name("policyName", policy_name, 128)?;
        self.iam_change(&account, |a, _| {
            let p = permissions_mut(a, kind, name).ok_or_else(|| no_such(kind.word(), name))?;
            match p.inline_policies.remove(policy_name) {
                Some(_) => Ok(((), true)),
                None => Err(KmsError::new(
                    ErrorCode::NoSuchEntity,
                    format!(
                        "The {} policy with name {policy_name} cannot be found.",
                        kind.word()
                    ),
                )),
            }
        })?;
        Ok(Empty {})
    }

    fn list_inline(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        marker: Option<&str>,
        max_items: Option<i32>,
    ) -> Result<ListPolicyNamesResponse, KmsError> {
        let account = self.authorize_entity(
            caller,
            &format!("iam:List{}Policies", kind.title()),
            kind,
            name,
        )?;
        let max = check_max_items(max_items)?;
        let all = self.iam_read(&account, |a| {
            permissions(a, kind, name)
                .map(|(_, p)| p.inline_policies.keys().cloned().collect::<Vec<_>>())
                .ok_or_else(|| no_such(kind.word(), name))
        })?;
        let (policy_names, next) = page(all, |s| s.as_str(), marker, max)?;
        Ok(ListPolicyNamesResponse {
            policy_names,
            is_truncated: next.is_some(),
            marker: next,
        })
    }

    /// The users of `account` (path-filtered), as IAM lists them: by name.
    fn users_page(
        account: &str,
        a: &AccountIam,
        only: impl Fn(&str, &UserRecord) -> bool,
        marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<User>, Option<String>), KmsError> {
        let all: Vec<User> = a
            .users
            .iter()
            .filter(|(n, u)| only(n, u))
            .map(|(n, u)| user_of(account, n, u))
            .collect();
        page(all, |u| u.user_name.as_str(), marker, max)
    }
}

fn check_prefix(prefix: Option<&str>) -> Result<&str, KmsError> {
    match prefix {
        None => Ok("/"),
        Some(p) if p.starts_with('/') && p.len() <= 512 => Ok(p),
        Some(p) => Err(names::validation(
            "pathPrefix",
            p,
            "Member must satisfy regular expression pattern: \\u002F[\\u0021-\\u007F]*",
        )),
    }
}

// ---- users ----

impl Handle<Call<'_>, CreateUserRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: CreateUserRequest,
    ) -> Result<CreateUserResponse, KmsError> {
        let path = check_path("path", r.path.as_deref())?;
        check_name("userName", &r.user_name, 64)?;
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(
            cx.caller,
            "iam:CreateUser",
            &names::arn(&account, "user", &path, &r.user_name),
        )?;
        let user = self.iam_change(&account, |a, now| {
            if a.users.keys().any(|n| n.eq_ignore_ascii_case(&r.user_name)) {
                return Err(already_exists("User", &r.user_name));
            }
            let rec = UserRecord {
                id: new_id("AIDA"),
                path,
                create_date_ms: now,
                declared: false,
                permissions: Permissions::default(),
            };
            let user = user_of(&account, &r.user_name, &rec);
            a.users.insert(r.user_name.clone(), rec);
            Ok((user, true))
        })?;
        Ok(CreateUserResponse { user })
    }
}

impl Handle<Call<'_>, GetUserRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: GetUserRequest) -> Result<GetUserResponse, KmsError> {
        let caller = cx.caller;
        let name = match (&r.user_name, &caller.principal.kind) {
            (Some(n), _) => n.clone(),
            // Without a name: the caller's own user.
            (None, PrincipalKind::User { name }) => {
                name.rsplit('/').next().unwrap_or(name).to_string()
            }
            (None, _) => {
                return Err(KmsError::new(
                    ErrorCode::ValidationError,
                    format!(
                        "Must specify userName when calling with non-User credentials ({})",
                        caller.principal_arn
                    ),
                ))
            }
        };
        let account = self.authorize_entity(caller, "iam:GetUser", Kind::User, &name)?;
        let found = self.iam_read(&account, |a| {
            a.users.get(&name).map(|u| user_of(&account, &name, u))
        });
        let user = match found {
            Some(u) => u,
            // The caller's own principal is a user whether or not IAM made it (a
            // Unix user's default principal): it gets a stable id.
            None if r.user_name.is_none() => User {
                path: "/".into(),
                user_name: name.clone(),
                user_id: crate::iam::derived_id("AIDA", &caller.principal_arn),
                arn: caller.principal_arn.clone(),
                create_date: Timestamp::from_millis(0),
            },
            None => return Err(no_such("user", &name)),
        };
        Ok(GetUserResponse { user })
    }
}

impl Handle<Call<'_>, ListUsersRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListUsersRequest,
    ) -> Result<ListUsersResponse, KmsError> {
        let prefix = check_prefix(r.path_prefix.as_deref())?;
        let max = check_max_items(r.max_items)?;
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(
            cx.caller,
            "iam:ListUsers",
            &format!("arn:aws:iam::{account}:user/"),
        )?;
        let (users, next) = self.iam_read(&account, |a| {
            Self::users_page(
                &account,
                a,
                |_, u| u.path.starts_with(prefix),
                r.marker.as_deref(),
                max,
            )
        })?;
        Ok(ListUsersResponse {
            users,
            is_truncated: next.is_some(),
            marker: next,
        })
    }
}

impl Handle<Call<'_>, DeleteUserRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DeleteUserRequest) -> Result<Empty, KmsError> {
        let name = &r.user_name;
        let account = self.authorize_entity(cx.caller, "iam:DeleteUser", Kind::User, name)?;
        self.iam_change(&account, |a, _| {
            let u = a.users.get(name).ok_or_else(|| no_such("user", name))?;
            if u.declared {
                return Err(delete_conflict(
                    "it is declared in kmsd's configuration file; remove it there",
                ));
            }
            if !u.permissions.inline_policies.is_empty() {
                return Err(delete_conflict("must delete policies first"));
            }
            if !u.permissions.attached_policies.is_empty() {
                return Err(delete_conflict("must detach all policies first"));
            }
            if a.groups.values().any(|g| g.members.contains(name)) {
                return Err(delete_conflict("must remove users from group first"));
            }
            if self.has_access_keys(&names::arn(&account, "user", &u.path, name)) {
                return Err(delete_conflict("must delete access keys first"));
            }
            a.users.remove(name);
            Ok(((), true))
        })?;
        Ok(Empty {})
    }
}

// ---- groups ----

impl Handle<Call<'_>, CreateGroupRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: CreateGroupRequest,
    ) -> Result<CreateGroupResponse, KmsError> {
        let path = check_path("path", r.path.as_deref())?;
        check_name("groupName", &r.group_name, 128)?;
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(
            cx.caller,
            "iam:CreateGroup",
            &names::arn(&account, "group", &path, &r.group_name),
        )?;
        let group = self.iam_change(&account, |a, now| {
            if a.groups
                .keys()
                .any(|n| n.eq_ignore_ascii_case(&r.group_name))
            {
                return Err(already_exists("Group", &r.group_name));
            }
            let rec = GroupRecord {
                id: new_id("AGPA"),
                path,
                create_date_ms: now,
                members: Vec::new(),
                permissions: Permissions::default(),
            };
            let group = group_of(&account, &r.group_name, &rec);
            a.groups.insert(r.group_name.clone(), rec);
            Ok((group, true))
        })?;
        Ok(CreateGroupResponse { group })
    }
}

impl Handle<Call<'_>, GetGroupRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: GetGroupRequest) -> Result<GetGroupResponse, KmsError> {
        let max = check_max_items(r.max_items)?;
        let account =
            self.authorize_entity(cx.caller, "iam:GetGroup", Kind::Group, &r.group_name)?;
        self.iam_read(&account, |a| {
            let g = a
                .groups
                .get(&r.group_name)
                .ok_or_else(|| no_such("group", &r.group_name))?;
            let (users, next) = Self::users_page(
                &account,
                a,
                |n, _| g.members.iter().any(|m| m == n),
                r.marker.as_deref(),
                max,
            )?;
            Ok(GetGroupResponse {
                group: group_of(&account, &r.group_name, g),
                users,
                is_truncated: next.is_some(),
                marker: next,
            })
        })
    }
}

impl Handle<Call<'_>, ListGroupsRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListGroupsRequest,
    ) -> Result<ListGroupsResponse, KmsError> {
        let prefix = check_prefix(r.path_prefix.as_deref())?;
        let max = check_max_items(r.max_items)?;
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(
            cx.caller,
            "iam:ListGroups",
            &format!("arn:aws:iam::{account}:group/"),
        )?;
        let all = self.iam_read(&account, |a| {
            a.groups
                .iter()
                .filter(|(_, g)| g.path.starts_with(prefix))
                .map(|(n, g)| group_of(&account, n, g))
                .collect::<Vec<_>>()
        });
        let (groups, next) = page(all, |g| g.group_name.as_str(), r.marker.as_deref(), max)?;
        Ok(ListGroupsResponse {
            groups,
            is_truncated: next.is_some(),
            marker: next,
        })
    }
}

impl Handle<Call<'_>, ListGroupsForUserRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListGroupsForUserRequest,
    ) -> Result<ListGroupsResponse, KmsError> {
        let max = check_max_items(r.max_items)?;
        let account =
            self.authorize_entity(cx.caller, "iam:ListGroupsForUser", Kind::User, &r.user_name)?;
        let all = self.iam_read(&account, |a| {
            if !a.users.contains_key(&r.user_name) {
                return Err(no_such("user", &r.user_name));
            }
            Ok(a.groups
                .iter()
                .filter(|(_, g)| g.members.contains(&r.user_name))
                .map(|(n, g)| group_of(&account, n, g))
                .collect::<Vec<_>>())
        })?;
        let (groups, next) = page(all, |g| g.group_name.as_str(), r.marker.as_deref(), max)?;
        Ok(ListGroupsResponse {
            groups,
            is_truncated: next.is_some(),
            marker: next,
        })
    }
}

impl Handle<Call<'_>, AddUserToGroupRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: AddUserToGroupRequest) -> Result<Empty, KmsError> {
        let r = r.0;
        check_name("userName", &r.user_name, 128)?;
        let account =
            self.authorize_entity(cx.caller, "iam:AddUserToGroup", Kind::Group, &r.group_name)?;
        self.iam_change(&account, |a, _| {
            if !a.users.contains_key(&r.user_name) {
                return Err(no_such("user", &r.user_name));
            }
            let in_groups = a
                .groups
                .values()
                .filter(|g| g.members.contains(&r.user_name))
                .count();
            let g = a
                .groups
                .get_mut(&r.group_name)
                .ok_or_else(|| no_such("group", &r.group_name))?;
            if g.members.contains(&r.user_name) {
                return Ok(((), false));
            }
            if in_groups >= quota::GROUPS_PER_USER {
                return Err(limit("GroupsPerUser", quota::GROUPS_PER_USER));
            }
            g.members.push(r.user_name.clone());
            Ok(((), true))
        })?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, RemoveUserFromGroupRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: RemoveUserFromGroupRequest) -> Result<Empty, KmsError> {
        let r = r.0;
        check_name("userName", &r.user_name, 128)?;
        let account = self.authorize_entity(
            cx.caller,
            "iam:RemoveUserFromGroup",
            Kind::Group,
            &r.group_name,
        )?;
        self.iam_change(&account, |a, _| {
            if !a.users.contains_key(&r.user_name) {
                return Err(no_such("user", &r.user_name));
            }
            let g = a
                .groups
                .get_mut(&r.group_name)
                .ok_or_else(|| no_such("group", &r.group_name))?;
            let before = g.members.len();
            g.members.retain(|m| m != &r.user_name);
            Ok(((), g.members.len() != before))
        })?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, DeleteGroupRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DeleteGroupRequest) -> Result<Empty, KmsError> {
        let name = &r.group_name;
        let account = self.authorize_entity(cx.caller, "iam:DeleteGroup", Kind::Group, name)?;
        self.iam_change(&account, |a, _| {
            let g = a.groups.get(name).ok_or_else(|| no_such("group", name))?;
            if !g.members.is_empty() {
                return Err(delete_conflict("must remove users from group first"));
            }
            if !g.permissions.inline_policies.is_empty() {
                return Err(delete_conflict("must delete policies first"));
            }
            if !g.permissions.attached_policies.is_empty() {
                return Err(delete_conflict("must detach all policies first"));
            }
            a.groups.remove(name);
            Ok(((), true))
        })?;
        Ok(Empty {})
    }
}

// ---- roles ----

impl Handle<Call<'_>, CreateRoleRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: CreateRoleRequest,
    ) -> Result<CreateRoleResponse, KmsError> {
        let path = check_path("path", r.path.as_deref())?;
        check_name("roleName", &r.role_name, 64)?;
        if let Some(d) = &r.description {
            if d.chars().count() > 1000 {
                return Err(names::validation(
                    "description",
                    d,
                    "Member must have length less than or equal to 1000",
                ));
            }
        }
        let max_session = r
            .max_session_duration
            .unwrap_or(trust::DEFAULT_MAX_SESSION_DURATION);
        if !(trust::DEFAULT_MAX_SESSION_DURATION..=trust::MAX_DURATION_SECONDS)
            .contains(&max_session)
        {
            return Err(names::validation(
                "maxSessionDuration",
                &max_session.to_string(),
                if max_session < trust::DEFAULT_MAX_SESSION_DURATION {
                    "Member must have value greater than or equal to 3600"
                } else {
                    "Member must have value less than or equal to 43200"
                },
            ));
        }
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(
            cx.caller,
            "iam:CreateRole",
            &names::arn(&account, "role", &path, &r.role_name),
        )?;
        check_document(
            "assumeRolePolicyDocument",
            &r.assume_role_policy_document,
            trust::parse_trust_policy,
        )?;
        let size = r
            .assume_role_policy_document
            .chars()
            .filter(|c| !c.is_whitespace())
            .count();
        if size > trust::MAX_TRUST_POLICY_CHARS {
            return Err(limit("ACLSizePerRole", trust::MAX_TRUST_POLICY_CHARS));
        }
        let role = self.iam_change(&account, |a, now| {
            if a.roles.keys().any(|n| n.eq_ignore_ascii_case(&r.role_name)) {
                return Err(already_exists("Role", &r.role_name));
            }
            let rec = RoleRecord {
                id: new_id("AROA"),
                path,
                create_date_ms: now,
                declared: false,
                assume_role_policy: r.assume_role_policy_document.clone(),
                description: r.description.clone(),
                max_session_duration: max_session,
                permissions: Permissions::default(),
            };
            let role = role_of(&account, &r.role_name, &rec);
            a.roles.insert(r.role_name.clone(), rec);
            Ok((role, true))
        })?;
        Ok(CreateRoleResponse { role })
    }
}

impl Handle<Call<'_>, GetRoleRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: GetRoleRequest) -> Result<GetRoleResponse, KmsError> {
        let account = self.authorize_entity(cx.caller, "iam:GetRole", Kind::Role, &r.role_name)?;
        let role = self.iam_read(&account, |a| {
            a.roles
                .get(&r.role_name)
                .map(|x| role_of(&account, &r.role_name, x))
                .ok_or_else(|| no_such("role", &r.role_name))
        })?;
        Ok(GetRoleResponse { role })
    }
}

impl Handle<Call<'_>, ListRolesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListRolesRequest,
    ) -> Result<ListRolesResponse, KmsError> {
        let prefix = check_prefix(r.path_prefix.as_deref())?;
        let max = check_max_items(r.max_items)?;
        let account = self.iam_account(cx.caller)?;
        self.authorize_iam(
            cx.caller,
            "iam:ListRoles",
            &format!("arn:aws:iam::{account}:role/"),
        )?;
        let all = self.iam_read(&account, |a| {
            a.roles
                .iter()
                .filter(|(_, x)| x.path.starts_with(prefix))
                .map(|(n, x)| role_of(&account, n, x))
                .collect::<Vec<_>>()
        });
        let (roles, next) = page(all, |x| x.role_name.as_str(), r.marker.as_deref(), max)?;
        Ok(ListRolesResponse {
            roles,
            is_truncated: next.is_some(),
            marker: next,
        })
    }
}

impl Handle<Call<'_>, DeleteRoleRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DeleteRoleRequest) -> Result<Empty, KmsError> {
        let name = &r.role_name;
        let account = self.authorize_entity(cx.caller, "iam:DeleteRole", Kind::Role, name)?;
        self.iam_change(&account, |a, _| {
            let x = a.roles.get(name).ok_or_else(|| no_such("role", name))?;
            if x.declared {
                return Err(delete_conflict(
                    "it is declared in kmsd's configuration file; remove it there",
                ));
            }
            if !x.permissions.inline_policies.is_empty() {
                return Err(delete_conflict("must delete policies first"));
            }
            if !x.permissions.attached_policies.is_empty() {
                return Err(delete_conflict("must detach all policies first"));
            }
            a.roles.remove(name);
            Ok(((), true))
        })?;
        Ok(Empty {})
    }
}

// ---- inline policies ----

impl Handle<Call<'_>, PutUserPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: PutUserPolicyRequest) -> Result<Empty, KmsError> {
        self.put_inline(
            cx.caller,
            Kind::User,
            &r.user_name,
            &r.policy_name,
            &r.policy_document,
        )
    }
}

impl Handle<Call<'_>, PutGroupPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: PutGroupPolicyRequest) -> Result<Empty, KmsError> {
        self.put_inline(
            cx.caller,
            Kind::Group,
            &r.group_name,
            &r.policy_name,
            &r.policy_document,
        )
    }
}

impl Handle<Call<'_>, PutRolePolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: PutRolePolicyRequest) -> Result<Empty, KmsError> {
        self.put_inline(
            cx.caller,
            Kind::Role,
            &r.role_name,
            &r.policy_name,
            &r.policy_document,
        )
    }
}

impl Handle<Call<'_>, GetUserPolicyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: GetUserPolicyRequest,
    ) -> Result<GetUserPolicyResponse, KmsError> {
        let policy_document =
            self.get_inline(cx.caller, Kind::User, &r.user_name, &r.policy_name)?;
        Ok(GetUserPolicyResponse {
            user_name: r.user_name,
            policy_name: r.policy_name,
            policy_document,
        })
    }
}

impl Handle<Call<'_>, GetGroupPolicyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: GetGroupPolicyRequest,
    ) -> Result<GetGroupPolicyResponse, KmsError> {
        let policy_document =
            self.get_inline(cx.caller, Kind::Group, &r.group_name, &r.policy_name)?;
        Ok(GetGroupPolicyResponse {
            group_name: r.group_name,
            policy_name: r.policy_name,
            policy_document,
        })
    }
}

impl Handle<Call<'_>, GetRolePolicyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: GetRolePolicyRequest,
    ) -> Result<GetRolePolicyResponse, KmsError> {
        let policy_document =
            self.get_inline(cx.caller, Kind::Role, &r.role_name, &r.policy_name)?;
        Ok(GetRolePolicyResponse {
            role_name: r.role_name,
            policy_name: r.policy_name,
            policy_document,
        })
    }
}

impl Handle<Call<'_>, DeleteUserPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DeleteUserPolicyRequest) -> Result<Empty, KmsError> {
        self.delete_inline(cx.caller, Kind::User, &r.0.user_name, &r.0.policy_name)
    }
}

impl Handle<Call<'_>, DeleteGroupPolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DeleteGroupPolicyRequest) -> Result<Empty, KmsError> {
        self.delete_inline(cx.caller, Kind::Group, &r.0.group_name, &r.0.policy_name)
    }
}

impl Handle<Call<'_>, DeleteRolePolicyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, r: DeleteRolePolicyRequest) -> Result<Empty, KmsError> {
        self.delete_inline(cx.caller, Kind::Role, &r.0.role_name, &r.0.policy_name)
    }
}

impl Handle<Call<'_>, ListUserPoliciesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListUserPoliciesRequest,
    ) -> Result<ListPolicyNamesResponse, KmsError> {
        self.list_inline(
            cx.caller,
            Kind::User,
            &r.user_name,
            r.marker.as_deref(),
            r.max_items,
        )
    }
}

impl Handle<Call<'_>, ListGroupPoliciesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListGroupPoliciesRequest,
    ) -> Result<ListPolicyNamesResponse, KmsError> {
        self.list_inline(
            cx.caller,
            Kind::Group,
            &r.group_name,
            r.marker.as_deref(),
            r.max_items,
        )
    }
}

impl Handle<Call<'_>, ListRolePoliciesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ListRolePoliciesRequest,
    ) -> Result<ListPolicyNamesResponse, KmsError> {
        self.list_inline(
            cx.caller,
            Kind::Role,
            &r.role_name,
            r.marker.as_deref(),
            r.max_items,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message IAM gives for `text` as a `parse` document.
    fn refused<T>(text: &str, parse: fn(&str) -> Result<T, crate::policy::PolicyError>) -> String {
        match check_document("policyDocument", text, parse) {
            Err(e) => {
                assert_eq!(e.code, ErrorCode::MalformedPolicyDocument);
                e.message
            }
            Ok(_) => panic!("{text} was accepted"),
        }
    }

    #[test]
    fn malformed_documents_are_refused_in_iams_words() {
        let identity = PolicyDocument::parse_identity_policy;
        let trust = trust::parse_trust_policy;
        for (text, words) in [
            ("{not json", "Syntax errors in policy."),
            (r#"{"Statement": []}"#, "Syntax errors in policy."),
            (
                r#"{"Statement": [{"Effect": "Maybe", "Action": "kms:*", "Resource": "*"}]}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "kms:*"}]}"#,
                "Policy statement must contain resources.",
            ),
            (
                r#"{"Statement": [{"Sid": "a", "Effect": "Allow", "Resource": "*"}]}"#,
                "Policy statement must contain actions.",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]}"#,
                "Policy document should not specify a principal.",
            ),
        ] {
            assert_eq!(refused(text, identity), words, "{text}");
        }
        for (text, words) in [
            ("[", "Syntax errors in policy."),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole", "Resource": "*"}]}"#,
                "Has prohibited field Resource",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}"#,
                "Missing required field Principal",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt"}]}"#,
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ),
        ] {
            assert_eq!(refused(text, trust), words, "{text}");
        }
    }
}
