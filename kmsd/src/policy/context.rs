//! The request being authorized: who, what action, which key, and the condition keys.

use std::collections::BTreeMap;

use super::condition::ConditionKeys;
use super::principal::{is_account_id, Principal};
use super::PolicyError;

/// Standard condition key names filled by [`RequestContext`].
pub mod keys {
    pub const VIA_SERVICE: &str = "kms:ViaService";
    pub const CALLER_ACCOUNT: &str = "kms:CallerAccount";
    pub const ENCRYPTION_CONTEXT_PREFIX: &str = "kms:EncryptionContext:";
    pub const ENCRYPTION_CONTEXT_KEYS: &str = "kms:EncryptionContextKeys";
    pub const GRANT_IS_FOR_AWS_RESOURCE: &str = "kms:GrantIsForAWSResource";
    pub const GRANT_OPERATIONS: &str = "kms:GrantOperations";
    pub const GRANTEE_PRINCIPAL: &str = "kms:GranteePrincipal";
    pub const RETIRING_PRINCIPAL: &str = "kms:RetiringPrincipal";
    pub const GRANT_CONSTRAINT_TYPE: &str = "kms:GrantConstraintType";
    pub const PRINCIPAL_ARN: &str = "aws:PrincipalArn";
    pub const PRINCIPAL_ACCOUNT: &str = "aws:PrincipalAccount";
}

/// Split a key ARN `arn:aws:kms:REGION:ACCOUNT:key/ID` and return its account.
pub fn key_arn_account(key_arn: &str) -> Result<String, PolicyError> {
    let parts: Vec<&str> = key_arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", "aws", "kms", region, account, resource]
            if !region.is_empty()
                && is_account_id(account)
                && (resource.starts_with("key/") || resource.starts_with("alias/")) =>
        {
            Ok(account.to_string())
        }
        _ => Err(PolicyError::InvalidArn(format!(
            "'{key_arn}' is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
        ))),
    }
}

/// Everything policy evaluation looks at for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub principal: Principal,
    /// `kms:Decrypt`, `kms:CreateGrant`, ...
    pub action: String,
    /// The key ARN.
    pub resource: String,
    /// The account owning the key.
    pub key_account: String,
    pub condition_keys: ConditionKeys,
}

impl RequestContext {
    /// A context with the keys every request has: `kms:CallerAccount`, `aws:PrincipalArn`,
    /// `aws:PrincipalAccount` (absent for service principals).
    pub fn new(principal: Principal, action: &str, key_arn: &str) -> Result<Self, PolicyError> {
        let key_account = key_arn_account(key_arn)?;
        let mut condition_keys = ConditionKeys::new();
        condition_keys.set(keys::PRINCIPAL_ARN, vec![principal.arn.clone()]);
        if let Some(acct) = &principal.account {
            condition_keys.set(keys::CALLER_ACCOUNT, vec![acct.clone()]);
            condition_keys.set(keys::PRINCIPAL_ACCOUNT, vec![acct.clone()]);
        }
        Ok(RequestContext {
            principal,
            action: action.to_string(),
            resource: key_arn.to_string(),
            key_account,
            condition_keys,
        })
    }

    #[cfg(test)]
    /// A context for an account-level action with no key (`kms:CreateKey`, `kms:ListKeys`,
    /// `kms:ListAliases`): the resource is `*` and the "key account" is the caller's own.
    /// Evaluate it with [`super::authorize_account_action`].
    pub fn account_level(principal: Principal, action: &str) -> Self {
        let mut condition_keys = ConditionKeys::new();
        condition_keys.set(keys::PRINCIPAL_ARN, vec![principal.arn.clone()]);
        if let Some(acct) = &principal.account {
            condition_keys.set(keys::CALLER_ACCOUNT, vec![acct.clone()]);
            condition_keys.set(keys::PRINCIPAL_ACCOUNT, vec![acct.clone()]);
        }
        RequestContext {
            key_account: principal.account.clone().unwrap_or_default(),
            principal,
            action: action.to_string(),
            resource: "*".to_string(),
            condition_keys,
        }
    }

    #[cfg(any(test, feature = "testing"))]
    /// The usual constructor: the standard keys plus the encryption context
    /// (`kms:EncryptionContext:K`, `kms:EncryptionContextKeys`), `kms:ViaService` when the
    /// request came through a trusted service (`ec2.us-east-1.amazonaws.com`), and
    /// `kms:GrantIsForAWSResource` for grant operations made by such a service.
    pub fn standard(
        principal: Principal,
        action: &str,
        key_arn: &str,
        encryption_context: &BTreeMap<String, String>,
        via_service: Option<&str>,
        grant_is_for_aws_resource: Option<bool>,
    ) -> Result<Self, PolicyError> {
        Ok(Self::new(principal, action, key_arn)?
            .with_encryption_context(encryption_context)
            .with_via_service(via_service)
            .with_grant_is_for_aws_resource(grant_is_for_aws_resource))
    }

    pub fn with_encryption_context(mut self, ec: &BTreeMap<String, String>) -> Self {
        for (k, v) in ec {
            self.condition_keys.set(
                &format!("{}{k}", keys::ENCRYPTION_CONTEXT_PREFIX),
                vec![v.clone()],
            );
        }
        if !ec.is_empty() {
            self.condition_keys
                .set(keys::ENCRYPTION_CONTEXT_KEYS, ec.keys().cloned().collect());
        }
        self
    }

    pub fn with_via_service(mut self, via: Option<&str>) -> Self {
        match via {
            Some(s) => self
                .condition_keys
                .set(keys::VIA_SERVICE, vec![s.to_string()]),
            None => self.condition_keys.remove(keys::VIA_SERVICE),
        }
        self
    }

    pub fn with_grant_is_for_aws_resource(mut self, flag: Option<bool>) -> Self {
        match flag {
            Some(b) => self
                .condition_keys
                .set(keys::GRANT_IS_FOR_AWS_RESOURCE, vec![b.to_string()]),
            None => self.condition_keys.remove(keys::GRANT_IS_FOR_AWS_RESOURCE),
        }
        self
    }

    /// Keys of a `CreateGrant` request: `kms:GrantOperations` (AWS operation names),
    /// `kms:GranteePrincipal`, `kms:RetiringPrincipal`, `kms:GrantConstraintType`.
    pub fn with_grant_request(
        mut self,
        operations: &[&str],
        grantee: &str,
        retiring: Option<&str>,
        constraint_types: &[&str],
    ) -> Self {
        self.condition_keys.set(
            keys::GRANT_OPERATIONS,
            operations.iter().map(|s| s.to_string()).collect(),
        );
        self.condition_keys
            .set(keys::GRANTEE_PRINCIPAL, vec![grantee.to_string()]);
        if let Some(r) = retiring {
            self.condition_keys
                .set(keys::RETIRING_PRINCIPAL, vec![r.to_string()]);
        }
        if !constraint_types.is_empty() {
            self.condition_keys.set(
                keys::GRANT_CONSTRAINT_TYPE,
                constraint_types.iter().map(|s| s.to_string()).collect(),
            );
        }
        self
    }

    /// Set any other condition key.
    #[cfg(any(test, feature = "testing"))]
    pub fn with_key(mut self, key: &str, values: Vec<String>) -> Self {
        self.condition_keys.set(key, values);
        self
    }

    /// Is the caller in the key's account?
    pub fn same_account(&self) -> bool {
        self.principal.account.as_deref() == Some(self.key_account.as_str())
    }
}
