//! AES-XTS-256 sector encryption, byte-compatible with dm-crypt `aes-xts-plain64`.
//!
//! # Why the fast path is XTS
//!
//! IEEE 1619 defines, for a data unit with tweak value `i` and 16-byte blocks `P_j`:
//!
//! ```text
//! T_0     = AES-ENC(K2, i)                  (i: the 64-bit sector number, little-endian, zero-padded)
//! T_{j+1} = T_j * alpha                     (multiplication in GF(2^128), little-endian bytes)
//! C_j     = AES-ENC(K1, P_j xor T_j) xor T_j
//! ```
//!
//! Every `T_j` depends only on `i` and `j`, never on the data, so the whole tweak sequence of a
//! sector can be computed first. The per-block formula then factors into three independent
//! passes over the sector: (1) `X_j = P_j xor T_j` for all `j`, (2) `Y_j = AES-ENC(K1, X_j)` for
//! all `j`, (3) `C_j = Y_j xor T_j`. Pass (2) is plain ECB over independent blocks, which is what
//! the `aes` crate's `encrypt_blocks` does with AES-NI, 8 blocks in flight, instead of one block
//! at a time. Decryption is the same with `AES-DEC(K1, .)` in pass (2); the tweak is always
//! *encrypted* with K2. Sectors are whole multiples of 16 bytes (512 or 4096), so XTS ciphertext
//! stealing never applies. The `xts-mode` crate is the test oracle for this equivalence and the
//! IEEE 1619 vectors and OpenSSL pin it down independently (see `tests/volume_xts.rs`).
//!
//! # Tweaks
//!
//! dm-crypt `plain64` counts in 512-byte units whatever the sector size (unless
//! `iv_large_sectors`), so the sector at payload byte offset `o` uses tweak `o / 512`.

use aes::cipher::consts::U16;
use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use std::cell::RefCell;

use super::key::XtsKey;

/// Bytes per XTS tweak unit in dm-crypt's `plain64` IV mode.
pub const TWEAK_UNIT: u64 = 512;

const BLOCK: usize = 16;
/// Largest run of tweaks computed before the AES pass (one 4096-byte sector).
const MAX_TWEAK_BYTES: usize = 4096;

/// A buffer that is not a whole number of sectors, or a sector size XTS cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XtsError {
    #[error("XTS sector size {0} is not a non-zero multiple of 16 bytes")]
    BadSectorSize(usize),
    #[error("XTS buffer of {len} bytes is not a whole number of {sector_size}-byte sectors")]
    PartialSector { len: usize, sector_size: usize },
}

/// The two expanded AES-256 keys of one XTS key (wiped on drop by the `aes` crate's
/// `zeroize` feature).
pub struct Xts {
    data: Aes256,
    tweak: Aes256,
}

#[inline(always)]
fn load(b: &[u8]) -> u128 {
    let mut a = [0u8; BLOCK];
    a.copy_from_slice(b);
    u128::from_le_bytes(a)
}

/// Multiplication by the primitive element alpha in GF(2^128), IEEE 1619 byte order
/// (byte 0 least significant; the carry out of bit 127 folds back as 0x87).
#[inline(always)]
pub fn mul_alpha(t: u128) -> u128 {
    let carry = (t >> 127) as u8;
    (t << 1) ^ u128::from(carry.wrapping_neg() & 0x87)
}

/// Carry-less products h * 0x87 for every byte h: the reduction of x^128 * h(x) modulo
/// the XTS polynomial x^128 + x^7 + x^2 + x + 1 (degree <= 14, so no further reduction).
const REDUCE8: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut h = 0usize;
    while h < 256 {
        let mut acc = 0u16;
        let mut bit = 0;
        while bit < 8 {
            if (h >> bit) & 1 == 1 {
                acc ^= 0x87 << bit;
            }
            bit += 1;
        }
        table[h] = acc;
        h += 1;
    }
    table
};

/// Multiplication by alpha^8: eight `mul_alpha` steps in one shift and one table lookup.
#[inline(always)]
pub fn mul_alpha8(t: u128) -> u128 {
    (t << 8) ^ u128::from(REDUCE8[(t >> 120) as usize])
}

thread_local! {
    /// Per-thread tweak scratch, reused so the hot path neither allocates nor memsets.
    /// Tweaks are AES_K2(sector number) * alpha^j: public-position values under the tweak
    /// key, not key material (they reveal neither key nor plaintext), so it is not wiped.
    static TWEAKS: RefCell<[u8; MAX_TWEAK_BYTES]> = const { RefCell::new([0u8; MAX_TWEAK_BYTES]) };
}

/// Independent tweak chains.
const LANES: usize = 8;

/// Checks that `len` bytes are whole sectors of a usable size; the tweak units each
/// sector advances (dm-crypt counts in 512-byte units whatever the sector size).
fn units_per_sector(len: usize, sector_size: usize) -> Result<u64, XtsError> {
    if sector_size == 0 || sector_size % BLOCK != 0 {
        return Err(XtsError::BadSectorSize(sector_size));
    }
    if len % sector_size != 0 {
        return Err(XtsError::PartialSector { len, sector_size });
    }
    Ok((sector_size as u64) / TWEAK_UNIT.min(sector_size as u64))
}

/// Writes the next tweaks (one per 16-byte block of `tw`) from the lanes, advancing
/// them. Fewer than 8 blocks at the end happen only for a unit that is not a multiple
/// of 128 bytes (test vectors); the lanes then hold exactly the next tweaks in order.
#[inline]
fn next_tweaks(lanes: &mut [u128; LANES], tw: &mut [u8]) {
    let mut groups = tw.chunks_exact_mut(LANES * BLOCK);
    for group in &mut groups {
        for (out, lane) in group.chunks_exact_mut(BLOCK).zip(lanes.iter_mut()) {
            out.copy_from_slice(&lane.to_le_bytes());
            *lane = mul_alpha8(*lane);
        }
    }
    for (out, lane) in groups
        .into_remainder()
        .chunks_exact_mut(BLOCK)
        .zip(lanes.iter())
    {
        out.copy_from_slice(&lane.to_le_bytes());
    }
}

/// dst ^= src, byte-wise so the compiler vectorizes it.
#[inline]
fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= *s;
    }
}

#[derive(Clone, Copy)]
enum Dir {
    Encrypt,
    Decrypt,
}

impl Xts {
    pub fn new(key: &XtsKey) -> Self {
        Xts {
            data: Aes256::new(aes::cipher::generic_array::GenericArray::from_slice(
                key.data_half(),
            )),
            tweak: Aes256::new(aes::cipher::generic_array::GenericArray::from_slice(
                key.tweak_half(),
            )),
        }
    }

    /// T_0 for a data unit: the tweak value as u64 little-endian padded to 16 bytes,
    /// encrypted with the tweak key.
    fn first_tweak(&self, unit: u64) -> u128 {
        let mut block = [0u8; BLOCK];
        block[..8].copy_from_slice(&unit.to_le_bytes());
        let mut b = aes::Block::from(block);
        self.tweak.encrypt_block(&mut b);
        load(&b)
    }

    /// The eight tweak lanes of a data unit: T_0..T_7. Eight independent chains, each
    /// advancing by alpha^8: one serial chain of `mul_alpha` is ~4 cycles of latency per
    /// block, as much as the AES itself.
    #[inline]
    fn start_lanes(&self, unit: u64) -> [u128; LANES] {
        let mut lanes = [0u128; LANES];
        let mut t = self.first_tweak(unit);
        for lane in lanes.iter_mut() {
            *lane = t;
            t = mul_alpha(t);
        }
        lanes
    }

    /// One data unit. `tw` is scratch for up to 4096 bytes of tweaks (a multiple of 128).
    fn crypt_unit(&self, data: &mut [u8], unit: u64, dir: Dir, tw: &mut [u8]) {
        let mut lanes = self.start_lanes(unit);
        for chunk in data.chunks_mut(tw.len()) {
            let tw = &mut tw[..chunk.len()];
            // Pass 1: the tweak sequence T_j for every block of the chunk, then XORed in.
            next_tweaks(&mut lanes, tw);
            xor_into(chunk, tw);
            // Pass 2: all blocks through AES at once (AES-NI, 8 blocks in flight).
            let (blocks, _tail) = InOutBuf::from(&mut *chunk).into_chunks::<U16>();
            match dir {
                Dir::Encrypt => self.data.encrypt_blocks_inout(blocks),
                Dir::Decrypt => self.data.decrypt_blocks_inout(blocks),
            }
            // Pass 3: the same tweaks XORed again.
            xor_into(chunk, tw);
        }
    }

    /// One data unit encrypted from `src` into `dst` (same length): pass 1 writes
    /// `src xor T` straight into `dst`, so the plaintext is read once and never copied.
    fn encrypt_unit_into(&self, src: &[u8], dst: &mut [u8], unit: u64, tw: &mut [u8]) {
        let mut lanes = self.start_lanes(unit);
        for (s, d) in src.chunks(tw.len()).zip(dst.chunks_mut(tw.len())) {
            let tw = &mut tw[..s.len()];
            next_tweaks(&mut lanes, tw);
            for ((o, a), b) in d.iter_mut().zip(s).zip(tw.iter()) {
                *o = *a ^ *b;
            }
            let (blocks, _tail) = InOutBuf::from(&mut *d).into_chunks::<U16>();
            self.data.encrypt_blocks_inout(blocks);
            xor_into(d, tw);
        }
    }

    /// Encrypts whole sectors of `src` into `dst` (same length), leaving `src` untouched;
    /// sector `k` uses tweak `first_unit + k * sector_size / 512`. Same ciphertext as
    /// [`Xts::encrypt_sectors`] on a copy, without the copy.
    pub fn encrypt_sectors_into(
        &self,
        src: &[u8],
        dst: &mut [u8],
        sector_size: usize,
        first_unit: u64,
    ) -> Result<(), XtsError> {
        if dst.len() != src.len() {
            return Err(XtsError::PartialSector {
                len: src.len().max(dst.len()),
                sector_size,
            });
        }
        let units_per_sector = units_per_sector(src.len(), sector_size)?;
        TWEAKS.with(|tw| {
            let mut tw = tw.borrow_mut();
            let tw = &mut tw[..sector_size.min(MAX_TWEAK_BYTES)];
            let mut unit = first_unit;
            for (s, d) in src
                .chunks_exact(sector_size)
                .zip(dst.chunks_exact_mut(sector_size))
            {
                self.encrypt_unit_into(s, d, unit, tw);
                unit = unit.wrapping_add(units_per_sector);
            }
        });
        Ok(())
    }

    fn crypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_unit: u64,
        dir: Dir,
        holes_are_zero: bool,
    ) -> Result<(), XtsError> {
        let units_per_sector = units_per_sector(buf.len(), sector_size)?;
        TWEAKS.with(|tw| {
            let mut tw = tw.borrow_mut();
            let tw = &mut tw[..sector_size.min(MAX_TWEAK_BYTES)];
            let mut unit = first_unit;
            for sector in buf.chunks_exact_mut(sector_size) {
                if !(holes_are_zero && is_zero(sector)) {
                    self.crypt_unit(sector, unit, dir, tw);
                }
                unit = unit.wrapping_add(units_per_sector);
            }
        });
        Ok(())
    }

    /// Encrypts one XTS data unit (any whole number of 16-byte blocks) with tweak value
    /// `tweak`, as IEEE 1619 defines it; used by the test vectors.
    pub fn encrypt_data_unit(&self, data: &mut [u8], tweak: u64) -> Result<(), XtsError> {
        self.crypt_sectors(data, data.len().max(BLOCK), tweak, Dir::Encrypt, false)
    }

    /// Inverse of [`Xts::encrypt_data_unit`].
    pub fn decrypt_data_unit(&self, data: &mut [u8], tweak: u64) -> Result<(), XtsError> {
        self.crypt_sectors(data, data.len().max(BLOCK), tweak, Dir::Decrypt, false)
    }

    /// Encrypts whole sectors in place; sector `k` of `buf` uses tweak
    /// `first_unit + k * sector_size / 512`.
    pub fn encrypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_unit: u64,
    ) -> Result<(), XtsError> {
        self.crypt_sectors(buf, sector_size, first_unit, Dir::Encrypt, false)
    }

    /// Decrypts whole sectors in place (plain XTS, no hole rule).
    pub fn decrypt_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_unit: u64,
    ) -> Result<(), XtsError> {
        self.crypt_sectors(buf, sector_size, first_unit, Dir::Decrypt, false)
    }

    /// Decrypts sectors as stored in a volume payload: a sector whose ciphertext is all
    /// zeros is a never-written hole and reads as plaintext zeros (see docs/FORMAT.md).
    pub fn decrypt_stored_sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_unit: u64,
    ) -> Result<(), XtsError> {
        self.crypt_sectors(buf, sector_size, first_unit, Dir::Decrypt, true)
    }
}

/// True if every byte is zero (word-at-a-time).
pub fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(BLOCK);
    let mut acc = 0u128;
    for c in &mut chunks {
        acc |= load(c);
    }
    acc == 0 && chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_alpha_matches_definition() {
        assert_eq!(mul_alpha(1), 2);
        assert_eq!(mul_alpha(1u128 << 127), 0x87);
        assert_eq!(mul_alpha((1u128 << 127) | 1), 0x87 ^ 2);
    }

    #[test]
    fn mul_alpha8_is_eight_mul_alpha() {
        let mut x: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for _ in 0..1000 {
            let mut y = x;
            for _ in 0..8 {
                y = mul_alpha(y);
            }
            assert_eq!(mul_alpha8(x), y);
            x = x.rotate_left(13) ^ (x >> 7) ^ 0x9e37_79b9;
        }
    }

    #[test]
    fn round_trip_and_rejects_partial_sectors() {
        let x = Xts::new(&XtsKey::generate());
        let mut buf: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        let orig = buf.clone();
        x.encrypt_sectors(&mut buf, 4096, 8).unwrap();
        assert_ne!(buf, orig);
        x.decrypt_sectors(&mut buf, 4096, 8).unwrap();
        assert_eq!(buf, orig);
        assert_eq!(
            x.encrypt_sectors(&mut buf[..100], 512, 0),
            Err(XtsError::PartialSector {
                len: 100,
                sector_size: 512
            })
        );
        assert_eq!(
            x.encrypt_sectors(&mut buf, 100, 0),
            Err(XtsError::BadSectorSize(100))
        );
    }

    #[test]
    fn encrypt_into_equals_in_place() {
        let x = Xts::new(&XtsKey::generate());
        for ss in [512usize, 4096] {
            let src: Vec<u8> = (0..3 * ss as u32).map(|i| (i * 7 + 3) as u8).collect();
            let mut in_place = src.clone();
            x.encrypt_sectors(&mut in_place, ss, 40).unwrap();
            let mut into = vec![0xAAu8; src.len()];
            x.encrypt_sectors_into(&src, &mut into, ss, 40).unwrap();
            assert_eq!(into, in_place);
        }
        let mut short = vec![0u8; 4096];
        assert!(x
            .encrypt_sectors_into(&[0u8; 8192], &mut short, 4096, 0)
            .is_err());
    }

    #[test]
    fn zero_ciphertext_reads_as_zero_only_with_hole_rule() {
        let x = Xts::new(&XtsKey::generate());
        let mut a = vec![0u8; 512];
        x.decrypt_stored_sectors(&mut a, 512, 3).unwrap();
        assert!(is_zero(&a));
        x.decrypt_sectors(&mut a, 512, 3).unwrap();
        assert!(!is_zero(&a));
    }

    #[test]
    fn is_zero_checks_every_byte() {
        let mut b = vec![0u8; 4099];
        assert!(is_zero(&b));
        for i in [0usize, 15, 16, 4095, 4098] {
            b[i] = 1;
            assert!(!is_zero(&b));
            b[i] = 0;
        }
    }
}
