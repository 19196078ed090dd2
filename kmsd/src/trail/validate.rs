//! Chain validation: walks every segment, oldest first, and names the first broken link
//! (segment file, line number, seq and eventID where readable, and what is wrong).
//!
//! [`Validator`] is pure (fed one segment's bytes at a time, so memory stays bounded);
//! [`validate`] is the thin file-reading walk around it.
//!
//! What it catches: an edited byte anywhere in an event line (hash mismatch or broken
//! framing), deleted lines (seq gap), reordered or duplicated lines, a segment cut short
//! (mid-line, or whole lines from its end, seen at the next segment's header), deleted
//! segments in the middle or at the start (unless retention's anchor covers them). What
//! it cannot catch alone: whole lines cut from the end of the newest segment, or a chain
//! recomputed from the edit onwards; both need a copy of a recent hash kept elsewhere.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chain::{parse_line, Hash, SegmentHeader, GENESIS};
use super::retention::{read_anchor, Anchor, ANCHOR_FILE};
use super::segment;
use super::TrailError;

/// What kind of damage the first broken link shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BreakKind {
    /// A line's contents no longer match its hash, or it no longer links to the line
    /// before it (that line was rewritten).
    EditedRecord,
    /// Sequence numbers jump: lines were removed.
    DeletedLines,
    /// Lines are out of order or duplicated.
    Reordered,
    /// A segment ends early: cut mid-line, or its last lines are gone.
    Truncated,
    /// A whole segment file is gone (not by retention).
    MissingSegment,
    /// A line is not in the trail's format at all.
    Malformed,
    /// The first kept segment does not match retention's anchor.
    BadAnchor,
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakKind::EditedRecord => "edited record",
            BreakKind::DeletedLines => "deleted lines",
            BreakKind::Reordered => "reordered lines",
            BreakKind::Truncated => "truncated segment",
            BreakKind::MissingSegment => "missing segment",
            BreakKind::Malformed => "malformed line",
            BreakKind::BadAnchor => "bad retention anchor",
        })
    }
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokenLink {
    pub segment: PathBuf,
    /// 1-based line number in `segment` (line 1 is the header).
    pub line: usize,
    pub seq: Option<u64>,
    pub event_id: Option<String>,
    pub kind: BreakKind,
    pub detail: String,
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.segment.display(), self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq}")?;
            if let Some(id) = &self.event_id {
                write!(f, ", eventID {id}")?;
            }
            write!(f, ")")?;
        } else if let Some(id) = &self.event_id {
            write!(f, " (eventID {id})")?;
        }
        write!(f, ": {}: {}", self.kind, self.detail)
    }
}

/// The outcome of a validation walk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Segments examined (up to and including the broken one).
    pub segments: usize,
    /// Events verified before the break (all of them when OK).
    pub events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The segment retention's anchor names, if older segments were deleted.
    pub anchored_at: Option<u64>,
    /// Bytes of an unfinished final line in the newest segment: a write that crashed
    /// before it was acknowledged (the writer removes it on its next start).
    pub torn_tail_bytes: u64,
    pub broken: Option<BrokenLink>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Where the previous event line was, to report a rewritten line at its own place.
#[derive(Debug, Clone)]
struct LastEvent {
    segment: PathBuf,
    line: usize,
    seq: u64,
    event_id: Option<String>,
}

/// The pure, incremental chain checker.
pub struct Validator {
    anchor: Option<Anchor>,
    expected: Option<(u64, Hash)>,
    prev_segment: Option<(u64, PathBuf, usize)>,
    last_event: Option<LastEvent>,
    report: Report,
}

fn event_id_of(line: &[u8]) -> Option<String> {
    let record: serde_json::Value = match parse_line(line) {
        Ok(p) => serde_json::from_slice(p.record).ok()?,
        Err(_) => serde_json::from_slice::<serde_json::Value>(line)
            .ok()?
            .get("record")?
            .clone(),
    };
    record.get("eventID")?.as_str().map(str::to_string)
}

impl Validator {
    pub fn new(anchor: Option<Anchor>) -> Self {
        Validator {
            report: Report {
                anchored_at: anchor.as_ref().map(|a| a.segment),
                ..Report::default()
            },
            anchor,
            expected: None,
            prev_segment: None,
            last_event: None,
        }
    }

    /// Checks one segment (`index` from its file name) continuing the chain so far.
    pub fn segment(
        &mut self,
        index: u64,
        path: &Path,
        bytes: &[u8],
        is_last: bool,
    ) -> Result<(), BrokenLink> {
        self.report.segments += 1;
        let brk = |line: usize,
                   seq: Option<u64>,
                   event_id: Option<String>,
                   kind: BreakKind,
                   detail: String| {
            BrokenLink {
                segment: path.to_path_buf(),
                line,
                seq,
                event_id,
                kind,
                detail,
            }
        };
        let split = segment::split_lines(bytes);
        let lines = split.lines;
        let Some(first) = lines.first() else {
            if is_last {
                // The header of a brand-new segment never reached the disk whole.
                self.report.torn_tail_bytes = bytes.len() as u64;
                return Ok(());
            }
            return Err(brk(
                1,
                None,
                None,
                BreakKind::Truncated,
                "segment has no complete header line".into(),
            ));
        };
        let header = SegmentHeader::parse(first).map_err(|e| {
            brk(
                1,
                None,
                None,
                BreakKind::Malformed,
                format!("bad segment header: {e}"),
            )
        })?;
        let header_prev = header
            .prev_hash()
            .map_err(|e| brk(1, None, None, BreakKind::Malformed, e.to_string()))?;
        if header.segment != index {
            return Err(brk(
                1,
                None,
                None,
                BreakKind::Malformed,
                format!(
                    "header names segment {} but the file is segment {index} (renamed?)",
                    header.segment
                ),
            ));
        }
        match (&self.prev_segment, self.expected) {
            (Some((pidx, ppath, plines)), Some((exp_seq, exp_prev))) => {
                if pidx.checked_add(1) != Some(index) {
                    return Err(brk(
                        1,
                        Some(header.first_seq),
                        None,
                        BreakKind::MissingSegment,
                        format!(
                            "segment(s) {}..={} between {} and this one are missing",
                            pidx.saturating_add(1),
                            index.saturating_sub(1),
                            ppath.display()
                        ),
                    ));
                }
                if header.first_seq > exp_seq {
                    return Err(BrokenLink {
                        segment: ppath.clone(),
                        line: plines + 1,
                        seq: Some(exp_seq),
                        event_id: None,
                        kind: BreakKind::Truncated,
                        detail: format!(
                            "segment ends before seq {exp_seq} but the next segment {} starts at seq {}: {} event(s) cut from its end",
                            path.display(),
                            header.first_seq,
                            header.first_seq - exp_seq
                        ),
                    });
                }
                if header.first_seq < exp_seq {
                    return Err(brk(
                        1,
                        Some(header.first_seq),
                        None,
                        BreakKind::Reordered,
                        format!(
                            "segment starts at seq {} but the previous segment already reached seq {}",
                            header.first_seq,
                            exp_seq.saturating_sub(1)
                        ),
                    ));
                }
                if header_prev != exp_prev {
                    return Err(self.rewritten_previous(path, 1, header.first_seq));
                }
            }
            _ => {
                let genesis = header.first_seq == 0 && header_prev == GENESIS;
                if !genesis {
                    match &self.anchor {
                        Some(a) if a.segment >= index => {}
                        Some(a) => {
                            return Err(brk(
                                1,
                                Some(header.first_seq),
                                None,
                                BreakKind::MissingSegment,
                                format!(
                                    "retention kept the chain from segment {} but the oldest segment present is {index}: segment(s) {}..={} were deleted",
                                    a.segment,
                                    a.segment,
                                    index.saturating_sub(1)
                                ),
                            ));
                        }
                        None => {
                            return Err(brk(
                                1,
                                Some(header.first_seq),
                                None,
                                BreakKind::MissingSegment,
                                format!(
                                    "the oldest segment starts at seq {}, not 0, and no retention anchor ({ANCHOR_FILE}) covers the segments before it",
                                    header.first_seq
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(a) = self.anchor.as_ref().filter(|a| a.segment == index) {
            if a.first_seq != header.first_seq || a.prev != header.prev {
                return Err(brk(
                    1,
                    Some(header.first_seq),
                    None,
                    BreakKind::BadAnchor,
                    format!(
                        "retention anchor says segment {index} starts at seq {} after {}, the header says seq {} after {}",
                        a.first_seq, a.prev, header.first_seq, header.prev
                    ),
                ));
            }
        }
        let (mut exp_seq, mut exp_prev) = (header.first_seq, header_prev);
        for (i, line) in lines.iter().enumerate().skip(1) {
            let lineno = i + 1;
            let parsed = parse_line(line).map_err(|e| {
                brk(
                    lineno,
                    None,
                    event_id_of(line),
                    BreakKind::Malformed,
                    format!("not a trail event line ({e}): edited or damaged"),
                )
            })?;
            let event_id = || event_id_of(line);
            if !parsed.hash_ok() {
                return Err(brk(
                    lineno,
                    Some(parsed.seq),
                    event_id(),
                    BreakKind::EditedRecord,
                    "stored hash does not match the line's contents: the record, seq or prev was edited".into(),
                ));
            }
            if parsed.seq > exp_seq {
                let later = lines
                    .iter()
                    .enumerate()
                    .skip(i + 1)
                    .find(|(_, l)| parse_line(l).map(|p| p.seq == exp_seq).unwrap_or(false));
                return Err(match later {
                    Some((j, _)) => brk(
                        lineno,
                        Some(parsed.seq),
                        event_id(),
                        BreakKind::Reordered,
                        format!(
                            "seq {} found where seq {exp_seq} was expected; seq {exp_seq} is at line {}",
                            parsed.seq,
                            j + 1
                        ),
                    ),
                    None => brk(
                        lineno,
                        Some(parsed.seq),
                        event_id(),
                        BreakKind::DeletedLines,
                        format!(
                            "seq jumps from {} to {}: {} event(s) deleted before this line",
                            exp_seq as i128 - 1,
                            parsed.seq,
                            parsed.seq - exp_seq
                        ),
                    ),
                });
            }
            if parsed.seq < exp_seq {
                return Err(brk(
                    lineno,
                    Some(parsed.seq),
                    event_id(),
                    BreakKind::Reordered,
                    format!(
                        "seq {} appears after seq {}: out of order or duplicated",
                        parsed.seq,
                        exp_seq.saturating_sub(1)
                    ),
                ));
            }
            if parsed.prev != exp_prev {
                return Err(self.rewritten_previous(path, lineno, parsed.seq));
            }
            exp_seq = parsed.seq.saturating_add(1);
            exp_prev = parsed.hash;
            self.report.events += 1;
            self.report.first_seq.get_or_insert(parsed.seq);
            self.report.last_seq = Some(parsed.seq);
            self.last_event = Some(LastEvent {
                segment: path.to_path_buf(),
                line: lineno,
                seq: parsed.seq,
                event_id: event_id(),
            });
        }
        if !split.tail.is_empty() {
            if is_last {
                self.report.torn_tail_bytes = split.tail.len() as u64;
            } else {
                return Err(brk(
                    lines.len() + 1,
                    Some(exp_seq),
                    None,
                    BreakKind::Truncated,
                    format!(
                        "segment ends in a partial line of {} bytes but newer segments follow: cut mid-event",
                        split.tail.len()
                    ),
                ));
            }
        }
        self.expected = Some((exp_seq, exp_prev));
        self.prev_segment = Some((index, path.to_path_buf(), lines.len()));
        Ok(())
    }

    /// A self-consistent line (or header) whose `prev` is not the previous event's
    /// hash: the previous event was rewritten with a recomputed hash. Report it there.
    fn rewritten_previous(&self, path: &Path, line: usize, seq: u64) -> BrokenLink {
        match &self.last_event {
            Some(last) => BrokenLink {
                segment: last.segment.clone(),
                line: last.line,
                seq: Some(last.seq),
                event_id: last.event_id.clone(),
                kind: BreakKind::EditedRecord,
                detail: format!(
                    "its hash is not the prev recorded by seq {seq} ({} line {line}): this event was rewritten",
                    path.display()
                ),
            },
            None => BrokenLink {
                segment: path.to_path_buf(),
                line,
                seq: Some(seq),
                event_id: None,
                kind: BreakKind::EditedRecord,
                detail: "prev does not match the hash the chain expects here".into(),
            },
        }
    }

    pub fn finish(self) -> Report {
        self.report
    }
}

/// Validates the trail in `dir`. I/O failures are errors; a broken chain is a report
/// with `broken` set.
pub fn validate(dir: &Path) -> Result<Report, TrailError> {
    // Retention may delete the oldest segment while we walk: start over then.
    let mut attempts = 0;
    loop {
        match validate_once(dir) {
            Err(TrailError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempts < 3 =>
            {
                attempts += 1;
            }
            other => return other,
        }
    }
}

fn validate_once(dir: &Path) -> Result<Report, TrailError> {
    let segments = segment::list(dir).map_err(|e| TrailError::io(dir, e))?;
    let anchor = match read_anchor(dir) {
        Ok(a) => a,
        Err(TrailError::Corrupt { path, detail }) => {
            return Ok(Report {
                broken: Some(BrokenLink {
                    segment: path,
                    line: 1,
                    seq: None,
                    event_id: None,
                    kind: BreakKind::BadAnchor,
                    detail,
                }),
                ..Report::default()
            })
        }
        Err(e) => return Err(e),
    };
    let mut v = Validator::new(anchor.clone());
    if segments.is_empty() {
        let mut report = v.finish();
        if let Some(a) = anchor {
            report.broken = Some(BrokenLink {
                segment: dir.join(segment::file_name(a.segment)),
                line: 1,
                seq: Some(a.first_seq),
                event_id: None,
                kind: BreakKind::MissingSegment,
                detail: "the retention anchor names this segment but no segment exists".into(),
            });
        }
        return Ok(report);
    }
    let count = segments.len();
    for (i, (index, path)) in segments.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| TrailError::io(path, e))?;
        if let Err(b) = v.segment(*index, path, &bytes, i + 1 == count) {
            let mut report = v.finish();
            report.broken = Some(b);
            return Ok(report);
        }
    }
    Ok(v.finish())
}
