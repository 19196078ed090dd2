//! cargo-fuzz target `object_meta`: the entry `atrest::fuzzing::object_meta` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::object_meta(data));
