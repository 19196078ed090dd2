//! Segment files: names, listing, and splitting their bytes into lines.
//!
//! A segment is `segment-NNNNNNNN.jsonl` (8+ decimal digits, starting at 1) in the trail
//! directory: a header line, then event lines (see [`super::chain`]).

use std::io;
use std::path::{Path, PathBuf};

use super::chain::{parse_line, SegmentHeader};
use super::record::TrailRecord;

const PREFIX: &str = "segment-";
const SUFFIX: &str = ".jsonl";

/// The file name of segment `index`.
pub fn file_name(index: u64) -> String {
    format!("{PREFIX}{index:08}{SUFFIX}")
}

/// The index in a segment file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first. A missing directory has none.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(idx) = entry.file_name().to_str().and_then(parse_file_name) {
            out.push((idx, entry.path()));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// The header of the newest segment in `dir` (which says the sync mode in force when
/// it was started), reading only its first line; `None` for an empty trail.
pub fn newest_header(dir: &Path) -> io::Result<Option<SegmentHeader>> {
    use std::io::{BufRead, Read};
    let Some((_, path)) = list(dir)?.pop() else {
        return Ok(None);
    };
    let mut line = Vec::new();
    // A header is a few hundred bytes; never read more than 4 KiB looking for it.
    std::io::BufReader::new(std::fs::File::open(&path)?.take(4096)).read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    SegmentHeader::parse(&line).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// A segment's bytes split into complete lines (newline stripped) and the bytes after
/// the last newline (a torn, never-acknowledged write if non-empty).
pub struct Lines<'a> {
    pub lines: Vec<&'a [u8]>,
    pub tail: &'a [u8],
}

pub fn split_lines(bytes: &[u8]) -> Lines<'_> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // `split` always yields a final piece: the bytes after the last newline.
    let tail = lines.pop().unwrap_or_default();
    Lines { lines, tail }
}

/// Where crash recovery cuts a segment: just after the last newline that precedes the
/// first NUL byte (a crash can leave zero-filled blocks, never part of a line atrest
/// writes) and any partial final line. Everything before the cut is kept.
pub fn recovery_cut(bytes: &[u8]) -> usize {
    let limit = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    bytes
        .get(..limit)
        .and_then(|b| b.iter().rposition(|c| *c == b'\n'))
        .map_or(0, |p| p + 1)
}

/// One event as read back from the trail: its position in the chain, the record, and
/// the record's exact bytes as written (what LookupEvents returns as `CloudTrailEvent`).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub record: TrailRecord,
    pub raw: String,
}

/// Parses the events of one segment's bytes. Lines that are not well-formed events are
/// skipped with a warning: reading is not validation (`validate` reports those).
pub fn events_of(path: &Path, bytes: &[u8]) -> Vec<StoredEvent> {
    let split = split_lines(bytes);
    let mut out = Vec::with_capacity(split.lines.len());
    for (i, line) in split.lines.iter().enumerate() {
        if i == 0 && SegmentHeader::parse(line).is_ok() {
            continue;
        }
        let parsed = match parse_line(line) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(segment = %path.display(), line = i + 1, "skipping malformed trail line: {e}");
                continue;
            }
        };
        let raw = match std::str::from_utf8(parsed.record) {
            Ok(s) => s.to_string(),
            Err(_) => continue,
        };
        match serde_json::from_str::<TrailRecord>(&raw) {
            Ok(record) => out.push(StoredEvent {
                seq: parsed.seq,
                record,
                raw,
            }),
            Err(e) => {
                tracing::warn!(segment = %path.display(), line = i + 1, "skipping unreadable trail record: {e}");
            }
        }
    }
    out
}

/// Reads every event in `dir`, in chain order (oldest first).
pub fn read_all(dir: &Path) -> io::Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for (_, path) in list(dir)? {
        match std::fs::read(&path) {
            Ok(bytes) => out.extend(events_of(&path, &bytes)),
            // Retention may delete an old segment between listing and reading.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        assert_eq!(file_name(1), "segment-00000001.jsonl");
        assert_eq!(parse_file_name("segment-00000001.jsonl"), Some(1));
        assert_eq!(parse_file_name("segment-123456789.jsonl"), Some(123456789));
        assert_eq!(parse_file_name("segment-1.jsonl"), None);
        assert_eq!(parse_file_name("segment-0000000a.jsonl"), None);
        assert_eq!(parse_file_name("anchor.json"), None);
    }

    #[test]
    fn split_and_cut() {
        let s = split_lines(b"a\nb\npartial");
        assert_eq!(s.lines, vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(s.tail, b"partial");
        assert_eq!(recovery_cut(b"a\nb\npartial"), 4);
        assert_eq!(recovery_cut(b"a\nb\n"), 4);
        assert_eq!(recovery_cut(b"a\n\0\0\0b\n"), 2);
        assert_eq!(recovery_cut(b"torn"), 0);
        assert_eq!(recovery_cut(b""), 0);
    }
}
