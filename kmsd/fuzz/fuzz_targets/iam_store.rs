//! cargo-fuzz target `iam_store`: the entry `kmsd::testing::fuzzing::iam_store` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsd::testing::fuzzing::iam_store(data));
