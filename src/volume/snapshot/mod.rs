//! The incremental snapshot store: content-addressed chunks of a payload *as stored*
//! (ciphertext for encrypted volumes, under the same wrapped key; plaintext otherwise), plus
//! one manifest per snapshot. Layout and crash rules: docs/FORMAT.md "Snapshots".
//!
//! ```text
//! DIR/.lock                     flock: create/restore/copy shared, delete/gc exclusive
//! DIR/chunks/<h[0..2]>/<h>      stored bytes of one chunk, h = hex SHA-256 of them
//! DIR/manifests/<snapshot-id>.json
//! ```

pub mod chunks;
pub mod gc;
pub mod manifest;
pub mod source;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use self::chunks::{Batch, ChunkStore};
pub use self::gc::{DeleteReport, GcReport};
pub use self::manifest::{Manifest, SnapshotState, MANIFEST_FORMAT};
use super::copy::{self, CopyError, DataKeys};
use super::format::{VolumeHeader, VolumeHeaderParams};
use super::image::{read_header_from, VolumeImage};
use super::tracker::record::Bitmap;
use super::tracker::{Claim, Rotation, Tracker};
use super::xts::is_zero;
use super::VolumeError;

/// Payload bytes per chunk.
pub const CHUNK_SIZE: u64 = 1 << 20;

/// Work done so far, in payload bytes, for progress bars and `Progress` in describe-*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

impl Progress {
    /// Whole percent done (100 when there is nothing to do).
    pub fn percent(&self) -> u8 {
        if self.total == 0 {
            return 100;
        }
        ((self.done.min(self.total) as u128 * 100) / self.total as u128) as u8
    }
}

/// Errors of the snapshot store. The control plane maps `NotFound` to
/// `InvalidSnapshot.NotFound` and `Copy(PlaintextCopyOfEncryptedData)` /
/// `DestinationTooSmall` / `InvalidId` to `InvalidParameterValue`.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {0} does not exist")]
    NotFound(String),
    #[error("snapshot {0} already exists")]
    AlreadyExists(String),
    #[error("invalid snapshot ID {0:?}: use 1-128 characters of A-Z a-z 0-9 . _ - not starting with '.'")]
    InvalidId(String),
    #[error("snapshot {0} is not completed")]
    NotCompleted(String),
    #[error("manifest {path} is unreadable: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("chunk {hash} is missing from the store")]
    MissingChunk { hash: String },
    #[error("chunk {hash} is corrupt: {reason}")]
    CorruptChunk { hash: String, reason: String },
    #[error("destination volume of {got} bytes is smaller than the {need}-byte snapshot")]
    DestinationTooSmall { need: u64, got: u64 },
    #[error("{0}")]
    Volume(#[from] VolumeError),
    #[error("{0}")]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Lazy(Box<crate::volume::LazyError>),
    #[error("{} is still being restored lazily: its image is not the volume until the copy completes", .0.display())]
    Restoring(PathBuf),
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> SnapshotError {
    SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source: e,
    }
}

/// Where a snapshot reads the stored payload from.
pub enum SnapshotSource<'a> {
    /// An open image (e.g. a stopped instance's volume, or a frozen attached one): read under
    /// shared sector locks so no sector is seen half-written.
    Image(&'a VolumeImage),
    /// An image file that nobody is writing. No data key is needed either way.
    Path(&'a Path),
}

enum Reader<'a> {
    Image(&'a VolumeImage),
    File {
        file: File,
        path: PathBuf,
        payload: u64,
    },
}

impl Reader<'_> {
    fn read(&self, buf: &mut [u8], off: u64) -> Result<(), SnapshotError> {
        match self {
            Reader::Image(img) => Ok(img.read_stored_at(buf, off)?),
            Reader::File {
                file,
                path,
                payload,
            } => file
                .read_exact_at(buf, payload + off)
                .map_err(|e| io("read", path, e)),
        }
    }

    /// True if `[off, off+len)` of the payload is certainly a hole (SEEK_DATA finds no data
    /// in it); false when unsure (the caller then reads and checks for zeros).
    fn is_hole(&self, off: u64, len: u64) -> bool {
        let (fd, payload) = match self {
            Reader::Image(img) => (img.file().as_raw_fd(), img.header().payload_offset()),
            Reader::File { file, payload, .. } => (file.as_raw_fd(), *payload),
        };
        let Some(start) = payload.checked_add(off) else {
            return false;
        };
        let Ok(start_i) = i64::try_from(start) else {
            return false;
        };
        // SAFETY: lseek on a valid fd owned by this reader; it only moves the file offset,
        // which atrest never uses (all I/O is positioned).
        let next = unsafe { libc::lseek(fd, start_i, libc::SEEK_DATA) };
        if next < 0 {
            // ENXIO: no data at or after `start` at all.
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO);
        }
        next as u64 >= start.saturating_add(len)
    }
}

/// Worker threads per snapshot operation: chunk I/O, SHA-256 and XTS overlap (the new
/// chunks they stage are made durable in batches: [`chunks::Batch`]).
const WORKERS: usize = 4;
/// Results a worker may hand over before the calling thread takes them (it may be busy
/// making a batch of chunks durable): bounds what is held (open temp files) meanwhile.
const RESULTS_QUEUED: usize = 16;

/// Runs `work(index, scratch)` for every chunk index on [`WORKERS`] threads and hands each
/// result to `done` on the calling thread (in completion order; workers wait while
/// `done` is [`RESULTS_QUEUED`] results behind). Stops at the first error of either.
fn parallel<R: Send>(
    count: u64,
    work: impl Fn(u64, &mut Vec<u8>) -> Result<R, SnapshotError> + Sync,
    mut done: impl FnMut(u64, R) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Result<R, SnapshotError>)>(RESULTS_QUEUED);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            let tx = tx.clone();
            let (next, stop, work) = (&next, &stop, &work);
            s.spawn(move || {
                let mut scratch = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let r = work(i, &mut scratch);
                    let failed = r.is_err();
                    if tx.send((i, r)).is_err() || failed {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut first_err = None;
        for (i, r) in rx {
            match r.and_then(|v| match first_err {
                None => done(i, v),
                Some(_) => Ok(()),
            }) {
                Ok(()) => {}
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

/// Starts (does not wait for) writeback of a written range, so the final fsync of a
/// restored image finds most of it already on disk instead of flushing it all at the end.
fn start_writeback(file: &File, off: u64, len: u64) {
    if let (Ok(o), Ok(l)) = (i64::try_from(off), i64::try_from(len)) {
        // SAFETY: sync_file_range on our own valid fd; only a hint, errors are irrelevant
        // because the image is fsync'd before it is linked into place.
        unsafe { libc::sync_file_range(file.as_raw_fd(), o, l, libc::SYNC_FILE_RANGE_WRITE) };
    }
}

/// The changed-block record behind one snapshot: an open image's tracker (rotated to a
/// new generation for the length of the snapshot), a quiet image's claimed tracker file, or
/// none (the snapshot reads everything and leaves no base).
enum Tracking<'a> {
    None,
    Live(&'a Tracker, Rotation),
    Claimed(Claim),
}

impl<'a> Tracking<'a> {
    fn start(reader: &Reader<'a>, header: &VolumeHeader) -> Tracking<'a> {
        match reader {
            Reader::Image(img) => match img.tracker() {
                Some(t) => {
                    let r = t.rotate();
                    Tracking::Live(t, r)
                }
                None => Tracking::None,
            },
            Reader::File { file, path, .. } => match Claim::take(path, file, header) {
                Ok(Some(c)) => Tracking::Claimed(c),
                Ok(None) => {
                    tracing::info!(image = %path.display(), "the image has a writer: reading the whole volume, leaving its tracker alone");
                    Tracking::None
                }
                Err(e) => {
                    tracing::warn!(image = %path.display(), error = %e, "no changed-block tracking for this snapshot");
                    Tracking::None
                }
            },
        }
    }

    /// The base snapshot and the chunks written since, if the record is complete.
    fn changes(&self) -> Option<(&str, &Bitmap)> {
        match self {
            Tracking::None => None,
            Tracking::Live(_, r) => r.base.as_deref().map(|b| (b, &r.changed)),
            Tracking::Claimed(c) => c.changes(),
        }
    }

    /// The snapshot completed: the record restarts from it. A failure here leaves a record
    /// that is still complete for its old base, or void.
    fn commit(self, snapshot_id: &str) {
        let r = match self {
            Tracking::None => Ok(()),
            Tracking::Live(t, _) => t.commit(snapshot_id),
            Tracking::Claimed(c) => c.reset(snapshot_id),
        };
        if let Err(e) = r {
            tracing::warn!(snapshot_id, error = %e, "changed-block record not reset: the next snapshot may read more");
        }
    }

    /// The snapshot failed: an open image's rotated chunks count as written again.
    fn abort(self) {
        if let Tracking::Live(t, r) = self {
            t.abort(r);
        }
    }
}

/// The snapshot store in one directory.
pub struct SnapshotStore {
    dir: PathBuf,
    chunks: ChunkStore,
    manifests: PathBuf,
}

/// Checks a snapshot ID is a safe file name.
pub fn validate_id(id: &str) -> Result<(), SnapshotError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::InvalidId(id.to_string()))
    }
}

struct Flock(File);

impl Drop for Flock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own valid fd.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl SnapshotStore {
    /// Opens (creating if needed) a store in `dir` (normally `Layout::snapshots_dir()`).
    pub fn open(dir: &Path) -> Result<SnapshotStore, SnapshotError> {
        let chunks = dir.join("chunks");
        let manifests = dir.join("manifests");
        for d in [dir, &chunks, &manifests] {
            plumbing::durable::ensure_dir(d, 0o700).map_err(|e| io("create", d, e))?;
        }
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            chunks: ChunkStore::new(chunks),
            manifests,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self, exclusive: bool) -> Result<Flock, SnapshotError> {
        use plumbing::flock::{self, Mode};
        let p = self.dir.join(".lock");
        let f = flock::open(&p, 0o600).map_err(|e| io("open", &p, e))?;
        let mode = if exclusive {
            Mode::Exclusive
        } else {
            Mode::Shared
        };
        flock::lock(&f, mode).map_err(|e| io("lock", &p, e))?;
        Ok(Flock(f))
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.manifests.join(format!("{id}.json"))
    }

    /// Writes a manifest atomically. A `completed` one is durable when this returns; a
    /// `pending` one is not waited for: it only reserves the ID and shows the snapshot
    /// while it is taken, and a crash turns it into garbage for gc whether or not it
    /// reached the disk (the control plane records its own failed state).
    fn write_manifest(&self, m: &Manifest) -> Result<(), SnapshotError> {
        let p = self.manifest_path(&m.snapshot_id);
        let bytes = serde_json::to_vec_pretty(m).map_err(|e| SnapshotError::BadManifest {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        match m.state {
            SnapshotState::Completed => plumbing::durable::write_atomic(&p, &bytes, 0o600),
            SnapshotState::Pending => plumbing::durable::write_atomic_unsynced(&p, &bytes, 0o600),
        }
        .map_err(|e| io("write", &p, e))
    }

    fn read_manifest_at(path: &Path) -> Result<Manifest, SnapshotError> {
        let bytes = fs::read(path).map_err(|e| io("read", path, e))?;
        parse_manifest(path, &bytes)
    }

    /// The manifest of a snapshot (pending or completed).
    pub fn get(&self, id: &str) -> Result<Manifest, SnapshotError> {
        validate_id(id)?;
        let p = self.manifest_path(id);
        if !p.exists() {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        Self::read_manifest_at(&p)
    }

    /// Every manifest, by snapshot ID. An unreadable manifest is an error, never skipped.
    pub fn list(&self) -> Result<BTreeMap<String, Manifest>, SnapshotError> {
        let mut out = BTreeMap::new();
        for ent in fs::read_dir(&self.manifests).map_err(|e| io("list", &self.manifests, e))? {
            let ent = ent.map_err(|e| io("list", &self.manifests, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue; // a write_atomic temp file
            }
            let m = Self::read_manifest_at(&ent.path())?;
            out.insert(id.to_string(), m);
        }
        Ok(out)
    }

    /// Takes a snapshot: every non-zero chunk of the stored payload, content-addressed; a
    /// chunk already in the store (from an earlier snapshot) is not written again.
    ///
    /// With a complete changed-block record (see [`super::tracker`]) whose base is a
    /// completed snapshot of the same volume, only the chunks written since the base are
    /// read; the others are the base's entries. Otherwise the whole payload is read. The
    /// record is then reset to the new snapshot: an open image's tracker by generation
    /// (writes may go on meanwhile), a quiet image's by claiming its file; a tracker held
    /// by a writer of a quiet-image source is left alone.
    pub fn create(
        &self,
        source: SnapshotSource<'_>,
        snapshot_id: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Manifest, SnapshotError> {
        validate_id(snapshot_id)?;
        let _lock = self.lock(false)?;
        let (reader, header): (Reader<'_>, VolumeHeader) = match source {
            SnapshotSource::Image(img) => (Reader::Image(img), img.header().clone()),
            SnapshotSource::Path(p) => {
                let file = File::open(p).map_err(|e| io("open", p, e))?;
                let h = read_header_from(&file, p)?;
                let len = file.metadata().map_err(|e| io("stat", p, e))?.len();
                let need = h.payload_offset().saturating_add(h.size_bytes());
                if len < need {
                    return Err(VolumeError::ImageTruncated {
                        path: p.to_path_buf(),
                        expected: need,
                        actual: len,
                    }
                    .into());
                }
                let payload = h.payload_offset();
                (
                    Reader::File {
                        file,
                        path: p.to_path_buf(),
                        payload,
                    },
                    h,
                )
            }
        };
        // A lazily restored image holds only the chunks filled so far (the rest are holes
        // until its copier reaches them): snapshotting it would store holes for data.
        let image_path = match &reader {
            Reader::Image(img) => img.path(),
            Reader::File { path, .. } => path.as_path(),
        };
        if crate::volume::lazy::is_restoring(image_path) {
            return Err(SnapshotError::Restoring(image_path.to_path_buf()));
        }
        let mpath = self.manifest_path(snapshot_id);
        if mpath.exists() {
            return Err(SnapshotError::AlreadyExists(snapshot_id.to_string()));
        }
        let tracking = Tracking::start(&reader, &header);
        let base = tracking
            .changes()
            .and_then(|(base, changed)| self.incremental_base(&header, base, changed));
        let size = header.size_bytes();
        let mut m = Manifest {
            format: MANIFEST_FORMAT,
            snapshot_id: snapshot_id.to_string(),
            state: SnapshotState::Pending,
            volume: header.params.clone(),
            chunk_size: CHUNK_SIZE,
            chunks: Vec::new(),
            referenced_bytes: 0,
            new_bytes: 0,
            created_at: plumbing::awstime::now_rfc3339(),
            incremental_from: base.as_ref().map(|b| b.snapshot_id.clone()),
        };
        let result = self.write_manifest(&m).and_then(|()| {
            let incremental = base.as_ref().zip(tracking.changes().map(|c| c.1));
            self.fill_chunks(&reader, &mut m, size, incremental, progress)?;
            m.state = SnapshotState::Completed;
            self.write_manifest(&m)
        });
        if let Err(e) = result {
            // Leave no pending manifest behind; orphan chunks are gc's job.
            let _ = fs::remove_file(&mpath);
            tracking.abort();
            return Err(e);
        }
        tracking.commit(snapshot_id);
        Ok(m)
    }

    /// The completed snapshot `base` if an incremental snapshot of `header`'s volume may
    /// reuse its entries: same volume as stored (ID, size, cipher, wrapped key), same chunk
    /// size, and a change bitmap of the same length. Anything else: read the whole volume.
    fn incremental_base(
        &self,
        header: &VolumeHeader,
        base: &str,
        changed: &Bitmap,
    ) -> Option<Manifest> {
        let m = match self.completed(base) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(base, error = %e, "base snapshot unusable: reading the whole volume");
                return None;
            }
        };
        let count = Manifest::chunk_count(header.size_bytes(), CHUNK_SIZE);
        // The same stored form, down to the wrapped key (so the same data key and the same
        // ciphertext); the volume ID may differ: a volume restored from `base` as stored
        // starts its record relative to it (`super::tracker::seed`).
        let mut as_base = header.params.clone();
        as_base.volume_id.clone_from(&m.volume.volume_id);
        let fits = m.volume == as_base
            && m.chunk_size == CHUNK_SIZE
            && m.chunks.len() as u64 == count
            && changed.count() == count;
        fits.then_some(m)
    }

    /// Reads chunks into `m`: all of them, or (`incremental`) only those set in the bitmap,
    /// the others being the base manifest's entries. Progress counts the chunks read.
    fn fill_chunks(
        &self,
        reader: &Reader<'_>,
        m: &mut Manifest,
        size: u64,
        incremental: Option<(&Manifest, &Bitmap)>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), SnapshotError> {
        let chunk_size = m.chunk_size;
        let count = Manifest::chunk_count(size, chunk_size);
        let len_of = |index: u64| (size - index * chunk_size).min(chunk_size);
        let (indices, mut entries): (Vec<u64>, Vec<Option<String>>) = match incremental {
            Some((base, changed)) => {
                for (i, e) in base.chunks.iter().enumerate() {
                    if e.is_some() && !changed.get(i as u64) {
                        m.referenced_bytes += len_of(i as u64);
                    }
                }
                (changed.ones().collect(), base.chunks.clone())
            }
            None => ((0..count).collect(), vec![None; count as usize]),
        };
        let total: u64 = indices.iter().map(|&i| len_of(i)).sum();
        let mut batch = Batch::new(&self.chunks);
        let mut done_bytes = 0u64;
        progress(Progress { done: 0, total });
        parallel(
            indices.len() as u64,
            |k, buf| {
                let index = indices[k as usize];
                let off = index * chunk_size;
                let len = len_of(index);
                if reader.is_hole(off, len) {
                    return Ok((len, None));
                }
                buf.resize(len as usize, 0);
                reader.read(buf, off)?;
                if is_zero(buf) {
                    return Ok((len, None));
                }
                Ok((len, Some(self.chunks.stage(buf)?)))
            },
            |k, (len, stored)| {
                let index = indices[k as usize] as usize;
                entries[index] = None;
                if let Some((hash, staged)) = stored {
                    match staged {
                        Some(s) => batch.push(s)?,
                        None => batch.present(&hash),
                    }
                    m.referenced_bytes += len;
                    entries[index] = Some(hash);
                }
                done_bytes += len;
                progress(Progress {
                    done: done_bytes,
                    total,
                });
                Ok(())
            },
        )?;
        // Every chunk named below is durable under its name before the manifest is written.
        m.new_bytes += batch.finish()?;
        m.chunks = entries;
        Ok(())
    }

    fn completed(&self, id: &str) -> Result<Manifest, SnapshotError> {
        let m = self.get(id)?;
        if m.state != SnapshotState::Completed {
            return Err(SnapshotError::NotCompleted(id.to_string()));
        }
        Ok(m)
    }

    /// Creates a new volume image at `dest_path` from a snapshot (`create-volume
    /// --snapshot-id`): ciphertext copied for the same key, encrypted for an unencrypted
    /// snapshot with `dest` encrypted, re-encrypted for another key; never decrypted to a
    /// plaintext volume. Written to a temp file and linked into place when complete.
    pub fn restore(
        &self,
        snapshot_id: &str,
        dest_path: &Path,
        dest: &VolumeHeaderParams,
        keys: DataKeys,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<VolumeHeader, SnapshotError> {
        let _lock = self.lock(false)?;
        let m = self.completed(snapshot_id)?;
        if dest.size_bytes < m.volume.size_bytes {
            return Err(SnapshotError::DestinationTooSmall {
                need: m.volume.size_bytes,
                got: dest.size_bytes,
            });
        }
        let plan = copy::plan(&m.volume, dest, keys)?;
        if dest_path.exists() {
            return Err(VolumeError::AlreadyExists(dest_path.to_path_buf()).into());
        }
        let dir = dest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let name = dest_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{name}.restore.{}.{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| -> Result<VolumeHeader, SnapshotError> {
            VolumeImage::create(&tmp, dest)?;
            let file = OpenOptions::new()
                .write(true)
                .open(&tmp)
                .map_err(|e| io("open", &tmp, e))?;
            let payload = dest.payload_offset;
            let total = m.volume.size_bytes;
            let mut done_bytes = 0u64;
            progress(Progress { done: 0, total });
            parallel(
                m.chunks.len() as u64,
                |index, buf| {
                    let off = index * m.chunk_size;
                    let len = m.chunk_len(index as usize);
                    if let Some(hash) = &m.chunks[index as usize] {
                        self.chunks.get(hash, len, buf)?;
                        plan.transform(buf, off)?;
                        file.write_all_at(buf, payload + off)
                            .map_err(|e| io("write", &tmp, e))?;
                        start_writeback(&file, payload + off, len);
                    }
                    Ok(len)
                },
                |_, len| {
                    done_bytes += len;
                    progress(Progress {
                        done: done_bytes,
                        total,
                    });
                    Ok(())
                },
            )?;
            file.sync_all().map_err(|e| io("fsync", &tmp, e))?;
            drop(file);
            fs::hard_link(&tmp, dest_path).map_err(|e| {
                if e.kind() == ErrorKind::AlreadyExists {
                    SnapshotError::Volume(VolumeError::AlreadyExists(dest_path.to_path_buf()))
                } else {
                    io("link", dest_path, e)
                }
            })?;
            let h = VolumeImage::read_header(dest_path)?;
            Ok(h)
        })();
        let _ = fs::remove_file(&tmp);
        let h = result?;
        plumbing::durable::sync_dir(dir).map_err(|e| io("fsync", dir, e))?;
        // Copied as stored into a volume of the same size: the volume is the snapshot, so
        // its first snapshot can be incremental from it. Not fatal: without the record
        // that snapshot reads the whole volume.
        if matches!(plan, copy::CopyPlan::Raw) && m.volume.size_bytes == dest.size_bytes {
            if let Err(e) = VolumeImage::seed_tracker(dest_path, snapshot_id) {
                tracing::warn!(image = %dest_path.display(), snapshot_id, error = %e, "restored volume's changed-block record not started: its first snapshot reads the whole volume");
            }
        }
        Ok(h)
    }

    /// Copies a snapshot to a new snapshot (`copy-snapshot`), possibly under another key:
    /// `dest` gives the new stored form (cipher, key ARN, wrapped key, context; its size is
    /// the source's). A same-key copy shares every chunk and costs no space.
    pub fn copy(
        &self,
        source_id: &str,
        new_id: &str,
        dest: &VolumeHeaderParams,
        keys: DataKeys,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Manifest, SnapshotError> {
        validate_id(new_id)?;
        let _lock = self.lock(false)?;
        let src = self.completed(source_id)?;
        let mut volume = dest.clone();
        volume.size_bytes = src.volume.size_bytes;
        super::format::validate(&volume).map_err(VolumeError::from)?;
        let plan = copy::plan(&src.volume, &volume, keys)?;
        if self.manifest_path(new_id).exists() {
            return Err(SnapshotError::AlreadyExists(new_id.to_string()));
        }
        let mut m = Manifest {
            format: MANIFEST_FORMAT,
            snapshot_id: new_id.to_string(),
            state: SnapshotState::Pending,
            volume,
            chunk_size: src.chunk_size,
            chunks: Vec::with_capacity(src.chunks.len()),
            referenced_bytes: 0,
            new_bytes: 0,
            created_at: plumbing::awstime::now_rfc3339(),
            incremental_from: None,
        };
        self.write_manifest(&m)?;
        let result = (|| -> Result<(), SnapshotError> {
            let total = src.volume.size_bytes;
            let mut entries: Vec<Option<String>> = vec![None; src.chunks.len()];
            let mut batch = Batch::new(&self.chunks);
            let mut done_bytes = 0u64;
            progress(Progress { done: 0, total });
            parallel(
                src.chunks.len() as u64,
                |index, buf| {
                    let off = index * src.chunk_size;
                    let len = src.chunk_len(index as usize);
                    match &src.chunks[index as usize] {
                        None => Ok((len, None)),
                        Some(hash) => {
                            self.chunks.get(hash, len, buf)?;
                            plan.transform(buf, off)?;
                            Ok((len, Some(self.chunks.stage(buf)?)))
                        }
                    }
                },
                |index, (len, stored)| {
                    if let Some((hash, staged)) = stored {
                        match staged {
                            Some(s) => batch.push(s)?,
                            None => batch.present(&hash),
                        }
                        m.referenced_bytes += len;
                        entries[index as usize] = Some(hash);
                    }
                    done_bytes += len;
                    progress(Progress {
                        done: done_bytes,
                        total,
                    });
                    Ok(())
                },
            )?;
            m.new_bytes += batch.finish()?;
            m.chunks = entries;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(self.manifest_path(new_id));
            return Err(e);
        }
        m.state = SnapshotState::Completed;
        self.write_manifest(&m)?;
        Ok(m)
    }

    /// Checks that a completed snapshot's chunks are all present with the right length and
    /// SHA-256. Returns the number of chunks checked.
    pub fn verify(&self, snapshot_id: &str) -> Result<u64, SnapshotError> {
        let _lock = self.lock(false)?;
        let m = self.completed(snapshot_id)?;
        let mut buf = Vec::with_capacity(m.chunk_size as usize);
        let mut n = 0;
        for (index, entry) in m.chunks.iter().enumerate() {
            if let Some(hash) = entry {
                self.chunks.get(hash, m.chunk_len(index), &mut buf)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes a snapshot and frees the chunks no other snapshot references.
    pub fn delete(&self, snapshot_id: &str) -> Result<DeleteReport, SnapshotError> {
        validate_id(snapshot_id)?;
        let _lock = self.lock(true)?;
        gc::delete(self, snapshot_id)
    }

    /// Collects what crashes left: pending manifests (no create is running: gc holds the
    /// exclusive lock), temp files, and chunks no completed manifest references.
    pub fn gc(&self) -> Result<GcReport, SnapshotError> {
        let _lock = self.lock(true)?;
        gc::collect(self)
    }

    /// Bytes used by stored chunks (the store's real cost).
    pub fn stored_bytes(&self) -> Result<u64, SnapshotError> {
        let (names, _) = self.chunks.scan()?;
        Ok(names.iter().map(|h| self.chunks.size_of(h)).sum())
    }
}

/// Reads a manifest's bytes and checks what its types cannot: the format, the chunk size,
/// the volume header's fields, that a completed manifest covers the volume, and the chunk
/// names. `path` names the file in errors (pure, for the fuzz target).
pub fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, SnapshotError> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| SnapshotError::BadManifest {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| SnapshotError::BadManifest {
        path: path.to_path_buf(),
        reason,
    };
    if m.format != MANIFEST_FORMAT {
        return Err(bad(format!("unsupported manifest format {}", m.format)));
    }
    if m.chunk_size == 0 || m.chunk_size % 4096 != 0 {
        return Err(bad(format!("invalid chunk_size {}", m.chunk_size)));
    }
    super::format::validate(&m.volume).map_err(|e| bad(e.to_string()))?;
    if m.state == SnapshotState::Completed
        && m.chunks.len() as u64 != Manifest::chunk_count(m.volume.size_bytes, m.chunk_size)
    {
        return Err(bad("chunk list does not cover the volume".into()));
    }
    if let Some(h) = m.chunks.iter().flatten().find(|h| !chunks::valid_hash(h)) {
        return Err(bad(format!("invalid chunk name {h:?}")));
    }
    Ok(m)
}
