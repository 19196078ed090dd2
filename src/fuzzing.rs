//! The fuzz entry points of atrest's parsers (and of plumbing's): every reader of bytes
//! that come from a file, a socket or a request has one function here taking `&[u8]`.
//! Panicking (or breaking an invariant asserted here) is the only failure; a typed error
//! is a correct answer.
//!
//! Two drivers call them, so both explore the same code: the cargo-fuzz crate `fuzz/`
//! (one target per entry, [`TARGETS`] names them, seeds in `fuzz/seeds/<target>/`) and
//! the stable-Rust smoke test `tests/fuzz_smoke.rs`, which runs every target over its seeds
//! and thousands of mutations in plain `cargo test` (docs/SECURITY.md, "Fuzzing"). kmsd's
//! parsers have theirs in `kmsd/src/testing/fuzzing.rs`.

// A fuzz entry's expect() states the invariant it checks: its panic is the finding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::endpoint::protocol::{model, query};
use crate::endpoint::sigv4;
use crate::s3::{range, sse, xml};

/// A target: its name (the cargo-fuzz binary and the seed directory) and its entry.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("header_decode", header_decode),
    ("snapshot_manifest", snapshot_manifest),
    ("tracker_record", tracker_record),
    ("fill_map", fill_map),
    ("ec2_registry", ec2_registry),
    ("ec2_frame", ec2_frame),
    ("sse_chunks", sse_chunks),
    ("object_meta", object_meta),
    ("range_header", range_header),
    ("s3_xml", s3_xml),
    ("query_decode", query_decode),
    ("query_encode", query_encode),
    ("sigv4_parse", sigv4_parse),
    ("shorthand", shorthand),
    ("jmespath", jmespath),
];

/// The volume header (the first bytes of every volume image and of a snapshot's stored
/// form): parsed as is, and with a valid SHA-256 patched in at the length it claims so the
/// field parser behind the checksum is reached too. A header that decodes re-encodes to
/// exactly the bytes it was read from (no two encodings of one header).
pub fn header_decode(data: &[u8]) {
    use crate::volume::format;
    let check = |bytes: &[u8]| {
        if let Ok(h) = format::decode(bytes) {
            let again = format::encode(&h.params).expect("an accepted header encodes");
            assert_eq!(bytes.get(..again.len()), Some(&again[..]));
            assert_eq!(again.len(), h.header_len as usize);
        }
    };
    check(data);
    let Some(claimed) = data.get(12..16) else {
        return;
    };
    let claimed = u32::from_le_bytes([claimed[0], claimed[1], claimed[2], claimed[3]]) as usize;
    if (72..=data.len()).contains(&claimed) {
        let mut fixed = data.to_vec();
        let sum = Sha256::digest(&fixed[..claimed - 32]);
        fixed[claimed - 32..claimed].copy_from_slice(&sum);
        check(&fixed);
    }
}

/// A snapshot manifest (`DIR/manifests/<snapshot-id>.json`); the chunk lengths of one
/// that parses are computed for every chunk it lists.
pub fn snapshot_manifest(data: &[u8]) {
    let path = Path::new("manifests/snap-0123456789abcdef0.json");
    if let Ok(m) = crate::volume::snapshot::parse_manifest(path, data) {
        let total: u64 = (0..m.chunks.len()).map(|i| m.chunk_len(i)).sum();
        if m.state == crate::volume::snapshot::SnapshotState::Completed {
            assert_eq!(total, m.volume.size_bytes);
        }
    }
}

/// A changed-block tracker file (`<image>.cbt`): parsed as is, and with a valid SHA-256
/// patched in so the field checks behind the checksum are reached too. A record that
/// decodes re-encodes to exactly its bytes, and its completeness can be judged against the
/// facts it names.
pub fn tracker_record(data: &[u8]) {
    use crate::volume::tracker::record::{ImageFacts, Record, CHECKSUM_AT, HEADER_USED};
    let check = |bytes: &[u8]| {
        if let Ok(r) = Record::decode(bytes) {
            assert_eq!(r.encode().expect("an accepted record encodes"), bytes);
            let h = &r.header;
            let facts = ImageFacts {
                volume_id: h.volume_id.clone(),
                volume_size: h.volume_size,
                chunk_size: h.chunk_size,
                inode: h.image_inode,
                mtime: h.image_mtime,
                boot_id: h.boot_id,
            };
            if let Some((base, bits)) = r.changes(&facts) {
                assert_eq!(Some(base), h.base.as_deref());
                assert!(bits.ones().all(|i| i < bits.count()));
            }
        }
    };
    check(data);
    if data.len() >= HEADER_USED {
        let mut fixed = data.to_vec();
        let sum = Sha256::digest(&fixed[..CHECKSUM_AT]);
        fixed[CHECKSUM_AT..HEADER_USED].copy_from_slice(&sum);
        check(&fixed);
    }
}

/// A lazy restore's fill map (`HOME/volumes/vol-*.fill`): a map that decodes re-encodes to
/// exactly its bytes, and its counts stay inside the chunk count; the input is also tried
/// with a valid SHA-256 appended, so the field checks behind the checksum are reached.
pub fn fill_map(data: &[u8]) {
    use crate::volume::fillmap::FillMap;
    let check = |bytes: &[u8]| {
        if let Ok(m) = FillMap::decode(bytes) {
            assert_eq!(m.encode(), bytes);
            assert!(m.filled() <= m.count());
            assert!(!m.get(m.count()));
        }
    };
    check(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&Sha256::digest(data));
    check(&sealed);
}

/// The EC2 registry (`HOME/ec2/registry.json`: volumes, snapshots, instances and AMIs).
pub fn ec2_registry(data: &[u8]) {
    let _ = crate::ec2::registry::parse_state(Path::new("registry.json"), data);
}

/// ec2.sock's frames as the daemon reads requests and the CLI reads answers, and the
/// input as a bare payload.
pub fn ec2_frame(data: &[u8]) {
    use crate::ec2::protocol::{read_frame, RequestEnvelope, ResponseEnvelope};
    let mut r = Cursor::new(data);
    while read_frame::<_, RequestEnvelope>(&mut r).is_ok() {}
    let mut r = Cursor::new(data);
    while read_frame::<_, ResponseEnvelope>(&mut r).is_ok() {}
    let speaks = crate::ec2::protocol::PROTOCOL_VERSION;
    let _ = plumbing::frame::decode_versioned::<RequestEnvelope>(data, speaks);
    let _ = plumbing::frame::decode_versioned::<ResponseEnvelope>(data, speaks);
}

/// The SSE layer's openers on stored bytes: the input as a sealed stream (layout from its
/// length, each chunk authenticated), as an object's sealed list of parts, and as a
/// wrapped data key; and the input as plaintext, sealed and opened back byte-identical.
pub fn sse_chunks(data: &[u8]) {
    let key = sse::DataKey::from_slice(&[9; 32]).expect("32 bytes");
    let prefix = [5; sse::NONCE_PREFIX_LEN];
    let aad = b"arn:aws:s3:::bucket/key";
    if let Ok(layout) = sse::StreamLayout::from_sealed_len(data.len() as u64) {
        let opener = sse::Opener::new(&key, prefix, aad, layout);
        let mut at = 0usize;
        for index in 0..layout.chunks {
            let len = layout
                .chunk_len(index)
                .expect("chunks below the count have a length");
            let mut chunk = data[at..at + len].to_vec();
            let _ = opener.open_chunk(index, &mut chunk);
            at += len;
        }
        assert_eq!(at, data.len());
    }
    let split = data.len().min(sse::MANIFEST_SEAL_LEN);
    let _ = sse::open_manifest(&key, &data[split..], &data[..split]);
    let _ = sse::unwrap_data_key(&key, data, aad);

    let mut sealer = sse::Sealer::new(&key, prefix, aad);
    let mut sealed = Vec::new();
    sealer.update(data, &mut sealed).expect("sealing");
    sealer.finish(&mut sealed).expect("sealing");
    let layout = sse::StreamLayout::from_sealed_len(sealed.len() as u64).expect("layout");
    assert_eq!(layout.plaintext_len(), data.len() as u64);
    let opener = sse::Opener::new(&key, prefix, aad, layout);
    let mut plain = Vec::with_capacity(data.len());
    let mut at = 0usize;
    for index in 0..layout.chunks {
        let len = layout.chunk_len(index).expect("length");
        let mut chunk = sealed[at..at + len].to_vec();
        opener
            .open_chunk(index, &mut chunk)
            .expect("a sealed chunk opens");
        plain.extend_from_slice(&chunk);
        at += len;
    }
    assert_eq!(plain, data);
}

/// An object's metadata file (the store's sidecar JSON): parsed, then its segments and
/// its authenticated part list computed.
pub fn object_meta(data: &[u8]) {
    if let Ok(meta) = serde_json::from_slice::<crate::s3::meta::ObjectMeta>(data) {
        let _ = meta.segments();
        let _ = meta.data_files();
        let _ = meta.parts_count();
        if let Some(mp) = &meta.multipart {
            let _ = mp.manifest("arn:aws:s3:::bucket/key");
        }
    }
}

/// A GET's `Range` header read as S3 reads it: a single range re-encodes to a header that
/// reads back the same (and that s3s's strict parser accepts), and resolves inside any
/// object size.
pub fn range_header(data: &[u8]) {
    if let range::RangeHeader::Single(r) = range::parse(data) {
        let header = r.to_header();
        assert_eq!(
            range::parse(header.as_bytes()),
            range::RangeHeader::Single(r)
        );
        assert!(s3s::dto::Range::parse(&header).is_ok(), "{header}");
        for size in [0, 1, 2, 1000, u64::MAX] {
            if let Ok(span) = r.resolve(size) {
                assert!(span.start < span.end && span.end <= size);
                let _ = range::content_range(&span, size);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = s3s::dto::Range::parse(text);
    }
}

/// S3's XML as the CLI and the transfer client read answers, and its escaping (text
/// escaped then unescaped is the text).
pub fn s3_xml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(node) = xml::parse(&text) {
        let _ = node.text_of("Key");
        let _ = node.children_named("Contents").count();
    }
    assert_eq!(xml::unescape(&xml::escape(&text)), text);
}

/// The models a Query form is decoded against: the first byte picks one.
fn pick_model(pick: u8) -> (&'static model::Model, query::Dialect, query::TimestampRepr) {
    match pick % 3 {
        0 => (
            model::sts(),
            query::Dialect::Query,
            query::TimestampRepr::EpochSeconds,
        ),
        1 => (
            model::iam(),
            query::Dialect::Query,
            query::TimestampRepr::EpochSeconds,
        ),
        _ => (
            model::ec2(),
            query::Dialect::Ec2,
            query::TimestampRepr::Text,
        ),
    }
}

/// A Query / EC2 Query request body (STS, IAM, EC2): the form, then its decoding into the
/// operation's input per the vendored model (the first byte picks the service).
pub fn query_decode(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (m, dialect, ts) = pick_model(pick);
    if let Ok(params) = query::parse_form(body) {
        let _ = query::decode(m, dialect, ts, &params);
        for (_, v) in &params {
            let _ = query::parse_timestamp(v);
        }
    }
}

/// The XML codec the other way: the input as an operation's response JSON (the first two
/// bytes pick the service and the operation), written as the dialect's XML, which must be
/// well-formed.
pub fn query_encode(data: &[u8]) {
    let [pick, op, body @ ..] = data else {
        return;
    };
    let (m, dialect, _) = pick_model(*pick);
    let Some(action) = m
        .operations
        .keys()
        .nth(usize::from(*op) % m.operations.len().max(1))
    else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Ok(xml_bytes) = query::encode(m, dialect, action, &value, "req-1") {
        let text = String::from_utf8(xml_bytes).expect("the encoder writes UTF-8");
        assert!(xml::parse(&text).is_ok(), "not well-formed: {text}");
    }
}

/// A SigV4-signed request as text: `METHOD PATH?QUERY`, then `name: value` header lines,
/// a blank line and the body. Parsed, checked, canonicalized and verified as the endpoint
/// does before and after reading a body.
pub fn sigv4_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let (method, target) = first.split_once(' ').unwrap_or((first, "/"));
    let (path, query_str) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(&str, &[u8])> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.trim(), v.trim_start().as_bytes())
        })
        .collect();
    let req = sigv4::RequestParts {
        method,
        path,
        query: query_str,
        headers: &headers,
    };
    let _ = sigv4::is_signed(&req);
    let _ = sigv4::scope_service(&req);
    let _ = sigv4::percent_decode(path);
    for (_, v) in &headers {
        if let Ok(v) = std::str::from_utf8(v) {
            let _ = sigv4::parse_amz_date(v);
        }
    }
    if let Ok(auth) = sigv4::parse(&req) {
        let _ = auth.check(auth.time, &auth.service, &[auth.region.as_str()]);
        let _ = auth.check(0, "sts", &["us-east-1"]);
        let hash = sigv4::payload_hash(body.as_bytes());
        for rules in [sigv4::PathRules::SERVICES, sigv4::PathRules::S3] {
            let _ = auth.canonical_request(&req, rules, &hash);
            let _ = auth.verify(&req, rules, &hash, "secret");
        }
    }
}

/// The AWS CLI shorthand syntax (`Key=k,Values=a,b`) and JSON parameters.
pub fn shorthand(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = plumbing::shorthand::parse(text);
    }
}

/// A `--query` JMESPath expression (the first line) over a document (the rest, or a fixed
/// answer when the rest is not JSON), then printed in each output format.
pub fn jmespath(data: &[u8]) {
    use crate::cli::output;
    let text = String::from_utf8_lossy(data);
    let (expression, doc) = text.split_once('\n').unwrap_or((&text, ""));
    let value = serde_json::from_str::<Value>(doc).unwrap_or_else(|_| {
        serde_json::json!({"Keys": [{"KeyId": "k1", "KeyArn": "arn:1"}, {"KeyId": "k2"}],
                           "Truncated": false, "Count": 2})
    });
    if let Ok(found) = output::search(expression, &value) {
        let _ = output::json(&found);
        let _ = output::text::render(&found);
        let term = output::Terminal {
            width: 80,
            color: false,
        };
        let _ = output::table::render("ListKeys", &found, &term);
        let _ = output::yaml::render(&found);
    }
}
