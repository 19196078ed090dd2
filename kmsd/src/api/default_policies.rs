//! The key policies AWS KMS writes when the caller gives none (CreateKey without a
//! policy, the console's key policy, AWS managed keys): documents on the wire, so they
//! sit with the operation types, where kmsd and the CLI (`--key-administrators`) both
//! build them. Pure JSON building, no I/O.

use serde_json::{json, Value};

/// Actions of the console's "Allow access for Key Administrators" statement.
pub const KEY_ADMINISTRATOR_ACTIONS: &[&str] = &[
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
];

/// Actions of the console's "Allow use of the key" statement (symmetric encryption keys).
pub const KEY_USER_ACTIONS: &[&str] = &[
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
];

/// Actions of the console's "Allow attachment of persistent resources" statement.
pub const PERSISTENT_RESOURCE_ACTIONS: &[&str] =
    &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"];

fn root_statement(account: &str) -> Value {
    json!({
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
        "Action": "kms:*",
        "Resource": "*"
    })
}

fn pretty(v: &Value) -> String {
    // Serializing a `Value` cannot fail; fall back to the compact form just in case.
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The policy `CreateKey` applies when no policy is given: the account root may do anything,
/// which lets the account's IAM policies grant access.
pub fn default_key_policy(account: &str) -> String {
    pretty(&json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [root_statement(account)]
    }))
}

fn principals(arns: &[&str]) -> Value {
    match arns {
        [one] => json!({"AWS": one}),
        many => json!({"AWS": many}),
    }
}

/// The policy the AWS console writes for a symmetric key with the given key administrators and
/// key users. Statements for an empty list are left out, as the console does.
pub fn console_key_policy(account: &str, admins: &[&str], users: &[&str]) -> String {
    let mut statements = vec![root_statement(account)];
    if !admins.is_empty() {
        statements.push(json!({
            "Sid": "Allow access for Key Administrators",
            "Effect": "Allow",
            "Principal": principals(admins),
            "Action": KEY_ADMINISTRATOR_ACTIONS,
            "Resource": "*"
        }));
    }
    if !users.is_empty() {
        statements.push(json!({
            "Sid": "Allow use of the key",
            "Effect": "Allow",
            "Principal": principals(users),
            "Action": KEY_USER_ACTIONS,
            "Resource": "*"
        }));
        statements.push(json!({
            "Sid": "Allow attachment of persistent resources",
            "Effect": "Allow",
            "Principal": principals(users),
            "Action": PERSISTENT_RESOURCE_ACTIONS,
            "Resource": "*",
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
        }));
    }
    pretty(&json!({
        "Version": "2012-10-17",
        "Id": "key-consolepolicy-3",
        "Statement": statements
    }))
}

/// The key policy of an AWS managed key (`alias/aws/ebs`, `alias/aws/s3`): every principal
/// of the account may use it, but only through the service (`kms:ViaService`); the
/// account may read its metadata directly. Nobody may disable, delete, re-policy or
/// rotate it by hand, as with AWS's own `auto-ebs-2` / `auto-s3-2` policies.
pub fn aws_managed_key_policy(
    id: &str,
    service_label: &str,
    via_service: &str,
    use_actions: &[&str],
    metadata_actions: &[&str],
    account: &str,
) -> String {
    pretty(&json!({
        "Version": "2012-10-17",
        "Id": id,
        "Statement": [
            {
                "Sid": format!("Allow access through {service_label} for all principals in the account that are authorized to use {service_label}"),
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": use_actions,
                "Resource": "*",
                "Condition": {"StringEquals": {
                    "kms:ViaService": via_service,
                    "kms:CallerAccount": account
                }}
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": metadata_actions,
                "Resource": "*"
            }
        ]
    }))
}
