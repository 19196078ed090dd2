//! Arbitrary bytes as the IAM store's file (`HOME/kms/iam.json`): parsing never panics,
//! and a file that parses compiles, and is written back to bytes that parse to the
//! same store.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = kmsd::testing::iam::parse_file(data) {
        kmsd::testing::iam::compile(&f).expect("a parsed store compiles");
        let again = kmsd::testing::iam::parse_file(&kmsd::testing::iam::store::to_bytes(&f)).expect("reparses");
        assert_eq!(again, f);
    }
});
