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

/// Sets an answer's `x-amz-checksum-<algorithm>` member from a stored checksum, and its
/// `x-amz-checksum-type` where the answer has one (every S3 output with checksums names
/// them alike; UploadPart's has no type).
macro_rules! set_checksum {
    ($out:expr, $checksum:expr) => {
        if let Some(c) = $checksum {
            let value = Some(c.value.clone());
            match c.algorithm.as_str() {
                "CRC32" => $out.checksum_crc32 = value,
                "CRC32C" => $out.checksum_crc32c = value,
                "CRC64NVME" => $out.checksum_crc64nvme = value,
                "SHA1" => $out.checksum_sha1 = value,
                "SHA256" => $out.checksum_sha256 = value,
                _ => {}
            }
        }
    };
    ($out:expr, $checksum:expr, typed) => {
        set_checksum!($out, $checksum);
        if let Some(c) = $checksum {
            $out.checksum_type = Some(s3s::dto::ChecksumType::from(c.kind.as_str().to_string()));
        }
    };
}
pub(crate) use set_checksum;

/// Whether a GET or HEAD asked for the stored checksum (`x-amz-checksum-mode: ENABLED`).
pub fn checksum_mode(mode: Option<&s3s::dto::ChecksumMode>) -> bool {
    mode.is_some_and(|m| {
        m.as_str()
            .eq_ignore_ascii_case(s3s::dto::ChecksumMode::ENABLED)
    })
}
