//! SSE-C (pure): the customer-provided key of a request, checked as S3 checks the
//! `x-amz-server-side-encryption-customer-algorithm|key|key-MD5` headers (and their
//! `x-amz-copy-source-` twins), and how an object remembers it without keeping it.
//!
//! An SSE-C object is sealed like any other (chunked AES-256-GCM under its own random data
//! key); the data key is wrapped under the customer key (AES-256-GCM, AAD = object ARN,
//! the same 60-byte wrapping as SSE-S3's). The customer key itself is never stored: the
//! sidecar keeps a random 32-byte salt and `HMAC-SHA256(key = salt, message = customer
//! key)`, so a read with another key is refused (403 `AccessDenied`) before any unwrap is
//! tried, and nothing on disk helps recover the key. Requests carrying a customer key are
//! accepted only over TLS or on loopback (`http/call.rs`, [`Transport`]).

use base64::Engine as _;
use md5::Digest as _;
use ring::hmac;

use super::sse::DataKey;

/// S3's only SSE-C algorithm.
pub const ALGORITHM: &str = "AES256";
/// Salt length of the key fingerprint.
pub const SALT_LEN: usize = 32;

/// A customer-provided key, checked against its MD5. Zeroized when dropped.
pub struct CustomerKey {
    key: DataKey,
    md5_b64: String,
}

impl PartialEq for CustomerKey {
    fn eq(&self, other: &Self) -> bool {
        self.key.as_bytes() == other.key.as_bytes()
    }
}

impl Eq for CustomerKey {}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerKey")
            .field("md5", &self.md5_b64)
            .finish_non_exhaustive()
    }
}

/// Why a request's SSE-C headers are refused, with S3's codes and messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerKeyError {
    #[error("The Encryption request you specified is not valid. Supported value: AES256.")]
    Algorithm,
    #[error("Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.")]
    MissingAlgorithm,
    #[error("Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.")]
    MissingKey,
    #[error("Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.")]
    MissingMd5,
    #[error("The secret key was invalid for the specified algorithm.")]
    BadKey,
    #[error("The calculated MD5 hash of the key did not match the hash that was provided.")]
    BadMd5,
}

impl CustomerKeyError {
    /// S3's error code.
    pub fn code(&self) -> &'static str {
        match self {
            CustomerKeyError::Algorithm => "InvalidEncryptionAlgorithmError",
            _ => "InvalidArgument",
        }
    }
}

impl CustomerKey {
    /// The customer key the three headers give (`None` when none of them is present).
    pub fn from_headers(
        algorithm: Option<&str>,
        key_b64: Option<&str>,
        md5_b64: Option<&str>,
    ) -> Result<Option<CustomerKey>, CustomerKeyError> {
        if algorithm.is_none() && key_b64.is_none() && md5_b64.is_none() {
            return Ok(None);
        }
        match algorithm {
            None => return Err(CustomerKeyError::MissingAlgorithm),
            Some(a) if a != ALGORITHM => return Err(CustomerKeyError::Algorithm),
            Some(_) => {}
        }
        let key_b64 = key_b64.ok_or(CustomerKeyError::MissingKey)?;
        let md5_b64 = md5_b64.ok_or(CustomerKeyError::MissingMd5)?;
        let raw = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(key_b64.trim())
                .map_err(|_| CustomerKeyError::BadKey)?,
        );
        let key = DataKey::from_slice(&raw).map_err(|_| CustomerKeyError::BadKey)?;
        let want = base64::engine::general_purpose::STANDARD
            .decode(md5_b64.trim())
            .map_err(|_| CustomerKeyError::BadMd5)?;
        if md5::Md5::digest(&raw[..]).as_slice() != want.as_slice() {
            return Err(CustomerKeyError::BadMd5);
        }
        Ok(Some(CustomerKey {
            key,
            md5_b64: md5_b64.trim().to_string(),
        }))
    }

    /// A key from its raw bytes (tests; requests go through [`CustomerKey::from_headers`]).
    #[cfg(test)]
    pub(crate) fn from_raw(raw: [u8; 32]) -> CustomerKey {
        use base64::engine::general_purpose::STANDARD;
        CustomerKey {
            key: DataKey::from_slice(&raw).expect("32 bytes"),
            md5_b64: STANDARD.encode(md5::Md5::digest(raw)),
        }
    }

    /// The key, to wrap or unwrap an object's data key.
    pub fn key(&self) -> &DataKey {
        &self.key
    }

    /// The base64 MD5 of the key, as S3 echoes it in
    /// `x-amz-server-side-encryption-customer-key-MD5`.
    pub fn md5(&self) -> &str {
        &self.md5_b64
    }

    /// A fresh salt and the key's fingerprint under it, for a new object.
    pub fn fingerprint(&self) -> ([u8; SALT_LEN], Vec<u8>) {
        let salt: [u8; SALT_LEN] = rand::random();
        let tag = hmac::sign(&Self::mac_key(&salt), self.key.as_bytes());
        (salt, tag.as_ref().to_vec())
    }

    /// Whether this is the key an object's fingerprint was made from (constant time). The
    /// salt and fingerprint come from the object's sidecar, so any length is taken: one
    /// that is not an HMAC-SHA256 tag simply does not match.
    pub fn matches(&self, salt: &[u8], fingerprint: &[u8]) -> bool {
        hmac::verify(&Self::mac_key(salt), self.key.as_bytes(), fingerprint).is_ok()
    }

    /// The HMAC-SHA256 key made from a salt: `ring` takes a key of any length without a
    /// fallible step, so a salt read from disk cannot make this panic.
    fn mac_key(salt: &[u8]) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn headers(key: &[u8]) -> (String, String) {
        (b64(key), b64(&md5::Md5::digest(key)))
    }

    #[test]
    fn headers_are_checked_as_s3_checks_them() {
        let (k, m) = headers(&[7u8; 32]);
        let ok = CustomerKey::from_headers(Some("AES256"), Some(&k), Some(&m))
            .unwrap()
            .unwrap();
        assert_eq!(ok.md5(), m);
        assert_eq!(ok.key().as_bytes(), &[7u8; 32]);
        assert!(CustomerKey::from_headers(None, None, None)
            .unwrap()
            .is_none());
        let err = |a: Option<&str>, k: Option<&str>, m: Option<&str>| {
            CustomerKey::from_headers(a, k, m).unwrap_err()
        };
        assert_eq!(
            err(Some("AES128"), Some(&k), Some(&m)),
            CustomerKeyError::Algorithm
        );
        assert_eq!(
            err(Some("AES128"), Some(&k), Some(&m)).code(),
            "InvalidEncryptionAlgorithmError"
        );
        assert_eq!(
            err(None, Some(&k), Some(&m)),
            CustomerKeyError::MissingAlgorithm
        );
        assert_eq!(
            err(Some("AES256"), None, Some(&m)),
            CustomerKeyError::MissingKey
        );
        assert_eq!(
            err(Some("AES256"), Some(&k), None),
            CustomerKeyError::MissingMd5
        );
        let (short, short_md5) = headers(&[7u8; 16]);
        assert_eq!(
            err(Some("AES256"), Some(&short), Some(&short_md5)),
            CustomerKeyError::BadKey
        );
        assert_eq!(
            err(Some("AES256"), Some("not base64!"), Some(&m)),
            CustomerKeyError::BadKey
        );
        let (_, other_md5) = headers(&[8u8; 32]);
        assert_eq!(
            err(Some("AES256"), Some(&k), Some(&other_md5)),
            CustomerKeyError::BadMd5
        );
    }

    #[test]
    fn a_fingerprint_recognises_its_key_only() {
        let key = |b: u8| {
            let (k, m) = headers(&[b; 32]);
            CustomerKey::from_headers(Some("AES256"), Some(&k), Some(&m))
                .unwrap()
                .unwrap()
        };
        let (salt, fp) = key(1).fingerprint();
        assert!(key(1).matches(&salt, &fp));
        assert!(!key(2).matches(&salt, &fp));
        // Salted: the same key gives another fingerprint each time.
        let (salt2, fp2) = key(1).fingerprint();
        assert_ne!((salt, &fp), (salt2, &fp2));
        assert!(!key(1).matches(&salt2, &fp));
        // Whatever a sidecar holds, a wrong length or an empty salt is a mismatch, not a panic.
        assert!(!key(1).matches(&salt, &fp[..31]));
        assert!(!key(1).matches(&[], &fp));
        assert!(!key(1).matches(&[0; 200], &[]));
    }
}
