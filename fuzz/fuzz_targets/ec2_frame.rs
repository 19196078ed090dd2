//! cargo-fuzz target `ec2_frame`: the entry `atrest::fuzzing::ec2_frame` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::ec2_frame(data));
