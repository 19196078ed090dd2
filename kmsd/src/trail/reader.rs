//! The read-only trail reader: everything a process other than kmsd may do with
//! `HOME/trail/`, and all of the trail that kmsd exports.
//!
//! kmsd is the trail's only writer (under its lock); readers need no lock: segments are
//! append-only, a line still being written is ignored until it is complete, and retention
//! only deletes whole segments (a reader that meets a vanished segment goes on). What a
//! reader can do:
//!
//! - [`TrailReader::lookup`]: CloudTrail LookupEvents over the files (`atrest cloudtrail
//!   lookup-events` when kmsd is not running; kmsd answers it itself otherwise);
//! - [`TrailReader::validate`]: walk the hash chain and name the first broken link
//!   (`atrest cloudtrail validate-logs`);
//! - [`TrailReader::segments`] and [`events_of`]: follow the trail as it grows (the volume
//!   service watches key changes this way);
//! - [`TrailReader::newest_sync_mode`]: the durability the trail is written with
//!   (`atrest status` when kmsd does not answer).
//!
//! The format is documented in docs/FORMAT.md, section "Trail".

use std::io;
use std::path::{Path, PathBuf};

pub use super::lookup::{
    check, LookupAttribute, LookupError, LookupEvent, LookupPage, LookupQuery, LookupResource,
    MAX_RESULTS_LIMIT,
};
pub use super::record::{
    AdditionalEventData, IdentityType, Resource, TrailRecord, UserIdentity, EC2_SOURCE, KMS_SOURCE,
    S3_SOURCE,
};
pub use super::segment::StoredEvent;
pub use super::validate::{BreakKind, BrokenLink, Report};
pub use super::{SyncMode, TrailError};

/// The trail in one directory (`Layout::trail_dir()`), read-only.
#[derive(Debug, Clone)]
pub struct TrailReader {
    dir: PathBuf,
}

impl TrailReader {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TrailReader { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a trail was ever written here.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// LookupEvents over the files: newest first, one page (a missing trail has no events).
    pub fn lookup(&self, q: &LookupQuery) -> Result<LookupPage, LookupError> {
        super::lookup::lookup_dir(&self.dir, q)
    }

    /// Walks every segment's hash chain. I/O failures are errors; a broken chain is a
    /// report with `broken` set.
    pub fn validate(&self) -> Result<Report, TrailError> {
        super::validate::validate(&self.dir)
    }

    /// The sync mode the newest segment's header states (the one in force when kmsd
    /// last started); `None` for an empty trail.
    pub fn newest_sync_mode(&self) -> io::Result<Option<SyncMode>> {
        let Some(h) = super::segment::newest_header(&self.dir)? else {
            return Ok(None);
        };
        h.sync_mode()
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The segments, oldest first: `(index, path)`.
    pub fn segments(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        super::segment::list(&self.dir)
    }
}

/// The events in `bytes`, a whole segment or the complete lines appended to it since an
/// earlier read (a header line is skipped; an unreadable record is logged and skipped).
pub fn events_of(path: &Path, bytes: &[u8]) -> Vec<StoredEvent> {
    super::segment::events_of(path, bytes)
}

/// The file name of segment `index` (`segment-00000001.jsonl`).
pub fn segment_file_name(index: u64) -> String {
    super::segment::file_name(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_trail_reads_as_empty() {
        let d = tempfile::tempdir().unwrap();
        let r = TrailReader::new(d.path().join("trail"));
        assert!(!r.exists());
        assert!(r.lookup(&LookupQuery::default()).unwrap().events.is_empty());
        assert_eq!(segment_file_name(1), "segment-00000001.jsonl");
    }
}
