//! cargo-fuzz target `policy_parse_eval`: the entry `kmsd::testing::fuzzing::policy_parse_eval` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsd::testing::fuzzing::policy_parse_eval(data));
