//! The audit trail: CloudTrail-shaped events in an append-only, hash-chained set of
//! segment files under `HOME/trail/`.
//!
//! - [`record`]: the event (`TrailRecord`) and builders for the common shapes.
//! - [`chain`]: link hashes and the byte-exact line formats (pure).
//! - [`segment`]: segment file names, listing, line splitting, reading events back.
//! - [`writer`]: `TrailWriter`, the one appender: group commit, fdatasync before
//!   `append` returns, rotation by size, torn-tail recovery on open, fail closed.
//! - [`retention`]: deleting segments older than 90 days, and the anchor that keeps the
//!   rest verifiable.
//! - [`validate`]: walking the chain and naming the first broken link.
//! - [`lookup`]: LookupEvents (filters, time range, paging), pure over events.
//! - [`reader`]: the read-only reader, the only part of the trail other processes use.
//!
//! The format is documented in docs/FORMAT.md, section "Trail".

pub mod chain;
pub mod lookup;
pub mod reader;
pub mod record;
pub mod retention;
pub mod segment;
pub mod validate;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

pub use lookup::{LookupAttribute, LookupError, LookupPage, LookupQuery};
pub use record::{IdentityType, Resource, TrailRecord, UserIdentity};
pub use validate::{validate, BreakKind, BrokenLink, Report};
pub use writer::{TrailWriter, WriterStats};

/// Default segment size before rotation.
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// How long events are kept (CloudTrail's event history keeps 90 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// The time source, injectable so rotation and retention are testable.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Where and how the trail is written.
#[derive(Clone)]
pub struct TrailConfig {
    /// The trail directory (`Layout::trail_dir()`).
    pub dir: PathBuf,
    /// A segment is closed and a new one started before it would exceed this size
    /// (a single event larger than this gets a segment of its own).
    pub max_segment_bytes: u64,
    /// Segments whose newest event is older than this are deleted by retention.
    pub retention: Duration,
    pub clock: Arc<dyn Clock>,
}

impl TrailConfig {
    /// Defaults: 16 MiB segments, 90 days, the system clock.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TrailConfig {
            dir: dir.into(),
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            retention: DEFAULT_RETENTION,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for TrailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailConfig")
            .field("dir", &self.dir)
            .field("max_segment_bytes", &self.max_segment_bytes)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// Errors of the trail's I/O layer.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error("trail I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode trail record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("trail directory {0} is locked by another writer")]
    Locked(PathBuf),
    #[error("trail is corrupt at {path}: {detail} (run `atrest cloudtrail validate-logs`)")]
    Corrupt { path: PathBuf, detail: String },
    /// An earlier write or fsync failed: the writer refuses every later append rather
    /// than continue a chain whose tail it can no longer vouch for. Reopen to recover.
    #[error("trail writer stopped after an earlier failure: {0}")]
    Failed(String),
}

impl TrailError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrailError::Io {
            path: path.into(),
            source,
        }
    }
}
