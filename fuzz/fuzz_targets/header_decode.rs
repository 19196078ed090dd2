//! The volume header parser on arbitrary bytes: it must never panic, and whatever it accepts
//! must re-encode to exactly the bytes it read (no two encodings of one header).
//!
//! Each input is parsed twice: as is (exercising magic, version, length and checksum checks),
//! and with a valid SHA-256 patched in at the length it claims, so the fuzzer also reaches
//! the field parser behind the checksum.
#![no_main]

use atrest::volume::format;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn check(data: &[u8]) {
    if let Ok(h) = format::decode(data) {
        let again = format::encode(&h.params).expect("an accepted header encodes");
        assert_eq!(&data[..again.len()], &again[..]);
        assert_eq!(again.len(), h.header_len as usize);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 16 {
        let claimed = u32::from_le_bytes([data[12], data[13], data[14], data[15]]) as usize;
        if (72..=data.len()).contains(&claimed) {
            let mut fixed = data.to_vec();
            let sum = Sha256::digest(&fixed[..claimed - 32]);
            fixed[claimed - 32..claimed].copy_from_slice(&sum);
            check(&fixed);
        }
    }
});
