//! The hash chain and the byte-exact line formats of a segment (pure, no I/O).
//!
//! Event line: `{"seq":N,"prev":"<64 hex>","hash":"<64 hex>","record":<record JSON>}\n`
//! with `hash = SHA-256("atrest-trail-v1\n" || seq as u64 big-endian || prev (32 bytes) ||
//! record bytes exactly as written)`. Header line (first line of every segment):
//! `{"atrestTrail":1,"segment":I,"firstSeq":S,"prev":"<64 hex>","created":"<time>"}\n`.
//! See docs/FORMAT.md, section "Trail".

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

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
pub fn encode_line(seq: u64, prev: &Hash, hash: &Hash, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 180);
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(hex::encode(prev).as_bytes());
    out.extend_from_slice(b"\",\"hash\":\"");
    out.extend_from_slice(hex::encode(hash).as_bytes());
    out.extend_from_slice(b"\",\"record\":");
    out.extend_from_slice(record);
    out.extend_from_slice(b"}\n");
    out
}

/// Chains `record` after `prev` as event `seq`: returns (hash, line).
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

/// The first line of every segment: where its part of the chain starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentHeader {
    /// Format version, 1.
    pub atrest_trail: u32,
    /// The segment's index, equal to the number in its file name.
    pub segment: u64,
    /// The seq of the segment's first event.
    pub first_seq: u64,
    /// Hex hash of the event before `first_seq` (all zeros for seq 0).
    pub prev: String,
    #[serde(with = "super::record::event_time")]
    pub created: OffsetDateTime,
}

/// The header format version atrest writes.
pub const HEADER_VERSION: u32 = 1;

impl SegmentHeader {
    pub fn new(segment: u64, first_seq: u64, prev: &Hash, created: OffsetDateTime) -> Self {
        SegmentHeader {
            atrest_trail: HEADER_VERSION,
            segment,
            first_seq,
            prev: hex::encode(prev),
            created,
        }
    }

    /// The header line, trailing newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses a header line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let h: SegmentHeader = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        if h.atrest_trail != HEADER_VERSION {
            return Err(format!("unsupported trail version {}", h.atrest_trail));
        }
        h.prev_hash()?;
        Ok(h)
    }

    /// `prev` decoded.
    pub fn prev_hash(&self) -> Result<Hash, String> {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&self.prev, &mut h).map_err(|e| format!("bad prev: {e}"))?;
        Ok(h)
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
        let h = SegmentHeader::new(3, 42, &[7u8; 32], datetime!(2026-11-23 10:00:00 UTC));
        let enc = h.encode();
        assert_eq!(SegmentHeader::parse(&enc[..enc.len() - 1]).unwrap(), h);
        assert!(SegmentHeader::parse(b"{\"seq\":1}").is_err());
    }
}
