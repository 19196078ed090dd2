//! The pure-Rust XTS path: the RustCrypto `aes` crate (AES-NI when the CPU has it, a
//! constant-time bitsliced software AES otherwise) with the tweak arithmetic done here.
//!
//! It is the fallback when the AWS-LC path is unavailable or `ATREST_XTS=portable` forces it
//! (see the parent module), and the reference the AWS-LC path is checked against at start-up.
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
//! *encrypted* with K2. The tweak chain runs as eight independent lanes advancing by alpha^8
//! (one table lookup), because one serial chain of `mul_alpha` costs as much as the AES itself.

use aes::cipher::consts::U16;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use std::cell::RefCell;

use super::{Dir, BLOCK};
use crate::volume::key::XtsKey;

/// Largest run of tweaks computed before the AES pass (one 4096-byte sector).
const MAX_TWEAK_BYTES: usize = 4096;

/// Independent tweak chains.
const LANES: usize = 8;

/// The two expanded AES-256 keys of one XTS key (wiped on drop by the `aes` crate's
/// `zeroize` feature).
pub(super) struct PortableXts {
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

impl PortableXts {
    pub(super) fn new(key: &XtsKey) -> Self {
        PortableXts {
            data: Aes256::new(GenericArray::from_slice(key.data_half())),
            tweak: Aes256::new(GenericArray::from_slice(key.tweak_half())),
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

    /// The eight tweak lanes of a data unit: T_0..T_7.
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

    /// One data unit in place. `tw` is scratch for up to 4096 bytes of tweaks.
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

    /// Runs `f` with this thread's tweak scratch cut to one unit (at most 4096 bytes).
    fn with_tweaks<R>(unit_len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        TWEAKS.with(|tw| {
            let mut tw = tw.borrow_mut();
            f(&mut tw[..unit_len.min(MAX_TWEAK_BYTES)])
        })
    }

    /// One data unit in place (the parent checked the length is a whole number of blocks).
    pub(super) fn crypt(&self, data: &mut [u8], unit: u64, dir: Dir) {
        Self::with_tweaks(data.len(), |tw| self.crypt_unit(data, unit, dir, tw));
    }

    /// One data unit encrypted from `src` into `dst` (same length, checked by the parent).
    pub(super) fn encrypt_into(&self, src: &[u8], dst: &mut [u8], unit: u64) {
        Self::with_tweaks(src.len(), |tw| self.encrypt_unit_into(src, dst, unit, tw));
    }
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
}
