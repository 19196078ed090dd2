//! Retention: segments whose newest event is older than the retention period are
//! deleted, oldest first, never the newest segment. Before deleting, the header of the
//! first segment kept is recorded in `anchor.json`, so validation knows where the
//! remaining chain legitimately starts (and that nothing at or after it was removed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::chain::{parse_line, Hash, SegmentHeader};
use super::record::TrailRecord;
use super::segment;
use super::TrailError;
use plumbing::durable;

/// The anchor file's name in the trail directory.
pub const ANCHOR_FILE: &str = "anchor.json";

/// "Segments before `segment` were removed by retention; `segment` starts the chain at
/// `firstSeq` after `prev`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Anchor {
    pub segment: u64,
    pub first_seq: u64,
    pub prev: String,
    #[serde(with = "super::record::event_time")]
    pub updated: OffsetDateTime,
}

impl Anchor {
    pub fn prev_hash(&self) -> Result<Hash, TrailError> {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&self.prev, &mut h).map_err(|e| TrailError::Corrupt {
            path: PathBuf::from(ANCHOR_FILE),
            detail: format!("bad prev: {e}"),
        })?;
        Ok(h)
    }
}

/// Reads `anchor.json` if present.
pub fn read_anchor(dir: &Path) -> Result<Option<Anchor>, TrailError> {
    let path = dir.join(ANCHOR_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| TrailError::Corrupt {
                path,
                detail: format!("unreadable anchor: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrailError::io(path, e)),
    }
}

/// What a retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted: Vec<PathBuf>,
}

/// The newest moment a segment covers: its last event's time, or its creation time if
/// it holds no event.
pub fn newest_time(bytes: &[u8]) -> Option<OffsetDateTime> {
    let lines = segment::split_lines(bytes).lines;
    let last = lines.last()?;
    if lines.len() == 1 {
        return SegmentHeader::parse(last).ok().map(|h| h.created);
    }
    event_time(last)
}

/// The time of the event on one chained trail line (`None` if it is not one).
fn event_time(line: &[u8]) -> Option<OffsetDateTime> {
    let parsed = parse_line(line).ok()?;
    serde_json::from_slice::<TrailRecord>(parsed.record)
        .ok()
        .map(|r| r.event_time)
}

/// How much of a segment's end [`segment_newest_time`] reads first.
const TAIL_WINDOW: u64 = 64 << 10;

/// [`newest_time`] of the segment at `path`, reading only its end: the last complete
/// line lies in the final [`TAIL_WINDOW`] bytes unless one record is longer, and then
/// the window doubles, up to the whole file. Retention runs at every rotation (every
/// 16 MiB of trail at the default size); reading the whole oldest segment each time
/// was 2% of kmsd's CPU under kmsd-bench's 8 Decrypt clients.
pub fn segment_newest_time(path: &Path) -> std::io::Result<Option<OffsetDateTime>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut window = TAIL_WINDOW.min(len);
    loop {
        let start = len - window;
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        (&mut file).take(window).read_to_end(&mut buf)?;
        if start == 0 {
            return Ok(newest_time(&buf));
        }
        // The window starts inside a line: whole lines follow its first newline (and
        // the header, which starts the file, is not among them).
        let whole = buf
            .iter()
            .position(|b| *b == b'\n')
            .and_then(|nl| buf.get(nl + 1..))
            .unwrap_or_default();
        if let Some(last) = segment::split_lines(whole).lines.last() {
            return Ok(event_time(last));
        }
        window = window.saturating_mul(2).min(len);
    }
}

/// Which leading segments are expired (pure): the longest prefix, never the last,
/// whose newest time is before `cutoff`. A segment whose time is unreadable stops the
/// prefix: retention never deletes what it cannot date.
pub fn expired_prefix(newest: &[Option<OffsetDateTime>], cutoff: OffsetDateTime) -> usize {
    let candidates = newest.len().saturating_sub(1);
    newest
        .iter()
        .take(candidates)
        .take_while(|t| matches!(t, Some(t) if *t < cutoff))
        .count()
}

/// Applies retention to `dir` at time `now`.
pub fn apply(
    dir: &Path,
    now: OffsetDateTime,
    keep: Duration,
) -> Result<RetentionReport, TrailError> {
    let segments = segment::list(dir).map_err(|e| TrailError::io(dir, e))?;
    if segments.len() < 2 {
        return Ok(RetentionReport::default());
    }
    let cutoff = now - keep;
    let mut newest = Vec::with_capacity(segments.len());
    for (_, path) in &segments {
        let t = segment_newest_time(path).map_err(|e| TrailError::io(path, e))?;
        let expired = matches!(t, Some(t) if t < cutoff);
        newest.push(t);
        if !expired {
            break;
        }
    }
    // Segments not read are not expired; pad so the pure rule sees every segment.
    newest.resize(segments.len(), None);
    let n = expired_prefix(&newest, cutoff);
    let Some((_, keep_path)) = segments.get(n).filter(|_| n > 0) else {
        return Ok(RetentionReport::default());
    };
    let keep_bytes = std::fs::read(keep_path).map_err(|e| TrailError::io(keep_path, e))?;
    let first_line = segment::split_lines(&keep_bytes)
        .lines
        .first()
        .copied()
        .unwrap_or_default();
    let header = SegmentHeader::parse(first_line).map_err(|e| TrailError::Corrupt {
        path: keep_path.clone(),
        detail: format!("line 1: bad header: {e}"),
    })?;
    let anchor = Anchor {
        segment: header.segment,
        first_seq: header.first_seq,
        prev: header.prev,
        updated: now,
    };
    let anchor_bytes = serde_json::to_vec_pretty(&anchor)?;
    // Anchor first: a crash mid-deletion leaves only segments the anchor already
    // declares removable.
    let anchor_path = dir.join(ANCHOR_FILE);
    durable::write_atomic(&anchor_path, &anchor_bytes, 0o600)
        .map_err(|e| TrailError::io(&anchor_path, e))?;
    let mut report = RetentionReport::default();
    for (_, path) in segments.iter().take(n) {
        std::fs::remove_file(path).map_err(|e| TrailError::io(path, e))?;
        tracing::info!(segment = %path.display(), "trail segment past retention deleted");
        report.deleted.push(path.clone());
    }
    durable::sync_dir(dir).map_err(|e| TrailError::io(dir, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expired_prefix_keeps_the_last_and_stops_at_the_first_young_segment() {
        let old = Some(datetime!(2026-01-01 00:00:00 UTC));
        let young = Some(datetime!(2026-11-01 00:00:00 UTC));
        let cutoff = datetime!(2026-06-01 00:00:00 UTC);
        assert_eq!(expired_prefix(&[old, old, old], cutoff), 2);
        assert_eq!(expired_prefix(&[old, young, old], cutoff), 1);
        assert_eq!(expired_prefix(&[young, old], cutoff), 0);
        assert_eq!(expired_prefix(&[None, old], cutoff), 0);
        assert_eq!(expired_prefix(&[old], cutoff), 0);
        assert_eq!(expired_prefix(&[], cutoff), 0);
    }
}
