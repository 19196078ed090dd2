//! Copy paths between a stored payload and a new one: the same key (ciphertext copied as is),
//! unencrypted -> encrypted under a new key, encrypted -> re-encrypted under another key, and
//! the one path that never exists, encrypted -> plaintext.
//!
//! Pure chunk transforms: the snapshot store does the I/O.

use super::format::{Cipher, VolumeHeaderParams};
use super::key::XtsKey;
use super::xts::{Xts, XtsError, TWEAK_UNIT};

/// Plaintext data keys for a copy, as kmsd's `Decrypt` returned them to the caller.
#[derive(Default)]
pub struct DataKeys {
    /// Key of the source (snapshot or volume), needed to re-encrypt encrypted data.
    pub source: Option<XtsKey>,
    /// Key of the destination, needed whenever new ciphertext is written.
    pub dest: Option<XtsKey>,
}

/// Why a copy cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// No path ever produces an unencrypted copy of encrypted data (as in EBS).
    #[error("refused: the source is encrypted and the destination is not; atrest never writes a plaintext copy of encrypted data")]
    PlaintextCopyOfEncryptedData,
    #[error("the {which} data key is required for this copy")]
    KeyRequired { which: &'static str },
    #[error("{0}")]
    Xts(#[from] XtsError),
}

/// How each stored chunk of the source becomes a stored chunk of the destination.
pub enum CopyPlan {
    /// Bytes copied unchanged: both unencrypted, or both encrypted under the same wrapped
    /// data key with the same sector size (ciphertext stays valid: tweaks depend only on
    /// the payload offset).
    Raw,
    /// Plaintext source, encrypted destination.
    Encrypt { dest: Box<Xts>, dest_sector: usize },
    /// Encrypted source decrypted and encrypted again under the destination key.
    ReEncrypt {
        source: Box<Xts>,
        source_sector: usize,
        dest: Box<Xts>,
        dest_sector: usize,
    },
}

impl std::fmt::Debug for CopyPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopyPlan::Raw => "Raw",
            CopyPlan::Encrypt { .. } => "Encrypt",
            CopyPlan::ReEncrypt { .. } => "ReEncrypt",
        })
    }
}

/// True if data stored under `a` can be reused as-is for `b`.
pub fn same_stored_form(a: &VolumeHeaderParams, b: &VolumeHeaderParams) -> bool {
    match (a.cipher, b.cipher) {
        (Cipher::None, Cipher::None) => true,
        (Cipher::AesXtsPlain64, Cipher::AesXtsPlain64) => {
            a.wrapped_key == b.wrapped_key && a.sector_size == b.sector_size
        }
        _ => false,
    }
}

/// Chooses the copy path from the source and destination headers.
pub fn plan(
    source: &VolumeHeaderParams,
    dest: &VolumeHeaderParams,
    keys: DataKeys,
) -> Result<CopyPlan, CopyError> {
    match (source.cipher, dest.cipher) {
        (Cipher::AesXtsPlain64, Cipher::None) => Err(CopyError::PlaintextCopyOfEncryptedData),
        _ if same_stored_form(source, dest) => Ok(CopyPlan::Raw),
        (Cipher::None, Cipher::AesXtsPlain64) => {
            let k = keys.dest.ok_or(CopyError::KeyRequired {
                which: "destination",
            })?;
            Ok(CopyPlan::Encrypt {
                dest: Box::new(Xts::new(&k)),
                dest_sector: dest.sector_size as usize,
            })
        }
        (Cipher::AesXtsPlain64, Cipher::AesXtsPlain64) => {
            let s = keys
                .source
                .ok_or(CopyError::KeyRequired { which: "source" })?;
            let d = keys.dest.ok_or(CopyError::KeyRequired {
                which: "destination",
            })?;
            Ok(CopyPlan::ReEncrypt {
                source: Box::new(Xts::new(&s)),
                source_sector: source.sector_size as usize,
                dest: Box::new(Xts::new(&d)),
                dest_sector: dest.sector_size as usize,
            })
        }
        // (None, None) is same_stored_form.
        (Cipher::None, Cipher::None) => Ok(CopyPlan::Raw),
    }
}

impl CopyPlan {
    /// Turns stored source bytes at payload offset `payload_off` (a multiple of 4096, `buf`
    /// a whole number of both sector sizes) into stored destination bytes, in place.
    pub fn transform(&self, buf: &mut [u8], payload_off: u64) -> Result<(), CopyError> {
        let unit = payload_off / TWEAK_UNIT;
        match self {
            CopyPlan::Raw => {}
            CopyPlan::Encrypt { dest, dest_sector } => {
                dest.encrypt_sectors(buf, *dest_sector, unit)?;
            }
            CopyPlan::ReEncrypt {
                source,
                source_sector,
                dest,
                dest_sector,
            } => {
                // Never-written (all-zero) source sectors decrypt to zeros by the hole rule.
                source.decrypt_stored_sectors(buf, *source_sector, unit)?;
                dest.encrypt_sectors(buf, *dest_sector, unit)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(blob: u8) -> VolumeHeaderParams {
        VolumeHeaderParams::encrypted("vol-1", 1 << 20, "arn:k", vec![blob; 8])
    }

    #[test]
    fn chooses_the_path() {
        let none = VolumeHeaderParams::unencrypted("vol-1", 1 << 20);
        assert!(matches!(
            plan(&enc(1), &none, DataKeys::default()),
            Err(CopyError::PlaintextCopyOfEncryptedData)
        ));
        assert!(matches!(
            plan(&none, &none, DataKeys::default()),
            Ok(CopyPlan::Raw)
        ));
        assert!(matches!(
            plan(&enc(1), &enc(1), DataKeys::default()),
            Ok(CopyPlan::Raw)
        ));
        assert!(matches!(
            plan(&none, &enc(1), DataKeys::default()),
            Err(CopyError::KeyRequired {
                which: "destination"
            })
        ));
        assert!(matches!(
            plan(
                &enc(1),
                &enc(2),
                DataKeys {
                    source: None,
                    dest: Some(XtsKey::generate())
                }
            ),
            Err(CopyError::KeyRequired { which: "source" })
        ));
        let keys = DataKeys {
            source: Some(XtsKey::generate()),
            dest: Some(XtsKey::generate()),
        };
        assert!(matches!(
            plan(&enc(1), &enc(2), keys),
            Ok(CopyPlan::ReEncrypt { .. })
        ));
    }

    #[test]
    fn re_encrypt_equals_decrypt_then_encrypt() {
        let (k1, k2) = (XtsKey::generate(), XtsKey::generate());
        let mut pt = vec![0u8; 16384];
        rand::Rng::fill(&mut rand::thread_rng(), &mut pt[..]);
        let mut stored = pt.clone();
        Xts::new(&k1)
            .encrypt_sectors(&mut stored, 4096, 64)
            .unwrap();
        let mut d = enc(2);
        d.sector_size = 512;
        let p = plan(
            &enc(1),
            &d,
            DataKeys {
                source: Some(k1),
                dest: Some(k2.clone()),
            },
        )
        .unwrap();
        p.transform(&mut stored, 64 * 512).unwrap();
        Xts::new(&k2).decrypt_sectors(&mut stored, 512, 64).unwrap();
        assert_eq!(stored, pt);
    }
}
