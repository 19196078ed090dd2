//! Small conversions between the store's records and s3s's wire types.

use s3s::dto::{ETag, Metadata, Owner, Timestamp};

use super::super::access::{BucketView, ObjectView};
use super::super::meta::{BucketMeta, ObjectMeta, PublicAccessBlock};

pub fn timestamp(rfc3339: &str) -> Option<Timestamp> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(Timestamp::from)
}

pub fn etag(meta: &ObjectMeta) -> ETag {
    ETag::Strong(meta.etag.trim_matches('"').to_string())
}

pub fn owner(account: &str) -> Owner {
    Owner {
        display_name: Some(account.to_string()),
        id: Some(account.to_string()),
    }
}

pub fn user_metadata(m: &ObjectMeta) -> Option<Metadata> {
    (!m.user_metadata.is_empty()).then(|| m.user_metadata.clone().into_iter().collect())
}

pub fn bucket_view(b: &BucketMeta) -> BucketView<'_> {
    BucketView {
        owner_account: &b.owner_account,
        public_access_block: b.public_access_block.unwrap_or(PublicAccessBlock::ALL_OFF),
        ownership: b.ownership,
        acl: b.acl,
    }
}

pub fn object_view(m: &ObjectMeta) -> ObjectView<'_> {
    ObjectView {
        owner_account: &m.owner_account,
        acl: m.acl,
        algorithm: m.protection.algorithm(),
    }
}

/// A key, prefix or marker as S3 sends it under `encoding-type=url`: every byte but the
/// unreserved characters and `/` percent-encoded (clients decode with `unquote_plus`, so
/// `+` and space are encoded too).
pub fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}
