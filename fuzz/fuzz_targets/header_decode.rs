//! cargo-fuzz target `header_decode`: the entry `atrest::fuzzing::header_decode` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::header_decode(data));
