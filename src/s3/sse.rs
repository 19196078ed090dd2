//! Chunked AES-256-GCM object encryption (a STREAM-style online AEAD) and data-key wrapping.
//!
//! An object body is cut into fixed-size plaintext chunks of [`CHUNK_SIZE`] bytes (the last
//! one may be shorter, and an empty body is one empty final chunk). Each chunk is sealed with
//! AES-256-GCM under the object's own data key with the nonce
//!
//! ```text
//! nonce = prefix (7 random bytes) || chunk index (u32, big-endian) || last flag (0x00 or 0x01)
//! ```
//!
//! and the object's ARN as associated data. Because the index and the final-chunk flag are
//! in the nonce, chunks cannot be reordered, dropped, duplicated, truncated away or appended:
//! each of those makes some chunk fail authentication. The sealed stream is just the chunks
//! back to back (`ciphertext || 16-byte tag`), so the chunk count follows from the stream's
//! length alone; the reader never trusts a length from metadata to decide which chunk is last.
//!
//! The chunks are sealed with `ring`'s AES-256-GCM (AES-NI and an aggregated CLMUL GHASH),
//! which is several times faster than RustCrypto's `aes-gcm` 0.10 on the bulk path (its
//! one-block-at-a-time GHASH was a third of the endpoint's CPU); both implement the same
//! AES-256-GCM, so the bytes on disk do not depend on the choice (`golden_object_decodes`
//! below pins them). Data-key wrapping (60 bytes) stays on `aes-gcm`.
//!
//! Pure logic: no I/O here. `store.rs` feeds it bytes.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::RngCore;
use std::mem::ManuallyDrop;
use zeroize::Zeroizing;

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes one full chunk takes on disk.
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;
/// Random per-object nonce prefix length.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Length of a wrapped data key: nonce (12) + key (32) + tag (16).
pub const WRAPPED_KEY_LEN: usize = 12 + 32 + TAG_LEN;
/// Largest chunk count the 32-bit index allows.
const MAX_CHUNKS: u64 = 1 << 32;

/// Errors of the object cipher. None of them carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error(
        "object data failed authentication at chunk {index} (tampered, reordered or truncated)"
    )]
    ChunkAuthFailed { index: u64 },
    #[error("sealed object length {len} is not a whole chunk stream")]
    BadStreamLength { len: u64 },
    #[error("chunk {index} is {got} bytes, expected {expected}")]
    BadChunkLength {
        index: u64,
        got: usize,
        expected: usize,
    },
    #[error("object is too large for the chunk index")]
    TooManyChunks,
    #[error("wrapped data key failed authentication")]
    UnwrapFailed,
    #[error("data key is {0} bytes, expected 32")]
    BadKeyLength(usize),
    #[error(
        "the object's list of parts failed authentication (parts dropped, added or reordered)"
    )]
    ManifestAuthFailed,
}

/// A 256-bit object data key, zeroized on drop.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(k.as_mut());
        DataKey(k)
    }

    /// Takes a key from bytes (e.g. a KMS plaintext data key), checking its length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SseError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SseError::BadKeyLength(bytes.len()))?;
        Ok(DataKey(Zeroizing::new(arr)))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }

    fn chunk_cipher(&self) -> ChunkCipher {
        ChunkCipher::new(self)
    }
}

/// The bulk AES-256-GCM key (`ring`), with its expanded key schedule and GHASH table zeroed
/// on drop (`ring` itself does not).
struct ChunkCipher(ManuallyDrop<ring::aead::LessSafeKey>);

impl ChunkCipher {
    fn new(key: &DataKey) -> Self {
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key.as_bytes())
            // Only a key of the wrong length is refused, and a DataKey is always 32 bytes.
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes a 32-byte key"));
        ChunkCipher(ManuallyDrop::new(ring::aead::LessSafeKey::new(unbound)))
    }

    fn seal(&self, nonce: [u8; 12], aad: &[u8], in_out: &mut [u8]) -> Option<[u8; TAG_LEN]> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(nonce);
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), in_out)
            .ok()?;
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag.as_ref());
        Some(t)
    }

    fn open(&self, nonce: [u8; 12], aad: &[u8], body: &mut [u8], tag: [u8; TAG_LEN]) -> bool {
        let nonce = ring::aead::Nonce::assume_unique_for_key(nonce);
        self.0
            .open_in_place_separate_tag(
                nonce,
                ring::aead::Aad::from(aad),
                ring::aead::Tag::from(tag),
                body,
                0..,
            )
            .is_ok()
    }
}

impl Drop for ChunkCipher {
    fn drop(&mut self) {
        // `ring` does not wipe its expanded key schedule and GHASH table, so the bytes of
        // the key object are overwritten here, one volatile write at a time (not through
        // `zeroize`, whose flat-type contract excludes the enum and `&'static` reference
        // inside). That leaves an invalid value behind, which is sound because it sits in
        // a `ManuallyDrop` that is never read, dropped or moved again.
        let p = (&mut *self.0 as *mut ring::aead::LessSafeKey).cast::<u8>();
        for i in 0..std::mem::size_of::<ring::aead::LessSafeKey>() {
            // SAFETY: `p + i` lies inside the `LessSafeKey` this struct owns exclusively
            // (`&mut self`), and nothing reads it as a `LessSafeKey` afterwards.
            unsafe { p.add(i).write_volatile(0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        DataKey(Zeroizing::new(*self.0))
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A fresh random nonce prefix for one object.
pub fn random_prefix() -> [u8; NONCE_PREFIX_LEN] {
    let mut p = [0u8; NONCE_PREFIX_LEN];
    rand::thread_rng().fill_bytes(&mut p);
    p
}

/// The nonce of chunk `index`: prefix || index (BE) || last flag.
pub fn chunk_nonce(prefix: &[u8; NONCE_PREFIX_LEN], index: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    n[NONCE_PREFIX_LEN..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Encrypts a plaintext stream chunk by chunk.
///
/// A full chunk is sealed only once more plaintext arrives (or never, if the stream ends
/// there: then [`Sealer::finish`] seals it as the last chunk), so the final flag is always
/// right without knowing the length in advance.
pub struct Sealer {
    cipher: ChunkCipher,
    prefix: [u8; NONCE_PREFIX_LEN],
    aad: Vec<u8>,
    index: u64,
    buf: Zeroizing<Vec<u8>>,
    plaintext_len: u64,
}

impl Sealer {
    pub fn new(key: &DataKey, prefix: [u8; NONCE_PREFIX_LEN], aad: &[u8]) -> Self {
        Sealer {
            cipher: key.chunk_cipher(),
            prefix,
            aad: aad.to_vec(),
            index: 0,
            buf: Zeroizing::new(Vec::with_capacity(CHUNK_SIZE)),
            plaintext_len: 0,
        }
    }

    /// Feeds plaintext; appends every chunk that is now known not to be last to `out`.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), SseError> {
        while !data.is_empty() {
            if self.buf.len() == CHUNK_SIZE {
                self.seal_buffered(false, out)?;
            }
            let take = (CHUNK_SIZE - self.buf.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.buf.extend_from_slice(head);
            self.plaintext_len = self.plaintext_len.saturating_add(take as u64);
            data = rest;
        }
        Ok(())
    }

    /// Seals what is buffered as the final chunk; returns the total plaintext length.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<u64, SseError> {
        self.seal_buffered(true, out)?;
        Ok(self.plaintext_len)
    }

    /// Plaintext bytes fed so far.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    fn seal_buffered(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), SseError> {
        if self.index >= MAX_CHUNKS {
            return Err(SseError::TooManyChunks);
        }
        let index = u32::try_from(self.index).map_err(|_| SseError::TooManyChunks)?;
        let nonce = chunk_nonce(&self.prefix, index, last);
        let start = out.len();
        out.extend_from_slice(&self.buf);
        let tag = self
            .cipher
            .seal(nonce, &self.aad, &mut out[start..])
            // GCM only refuses plaintexts over 64 GiB; a chunk is 64 KiB.
            .ok_or(SseError::ChunkAuthFailed { index: self.index })?;
        out.extend_from_slice(&tag);
        self.buf.clear();
        self.index += 1;
        Ok(())
    }
}

/// How a sealed stream of `len` bytes splits into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLayout {
    pub sealed_len: u64,
    pub chunks: u64,
}

impl StreamLayout {
    /// Derives the layout from the sealed length alone; rejects lengths no stream can have.
    pub fn from_sealed_len(sealed_len: u64) -> Result<Self, SseError> {
        let full = SEALED_CHUNK_SIZE as u64;
        if sealed_len < TAG_LEN as u64 {
            return Err(SseError::BadStreamLength { len: sealed_len });
        }
        let whole = sealed_len / full;
        let rem = sealed_len % full;
        let chunks = match rem {
            0 => whole,
            r if r >= TAG_LEN as u64 => whole + 1,
            _ => return Err(SseError::BadStreamLength { len: sealed_len }),
        };
        if chunks > MAX_CHUNKS {
            return Err(SseError::TooManyChunks);
        }
        Ok(StreamLayout { sealed_len, chunks })
    }

    /// Sealed length of a stream holding `plaintext_len` bytes.
    pub fn sealed_len_for(plaintext_len: u64) -> u64 {
        let chunks = plaintext_len.div_ceil(CHUNK_SIZE as u64).max(1);
        plaintext_len.saturating_add(chunks.saturating_mul(TAG_LEN as u64))
    }

    /// Plaintext length this stream decrypts to.
    pub fn plaintext_len(&self) -> u64 {
        self.sealed_len - self.chunks * TAG_LEN as u64
    }

    /// Sealed size of chunk `index` (the last may be short).
    pub fn chunk_len(&self, index: u64) -> Option<usize> {
        if index >= self.chunks {
            return None;
        }
        if index + 1 < self.chunks {
            return Some(SEALED_CHUNK_SIZE);
        }
        let before = (self.chunks - 1) * SEALED_CHUNK_SIZE as u64;
        usize::try_from(self.sealed_len - before).ok()
    }
}

/// Decrypts the chunks of one sealed stream.
pub struct Opener {
    cipher: ChunkCipher,
    prefix: [u8; NONCE_PREFIX_LEN],
    aad: Vec<u8>,
    layout: StreamLayout,
}

impl Opener {
    pub fn new(
        key: &DataKey,
        prefix: [u8; NONCE_PREFIX_LEN],
        aad: &[u8],
        layout: StreamLayout,
    ) -> Self {
        Opener {
            cipher: key.chunk_cipher(),
            prefix,
            aad: aad.to_vec(),
            layout,
        }
    }

    pub fn layout(&self) -> StreamLayout {
        self.layout
    }

    /// Authenticates and decrypts chunk `index` in place, leaving its plaintext in `chunk`.
    pub fn open_chunk(&self, index: u64, chunk: &mut Vec<u8>) -> Result<(), SseError> {
        match self.open_in_place(index, chunk) {
            Ok(n) => {
                chunk.truncate(n);
                Ok(())
            }
            Err(e) => {
                chunk.clear();
                Err(e)
            }
        }
    }

    /// Authenticates and decrypts sealed chunk `index` held in `chunk`; the plaintext is left
    /// in `chunk[..n]` and `n` returned. On failure the slice is zeroed, so no unauthenticated
    /// plaintext survives.
    pub fn open_in_place(&self, index: u64, chunk: &mut [u8]) -> Result<usize, SseError> {
        let expected = self
            .layout
            .chunk_len(index)
            .ok_or(SseError::ChunkAuthFailed { index })?;
        if chunk.len() != expected {
            return Err(SseError::BadChunkLength {
                index,
                got: chunk.len(),
                expected,
            });
        }
        let last = index + 1 == self.layout.chunks;
        let idx32 = u32::try_from(index).map_err(|_| SseError::TooManyChunks)?;
        let nonce = chunk_nonce(&self.prefix, idx32, last);
        let body_len = expected - TAG_LEN;
        let (body, tag) = chunk.split_at_mut(body_len);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        if self.cipher.open(nonce, &self.aad, body, t) {
            Ok(body_len)
        } else {
            chunk.fill(0);
            Err(SseError::ChunkAuthFailed { index })
        }
    }
}

/// The associated data of part `number` of multipart upload `upload_id` of the object whose
/// ARN is `object_arn`: `object_arn || 0x00 || upload_id || number (u32 big-endian)`. The
/// upload id has a fixed length, so the fields read back unambiguously from the end.
pub fn part_aad(object_arn: &str, upload_id: &str, number: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(object_arn.len() + 1 + upload_id.len() + 4);
    aad.extend_from_slice(object_arn.as_bytes());
    aad.push(0);
    aad.extend_from_slice(upload_id.as_bytes());
    aad.extend_from_slice(&number.to_be_bytes());
    aad
}

/// Length of a sealed manifest: nonce (12) + tag (16).
pub const MANIFEST_SEAL_LEN: usize = 12 + TAG_LEN;

/// The nonce of a manifest seal: 11 random bytes, then 0xff. A chunk nonce always ends in
/// 0x00 or 0x01, so no manifest nonce is ever a chunk nonce under the same data key.
fn manifest_nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut n[..11]);
    n[11] = 0xff;
    n
}

/// Authenticates `manifest` (a multipart object's list of parts) under the object's data
/// key: AES-256-GCM of an empty plaintext with `manifest` as associated data (GMAC).
/// Returns `nonce || tag`.
pub fn seal_manifest(key: &DataKey, manifest: &[u8]) -> Result<[u8; MANIFEST_SEAL_LEN], SseError> {
    let nonce = manifest_nonce();
    let tag = key
        .chunk_cipher()
        .seal(nonce, manifest, &mut [])
        .ok_or(SseError::ManifestAuthFailed)?;
    let mut out = [0u8; MANIFEST_SEAL_LEN];
    out[..12].copy_from_slice(&nonce);
    out[12..].copy_from_slice(&tag);
    Ok(out)
}

/// Checks a seal made by [`seal_manifest`].
pub fn open_manifest(key: &DataKey, manifest: &[u8], sealed: &[u8]) -> Result<(), SseError> {
    let (Ok(nonce), Ok(tag)) = (
        <[u8; 12]>::try_from(sealed.get(..12).unwrap_or_default()),
        <[u8; TAG_LEN]>::try_from(sealed.get(12..).unwrap_or_default()),
    ) else {
        return Err(SseError::ManifestAuthFailed);
    };
    if nonce[11] != 0xff {
        return Err(SseError::ManifestAuthFailed);
    }
    if key.chunk_cipher().open(nonce, manifest, &mut [], tag) {
        Ok(())
    } else {
        Err(SseError::ManifestAuthFailed)
    }
}

/// Wraps a data key under a key-encryption key (AES-256-GCM, random nonce, `aad` bound).
pub fn wrap_data_key(kek: &DataKey, dek: &DataKey, aad: &[u8]) -> Result<Vec<u8>, SseError> {
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(dek.as_bytes());
    let tag = kek
        .cipher()
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[12..])
        .map_err(|_| SseError::UnwrapFailed)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Unwraps a data key wrapped by [`wrap_data_key`] with the same `aad`.
pub fn unwrap_data_key(kek: &DataKey, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, SseError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(SseError::UnwrapFailed);
    }
    let (nonce, rest) = wrapped.split_at(12);
    let (ct, tag) = rest.split_at(32);
    let mut buf = Zeroizing::new(ct.to_vec());
    kek.cipher()
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            aad,
            &mut buf,
            Tag::from_slice(tag),
        )
        .map_err(|_| SseError::UnwrapFailed)?;
    DataKey::from_slice(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &[u8] = b"arn:aws:s3:::bucket/key";

    fn seal_all(key: &DataKey, prefix: [u8; 7], pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = Sealer::new(key, prefix, AAD);
        let mut out = Vec::new();
        for p in pieces {
            s.update(p, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        out
    }

    /// Splits a sealed stream into its chunks and opens them all; any failure is returned.
    fn open_all(key: &DataKey, prefix: [u8; 7], sealed: &[u8]) -> Result<Vec<u8>, SseError> {
        let layout = StreamLayout::from_sealed_len(sealed.len() as u64)?;
        let o = Opener::new(key, prefix, AAD, layout);
        let mut out = Vec::new();
        let mut off = 0usize;
        for i in 0..layout.chunks {
            let n = layout.chunk_len(i).unwrap();
            let mut c = sealed[off..off + n].to_vec();
            o.open_chunk(i, &mut c)?;
            out.extend_from_slice(&c);
            off += n;
        }
        Ok(out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// AES-256-GCM with RustCrypto's `aes-gcm`, an implementation independent of the one
    /// the chunk stream uses, to seal chunk `index` the way FORMAT.md describes.
    fn reference_seal_chunk(
        key: &DataKey,
        prefix: [u8; 7],
        index: u32,
        last: bool,
        pt: &[u8],
    ) -> Vec<u8> {
        let mut c = pt.to_vec();
        let nonce = chunk_nonce(&prefix, index, last);
        let tag = key
            .cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), AAD, &mut c)
            .unwrap();
        c.extend_from_slice(&tag);
        c
    }

    const GOLDEN_KEY: [u8; 32] = [0x42; 32];
    const GOLDEN_PREFIX: [u8; 7] = [1, 2, 3, 4, 5, 6, 7];
    const GOLDEN_LEN: usize = CHUNK_SIZE + 1000;
    /// A sealed body made by an independent implementation (Python `cryptography`, i.e.
    /// OpenSSL) from FORMAT.md:
    /// key 0x42 x 32, prefix 01..07, AAD `arn:aws:s3:::bucket/key`, plaintext `data(GOLDEN_LEN)`.
    const GOLDEN: &[u8] = include_bytes!("testdata/golden-sse-body.bin");

    #[test]
    fn golden_object_decodes() {
        let key = DataKey::from_slice(&GOLDEN_KEY).unwrap();
        assert_eq!(GOLDEN.len(), SEALED_CHUNK_SIZE + 1000 + TAG_LEN);
        assert_eq!(
            open_all(&key, GOLDEN_PREFIX, GOLDEN).unwrap(),
            data(GOLDEN_LEN)
        );
        // And today's sealer writes exactly those bytes.
        assert_eq!(seal_all(&key, GOLDEN_PREFIX, &[&data(GOLDEN_LEN)]), GOLDEN);
    }

    #[test]
    fn chunks_match_an_independent_aes_gcm() {
        let key = DataKey::generate();
        let p = random_prefix();
        let pt = data(2 * CHUNK_SIZE + 333);
        let sealed = seal_all(&key, p, &[&pt]);
        let mut expect = reference_seal_chunk(&key, p, 0, false, &pt[..CHUNK_SIZE]);
        expect.extend(reference_seal_chunk(
            &key,
            p,
            1,
            false,
            &pt[CHUNK_SIZE..2 * CHUNK_SIZE],
        ));
        expect.extend(reference_seal_chunk(
            &key,
            p,
            2,
            true,
            &pt[2 * CHUNK_SIZE..],
        ));
        assert_eq!(sealed, expect);
    }

    #[test]
    fn nonce_layout_is_prefix_index_flag() {
        let n = chunk_nonce(&[1, 2, 3, 4, 5, 6, 7], 0x0a0b0c0d, true);
        assert_eq!(n, [1, 2, 3, 4, 5, 6, 7, 0x0a, 0x0b, 0x0c, 0x0d, 1]);
        assert_eq!(chunk_nonce(&[0; 7], 1, false)[11], 0);
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        let key = DataKey::generate();
        let prefix = random_prefix();
        for n in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE,
            3 * CHUNK_SIZE + 17,
        ] {
            let pt = data(n);
            // Feed in odd-sized pieces to exercise buffering.
            let pieces: Vec<&[u8]> = pt.chunks(7919).collect();
            let sealed = seal_all(&key, prefix, &pieces);
            assert_eq!(sealed.len() as u64, StreamLayout::sealed_len_for(n as u64));
            let layout = StreamLayout::from_sealed_len(sealed.len() as u64).unwrap();
            assert_eq!(layout.plaintext_len(), n as u64);
            assert_eq!(open_all(&key, prefix, &sealed).unwrap(), pt, "n={n}");
            // The ciphertext never contains a long run of the plaintext.
            if n >= 64 {
                assert!(!sealed.windows(64).any(|w| w == &pt[..64]));
            }
        }
    }

    #[test]
    fn empty_object_is_one_final_chunk() {
        let key = DataKey::generate();
        let sealed = seal_all(&key, [0; 7], &[]);
        assert_eq!(sealed.len(), TAG_LEN);
        assert_eq!(open_all(&key, [0; 7], &sealed).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn flipped_bit_in_any_chunk_is_detected() {
        let key = DataKey::generate();
        let p = random_prefix();
        let pt = data(2 * CHUNK_SIZE + 100);
        let sealed = seal_all(&key, p, &[&pt]);
        for pos in [0, CHUNK_SIZE + 3, SEALED_CHUNK_SIZE + 5, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[pos] ^= 0x40;
            assert!(matches!(
                open_all(&key, p, &t),
                Err(SseError::ChunkAuthFailed { .. })
            ));
        }
    }

    #[test]
    fn reordered_chunks_are_detected() {
        let key = DataKey::generate();
        let p = random_prefix();
        let pt = data(3 * CHUNK_SIZE);
        let sealed = seal_all(&key, p, &[&pt]);
        let mut swapped = sealed.clone();
        let (a, b) = swapped.split_at_mut(SEALED_CHUNK_SIZE);
        a.swap_with_slice(&mut b[..SEALED_CHUNK_SIZE]);
        assert_eq!(
            open_all(&key, p, &swapped),
            Err(SseError::ChunkAuthFailed { index: 0 })
        );
    }

    #[test]
    fn truncation_at_a_chunk_boundary_is_detected() {
        let key = DataKey::generate();
        let p = random_prefix();
        let pt = data(3 * CHUNK_SIZE + 10);
        let sealed = seal_all(&key, p, &[&pt]);
        // Drop the final chunk: the new last chunk was sealed as "not last".
        let cut = &sealed[..3 * SEALED_CHUNK_SIZE];
        assert_eq!(
            open_all(&key, p, cut),
            Err(SseError::ChunkAuthFailed { index: 2 })
        );
        // Cut inside a chunk: either the length is impossible or the chunk fails.
        let cut = &sealed[..SEALED_CHUNK_SIZE + 8];
        assert!(open_all(&key, p, cut).is_err());
        let cut = &sealed[..SEALED_CHUNK_SIZE + 100];
        assert!(open_all(&key, p, cut).is_err());
    }

    #[test]
    fn extension_and_dropped_middle_chunk_are_detected() {
        let key = DataKey::generate();
        let p = random_prefix();
        let pt = data(2 * CHUNK_SIZE);
        let sealed = seal_all(&key, p, &[&pt]);
        // Append a copy of chunk 0: the old last chunk is no longer last.
        let mut ext = sealed.clone();
        ext.extend_from_slice(&sealed[..SEALED_CHUNK_SIZE]);
        assert!(open_all(&key, p, &ext).is_err());
        // Drop chunk 0 of a 3-chunk stream: indexes shift.
        let pt3 = data(3 * CHUNK_SIZE);
        let s3 = seal_all(&key, p, &[&pt3]);
        assert!(open_all(&key, p, &s3[SEALED_CHUNK_SIZE..]).is_err());
    }

    #[test]
    fn wrong_key_prefix_or_object_arn_fails() {
        let key = DataKey::generate();
        let p = random_prefix();
        let sealed = seal_all(&key, p, &[b"hello"]);
        assert!(open_all(&DataKey::generate(), p, &sealed).is_err());
        let mut p2 = p;
        p2[0] ^= 1;
        assert!(open_all(&key, p2, &sealed).is_err());
        let layout = StreamLayout::from_sealed_len(sealed.len() as u64).unwrap();
        let o = Opener::new(&key, p, b"arn:aws:s3:::bucket/other", layout);
        let mut c = sealed.clone();
        assert!(o.open_chunk(0, &mut c).is_err());
        assert!(c.is_empty(), "no unauthenticated plaintext is left behind");
    }

    #[test]
    fn impossible_lengths_are_rejected() {
        assert!(StreamLayout::from_sealed_len(0).is_err());
        assert!(StreamLayout::from_sealed_len(15).is_err());
        assert!(StreamLayout::from_sealed_len(SEALED_CHUNK_SIZE as u64 + 15).is_err());
        let l = StreamLayout::from_sealed_len(SEALED_CHUNK_SIZE as u64 + 16).unwrap();
        assert_eq!(l.chunks, 2);
        assert_eq!(l.chunk_len(1), Some(16));
        assert_eq!(l.chunk_len(2), None);
    }

    #[test]
    fn part_aad_ends_in_upload_id_and_number() {
        let aad = part_aad(
            "arn:aws:s3:::b/k",
            "0123456789abcdef0123456789abcdef",
            0x0102_0304,
        );
        assert_eq!(
            aad,
            b"arn:aws:s3:::b/k\x000123456789abcdef0123456789abcdef\x01\x02\x03\x04"
        );
    }

    #[test]
    fn manifest_seals_bind_key_and_content() {
        let key = DataKey::generate();
        let sealed = seal_manifest(&key, b"parts 1,2,3").unwrap();
        assert_eq!(sealed[11], 0xff);
        open_manifest(&key, b"parts 1,2,3", &sealed).unwrap();
        for (k, m, s) in [
            (&DataKey::generate(), &b"parts 1,2,3"[..], &sealed[..]),
            (&key, b"parts 1,3,2", &sealed),
            (&key, b"parts 1,2,3", &sealed[..20]),
        ] {
            assert_eq!(open_manifest(k, m, s), Err(SseError::ManifestAuthFailed));
        }
        let mut flipped = sealed;
        flipped[20] ^= 1;
        assert!(open_manifest(&key, b"parts 1,2,3", &flipped).is_err());
        // Two seals of one manifest never share a nonce.
        assert_ne!(seal_manifest(&key, b"x").unwrap()[..12], sealed[..12]);
    }

    #[test]
    fn key_wrap_round_trips_and_binds_aad() {
        let kek = DataKey::generate();
        let dek = DataKey::generate();
        let w = wrap_data_key(&kek, &dek, b"ctx").unwrap();
        assert_eq!(w.len(), WRAPPED_KEY_LEN);
        assert_eq!(
            unwrap_data_key(&kek, &w, b"ctx").unwrap().as_bytes(),
            dek.as_bytes()
        );
        assert_eq!(
            unwrap_data_key(&kek, &w, b"other").unwrap_err(),
            SseError::UnwrapFailed
        );
        assert!(unwrap_data_key(&DataKey::generate(), &w, b"ctx").is_err());
        assert!(unwrap_data_key(&kek, &w[1..], b"ctx").is_err());
    }
}
