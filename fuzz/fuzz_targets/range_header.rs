//! cargo-fuzz target `range_header`: the entry `atrest::fuzzing::range_header` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::range_header(data));
