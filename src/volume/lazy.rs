//! Lazy restores, as EBS loads a volume from a snapshot: a [`LazyVolume`] is usable (read,
//! written, served) from the moment its empty image exists, while its chunks are still
//! being copied in from a [`ChunkSource`] (the snapshot store, `snapshot::source`).
//!
//! Rules (docs/FORMAT.md, "Fill map"):
//! - Which chunks hold their final bytes is the [`FillMap`], kept in memory and in a small
//!   file beside the image (`vol-*.fill`), replaced atomically (temp, fsync, rename, fsync
//!   dir). While that file exists the image alone is not the volume.
//! - Any read or write of a chunk not yet filled fills it first (copy on first touch), under
//!   a per-chunk claim, so a chunk is filled exactly once and never after the guest wrote it.
//! - Before a guest write to a chunk is done, the chunk's bit is durable (the image is
//!   fdatasync'd first, so a durable bit never names bytes still in flight): after a crash
//!   the copy resumes from the file and cannot copy over a write the guest had made. Chunks
//!   filled by the copier or by reads become durable in batches ([`PERSIST_EVERY`]); losing
//!   such bits only means copying the same bytes again.
//! - The copier ([`LazyVolume::fill_all`]) runs in the process that opened the volume, which
//!   holds an exclusive `flock` on the image for as long as it is open: no second process can
//!   fill, serve or copy the same restore.
//! - When every chunk is filled and durable the file is removed; the image is then a plain
//!   volume.
//!
//! Only stored bytes move: the source hands over chunks already in the image's stored form
//! (ciphertext for an encrypted volume), so no plaintext reaches the disk at any step.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::fillmap::{FillMap, FillMapError};
use super::format::VolumeHeaderParams;
use super::image::VolumeImage;
use super::key::XtsKey;
use super::VolumeError;

/// Chunks filled by the copier between two writes of the fill map.
pub const PERSIST_EVERY: u64 = 64;

/// Where a lazy volume's chunks come from, already in the image's stored form.
pub trait ChunkSource: Send + Sync {
    /// Puts the stored bytes of chunk `index` (`len` bytes) in `buf` and returns true, or
    /// returns false when the chunk is all zeros (nothing to write: the image is a hole).
    fn fetch(&self, index: u64, len: u64, buf: &mut Vec<u8>) -> Result<bool, SourceError>;
}

/// A source's failure (the snapshot store's error, boxed so this layer does not know it).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of lazy restores.
#[derive(Debug, thiserror::Error)]
pub enum LazyError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("fill map {}: {source}", .path.display())]
    Map {
        path: PathBuf,
        #[source]
        source: FillMapError,
    },
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fill map {} is for {found}, not for the image of {expected}", .path.display())]
    WrongMap {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{} is being restored by another process (it holds the image's lock)", .path.display())]
    Locked { path: PathBuf },
    #[error("cannot fetch chunk {index} from the snapshot")]
    Source {
        index: u64,
        #[source]
        source: SourceError,
    },
}

impl LazyError {
    /// The errno a served file answers with.
    pub fn errno(&self) -> i32 {
        match self {
            LazyError::Volume(v) => v.errno(),
            LazyError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            _ => libc::EIO,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LazyError + 'a {
    move |source| LazyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The fill map's path for an image: `vol-x.img` -> `vol-x.fill`.
pub fn fill_path(image: &Path) -> PathBuf {
    image.with_extension("fill")
}

/// True while the image at `image` is still being restored (its fill map exists).
pub fn is_restoring(image: &Path) -> bool {
    fill_path(image).exists()
}

fn read_map(path: &Path) -> Result<FillMap, LazyError> {
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    FillMap::decode(&bytes).map_err(|source| LazyError::Map {
        path: path.to_path_buf(),
        source,
    })
}

fn write_map(path: &Path, map: &FillMap) -> Result<(), LazyError> {
    plumbing::durable::write_atomic(path, &map.encode(), 0o600).map_err(io("write", path))
}

thread_local! {
    /// Per-thread chunk buffer for fills.
    static CHUNK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct Fill {
    /// In memory: the chunks whose final bytes are in the image (durable or not).
    map: FillMap,
    /// Chunks being filled now (by whoever claimed them).
    claimed: HashSet<u64>,
}

/// A volume restored lazily: the image, its source and its fill map.
pub struct LazyVolume {
    image: VolumeImage,
    source: Box<dyn ChunkSource>,
    map_path: PathBuf,
    chunk: u64,
    fill: Mutex<Fill>,
    filled: Condvar,
    /// What the file on disk says (the durable bits). Its mutex also orders writers.
    durable: Mutex<FillMap>,
    /// Every chunk is filled and the map file is gone: plain image I/O.
    complete: AtomicBool,
    /// Holds the exclusive flock on the image for as long as the volume is open.
    _lock: std::fs::File,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LazyVolume {
    /// Starts a lazy restore: the fill map first (chunks for which `has_data` is false, and
    /// those past the source, are filled already: they are holes), then the empty image.
    /// A crash between the two leaves a map without an image, which nothing opens.
    ///
    /// `base`: the snapshot whose stored chunks the source hands over unchanged (a copy
    /// as stored, same size), if any. The image's changed-block record then starts
    /// relative to it, so the volume's first snapshot reads only the chunks written since
    /// the restore (see [`LazyVolume::open`] for when that record is dropped).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        image_path: &Path,
        params: &VolumeHeaderParams,
        key: Option<XtsKey>,
        snapshot_id: &str,
        chunk_size: u64,
        has_data: &dyn Fn(u64) -> bool,
        base: Option<&str>,
        source: Box<dyn ChunkSource>,
    ) -> Result<LazyVolume, LazyError> {
        let map_path = fill_path(image_path);
        let mut map = FillMap::new(
            &params.volume_id,
            snapshot_id,
            chunk_size,
            params.size_bytes,
        )
        .map_err(|source| LazyError::Map {
            path: map_path.clone(),
            source,
        })?;
        for i in 0..map.count() {
            if !has_data(i) {
                map.set(i);
            }
        }
        if image_path.exists() {
            return Err(VolumeError::AlreadyExists(image_path.to_path_buf()).into());
        }
        write_map(&map_path, &map)?;
        if let Err(e) = VolumeImage::create(image_path, params) {
            let _ = std::fs::remove_file(&map_path);
            return Err(e.into());
        }
        if let Some(base) = base {
            // Not fatal: without the record the first snapshot reads the whole volume.
            if let Err(e) = VolumeImage::seed_tracker(image_path, base) {
                tracing::warn!(image = %image_path.display(), base, error = %e, "restored volume's changed-block record not started: its first snapshot reads the whole volume");
            }
        }
        Self::open(image_path, key, source)
    }

    /// Opens a restore in progress (after a restart): the image with its key, the fill
    /// map beside it (which must exist: see [`is_restoring`]), under the image's lock.
    pub fn open(
        image_path: &Path,
        key: Option<XtsKey>,
        source: Box<dyn ChunkSource>,
    ) -> Result<LazyVolume, LazyError> {
        let map_path = fill_path(image_path);
        // The image's lock first: a second opener is refused at once (opening the tracker
        // would wait for the first opener's tracker lock).
        let lock = std::fs::File::open(image_path).map_err(io("open", image_path))?;
        if !plumbing::flock::try_lock(&lock, plumbing::flock::Mode::Exclusive)
            .map_err(io("lock", image_path))?
        {
            return Err(LazyError::Locked {
                path: image_path.to_path_buf(),
            });
        }
        // Tracked like every served image (`super::tracker`): guest writes are recorded for
        // incremental snapshots. The copier's fills are not (they are the restore, not
        // changes), and no snapshot is taken before the copy is done
        // (`SnapshotStore::create` refuses an image whose fill map exists). A record seeded
        // by `create` is relative to the snapshot restored from: a chunk not yet filled is
        // that snapshot's, a filled one is too unless the guest wrote it, and every guest
        // write is recorded. It is kept only across a clean stop: if the last opener did not
        // close the record clean (a crash mid-copy), its base is dropped, and the first
        // snapshot reads the whole volume.
        let image = VolumeImage::open_tracked(image_path, key)?;
        if let Some(t) = image.tracker() {
            if !t.was_clean() {
                t.forget_base().map_err(VolumeError::from)?;
            }
        }
        let map = read_map(&map_path)?;
        let p = &image.header().params;
        if map.volume_id() != p.volume_id || map.size_bytes() != p.size_bytes {
            return Err(LazyError::WrongMap {
                path: map_path,
                found: format!("{} ({} bytes)", map.volume_id(), map.size_bytes()),
                expected: format!("{} ({} bytes)", p.volume_id, p.size_bytes),
            });
        }
        let v = LazyVolume {
            chunk: map.chunk_size(),
            durable: Mutex::new(map.clone()),
            fill: Mutex::new(Fill {
                map,
                claimed: HashSet::new(),
            }),
            filled: Condvar::new(),
            complete: AtomicBool::new(false),
            image,
            source,
            map_path,
            _lock: lock,
        };
        v.finish_if_complete()?;
        Ok(v)
    }

    pub fn image(&self) -> &VolumeImage {
        &self.image
    }

    pub fn size(&self) -> u64 {
        self.image.size()
    }

    /// `(filled, total)` chunks.
    pub fn progress(&self) -> (u64, u64) {
        let f = lock(&self.fill);
        (f.map.filled(), f.map.count())
    }

    /// True once every chunk is filled and the fill map is gone.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// The chunks `[first, last]` that `[offset, offset+len)` touches (`None` if empty or
    /// out of range: the image's own check then answers).
    fn chunks(&self, offset: u64, len: usize) -> Option<std::ops::RangeInclusive<u64>> {
        let end = offset.checked_add(len as u64)?;
        if len == 0 || end > self.size() {
            return None;
        }
        Some(offset / self.chunk..=(end - 1) / self.chunk)
    }

    /// Makes sure chunk `i` holds its final bytes: returns at once if it does, waits if
    /// someone else is filling it, or claims it and copies it in from the source
    /// (`true`: this call copied it).
    fn ensure_filled(&self, i: u64) -> Result<bool, LazyError> {
        let mut f = lock(&self.fill);
        loop {
            if f.map.get(i) {
                return Ok(false);
            }
            if !f.claimed.contains(&i) {
                break;
            }
            f = self.filled.wait(f).unwrap_or_else(|p| p.into_inner());
        }
        f.claimed.insert(i);
        drop(f);
        let res = self.copy_chunk(i);
        let mut f = lock(&self.fill);
        f.claimed.remove(&i);
        if res.is_ok() {
            f.map.set(i);
        }
        self.filled.notify_all();
        res.map(|()| true)
    }

    fn copy_chunk(&self, i: u64) -> Result<(), LazyError> {
        let off = i.saturating_mul(self.chunk);
        let len = self.size().saturating_sub(off).min(self.chunk);
        CHUNK.with(|buf| {
            let mut buf = buf.borrow_mut();
            let data = self
                .source
                .fetch(i, len, &mut buf)
                .map_err(|source| LazyError::Source { index: i, source })?;
            if data {
                let bytes = buf.get(..len as usize).ok_or_else(|| LazyError::Source {
                    index: i,
                    source: format!("the source returned {} of {len} bytes", buf.len()).into(),
                })?;
                self.image.write_stored_at(bytes, off)?;
            }
            Ok(())
        })
    }

    /// Writes the in-memory fill map to its file if it says more than the file does: the
    /// image first (fdatasync), so no durable bit names bytes that are not.
    fn persist(&self) -> Result<(), LazyError> {
        let mut durable = lock(&self.durable);
        if self.is_complete() {
            return Ok(());
        }
        let now = {
            let f = lock(&self.fill);
            if f.map == *durable {
                return Ok(());
            }
            f.map.clone()
        };
        self.image.sync_data()?;
        write_map(&self.map_path, &now)?;
        *durable = now;
        Ok(())
    }

    /// The fill bits of `chunks` are on disk (persisting if they are not yet).
    fn ensure_durable(&self, chunks: std::ops::RangeInclusive<u64>) -> Result<(), LazyError> {
        if self.is_complete() {
            return Ok(());
        }
        let all = {
            let d = lock(&self.durable);
            chunks.clone().all(|i| d.get(i))
        };
        if all {
            return Ok(());
        }
        self.persist()
    }

    /// When every chunk is filled: the map, then its file, go (the image is fdatasync'd
    /// first, then the removal is made durable). Returns whether the volume is complete.
    fn finish_if_complete(&self) -> Result<bool, LazyError> {
        if self.is_complete() {
            return Ok(true);
        }
        let _durable = lock(&self.durable);
        if !lock(&self.fill).map.is_complete() {
            return Ok(false);
        }
        self.image.sync_data()?;
        match std::fs::remove_file(&self.map_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &self.map_path)(e)),
        }
        let dir = self
            .map_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        plumbing::durable::sync_dir(dir).map_err(io("fsync", dir))?;
        self.complete.store(true, Ordering::Release);
        Ok(true)
    }

    /// Reads plaintext; chunks not yet filled are filled first.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LazyError> {
        if !self.is_complete() {
            if let Some(chunks) = self.chunks(offset, buf.len()) {
                for i in chunks {
                    self.ensure_filled(i)?;
                }
            }
        }
        Ok(self.image.read_at(buf, offset)?)
    }

    /// Writes plaintext; chunks not yet filled are filled first and their bits made
    /// durable before the write, so no copy can land on it later.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), LazyError> {
        if !self.is_complete() {
            if let Some(chunks) = self.chunks(offset, buf.len()) {
                for i in chunks.clone() {
                    self.ensure_filled(i)?;
                }
                self.ensure_durable(chunks)?;
            }
        }
        Ok(self.image.write_at(buf, offset)?)
    }

    /// Test hook: drops the volume as a killed process would (fill bits not yet persisted
    /// are lost; the image's changed-block tracker is not closed clean).
    #[doc(hidden)]
    pub fn abandon(self) {
        self.image.abandon();
    }

    /// fdatasync of the image: every completed write is durable when it returns.
    pub fn sync_data(&self) -> Result<(), LazyError> {
        Ok(self.image.sync_data()?)
    }

    /// The background copy: fills every chunk not yet filled on `workers` threads,
    /// persisting the map every [`PERSIST_EVERY`] chunks, until done or `stop` is set (the
    /// map is then persisted, so a later [`LazyVolume::open`] resumes). `progress` gets
    /// `(filled, total)` chunks; `pace` is a pause after each chunk a worker copies (zero
    /// normally; tests and demos slow the copy down to watch it). Returns whether the volume
    /// is now complete (its fill map removed). Safe to call from several threads at once:
    /// each chunk is filled once.
    pub fn fill_all(
        &self,
        workers: usize,
        stop: &AtomicBool,
        pace: std::time::Duration,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<bool, LazyError> {
        if self.is_complete() {
            return Ok(true);
        }
        let count = lock(&self.fill).map.count();
        let next = AtomicU64::new(0);
        let since = AtomicU64::new(0);
        let failed = AtomicBool::new(false);
        let first_err: Mutex<Option<LazyError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers.max(1) {
                s.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    if !pace.is_zero() && !lock(&self.fill).map.get(i) {
                        std::thread::sleep(pace);
                    }
                    let res = self.ensure_filled(i).and_then(|copied| {
                        // Counted by chunks copied here, so a resume past filled
                        // chunks does not persist (compare the whole map) every few.
                        if copied && since.fetch_add(1, Ordering::Relaxed) + 1 >= PERSIST_EVERY {
                            since.store(0, Ordering::Relaxed);
                            self.persist()?;
                            let (done, total) = self.progress();
                            progress(done, total);
                        }
                        Ok(())
                    });
                    if let Err(e) = res {
                        failed.store(true, Ordering::Relaxed);
                        lock(&first_err).get_or_insert(e);
                        return;
                    }
                });
            }
        });
        if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
            let _ = self.persist();
            return Err(e);
        }
        self.persist()?;
        let done = self.finish_if_complete()?;
        let (filled, total) = self.progress();
        progress(filled, total);
        Ok(done)
    }
}
