//! The keystore on disk: HOME/kms/.
//!
//! ```text
//! kms/root.key            the root key (0600): seals every key's material
//! kms/keys/<key-id>.json  one file per KMS key: metadata + sealed backing keys
//! kms/aliases.json        every alias
//! ```
//!
//! Every change goes through [`plumbing::durable::write_atomic`] (temp file, fsync,
//! rename, fsync dir) before it is acknowledged, and each file is whole on its own,
//! so a `kill -9` at any moment leaves either the old or the new version of one file
//! and a state that loads. Key material is sealed with AES-256-GCM under the root key
//! (AAD binds the key ID and version, so sealed material cannot be swapped between
//! keys); plaintext material never touches the disk. The root key file has a
//! `protection` field so a passphrase- or TPM-sealed root key can be added later
//! without changing the key files. Byte layout: docs/FORMAT.md, "Keystore".

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::api::{KeyState, RotationType, Tag};
use plumbing::durable;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
pub const FILE_FORMAT: u32 = 1;
const MATERIAL_AAD_PREFIX: &[u8] = b"atrest-kms-material-v1\0";

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("keystore i/o on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("keystore file {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("root key file {path} has mode {mode:04o}; it must be 0600 (chmod 600 {path})")]
    RootKeyMode { path: PathBuf, mode: u32 },
    #[error("root key file {path} is missing but the keystore holds {keys} key(s); refusing to create a new root key that could not open them")]
    RootKeyMissing { path: PathBuf, keys: usize },
    #[error("cannot unseal the material of key {key_id} version {version}: wrong root key or tampered file")]
    Unseal { key_id: String, version: u32 },
    #[error("cannot unseal the secret of {id}: wrong root key or tampered file")]
    UnsealSecret { id: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The root key file's JSON.
#[derive(Serialize, Deserialize)]
struct RootKeyFile {
    format: u32,
    /// `none`: the key is stored as is (protected by the file mode). Later kinds
    /// (`passphrase`, `tpm`) would wrap it.
    protection: String,
    key: String,
}

/// One backing-key version, its material sealed under the root key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: u32,
    pub created_ms: i64,
    /// None for the original material; how later versions came to be.
    pub rotation_type: Option<StoredRotationType>,
    /// base64(nonce 12 | ciphertext 32 | tag 16).
    pub sealed_material: String,
}

/// How a backing-key version came to be, as stored (`"Automatic"`, `"OnDemand"`;
/// the wire's [`RotationType`] spells them as AWS does).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum StoredRotationType {
    Automatic,
    OnDemand,
}

impl From<RotationType> for StoredRotationType {
    fn from(t: RotationType) -> Self {
        match t {
            RotationType::Automatic => StoredRotationType::Automatic,
            RotationType::OnDemand => StoredRotationType::OnDemand,
        }
    }
}

impl From<StoredRotationType> for RotationType {
    fn from(t: StoredRotationType) -> Self {
        match t {
            StoredRotationType::Automatic => RotationType::Automatic,
            StoredRotationType::OnDemand => RotationType::OnDemand,
        }
    }
}

/// A tag as stored (`{"tag_key": ..., "tag_value": ...}`; the wire's [`Tag`] is
/// `TagKey`/`TagValue`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredTag {
    pub tag_key: String,
    pub tag_value: String,
}

impl From<Tag> for StoredTag {
    fn from(t: Tag) -> Self {
        StoredTag {
            tag_key: t.tag_key,
            tag_value: t.tag_value,
        }
    }
}

impl From<&StoredTag> for Tag {
    fn from(t: &StoredTag) -> Self {
        Tag {
            tag_key: t.tag_key.clone(),
            tag_value: t.tag_value.clone(),
        }
    }
}

/// Rotation settings of a key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredRotation {
    pub enabled: bool,
    pub period_days: Option<u32>,
    pub next_rotation_ms: Option<i64>,
    pub on_demand_count: u32,
}

/// Who manages a key: the customer, or AWS (the `alias/aws/SERVICE` keys kmsd creates
/// when a service first needs them).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyManager {
    #[default]
    Customer,
    Aws,
}

impl KeyManager {
    /// `KeyMetadata.KeyManager`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyManager::Customer => "CUSTOMER",
            KeyManager::Aws => "AWS",
        }
    }

    fn is_customer(&self) -> bool {
        *self == KeyManager::Customer
    }
}

/// A KMS key as stored in `keys/<key-id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredKey {
    pub format: u32,
    pub key_id: String,
    pub account: String,
    pub region: String,
    /// Absent in files written before AWS managed keys existed: those are customer keys.
    #[serde(default, skip_serializing_if = "KeyManager::is_customer")]
    pub key_manager: KeyManager,
    pub creation_date_ms: i64,
    pub description: String,
    pub key_state: KeyState,
    pub deletion_date_ms: Option<i64>,
    pub pending_window_days: Option<u32>,
    pub policy: Option<String>,
    pub tags: Vec<StoredTag>,
    pub rotation: StoredRotation,
    pub versions: Vec<StoredVersion>,
}

impl StoredKey {
    pub fn arn(&self) -> String {
        key_arn(&self.region, &self.account, &self.key_id)
    }
}

/// `arn:aws:kms:REGION:ACCOUNT:key/ID`.
pub fn key_arn(region: &str, account: &str, key_id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{key_id}")
}

/// An alias as stored in `aliases.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredAlias {
    pub account: String,
    pub region: String,
    pub alias_name: String,
    pub target_key_id: String,
    pub creation_date_ms: i64,
    pub last_updated_date_ms: i64,
}

impl StoredAlias {
    /// A new alias, created and last updated at `now_ms`.
    pub fn new(
        account: &str,
        region: &str,
        alias_name: &str,
        target_key_id: &str,
        now_ms: i64,
    ) -> Self {
        StoredAlias {
            account: account.to_string(),
            region: region.to_string(),
            alias_name: alias_name.to_string(),
            target_key_id: target_key_id.to_string(),
            creation_date_ms: now_ms,
            last_updated_date_ms: now_ms,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AliasesFile {
    format: u32,
    aliases: Vec<StoredAlias>,
}

/// What [`Keystore::open`] found on disk.
pub struct Loaded {
    pub keys: Vec<(StoredKey, Vec<Zeroizing<[u8; 32]>>)>,
    pub aliases: Vec<StoredAlias>,
}

/// Handle on HOME/kms/: seals material and writes files durably.
pub struct Keystore {
    dir: PathBuf,
    root: Aes256Gcm,
}

impl Keystore {
    /// Opens (creating if needed) the keystore in `dir` and loads every key, unsealed.
    pub fn open(dir: &Path) -> Result<(Keystore, Loaded), KeystoreError> {
        durable::ensure_dir(dir, 0o700).map_err(io_err(dir))?;
        let keys_dir = dir.join("keys");
        durable::ensure_dir(&keys_dir, 0o700).map_err(io_err(&keys_dir))?;
        // Make the directories themselves durable before any key lands in them.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            durable::sync_dir(parent).map_err(io_err(parent))?;
        }
        durable::sync_dir(dir).map_err(io_err(dir))?;
        let key_files = list_key_files(&keys_dir)?;
        let root_path = dir.join("root.key");
        let root_material = match std::fs::metadata(&root_path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeystoreError::RootKeyMode {
                        path: root_path,
                        mode,
                    });
                }
                read_root_key(&root_path)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !key_files.is_empty() {
                    return Err(KeystoreError::RootKeyMissing {
                        path: root_path,
                        keys: key_files.len(),
                    });
                }
                let material: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
                let file = RootKeyFile {
                    format: FILE_FORMAT,
                    protection: "none".into(),
                    key: B64.encode(material.as_slice()),
                };
                let json = Zeroizing::new(serde_json::to_vec_pretty(&file).map_err(|e| {
                    KeystoreError::Invalid {
                        path: root_path.clone(),
                        message: e.to_string(),
                    }
                })?);
                durable::write_atomic(&root_path, &json, 0o600).map_err(io_err(&root_path))?;
                tracing::info!(path = %root_path.display(), "created a new root key");
                material
            }
            Err(e) => {
                return Err(KeystoreError::Io {
                    path: root_path,
                    source: e,
                })
            }
        };
        let store = Keystore {
            dir: dir.to_path_buf(),
            root: Aes256Gcm::new(root_material.as_slice().into()),
        };
        let mut keys = Vec::with_capacity(key_files.len());
        for path in key_files {
            let text = std::fs::read(&path).map_err(io_err(&path))?;
            let key = parse_key_file(&path, &text)?;
            let materials = store.unseal_versions(&key)?;
            keys.push((key, materials));
        }
        let aliases = store.read_aliases()?;
        Ok((store, Loaded { keys, aliases }))
    }

    fn material_aad(key_id: &str, version: u32) -> Vec<u8> {
        let mut aad = MATERIAL_AAD_PREFIX.to_vec();
        aad.extend_from_slice(key_id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&version.to_be_bytes());
        aad
    }

    /// Seals 32 bytes of key material for `key_id` version `version`.
    pub fn seal(
        &self,
        key_id: &str,
        version: u32,
        material: &[u8; 32],
    ) -> Result<String, KeystoreError> {
        let nonce: [u8; 12] = rand::random();
        let aad = Self::material_aad(key_id, version);
        let ct = self
            .root
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: material,
                    aad: &aad,
                },
            )
            .map_err(|_| KeystoreError::Unseal {
                key_id: key_id.into(),
                version,
            })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }

    /// Unseals every backing version of a parsed key, in order.
    pub(crate) fn unseal_versions(
        &self,
        key: &StoredKey,
    ) -> Result<Vec<Zeroizing<[u8; 32]>>, KeystoreError> {
        key.versions
            .iter()
            .map(|v| self.unseal(&key.key_id, v.version, &v.sealed_material))
            .collect()
    }

    /// A keystore over `root` that is never written (the fuzz targets unseal through it).
    #[cfg(feature = "testing")]
    pub(crate) fn detached(root: &[u8; 32]) -> Keystore {
        Keystore {
            dir: PathBuf::new(),
            root: Aes256Gcm::new(root.into()),
        }
    }

    fn unseal(
        &self,
        key_id: &str,
        version: u32,
        sealed: &str,
    ) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        let fail = || KeystoreError::Unseal {
            key_id: key_id.into(),
            version,
        };
        let raw = B64.decode(sealed).map_err(|_| fail())?;
        if raw.len() != 12 + 32 + 16 {
            return Err(fail());
        }
        let (nonce, ct) = raw.split_at(12);
        let aad = Self::material_aad(key_id, version);
        let pt = Zeroizing::new(
            self.root
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| fail())?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        if pt.len() != 32 {
            return Err(fail());
        }
        out.copy_from_slice(&pt);
        Ok(out)
    }

    /// Seals a secret that is not key material (an access key's secret) under the
    /// root key: base64 of `nonce (12) || ciphertext || tag (16)`, with AAD `label ||
    /// id`, so a sealed secret cannot be moved to another record or kind.
    pub fn seal_secret(
        &self,
        label: &[u8],
        id: &str,
        secret: &[u8],
    ) -> Result<String, KeystoreError> {
        let nonce: [u8; 12] = rand::random();
        let aad = [label, id.as_bytes()].concat();
        let ct = self
            .root
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| KeystoreError::UnsealSecret { id: id.into() })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }

    /// Opens what [`Keystore::seal_secret`] sealed with the same `label` and `id`.
    pub fn open_secret(
        &self,
        label: &[u8],
        id: &str,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        let fail = || KeystoreError::UnsealSecret { id: id.into() };
        let raw = B64.decode(sealed).map_err(|_| fail())?;
        if raw.len() < 12 + 16 {
            return Err(fail());
        }
        let (nonce, ct) = raw.split_at(12);
        let aad = [label, id.as_bytes()].concat();
        self.root
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| fail())
    }

    /// The keystore's directory (`HOME/kms`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn key_path(&self, key_id: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{key_id}.json"))
    }

    /// Writes a key's file durably.
    pub fn write_key(&self, key: &StoredKey) -> Result<(), KeystoreError> {
        let path = self.key_path(&key.key_id);
        let json = serde_json::to_vec_pretty(key).map_err(|e| KeystoreError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        durable::write_atomic(&path, &json, 0o600).map_err(io_err(&path))
    }

    /// Removes a key's file durably (its material is gone once this returns).
    pub fn delete_key(&self, key_id: &str) -> Result<(), KeystoreError> {
        let path = self.key_path(key_id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(KeystoreError::Io { path, source: e }),
        }
        let dir = self.dir.join("keys");
        durable::sync_dir(&dir).map_err(io_err(&dir))
    }

    fn aliases_path(&self) -> PathBuf {
        self.dir.join("aliases.json")
    }

    fn read_aliases(&self) -> Result<Vec<StoredAlias>, KeystoreError> {
        let path = self.aliases_path();
        match std::fs::read(&path) {
            Ok(bytes) => parse_aliases(&path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(KeystoreError::Io { path, source: e }),
        }
    }

    /// Replaces the alias file durably.
    pub fn write_aliases<'a>(
        &self,
        aliases: impl Iterator<Item = &'a StoredAlias>,
    ) -> Result<(), KeystoreError> {
        let path = self.aliases_path();
        let file = AliasesFile {
            format: FILE_FORMAT,
            aliases: aliases.cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| KeystoreError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        durable::write_atomic(&path, &json, 0o600).map_err(io_err(&path))
    }
}

/// Lists `keys/*.json`, removing temp files a crash left behind.
fn list_key_files(keys_dir: &Path) -> Result<Vec<PathBuf>, KeystoreError> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(keys_dir).map_err(io_err(keys_dir))? {
        let entry = entry.map_err(io_err(keys_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with('.') && name.contains(".tmp.") {
            // An interrupted write_atomic: the real file still has the old content.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if let Some(stem) = name.strip_suffix(".json") {
            if uuid::Uuid::parse_str(stem).is_ok() {
                out.insert(name.to_string(), path);
                continue;
            }
        }
        tracing::warn!(path = %path.display(), "ignoring unexpected file in the keystore");
    }
    Ok(out.into_values().collect())
}

fn read_root_key(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(io_err(path))?);
    parse_root_key(path, &bytes)
}

/// Reads `root.key`'s bytes (`path` names the file in errors; pure, for the fuzz target).
pub fn parse_root_key(path: &Path, bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let invalid = |message: &str| KeystoreError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    };
    let file: RootKeyFile = serde_json::from_slice(bytes).map_err(|e| invalid(&e.to_string()))?;
    let key_b64 = Zeroizing::new(file.key);
    if file.format != FILE_FORMAT || file.protection != "none" {
        return Err(invalid("unsupported format or protection"));
    }
    let raw = Zeroizing::new(
        B64.decode(key_b64.as_bytes())
            .map_err(|_| invalid("key is not base64"))?,
    );
    let arr: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| invalid("key is not 32 bytes"))?;
    Ok(Zeroizing::new(arr))
}

/// Reads a key file's bytes (`keys/<key-id>.json`; `path` names it): the key ID must be
/// the file's name and the backing versions must run 1, 2, ... (pure, for the fuzz target).
pub fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<StoredKey, KeystoreError> {
    let invalid = |message: String| KeystoreError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let key: StoredKey = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if key.key_id != stem || key.versions.is_empty() {
        return Err(invalid(
            "key ID does not match the file name, or no key material".into(),
        ));
    }
    for (i, v) in key.versions.iter().enumerate() {
        if usize::try_from(v.version).ok() != i.checked_add(1) {
            return Err(invalid(format!(
                "backing versions out of order at {}",
                v.version
            )));
        }
    }
    Ok(key)
}

/// Reads `aliases.json`'s bytes (`path` names it; pure, for the fuzz target).
pub fn parse_aliases(path: &Path, bytes: &[u8]) -> Result<Vec<StoredAlias>, KeystoreError> {
    let f: AliasesFile = serde_json::from_slice(bytes).map_err(|e| KeystoreError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(f.aliases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(store: &Keystore, id: &str) -> StoredKey {
        let material = [5u8; 32];
        StoredKey {
            format: FILE_FORMAT,
            key_id: id.into(),
            account: "111122223333".into(),
            region: "us-east-1".into(),
            key_manager: KeyManager::Customer,
            creation_date_ms: 1,
            description: "d".into(),
            key_state: KeyState::Enabled,
            deletion_date_ms: None,
            pending_window_days: None,
            policy: None,
            tags: vec![],
            rotation: StoredRotation::default(),
            versions: vec![StoredVersion {
                version: 1,
                created_ms: 1,
                rotation_type: None,
                sealed_material: store.seal(id, 1, &material).unwrap(),
            }],
        }
    }

    #[test]
    fn keys_survive_reopen_and_material_is_not_on_disk_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let kms = dir.path().join("kms");
        let (store, loaded) = Keystore::open(&kms).unwrap();
        assert!(loaded.keys.is_empty());
        let id = uuid::Uuid::new_v4().to_string();
        let key = sample(&store, &id);
        store.write_key(&key).unwrap();
        let mode = std::fs::metadata(kms.join("root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let file = std::fs::read(kms.join("keys").join(format!("{id}.json"))).unwrap();
        assert!(!file.windows(32).any(|w| w == [5u8; 32]));
        let (_, loaded) = Keystore::open(&kms).unwrap();
        assert_eq!(loaded.keys.len(), 1);
        assert_eq!(loaded.keys[0].0, key);
        assert_eq!(*loaded.keys[0].1[0], [5u8; 32]);
    }

    #[test]
    fn sealed_material_cannot_move_between_keys() {
        let dir = tempfile::tempdir().unwrap();
        let kms = dir.path().join("kms");
        let (store, _) = Keystore::open(&kms).unwrap();
        let a = uuid::Uuid::new_v4().to_string();
        let b = uuid::Uuid::new_v4().to_string();
        let mut kb = sample(&store, &b);
        kb.versions[0].sealed_material = sample(&store, &a).versions[0].sealed_material.clone();
        store.write_key(&kb).unwrap();
        assert!(matches!(
            Keystore::open(&kms),
            Err(KeystoreError::Unseal { .. })
        ));
    }

    #[test]
    fn missing_root_key_with_keys_and_loose_mode_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kms = dir.path().join("kms");
        let (store, _) = Keystore::open(&kms).unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        store.write_key(&sample(&store, &id)).unwrap();
        std::fs::set_permissions(kms.join("root.key"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(matches!(
            Keystore::open(&kms),
            Err(KeystoreError::RootKeyMode { .. })
        ));
        std::fs::remove_file(kms.join("root.key")).unwrap();
        assert!(matches!(
            Keystore::open(&kms),
            Err(KeystoreError::RootKeyMissing { .. })
        ));
    }
}
