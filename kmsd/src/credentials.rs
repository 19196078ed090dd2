//! Access keys: the long-term SigV4 credentials (`AKIA...` and a 40-character secret)
//! that authenticate a principal at the AWS endpoint, kept by kmsd in
//! `HOME/kms/access-keys.json`.
//!
//! One store for every kind: the keys `atrest env` hands out (created on first use),
//! the ones IAM's `CreateAccessKey` makes, and the ones imported once from the object
//! endpoint's old `HOME/s3/access-keys.json`. Secrets are sealed under the keystore's
//! root key ([`Keystore::seal_secret`], AAD binding the access key id), so the file
//! never holds one in clear; in memory they are wiped on drop. Every change is written
//! with [`plumbing::durable::write_atomic`] before it is acknowledged, and swapped in
//! whole: a request sees the old or the new set, and a deleted key fails the next
//! request that uses it. Byte layout: docs/FORMAT.md, "Access keys".
//!
//! Parsing the file ([`parse_file`]) is pure, for the fuzz target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rand::Rng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keystore::{Keystore, KeystoreError};
use plumbing::durable;

/// The file in the keystore's directory.
pub const ACCESS_KEYS_FILE: &str = "access-keys.json";
/// The file's `format`.
pub const FORMAT: u32 = 1;
/// AAD prefix of a sealed secret (followed by the access key id).
pub const SECRET_AAD: &[u8] = b"atrest-access-key-v1\0";

/// Whether a key authenticates (IAM's `StatusType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessKeyStatus {
    Active,
    Inactive,
}

/// How a key came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrigin {
    /// Made by `atrest env` for the caller's principal.
    Env,
    /// Made by IAM `CreateAccessKey`.
    Iam,
    /// Imported from `HOME/s3/access-keys.json`.
    Migrated,
}

/// One key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccessKey {
    pub access_key_id: String,
    /// The principal ARN the key authenticates as.
    pub principal: String,
    pub status: AccessKeyStatus,
    /// Unix milliseconds.
    pub create_date_ms: i64,
    pub origin: KeyOrigin,
    /// base64(nonce 12 | AES-256-GCM(root key, secret) | tag 16), AAD
    /// `SECRET_AAD || access_key_id`.
    pub sealed_secret: String,
    /// The Unix user whose own principal the key was made for (`atrest env`): requests
    /// signed with it get that user's `[[uids]] policies` too, as its socket calls do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<KeyOwner>,
}

/// A Unix user, as kmsd saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOwner {
    pub uid: u32,
    pub user: String,
}

/// The file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeysFile {
    pub format: u32,
    pub keys: Vec<StoredAccessKey>,
}

/// A key in memory: its record and its secret (wiped on drop).
pub struct AccessKey {
    pub record: StoredAccessKey,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AccessKeysError {
    #[error("{path}: not an access-keys file: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: not an access-keys file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: InvalidAccessKeys,
    },
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

/// What is wrong with an access-keys file's bytes.
#[derive(Debug, thiserror::Error)]
pub enum InvalidAccessKeys {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("format {0} (this kmsd reads {FORMAT})")]
    Format(u32),
    #[error("{0:?} is not an access key id")]
    Id(String),
    #[error("access key {0} listed twice")]
    Repeated(String),
    #[error("access key {id}: principal {principal:?} is not an IAM ARN")]
    Principal { id: String, principal: String },
}

/// Parses the file's bytes and checks what the types cannot: the format, ids and
/// principals' shapes and that no id repeats (pure, for the fuzz target).
pub fn parse_file(bytes: &[u8]) -> Result<AccessKeysFile, InvalidAccessKeys> {
    let f: AccessKeysFile = serde_json::from_slice(bytes)?;
    if f.format != FORMAT {
        return Err(InvalidAccessKeys::Format(f.format));
    }
    let mut seen = std::collections::BTreeSet::new();
    for k in &f.keys {
        if !is_access_key_id(&k.access_key_id) {
            return Err(InvalidAccessKeys::Id(k.access_key_id.clone()));
        }
        if !seen.insert(k.access_key_id.as_str()) {
            return Err(InvalidAccessKeys::Repeated(k.access_key_id.clone()));
        }
        if !(k.principal.starts_with("arn:aws:iam::") || k.principal.starts_with("arn:aws:sts::")) {
            return Err(InvalidAccessKeys::Principal {
                id: k.access_key_id.clone(),
                principal: k.principal.clone(),
            });
        }
    }
    Ok(f)
}

/// 16 to 128 letters and digits (IAM's `accessKeyIdType`).
pub fn is_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

/// A fresh access key id shaped like AWS's: `prefix` (`AKIA` long-term, `ASIA`
/// temporary) and 16 base-32 characters.
pub fn new_access_key_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    )
}

/// A fresh 40-character secret access key.
pub fn new_secret() -> Zeroizing<String> {
    Zeroizing::new(random_from(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        40,
    ))
}

/// The store.
pub struct AccessKeyStore {
    path: PathBuf,
    keys: RwLock<Arc<BTreeMap<String, Arc<AccessKey>>>>,
    /// Serializes changes (read, persist, swap).
    write: Mutex<()>,
}

impl std::fmt::Debug for AccessKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AccessKeyStore {
    /// Loads `access-keys.json` from the keystore's directory (none yet: empty),
    /// unsealing every secret.
    pub fn open(keystore: &Keystore) -> Result<Self, AccessKeysError> {
        let path = keystore.dir().join(ACCESS_KEYS_FILE);
        let invalid = |message: String| AccessKeysError::Invalid {
            path: path.clone(),
            message,
        };
        let file = match std::fs::read(&path) {
            Ok(bytes) => parse_file(&bytes).map_err(|source| AccessKeysError::Parse {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AccessKeysFile {
                format: FORMAT,
                keys: Vec::new(),
            },
            Err(e) => return Err(invalid(e.to_string())),
        };
        let mut keys = BTreeMap::new();
        for record in file.keys {
            let secret =
                keystore.open_secret(SECRET_AAD, &record.access_key_id, &record.sealed_secret)?;
            let secret = String::from_utf8(secret.to_vec())
                .map(Zeroizing::new)
                .map_err(|_| invalid(format!("{}: secret is not UTF-8", record.access_key_id)))?;
            keys.insert(
                record.access_key_id.clone(),
                Arc::new(AccessKey { record, secret }),
            );
        }
        Ok(AccessKeyStore {
            path,
            keys: RwLock::new(Arc::new(keys)),
            write: Mutex::new(()),
        })
    }

    fn snapshot(&self) -> Arc<BTreeMap<String, Arc<AccessKey>>> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The key with this id.
    pub fn get(&self, access_key_id: &str) -> Option<Arc<AccessKey>> {
        self.snapshot().get(access_key_id).cloned()
    }

    /// A principal's keys, oldest first.
    pub fn for_principal(&self, principal: &str) -> Vec<Arc<AccessKey>> {
        let mut v: Vec<_> = self
            .snapshot()
            .values()
            .filter(|k| k.record.principal == principal)
            .cloned()
            .collect();
        v.sort_by_key(|k| k.record.create_date_ms);
        v
    }

    /// Applies `change` to a copy of the keys, writes the result durably, then swaps
    /// it in. `change` returns what the caller gets back, or `None` for "nothing
    /// changed" (nothing is written).
    fn change<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Arc<AccessKey>>) -> Result<Option<T>, AccessKeysError>,
    ) -> Result<Option<T>, AccessKeysError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys = (*self.snapshot()).clone();
        let Some(out) = change(&mut keys)? else {
            return Ok(None);
        };
        let file = AccessKeysFile {
            format: FORMAT,
            keys: keys.values().map(|k| k.record.clone()).collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| AccessKeysError::Invalid {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        durable::write_atomic(&self.path, &json, 0o600).map_err(|source| KeystoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(Some(out))
    }

    fn sealed(
        keystore: &Keystore,
        record: StoredAccessKeyDraft<'_>,
        secret: Zeroizing<String>,
    ) -> Result<Arc<AccessKey>, AccessKeysError> {
        let sealed_secret = keystore.seal_secret(SECRET_AAD, record.id, secret.as_bytes())?;
        Ok(Arc::new(AccessKey {
            record: StoredAccessKey {
                access_key_id: record.id.to_string(),
                principal: record.principal.to_string(),
                status: AccessKeyStatus::Active,
                create_date_ms: record.now_ms,
                origin: record.origin,
                sealed_secret,
                owner: record.owner,
            },
            secret,
        }))
    }

    /// Makes a new active key for `principal`.
    pub fn create(
        &self,
        keystore: &Keystore,
        principal: &str,
        origin: KeyOrigin,
        now_ms: i64,
    ) -> Result<Arc<AccessKey>, AccessKeysError> {
        let made = self.change(|keys| {
            let id = loop {
                let id = new_access_key_id("AKIA");
                if !keys.contains_key(&id) {
                    break id;
                }
            };
            let draft = StoredAccessKeyDraft {
                id: &id,
                principal,
                origin,
                now_ms,
                owner: None,
            };
            let key = Self::sealed(keystore, draft, new_secret())?;
            keys.insert(id.clone(), Arc::clone(&key));
            Ok(Some(key))
        })?;
        made.ok_or_else(|| AccessKeysError::Invalid {
            path: self.path.clone(),
            message: "no key was made".into(),
        })
    }

    /// The oldest active key of `origin` for `principal` and `owner`, made now if it
    /// has none; `true` when it was made.
    pub fn ensure(
        &self,
        keystore: &Keystore,
        principal: &str,
        origin: KeyOrigin,
        owner: Option<KeyOwner>,
        now_ms: i64,
    ) -> Result<(Arc<AccessKey>, bool), AccessKeysError> {
        let existing = |keys: &BTreeMap<String, Arc<AccessKey>>| {
            let mut mine: Vec<_> = keys
                .values()
                .filter(|k| {
                    k.record.principal == principal
                        && k.record.origin == origin
                        && k.record.owner == owner
                        && k.record.status == AccessKeyStatus::Active
                })
                .cloned()
                .collect();
            mine.sort_by_key(|k| k.record.create_date_ms);
            mine.into_iter().next()
        };
        if let Some(k) = existing(&self.snapshot()) {
            return Ok((k, false));
        }
        // Checked again under the write lock: two `atrest env` at once make one key.
        let made = self.change(|keys| {
            if existing(keys).is_some() {
                return Ok(None);
            }
            let id = new_access_key_id("AKIA");
            let draft = StoredAccessKeyDraft {
                id: &id,
                principal,
                origin,
                now_ms,
                owner: owner.clone(),
            };
            let key = Self::sealed(keystore, draft, new_secret())?;
            keys.insert(id, Arc::clone(&key));
            Ok(Some(key))
        })?;
        match made {
            Some(k) => Ok((k, true)),
            None => existing(&self.snapshot())
                .map(|k| (k, false))
                .ok_or_else(|| AccessKeysError::Invalid {
                    path: self.path.clone(),
                    message: "the key made concurrently is gone".into(),
                }),
        }
    }

    /// Deletes a key; `false` if there was none.
    pub fn delete(&self, access_key_id: &str) -> Result<bool, AccessKeysError> {
        Ok(self
            .change(|keys| Ok(keys.remove(access_key_id).map(|_| ())))?
            .is_some())
    }

    /// Sets a key's status (IAM `UpdateAccessKey`); `false` if there is no such key.
    pub fn set_status(
        &self,
        access_key_id: &str,
        status: AccessKeyStatus,
    ) -> Result<bool, AccessKeysError> {
        Ok(self
            .change(|keys| {
                let Some(k) = keys.get(access_key_id) else {
                    return Ok(None);
                };
                let mut record = k.record.clone();
                record.status = status;
                let secret = k.secret.clone();
                keys.insert(
                    access_key_id.to_string(),
                    Arc::new(AccessKey { record, secret }),
                );
                Ok(Some(()))
            })?
            .is_some())
    }

    /// Imports the object endpoint's old `HOME/s3/access-keys.json` once: its keys
    /// (same ids, secrets and principals) join the store, then the file is removed,
    /// so a key deleted later does not come back. Returns how many were imported. A
    /// file that cannot be read is left where it is, and the error returned.
    pub fn import_legacy(
        &self,
        keystore: &Keystore,
        legacy: &Path,
        now_ms: i64,
    ) -> Result<usize, AccessKeysError> {
        #[derive(Deserialize)]
        struct LegacyKey {
            access_key_id: String,
            secret_access_key: Zeroizing<String>,
            principal: String,
        }
        #[derive(Deserialize)]
        struct LegacyFile {
            keys: Vec<LegacyKey>,
        }
        let invalid = |message: String| AccessKeysError::Invalid {
            path: legacy.to_path_buf(),
            message,
        };
        let bytes = match std::fs::read(legacy) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(invalid(e.to_string())),
        };
        let file: LegacyFile =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        for k in &file.keys {
            if !is_access_key_id(&k.access_key_id)
                || !(k.principal.starts_with("arn:aws:iam::")
                    || k.principal.starts_with("arn:aws:sts::"))
            {
                return Err(invalid(format!(
                    "access key {:?} of {:?} is malformed",
                    k.access_key_id, k.principal
                )));
            }
        }
        let imported = self
            .change(|keys| {
                let mut n = 0;
                for k in &file.keys {
                    if keys.contains_key(&k.access_key_id) {
                        continue;
                    }
                    let draft = StoredAccessKeyDraft {
                        id: &k.access_key_id,
                        principal: &k.principal,
                        origin: KeyOrigin::Migrated,
                        now_ms,
                        owner: None,
                    };
                    let key = Self::sealed(keystore, draft, k.secret_access_key.clone())?;
                    keys.insert(k.access_key_id.clone(), key);
                    n += 1;
                }
                Ok((n > 0).then_some(n))
            })?
            .unwrap_or(0);
        let io = |source| KeystoreError::Io {
            path: legacy.to_path_buf(),
            source,
        };
        std::fs::remove_file(legacy).map_err(io)?;
        if let Some(dir) = legacy.parent() {
            durable::sync_dir(dir).map_err(io)?;
        }
        Ok(imported)
    }
}

/// What a new record needs besides its secret.
struct StoredAccessKeyDraft<'a> {
    id: &'a str,
    principal: &'a str,
    origin: KeyOrigin,
    now_ms: i64,
    owner: Option<KeyOwner>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Keystore, AccessKeyStore) {
        let d = tempfile::tempdir().unwrap();
        let (ks, _) = Keystore::open(&d.path().join("kms")).unwrap();
        let s = AccessKeyStore::open(&ks).unwrap();
        (d, ks, s)
    }

    const ALICE: &str = "arn:aws:iam::111122223333:user/alice";

    #[test]
    fn keys_are_sealed_on_disk_and_survive_a_restart() {
        let (d, ks, s) = store();
        let me = Some(KeyOwner {
            uid: 1000,
            user: "alice".into(),
        });
        let (k, made) = s.ensure(&ks, ALICE, KeyOrigin::Env, me.clone(), 5).unwrap();
        assert!(made);
        assert!(k.record.access_key_id.starts_with("AKIA") && k.record.access_key_id.len() == 20);
        assert_eq!(k.secret.len(), 40);
        let (again, made) = s.ensure(&ks, ALICE, KeyOrigin::Env, me, 6).unwrap();
        assert!(!made);
        assert_eq!(again.record, k.record);
        // Another Unix user acting as the same principal gets a key of its own.
        let bob = Some(KeyOwner {
            uid: 1001,
            user: "bob".into(),
        });
        let (other, made) = s.ensure(&ks, ALICE, KeyOrigin::Env, bob, 7).unwrap();
        assert!(made && other.record.access_key_id != k.record.access_key_id);
        let path = d.path().join("kms").join(ACCESS_KEYS_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(k.secret.as_str()), "secret in clear: {text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (ks2, _) = Keystore::open(&d.path().join("kms")).unwrap();
        let s2 = AccessKeyStore::open(&ks2).unwrap();
        let back = s2.get(&k.record.access_key_id).unwrap();
        assert_eq!(back.secret.as_str(), k.secret.as_str());
        assert_eq!(back.record.principal, ALICE);
        assert!(!format!("{back:?}").contains(k.secret.as_str()));
    }

    #[test]
    fn delete_and_status_take_effect_and_persist() {
        let (d, ks, s) = store();
        let k = s.create(&ks, ALICE, KeyOrigin::Iam, 1).unwrap();
        let id = k.record.access_key_id.clone();
        assert!(s.set_status(&id, AccessKeyStatus::Inactive).unwrap());
        assert_eq!(s.get(&id).unwrap().record.status, AccessKeyStatus::Inactive);
        assert!(s.delete(&id).unwrap());
        assert!(s.get(&id).is_none());
        assert!(!s.delete(&id).unwrap());
        let (ks2, _) = Keystore::open(&d.path().join("kms")).unwrap();
        assert!(AccessKeyStore::open(&ks2).unwrap().get(&id).is_none());
    }

    #[test]
    fn a_secret_moved_to_another_record_does_not_open() {
        let (d, ks, s) = store();
        let a = s.create(&ks, ALICE, KeyOrigin::Iam, 1).unwrap();
        let b = s.create(&ks, ALICE, KeyOrigin::Iam, 2).unwrap();
        let path = d.path().join("kms").join(ACCESS_KEYS_FILE);
        let mut f = parse_file(&std::fs::read(&path).unwrap()).unwrap();
        let sealed_a = a.record.sealed_secret.clone();
        for k in &mut f.keys {
            if k.access_key_id == b.record.access_key_id {
                k.sealed_secret = sealed_a.clone();
            }
        }
        std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
        let e = AccessKeyStore::open(&ks).unwrap_err();
        assert!(e.to_string().contains(&b.record.access_key_id), "{e}");
    }

    #[test]
    fn legacy_keys_are_imported_once() {
        let (d, ks, s) = store();
        let legacy = d.path().join("s3/access-keys.json");
        std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        std::fs::write(
            &legacy,
            r#"{"keys":[{"access_key_id":"AKIAOLDOLDOLDOLD0001","secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","principal":"arn:aws:iam::111122223333:user/alice"}]}"#,
        )
        .unwrap();
        assert_eq!(s.import_legacy(&ks, &legacy, 9).unwrap(), 1);
        assert!(!legacy.exists());
        let k = s.get("AKIAOLDOLDOLDOLD0001").unwrap();
        assert_eq!(
            k.secret.as_str(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(k.record.origin, KeyOrigin::Migrated);
        assert_eq!(s.import_legacy(&ks, &legacy, 9).unwrap(), 0);
        std::fs::write(&legacy, "{").unwrap();
        assert!(s.import_legacy(&ks, &legacy, 9).is_err());
        assert!(legacy.exists(), "an unreadable file stays");
    }

    #[test]
    fn malformed_files_are_refused_by_the_parser() {
        for bad in [
            "",
            "{}",
            r#"{"format":2,"keys":[]}"#,
            r#"{"format":1,"keys":[{"access_key_id":"short","principal":"arn:aws:iam::1:user/a","status":"Active","create_date_ms":0,"origin":"iam","sealed_secret":""}]}"#,
            r#"{"format":1,"keys":[{"access_key_id":"AKIAAAAAAAAAAAAAAAAA","principal":"alice","status":"Active","create_date_ms":0,"origin":"iam","sealed_secret":""}]}"#,
        ] {
            assert!(parse_file(bad.as_bytes()).is_err(), "{bad}");
        }
        let one = r#"{"access_key_id":"AKIAAAAAAAAAAAAAAAAA","principal":"arn:aws:iam::111122223333:user/a","status":"Active","create_date_ms":0,"origin":"env","sealed_secret":""}"#;
        assert!(parse_file(format!(r#"{{"format":1,"keys":[{one}]}}"#).as_bytes()).is_ok());
        assert!(parse_file(format!(r#"{{"format":1,"keys":[{one},{one}]}}"#).as_bytes()).is_err());
    }
}
