//! STS: who the caller is (`GetCallerIdentity`; for the services beside kmsd, who a
//! local uid is: atrest's `ResolveCaller`), and role sessions (`AssumeRole`):
//! temporary credentials whose requests act as
//! `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` with the role's policies, allowed
//! where the role's trust policy (and, as AWS requires, the caller's identity policies)
//! allow it ([`crate::iam::trust`]), and a user's own sessions (`GetSessionToken`:
//! temporary credentials acting as the user itself, with its policies, until they
//! expire). The session token is sealed by kmsd
//! ([`crate::iam::session`]): no state is kept per session.

use super::credentials::Authenticated;
use super::{Call, Caller, KeyService};
use crate::api::{
    AssumeRoleRequest, AssumeRoleResponse, AssumedRoleUser, Credentials, GetCallerIdentityRequest,
    GetCallerIdentityResponse, GetSessionTokenRequest, GetSessionTokenResponse, Handle,
    ResolveCallerRequest, ResolveCallerResponse, Timestamp,
};
use crate::credentials::{new_access_key_id, new_secret};
use crate::iam::session::{self, SessionClaims};
use crate::iam::{derived_id, names, trust};
use crate::policy::PrincipalKind;
use crate::protocol::{ErrorCode, KmsError};

impl KeyService {
    /// The caller's unique id as STS gives it: a user's id (`AIDA...`), a role
    /// session's role id and session name (`AROA...:SESSION`), the root's account.
    /// Users and roles the IAM store holds have theirs; others (a Unix user's default
    /// principal) one derived from their ARN.
    pub(crate) fn unique_id(&self, caller: &Caller) -> String {
        let p = &caller.principal;
        let account = p.account.clone().unwrap_or_default();
        let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
        match &p.kind {
            PrincipalKind::Root => account,
            PrincipalKind::Service { name } => name.clone(),
            PrincipalKind::User { name } => self
                .iam_read(&account, |a| a.users.get(&last(name)).map(|u| u.id.clone()))
                .unwrap_or_else(|| derived_id("AIDA", &p.arn)),
            PrincipalKind::Role { name } => self
                .iam_read(&account, |a| a.roles.get(&last(name)).map(|r| r.id.clone()))
                .unwrap_or_else(|| derived_id("AROA", &p.arn)),
            PrincipalKind::AssumedRole { role, session } => {
                let role_id = self
                    .iam_read(&account, |a| a.roles.get(&last(role)).map(|r| r.id.clone()))
                    .unwrap_or_else(|| {
                        derived_id("AROA", &format!("arn:aws:iam::{account}:role/{role}"))
                    });
                format!("{role_id}:{session}")
            }
        }
    }
}

impl KeyService {
    /// ResolveCaller: the principal a local uid's requests are evaluated as, its `--as`
    /// claim checked as kmsd checks its own callers'. The caller may ask about its own
    /// uid, and about any other only when the config trusts it as a service (the
    /// volume service answers for the uids on its socket) and it speaks for itself.
    pub(crate) fn resolve_caller(
        &self,
        caller: &Caller,
        r: &ResolveCallerRequest,
    ) -> Result<ResolveCallerResponse, KmsError> {
        let dir = self.directory();
        let user = if r.uid == caller.uid {
            caller.user.clone()
        } else {
            let asker = dir.identity(caller.uid, &caller.user);
            if caller.signer.is_some() || caller.via.is_some() || asker.services.is_empty() {
                return Err(KmsError::new(
                    ErrorCode::AccessDeniedException,
                    format!(
                        "uid {} ({}) may not ask who uid {} is: only the uids the kmsd config trusts as a service (services = [...]) may, for their own callers",
                        caller.uid, caller.user, r.uid
                    ),
                ));
            }
            plumbing::peer::display_name(r.uid)
        };
        let trusted_as_endpoint = dir.is_endpoint(r.uid, &user);
        if let Some(signer) = r.signer.as_ref().filter(|_| trusted_as_endpoint) {
            if r.act_as.is_some() {
                return Err(KmsError::validation(
                    "a request for a SigV4 signer cannot also act as someone",
                ));
            }
            let a = self.check_signer_key(&dir, signer)?;
            let account = super::directory::parse_principal(&a.principal)?
                .account
                .unwrap_or_default();
            return Ok(ResolveCallerResponse {
                principal_arn: a.principal,
                account,
                trusted_as_endpoint,
            });
        }
        let ident = dir.identity(r.uid, &user);
        let resolved = dir.resolve_act_as(&ident, r.act_as.as_deref())?;
        Ok(ResolveCallerResponse {
            account: resolved.principal.account.clone().unwrap_or_default(),
            principal_arn: resolved.principal.arn,
            trusted_as_endpoint,
        })
    }
}

impl Handle<Call<'_>, ResolveCallerRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: ResolveCallerRequest,
    ) -> Result<ResolveCallerResponse, KmsError> {
        self.resolve_caller(cx.caller, &r)
    }
}

impl Handle<Call<'_>, GetCallerIdentityRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        _r: GetCallerIdentityRequest,
    ) -> Result<GetCallerIdentityResponse, KmsError> {
        let c = cx.caller;
        Ok(GetCallerIdentityResponse {
            user_id: self.unique_id(c),
            account: c.account.clone(),
            arn: c.principal_arn.clone(),
        })
    }
}

impl KeyService {
    /// The temporary credentials of an `ASIA...` key id and its session token;
    /// `UnrecognizedClientException` for a token kmsd did not seal for that key id.
    /// Expiry is the caller's to check (`Authenticated::expiration`).
    pub(crate) fn open_session(
        &self,
        access_key_id: &str,
        token: &str,
    ) -> Result<Authenticated, KmsError> {
        let claims = session::open(&self.store, access_key_id, token)
            .ok_or_else(KmsError::unrecognized_client)?;
        Ok(Authenticated {
            principal: claims.principal,
            owner: None,
            secret: claims.secret_access_key,
            expiration: Some(Timestamp::from_millis(claims.expiration_ms)),
        })
    }
}

impl KeyService {
    /// New temporary credentials (an `ASIA...` key id, a secret, a sealed session token)
    /// whose requests act as `principal` for `seconds`: what AssumeRole and
    /// GetSessionToken both hand out.
    fn issue_session(&self, principal: String, seconds: i32) -> Result<Credentials, KmsError> {
        let expiration_ms = self
            .now_ms()
            .saturating_add(i64::from(seconds).saturating_mul(1000));
        let claims = SessionClaims {
            access_key_id: new_access_key_id("ASIA"),
            secret_access_key: new_secret(),
            principal,
            expiration_ms,
        };
        let token = session::seal(&self.store, &claims).map_err(|e| {
            tracing::error!(error = %e, "cannot seal a session token");
            KmsError::internal("kmsd could not issue the session")
        })?;
        Ok(Credentials {
            access_key_id: claims.access_key_id.clone(),
            secret_access_key: claims.secret_access_key.clone(),
            session_token: zeroize::Zeroizing::new(token),
            expiration: Timestamp::from_millis(expiration_ms),
        })
    }
}

/// `arn:aws:iam::ACCOUNT:role/PATH/NAME` as (ACCOUNT, NAME).
fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path_name = resource.strip_prefix("role/")?;
    let name = path_name.rsplit('/').next()?;
    (crate::config::is_account_id(account) && names::is_entity_name(name, 64))
        .then_some((account, name))
}

impl Handle<Call<'_>, AssumeRoleRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: AssumeRoleRequest,
    ) -> Result<AssumeRoleResponse, KmsError> {
        let caller = cx.caller;
        let (account, name) = parse_role_arn(&r.role_arn).ok_or_else(|| {
            names::validation(
                "roleArn",
                &r.role_arn,
                "Member must be a role ARN: arn:aws:iam::ACCOUNT:role/NAME",
            )
        })?;
        trust::check_session_name(&r.role_session_name)?;
        if let Some(id) = &r.external_id {
            if id.len() < 2 || id.len() > 1224 {
                return Err(names::validation(
                    "externalId",
                    id,
                    "Member must have length between 2 and 1224",
                ));
            }
        }
        let denied = || {
            KmsError::new(
                ErrorCode::AccessDenied,
                format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                    caller.principal_arn, r.role_arn
                ),
            )
        };
        if caller.principal.is_service() {
            return Err(denied());
        }
        // A role that does not exist is refused like one that does not trust the
        // caller: AWS says nothing about which.
        let role = self
            .iam_read(account, |a| a.roles.get(name).cloned())
            .ok_or_else(denied)?;
        let role_arn = names::arn(account, "role", &role.path, name);
        if role_arn != r.role_arn && names::arn(account, "role", "/", name) != r.role_arn {
            return Err(denied());
        }
        let trust_doc = trust::parse_trust_policy(&role.assume_role_policy).map_err(|e| {
            tracing::error!(role = %role_arn, error = %e, "stored trust policy does not parse");
            denied()
        })?;
        let decision = trust::may_assume(
            &caller.principal,
            &caller.policies,
            &role_arn,
            account,
            &trust_doc,
            trust::AssumeRoleContext {
                external_id: r.external_id.as_deref(),
                role_session_name: &r.role_session_name,
            },
        );
        if let Some(m) = decision.access_denied_message() {
            return Err(KmsError::new(ErrorCode::AccessDenied, m));
        }
        let chained = matches!(caller.principal.kind, PrincipalKind::AssumedRole { .. });
        let seconds =
            trust::session_duration(r.duration_seconds, role.max_session_duration, chained)?;
        let arn = format!(
            "arn:aws:sts::{account}:assumed-role/{name}/{}",
            r.role_session_name
        );
        Ok(AssumeRoleResponse {
            assumed_role_user: AssumedRoleUser {
                assumed_role_id: format!("{}:{}", role.id, r.role_session_name),
                arn: arn.clone(),
            },
            credentials: self.issue_session(arn, seconds)?,
        })
    }
}

/// `GetSessionToken`'s limits: (default, maximum) seconds, and the root's cap.
const SESSION_TOKEN_SECONDS: (i32, i32) = (43_200, 129_600);
const ROOT_SESSION_TOKEN_MAX: i32 = 3_600;

impl Handle<Call<'_>, GetSessionTokenRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: GetSessionTokenRequest,
    ) -> Result<GetSessionTokenResponse, KmsError> {
        let caller = cx.caller;
        // Only long-term credentials of a user or the root: a role is only ever used
        // through a session, and a session cannot make another (AWS's words).
        let session = caller
            .signer
            .as_ref()
            .is_some_and(|s| s.session_token.is_some());
        let root = match &caller.principal.kind {
            _ if session => None,
            PrincipalKind::User { .. } => Some(false),
            PrincipalKind::Root => Some(true),
            _ => None,
        };
        let Some(root) = root else {
            return Err(KmsError::new(
                ErrorCode::AccessDenied,
                "Cannot call GetSessionToken with session credentials",
            ));
        };
        let requested = trust::check_duration(
            r.duration_seconds.unwrap_or(SESSION_TOKEN_SECONDS.0),
            SESSION_TOKEN_SECONDS.1,
        )?;
        // The root's sessions are cut to an hour, silently, as STS does.
        let seconds = if root {
            requested.min(ROOT_SESSION_TOKEN_MAX)
        } else {
            requested
        };
        Ok(GetSessionTokenResponse {
            credentials: self.issue_session(caller.principal_arn.clone(), seconds)?,
        })
    }
}
