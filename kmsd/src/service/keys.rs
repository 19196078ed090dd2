//! Key lifecycle: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
//! UpdateKeyDescription, ListResourceTags.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::authz::RequestContext;
use super::{rules, storage_error, Caller, KeyEntry, KeyService};
use crate::keystore::{KeyManager, StoredKey, StoredRotation, StoredVersion, FILE_FORMAT};
use crate::protocol::{
    CreateKeyRequest, KeyListEntry, KeyMetadata, KeyState, KmsError, ListKeysRequest, Response,
    Tag, SYMMETRIC_DEFAULT,
};

pub const MAX_DESCRIPTION: usize = 8192;
pub const MAX_POLICY: usize = 32768;
pub const MAX_TAGS: usize = 50;

/// AWS's `KeyMetadata` for a stored key.
pub fn metadata(key: &KeyEntry) -> KeyMetadata {
    let r = &key.record;
    KeyMetadata {
        key_id: r.key_id.clone(),
        arn: key.arn.clone(),
        aws_account_id: r.account.clone(),
        creation_date_ms: r.creation_date_ms,
        enabled: r.key_state == KeyState::Enabled,
        description: r.description.clone(),
        key_usage: "ENCRYPT_DECRYPT".into(),
        key_state: r.key_state,
        deletion_date_ms: r.deletion_date_ms,
        pending_deletion_window_in_days: None,
        origin: "AWS_KMS".into(),
        key_manager: r.key_manager.as_str().into(),
        key_spec: SYMMETRIC_DEFAULT.into(),
        encryption_algorithms: vec![SYMMETRIC_DEFAULT.into()],
        multi_region: false,
        current_key_material_version: u32::try_from(r.versions.len()).unwrap_or(u32::MAX),
    }
}

/// Validates tags: keys 1..128 characters, values 0..256, no duplicate keys, no
/// `aws:` prefix, at most 50.
pub fn validate_tags(tags: &[Tag]) -> Result<(), KmsError> {
    let tag_err = |m: String| KmsError::new(crate::protocol::ErrorCode::TagException, m);
    if tags.len() > MAX_TAGS {
        return Err(tag_err(format!(
            "A key can have at most {MAX_TAGS} tags; {} were given",
            tags.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tags {
        let klen = t.tag_key.chars().count();
        if klen == 0 || klen > 128 {
            return Err(tag_err(format!(
                "Tag key '{}' must be 1 to 128 characters",
                t.tag_key
            )));
        }
        if t.tag_value.chars().count() > 256 {
            return Err(tag_err(format!(
                "Tag value of '{}' must be at most 256 characters",
                t.tag_key
            )));
        }
        if t.tag_key.starts_with("aws:") {
            return Err(tag_err(format!(
                "Tag key '{}' uses the reserved prefix aws:",
                t.tag_key
            )));
        }
        if !seen.insert(t.tag_key.as_str()) {
            return Err(tag_err(format!("Duplicate tag key '{}'", t.tag_key)));
        }
    }
    Ok(())
}

fn validate_description(d: &str) -> Result<(), KmsError> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(KmsError::constraint(
            "description",
            "Member must have length less than or equal to 8192",
        ));
    }
    Ok(())
}

impl KeyService {
    pub(crate) fn create_key(
        &self,
        caller: &Caller,
        req: CreateKeyRequest,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        if let Some(u) = req.key_usage.as_deref() {
            if u != "ENCRYPT_DECRYPT" {
                return Err(KmsError::new(
                    crate::protocol::ErrorCode::UnsupportedOperationException,
                    format!("KeyUsage {u} is not supported: atrest keys are symmetric ENCRYPT_DECRYPT keys"),
                ));
            }
        }
        if let Some(s) = req.key_spec.as_deref() {
            if s != SYMMETRIC_DEFAULT {
                return Err(KmsError::new(
                    crate::protocol::ErrorCode::UnsupportedOperationException,
                    format!("KeySpec {s} is not supported: atrest keys are SYMMETRIC_DEFAULT"),
                ));
            }
        }
        let description = req.description.unwrap_or_default();
        validate_description(&description)?;
        if let Some(p) = &req.policy {
            if p.is_empty() || p.len() > MAX_POLICY {
                return Err(KmsError::constraint(
                    "policy",
                    "Member must have length between 1 and 32768",
                ));
            }
        }
        validate_tags(&req.tags)?;
        self.authorize(caller, "kms:CreateKey", None, &RequestContext::default())?;

        let key_id = uuid::Uuid::new_v4().to_string();
        // Every key has a policy: the one given (which must not lock its creator
        // out), or AWS's default for the account.
        let policy = match req.policy {
            Some(text) => {
                let arn = crate::keystore::key_arn(&self.config.region, &caller.account, &key_id);
                super::policies::check_new_policy(
                    caller,
                    &arn,
                    &text,
                    req.bypass_policy_lockout_safety_check,
                )?;
                text
            }
            None => crate::policy::defaults::default_key_policy(&caller.account),
        };
        let material: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
        let now = self.now_ms();
        let sealed = self
            .store
            .seal(&key_id, 1, &material)
            .map_err(storage_error)?;
        let record = StoredKey {
            format: FILE_FORMAT,
            key_id: key_id.clone(),
            account: caller.account.clone(),
            region: self.config.region.clone(),
            key_manager: KeyManager::Customer,
            creation_date_ms: now,
            description,
            key_state: KeyState::Enabled,
            deletion_date_ms: None,
            pending_window_days: None,
            policy: Some(policy),
            tags: req.tags,
            rotation: StoredRotation::default(),
            versions: vec![StoredVersion {
                version: 1,
                created_ms: now,
                rotation_type: None,
                sealed_material: sealed,
            }],
        };
        let entry = KeyEntry::new(record, Arc::new(vec![crate::blob::cipher(&material)]));
        *key_arn = Some(entry.arn.clone());
        // A new key's file is new: no other change can race with it, so creations
        // persist in parallel without taking the writer lock.
        let entry = self.commit_key(entry)?;
        Ok(Response::KeyMetadata(metadata(&entry)))
    }

    pub(crate) fn describe_key(
        &self,
        caller: &Caller,
        key_id: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        // AWS documents DescribeKey on a predefined `alias/aws/...` as creating the key.
        self.ensure_managed_key(caller, key_id)?;
        let key = self.authorized_key(caller, key_id, "kms:DescribeKey", key_arn)?;
        Ok(Response::KeyMetadata(metadata(&key)))
    }

    pub(crate) fn list_keys(
        &self,
        caller: &Caller,
        req: ListKeysRequest,
    ) -> Result<Response, KmsError> {
        let limit = page_limit(req.limit)?;
        self.authorize(caller, "kms:ListKeys", None, &RequestContext::default())?;
        let state = self.read();
        let mut keys: Vec<KeyListEntry> = state
            .keys
            .values()
            .filter(|k| k.record.account == caller.account)
            .map(|k| KeyListEntry {
                key_id: k.record.key_id.clone(),
                key_arn: k.arn.clone(),
            })
            .collect();
        drop(state);
        keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let (keys, next_marker) = paginate(keys, req.marker.as_deref(), limit, |k| &k.key_id)?;
        Ok(Response::ListKeys {
            truncated: next_marker.is_some(),
            keys,
            next_marker,
        })
    }

    /// Shared shape of the small state-changing operations: resolve, authorize,
    /// check the state rule, change the record, persist, reply.
    /// Resolves `key_id` for `caller`, names the key in the trail record (`key_arn`,
    /// even when the check then refuses), and checks `action` on it: the first steps of
    /// every management call on one key.
    pub(crate) fn authorized_key(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let key = self.resolve(caller, key_id)?;
        *key_arn = Some(key.arn.clone());
        self.authorize(caller, action, Some(&key), &RequestContext::default())?;
        Ok(key)
    }

    pub(crate) fn change_key(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
        key_arn: &mut Option<String>,
        change: impl FnOnce(&mut StoredKey) -> Result<(), KmsError>,
    ) -> Result<Arc<KeyEntry>, KmsError> {
        let _w = self.writer();
        let key = self.authorized_key(caller, key_id, action, key_arn)?;
        rules::check(action, &key)?;
        let mut record = key.record.clone();
        change(&mut record)?;
        if record == key.record {
            return Ok(key);
        }
        self.commit_key(key.with_record(record))
    }

    pub(crate) fn enable_key(
        &self,
        caller: &Caller,
        key_id: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        self.change_key(caller, key_id, "kms:EnableKey", key_arn, |r| {
            r.key_state = KeyState::Enabled;
            Ok(())
        })?;
        Ok(Response::Empty)
    }

    pub(crate) fn disable_key(
        &self,
        caller: &Caller,
        key_id: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        self.change_key(caller, key_id, "kms:DisableKey", key_arn, |r| {
            r.key_state = KeyState::Disabled;
            Ok(())
        })?;
        Ok(Response::Empty)
    }

    pub(crate) fn update_key_description(
        &self,
        caller: &Caller,
        key_id: &str,
        description: String,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        validate_description(&description)?;
        self.change_key(caller, key_id, "kms:UpdateKeyDescription", key_arn, |r| {
            r.description = description;
            Ok(())
        })?;
        Ok(Response::Empty)
    }

    pub(crate) fn list_resource_tags(
        &self,
        caller: &Caller,
        key_id: &str,
        key_arn: &mut Option<String>,
    ) -> Result<Response, KmsError> {
        let key = self.authorized_key(caller, key_id, "kms:ListResourceTags", key_arn)?;
        Ok(Response::ListResourceTags {
            tags: key.record.tags.clone(),
        })
    }
}

/// `Limit` of list operations: 1..1000, default 100.
pub fn page_limit(limit: Option<u32>) -> Result<usize, KmsError> {
    match limit {
        None => Ok(100),
        Some(0) => Err(KmsError::constraint(
            "limit",
            "Member must have value greater than or equal to 1",
        )),
        Some(n) if n > 1000 => Err(KmsError::constraint(
            "limit",
            "Member must have value less than or equal to 1000",
        )),
        Some(n) => Ok(n as usize),
    }
}

/// Cuts a sorted list at `marker` (the last item of the previous page, exclusive)
/// and returns at most `limit` items and the marker of the next page.
pub fn paginate<T>(
    items: Vec<T>,
    marker: Option<&str>,
    limit: usize,
    key: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, Option<String>), KmsError> {
    let start = match marker {
        None => 0,
        Some(m) => {
            if m.is_empty() {
                return Err(KmsError::new(
                    crate::protocol::ErrorCode::InvalidMarkerException,
                    "The marker is not valid",
                ));
            }
            items.partition_point(|i| key(i) <= m)
        }
    };
    let mut page: Vec<T> = items.into_iter().skip(start).collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|i| key(i).to_string())
    } else {
        None
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{alice, fixture};
    use super::*;
    use crate::protocol::{ErrorCode, Request};

    #[test]
    fn create_describe_list_enable_disable() {
        let f = fixture();
        let c = alice();
        let Response::KeyMetadata(m) = f
            .svc
            .handle(
                &c,
                Request::CreateKey(CreateKeyRequest {
                    description: Some("test key".into()),
                    ..Default::default()
                }),
            )
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(m.key_state, KeyState::Enabled);
        assert_eq!(
            m.arn,
            format!("arn:aws:kms:us-east-1:111122223333:key/{}", m.key_id)
        );
        let Response::ListKeys { keys, .. } = f
            .svc
            .handle(&c, Request::ListKeys(ListKeysRequest::default()))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(keys.len(), 1);
        f.svc
            .handle(
                &c,
                Request::DisableKey {
                    key_id: m.key_id.clone(),
                },
            )
            .unwrap();
        let Response::KeyMetadata(d) = f
            .svc
            .handle(
                &c,
                Request::DescribeKey {
                    key_id: m.arn.clone(),
                    grant_tokens: vec![],
                },
            )
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(d.key_state, KeyState::Disabled);
        assert!(!d.enabled);
        // Every request was audited.
        assert_eq!(f.sink.take().len(), 4);
    }

    #[test]
    fn audit_failure_refuses() {
        let f = fixture();
        f.sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = f
            .svc
            .handle(&alice(), Request::ListKeys(ListKeysRequest::default()))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::KMSInternalException);
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let (p1, m1) = paginate(items.clone(), None, 2, |s| s).unwrap();
        assert_eq!(p1, vec!["k0", "k1"]);
        let (p2, m2) = paginate(items.clone(), m1.as_deref(), 2, |s| s).unwrap();
        assert_eq!(p2, vec!["k2", "k3"]);
        let (p3, m3) = paginate(items, m2.as_deref(), 2, |s| s).unwrap();
        assert_eq!(p3, vec!["k4"]);
        assert!(m3.is_none());
    }
}
