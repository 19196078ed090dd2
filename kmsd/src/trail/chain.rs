//! The hash chain and the byte-exact line formats of a segment (pure, no I/O).
//!
//! Event line: `{"seq":N,"prev":"<64 hex>","hash":"<64 hex>","record":<record JSON>}\n`
//! with `hash = SHA-256("atrest-trail-v1\n" || seq as u64 big-endian || prev (32 bytes) ||
//! record bytes exactly as written)`. Header line (first line of every segment):
//! `{"atrestTrail":2,"segment":I,"firstSeq":S,"prev":"<64 hex>","created":"<time>",
//! "sync":"interval","syncIntervalMs":20}\n` (or `"sync":"every-event"`; version 1 headers,
//! without the sync fields, are still read).
//! See docs/FORMAT.md, section "Trail".

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::SyncMode;

/// A SHA-256 link hash.
pub type Hash = [u8; 32];

/// The `prev` of the very first event (sequence 0).
pub const GENESIS: Hash = [0u8; 32];

/// Domain separation for the link hash.
const DOMAIN: &[u8] = b"atrest-trail-v1\n";

/// The hash linking event `seq` (whose record bytes are `record`) to `prev`.
pub fn link_hash(seq: u64, prev: &Hash, record: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(record);
    h.finalize().into()
}

/// Encodes an event line, trailing newline included.
#[cfg(any(test, feature = "testing"))]
pub fn encode_line(seq: u64, prev: &Hash, hash: &Hash, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line_len(seq, record.len()));
    encode_line_into(&mut out, seq, prev, hash, record);
    out
}

/// The bytes before `seq`'s digits, between the fields, and after the record.
const LINE_OPEN: &[u8] = b"{\"seq\":";
const LINE_PREV: &[u8] = b",\"prev\":\"";
const LINE_HASH: &[u8] = b"\",\"hash\":\"";
const LINE_RECORD: &[u8] = b"\",\"record\":";
const LINE_CLOSE: &[u8] = b"}\n";

/// The length of the line [`encode_line`] makes for `seq` and a record of `record_len`
/// bytes.
pub fn line_len(seq: u64, record_len: usize) -> usize {
    let digits = seq.checked_ilog10().map_or(1, |d| d as usize + 1);
    LINE_OPEN.len()
        + digits
        + LINE_PREV.len()
        + 64
        + LINE_HASH.len()
        + 64
        + LINE_RECORD.len()
        + record_len
        + LINE_CLOSE.len()
}

/// Appends the line [`encode_line`] makes to `out` (the writer builds a whole group of
/// lines in one buffer this way, for one `write(2)`).
pub fn encode_line_into(out: &mut Vec<u8>, seq: u64, prev: &Hash, hash: &Hash, record: &[u8]) {
    let mut hex_buf = [0u8; 64];
    out.reserve(line_len(seq, record.len()));
    out.extend_from_slice(LINE_OPEN);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = seq;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(LINE_PREV);
    // Encoding 32 bytes into exactly 64 cannot fail.
    let _ = hex::encode_to_slice(prev, &mut hex_buf);
    out.extend_from_slice(&hex_buf);
    out.extend_from_slice(LINE_HASH);
    let _ = hex::encode_to_slice(hash, &mut hex_buf);
    out.extend_from_slice(&hex_buf);
    out.extend_from_slice(LINE_RECORD);
    out.extend_from_slice(record);
    out.extend_from_slice(LINE_CLOSE);
}

/// Chains `record` after `prev` as event `seq`: returns (hash, line).
#[cfg(any(test, feature = "testing"))]
pub fn chain_line(seq: u64, prev: &Hash, record: &[u8]) -> (Hash, Vec<u8>) {
    let hash = link_hash(seq, prev, record);
    (hash, encode_line(seq, prev, &hash, record))
}

/// An event line split into its parts; `record` borrows the exact written bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine<'a> {
    pub seq: u64,
    pub prev: Hash,
    pub hash: Hash,
    pub record: &'a [u8],
}

impl EventLine<'_> {
    /// Whether the stored hash matches the contents.
    pub fn hash_ok(&self) -> bool {
        link_hash(self.seq, &self.prev, self.record) == self.hash
    }
}

/// Why a line is not a well-formed event line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line does not start with {{\"seq\":")]
    NoSeq,
    #[error("seq is not a canonical unsigned integer")]
    BadSeq,
    #[error("missing or malformed \"{0}\" field")]
    BadField(&'static str),
    #[error("record is not a JSON object closed by the line's final brace")]
    BadRecord,
}

fn take_prefix<'a>(s: &'a [u8], p: &[u8]) -> Option<&'a [u8]> {
    s.strip_prefix(p)
}

fn take_hash<'a>(s: &'a [u8], field: &'static str) -> Result<(Hash, &'a [u8]), LineError> {
    let hex_part = s.get(..64).ok_or(LineError::BadField(field))?;
    // Only lowercase hex is canonical: anything else is an edit.
    if !hex_part
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err(LineError::BadField(field));
    }
    let mut h = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut h).map_err(|_| LineError::BadField(field))?;
    Ok((h, s.get(64..).unwrap_or_default()))
}

/// Parses an event line (without its newline). Strict: only the exact bytes
/// [`encode_line`] produces are accepted, so any framing edit is caught here.
pub fn parse_line(line: &[u8]) -> Result<EventLine<'_>, LineError> {
    let rest = take_prefix(line, b"{\"seq\":").ok_or(LineError::NoSeq)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, rest) = rest.split_at(digits);
    if num.is_empty() || (num.len() > 1 && num.first() == Some(&b'0')) {
        return Err(LineError::BadSeq);
    }
    let seq: u64 = std::str::from_utf8(num)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(LineError::BadSeq)?;
    let rest = take_prefix(rest, b",\"prev\":\"").ok_or(LineError::BadField("prev"))?;
    let (prev, rest) = take_hash(rest, "prev")?;
    let rest = take_prefix(rest, b"\",\"hash\":\"").ok_or(LineError::BadField("hash"))?;
    let (hash, rest) = take_hash(rest, "hash")?;
    let rest = take_prefix(rest, b"\",\"record\":").ok_or(LineError::BadField("record"))?;
    let record = rest.strip_suffix(b"}").ok_or(LineError::BadRecord)?;
    if record.first() != Some(&b'{') || record.last() != Some(&b'}') {
        return Err(LineError::BadRecord);
    }
    Ok(EventLine {
        seq,
        prev,
        hash,
        record,
    })
}

/// The first line of every segment: where its part of the chain starts, and (from
/// version 2) the durability every event in the segment was written with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentHeader {
    /// Format version: 2 (1 for segments written before durability classes; see
    /// docs/FORMAT.md).
    pub atrest_trail: u32,
    /// The segment's index, equal to the number in its file name.
    pub segment: u64,
    /// The seq of the segment's first event.
    pub first_seq: u64,
    /// Hex hash of the event before `first_seq` (all zeros for seq 0).
    pub prev: String,
    #[serde(with = "super::record::event_time")]
    pub created: OffsetDateTime,
    /// `"interval"` or `"every-event"` (version 2; absent in version 1, whose
    /// segments were all written every-event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// With `"sync":"interval"`: the longest time, in milliseconds, between writing an
    /// event that changes nothing and its group fdatasync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval_ms: Option<u64>,
}

/// The header format version atrest writes.
pub const HEADER_VERSION: u32 = 2;
/// The first header version, read but no longer written.
pub const HEADER_VERSION_1: u32 = 1;

/// Why a segment's header line is not one this build reads.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("unsupported trail version {0}")]
    Version(u32),
    #[error("bad prev: {0}")]
    Prev(#[source] hex::FromHexError),
    #[error("a version 1 header has no sync fields")]
    SyncInV1,
    #[error("bad sync fields: sync {sync:?}, syncIntervalMs {ms:?} (want \"every-event\", or \"interval\" with a positive syncIntervalMs)")]
    Sync {
        sync: Option<String>,
        ms: Option<u64>,
    },
}

impl SegmentHeader {
    pub fn new(
        segment: u64,
        first_seq: u64,
        prev: &Hash,
        created: OffsetDateTime,
        sync: SyncMode,
    ) -> Self {
        let (name, interval) = match sync {
            SyncMode::EveryEvent => (SyncMode::EVERY_EVENT, None),
            SyncMode::Interval(d) => (
                SyncMode::INTERVAL,
                Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ),
        };
        SegmentHeader {
            atrest_trail: HEADER_VERSION,
            segment,
            first_seq,
            prev: hex::encode(prev),
            created,
            sync: Some(name.to_string()),
            sync_interval_ms: interval,
        }
    }

    /// The header line, trailing newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses a header line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Self, HeaderError> {
        let h: SegmentHeader = serde_json::from_slice(line)?;
        match h.atrest_trail {
            HEADER_VERSION_1 | HEADER_VERSION => {}
            v => return Err(HeaderError::Version(v)),
        }
        h.prev_hash()?;
        h.sync_mode()?;
        Ok(h)
    }

    /// `prev` decoded.
    pub fn prev_hash(&self) -> Result<Hash, HeaderError> {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&self.prev, &mut h).map_err(HeaderError::Prev)?;
        Ok(h)
    }

    /// The durability the segment's events were written with.
    pub fn sync_mode(&self) -> Result<SyncMode, HeaderError> {
        match (
            self.atrest_trail,
            self.sync.as_deref(),
            self.sync_interval_ms,
        ) {
            (HEADER_VERSION_1, None, None) => Ok(SyncMode::EveryEvent),
            (HEADER_VERSION_1, _, _) => Err(HeaderError::SyncInV1),
            (_, Some(SyncMode::EVERY_EVENT), None) => Ok(SyncMode::EveryEvent),
            (_, Some(SyncMode::INTERVAL), Some(ms)) if ms > 0 => {
                Ok(SyncMode::Interval(std::time::Duration::from_millis(ms)))
            }
            (_, sync, ms) => Err(HeaderError::Sync {
                sync: sync.map(str::to_string),
                ms,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn line_roundtrips_and_hash_is_checked() {
        let rec = br#"{"eventName":"Decrypt"}"#;
        let (h, line) = chain_line(7, &GENESIS, rec);
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        let p = parse_line(body).unwrap();
        assert_eq!(p.seq, 7);
        assert_eq!(p.hash, h);
        assert_eq!(p.record, rec);
        assert!(p.hash_ok());
        let edited = String::from_utf8(body.to_vec())
            .unwrap()
            .replace("Decrypt", "Encrypt");
        assert!(!parse_line(edited.as_bytes()).unwrap().hash_ok());
        // The seq is hashed too.
        let reseq = String::from_utf8(body.to_vec())
            .unwrap()
            .replace("\"seq\":7", "\"seq\":8");
        assert!(!parse_line(reseq.as_bytes()).unwrap().hash_ok());
    }

    #[test]
    fn line_len_is_exact() {
        for seq in [0, 7, 9, 10, 99, 100, 12345, u64::MAX] {
            for rec in [&b"{}"[..], br#"{"eventName":"Decrypt"}"#] {
                let (_, line) = chain_line(seq, &[3u8; 32], rec);
                assert_eq!(line.len(), line_len(seq, rec.len()), "seq {seq}");
                let p = parse_line(&line[..line.len() - 1]).unwrap();
                assert_eq!(p.seq, seq);
            }
        }
    }

    #[test]
    fn non_canonical_lines_are_rejected() {
        let (_, line) = chain_line(7, &GENESIS, b"{}");
        let s = String::from_utf8(line[..line.len() - 1].to_vec()).unwrap();
        assert_eq!(
            parse_line(s.replace("\"seq\":7", "\"seq\":07").as_bytes()),
            Err(LineError::BadSeq)
        );
        assert!(parse_line(s.replace("\"prev\":\"00", "\"prev\":\"0A").as_bytes()).is_err());
        assert!(parse_line(&s.as_bytes()[..s.len() - 1]).is_err());
        assert!(parse_line(b"").is_err());
        assert!(parse_line(b"{\"seq\":99999999999999999999999").is_err());
    }

    #[test]
    fn header_roundtrips() {
        let t = datetime!(2026-11-23 10:00:00 UTC);
        let interval = SyncMode::Interval(std::time::Duration::from_millis(20));
        for sync in [SyncMode::EveryEvent, interval] {
            let h = SegmentHeader::new(3, 42, &[7u8; 32], t, sync);
            let enc = h.encode();
            assert_eq!(SegmentHeader::parse(&enc[..enc.len() - 1]).unwrap(), h);
            assert_eq!(h.sync_mode().unwrap(), sync);
        }
        let enc = SegmentHeader::new(3, 42, &[7u8; 32], t, interval).encode();
        assert_eq!(
            std::str::from_utf8(&enc).unwrap(),
            format!(
                "{{\"atrestTrail\":2,\"segment\":3,\"firstSeq\":42,\"prev\":\"{}\",\"created\":\"2026-11-23T10:00:00Z\",\"sync\":\"interval\",\"syncIntervalMs\":20}}\n",
                "07".repeat(32)
            )
        );
        assert!(SegmentHeader::parse(b"{\"seq\":1}").is_err());
        // Version 1 (no sync fields) is every-event; sync fields need version 2.
        let zeros = "0".repeat(64);
        let v1 = format!(
            r#"{{"atrestTrail":1,"segment":1,"firstSeq":0,"prev":"{zeros}","created":"2026-11-23T10:00:00Z"}}"#
        );
        assert_eq!(
            SegmentHeader::parse(v1.as_bytes())
                .unwrap()
                .sync_mode()
                .unwrap(),
            SyncMode::EveryEvent
        );
        for bad in [
            v1.replace("\"atrestTrail\":1", "\"atrestTrail\":2"),
            v1.replace('}', r#","sync":"interval","syncIntervalMs":20}"#),
            v1.replace("\"atrestTrail\":1", "\"atrestTrail\":2")
                .replace('}', r#","sync":"interval"}"#),
            v1.replace("\"atrestTrail\":1", "\"atrestTrail\":2")
                .replace('}', r#","sync":"interval","syncIntervalMs":0}"#),
            v1.replace("\"atrestTrail\":1", "\"atrestTrail\":2")
                .replace('}', r#","sync":"every-event","syncIntervalMs":20}"#),
            v1.replace("\"atrestTrail\":1", "\"atrestTrail\":3"),
        ] {
            assert!(SegmentHeader::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
