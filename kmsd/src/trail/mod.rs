//! The audit trail: CloudTrail-shaped events in an append-only, hash-chained set of
//! segment files under `HOME/trail/`.
//!
//! - [`record`]: the event (`TrailRecord`) and builders for the common shapes.
//! - [`chain`]: link hashes and the byte-exact line formats (pure).
//! - [`segment`]: segment file names, listing, line splitting, reading events back.
//! - [`writer`]: `TrailWriter`, the one appender: group commit (one `write(2)` per
//!   group), durability by event class ([`SyncMode`], [`EventClass`]), space reserved
//!   ahead, rotation by size, torn-tail recovery on open, fail closed.
//! - [`retention`]: deleting segments older than 90 days, and the anchor that keeps the
//!   rest verifiable.
//! - [`validate`]: walking the chain and naming the first broken link.
//! - [`lookup`]: LookupEvents (filters, time range, paging), pure over events.
//! - [`reader`]: the read-only reader, the only part of the trail other processes use
//!   (the only public one; the rest is `pub(crate)`).
//!
//! The format is documented in docs/FORMAT.md, section "Trail".

pub(crate) mod chain;
pub(crate) mod lookup;
pub mod reader;
pub(crate) mod record;
pub(crate) mod retention;
pub(crate) mod segment;
pub(crate) mod validate;
pub(crate) mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

pub use lookup::{LookupAttribute, LookupError, LookupPage, LookupQuery};
pub use record::{IdentityType, Resource, TrailRecord, UserIdentity};
pub use validate::{validate, BreakKind, BrokenLink, Report};
pub use writer::{Health, TrailWriter, WriterStats};

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

/// When events become durable (config `[trail] sync`, recorded in every segment header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Every event is fdatasync'd before `append` returns (the only mode before
    /// version 2 headers).
    EveryEvent,
    /// State changes are fdatasync'd before `append` returns; every other event is
    /// written (`write(2)`, in the page cache, safe from a crash of kmsd) before it
    /// returns and fdatasync'd by a group sync at most this long after.
    Interval(Duration),
}

impl SyncMode {
    /// The config and header name of [`SyncMode::EveryEvent`].
    pub const EVERY_EVENT: &'static str = "every-event";
    /// The config and header name of [`SyncMode::Interval`].
    pub const INTERVAL: &'static str = "interval";
    /// The default: `interval` with 20 ms.
    pub const DEFAULT: SyncMode = SyncMode::Interval(Duration::from_millis(20));

    /// `every-event` or `interval`.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::EveryEvent => Self::EVERY_EVENT,
            SyncMode::Interval(_) => Self::INTERVAL,
        }
    }

    /// The group-sync interval (`None` for every-event).
    pub fn interval(self) -> Option<Duration> {
        match self {
            SyncMode::EveryEvent => None,
            SyncMode::Interval(d) => Some(d),
        }
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncMode::EveryEvent => f.write_str(Self::EVERY_EVENT),
            SyncMode::Interval(d) => write!(f, "{} ({} ms)", Self::INTERVAL, d.as_millis()),
        }
    }
}

/// What an event records, which decides how durable it is before `append` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// A call that changed (or may have changed) state: always fdatasync'd first.
    StateChange,
    /// A call that changed nothing (a read, a cryptographic call, any refusal):
    /// written before `append` returns; fdatasync'd as the [`SyncMode`] says.
    NoChange,
}

/// A step of the writer's I/O where a test can inject a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoStep {
    /// `write(2)` of a group of lines.
    Write,
    /// `fdatasync(2)` of the active segment.
    Sync,
    /// `fallocate(2)` reserving space ahead of the active segment's end.
    Reserve,
}

/// Called before each [`IoStep`]; an error is treated as that step failing with it.
/// For fault tests only (`None` in kmsd).
pub type FaultHook = Arc<dyn Fn(IoStep) -> std::io::Result<()> + Send + Sync>;

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
    /// When events become durable.
    pub sync: SyncMode,
    /// Fault injection (tests).
    pub fault: Option<FaultHook>,
}

impl TrailConfig {
    /// Defaults: 16 MiB segments, 90 days, the system clock, [`SyncMode::DEFAULT`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TrailConfig {
            dir: dir.into(),
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            retention: DEFAULT_RETENTION,
            clock: Arc::new(SystemClock),
            sync: SyncMode::DEFAULT,
            fault: None,
        }
    }
}

impl std::fmt::Debug for TrailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailConfig")
            .field("dir", &self.dir)
            .field("max_segment_bytes", &self.max_segment_bytes)
            .field("retention", &self.retention)
            .field("sync", &self.sync)
            .field("fault", &self.fault.is_some())
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
    /// A record contains a raw newline or is not a JSON object: it would break the
    /// line format, so it is refused before anything is written.
    #[error("refusing to append a record that is not one-line JSON object")]
    BadRecord,
    /// The writer cannot take events now (a group fdatasync failed and has not been
    /// redone yet, or no space could be reserved): refuse the request before using
    /// any key. Clears by itself once the condition does.
    #[error("trail unavailable: {0}")]
    Unavailable(String),
}

impl TrailError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrailError::Io {
            path: path.into(),
            source,
        }
    }
}
