//! The plaintext XTS data key: 64 bytes (two AES-256 keys), zeroized on drop.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of an `aes-xts-plain64` key with two AES-256 halves.
pub const XTS_KEY_LEN: usize = 64;

/// Why a byte string is not a usable XTS key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("XTS data key must be exactly 64 bytes, got {got}")]
    WrongLength { got: usize },
    /// IEEE 1619 / OpenSSL 3 refuse XTS keys whose halves are equal: the tweak
    /// would then be encrypted under the data key, which breaks XTS's security proof.
    #[error("XTS data key halves are equal (refused, as OpenSSL 3 does)")]
    EqualHalves,
}

/// A 512-bit XTS key: bytes 0..32 are the data key, 32..64 the tweak key (dm-crypt order).
///
/// Lives only in memory (boxed so moves do not leave copies behind) and is wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct XtsKey {
    bytes: Box<[u8; XTS_KEY_LEN]>,
}

impl XtsKey {
    /// Checks length and that the halves differ.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != XTS_KEY_LEN {
            return Err(KeyError::WrongLength { got: bytes.len() });
        }
        let mut b = Box::new([0u8; XTS_KEY_LEN]);
        b.copy_from_slice(bytes);
        let key = XtsKey { bytes: b };
        if key.data_half() == key.tweak_half() {
            return Err(KeyError::EqualHalves);
        }
        Ok(key)
    }

    /// A fresh random key from the OS generator (used by tests and local tools; real
    /// volumes get theirs from kmsd's `GenerateDataKeyWithoutPlaintext`).
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut b = Box::new([0u8; XTS_KEY_LEN]);
        loop {
            rand::rngs::OsRng.fill_bytes(&mut b[..]);
            if b[..32] != b[32..] {
                return XtsKey { bytes: b };
            }
        }
    }

    /// The whole 64-byte key, as dm-crypt and OpenSSL take it.
    pub fn as_bytes(&self) -> &[u8; XTS_KEY_LEN] {
        &self.bytes
    }

    /// Key 1: encrypts the data blocks.
    pub fn data_half(&self) -> &[u8] {
        &self.bytes[..32]
    }

    /// Key 2: encrypts the tweak.
    pub fn tweak_half(&self) -> &[u8] {
        &self.bytes[32..]
    }
}

impl Clone for XtsKey {
    fn clone(&self) -> Self {
        XtsKey {
            bytes: self.bytes.clone(),
        }
    }
}

impl std::fmt::Debug for XtsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XtsKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_lengths() {
        for n in [0usize, 32, 63, 65, 128] {
            assert_eq!(
                XtsKey::from_bytes(&vec![1u8; n]).unwrap_err(),
                KeyError::WrongLength { got: n }
            );
        }
    }

    #[test]
    fn rejects_equal_halves() {
        let mut b = [7u8; 64];
        assert_eq!(XtsKey::from_bytes(&b).unwrap_err(), KeyError::EqualHalves);
        b[63] = 8;
        assert!(XtsKey::from_bytes(&b).is_ok());
    }

    #[test]
    fn generated_keys_are_valid_and_debug_is_redacted() {
        let k = XtsKey::generate();
        assert_ne!(k.data_half(), k.tweak_half());
        assert!(XtsKey::from_bytes(k.as_bytes()).is_ok());
        assert_eq!(format!("{k:?}"), "XtsKey(<redacted>)");
    }
}
