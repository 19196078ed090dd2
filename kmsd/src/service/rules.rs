//! Key-state rules: which operations a key's state allows, after AWS's key-state
//! table (Enabled / Disabled / PendingDeletion rows).

use super::KeyEntry;
use crate::protocol::{KeyState, KmsError};

/// What an operation needs of its key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRule {
    /// Works in every state (DescribeKey, GetKeyRotationStatus, DeleteAlias, ...).
    Any,
    /// Needs an Enabled key: Disabled gives `DisabledException`, PendingDeletion
    /// gives `KMSInvalidStateException` (cryptographic operations, rotation,
    /// CreateGrant).
    Enabled,
    /// Refused only while pending deletion (EnableKey, DisableKey,
    /// ScheduleKeyDeletion, alias targets, descriptions, tags, key policies).
    NotPendingDeletion,
    /// Only while pending deletion (CancelKeyDeletion).
    PendingDeletion,
}

/// The rule for an action (`kms:Decrypt`, ...). Unknown actions need an Enabled key.
pub fn rule_for(action: &str) -> StateRule {
    match action {
        "kms:DescribeKey"
        | "kms:GetKeyRotationStatus"
        | "kms:ListKeyRotations"
        | "kms:ListResourceTags"
        | "kms:ListAliases"
        | "kms:DeleteAlias"
        | "kms:GetKeyPolicy"
        | "kms:ListKeyPolicies"
        | "kms:ListGrants"
        | "kms:ListRetirableGrants"
        | "kms:RetireGrant"
        | "kms:RevokeGrant" => StateRule::Any,
        "kms:EnableKey"
        | "kms:DisableKey"
        | "kms:ScheduleKeyDeletion"
        | "kms:CreateAlias"
        | "kms:UpdateAlias"
        | "kms:UpdateKeyDescription"
        | "kms:TagResource"
        | "kms:UntagResource"
        | "kms:PutKeyPolicy" => StateRule::NotPendingDeletion,
        "kms:CancelKeyDeletion" => StateRule::PendingDeletion,
        _ => StateRule::Enabled,
    }
}

/// Checks `key`'s state against the rule for `action`.
pub fn check(action: &str, key: &KeyEntry) -> Result<(), KmsError> {
    check_state(rule_for(action), key.record.key_state, &key.arn)
}

/// Pure form of [`check`].
pub fn check_state(rule: StateRule, state: KeyState, arn: &str) -> Result<(), KmsError> {
    match (rule, state) {
        (StateRule::Any, _) => Ok(()),
        (StateRule::Enabled, KeyState::Enabled) => Ok(()),
        (StateRule::Enabled, KeyState::Disabled) => Err(KmsError::disabled(arn)),
        (StateRule::PendingDeletion, KeyState::PendingDeletion) => Ok(()),
        (StateRule::PendingDeletion, _) => Err(KmsError::invalid_state(format!(
            "{arn} is not pending deletion."
        ))),
        (_, KeyState::PendingDeletion) => Err(KmsError::pending_deletion(arn)),
        (StateRule::NotPendingDeletion, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/k";

    fn code(rule: StateRule, state: KeyState) -> Option<ErrorCode> {
        check_state(rule, state, ARN).err().map(|e| e.code)
    }

    #[test]
    fn table() {
        use ErrorCode::*;
        use KeyState::*;
        assert_eq!(code(StateRule::Enabled, Enabled), None);
        assert_eq!(code(StateRule::Enabled, Disabled), Some(DisabledException));
        assert_eq!(
            code(StateRule::Enabled, PendingDeletion),
            Some(KMSInvalidStateException)
        );
        assert_eq!(code(StateRule::NotPendingDeletion, Disabled), None);
        assert_eq!(
            code(StateRule::NotPendingDeletion, PendingDeletion),
            Some(KMSInvalidStateException)
        );
        assert_eq!(code(StateRule::Any, PendingDeletion), None);
        assert_eq!(
            code(StateRule::PendingDeletion, Disabled),
            Some(KMSInvalidStateException)
        );
        assert_eq!(
            check_state(StateRule::PendingDeletion, Enabled, ARN)
                .unwrap_err()
                .message,
            format!("{ARN} is not pending deletion.")
        );
        assert_eq!(
            check_state(StateRule::Enabled, Disabled, ARN)
                .unwrap_err()
                .message,
            format!("{ARN} is disabled.")
        );
        assert_eq!(
            check_state(StateRule::Enabled, PendingDeletion, ARN)
                .unwrap_err()
                .message,
            format!("{ARN} is pending deletion.")
        );
        assert_eq!(rule_for("kms:Decrypt"), StateRule::Enabled);
        assert_eq!(
            rule_for("kms:CancelKeyDeletion"),
            StateRule::PendingDeletion
        );
    }
}
