//! The volume image header: encoding and parsing, pure (no I/O).
//!
//! Byte layout (all integers little-endian), documented in docs/FORMAT.md "Volume image":
//!
//! ```text
//! off len  field
//!   0   8  magic "ATRESTVL"
//!   8   2  format version (1)
//!  10   2  checksum algorithm (1 = SHA-256)
//!  12   4  header length H (bytes, including the 32-byte checksum at the end)
//!  16   8  volume size in bytes
//!  24   8  payload offset (multiple of 4096, >= H)
//!  32   4  sector size (512 or 4096)
//!  36   4  flags (reserved, must be 0)
//!  40      u8 len + cipher name ("none" | "aes-xts-plain64")
//!          u8 len + volume ID
//!          u16 len + key ARN (empty iff cipher none)
//!          u32 len + wrapped data key blob, opaque (empty iff cipher none)
//!          u16 count + count * (u16 len + key, u16 len + value), keys strictly ascending
//! H-32 32  SHA-256 of bytes 0..H-32
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 8] = *b"ATRESTVL";
pub const FORMAT_VERSION: u16 = 1;
pub const CHECKSUM_SHA256: u16 = 1;
/// Size of the fixed part before the variable fields.
pub const FIXED_LEN: usize = 40;
pub const CHECKSUM_LEN: usize = 32;
/// A header never exceeds this; readers read at most this many bytes.
pub const MAX_HEADER_LEN: usize = 65536;
/// The payload starts at a multiple of this.
pub const PAYLOAD_ALIGN: u64 = 4096;
/// Default payload offset: 1 MiB, friendly to partition-style alignment.
pub const DEFAULT_PAYLOAD_OFFSET: u64 = 1 << 20;
pub const DEFAULT_SECTOR_SIZE: u32 = 4096;
/// The largest payload offset accepted (keeps offsets far from overflow).
pub const MAX_PAYLOAD_OFFSET: u64 = 1 << 30;
/// Volume sizes up to 64 TiB (EBS io2 Block Express maximum).
pub const MAX_VOLUME_SIZE: u64 = 64 << 40;
pub const MAX_VOLUME_ID_LEN: usize = 255;
pub const MAX_KEY_ARN_LEN: usize = 2048;
pub const MAX_WRAPPED_KEY_LEN: usize = 16384;
pub const MAX_CONTEXT_ENTRIES: usize = 64;
pub const MAX_CONTEXT_STRING_LEN: usize = 1024;
/// The encryption-context key EBS binds a volume's data key to.
pub const EBS_CONTEXT_KEY: &str = "aws:ebs:id";

/// How the payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cipher {
    /// Plaintext payload.
    #[serde(rename = "none")]
    None,
    /// dm-crypt `aes-xts-plain64` with a 512-bit key.
    #[serde(rename = "aes-xts-plain64")]
    AesXtsPlain64,
}

impl Cipher {
    pub fn name(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::AesXtsPlain64 => "aes-xts-plain64",
        }
    }
    pub fn from_name(name: &[u8]) -> Option<Cipher> {
        match name {
            b"none" => Some(Cipher::None),
            b"aes-xts-plain64" => Some(Cipher::AesXtsPlain64),
            _ => None,
        }
    }
    pub fn is_encrypted(self) -> bool {
        self != Cipher::None
    }
}

/// Everything a header records; what `VolumeImage::create` is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeHeaderParams {
    pub volume_id: String,
    pub size_bytes: u64,
    pub sector_size: u32,
    pub cipher: Cipher,
    /// ARN of the KMS key that wrapped the data key; empty for cipher `none`.
    pub key_arn: String,
    /// The wrapped data key blob exactly as kmsd returned it (opaque); empty for `none`.
    #[serde(with = "b64")]
    pub wrapped_key: Vec<u8>,
    /// The encryption context the data key is bound to (`aws:ebs:id` = volume ID).
    pub encryption_context: BTreeMap<String, String>,
    pub payload_offset: u64,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

impl VolumeHeaderParams {
    /// An unencrypted volume with default sector size and payload offset.
    pub fn unencrypted(volume_id: impl Into<String>, size_bytes: u64) -> Self {
        VolumeHeaderParams {
            volume_id: volume_id.into(),
            size_bytes,
            sector_size: DEFAULT_SECTOR_SIZE,
            cipher: Cipher::None,
            key_arn: String::new(),
            wrapped_key: Vec::new(),
            encryption_context: BTreeMap::new(),
            payload_offset: DEFAULT_PAYLOAD_OFFSET,
        }
    }

    /// An `aes-xts-plain64` volume whose data key is bound to `{"aws:ebs:id": volume_id}`.
    pub fn encrypted(
        volume_id: impl Into<String>,
        size_bytes: u64,
        key_arn: impl Into<String>,
        wrapped_key: Vec<u8>,
    ) -> Self {
        let volume_id = volume_id.into();
        let mut ctx = BTreeMap::new();
        ctx.insert(EBS_CONTEXT_KEY.to_string(), volume_id.clone());
        VolumeHeaderParams {
            volume_id,
            size_bytes,
            sector_size: DEFAULT_SECTOR_SIZE,
            cipher: Cipher::AesXtsPlain64,
            key_arn: key_arn.into(),
            wrapped_key,
            encryption_context: ctx,
            payload_offset: DEFAULT_PAYLOAD_OFFSET,
        }
    }
}

/// A parsed, checksum-verified header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeHeader {
    pub version: u16,
    /// Length H of the encoded header in bytes.
    pub header_len: u32,
    pub params: VolumeHeaderParams,
}

impl VolumeHeader {
    pub fn volume_id(&self) -> &str {
        &self.params.volume_id
    }
    pub fn size_bytes(&self) -> u64 {
        self.params.size_bytes
    }
    pub fn sector_size(&self) -> u32 {
        self.params.sector_size
    }
    pub fn cipher(&self) -> Cipher {
        self.params.cipher
    }
    pub fn payload_offset(&self) -> u64 {
        self.params.payload_offset
    }
}

/// A header that is malformed; every variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("volume header: bad magic (not an atrest volume image)")]
    BadMagic,
    #[error("volume header: unsupported format version {0} (this build reads version 1)")]
    UnsupportedVersion(u16),
    #[error("volume header: unsupported checksum algorithm {0} (1 = SHA-256)")]
    UnsupportedChecksum(u16),
    #[error("volume header: truncated while reading {field}")]
    Truncated { field: &'static str },
    #[error("volume header: checksum mismatch (header is corrupt or was tampered with)")]
    ChecksumMismatch,
    #[error("volume header: invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> FormatError {
    FormatError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks every rule a header must satisfy (shared by encode and decode).
pub fn validate(p: &VolumeHeaderParams) -> Result<(), FormatError> {
    if p.sector_size != 512 && p.sector_size != 4096 {
        return Err(invalid(
            "sector_size",
            format!("{} (must be 512 or 4096)", p.sector_size),
        ));
    }
    if p.size_bytes == 0 {
        return Err(invalid("size_bytes", "0 (must be positive)"));
    }
    if p.size_bytes > MAX_VOLUME_SIZE {
        return Err(invalid(
            "size_bytes",
            format!("{} exceeds the 64 TiB maximum", p.size_bytes),
        ));
    }
    if p.size_bytes % u64::from(p.sector_size) != 0 {
        return Err(invalid(
            "size_bytes",
            format!(
                "{} is not a multiple of the sector size {}",
                p.size_bytes, p.sector_size
            ),
        ));
    }
    if p.payload_offset % PAYLOAD_ALIGN != 0 || p.payload_offset == 0 {
        return Err(invalid(
            "payload_offset",
            format!(
                "{} is not a positive multiple of {PAYLOAD_ALIGN}",
                p.payload_offset
            ),
        ));
    }
    if p.payload_offset > MAX_PAYLOAD_OFFSET {
        return Err(invalid(
            "payload_offset",
            format!("{} exceeds {MAX_PAYLOAD_OFFSET}", p.payload_offset),
        ));
    }
    if p.volume_id.is_empty() || p.volume_id.len() > MAX_VOLUME_ID_LEN {
        return Err(invalid(
            "volume_id",
            format!("length {} (must be 1..=255)", p.volume_id.len()),
        ));
    }
    if !p.volume_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "volume_id",
            "must be printable ASCII without spaces",
        ));
    }
    if p.key_arn.len() > MAX_KEY_ARN_LEN {
        return Err(invalid(
            "key_arn",
            format!("length {} > 2048", p.key_arn.len()),
        ));
    }
    if p.wrapped_key.len() > MAX_WRAPPED_KEY_LEN {
        return Err(invalid(
            "wrapped_key",
            format!("length {} > {MAX_WRAPPED_KEY_LEN}", p.wrapped_key.len()),
        ));
    }
    match p.cipher {
        Cipher::None => {
            if !p.key_arn.is_empty() {
                return Err(invalid("key_arn", "must be empty for cipher none"));
            }
            if !p.wrapped_key.is_empty() {
                return Err(invalid("wrapped_key", "must be empty for cipher none"));
            }
        }
        Cipher::AesXtsPlain64 => {
            if p.key_arn.is_empty() {
                return Err(invalid("key_arn", "required for cipher aes-xts-plain64"));
            }
            if p.wrapped_key.is_empty() {
                return Err(invalid(
                    "wrapped_key",
                    "required for cipher aes-xts-plain64",
                ));
            }
        }
    }
    if p.encryption_context.len() > MAX_CONTEXT_ENTRIES {
        return Err(invalid(
            "encryption_context",
            format!(
                "{} entries > {MAX_CONTEXT_ENTRIES}",
                p.encryption_context.len()
            ),
        ));
    }
    for (k, v) in &p.encryption_context {
        if k.is_empty() || k.len() > MAX_CONTEXT_STRING_LEN || v.len() > MAX_CONTEXT_STRING_LEN {
            return Err(invalid(
                "encryption_context",
                "keys must be 1..=1024 bytes and values at most 1024 bytes",
            ));
        }
    }
    Ok(())
}

/// Encodes a header (validating it first). The result is H bytes; the image pads it
/// with zeros up to the payload offset.
pub fn encode(p: &VolumeHeaderParams) -> Result<Vec<u8>, FormatError> {
    validate(p)?;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&CHECKSUM_SHA256.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // header length, patched below
    out.extend_from_slice(&p.size_bytes.to_le_bytes());
    out.extend_from_slice(&p.payload_offset.to_le_bytes());
    out.extend_from_slice(&p.sector_size.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    let cipher = p.cipher.name().as_bytes();
    out.push(cipher.len() as u8); // "aes-xts-plain64" is 15 bytes
    out.extend_from_slice(cipher);
    out.push(p.volume_id.len() as u8); // validated <= 255
    out.extend_from_slice(p.volume_id.as_bytes());
    out.extend_from_slice(&(p.key_arn.len() as u16).to_le_bytes()); // validated <= 2048
    out.extend_from_slice(p.key_arn.as_bytes());
    out.extend_from_slice(&(p.wrapped_key.len() as u32).to_le_bytes());
    out.extend_from_slice(&p.wrapped_key);
    out.extend_from_slice(&(p.encryption_context.len() as u16).to_le_bytes());
    for (k, v) in &p.encryption_context {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    let total = out.len() + CHECKSUM_LEN;
    if total > MAX_HEADER_LEN {
        return Err(invalid("header_len", format!("{total} > {MAX_HEADER_LEN}")));
    }
    if total as u64 > p.payload_offset {
        return Err(invalid(
            "payload_offset",
            format!("{} is inside the {total}-byte header", p.payload_offset),
        ));
    }
    out[12..16].copy_from_slice(&(total as u32).to_le_bytes());
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(FormatError::Truncated { field })?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(FormatError::Truncated { field })?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FormatError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    fn string(&mut self, n: usize, field: &'static str) -> Result<String, FormatError> {
        let b = self.take(n, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| invalid(field, "not valid UTF-8"))
    }
}

/// Parses and verifies a header from the start of an image. `bytes` may extend past the
/// header (the reader hands in up to [`MAX_HEADER_LEN`] bytes); it is never trusted before
/// the checksum matches.
pub fn decode(bytes: &[u8]) -> Result<VolumeHeader, FormatError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.array::<8>("magic")? != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = r.u16("version")?;
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let checksum_kind = r.u16("checksum_algorithm")?;
    if checksum_kind != CHECKSUM_SHA256 {
        return Err(FormatError::UnsupportedChecksum(checksum_kind));
    }
    let header_len = r.u32("header_len")?;
    let h = header_len as usize;
    if !(FIXED_LEN + CHECKSUM_LEN..=MAX_HEADER_LEN).contains(&h) {
        return Err(invalid(
            "header_len",
            format!(
                "{header_len} (must be {}..={MAX_HEADER_LEN})",
                FIXED_LEN + CHECKSUM_LEN
            ),
        ));
    }
    let whole = bytes
        .get(..h)
        .ok_or(FormatError::Truncated { field: "header" })?;
    let (body, sum) = whole.split_at(h - CHECKSUM_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return Err(FormatError::ChecksumMismatch);
    }
    // From here on the bytes are exactly what the writer checksummed; still parse defensively.
    let mut r = Reader { buf: body, pos: 16 };
    let size_bytes = r.u64("size_bytes")?;
    let payload_offset = r.u64("payload_offset")?;
    let sector_size = r.u32("sector_size")?;
    let flags = r.u32("flags")?;
    if flags != 0 {
        return Err(invalid(
            "flags",
            format!("{flags:#x} (reserved, must be 0)"),
        ));
    }
    let n = r.u8("cipher")? as usize;
    let cipher_name = r.take(n, "cipher")?;
    let cipher = Cipher::from_name(cipher_name).ok_or_else(|| {
        invalid(
            "cipher",
            format!(
                "{:?} (expected \"none\" or \"aes-xts-plain64\")",
                String::from_utf8_lossy(cipher_name)
            ),
        )
    })?;
    let n = r.u8("volume_id")? as usize;
    let volume_id = r.string(n, "volume_id")?;
    let n = r.u16("key_arn")? as usize;
    let key_arn = r.string(n, "key_arn")?;
    let n = r.u32("wrapped_key")? as usize;
    if n > MAX_WRAPPED_KEY_LEN {
        return Err(invalid(
            "wrapped_key",
            format!("length {n} > {MAX_WRAPPED_KEY_LEN}"),
        ));
    }
    let wrapped_key = r.take(n, "wrapped_key")?.to_vec();
    let count = r.u16("encryption_context")? as usize;
    if count > MAX_CONTEXT_ENTRIES {
        return Err(invalid(
            "encryption_context",
            format!("{count} entries > {MAX_CONTEXT_ENTRIES}"),
        ));
    }
    let mut encryption_context = BTreeMap::new();
    let mut prev: Option<String> = None;
    for _ in 0..count {
        let n = r.u16("encryption_context")? as usize;
        let k = r.string(n, "encryption_context")?;
        let n = r.u16("encryption_context")? as usize;
        let v = r.string(n, "encryption_context")?;
        if prev.as_ref().is_some_and(|p| *p >= k) {
            return Err(invalid(
                "encryption_context",
                "keys must be unique and in ascending order",
            ));
        }
        prev = Some(k.clone());
        encryption_context.insert(k, v);
    }
    if r.pos != body.len() {
        return Err(invalid(
            "header_len",
            format!("{} bytes after the last field", body.len() - r.pos),
        ));
    }
    let params = VolumeHeaderParams {
        volume_id,
        size_bytes,
        sector_size,
        cipher,
        key_arn,
        wrapped_key,
        encryption_context,
        payload_offset,
    };
    validate(&params)?;
    if u64::from(header_len) > payload_offset {
        return Err(invalid(
            "payload_offset",
            format!("{payload_offset} is inside the {header_len}-byte header"),
        ));
    }
    Ok(VolumeHeader {
        version,
        header_len,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VolumeHeaderParams {
        VolumeHeaderParams::encrypted(
            "vol-0123456789abcdef0",
            1 << 30,
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            vec![0xAB; 180],
        )
    }

    #[test]
    fn round_trips() {
        let p = sample();
        let bytes = encode(&p).unwrap();
        let h = decode(&bytes).unwrap();
        assert_eq!(h.params, p);
        assert_eq!(h.header_len as usize, bytes.len());
        let mut padded = bytes.clone();
        padded.resize(8192, 0);
        assert_eq!(decode(&padded).unwrap().params, p);
        let u = VolumeHeaderParams::unencrypted("vol-1", 4096);
        assert_eq!(decode(&encode(&u).unwrap()).unwrap().params, u);
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let bytes = encode(&sample()).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let mut b = encode(&sample()).unwrap();
        b[0] = b'X';
        assert_eq!(decode(&b), Err(FormatError::BadMagic));
        let b = encode(&sample()).unwrap();
        assert_eq!(
            decode(&b[..20]),
            Err(FormatError::Truncated { field: "header" })
        );
        let mut b = encode(&sample()).unwrap();
        b[8] = 2;
        assert_eq!(decode(&b), Err(FormatError::UnsupportedVersion(2)));
        let mut b = encode(&sample()).unwrap();
        b[100] ^= 0xff;
        assert_eq!(decode(&b), Err(FormatError::ChecksumMismatch));
    }

    #[test]
    fn encode_rejects_bad_params() {
        let mut p = sample();
        p.sector_size = 1024;
        assert!(matches!(
            encode(&p),
            Err(FormatError::Invalid {
                field: "sector_size",
                ..
            })
        ));
        let mut p = sample();
        p.size_bytes = 4097;
        assert!(matches!(
            encode(&p),
            Err(FormatError::Invalid {
                field: "size_bytes",
                ..
            })
        ));
        let mut p = sample();
        p.payload_offset = 4095;
        assert!(matches!(
            encode(&p),
            Err(FormatError::Invalid {
                field: "payload_offset",
                ..
            })
        ));
        let mut p = sample();
        p.wrapped_key.clear();
        assert!(matches!(
            encode(&p),
            Err(FormatError::Invalid {
                field: "wrapped_key",
                ..
            })
        ));
        let mut p = VolumeHeaderParams::unencrypted("vol-1", 4096);
        p.key_arn = "arn".into();
        assert!(matches!(
            encode(&p),
            Err(FormatError::Invalid {
                field: "key_arn",
                ..
            })
        ));
        let mut p = sample();
        p.volume_id = "vol 1".into();
        assert!(matches!(
            encode(&p),
            Err(FormatError::Invalid {
                field: "volume_id",
                ..
            })
        ));
    }
}
