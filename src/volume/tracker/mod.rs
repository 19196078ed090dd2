//! Changed-block tracking: which chunks (`snapshot::CHUNK_SIZE`) of a served volume were
//! written since its last completed snapshot, so the next snapshot reads only those.
//!
//! The record lives in a file beside the image (`<image>.cbt`, byte layout in
//! docs/FORMAT.md "Changed-block tracker"): a header (state, boot ID, base snapshot) and a
//! bitmap. Crash rules, which make the record either known complete or known incomplete
//! (and then the next snapshot reads the whole volume, never missing a write):
//!
//! - A writer ([`Tracker`]) holds an exclusive `flock` on the file while the image is open.
//!   On open the header becomes `live` with this boot's ID and is fsync'd before any write.
//! - Before a data write is issued, the bit of every chunk it touches is set in memory and,
//!   the first time, `pwrite`n into the file (the page cache: no fsync). A killed process
//!   leaves the record complete; a machine crash loses unsynced bits, but then the header
//!   names another boot, which makes the record incomplete.
//! - A clean close fsyncs the bitmap, then writes the header `clean` with the image's
//!   mtime, then fsyncs: complete across reboots, unless the image changed afterwards.
//! - A snapshot rotates the generation ([`Tracker::rotate`]: in-flight writes drain, the
//!   in-memory bitmap starts empty while the file keeps the union), reads the rotated
//!   chunks, and on success rewrites the file to the new generation relative to the new
//!   snapshot ([`Tracker::commit`]); on failure merges the rotated bits back
//!   ([`Tracker::abort`]). A quiet image (no writer) is claimed instead ([`Claim`]).
//! - Every rewrite first marks the header `void` (fsync'd), so a crash midway leaves a
//!   record that says nothing, or the new record with extra bits (see [`rewrite`]); a
//!   reset, which only clears bits, writes its header first instead ([`rewrite_empty`]:
//!   one fsync).
//!
//! - A volume restored from a snapshot as stored starts with a record relative to that
//!   snapshot ([`seed`]), so its first snapshot is incremental too (docs/FORMAT.md, "Lazy
//!   restores and the fill map", 7).
//!
//! Writers that bypass the tracker (another tool writing the image) are caught after a
//! clean close by the mtime check; atrest opens every image it serves through a tracker
//! ([`crate::volume::VolumeImage::open_tracked`]).

pub mod record;

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use self::record::{Bitmap, Header, ImageFacts, Record, State, HEADER_LEN};
use super::format::VolumeHeader;
use super::snapshot::CHUNK_SIZE;

/// Errors of the tracker file. A write whose bit cannot be recorded is refused with one.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("{op} tracker {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tracker {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: record::RecordError,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TrackerError + 'a {
    move |source| TrackerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The tracker file of an image: `<image>.cbt`.
pub fn path_for(image: &Path) -> PathBuf {
    let mut s = image.as_os_str().to_owned();
    s.push(".cbt");
    PathBuf::from(s)
}

/// This boot's ID (`/proc/sys/kernel/random/boot_id`); all zeros if unreadable, which no
/// live record is ever trusted with.
pub fn boot_id() -> [u8; 16] {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
        .map(|u| *u.as_bytes())
        .unwrap_or([0u8; 16])
}

/// What is known about an image file now.
fn facts(image: &File, header: &VolumeHeader, boot: [u8; 16]) -> std::io::Result<ImageFacts> {
    let m = image.metadata()?;
    Ok(ImageFacts {
        volume_id: header.volume_id().to_string(),
        volume_size: header.size_bytes(),
        chunk_size: CHUNK_SIZE,
        inode: m.ino(),
        mtime: (m.mtime(), m.mtime_nsec() as u32),
        boot_id: boot,
    })
}

/// Reads and parses the file; `None` if it is empty, short or invalid (incomplete).
fn load(file: &File, path: &Path) -> Result<Option<Record>, TrackerError> {
    let len = file.metadata().map_err(io("stat", path))?.len();
    if len < HEADER_LEN as u64 || len > (HEADER_LEN as u64) + (1 << 32) {
        return Ok(None);
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(io("read", path))?;
    match Record::decode(&bytes) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            tracing::warn!(tracker = %path.display(), error = %e, "tracker unreadable: the next snapshot reads the whole volume");
            Ok(None)
        }
    }
}

fn open_locked(path: &Path, wait: bool) -> Result<Option<File>, TrackerError> {
    use plumbing::flock::{self, Mode};
    let f = flock::open(path, 0o600).map_err(io("open", path))?;
    if wait {
        if !flock::try_lock(&f, Mode::Exclusive).map_err(io("lock", path))? {
            tracing::info!(tracker = %path.display(), "waiting for a snapshot of this volume to finish");
            flock::lock(&f, Mode::Exclusive).map_err(io("lock", path))?;
        }
        return Ok(Some(f));
    }
    Ok(flock::try_lock(&f, Mode::Exclusive)
        .map_err(io("lock", path))?
        .then_some(f))
}

/// Rewrites the whole file as `rec`, crash-safely: header `void` + fsync, then bitmap and
/// real header + fsync (the fsyncs only if `durable`).
///
/// One fsync after the void header is enough because no caller sets a bit the file lacks:
/// an open keeps the file's bits (or starts without a base, which claims nothing), a reset
/// clears them, a commit keeps the current generation (a subset of the file's union). A
/// power cut before the last fsync therefore leaves a void header, a torn header (its
/// checksum fails: incomplete), or the new header over a mix of old and new bitmap bytes,
/// which is a superset of the new bitmap: the next snapshot reads more, never less.
fn rewrite(file: &File, path: &Path, rec: &Record, durable: bool) -> Result<(), TrackerError> {
    let rec_err = |source| TrackerError::Record {
        path: path.to_path_buf(),
        source,
    };
    let mut void = rec.header.clone();
    void.state = State::Void;
    file.write_all_at(&void.encode().map_err(rec_err)?, 0)
        .map_err(io("write", path))?;
    if durable {
        file.sync_data().map_err(io("fsync", path))?;
    }
    let len = (HEADER_LEN + rec.bitmap.as_bytes().len()) as u64;
    // Only when it changes: a same-size truncate still starts a journal handle, which waits
    // for the commit the void fsync above just started (~4 ms under strace in a snapshot).
    if file.metadata().map_err(io("stat", path))?.len() != len {
        file.set_len(len).map_err(io("size", path))?;
    }
    file.write_all_at(rec.bitmap.as_bytes(), HEADER_LEN as u64)
        .map_err(io("write", path))?;
    file.write_all_at(&rec.header.encode().map_err(rec_err)?, 0)
        .map_err(io("write", path))?;
    if durable {
        file.sync_data().map_err(io("fsync", path))?;
    }
    Ok(())
}

struct Inner {
    /// What the file's bitmap holds (the union of generations not yet committed).
    disk: Bitmap,
    /// Chunks written in the current generation.
    current: Bitmap,
    /// The header as last written (base, image facts).
    header: Header,
    /// Whether `current` plus `base` covers every write since `base` (false after an
    /// incomplete record was found at open, until the next snapshot commits).
    complete: bool,
    /// A failed bitmap write: every later write is refused (the record may miss it).
    broken: bool,
    /// Dropped as a killed process would be (tests): no clean close.
    abandoned: bool,
    /// The record found at open was complete and closed clean (see [`Tracker::was_clean`]).
    was_clean: bool,
}

/// The writer's side: attached to an open image, it records every write before it is
/// issued. Dropping it closes the record clean.
pub struct Tracker {
    file: File,
    path: PathBuf,
    image: File,
    /// Held shared by every write from bit to data, exclusively by a rotation.
    generation: RwLock<()>,
    inner: Mutex<Inner>,
}

/// A write in flight: while it lives, no rotation can happen.
pub struct WriteGuard<'a> {
    _g: RwLockReadGuard<'a, ()>,
}

/// The chunks a live snapshot reads, from [`Tracker::rotate`].
pub struct Rotation {
    /// The base snapshot the changes are relative to, if the record was complete.
    pub base: Option<String>,
    /// The chunks written since `base` and before the rotation.
    pub changed: Bitmap,
}

impl Tracker {
    /// Opens (creating if needed) the tracker of the image `image` (already open, with
    /// `header`), waiting while a snapshot holds it. Keeps a complete record, starts a
    /// fresh one without base otherwise; the `live` header is durable when this returns.
    pub fn open(path: &Path, image: &File, header: &VolumeHeader) -> Result<Tracker, TrackerError> {
        Self::open_with_boot(path, image, header, boot_id())
    }

    /// [`Self::open`] with a given boot ID (tests model a reboot with another).
    #[doc(hidden)]
    pub fn open_with_boot(
        path: &Path,
        image: &File,
        header: &VolumeHeader,
        boot: [u8; 16],
    ) -> Result<Tracker, TrackerError> {
        let image = image.try_clone().map_err(io("dup image of", path))?;
        let file = open_locked(path, true)?.ok_or_else(|| TrackerError::Io {
            op: "lock",
            path: path.to_path_buf(),
            source: std::io::ErrorKind::WouldBlock.into(),
        })?;
        let now = facts(&image, header, boot).map_err(io("stat image of", path))?;
        let count = record::chunk_count(now.volume_size, CHUNK_SIZE);
        let old = load(&file, path)?;
        let kept = old
            .as_ref()
            .and_then(|r| r.changes(&now))
            .map(|(b, bits)| (b.to_string(), bits.clone()));
        let complete = kept.is_some();
        let was_clean = complete && old.as_ref().is_some_and(|r| r.header.state == State::Clean);
        let (base, bits) = match kept {
            Some((b, bits)) => (Some(b), bits),
            None => (None, Bitmap::new(count)),
        };
        let h = Header {
            state: State::Live,
            boot_id: boot,
            chunk_size: CHUNK_SIZE,
            volume_size: now.volume_size,
            image_inode: now.inode,
            image_mtime: (0, 0),
            volume_id: now.volume_id.clone(),
            base,
        };
        let rec = Record {
            header: h.clone(),
            bitmap: bits.clone(),
        };
        rewrite(&file, path, &rec, true)?;
        Ok(Tracker {
            file,
            path: path.to_path_buf(),
            image,
            generation: RwLock::new(()),
            inner: Mutex::new(Inner {
                disk: bits.clone(),
                current: bits,
                header: h,
                complete,
                broken: false,
                abandoned: false,
                was_clean,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `[offset, offset+len)` of the payload is about to be written. Hold the
    /// guard until the data write is done. Fails (and the write must be refused) if the
    /// bit cannot be written to the file.
    pub fn before_write(&self, offset: u64, len: u64) -> Result<WriteGuard<'_>, TrackerError> {
        let g = self.generation.read().unwrap_or_else(|p| p.into_inner());
        if len == 0 {
            return Ok(WriteGuard { _g: g });
        }
        let first = offset / CHUNK_SIZE;
        let last = (offset.saturating_add(len) - 1) / CHUNK_SIZE;
        let mut inner = self.lock();
        if inner.broken {
            return Err(TrackerError::Io {
                op: "record a write in",
                path: self.path.clone(),
                source: std::io::Error::other("an earlier bitmap write failed"),
            });
        }
        for c in first..=last {
            if inner.current.get(c) {
                continue;
            }
            inner.current.set(c);
            if inner.disk.get(c) {
                continue;
            }
            if let Some(at) = inner.disk.set(c) {
                let byte = inner.disk.as_bytes()[at];
                if let Err(e) = self.file.write_all_at(&[byte], (HEADER_LEN + at) as u64) {
                    inner.broken = true;
                    return Err(io("write", &self.path)(e));
                }
            }
        }
        Ok(WriteGuard { _g: g })
    }

    /// Starts a live snapshot: waits for writes in flight, then hands over the chunks
    /// written so far and starts an empty generation (the file keeps both).
    pub fn rotate(&self) -> Rotation {
        let _w = self.generation.write().unwrap_or_else(|p| p.into_inner());
        let mut inner = self.lock();
        let fresh = Bitmap::new(inner.current.count());
        let changed = std::mem::replace(&mut inner.current, fresh);
        Rotation {
            base: inner
                .header
                .base
                .clone()
                .filter(|_| inner.complete && !inner.broken),
            changed,
        }
    }

    /// The snapshot `snapshot_id` of the rotated generation completed: the record is now
    /// the current generation relative to it.
    pub fn commit(&self, snapshot_id: &str) -> Result<(), TrackerError> {
        let mut inner = self.lock();
        let mut h = inner.header.clone();
        h.base = Some(snapshot_id.to_string());
        let rec = Record {
            header: h.clone(),
            bitmap: inner.current.clone(),
        };
        // Live: a process crash keeps the page cache; a machine crash voids the record by
        // its boot ID. No fsync is needed for either.
        match rewrite(&self.file, &self.path, &rec, false) {
            Ok(()) => {
                inner.disk = rec.bitmap;
                inner.header = h;
                inner.complete = true;
                Ok(())
            }
            Err(e) => {
                inner.broken = true;
                Err(e)
            }
        }
    }

    /// Whether the record found at open was complete and closed clean (its last writer
    /// was not killed). A lazy restore uses it to tell a copy resumed after a clean stop
    /// from one resumed after a crash ([`crate::volume::lazy`]).
    pub fn was_clean(&self) -> bool {
        self.lock().was_clean
    }

    /// Drops the record's base: it stops being complete (the next snapshot reads the whole
    /// volume) and says so on disk, durably, so no later open trusts it again. The bits
    /// are kept (no rewrite sets a bit the file lacks).
    pub fn forget_base(&self) -> Result<(), TrackerError> {
        let mut inner = self.lock();
        if inner.header.base.is_none() {
            inner.complete = false;
            return Ok(());
        }
        let mut h = inner.header.clone();
        h.base = None;
        let rec = Record {
            header: h.clone(),
            bitmap: inner.disk.clone(),
        };
        match rewrite(&self.file, &self.path, &rec, true) {
            Ok(()) => {
                inner.header = h;
                inner.complete = false;
                Ok(())
            }
            Err(e) => {
                inner.broken = true;
                Err(e)
            }
        }
    }

    /// The live snapshot failed: its chunks count as written again.
    pub fn abort(&self, rotation: Rotation) {
        let mut inner = self.lock();
        inner.current.union(&rotation.changed);
    }

    fn close_clean(&self) -> Result<(), TrackerError> {
        let inner = self.lock();
        if inner.broken || inner.abandoned {
            return Ok(()); // stays live: complete only within this boot, as it is
        }
        self.file.sync_data().map_err(io("fsync", &self.path))?;
        let m = self
            .image
            .metadata()
            .map_err(io("stat image of", &self.path))?;
        let mut h = inner.header.clone();
        h.state = State::Clean;
        h.image_mtime = (m.mtime(), m.mtime_nsec() as u32);
        let bytes = h.encode().map_err(|source| TrackerError::Record {
            path: self.path.clone(),
            source,
        })?;
        self.file
            .write_all_at(&bytes, 0)
            .map_err(io("write", &self.path))?;
        self.file.sync_data().map_err(io("fsync", &self.path))
    }

    /// Test hook: closes the file as a killed process would (no clean close).
    #[doc(hidden)]
    pub fn abandon(self) {
        self.lock().abandoned = true;
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Err(e) = self.close_clean() {
            tracing::warn!(error = %e, "tracker not closed clean: the next snapshot reads the whole volume");
        }
    }
}

/// Starts the record of a new image whose stored payload is, chunk for chunk, the stored
/// payload of the completed snapshot `base` (a restore that copies chunks as stored, or a
/// lazy restore whose unfilled chunks are that snapshot's): clean, empty, relative to
/// `base`, durable. Its first snapshot then reads only the chunks written since. The
/// caller must know the stored forms are the same (`copy::same_stored_form`, same size);
/// the snapshot still checks the base fits before it reuses its entries.
pub fn seed(
    image_path: &Path,
    image: &File,
    header: &VolumeHeader,
    base: &str,
) -> Result<(), TrackerError> {
    let claim = Claim::take(image_path, image, header)?.ok_or_else(|| TrackerError::Io {
        op: "lock",
        path: path_for(image_path),
        source: std::io::ErrorKind::WouldBlock.into(),
    })?;
    claim.reset(base)
}

/// A quiet image's tracker, held (exclusive `flock`) for the length of a snapshot.
pub struct Claim {
    file: File,
    path: PathBuf,
    record: Option<Record>,
    facts: ImageFacts,
}

impl Claim {
    /// Claims the tracker of `image_path` (creating the file if missing, so the snapshot
    /// can leave a base for the next). `None` if a writer holds it: the snapshot must then
    /// neither trust nor reset it.
    pub fn take(
        image_path: &Path,
        image: &File,
        header: &VolumeHeader,
    ) -> Result<Option<Claim>, TrackerError> {
        Self::take_with_boot(image_path, image, header, boot_id())
    }

    #[doc(hidden)]
    pub fn take_with_boot(
        image_path: &Path,
        image: &File,
        header: &VolumeHeader,
        boot: [u8; 16],
    ) -> Result<Option<Claim>, TrackerError> {
        let path = path_for(image_path);
        let Some(file) = open_locked(&path, false)? else {
            return Ok(None);
        };
        let record = load(&file, &path)?;
        let facts = facts(image, header, boot).map_err(io("stat image of", &path))?;
        Ok(Some(Claim {
            file,
            path,
            record,
            facts,
        }))
    }

    /// The base snapshot and the chunks written since, if the record is complete.
    pub fn changes(&self) -> Option<(&str, &Bitmap)> {
        self.record.as_ref()?.changes(&self.facts)
    }

    /// The snapshot `snapshot_id` of the whole image completed: the record is now empty
    /// relative to it, clean, durable.
    pub fn reset(self, snapshot_id: &str) -> Result<(), TrackerError> {
        let rec = Record {
            header: Header {
                state: State::Clean,
                boot_id: self.facts.boot_id,
                chunk_size: CHUNK_SIZE,
                volume_size: self.facts.volume_size,
                image_inode: self.facts.inode,
                image_mtime: self.facts.mtime,
                volume_id: self.facts.volume_id.clone(),
                base: Some(snapshot_id.to_string()),
            },
            bitmap: Bitmap::new(record::chunk_count(self.facts.volume_size, CHUNK_SIZE)),
        };
        rewrite_empty(&self.file, &self.path, &rec)
    }
}

/// Rewrites the file as `rec`, whose bitmap is empty (a reset), with one fsync instead of
/// [`rewrite`]'s two: the new header first, made durable, then the bitmap's zeros, not waited
/// for. No void header is needed because clearing bits is the only change: a power cut
/// leaves the old record (nothing written), a torn header (its checksum fails: incomplete),
/// a short file (the bitmap's length is wrong: incomplete), or the new header over a mix of
/// old and new bitmap bytes, a superset of the empty bitmap: the next snapshot reads more,
/// never less. The old header over new bytes cannot happen: the header is durable before
/// any bitmap byte is written.
fn rewrite_empty(file: &File, path: &Path, rec: &Record) -> Result<(), TrackerError> {
    let rec_err = |source| TrackerError::Record {
        path: path.to_path_buf(),
        source,
    };
    if rec.bitmap.count_ones() != 0 {
        return rewrite(file, path, rec, true);
    }
    file.write_all_at(&rec.header.encode().map_err(rec_err)?, 0)
        .map_err(io("write", path))?;
    file.sync_data().map_err(io("fsync", path))?;
    let len = (HEADER_LEN + rec.bitmap.as_bytes().len()) as u64;
    if file.metadata().map_err(io("stat", path))?.len() != len {
        file.set_len(len).map_err(io("size", path))?;
    }
    file.write_all_at(rec.bitmap.as_bytes(), HEADER_LEN as u64)
        .map_err(io("write", path))
}
