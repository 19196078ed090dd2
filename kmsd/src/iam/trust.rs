//! Roles' trust policies and STS `AssumeRole`'s checks, as pure code.
//!
//! A trust policy is a resource policy on the role: every statement names a
//! `Principal`, has no `Resource` (the role is the resource) and only `sts:` actions.
//! [`may_assume`] decides `sts:AssumeRole` the way AWS does, with the same rules as a
//! KMS key policy ([`crate::policy::authorize`]): within the role's account a trust
//! statement naming the caller (its ARN, or its role for a session) allows by itself,
//! one naming the account delegates to the caller's identity policies, which must
//! then allow `sts:AssumeRole` on the role; across accounts both must allow; an
//! explicit `Deny` in either refuses.

use serde_json::Value;

use crate::error::{ErrorCode, KmsError};
use crate::policy::condition::ConditionKeys;
use crate::policy::context::keys;
use crate::policy::document::ActionSpec;
use crate::policy::{
    authorize, Authorization, PolicyDocument, PolicyError, Principal, RequestContext,
};

/// AWS's default quota for a trust policy's size (`ACLSizePerRole`), in characters.
pub const MAX_TRUST_POLICY_CHARS: usize = 2048;
/// A session's shortest life, and the default.
pub const MIN_DURATION_SECONDS: i32 = 900;
pub const DEFAULT_DURATION_SECONDS: i32 = 3600;
/// The longest any role may allow (`MaxSessionDuration`), and the default.
pub const MAX_DURATION_SECONDS: i32 = 43_200;
pub const DEFAULT_MAX_SESSION_DURATION: i32 = 3600;
/// A role assumed with a role session's credentials lives at most an hour.
pub const ROLE_CHAINING_LIMIT_SECONDS: i32 = 3600;

fn malformed(message: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(message.into())
}

/// Parses a role's trust policy (`AssumeRolePolicyDocument`).
pub fn parse_trust_policy(text: &str) -> Result<PolicyDocument, PolicyError> {
    let mut v: Value = serde_json::from_str(text)
        .map_err(|e| malformed(format!("Syntax errors in policy: {e}")))?;
    let statements: Vec<&mut Value> = match v.get_mut("Statement") {
        Some(Value::Array(items)) => items.iter_mut().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => {
            return Err(malformed(
                "Syntax errors in policy: Missing required field Statement",
            ))
        }
    };
    for st in statements {
        let Value::Object(m) = st else {
            return Err(malformed(
                "Syntax errors in policy: a Statement must be an object",
            ));
        };
        if m.contains_key("Resource") || m.contains_key("NotResource") {
            return Err(malformed("Has prohibited field Resource"));
        }
        if !m.contains_key("Principal") && !m.contains_key("NotPrincipal") {
            return Err(malformed("Missing required field Principal"));
        }
        m.insert("Resource".into(), Value::String("*".into()));
    }
    let doc = PolicyDocument::from_value(&v)?;
    for st in &doc.statements {
        let sts_only = match &st.action {
            ActionSpec::Action(list) => list
                .iter()
                .all(|a| a.to_ascii_lowercase().starts_with("sts:") || a == "*"),
            ActionSpec::NotAction(_) => false,
        };
        if !sts_only {
            return Err(malformed(
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ));
        }
    }
    Ok(doc)
}

/// What an `AssumeRole` request says that trust-policy conditions may look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssumeRoleContext<'a> {
    pub external_id: Option<&'a str>,
    pub role_session_name: &'a str,
}

/// May `caller` (with its identity policies) assume the role `role_arn` of
/// `role_account`, whose trust policy is `trust`?
pub fn may_assume(
    caller: &Principal,
    caller_policies: &[PolicyDocument],
    role_arn: &str,
    role_account: &str,
    trust: &PolicyDocument,
    request: AssumeRoleContext<'_>,
) -> Authorization {
    let mut condition_keys = ConditionKeys::new();
    condition_keys.set(keys::PRINCIPAL_ARN, vec![caller.arn.clone()]);
    if let Some(acct) = &caller.account {
        condition_keys.set(keys::PRINCIPAL_ACCOUNT, vec![acct.clone()]);
    }
    if let Some(id) = request.external_id {
        condition_keys.set("sts:ExternalId", vec![id.to_string()]);
    }
    condition_keys.set(
        "sts:RoleSessionName",
        vec![request.role_session_name.to_string()],
    );
    let ctx = RequestContext {
        principal: caller.clone(),
        action: "sts:AssumeRole".into(),
        resource: role_arn.to_string(),
        key_account: role_account.to_string(),
        condition_keys,
    };
    authorize(&ctx, trust, caller_policies)
}

fn validation(member: &str, value: &str, constraint: &str) -> KmsError {
    super::names::validation(member, value, constraint)
}

/// `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`.
pub fn check_session_name(name: &str) -> Result<(), KmsError> {
    if name.len() < 2 || name.len() > 64 {
        return Err(validation(
            "roleSessionName",
            name,
            if name.len() < 2 {
                "Member must have length greater than or equal to 2"
            } else {
                "Member must have length less than or equal to 64"
            },
        ));
    }
    if !super::names::is_entity_name(name, 64) {
        return Err(validation(
            "roleSessionName",
            name,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    Ok(())
}

/// `DurationSeconds` within [`MIN_DURATION_SECONDS`] and `max`, refused in STS's words
/// otherwise (AssumeRole's and GetSessionToken's range check).
pub fn check_duration(d: i32, max: i32) -> Result<i32, KmsError> {
    if d < MIN_DURATION_SECONDS {
        return Err(validation(
            "durationSeconds",
            &d.to_string(),
            &format!("Member must have value greater than or equal to {MIN_DURATION_SECONDS}"),
        ));
    }
    if d > max {
        return Err(validation(
            "durationSeconds",
            &d.to_string(),
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(d)
}

/// The session's life in seconds: `requested` (default one hour), within 900 s and
/// the role's `MaxSessionDuration`, and within an hour when a role session assumes
/// a role (role chaining), as AWS refuses them.
pub fn session_duration(
    requested: Option<i32>,
    max_session_duration: i32,
    chained: bool,
) -> Result<i32, KmsError> {
    let Some(d) = requested else {
        return Ok(DEFAULT_DURATION_SECONDS);
    };
    check_duration(d, MAX_DURATION_SECONDS)?;
    if chained && d > ROLE_CHAINING_LIMIT_SECONDS {
        return Err(KmsError::new(
            ErrorCode::ValidationError,
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }
    if d > max_session_duration {
        return Err(KmsError::new(
            ErrorCode::ValidationError,
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    Ok(d)
}

/// The trust policy a role declared in the config file gets: any principal of its
/// own account whose identity policies allow `sts:AssumeRole` on it.
pub fn account_trust_policy(account: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"sts:AssumeRole"}}]}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = "111122223333";
    const OTHER: &str = "444455556666";
    const ROLE: &str = "arn:aws:iam::111122223333:role/Deployer";

    #[test]
    fn durations_are_checked_against_the_callers_bound_in_stss_words() {
        for (d, max, says) in [
            (899, 43_200, "greater than or equal to 900"),
            (43_201, 43_200, "less than or equal to 43200"),
            (899, 129_600, "greater than or equal to 900"),
            (129_601, 129_600, "less than or equal to 129600"),
        ] {
            let e = check_duration(d, max).unwrap_err();
            assert_eq!(e.code, ErrorCode::ValidationError);
            assert!(
                e.message.ends_with(&format!(
                    "failed to satisfy constraint: Member must have value {says}"
                )),
                "{}",
                e.message
            );
        }
        assert_eq!(check_duration(900, 43_200).unwrap(), 900);
        assert_eq!(check_duration(129_600, 129_600).unwrap(), 129_600);
    }

    fn p(arn: &str) -> Principal {
        Principal::parse(arn).unwrap()
    }

    fn identity(text: &str) -> PolicyDocument {
        PolicyDocument::parse_identity_policy(text).unwrap()
    }

    fn trust(principal: &str) -> PolicyDocument {
        parse_trust_policy(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"sts:AssumeRole"}}]}}"#
        ))
        .unwrap()
    }

    const MAY_ASSUME: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::111122223333:role/Deployer"}]}"#;
    const DENY_ASSUME: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"sts:*","Resource":"*"}]}"#;

    fn decide(caller: &str, iam: &[&str], t: &PolicyDocument) -> bool {
        let docs: Vec<PolicyDocument> = iam.iter().map(|d| identity(d)).collect();
        may_assume(
            &p(caller),
            &docs,
            ROLE,
            LAB,
            t,
            AssumeRoleContext {
                external_id: None,
                role_session_name: "s1",
            },
        )
        .is_allowed()
    }

    #[test]
    fn naming_the_caller_is_enough_within_the_account() {
        let t = trust("arn:aws:iam::111122223333:user/alice");
        assert!(decide("arn:aws:iam::111122223333:user/alice", &[], &t));
        assert!(!decide(
            "arn:aws:iam::111122223333:user/bob",
            &[MAY_ASSUME],
            &t
        ));
        // An explicit deny in the caller's own policies still refuses.
        assert!(!decide(
            "arn:aws:iam::111122223333:user/alice",
            &[DENY_ASSUME],
            &t
        ));
    }

    #[test]
    fn naming_the_account_delegates_to_identity_policies() {
        let t = trust("arn:aws:iam::111122223333:root");
        assert!(!decide("arn:aws:iam::111122223333:user/alice", &[], &t));
        assert!(decide(
            "arn:aws:iam::111122223333:user/alice",
            &[MAY_ASSUME],
            &t
        ));
        // The account's root needs no identity policy.
        assert!(decide("arn:aws:iam::111122223333:root", &[], &t));
        // Another account is not named at all.
        assert!(!decide(
            "arn:aws:iam::444455556666:user/alice",
            &[MAY_ASSUME],
            &t
        ));
    }

    #[test]
    fn across_accounts_both_must_allow() {
        let t = trust(&format!("arn:aws:iam::{OTHER}:root"));
        let other_may = MAY_ASSUME;
        assert!(!decide("arn:aws:iam::444455556666:user/UserA", &[], &t));
        assert!(decide(
            "arn:aws:iam::444455556666:user/UserA",
            &[other_may],
            &t
        ));
        // Even when the trust policy names the user itself.
        let t = trust("arn:aws:iam::444455556666:user/UserA");
        assert!(!decide("arn:aws:iam::444455556666:user/UserA", &[], &t));
        assert!(decide(
            "arn:aws:iam::444455556666:user/UserA",
            &[other_may],
            &t
        ));
        // The other account's root needs only the trust.
        let t = trust(OTHER);
        assert!(decide("arn:aws:iam::444455556666:root", &[], &t));
    }

    #[test]
    fn sessions_match_their_role_and_conditions_see_the_external_id() {
        let t = trust("arn:aws:iam::111122223333:role/Builder");
        assert!(decide(
            "arn:aws:sts::111122223333:assumed-role/Builder/ci",
            &[],
            &t
        ));
        let t = parse_trust_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"xyz-123"}}}]}"#,
        )
        .unwrap();
        let alice = p("arn:aws:iam::111122223333:user/alice");
        let with = |id: Option<&str>| {
            may_assume(
                &alice,
                &[],
                ROLE,
                LAB,
                &t,
                AssumeRoleContext {
                    external_id: id,
                    role_session_name: "s1",
                },
            )
            .is_allowed()
        };
        assert!(with(Some("xyz-123")));
        assert!(!with(Some("other")));
        assert!(!with(None));
    }

    #[test]
    fn refused_trust_policies() {
        for (doc, says) in [
            ("{", "Syntax errors"),
            (
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}"#,
                "Missing required field Principal",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Resource":"*"}]}"#,
                "prohibited field Resource",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt"}]}"#,
                "only specify STS",
            ),
        ] {
            let e = parse_trust_policy(doc).unwrap_err().to_string();
            assert!(e.contains(says), "{doc}: {e}");
        }
        parse_trust_policy(&account_trust_policy(LAB)).unwrap();
    }

    #[test]
    fn durations_and_session_names() {
        assert_eq!(session_duration(None, 3600, false).unwrap(), 3600);
        assert_eq!(session_duration(Some(900), 3600, false).unwrap(), 900);
        assert_eq!(session_duration(Some(43200), 43200, false).unwrap(), 43200);
        for (d, max, chained, says) in [
            (899, 3600, false, "greater than or equal to 900"),
            (43201, 43200, false, "less than or equal to 43200"),
            (7200, 3600, false, "MaxSessionDuration"),
            (7200, 43200, true, "role chaining"),
        ] {
            let e = session_duration(Some(d), max, chained).unwrap_err();
            assert_eq!(e.code, ErrorCode::ValidationError);
            assert!(e.message.contains(says), "{d}: {}", e.message);
        }
        check_session_name("ci-run@1").unwrap();
        assert!(check_session_name("a").is_err());
        assert!(check_session_name("has space").is_err());
        assert!(check_session_name(&"a".repeat(65)).is_err());
    }
}
