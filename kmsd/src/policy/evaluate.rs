//! Policy evaluation: one document ([`evaluate_statements`]) and the AWS KMS decision that
//! combines the key policy with the caller's IAM policies ([`authorize`]).

use super::condition::all_hold;
use super::context::RequestContext;
use super::document::{
    ActionSpec, AwsPrincipal, Effect, PolicyDocument, PrincipalSpec, ResourceSpec, Statement,
};
use super::matching::{glob_match, glob_match_ignore_case};
use super::principal::Principal;

/// The outcome of one policy document for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A matching `Deny` statement (its Sid, if any).
    ExplicitDeny { sid: Option<String> },
    /// A matching `Allow` statement and no matching `Deny`.
    Allow { sid: Option<String> },
    /// No statement applies.
    NotApplicable,
}

/// How a statement's `Principal` designates the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PrincipalMatch {
    /// Names the caller's account (root), not the caller itself: in a key policy an `Allow`
    /// of this kind delegates to the account's IAM policies.
    Account,
    /// Names the caller (its ARN, its role, `*`, or it is the account root).
    Direct,
}

fn aws_entry_match(entry: &AwsPrincipal, caller: &Principal) -> Option<PrincipalMatch> {
    match entry {
        AwsPrincipal::Any => (!caller.is_service()).then_some(PrincipalMatch::Direct),
        AwsPrincipal::Account(acct) => {
            if caller.account.as_deref() != Some(acct.as_str()) {
                None
            } else if caller.is_root() {
                Some(PrincipalMatch::Direct)
            } else {
                Some(PrincipalMatch::Account)
            }
        }
        AwsPrincipal::Arn(arn) => caller
            .is_designated_by(arn)
            .then_some(PrincipalMatch::Direct),
    }
}

fn spec_match(spec: &PrincipalSpec, caller: &Principal) -> Option<PrincipalMatch> {
    match spec {
        PrincipalSpec::Everyone => Some(PrincipalMatch::Direct),
        PrincipalSpec::Listed { aws, services } => {
            let from_aws = aws.iter().filter_map(|e| aws_entry_match(e, caller)).max();
            let from_service = services
                .iter()
                .any(|s| caller.is_service() && caller.is_designated_by(s))
                .then_some(PrincipalMatch::Direct);
            from_aws.max(from_service)
        }
    }
}

/// `None` when the statement's principal does not cover the caller. Identity policies have no
/// principal: they apply to the principal they are attached to.
fn statement_principal_match(st: &Statement, caller: &Principal) -> Option<PrincipalMatch> {
    match (&st.principal, &st.not_principal) {
        (Some(p), _) => spec_match(p, caller),
        // NotPrincipal excludes exactly the identities it names.
        (None, Some(np)) => match spec_match(np, caller) {
            Some(PrincipalMatch::Direct) => None,
            _ => Some(PrincipalMatch::Direct),
        },
        (None, None) => Some(PrincipalMatch::Direct),
    }
}

fn action_matches(spec: &ActionSpec, action: &str) -> bool {
    match spec {
        ActionSpec::Action(list) => list.iter().any(|p| glob_match_ignore_case(p, action)),
        ActionSpec::NotAction(list) => !list.iter().any(|p| glob_match_ignore_case(p, action)),
    }
}

fn resource_matches(spec: &ResourceSpec, resource: &str) -> bool {
    match spec {
        ResourceSpec::Resource(list) => list.iter().any(|p| glob_match(p, resource)),
        ResourceSpec::NotResource(list) => !list.iter().any(|p| glob_match(p, resource)),
    }
}

/// Does the statement apply to the request, and how does it designate the caller?
fn statement_applies(st: &Statement, ctx: &RequestContext) -> Option<PrincipalMatch> {
    let m = statement_principal_match(st, &ctx.principal)?;
    (action_matches(&st.action, &ctx.action)
        && resource_matches(&st.resource, &ctx.resource)
        && all_hold(&st.conditions, &ctx.condition_keys))
    .then_some(m)
}

/// Strongest allow and first deny of one document.
struct DocumentOutcome {
    deny: Option<Option<String>>,
    allow: Option<(PrincipalMatch, Option<String>)>,
}

fn evaluate_document(doc: &PolicyDocument, ctx: &RequestContext) -> DocumentOutcome {
    let mut out = DocumentOutcome {
        deny: None,
        allow: None,
    };
    for st in &doc.statements {
        let Some(m) = statement_applies(st, ctx) else {
            continue;
        };
        match st.effect {
            // A Deny naming the caller's account denies every principal of that account.
            Effect::Deny => {
                if out.deny.is_none() {
                    out.deny = Some(st.sid.clone());
                }
            }
            Effect::Allow => {
                if out.allow.as_ref().is_none_or(|(best, _)| m > *best) {
                    out.allow = Some((m, st.sid.clone()));
                }
            }
        }
    }
    out
}

/// Evaluate one document on its own: explicit deny wins over allow. A principal naming the
/// caller's account counts as applying (IAM resource-policy semantics); [`authorize`] is the
/// function that knows about KMS's delegation to IAM.
pub fn evaluate_statements(doc: &PolicyDocument, ctx: &RequestContext) -> Decision {
    let out = evaluate_document(doc, ctx);
    match (out.deny, out.allow) {
        (Some(sid), _) => Decision::ExplicitDeny { sid },
        (None, Some((_, sid))) => Decision::Allow { sid },
        (None, None) => Decision::NotApplicable,
    }
}

/// Why a request was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedBy {
    /// The key policy names the caller directly (or the caller is the key account's root).
    KeyPolicy { sid: Option<String> },
    /// The key policy allows the caller's account and the caller's IAM policy allows it
    /// (same-account delegation, or any cross-account access).
    KeyPolicyAndIam {
        key_policy_sid: Option<String>,
        iam_sid: Option<String>,
    },
    /// Not allowed by policy, but a grant allows it (see [`Authorization::or_grant`]).
    Grant { grant_id: String },
}

/// Why a request was refused; each maps to one AWS message shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    ExplicitDenyInResourcePolicy { sid: Option<String> },
    ExplicitDenyInIdentityPolicy { sid: Option<String> },
    NoResourcePolicyAllows,
    NoIdentityPolicyAllows,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed(AllowedBy),
    Denied(DenyReason),
}

/// The decision for one request, with what is needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub outcome: Outcome,
    pub principal_arn: String,
    pub action: String,
    pub resource: String,
}

impl Authorization {
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allowed(_))
    }

    /// Is this a refusal caused by an explicit `Deny` (which grants cannot override)?
    pub fn is_explicit_deny(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Denied(
                DenyReason::ExplicitDenyInResourcePolicy { .. }
                    | DenyReason::ExplicitDenyInIdentityPolicy { .. }
            )
        )
    }

    /// Combine with a grant check: an implicit denial becomes an allow when a grant allows
    /// the operation; explicit denials stand.
    pub fn or_grant(self, grant_id: Option<&str>) -> Self {
        match (&self.outcome, grant_id) {
            (Outcome::Denied(_), Some(id)) if !self.is_explicit_deny() => Authorization {
                outcome: Outcome::Allowed(AllowedBy::Grant {
                    grant_id: id.to_string(),
                }),
                ..self
            },
            _ => self,
        }
    }

    /// AWS's `AccessDeniedException` message for a refusal; `None` when allowed.
    pub fn access_denied_message(&self) -> Option<String> {
        let Outcome::Denied(reason) = &self.outcome else {
            return None;
        };
        let head = format!(
            "User: {} is not authorized to perform: {} on resource: {}",
            self.principal_arn, self.action, self.resource
        );
        Some(match reason {
            DenyReason::ExplicitDenyInResourcePolicy { .. } => {
                format!("{head} with an explicit deny in a resource-based policy")
            }
            DenyReason::ExplicitDenyInIdentityPolicy { .. } => {
                format!("{head} with an explicit deny in an identity-based policy")
            }
            DenyReason::NoResourcePolicyAllows => format!(
                "{head} because no resource-based policy allows the {} action",
                self.action
            ),
            DenyReason::NoIdentityPolicyAllows => format!(
                "{head} because no identity-based policy allows the {} action",
                self.action
            ),
        })
    }
}

/// The AWS KMS authorization decision (grants aside, see [`Authorization::or_grant`]):
///
/// 1. an explicit `Deny` in the key policy or in any of the caller's IAM policies refuses;
/// 2. a key-policy `Allow` naming the caller directly allows, within the key's account; a
///    service principal has no IAM policies, so this is its only way in;
/// 3. a key-policy `Allow` naming the caller's account delegates: within the key's account an
///    IAM policy of the caller must allow (the root needs none);
/// 4. across accounts the key policy must allow (the caller or its account) *and* the caller's
///    IAM policy must allow (the other account's root needs none).
pub fn authorize(
    ctx: &RequestContext,
    key_policy: &PolicyDocument,
    caller_iam_policies: &[PolicyDocument],
) -> Authorization {
    let outcome = decide(ctx, key_policy, caller_iam_policies);
    Authorization {
        outcome,
        principal_arn: ctx.principal.arn.clone(),
        action: ctx.action.clone(),
        resource: ctx.resource.clone(),
    }
}

fn decide(
    ctx: &RequestContext,
    key_policy: &PolicyDocument,
    caller_iam_policies: &[PolicyDocument],
) -> Outcome {
    let key = evaluate_document(key_policy, ctx);
    if let Some(sid) = key.deny {
        return Outcome::Denied(DenyReason::ExplicitDenyInResourcePolicy { sid });
    }
    // Service principals have no IAM identity policies.
    let mut iam_allow: Option<Option<String>> = None;
    if !ctx.principal.is_service() {
        for doc in caller_iam_policies {
            let out = evaluate_document(doc, ctx);
            if let Some(sid) = out.deny {
                return Outcome::Denied(DenyReason::ExplicitDenyInIdentityPolicy { sid });
            }
            if iam_allow.is_none() {
                if let Some((_, sid)) = out.allow {
                    iam_allow = Some(sid);
                }
            }
        }
    }
    let Some((how, key_sid)) = key.allow else {
        return Outcome::Denied(DenyReason::NoResourcePolicyAllows);
    };
    let root = ctx.principal.is_root();
    if ctx.same_account() || ctx.principal.is_service() {
        if how == PrincipalMatch::Direct {
            return Outcome::Allowed(AllowedBy::KeyPolicy { sid: key_sid });
        }
    } else if root {
        // The other account's root has every permission in its own account.
        return Outcome::Allowed(AllowedBy::KeyPolicyAndIam {
            key_policy_sid: key_sid,
            iam_sid: None,
        });
    }
    match iam_allow {
        Some(iam_sid) => Outcome::Allowed(AllowedBy::KeyPolicyAndIam {
            key_policy_sid: key_sid,
            iam_sid,
        }),
        None => Outcome::Denied(DenyReason::NoIdentityPolicyAllows),
    }
}

/// Authorization of an account-level action (no key, so no key policy): only the caller's IAM
/// policies decide; an explicit deny refuses; the account root is always allowed; a service
/// principal never is.
pub fn authorize_account_action(
    ctx: &RequestContext,
    caller_iam_policies: &[PolicyDocument],
) -> Authorization {
    let mut outcome = Outcome::Denied(DenyReason::NoIdentityPolicyAllows);
    if !ctx.principal.is_service() {
        for doc in caller_iam_policies {
            let out = evaluate_document(doc, ctx);
            if let Some(sid) = out.deny {
                outcome = Outcome::Denied(DenyReason::ExplicitDenyInIdentityPolicy { sid });
                break;
            }
            if let (Some((_, sid)), Outcome::Denied(_)) = (out.allow, &outcome) {
                outcome = Outcome::Allowed(AllowedBy::KeyPolicyAndIam {
                    key_policy_sid: None,
                    iam_sid: sid,
                });
            }
        }
        if ctx.principal.is_root()
            && !matches!(
                outcome,
                Outcome::Denied(DenyReason::ExplicitDenyInIdentityPolicy { .. })
            )
        {
            outcome = Outcome::Allowed(AllowedBy::KeyPolicyAndIam {
                key_policy_sid: None,
                iam_sid: None,
            });
        }
    }
    Authorization {
        outcome,
        principal_arn: ctx.principal.arn.clone(),
        action: ctx.action.clone(),
        resource: ctx.resource.clone(),
    }
}
