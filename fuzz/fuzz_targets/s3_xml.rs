//! cargo-fuzz target `s3_xml`: the entry `atrest::fuzzing::s3_xml` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::s3_xml(data));
