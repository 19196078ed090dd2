//! cargo-fuzz target `fill_map`: the entry `atrest::fuzzing::fill_map` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::fill_map(data));
