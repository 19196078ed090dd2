//! The trail's single writer: group commit with fdatasync before acknowledging.
//!
//! Appenders serialize their record, queue it and wait. Whoever finds no write in
//! progress becomes the leader: it takes the whole queue, chains and writes every line,
//! fdatasyncs once, then wakes everyone whose record is now durable. Records queued
//! while a leader writes form the next batch, so one fsync serves many requests.
//!
//! Failure is permanent for this writer: after a failed write or fsync every append
//! (including the failed batch's) returns an error, so the caller refuses its request
//! and no event is ever acknowledged on a chain whose tail is uncertain. Reopening runs
//! crash recovery and continues from the last complete line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::chain::{chain_line, parse_line, Hash, SegmentHeader, GENESIS};
use super::record::TrailRecord;
use super::retention::{self, RetentionReport};
use super::segment;
use super::{TrailConfig, TrailError};
use plumbing::durable;

/// The append-only, hash-chained trail writer. `Send + Sync`: share it in an `Arc`.
pub struct TrailWriter {
    config: TrailConfig,
    queue: Mutex<Queue>,
    wake: Condvar,
    io: Mutex<Io>,
    stats: Counters,
    /// Held for the writer's lifetime: one writer per trail directory.
    _lock: File,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    events: AtomicU64,
}

/// How much group commit is batching: events made durable and the fdatasync'd
/// batches that carried them, since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    pub events: u64,
    pub batches: u64,
}

#[derive(Default)]
struct Queue {
    /// Serialized records waiting for a leader, with their tickets (ascending).
    pending: Vec<(u64, Vec<u8>)>,
    last_ticket: u64,
    /// Every ticket up to this one is durable.
    durable_through: u64,
    leader_active: bool,
    failed: Option<String>,
}

/// The open tail of the chain; only the leader touches it.
struct Io {
    file: File,
    path: PathBuf,
    segment: u64,
    size: u64,
    events_in_segment: u64,
    next_seq: u64,
    last_hash: Hash,
}

impl TrailWriter {
    /// Opens (creating if needed) the trail in `config.dir`, recovering from a crash:
    /// a torn final line is truncated away (it was never acknowledged), everything
    /// complete is kept. Fails if another writer holds the directory, or if the last
    /// complete line does not verify (tampering: fail closed, run validate-logs).
    pub fn open(config: TrailConfig) -> Result<Self, TrailError> {
        let dir = config.dir.clone();
        durable::ensure_dir(&dir, 0o700).map_err(|e| TrailError::io(&dir, e))?;
        let lock = lock_dir(&dir)?;
        let io = recover(&config)?;
        let writer = TrailWriter {
            config,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            io: Mutex::new(io),
            stats: Counters::default(),
            _lock: lock,
        };
        if let Err(e) = writer.apply_retention() {
            tracing::warn!("trail retention failed: {e}");
        }
        Ok(writer)
    }

    /// The trail directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The writer's clock (the system clock unless injected), for stamping events.
    pub fn now(&self) -> time::OffsetDateTime {
        self.config.clock.now()
    }

    /// The seq the next event will get (= number of events ever written).
    pub fn next_seq(&self) -> u64 {
        self.lock_io().next_seq
    }

    /// Events written and batches (fdatasyncs) used since open.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            events: self.stats.events.load(Ordering::Relaxed),
            batches: self.stats.batches.load(Ordering::Relaxed),
        }
    }

    /// Appends one event; returns once it is durable (written and fdatasync'd).
    /// Safe to call from many threads at once. An error means the event may not be
    /// on disk and the caller must refuse the request it describes.
    pub fn append(&self, record: TrailRecord) -> Result<(), TrailError> {
        let bytes = serde_json::to_vec(&record)?;
        let mut q = self.lock_queue();
        if let Some(f) = &q.failed {
            return Err(TrailError::Failed(f.clone()));
        }
        q.last_ticket += 1;
        let ticket = q.last_ticket;
        q.pending.push((ticket, bytes));
        loop {
            if q.durable_through >= ticket {
                return Ok(());
            }
            if let Some(f) = &q.failed {
                return Err(TrailError::Failed(f.clone()));
            }
            if !q.leader_active {
                // Our record is still pending (a taken batch always ends durable or
                // failed before the leader steps down): lead the next batch.
                q.leader_active = true;
                let batch = std::mem::take(&mut q.pending);
                let through = batch.last().map_or(q.durable_through, |(t, _)| *t);
                drop(q);
                let mut guard = LeaderGuard {
                    writer: self,
                    finished: false,
                };
                let result = self.write_batch(batch.into_iter().map(|(_, b)| b));
                q = self.lock_queue();
                guard.finished = true;
                q.leader_active = false;
                let rotated = match result {
                    Ok(rotated) => {
                        q.durable_through = through;
                        rotated
                    }
                    Err(e) => {
                        tracing::error!("trail write failed, refusing further events: {e}");
                        q.failed = Some(e.to_string());
                        false
                    }
                };
                self.wake.notify_all();
                if rotated {
                    // After the batch is acknowledged, so only this caller waits for it.
                    drop(q);
                    if let Err(e) = self.apply_retention() {
                        tracing::warn!("trail retention failed: {e}");
                    }
                    q = self.lock_queue();
                }
                continue;
            }
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Deletes segments whose newest event is older than the retention period (never
    /// the active one), recording the anchor that keeps the rest verifiable.
    pub fn apply_retention(&self) -> Result<RetentionReport, TrailError> {
        // Holding the tail lock keeps rotation out while retention looks at segments.
        let _io = self.lock_io();
        retention::apply(
            &self.config.dir,
            self.config.clock.now(),
            self.config.retention,
        )
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // The queue's critical sections cannot panic mid-update; a poisoned lock only
        // means some appender thread panicked elsewhere.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_io(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes and syncs one batch; returns whether a new segment was started.
    fn write_batch(&self, batch: impl Iterator<Item = Vec<u8>>) -> Result<bool, TrailError> {
        let mut io = self.lock_io();
        let max = self.config.max_segment_bytes;
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_events = 0u64;
        let mut rotated = false;
        let mut n_events = 0u64;
        for record in batch {
            n_events += 1;
            let (hash, line) = chain_line(io.next_seq, &io.last_hash, &record);
            let would_be = io
                .size
                .saturating_add(buf.len() as u64)
                .saturating_add(line.len() as u64);
            if io.events_in_segment + buf_events > 0 && would_be > max {
                flush(&mut io, &buf, buf_events)?;
                buf.clear();
                buf_events = 0;
                rotate(&mut io, &self.config)?;
                rotated = true;
            }
            buf.extend_from_slice(&line);
            buf_events += 1;
            io.next_seq += 1;
            io.last_hash = hash;
        }
        flush(&mut io, &buf, buf_events)?;
        drop(io);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.events.fetch_add(n_events, Ordering::Relaxed);
        Ok(rotated)
    }
}

/// Marks the writer failed if a leader unwinds mid-batch, so waiters never hang.
struct LeaderGuard<'a> {
    writer: &'a TrailWriter,
    finished: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut q = self.writer.lock_queue();
            q.leader_active = false;
            q.failed = Some("trail writer panicked mid-batch".to_string());
            self.writer.wake.notify_all();
        }
    }
}

fn flush(io: &mut Io, buf: &[u8], events: u64) -> Result<(), TrailError> {
    if buf.is_empty() {
        return Ok(());
    }
    io.file
        .write_all(buf)
        .and_then(|()| io.file.sync_data())
        .map_err(|e| TrailError::io(&io.path, e))?;
    io.size = io.size.saturating_add(buf.len() as u64);
    io.events_in_segment += events;
    Ok(())
}

/// Starts segment `io.segment + 1` whose header continues the chain.
fn rotate(io: &mut Io, config: &TrailConfig) -> Result<(), TrailError> {
    let index = io
        .segment
        .checked_add(1)
        .ok_or_else(|| TrailError::Corrupt {
            path: io.path.clone(),
            detail: "segment index cannot grow further".into(),
        })?;
    let header = SegmentHeader::new(index, io.next_seq, &io.last_hash, config.clock.now());
    let (file, path, size) = create_segment(&config.dir, &header)?;
    io.file = file;
    io.path = path;
    io.segment = index;
    io.size = size;
    io.events_in_segment = 0;
    Ok(())
}

/// Creates a segment file holding just its header, durably (data and directory entry).
fn create_segment(dir: &Path, header: &SegmentHeader) -> Result<(File, PathBuf, u64), TrailError> {
    let path = dir.join(segment::file_name(header.segment));
    let bytes = header.encode();
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| TrailError::io(&path, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_data())
        .map_err(|e| TrailError::io(&path, e))?;
    durable::sync_dir(dir).map_err(|e| TrailError::io(dir, e))?;
    Ok((file, path, bytes.len() as u64))
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

/// Finds the chain's tail, repairing a torn write, or starts the trail.
fn recover(config: &TrailConfig) -> Result<Io, TrailError> {
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
            let header = SegmentHeader::new(index, first_seq, &prev, config.clock.now());
            let (file, path, size) = create_segment(dir, &header)?;
            return Ok(Io {
                file,
                path,
                segment: index,
                size,
                events_in_segment: 0,
                next_seq: first_seq,
                last_hash: prev,
            });
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
            .append(true)
            .open(&path)
            .map_err(|e| TrailError::io(&path, e))?;
        return Ok(Io {
            file,
            path,
            segment: index,
            size: cut as u64,
            events_in_segment: (lines.len() - 1) as u64,
            next_seq,
            last_hash,
        });
    }
}
