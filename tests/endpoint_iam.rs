//! IAM, STS and grants over the AWS endpoint with the stock `aws` CLI and boto3 of the
//! project venv (issue 13): what a user's existing scripts do, against real keys, real
//! refusals and a real trail.
//!
//! - IAM users, access keys, inline and customer managed policies, paging and AWS's
//!   errors (`EntityAlreadyExists`, `NoSuchEntity`, `DeleteConflict`,
//!   `MalformedPolicyDocument`, `ValidationError` in the Query error shape); policy
//!   documents travel percent-encoded inside the XML, as AWS sends them, and the CLI shows
//!   them decoded.
//! - `sts assume-role`, then `aws kms` signed with the session's key, secret and token,
//!   allowed and refused by the role's policy, in the trail as the assumed role; an
//!   altered token and an expired one refused as AWS refuses them.
//! - The troubleshooting articles' fixes with the stock CLI alone (`KmsKeyUsagePolicy`
//!   attached to a group; a cross-account user fixed with `put-user-policy` and
//!   `put-key-policy`), the external user signing with `atrest env --as ARN`.
//! - A grant used by its grantee's own access key; retired and revoked grants refuse the
//!   next request.

mod endpoint_common;
mod s3_common;

use endpoint_common::{aws_err, aws_json, client, venv_bin, Creds};
use s3_common::{Lab, S3Options};
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";

/// The access key `atrest env --as ARN` prints, and the principal it signs as (a role's
/// is a session of it).
fn env_as(lab: &Lab, arn: &str) -> (Creds, String) {
    let out = lab.ok(&["--as", arn, "env"]);
    let var = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .trim_matches('\'')
            .to_string()
    };
    let principal = out
        .lines()
        .find_map(|l| l.strip_prefix("# atrest: signing as "))
        .unwrap_or_else(|| panic!("no principal in {out}"))
        .to_string();
    let creds = Creds {
        access_key_id: var("AWS_ACCESS_KEY_ID"),
        secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        session_token: None,
    };
    (creds, principal)
}

/// A new symmetric key's ARN (made as `atrest env`'s principal).
fn create_key(lab: &Lab) -> String {
    aws_json(lab, None, &["kms", "create-key"])["KeyMetadata"]["Arn"]
        .as_str()
        .expect("KeyMetadata.Arn")
        .to_string()
}

/// `aws kms encrypt` of a few bytes under `key`; its JSON.
fn encrypt(lab: &Lab, creds: Option<&Creds>, key: &str) -> Value {
    aws_json(
        lab,
        creds,
        &["kms", "encrypt", "--key-id", key, "--plaintext", "aGVsbG8="],
    )
}

/// `aws kms encrypt` of a few bytes under `key`, which must fail with `code`; its message.
fn encrypt_fails(lab: &Lab, creds: Option<&Creds>, key: &str, code: &str) -> String {
    aws_err(
        lab,
        creds,
        &["kms", "encrypt", "--key-id", key, "--plaintext", "aGVsbG8="],
        code,
    )
}

fn encrypt_refused(lab: &Lab, creds: Option<&Creds>, key: &str) -> String {
    encrypt_fails(lab, creds, key, "AccessDeniedException")
}

/// A user with an access key (made as `atrest env`'s principal).
fn user_with_key(lab: &Lab, name: &str) -> Creds {
    aws_json(lab, None, &["iam", "create-user", "--user-name", name]);
    let k = aws_json(
        lab,
        None,
        &["iam", "create-access-key", "--user-name", name],
    );
    assert_eq!(k["AccessKey"]["UserName"], name, "{k}");
    assert_eq!(k["AccessKey"]["Status"], "Active", "{k}");
    Creds::from_json(&k["AccessKey"])
}

fn policy(statements: Value) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// The newest trail event named `name`, as CloudTrail's JSON record.
fn last_event(lab: &Lab, name: &str) -> Value {
    let attr = format!("AttributeKey=EventName,AttributeValue={name}");
    let r = aws_json(
        lab,
        None,
        &[
            "cloudtrail",
            "lookup-events",
            "--lookup-attributes",
            &attr,
            "--max-results",
            "1",
        ],
    );
    let text = r["Events"][0]["CloudTrailEvent"]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} event: {r}"));
    serde_json::from_str(text).expect("CloudTrailEvent is JSON")
}

/// Runs a boto3 script in `atrest env`'s environment; its stdout as JSON.
fn boto3(lab: &Lab, script: &str) -> Value {
    let o = client(lab, venv_bin("python"))
        .args(["-c", script])
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "boto3 script failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("script prints JSON")
}

#[test]
fn aws_iam_users_keys_policies_paging_and_errors() {
    let lab = Lab::start();
    let alice = aws_json(&lab, None, &["iam", "create-user", "--user-name", "alice"]);
    assert_eq!(
        alice["User"]["Arn"],
        format!("arn:aws:iam::{ACCOUNT}:user/alice")
    );
    assert!(alice["User"]["UserId"]
        .as_str()
        .is_some_and(|id| id.starts_with("AIDA")));
    let m = aws_err(
        &lab,
        None,
        &["iam", "create-user", "--user-name", "alice"],
        "EntityAlreadyExists",
    );
    assert_eq!(m, "User with name alice already exists.");
    let key = aws_json(
        &lab,
        None,
        &["iam", "create-access-key", "--user-name", "alice"],
    );
    let alice_key = Creds::from_json(&key["AccessKey"]);
    assert!(alice_key.access_key_id.starts_with("AKIA"), "{key}");
    assert_eq!(alice_key.secret_access_key.len(), 40, "{key}");
    let keys = aws_json(
        &lab,
        None,
        &["iam", "list-access-keys", "--user-name", "alice"],
    );
    assert_eq!(
        keys["AccessKeyMetadata"][0]["AccessKeyId"],
        alice_key.access_key_id.as_str()
    );
    // The new key signs at once, as alice.
    let who = aws_json(&lab, Some(&alice_key), &["sts", "get-caller-identity"]);
    assert_eq!(who["Arn"], format!("arn:aws:iam::{ACCOUNT}:user/alice"));

    // An inline policy: characters JSON, XML and URLs all care about, to see it travel
    // percent-encoded in the XML and come back decoded, unchanged.
    let doc = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Use & <see> 100% \"quoted\"",
            "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt"],
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:app": "a+b c/d"}}
        }]
    });
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "alice",
            "--policy-name",
            "UseKeys",
            "--policy-document",
            &doc.to_string(),
        ],
    );
    let got = aws_json(
        &lab,
        None,
        &[
            "iam",
            "get-user-policy",
            "--user-name",
            "alice",
            "--policy-name",
            "UseKeys",
        ],
    );
    assert_eq!(got["PolicyDocument"], doc, "{got}");
    let debug = endpoint_common::aws(
        &lab,
        &[
            "--debug",
            "iam",
            "get-user-policy",
            "--user-name",
            "alice",
            "--policy-name",
            "UseKeys",
        ],
    );
    let log = String::from_utf8_lossy(&debug.stderr);
    assert!(
        log.contains("<PolicyDocument>%7B%22") && !log.contains("<PolicyDocument>{"),
        "the document is not percent-encoded in the XML: {log}"
    );
    let names = aws_json(
        &lab,
        None,
        &["iam", "list-user-policies", "--user-name", "alice"],
    );
    assert_eq!(names["PolicyNames"], json!(["UseKeys"]));
    let m = aws_err(
        &lab,
        None,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "alice",
            "--policy-name",
            "Bad",
            "--policy-document",
            "{not json",
        ],
        "MalformedPolicyDocument",
    );
    assert_eq!(m, "Syntax errors in policy.");

    // A customer managed policy, attached; its version document decoded too.
    let managed =
        policy(json!([{"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*"}]));
    let p = aws_json(
        &lab,
        None,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "Describe",
            "--policy-document",
            &managed,
        ],
    );
    let parn = p["Policy"]["Arn"].as_str().expect("Policy.Arn").to_string();
    assert_eq!(parn, format!("arn:aws:iam::{ACCOUNT}:policy/Describe"));
    aws_err(
        &lab,
        None,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "Describe",
            "--policy-document",
            &managed,
        ],
        "EntityAlreadyExists",
    );
    let v = aws_json(
        &lab,
        None,
        &[
            "iam",
            "get-policy-version",
            "--policy-arn",
            &parn,
            "--version-id",
            "v1",
        ],
    );
    assert_eq!(
        v["PolicyVersion"]["Document"],
        serde_json::from_str::<Value>(&managed).unwrap()
    );
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "attach-user-policy",
            "--user-name",
            "alice",
            "--policy-arn",
            &parn,
        ],
    );
    let attached = aws_json(
        &lab,
        None,
        &["iam", "list-attached-user-policies", "--user-name", "alice"],
    );
    assert_eq!(attached["AttachedPolicies"][0]["PolicyArn"], parn.as_str());

    // Paging: the CLI follows Marker/IsTruncated page by page, and --max-items stops.
    for i in 0..5 {
        aws_json(
            &lab,
            None,
            &["iam", "create-user", "--user-name", &format!("pager{i}")],
        );
    }
    let all = aws_json(&lab, None, &["iam", "list-users", "--page-size", "2"]);
    let all_names: Vec<&str> = all["Users"]
        .as_array()
        .expect("Users")
        .iter()
        .filter_map(|u| u["UserName"].as_str())
        .collect();
    for want in ["alice", "pager0", "pager4"] {
        assert!(all_names.contains(&want), "{all_names:?}");
    }
    let mut sorted = all_names.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), all_names.len(), "a user twice: {all_names:?}");
    let first = aws_json(&lab, None, &["iam", "list-users", "--max-items", "2"]);
    assert_eq!(first["Users"].as_array().map(Vec::len), Some(2));
    let token = first["NextToken"].as_str().expect("NextToken").to_string();
    let rest = aws_json(
        &lab,
        None,
        &["iam", "list-users", "--starting-token", &token],
    );
    assert_eq!(
        rest["Users"].as_array().map(Vec::len),
        Some(all_names.len() - 2)
    );
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "Second",
            "--policy-document",
            &managed,
        ],
    );
    let local = aws_json(
        &lab,
        None,
        &[
            "iam",
            "list-policies",
            "--scope",
            "Local",
            "--page-size",
            "1",
        ],
    );
    let pnames: Vec<&str> = local["Policies"]
        .as_array()
        .expect("Policies")
        .iter()
        .filter_map(|p| p["PolicyName"].as_str())
        .collect();
    assert_eq!(pnames, ["Describe", "Second"]);

    // Deleting what is still in use: DeleteConflict, AWS's messages; then in order.
    let m = aws_err(
        &lab,
        None,
        &["iam", "delete-policy", "--policy-arn", &parn],
        "DeleteConflict",
    );
    assert_eq!(m, "Cannot delete a policy attached to entities.");
    let m = aws_err(
        &lab,
        None,
        &["iam", "delete-user", "--user-name", "alice"],
        "DeleteConflict",
    );
    assert_eq!(m, "Cannot delete entity, must delete policies first.");
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "delete-user-policy",
            "--user-name",
            "alice",
            "--policy-name",
            "UseKeys",
        ],
    );
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "detach-user-policy",
            "--user-name",
            "alice",
            "--policy-arn",
            &parn,
        ],
    );
    aws_json(&lab, None, &["iam", "delete-policy", "--policy-arn", &parn]);
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "delete-access-key",
            "--user-name",
            "alice",
            "--access-key-id",
            &alice_key.access_key_id,
        ],
    );
    // The deleted key stops working on the next request.
    aws_err(
        &lab,
        Some(&alice_key),
        &["sts", "get-caller-identity"],
        "InvalidClientTokenId",
    );
    aws_json(&lab, None, &["iam", "delete-user", "--user-name", "alice"]);
    let m = aws_err(
        &lab,
        None,
        &["iam", "get-user", "--user-name", "alice"],
        "NoSuchEntity",
    );
    assert_eq!(m, "The user with name alice cannot be found.");
    aws_err(
        &lab,
        None,
        &["iam", "delete-user", "--user-name", "alice"],
        "NoSuchEntity",
    );

    // What the CLI's own validation would stop: sent anyway (boto3 without parameter
    // validation), answered in the Query error shape.
    let r = boto3(
        &lab,
        r#"
import json, boto3, botocore.config
from botocore.exceptions import ClientError
iam = boto3.client("iam", config=botocore.config.Config(parameter_validation=False))
out = {}
for case, call in [("no_user_name", lambda: iam.create_user()),
                   ("no_policy_name", lambda: iam.get_user_policy(UserName="pager0"))]:
    try:
        call()
        out[case] = "ok"
    except ClientError as e:
        out[case] = [e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]]
pages = iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": 2})
out["pages"] = [len(p["Users"]) for p in pages]
print(json.dumps(out))
"#,
    );
    assert_eq!(
        r["no_user_name"],
        json!([400, {"Type": "Sender", "Code": "ValidationError",
            "Message": "1 validation error detected: Value null at 'userName' failed to satisfy constraint: Member must not be null"}]),
        "{r}"
    );
    assert_eq!(r["no_policy_name"][1]["Code"], "ValidationError", "{r}");
    let pages: Vec<u64> = r["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(pages.len() >= 3 && pages.iter().all(|n| *n <= 2), "{r}");
}

#[test]
fn aws_sts_assume_role_then_kms_as_the_session() {
    let lab = Lab::start_with(S3Options {
        kmsd_args: vec!["--allow-clock-control".into()],
        ..S3Options::default()
    });
    let allowed = create_key(&lab);
    let other = create_key(&lab);
    let bob = user_with_key(&lab, "bob");
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/app");
    let trust = policy(json!([{
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/bob")},
        "Action": "sts:AssumeRole"
    }]));
    let role = aws_json(
        &lab,
        None,
        &[
            "iam",
            "create-role",
            "--role-name",
            "app",
            "--assume-role-policy-document",
            &trust,
        ],
    );
    assert_eq!(role["Role"]["Arn"], role_arn.as_str());
    // The trust policy comes back decoded, as the CLI shows AWS's.
    assert_eq!(
        role["Role"]["AssumeRolePolicyDocument"],
        serde_json::from_str::<Value>(&trust).unwrap()
    );
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "app",
            "--policy-name",
            "UseOneKey",
            "--policy-document",
            &policy(json!([{
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt"],
                "Resource": allowed
            }])),
        ],
    );

    // Someone the trust policy does not name is refused.
    let m = aws_err(
        &lab,
        None,
        &[
            "sts",
            "assume-role",
            "--role-arn",
            &role_arn,
            "--role-session-name",
            "nope",
        ],
        "AccessDenied",
    );
    assert!(
        m.contains("is not authorized to perform: sts:AssumeRole on resource"),
        "{m}"
    );
    // Bob may.
    let r = aws_json(
        &lab,
        Some(&bob),
        &[
            "sts",
            "assume-role",
            "--role-arn",
            &role_arn,
            "--role-session-name",
            "deploy",
            "--duration-seconds",
            "900",
        ],
    );
    let session_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/app/deploy");
    assert_eq!(r["AssumedRoleUser"]["Arn"], session_arn.as_str(), "{r}");
    let session = Creds::from_json(&r["Credentials"]);
    assert!(session.access_key_id.starts_with("ASIA"), "{r}");
    assert!(session.session_token.is_some(), "{r}");
    assert!(r["Credentials"]["Expiration"].is_string(), "{r}");

    let who = aws_json(&lab, Some(&session), &["sts", "get-caller-identity"]);
    assert_eq!(who["Arn"], session_arn.as_str());
    assert!(
        who["UserId"]
            .as_str()
            .is_some_and(|u| u.starts_with("AROA") && u.ends_with(":deploy")),
        "{who}"
    );
    let ct = encrypt(&lab, Some(&session), &allowed);
    assert_eq!(ct["KeyId"], allowed.as_str());
    let m = encrypt_refused(&lab, Some(&session), &other);
    assert_eq!(
        m,
        format!("User: {session_arn} is not authorized to perform: kms:Encrypt on resource: {other} because no identity-based policy allows the kms:Encrypt action")
    );
    // The trail names the session and the key it signed with.
    let ev = last_event(&lab, "Encrypt");
    assert_eq!(ev["userIdentity"]["type"], "AssumedRole", "{ev}");
    assert_eq!(ev["userIdentity"]["arn"], session_arn.as_str(), "{ev}");
    assert_eq!(
        ev["userIdentity"]["accessKeyId"],
        session.access_key_id.as_str(),
        "{ev}"
    );
    let ev = last_event(&lab, "AssumeRole");
    assert_eq!(
        ev["userIdentity"]["arn"],
        format!("arn:aws:iam::{ACCOUNT}:user/bob"),
        "{ev}"
    );

    // An altered token, or none, is not these credentials.
    let mut forged = session.clone();
    let mut t = forged
        .session_token
        .clone()
        .unwrap_or_default()
        .into_bytes();
    t[20] = if t[20] == b'A' { b'B' } else { b'A' };
    forged.session_token = Some(String::from_utf8(t).expect("ASCII token"));
    let m = encrypt_fails(&lab, Some(&forged), &allowed, "UnrecognizedClientException");
    assert_eq!(m, "The security token included in the request is invalid.");
    let m = aws_err(
        &lab,
        Some(&forged),
        &["sts", "get-caller-identity"],
        "InvalidClientTokenId",
    );
    assert_eq!(m, "The security token included in the request is invalid.");
    let mut tokenless = session.clone();
    tokenless.session_token = None;
    encrypt_fails(
        &lab,
        Some(&tokenless),
        &allowed,
        "UnrecognizedClientException",
    );

    // 900 s later (kmsd's clock, moved for the test) the session is over.
    kmsd::client::KmsClient::connect(lab.home_path().join("kmsd.sock"))
        .expect("connect kmsd")
        .advance_clock(901)
        .expect("advance kmsd's clock");
    let m = encrypt_fails(&lab, Some(&session), &allowed, "ExpiredTokenException");
    assert_eq!(m, "The security token included in the request is expired");
    let m = aws_err(
        &lab,
        Some(&session),
        &["sts", "get-caller-identity"],
        "ExpiredToken",
    );
    assert_eq!(m, "The security token included in the request is expired");
    // Bob's own key is not affected.
    let who = aws_json(&lab, Some(&bob), &["sts", "get-caller-identity"]);
    assert_eq!(who["Arn"], format!("arn:aws:iam::{ACCOUNT}:user/bob"));
}

#[test]
fn the_troubleshooting_fixes_with_the_stock_cli_alone() {
    let lab = Lab::start();
    let key = create_key(&lab);

    // 1. "User is not authorized": KmsKeyUsagePolicy (the article's JSON), created with
    //    create-policy and attached to the user's group.
    let dev = user_with_key(&lab, "dev");
    aws_json(
        &lab,
        None,
        &["iam", "create-group", "--group-name", "Developers"],
    );
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "add-user-to-group",
            "--user-name",
            "dev",
            "--group-name",
            "Developers",
        ],
    );
    let m = encrypt_refused(&lab, Some(&dev), &key);
    assert!(
        m.contains("no identity-based policy allows the kms:Encrypt action"),
        "{m}"
    );
    let usage = policy(json!([{
        "Effect": "Allow",
        "Action": [
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:DescribeKey"
        ],
        "Resource": key
    }]));
    let p = aws_json(
        &lab,
        None,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "KmsKeyUsagePolicy",
            "--policy-document",
            &usage,
        ],
    );
    let parn = p["Policy"]["Arn"].as_str().expect("Policy.Arn").to_string();
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "attach-group-policy",
            "--group-name",
            "Developers",
            "--policy-arn",
            &parn,
        ],
    );
    encrypt(&lab, Some(&dev), &key);
    // And undone: refused on the next request.
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "remove-user-from-group",
            "--user-name",
            "dev",
            "--group-name",
            "Developers",
        ],
    );
    encrypt_refused(&lab, Some(&dev), &key);

    // 2. Cross-account: UserA of 444455556666 (signing with the key `atrest env --as`
    //    gives) needs both its own IAM policy and the key policy.
    let user_a_arn = "arn:aws:iam::444455556666:user/UserA";
    let (user_a, signs_as) = env_as(&lab, user_a_arn);
    assert_eq!(signs_as, user_a_arn);
    let who = aws_json(&lab, Some(&user_a), &["sts", "get-caller-identity"]);
    assert_eq!(who["Arn"], user_a_arn);
    let m = encrypt_refused(&lab, Some(&user_a), &key);
    assert!(
        m.starts_with(&format!("User: {user_a_arn} is not authorized")),
        "{m}"
    );
    // Its account's administrator adds the IAM side with put-user-policy.
    let (admin, signs_as) = env_as(&lab, "arn:aws:iam::444455556666:role/Admin");
    assert!(
        signs_as.starts_with("arn:aws:sts::444455556666:assumed-role/Admin/"),
        "{signs_as}"
    );
    let who = aws_json(&lab, Some(&admin), &["sts", "get-caller-identity"]);
    assert_eq!(who["Arn"], signs_as.as_str());
    aws_json(
        &lab,
        Some(&admin),
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "UserA",
            "--policy-name",
            "UseExternalKey",
            "--policy-document",
            &usage,
        ],
    );
    let m = encrypt_refused(&lab, Some(&user_a), &key);
    assert!(m.contains("no resource-based policy allows"), "{m}");
    // The key's owner adds the external account to the key policy.
    let kp = aws_json(
        &lab,
        None,
        &[
            "kms",
            "get-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
        ],
    );
    let mut doc: Value =
        serde_json::from_str(kp["Policy"].as_str().expect("Policy")).expect("key policy JSON");
    doc["Statement"]
        .as_array_mut()
        .expect("Statement")
        .push(json!({
            "Sid": "Allow use of the key by 444455556666",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
            "Resource": "*"
        }));
    aws_json(
        &lab,
        None,
        &[
            "kms",
            "put-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
            "--policy",
            &doc.to_string(),
        ],
    );
    encrypt(&lab, Some(&user_a), &key);
    let ev = last_event(&lab, "Encrypt");
    assert_eq!(ev["userIdentity"]["arn"], user_a_arn, "{ev}");
    assert_eq!(ev["userIdentity"]["accountId"], "444455556666", "{ev}");
    assert_eq!(
        ev["userIdentity"]["accessKeyId"],
        user_a.access_key_id.as_str(),
        "{ev}"
    );

    // `atrest env --as` for a principal the config does not let this uid act as.
    let err = lab.fails(&["--as", "arn:aws:iam::999999999999:user/Mallory", "env"]);
    assert!(err.contains("may not act as"), "{err}");
}

#[test]
fn a_grant_is_used_by_its_grantees_access_key() {
    let lab = Lab::start();
    let key = create_key(&lab);
    let carol = user_with_key(&lab, "carol");
    let carol_arn = format!("arn:aws:iam::{ACCOUNT}:user/carol");
    let ct = encrypt(&lab, None, &key)["CiphertextBlob"]
        .as_str()
        .expect("CiphertextBlob")
        .to_string();
    let blob = lab.home_path().join("ct.bin");
    std::fs::write(
        &blob,
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &ct).expect("b64"),
    )
    .expect("write");
    let blob_arg = format!("fileb://{}", blob.display());
    let decrypt = ["kms", "decrypt", "--ciphertext-blob", &blob_arg];
    let m = aws_err(&lab, Some(&carol), &decrypt, "AccessDeniedException");
    assert!(
        m.starts_with(&format!("User: {carol_arn} is not authorized")),
        "{m}"
    );

    // A grant for carol's ARN: her own key decrypts, and the trail says so.
    let g = aws_json(
        &lab,
        None,
        &[
            "kms",
            "create-grant",
            "--key-id",
            &key,
            "--grantee-principal",
            &carol_arn,
            "--operations",
            "Decrypt",
        ],
    );
    let grant_id = g["GrantId"].as_str().expect("GrantId").to_string();
    let d = aws_json(&lab, Some(&carol), &decrypt);
    // AWS CLI v1 sent `--plaintext aGVsbG8=` as those 8 bytes; they come back base64.
    assert_eq!(d["Plaintext"], "YUdWc2JHOD0=", "{d}");
    assert_eq!(d["KeyId"], key.as_str());
    let ev = last_event(&lab, "Decrypt");
    assert_eq!(ev["userIdentity"]["arn"], carol_arn.as_str(), "{ev}");
    assert_eq!(
        ev["userIdentity"]["accessKeyId"],
        carol.access_key_id.as_str(),
        "{ev}"
    );
    // The grant gives Decrypt only.
    encrypt_refused(&lab, Some(&carol), &key);
    // Revoked: the next request is refused.
    aws_json(
        &lab,
        None,
        &[
            "kms",
            "revoke-grant",
            "--key-id",
            &key,
            "--grant-id",
            &grant_id,
        ],
    );
    aws_err(&lab, Some(&carol), &decrypt, "AccessDeniedException");

    // A grant carol may retire, retired by carol herself over HTTP.
    let g = aws_json(
        &lab,
        None,
        &[
            "kms",
            "create-grant",
            "--key-id",
            &key,
            "--grantee-principal",
            &carol_arn,
            "--retiring-principal",
            &carol_arn,
            "--operations",
            "Decrypt",
        ],
    );
    let grant_id = g["GrantId"].as_str().expect("GrantId").to_string();
    aws_json(&lab, Some(&carol), &decrypt);
    aws_json(
        &lab,
        Some(&carol),
        &[
            "kms",
            "retire-grant",
            "--key-id",
            &key,
            "--grant-id",
            &grant_id,
        ],
    );
    aws_err(&lab, Some(&carol), &decrypt, "AccessDeniedException");
    let grants = aws_json(&lab, None, &["kms", "list-grants", "--key-id", &key]);
    assert_eq!(grants["Grants"], json!([]), "{grants}");
}

/// The endpoint keeps the access keys it has resolved (one kmsd round trip a request,
/// not two); a key made inactive or deleted must still fail its very next request,
/// on every service, over the same kept-alive connections, and an inactive key made
/// active again must work at once.
#[test]
fn a_kept_key_made_inactive_or_deleted_fails_its_next_request() {
    let lab = Lab::start();
    let dave = user_with_key(&lab, "dave");
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "dave",
            "--policy-name",
            "Look",
            "--policy-document",
            &policy(json!([{
                "Effect": "Allow",
                "Action": ["kms:ListKeys", "iam:GetUser", "cloudtrail:LookupEvents"],
                "Resource": "*"
            }])),
        ],
    );
    let script = format!(
        r#"
import json, boto3
from botocore.exceptions import ClientError
admin = boto3.client("iam")
dave = boto3.Session(aws_access_key_id="{id}", aws_secret_access_key="{secret}")
clients = {{"kms": dave.client("kms"), "sts": dave.client("sts"), "iam": dave.client("iam"),
            "cloudtrail": dave.client("cloudtrail")}}
calls = {{"kms": lambda c: c.list_keys(),
         "sts": lambda c: c.get_caller_identity(),
         "iam": lambda c: c.get_user(UserName="dave"),
         "cloudtrail": lambda c: c.lookup_events(MaxResults=1)}}
def round():
    out = {{}}
    for name, c in clients.items():
        try:
            calls[name](c)
            out[name] = "ok"
        except ClientError as e:
            out[name] = e.response["Error"]["Code"]
    return out
rounds = {{"before": [round(), round()]}}
admin.update_access_key(UserName="dave", AccessKeyId="{id}", Status="Inactive")
rounds["inactive"] = [round(), round()]
rounds["listed"] = admin.list_access_keys(UserName="dave")["AccessKeyMetadata"][0]["Status"]
admin.update_access_key(UserName="dave", AccessKeyId="{id}", Status="Active")
rounds["active"] = [round()]
admin.delete_access_key(UserName="dave", AccessKeyId="{id}")
rounds["deleted"] = [round()]
try:
    admin.update_access_key(UserName="dave", AccessKeyId="{id}", Status="Active")
    rounds["update_deleted"] = "ok"
except ClientError as e:
    rounds["update_deleted"] = [e.response["Error"]["Code"], e.response["Error"]["Message"]]
print(json.dumps(rounds))
"#,
        id = dave.access_key_id,
        secret = dave.secret_access_key
    );
    let r = boto3(&lab, &script);
    let all = |code: &str| {
        json!({"kms": if code == "ok" { "ok" } else { "UnrecognizedClientException" },
               "sts": if code == "ok" { "ok" } else { "InvalidClientTokenId" },
               "iam": if code == "ok" { "ok" } else { "InvalidClientTokenId" },
               "cloudtrail": if code == "ok" { "ok" } else { "UnrecognizedClientException" }})
    };
    assert_eq!(r["before"], json!([all("ok"), all("ok")]), "{r}");
    assert_eq!(r["inactive"], json!([all("no"), all("no")]), "{r}");
    assert_eq!(r["listed"], "Inactive", "{r}");
    assert_eq!(r["active"], json!([all("ok")]), "{r}");
    assert_eq!(r["deleted"], json!([all("no")]), "{r}");
    assert_eq!(
        r["update_deleted"],
        json!([
            "NoSuchEntity",
            format!(
                "The Access Key with id {} cannot be found.",
                dave.access_key_id
            )
        ]),
        "{r}"
    );
    // The stock CLI too, and the change is in the trail as IAM's own event.
    aws_err(
        &lab,
        Some(&dave),
        &["sts", "get-caller-identity"],
        "InvalidClientTokenId",
    );
    let ev = last_event(&lab, "UpdateAccessKey");
    assert_eq!(ev["requestParameters"]["status"], "Active", "{ev}");
}

/// STS through boto3, a real SDK client: GetCallerIdentity, AssumeRole and
/// GetSessionToken, each session's temporary credentials then used against KMS (and
/// STS) with the principal's own policies, refused once expired (kmsd's clock moved
/// past the 900 s asked for); a session cannot make another. (Durations out of
/// 900..=129600 never leave botocore, which checks them against the model.)
#[test]
fn boto3_sts_sessions_used_against_kms_until_they_expire() {
    let lab = Lab::start_with(S3Options {
        kmsd_args: vec!["--allow-clock-control".into()],
        ..S3Options::default()
    });
    let key = create_key(&lab);
    let bob = user_with_key(&lab, "bob");
    let use_key = policy(json!([{
        "Effect": "Allow",
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": key
    }]));
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "bob",
            "--policy-name",
            "UseKey",
            "--policy-document",
            &use_key,
        ],
    );
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "create-role",
            "--role-name",
            "app",
            "--assume-role-policy-document",
            &policy(json!([{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/bob")},
                "Action": "sts:AssumeRole"
            }])),
        ],
    );
    aws_json(
        &lab,
        None,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "app",
            "--policy-name",
            "UseKey",
            "--policy-document",
            &use_key,
        ],
    );
    let prelude = format!(
        r#"
import json, boto3
from botocore.exceptions import ClientError
def client(service, c):
    return boto3.client(service, aws_access_key_id=c["AccessKeyId"],
                        aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c.get("SessionToken"))
def code(f):
    try:
        f()
        return "ok"
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["Error"]["Message"]]
def encrypt(c):
    return client("kms", c).encrypt(KeyId="{key}", Plaintext=b"hello")["KeyId"]
bob = {{"AccessKeyId": "{id}", "SecretAccessKey": "{secret}"}}
"#,
        key = key,
        id = bob.access_key_id,
        secret = bob.secret_access_key
    );
    let first = format!(
        r#"{prelude}
out = {{}}
sts = client("sts", bob)
out["bob"] = sts.get_caller_identity()["Arn"]
s = sts.get_session_token(DurationSeconds=900)["Credentials"]
out["session"] = {{k: str(v) for k, v in s.items()}}
out["session_who"] = client("sts", s).get_caller_identity()["Arn"]
out["session_encrypt"] = encrypt(s)
out["session_again"] = code(lambda: client("sts", s).get_session_token())
r = sts.assume_role(RoleArn="arn:aws:iam::{ACCOUNT}:role/app", RoleSessionName="boto",
                    DurationSeconds=900)
out["role"] = {{k: str(v) for k, v in r["Credentials"].items()}}
out["role_arn"] = r["AssumedRoleUser"]["Arn"]
out["role_who"] = client("sts", r["Credentials"]).get_caller_identity()["Arn"]
out["role_encrypt"] = encrypt(r["Credentials"])
out["role_session_token"] = code(lambda: client("sts", r["Credentials"]).get_session_token())
print(json.dumps(out))
"#
    );
    let r = boto3(&lab, &first);
    let bob_arn = format!("arn:aws:iam::{ACCOUNT}:user/bob");
    let role_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/app/boto");
    assert_eq!(r["bob"], bob_arn.as_str(), "{r}");
    let session_id = r["session"]["AccessKeyId"].as_str().expect("session id");
    assert!(session_id.starts_with("ASIA"), "{r}");
    assert_ne!(session_id, bob.access_key_id);
    // A session of bob's acts as bob, with bob's policies.
    assert_eq!(r["session_who"], bob_arn.as_str(), "{r}");
    assert_eq!(r["session_encrypt"], key.as_str(), "{r}");
    let no_session = json!([
        "AccessDenied",
        "Cannot call GetSessionToken with session credentials"
    ]);
    assert_eq!(r["session_again"], no_session, "{r}");
    assert_eq!(r["role_arn"], role_arn.as_str(), "{r}");
    assert_eq!(r["role_who"], role_arn.as_str(), "{r}");
    assert_eq!(r["role_encrypt"], key.as_str(), "{r}");
    assert_eq!(r["role_session_token"], no_session, "{r}");
    // The trail: bob's GetSessionToken, whose response names the key id, never the
    // secret; and the two refused ones, by the sessions.
    let t = aws_json(
        &lab,
        None,
        &[
            "cloudtrail",
            "lookup-events",
            "--lookup-attributes",
            "AttributeKey=EventName,AttributeValue=GetSessionToken",
        ],
    );
    let events: Vec<Value> = t["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["CloudTrailEvent"].as_str())
        .map(|text| serde_json::from_str(text).expect("CloudTrailEvent is JSON"))
        .collect();
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["errorCode"] == "AccessDenied")
        .collect();
    assert_eq!(refused.len(), 2, "{t}");
    let ev = events
        .iter()
        .find(|e| e["errorCode"].is_null())
        .unwrap_or_else(|| panic!("no GetSessionToken that succeeded: {t}"));
    assert_eq!(ev["userIdentity"]["arn"], bob_arn.as_str(), "{ev}");
    assert_eq!(ev["requestParameters"]["durationSeconds"], 900, "{ev}");
    assert_eq!(
        ev["responseElements"]["credentials"]["accessKeyId"], session_id,
        "{ev}"
    );
    let text = ev.to_string();
    for secret in ["SecretAccessKey", "SessionToken"] {
        let s = r["session"][secret].as_str().expect(secret);
        assert!(!text.contains(s), "the trail holds the {secret}: {ev}");
    }

    // 901 s later (kmsd's clock, moved for the test) both sessions are over; bob's
    // own key still works.
    kmsd::client::KmsClient::connect(lab.home_path().join("kmsd.sock"))
        .expect("connect kmsd")
        .advance_clock(901)
        .expect("advance kmsd's clock");
    let second = format!(
        r#"{prelude}
out = {{}}
for name, c in [("session", {session}), ("role", {role})]:
    out[name] = [code(lambda: encrypt(c)), code(lambda: client("sts", c).get_caller_identity())]
out["bob"] = encrypt(bob)
print(json.dumps(out))
"#,
        session = r["session"],
        role = r["role"],
    );
    let e = boto3(&lab, &second);
    let expired = json!([
        [
            "ExpiredTokenException",
            "The security token included in the request is expired"
        ],
        [
            "ExpiredToken",
            "The security token included in the request is expired"
        ]
    ]);
    assert_eq!(e["session"], expired, "{e}");
    assert_eq!(e["role"], expired, "{e}");
    assert_eq!(e["bob"], key.as_str(), "{e}");
}
