//! The directory-backed bucket store.
//!
//! ```text
//! HOME/s3/store.key                                  SSE-S3 store key (32 bytes, 0600)
//! HOME/s3/buckets/BUCKET/bucket.json                 BucketMeta
//! HOME/s3/buckets/BUCKET/objects/HASH.json           ObjectMeta sidecar (the commit point)
//! HOME/s3/buckets/BUCKET/objects/HASH.RAND.data      sealed body (sse.rs chunk stream)
//! ```
//!
//! `HASH` is the hex SHA-256 of the object key, so any S3-legal key (`/`, unicode, `..`,
//! 1024 bytes) becomes a fixed 64-character name of `[0-9a-f]`: no key can name a path
//! outside its bucket, and the real key lives in the sidecar (checked on every read).
//! Bucket names are validated against S3's rules, which admit no `/` and no `..`.
//!
//! A PUT streams into a fresh `HASH.RAND.data`, fsyncs it, then atomically replaces the
//! sidecar (temp + fsync + rename + fsync dir): a crash before that rename leaves the old
//! object, after it the new one. A multipart upload (`multipart.rs`) writes each part into
//! a `HASH.RAND.data` of its own, and CompleteMultipartUpload writes a sidecar naming them
//! all, the same one-rename commit. Unreferenced data files (crash orphans, and the parts of
//! uploads the crash abandoned) are removed when the store is opened.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::bucket_key::{BucketKeyCache, DEFAULT_TTL};
use super::customer_key::CustomerKey;
use super::kms::{self, DataKeys, KmsFailure, StoreKeyError};
use super::meta::{self, BucketMeta, CannedAcl, KeyProtection, ObjectMeta, SseAlgorithm};
use super::multipart::Uploads;
use super::parts::PartsError;
use super::precondition::{Stage, WriteCondition};
use super::reader::{ObjectReader, SegmentReader};
use super::sealed::SealedFile;
use super::sse::{self, DataKey, Opener, SseError, StreamLayout, CHUNK_SIZE};

/// S3's limit for a single PUT.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's limit on key length, in UTF-8 bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Store errors; `http/error.rs` maps each to its S3 error code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("The specified bucket does not exist")]
    NoSuchBucket,
    #[error("The specified key does not exist.")]
    NoSuchKey,
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou,
    #[error("The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.")]
    BucketAlreadyExists,
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    #[error("The specified bucket is not valid: {0}")]
    InvalidBucketName(String),
    #[error("The specified key is not valid: {0}")]
    InvalidKey(&'static str),
    #[error("Your proposed upload exceeds the maximum allowed size")]
    EntityTooLarge,
    #[error("the upload ended before its body was complete")]
    Incomplete,
    #[error(transparent)]
    Kms(#[from] KmsFailure),
    #[error("object {key:?} failed its integrity check: {source}")]
    Integrity { key: String, source: SseError },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    StoreKey(#[from] StoreKeyError),
    #[error(
        "the object store {path} is already open in another endpoint (it holds {path}/{LOCK_FILE})"
    )]
    InUse { path: String },
    #[error("The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")]
    NoSuchUpload,
    #[error(transparent)]
    Parts(#[from] PartsError),
    #[error("too many multipart uploads in progress ({0}); complete or abort some first")]
    TooManyUploads(usize),
    #[error("the endpoint has too many files open; try again")]
    TooManyOpenFiles,
    /// A conditional write's `If-None-Match` or `If-Match` (named) did not hold.
    #[error("At least one of the pre-conditions you specified did not hold ({0})")]
    PreconditionFailed(&'static str),
    /// A CompleteMultipartUpload whose checksum headers do not fit its upload.
    #[error("{0}")]
    ChecksumRequest(String),
    /// A CompleteMultipartUpload's object checksum does not match the object's.
    #[error("The {0} you specified did not match the calculated checksum.")]
    BadChecksum(String),
    /// An SSE-C object read (or a part written) without its customer key.
    #[error("The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.")]
    CustomerKeyRequired,
    /// A customer key other than the one the object was written with.
    #[error("Access Denied")]
    CustomerKeyMismatch,
    /// A customer key given for an object not kept under one.
    #[error("The encryption parameters are not applicable to this object.")]
    CustomerKeyNotApplicable,
    /// The object an `If-Match` write was to replace was deleted while it streamed in.
    #[error("A conflicting conditional operation is currently in progress against this resource. Please try again.")]
    ConditionalRequestConflict,
}

/// Held for as long as a [`Store`] is open: opening sweeps away unreferenced data files,
/// which in a second process would be the first one's uploads still in flight.
pub const LOCK_FILE: &str = "store.lock";

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Checks S3's bucket naming rules (which also make the name a safe directory name).
pub fn validate_bucket_name(name: &str) -> Result<(), StoreError> {
    let bad = |why: &str| Err(StoreError::InvalidBucketName(format!("{name:?}: {why}")));
    if !(3..=63).contains(&name.len()) {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not contain two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") || name.ends_with("-s3alias") {
        return bad("uses a reserved prefix or suffix");
    }
    Ok(())
}

/// Checks an object key: 1 to 1024 bytes of UTF-8 (any characters, as S3 allows).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey("must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::InvalidKey("must be at most 1024 bytes"));
    }
    Ok(())
}

/// The on-disk base name of an object key: hex SHA-256, never a path.
pub fn key_file_stem(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// How a new object is to be encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseChoice {
    StoreKey,
    Kms {
        key_id: String,
        bucket_key: bool,
    },
    /// SSE-C: under the key the request carries.
    Customer(Arc<CustomerKey>),
}

impl SseChoice {
    pub fn algorithm(&self) -> SseAlgorithm {
        match self {
            SseChoice::StoreKey | SseChoice::Customer(_) => SseAlgorithm::Aes256,
            SseChoice::Kms { .. } => SseAlgorithm::AwsKms,
        }
    }

    /// The bucket default, overridden by what the request asked for.
    pub fn resolve(
        bucket: &BucketMeta,
        requested: Option<SseAlgorithm>,
        requested_key: Option<&str>,
        requested_bucket_key: Option<bool>,
    ) -> Result<SseChoice, StoreError> {
        let enc = &bucket.encryption;
        match requested.unwrap_or(enc.algorithm) {
            SseAlgorithm::Aes256 => Ok(SseChoice::StoreKey),
            SseAlgorithm::AwsKms => {
                // An explicit aws:kms without a key uses the bucket's key if the bucket default is
                // SSE-KMS, else the AWS managed key alias/aws/s3, as S3 does.
                let bucket_key = match (enc.algorithm, &enc.kms_key_id) {
                    (SseAlgorithm::AwsKms, Some(k)) => Some(k.clone()),
                    _ => None,
                };
                let key_id = requested_key
                    .map(str::to_string)
                    .or(bucket_key)
                    .unwrap_or_else(|| "alias/aws/s3".to_string());
                let use_bucket_key = requested_bucket_key
                    .unwrap_or(enc.algorithm == SseAlgorithm::AwsKms && enc.bucket_key_enabled);
                Ok(SseChoice::Kms {
                    key_id,
                    bucket_key: use_bucket_key,
                })
            }
        }
    }
}

/// What a PUT asks for besides the body.
#[derive(Debug, Clone)]
pub struct PutRequest {
    pub content_type: String,
    pub acl: CannedAcl,
    pub sse: SseChoice,
    pub owner_account: String,
    pub user_metadata: BTreeMap<String, String>,
    /// `If-None-Match: *` / `If-Match`: checked before the data key is made and again at
    /// the commit.
    pub condition: WriteCondition,
}

/// The object store over `HOME/s3`.
pub struct Store {
    root: PathBuf,
    store_key: DataKey,
    kms: Arc<dyn DataKeys>,
    bucket_keys: BucketKeyCache,
    /// Serializes sidecar replacement so the previous data file is known and removed exactly once.
    commit: Mutex<()>,
    /// Multipart uploads in progress (they end with the process: see `multipart.rs`).
    pub(super) uploads: Uploads,
    /// The exclusive flock on [`LOCK_FILE`]; closing the descriptor releases it.
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store under `s3_dir` and removes crash leftovers.
    /// Refused with [`StoreError::InUse`] while another `Store` (in any process) has it open.
    pub fn open(s3_dir: &Path, kms: Arc<dyn DataKeys>) -> Result<Arc<Store>, StoreError> {
        let buckets = s3_dir.join("buckets");
        plumbing::durable::ensure_dir(&buckets, 0o700).map_err(io_err(&buckets))?;
        let lock = lock_exclusive(s3_dir)?;
        let store_key = kms::load_or_create_store_key(&s3_dir.join("store.key"))?;
        let store = Store {
            root: s3_dir.to_path_buf(),
            store_key,
            kms,
            bucket_keys: BucketKeyCache::new(DEFAULT_TTL),
            commit: Mutex::new(()),
            uploads: Uploads::default(),
            _lock: lock,
        };
        store.collect_garbage()?;
        Ok(Arc::new(store))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn buckets_dir(&self) -> PathBuf {
        self.root.join("buckets")
    }

    fn bucket_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        validate_bucket_name(name)?;
        Ok(self.buckets_dir().join(name))
    }

    pub(super) fn objects_dir(&self, bucket: &str) -> Result<PathBuf, StoreError> {
        Ok(self.bucket_dir(bucket)?.join("objects"))
    }

    /// A fresh, never-used path for a sealed stream of `key` in `bucket`.
    pub(super) fn new_data_path(&self, bucket: &str, key: &str) -> Result<PathBuf, StoreError> {
        Ok(self.objects_dir(bucket)?.join(format!(
            "{}.{:016x}.data",
            key_file_stem(key),
            rand::random::<u64>()
        )))
    }

    pub(super) fn sidecar_path(&self, bucket: &str, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self
            .objects_dir(bucket)?
            .join(format!("{}.json", key_file_stem(key))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- buckets -------------------------------------------------------------------------

    /// Creates a bucket with S3's defaults (SSE-S3, all BPA on, BucketOwnerEnforced).
    pub fn create_bucket(&self, name: &str, owner_account: &str) -> Result<BucketMeta, StoreError> {
        let dir = self.bucket_dir(name)?;
        let _g = self.lock();
        if dir.exists() {
            let existing = self.get_bucket(name)?;
            return Err(if existing.owner_account == owner_account {
                StoreError::BucketAlreadyOwnedByYou
            } else {
                StoreError::BucketAlreadyExists
            });
        }
        let meta = BucketMeta::new(name, owner_account, plumbing::awstime::now_rfc3339());
        // Build the bucket under a temporary name, then rename it into place in one step.
        let tmp = self
            .buckets_dir()
            .join(format!(".new-{name}-{:08x}", rand::random::<u32>()));
        let result = (|| {
            plumbing::durable::ensure_dir(&tmp.join("objects"), 0o700).map_err(io_err(&tmp))?;
            write_json(&tmp.join("bucket.json"), &meta)?;
            plumbing::durable::sync_dir(&tmp).map_err(io_err(&tmp))?;
            fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
            plumbing::durable::sync_dir(&self.buckets_dir()).map_err(io_err(&dir))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| meta)
    }

    pub fn get_bucket(&self, name: &str) -> Result<BucketMeta, StoreError> {
        let path = self.bucket_dir(name)?.join("bucket.json");
        match read_json::<BucketMeta>(&path)? {
            Some(m) if m.name == name => Ok(m),
            Some(_) => Err(StoreError::Corrupt(format!(
                "{} names another bucket",
                path.display()
            ))),
            None => Err(StoreError::NoSuchBucket),
        }
    }

    /// Changes a bucket's configuration atomically.
    pub fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketMeta),
    ) -> Result<BucketMeta, StoreError> {
        let _g = self.lock();
        let mut meta = self.get_bucket(name)?;
        change(&mut meta);
        write_json(&self.bucket_dir(name)?.join("bucket.json"), &meta)?;
        Ok(meta)
    }

    /// All buckets, sorted by name.
    pub fn list_buckets(&self) -> Result<Vec<BucketMeta>, StoreError> {
        let dir = self.buckets_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_bucket_name(&name).is_err() {
                continue; // temp and deleted-bucket directories
            }
            match self.get_bucket(&name) {
                Ok(m) => out.push(m),
                Err(StoreError::NoSuchBucket) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes an empty bucket.
    pub fn delete_bucket(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.bucket_dir(name)?;
        let _g = self.lock();
        self.get_bucket(name)?;
        let objects = dir.join("objects");
        for entry in fs::read_dir(&objects).map_err(io_err(&objects))? {
            let entry = entry.map_err(io_err(&objects))?;
            if entry.file_name().to_string_lossy().ends_with(".json") {
                return Err(StoreError::BucketNotEmpty);
            }
        }
        self.uploads.drop_bucket(name);
        let graveyard = self
            .buckets_dir()
            .join(format!(".deleted-{name}-{:08x}", rand::random::<u32>()));
        fs::rename(&dir, &graveyard).map_err(io_err(&dir))?;
        plumbing::durable::sync_dir(&self.buckets_dir()).map_err(io_err(&dir))?;
        fs::remove_dir_all(&graveyard).map_err(io_err(&graveyard))
    }

    // ---- objects -------------------------------------------------------------------------

    /// A fresh data key for a new object (or multipart upload) of `key`, and how it is kept:
    /// KMS `GenerateDataKey` as `principal` for SSE-KMS, a local key wrapped under the
    /// bucket key or the store key otherwise.
    pub(super) fn new_data_key(
        &self,
        bucket: &BucketMeta,
        key: &str,
        principal: &str,
        sse: &SseChoice,
    ) -> Result<(DataKey, KeyProtection), StoreError> {
        let arn = meta::object_arn(&bucket.name, key);
        let wrap = |kek: &DataKey, dek: &DataKey| {
            sse::wrap_data_key(kek, dek, arn.as_bytes()).map_err(|source| StoreError::Integrity {
                key: key.into(),
                source,
            })
        };
        Ok(match sse {
            SseChoice::StoreKey => {
                let dek = DataKey::generate();
                let wrapped_key = wrap(&self.store_key, &dek)?;
                (dek, KeyProtection::StoreKey { wrapped_key })
            }
            SseChoice::Customer(ck) => {
                let dek = DataKey::generate();
                let wrapped_key = wrap(ck.key(), &dek)?;
                let (salt, key_hmac) = ck.fingerprint();
                let protection = KeyProtection::CustomerKey {
                    salt: salt.to_vec(),
                    key_hmac,
                    wrapped_key,
                };
                (dek, protection)
            }
            SseChoice::Kms {
                key_id,
                bucket_key: false,
            } => {
                let context = kms::s3_context(&arn);
                let g = self.kms.generate(principal, key_id, &context)?;
                let protection = KeyProtection::Kms {
                    key_arn: g.key_arn,
                    ciphertext_blob: g.ciphertext_blob,
                    encryption_context: context,
                };
                (g.plaintext, protection)
            }
            SseChoice::Kms {
                key_id,
                bucket_key: true,
            } => {
                let context = kms::s3_context(&bucket.arn());
                let bk = self.bucket_keys.for_encrypt(
                    self.kms.as_ref(),
                    principal,
                    &bucket.name,
                    key_id,
                    &context,
                )?;
                let dek = DataKey::generate();
                let wrapped_key = wrap(&bk.plaintext, &dek)?;
                let protection = KeyProtection::KmsBucketKey {
                    key_arn: bk.key_arn,
                    bucket_key_blob: bk.blob,
                    encryption_context: context,
                    wrapped_key,
                };
                (dek, protection)
            }
        })
    }

    /// Recovers the data key of `key` in `bucket` from how it is kept (KMS `Decrypt` as
    /// `principal` for SSE-KMS: every read and every part written is a key use kmsd
    /// authorizes and records; the request's customer key for SSE-C, which only an SSE-C
    /// object accepts).
    pub(super) fn data_key(
        &self,
        bucket: &str,
        key: &str,
        protection: &KeyProtection,
        principal: &str,
        customer: Option<&CustomerKey>,
    ) -> Result<DataKey, StoreError> {
        let arn = meta::object_arn(bucket, key);
        let integrity = |source| StoreError::Integrity {
            key: key.to_string(),
            source,
        };
        check_customer_key(protection, customer)?;
        match protection {
            KeyProtection::CustomerKey { wrapped_key, .. } => {
                let ck = customer.ok_or(StoreError::CustomerKeyRequired)?;
                sse::unwrap_data_key(ck.key(), wrapped_key, arn.as_bytes()).map_err(integrity)
            }
            KeyProtection::StoreKey { wrapped_key } => {
                sse::unwrap_data_key(&self.store_key, wrapped_key, arn.as_bytes())
                    .map_err(integrity)
            }
            KeyProtection::Kms {
                ciphertext_blob,
                encryption_context,
                ..
            } => Ok(self
                .kms
                .decrypt(principal, ciphertext_blob, encryption_context)?
                .plaintext),
            KeyProtection::KmsBucketKey {
                bucket_key_blob,
                encryption_context,
                wrapped_key,
                ..
            } => {
                let bk = self.bucket_keys.for_decrypt(
                    self.kms.as_ref(),
                    principal,
                    bucket_key_blob,
                    encryption_context,
                )?;
                sse::unwrap_data_key(&bk.plaintext, wrapped_key, arn.as_bytes()).map_err(integrity)
            }
        }
    }

    /// Starts a streaming upload: gets the data key (KMS `GenerateDataKey` for SSE-KMS) and
    /// opens a fresh data file. Nothing is visible until [`PutWriter::commit`].
    pub fn begin_put(
        self: &Arc<Self>,
        bucket: &BucketMeta,
        key: &str,
        principal: &str,
        req: PutRequest,
    ) -> Result<PutWriter, StoreError> {
        let sidecar = self.sidecar_path(&bucket.name, key)?;
        self.check_condition(&bucket.name, key, &req.condition, Stage::Before)?;
        let arn = meta::object_arn(&bucket.name, key);
        let (dek, protection) = self.new_data_key(bucket, key, principal, &req.sse)?;
        let prefix = sse::random_prefix();
        // SSE-S3 objects' ETag is the MD5 of their content, as in S3 (clients such as rclone
        // check it); SSE-KMS ETags are opaque there too, so those skip the hashing.
        let md5 = matches!(protection, KeyProtection::StoreKey { .. });
        let body = SealedFile::create(
            self.new_data_path(&bucket.name, key)?,
            key,
            (&dek, prefix, arn.as_bytes()),
            MAX_OBJECT_SIZE,
            md5,
        )?;
        let meta = ObjectMeta {
            key: key.to_string(),
            data_file: body.file_name(),
            size: 0,
            etag: format!("\"{}\"", hex::encode(rand::random::<[u8; 16]>())),
            content_type: req.content_type,
            last_modified: String::new(),
            owner_account: req.owner_account,
            acl: req.acl,
            protection,
            nonce_prefix: Some(prefix),
            chunk_size: CHUNK_SIZE as u32,
            user_metadata: req.user_metadata,
            multipart: None,
            checksum: None,
        };
        Ok(PutWriter {
            store: Arc::clone(self),
            bucket: bucket.name.clone(),
            sidecar,
            body,
            meta,
            condition: req.condition,
        })
    }

    /// Decides a write's condition against the object now under `key`.
    pub(super) fn check_condition(
        &self,
        bucket: &str,
        key: &str,
        condition: &WriteCondition,
        stage: Stage,
    ) -> Result<(), StoreError> {
        if *condition == WriteCondition::Unconditional {
            return Ok(());
        }
        let current = match self.head_object(bucket, key) {
            Ok(m) => Some(m),
            Err(StoreError::NoSuchKey) => None,
            Err(e) => return Err(e),
        };
        condition.check(current.as_ref(), stage)
    }

    /// Replaces the sidecar (the commit point) if `condition` holds against the object it
    /// replaces (decided under the commit lock, so racing conditional writers are
    /// serialized), and removes the data files it replaced.
    pub(super) fn commit_sidecar(
        &self,
        bucket: &str,
        sidecar: &Path,
        meta: &ObjectMeta,
        condition: &WriteCondition,
    ) -> Result<(), StoreError> {
        let _g = self.lock();
        // The bucket may have been deleted while the body streamed in.
        self.get_bucket(bucket)?;
        let previous = read_json::<ObjectMeta>(sidecar)?;
        condition.check(previous.as_ref(), Stage::Commit)?;
        write_json(sidecar, meta)?;
        if let Some(prev) = previous {
            let keep = meta.data_files();
            for old in prev.data_files() {
                if !keep.contains(&old) {
                    self.remove_data_file(bucket, old);
                }
            }
        }
        Ok(())
    }

    /// Removes a data file named in metadata (after checking the name is a plain one).
    pub(super) fn remove_data_file(&self, bucket: &str, name: &str) {
        if let (Ok(dir), Ok(name)) = (self.objects_dir(bucket), safe_file_name(name)) {
            let _ = fs::remove_file(dir.join(name));
        }
    }

    /// An object's metadata.
    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StoreError> {
        self.get_bucket(bucket)?;
        let path = self.sidecar_path(bucket, key)?;
        match read_json::<ObjectMeta>(&path)? {
            Some(m) if m.key == key => Ok(m),
            Some(_) => Err(StoreError::Corrupt(format!(
                "{} holds another key's metadata",
                path.display()
            ))),
            None => Err(StoreError::NoSuchKey),
        }
    }

    /// An object's metadata together with the open data files of the streams that hold the
    /// bytes `span_of(meta)` (a consistent snapshot even if the object is overwritten right
    /// now: an open file outlives its unlinking). A range or a part of a multipart object
    /// opens only the parts under it.
    pub fn load_object(
        &self,
        bucket: &str,
        key: &str,
        span_of: impl Fn(&ObjectMeta) -> Range<u64>,
    ) -> Result<StoredObject, StoreError> {
        'attempt: for _attempt in 0..5 {
            let meta = self.head_object(bucket, key)?;
            let span = span_of(&meta);
            let segments = meta.segments().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "object {key:?} in {bucket}: its parts do not add up"
                ))
            })?;
            let mut files = Vec::new();
            for (i, seg) in segments.iter().enumerate() {
                if !touches(seg.offset, seg.size, &span, meta.size) {
                    continue;
                }
                let path = self
                    .objects_dir(bucket)?
                    .join(safe_file_name(seg.data_file)?);
                match File::open(&path) {
                    Ok(file) => files.push((i, file)),
                    // Overwritten between reading the sidecar and opening the body: read again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'attempt,
                    Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                        return Err(StoreError::TooManyOpenFiles)
                    }
                    Err(e) => return Err(io_err(&path)(e)),
                }
            }
            return Ok(StoredObject {
                bucket: bucket.to_string(),
                meta,
                span,
                files,
                customer: None,
            });
        }
        Err(StoreError::Corrupt(format!(
            "object {key:?} in {bucket}: its data file is missing"
        )))
    }

    /// Recovers the object's data key (KMS `Decrypt` as `principal` for SSE-KMS) and checks
    /// the first chunk of the span it was loaded for, so a bad key or a damaged head fails
    /// before any byte is served.
    pub fn open_reader(
        &self,
        obj: StoredObject,
        principal: &str,
    ) -> Result<ObjectReader, StoreError> {
        let StoredObject {
            bucket,
            meta,
            span,
            files,
            customer,
        } = obj;
        let integrity = |source| StoreError::Integrity {
            key: meta.key.clone(),
            source,
        };
        if meta.chunk_size as usize != CHUNK_SIZE {
            return Err(StoreError::Corrupt(format!(
                "object {:?}: unsupported chunk size {}",
                meta.key, meta.chunk_size
            )));
        }
        if span.start > span.end || span.end > meta.size {
            return Err(StoreError::Corrupt(format!(
                "object {:?}: span {span:?} outside its {} bytes",
                meta.key, meta.size
            )));
        }
        let dek = self.data_key(
            &bucket,
            &meta.key,
            &meta.protection,
            principal,
            customer.as_deref(),
        )?;
        let arn = meta::object_arn(&bucket, &meta.key);
        if let Some(mp) = &meta.multipart {
            sse::open_manifest(&dek, &mp.manifest(&arn), &mp.manifest_seal).map_err(integrity)?;
        }
        let segments = meta.segments().ok_or_else(|| {
            StoreError::Corrupt(format!("object {:?}: its parts do not add up", meta.key))
        })?;
        let mut readers = Vec::with_capacity(files.len());
        for (i, file) in files {
            let seg = segments.get(i).ok_or_else(|| {
                StoreError::Corrupt(format!("object {:?}: no part {i}", meta.key))
            })?;
            let sealed_len = file
                .metadata()
                .map_err(|source| StoreError::Io {
                    path: seg.data_file.to_string(),
                    source,
                })?
                .len();
            let layout = StreamLayout::from_sealed_len(sealed_len).map_err(integrity)?;
            if layout.plaintext_len() != seg.size {
                return Err(integrity(SseError::BadStreamLength { len: sealed_len }));
            }
            let aad = match (seg.part, &meta.multipart) {
                (Some(n), Some(mp)) => sse::part_aad(&arn, &mp.upload_id, n),
                _ => arn.as_bytes().to_vec(),
            };
            let opener = Opener::new(&dek, seg.nonce_prefix, &aad, layout);
            let local = span.start.saturating_sub(seg.offset).min(seg.size)
                ..span.end.saturating_sub(seg.offset).min(seg.size);
            readers.push(SegmentReader::new(file, opener, seg.data_file, local)?);
        }
        let mut reader = ObjectReader::new(meta, span, readers);
        reader.read_chunks(1)?;
        Ok(reader)
    }

    /// Replaces an object's canned ACL.
    pub fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        acl: CannedAcl,
    ) -> Result<ObjectMeta, StoreError> {
        let path = self.sidecar_path(bucket, key)?;
        let _g = self.lock();
        let mut meta = self.head_object(bucket, key)?;
        meta.acl = acl;
        write_json(&path, &meta)?;
        Ok(meta)
    }

    /// Deletes an object; deleting a missing key succeeds, as in S3, unless `condition`
    /// (`If-Match`) requires it to exist.
    pub fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        condition: &WriteCondition,
    ) -> Result<(), StoreError> {
        let path = self.sidecar_path(bucket, key)?;
        let _g = self.lock();
        let meta = match self.head_object(bucket, key) {
            Ok(m) => m,
            Err(StoreError::NoSuchKey) => {
                return condition.check(None, Stage::Before);
            }
            Err(e) => return Err(e),
        };
        condition.check(Some(&meta), Stage::Before)?;
        fs::remove_file(&path).map_err(io_err(&path))?;
        let objects = self.objects_dir(bucket)?;
        plumbing::durable::sync_dir(&objects).map_err(io_err(&objects))?;
        for f in meta.data_files() {
            self.remove_data_file(bucket, f);
        }
        Ok(())
    }

    /// Objects whose key starts with `prefix` and sorts after `start_after`, in key order,
    /// at most `max`; the bool says whether more remain.
    pub fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<ObjectMeta>, bool), StoreError> {
        self.get_bucket(bucket)?;
        let dir = self.objects_dir(bucket)?;
        let mut all = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some(m) = read_json::<ObjectMeta>(&entry.path())? {
                if m.key.starts_with(prefix) && start_after.is_none_or(|s| m.key.as_str() > s) {
                    all.push(m);
                }
            }
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        let truncated = all.len() > max;
        all.truncate(max);
        Ok((all, truncated))
    }

    /// Removes data files no sidecar references and temp files left by crashes.
    fn collect_garbage(&self) -> Result<(), StoreError> {
        let buckets = self.buckets_dir();
        for entry in fs::read_dir(&buckets).map_err(io_err(&buckets))? {
            let entry = entry.map_err(io_err(&buckets))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(".new-") || name.starts_with(".deleted-") {
                let _ = fs::remove_dir_all(entry.path());
                continue;
            }
            if validate_bucket_name(&name).is_err() {
                continue;
            }
            let objects = entry.path().join("objects");
            let Ok(listing) = fs::read_dir(&objects) else {
                continue;
            };
            let mut referenced = std::collections::HashSet::new();
            let mut data_files = Vec::new();
            for e in listing {
                let e = e.map_err(io_err(&objects))?;
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with('.') {
                    let _ = fs::remove_file(e.path()); // write_atomic temp files
                } else if n.ends_with(".json") {
                    if let Some(m) = read_json::<ObjectMeta>(&e.path())? {
                        referenced.extend(m.data_files().into_iter().map(str::to_string));
                    }
                } else if n.ends_with(".data") {
                    data_files.push(n);
                }
            }
            for d in data_files {
                if !referenced.contains(&d) {
                    tracing::info!(file = %d, bucket = %name, "removing orphaned object data");
                    let _ = fs::remove_file(objects.join(&d));
                }
            }
        }
        Ok(())
    }
}

/// Takes the store's lock without waiting: a second endpoint must be refused, not queued.
fn lock_exclusive(s3_dir: &Path) -> Result<File, StoreError> {
    use plumbing::flock;
    let path = s3_dir.join(LOCK_FILE);
    let file = flock::open(&path, 0o600).map_err(io_err(&path))?;
    if flock::try_lock(&file, flock::Mode::Exclusive).map_err(io_err(&path))? {
        Ok(file)
    } else {
        Err(StoreError::InUse {
            path: s3_dir.display().to_string(),
        })
    }
}

/// A data-file name from a sidecar, checked to be a plain file name before it is joined.
fn safe_file_name(name: &str) -> Result<&str, StoreError> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut parts = name.split('.');
    let ok = matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(stem), Some(rand), Some("data"), None) if hex(stem, 64) && hex(rand, 16)
    );
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Corrupt(format!(
            "bad data file name {name:?} in metadata"
        )))
    }
}

/// A streaming upload in progress. Dropping it without [`PutWriter::commit`] removes the data.
pub struct PutWriter {
    store: Arc<Store>,
    bucket: String,
    sidecar: PathBuf,
    body: SealedFile,
    meta: ObjectMeta,
    condition: WriteCondition,
}

impl PutWriter {
    /// Keeps the checksum the body was checked against, returned on GET and HEAD.
    pub fn set_checksum(&mut self, checksum: super::meta::StoredChecksum) {
        self.meta.checksum = Some(checksum);
    }

    /// Encrypts and writes the next piece of the body.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.body.write(data)
    }

    /// Plaintext bytes written so far.
    pub fn len(&self) -> u64 {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seals the last chunk, makes the body durable, and publishes the object atomically.
    pub fn commit(mut self) -> Result<ObjectMeta, StoreError> {
        let sealed = self.body.finish()?;
        self.meta.size = sealed.size;
        if let Some(md5) = sealed.md5 {
            self.meta.etag = format!("\"{}\"", hex::encode(md5));
        }
        self.meta.last_modified = plumbing::awstime::now_rfc3339();
        self.store
            .commit_sidecar(&self.bucket, &self.sidecar, &self.meta, &self.condition)?;
        self.body.keep();
        Ok(self.meta)
    }
}

/// Whether the stream at `offset..offset + size` of an object of `total` bytes holds any of
/// `span` (an empty span is the empty object's one empty stream).
fn touches(offset: u64, size: u64, span: &Range<u64>, total: u64) -> bool {
    if span.start == span.end {
        return total == 0 && span.start == 0 && offset == 0;
    }
    offset < span.end && span.start < offset.saturating_add(size)
}

/// An object's metadata and the open data files of the span it was loaded for, before
/// any key is unwrapped.
pub struct StoredObject {
    pub bucket: String,
    pub meta: ObjectMeta,
    span: Range<u64>,
    /// (index into `meta.segments()`, its open data file), in object order.
    files: Vec<(usize, File)>,
    /// The customer key the request carries (SSE-C), to open the object with.
    pub customer: Option<Arc<CustomerKey>>,
}

/// Whether the request's customer key (or its absence) fits how an object is kept: an
/// SSE-C object needs the key it was written with (`HMAC-SHA256(salt, key)` is checked
/// before anything is unwrapped), and any other object refuses one.
pub fn check_customer_key(
    protection: &KeyProtection,
    customer: Option<&CustomerKey>,
) -> Result<(), StoreError> {
    match (protection, customer) {
        (KeyProtection::CustomerKey { .. }, None) => Err(StoreError::CustomerKeyRequired),
        (KeyProtection::CustomerKey { salt, key_hmac, .. }, Some(ck)) => {
            if ck.matches(salt, key_hmac) {
                Ok(())
            } else {
                Err(StoreError::CustomerKeyMismatch)
            }
        }
        (_, Some(_)) => Err(StoreError::CustomerKeyNotApplicable),
        (_, None) => Ok(()),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {}: {e}", path.display())))?;
    plumbing::durable::write_atomic(path, &bytes, 0o600).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::meta::DEFAULT_ACCOUNT;
    use crate::s3::testkit::*;

    #[test]
    fn a_store_opens_once_at_a_time() {
        let (d, store, kms, _) = setup();
        let s3 = d.path().join("s3");
        assert!(matches!(
            Store::open(&s3, kms.clone()),
            Err(StoreError::InUse { .. })
        ));
        drop(store);
        Store::open(&s3, kms).unwrap();
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "imagebucket-123", "a.b-c", &"a".repeat(63)] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "192.168.1.1",
            "xn--ab",
            "..",
            "../x",
            "a/b",
            &"a".repeat(64),
            "",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_bucket_has_s3_defaults_and_duplicates_are_refused() {
        let (_d, store, _k, b) = setup();
        assert_eq!(b.encryption.algorithm, SseAlgorithm::Aes256);
        assert!(matches!(
            store.create_bucket("imagebucket-1", DEFAULT_ACCOUNT),
            Err(StoreError::BucketAlreadyOwnedByYou)
        ));
        assert!(matches!(
            store.create_bucket("imagebucket-1", "444455556666"),
            Err(StoreError::BucketAlreadyExists)
        ));
        assert_eq!(store.list_buckets().unwrap().len(), 1);
    }

    #[test]
    fn sse_kms_and_sse_s3_round_trip_and_never_store_plaintext() {
        let (d, store, _k, b) = setup();
        let pt = body(300_000);
        let m = put(&store, &b, "clock.png", &pt, kms_choice());
        assert_eq!(m.size, pt.len() as u64);
        assert_eq!(m.protection.kms_key_arn(), Some(ARN));
        let KeyProtection::Kms {
            encryption_context, ..
        } = &m.protection
        else {
            panic!("expected SSE-KMS")
        };
        assert_eq!(
            encryption_context.get("aws:s3:arn").map(String::as_str),
            Some("arn:aws:s3:::imagebucket-1/clock.png")
        );
        assert_eq!(get(&store, "imagebucket-1", "clock.png").unwrap(), pt);
        put(&store, &b, "s3.bin", &pt, SseChoice::StoreKey);
        assert_eq!(get(&store, "imagebucket-1", "s3.bin").unwrap(), pt);
        put(
            &store,
            &b,
            "bk.bin",
            &pt,
            SseChoice::Kms {
                key_id: "alias/MyKMSKey".into(),
                bucket_key: true,
            },
        );
        assert_eq!(get(&store, "imagebucket-1", "bk.bin").unwrap(), pt);
        // No file under the store contains any 32-byte window of the plaintext.
        let needle = &pt[1000..1032];
        for f in all_files(&d.path().join("s3")) {
            let raw = fs::read(&f).unwrap();
            assert!(
                !raw.windows(32).any(|w| w == needle),
                "{} leaks plaintext",
                f.display()
            );
        }
    }

    #[test]
    fn unknown_key_and_disabled_key_surface_kms_errors() {
        let (_d, store, kms, b) = setup();
        let err = store
            .begin_put(
                &b,
                "k",
                P,
                PutRequest {
                    content_type: "x".into(),
                    acl: CannedAcl::Private,
                    sse: SseChoice::Kms {
                        key_id: "alias/nope".into(),
                        bucket_key: false,
                    },
                    owner_account: DEFAULT_ACCOUNT.into(),
                    user_metadata: BTreeMap::new(),
                    condition: Default::default(),
                },
            )
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Kms(ref f) if f.code == "NotFoundException"));
        put(&store, &b, "k", b"secret", kms_choice());
        *kms.disabled.lock().unwrap() = true;
        let err = get(&store, "imagebucket-1", "k").unwrap_err();
        assert!(matches!(err, StoreError::Kms(ref f) if f.code == "DisabledException"));
    }

    #[test]
    fn hostile_keys_stay_inside_the_bucket() {
        let (d, store, _k, b) = setup();
        let keys = [
            "../../../../etc/passwd",
            "..",
            ".",
            "/absolute/path",
            "a/../../b",
            "dir/",
            "ünïcødé/😀.png",
            "back\\slash",
            "nul\u{0}byte",
            &"k".repeat(1024),
        ];
        for (i, k) in keys.iter().enumerate() {
            put(
                &store,
                &b,
                k,
                format!("body {i}").as_bytes(),
                SseChoice::StoreKey,
            );
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                get(&store, "imagebucket-1", k).unwrap(),
                format!("body {i}").as_bytes()
            );
        }
        let objects = d.path().join("s3/buckets/imagebucket-1/objects");
        for f in all_files(d.path()) {
            assert!(
                f.starts_with(d.path().join("s3")),
                "{} escaped the store",
                f.display()
            );
            if f.starts_with(&objects) {
                let name = f.file_name().unwrap().to_str().unwrap();
                assert!(
                    name.bytes()
                        .all(|c| c.is_ascii_hexdigit() || c == b'.' || c.is_ascii_lowercase()),
                    "{name}"
                );
            }
        }
        let (listed, more) = store.list_objects("imagebucket-1", "", None, 1000).unwrap();
        assert!(!more);
        assert_eq!(listed.len(), keys.len());
        assert!(matches!(
            validate_key(&"k".repeat(1025)),
            Err(StoreError::InvalidKey(_))
        ));
        assert!(store.head_object("../etc", "x").is_err());
    }

    #[test]
    fn tampering_is_detected_on_read() {
        let (d, store, _k, b) = setup();
        let pt = body(3 * CHUNK_SIZE);
        let m = put(&store, &b, "t", &pt, SseChoice::StoreKey);
        let data = d
            .path()
            .join("s3/buckets/imagebucket-1/objects")
            .join(&m.data_file);
        let orig = fs::read(&data).unwrap();

        // A flipped bit in chunk 2: chunk 0 (checked at open) comes out, then the batch
        // holding chunk 2 fails as a whole: nothing from it is returned.
        let mut t = orig.clone();
        t[2 * sse::SEALED_CHUNK_SIZE + 7] ^= 1;
        fs::write(&data, &t).unwrap();
        let obj = store
            .load_object("imagebucket-1", "t", |m| 0..m.size)
            .unwrap();
        let mut r = store.open_reader(obj, P).unwrap();
        assert_eq!(r.next_chunk().unwrap().unwrap().as_ref(), &pt[..CHUNK_SIZE]);
        assert!(matches!(r.next_chunk(), Err(StoreError::Integrity { .. })));

        // Damage in chunk 0 fails before anything is returned.
        let mut t = orig.clone();
        t[3] ^= 1;
        fs::write(&data, &t).unwrap();
        assert!(matches!(
            get(&store, "imagebucket-1", "t"),
            Err(StoreError::Integrity { .. })
        ));

        // Truncation to a chunk boundary, and swapping two chunks.
        fs::write(&data, &orig[..2 * sse::SEALED_CHUNK_SIZE]).unwrap();
        assert!(matches!(
            get(&store, "imagebucket-1", "t"),
            Err(StoreError::Integrity { .. })
        ));
        let mut t = orig.clone();
        let (a, rest) = t.split_at_mut(sse::SEALED_CHUNK_SIZE);
        a.swap_with_slice(&mut rest[..sse::SEALED_CHUNK_SIZE]);
        fs::write(&data, &t).unwrap();
        assert!(matches!(
            get(&store, "imagebucket-1", "t"),
            Err(StoreError::Integrity { .. })
        ));

        fs::write(&data, &orig).unwrap();
        assert_eq!(get(&store, "imagebucket-1", "t").unwrap(), pt);
    }

    #[test]
    fn swapping_bodies_between_objects_is_detected() {
        let (d, store, _k, b) = setup();
        let m1 = put(&store, &b, "one", b"first object", SseChoice::StoreKey);
        let m2 = put(&store, &b, "two", b"other object", SseChoice::StoreKey);
        let dir = d.path().join("s3/buckets/imagebucket-1/objects");
        fs::copy(dir.join(&m2.data_file), dir.join(&m1.data_file)).unwrap();
        assert!(get(&store, "imagebucket-1", "one").is_err());
    }

    /// A writer with `condition` on `key`, its body written but not committed.
    fn pending(
        store: &Arc<Store>,
        b: &BucketMeta,
        key: &str,
        body: &[u8],
        condition: WriteCondition,
    ) -> Result<PutWriter, StoreError> {
        let mut req = put_request(SseChoice::StoreKey);
        req.condition = condition;
        let mut w = store.begin_put(b, key, P, req)?;
        w.write(body)?;
        Ok(w)
    }

    #[test]
    fn of_racing_creators_the_first_to_commit_wins_and_the_rest_leave_nothing() {
        let (d, store, _k, b) = setup();
        let dir = d.path().join("s3/buckets/imagebucket-1/objects");
        // All begin while the key is free, so all pass the check before the body.
        let writers: Vec<PutWriter> = (0..4)
            .map(|i| pending(&store, &b, "lock", &body(1000 + i), WriteCondition::Absent).unwrap())
            .collect();
        let outcomes: Vec<_> = writers.into_iter().map(PutWriter::commit).collect();
        assert!(outcomes[0].is_ok());
        for o in &outcomes[1..] {
            assert!(
                matches!(o, Err(StoreError::PreconditionFailed("If-None-Match"))),
                "{o:?}"
            );
        }
        assert_eq!(get(&store, "imagebucket-1", "lock").unwrap(), body(1000));
        // The losers' data files are gone: one sidecar, one body.
        assert_eq!(all_files(&dir).len(), 2);
        // Once the key exists, a creator fails before a data key is made.
        assert!(matches!(
            pending(&store, &b, "lock", b"x", WriteCondition::Absent),
            Err(StoreError::PreconditionFailed(_))
        ));
    }

    #[test]
    fn if_match_writes_swap_only_the_version_they_read() {
        let (_d, store, _k, b) = setup();
        let first = put(&store, &b, "doc", b"v1", SseChoice::StoreKey);
        let w1 = pending(
            &store,
            &b,
            "doc",
            b"v2",
            WriteCondition::Matches(Some(first.etag.clone())),
        )
        .unwrap();
        let w2 = pending(
            &store,
            &b,
            "doc",
            b"v3",
            WriteCondition::Matches(Some(first.etag.clone())),
        )
        .unwrap();
        w1.commit().unwrap();
        assert!(matches!(
            w2.commit(),
            Err(StoreError::PreconditionFailed("If-Match"))
        ));
        assert_eq!(get(&store, "imagebucket-1", "doc").unwrap(), b"v2");
        // Deleted while the body streamed in: a conflict, and nothing is written.
        let now = store.head_object("imagebucket-1", "doc").unwrap();
        let w = pending(
            &store,
            &b,
            "doc",
            b"v4",
            WriteCondition::Matches(Some(now.etag.clone())),
        )
        .unwrap();
        store
            .delete_object(
                "imagebucket-1",
                "doc",
                &WriteCondition::Matches(Some(now.etag)),
            )
            .unwrap();
        assert!(matches!(
            w.commit(),
            Err(StoreError::ConditionalRequestConflict)
        ));
        assert!(matches!(
            store.head_object("imagebucket-1", "doc"),
            Err(StoreError::NoSuchKey)
        ));
        // If-Match on a missing key: NoSuchKey, for a write and for a delete.
        assert!(matches!(
            pending(&store, &b, "doc", b"x", WriteCondition::Matches(None)),
            Err(StoreError::NoSuchKey)
        ));
        assert!(matches!(
            store.delete_object("imagebucket-1", "doc", &WriteCondition::Matches(None)),
            Err(StoreError::NoSuchKey)
        ));
        let m = put(&store, &b, "doc", b"v5", SseChoice::StoreKey);
        assert!(matches!(
            store.delete_object(
                "imagebucket-1",
                "doc",
                &WriteCondition::Matches(Some("\"0\"".into()))
            ),
            Err(StoreError::PreconditionFailed(_))
        ));
        assert_eq!(get(&store, "imagebucket-1", "doc").unwrap(), b"v5");
        store
            .delete_object(
                "imagebucket-1",
                "doc",
                &WriteCondition::Matches(Some(m.etag)),
            )
            .unwrap();
    }

    #[test]
    fn golden_sse_c_protection_opens_with_its_key_only() {
        // Made by Python `cryptography` (OpenSSL) from FORMAT.md: customer key 0x24 x 32,
        // salt 01..20, data key 0x42 x 32 (that of sse.rs's golden body), nonce 0x11 x 12,
        // AAD `arn:aws:s3:::bucket/key`.
        let p: KeyProtection =
            serde_json::from_str(include_str!("testdata/golden-sse-c-protection.json")).unwrap();
        let (_d, store, _k, _b) = setup();
        let right = CustomerKey::from_raw([0x24; 32]);
        let dek = store
            .data_key("bucket", "key", &p, P, Some(&right))
            .unwrap();
        assert_eq!(dek.as_bytes(), &[0x42; 32]);
        let wrong = CustomerKey::from_raw([0x25; 32]);
        assert!(matches!(
            store.data_key("bucket", "key", &p, P, Some(&wrong)),
            Err(StoreError::CustomerKeyMismatch)
        ));
        assert!(matches!(
            store.data_key("bucket", "key", &p, P, None),
            Err(StoreError::CustomerKeyRequired)
        ));
        // Moved under another key: the wrapping's AAD fails.
        assert!(matches!(
            store.data_key("bucket", "other", &p, P, Some(&right)),
            Err(StoreError::Integrity { .. })
        ));
        // And a key given for an object not kept under one is refused.
        assert!(matches!(
            check_customer_key(
                &KeyProtection::StoreKey {
                    wrapped_key: Vec::new()
                },
                Some(&right)
            ),
            Err(StoreError::CustomerKeyNotApplicable)
        ));
    }

    #[test]
    fn sse_c_objects_round_trip_under_the_customer_key_alone() {
        let (d, store, _k, b) = setup();
        let ck = Arc::new(CustomerKey::from_raw([9; 32]));
        let pt = random_body(200_000, 5);
        let m = put(&store, &b, "c", &pt, SseChoice::Customer(Arc::clone(&ck)));
        assert!(m.protection.is_customer_key());
        let mut obj = store
            .load_object("imagebucket-1", "c", |m| 0..m.size)
            .unwrap();
        assert!(matches!(
            store.open_reader(obj, P).map(|_| ()),
            Err(StoreError::CustomerKeyRequired)
        ));
        obj = store
            .load_object("imagebucket-1", "c", |m| 0..m.size)
            .unwrap();
        obj.customer = Some(ck);
        let mut r = store.open_reader(obj, P).unwrap();
        let mut got = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            got.extend_from_slice(&c);
        }
        assert_eq!(got, pt);
        // Neither the key nor the plaintext is on disk.
        for f in all_files(&d.path().join("s3")) {
            let bytes = fs::read(&f).unwrap();
            assert!(!bytes.windows(32).any(|w| w == [9; 32]), "{}", f.display());
            assert!(
                !bytes.windows(64).any(|w| w == &pt[1000..1064]),
                "{}",
                f.display()
            );
        }
    }

    #[test]
    fn abandoned_upload_leaves_the_old_object_and_no_files() {
        let (d, store, _k, b) = setup();
        put(&store, &b, "obj", b"old version", SseChoice::StoreKey);
        let dir = d.path().join("s3/buckets/imagebucket-1/objects");
        let before = all_files(&dir).len();
        {
            let mut w = store
                .begin_put(
                    &b,
                    "obj",
                    P,
                    PutRequest {
                        content_type: "x".into(),
                        acl: CannedAcl::Private,
                        sse: SseChoice::StoreKey,
                        owner_account: DEFAULT_ACCOUNT.into(),
                        user_metadata: BTreeMap::new(),
                        condition: Default::default(),
                    },
                )
                .unwrap();
            w.write(&body(200_000)).unwrap();
            // dropped: the client went away mid-upload
        }
        assert_eq!(get(&store, "imagebucket-1", "obj").unwrap(), b"old version");
        assert_eq!(all_files(&dir).len(), before);
        // An overwrite replaces the body and removes the old data file.
        put(&store, &b, "obj", b"new version", SseChoice::StoreKey);
        assert_eq!(get(&store, "imagebucket-1", "obj").unwrap(), b"new version");
        assert_eq!(all_files(&dir).len(), before);
    }

    #[test]
    fn crash_orphans_are_collected_on_open() {
        let (d, store, kms, b) = setup();
        put(&store, &b, "obj", b"committed", SseChoice::StoreKey);
        let dir = d.path().join("s3/buckets/imagebucket-1/objects");
        // A crash after the body was written but before the sidecar rename.
        let orphan = dir.join(format!("{}.{:016x}.data", key_file_stem("obj"), 7));
        fs::write(&orphan, b"half-written").unwrap();
        fs::write(dir.join(".x.json.tmp.1.2"), b"{").unwrap();
        drop(store);
        let store = Store::open(&d.path().join("s3"), kms).unwrap();
        assert!(!orphan.exists());
        assert_eq!(all_files(&dir).len(), 2);
        assert_eq!(get(&store, "imagebucket-1", "obj").unwrap(), b"committed");
    }

    #[test]
    fn delete_and_list_and_bucket_lifecycle() {
        let (_d, store, _k, b) = setup();
        for k in ["a/1", "a/2", "b/1"] {
            put(&store, &b, k, k.as_bytes(), SseChoice::StoreKey);
        }
        let (l, more) = store.list_objects("imagebucket-1", "a/", None, 1).unwrap();
        assert_eq!(l.len(), 1);
        assert!(more);
        let (l, more) = store
            .list_objects("imagebucket-1", "a/", Some("a/1"), 10)
            .unwrap();
        assert_eq!(
            l.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
            ["a/2"]
        );
        assert!(!more);
        assert!(matches!(
            store.delete_bucket("imagebucket-1"),
            Err(StoreError::BucketNotEmpty)
        ));
        for k in ["a/1", "a/2", "b/1", "never-existed"] {
            store
                .delete_object("imagebucket-1", k, &WriteCondition::Unconditional)
                .unwrap();
        }
        assert!(matches!(
            store.head_object("imagebucket-1", "a/1"),
            Err(StoreError::NoSuchKey)
        ));
        store.delete_bucket("imagebucket-1").unwrap();
        assert!(matches!(
            store.get_bucket("imagebucket-1"),
            Err(StoreError::NoSuchBucket)
        ));
        assert!(store.list_buckets().unwrap().is_empty());
    }

    #[test]
    fn sse_choice_follows_bucket_default_and_request() {
        let mut b = BucketMeta::new("bkt", DEFAULT_ACCOUNT, String::new());
        assert_eq!(
            SseChoice::resolve(&b, None, None, None).unwrap(),
            SseChoice::StoreKey
        );
        assert_eq!(
            SseChoice::resolve(&b, Some(SseAlgorithm::AwsKms), None, None).unwrap(),
            SseChoice::Kms {
                key_id: "alias/aws/s3".into(),
                bucket_key: false
            }
        );
        b.encryption = meta::BucketEncryption {
            algorithm: SseAlgorithm::AwsKms,
            kms_key_id: Some("alias/MyKMSKey".into()),
            bucket_key_enabled: true,
        };
        assert_eq!(
            SseChoice::resolve(&b, None, None, None).unwrap(),
            SseChoice::Kms {
                key_id: "alias/MyKMSKey".into(),
                bucket_key: true
            }
        );
        assert_eq!(
            SseChoice::resolve(&b, Some(SseAlgorithm::Aes256), None, None).unwrap(),
            SseChoice::StoreKey
        );
    }
}
