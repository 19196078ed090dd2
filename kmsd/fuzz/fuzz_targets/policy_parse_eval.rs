//! Arbitrary bytes through policy parsing and KMS authorization; any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kmsd::testing::policy::exercise(data);
});
