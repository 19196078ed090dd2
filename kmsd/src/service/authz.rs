//! Authorization: the one place that decides who a caller is and whether it may do
//! an action.
//!
//! - [`admit`] turns a transport peer (kernel-checked uid) plus the request's claims
//!   (`act_as`, `via`) into the [`Caller`] the request is evaluated as, using the
//!   [`Directory`]: a uid may act only as principals the config lists for it, and
//!   only uids the config trusts as a service may claim to come via it (and so set
//!   `kms:ViaService` / `kms:GrantIsForAWSResource`, or act on someone's behalf).
//! - [`KeyService::authorize`] evaluates a request as AWS KMS does: key policy and
//!   the caller's IAM policies (explicit deny wins; same account: the key policy
//!   allows directly or delegates to IAM; cross-account: both must allow), then
//!   grants for what policies leave implicitly denied. Account-level actions
//!   (CreateKey, ListKeys, ...) are decided by IAM policies alone.
//!
//! Policies are parsed once (the key policy when the key is loaded or changed, IAM
//! policies when the config is loaded), so evaluation is pure in-memory matching.

use std::sync::Arc;

use super::directory::{designates, Directory};
use super::{Caller, KeyEntry, KeyService};
use crate::grants::{grant_allows, is_at_least_as_strict, Grant, GrantOperation, GrantRequest};
use crate::policy::condition::ConditionKeys;
use crate::policy::context::keys;
use crate::policy::{
    authorize as evaluate, evaluate_statements, Authorization, Decision, DenyReason, Outcome,
    RequestContext as PolicyContext,
};
use crate::protocol::{via_service_value, EncryptionContext, ErrorCode, KmsError, ViaService};

/// What the request says that policy conditions and grants may look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestContext<'a> {
    /// The encryption context of a cryptographic request
    /// (`kms:EncryptionContext:KEY`, `kms:EncryptionContextKeys`).
    pub encryption_context: Option<&'a EncryptionContext>,
    /// Grant tokens sent with the request.
    pub grant_tokens: &'a [String],
    /// The grant a `CreateGrant` request would create (`kms:GrantOperations`,
    /// `kms:GranteePrincipal`, ...; and the "as strict or stricter" rule).
    pub create_grant: Option<&'a GrantRequest>,
}

/// The transport's facts about a peer (kernel-checked).
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
    /// The uid's user name (`uid-N` when it has none).
    pub user: String,
    /// Where the request came from, e.g. `unix:/path/kmsd.sock`.
    pub source: String,
}

/// The peer as itself, claims ignored: who a refused admission is recorded as.
pub fn peer_caller(dir: &Directory, peer: &Peer) -> Caller {
    let ident = dir.identity(peer.uid, &peer.user);
    let principal = ident.parsed_principal().unwrap_or_else(|_| {
        // The config validates principal templates; a user name that makes an
        // invalid ARN still gets an identity that no policy names.
        crate::policy::Principal {
            arn: ident.principal.clone(),
            account: Some(ident.account.clone()),
            kind: crate::policy::PrincipalKind::User {
                name: peer.user.clone(),
            },
        }
    });
    Caller {
        uid: peer.uid,
        pid: peer.pid,
        user: peer.user.clone(),
        uid_principal: ident.principal.clone(),
        principal_arn: principal.arn.clone(),
        account: ident.account.clone(),
        principal,
        policies: Arc::clone(&ident.policies),
        via: None,
        source: peer.source.clone(),
        signer: None,
    }
}

/// Turns a peer plus the request's claims into the [`Caller`] the request is
/// evaluated as. Refusals are `AccessDeniedException` (claims the config does not
/// allow) or `ValidationException` (malformed claims).
pub fn admit(
    dir: &Directory,
    peer: &Peer,
    act_as: Option<&str>,
    via: Option<&ViaService>,
) -> Result<Caller, KmsError> {
    let ident = dir.identity(peer.uid, &peer.user);
    let resolved = match via {
        None => dir.resolve_act_as(&ident, act_as)?,
        Some(v) => {
            if !crate::config::is_service_name(&v.service) {
                return Err(KmsError::validation(format!(
                    "via service '{}' is not a service principal like ec2.amazonaws.com",
                    v.service
                )));
            }
            if !dir.trusts(&ident, &v.service) {
                return Err(KmsError::new(
                    ErrorCode::AccessDeniedException,
                    format!(
                        "uid {} ({}) is not trusted as {}: only the uids the kmsd config lists with services = [\"{}\"] may send requests via it",
                        peer.uid, peer.user, v.service, v.service
                    ),
                ));
            }
            match (&v.on_behalf_of, act_as) {
                (Some(p), Some(a)) if p != a => {
                    return Err(KmsError::validation(format!(
                        "act_as '{a}' and via.on_behalf_of '{p}' name different principals"
                    )))
                }
                (Some(p), _) => {
                    // A service may speak for itself, not for another service.
                    if crate::config::is_service_name(p) && p != &v.service {
                        return Err(KmsError::new(
                            ErrorCode::AccessDeniedException,
                            format!("a request via {} cannot be on behalf of {p}", v.service),
                        ));
                    }
                    if *p == ident.principal {
                        // On behalf of the sending uid's own principal (on a dev box the
                        // services run as the user): the uid's own policies apply, as
                        // they do to its direct calls.
                        dir.resolve_act_as(&ident, None)?
                    } else {
                        dir.resolve_on_behalf_of(p)?
                    }
                }
                (None, a) => dir.resolve_act_as(&ident, a)?,
            }
        }
    };
    let account = resolved.principal.account.clone().unwrap_or_default();
    Ok(Caller {
        uid: peer.uid,
        pid: peer.pid,
        user: peer.user.clone(),
        uid_principal: ident.principal.clone(),
        principal_arn: resolved.principal.arn.clone(),
        account,
        principal: resolved.principal,
        policies: resolved.policies,
        via: via.cloned(),
        source: peer.source.clone(),
        signer: None,
    })
}

/// The [`Caller`] of a request the AWS endpoint sends for a SigV4 signer whose key
/// kmsd has just authenticated as `principal`: evaluated as that principal with its
/// IAM policies, as if it had called itself. A key a Unix user made for its own
/// principal (`atrest env`) also carries that user's `[[uids]] policies`, as the
/// user's socket calls do.
pub fn admit_signed(
    dir: &Directory,
    peer: &Peer,
    principal: &str,
    owner: Option<&crate::credentials::KeyOwner>,
    signer: crate::protocol::Signer,
) -> Result<Caller, KmsError> {
    let ident = dir.identity(peer.uid, &peer.user);
    let owner_ident = owner
        .map(|o| dir.identity(o.uid, &o.user))
        .filter(|o| o.principal == principal);
    let resolved = match owner_ident {
        Some(o) => dir.resolve_act_as(&o, None)?,
        None => dir.resolve_on_behalf_of(principal)?,
    };
    Ok(Caller {
        uid: peer.uid,
        pid: peer.pid,
        user: peer.user.clone(),
        uid_principal: ident.principal.clone(),
        principal_arn: resolved.principal.arn.clone(),
        account: resolved.principal.account.clone().unwrap_or_default(),
        principal: resolved.principal,
        policies: resolved.policies,
        via: None,
        source: peer.source.clone(),
        signer: Some(signer),
    })
}

/// The grant operation an action exercises, if grants can allow it.
pub fn grant_operation(action: &str) -> Option<GrantOperation> {
    action.strip_prefix("kms:")?.parse().ok()
}

fn denied(message: String) -> KmsError {
    KmsError::new(ErrorCode::AccessDeniedException, message)
}

impl KeyService {
    /// May `caller` do `action` (e.g. `kms:Decrypt`) on `key` (None for account-level
    /// actions such as `kms:CreateKey` and `kms:ListKeys`)? Refusals are
    /// `AccessDeniedException` with AWS's message shape.
    pub(crate) fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        key: Option<&KeyEntry>,
        request: &RequestContext<'_>,
    ) -> Result<(), KmsError> {
        let Some(key) = key else {
            return authorize_account_action(caller, action);
        };
        if self.decisions.allows(caller, action, &key.arn, &key.policy) {
            return Ok(());
        }
        let generation = self.decisions.generation();
        let ctx = self.policy_context(caller, action, &key.arn, &key.record.account, request);
        let decision = evaluate(&ctx, &key.policy, &caller.policies);
        if decision.is_allowed() {
            self.decisions
                .remember(generation, caller, action, &key.arn, &key.policy);
            return Ok(());
        }
        let decision = if decision.is_explicit_deny() {
            decision
        } else {
            let grant = self.matching_grant(caller, action, key, request)?;
            decision.or_grant(grant.as_ref().map(|g| g.grant_id.as_str()))
        };
        match decision.access_denied_message() {
            None => Ok(()),
            Some(m) => Err(denied(m)),
        }
    }

    /// The policy evaluation context of a request, with every condition key kmsd
    /// knows filled from the request and the (admitted) caller.
    fn policy_context(
        &self,
        caller: &Caller,
        action: &str,
        key_arn: &str,
        key_account: &str,
        request: &RequestContext<'_>,
    ) -> PolicyContext {
        let mut condition_keys = ConditionKeys::new();
        condition_keys.set(keys::PRINCIPAL_ARN, vec![caller.principal.arn.clone()]);
        if let Some(acct) = &caller.principal.account {
            condition_keys.set(keys::CALLER_ACCOUNT, vec![acct.clone()]);
            condition_keys.set(keys::PRINCIPAL_ACCOUNT, vec![acct.clone()]);
        }
        let mut ctx = PolicyContext {
            principal: caller.principal.clone(),
            action: action.to_string(),
            resource: key_arn.to_string(),
            key_account: key_account.to_string(),
            condition_keys,
        };
        if let Some(ec) = request.encryption_context {
            ctx = ctx.with_encryption_context(ec);
        }
        if let Some(v) = &caller.via {
            ctx = ctx.with_via_service(Some(&via_service_value(&v.service, &self.config.region)));
            if matches!(
                action,
                "kms:CreateGrant" | "kms:ListGrants" | "kms:RevokeGrant"
            ) {
                ctx = ctx.with_grant_is_for_aws_resource(Some(v.grant_is_for_aws_resource));
            }
        }
        if let Some(g) = request.create_grant {
            let ops: Vec<&str> = g.operations.iter().map(|o| o.as_str()).collect();
            let types = g
                .constraints
                .as_ref()
                .map(|c| c.constraint_types())
                .unwrap_or_default();
            ctx = ctx.with_grant_request(
                &ops,
                &g.grantee_principal,
                g.retiring_principal.as_deref(),
                &types,
            );
        }
        ctx
    }

    /// A grant on `key` that lets `caller` do `action` within the request's
    /// encryption context (for `CreateGrant`: only a grant the new one is at least as
    /// strict as). Grant tokens are checked for form and must name a live grant's
    /// token: grants here take effect at once, so a token is never needed, but a
    /// forged one is refused as AWS refuses it.
    fn matching_grant(
        &self,
        caller: &Caller,
        action: &str,
        key: &KeyEntry,
        request: &RequestContext<'_>,
    ) -> Result<Option<Grant>, KmsError> {
        let grants = self.grants_of(&key.record.key_id);
        for token in request.grant_tokens {
            let id = crate::grants::grant_id_from_token(token)
                .map_err(|e| KmsError::new(ErrorCode::InvalidGrantTokenException, e.to_string()))?;
            // A token of a grant that was retired or revoked is simply of no use.
            if let Some(g) = grants.iter().find(|g| g.grant_id == id) {
                if !g.grant_tokens.iter().any(|t| t == token) {
                    return Err(KmsError::new(
                        ErrorCode::InvalidGrantTokenException,
                        "Invalid grant token",
                    ));
                }
            }
        }
        let Some(op) = grant_operation(action) else {
            return Ok(None);
        };
        let empty = EncryptionContext::new();
        let ec = request.encryption_context.unwrap_or(&empty);
        let found = grants.iter().find(|g| {
            grant_allows(g, |named| designates(named, &caller.principal), op, ec)
                && request
                    .create_grant
                    .is_none_or(|child| is_at_least_as_strict(g, child))
        });
        Ok(found.cloned())
    }
}

/// Account-level actions have no key policy: the caller's IAM policies decide (an
/// account root may do anything in its account; a service principal nothing).
fn authorize_account_action(caller: &Caller, action: &str) -> Result<(), KmsError> {
    let p = &caller.principal;
    if p.is_root() {
        return Ok(());
    }
    let account = p.account.clone().unwrap_or_default();
    let mut condition_keys = ConditionKeys::new();
    condition_keys.set(keys::PRINCIPAL_ARN, vec![p.arn.clone()]);
    condition_keys.set(keys::CALLER_ACCOUNT, vec![account.clone()]);
    let ctx = PolicyContext {
        principal: p.clone(),
        action: action.to_string(),
        resource: "*".to_string(),
        key_account: account,
        condition_keys,
    };
    let mut allowed = false;
    let mut outcome = Outcome::Denied(DenyReason::NoIdentityPolicyAllows);
    if !p.is_service() {
        for doc in caller.policies.iter() {
            match evaluate_statements(doc, &ctx) {
                Decision::ExplicitDeny { sid } => {
                    outcome = Outcome::Denied(DenyReason::ExplicitDenyInIdentityPolicy { sid });
                    allowed = false;
                    break;
                }
                Decision::Allow { .. } => allowed = true,
                Decision::NotApplicable => {}
            }
        }
    }
    if allowed {
        return Ok(());
    }
    let a = Authorization {
        outcome,
        principal_arn: p.arn.clone(),
        action: action.to_string(),
        resource: "*".to_string(),
    };
    Err(denied(a.access_denied_message().unwrap_or_else(|| {
        format!(
            "User: {} is not authorized to perform: {action} on resource: *",
            p.arn
        )
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn dir() -> Directory {
        Directory::build(Config::embedded(), None, 0).unwrap()
    }

    fn peer(uid: u32, user: &str) -> Peer {
        Peer {
            uid,
            pid: None,
            user: user.into(),
            source: "test".into(),
        }
    }

    fn via(service: &str, on_behalf_of: Option<&str>, for_resource: bool) -> ViaService {
        ViaService {
            service: service.into(),
            on_behalf_of: on_behalf_of.map(str::to_string),
            grant_is_for_aws_resource: for_resource,
        }
    }

    #[test]
    fn act_as_needs_the_config_and_keeps_the_uid() {
        let d = dir();
        let c = admit(
            &d,
            &peer(0, "root"),
            Some("arn:aws:iam::444455556666:user/UserA"),
            None,
        )
        .unwrap();
        assert_eq!(c.account, "444455556666");
        assert_eq!(c.uid, 0);
        assert_eq!(c.uid_principal, "arn:aws:iam::111122223333:user/root");
        let e = admit(
            &d,
            &peer(1000, "alice"),
            Some("arn:aws:iam::444455556666:user/UserA"),
            None,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDeniedException);
        assert!(e.message.contains("uid 1000 (alice)"), "{}", e.message);
        assert!(admit(&d, &peer(0, "root"), Some("bob"), None).is_err());
    }

    #[test]
    fn ordinary_users_cannot_forge_a_service() {
        let d = dir();
        let forged = via(
            "ec2.amazonaws.com",
            Some("arn:aws:iam::111122223333:role/voclabs"),
            true,
        );
        let e = admit(&d, &peer(1000, "alice"), None, Some(&forged)).unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDeniedException);
        assert!(e.message.contains("not trusted as ec2.amazonaws.com"));
        let c = admit(&d, &peer(0, "root"), None, Some(&forged)).unwrap();
        assert_eq!(c.principal_arn, "arn:aws:iam::111122223333:role/voclabs");
        assert!(c.via.as_ref().unwrap().grant_is_for_aws_resource);
        let bad = via("ec2", None, false);
        assert_eq!(
            admit(&d, &peer(0, "root"), None, Some(&bad))
                .unwrap_err()
                .code,
            ErrorCode::ValidationException
        );
        let infra = via(
            "ec2.amazonaws.com",
            Some("111122223333:aws:ec2-infrastructure:i-0123"),
            false,
        );
        let c = admit(&d, &peer(0, "root"), None, Some(&infra)).unwrap();
        assert_eq!(
            c.principal_arn,
            "arn:aws:sts::111122223333:assumed-role/aws:ec2-infrastructure/i-0123"
        );
    }

    #[test]
    fn account_actions_follow_iam_policies() {
        let d = dir();
        let admin = admit(&d, &peer(0, "root"), None, None).unwrap();
        assert!(authorize_account_action(&admin, "kms:CreateKey").is_ok());
        let nobody = admit(&d, &peer(1000, "alice"), None, None).unwrap();
        let e = authorize_account_action(&nobody, "kms:CreateKey").unwrap_err();
        assert_eq!(
            e.message,
            "User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:CreateKey on resource: * because no identity-based policy allows the kms:CreateKey action"
        );
        let ec2 = admit(
            &d,
            &peer(0, "root"),
            Some("arn:aws:iam::111122223333:user/Ec2Operator"),
            None,
        )
        .unwrap();
        assert!(authorize_account_action(&ec2, "cloudtrail:LookupEvents").is_ok());
        assert!(authorize_account_action(&ec2, "kms:ListKeys").is_err());
    }

    #[test]
    fn via_service_values() {
        assert_eq!(
            via_service_value("ec2.amazonaws.com", "us-east-1"),
            "ec2.us-east-1.amazonaws.com"
        );
        assert_eq!(
            grant_operation("kms:Decrypt"),
            Some(GrantOperation::Decrypt)
        );
        assert_eq!(grant_operation("kms:ListKeys"), None);
    }
}
