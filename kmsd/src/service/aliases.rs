//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases, and the name rules.

use super::authz::RequestContext;
use super::keys::{page_limit, paginate};
use super::resolve::{alias_arn, parse_key_ref, KeyRef};
use super::{rules, storage_error, Call, Caller, KeyService};
use crate::api::{
    AliasListEntry, CreateAliasRequest, DeleteAliasRequest, Empty, ErrorCode, Handle, KmsError,
    ListAliasesRequest, ListAliasesResponse, Timestamp, UpdateAliasRequest,
};
use crate::keystore::StoredAlias;

pub const ALIAS_PREFIX: &str = "alias/";
pub const RESERVED_PREFIX: &str = "alias/aws/";
pub const MAX_ALIAS_LEN: usize = 256;

/// Checks an alias name: `alias/` prefix, `[A-Za-z0-9/_-]`, at most 256
/// characters, not `alias/aws/...` (reserved for AWS managed keys; AWS answers
/// that with an authorization error, atrest with `ValidationException`).
pub fn validate_alias_name(name: &str) -> Result<(), KmsError> {
    if name.len() > MAX_ALIAS_LEN {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must have length less than or equal to 256"
        )));
    }
    if !name.starts_with(ALIAS_PREFIX) {
        return Err(KmsError::validation(
            "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html",
        ));
    }
    if name.len() == ALIAS_PREFIX.len()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_' || b == b'-')
    {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$"
        )));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(KmsError::validation(
            "Alias names that begin with alias/aws/ are reserved for AWS managed keys.",
        ));
    }
    Ok(())
}

/// An alias target must name a key (ID or ARN), not another alias.
fn check_target_is_key(target: &str) -> Result<(), KmsError> {
    match parse_key_ref(target)? {
        KeyRef::KeyId(_) | KeyRef::KeyArn { .. } => Ok(()),
        KeyRef::AliasName(_) | KeyRef::AliasArn { .. } => Err(KmsError::validation(
            "Aliases must refer to keys. Not aliases",
        )),
    }
}

impl KeyService {
    fn alias_not_found(&self, caller: &Caller, name: &str) -> KmsError {
        KmsError::not_found(format!(
            "Alias {} is not found.",
            alias_arn(&self.config.region, &caller.account, name)
        ))
    }
}

impl Handle<Call<'_>, CreateAliasRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: CreateAliasRequest) -> Result<Empty, KmsError> {
        let (caller, alias_name, target_key_id) = (
            cx.caller,
            req.alias_name.as_str(),
            req.target_key_id.as_str(),
        );
        validate_alias_name(alias_name)?;
        check_target_is_key(target_key_id)?;
        let _w = self.writer();
        let key = self.resolve(caller, target_key_id)?;
        cx.key_arn = Some(key.arn.clone());
        if key.record.account != caller.account {
            return Err(KmsError::not_found(format!(
                "Key '{}' does not exist",
                key.arn
            )));
        }
        self.authorize(
            caller,
            "kms:CreateAlias",
            Some(&key),
            &RequestContext::default(),
        )?;
        rules::check("kms:CreateAlias", &key)?;
        let id = (caller.account.clone(), alias_name.to_string());
        let mut aliases = self.read().aliases.clone();
        if aliases.contains_key(&id) {
            return Err(KmsError::new(
                ErrorCode::AlreadyExistsException,
                format!(
                    "An alias with the name {} already exists",
                    alias_arn(&self.config.region, &caller.account, alias_name)
                ),
            ));
        }
        aliases.insert(
            id,
            StoredAlias::new(
                &caller.account,
                &self.config.region,
                alias_name,
                &key.record.key_id,
                self.now_ms(),
            ),
        );
        self.commit_aliases(aliases)?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, UpdateAliasRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: UpdateAliasRequest) -> Result<Empty, KmsError> {
        let (caller, alias_name, target_key_id) = (
            cx.caller,
            req.alias_name.as_str(),
            req.target_key_id.as_str(),
        );
        validate_alias_name(alias_name)?;
        check_target_is_key(target_key_id)?;
        let _w = self.writer();
        let id = (caller.account.clone(), alias_name.to_string());
        let mut aliases = self.read().aliases.clone();
        if !aliases.contains_key(&id) {
            return Err(self.alias_not_found(caller, alias_name));
        }
        let key = self.resolve(caller, target_key_id)?;
        cx.key_arn = Some(key.arn.clone());
        if key.record.account != caller.account {
            return Err(KmsError::not_found(format!(
                "Key '{}' does not exist",
                key.arn
            )));
        }
        self.authorize(
            caller,
            "kms:UpdateAlias",
            Some(&key),
            &RequestContext::default(),
        )?;
        rules::check("kms:UpdateAlias", &key)?;
        let now = self.now_ms();
        if let Some(a) = aliases.get_mut(&id) {
            a.target_key_id = key.record.key_id.clone();
            a.last_updated_date_ms = now;
        }
        self.commit_aliases(aliases)?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, DeleteAliasRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: DeleteAliasRequest) -> Result<Empty, KmsError> {
        let (caller, alias_name) = (cx.caller, req.alias_name.as_str());
        validate_alias_name(alias_name)?;
        let _w = self.writer();
        let id = (caller.account.clone(), alias_name.to_string());
        let mut aliases = self.read().aliases.clone();
        let Some(alias) = aliases.remove(&id) else {
            return Err(self.alias_not_found(caller, alias_name));
        };
        let key = self.read().keys.get(&alias.target_key_id).cloned();
        if let Some(k) = &key {
            cx.key_arn = Some(k.arn.clone());
        }
        self.authorize(
            caller,
            "kms:DeleteAlias",
            key.as_deref(),
            &RequestContext::default(),
        )?;
        self.commit_aliases(aliases)?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, ListAliasesRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: ListAliasesRequest,
    ) -> Result<ListAliasesResponse, KmsError> {
        let caller = cx.caller;
        let limit = page_limit(req.limit)?;
        let filter = match &req.key_id {
            Some(k) => {
                check_target_is_key(k)?;
                let key = self.resolve(caller, k)?;
                cx.key_arn = Some(key.arn.clone());
                self.authorize(
                    caller,
                    "kms:ListAliases",
                    Some(&key),
                    &RequestContext::default(),
                )?;
                Some(key.record.key_id.clone())
            }
            None => {
                self.authorize(caller, "kms:ListAliases", None, &RequestContext::default())?;
                None
            }
        };
        let state = self.read();
        let aliases: Vec<AliasListEntry> = state
            .aliases
            .values()
            .filter(|a| a.account == caller.account)
            .filter(|a| filter.as_ref().is_none_or(|k| &a.target_key_id == k))
            .map(|a| AliasListEntry {
                alias_name: a.alias_name.clone(),
                alias_arn: alias_arn(&a.region, &a.account, &a.alias_name),
                target_key_id: a.target_key_id.clone(),
                creation_date: Timestamp::from_millis(a.creation_date_ms),
                last_updated_date: Timestamp::from_millis(a.last_updated_date_ms),
            })
            .collect();
        drop(state);
        let (aliases, next_marker) =
            paginate(aliases, req.marker.as_deref(), limit, |a| &a.alias_name)?;
        Ok(ListAliasesResponse {
            truncated: next_marker.is_some(),
            aliases,
            next_marker,
        })
    }
}

impl KeyService {
    /// Persists the whole alias table and swaps it in. Call with `writer()` held.
    pub(crate) fn commit_aliases(
        &self,
        aliases: std::collections::BTreeMap<super::AliasKey, StoredAlias>,
    ) -> Result<(), KmsError> {
        self.store
            .write_aliases(aliases.values())
            .map_err(storage_error)?;
        self.apply(|s| s.aliases = aliases);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::*;

    #[test]
    fn alias_name_rules() {
        assert!(validate_alias_name("alias/my-key_1/x").is_ok());
        let e = validate_alias_name("my-key").unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationException);
        assert!(e
            .message
            .starts_with("Alias must start with the prefix \"alias/\"."));
        for bad in ["alias/", "alias/a b", "alias/é", "alias/a:b", "alias/a.b"] {
            let e = validate_alias_name(bad).unwrap_err();
            assert!(
                e.message.contains("regular expression"),
                "{bad}: {}",
                e.message
            );
        }
        let long = format!("alias/{}", "a".repeat(251));
        assert_eq!(long.len(), 257);
        assert!(validate_alias_name(&long)
            .unwrap_err()
            .message
            .contains("less than or equal to 256"));
        assert!(validate_alias_name(&long[..256]).is_ok());
        assert!(validate_alias_name("alias/aws/ebs")
            .unwrap_err()
            .message
            .contains("reserved"));
        assert!(validate_alias_name("alias/awsome").is_ok());
    }

    #[test]
    fn targets_must_be_keys() {
        assert!(check_target_is_key("alias/x").is_err());
        assert!(check_target_is_key("1234abcd-12ab-34cd-56ef-1234567890ab").is_ok());
    }
}
