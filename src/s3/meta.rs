//! Bucket and object metadata as stored on disk (JSON sidecars, see docs/FORMAT.md "Objects").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The one account every atrest principal belongs to unless the config says otherwise.
pub const DEFAULT_ACCOUNT: &str = "111122223333";

/// Server-side encryption algorithm, spelled as S3 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SseAlgorithm {
    /// SSE-S3: a store-managed key.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS: a data key from kmsd.
    #[serde(rename = "aws:kms")]
    AwsKms,
}

impl SseAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            SseAlgorithm::Aes256 => "AES256",
            SseAlgorithm::AwsKms => "aws:kms",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "AES256" => Some(SseAlgorithm::Aes256),
            "aws:kms" => Some(SseAlgorithm::AwsKms),
            _ => None,
        }
    }
}

/// A bucket's default encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEncryption {
    pub algorithm: SseAlgorithm,
    /// Key as the configuration named it (id, alias or ARN); only for `aws:kms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub bucket_key_enabled: bool,
}

impl Default for BucketEncryption {
    fn default() -> Self {
        BucketEncryption {
            algorithm: SseAlgorithm::Aes256,
            kms_key_id: None,
            bucket_key_enabled: false,
        }
    }
}

/// The four Block Public Access switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    pub const ALL_ON: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };
    pub const ALL_OFF: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: false,
        ignore_public_acls: false,
        block_public_policy: false,
        restrict_public_buckets: false,
    };
}

/// S3 Object Ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    BucketOwnerEnforced,
    BucketOwnerPreferred,
    ObjectWriter,
}

impl ObjectOwnership {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectOwnership::BucketOwnerEnforced => "BucketOwnerEnforced",
            ObjectOwnership::BucketOwnerPreferred => "BucketOwnerPreferred",
            ObjectOwnership::ObjectWriter => "ObjectWriter",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BucketOwnerEnforced" => Some(ObjectOwnership::BucketOwnerEnforced),
            "BucketOwnerPreferred" => Some(ObjectOwnership::BucketOwnerPreferred),
            "ObjectWriter" => Some(ObjectOwnership::ObjectWriter),
            _ => None,
        }
    }

    /// Whether ACLs take effect (only `BucketOwnerEnforced` disables them).
    pub fn acls_enabled(self) -> bool {
        self != ObjectOwnership::BucketOwnerEnforced
    }
}

/// The canned ACLs atrest stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CannedAcl {
    #[serde(rename = "private")]
    Private,
    #[serde(rename = "public-read")]
    PublicRead,
    #[serde(rename = "public-read-write")]
    PublicReadWrite,
    #[serde(rename = "authenticated-read")]
    AuthenticatedRead,
    #[serde(rename = "bucket-owner-read")]
    BucketOwnerRead,
    #[serde(rename = "bucket-owner-full-control")]
    BucketOwnerFullControl,
}

impl CannedAcl {
    pub fn as_str(self) -> &'static str {
        match self {
            CannedAcl::Private => "private",
            CannedAcl::PublicRead => "public-read",
            CannedAcl::PublicReadWrite => "public-read-write",
            CannedAcl::AuthenticatedRead => "authenticated-read",
            CannedAcl::BucketOwnerRead => "bucket-owner-read",
            CannedAcl::BucketOwnerFullControl => "bucket-owner-full-control",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            CannedAcl::Private,
            CannedAcl::PublicRead,
            CannedAcl::PublicReadWrite,
            CannedAcl::AuthenticatedRead,
            CannedAcl::BucketOwnerRead,
            CannedAcl::BucketOwnerFullControl,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// Grants READ to everyone (the AllUsers group): what BPA calls "public".
    pub fn is_public(self) -> bool {
        matches!(self, CannedAcl::PublicRead | CannedAcl::PublicReadWrite)
    }
}

/// A bucket's configuration (`bucket.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketMeta {
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// Owner account id.
    pub owner_account: String,
    pub encryption: BucketEncryption,
    /// `None` once DeletePublicAccessBlock removed it: nothing is blocked, and
    /// GetPublicAccessBlock answers `NoSuchPublicAccessBlockConfiguration`.
    pub public_access_block: Option<PublicAccessBlock>,
    pub ownership: ObjectOwnership,
    pub acl: CannedAcl,
}

impl BucketMeta {
    /// A bucket as S3 creates them since 2023: SSE-S3, all BPA on, ACLs disabled.
    pub fn new(name: &str, owner_account: &str, created: String) -> Self {
        BucketMeta {
            name: name.to_string(),
            created,
            owner_account: owner_account.to_string(),
            encryption: BucketEncryption::default(),
            public_access_block: Some(PublicAccessBlock::ALL_ON),
            ownership: ObjectOwnership::BucketOwnerEnforced,
            acl: CannedAcl::Private,
        }
    }

    pub fn arn(&self) -> String {
        bucket_arn(&self.name)
    }
}

pub fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

/// How an object's data key is protected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyProtection {
    /// SSE-S3: data key wrapped under the store key (`s3/store.key`), AAD = object ARN.
    StoreKey {
        #[serde(with = "b64")]
        wrapped_key: Vec<u8>,
    },
    /// SSE-KMS: the KMS ciphertext blob of the object's own data key.
    Kms {
        key_arn: String,
        #[serde(with = "b64")]
        ciphertext_blob: Vec<u8>,
        encryption_context: BTreeMap<String, String>,
    },
    /// SSE-KMS with an S3 Bucket Key: the bucket key's KMS blob (context = bucket ARN)
    /// and the object's data key wrapped under the bucket key (AAD = object ARN).
    KmsBucketKey {
        key_arn: String,
        #[serde(with = "b64")]
        bucket_key_blob: Vec<u8>,
        encryption_context: BTreeMap<String, String>,
        #[serde(with = "b64")]
        wrapped_key: Vec<u8>,
    },
    /// SSE-C: the data key wrapped under the customer's key (AAD = object ARN); the key
    /// itself is not kept, only `HMAC-SHA256(salt, key)` to recognise it.
    CustomerKey {
        #[serde(with = "b64")]
        salt: Vec<u8>,
        #[serde(with = "b64")]
        key_hmac: Vec<u8>,
        #[serde(with = "b64")]
        wrapped_key: Vec<u8>,
    },
}

impl KeyProtection {
    pub fn algorithm(&self) -> SseAlgorithm {
        match self {
            KeyProtection::StoreKey { .. } | KeyProtection::CustomerKey { .. } => {
                SseAlgorithm::Aes256
            }
            _ => SseAlgorithm::AwsKms,
        }
    }

    pub fn kms_key_arn(&self) -> Option<&str> {
        match self {
            KeyProtection::StoreKey { .. } | KeyProtection::CustomerKey { .. } => None,
            KeyProtection::Kms { key_arn, .. } | KeyProtection::KmsBucketKey { key_arn, .. } => {
                Some(key_arn)
            }
        }
    }

    /// Whether the object is kept under a customer-provided key (SSE-C).
    pub fn is_customer_key(&self) -> bool {
        matches!(self, KeyProtection::CustomerKey { .. })
    }

    pub fn bucket_key_enabled(&self) -> bool {
        matches!(self, KeyProtection::KmsBucketKey { .. })
    }
}

/// One object's metadata sidecar. Writing it is the commit point of a PUT or of a
/// CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    /// File name (inside the bucket's object directory) of the sealed body; empty (and
    /// absent on disk) for a multipart object, whose parts are in [`ObjectMeta::multipart`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_file: String,
    pub size: u64,
    /// Quoted hex MD5-free ETag: SHA-256 prefix of the plaintext (S3 says ETag is opaque).
    pub etag: String,
    pub content_type: String,
    /// RFC 3339.
    pub last_modified: String,
    pub owner_account: String,
    pub acl: CannedAcl,
    pub protection: KeyProtection,
    /// Random nonce prefix of the chunk stream (absent for a multipart object: each part
    /// has its own).
    #[serde(
        default,
        with = "opt_hex_arr7",
        skip_serializing_if = "Option::is_none"
    )]
    pub nonce_prefix: Option<[u8; 7]>,
    /// Plaintext chunk size the body was sealed with.
    pub chunk_size: u32,
    /// User metadata (`x-amz-meta-*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    /// The parts of an object made by CompleteMultipartUpload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartBody>,
    /// The `x-amz-checksum-*` the client declared and the endpoint checked, returned on
    /// GET and HEAD with `x-amz-checksum-mode: ENABLED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
}

/// An object's (or a part's) checksum as S3 returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChecksum {
    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256`.
    pub algorithm: String,
    /// Base64 of the digest, as in the `x-amz-checksum-*` header; a composite one ends in
    /// `-<part count>`.
    pub value: String,
    /// `FULL_OBJECT` (of the whole body) or `COMPOSITE` (of the parts' checksums).
    #[serde(rename = "type")]
    pub kind: ChecksumKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChecksumKind {
    FullObject,
    Composite,
}

impl ChecksumKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumKind::FullObject => "FULL_OBJECT",
            ChecksumKind::Composite => "COMPOSITE",
        }
    }
}

/// The body of a multipart object: its parts in object order, each its own sealed chunk
/// stream under the object's one data key (docs/FORMAT.md, "Multipart objects").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartBody {
    /// The upload that made the object (32 lowercase hex digits); part of each part's AAD.
    pub upload_id: String,
    pub parts: Vec<StoredPart>,
    /// [`sse::seal_manifest`](super::sse::seal_manifest) of [`MultipartBody::manifest`]:
    /// parts cannot be dropped, added or reordered unnoticed.
    #[serde(with = "b64")]
    pub manifest_seal: Vec<u8>,
}

/// One part of a multipart object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPart {
    /// The part number the client uploaded it as (1 to 10000).
    pub number: u32,
    /// Plaintext bytes.
    pub size: u64,
    /// Its sealed chunk stream, a `HASH.RAND.data` file beside the sidecar.
    pub data_file: String,
    #[serde(with = "hex_arr7")]
    pub nonce_prefix: [u8; 7],
    /// The part's checksum under its upload's algorithm, when the upload named one
    /// (returned by GET and HEAD with `partNumber` and `x-amz-checksum-mode: ENABLED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
}

impl MultipartBody {
    /// The bytes [`MultipartBody::manifest_seal`] authenticates:
    /// `"atrest-mpu-1" || len(arn) (u32 BE) || arn || upload_id || count (u32 BE)`, then
    /// for each part in object order `number (u32 BE) || size (u64 BE) || nonce_prefix (7)`.
    pub fn manifest(&self, object_arn: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(64 + object_arn.len() + 19 * self.parts.len());
        m.extend_from_slice(b"atrest-mpu-1");
        m.extend_from_slice(&(object_arn.len() as u32).to_be_bytes());
        m.extend_from_slice(object_arn.as_bytes());
        m.extend_from_slice(self.upload_id.as_bytes());
        m.extend_from_slice(&(self.parts.len() as u32).to_be_bytes());
        for p in &self.parts {
            m.extend_from_slice(&p.number.to_be_bytes());
            m.extend_from_slice(&p.size.to_be_bytes());
            m.extend_from_slice(&p.nonce_prefix);
        }
        m
    }
}

/// One sealed chunk stream of an object's body: the whole body of an object stored by one
/// PUT, or one part of a multipart object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub data_file: &'a str,
    pub nonce_prefix: [u8; 7],
    /// Plaintext bytes.
    pub size: u64,
    /// Where its plaintext starts in the object.
    pub offset: u64,
    /// `Some(number)` for a part of a multipart object.
    pub part: Option<u32>,
}

impl ObjectMeta {
    /// The sealed streams of the body, in object order; `None` if the sidecar names none.
    pub fn segments(&self) -> Option<Vec<Segment<'_>>> {
        match &self.multipart {
            None => Some(vec![Segment {
                data_file: &self.data_file,
                nonce_prefix: self.nonce_prefix?,
                size: self.size,
                offset: 0,
                part: None,
            }]),
            Some(mp) => {
                let mut offset = 0u64;
                let mut out = Vec::with_capacity(mp.parts.len());
                for p in &mp.parts {
                    out.push(Segment {
                        data_file: &p.data_file,
                        nonce_prefix: p.nonce_prefix,
                        size: p.size,
                        offset,
                        part: Some(p.number),
                    });
                    offset = offset.checked_add(p.size)?;
                }
                (offset == self.size && !out.is_empty()).then_some(out)
            }
        }
    }

    /// Every data file the object's body is in.
    pub fn data_files(&self) -> Vec<&str> {
        match &self.multipart {
            None => vec![self.data_file.as_str()],
            Some(mp) => mp.parts.iter().map(|p| p.data_file.as_str()).collect(),
        }
    }

    /// The number of parts of a multipart object.
    pub fn parts_count(&self) -> Option<usize> {
        self.multipart.as_ref().map(|m| m.parts.len())
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

mod opt_hex_arr7 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 7]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::hex_arr7::serialize(v, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 7]>, D::Error> {
        super::hex_arr7::deserialize(d).map(Some)
    }
}

mod hex_arr7 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 7], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 7], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("nonce prefix must be 7 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_bucket_defaults_match_s3_since_2023() {
        let b = BucketMeta::new("b", DEFAULT_ACCOUNT, "t".into());
        assert_eq!(b.encryption.algorithm, SseAlgorithm::Aes256);
        assert_eq!(b.public_access_block, Some(PublicAccessBlock::ALL_ON));
        assert_eq!(b.ownership, ObjectOwnership::BucketOwnerEnforced);
    }

    /// A sidecar as every release before multipart wrote it: it still loads, and writing
    /// it back gives the same bytes (no new field appears for a single-PUT object).
    #[test]
    fn a_single_put_sidecar_keeps_its_exact_bytes() {
        let old = r#"{
  "key": "clock.png",
  "data_file": "0000000000000000000000000000000000000000000000000000000000000000.0123456789abcdef.data",
  "size": 300000,
  "etag": "\"cc8a9310d658f8169a05888b121f8a64\"",
  "content_type": "image/png",
  "last_modified": "2026-11-23T09:49:17Z",
  "owner_account": "111122223333",
  "acl": "private",
  "protection": {
    "kind": "store_key",
    "wrapped_key": "AAEC"
  },
  "nonce_prefix": "01020304050607",
  "chunk_size": 65536
}"#;
        let m: ObjectMeta = serde_json::from_str(old).unwrap();
        assert_eq!(m.nonce_prefix, Some([1, 2, 3, 4, 5, 6, 7]));
        assert!(m.multipart.is_none());
        assert_eq!(m.segments().unwrap().len(), 1);
        assert_eq!(serde_json::to_string_pretty(&m).unwrap(), old);
    }

    #[test]
    fn multipart_segments_follow_the_parts() {
        let part = |number, size| StoredPart {
            number,
            size,
            data_file: format!("{number}.data"),
            nonce_prefix: [number as u8; 7],
            checksum: None,
        };
        let mut m: ObjectMeta = serde_json::from_str(&format!(
            r#"{{"key":"k","size":15,"etag":"\"x-2\"","content_type":"t","last_modified":"",
            "owner_account":"1","acl":"private","protection":{{"kind":"store_key","wrapped_key":""}},
            "chunk_size":65536,"multipart":{{"upload_id":"{}","parts":[],"manifest_seal":""}}}}"#,
            "0".repeat(32)
        ))
        .unwrap();
        assert!(m.segments().is_none(), "no parts");
        m.multipart.as_mut().unwrap().parts = vec![part(1, 10), part(3, 5)];
        let segs = m.segments().unwrap();
        assert_eq!(
            segs.iter()
                .map(|s| (s.part, s.offset, s.size))
                .collect::<Vec<_>>(),
            [(Some(1), 0, 10), (Some(3), 10, 5)]
        );
        assert_eq!(m.data_files(), ["1.data", "3.data"]);
        m.size = 16;
        assert!(m.segments().is_none(), "sizes must add up");
        let j = serde_json::to_string(&m).unwrap();
        assert!(!j.contains("data_file\":\"\"") && !j.contains("nonce_prefix\":null"));
    }

    #[test]
    fn object_meta_round_trips_through_json() {
        let mut ctx = BTreeMap::new();
        ctx.insert("aws:s3:arn".into(), object_arn("b", "k"));
        let m = ObjectMeta {
            key: "a/../b".into(),
            data_file: "x.data".into(),
            size: 3,
            etag: "\"abc\"".into(),
            content_type: "image/png".into(),
            last_modified: "2026-01-01T00:00:00Z".into(),
            owner_account: DEFAULT_ACCOUNT.into(),
            acl: CannedAcl::PublicRead,
            protection: KeyProtection::Kms {
                key_arn: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
                ciphertext_blob: vec![1, 2, 3],
                encryption_context: ctx,
            },
            nonce_prefix: Some([9; 7]),
            chunk_size: 65536,
            user_metadata: BTreeMap::new(),
            multipart: None,
            checksum: None,
        };
        let j = serde_json::to_string(&m).unwrap();
        assert!(j.contains("\"public-read\""));
        let back: ObjectMeta = serde_json::from_str(&j).unwrap();
        assert_eq!(back, m);
    }
}
