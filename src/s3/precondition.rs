//! Conditional writes (pure): `If-None-Match: *` and `If-Match` on PutObject and
//! CompleteMultipartUpload, `If-Match` on DeleteObject, decided as S3 decides them.
//!
//! A write's condition is checked twice: once before any byte of the body is read (or
//! any data key made), so a doomed upload fails fast, and again at the commit point,
//! under the store's commit lock, against whatever object is current then. The second
//! check is the one that counts: of many writers racing with `If-None-Match: *` exactly
//! one commits, and every other gets 412, however their bodies interleave.
//!
//! | condition | before the body | at the commit |
//! |---|---|---|
//! | `If-None-Match: *`, an object exists | 412 `PreconditionFailed` | 412 |
//! | `If-Match`, no object | 404 `NoSuchKey` | 409 `ConditionalRequestConflict` (deleted meanwhile) |
//! | `If-Match`, another ETag | 412 | 412 |
//!
//! ETags compare by value, quoted or not; `If-Match: *` matches any existing object.

use super::meta::ObjectMeta;
use super::store::StoreError;

/// What a write requires of the object it replaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteCondition {
    /// No condition: the write replaces whatever is there.
    #[default]
    Unconditional,
    /// `If-None-Match: *`: only if no object has the key.
    Absent,
    /// `If-Match`: only if the object exists and has this ETag (`None`: `*`, any ETag).
    Matches(Option<String>),
}

/// When a condition is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the body is read: the object the client saw.
    Before,
    /// Under the commit lock: the object the write would replace.
    Commit,
}

impl WriteCondition {
    /// Decides the condition against the current object (`None`: no object has the key).
    pub fn check(&self, current: Option<&ObjectMeta>, stage: Stage) -> Result<(), StoreError> {
        match (self, current) {
            (WriteCondition::Unconditional, _) | (WriteCondition::Absent, None) => Ok(()),
            (WriteCondition::Absent, Some(_)) => {
                Err(StoreError::PreconditionFailed("If-None-Match"))
            }
            (WriteCondition::Matches(_), None) => Err(match stage {
                Stage::Before => StoreError::NoSuchKey,
                Stage::Commit => StoreError::ConditionalRequestConflict,
            }),
            (WriteCondition::Matches(None), Some(_)) => Ok(()),
            (WriteCondition::Matches(Some(want)), Some(m)) => {
                if want.trim_matches('"') == m.etag.trim_matches('"') {
                    Ok(())
                } else {
                    Err(StoreError::PreconditionFailed("If-Match"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::meta::{CannedAcl, KeyProtection};

    fn object(etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            data_file: String::new(),
            size: 1,
            etag: etag.into(),
            content_type: String::new(),
            last_modified: String::new(),
            owner_account: String::new(),
            acl: CannedAcl::Private,
            protection: KeyProtection::StoreKey {
                wrapped_key: Vec::new(),
            },
            nonce_prefix: None,
            chunk_size: 0,
            user_metadata: Default::default(),
            multipart: None,
            checksum: None,
        }
    }

    fn code(r: Result<(), StoreError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(StoreError::PreconditionFailed(_)) => "412",
            Err(StoreError::NoSuchKey) => "404",
            Err(StoreError::ConditionalRequestConflict) => "409",
            Err(_) => "other",
        }
    }

    #[test]
    fn if_none_match_star_admits_only_a_new_key() {
        let c = WriteCondition::Absent;
        let o = object("\"abc\"");
        for stage in [Stage::Before, Stage::Commit] {
            assert_eq!(code(c.check(None, stage)), "ok");
            assert_eq!(code(c.check(Some(&o), stage)), "412");
        }
    }

    #[test]
    fn if_match_needs_the_object_and_its_etag() {
        let o = object("\"abc\"");
        for want in ["abc", "\"abc\""] {
            let c = WriteCondition::Matches(Some(want.into()));
            assert_eq!(code(c.check(Some(&o), Stage::Before)), "ok");
            assert_eq!(code(c.check(Some(&o), Stage::Commit)), "ok");
        }
        let c = WriteCondition::Matches(Some("\"abd\"".into()));
        assert_eq!(code(c.check(Some(&o), Stage::Before)), "412");
        assert_eq!(code(c.check(Some(&o), Stage::Commit)), "412");
        // Missing before the body: the client named an object that is not there.
        assert_eq!(code(c.check(None, Stage::Before)), "404");
        // Missing at the commit: it was deleted while the body streamed in.
        assert_eq!(code(c.check(None, Stage::Commit)), "409");
        let any = WriteCondition::Matches(None);
        assert_eq!(code(any.check(Some(&o), Stage::Commit)), "ok");
        assert_eq!(code(any.check(None, Stage::Before)), "404");
    }

    #[test]
    fn unconditional_writes_always_proceed() {
        let o = object("\"abc\"");
        let c = WriteCondition::Unconditional;
        assert_eq!(code(c.check(None, Stage::Commit)), "ok");
        assert_eq!(code(c.check(Some(&o), Stage::Commit)), "ok");
    }
}
