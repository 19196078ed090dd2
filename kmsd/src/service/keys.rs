//! Key lifecycle: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey,
//! UpdateKeyDescription, and tags: ListResourceTags, TagResource, UntagResource.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::authz::RequestContext;
use super::{rules, storage_error, Call, Caller, KeyEntry, KeyService};
use crate::api::{
    CreateKeyRequest, CreateKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, Empty, EnableKeyRequest, ErrorCode, Handle, KeyListEntry, KeyMetadata,
    KeyState, KmsError, ListKeysRequest, ListKeysResponse, ListResourceTagsRequest,
    ListResourceTagsResponse, Tag, TagResourceRequest, Timestamp, UntagResourceRequest,
    UpdateKeyDescriptionRequest, SYMMETRIC_DEFAULT,
};
use crate::keystore::{KeyManager, StoredKey, StoredRotation, StoredVersion, FILE_FORMAT};

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
        creation_date: Timestamp::from_millis(r.creation_date_ms),
        enabled: r.key_state == KeyState::Enabled,
        description: r.description.clone(),
        key_usage: "ENCRYPT_DECRYPT".into(),
        key_state: r.key_state,
        deletion_date: r.deletion_date_ms.map(Timestamp::from_millis),
        pending_deletion_window_in_days: None,
        origin: "AWS_KMS".into(),
        key_manager: r.key_manager.as_str().into(),
        customer_master_key_spec: SYMMETRIC_DEFAULT.into(),
        key_spec: SYMMETRIC_DEFAULT.into(),
        encryption_algorithms: vec![SYMMETRIC_DEFAULT.into()],
        multi_region: false,
        current_key_material_version: u32::try_from(r.versions.len()).unwrap_or(u32::MAX),
    }
}

/// Validates tags: keys 1..128 characters, values 0..256, no duplicate keys, no
/// `aws:` prefix, at most 50.
pub fn validate_tags(tags: &[Tag]) -> Result<(), KmsError> {
    let tag_err = |m: String| KmsError::new(ErrorCode::TagException, m);
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

/// `UnsupportedOperationException` unless an optional member has its only value.
fn only(member: &str, given: Option<&str>, supported: &str, why: &str) -> Result<(), KmsError> {
    match given {
        Some(v) if v != supported => Err(KmsError::new(
            ErrorCode::UnsupportedOperationException,
            format!("{member} {v} is not supported: {why}"),
        )),
        _ => Ok(()),
    }
}

impl Handle<Call<'_>, CreateKeyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: CreateKeyRequest,
    ) -> Result<CreateKeyResponse, KmsError> {
        let caller = cx.caller;
        let symmetric = "atrest keys are symmetric ENCRYPT_DECRYPT keys";
        only(
            "KeyUsage",
            req.key_usage.as_deref(),
            "ENCRYPT_DECRYPT",
            symmetric,
        )?;
        only(
            "KeySpec",
            req.key_spec.as_deref(),
            SYMMETRIC_DEFAULT,
            "atrest keys are SYMMETRIC_DEFAULT",
        )?;
        only(
            "CustomerMasterKeySpec",
            req.customer_master_key_spec.as_deref(),
            SYMMETRIC_DEFAULT,
            "atrest keys are SYMMETRIC_DEFAULT",
        )?;
        only(
            "Origin",
            req.origin.as_deref(),
            "AWS_KMS",
            "atrest makes its own key material",
        )?;
        if req.multi_region == Some(true) {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                "MultiRegion keys are not supported: atrest is one Region",
            ));
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
            None => crate::api::default_policies::default_key_policy(&caller.account),
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
            tags: req.tags.into_iter().map(Into::into).collect(),
            rotation: StoredRotation::default(),
            versions: vec![StoredVersion {
                version: 1,
                created_ms: now,
                rotation_type: None,
                sealed_material: sealed,
            }],
        };
        let entry = KeyEntry::new(record, Arc::new(vec![crate::blob::cipher(&material)]));
        cx.key_arn = Some(entry.arn.clone());
        // A new key's file is new: no other change can race with it, so creations
        // persist in parallel without taking the writer lock.
        let entry = self.commit_key(entry)?;
        Ok(CreateKeyResponse {
            key_metadata: metadata(&entry),
        })
    }
}

impl Handle<Call<'_>, DescribeKeyRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: DescribeKeyRequest,
    ) -> Result<DescribeKeyResponse, KmsError> {
        // AWS documents DescribeKey on a predefined `alias/aws/...` as creating the key.
        self.ensure_managed_key(cx.caller, &req.key_id)?;
        let key =
            self.authorized_key(cx.caller, &req.key_id, "kms:DescribeKey", &mut cx.key_arn)?;
        Ok(DescribeKeyResponse {
            key_metadata: metadata(&key),
        })
    }
}

impl Handle<Call<'_>, ListKeysRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: ListKeysRequest,
    ) -> Result<ListKeysResponse, KmsError> {
        let caller = cx.caller;
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
        Ok(ListKeysResponse {
            truncated: next_marker.is_some(),
            keys,
            next_marker,
        })
    }
}

impl KeyService {
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
}

impl Handle<Call<'_>, EnableKeyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: EnableKeyRequest) -> Result<Empty, KmsError> {
        self.change_key(
            cx.caller,
            &req.key_id,
            "kms:EnableKey",
            &mut cx.key_arn,
            |r| {
                r.key_state = KeyState::Enabled;
                Ok(())
            },
        )?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, DisableKeyRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: DisableKeyRequest) -> Result<Empty, KmsError> {
        self.change_key(
            cx.caller,
            &req.key_id,
            "kms:DisableKey",
            &mut cx.key_arn,
            |r| {
                r.key_state = KeyState::Disabled;
                Ok(())
            },
        )?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, UpdateKeyDescriptionRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: UpdateKeyDescriptionRequest,
    ) -> Result<Empty, KmsError> {
        validate_description(&req.description)?;
        let description = req.description;
        self.change_key(
            cx.caller,
            &req.key_id,
            "kms:UpdateKeyDescription",
            &mut cx.key_arn,
            |r| {
                r.description = description;
                Ok(())
            },
        )?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, ListResourceTagsRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        req: ListResourceTagsRequest,
    ) -> Result<ListResourceTagsResponse, KmsError> {
        let limit = page_limit_max(req.limit, MAX_TAGS)?;
        let key = self.authorized_key(
            cx.caller,
            &req.key_id,
            "kms:ListResourceTags",
            &mut cx.key_arn,
        )?;
        let tags: Vec<Tag> = key.record.tags.iter().map(Tag::from).collect();
        let (tags, next_marker) =
            paginate_in_order(tags, req.marker.as_deref(), limit, |t| &t.tag_key)?;
        Ok(ListResourceTagsResponse {
            truncated: next_marker.is_some(),
            tags,
            next_marker,
        })
    }
}

impl Handle<Call<'_>, TagResourceRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: TagResourceRequest) -> Result<Empty, KmsError> {
        validate_tags(&req.tags)?;
        self.change_key(
            cx.caller,
            &req.key_id,
            "kms:TagResource",
            &mut cx.key_arn,
            |r| {
                let mut tags: Vec<Tag> = r.tags.iter().map(Tag::from).collect();
                for t in req.tags {
                    match tags.iter_mut().find(|x| x.tag_key == t.tag_key) {
                        Some(x) => x.tag_value = t.tag_value,
                        None => tags.push(t),
                    }
                }
                validate_tags(&tags)?;
                r.tags = tags.into_iter().map(Into::into).collect();
                Ok(())
            },
        )?;
        Ok(Empty {})
    }
}

impl Handle<Call<'_>, UntagResourceRequest> for KeyService {
    fn handle(&self, cx: &mut Call<'_>, req: UntagResourceRequest) -> Result<Empty, KmsError> {
        if let Some(k) = req
            .tag_keys
            .iter()
            .find(|k| k.is_empty() || k.chars().count() > 128)
        {
            return Err(KmsError::new(
                ErrorCode::TagException,
                format!("Tag key '{k}' must be 1 to 128 characters"),
            ));
        }
        self.change_key(
            cx.caller,
            &req.key_id,
            "kms:UntagResource",
            &mut cx.key_arn,
            |r| {
                r.tags.retain(|t| !req.tag_keys.contains(&t.tag_key));
                Ok(())
            },
        )?;
        Ok(Empty {})
    }
}

/// `Limit` of list operations: 1..1000, default 100.
pub fn page_limit(limit: Option<i32>) -> Result<usize, KmsError> {
    match limit {
        None => Ok(100),
        Some(n) if n < 1 => Err(KmsError::constraint(
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

/// `Limit` of a list whose default and maximum is `max` (ListResourceTags: 50).
pub fn page_limit_max(limit: Option<i32>, max: usize) -> Result<usize, KmsError> {
    match limit {
        None => Ok(max),
        Some(n) if usize::try_from(n).is_ok_and(|n| n > max) => Err(KmsError::constraint(
            "limit",
            &format!("Member must have value less than or equal to {max}"),
        )),
        other => page_limit(other),
    }
}

/// Cuts a list kept in its own order (not sorted) after the item whose key is
/// `marker`; like [`paginate`] otherwise.
pub fn paginate_in_order<T>(
    items: Vec<T>,
    marker: Option<&str>,
    limit: usize,
    key: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, Option<String>), KmsError> {
    let start = match marker {
        None => 0,
        Some(m) => match items.iter().position(|i| key(i) == m) {
            Some(p) => p + 1,
            None => return Err(invalid_marker()),
        },
    };
    Ok(page_from(items, start, limit, key))
}

/// At most `limit` items from `start`, and the marker of the next page if any.
fn page_from<T>(
    items: Vec<T>,
    start: usize,
    limit: usize,
    key: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<String>) {
    let mut page: Vec<T> = items.into_iter().skip(start).collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|i| key(i).to_string())
    } else {
        None
    };
    (page, next)
}

fn invalid_marker() -> KmsError {
    KmsError::new(ErrorCode::InvalidMarkerException, "The marker is not valid")
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
                return Err(invalid_marker());
            }
            items.partition_point(|i| key(i) <= m)
        }
    };
    Ok(page_from(items, start, limit, key))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{alice, fixture};
    use super::*;
    use crate::protocol::*;
    use crate::protocol::{ErrorCode, Request};

    #[test]
    fn create_describe_list_enable_disable() {
        let f = fixture();
        let c = alice();
        let Response::CreateKey(CreateKeyResponse { key_metadata: m }) = f
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
        let Response::ListKeys(ListKeysResponse { keys, .. }) = f
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
                Request::DisableKey(DisableKeyRequest {
                    key_id: m.key_id.clone(),
                }),
            )
            .unwrap();
        let Response::DescribeKey(DescribeKeyResponse { key_metadata: d }) = f
            .svc
            .handle(
                &c,
                Request::DescribeKey(DescribeKeyRequest {
                    key_id: m.arn.clone(),
                    grant_tokens: vec![],
                }),
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
