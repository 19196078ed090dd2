//! Test helpers for the object store's unit tests: an in-memory KMS and a store on a
//! temporary directory.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::s3::kms::{DataKeys, DecryptedKey, EncryptionContext, GeneratedKey, KmsFailure};
use crate::s3::meta::{BucketMeta, CannedAcl, ObjectMeta, DEFAULT_ACCOUNT};
use crate::s3::sse::{self, DataKey};
use crate::s3::store::{PutRequest, SseChoice, Store, StoreError};

/// In-memory KMS double: wraps data keys under one key, binding the context, and can be
/// told that a key is disabled. (The end-to-end tests use the real kmsd.)
pub(crate) struct FakeKms {
    master: DataKey,
    pub(crate) disabled: Mutex<bool>,
}

impl FakeKms {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(FakeKms {
            master: DataKey::generate(),
            disabled: Mutex::new(false),
        })
    }
    fn ctx_bytes(c: &EncryptionContext) -> Vec<u8> {
        serde_json::to_vec(c).unwrap()
    }
}

pub(crate) const ARN: &str =
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

impl DataKeys for FakeKms {
    fn generate(
        &self,
        _p: &str,
        key_id: &str,
        c: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsFailure> {
        if key_id != "alias/MyKMSKey" && key_id != ARN {
            return Err(KmsFailure::new(
                "NotFoundException",
                format!("Alias {key_id} is not found."),
            ));
        }
        let k = DataKey::generate();
        Ok(GeneratedKey {
            key_arn: ARN.into(),
            ciphertext_blob: sse::wrap_data_key(&self.master, &k, &Self::ctx_bytes(c)).unwrap(),
            plaintext: k,
        })
    }
    fn decrypt(
        &self,
        _p: &str,
        blob: &[u8],
        c: &EncryptionContext,
    ) -> Result<DecryptedKey, KmsFailure> {
        if *self.disabled.lock().unwrap() {
            return Err(KmsFailure::new(
                "DisabledException",
                format!("{ARN} is disabled."),
            ));
        }
        let k = sse::unwrap_data_key(&self.master, blob, &Self::ctx_bytes(c))
            .map_err(|_| KmsFailure::new("InvalidCiphertextException", ""))?;
        Ok(DecryptedKey {
            key_arn: ARN.into(),
            plaintext: k,
        })
    }
}

pub(crate) const P: &str = "arn:aws:iam::111122223333:user/alice";

pub(crate) fn setup() -> (tempfile::TempDir, Arc<Store>, Arc<FakeKms>, BucketMeta) {
    let d = tempfile::tempdir().unwrap();
    let kms = FakeKms::new();
    let store = Store::open(&d.path().join("s3"), kms.clone()).unwrap();
    let b = store
        .create_bucket("imagebucket-1", DEFAULT_ACCOUNT)
        .unwrap();
    (d, store, kms, b)
}

pub(crate) fn put(
    store: &Arc<Store>,
    b: &BucketMeta,
    key: &str,
    body: &[u8],
    sse: SseChoice,
) -> ObjectMeta {
    let mut w = store.begin_put(b, key, P, put_request(sse)).unwrap();
    for piece in body.chunks(10_000) {
        w.write(piece).unwrap();
    }
    w.commit().unwrap()
}

/// What a PUT or CreateMultipartUpload of a private binary object asks for.
pub(crate) fn put_request(sse: SseChoice) -> PutRequest {
    PutRequest {
        content_type: "application/octet-stream".into(),
        acl: CannedAcl::Private,
        sse,
        owner_account: DEFAULT_ACCOUNT.into(),
        user_metadata: BTreeMap::new(),
        condition: Default::default(),
    }
}

pub(crate) fn get(store: &Store, bucket: &str, key: &str) -> Result<Vec<u8>, StoreError> {
    get_span(store, bucket, key, None).map(|(b, _)| b)
}

/// The bytes `span` (the whole object if `None`) of an object, and how many chunks the
/// reader had to read for them.
pub(crate) fn get_span(
    store: &Store,
    bucket: &str,
    key: &str,
    span: Option<Range<u64>>,
) -> Result<(Vec<u8>, u64), StoreError> {
    let obj = store.load_object(bucket, key, move |m| span.clone().unwrap_or(0..m.size))?;
    let mut r = store.open_reader(obj, P)?;
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk()? {
        out.extend_from_slice(&c);
    }
    Ok((out, r.chunks_read()))
}

/// `n` pseudo-random bytes (xorshift from `seed`): no two windows alike.
pub(crate) fn random_body(n: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    let mut x = seed | 1;
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

pub(crate) fn body(n: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..n).map(|i| (i % 97) as u8 ^ 0x5a));
    v
}

pub(crate) fn kms_choice() -> SseChoice {
    SseChoice::Kms {
        key_id: "alias/MyKMSKey".into(),
        bucket_key: false,
    }
}

pub(crate) fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
