//! Where object data keys come from: kmsd for SSE-KMS (behind the [`DataKeys`] trait so the
//! store is testable without a daemon), and the store-managed key file for SSE-S3.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::sse::DataKey;

/// A KMS encryption context (sorted, as kmsd binds it).
pub type EncryptionContext = BTreeMap<String, String>;

/// The encryption context S3 uses for an object or bucket key: `{"aws:s3:arn": ARN}`.
pub fn s3_context(arn: &str) -> EncryptionContext {
    let mut c = EncryptionContext::new();
    c.insert("aws:s3:arn".to_string(), arn.to_string());
    c
}

/// A freshly generated data key.
pub struct GeneratedKey {
    /// The key's full ARN, whatever form the caller named it in.
    pub key_arn: String,
    pub ciphertext_blob: Vec<u8>,
    pub plaintext: DataKey,
}

/// A data key recovered from its blob.
pub struct DecryptedKey {
    pub key_arn: String,
    pub plaintext: DataKey,
}

/// A refusal or failure from the key service, with its AWS KMS error name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct KmsFailure {
    /// AWS KMS exception name, e.g. `DisabledException`, `NotFoundException`.
    pub code: String,
    pub message: String,
}

impl KmsFailure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        KmsFailure {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// kmsd could not be reached at all.
    pub fn unavailable(message: impl Into<String>) -> Self {
        KmsFailure::new("KMSUnavailable", message)
    }
}

/// The two KMS calls the object store makes, on behalf of `principal` via `s3.amazonaws.com`.
pub trait DataKeys: Send + Sync {
    fn generate(
        &self,
        principal: &str,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsFailure>;

    fn decrypt(
        &self,
        principal: &str,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<DecryptedKey, KmsFailure>;
}

/// SSE-KMS data keys from a running kmsd: every call acts as the requesting principal, via
/// `s3.amazonaws.com`, so kmsd authorizes and records it as AWS KMS would for S3.
pub struct KmsdDataKeys {
    socket: std::path::PathBuf,
}

impl KmsdDataKeys {
    pub fn new(socket: impl Into<std::path::PathBuf>) -> Self {
        KmsdDataKeys {
            socket: socket.into(),
        }
    }

    fn client(&self, principal: &str) -> Result<kmsd::client::KmsClient, KmsFailure> {
        let c = kmsd::client::KmsClient::connect(&self.socket).map_err(failure)?;
        Ok(c.acting_as(principal).via(kmsd::protocol::ViaService {
            service: "s3.amazonaws.com".into(),
            on_behalf_of: Some(principal.to_string()),
            grant_is_for_aws_resource: false,
        }))
    }
}

fn failure(e: kmsd::client::ClientError) -> KmsFailure {
    match e.kms() {
        Some(k) => KmsFailure::new(k.code.as_str(), k.message.clone()),
        None => KmsFailure::unavailable(e.to_string()),
    }
}

impl DataKeys for KmsdDataKeys {
    fn generate(
        &self,
        principal: &str,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsFailure> {
        let g = self
            .client(principal)?
            .generate_data_key(
                key_id,
                kmsd::client::DataKeySize::Spec(kmsd::protocol::DataKeySpec::Aes256),
                context,
            )
            .map_err(failure)?;
        let plaintext = DataKey::from_slice(&g.plaintext)
            .map_err(|e| KmsFailure::new("KMSInternalException", e.to_string()))?;
        Ok(GeneratedKey {
            key_arn: g.key_id,
            ciphertext_blob: g.ciphertext_blob.into_vec(),
            plaintext,
        })
    }

    fn decrypt(
        &self,
        principal: &str,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<DecryptedKey, KmsFailure> {
        let d = self
            .client(principal)?
            .decrypt(blob, context, None)
            .map_err(failure)?;
        let plaintext = DataKey::from_slice(&d.plaintext)
            .map_err(|e| KmsFailure::new("KMSInternalException", e.to_string()))?;
        Ok(DecryptedKey {
            key_arn: d.key_id,
            plaintext,
        })
    }
}

/// Errors of the store key file.
#[derive(Debug, thiserror::Error)]
pub enum StoreKeyError {
    #[error("store key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("store key {path} is {len} bytes, expected 32")]
    BadLength { path: String, len: usize },
    #[error("store key {path} has mode {mode:o}; it must not be readable by group or others")]
    BadMode { path: String, mode: u32 },
}

/// Loads the SSE-S3 store key (32 random bytes, mode 0600), creating it on first use.
pub fn load_or_create_store_key(path: &Path) -> Result<DataKey, StoreKeyError> {
    let p = path.display().to_string();
    let io = |source| StoreKeyError::Io {
        path: p.clone(),
        source,
    };
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreKeyError::BadMode { path: p, mode });
            }
            let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(32));
            f.by_ref().take(64).read_to_end(&mut buf).map_err(io)?;
            DataKey::from_slice(&buf).map_err(|_| StoreKeyError::BadLength {
                path: p.clone(),
                len: buf.len(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = DataKey::generate();
            if let Some(dir) = path.parent() {
                plumbing::durable::ensure_dir(dir, 0o700).map_err(io)?;
            }
            plumbing::durable::write_atomic(path, key.as_bytes(), 0o600).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_key_is_created_once_with_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s3/store.key");
        let k1 = load_or_create_store_key(&p).unwrap();
        let k2 = load_or_create_store_key(&p).unwrap();
        assert_eq!(k1.as_bytes(), k2.as_bytes());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_store_key(&p),
            Err(StoreKeyError::BadMode { .. })
        ));
    }

    #[test]
    fn context_is_the_s3_arn() {
        let c = s3_context("arn:aws:s3:::b/k");
        assert_eq!(
            c.get("aws:s3:arn").map(String::as_str),
            Some("arn:aws:s3:::b/k")
        );
        assert_eq!(c.len(), 1);
    }
}
