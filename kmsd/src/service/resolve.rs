//! Naming a key: every operation that takes a key accepts a key ID, a key ARN, an
//! alias name or an alias ARN. Parsing is pure ([`parse_key_ref`]); lookup reads the
//! in-memory state.

use std::sync::Arc;

use super::{Caller, KeyEntry, KeyService, State};
use crate::protocol::KmsError;

/// A parsed key identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// A bare key ID, resolved in the caller's account.
    KeyId(&'a str),
    KeyArn {
        region: &'a str,
        account: &'a str,
        key_id: &'a str,
    },
    /// `alias/NAME`, resolved in the caller's account.
    AliasName(&'a str),
    AliasArn {
        region: &'a str,
        account: &'a str,
        /// `alias/NAME`.
        alias_name: &'a str,
    },
}

fn invalid_key_id(input: &str) -> KmsError {
    KmsError::not_found(format!("Invalid keyId '{input}'"))
}

fn is_key_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

/// Parses a key identifier; a malformed one is `NotFoundException` `Invalid keyId 'X'`.
pub fn parse_key_ref(input: &str) -> Result<KeyRef<'_>, KmsError> {
    if input.is_empty() {
        return Err(KmsError::constraint(
            "keyId",
            "Member must have length greater than or equal to 1",
        ));
    }
    if input.len() > 2048 {
        return Err(KmsError::constraint(
            "keyId",
            "Member must have length less than or equal to 2048",
        ));
    }
    if let Some(rest) = input.strip_prefix("arn:aws:kms:") {
        let mut parts = rest.splitn(3, ':');
        let (Some(region), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid_key_id(input));
        };
        if region.is_empty() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid_key_id(input));
        }
        if let Some(key_id) = resource.strip_prefix("key/") {
            if is_key_id(key_id) {
                return Ok(KeyRef::KeyArn {
                    region,
                    account,
                    key_id,
                });
            }
        } else if resource.starts_with("alias/") && resource.len() > "alias/".len() {
            return Ok(KeyRef::AliasArn {
                region,
                account,
                alias_name: resource,
            });
        }
        return Err(invalid_key_id(input));
    }
    if input.starts_with("alias/") && input.len() > "alias/".len() {
        return Ok(KeyRef::AliasName(input));
    }
    if is_key_id(input) {
        return Ok(KeyRef::KeyId(input));
    }
    Err(invalid_key_id(input))
}

/// `arn:aws:kms:REGION:ACCOUNT:alias/NAME`.
pub fn alias_arn(region: &str, account: &str, alias_name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{alias_name}")
}

impl KeyService {
    /// Finds the key `input` names, from `caller`'s point of view.
    pub(crate) fn resolve_in(
        &self,
        state: &State,
        caller: &Caller,
        input: &str,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let region = self.config.region.as_str();
        let (region, account, key_id) = match parse_key_ref(input)? {
            KeyRef::KeyId(id) => (region, caller.account.as_str(), id.to_string()),
            KeyRef::KeyArn {
                region,
                account,
                key_id,
            } => (region, account, key_id.to_string()),
            KeyRef::AliasName(name) => {
                return self.resolve_alias(state, region, &caller.account, name)
            }
            KeyRef::AliasArn {
                region,
                account,
                alias_name,
            } => return self.resolve_alias(state, region, account, alias_name),
        };
        match state.keys.get(&key_id) {
            Some(k) if k.record.account == account && k.record.region == region => {
                Ok(Arc::clone(k))
            }
            _ => Err(KmsError::not_found(format!(
                "Key '{}' does not exist",
                crate::keystore::key_arn(region, account, &key_id)
            ))),
        }
    }

    fn resolve_alias(
        &self,
        state: &State,
        region: &str,
        account: &str,
        alias_name: &str,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let not_found = || {
            KmsError::not_found(format!(
                "Alias {} is not found.",
                alias_arn(region, account, alias_name)
            ))
        };
        if region != self.config.region {
            return Err(not_found());
        }
        let alias = state
            .aliases
            .get(&(account.to_string(), alias_name.to_string()))
            .ok_or_else(not_found)?;
        state
            .keys
            .get(&alias.target_key_id)
            .cloned()
            .ok_or_else(not_found)
    }

    /// [`Self::resolve_in`] on the current state.
    pub(crate) fn resolve(&self, caller: &Caller, input: &str) -> Result<Arc<KeyEntry>, KmsError> {
        let state = self.read();
        self.resolve_in(&state, caller, input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn forms() {
        assert_eq!(parse_key_ref(ID).unwrap(), KeyRef::KeyId(ID));
        let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{ID}");
        assert_eq!(
            parse_key_ref(&arn).unwrap(),
            KeyRef::KeyArn {
                region: "us-east-1",
                account: "111122223333",
                key_id: ID
            }
        );
        assert_eq!(
            parse_key_ref("alias/my-key").unwrap(),
            KeyRef::AliasName("alias/my-key")
        );
        assert_eq!(
            parse_key_ref("arn:aws:kms:us-east-1:111122223333:alias/my-key").unwrap(),
            KeyRef::AliasArn {
                region: "us-east-1",
                account: "111122223333",
                alias_name: "alias/my-key"
            }
        );
    }

    #[test]
    fn malformed_is_invalid_key_id() {
        for bad in [
            "nope",
            "1234",
            "alias/",
            "arn:aws:kms:us-east-1:111122223333:key/nope",
            "arn:aws:kms:us-east-1:1:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:",
        ] {
            let e = parse_key_ref(bad).unwrap_err();
            assert_eq!(e.message, format!("Invalid keyId '{bad}'"), "{bad}");
        }
        assert!(parse_key_ref("").unwrap_err().message.contains("keyId"));
    }
}
