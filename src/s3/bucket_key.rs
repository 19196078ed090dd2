//! S3 Bucket Keys: a bucket-level data key from KMS, reused for a bounded time so uploads and
//! downloads of many objects cost one `GenerateDataKey` / `Decrypt` instead of one each.
//!
//! Entries are per principal, so one caller's successful KMS call never lets another caller
//! skip its own KMS authorization. Plaintext keys live only here, in memory, zeroized on drop,
//! and expire after the TTL (a disabled key keeps working for at most that long through the
//! cache, as with S3 Bucket Keys).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::kms::{DataKeys, EncryptionContext, KmsFailure};
use super::sse::DataKey;

/// How long a bucket key is reused.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Bound on cached entries per map (oldest dropped first when full).
const MAX_ENTRIES: usize = 1024;

/// A bucket key ready for use.
#[derive(Clone)]
pub struct BucketKey {
    pub key_arn: String,
    pub blob: Vec<u8>,
    pub plaintext: DataKey,
}

struct Entry {
    key: BucketKey,
    created: Instant,
}

/// The cache of bucket keys for encryption (by principal, bucket, key id) and decryption
/// (by principal and blob).
pub struct BucketKeyCache {
    ttl: Duration,
    for_encrypt: Mutex<HashMap<(String, String, String), Entry>>,
    for_decrypt: Mutex<HashMap<(String, [u8; 32]), Entry>>,
}

impl BucketKeyCache {
    pub fn new(ttl: Duration) -> Self {
        BucketKeyCache {
            ttl,
            for_encrypt: Mutex::new(HashMap::new()),
            for_decrypt: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket key to encrypt new objects of `bucket` under `key_id`, generating one with
    /// context `{"aws:s3:arn": bucket ARN}` when none is fresh.
    pub fn for_encrypt(
        &self,
        kms: &dyn DataKeys,
        principal: &str,
        bucket: &str,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<BucketKey, KmsFailure> {
        let id = (
            principal.to_string(),
            bucket.to_string(),
            key_id.to_string(),
        );
        if let Some(k) = self.lookup(&self.for_encrypt, &id) {
            return Ok(k);
        }
        let g = kms.generate(principal, key_id, context)?;
        let key = BucketKey {
            key_arn: g.key_arn,
            blob: g.ciphertext_blob,
            plaintext: g.plaintext,
        };
        self.insert(&self.for_encrypt, id, key.clone());
        // The same principal may decrypt what it just made without another KMS call.
        self.insert(
            &self.for_decrypt,
            (principal.to_string(), blob_id(&key.blob)),
            key.clone(),
        );
        Ok(key)
    }

    /// The bucket key inside `blob`, decrypting it with KMS when not cached for `principal`.
    pub fn for_decrypt(
        &self,
        kms: &dyn DataKeys,
        principal: &str,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<BucketKey, KmsFailure> {
        let id = (principal.to_string(), blob_id(blob));
        if let Some(k) = self.lookup(&self.for_decrypt, &id) {
            return Ok(k);
        }
        let d = kms.decrypt(principal, blob, context)?;
        let key = BucketKey {
            key_arn: d.key_arn,
            blob: blob.to_vec(),
            plaintext: d.plaintext,
        };
        self.insert(&self.for_decrypt, id, key.clone());
        Ok(key)
    }

    fn lookup<K: std::hash::Hash + Eq>(
        &self,
        map: &Mutex<HashMap<K, Entry>>,
        id: &K,
    ) -> Option<BucketKey> {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = self.ttl;
        m.retain(|_, e| e.created.elapsed() < ttl);
        m.get(id).map(|e| e.key.clone())
    }

    fn insert<K: std::hash::Hash + Eq + Clone>(
        &self,
        map: &Mutex<HashMap<K, Entry>>,
        id: K,
        key: BucketKey,
    ) {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_ENTRIES {
            let oldest = m
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(
            id,
            Entry {
                key,
                created: Instant::now(),
            },
        );
    }
}

fn blob_id(blob: &[u8]) -> [u8; 32] {
    Sha256::digest(blob).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::kms::{DecryptedKey, GeneratedKey};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts calls; "wraps" by storing the key in the clear (test double only).
    #[derive(Default)]
    struct Counting {
        generated: AtomicUsize,
        decrypted: AtomicUsize,
    }

    impl DataKeys for Counting {
        fn generate(
            &self,
            _p: &str,
            key_id: &str,
            _c: &EncryptionContext,
        ) -> Result<GeneratedKey, KmsFailure> {
            self.generated.fetch_add(1, Ordering::SeqCst);
            let k = DataKey::generate();
            Ok(GeneratedKey {
                key_arn: format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}"),
                ciphertext_blob: k.as_bytes().to_vec(),
                plaintext: k,
            })
        }
        fn decrypt(
            &self,
            _p: &str,
            blob: &[u8],
            _c: &EncryptionContext,
        ) -> Result<DecryptedKey, KmsFailure> {
            self.decrypted.fetch_add(1, Ordering::SeqCst);
            Ok(DecryptedKey {
                key_arn: "arn".into(),
                plaintext: DataKey::from_slice(blob)
                    .map_err(|e| KmsFailure::new("InvalidCiphertextException", e.to_string()))?,
            })
        }
    }

    #[test]
    fn reuses_within_ttl_per_principal() {
        let kms = Counting::default();
        let c = BucketKeyCache::new(Duration::from_secs(60));
        let ctx = EncryptionContext::new();
        let a = c.for_encrypt(&kms, "p1", "b", "k", &ctx).unwrap();
        let b = c.for_encrypt(&kms, "p1", "b", "k", &ctx).unwrap();
        assert_eq!(a.plaintext.as_bytes(), b.plaintext.as_bytes());
        assert_eq!(kms.generated.load(Ordering::SeqCst), 1);
        // Another principal makes its own KMS call.
        c.for_encrypt(&kms, "p2", "b", "k", &ctx).unwrap();
        assert_eq!(kms.generated.load(Ordering::SeqCst), 2);
        // Decrypting what p1 generated needs no call for p1, one for p3.
        c.for_decrypt(&kms, "p1", &a.blob, &ctx).unwrap();
        assert_eq!(kms.decrypted.load(Ordering::SeqCst), 0);
        c.for_decrypt(&kms, "p3", &a.blob, &ctx).unwrap();
        c.for_decrypt(&kms, "p3", &a.blob, &ctx).unwrap();
        assert_eq!(kms.decrypted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn expires_after_ttl() {
        let kms = Counting::default();
        let c = BucketKeyCache::new(Duration::from_millis(0));
        let ctx = EncryptionContext::new();
        c.for_encrypt(&kms, "p", "b", "k", &ctx).unwrap();
        c.for_encrypt(&kms, "p", "b", "k", &ctx).unwrap();
        assert_eq!(kms.generated.load(Ordering::SeqCst), 2);
    }
}
