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
    #[cfg(test)]
    pub fn action(self) -> String {
        format!("kms:{}", self.as_str())
    }

    /// The grant operation of an IAM action (`kms:Decrypt` -> `Decrypt`), if it has one.
    #[cfg(test)]
    pub fn from_action(action: &str) -> Option<Self> {
        let name = action.strip_prefix("kms:")?;
        GrantOperation::ALL
            .iter()
            .copied()
            .find(|op| op.as_str() == name)
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
}

impl GrantError {
    pub fn aws_error_code(&self) -> &'static str {
        match self {
            GrantError::Validation(_) => "ValidationException",
            GrantError::InvalidGrantToken(_) => "InvalidGrantTokenException",
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

/// Does `grant` let the caller perform `operation` with `encryption_context`? Exactly the
/// grant's operations (each `GenerateDataKey*` / `ReEncrypt*` variant is its own operation),
/// only for its grantee (`designates(name)`: does the principal `name` in the grant mean the
/// caller; the service adds EC2's infrastructure names), and within the constraints for
/// operations that take a context.
pub fn grant_allows(
    grant: &Grant,
    designates: impl Fn(&str) -> bool,
    operation: GrantOperation,
    encryption_context: &EncryptionContext,
) -> bool {
    if !designates(&grant.grantee_principal) {
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
    /// `kms:RetireGrant` (the service checks that with its policies).
    IssuingAccountPrincipal,
    None,
}

impl RetireAuthority {
    /// Whether the grant itself lets the caller retire it (no policy needed).
    pub fn by_grant(self) -> bool {
        matches!(
            self,
            RetireAuthority::RetiringPrincipal
                | RetireAuthority::Grantee
                | RetireAuthority::IssuingAccountRoot
        )
    }
}

/// Who is asking to retire `grant`, as far as the grant itself can tell (`designates` as
/// for [`grant_allows`]). A retiring principal `SERVICE.REGION.amazonaws.com` (how EBS
/// names itself) also means the service principal `SERVICE.amazonaws.com`.
pub fn retire_authority(
    grant: &Grant,
    caller: &Principal,
    designates: impl Fn(&str) -> bool,
) -> RetireAuthority {
    if grant
        .retiring_principal
        .as_deref()
        .is_some_and(|r| designates(r) || service_region_match(r, caller))
    {
        RetireAuthority::RetiringPrincipal
    } else if designates(&grant.grantee_principal)
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

/// `ec2.us-east-1.amazonaws.com` (how EBS names itself as retiring principal)
/// designates the service principal `ec2.amazonaws.com`.
pub fn service_region_match(named: &str, p: &Principal) -> bool {
    if !p.is_service() {
        return false;
    }
    let Some(prefix) = p.arn.strip_suffix(".amazonaws.com") else {
        return false;
    };
    named
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".amazonaws.com"))
        .is_some_and(|region| !region.is_empty() && !region.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const GRANTEE: &str = "arn:aws:iam::111122223333:role/ec2-infrastructure";
    const RETIRER: &str = "arn:aws:iam::111122223333:user/Retirer";

    fn ec(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn equals(pairs: &[(&str, &str)]) -> Option<GrantConstraints> {
        Some(GrantConstraints {
            encryption_context_equals: Some(ec(pairs)),
            encryption_context_subset: None,
        })
    }

    fn subset(pairs: &[(&str, &str)]) -> Option<GrantConstraints> {
        Some(GrantConstraints {
            encryption_context_equals: None,
            encryption_context_subset: Some(ec(pairs)),
        })
    }

    fn grant(ops: &[GrantOperation], constraints: Option<GrantConstraints>) -> Grant {
        Grant {
            grant_id: new_grant_id(),
            key_arn: KEY.to_string(),
            grantee_principal: GRANTEE.to_string(),
            retiring_principal: Some(RETIRER.to_string()),
            operations: ops.to_vec(),
            constraints,
            name: None,
            issuing_account: "111122223333".to_string(),
            creation_date: 1_700_000_000,
            grant_tokens: Vec::new(),
        }
    }

    fn p(s: &str) -> Principal {
        Principal::parse(s).unwrap()
    }

    #[test]
    fn grant_matching_table() {
        use GrantOperation::*;
        let vol = [("aws:ebs:id", "vol-1")];
        let vol_more = [("aws:ebs:id", "vol-1"), ("extra", "x")];
        let other = [("aws:ebs:id", "vol-2")];
        let session = "arn:aws:sts::111122223333:assumed-role/ec2-infrastructure/i-1";
        #[allow(clippy::type_complexity)]
        let table: Vec<(&str, Grant, &str, GrantOperation, &[(&str, &str)], bool)> = vec![
            (
                "listed op",
                grant(&[Decrypt], None),
                GRANTEE,
                Decrypt,
                &[],
                true,
            ),
            (
                "role session of the grantee",
                grant(&[Decrypt], None),
                session,
                Decrypt,
                &[],
                true,
            ),
            (
                "unlisted op",
                grant(&[Decrypt], None),
                GRANTEE,
                Encrypt,
                &[],
                false,
            ),
            (
                "other principal",
                grant(&[Decrypt], None),
                RETIRER,
                Decrypt,
                &[],
                false,
            ),
            (
                "GenerateDataKey does not cover WithoutPlaintext",
                grant(&[GenerateDataKey], None),
                GRANTEE,
                GenerateDataKeyWithoutPlaintext,
                &[],
                false,
            ),
            (
                "WithoutPlaintext is its own op",
                grant(&[GenerateDataKeyWithoutPlaintext], None),
                GRANTEE,
                GenerateDataKeyWithoutPlaintext,
                &[],
                true,
            ),
            (
                "ReEncryptFrom does not cover ReEncryptTo",
                grant(&[ReEncryptFrom], None),
                GRANTEE,
                ReEncryptTo,
                &[],
                false,
            ),
            (
                "Equals exact",
                grant(&[Decrypt], equals(&vol)),
                GRANTEE,
                Decrypt,
                &vol,
                true,
            ),
            (
                "Equals with extra pair",
                grant(&[Decrypt], equals(&vol)),
                GRANTEE,
                Decrypt,
                &vol_more,
                false,
            ),
            (
                "Equals other value",
                grant(&[Decrypt], equals(&vol)),
                GRANTEE,
                Decrypt,
                &other,
                false,
            ),
            (
                "Equals no context",
                grant(&[Decrypt], equals(&vol)),
                GRANTEE,
                Decrypt,
                &[],
                false,
            ),
            (
                "Equals empty map, no context",
                grant(&[Decrypt], equals(&[])),
                GRANTEE,
                Decrypt,
                &[],
                true,
            ),
            (
                "Subset exact",
                grant(&[Decrypt], subset(&vol)),
                GRANTEE,
                Decrypt,
                &vol,
                true,
            ),
            (
                "Subset with extra pair",
                grant(&[Decrypt], subset(&vol)),
                GRANTEE,
                Decrypt,
                &vol_more,
                true,
            ),
            (
                "Subset other value",
                grant(&[Decrypt], subset(&vol)),
                GRANTEE,
                Decrypt,
                &other,
                false,
            ),
            (
                "Subset no context",
                grant(&[Decrypt], subset(&vol)),
                GRANTEE,
                Decrypt,
                &[],
                false,
            ),
            (
                "Subset keys are case-sensitive",
                grant(&[Decrypt], subset(&[("AWS:EBS:ID", "vol-1")])),
                GRANTEE,
                Decrypt,
                &vol,
                false,
            ),
            (
                "constraint ignored for DescribeKey",
                grant(&[DescribeKey], equals(&vol)),
                GRANTEE,
                DescribeKey,
                &[],
                true,
            ),
            (
                "constraint ignored for RetireGrant",
                grant(&[RetireGrant], subset(&vol)),
                GRANTEE,
                RetireGrant,
                &[],
                true,
            ),
            (
                "constrained grant never allows Sign",
                grant(&[Sign], subset(&vol)),
                GRANTEE,
                Sign,
                &vol,
                false,
            ),
        ];
        for (name, g, who, op, ctx, want) in table {
            let caller = p(who);
            let designates = |n: &str| caller.is_designated_by(n);
            assert_eq!(grant_allows(&g, designates, op, &ec(ctx)), want, "{name}");
        }
    }

    fn child(ops: &[GrantOperation], constraints: Option<GrantConstraints>) -> GrantRequest {
        GrantRequest {
            grantee_principal: GRANTEE.to_string(),
            retiring_principal: None,
            operations: ops.to_vec(),
            constraints,
            name: None,
            grant_tokens: Vec::new(),
        }
    }

    #[test]
    fn strictness_table() {
        use GrantOperation::*;
        let a = [("k", "a")];
        let ab = [("k", "a"), ("l", "b")];
        let parent_ops = [CreateGrant, Decrypt, Encrypt];
        #[allow(clippy::type_complexity)]
        let table: Vec<(&str, Grant, GrantRequest, bool)> = vec![
            (
                "parent lacks CreateGrant",
                grant(&[Decrypt], None),
                child(&[Decrypt], None),
                false,
            ),
            (
                "subset of ops",
                grant(&parent_ops, None),
                child(&[Decrypt], None),
                true,
            ),
            (
                "child may pass on CreateGrant",
                grant(&parent_ops, None),
                child(&[CreateGrant, Decrypt], None),
                true,
            ),
            (
                "op outside the parent",
                grant(&parent_ops, None),
                child(&[ReEncryptFrom], None),
                false,
            ),
            (
                "unconstrained parent, constrained child",
                grant(&parent_ops, None),
                child(&[Decrypt], equals(&a)),
                true,
            ),
            (
                "Equals parent, unconstrained child",
                grant(&parent_ops, equals(&a)),
                child(&[Decrypt], None),
                false,
            ),
            (
                "Equals parent, same Equals",
                grant(&parent_ops, equals(&a)),
                child(&[Decrypt], equals(&a)),
                true,
            ),
            (
                "Equals parent, bigger Equals",
                grant(&parent_ops, equals(&a)),
                child(&[Decrypt], equals(&ab)),
                false,
            ),
            (
                "Equals parent, Subset child",
                grant(&parent_ops, equals(&a)),
                child(&[Decrypt], subset(&a)),
                false,
            ),
            (
                "Subset parent, unconstrained child",
                grant(&parent_ops, subset(&a)),
                child(&[Decrypt], None),
                false,
            ),
            (
                "Subset parent, same Subset",
                grant(&parent_ops, subset(&a)),
                child(&[Decrypt], subset(&a)),
                true,
            ),
            (
                "Subset parent, larger Subset",
                grant(&parent_ops, subset(&a)),
                child(&[Decrypt], subset(&ab)),
                true,
            ),
            (
                "Subset parent, smaller Subset",
                grant(&parent_ops, subset(&ab)),
                child(&[Decrypt], subset(&a)),
                false,
            ),
            (
                "Subset parent, Equals containing it",
                grant(&parent_ops, subset(&a)),
                child(&[Decrypt], equals(&ab)),
                true,
            ),
            (
                "Subset parent, Equals lacking it",
                grant(&parent_ops, subset(&ab)),
                child(&[Decrypt], equals(&a)),
                false,
            ),
            (
                "empty constraints object counts as none",
                grant(&parent_ops, Some(GrantConstraints::default())),
                child(&[Decrypt], None),
                true,
            ),
        ];
        for (name, parent, req, want) in table {
            assert_eq!(is_at_least_as_strict(&parent, &req), want, "{name}");
        }
    }

    #[test]
    fn retire_rights() {
        use GrantOperation::*;
        let authority =
            |g: &Grant, who: &Principal| retire_authority(g, who, |n| who.is_designated_by(n));
        let g = grant(&[Decrypt], None);
        assert_eq!(
            authority(&g, &p(RETIRER)),
            RetireAuthority::RetiringPrincipal
        );
        assert!(authority(&g, &p(RETIRER)).by_grant());
        // Grantee without RetireGrant in the grant: only as an issuing-account principal.
        assert_eq!(
            authority(&g, &p(GRANTEE)),
            RetireAuthority::IssuingAccountPrincipal
        );
        assert!(!authority(&g, &p(GRANTEE)).by_grant());
        let g2 = grant(&[Decrypt, RetireGrant], None);
        assert_eq!(authority(&g2, &p(GRANTEE)), RetireAuthority::Grantee);
        assert!(authority(&g2, &p(GRANTEE)).by_grant());
        assert!(authority(&g, &p("111122223333")).by_grant());
        let outsider = p("arn:aws:iam::444455556666:user/UserA");
        assert_eq!(authority(&g, &outsider), RetireAuthority::None);
        assert!(!authority(&g, &p("444455556666")).by_grant());
        // A cross-account grantee with RetireGrant may retire.
        let mut g3 = grant(&[Decrypt, RetireGrant], None);
        g3.grantee_principal = "arn:aws:iam::444455556666:user/UserA".into();
        assert!(authority(&g3, &outsider).by_grant());
    }

    fn input(ops: &[&str]) -> CreateGrantInput {
        CreateGrantInput {
            key_id: KEY.into(),
            grantee_principal: GRANTEE.into(),
            operations: ops.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn create_grant_validation() {
        let ok = validate_create_grant(&input(&["Encrypt", "Decrypt", "Decrypt"])).unwrap();
        assert_eq!(
            ok.operations,
            vec![GrantOperation::Decrypt, GrantOperation::Encrypt]
        );

        let e = validate_create_grant(&input(&[])).unwrap_err();
        assert_eq!(e.aws_error_code(), "ValidationException");
        assert!(e.to_string().contains("'operations'"), "{e}");

        let e = validate_create_grant(&input(&["Decrypt", "decrypt", "Frobnicate"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("Value '[decrypt, Frobnicate]' at 'operations'"),
            "{e}"
        );
        assert!(
            e.to_string().contains("GenerateDataKeyWithoutPlaintext"),
            "{e}"
        );

        let mut i = input(&["Decrypt"]);
        i.grantee_principal = "bob".into();
        assert!(validate_create_grant(&i)
            .unwrap_err()
            .to_string()
            .contains("granteePrincipal"));
        i.grantee_principal = String::new();
        assert!(validate_create_grant(&i)
            .unwrap_err()
            .to_string()
            .contains("length"));
        i.grantee_principal = "ec2.amazonaws.com".into();
        validate_create_grant(&i).unwrap();

        let mut i = input(&["Decrypt"]);
        i.retiring_principal = Some("arn:aws:iam::1:user/x".into());
        assert!(validate_create_grant(&i)
            .unwrap_err()
            .to_string()
            .contains("retiringPrincipal"));

        let mut i = input(&["Decrypt"]);
        i.name = Some("bad name!".into());
        assert!(validate_create_grant(&i)
            .unwrap_err()
            .to_string()
            .contains("'name'"));
        i.name = Some("aws:ebs/vol-1_x".into());
        validate_create_grant(&i).unwrap();

        let mut i = input(&["Sign"]);
        i.constraints = subset(&[("k", "v")]);
        assert!(validate_create_grant(&i)
            .unwrap_err()
            .to_string()
            .contains("Sign"));
        i.operations = vec!["Decrypt".into(), "DescribeKey".into()];
        assert!(validate_create_grant(&i).unwrap().constraints.is_some());
        i.constraints = subset(&[("", "v")]);
        assert!(validate_create_grant(&i)
            .unwrap_err()
            .to_string()
            .contains("empty encryption context key"));
        i.constraints = Some(GrantConstraints::default());
        assert_eq!(validate_create_grant(&i).unwrap().constraints, None);

        let mut i = input(&["Decrypt"]);
        i.grant_tokens = vec!["t".into(); 11];
        assert!(validate_create_grant(&i)
            .unwrap_err()
            .to_string()
            .contains("grantTokens"));
    }

    #[test]
    fn ids_tokens_and_serde() {
        let id = new_grant_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_grant_id());
        let t1 = new_grant_token(&id).unwrap();
        let t2 = new_grant_token(&id).unwrap();
        assert_ne!(t1, t2);
        assert_eq!(grant_id_from_token(&t1).unwrap(), id);
        for bad in ["", "!!!", "AAAA", &t1[..t1.len() - 2]] {
            let e = grant_id_from_token(bad).unwrap_err();
            assert_eq!(e.aws_error_code(), "InvalidGrantTokenException");
        }
        assert!(new_grant_token("zz").is_err());
        assert_eq!(GrantOperation::from_action("kms:PutKeyPolicy"), None);
        assert_eq!(GrantOperation::from_action("Decrypt"), None);

        let input: CreateGrantInput = serde_json::from_str(
            r#"{"KeyId":"k","GranteePrincipal":"ec2.amazonaws.com","Operations":["Decrypt"],
                "Constraints":{"EncryptionContextSubset":{"aws:ebs:id":"vol-1"}},"Name":"n"}"#,
        )
        .unwrap();
        let req = validate_create_grant(&input).unwrap();
        let mut g = Grant::from_request(&req, id.clone(), KEY, "111122223333", 5);
        assert!(g.same_request(KEY, &req));
        let mut other = req.clone();
        other.operations.push(GrantOperation::Encrypt);
        assert!(!g.same_request(KEY, &other));
        g.grant_tokens.push(t1);
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["GrantId"], id.as_str());
        assert_eq!(v["KeyId"], KEY);
        assert_eq!(v["Operations"][0], "Decrypt");
        assert_eq!(
            v["Constraints"]["EncryptionContextSubset"]["aws:ebs:id"],
            "vol-1"
        );
        let back: Grant = serde_json::from_value(v).unwrap();
        assert_eq!(back, g);
        assert_eq!(g.issuing_account_arn(), "arn:aws:iam::111122223333:root");
        assert_eq!(
            GrantOperation::GenerateDataKeyWithoutPlaintext.action(),
            "kms:GenerateDataKeyWithoutPlaintext"
        );
        for op in GrantOperation::ALL {
            assert_eq!(op.as_str().parse::<GrantOperation>().unwrap(), op);
            assert_eq!(serde_json::to_value(op).unwrap(), op.as_str());
            assert_eq!(GrantOperation::from_action(&op.action()), Some(op));
        }
    }
}
