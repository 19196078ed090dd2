//! cargo-fuzz target `query_decode`: the entry `atrest::fuzzing::query_decode` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::query_decode(data));
