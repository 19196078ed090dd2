//! cargo-fuzz target `sse_chunks`: the entry `atrest::fuzzing::sse_chunks` (its docs say what it
//! feeds and asserts; `tests/fuzz_smoke.rs` runs the same function on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atrest::fuzzing::sse_chunks(data));
