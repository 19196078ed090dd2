//! Grants as AWS KMS has them, as pure code: the model, matching a request against a grant,
//! the "as strict or stricter" rule for grants created through a grant, who may retire a grant,
//! and validation of `CreateGrant` input. Storage and the API live in the service.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::policy::principal::{is_service_principal, Principal};

/// A grant's encryption context map.
pub type EncryptionContext = BTreeMap<String, String>;

/// Most grant tokens a request may carry (AWS limit).
pub const MAX_GRANT_TOKENS: usize = 10;

/// The operations a grant can allow, spelled as AWS spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GrantOperation {
    Decrypt,
    Encrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    ReEncryptFrom,
    ReEncryptTo,
    Sign,
    Verify,
    GetPublicKey,
    CreateGrant,
    RetireGrant,
    DescribeKey,
    GenerateDataKeyPair,
    GenerateDataKeyPairWithoutPlaintext,
    GenerateMac,
    VerifyMac,
    DeriveSharedSecret,
}

impl GrantOperation {
    pub const ALL: [GrantOperation; 17] = [
        GrantOperation::Decrypt,
        GrantOperation::Encrypt,
        GrantOperation::GenerateDataKey,
        GrantOperation::GenerateDataKeyWithoutPlaintext,
        GrantOperation::ReEncryptFrom,
        GrantOperation::ReEncryptTo,
        GrantOperation::Sign,
        GrantOperation::Verify,
        GrantOperation::GetPublicKey,
        GrantOperation::CreateGrant,
        GrantOperation::RetireGrant,
        GrantOperation::DescribeKey,
        GrantOperation::GenerateDataKeyPair,
        GrantOperation::GenerateDataKeyPairWithoutPlaintext,
        GrantOperation::GenerateMac,
        GrantOperation::VerifyMac,
        GrantOperation::DeriveSharedSecret,
    ];

    pub fn as_str(self) -> &'static str {
        use GrantOperation::*;
        match self {
            Decrypt => "Decrypt",
            Encrypt => "Encrypt",
            GenerateDataKey => "GenerateDataKey",
            GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            ReEncryptFrom => "ReEncryptFrom",
            ReEncryptTo => "ReEncryptTo",
            Sign => "Sign",
            Verify => "Verify",
            GetPublicKey => "GetPublicKey",
            CreateGrant => "CreateGrant",
            RetireGrant => "RetireGrant",
            DescribeKey => "DescribeKey",
            GenerateDataKeyPair => "GenerateDataKeyPair",
            GenerateDataKeyPairWithoutPlaintext => "GenerateDataKeyPairWithoutPlaintext",
            GenerateMac => "GenerateMac",
            VerifyMac => "VerifyMac",
            DeriveSharedSecret => "DeriveSharedSecret",
        }
    }

    /// The IAM action for this operation (`kms:Decrypt`).
    pub fn action(self) -> String {
        format!("kms:{}", self.as_str())
    }

    /// Does the operation take an encryption context, so that grant constraints apply to it?
    /// `DescribeKey`, `RetireGrant` and `CreateGrant` may sit in a constrained grant but the
    /// constraint does not apply to them (for `CreateGrant` it binds the child grants instead).
    pub fn constraint_applies(self) -> bool {
        use GrantOperation::*;
        matches!(
            self,
            Decrypt
                | Encrypt
                | GenerateDataKey
                | GenerateDataKeyWithoutPlaintext
                | ReEncryptFrom
                | ReEncryptTo
                | GenerateDataKeyPair
                | GenerateDataKeyPairWithoutPlaintext
        )
    }

    /// Operations that cannot be used in a grant with an encryption context constraint
    /// (asymmetric signing and HMAC keys have no encryption context).
    pub fn forbids_constraints(self) -> bool {
        use GrantOperation::*;
        matches!(
            self,
            Sign | Verify | GetPublicKey | GenerateMac | VerifyMac | DeriveSharedSecret
        )
    }
}

impl fmt::Display for GrantOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantOperation {
    type Err = GrantError;
    fn from_str(s: &str) -> Result<Self, GrantError> {
        GrantOperation::ALL
            .iter()
            .copied()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| GrantError::Validation(invalid_operations_message(&[s])))
    }
}

fn invalid_operations_message(values: &[&str]) -> String {
    let allowed: Vec<&str> = GrantOperation::ALL.iter().map(|o| o.as_str()).collect();
    format!(
        "1 validation error detected: Value '[{}]' at 'operations' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
        values.join(", "),
        allowed.join(", ")
    )
}

/// `Constraints` of a grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantConstraints {
    /// The request's encryption context must be exactly this map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<EncryptionContext>,
    /// Every pair of this map must be in the request's encryption context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<EncryptionContext>,
}

impl GrantConstraints {
    fn is_empty(&self) -> bool {
        self.encryption_context_equals.is_none() && self.encryption_context_subset.is_none()
    }

    /// Does a request's encryption context satisfy the constraints?
    pub fn allows(&self, ec: &EncryptionContext) -> bool {
        let eq_ok = self
            .encryption_context_equals
            .as_ref()
            .is_none_or(|e| e == ec);
        let sub_ok = self
            .encryption_context_subset
            .as_ref()
            .is_none_or(|s| is_subset(s, ec));
        eq_ok && sub_ok
    }

    /// `kms:GrantConstraintType` values for this constraint.
    pub fn constraint_types(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.encryption_context_equals.is_some() {
            v.push("EncryptionContextEquals");
        }
        if self.encryption_context_subset.is_some() {
            v.push("EncryptionContextSubset");
        }
        v
    }
}

fn is_subset(small: &EncryptionContext, big: &EncryptionContext) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// A grant as kmsd stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Grant {
    pub grant_id: String,
    /// The key's ARN (`KeyId` in ListGrants output).
    #[serde(rename = "KeyId")]
    pub key_arn: String,
    pub grantee_principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    pub operations: Vec<GrantOperation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The account that created the grant (`arn:aws:iam::ACCOUNT:root` in ListGrants output;
    /// stored here as the 12-digit id).
    pub issuing_account: String,
    /// Unix seconds.
    pub creation_date: i64,
    /// Tokens issued for this grant; never shown by ListGrants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_tokens: Vec<String>,
}

/// A validated `CreateGrant` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    /// Sorted, without duplicates.
    pub operations: Vec<GrantOperation>,
    pub constraints: Option<GrantConstraints>,
    pub name: Option<String>,
    pub grant_tokens: Vec<String>,
}

/// `CreateGrant` input as it arrives (AWS JSON field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGrantInput {
    pub key_id: String,
    pub grantee_principal: String,
    #[serde(default)]
    pub retiring_principal: Option<String>,
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub constraints: Option<GrantConstraints>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidGrantToken(String),
    /// A grant used to create another grant is less strict than the parent allows.
    #[error("{0}")]
    AccessDenied(String),
}

impl GrantError {
    pub fn aws_error_code(&self) -> &'static str {
        match self {
            GrantError::Validation(_) => "ValidationException",
            GrantError::InvalidGrantToken(_) => "InvalidGrantTokenException",
            GrantError::AccessDenied(_) => "AccessDeniedException",
        }
    }
}

fn validate_principal(field: &str, value: &str) -> Result<(), GrantError> {
    if value.is_empty() || value.len() > 256 {
        return Err(GrantError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must have length between 1 and 256"
        )));
    }
    if is_service_principal(value) || Principal::parse(value).is_ok() {
        Ok(())
    } else {
        Err(GrantError::Validation(format!(
            "Invalid {field}: '{value}' is not an IAM user, role, account or service principal"
        )))
    }
}

fn validate_context(field: &str, ec: &EncryptionContext) -> Result<(), GrantError> {
    for (k, v) in ec {
        if k.is_empty() {
            return Err(GrantError::Validation(format!(
                "Constraints.{field} contains an empty encryption context key"
            )));
        }
        if k.len() > 2048 || v.len() > 2048 {
            return Err(GrantError::Validation(format!(
                "Constraints.{field} has a key or value longer than 2048 characters"
            )));
        }
    }
    Ok(())
}

/// Check `CreateGrant` input the way AWS does and normalize it.
pub fn validate_create_grant(input: &CreateGrantInput) -> Result<GrantRequest, GrantError> {
    validate_principal("granteePrincipal", &input.grantee_principal)?;
    if let Some(r) = &input.retiring_principal {
        validate_principal("retiringPrincipal", r)?;
    }
    if input.operations.is_empty() {
        return Err(GrantError::Validation(
            "1 validation error detected: Value '[]' at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1".to_string(),
        ));
    }
    let bad: Vec<&str> = input
        .operations
        .iter()
        .map(|s| s.as_str())
        .filter(|s| s.parse::<GrantOperation>().is_err())
        .collect();
    if !bad.is_empty() {
        return Err(GrantError::Validation(invalid_operations_message(&bad)));
    }
    let mut operations: Vec<GrantOperation> = input
        .operations
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    operations.sort();
    operations.dedup();
    let constraints = match &input.constraints {
        Some(c) if !c.is_empty() => {
            if let Some(e) = &c.encryption_context_equals {
                validate_context("EncryptionContextEquals", e)?;
            }
            if let Some(s) = &c.encryption_context_subset {
                validate_context("EncryptionContextSubset", s)?;
            }
            if let Some(op) = operations.iter().find(|o| o.forbids_constraints()) {
                return Err(GrantError::Validation(format!(
                    "Grant constraints are not supported for the {op} operation: it takes no encryption context"
                )));
            }
            Some(c.clone())
        }
        _ => None,
    };
    if let Some(name) = &input.name {
        let ok = !name.is_empty()
            && name.len() <= 256
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'));
        if !ok {
            return Err(GrantError::Validation(format!(
                "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
            )));
        }
    }
    if input.grant_tokens.len() > MAX_GRANT_TOKENS {
        return Err(GrantError::Validation(format!(
            "1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to {MAX_GRANT_TOKENS}"
        )));
    }
    Ok(GrantRequest {
        grantee_principal: input.grantee_principal.clone(),
        retiring_principal: input.retiring_principal.clone(),
        operations,
        constraints,
        name: input.name.clone(),
        grant_tokens: input.grant_tokens.clone(),
    })
}

/// A fresh grant id: 32 random bytes as 64 lowercase hex characters.
pub fn new_grant_id() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A fresh grant token for `grant_id`: URL-safe base64 of the 32-byte grant id followed by
/// 32 random bytes. The id lets the service find the grant; the random part is what the service
/// must find in [`Grant::grant_tokens`] before honouring the token.
pub fn new_grant_token(grant_id: &str) -> Result<String, GrantError> {
    let id = hex::decode(grant_id)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| GrantError::Validation(format!("Invalid grant id '{grant_id}'")))?;
    let mut buf = id;
    let mut r = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut r);
    buf.extend_from_slice(&r);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// The grant id a token names (the token must still be checked against the stored grant).
pub fn grant_id_from_token(token: &str) -> Result<String, GrantError> {
    let invalid = || GrantError::InvalidGrantToken("Invalid grant token".to_string());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    if raw.len() != 64 {
        return Err(invalid());
    }
    raw.get(..32).map(hex::encode).ok_or_else(invalid)
}

impl Grant {
    /// Build a grant from a validated request.
    pub fn from_request(
        req: &GrantRequest,
        grant_id: String,
        key_arn: &str,
        issuing_account: &str,
        creation_date: i64,
    ) -> Self {
        Grant {
            grant_id,
            key_arn: key_arn.to_string(),
            grantee_principal: req.grantee_principal.clone(),
            retiring_principal: req.retiring_principal.clone(),
            operations: req.operations.clone(),
            constraints: req.constraints.clone(),
            name: req.name.clone(),
            issuing_account: issuing_account.to_string(),
            creation_date,
            grant_tokens: Vec::new(),
        }
    }

    /// CreateGrant with a `Name` is idempotent: a request for the same key with the same name
    /// and the same parameters returns the existing grant id.
    pub fn same_request(&self, key_arn: &str, req: &GrantRequest) -> bool {
        self.key_arn == key_arn
            && self.name.is_some()
            && self.name == req.name
            && self.grantee_principal == req.grantee_principal
            && self.retiring_principal == req.retiring_principal
            && self.operations == req.operations
            && self.constraints == req.constraints
    }

    /// ListGrants' `IssuingAccount` value.
    pub fn issuing_account_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.issuing_account)
    }
}

/// Does `grant` let `grantee` perform `operation` with `encryption_context`? Exactly the
/// grant's operations (each `GenerateDataKey*` / `ReEncrypt*` variant is its own operation),
/// only for the grantee, and within the constraints for operations that take a context.
pub fn grant_allows(
    grant: &Grant,
    grantee: &Principal,
    operation: GrantOperation,
    encryption_context: &EncryptionContext,
) -> bool {
    if !grantee.is_designated_by(&grant.grantee_principal) {
        return false;
    }
    if !grant.operations.contains(&operation) {
        return false;
    }
    match &grant.constraints {
        None => true,
        Some(c) if operation.constraint_applies() => c.allows(encryption_context),
        Some(_) => !operation.forbids_constraints(),
    }
}

fn constraints_at_least_as_strict(
    parent: Option<&GrantConstraints>,
    child: Option<&GrantConstraints>,
) -> bool {
    let Some(parent) = parent.filter(|p| !p.is_empty()) else {
        return true;
    };
    let child = child.cloned().unwrap_or_default();
    let equals_ok = parent
        .encryption_context_equals
        .as_ref()
        .is_none_or(|pe| child.encryption_context_equals.as_ref() == Some(pe));
    let subset_ok = parent.encryption_context_subset.as_ref().is_none_or(|ps| {
        child
            .encryption_context_equals
            .as_ref()
            .is_some_and(|ce| is_subset(ps, ce))
            || child
                .encryption_context_subset
                .as_ref()
                .is_some_and(|cs| is_subset(ps, cs))
    });
    equals_ok && subset_ok
}

/// May a principal holding `parent` (which must include `CreateGrant`) create `child`? The
/// child's operations must be a subset of the parent's and its constraints as strict or
/// stricter: an `EncryptionContextEquals` parent requires the same map; an
/// `EncryptionContextSubset` parent requires a child map (Equals or Subset) containing it.
pub fn is_at_least_as_strict(parent: &Grant, child: &GrantRequest) -> bool {
    parent.operations.contains(&GrantOperation::CreateGrant)
        && child
            .operations
            .iter()
            .all(|op| parent.operations.contains(op))
        && constraints_at_least_as_strict(parent.constraints.as_ref(), child.constraints.as_ref())
}

/// On what authority a caller may retire a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireAuthority {
    RetiringPrincipal,
    /// The grantee, because the grant includes `RetireGrant`.
    Grantee,
    /// The root of the account that created the grant.
    IssuingAccountRoot,
    /// Another principal of the issuing account: allowed only if its policies allow
    /// `kms:RetireGrant` (the service checks that with [`crate::policy::authorize`]).
    IssuingAccountPrincipal,
    None,
}

/// Who is asking to retire `grant`, as far as the grant itself can tell.
pub fn retire_authority(grant: &Grant, caller: &Principal) -> RetireAuthority {
    if grant
        .retiring_principal
        .as_deref()
        .is_some_and(|r| caller.is_designated_by(r))
    {
        RetireAuthority::RetiringPrincipal
    } else if caller.is_designated_by(&grant.grantee_principal)
        && grant.operations.contains(&GrantOperation::RetireGrant)
    {
        RetireAuthority::Grantee
    } else if caller.account.as_deref() == Some(grant.issuing_account.as_str()) {
        if caller.is_root() {
            RetireAuthority::IssuingAccountRoot
        } else {
            RetireAuthority::IssuingAccountPrincipal
        }
    } else {
        RetireAuthority::None
    }
}

/// May `caller` retire `grant` on the grant's own terms (retiring principal, grantee with
/// `RetireGrant`, or the issuing account's root)? Other principals of the issuing account need
/// a policy allowing `kms:RetireGrant` (see [`retire_authority`]).
pub fn may_retire(grant: &Grant, caller: &Principal) -> bool {
    matches!(
        retire_authority(grant, caller),
        RetireAuthority::RetiringPrincipal
            | RetireAuthority::Grantee
            | RetireAuthority::IssuingAccountRoot
    )
}

#[cfg(test)]
mod tests {
    use super::*;
}
