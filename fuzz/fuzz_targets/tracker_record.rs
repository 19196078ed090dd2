//! cargo-fuzz target `tracker_record`: the entry `atrest::fuzzing::tracker_record` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::tracker_record(data));
