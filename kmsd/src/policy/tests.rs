//! Table-driven tests of policy parsing and AWS KMS authorization, the issue-3 scenarios, and
//! a seeded randomized smoke test (the plain-`cargo test` stand-in for the cargo-fuzz target).

use std::collections::BTreeMap;

use super::evaluate::AllowedBy;
use super::lockout::{check_lockout, would_lock_out, LOCKOUT_MESSAGE};
use super::*;
use crate::api::default_policies::{
    console_key_policy, default_key_policy, KEY_ADMINISTRATOR_ACTIONS,
};

const A: &str = "111122223333";
const B: &str = "444455556666";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY: &str =
    "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";
const ALICE: &str = "arn:aws:iam::111122223333:user/Alice";
const BOB: &str = "arn:aws:iam::111122223333:user/Bob";
const ROOT_A: &str = "arn:aws:iam::111122223333:root";
const ROLE: &str = "arn:aws:iam::111122223333:role/KeyRole";
const ROLE_SESSION: &str = "arn:aws:sts::111122223333:assumed-role/KeyRole/lab";
const USER_A: &str = "arn:aws:iam::444455556666:user/UserA";
const ROOT_B: &str = "arn:aws:iam::444455556666:root";
const EC2: &str = "ec2.amazonaws.com";
const VIA_EC2: &str = "ec2.us-east-1.amazonaws.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Allow,
    NoResource,
    NoIdentity,
    DenyResource,
    DenyIdentity,
}

fn policy(statements: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
}

/// The "Enable IAM User Permissions" statement for account A.
const ROOT_STMT: &str = r#"{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;

fn allow_iam(actions: &str) -> String {
    policy(&format!(
        r#"{{"Effect":"Allow","Action":{actions},"Resource":"*"}}"#
    ))
}

struct Case {
    name: &'static str,
    key_policy: String,
    iam: Vec<String>,
    caller: &'static str,
    action: &'static str,
    ec: &'static [(&'static str, &'static str)],
    via: Option<&'static str>,
    grant_flag: Option<bool>,
    want: Want,
}

fn case(
    name: &'static str,
    key_policy: String,
    caller: &'static str,
    action: &'static str,
) -> Case {
    Case {
        name,
        key_policy,
        iam: Vec::new(),
        caller,
        action,
        ec: &[],
        via: None,
        grant_flag: None,
        want: Want::Allow,
    }
}

impl Case {
    fn iam(mut self, p: String) -> Self {
        self.iam.push(p);
        self
    }
    fn ec(mut self, ec: &'static [(&'static str, &'static str)]) -> Self {
        self.ec = ec;
        self
    }
    fn via(mut self, v: &'static str) -> Self {
        self.via = Some(v);
        self
    }
    fn flag(mut self, f: bool) -> Self {
        self.grant_flag = Some(f);
        self
    }
    fn want(mut self, w: Want) -> Self {
        self.want = w;
        self
    }
}

fn run(c: &Case, key: &str) -> Authorization {
    let kp = PolicyDocument::parse_key_policy(&c.key_policy)
        .unwrap_or_else(|e| panic!("{}: key policy does not parse: {e}", c.name));
    let iam: Vec<PolicyDocument> = c
        .iam
        .iter()
        .map(|p| {
            PolicyDocument::parse_identity_policy(p)
                .unwrap_or_else(|e| panic!("{}: IAM policy does not parse: {e}", c.name))
        })
        .collect();
    let ec: BTreeMap<String, String> =
        c.ec.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let p = Principal::parse(c.caller).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let ctx = RequestContext::standard(p, c.action, key, &ec, c.via, c.grant_flag)
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    authorize(&ctx, &kp, &iam)
}

fn classify(a: &Authorization) -> Want {
    match &a.outcome {
        Outcome::Allowed(_) => Want::Allow,
        Outcome::Denied(DenyReason::NoResourcePolicyAllows) => Want::NoResource,
        Outcome::Denied(DenyReason::NoIdentityPolicyAllows) => Want::NoIdentity,
        Outcome::Denied(DenyReason::ExplicitDenyInResourcePolicy { .. }) => Want::DenyResource,
        Outcome::Denied(DenyReason::ExplicitDenyInIdentityPolicy { .. }) => Want::DenyIdentity,
    }
}

fn direct(principal: &str, action: &str) -> String {
    policy(&format!(
        r#"{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":{action},"Resource":"*"}}"#
    ))
}

fn with_condition(principal: &str, action: &str, condition: &str) -> String {
    policy(&format!(
        r#"{{"Effect":"Allow","Principal":{principal},"Action":"{action}","Resource":"*","Condition":{condition}}}"#
    ))
}

fn cases() -> Vec<Case> {
    use Want::*;
    let alice = r#"{"AWS":"arn:aws:iam::111122223333:user/Alice"}"#;
    let root_plus = |extra: &str| policy(&format!("{ROOT_STMT},{extra}"));
    vec![
        // --- principals, same account
        case("direct user allow", direct(ALICE, r#""kms:Decrypt""#), ALICE, "kms:Decrypt"),
        case("direct allow names someone else", direct(BOB, r#""kms:Decrypt""#), ALICE, "kms:Decrypt").want(NoResource),
        case("root delegation + IAM allow", policy(ROOT_STMT), ALICE, "kms:Decrypt").iam(allow_iam(r#""kms:Decrypt""#)),
        case("root delegation without IAM", policy(ROOT_STMT), ALICE, "kms:Decrypt").want(NoIdentity),
        case("root delegation, IAM allows another action", policy(ROOT_STMT), ALICE, "kms:Decrypt").iam(allow_iam(r#""kms:Encrypt""#)).want(NoIdentity),
        case("account id form delegates too", direct(A, r#""kms:*""#), ALICE, "kms:Decrypt").iam(allow_iam(r#""kms:*""#)),
        case("root itself needs no IAM", policy(ROOT_STMT), ROOT_A, "kms:Decrypt"),
        case("IAM allow alone is not enough", direct(BOB, r#""kms:*""#), ALICE, "kms:Decrypt").iam(allow_iam(r#""kms:*""#)).want(NoResource),
        case("role session matches role principal", direct(ROLE, r#""kms:Decrypt""#), ROLE_SESSION, "kms:Decrypt"),
        case("role principal, other role's session", direct("arn:aws:iam::111122223333:role/Other", r#""kms:Decrypt""#), ROLE_SESSION, "kms:Decrypt").want(NoResource),
        // --- explicit deny
        case("key policy deny beats direct allow", policy(&format!(r#"{{"Effect":"Allow","Principal":{alice},"Action":"kms:*","Resource":"*"}},{{"Sid":"NoDecrypt","Effect":"Deny","Principal":{alice},"Action":"kms:Decrypt","Resource":"*"}}"#)), ALICE, "kms:Decrypt").want(DenyResource),
        case("IAM deny beats key allow", direct(ALICE, r#""kms:*""#), ALICE, "kms:Decrypt").iam(policy(r#"{"Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}"#)).want(DenyIdentity),
        case("IAM deny for another key does not apply", direct(ALICE, r#""kms:*""#), ALICE, "kms:Decrypt").iam(policy(&format!(r#"{{"Effect":"Deny","Action":"kms:Decrypt","Resource":"{OTHER_KEY}"}}"#))),
        case("deny naming the account denies its users", root_plus(r#"{"Effect":"Deny","Principal":{"AWS":"111122223333"},"Action":"kms:ScheduleKeyDeletion","Resource":"*"}"#), ALICE, "kms:ScheduleKeyDeletion").iam(allow_iam(r#""kms:*""#)).want(DenyResource),
        case("NotPrincipal deny spares the named user", policy(&format!(r#"{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}},{{"Effect":"Deny","NotPrincipal":{alice},"Action":"kms:Decrypt","Resource":"*"}}"#)), ALICE, "kms:Decrypt"),
        case("NotPrincipal deny hits others", policy(&format!(r#"{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}},{{"Effect":"Deny","NotPrincipal":{alice},"Action":"kms:Decrypt","Resource":"*"}}"#)), BOB, "kms:Decrypt").want(DenyResource),
        // --- cross account
        case("cross account: key names account, IAM allows", root_plus(r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:Decrypt","Resource":"*"}"#), USER_A, "kms:Decrypt").iam(allow_iam(r#""kms:Decrypt""#)),
        case("cross account: key names account, no IAM", root_plus(r#"{"Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"kms:Decrypt","Resource":"*"}"#), USER_A, "kms:Decrypt").want(NoIdentity),
        case("cross account: IAM allows, key silent", policy(ROOT_STMT), USER_A, "kms:Decrypt").iam(allow_iam(r#""kms:Decrypt""#)).want(NoResource),
        case("cross account: key names user, no IAM", direct(USER_A, r#""kms:Decrypt""#), USER_A, "kms:Decrypt").want(NoIdentity),
        case("cross account: key names user, IAM allows", direct(USER_A, r#""kms:Decrypt""#), USER_A, "kms:Decrypt").iam(allow_iam(r#""kms:*""#)),
        case("cross account root needs no IAM", direct(B, r#""kms:Decrypt""#), ROOT_B, "kms:Decrypt"),
        case("cross account: Principal * still needs IAM", policy(r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#), USER_A, "kms:Decrypt").want(NoIdentity),
        // --- actions
        case("NotAction excludes Decrypt", policy(r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/Alice"},"NotAction":"kms:Decrypt","Resource":"*"}"#), ALICE, "kms:Decrypt").want(NoResource),
        case("NotAction allows the rest", policy(r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/Alice"},"NotAction":["kms:Decrypt","kms:ScheduleKeyDeletion"],"Resource":"*"}"#), ALICE, "kms:Encrypt"),
        case("kms:Generate* covers WithoutPlaintext", direct(ALICE, r#""kms:Generate*""#), ALICE, "kms:GenerateDataKeyWithoutPlaintext"),
        case("kms:Generate* does not cover Decrypt", direct(ALICE, r#""kms:Generate*""#), ALICE, "kms:Decrypt").want(NoResource),
        case("kms:* covers ScheduleKeyDeletion", direct(ALICE, r#""kms:*""#), ALICE, "kms:ScheduleKeyDeletion"),
        case("* covers everything", direct(ALICE, r#""*""#), ALICE, "kms:PutKeyPolicy"),
        case("action names are case-insensitive", direct(ALICE, r#""KMS:decrypt""#), ALICE, "kms:Decrypt"),
        case("other service's action does not match", direct(ALICE, r#""s3:*""#), ALICE, "kms:Decrypt").want(NoResource),
        case("IAM wildcard kms:ReEncrypt*", policy(ROOT_STMT), ALICE, "kms:ReEncryptFrom").iam(allow_iam(r#"["kms:ReEncrypt*"]"#)),
        // --- resources
        case("Resource names this key", policy(&format!(r#"{{"Effect":"Allow","Principal":{alice},"Action":"kms:Decrypt","Resource":"{KEY}"}}"#)), ALICE, "kms:Decrypt"),
        case("Resource names another key", policy(&format!(r#"{{"Effect":"Allow","Principal":{alice},"Action":"kms:Decrypt","Resource":"{OTHER_KEY}"}}"#)), ALICE, "kms:Decrypt").want(NoResource),
        case("Resource wildcard ARN", policy(&format!(r#"{{"Effect":"Allow","Principal":{alice},"Action":"kms:Decrypt","Resource":"arn:aws:kms:*:{A}:key/*"}}"#)), ALICE, "kms:Decrypt"),
        case("NotResource excludes this key", policy(&format!(r#"{{"Effect":"Allow","Principal":{alice},"Action":"kms:Decrypt","NotResource":"{KEY}"}}"#)), ALICE, "kms:Decrypt").want(NoResource),
        // --- conditions: strings and encryption context
        case("StringEquals EncryptionContext matches", with_condition(alice, "kms:Decrypt", r#"{"StringEquals":{"kms:EncryptionContext:Department":"IT"}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "IT")]),
        case("StringEquals EncryptionContext mismatch", with_condition(alice, "kms:Decrypt", r#"{"StringEquals":{"kms:EncryptionContext:Department":"IT"}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "HR")]).want(NoResource),
        case("StringEquals EncryptionContext absent", with_condition(alice, "kms:Decrypt", r#"{"StringEquals":{"kms:EncryptionContext:Department":"IT"}}"#), ALICE, "kms:Decrypt").want(NoResource),
        case("StringEquals values are alternatives", with_condition(alice, "kms:Decrypt", r#"{"StringEquals":{"kms:EncryptionContext:Department":["HR","IT"]}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "IT")]),
        case("StringEquals is case-sensitive on values", with_condition(alice, "kms:Decrypt", r#"{"StringEquals":{"kms:EncryptionContext:Department":"it"}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "IT")]).want(NoResource),
        case("StringEqualsIgnoreCase", with_condition(alice, "kms:Decrypt", r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:Department":"it"}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "IT")]),
        case("condition key names are case-insensitive", with_condition(alice, "kms:Decrypt", r#"{"StringEquals":{"KMS:ENCRYPTIONCONTEXT:DEPARTMENT":"IT"}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "IT")]),
        case("StringNotEquals with key absent holds", with_condition(alice, "kms:Decrypt", r#"{"StringNotEquals":{"kms:EncryptionContext:Department":"HR"}}"#), ALICE, "kms:Decrypt"),
        case("StringNotEquals with matching value fails", with_condition(alice, "kms:Decrypt", r#"{"StringNotEquals":{"kms:EncryptionContext:Department":["HR","IT"]}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "IT")]).want(NoResource),
        case("StringLike ViaService present", with_condition(alice, "kms:Decrypt", r#"{"StringLike":{"kms:ViaService":"ec2.*.amazonaws.com"}}"#), ALICE, "kms:Decrypt").via(VIA_EC2),
        case("StringLike ViaService absent", with_condition(alice, "kms:Decrypt", r#"{"StringLike":{"kms:ViaService":"ec2.*.amazonaws.com"}}"#), ALICE, "kms:Decrypt").want(NoResource),
        case("StringNotLike ViaService s3 only", with_condition(alice, "kms:Decrypt", r#"{"StringNotLike":{"kms:ViaService":"s3.*"}}"#), ALICE, "kms:Decrypt").via(VIA_EC2),
        case("StringNotLike fails on a match", with_condition(alice, "kms:Decrypt", r#"{"StringNotLike":{"kms:ViaService":"ec2.*"}}"#), ALICE, "kms:Decrypt").via(VIA_EC2).want(NoResource),
        case("StringEqualsIfExists, key absent", with_condition(alice, "kms:Decrypt", r#"{"StringEqualsIfExists":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}"#), ALICE, "kms:Decrypt"),
        case("StringEqualsIfExists, key present and wrong", with_condition(alice, "kms:Decrypt", r#"{"StringEqualsIfExists":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}"#), ALICE, "kms:Decrypt").via(VIA_EC2).want(NoResource),
        case("StringEqualsIfExists, key present and right", with_condition(alice, "kms:Decrypt", r#"{"StringEqualsIfExists":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}"#), ALICE, "kms:Decrypt").via(VIA_EC2),
        case("Deny unless via ec2, direct call", policy(&format!(r#"{{"Effect":"Allow","Principal":{alice},"Action":"kms:*","Resource":"*"}},{{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{{"StringNotEquals":{{"kms:ViaService":"{VIA_EC2}"}}}}}}"#)), ALICE, "kms:Decrypt").want(DenyResource),
        case("Deny unless via ec2, via ec2", policy(&format!(r#"{{"Effect":"Allow","Principal":{alice},"Action":"kms:*","Resource":"*"}},{{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{{"StringNotEquals":{{"kms:ViaService":"{VIA_EC2}"}}}}}}"#)), ALICE, "kms:Decrypt").via(VIA_EC2),
        case("all keys of a condition must hold", with_condition(alice, "kms:Decrypt", r#"{"StringEquals":{"kms:EncryptionContext:Department":"IT","kms:ViaService":"s3.us-east-1.amazonaws.com"}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "IT")]).via(VIA_EC2).want(NoResource),
        case("all operators must hold", with_condition(alice, "kms:Decrypt", r#"{"StringEquals":{"kms:EncryptionContext:Department":"IT"},"StringLike":{"kms:ViaService":"ec2.*"}}"#), ALICE, "kms:Decrypt").ec(&[("Department", "IT")]).via(VIA_EC2),
        // --- ARN operators
        case("ArnLike aws:PrincipalArn role/*", with_condition(r#""*""#, "kms:Decrypt", r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/*"}}"#), ROLE, "kms:Decrypt"),
        case("ArnLike aws:PrincipalArn role/* refuses a user", with_condition(r#""*""#, "kms:Decrypt", r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/*"}}"#), ALICE, "kms:Decrypt").want(NoResource),
        case("ArnEquals aws:PrincipalArn", with_condition(r#""*""#, "kms:Decrypt", r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/Alice"}}"#), ALICE, "kms:Decrypt"),
        case("ArnNotLike excludes matches", with_condition(r#""*""#, "kms:Decrypt", r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/Alice"}}"#), ALICE, "kms:Decrypt").want(NoResource),
        case("ArnNotLike lets others in", with_condition(r#""*""#, "kms:Decrypt", r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/Alice"}}"#), BOB, "kms:Decrypt"),
        // --- Bool / GrantIsForAWSResource
        case("GrantIsForAWSResource true", with_condition(alice, "kms:CreateGrant", r#"{"Bool":{"kms:GrantIsForAWSResource":"true"}}"#), ALICE, "kms:CreateGrant").via(VIA_EC2).flag(true),
        case("GrantIsForAWSResource false", with_condition(alice, "kms:CreateGrant", r#"{"Bool":{"kms:GrantIsForAWSResource":"true"}}"#), ALICE, "kms:CreateGrant").flag(false).want(NoResource),
        case("GrantIsForAWSResource absent", with_condition(alice, "kms:CreateGrant", r#"{"Bool":{"kms:GrantIsForAWSResource":true}}"#), ALICE, "kms:CreateGrant").want(NoResource),
        case("BoolIfExists with key absent", with_condition(alice, "kms:CreateGrant", r#"{"BoolIfExists":{"kms:GrantIsForAWSResource":"true"}}"#), ALICE, "kms:CreateGrant"),
        // --- Null
        case("Null false requires a context", with_condition(alice, "kms:Encrypt", r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#), ALICE, "kms:Encrypt").ec(&[("Project", "x")]),
        case("Null false refuses no context", with_condition(alice, "kms:Encrypt", r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#), ALICE, "kms:Encrypt").want(NoResource),
        case("Null true requires absence", with_condition(alice, "kms:Encrypt", r#"{"Null":{"kms:ViaService":"true"}}"#), ALICE, "kms:Encrypt").via(VIA_EC2).want(NoResource),
        // --- set operators
        case("ForAnyValue hit", with_condition(alice, "kms:Encrypt", r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["Department"]}}"#), ALICE, "kms:Encrypt").ec(&[("Department", "IT"), ("Project", "x")]),
        case("ForAnyValue miss", with_condition(alice, "kms:Encrypt", r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["Department"]}}"#), ALICE, "kms:Encrypt").ec(&[("Project", "x")]).want(NoResource),
        case("ForAnyValue with no context", with_condition(alice, "kms:Encrypt", r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["Department"]}}"#), ALICE, "kms:Encrypt").want(NoResource),
        case("ForAllValues all listed", with_condition(alice, "kms:Encrypt", r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department","Project"]}}"#), ALICE, "kms:Encrypt").ec(&[("Department", "IT")]),
        case("ForAllValues one unlisted", with_condition(alice, "kms:Encrypt", r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department","Project"]}}"#), ALICE, "kms:Encrypt").ec(&[("Department", "IT"), ("Other", "y")]).want(NoResource),
        case("ForAllValues with no context holds", with_condition(alice, "kms:Encrypt", r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department"]}}"#), ALICE, "kms:Encrypt"),
        case("ForAnyValue:StringLike", with_condition(alice, "kms:Encrypt", r#"{"ForAnyValue:StringLike":{"kms:EncryptionContextKeys":["aws:ebs:*"]}}"#), ALICE, "kms:Encrypt").ec(&[("aws:ebs:id", "vol-1")]),
        // --- CallerAccount, Principal "*" with conditions
        case("Principal * + CallerAccount, same account", with_condition(r#""*""#, "kms:Decrypt", r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#), ALICE, "kms:Decrypt"),
        case("Principal * + CallerAccount, other account", with_condition(r#""*""#, "kms:Decrypt", r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#), USER_A, "kms:Decrypt").iam(allow_iam(r#""kms:*""#)).want(NoResource),
        case("Principal * + CallerAccount B + IAM", with_condition(r#"{"AWS":"*"}"#, "kms:Decrypt", r#"{"StringEquals":{"kms:CallerAccount":"444455556666"}}"#), USER_A, "kms:Decrypt").iam(allow_iam(r#""kms:Decrypt""#)),
        // --- service principals
        case("Service principal allowed", policy(r#"{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"kms:Decrypt","Resource":"*"}"#), EC2, "kms:Decrypt"),
        case("AWS * does not cover services", policy(r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}"#), EC2, "kms:Decrypt").want(NoResource),
        case("Service principal not named", policy(ROOT_STMT), EC2, "kms:Decrypt").want(NoResource),
    ]
}

#[test]
fn evaluation_table() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let got = classify(&run(c, KEY));
        if got != c.want {
            failures.push(format!("{}: want {:?}, got {:?}", c.name, c.want, got));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn access_denied_messages_have_aws_shape() {
    let c = case("m", policy(ROOT_STMT), ALICE, "kms:Decrypt");
    let a = run(&c, KEY);
    assert_eq!(
        a.access_denied_message().as_deref(),
        Some(&*format!("User: {ALICE} is not authorized to perform: kms:Decrypt on resource: {KEY} because no identity-based policy allows the kms:Decrypt action"))
    );
    let c = case("m", direct(BOB, r#""kms:*""#), ALICE, "kms:CreateGrant");
    assert_eq!(
        run(&c, KEY).access_denied_message().as_deref(),
        Some(&*format!("User: {ALICE} is not authorized to perform: kms:CreateGrant on resource: {KEY} because no resource-based policy allows the kms:CreateGrant action"))
    );
    let c = case(
        "m",
        policy(r#"{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}"#),
        ALICE,
        "kms:Decrypt",
    );
    assert_eq!(
        run(&c, KEY).access_denied_message().as_deref(),
        Some(&*format!("User: {ALICE} is not authorized to perform: kms:Decrypt on resource: {KEY} with an explicit deny in a resource-based policy"))
    );
    let c = case("m", direct(ALICE, r#""kms:*""#), ALICE, "kms:Decrypt").iam(policy(
        r#"{"Effect":"Deny","Action":"kms:*","Resource":"*"}"#,
    ));
    assert_eq!(
        run(&c, KEY).access_denied_message().as_deref(),
        Some(&*format!("User: {ALICE} is not authorized to perform: kms:Decrypt on resource: {KEY} with an explicit deny in an identity-based policy"))
    );
    let ok = run(
        &case("m", direct(ALICE, r#""kms:*""#), ALICE, "kms:Decrypt"),
        KEY,
    );
    assert!(ok.is_allowed());
    assert_eq!(ok.access_denied_message(), None);
}

#[test]
fn grants_override_implicit_but_not_explicit_denials() {
    let implicit = run(&case("g", policy(ROOT_STMT), ALICE, "kms:Decrypt"), KEY);
    assert!(!implicit.is_allowed());
    let g = implicit.clone().or_grant(Some("abc"));
    assert_eq!(
        g.outcome,
        Outcome::Allowed(AllowedBy::Grant {
            grant_id: "abc".into()
        })
    );
    assert!(!implicit.or_grant(None).is_allowed());
    let explicit = run(
        &case(
            "g",
            policy(&format!(
                r#"{ROOT_STMT},{{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}}"#
            )),
            ALICE,
            "kms:Decrypt",
        ),
        KEY,
    );
    assert!(!explicit.or_grant(Some("abc")).is_allowed());
}

#[test]
fn evaluate_statements_single_document() {
    let doc = PolicyDocument::parse(&policy(
        r#"{"Sid":"A","Effect":"Allow","Action":"kms:*","Resource":"*"},{"Sid":"D","Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}"#,
    ))
    .unwrap();
    let ctx =
        |action: &str| RequestContext::new(Principal::parse(ALICE).unwrap(), action, KEY).unwrap();
    assert_eq!(
        evaluate_statements(&doc, &ctx("kms:Decrypt")),
        Decision::ExplicitDeny {
            sid: Some("D".into())
        }
    );
    assert_eq!(
        evaluate_statements(&doc, &ctx("kms:Encrypt")),
        Decision::Allow {
            sid: Some("A".into())
        }
    );
    assert_eq!(
        evaluate_statements(&doc, &ctx("s3:GetObject")),
        Decision::NotApplicable
    );
}

// ---------------------------------------------------------------- issue 3 scenarios

fn ctx_for(caller: &str, action: &str) -> RequestContext {
    RequestContext::new(Principal::parse(caller).unwrap(), action, KEY).unwrap()
}

/// Scenario 1: the lab key, created with a role as administrator and user, plus an
/// administrator-only principal that can disable the key but not decrypt with it.
#[test]
fn scenario_lab_admin_only_principal() {
    let admin_only = "arn:aws:iam::111122223333:role/KeyAdminOnly";
    let text = console_key_policy(A, &[ROLE, admin_only], &[ROLE]);
    let kp = PolicyDocument::parse_key_policy(&text).unwrap();
    let disable = authorize(&ctx_for(admin_only, "kms:DisableKey"), &kp, &[]);
    assert!(disable.is_allowed(), "{disable:?}");
    let decrypt = authorize(&ctx_for(admin_only, "kms:Decrypt"), &kp, &[]);
    assert!(!decrypt.is_allowed());
    assert_eq!(
        decrypt.access_denied_message().unwrap(),
        format!("User: {admin_only} is not authorized to perform: kms:Decrypt on resource: {KEY} because no identity-based policy allows the kms:Decrypt action")
    );
    // The role that is both administrator and user can do both.
    assert!(authorize(&ctx_for(ROLE_SESSION, "kms:Decrypt"), &kp, &[]).is_allowed());
    assert!(authorize(&ctx_for(ROLE, "kms:DisableKey"), &kp, &[]).is_allowed());
    // A key user may create grants only for AWS resources.
    let ec = BTreeMap::new();
    let via_ec2 = RequestContext::standard(
        Principal::parse(ROLE).unwrap(),
        "kms:CreateGrant",
        KEY,
        &ec,
        Some(VIA_EC2),
        Some(true),
    )
    .unwrap();
    assert!(authorize(&via_ec2, &kp, &[]).is_allowed());
    let direct_grant = authorize(&ctx_for(ROLE, "kms:CreateGrant"), &kp, &[]);
    // Admins have kms:Create*, which covers CreateGrant: the role is also an admin.
    assert!(direct_grant.is_allowed());
    let user_only = "arn:aws:iam::111122223333:role/KeyUserOnly";
    let kp2 =
        PolicyDocument::parse_key_policy(&console_key_policy(A, &[ROLE], &[user_only])).unwrap();
    assert!(!authorize(&ctx_for(user_only, "kms:CreateGrant"), &kp2, &[]).is_allowed());
    assert!(!authorize(&ctx_for(user_only, "kms:DisableKey"), &kp2, &[]).is_allowed());
}

/// Scenario 2: an IAM user with full rights on the volume service but no kms:CreateGrant.
#[test]
fn scenario_create_grant_for_instance_start() {
    let user = "arn:aws:iam::111122223333:user/EbsUser";
    let kp = PolicyDocument::parse_key_policy(&default_key_policy(A)).unwrap();
    let ec2_full = PolicyDocument::parse_identity_policy(&allow_iam(r#""ec2:*""#)).unwrap();
    let grant_ctx = RequestContext::standard(
        Principal::parse(user).unwrap(),
        "kms:CreateGrant",
        KEY,
        &BTreeMap::new(),
        Some(VIA_EC2),
        Some(true),
    )
    .unwrap();
    let refused = authorize(&grant_ctx, &kp, std::slice::from_ref(&ec2_full));
    assert_eq!(
        refused.outcome,
        Outcome::Denied(DenyReason::NoIdentityPolicyAllows)
    );
    assert!(refused
        .access_denied_message()
        .unwrap()
        .starts_with(&format!(
            "User: {user} is not authorized to perform: kms:CreateGrant on resource: {KEY} because"
        )));
    let fix = PolicyDocument::parse_identity_policy(&policy(
        r#"{"Effect":"Allow","Action":"kms:CreateGrant","Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":true}}}"#,
    ))
    .unwrap();
    let iam = [ec2_full, fix];
    assert!(authorize(&grant_ctx, &kp, &iam).is_allowed());
    // The fix does not let the user create arbitrary grants directly.
    assert!(!authorize(&ctx_for(user, "kms:CreateGrant"), &kp, &iam).is_allowed());
}

/// Scenario 3: a key of 111122223333 used from 444455556666.
#[test]
fn scenario_cross_account_copied_image() {
    let iam_b = PolicyDocument::parse_identity_policy(&policy(&format!(
        r#"{{"Effect":"Allow","Action":["kms:Decrypt","kms:GenerateDataKey*","kms:ReEncrypt*","kms:DescribeKey"],"Resource":"{KEY}"}},
           {{"Effect":"Allow","Action":"kms:CreateGrant","Resource":"{KEY}","Condition":{{"Bool":{{"kms:GrantIsForAWSResource":true}}}}}}"#
    )))
    .unwrap();
    let default_kp = PolicyDocument::parse_key_policy(&default_key_policy(A)).unwrap();
    let shared_kp = PolicyDocument::parse_key_policy(&policy(&format!(
        r#"{ROOT_STMT},
           {{"Sid":"Allow use by 444455556666","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{B}:root"}},"Action":["kms:Decrypt","kms:GenerateDataKey*","kms:ReEncrypt*","kms:DescribeKey"],"Resource":"*"}},
           {{"Sid":"Allow grants by 444455556666","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{B}:root"}},"Action":"kms:CreateGrant","Resource":"*","Condition":{{"Bool":{{"kms:GrantIsForAWSResource":true}}}}}}"#
    )))
    .unwrap();
    let ops = [
        ("kms:Decrypt", None),
        ("kms:GenerateDataKeyWithoutPlaintext", None),
        ("kms:ReEncryptFrom", None),
        ("kms:DescribeKey", None),
        ("kms:CreateGrant", Some(true)),
    ];
    for (action, flag) in ops {
        let ctx = RequestContext::standard(
            Principal::parse(USER_A).unwrap(),
            action,
            KEY,
            &BTreeMap::new(),
            Some(VIA_EC2),
            flag,
        )
        .unwrap();
        let before = authorize(&ctx, &default_kp, std::slice::from_ref(&iam_b));
        assert_eq!(
            before.outcome,
            Outcome::Denied(DenyReason::NoResourcePolicyAllows),
            "{action}"
        );
        let key_only = authorize(&ctx, &shared_kp, &[]);
        assert_eq!(
            key_only.outcome,
            Outcome::Denied(DenyReason::NoIdentityPolicyAllows),
            "{action}"
        );
        let both = authorize(&ctx, &shared_kp, std::slice::from_ref(&iam_b));
        assert!(both.is_allowed(), "{action}: {both:?}");
    }
    // Not for AWS resources: refused by both sides' conditions.
    let direct = ctx_for(USER_A, "kms:CreateGrant");
    assert!(!authorize(&direct, &shared_kp, std::slice::from_ref(&iam_b)).is_allowed());
    // Administrative actions stay with the owner.
    let disable = ctx_for(USER_A, "kms:DisableKey");
    assert!(!authorize(&disable, &shared_kp, &[allow_all()]).is_allowed());
}

fn allow_all() -> PolicyDocument {
    PolicyDocument::parse_identity_policy(&allow_iam(r#""*""#)).unwrap()
}

// ---------------------------------------------------------------- defaults and lockout

#[test]
fn default_policies() {
    let text = default_key_policy(A);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Statement"][0]["Sid"], "Enable IAM User Permissions");
    assert_eq!(v["Statement"][0]["Principal"]["AWS"], ROOT_A);
    assert_eq!(v["Statement"][0]["Action"], "kms:*");
    PolicyDocument::parse_key_policy(&text).unwrap();

    let text = console_key_policy(A, &[ROLE], &[ROLE, ALICE]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sids: Vec<&str> = v["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    assert_eq!(
        sids,
        [
            "Enable IAM User Permissions",
            "Allow access for Key Administrators",
            "Allow use of the key",
            "Allow attachment of persistent resources"
        ]
    );
    assert_eq!(
        v["Statement"][1]["Action"].as_array().unwrap().len(),
        KEY_ADMINISTRATOR_ACTIONS.len()
    );
    assert_eq!(v["Statement"][1]["Principal"]["AWS"], ROLE);
    assert_eq!(v["Statement"][2]["Principal"]["AWS"][1], ALICE);
    assert_eq!(
        v["Statement"][3]["Condition"]["Bool"]["kms:GrantIsForAWSResource"],
        "true"
    );
    PolicyDocument::parse_key_policy(&text).unwrap();
    // No admins or users: only the root statement.
    let v: serde_json::Value = serde_json::from_str(&console_key_policy(A, &[], &[])).unwrap();
    assert_eq!(v["Statement"].as_array().unwrap().len(), 1);
}

#[test]
fn lockout_check() {
    let alice = Principal::parse(ALICE).unwrap();
    let only_bob = PolicyDocument::parse_key_policy(&direct(BOB, r#""kms:*""#)).unwrap();
    assert!(would_lock_out(&only_bob, &alice, KEY, &[]).unwrap());
    let err = check_lockout(&only_bob, &alice, KEY, &[], false).unwrap_err();
    assert_eq!(err.aws_error_code(), "MalformedPolicyDocumentException");
    assert_eq!(err.to_string(), LOCKOUT_MESSAGE);
    check_lockout(&only_bob, &alice, KEY, &[], true).unwrap();
    // Delegation to IAM keeps Alice in if her IAM policy allows PutKeyPolicy.
    let default = PolicyDocument::parse_key_policy(&default_key_policy(A)).unwrap();
    assert!(would_lock_out(&default, &alice, KEY, &[]).unwrap());
    assert!(!would_lock_out(&default, &alice, KEY, &[allow_all()]).unwrap());
    let admins = PolicyDocument::parse_key_policy(&console_key_policy(A, &[ALICE], &[])).unwrap();
    assert!(!would_lock_out(&admins, &alice, KEY, &[]).unwrap());
    // The root is never locked out by the default policy.
    let root = Principal::parse(A).unwrap();
    assert!(!would_lock_out(&default, &root, KEY, &[]).unwrap());
}

// ---------------------------------------------------------------- parsing

#[test]
fn parse_shapes() {
    // Statement as a single object, Action as a string, Principal "*".
    let d = PolicyDocument::parse(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}}"#,
    )
    .unwrap();
    assert_eq!(d.statements.len(), 1);
    assert_eq!(d.version, None);
    // Serde entry point gives the same result.
    let via_serde: PolicyDocument = serde_json::from_str(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}}"#,
    )
    .unwrap();
    assert_eq!(via_serde, d);
    let err = serde_json::from_str::<PolicyDocument>(r#"{"Statement":[]}"#).unwrap_err();
    assert!(err.to_string().contains("Statement"), "{err}");
}

#[test]
fn malformed_documents_name_the_problem() {
    let table: &[(&str, &str)] = &[
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        (r#"{"Version":"2012-10-17"}"#, "no Statement"),
        (
            r#"{"Version":"2020-01-01","Statement":[]}"#,
            "Version '2020-01-01'",
        ),
        (r#"{"Statement":[]}"#, "empty list"),
        (r#"{"Statement":"x"}"#, "Statement must be an object"),
        (r#"{"Statemnt":[]}"#, "unknown element 'Statemnt'"),
        (
            r#"{"Statement":[{"Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
            "missing Effect",
        ),
        (
            r#"{"Statement":[{"Effect":"allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
            "Effect must be",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Resource":"*"}]}"#,
            "missing Action",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*"}]}"#,
            "missing Resource",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","NotAction":"kms:Decrypt","Resource":"*"}]}"#,
            "both Action and NotAction",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"decrypt","Resource":"*"}]}"#,
            "invalid action 'decrypt'",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":[],"Resource":"*"}]}"#,
            "Action must not be an empty list",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":[1],"Resource":"*"}]}"#,
            "only strings",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"kms:*","Resource":"*"}]}"#,
            "invalid principals: 'bob'",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/*"},"Action":"kms:*","Resource":"*"}]}"#,
            "invalid principals",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2"},"Action":"kms:*","Resource":"*"}]}"#,
            "not a service principal",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Federated":"x"},"Action":"kms:*","Resource":"*"}]}"#,
            "unsupported principal type 'Federated'",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"alice","Action":"kms:*","Resource":"*"}]}"#,
            "Principal must be",
        ),
        (
            r#"{"Statement":[{"Sid":"S1","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEqualz":{"kms:ViaService":"x"}}}]}"#,
            "unsupported condition operator 'StringEqualz'",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NullIfExists":{"kms:ViaService":"true"}}}]}"#,
            "unsupported condition operator",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":{}}}}]}"#,
            "must be a string, boolean or number",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{}}}]}"#,
            "has no condition keys",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"ViaService":"x"}}}]}"#,
            "not a valid condition key",
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Colour":"red"}]}"#,
            "unknown element 'Colour'",
        ),
    ];
    for (text, needle) in table {
        match PolicyDocument::parse(text) {
            Ok(_) => panic!("{text} parsed"),
            Err(e) => {
                assert_eq!(e.aws_error_code(), "MalformedPolicyDocumentException");
                assert!(
                    e.to_string().contains(needle),
                    "{text}: message {:?} lacks {needle:?}",
                    e.to_string()
                );
            }
        }
    }
    // Statement numbering and Sid show where the problem is.
    let e = PolicyDocument::parse(&policy(&format!(
        r#"{ROOT_STMT},{{"Sid":"Broken","Effect":"Allow","Principal":"*","Resource":"*"}}"#
    )))
    .unwrap_err();
    assert!(
        e.to_string().starts_with("Statement 1 (Sid 'Broken')"),
        "{e}"
    );
}

#[test]
fn key_and_identity_flavours() {
    let no_principal = policy(r#"{"Effect":"Allow","Action":"kms:*","Resource":"*"}"#);
    assert!(PolicyDocument::parse_key_policy(&no_principal)
        .unwrap_err()
        .to_string()
        .contains("must have a Principal"));
    PolicyDocument::parse_identity_policy(&no_principal).unwrap();
    assert!(PolicyDocument::parse_identity_policy(&policy(ROOT_STMT))
        .unwrap_err()
        .to_string()
        .contains("must not have a Principal"));
    let huge = policy(&vec![ROOT_STMT; 300].join(","));
    assert!(huge.len() > super::document::MAX_KEY_POLICY_BYTES);
    assert!(PolicyDocument::parse_key_policy(&huge)
        .unwrap_err()
        .to_string()
        .contains("at most 32768 bytes"));
}

#[test]
fn context_rejects_non_key_arns() {
    let p = Principal::parse(ALICE).unwrap();
    for bad in [
        "",
        "key/1",
        "arn:aws:s3:::bucket",
        "arn:aws:kms:us-east-1:1:key/x",
    ] {
        let e = RequestContext::new(p.clone(), "kms:Decrypt", bad).unwrap_err();
        assert_eq!(e.aws_error_code(), "InvalidArnException");
    }
}

// ---------------------------------------------------------------- fuzz smoke

mod smoke {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "null",
        "true",
        "false",
        "1e999",
        "-0",
        "\"*\"",
        "\"kms:*\"",
        "\"kms:Generate*\"",
        "\"Statement\"",
        "\"Condition\"",
        "\"Principal\"",
        "\"AWS\"",
        "\"Service\"",
        "\"NotAction\"",
        "\"NotResource\"",
        "\"NotPrincipal\"",
        "\"ForAllValues:StringLike\"",
        "\"ForAnyValue:StringEquals\"",
        "\"BoolIfExists\"",
        "\"Null\"",
        "\"ArnLike\"",
        "\"kms:EncryptionContextKeys\"",
        "\"aws:PrincipalArn\"",
        "\"111122223333\"",
        "\"arn:aws:iam::444455556666:root\"",
        "\"\\u0000\"",
        "\"é*?\"",
        "\"**********************a\"",
    ];

    const PRINCIPALS: &[&str] = &[
        r#""*""#,
        r#"{"AWS":"*"}"#,
        r#"{"AWS":"111122223333"}"#,
        r#"{"AWS":"arn:aws:iam::111122223333:root"}"#,
        r#"{"AWS":["arn:aws:iam::111122223333:user/Alice","arn:aws:iam::444455556666:root"]}"#,
        r#"{"AWS":"arn:aws:iam::111122223333:role/KeyAdmin"}"#,
        r#"{"Service":"ec2.amazonaws.com"}"#,
    ];
    const ACTIONS: &[&str] = &[
        r#""kms:*""#,
        r#""*""#,
        r#""kms:Decrypt""#,
        r#"["kms:Generate*","kms:ReEncrypt*"]"#,
        r#""KMS:create?rant""#,
        r#""kms:Put*""#,
    ];
    const OPERATORS: &[&str] = &[
        "StringEquals",
        "StringNotEquals",
        "StringLike",
        "StringNotLike",
        "ArnLike",
        "ArnNotEquals",
        "Bool",
        "Null",
        "ForAnyValue:StringEquals",
        "ForAllValues:StringLike",
        "StringEqualsIfExists",
        "NumericLessThan",
    ];
    const KEYS: &[&str] = &[
        "kms:ViaService",
        "kms:CallerAccount",
        "kms:EncryptionContext:Department",
        "kms:EncryptionContextKeys",
        "kms:GrantIsForAWSResource",
        "aws:PrincipalArn",
        "kms:GrantOperations",
    ];
    const VALUES: &[&str] = &[
        r#""true""#,
        "false",
        "12",
        r#""ec2.*.amazonaws.com""#,
        r#""111122223333""#,
        r#"["Department","Project"]"#,
        r#""arn:aws:iam::*:role/*""#,
        r#""*""#,
    ];

    fn pick<'a>(rng: &mut StdRng, xs: &'a [&'a str]) -> &'a str {
        xs[rng.gen_range(0..xs.len())]
    }

    /// A random, usually valid, policy from the grammar.
    fn generate(rng: &mut StdRng, with_principal: bool) -> String {
        let n = rng.gen_range(1..4);
        let stmts: Vec<String> = (0..n)
            .map(|_| {
                let effect = if rng.gen_bool(0.25) { "Deny" } else { "Allow" };
                let principal = if with_principal {
                    format!(r#""Principal":{},"#, pick(rng, PRINCIPALS))
                } else {
                    String::new()
                };
                let action_kw = if rng.gen_bool(0.2) {
                    "NotAction"
                } else {
                    "Action"
                };
                let cond = if rng.gen_bool(0.6) {
                    format!(
                        r#","Condition":{{"{}":{{"{}":{}}}}}"#,
                        pick(rng, OPERATORS),
                        pick(rng, KEYS),
                        pick(rng, VALUES)
                    )
                } else {
                    String::new()
                };
                format!(
                    r#"{{"Effect":"{effect}",{principal}"{action_kw}":{},"Resource":"*"{cond}}}"#,
                    pick(rng, ACTIONS)
                )
            })
            .collect();
        policy(&stmts.join(","))
    }

    fn mutate(rng: &mut StdRng, text: &str) -> String {
        let mut b = text.as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..5) {
            let len = b.len();
            match rng.gen_range(0..4) {
                0 if len > 0 => {
                    let i = rng.gen_range(0..len);
                    b[i] = rng.gen();
                }
                1 if len > 0 => {
                    let i = rng.gen_range(0..len);
                    let j = rng.gen_range(i..=len.min(i + 16));
                    b.drain(i..j);
                }
                2 => {
                    let i = rng.gen_range(0..=len);
                    let t = pick(rng, TOKENS).as_bytes().to_vec();
                    b.splice(i..i, t);
                }
                _ if len > 0 => {
                    let i = rng.gen_range(0..len);
                    let j = rng.gen_range(i..=len.min(i + 64));
                    let chunk = b[i..j].to_vec();
                    let k = rng.gen_range(0..=b.len());
                    b.splice(k..k, chunk);
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    #[test]
    fn fuzz_smoke_parse_and_authorize() {
        let mut rng = StdRng::seed_from_u64(0x5eed_a7e5);
        let mut corpus = vec![
            default_key_policy(A),
            console_key_policy(A, &[ROLE], &[ROLE, ALICE]),
        ];
        corpus.extend(cases().into_iter().map(|c| c.key_policy));
        let (mut parsed, mut total) = (0usize, 0usize);
        let deny_all = PolicyDocument::parse(&policy(
            r#"{"Effect":"Deny","Principal":"*","Action":"*","Resource":"*"}"#,
        ))
        .unwrap();
        for i in 0..4000 {
            let text = match i % 3 {
                0 => {
                    let with_principal = rng.gen_bool(0.8);
                    generate(&mut rng, with_principal)
                }
                1 => {
                    let base = corpus[rng.gen_range(0..corpus.len())].clone();
                    mutate(&mut rng, &base)
                }
                _ => {
                    let g = generate(&mut rng, true);
                    mutate(&mut rng, &g)
                }
            };
            total += 1;
            super::super::fuzz_support::exercise(text.as_bytes());
            if let Ok(doc) = PolicyDocument::parse(&text) {
                parsed += 1;
                // Invariants: appending a deny-all statement makes every request an explicit
                // deny; an explicit deny from evaluate_statements is never an allow.
                let mut denied = doc.clone();
                denied
                    .statements
                    .extend(deny_all.statements.iter().cloned());
                for caller in [ALICE, USER_A, ROLE_SESSION, ROOT_A, EC2] {
                    let ctx = ctx_for(caller, "kms:Decrypt");
                    let a = authorize(&ctx, &denied, &[]);
                    assert!(a.is_explicit_deny(), "{text}");
                    if let Decision::ExplicitDeny { .. } = evaluate_statements(&doc, &ctx) {
                        assert!(
                            !authorize(&ctx, &doc, std::slice::from_ref(&doc)).is_allowed(),
                            "{text}"
                        );
                    }
                }
            }
        }
        // The generator must actually reach evaluation, not just the JSON parser.
        assert!(parsed * 4 > total, "only {parsed} of {total} inputs parsed");
        assert!(
            parsed < total,
            "mutations never produced a malformed document"
        );
    }
}

#[test]
fn grant_request_condition_keys() {
    let kp = PolicyDocument::parse_key_policy(&with_condition(
        r#"{"AWS":"arn:aws:iam::111122223333:user/Alice"}"#,
        "kms:CreateGrant",
        r#"{"ForAllValues:StringEquals":{"kms:GrantOperations":["Decrypt","Encrypt"]},"StringLike":{"kms:GranteePrincipal":"arn:aws:iam::111122223333:role/*"}}"#,
    ))
    .unwrap();
    let grant = |ops: &[&str], grantee: &str| {
        let ctx = ctx_for(ALICE, "kms:CreateGrant").with_grant_request(
            ops,
            grantee,
            Some(BOB),
            &["EncryptionContextSubset"],
        );
        authorize(&ctx, &kp, &[]).is_allowed()
    };
    assert!(grant(&["Decrypt"], ROLE));
    assert!(grant(&["Decrypt", "Encrypt"], ROLE));
    assert!(!grant(&["Decrypt", "CreateGrant"], ROLE));
    assert!(!grant(&["Decrypt"], BOB));
}

#[test]
fn account_level_actions() {
    let ctx =
        |who: &str| RequestContext::account_level(Principal::parse(who).unwrap(), "kms:CreateKey");
    let none = authorize_account_action(&ctx(ALICE), &[]);
    assert_eq!(
        none.access_denied_message().unwrap(),
        format!("User: {ALICE} is not authorized to perform: kms:CreateKey on resource: * because no identity-based policy allows the kms:CreateKey action")
    );
    assert!(authorize_account_action(&ctx(ALICE), &[allow_all()]).is_allowed());
    let create_only =
        PolicyDocument::parse_identity_policy(&allow_iam(r#""kms:Create*""#)).unwrap();
    assert!(authorize_account_action(&ctx(ALICE), &[create_only]).is_allowed());
    let deny = PolicyDocument::parse_identity_policy(&policy(
        r#"{"Effect":"Deny","Action":"kms:CreateKey","Resource":"*"}"#,
    ))
    .unwrap();
    assert!(authorize_account_action(&ctx(ALICE), &[allow_all(), deny.clone()]).is_explicit_deny());
    assert!(authorize_account_action(&ctx(ROOT_A), &[]).is_allowed());
    assert!(authorize_account_action(&ctx(ROOT_A), &[deny]).is_explicit_deny());
    assert!(!authorize_account_action(&ctx(EC2), &[allow_all()]).is_allowed());
}
