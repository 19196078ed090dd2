//! Multipart uploads: CreateMultipartUpload makes the upload's data key (KMS
//! `GenerateDataKey` for SSE-KMS, as a PUT does); each UploadPart recovers it (KMS `Decrypt`
//! as the caller, as S3 does) and seals the part as it streams in, into a `HASH.RAND.data`
//! file of its own beside the objects; CompleteMultipartUpload checks the part list and
//! publishes the object by writing one sidecar that names the chosen parts, the same atomic
//! commit as a PUT. Nothing is copied at completion.
//!
//! Uploads in progress live in this process's memory, their parts on disk. An upload ends
//! with the endpoint that received it: after a crash or a restart, its part files are
//! unreferenced data files, which the store removes when it opens (as it removes a crashed
//! PUT's half-written body). So a crash at any point leaves either no object or the whole
//! one, and no part files once the store has been reopened.
//!
//! Every part of an upload is sealed under the upload's one data key, with a nonce prefix
//! no other part of the upload has used (a re-uploaded part gets a new one) and the
//! associated data `sse::part_aad` (object ARN, upload id, part number).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;

use super::checksum;
use super::customer_key::CustomerKey;
use super::meta::{
    self, BucketMeta, CannedAcl, KeyProtection, MultipartBody, ObjectMeta, StoredChecksum,
    StoredPart,
};
use super::parts::{self, Requested, UploadedPart, MAX_PART_SIZE};
use super::precondition::{Stage, WriteCondition};
use super::sealed::SealedFile;
use super::sse::{self, CHUNK_SIZE};
use super::store::{PutRequest, Store, StoreError};
use plumbing::awstime::now_rfc3339;

/// Multipart uploads in progress at once, per store; more are refused (`SlowDown`), so
/// the registry's memory stays bounded.
pub const MAX_UPLOADS: usize = 10_000;

/// The uploads in progress.
#[derive(Default)]
pub struct Uploads {
    map: Mutex<HashMap<String, Arc<Upload>>>,
}

impl Uploads {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Upload>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets (and aborts) every upload into `bucket`: called when the bucket is deleted.
    pub(super) fn drop_bucket(&self, bucket: &str) {
        let gone: Vec<Arc<Upload>> = {
            let mut map = self.lock();
            let ids: Vec<String> = map
                .values()
                .filter(|u| u.bucket == bucket)
                .map(|u| u.id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for u in gone {
            u.state().finished = true;
        }
    }
}

/// One upload in progress.
pub struct Upload {
    pub id: String,
    pub bucket: String,
    pub key: String,
    /// RFC 3339.
    pub initiated: String,
    /// The principal that created it.
    pub initiator: String,
    /// Who will own the object.
    pub owner_account: String,
    pub content_type: String,
    pub acl: CannedAcl,
    pub user_metadata: BTreeMap<String, String>,
    /// How the upload's data key is kept (the object's, once completed).
    pub protection: KeyProtection,
    /// An SSE-C upload's data key, kept in memory until it ends so that
    /// CompleteMultipartUpload (where S3 does not require the customer key) can seal the
    /// part list; every UploadPart must still present the key.
    customer_dek: Option<sse::DataKey>,
    /// The checksum algorithm and type CreateMultipartUpload named: every part's checksum
    /// under it is computed and kept, and the object's made from them.
    pub checksum: Option<checksum::UploadChecksum>,
    state: Mutex<UploadState>,
}

#[derive(Default)]
struct UploadState {
    parts: BTreeMap<u32, PartRecord>,
    /// Every nonce prefix handed to a part of this upload, committed or not.
    prefixes: HashSet<[u8; sse::NONCE_PREFIX_LEN]>,
    /// Completed or aborted: no part may be added any more.
    finished: bool,
}

impl Upload {
    fn state(&self) -> MutexGuard<'_, UploadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A nonce prefix no part of this upload has had.
    fn fresh_prefix(&self) -> Result<[u8; sse::NONCE_PREFIX_LEN], StoreError> {
        let mut st = self.state();
        if st.finished {
            return Err(StoreError::NoSuchUpload);
        }
        loop {
            let p = sse::random_prefix();
            if st.prefixes.insert(p) {
                return Ok(p);
            }
        }
    }
}

/// What a CompleteMultipartUpload says of the object it makes, checked before it is
/// published: `x-amz-checksum-type`, an `x-amz-checksum-<algorithm>` of the object (the
/// full-object CRC, or the composite `<base64>-N`), and `x-amz-mp-object-size`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompleteChecks {
    pub kind: Option<meta::ChecksumKind>,
    /// (algorithm, base64 value as sent).
    pub checksum: Option<(String, String)>,
    pub object_size: Option<u64>,
}

impl CompleteChecks {
    fn check(
        &self,
        upload: Option<&checksum::UploadChecksum>,
        made: Option<&StoredChecksum>,
        size: u64,
    ) -> Result<(), StoreError> {
        if let Some(kind) = self.kind {
            if upload.map(|u| u.kind) != Some(kind) {
                return Err(StoreError::ChecksumRequest(format!(
                    "The upload was created using the {} checksum mode. The complete request must use the same checksum mode.",
                    upload.map_or("null", |u| u.kind.as_str())
                )));
            }
        }
        if let Some((algorithm, value)) = &self.checksum {
            if upload.map(|u| u.algorithm.as_str()) != Some(algorithm.as_str()) {
                return Err(StoreError::ChecksumRequest(format!(
                    "The upload was created using a {} checksum. The complete request specified a {} checksum.",
                    upload.map_or("null".to_string(), |u| u.algorithm.to_lowercase()),
                    algorithm.to_lowercase()
                )));
            }
            if made.map(|m| m.value.as_str()) != Some(value.trim()) {
                return Err(StoreError::BadChecksum(algorithm.clone()));
            }
        }
        if let Some(want) = self.object_size {
            if want != size {
                return Err(StoreError::ChecksumRequest(format!(
                    "The provided 'x-amz-mp-object-size' header value {want} does not match what was computed: {size}"
                )));
            }
        }
        Ok(())
    }
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    pub number: u32,
    pub size: u64,
    /// Its ETag: the MD5 of the part for SSE-S3; for SSE-KMS 16 random bytes, as opaque
    /// as a single SSE-KMS object's (S3's are not MD5s either).
    pub etag: [u8; 16],
    pub data_file: String,
    pub nonce_prefix: [u8; sse::NONCE_PREFIX_LEN],
    /// RFC 3339.
    pub last_modified: String,
    /// The `x-amz-checksum-*` the part was checked against, if it declared one.
    pub checksum: Option<StoredChecksum>,
}

impl PartRecord {
    /// `"hex"`, as S3 quotes it.
    pub fn etag_quoted(&self) -> String {
        format!("\"{}\"", hex::encode(self.etag))
    }
}

/// A part being written. Dropping it without [`PartWriter::commit`] removes its data.
pub struct PartWriter {
    upload: Arc<Upload>,
    number: u32,
    prefix: [u8; sse::NONCE_PREFIX_LEN],
    body: SealedFile,
    store: Arc<Store>,
    checksum: Option<StoredChecksum>,
    /// The upload's algorithm over the part's bytes, when the upload named one.
    hasher: Option<(String, checksum::Hasher)>,
}

impl PartWriter {
    /// Keeps the checksum the part was checked against (for a composite checksum).
    pub fn set_checksum(&mut self, checksum: StoredChecksum) {
        self.checksum = Some(checksum);
    }

    /// The caller checks the body under the upload's own algorithm (the client declared
    /// that checksum) and sets the verified value with [`Self::set_checksum`], so the
    /// part is not summed a second time here.
    pub fn summed_by_caller(&mut self) {
        self.hasher = None;
    }

    /// Seals and writes the next piece of the part.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if let Some((_, h)) = &mut self.hasher {
            h.update(data);
        }
        self.body.write(data)
    }

    /// Plaintext bytes written so far.
    pub fn len(&self) -> u64 {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The upload this part belongs to.
    pub fn upload(&self) -> &Upload {
        &self.upload
    }

    /// Makes the part durable and adds it to its upload, replacing an earlier upload of
    /// the same part number. Refused with `NoSuchUpload` (the part discarded) if the upload
    /// was completed or aborted meanwhile.
    pub fn commit(mut self) -> Result<PartRecord, StoreError> {
        let sealed = self.body.finish()?;
        // The upload's algorithm over what was written: the part's checksum even when the
        // client sent none (or sent another kind, which the request refused already).
        if let Some((algorithm, h)) = self.hasher.take() {
            self.checksum = Some(StoredChecksum {
                algorithm,
                value: base64::engine::general_purpose::STANDARD.encode(h.finalize()),
                kind: meta::ChecksumKind::FullObject,
            });
        }
        let record = PartRecord {
            number: self.number,
            size: sealed.size,
            etag: sealed.md5.unwrap_or_else(rand::random),
            data_file: self.body.file_name(),
            nonce_prefix: self.prefix,
            last_modified: now_rfc3339(),
            checksum: self.checksum.take(),
        };
        let mut st = self.upload.state();
        if st.finished {
            return Err(StoreError::NoSuchUpload);
        }
        if let Some(old) = st.parts.insert(self.number, record.clone()) {
            self.store
                .remove_data_file(&self.upload.bucket, &old.data_file);
        }
        drop(st);
        self.body.keep();
        Ok(record)
    }
}

/// What listing an upload's parts returns.
pub struct PartsPage {
    pub upload: Arc<Upload>,
    pub parts: Vec<PartRecord>,
    pub truncated: bool,
}

impl Store {
    /// Upload `id`, if it is in progress and is one of `key` in `bucket`.
    pub fn find_upload(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> Result<Arc<Upload>, StoreError> {
        self.get_bucket(bucket)?;
        self.uploads
            .lock()
            .get(id)
            .filter(|u| u.bucket == bucket && u.key == key)
            .cloned()
            .ok_or(StoreError::NoSuchUpload)
    }

    /// Starts a multipart upload of `key`: makes its data key (KMS `GenerateDataKey` as
    /// `principal` for SSE-KMS) and registers it. The plaintext key is not kept: each part
    /// recovers it.
    pub fn create_upload(
        &self,
        bucket: &BucketMeta,
        key: &str,
        principal: &str,
        req: PutRequest,
    ) -> Result<Arc<Upload>, StoreError> {
        self.create_upload_with(bucket, key, principal, req, None)
    }

    /// [`Store::create_upload`] of an upload whose parts and object are summed under
    /// `checksum` (CreateMultipartUpload's `x-amz-checksum-algorithm` and `-type`).
    pub fn create_upload_with(
        &self,
        bucket: &BucketMeta,
        key: &str,
        principal: &str,
        req: PutRequest,
        checksum: Option<checksum::UploadChecksum>,
    ) -> Result<Arc<Upload>, StoreError> {
        self.sidecar_path(&bucket.name, key)?; // checks the key
        if self.uploads.lock().len() >= MAX_UPLOADS {
            return Err(StoreError::TooManyUploads(MAX_UPLOADS));
        }
        let (dek, protection) = self.new_data_key(bucket, key, principal, &req.sse)?;
        let customer_dek = protection.is_customer_key().then_some(dek);
        let upload = Arc::new(Upload {
            customer_dek,
            id: hex::encode(rand::random::<[u8; 16]>()),
            bucket: bucket.name.clone(),
            key: key.to_string(),
            initiated: now_rfc3339(),
            initiator: principal.to_string(),
            owner_account: req.owner_account,
            content_type: req.content_type,
            acl: req.acl,
            user_metadata: req.user_metadata,
            protection,
            checksum,
            state: Mutex::new(UploadState::default()),
        });
        let mut map = self.uploads.lock();
        if map.len() >= MAX_UPLOADS {
            return Err(StoreError::TooManyUploads(MAX_UPLOADS));
        }
        map.insert(upload.id.clone(), Arc::clone(&upload));
        Ok(upload)
    }

    /// Starts writing part `number` of an upload: recovers the upload's data key (KMS
    /// `Decrypt` as `principal`) and opens a fresh data file for the part.
    pub fn begin_part(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        principal: &str,
        customer: Option<&CustomerKey>,
    ) -> Result<PartWriter, StoreError> {
        let upload = self.find_upload(bucket, key, upload_id)?;
        let dek = self.data_key(bucket, key, &upload.protection, principal, customer)?;
        let prefix = upload.fresh_prefix()?;
        let arn = meta::object_arn(bucket, key);
        let md5 = matches!(upload.protection, KeyProtection::StoreKey { .. });
        let body = SealedFile::create(
            self.new_data_path(bucket, key)?,
            key,
            (&dek, prefix, &sse::part_aad(&arn, upload_id, number)),
            MAX_PART_SIZE,
            md5,
        )?;
        let hasher = upload
            .checksum
            .as_ref()
            .and_then(|c| checksum::Hasher::new(&c.algorithm).map(|h| (c.algorithm.clone(), h)));
        Ok(PartWriter {
            upload,
            number,
            prefix,
            body,
            store: Arc::clone(self),
            checksum: None,
            hasher,
        })
    }

    /// Publishes the object from the parts `requested` names (checked as S3 checks them),
    /// in one atomic sidecar write; parts not named are removed. Completing an upload that
    /// already made the current object answers that object again (a retried request).
    pub fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        requested: &[Requested],
        principal: &str,
        condition: &WriteCondition,
    ) -> Result<ObjectMeta, StoreError> {
        self.complete_upload_with(
            bucket,
            key,
            upload_id,
            requested,
            principal,
            condition,
            &CompleteChecks::default(),
        )
    }

    /// [`Store::complete_upload`], refused before anything is published if the object
    /// is not what `checks` says (CompleteMultipartUpload's own checksum headers).
    #[allow(clippy::too_many_arguments)]
    pub fn complete_upload_with(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        requested: &[Requested],
        principal: &str,
        condition: &WriteCondition,
        checks: &CompleteChecks,
    ) -> Result<ObjectMeta, StoreError> {
        let upload = match self.find_upload(bucket, key, upload_id) {
            Ok(u) => u,
            Err(StoreError::NoSuchUpload) => {
                return match self.head_object(bucket, key) {
                    Ok(m)
                        if m.multipart
                            .as_ref()
                            .is_some_and(|mp| mp.upload_id == upload_id) =>
                    {
                        Ok(m)
                    }
                    _ => Err(StoreError::NoSuchUpload),
                }
            }
            Err(e) => return Err(e),
        };
        let mut st = upload.state();
        if st.finished {
            return Err(StoreError::NoSuchUpload);
        }
        // Fails before the manifest is sealed; decided again at the commit.
        self.check_condition(bucket, key, condition, Stage::Before)?;
        let uploaded: BTreeMap<u32, UploadedPart> = st
            .parts
            .iter()
            .map(|(&n, p)| {
                (
                    n,
                    UploadedPart {
                        size: p.size,
                        etag: p.etag,
                        checksum: p
                            .checksum
                            .as_ref()
                            .map(|c| (c.algorithm.as_str(), c.value.as_str())),
                    },
                )
            })
            .collect();
        let chosen = parts::select(requested, &uploaded)?;
        let records: Vec<&PartRecord> = chosen.iter().filter_map(|n| st.parts.get(n)).collect();
        let size: u64 = records.iter().map(|p| p.size).sum();
        let object_checksum = checksum::of_upload(
            upload.checksum.as_ref(),
            &records
                .iter()
                .map(|p| (p.checksum.as_ref(), p.size))
                .collect::<Vec<_>>(),
        );
        checks.check(upload.checksum.as_ref(), object_checksum.as_ref(), size)?;
        let arn = meta::object_arn(bucket, key);
        let mut body = MultipartBody {
            upload_id: upload.id.clone(),
            parts: records
                .iter()
                .map(|p| StoredPart {
                    number: p.number,
                    size: p.size,
                    data_file: p.data_file.clone(),
                    nonce_prefix: p.nonce_prefix,
                    checksum: p.checksum.clone(),
                })
                .collect(),
            manifest_seal: Vec::new(),
        };
        let fetched;
        let dek: &sse::DataKey = match &upload.customer_dek {
            Some(dek) => dek,
            None => {
                fetched = self.data_key(bucket, key, &upload.protection, principal, None)?;
                &fetched
            }
        };
        body.manifest_seal = sse::seal_manifest(dek, &body.manifest(&arn))
            .map_err(|source| StoreError::Integrity {
                key: key.to_string(),
                source,
            })?
            .to_vec();
        let etags: Vec<[u8; 16]> = records.iter().map(|p| p.etag).collect();
        let meta = ObjectMeta {
            key: key.to_string(),
            data_file: String::new(),
            size,
            etag: parts::multipart_etag(&etags),
            content_type: upload.content_type.clone(),
            last_modified: now_rfc3339(),
            owner_account: upload.owner_account.clone(),
            acl: upload.acl,
            protection: upload.protection.clone(),
            nonce_prefix: None,
            chunk_size: CHUNK_SIZE as u32,
            user_metadata: upload.user_metadata.clone(),
            multipart: Some(body),
            checksum: object_checksum,
        };
        self.commit_sidecar(bucket, &self.sidecar_path(bucket, key)?, &meta, condition)?;
        st.finished = true;
        for (n, p) in &st.parts {
            if !chosen.contains(n) {
                self.remove_data_file(bucket, &p.data_file);
            }
        }
        drop(st);
        self.uploads.lock().remove(upload_id);
        Ok(meta)
    }

    /// Aborts an upload: its parts are removed, and a part still streaming in is refused
    /// when it ends.
    pub fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let upload = self.find_upload(bucket, key, upload_id)?;
        let mut st = upload.state();
        st.finished = true;
        for p in std::mem::take(&mut st.parts).values() {
            self.remove_data_file(bucket, &p.data_file);
        }
        drop(st);
        self.uploads.lock().remove(upload_id);
        Ok(())
    }

    /// Up to `max` parts of an upload numbered above `after`, in order.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<PartsPage, StoreError> {
        let upload = self.find_upload(bucket, key, upload_id)?;
        let st = upload.state();
        let mut parts: Vec<PartRecord> = st
            .parts
            .range(after.saturating_add(1)..)
            .take(max.saturating_add(1))
            .map(|(_, p)| p.clone())
            .collect();
        drop(st);
        let truncated = parts.len() > max;
        parts.truncate(max);
        Ok(PartsPage {
            upload,
            parts,
            truncated,
        })
    }

    /// Every upload in progress into `bucket`, by key, then by upload id (the order S3's
    /// upload id marker assumes).
    pub fn list_uploads(&self, bucket: &str) -> Result<Vec<Arc<Upload>>, StoreError> {
        self.get_bucket(bucket)?;
        let mut all: Vec<Arc<Upload>> = self
            .uploads
            .lock()
            .values()
            .filter(|u| u.bucket == bucket)
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.key.as_str(), a.id.as_str()).cmp(&(b.key.as_str(), b.id.as_str())));
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::meta::SseAlgorithm;
    use crate::s3::parts::{PartsError, MIN_PART_SIZE};
    use crate::s3::store::SseChoice;
    use crate::s3::testkit::*;
    use std::fs;

    const B: &str = "imagebucket-1";

    fn upload_part(store: &Arc<Store>, key: &str, id: &str, n: u32, data: &[u8]) -> PartRecord {
        let mut w = store.begin_part(B, key, id, n, P, None).unwrap();
        for piece in data.chunks(100_000) {
            w.write(piece).unwrap();
        }
        w.commit().unwrap()
    }

    fn req(p: &PartRecord) -> Requested {
        Requested {
            number: Some(p.number as i32),
            etag: Some(p.etag_quoted()),
            checksums: Vec::new(),
        }
    }

    fn data_files(dir: &std::path::Path) -> usize {
        all_files(dir)
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "data"))
            .count()
    }

    #[test]
    fn parts_become_one_object_under_every_kind_of_key() {
        let (d, store, _kms, b) = setup();
        let objects = d.path().join("s3/buckets/imagebucket-1/objects");
        let size = MIN_PART_SIZE as usize;
        let p1 = random_body(size + 1000, 1);
        let p2 = random_body(size, 2);
        let p3 = random_body(77_777, 3);
        for (i, sse) in [
            SseChoice::StoreKey,
            kms_choice(),
            SseChoice::Kms {
                key_id: "alias/MyKMSKey".into(),
                bucket_key: true,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("big/{i}.bin");
            let up = store
                .create_upload(&b, &key, P, put_request(sse.clone()))
                .unwrap();
            // Out of order, and part 2 twice: the second upload replaces the first.
            let r3 = upload_part(&store, &key, &up.id, 3, &p3);
            upload_part(&store, &key, &up.id, 2, &p1);
            let r2 = upload_part(&store, &key, &up.id, 2, &p2);
            let r1 = upload_part(&store, &key, &up.id, 1, &p1);
            let m = store
                .complete_upload(
                    B,
                    &key,
                    &up.id,
                    &[req(&r1), req(&r2), req(&r3)],
                    P,
                    &WriteCondition::Unconditional,
                )
                .unwrap();
            let whole = [p1.clone(), p2.clone(), p3.clone()].concat();
            assert_eq!(m.size, whole.len() as u64);
            assert_eq!(m.parts_count(), Some(3));
            assert_eq!(m.etag, parts::multipart_etag(&[r1.etag, r2.etag, r3.etag]));
            assert_eq!(m.protection.algorithm(), sse.algorithm());
            if sse == SseChoice::StoreKey {
                // SSE-S3 part ETags are the parts' MD5s, so the object's is S3's.
                use md5::Digest;
                let md5 = |b: &[u8]| -> [u8; 16] { md5::Md5::digest(b).into() };
                assert_eq!(r1.etag, md5(&p1));
                assert_eq!(
                    m.etag,
                    parts::multipart_etag(&[md5(&p1), md5(&p2), md5(&p3)])
                );
            }
            assert_eq!(get(&store, B, &key).unwrap(), whole);
            assert!(matches!(
                store.begin_part(B, &key, &up.id, 4, P, None),
                Err(StoreError::NoSuchUpload)
            ));
        }
        // Three objects of three parts each; the replaced part 2s are gone.
        assert_eq!(data_files(&objects), 9);
        let needle = &p2[4096..4128];
        for f in all_files(&d.path().join("s3")) {
            let raw = fs::read(&f).unwrap();
            assert!(
                !raw.windows(32).any(|w| w == needle),
                "{} leaks",
                f.display()
            );
        }
        assert_eq!(
            store
                .head_object(B, "big/0.bin")
                .unwrap()
                .protection
                .algorithm(),
            SseAlgorithm::Aes256
        );
    }

    #[test]
    fn a_completion_list_is_checked_and_a_failed_one_leaves_the_upload() {
        let (_d, store, _kms, b) = setup();
        let up = store
            .create_upload(&b, "k", P, put_request(SseChoice::StoreKey))
            .unwrap();
        let small = upload_part(&store, "k", &up.id, 1, b"tiny");
        let big = upload_part(
            &store,
            "k",
            &up.id,
            2,
            &random_body(MIN_PART_SIZE as usize, 9),
        );
        let complete = |parts: &[Requested]| {
            store.complete_upload(B, "k", &up.id, parts, P, &WriteCondition::Unconditional)
        };
        assert!(matches!(
            complete(&[req(&small), req(&big)]),
            Err(StoreError::Parts(PartsError::EntityTooSmall {
                number: 1,
                size: 4
            }))
        ));
        assert!(matches!(
            complete(&[req(&big), req(&small)]),
            Err(StoreError::Parts(PartsError::InvalidPartOrder))
        ));
        let mut wrong = req(&big);
        wrong.etag = Some(small.etag_quoted());
        assert!(matches!(
            complete(&[wrong]),
            Err(StoreError::Parts(PartsError::InvalidPart { number: 2 }))
        ));
        assert!(matches!(
            complete(&[]),
            Err(StoreError::Parts(PartsError::MalformedList))
        ));
        assert!(matches!(
            store.head_object(B, "k"),
            Err(StoreError::NoSuchKey)
        ));
        // Still in progress: part 2 alone completes it, and part 1's file goes.
        let m = complete(&[req(&big)]).unwrap();
        assert_eq!(m.size, MIN_PART_SIZE);
        // A retried completion answers the same object; another upload id does not exist.
        assert_eq!(complete(&[req(&big)]).unwrap(), m);
        assert!(matches!(
            store.complete_upload(
                B,
                "k",
                "0123456789abcdef0123456789abcdef",
                &[req(&big)],
                P,
                &WriteCondition::Unconditional
            ),
            Err(StoreError::NoSuchUpload)
        ));
    }

    #[test]
    fn abort_removes_the_parts_and_refuses_a_part_still_streaming() {
        let (d, store, _kms, b) = setup();
        let objects = d.path().join("s3/buckets/imagebucket-1/objects");
        let up = store
            .create_upload(&b, "k", P, put_request(kms_choice()))
            .unwrap();
        upload_part(&store, "k", &up.id, 1, &random_body(300_000, 1));
        let mut streaming = store.begin_part(B, "k", &up.id, 2, P, None).unwrap();
        streaming.write(b"half of a part").unwrap();
        assert_eq!(data_files(&objects), 2);
        assert_eq!(store.list_uploads(B).unwrap().len(), 1);
        store.abort_upload(B, "k", &up.id).unwrap();
        assert!(matches!(streaming.commit(), Err(StoreError::NoSuchUpload)));
        assert_eq!(data_files(&objects), 0);
        assert!(store.list_uploads(B).unwrap().is_empty());
        assert!(matches!(
            store.abort_upload(B, "k", &up.id),
            Err(StoreError::NoSuchUpload)
        ));
        // An upload is one of one key in one bucket.
        let up = store
            .create_upload(&b, "k", P, put_request(SseChoice::StoreKey))
            .unwrap();
        assert!(matches!(
            store.begin_part(B, "other", &up.id, 1, P, None),
            Err(StoreError::NoSuchUpload)
        ));
    }

    #[test]
    fn a_crash_leaves_the_old_object_and_no_part_files_after_reopening() {
        let (d, store, kms, b) = setup();
        let objects = d.path().join("s3/buckets/imagebucket-1/objects");
        put(&store, &b, "k", b"the old object", SseChoice::StoreKey);
        let up = store
            .create_upload(&b, "k", P, put_request(kms_choice()))
            .unwrap();
        upload_part(
            &store,
            "k",
            &up.id,
            1,
            &random_body(MIN_PART_SIZE as usize, 1),
        );
        // A part the crash interrupted, left as it was.
        let half = objects.join(format!(
            "{}.{:016x}.data",
            crate::s3::store::key_file_stem("k"),
            7
        ));
        fs::write(&half, random_body(100_000, 2)).unwrap();
        assert_eq!(data_files(&objects), 3);
        drop(up);
        drop(store); // the process died: no completion, no abort
        let store = Store::open(&d.path().join("s3"), kms).unwrap();
        assert_eq!(data_files(&objects), 1);
        assert!(store.list_uploads(B).unwrap().is_empty());
        assert_eq!(get(&store, B, "k").unwrap(), b"the old object");
    }

    #[test]
    fn replacing_or_deleting_a_multipart_object_removes_its_parts() {
        let (d, store, _kms, b) = setup();
        let objects = d.path().join("s3/buckets/imagebucket-1/objects");
        let up = store
            .create_upload(&b, "k", P, put_request(SseChoice::StoreKey))
            .unwrap();
        let r1 = upload_part(
            &store,
            "k",
            &up.id,
            1,
            &random_body(MIN_PART_SIZE as usize, 1),
        );
        let r2 = upload_part(&store, "k", &up.id, 2, b"end");
        store
            .complete_upload(
                B,
                "k",
                &up.id,
                &[req(&r1), req(&r2)],
                P,
                &WriteCondition::Unconditional,
            )
            .unwrap();
        assert_eq!(data_files(&objects), 2);
        put(&store, &b, "k", b"single", SseChoice::StoreKey);
        assert_eq!(data_files(&objects), 1);
        assert_eq!(get(&store, B, "k").unwrap(), b"single");
        let up = store
            .create_upload(&b, "k", P, put_request(SseChoice::StoreKey))
            .unwrap();
        let r1 = upload_part(&store, "k", &up.id, 1, b"x");
        store
            .complete_upload(
                B,
                "k",
                &up.id,
                &[req(&r1)],
                P,
                &WriteCondition::Unconditional,
            )
            .unwrap();
        assert_eq!(data_files(&objects), 1);
        store
            .delete_object(B, "k", &WriteCondition::Unconditional)
            .unwrap();
        assert_eq!(data_files(&objects), 0);
    }

    #[test]
    fn parts_cannot_be_reordered_dropped_or_swapped_on_disk() {
        let (d, store, _kms, b) = setup();
        let up = store
            .create_upload(&b, "k", P, put_request(kms_choice()))
            .unwrap();
        let size = MIN_PART_SIZE as usize;
        let recs: Vec<PartRecord> = (1..=3)
            .map(|n| upload_part(&store, "k", &up.id, n, &random_body(size, u64::from(n))))
            .collect();
        let reqs: Vec<Requested> = recs.iter().map(req).collect();
        store
            .complete_upload(B, "k", &up.id, &reqs, P, &WriteCondition::Unconditional)
            .unwrap();
        let sidecar = d
            .path()
            .join("s3/buckets/imagebucket-1/objects")
            .join(format!("{}.json", crate::s3::store::key_file_stem("k")));
        let orig: ObjectMeta = serde_json::from_slice(&fs::read(&sidecar).unwrap()).unwrap();
        let tamper = |f: &dyn Fn(&mut MultipartBody)| {
            let mut m = orig.clone();
            f(m.multipart.as_mut().unwrap());
            fs::write(&sidecar, serde_json::to_vec(&m).unwrap()).unwrap();
            get(&store, B, "k")
        };
        let integrity = |r: Result<Vec<u8>, StoreError>| {
            assert!(matches!(r, Err(StoreError::Integrity { .. })), "{r:?}")
        };
        // Reordered entries (each part keeps its number and file).
        integrity(tamper(&|mp| mp.parts.swap(0, 1)));
        // Two parts' files swapped under their entries: the part numbers are in the AAD.
        integrity(tamper(&|mp| {
            let f0 = mp.parts[0].data_file.clone();
            mp.parts[0].data_file = mp.parts[1].data_file.clone();
            mp.parts[1].data_file = f0;
            let p0 = mp.parts[0].nonce_prefix;
            mp.parts[0].nonce_prefix = mp.parts[1].nonce_prefix;
            mp.parts[1].nonce_prefix = p0;
        }));
        // A part dropped (the sidecar's size adjusted by hand too).
        let mut m = orig.clone();
        m.multipart.as_mut().unwrap().parts.pop();
        m.size -= MIN_PART_SIZE;
        fs::write(&sidecar, serde_json::to_vec(&m).unwrap()).unwrap();
        integrity(get(&store, B, "k"));
        fs::write(&sidecar, serde_json::to_vec(&orig).unwrap()).unwrap();
        assert_eq!(get(&store, B, "k").unwrap().len(), 3 * size);
    }

    #[test]
    fn a_reuploaded_part_gets_a_fresh_nonce_prefix() {
        let (_d, store, _kms, b) = setup();
        let up = store
            .create_upload(&b, "k", P, put_request(SseChoice::StoreKey))
            .unwrap();
        let a = upload_part(&store, "k", &up.id, 1, b"one");
        let c = upload_part(&store, "k", &up.id, 1, b"two");
        assert_ne!(a.nonce_prefix, c.nonce_prefix);
        assert_eq!(up.state().prefixes.len(), 2);
    }

    #[test]
    fn a_disabled_key_stops_the_parts() {
        let (_d, store, kms, b) = setup();
        let up = store
            .create_upload(&b, "k", P, put_request(kms_choice()))
            .unwrap();
        *kms.disabled.lock().unwrap() = true;
        assert!(matches!(
            store.begin_part(B, "k", &up.id, 1, P, None),
            Err(StoreError::Kms(ref f)) if f.code == "DisabledException"
        ));
    }

    #[test]
    fn ranges_read_only_the_chunks_under_them() {
        let (d, store, _kms, b) = setup();
        let size = MIN_PART_SIZE as usize;
        let (p1, p2) = (random_body(size, 1), random_body(300_001, 2));
        let up = store
            .create_upload(&b, "mp", P, put_request(kms_choice()))
            .unwrap();
        let r1 = upload_part(&store, "mp", &up.id, 1, &p1);
        let r2 = upload_part(&store, "mp", &up.id, 2, &p2);
        store
            .complete_upload(
                B,
                "mp",
                &up.id,
                &[req(&r1), req(&r2)],
                P,
                &WriteCondition::Unconditional,
            )
            .unwrap();
        let whole = [p1, p2].concat();
        put(&store, &b, "single", &whole, kms_choice());
        let c = sse::CHUNK_SIZE as u64;
        let n = whole.len() as u64;
        for key in ["mp", "single"] {
            for (span, chunks) in [
                (0..1, 1),
                (n - 1..n, 1),
                (c - 1..c + 1, 2),
                (c..2 * c, 1),
                // Across the part boundary (at 5 MiB = 80 chunks).
                (MIN_PART_SIZE - 10..MIN_PART_SIZE + 10, 2),
                (12345..n - 54321, 0),
                (0..n, 0),
            ] {
                let (got, read) = get_span(&store, B, key, Some(span.clone())).unwrap();
                assert_eq!(
                    got,
                    whole[span.start as usize..span.end as usize],
                    "{key} {span:?}"
                );
                if chunks > 0 {
                    assert_eq!(read, chunks, "{key} {span:?}");
                }
            }
        }
        // One byte of chunk 3 is served even if every other chunk of the body is damaged.
        let m = store.head_object(B, "single").unwrap();
        let path = d
            .path()
            .join("s3/buckets/imagebucket-1/objects")
            .join(&m.data_file);
        let mut raw = fs::read(&path).unwrap();
        for (i, chunk) in raw.chunks_mut(sse::SEALED_CHUNK_SIZE).enumerate() {
            if i != 3 {
                chunk[0] ^= 1;
            }
        }
        fs::write(&path, raw).unwrap();
        let at = 3 * c + 7;
        let (got, read) = get_span(&store, B, "single", Some(at..at + 1)).unwrap();
        assert_eq!((got[0], read), (whole[at as usize], 1));
        assert!(get(&store, B, "single").is_err());
    }
}
