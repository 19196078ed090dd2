//! The trail's single writer: group commit, durability by event class, space reserved
//! ahead, fail closed.
//!
//! Appenders serialize their record, queue it and wait. Whoever finds no write in
//! progress becomes the leader: it takes the whole queue, chains every line into one
//! buffer and writes it with one `write(2)`. If any event of the group is a
//! [`EventClass::StateChange`] (or the mode is [`SyncMode::EveryEvent`]) the leader
//! fdatasyncs before waking the group; otherwise the group is acknowledged once
//! written (it survives a crash of kmsd: it is in the kernel's page cache) and the
//! syncer thread fdatasyncs it at most the sync interval after the first unsynced write
//! (it starts the fdatasync that long minus the recent fdatasync time after it). Records
//! queued while a leader writes form the next group, so one `write(2)` and at most one
//! fdatasync serve many requests. Their callers park, each on its own thread handle, and
//! the leader unparks exactly those whose records it wrote (a caller that sees its
//! ticket done takes no lock again); in interval mode the leader goes on to write the
//! group that queued meanwhile (a few rounds at most) instead of waking one of its
//! callers to do it. Waking every waiter on one condition variable instead made them
//! all contend for the queue's lock: with 64 clients about one futex call per request,
//! five times what this costs.
//! In every-event mode a group is first gathered, briefly and bounded by the last
//! fdatasync's duration, until the callers of the previous group have queued again, so
//! that each fdatasync serves nearly every client rather than alternately few and many.
//! The first of them parks with that bound as its timeout, the others as usual, and
//! whichever caller completes the group leads it at once: no thread waits to be woken
//! just to start the write (a gathering leader woken by the last arrival cost a futex
//! wake, a context switch and its scheduling delay on every group).
//!
//! Admission ([`TrailWriter::admit`], one atomic load) says before a request uses any key
//! whether its record can be written:
//! - **space** is reserved ahead of the active segment's end with
//!   `fallocate(FALLOC_FL_KEEP_SIZE)` (up to 8 MiB, never more than half the free space),
//!   topped up by the syncer thread; while less than 64 KiB is reserved, admission
//!   refuses, until 128 KiB are (so that the next record does not refuse again). On file systems without `fallocate`, free space is
//!   polled (`statvfs`) instead.
//! - **a failed group fdatasync** refuses admission until the syncer has rewritten the
//!   unsynced bytes (kept in memory: after a failed fsync the kernel may have dropped
//!   its copy) and an fdatasync of them succeeded; it retries every 100 ms.
//! - **a failed write** is rolled back (the file is truncated to the group's start and
//!   the chain tail restored); the group's callers are refused and the writer goes on.
//!   If the rollback itself fails the writer stops for good: every later append fails
//!   until it is reopened (crash recovery then finds the tail).
//!
//! A rotation fdatasyncs the old segment before starting the new one, so only the
//! active segment can ever hold unsynced events.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::chain::GENESIS;
use super::chain::{encode_line_into, line_len, link_hash, parse_line, Hash, SegmentHeader};
use super::record::TrailRecord;
use super::retention::{self, RetentionReport};
use super::segment;
use super::{EventClass, IoStep, SyncMode, TrailConfig, TrailError};
use plumbing::durable;

/// Space reserved ahead of the active segment's end.
const RESERVE_TARGET: u64 = 8 << 20;
/// The smallest reservation worth a `fallocate`.
const RESERVE_MIN: u64 = 64 << 10;
/// Below this much reserved room, admission refuses (a few hundred records: more than
/// the requests already admitted can write).
const LOW_WATER: u64 = 64 << 10;
/// Admission refused for lack of space resumes once this much is reserved.
const CLEAR_WATER: u64 = 2 * LOW_WATER;
/// How often the syncer retries a failed fdatasync or reservation, and polls free
/// space where `fallocate` is unsupported.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// A failure that persists is logged again at most this often.
const REMIND_EVERY: Duration = Duration::from_secs(60);
/// In every-event mode a group is gathered for at most 1/this of the most recent
/// fdatasync's duration ... The caller that completes a group leads it at once, so the
/// bound only matters while a caller is slow or gone; with half an fdatasync, groups
/// closed on callers still on their way back (a group's replies and next requests
/// spread over ~100 us on 2 busy cores) and shrank from 7.7 to 6.4 events per
/// fdatasync with 8 clients.
const GATHER_SHARE: u32 = 1;
/// ... and never longer than this (a disk whose fdatasync takes a tick or more).
const GATHER_MAX: Duration = Duration::from_micros(1000);
/// In interval mode a leader writes at most this many groups in a row before handing
/// the queue to a parked caller (so that its own caller is not kept waiting).
const LEAD_ROUNDS: u32 = 4;

/// Health bits (`Shared::health`).
const SYNC_FAILED: u8 = 1;
const NO_SPACE: u8 = 2;
const STOPPED: u8 = 4;

/// The append-only, hash-chained trail writer. `Send + Sync`: share it in an `Arc`.
/// Dropping it stops the syncer after a last fdatasync.
pub struct TrailWriter {
    shared: Arc<Shared>,
    syncer: Option<JoinHandle<()>>,
}

struct Shared {
    config: TrailConfig,
    queue: Mutex<Queue>,
    /// `Queue::done_through`, readable without the queue's lock: a parked appender
    /// woken by its leader sees its ticket done without taking the lock again.
    done: AtomicU64,
    /// `Queue::failed_groups.len()`: while 0 a done ticket succeeded.
    failures: AtomicU64,
    io: Mutex<Io>,
    /// `SYNC_FAILED | NO_SPACE | STOPPED`: read without a lock on every admission.
    health: AtomicU8,
    /// Why each health bit is set, for errors, logs and status.
    problems: Mutex<Problems>,
    /// Set by the first write after a group sync (so only that write locks `ctl`).
    dirty: AtomicBool,
    /// The reservation is below half its target: the syncer tops it up (at once when a
    /// leader sets this, then every [`RETRY_EVERY`] while it stays set).
    reserve_wanted: AtomicBool,
    /// `fallocate` works on the trail's file system (else free space is polled).
    can_reserve: AtomicBool,
    ctl: Mutex<SyncCtl>,
    ctl_wake: Condvar,
    stats: Counters,
    /// Held for the writer's lifetime: one writer per trail directory.
    _lock: File,
}

#[derive(Default)]
struct Problems {
    sync_failed: Option<String>,
    no_space: Option<String>,
    stopped: Option<String>,
}

#[derive(Default)]
struct SyncCtl {
    /// When the oldest write not yet fdatasync'd was made.
    dirty_since: Option<Instant>,
    /// Something for the syncer to do besides a timed sync.
    poke: bool,
    stop: bool,
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
    last_sync_micros: AtomicU64,
}

/// How much group commit is batching since open: events written, the `write(2)` groups
/// that carried them, and fdatasyncs (by leaders and by the syncer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    pub events: u64,
    /// Groups written, one `write(2)` each.
    pub batches: u64,
    pub syncs: u64,
}

/// What the writer reports about itself (`atrest status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub sync: SyncMode,
    /// `None` while the writer takes events; otherwise why it refuses them.
    pub problem: Option<String>,
    pub stats: WriterStats,
    /// Duration of the most recent fdatasync, in microseconds.
    pub last_sync_micros: u64,
}

struct Queue {
    /// Serialized records waiting for a leader; their tickets are
    /// `done_through + 1 ..= last_ticket` whenever no leader is active.
    pending: Batch,
    /// The buffers of the last group written, emptied, for the next `pending`.
    spare: Batch,
    last_ticket: u64,
    /// Every ticket up to this one is written (and synced if it asked) or refused.
    done_through: u64,
    leader_active: bool,
    /// Appenders parked until their ticket is done (or until they are asked to lead),
    /// each woken by itself: no herd of waiters contending for the queue's lock.
    sleepers: Vec<(u64, std::thread::Thread)>,
    /// Groups that failed and whose callers have not all looked yet.
    failed_groups: Vec<FailedGroup>,
    /// Every-event mode: the requests the next group should carry, so that one
    /// fdatasync covers them all: the last synced group (its callers come back with
    /// their next request) plus those that queued while it synced.
    expect: usize,
    /// Every-event mode, while a group is gathered (no leader yet): the ticket of the
    /// caller that parked first, with a timeout, and when the group goes with what
    /// has queued by then.
    gathering: Option<(u64, Instant)>,
}

/// Records back to back in one buffer: queueing a record copies it here, and the
/// buffers go back and forth between the queue and its leaders, so that no record
/// costs an allocation.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Each record's end in `bytes`, and whether it asks for an fdatasync.
    records: Vec<(usize, bool)>,
}

impl Batch {
    /// A batch holding more than this is not kept for reuse (after a burst).
    const KEEP: usize = 1 << 20;

    fn push(&mut self, record: &[u8], sync: bool) {
        self.bytes.extend_from_slice(record);
        self.records.push((self.bytes.len(), sync));
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> + '_ {
        let mut start = 0;
        self.records.iter().map(move |&(end, sync)| {
            let record = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            (record, sync)
        })
    }
}

struct FailedGroup {
    first: u64,
    last: u64,
    /// Callers of the group that have not read the failure yet.
    unread: u64,
    error: String,
}

/// The open tail of the chain; leaders and the syncer touch it under its lock.
struct Io {
    file: Arc<File>,
    path: PathBuf,
    segment: u64,
    /// Bytes in the file (everything written).
    size: u64,
    /// Bytes known durable (`size - unsynced.len()`).
    synced: u64,
    /// The bytes after `synced`, as written: kept to rewrite them if a sync fails.
    unsynced: Vec<u8>,
    /// Space is allocated up to this offset (`fallocate` KEEP_SIZE).
    reserved_to: u64,
    events_in_segment: u64,
    next_seq: u64,
    last_hash: Hash,
    /// A failed rotation is retried no sooner than this.
    rotate_after: Option<Instant>,
}

/// What a caller that finds no leader does ([`Shared::gather`]).
enum Gather {
    /// Leads the queue now.
    Lead,
    /// Parks while the group is gathered: with the time left if it is the caller
    /// that started the gathering (it then leads if nobody has), else until woken.
    Wait(Option<Duration>),
}

/// How a group failed.
enum GroupError {
    /// Nothing of the group is in the file; the writer goes on.
    RolledBack(TrailError),
    /// Written but not durable: the syncer redoes the sync; admission refuses meanwhile.
    Unsynced(TrailError),
    /// The chain tail is uncertain: the writer stops until reopened.
    Fatal(TrailError),
}

impl GroupError {
    fn error(&self) -> &TrailError {
        match self {
            GroupError::RolledBack(e) | GroupError::Unsynced(e) | GroupError::Fatal(e) => e,
        }
    }
}

impl TrailWriter {
    /// Opens (creating if needed) the trail in `config.dir`, recovering from a crash:
    /// a torn final line is truncated away (it was never acknowledged), everything
    /// complete is kept. Fails if another writer holds the directory, or if the last
    /// complete line does not verify (tampering: fail closed, run validate-logs). If
    /// the newest segment was written with another [`SyncMode`], a new segment is
    /// started so that every header tells the truth about its events.
    pub fn open(config: TrailConfig) -> Result<Self, TrailError> {
        let dir = config.dir.clone();
        durable::ensure_dir(&dir, 0o700).map_err(|e| TrailError::io(&dir, e))?;
        let lock = lock_dir(&dir)?;
        let (mut io, mode) = recover(&config)?;
        if mode != config.sync {
            tracing::info!(from = %mode, to = %config.sync, "trail sync mode changed: starting a new segment");
            rotate(&mut io, &config)?;
        }
        let shared = Arc::new(Shared {
            config,
            queue: Mutex::new(Queue {
                pending: Batch::default(),
                spare: Batch::default(),
                last_ticket: 0,
                done_through: 0,
                leader_active: false,
                sleepers: Vec::new(),
                failed_groups: Vec::new(),
                expect: 0,
                gathering: None,
            }),
            done: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            io: Mutex::new(io),
            health: AtomicU8::new(0),
            problems: Mutex::new(Problems::default()),
            dirty: AtomicBool::new(false),
            reserve_wanted: AtomicBool::new(false),
            can_reserve: AtomicBool::new(true),
            ctl: Mutex::new(SyncCtl::default()),
            ctl_wake: Condvar::new(),
            stats: Counters::default(),
            _lock: lock,
        });
        shared.maintain_space();
        let syncer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("trail-sync".into())
                .spawn(move || shared.run_syncer())
                .map_err(|e| TrailError::io(&dir, e))?
        };
        let writer = TrailWriter {
            shared,
            syncer: Some(syncer),
        };
        if let Err(e) = writer.apply_retention() {
            tracing::warn!("trail retention failed: {e}");
        }
        Ok(writer)
    }

    /// The trail directory.
    pub fn dir(&self) -> &Path {
        &self.shared.config.dir
    }

    /// The writer's clock (the system clock unless injected), for stamping events.
    pub fn now(&self) -> time::OffsetDateTime {
        self.shared.config.clock.now()
    }

    /// The sync mode in force.
    pub fn sync_mode(&self) -> SyncMode {
        self.shared.config.sync
    }

    /// The seq the next event will get (= number of events ever written).
    pub fn next_seq(&self) -> u64 {
        self.shared.lock_io().next_seq
    }

    /// Events, groups and fdatasyncs since open.
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }

    /// The sync mode, whether events are taken (and why not) and the counters.
    pub fn health(&self) -> Health {
        Health {
            sync: self.shared.config.sync,
            problem: self.shared.problem(),
            stats: self.shared.stats(),
            last_sync_micros: self.shared.stats.last_sync_micros.load(Ordering::Relaxed),
        }
    }

    /// Whether a record could be written now: call before using any key for the
    /// request it will describe. One atomic load while all is well.
    pub fn admit(&self) -> Result<(), TrailError> {
        match self.shared.health.load(Ordering::Acquire) {
            0 => Ok(()),
            bits if bits & STOPPED != 0 => Err(TrailError::Failed(
                self.shared.problem().unwrap_or_default(),
            )),
            _ => Err(TrailError::Unavailable(
                self.shared.problem().unwrap_or_default(),
            )),
        }
    }

    /// Appends one event; see [`TrailWriter::append_json`].
    pub fn append(&self, record: &TrailRecord, class: EventClass) -> Result<(), TrailError> {
        self.append_json(serde_json::to_vec(record)?, class)
    }

    /// Appends one event given as its record's JSON; see [`TrailWriter::append_bytes`].
    pub fn append_json(&self, record: Vec<u8>, class: EventClass) -> Result<(), TrailError> {
        self.append_bytes(&record, class)
    }

    /// Appends one event given as its record's JSON (one line, a JSON object). Returns
    /// once it is written, and fdatasync'd if `class` is a state change or the mode is
    /// every-event. Safe to call from many threads at once. An error means the event
    /// may not be on disk and the caller must refuse the request it describes.
    pub fn append_bytes(&self, record: &[u8], class: EventClass) -> Result<(), TrailError> {
        if record.first() != Some(&b'{') || record.last() != Some(&b'}') || record.contains(&b'\n')
        {
            return Err(TrailError::BadRecord);
        }
        let sync =
            class == EventClass::StateChange || self.shared.config.sync == SyncMode::EveryEvent;
        let shared = &*self.shared;
        let mut q = shared.lock_queue();
        // Admitted requests still get their record written while space runs low (it
        // is reserved), but not while the trail's tail is not durable or uncertain.
        if shared.health.load(Ordering::Acquire) & (STOPPED | SYNC_FAILED) != 0 {
            drop(q);
            return Err(TrailError::Unavailable(
                shared.problem().unwrap_or_default(),
            ));
        }
        q.last_ticket += 1;
        let ticket = q.last_ticket;
        q.pending.push(record, sync);
        loop {
            if q.done_through >= ticket {
                return Self::outcome(&mut q, &shared.failures, ticket);
            }
            let mut timeout = None;
            if !q.leader_active {
                match shared.gather(&mut q, ticket) {
                    Gather::Lead => {
                        q = shared.lead(q);
                        continue;
                    }
                    Gather::Wait(left) => timeout = left,
                }
            }
            // A leader is writing, or the group is being gathered: park until a
            // leader has written this ticket, or hands the queue over to this thread
            // to lead (or, for the caller gathering, until the group must go).
            q.sleepers.push((ticket, std::thread::current()));
            drop(q);
            match timeout {
                Some(left) => std::thread::park_timeout(left),
                None => std::thread::park(),
            }
            if shared.done.load(Ordering::Acquire) >= ticket
                && shared.failures.load(Ordering::Acquire) == 0
            {
                return Ok(());
            }
            // Done with failures to look at, asked to lead, the gathering's time is up,
            // or a spurious wake-up.
            q = shared.lock_queue();
            q.sleepers.retain(|(t, _)| *t != ticket);
        }
    }

    /// The result of a finished ticket.
    fn outcome(q: &mut Queue, failures: &AtomicU64, ticket: u64) -> Result<(), TrailError> {
        let Some(i) = q
            .failed_groups
            .iter()
            .position(|g| (g.first..=g.last).contains(&ticket))
        else {
            return Ok(());
        };
        let g = &mut q.failed_groups[i];
        g.unread -= 1;
        let err = TrailError::Failed(g.error.clone());
        if g.unread == 0 {
            q.failed_groups.swap_remove(i);
            failures.fetch_sub(1, Ordering::Release);
        }
        Err(err)
    }

    /// Deletes segments whose newest event is older than the retention period (never
    /// the active one), recording the anchor that keeps the rest verifiable.
    pub fn apply_retention(&self) -> Result<RetentionReport, TrailError> {
        self.shared.apply_retention()
    }
}

impl Drop for TrailWriter {
    fn drop(&mut self) {
        {
            let mut ctl = self.shared.lock_ctl();
            ctl.stop = true;
            self.shared.ctl_wake.notify_all();
        }
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
        // Give back the space reserved past the end.
        let io = self.shared.lock_io();
        let _ = io.file.set_len(io.size);
    }
}

impl Shared {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // The queue's critical sections cannot panic mid-update; a poisoned lock only
        // means some appender thread panicked elsewhere.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_io(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_ctl(&self) -> MutexGuard<'_, SyncCtl> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_problems(&self) -> MutexGuard<'_, Problems> {
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> WriterStats {
        WriterStats {
            events: self.stats.events.load(Ordering::Relaxed),
            batches: self.stats.writes.load(Ordering::Relaxed),
            syncs: self.stats.syncs.load(Ordering::Relaxed),
        }
    }

    fn problem(&self) -> Option<String> {
        let p = self.lock_problems();
        let all: Vec<&str> = [&p.stopped, &p.sync_failed, &p.no_space]
            .into_iter()
            .filter_map(|m| m.as_deref())
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    }

    /// Sets a health bit with its reason; logs when it was not set already.
    fn set_problem(&self, bit: u8, message: String) {
        let mut p = self.lock_problems();
        let slot = match bit {
            SYNC_FAILED => &mut p.sync_failed,
            NO_SPACE => &mut p.no_space,
            _ => &mut p.stopped,
        };
        if slot.is_none() {
            tracing::error!(trail = %self.config.dir.display(), "{message}: refusing requests until it clears");
        }
        *slot = Some(message);
        self.health.fetch_or(bit, Ordering::AcqRel);
        drop(p);
        // The syncer retries what it can.
        self.lock_ctl().poke = true;
        self.ctl_wake.notify_one();
    }

    fn clear_problem(&self, bit: u8) {
        if self.health.load(Ordering::Acquire) & bit == 0 {
            return;
        }
        let mut p = self.lock_problems();
        let slot = match bit {
            SYNC_FAILED => &mut p.sync_failed,
            NO_SPACE => &mut p.no_space,
            _ => &mut p.stopped,
        };
        if let Some(was) = slot.take() {
            tracing::warn!(trail = %self.config.dir.display(), "trail recovered ({was}): taking requests again");
        }
        self.health.fetch_and(!bit, Ordering::AcqRel);
    }

    fn fault(&self, step: IoStep) -> io::Result<()> {
        match &self.config.fault {
            Some(hook) => hook(step),
            None => Ok(()),
        }
    }

    /// Leads: takes the queue, writes it as one group, settles its tickets and wakes
    /// their parked callers. In interval mode a leader that finds more records queued
    /// meanwhile writes them too (up to [`LEAD_ROUNDS`] groups): their callers are then
    /// woken once, when their records are written, rather than once to lead and then
    /// each again. Otherwise (every-event, whose groups wait for an fdatasync each, or
    /// after the last round) one parked caller of the queue is woken to lead it.
    fn lead<'a>(&'a self, mut q: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        let every_event = self.config.sync == SyncMode::EveryEvent;
        let mut woken: Vec<std::thread::Thread> = Vec::new();
        let mut rotated_any = false;
        let mut rounds = 0;
        loop {
            q.leader_active = true;
            q.gathering = None;
            let spare = std::mem::take(&mut q.spare);
            let mut batch = std::mem::replace(&mut q.pending, spare);
            let first = q.done_through + 1;
            let last = q.last_ticket;
            drop(q);
            // The previous round's callers go on while this one is written.
            woken.drain(..).for_each(|t| t.unpark());
            let mut guard = LeaderGuard {
                shared: self,
                first,
                last,
                finished: false,
            };
            let result = if self.health.load(Ordering::Acquire) & STOPPED != 0 {
                // Queued before the writer stopped: the tail is uncertain, write nothing.
                Err(GroupError::RolledBack(TrailError::Failed(
                    self.problem().unwrap_or_default(),
                )))
            } else {
                self.write_group(&batch)
            };
            q = self.lock_queue();
            if batch.bytes.capacity() <= Batch::KEEP {
                batch.bytes.clear();
                batch.records.clear();
                q.spare = batch;
            }
            guard.finished = true;
            q.leader_active = false;
            if every_event {
                q.expect = usize::try_from(last + 1 - first)
                    .unwrap_or(usize::MAX)
                    .saturating_add(q.pending.len());
            }
            let rotated = match result {
                Ok(rotated) => rotated,
                Err(e) => {
                    let message = e.error().to_string();
                    tracing::error!(
                        "trail write failed; refusing the {} requests of the group: {message}",
                        last + 1 - first
                    );
                    match &e {
                        GroupError::RolledBack(_) => {}
                        GroupError::Unsynced(_) => self
                            .set_problem(SYNC_FAILED, format!("trail fdatasync failed: {message}")),
                        GroupError::Fatal(_) => {
                            self.set_problem(STOPPED, format!("trail writer stopped: {message}"))
                        }
                    }
                    q.failed_groups.push(FailedGroup {
                        first,
                        last,
                        unread: last + 1 - first,
                        error: message,
                    });
                    self.failures.fetch_add(1, Ordering::Release);
                    false
                }
            };
            self.settle(&mut q, last, &mut woken);
            rotated_any |= rotated;
            rounds += 1;
            if q.pending.is_empty() {
                break;
            }
            if !every_event && !rotated && rounds < LEAD_ROUNDS {
                continue;
            }
            // Hand the queue to one of its parked callers.
            if let Some(i) = q.sleepers.iter().position(|(t, _)| *t > last) {
                woken.push(q.sleepers.swap_remove(i).1);
            }
            break;
        }
        if woken.is_empty() && !rotated_any {
            return q;
        }
        drop(q);
        woken.into_iter().for_each(|t| t.unpark());
        if rotated_any {
            // After the group is acknowledged, so only this caller waits for it.
            if let Err(e) = self.apply_retention() {
                tracing::warn!("trail retention failed: {e}");
            }
        }
        self.lock_queue()
    }

    /// Marks every ticket through `last` done and moves the threads parked on them to
    /// `woken` (to unpark once the queue's lock is released).
    fn settle(&self, q: &mut Queue, last: u64, woken: &mut Vec<std::thread::Thread>) {
        q.done_through = last;
        self.done.store(last, Ordering::Release);
        let mut i = 0;
        while i < q.sleepers.len() {
            if q.sleepers[i].0 <= last {
                woken.push(q.sleepers.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
    }

    /// Whether the caller of `ticket`, finding no leader, leads now or parks until the
    /// group is gathered. In interval mode it leads. In every-event mode the group
    /// waits until the requests it is expected to carry ([`Queue::expect`]) have
    /// queued, for at most 1/[`GATHER_SHARE`] of the last fdatasync (and
    /// [`GATHER_MAX`]) after the first of them: without it the callers of a synced group
    /// come back while the next group's fdatasync, started at once with the few
    /// records that queued meanwhile, runs: groups alternate small and large and each
    /// fdatasync serves about half of the clients. The caller that completes the group
    /// (or comes after the time is up) leads; the first caller parks with the time
    /// left as its timeout (`Some`), later ones without (`None`). Nothing is
    /// acknowledged any earlier: the group is still synced before its callers return.
    fn gather(&self, q: &mut Queue, ticket: u64) -> Gather {
        if self.config.sync != SyncMode::EveryEvent || q.pending.len() >= q.expect {
            return Gather::Lead;
        }
        let now = Instant::now();
        let (first, deadline) = *q.gathering.get_or_insert_with(|| {
            let last_sync = self.stats.last_sync_micros.load(Ordering::Relaxed);
            let cap = Duration::from_micros(last_sync / u64::from(GATHER_SHARE)).min(GATHER_MAX);
            (ticket, now + cap)
        });
        match deadline.checked_duration_since(now) {
            Some(left) if !left.is_zero() => Gather::Wait((first == ticket).then_some(left)),
            _ => Gather::Lead,
        }
    }

    /// Chains and writes one group (one `write(2)` unless it spans a rotation), and
    /// fdatasyncs it if any of its events asks. Returns whether a new segment was
    /// started.
    fn write_group(&self, batch: &Batch) -> Result<bool, GroupError> {
        let mut io = self.lock_io();
        let max = self.config.max_segment_bytes;
        let needs_sync = batch.iter().any(|(_, sync)| sync);
        let n_events = batch.len() as u64;
        let mut rotated = false;
        let mut part = Part::start(&io);
        for (record, _) in batch.iter() {
            let len = line_len(io.next_seq, record.len()) as u64;
            let would_be = io.size.saturating_add(part.bytes(&io)).saturating_add(len);
            if io.events_in_segment + part.events > 0 && would_be > max && io.may_rotate() {
                self.flush(&mut io, &part)?;
                match rotate_inner(&mut io, &self.config) {
                    Ok(()) => {
                        rotated = true;
                        self.reserve(&mut io);
                    }
                    Err(RotateError::Sync(e)) => return Err(GroupError::Unsynced(e)),
                    Err(RotateError::Create(e)) => {
                        // Keep writing to the old segment (the size limit is soft);
                        // retry the rotation later.
                        tracing::warn!(
                            "cannot start a new trail segment, continuing the current one: {e}"
                        );
                        io.rotate_after = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
                part = Part::start(&io);
            }
            let hash = link_hash(io.next_seq, &io.last_hash, record);
            let (seq, prev) = (io.next_seq, io.last_hash);
            encode_line_into(&mut io.unsynced, seq, &prev, &hash, record);
            io.next_seq += 1;
            io.last_hash = hash;
            part.events += 1;
        }
        self.flush(&mut io, &part)?;
        self.stats.events.fetch_add(n_events, Ordering::Relaxed);
        if needs_sync {
            self.sync_locked(&mut io).map_err(GroupError::Unsynced)?;
        } else if !self.dirty.swap(true, Ordering::AcqRel) {
            let mut ctl = self.lock_ctl();
            ctl.dirty_since.get_or_insert_with(Instant::now);
            self.ctl_wake.notify_one();
        }
        if self.can_reserve.load(Ordering::Relaxed) {
            let mut room = io.reserved_to.saturating_sub(io.size);
            if room < RESERVE_TARGET / 2 && !self.reserve_wanted.swap(true, Ordering::AcqRel) {
                self.lock_ctl().poke = true;
                self.ctl_wake.notify_one();
            }
            if room < LOW_WATER {
                // The syncer has not topped the reservation up in time (a burst of
                // writes, or its thread not scheduled under load): reserve here, under
                // the tail lock, before calling it a lack of space. Only a failed
                // reservation (a full file system) refuses requests.
                self.reserve(&mut io);
                room = io.reserved_to.saturating_sub(io.size);
            }
            if room < LOW_WATER {
                self.set_problem(
                    NO_SPACE,
                    format!("no space left for the trail: only {room} bytes reserved"),
                );
            }
        }
        Ok(rotated)
    }

    /// Writes the lines of `part` (the tail of `io.unsynced`) with one `write(2)`; on
    /// failure truncates the file back and restores the chain tail.
    fn flush(&self, io: &mut Io, part: &Part) -> Result<(), GroupError> {
        let bytes = io.unsynced.get(part.start..).unwrap_or_default();
        if bytes.is_empty() {
            return Ok(());
        }
        let len = bytes.len() as u64;
        // pwrite at the chain's end: the file position never matters (a rollback or a
        // rewrite after a failed sync cannot leave it wrong).
        let written = self
            .fault(IoStep::Write)
            .and_then(|()| io.file.write_all_at(bytes, io.size));
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        match written {
            Ok(()) => {
                io.size += len;
                io.events_in_segment += part.events;
                Ok(())
            }
            Err(e) => {
                let err = TrailError::io(&io.path, e);
                io.unsynced.truncate(part.start);
                io.next_seq = part.seq;
                io.last_hash = part.prev;
                // A partial write may have landed: cut it off so the file ends where
                // the chain does.
                match io.file.set_len(io.size) {
                    Ok(()) => Err(GroupError::RolledBack(err)),
                    Err(e2) => Err(GroupError::Fatal(TrailError::Failed(format!(
                        "{err}; and cannot truncate the partial write: {e2}"
                    )))),
                }
            }
        }
    }

    /// fdatasyncs the active segment with `io` held (leaders).
    fn sync_locked(&self, io: &mut Io) -> Result<(), TrailError> {
        let t0 = Instant::now();
        self.fault(IoStep::Sync)
            .and_then(|()| io.file.sync_data())
            .map_err(|e| TrailError::io(&io.path, e))?;
        self.note_sync(t0);
        io.synced = io.size;
        io.unsynced.clear();
        Ok(())
    }

    fn note_sync(&self, t0: Instant) {
        let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.stats.last_sync_micros.store(micros, Ordering::Relaxed);
    }

    /// The syncer thread: timed group syncs, retries after a failed sync, reservation.
    fn run_syncer(&self) {
        // Recent fdatasync time (exponentially weighted), to start a group sync early
        // enough that it ends within the interval when the disk keeps up.
        let mut recent = Duration::ZERO;
        let mut last_reminder = Instant::now();
        loop {
            let mut ctl = self.lock_ctl();
            let sync_due = loop {
                if ctl.stop {
                    drop(ctl);
                    self.final_sync();
                    return;
                }
                let now = Instant::now();
                let due = match (ctl.dirty_since, self.config.sync.interval()) {
                    (Some(since), Some(interval)) => Some(since + interval.saturating_sub(recent)),
                    (Some(_), None) => Some(now),
                    (None, _) => None,
                };
                if due.is_some_and(|d| d <= now) {
                    break true;
                }
                if std::mem::take(&mut ctl.poke) {
                    break false;
                }
                let retry = self.health.load(Ordering::Acquire) & (SYNC_FAILED | NO_SPACE) != 0
                    || !self.can_reserve.load(Ordering::Relaxed)
                    || self.reserve_wanted.load(Ordering::Relaxed);
                let wait = match (due, retry) {
                    (Some(d), true) => (d - now).min(RETRY_EVERY),
                    (Some(d), false) => d - now,
                    (None, true) => RETRY_EVERY,
                    (None, false) => Duration::from_secs(3600),
                };
                let (c, timeout) = self
                    .ctl_wake
                    .wait_timeout(ctl, wait)
                    .unwrap_or_else(|p| p.into_inner());
                ctl = c;
                if timeout.timed_out() && retry {
                    break false;
                }
            };
            if sync_due {
                ctl.dirty_since = None;
                self.dirty.store(false, Ordering::Release);
            }
            drop(ctl);
            if self.health.load(Ordering::Acquire) & SYNC_FAILED != 0 {
                match self.redo_failed_sync() {
                    Ok(()) => self.clear_problem(SYNC_FAILED),
                    Err(e) => {
                        if last_reminder.elapsed() >= REMIND_EVERY {
                            last_reminder = Instant::now();
                            tracing::error!("trail fdatasync still failing: {e}");
                        }
                        self.lock_problems().sync_failed =
                            Some(format!("trail fdatasync failed: {e}"));
                    }
                }
            } else if sync_due {
                let t0 = Instant::now();
                match self.group_sync() {
                    Ok(()) => {
                        let took = t0.elapsed();
                        recent = (recent * 3 + took) / 4;
                    }
                    Err(e) => {
                        last_reminder = Instant::now();
                        self.set_problem(SYNC_FAILED, format!("trail group fdatasync failed: {e}"));
                    }
                }
            }
            self.maintain_space();
        }
    }

    /// fdatasyncs what is written so far without holding `io` during the sync.
    fn group_sync(&self) -> Result<(), TrailError> {
        let (file, path, segment, size) = {
            let io = self.lock_io();
            if io.synced == io.size {
                return Ok(());
            }
            (Arc::clone(&io.file), io.path.clone(), io.segment, io.size)
        };
        let t0 = Instant::now();
        self.fault(IoStep::Sync)
            .and_then(|()| file.sync_data())
            .map_err(|e| TrailError::io(&path, e))?;
        self.note_sync(t0);
        let mut io = self.lock_io();
        // A rotation meanwhile synced the old segment itself.
        if io.segment == segment && size > io.synced {
            let done = usize::try_from(size - io.synced)
                .unwrap_or(usize::MAX)
                .min(io.unsynced.len());
            io.unsynced.drain(..done);
            io.synced = size;
        }
        Ok(())
    }

    /// After a failed fdatasync the kernel may have dropped the data or marked it clean:
    /// write the unsynced bytes again from memory, then fdatasync.
    fn redo_failed_sync(&self) -> Result<(), TrailError> {
        let mut io = self.lock_io();
        let t0 = Instant::now();
        let io = &mut *io;
        self.fault(IoStep::Write)
            .and_then(|()| io.file.write_all_at(&io.unsynced, io.synced))
            .and_then(|()| self.fault(IoStep::Sync))
            .and_then(|()| io.file.sync_data())
            .map_err(|e| TrailError::io(&io.path, e))?;
        self.note_sync(t0);
        io.synced = io.size;
        io.unsynced.clear();
        Ok(())
    }

    /// The last sync when the writer is dropped.
    fn final_sync(&self) {
        if self.health.load(Ordering::Acquire) & SYNC_FAILED != 0 {
            if let Err(e) = self.redo_failed_sync() {
                tracing::error!("trail: the last events may not be durable: {e}");
            }
        } else if let Err(e) = self.group_sync() {
            tracing::error!("trail: the last events may not be durable: {e}");
        }
    }

    /// Tops up the reservation ahead of the active segment's end (or, where
    /// `fallocate` is unsupported, checks free space), setting or clearing NO_SPACE.
    /// `fallocate` runs without the tail lock, so leaders keep writing meanwhile.
    fn maintain_space(&self) {
        let (file, segment, size, room) = {
            let io = self.lock_io();
            (
                Arc::clone(&io.file),
                io.segment,
                io.size,
                io.reserved_to.saturating_sub(io.size),
            )
        };
        let room = if !self.can_reserve.load(Ordering::Relaxed) {
            match free_bytes(&self.config.dir) {
                Ok(free) => free.saturating_sub(RESERVE_TARGET / 2),
                Err(e) => {
                    tracing::debug!("statvfs of the trail failed: {e}");
                    0
                }
            }
        } else if room >= RESERVE_TARGET / 2 {
            room
        } else {
            match self.reserve_at(&file, size) {
                Some(len) => {
                    let mut io = self.lock_io();
                    if io.segment == segment {
                        io.reserved_to = io.reserved_to.max(size + len);
                    }
                    io.reserved_to.saturating_sub(io.size)
                }
                // Unsupported: poll free space from the next round on.
                None if !self.can_reserve.load(Ordering::Relaxed) => LOW_WATER,
                None => room,
            }
        };
        // Below half the target (a nearly full file system): keep trying every round.
        self.reserve_wanted.store(
            self.can_reserve.load(Ordering::Relaxed) && room < RESERVE_TARGET / 2,
            Ordering::Release,
        );
        if room < LOW_WATER {
            let fs = self.config.dir.display();
            self.set_problem(
                NO_SPACE,
                format!("no space left for the trail on the file system of {fs}"),
            );
        } else if room >= CLEAR_WATER {
            // Not just above the low water: the next record would refuse again.
            self.clear_problem(NO_SPACE);
        }
    }

    /// Reserves space past the end of the active segment (leaders, right after a
    /// rotation).
    fn reserve(&self, io: &mut Io) {
        if let Some(len) = self.reserve_at(&io.file, io.size) {
            io.reserved_to = io.reserved_to.max(io.size + len);
        }
    }

    /// Allocates up to [`RESERVE_TARGET`] bytes at `offset` of `file`, and never more
    /// than half the file system's free space (so the trail does not take the last of
    /// it, and a failing `fallocate`, which may allocate part of its range on some file
    /// systems, rarely happens). Returns how much was reserved.
    fn reserve_at(&self, file: &File, offset: u64) -> Option<u64> {
        if !self.can_reserve.load(Ordering::Relaxed) {
            return None;
        }
        let free = free_bytes(&self.config.dir).unwrap_or(u64::MAX);
        let len = RESERVE_TARGET.min(free / 2) / RESERVE_MIN * RESERVE_MIN;
        if len < RESERVE_MIN {
            return None;
        }
        match self
            .fault(IoStep::Reserve)
            .and_then(|()| fallocate_keep_size(file, offset, len))
        {
            Ok(()) => Some(len),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
                ) =>
            {
                tracing::info!(trail = %self.config.dir.display(), "the trail's file system cannot reserve space (fallocate); watching its free space instead");
                self.can_reserve.store(false, Ordering::Relaxed);
                None
            }
            Err(e) => {
                tracing::debug!("fallocate of {len} bytes on the trail failed: {e}");
                None
            }
        }
    }

    fn apply_retention(&self) -> Result<RetentionReport, TrailError> {
        // Holding the tail lock keeps rotation out while retention looks at segments.
        let _io = self.lock_io();
        retention::apply(
            &self.config.dir,
            self.config.clock.now(),
            self.config.retention,
        )
    }
}

/// Where the current part of a group starts: its offset in `io.unsynced` and the chain
/// tail before it (to roll back to).
struct Part {
    start: usize,
    seq: u64,
    prev: Hash,
    events: u64,
}

impl Part {
    fn start(io: &Io) -> Part {
        Part {
            start: io.unsynced.len(),
            seq: io.next_seq,
            prev: io.last_hash,
            events: 0,
        }
    }

    fn bytes(&self, io: &Io) -> u64 {
        (io.unsynced.len() - self.start) as u64
    }
}

impl Io {
    fn may_rotate(&self) -> bool {
        self.rotate_after.is_none_or(|t| Instant::now() >= t)
    }
}

/// Marks the writer failed if a leader unwinds mid-group, so waiters never hang.
struct LeaderGuard<'a> {
    shared: &'a Shared,
    first: u64,
    last: u64,
    finished: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared
                .set_problem(STOPPED, "trail writer panicked mid-group".to_string());
            let mut q = self.shared.lock_queue();
            q.leader_active = false;
            let (first, last) = (self.first, self.last);
            q.failed_groups.push(FailedGroup {
                first,
                last,
                unread: (last + 1).saturating_sub(first),
                error: "trail writer panicked mid-group".to_string(),
            });
            self.shared.failures.fetch_add(1, Ordering::Release);
            let mut woken = Vec::new();
            self.shared.settle(&mut q, last, &mut woken);
            // Every parked caller: those of the group read the failure, the rest lead.
            woken.extend(q.sleepers.drain(..).map(|(_, t)| t));
            drop(q);
            woken.into_iter().for_each(|t| t.unpark());
        }
    }
}

enum RotateError {
    /// The old segment could not be made durable (the rotation did not happen).
    Sync(TrailError),
    /// The new segment could not be created (the old one stays active).
    Create(TrailError),
}

/// Starts segment `io.segment + 1` whose header continues the chain. The old segment
/// is fdatasync'd first and its unused reservation given back.
fn rotate_inner(io: &mut Io, config: &TrailConfig) -> Result<(), RotateError> {
    let index = io.segment.checked_add(1).ok_or_else(|| {
        RotateError::Create(TrailError::Corrupt {
            path: io.path.clone(),
            detail: "segment index cannot grow further".into(),
        })
    })?;
    if io.synced < io.size {
        if let Some(hook) = &config.fault {
            hook(IoStep::Sync).map_err(|e| RotateError::Sync(TrailError::io(&io.path, e)))?;
        }
        io.file
            .sync_data()
            .map_err(|e| RotateError::Sync(TrailError::io(&io.path, e)))?;
        io.synced = io.size;
        io.unsynced.clear();
    }
    let header = SegmentHeader::new(
        index,
        io.next_seq,
        &io.last_hash,
        config.clock.now(),
        config.sync,
    );
    let (file, path, size) = create_segment(&config.dir, &header).map_err(RotateError::Create)?;
    // Give back what was reserved past the old segment's end.
    let _ = io.file.set_len(io.size);
    io.file = Arc::new(file);
    io.path = path;
    io.segment = index;
    io.size = size;
    io.synced = size;
    io.reserved_to = 0;
    io.events_in_segment = 0;
    io.rotate_after = None;
    Ok(())
}

/// [`rotate_inner`] for open, where any failure is the open's.
fn rotate(io: &mut Io, config: &TrailConfig) -> Result<(), TrailError> {
    rotate_inner(io, config).map_err(|e| match e {
        RotateError::Sync(e) | RotateError::Create(e) => e,
    })
}

/// Creates a segment file holding just its header, durably (data and directory entry).
fn create_segment(dir: &Path, header: &SegmentHeader) -> Result<(File, PathBuf, u64), TrailError> {
    let path = dir.join(segment::file_name(header.segment));
    let bytes = header.encode();
    // Not O_APPEND: lines are written with pwrite at the chain's end (Linux's pwrite
    // ignores the offset on O_APPEND files).
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| TrailError::io(&path, e))?;
    let written = file.write_all(&bytes).and_then(|()| file.sync_data());
    if let Err(e) = written {
        // Leave no headerless segment behind (recovery would remove it, but a later
        // rotation must be able to create this name).
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(TrailError::io(&path, e));
    }
    durable::sync_dir(dir).map_err(|e| TrailError::io(dir, e))?;
    Ok((file, path, bytes.len() as u64))
}

/// `fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, len)`: allocates blocks without changing
/// the file's size, so later writes there cannot fail for lack of space.
fn fallocate_keep_size(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    loop {
        // SAFETY: fallocate only reads its integer arguments; the fd is owned by `file`
        // for the whole call.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, len) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Bytes kmsd may still write on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `st` is a plain C struct statvfs fills; `c` is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Root (kmsd on CI, in drills) may also use the blocks reserved for it.
    // SAFETY: geteuid cannot fail.
    let blocks = if unsafe { libc::geteuid() } == 0 {
        st.f_bfree
    } else {
        st.f_bavail
    };
    Ok((blocks as u64).saturating_mul(st.f_frsize as u64))
}

fn lock_dir(dir: &Path) -> Result<File, TrailError> {
    let path = dir.join(".lock");
    let file = plumbing::flock::open(&path, 0o600).map_err(|e| TrailError::io(&path, e))?;
    // A previous writer's lock can outlive it briefly: a process forked while it held
    // the descriptor keeps the lock until that child execs. So retry for a moment
    // before declaring another live writer.
    for _ in 0..50 {
        if plumbing::flock::try_lock(&file, plumbing::flock::Mode::Exclusive)
            .map_err(|e| TrailError::io(&path, e))?
        {
            return Ok(file);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(TrailError::Locked(dir.to_path_buf()))
}

/// Finds the chain's tail, repairing a torn write, or starts the trail. Returns the
/// tail and the sync mode the newest segment's header states.
fn recover(config: &TrailConfig) -> Result<(Io, SyncMode), TrailError> {
    let dir = &config.dir;
    loop {
        let segments = segment::list(dir).map_err(|e| TrailError::io(dir, e))?;
        let Some((index, path)) = segments.last().cloned() else {
            // Empty trail: start at genesis, or where retention's anchor says.
            let anchor = retention::read_anchor(dir)?;
            let (index, first_seq, prev) = match anchor {
                Some(a) => (a.segment, a.first_seq, a.prev_hash()?),
                None => (1, 0, GENESIS),
            };
            let header =
                SegmentHeader::new(index, first_seq, &prev, config.clock.now(), config.sync);
            let (file, path, size) = create_segment(dir, &header)?;
            return Ok((
                Io::new(file, path, index, size, 0, first_seq, prev),
                config.sync,
            ));
        };
        let bytes = std::fs::read(&path).map_err(|e| TrailError::io(&path, e))?;
        let cut = segment::recovery_cut(&bytes);
        let kept = bytes.get(..cut).unwrap_or_default();
        if cut < bytes.len() {
            // Keep the removed bytes beside the trail: after a crash they are junk, but
            // if anything else put them there they are evidence.
            let saved = dir.join(format!("torn-{}.{}.bin", segment::file_name(index), cut));
            let removed = bytes.get(cut..).unwrap_or_default();
            durable::write_atomic(&saved, removed, 0o600).map_err(|e| TrailError::io(&saved, e))?;
            tracing::warn!(
                segment = %path.display(),
                bytes = removed.len(),
                saved = %saved.display(),
                "removing torn, unacknowledged tail of the trail"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| TrailError::io(&path, e))?;
            f.set_len(cut as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| TrailError::io(&path, e))?;
        }
        let lines = segment::split_lines(kept).lines;
        let Some(first) = lines.first() else {
            // Not even the header survived: the segment never held an acknowledged
            // event (its header is synced before any event in it is acknowledged).
            tracing::warn!(segment = %path.display(), "removing segment with a torn header");
            std::fs::remove_file(&path).map_err(|e| TrailError::io(&path, e))?;
            durable::sync_dir(dir).map_err(|e| TrailError::io(dir, e))?;
            continue;
        };
        let corrupt = |detail: String| TrailError::Corrupt {
            path: path.clone(),
            detail,
        };
        let header =
            SegmentHeader::parse(first).map_err(|e| corrupt(format!("line 1: bad header: {e}")))?;
        if header.segment != index {
            return Err(corrupt(format!(
                "header says segment {} but the file is segment {index}",
                header.segment
            )));
        }
        let mode = header
            .sync_mode()
            .map_err(|e| corrupt(format!("line 1: {e}")))?;
        let (next_seq, last_hash) = match lines.last() {
            Some(last) if lines.len() > 1 => {
                let parsed =
                    parse_line(last).map_err(|e| corrupt(format!("line {}: {e}", lines.len())))?;
                if !parsed.hash_ok() {
                    return Err(corrupt(format!(
                        "line {}: stored hash does not match the line",
                        lines.len()
                    )));
                }
                (parsed.seq.saturating_add(1), parsed.hash)
            }
            _ => (
                header.first_seq,
                header
                    .prev_hash()
                    .map_err(|e| corrupt(format!("line 1: {e}")))?,
            ),
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| TrailError::io(&path, e))?;
        // What survived a crash may still be only in the page cache (kmsd was killed,
        // the machine was not): make it durable before building on it.
        file.sync_data().map_err(|e| TrailError::io(&path, e))?;
        let events = (lines.len() - 1) as u64;
        return Ok((
            Io::new(file, path, index, cut as u64, events, next_seq, last_hash),
            mode,
        ));
    }
}

impl Io {
    fn new(
        file: File,
        path: PathBuf,
        segment: u64,
        size: u64,
        events_in_segment: u64,
        next_seq: u64,
        last_hash: Hash,
    ) -> Io {
        Io {
            file: Arc::new(file),
            path,
            segment,
            size,
            synced: size,
            unsynced: Vec::new(),
            reserved_to: 0,
            events_in_segment,
            next_seq,
            last_hash,
            rotate_after: None,
        }
    }
}
