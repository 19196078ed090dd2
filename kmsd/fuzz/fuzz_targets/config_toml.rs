//! cargo-fuzz target `config_toml`: the entry `kmsd::testing::fuzzing::config_toml` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsd::testing::fuzzing::config_toml(data));
