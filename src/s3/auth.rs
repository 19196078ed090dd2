//! Access keys bound to principals, and SigV4 signing for atrest's own clients.
//!
//! The endpoint verifies signatures with `s3s` (SigV4 header and presigned, SigV2); it asks
//! [`Keyring`] for the secret of an access key and maps the key to its principal. The CLI signs
//! with [`sign`] (the `aws-sigv4` crate), which is checked against AWS's SigV4 test suite.
//!
//! Until the shared `config.toml` carries access keys, they live in `HOME/s3/access-keys.json`
//! (mode 0600), created on the first `atrest s3 serve` with one key pair for the current
//! user's principal `arn:aws:iam::111122223333:user/<unix user name>`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::meta::DEFAULT_ACCOUNT;

/// The region atrest's endpoint signs and verifies in.
pub const REGION: &str = "us-east-1";

/// One access key pair and the principal it authenticates as.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub principal: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// The access-keys file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessKeys {
    pub keys: Vec<AccessKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid access-keys JSON: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} has mode {mode:o}; access keys must not be readable by group or others")]
    BadMode { path: String, mode: u32 },
    #[error("no access keys at {0}: start the endpoint once with `atrest s3 serve`")]
    Missing(String),
    #[error("no access key in {path} for principal {principal}")]
    NoKeyFor { path: String, principal: String },
    #[error("cannot sign request: {0}")]
    Signing(String),
}

/// `HOME/s3/access-keys.json`.
pub fn access_keys_path(s3_dir: &Path) -> PathBuf {
    s3_dir.join("access-keys.json")
}

/// The principal of the Unix user running this process.
pub fn current_user_principal(layout: &plumbing::home::Layout) -> String {
    let uid = plumbing::peer::effective_uid();
    let user = current_user_name();
    // The principal kmsd gives this uid, from the same config (its region, account and
    // any `[[uids]] principal`); the default account if the config cannot be read.
    let config = kmsd::config::Config::load(&layout.config(), false).ok();
    match config {
        Some(c) => {
            match kmsd::service::directory::Directory::build(
                c.clone(),
                Some(&layout.root),
                layout.kmsd_uid(),
            ) {
                Ok(d) => d.identity(uid, &user).principal.clone(),
                Err(_) => c.default_principal_for(&user, uid),
            }
        }
        None => format!("arn:aws:iam::{DEFAULT_ACCOUNT}:user/{user}"),
    }
}

fn current_user_name() -> String {
    let uid = plumbing::peer::effective_uid();
    plumbing::peer::username(uid)
        .or_else(|| std::env::var("USER").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("uid-{uid}"))
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

impl AccessKeys {
    /// A fresh key pair for `principal`, shaped like AWS's (`AKIA` + 16, 40-char secret).
    pub fn generate(principal: &str) -> AccessKey {
        AccessKey {
            access_key_id: format!(
                "AKIA{}",
                random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            ),
            secret_access_key: random_from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                40,
            ),
            principal: principal.to_string(),
        }
    }

    /// Reads the file; `Ok(None)` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<AccessKeys>, AuthError> {
        let p = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AuthError::Io { path: p, source }),
        };
        let mode = std::fs::metadata(path)
            .map_err(|source| AuthError::Io {
                path: p.clone(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthError::BadMode { path: p, mode });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| AuthError::Parse { path: p, source })
    }

    /// Reads the file, creating it with one key for `principal` if it is missing.
    pub fn load_or_create(path: &Path, principal: &str) -> Result<AccessKeys, AuthError> {
        if let Some(k) = Self::load(path)? {
            return Ok(k);
        }
        let keys = AccessKeys {
            keys: vec![Self::generate(principal)],
        };
        let io = |source| AuthError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            plumbing::durable::ensure_dir(dir, 0o700).map_err(io)?;
        }
        let bytes = serde_json::to_vec_pretty(&keys).map_err(|source| AuthError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        plumbing::durable::write_atomic(path, &bytes, 0o600).map_err(io)?;
        Ok(keys)
    }

    /// The key for `principal`, minting and saving one if the file has none yet. The
    /// caller must already have established that it may act as `principal` (the CLI asks
    /// kmsd); the read-modify-write runs under an exclusive lock on the file's directory
    /// so concurrent CLI calls never lose each other's keys.
    pub fn get_or_add(path: &Path, principal: &str) -> Result<AccessKey, AuthError> {
        let io = |source| AuthError::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        plumbing::durable::ensure_dir(dir, 0o700).map_err(io)?;
        // Released when `lock` is dropped.
        let lock = plumbing::flock::open(&dir.join(".access-keys.lock"), 0o600).map_err(io)?;
        plumbing::flock::lock(&lock, plumbing::flock::Mode::Exclusive).map_err(io)?;
        let mut keys = Self::load(path)?.unwrap_or(AccessKeys { keys: Vec::new() });
        if let Some(k) = keys.for_principal(principal) {
            return Ok(k.clone());
        }
        let key = Self::generate(principal);
        keys.keys.push(key.clone());
        let bytes = serde_json::to_vec_pretty(&keys).map_err(|source| AuthError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        plumbing::durable::write_atomic(path, &bytes, 0o600).map_err(io)?;
        Ok(key)
    }

    pub fn by_access_key(&self, id: &str) -> Option<&AccessKey> {
        self.keys.iter().find(|k| k.access_key_id == id)
    }

    pub fn for_principal(&self, principal: &str) -> Option<&AccessKey> {
        self.keys.iter().find(|k| k.principal == principal)
    }
}

/// The endpoint's view of the access keys: reloads the file when it meets an unknown key
/// and the file has changed since it was read, so keys added while it runs work without a
/// restart, and a stream of made-up key ids costs a `stat` each, not a read and a parse.
pub struct Keyring {
    path: PathBuf,
    keys: RwLock<AccessKeys>,
    /// Identity of the file as last read (`None`: missing or unreadable).
    loaded: std::sync::Mutex<Option<FileStamp>>,
    /// `[[access_keys]]` of config.toml: fixed pairs for clients such as the AWS CLI.
    configured: Vec<AccessKey>,
}

/// What tells one version of the keys file from another: a rewrite is a new inode
/// (written atomically), an edit in place changes the size or the mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

impl Keyring {
    pub fn open(path: &Path, default_principal: &str) -> Result<Keyring, AuthError> {
        let keys = AccessKeys::load_or_create(path, default_principal)?;
        Ok(Keyring {
            path: path.to_path_buf(),
            keys: RwLock::new(keys),
            loaded: std::sync::Mutex::new(file_stamp(path)),
            configured: Vec::new(),
        })
    }

    /// Adds the pairs config.toml declares (kmsd validated them; they take precedence
    /// over a file entry with the same id).
    pub fn with_configured(mut self, keys: &[kmsd::config::AccessKeyConfig]) -> Keyring {
        self.configured = keys
            .iter()
            .map(|k| AccessKey {
                access_key_id: k.access_key_id.clone(),
                secret_access_key: k.secret_access_key.clone(),
                principal: k.principal.clone(),
            })
            .collect();
        self
    }

    /// The key pair for an access key id, if configured.
    pub fn lookup(&self, access_key_id: &str) -> Option<AccessKey> {
        if let Some(k) = self
            .configured
            .iter()
            .find(|k| k.access_key_id == access_key_id)
        {
            return Some(k.clone());
        }
        if let Some(k) = self.read().by_access_key(access_key_id) {
            return Some(k.clone());
        }
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let now = file_stamp(&self.path);
        if now == *loaded {
            return None;
        }
        *loaded = now;
        match AccessKeys::load(&self.path) {
            Ok(Some(fresh)) => {
                let found = fresh.by_access_key(access_key_id).cloned();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                found
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload access keys");
                None
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, AccessKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Keyring {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        match self.lookup(access_key) {
            Some(k) => Ok(s3s::auth::SecretKey::from(k.secret_access_key)),
            None => Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// How to sign: S3's rules by default; the test suite varies them.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    pub service: String,
    pub region: String,
    /// Normalize `.`/`..`/`//` in the path before signing (S3: no).
    pub normalize_path: bool,
    /// Percent-encode the path a second time (S3: no).
    pub double_encode: bool,
    /// Send `x-amz-content-sha256` (S3: yes).
    pub content_sha256_header: bool,
    /// `Some` for a presigned URL (query-string auth) valid this long.
    pub presign_expires: Option<Duration>,
}

impl SigningConfig {
    pub fn s3() -> Self {
        SigningConfig {
            service: "s3".into(),
            region: REGION.into(),
            normalize_path: false,
            double_encode: false,
            content_sha256_header: true,
            presign_expires: None,
        }
    }
}

/// The payload as the signature covers it.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Bytes(&'a [u8]),
    /// `UNSIGNED-PAYLOAD`, for streamed uploads and presigned URLs.
    Unsigned,
}

/// What signing adds to a request.
#[derive(Debug, Clone, Default)]
pub struct Signed {
    /// Headers to add (`authorization`, `x-amz-date`, `x-amz-content-sha256`, ...).
    pub headers: Vec<(String, String)>,
    /// Query parameters to append (presigned URLs), already in signing order.
    pub query: Vec<(String, String)>,
    pub signature: String,
}

/// One request to sign. `url` must already be percent-encoded; `headers` must include every
/// header that will be sent and signed (the host comes from the URL).
#[derive(Debug, Clone, Copy)]
pub struct ToSign<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub payload: Payload<'a>,
    pub time: SystemTime,
    pub session_token: Option<&'a str>,
}

/// Signs a request with SigV4.
pub fn sign(cfg: &SigningConfig, key: &AccessKey, req: ToSign<'_>) -> Result<Signed, AuthError> {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode,
    };

    let identity = aws_credential_types::Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.clone(),
        req.session_token.map(str::to_string),
        None,
        "atrest-access-keys",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = if cfg.double_encode {
        PercentEncodingMode::Double
    } else {
        PercentEncodingMode::Single
    };
    settings.uri_path_normalization_mode = if cfg.normalize_path {
        UriPathNormalizationMode::Enabled
    } else {
        UriPathNormalizationMode::Disabled
    };
    settings.payload_checksum_kind = if cfg.content_sha256_header {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    if let Some(exp) = cfg.presign_expires {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(exp);
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&cfg.region)
        .name(&cfg.service)
        .time(req.time)
        .settings(settings)
        .build()
        .map_err(|e| AuthError::Signing(e.to_string()))?
        .into();
    let body = match req.payload {
        Payload::Bytes(b) => SignableBody::Bytes(b),
        Payload::Unsigned => SignableBody::UnsignedPayload,
    };
    let request = SignableRequest::new(
        req.method,
        req.url,
        req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body,
    )
    .map_err(|e| AuthError::Signing(e.to_string()))?;
    let (instructions, signature) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| AuthError::Signing(e.to_string()))?
        .into_parts();
    let (hdrs, query) = instructions.into_parts();
    Ok(Signed {
        headers: hdrs
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect(),
        query: query
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_owned()))
            .collect(),
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_is_created_0600_and_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let p = access_keys_path(&d.path().join("s3"));
        let ring = Keyring::open(&p, "arn:aws:iam::111122223333:user/alice").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let keys = AccessKeys::load(&p).unwrap().unwrap();
        let k = &keys.keys[0];
        assert!(k.access_key_id.starts_with("AKIA") && k.access_key_id.len() == 20);
        assert_eq!(k.secret_access_key.len(), 40);
        assert_eq!(
            ring.lookup(&k.access_key_id).unwrap().principal,
            k.principal
        );
        assert!(ring.lookup("AKIANOTAKEY").is_none());
        // A key added to the file later is found without a restart.
        let mut more = keys.clone();
        more.keys
            .push(AccessKeys::generate("arn:aws:iam::111122223333:user/bob"));
        let id = more.keys[1].access_key_id.clone();
        plumbing::durable::write_atomic(&p, &serde_json::to_vec(&more).unwrap(), 0o600).unwrap();
        assert_eq!(
            ring.lookup(&id).unwrap().principal,
            "arn:aws:iam::111122223333:user/bob"
        );
        // Debug output never shows the secret.
        assert!(!format!("{k:?}").contains(&k.secret_access_key));
    }

    #[test]
    fn world_readable_keys_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("access-keys.json");
        std::fs::write(&p, b"{\"keys\":[]}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AccessKeys::load(&p),
            Err(AuthError::BadMode { .. })
        ));
    }

    #[test]
    fn configured_pairs_are_looked_up_before_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s3/access-keys.json");
        let ring = Keyring::open(&path, "arn:aws:iam::111122223333:user/me")
            .unwrap()
            .with_configured(&[kmsd::config::AccessKeyConfig {
                access_key_id: "AKIACONFIGURED00001".into(),
                secret_access_key: "s3cr3t-s3cr3t-s3cr3t".into(),
                principal: "arn:aws:iam::444455556666:user/UserA".into(),
            }]);
        let k = ring.lookup("AKIACONFIGURED00001").unwrap();
        assert_eq!(k.principal, "arn:aws:iam::444455556666:user/UserA");
        assert_eq!(k.secret_access_key, "s3cr3t-s3cr3t-s3cr3t");
        assert!(ring.lookup("AKIANOSUCHKEY000001").is_none());
    }

    #[test]
    fn principal_names_the_unix_user_in_the_configured_account() {
        let home = tempfile::tempdir().unwrap();
        let layout = plumbing::home::Layout::new(home.path());
        let p = current_user_principal(&layout);
        assert!(p.starts_with("arn:aws:iam::111122223333:user/"), "{p}");
        assert!(p.len() > "arn:aws:iam::111122223333:user/".len());
        std::fs::write(layout.config(), "account = \"999988887777\"\n").unwrap();
        let p = current_user_principal(&layout);
        assert!(p.starts_with("arn:aws:iam::999988887777:user/"), "{p}");
    }
}
