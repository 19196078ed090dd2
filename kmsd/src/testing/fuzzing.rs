//! The fuzz entry points of kmsd's parsers: every reader of bytes that come from a file,
//! a socket or a request has one function here taking `&[u8]`. Panicking (or breaking an
//! invariant asserted here) is the only failure; a typed error is a correct answer.
//!
//! Two drivers call them, so both explore the same code: the cargo-fuzz crate
//! `kmsd/fuzz` (one target per entry, `TARGETS` names them, seeds in
//! `kmsd/fuzz/seeds/<target>/`) and the stable-Rust smoke test `tests/fuzz_smoke.rs` at the
//! workspace root, which runs every target over its seeds and thousands of mutations in
//! plain `cargo test` (docs/SECURITY.md, "Fuzzing").
//!
//! Part of [`crate::testing`] (the cargo feature `testing`): it reaches into internals so
//! that the fuzz crates need nothing else of kmsd to be public.

// A fuzz entry's expect() states the invariant it checks: its panic is the finding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::Path;

use crate::api::EncryptionContext;

/// A target: its name (the cargo-fuzz binary and the seed directory) and its entry.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("policy_parse_eval", policy_parse_eval),
    ("api_decode", api_decode),
    ("iam_store", iam_store),
    ("ciphertext_blob", ciphertext_blob),
    ("socket_frame", socket_frame),
    ("keystore", keystore),
    ("trail_segment", trail_segment),
    ("config_toml", config_toml),
    ("access_keys", access_keys),
];

/// Policy documents (key and identity policies) parsed and, when they parse, evaluated
/// for a spread of callers and actions.
pub fn policy_parse_eval(data: &[u8]) {
    crate::policy::fuzz_support::exercise(data);
}

/// Both request decoders: the AWS JSON 1.1 edge (`Request::from_aws_json`, the first
/// byte picks the operation) and the socket's postcard payloads (`decode_request`).
pub fn api_decode(data: &[u8]) {
    if let Some((&pick, body)) = data.split_first() {
        let ops = crate::api::OPERATIONS;
        if let Some(&op) = ops.get(usize::from(pick) % ops.len()) {
            if let Ok(request) = crate::api::Request::from_aws_json(op, body) {
                assert_eq!(request.operation(), op);
                let _ = request.request_parameters();
            }
        }
    }
    let _ = crate::protocol::decode_request(data);
}

/// The IAM store's file (`HOME/kms/iam.json`): a file that parses compiles, and is
/// written back to bytes that parse to the same store.
pub fn iam_store(data: &[u8]) {
    if let Ok(f) = crate::iam::parse_file(data) {
        crate::iam::compile(&f).expect("a parsed store compiles");
        let again = crate::iam::parse_file(&crate::iam::store::to_bytes(&f)).expect("reparses");
        assert_eq!(again, f);
    }
}

const ROOT: [u8; 32] = [7; 32];
/// The root key of the seed corpus (`kmsd/fuzz/seeds/keystore/root.key`), so the key files
/// there unseal and the fuzzer starts past authentication.
const SEED_ROOT: [u8; 32] = [
    78, 128, 48, 23, 177, 246, 142, 1, 130, 74, 248, 122, 18, 47, 74, 223, 110, 121, 192, 7, 44,
    158, 110, 240, 181, 62, 252, 253, 0, 168, 170, 244,
];
const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// A `CiphertextBlob` (Decrypt's and ReEncrypt's input from any caller): the header
/// parser, then authentication under a fixed key; and the other way round, the input as
/// plaintext sealed and opened again.
pub fn ciphertext_blob(data: &[u8]) {
    let cipher = crate::blob::cipher(&ROOT);
    let mut ctx = EncryptionContext::new();
    if let Ok(header) = crate::blob::parse(data) {
        let _ = crate::blob::open(&cipher, &header, &ctx);
    }
    ctx.insert("purpose".into(), String::from_utf8_lossy(data).into_owned());
    let sealed = crate::blob::seal_with_nonce(&cipher, KEY_ARN, 1, [3; 12], &ctx, data)
        .expect("sealing under a valid ARN succeeds");
    let header = crate::blob::parse(&sealed).expect("a sealed blob parses");
    let opened = crate::blob::open(&cipher, &header, &ctx).expect("a sealed blob opens");
    assert_eq!(opened.as_slice(), data);
}

/// kmsd.sock's frames as the server reads them (length prefix, then the request
/// envelope) and as the client reads answers; and the input as a bare payload.
pub fn socket_frame(data: &[u8]) {
    let mut r = Cursor::new(data);
    let mut buf = Vec::new();
    while crate::protocol::read_frame_bytes(&mut r, &mut buf).is_ok() {
        let _ = crate::protocol::decode_request(&buf);
        let _ = crate::protocol::decode_response(&buf);
    }
    let _ = crate::protocol::decode_request(data);
    let _ = crate::protocol::decode_response(data);
}

/// The keystore's files: a key file (`keys/<id>.json`, read as if named after the key
/// ID it holds; its backing versions then unsealed under the seed corpus's root key),
/// `aliases.json` and `root.key`.
pub fn keystore(data: &[u8]) {
    use crate::keystore;
    let id = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("key_id")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let key_path = Path::new("keys").join(format!("{id}.json"));
    if let Ok(key) = keystore::parse_key_file(&key_path, data) {
        let _ = keystore::Keystore::detached(&SEED_ROOT).unseal_versions(&key);
    }
    let _ = keystore::parse_aliases(Path::new("aliases.json"), data);
    let _ = keystore::parse_root_key(Path::new("root.key"), data);
}

/// A trail segment as `validate`, `lookup-events` and recovery read it: the header line,
/// each event line (a line that parses re-encodes to exactly its bytes), the records, the
/// whole segment through the validator, and the input as a `NextToken`.
pub fn trail_segment(data: &[u8]) {
    use crate::trail::{chain, segment, validate};
    let path = Path::new("trail/00000001.jsonl");
    let _ = segment::recovery_cut(data);
    for line in segment::split_lines(data).lines {
        let _ = chain::SegmentHeader::parse(line);
        if let Ok(ev) = chain::parse_line(line) {
            let again = chain::encode_line(ev.seq, &ev.prev, &ev.hash, ev.record);
            assert_eq!(again.strip_suffix(b"\n").unwrap_or(&again), line);
            let _ = ev.hash_ok();
        }
    }
    let _ = segment::events_of(path, data);
    let mut v = validate::Validator::new(None);
    let _ = v.segment(1, path, data, true);
    let _ = v.finish();
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = crate::trail::lookup::decode_token(token, "");
    }
}

/// `HOME/config.toml`.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text);
    }
}

/// The access-keys file (`HOME/kms/access-keys.json`).
pub fn access_keys(data: &[u8]) {
    let _ = crate::credentials::parse_file(data);
}
