//! Conditional requests: `If-Match`, `If-None-Match`, `If-Modified-Since` and
//! `If-Unmodified-Since` on GetObject and HeadObject, and their `x-amz-copy-source-if-*`
//! twins on CopyObject and UploadPartCopy, decided as S3 decides them (RFC 9110's order):
//!
//! 1. `If-Match` present and not matching: 412 `PreconditionFailed`; when it is absent,
//!    `If-Unmodified-Since` earlier than the object's last change: 412. (`If-Match` that
//!    holds makes S3 ignore `If-Unmodified-Since`.)
//! 2. `If-None-Match` matching: 304 Not Modified; when it is absent, `If-Modified-Since`
//!    not earlier than the last change: 304. (`If-None-Match` present makes S3 ignore
//!    `If-Modified-Since`.)
//!
//! A copy source that "was not modified" is a 412 too: a copy has no 304.
//! ETags compare by value (weak or strong, quoted or not); times at whole seconds, the
//! precision of HTTP dates.

use s3s::dto::{ETagCondition, Timestamp};

use super::super::meta::ObjectMeta;
use super::super::precondition::WriteCondition;
use super::convert::timestamp;
use super::error::ApiError;

/// The conditions a request carries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// What the conditions decide for an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// 304 (a read whose copy the client already has).
    NotModified,
    /// 412, naming the header that failed.
    PreconditionFailed(&'static str),
}

impl Conditions<'_> {
    /// Decides the conditions against an object's ETag and last-modified time; `copy`
    /// names the headers `x-amz-copy-source-if-*` in the verdict.
    pub fn decide(&self, meta: &ObjectMeta, copy: bool) -> Verdict {
        let name = |plain: &'static str, copy_name: &'static str| {
            if copy {
                copy_name
            } else {
                plain
            }
        };
        let etag = meta.etag.trim_matches('"');
        let modified = timestamp(&meta.last_modified).map(|t| seconds(&t));
        let matches = |c: &ETagCondition| match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(t) => t.value().trim_matches('"') == etag,
        };
        match (self.if_match, self.if_unmodified_since) {
            (Some(c), _) if !matches(c) => {
                return Verdict::PreconditionFailed(name("If-Match", "x-amz-copy-source-If-Match"))
            }
            (None, Some(t)) if modified.is_some_and(|m| m > seconds(t)) => {
                return Verdict::PreconditionFailed(name(
                    "If-Unmodified-Since",
                    "x-amz-copy-source-If-Unmodified-Since",
                ))
            }
            _ => {}
        }
        let not_modified = match (self.if_none_match, self.if_modified_since) {
            (Some(c), _) => matches(c),
            (None, Some(t)) => modified.is_some_and(|m| m <= seconds(t)),
            (None, None) => false,
        };
        match (not_modified, copy) {
            (false, _) => Verdict::Proceed,
            (true, false) => Verdict::NotModified,
            (true, true) => Verdict::PreconditionFailed(if self.if_none_match.is_some() {
                "x-amz-copy-source-If-None-Match"
            } else {
                "x-amz-copy-source-If-Modified-Since"
            }),
        }
    }

    /// [`Conditions::decide`] as a handler's answer: 304 or 412 as S3 sends them.
    pub fn check(&self, meta: &ObjectMeta, copy: bool) -> Result<(), ApiError> {
        match self.decide(meta, copy) {
            Verdict::Proceed => Ok(()),
            Verdict::NotModified => Err(ApiError::refused("NotModified", 304, "Not Modified")),
            Verdict::PreconditionFailed(header) => Err(ApiError::refused(
                "PreconditionFailed",
                412,
                format!("At least one of the pre-conditions you specified did not hold ({header})"),
            )),
        }
    }
}

/// The condition of a write (PutObject, CompleteMultipartUpload, DeleteObject) from its
/// `If-Match` / `If-None-Match` headers. S3 accepts only `*` in `If-None-Match` on a write
/// and answers anything else, or both headers at once, `NotImplemented`.
pub fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> Result<WriteCondition, ApiError> {
    let unsupported = |header: &str| {
        ApiError::refused(
            "NotImplemented",
            501,
            format!(
                "A header you provided implies functionality that is not implemented ({header})"
            ),
        )
    };
    match (if_match, if_none_match) {
        (None, None) => Ok(WriteCondition::Unconditional),
        (Some(_), Some(_)) => Err(unsupported("If-Match with If-None-Match")),
        (None, Some(ETagCondition::Any)) => Ok(WriteCondition::Absent),
        (None, Some(ETagCondition::ETag(_))) => Err(unsupported("If-None-Match other than *")),
        (Some(ETagCondition::Any), None) => Ok(WriteCondition::Matches(None)),
        (Some(ETagCondition::ETag(t)), None) => {
            Ok(WriteCondition::Matches(Some(t.value().to_string())))
        }
    }
}

/// Unix seconds of a timestamp.
fn seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::meta::{CannedAcl, KeyProtection};
    use s3s::dto::ETag;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            data_file: String::new(),
            size: 1,
            etag: "\"abc\"".into(),
            content_type: String::new(),
            last_modified: "2026-01-02T03:04:05.678Z".into(),
            owner_account: String::new(),
            acl: CannedAcl::Private,
            protection: KeyProtection::StoreKey {
                wrapped_key: vec![],
            },
            nonce_prefix: None,
            chunk_size: 0,
            user_metadata: Default::default(),
            multipart: None,
            checksum: None,
        }
    }

    fn at(s: &str) -> Timestamp {
        timestamp(s).expect("rfc3339")
    }

    #[test]
    fn reads_follow_s3s_order() {
        let m = meta();
        let same = ETagCondition::ETag(ETag::Strong("abc".into()));
        let other = ETagCondition::ETag(ETag::Strong("def".into()));
        let weak_same = ETagCondition::ETag(ETag::Weak("abc".into()));
        let (before, same_second, after) = (
            at("2026-01-02T03:04:04Z"),
            at("2026-01-02T03:04:05Z"),
            at("2026-01-02T03:04:06Z"),
        );
        let decide = |c: Conditions<'_>| c.decide(&m, false);
        assert_eq!(decide(Conditions::default()), Verdict::Proceed);
        assert_eq!(
            decide(Conditions {
                if_match: Some(&same),
                ..Default::default()
            }),
            Verdict::Proceed
        );
        assert_eq!(
            decide(Conditions {
                if_match: Some(&weak_same),
                ..Default::default()
            }),
            Verdict::Proceed
        );
        assert_eq!(
            decide(Conditions {
                if_match: Some(&other),
                ..Default::default()
            }),
            Verdict::PreconditionFailed("If-Match")
        );
        assert_eq!(
            decide(Conditions {
                if_match: Some(&ETagCondition::Any),
                ..Default::default()
            }),
            Verdict::Proceed
        );
        // If-Match that holds overrides a failing If-Unmodified-Since.
        assert_eq!(
            decide(Conditions {
                if_match: Some(&same),
                if_unmodified_since: Some(&before),
                ..Default::default()
            }),
            Verdict::Proceed
        );
        assert_eq!(
            decide(Conditions {
                if_unmodified_since: Some(&before),
                ..Default::default()
            }),
            Verdict::PreconditionFailed("If-Unmodified-Since")
        );
        // Same second (the stored time has milliseconds): not modified since.
        assert_eq!(
            decide(Conditions {
                if_unmodified_since: Some(&same_second),
                ..Default::default()
            }),
            Verdict::Proceed
        );
        assert_eq!(
            decide(Conditions {
                if_none_match: Some(&same),
                ..Default::default()
            }),
            Verdict::NotModified
        );
        assert_eq!(
            decide(Conditions {
                if_none_match: Some(&other),
                ..Default::default()
            }),
            Verdict::Proceed
        );
        assert_eq!(
            decide(Conditions {
                if_modified_since: Some(&same_second),
                ..Default::default()
            }),
            Verdict::NotModified
        );
        assert_eq!(
            decide(Conditions {
                if_modified_since: Some(&before),
                ..Default::default()
            }),
            Verdict::Proceed
        );
        assert_eq!(
            decide(Conditions {
                if_modified_since: Some(&after),
                ..Default::default()
            }),
            Verdict::NotModified
        );
        // If-None-Match that fails to match overrides If-Modified-Since.
        assert_eq!(
            decide(Conditions {
                if_none_match: Some(&other),
                if_modified_since: Some(&after),
                ..Default::default()
            }),
            Verdict::Proceed
        );
    }

    #[test]
    fn a_copy_source_not_modified_is_a_precondition_failure() {
        let m = meta();
        let same = ETagCondition::ETag(ETag::Strong("abc".into()));
        let c = Conditions {
            if_none_match: Some(&same),
            ..Default::default()
        };
        assert_eq!(
            c.decide(&m, true),
            Verdict::PreconditionFailed("x-amz-copy-source-If-None-Match")
        );
        let e = s3s::S3Error::from(c.check(&m, true).unwrap_err());
        assert_eq!(e.code().as_str(), "PreconditionFailed");
        assert_eq!(e.status_code().map(|s| s.as_u16()), Some(412));
        let e = s3s::S3Error::from(c.check(&m, false).unwrap_err());
        assert_eq!(e.status_code().map(|s| s.as_u16()), Some(304));
    }
}
