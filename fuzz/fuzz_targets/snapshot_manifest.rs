//! cargo-fuzz target `snapshot_manifest`: the entry `atrest::fuzzing::snapshot_manifest` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::snapshot_manifest(data));
