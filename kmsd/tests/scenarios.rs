//! The three scenarios of issue 3 against a real kmsd (the drills in scripts/ walk
//! the same steps through the CLI):
//! 1. the lab's key: a role is key administrator and key user; an administrator-only
//!    principal can disable the key but cannot decrypt with it;
//! 2. an IAM user without kms:CreateGrant cannot have EC2 create the grant an
//!    encrypted root volume needs, until an IAM policy allows it for AWS resources;
//! 3. a key of account 111122223333 used from 444455556666: refused until the key
//!    policy names the other account and that account's IAM policy allows it.
//!
//! Then the AWS managed keys, whose policies lean on the same via-service conditions.

mod common;

use common::Daemon;
use kmsd::client::{ClientError, DataKeySize, KmsClient};
use kmsd::protocol::*;
use serde_json::Value;

const LAB: &str = "111122223333";
const OTHER: &str = "444455556666";
const INSTANCE: &str = "i-0123456789abcdef0";

fn voclabs() -> String {
    format!("arn:aws:iam::{LAB}:role/voclabs")
}

fn kms_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> KmsError {
    match r {
        Err(ClientError::Kms(e)) => e,
        other => panic!("expected a KMS error, got {other:?}"),
    }
}

fn ctx(k: &str, v: &str) -> EncryptionContext {
    [(k.to_string(), v.to_string())].into_iter().collect()
}

fn assert_denied(e: &KmsError, who: &str, action: &str, key_arn: &str) {
    assert_eq!(e.code, ErrorCode::AccessDeniedException, "{e:?}");
    let head = format!("User: {who} is not authorized to perform: {action} on resource: {key_arn}");
    assert!(
        e.message.starts_with(&head),
        "{}\n  expected: {head}",
        e.message
    );
    assert!(
        e.message
            .ends_with(&format!("policy allows the {action} action")),
        "{}",
        e.message
    );
}

/// The lab's key, created by the voclabs role with alias/MyKMSKey and the console's
/// policy; `admins` and `users` are the console's lists.
fn lab_key(d: &Daemon, admins: &[String], users: &[String]) -> KeyMetadata {
    let role = d.client().acting_as(voclabs());
    let a: Vec<&str> = admins.iter().map(String::as_str).collect();
    let u: Vec<&str> = users.iter().map(String::as_str).collect();
    let key = role
        .create_key(CreateKeyRequest {
            description: Some("lab key".into()),
            policy: Some(kmsd::api::default_policies::console_key_policy(LAB, &a, &u)),
            ..Default::default()
        })
        .unwrap();
    role.create_alias("alias/MyKMSKey", &key.key_id).unwrap();
    key
}

/// What the volume service sends for `start-instances`: CreateGrant via EC2 on the
/// caller's behalf, for an AWS resource.
fn ec2_grant(
    d: &Daemon,
    caller: &str,
    key: &str,
    volume: &str,
) -> Result<(String, String), ClientError> {
    d.client()
        .via(ViaService {
            service: "ec2.amazonaws.com".into(),
            on_behalf_of: Some(caller.into()),
            grant_is_for_aws_resource: true,
        })
        .create_grant(CreateGrantRequest {
            key_id: key.into(),
            grantee_principal: format!("{LAB}:aws:ec2-infrastructure:{INSTANCE}"),
            retiring_principal: Some("ec2.us-east-1.amazonaws.com".into()),
            operations: vec!["Decrypt".into()],
            constraints: Some(GrantConstraints {
                encryption_context_equals: None,
                encryption_context_subset: Some(ctx("aws:ebs:id", volume)),
            }),
            ..Default::default()
        })
}

/// The instance decrypting its volume's data key as the grantee, via EC2.
fn instance(d: &Daemon, account: &str) -> KmsClient {
    d.client().via(ViaService {
        service: "ec2.amazonaws.com".into(),
        on_behalf_of: Some(format!("{account}:aws:ec2-infrastructure:{INSTANCE}")),
        grant_is_for_aws_resource: false,
    })
}

fn attach_iam(d: &Daemon, account: &str, user: &str, name: &str, doc: &str) {
    let dir = d.home().join(format!("iam/{account}/users/{user}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), doc).unwrap();
    d.client().reload_config().unwrap();
}

#[test]
fn scenario_1_key_admin_can_disable_but_not_decrypt() {
    let d = Daemon::start();
    let admin_only = format!("arn:aws:iam::{LAB}:user/KeyAdminOnly");
    let key = lab_key(&d, &[voclabs(), admin_only.clone()], &[voclabs()]);
    let role = d.client().acting_as(voclabs());
    let none = EncryptionContext::new();
    let ct = role
        .encrypt("alias/MyKMSKey", b"lab secret", &none)
        .unwrap();
    assert_eq!(
        &role
            .decrypt(&ct.ciphertext_blob, &none, None)
            .unwrap()
            .plaintext[..],
        b"lab secret"
    );
    let policy: Value = serde_json::from_str(&role.get_key_policy(&key.key_id).unwrap()).unwrap();
    let sids: Vec<&str> = policy["Statement"]
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

    let admin = d.client().acting_as(admin_only.clone());
    admin.disable_key(&key.arn).unwrap();
    assert_eq!(
        admin.describe_key(&key.arn).unwrap().key_state,
        KeyState::Disabled
    );
    admin.enable_key(&key.arn).unwrap();
    let e = kms_error(admin.decrypt(&ct.ciphertext_blob, &none, None));
    assert_denied(&e, &admin_only, "kms:Decrypt", &key.arn);
    let e = kms_error(admin.encrypt(&key.arn, b"x", &none));
    assert_denied(&e, &admin_only, "kms:Encrypt", &key.arn);
    // The role, a key user, still decrypts.
    role.decrypt(&ct.ciphertext_blob, &none, None).unwrap();
}

#[test]
fn scenario_2_missing_create_grant_and_its_fix() {
    let d = Daemon::start();
    let key = lab_key(&d, &[voclabs()], &[voclabs()]);
    let role = d.client().acting_as(voclabs());
    let volume = "vol-0123456789abcdef0";
    let vctx = ctx("aws:ebs:id", volume);
    let wrapped = role
        .generate_data_key_without_plaintext(&key.arn, DataKeySize::Bytes(64), &vctx)
        .unwrap();
    let operator = format!("arn:aws:iam::{LAB}:user/Ec2Operator");

    let e = kms_error(ec2_grant(&d, &operator, &key.arn, volume));
    assert_denied(&e, &operator, "kms:CreateGrant", &key.arn);
    // No grant, so the instance cannot decrypt its volume key.
    let e = kms_error(instance(&d, LAB).decrypt(&wrapped.ciphertext_blob, &vctx, None));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    // The trail shows the refused CreateGrant, made via EC2 on the user's behalf.
    let page: Value = serde_json::to_value(
        d.client()
            .lookup_events(LookupEventsRequest {
                lookup_attributes: vec![LookupAttribute::new("EventName", "CreateGrant")],
                ..Default::default()
            })
            .unwrap(),
    )
    .unwrap();
    let record: Value =
        serde_json::from_str(page["Events"][0]["CloudTrailEvent"].as_str().unwrap()).unwrap();
    assert_eq!(record["errorCode"], "AccessDeniedException");
    assert_eq!(record["userIdentity"]["arn"], operator.as_str());
    assert_eq!(record["userIdentity"]["invokedBy"], "ec2.amazonaws.com");
    assert_eq!(record["sourceIPAddress"], "ec2.amazonaws.com");
    assert_eq!(
        record["requestParameters"]["granteePrincipal"],
        format!("{LAB}:aws:ec2-infrastructure:{INSTANCE}")
    );

    // The fix: kms:CreateGrant, only for AWS resources.
    attach_iam(
        &d,
        LAB,
        "Ec2Operator",
        "AllowCreateGrantForAWSResources",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:CreateGrant","Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":"true"}}}]}"#,
    );
    let (grant_id, token) = ec2_grant(&d, &operator, &key.arn, volume).unwrap();
    assert_eq!(grant_id.len(), 64);
    let plain = instance(&d, LAB)
        .decrypt_request(DecryptRequest {
            ciphertext_blob: wrapped.ciphertext_blob.clone(),
            encryption_context: vctx.clone(),
            key_id: None,
            grant_tokens: vec![token],
            encryption_algorithm: None,
        })
        .unwrap();
    assert_eq!(plain.plaintext.len(), 64);
    // The grant is for that volume only.
    let other = ctx("aws:ebs:id", "vol-other");
    let wrapped2 = role
        .generate_data_key_without_plaintext(&key.arn, DataKeySize::Bytes(64), &other)
        .unwrap();
    assert!(instance(&d, LAB)
        .decrypt(&wrapped2.ciphertext_blob, &other, None)
        .is_err());
    // The same user directly (not through EC2) still may not create grants.
    let e = kms_error(
        d.client()
            .acting_as(operator.clone())
            .create_grant(CreateGrantRequest {
                key_id: key.arn.clone(),
                grantee_principal: operator.clone(),
                operations: vec!["Decrypt".into()],
                ..Default::default()
            }),
    );
    assert_denied(&e, &operator, "kms:CreateGrant", &key.arn);
    // Stopping: EC2 retires the grant and the instance loses access at once.
    d.client()
        .via(ViaService {
            service: "ec2.amazonaws.com".into(),
            on_behalf_of: Some("ec2.amazonaws.com".into()),
            grant_is_for_aws_resource: false,
        })
        .retire_grant(RetireGrantRequest {
            grant_token: None,
            key_id: Some(key.arn.clone()),
            grant_id: Some(grant_id),
        })
        .unwrap();
    assert!(instance(&d, LAB)
        .decrypt(&wrapped.ciphertext_blob, &vctx, None)
        .is_err());
    // A disabled key: CreateGrant fails with DisabledException.
    role.disable_key(&key.arn).unwrap();
    assert_eq!(
        kms_error(ec2_grant(&d, &operator, &key.arn, volume)).code,
        ErrorCode::DisabledException
    );
}

#[test]
fn scenario_3_cross_account_needs_key_policy_and_iam() {
    let d = Daemon::start();
    let key = lab_key(&d, &[voclabs()], &[voclabs()]);
    let role = d.client().acting_as(voclabs());
    let volume = "vol-0copied00000000000";
    let vctx = ctx("aws:ebs:id", volume);
    let wrapped = role
        .generate_data_key_without_plaintext(&key.arn, DataKeySize::Bytes(64), &vctx)
        .unwrap();
    let user_a = format!("arn:aws:iam::{OTHER}:user/UserA");
    let a = d.client().acting_as(user_a.clone());

    // 1. The key policy does not name the other account.
    let e = kms_error(a.decrypt(&wrapped.ciphertext_blob, &vctx, None));
    assert_denied(&e, &user_a, "kms:Decrypt", &key.arn);
    assert!(
        e.message.contains("no resource-based policy"),
        "{}",
        e.message
    );
    let e = kms_error(a.describe_key(&key.arn));
    assert_denied(&e, &user_a, "kms:DescribeKey", &key.arn);

    // 2. The key's administrator names account 444455556666 in the key policy.
    let mut policy: Value = serde_json::from_str(&role.get_key_policy(&key.arn).unwrap()).unwrap();
    let stmts = policy["Statement"].as_array_mut().unwrap();
    stmts.push(serde_json::json!({
        "Sid": "Allow use of the key by account 444455556666",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
        "Resource": "*"
    }));
    stmts.push(serde_json::json!({
        "Sid": "Allow attachment of persistent resources by account 444455556666",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
        "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
        "Resource": "*",
        "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    }));
    role.put_key_policy(&key.arn, &policy.to_string(), false)
        .unwrap();
    // Still refused: account 444455556666 has not given UserA the permission.
    let e = kms_error(a.decrypt(&wrapped.ciphertext_blob, &vctx, None));
    assert_denied(&e, &user_a, "kms:Decrypt", &key.arn);
    assert!(
        e.message.contains("no identity-based policy"),
        "{}",
        e.message
    );

    // 3. UserA's own account allows it.
    attach_iam(
        &d,
        OTHER,
        "UserA",
        "UseLabKey",
        &serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow",
                 "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey"],
                 "Resource": key.arn},
                {"Effect": "Allow", "Action": "kms:CreateGrant", "Resource": key.arn,
                 "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
            ]
        })
        .to_string(),
    );
    assert_eq!(a.describe_key(&key.arn).unwrap().aws_account_id, LAB);
    assert_eq!(
        a.decrypt(&wrapped.ciphertext_blob, &vctx, None)
            .unwrap()
            .plaintext
            .len(),
        64
    );
    // The copied volume's instance runs in 444455556666: EC2 creates the grant for it.
    let d2 = &d;
    let grant = d2
        .client()
        .via(ViaService {
            service: "ec2.amazonaws.com".into(),
            on_behalf_of: Some(user_a.clone()),
            grant_is_for_aws_resource: true,
        })
        .create_grant(CreateGrantRequest {
            key_id: key.arn.clone(),
            grantee_principal: format!("{OTHER}:aws:ec2-infrastructure:{INSTANCE}"),
            operations: vec!["Decrypt".into()],
            constraints: Some(GrantConstraints {
                encryption_context_equals: None,
                encryption_context_subset: Some(vctx.clone()),
            }),
            ..Default::default()
        });
    assert!(grant.is_ok(), "{grant:?}");
    instance(&d, OTHER)
        .decrypt(&wrapped.ciphertext_blob, &vctx, None)
        .unwrap();
    // Not for an AWS resource: still refused.
    let e = kms_error(a.create_grant(CreateGrantRequest {
        key_id: key.arn.clone(),
        grantee_principal: user_a.clone(),
        operations: vec!["Decrypt".into()],
        ..Default::default()
    }));
    assert_denied(&e, &user_a, "kms:CreateGrant", &key.arn);
    // And nothing beyond what was allowed: UserA cannot disable the key.
    let e = kms_error(a.disable_key(&key.arn));
    assert_denied(&e, &user_a, "kms:DisableKey", &key.arn);
}

/// AWS managed keys: `alias/aws/ebs` and `alias/aws/s3` exist once something uses them,
/// each is used only through its own service, nobody can manage them, and they survive
/// a restart.
#[test]
fn aws_managed_keys_appear_on_first_use_and_serve_only_their_service() {
    let mut d = Daemon::start();
    let role = d.client().acting_as(voclabs());
    assert!(role
        .list_aliases(None)
        .unwrap()
        .iter()
        .all(|a| !a.alias_name.starts_with("alias/aws/")));

    // DescribeKey creates the key, as AWS documents; a second call finds the same one.
    let ebs = role.describe_key("alias/aws/ebs").unwrap();
    assert_eq!(ebs.key_manager, "AWS");
    assert_eq!(
        ebs.description,
        "Default key that protects my EBS volumes when no other key is defined"
    );
    assert_eq!(
        role.describe_key("alias/aws/ebs").unwrap().key_id,
        ebs.key_id
    );
    let rotation = role.get_key_rotation_status(&ebs.arn).unwrap();
    assert!(rotation.key_rotation_enabled);
    assert_eq!(rotation.rotation_period_in_days, Some(365));

    // Used through EC2 on the caller's behalf: allowed.
    let via = |service: &str| {
        d.client().via(ViaService {
            service: service.into(),
            on_behalf_of: Some(voclabs()),
            grant_is_for_aws_resource: false,
        })
    };
    let size = DataKeySize::Spec(DataKeySpec::Aes256);
    let dk = via("ec2.amazonaws.com")
        .generate_data_key("alias/aws/ebs", size, &ctx("aws:ebs:id", "vol-1"))
        .unwrap();
    assert_eq!(dk.key_id, ebs.arn);
    // Used directly, or through another service: refused.
    let direct =
        kms_error(role.generate_data_key("alias/aws/ebs", size, &ctx("aws:ebs:id", "vol-1")));
    assert_eq!(direct.code, ErrorCode::AccessDeniedException, "{direct:?}");
    let wrong = kms_error(via("s3.amazonaws.com").generate_data_key(
        "alias/aws/ebs",
        size,
        &ctx("aws:ebs:id", "vol-1"),
    ));
    assert_eq!(wrong.code, ErrorCode::AccessDeniedException, "{wrong:?}");

    // The first use through S3 creates S3's own key.
    let s3 = via("s3.amazonaws.com")
        .generate_data_key("alias/aws/s3", size, &ctx("aws:s3:arn", "arn:aws:s3:::b/k"))
        .unwrap();
    assert_ne!(s3.key_id, ebs.arn);
    assert_eq!(
        role.describe_key("alias/aws/s3").unwrap().key_manager,
        "AWS"
    );

    // Nobody manages an AWS managed key, not even the account's administrators.
    let policy = role.get_key_policy(&ebs.arn).unwrap();
    for refused in [
        kms_error(role.disable_key(&ebs.arn)),
        kms_error(role.schedule_key_deletion(&ebs.arn, Some(7))),
        kms_error(role.put_key_policy(&ebs.arn, &policy, false)),
        kms_error(role.disable_key_rotation(&ebs.arn)),
        kms_error(role.create_alias("alias/aws/ebs", &ebs.key_id)),
    ] {
        assert!(
            matches!(
                refused.code,
                ErrorCode::AccessDeniedException | ErrorCode::ValidationException
            ),
            "{refused:?}"
        );
    }
    assert_eq!(
        role.describe_key(&ebs.arn).unwrap().key_state,
        KeyState::Enabled
    );

    d.restart();
    let role = d.client().acting_as(voclabs());
    let after = role.describe_key("alias/aws/ebs").unwrap();
    assert_eq!(
        (after.key_id, after.key_manager),
        (ebs.key_id, ebs.key_manager)
    );
    let managed: Vec<_> = role
        .list_aliases(None)
        .unwrap()
        .into_iter()
        .filter(|a| a.alias_name.starts_with("alias/aws/"))
        .collect();
    assert_eq!(managed.len(), 2, "{managed:?}");
}
