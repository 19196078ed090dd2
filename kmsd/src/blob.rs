//! The ciphertext blob: a self-describing, authenticated AES-256-GCM envelope.
//!
//! ```text
//! magic "AKB1" (4) | format u8 = 1 | arn_len u16 BE | key ARN (arn_len, UTF-8)
//! | backing version u32 BE | nonce (12) | ciphertext (n) | tag (16)
//! ```
//!
//! The additional authenticated data is the header (magic through nonce) followed by
//! the canonical encoding of the encryption context ([`encode_context`]), so
//! changing any header byte, the context, the ciphertext or the tag fails
//! authentication. Parsing is pure and never panics: every length is checked.
//! Byte-exact description: docs/FORMAT.md, "Ciphertext blob".

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

use crate::protocol::EncryptionContext;

pub const MAGIC: &[u8; 4] = b"AKB1";
pub const FORMAT_VERSION: u8 = 1;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Longest key ARN a blob may carry.
pub const MAX_ARN_LEN: usize = 2048;

/// Why a blob could not be opened. Callers map every variant to
/// `InvalidCiphertextException` with an empty message; the detail is for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("blob too short")]
    Truncated,
    #[error("not an atrest ciphertext blob")]
    BadMagic,
    #[error("unsupported blob format {0}")]
    UnsupportedFormat(u8),
    #[error("key ARN in blob is not UTF-8 or too long")]
    BadArn,
    #[error("authentication failed")]
    Authentication,
}

/// The parsed, not yet authenticated, header of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader<'a> {
    pub key_arn: &'a str,
    pub backing_version: u32,
    pub nonce: [u8; NONCE_LEN],
    /// Header bytes (magic through nonce): part of the AAD.
    pub header_bytes: &'a [u8],
    /// Ciphertext followed by the tag.
    pub body: &'a [u8],
}

/// Canonical, order-independent encoding of an encryption context:
/// `count u32 BE` then, for each pair in byte order of the key,
/// `key_len u32 BE | key | value_len u32 BE | value`.
pub fn encode_context(ctx: &EncryptionContext, out: &mut Vec<u8>) {
    out.extend_from_slice(&(ctx.len() as u32).to_be_bytes());
    for (k, v) in ctx {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
}

/// Length of a blob carrying `plaintext_len` bytes under `key_arn`.
#[cfg(test)]
pub fn sealed_len(key_arn: &str, plaintext_len: usize) -> usize {
    header_len(key_arn) + plaintext_len + TAG_LEN
}

fn header_len(key_arn: &str) -> usize {
    4 + 1 + 2 + key_arn.len() + 4 + NONCE_LEN
}

/// Encrypts `plaintext` under `cipher` (backing version `backing_version` of key
/// `key_arn`) with a fresh random nonce, binding `ctx`.
pub fn seal(
    cipher: &Aes256Gcm,
    key_arn: &str,
    backing_version: u32,
    ctx: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, BlobError> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    seal_with_nonce(cipher, key_arn, backing_version, nonce, ctx, plaintext)
}

/// [`seal`] with a caller-chosen nonce (tests; never reuse a nonce with a key).
pub fn seal_with_nonce(
    cipher: &Aes256Gcm,
    key_arn: &str,
    backing_version: u32,
    nonce: [u8; NONCE_LEN],
    ctx: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, BlobError> {
    if key_arn.len() > MAX_ARN_LEN {
        return Err(BlobError::BadArn);
    }
    let hlen = header_len(key_arn);
    let mut out = Vec::with_capacity(hlen + plaintext.len() + TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(key_arn.len() as u16).to_be_bytes());
    out.extend_from_slice(key_arn.as_bytes());
    out.extend_from_slice(&backing_version.to_be_bytes());
    out.extend_from_slice(&nonce);
    let mut aad = Vec::with_capacity(hlen + 64);
    aad.extend_from_slice(&out);
    encode_context(ctx, &mut aad);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut out[hlen..])
        .map_err(|_| BlobError::Authentication)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Parses a blob's header without authenticating it (Decrypt needs the key ARN
/// to find the key before it can authenticate anything).
pub fn parse(blob: &[u8]) -> Result<BlobHeader<'_>, BlobError> {
    let magic = blob.get(0..4).ok_or(BlobError::Truncated)?;
    if magic != MAGIC {
        return Err(BlobError::BadMagic);
    }
    let format = *blob.get(4).ok_or(BlobError::Truncated)?;
    if format != FORMAT_VERSION {
        return Err(BlobError::UnsupportedFormat(format));
    }
    let arn_len_bytes = blob.get(5..7).ok_or(BlobError::Truncated)?;
    let arn_len = u16::from_be_bytes([arn_len_bytes[0], arn_len_bytes[1]]) as usize;
    if arn_len > MAX_ARN_LEN {
        return Err(BlobError::BadArn);
    }
    let arn_end = 7usize.checked_add(arn_len).ok_or(BlobError::Truncated)?;
    let arn_bytes = blob.get(7..arn_end).ok_or(BlobError::Truncated)?;
    let key_arn = std::str::from_utf8(arn_bytes).map_err(|_| BlobError::BadArn)?;
    let ver_end = arn_end.checked_add(4).ok_or(BlobError::Truncated)?;
    let ver = blob.get(arn_end..ver_end).ok_or(BlobError::Truncated)?;
    let backing_version = u32::from_be_bytes([ver[0], ver[1], ver[2], ver[3]]);
    let nonce_end = ver_end.checked_add(NONCE_LEN).ok_or(BlobError::Truncated)?;
    let nonce_bytes = blob.get(ver_end..nonce_end).ok_or(BlobError::Truncated)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(nonce_bytes);
    let body = blob.get(nonce_end..).ok_or(BlobError::Truncated)?;
    if body.len() < TAG_LEN {
        return Err(BlobError::Truncated);
    }
    let header_bytes = blob.get(..nonce_end).ok_or(BlobError::Truncated)?;
    Ok(BlobHeader {
        key_arn,
        backing_version,
        nonce,
        header_bytes,
        body,
    })
}

/// Authenticates and decrypts a parsed blob with the backing key it names.
pub fn open(
    cipher: &Aes256Gcm,
    header: &BlobHeader<'_>,
    ctx: &EncryptionContext,
) -> Result<zeroize::Zeroizing<Vec<u8>>, BlobError> {
    let split = header
        .body
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(BlobError::Truncated)?;
    let (ct, tag) = header.body.split_at(split);
    let mut aad = Vec::with_capacity(header.header_bytes.len() + 64);
    aad.extend_from_slice(header.header_bytes);
    encode_context(ctx, &mut aad);
    let mut buf = zeroize::Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&header.nonce),
            &aad,
            buf.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .map_err(|_| BlobError::Authentication)?;
    Ok(buf)
}

/// Builds a cipher from 32 bytes of key material.
pub fn cipher(material: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(material.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn roundtrip_and_header_fields() {
        let c = cipher(&[7u8; 32]);
        let blob = seal(&c, ARN, 3, &ctx(&[("a", "1")]), b"hello").unwrap();
        assert_eq!(blob.len(), sealed_len(ARN, 5));
        let h = parse(&blob).unwrap();
        assert_eq!(h.key_arn, ARN);
        assert_eq!(h.backing_version, 3);
        let pt = open(&c, &h, &ctx(&[("a", "1")])).unwrap();
        assert_eq!(&pt[..], b"hello");
    }

    #[test]
    fn context_is_bound_and_order_independent() {
        let c = cipher(&[7u8; 32]);
        let mut a = EncryptionContext::new();
        a.insert("x".into(), "1".into());
        a.insert("y".into(), "2".into());
        let mut b = EncryptionContext::new();
        b.insert("y".into(), "2".into());
        b.insert("x".into(), "1".into());
        let blob = seal(&c, ARN, 1, &a, b"data").unwrap();
        let h = parse(&blob).unwrap();
        assert!(open(&c, &h, &b).is_ok());
        assert_eq!(
            open(&c, &h, &ctx(&[("x", "1")])),
            Err(BlobError::Authentication)
        );
        assert_eq!(
            open(&c, &h, &ctx(&[("x", "1"), ("y", "3")])),
            Err(BlobError::Authentication)
        );
        assert_eq!(
            open(&c, &h, &EncryptionContext::new()),
            Err(BlobError::Authentication)
        );
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        let mut e1 = Vec::new();
        encode_context(&ctx(&[("ab", "c")]), &mut e1);
        let mut e2 = Vec::new();
        encode_context(&ctx(&[("a", "bc")]), &mut e2);
        assert_ne!(e1, e2);
    }

    #[test]
    fn tampering_any_byte_fails_and_never_panics() {
        let c = cipher(&[9u8; 32]);
        let cx = ctx(&[("purpose", "test")]);
        let blob = seal(&c, ARN, 1, &cx, b"secret data key material").unwrap();
        for i in 0..blob.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut t = blob.clone();
                t[i] ^= flip;
                let opened = parse(&t).and_then(|h| open(&c, &h, &cx));
                assert!(opened.is_err(), "byte {i} flip {flip:#x} went unnoticed");
            }
        }
    }

    #[test]
    fn truncation_at_every_length_fails_and_never_panics() {
        let c = cipher(&[9u8; 32]);
        let cx = EncryptionContext::new();
        let blob = seal(&c, ARN, 1, &cx, b"0123456789").unwrap();
        for n in 0..blob.len() {
            let opened = parse(&blob[..n]).and_then(|h| open(&c, &h, &cx));
            assert!(opened.is_err(), "truncated to {n} bytes went unnoticed");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(parse(&longer).and_then(|h| open(&c, &h, &cx)).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = parse(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.push(FORMAT_VERSION);
            with_magic.extend_from_slice(&bytes);
            if let Ok(h) = parse(&with_magic) {
                assert!(open(&cipher(&[0u8; 32]), &h, &EncryptionContext::new()).is_err());
            }
        }
    }

    #[test]
    fn cipher_state_is_zeroized_on_drop() {
        // Compile-time: the AES key schedule wipes itself (aes's `zeroize` feature;
        // ghash/polyval's `zeroize` features wipe the GHASH key as well).
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroized_on_drop::<aes::Aes256>();
    }

    #[test]
    fn wrong_key_fails() {
        let blob = seal(&cipher(&[1u8; 32]), ARN, 1, &EncryptionContext::new(), b"x").unwrap();
        let h = parse(&blob).unwrap();
        assert_eq!(
            open(&cipher(&[2u8; 32]), &h, &EncryptionContext::new()),
            Err(BlobError::Authentication)
        );
    }
}
