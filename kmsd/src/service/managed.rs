//! AWS managed keys: `alias/aws/ebs` and `alias/aws/s3` name no key until something
//! first uses them; then kmsd creates the key, as AWS does, so `--encrypted` volumes and
//! `aws:kms` objects without a named key work. They are used through their service only
//! and managed by nobody (their policy grants no management action).

use std::sync::Arc;

use zeroize::Zeroizing;

use super::resolve::{parse_key_ref, KeyRef};
use super::rotation::DEFAULT_ROTATION_DAYS;
use super::{Caller, KeyEntry, KeyService};
use crate::api::default_policies::aws_managed_key_policy;
use crate::clock::DAY_MS;
use crate::keystore::{
    KeyManager, StoredAlias, StoredKey, StoredRotation, StoredVersion, FILE_FORMAT,
};
use crate::protocol::via_service_value;
use crate::protocol::{KeyState, KmsError};

/// One AWS managed key kmsd knows how to create.
pub struct ManagedKey {
    pub alias: &'static str,
    /// The service principal that may use it (`kms:ViaService`, region added).
    pub service: &'static str,
    label: &'static str,
    description: &'static str,
    policy_id: &'static str,
    use_actions: &'static [&'static str],
    metadata_actions: &'static [&'static str],
}

pub const MANAGED_KEYS: &[ManagedKey] = &[
    ManagedKey {
        alias: "alias/aws/ebs",
        service: "ec2.amazonaws.com",
        label: "EBS",
        description: "Default key that protects my EBS volumes when no other key is defined",
        policy_id: "auto-ebs-2",
        use_actions: &[
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:CreateGrant",
            "kms:DescribeKey",
        ],
        metadata_actions: &["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
    },
    ManagedKey {
        alias: "alias/aws/s3",
        service: "s3.amazonaws.com",
        label: "S3",
        description: "Default key that protects my S3 objects when no other key is defined",
        policy_id: "auto-s3-2",
        use_actions: &[
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:DescribeKey",
        ],
        metadata_actions: &["kms:Describe*", "kms:Get*", "kms:List*"],
    },
];

/// The managed key `input` names in `caller`'s account and region, if it names one.
fn named_managed_key<'a>(
    input: &str,
    caller_account: &str,
    region: &str,
) -> Option<&'a ManagedKey> {
    let alias = match parse_key_ref(input).ok()? {
        KeyRef::AliasName(name) => name,
        KeyRef::AliasArn {
            region: r,
            account,
            alias_name,
        } if r == region && account == caller_account => alias_name,
        _ => return None,
    };
    MANAGED_KEYS.iter().find(|m| m.alias == alias)
}

impl KeyService {
    /// Creates the AWS managed key `input` names if it does not exist yet. Anything else
    /// is left to the caller's normal resolution (and its NotFoundException).
    pub(crate) fn ensure_managed_key(&self, caller: &Caller, input: &str) -> Result<(), KmsError> {
        // Every crypto call passes here; most name a key ID, which needs no parsing.
        if !input.contains(super::aliases::RESERVED_PREFIX) {
            return Ok(());
        }
        let Some(spec) = named_managed_key(input, &caller.account, &self.config.region) else {
            return Ok(());
        };
        let id = (caller.account.clone(), spec.alias.to_string());
        if self.read().aliases.contains_key(&id) {
            return Ok(());
        }
        let _w = self.writer();
        let mut aliases = self.read().aliases.clone();
        if aliases.contains_key(&id) {
            return Ok(()); // another request created it first
        }
        let entry = self.new_managed_key(spec, &caller.account)?;
        let entry = self.commit_key(entry)?;
        aliases.insert(
            id,
            StoredAlias::new(
                &caller.account,
                &self.config.region,
                spec.alias,
                &entry.record.key_id,
                self.now_ms(),
            ),
        );
        // A crash between the two writes leaves a managed key no alias names; the next
        // use creates another, which is harmless (it holds no data yet).
        self.commit_aliases(aliases)?;
        tracing::info!(alias = spec.alias, key = %entry.arn, "created AWS managed key");
        Ok(())
    }

    fn new_managed_key(&self, spec: &ManagedKey, account: &str) -> Result<KeyEntry, KmsError> {
        let key_id = uuid::Uuid::new_v4().to_string();
        let region = &self.config.region;
        let material: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
        let sealed = self
            .store
            .seal(&key_id, 1, &material)
            .map_err(super::storage_error)?;
        let now = self.now_ms();
        let policy = aws_managed_key_policy(
            spec.policy_id,
            spec.label,
            &via_service_value(spec.service, region),
            spec.use_actions,
            spec.metadata_actions,
            account,
        );
        let record = StoredKey {
            format: FILE_FORMAT,
            key_id,
            account: account.to_string(),
            region: region.clone(),
            key_manager: KeyManager::Aws,
            creation_date_ms: now,
            description: spec.description.to_string(),
            key_state: KeyState::Enabled,
            deletion_date_ms: None,
            pending_window_days: None,
            policy: Some(policy),
            tags: Vec::new(),
            // AWS rotates its managed keys every year, and nobody can turn that off.
            rotation: StoredRotation {
                enabled: true,
                period_days: Some(DEFAULT_ROTATION_DAYS),
                next_rotation_ms: Some(
                    now.saturating_add(i64::from(DEFAULT_ROTATION_DAYS).saturating_mul(DAY_MS)),
                ),
                on_demand_count: 0,
            },
            versions: vec![StoredVersion {
                version: 1,
                created_ms: now,
                rotation_type: None,
                sealed_material: sealed,
            }],
        };
        Ok(KeyEntry::new(
            record,
            Arc::new(vec![crate::blob::cipher(&material)]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_known_aliases_in_the_callers_account_are_managed() {
        let r = "us-east-1";
        let a = "111122223333";
        assert_eq!(
            named_managed_key("alias/aws/ebs", a, r).map(|m| m.alias),
            Some("alias/aws/ebs")
        );
        assert_eq!(
            named_managed_key("arn:aws:kms:us-east-1:111122223333:alias/aws/s3", a, r)
                .map(|m| m.alias),
            Some("alias/aws/s3")
        );
        for other in [
            "alias/aws/rds",
            "alias/MyKMSKey",
            "arn:aws:kms:us-east-1:444455556666:alias/aws/s3",
            "arn:aws:kms:eu-west-1:111122223333:alias/aws/s3",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "not a key",
        ] {
            assert!(named_managed_key(other, a, r).is_none(), "{other}");
        }
    }

    #[test]
    fn managed_policies_parse_and_name_their_service() {
        for m in MANAGED_KEYS {
            let text = aws_managed_key_policy(
                m.policy_id,
                m.label,
                &via_service_value(m.service, "us-east-1"),
                m.use_actions,
                m.metadata_actions,
                "111122223333",
            );
            crate::policy::PolicyDocument::parse_key_policy(&text).expect("managed policy parses");
            assert!(text.contains(&format!(
                "{}.us-east-1.amazonaws.com",
                m.service.trim_end_matches(".amazonaws.com")
            )));
        }
    }
}
