//! cargo-fuzz target `sigv4_parse`: the entry `atrest::fuzzing::sigv4_parse` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::sigv4_parse(data));
