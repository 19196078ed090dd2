//! [`VolumeImage`]: one image file, header + sparse payload, read and written at any
//! offset by many threads at once.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, Cipher, VolumeHeader, VolumeHeaderParams, MAX_HEADER_LEN};
use super::key::XtsKey;
use super::rangelock::RangeLock;
use super::readahead::{ReadAhead, Source, WriteCounter, AHEAD_MIN};
use super::tracker::{self, Tracker};
use super::xts::{Xts, TWEAK_UNIT};
use super::VolumeError;

/// Bytes of whole sectors encrypted and written per `pwrite` on the write path.
const WRITE_BATCH: usize = 1 << 20;

/// Runs at least this long start their writeback at once (`sync_file_range`); smaller
/// writes (random 4 KiB I/O) are left to the kernel to merge.
const WRITEBACK_MIN: usize = 256 << 10;

thread_local! {
    /// Per-thread ciphertext staging buffer, reused across writes (no allocation per call).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An open volume image. `read_at`/`write_at` take `&self` and are safe from many threads:
/// they use positioned I/O on one descriptor and lock only the sectors they touch.
pub struct VolumeImage {
    /// Shared with the read-ahead worker (`Arc`), which only reads.
    file: Arc<File>,
    path: PathBuf,
    header: VolumeHeader,
    xts: Option<Arc<Xts>>,
    /// Every write counts itself here, so a read-ahead it overlaps is never handed out.
    writes: Arc<WriteCounter>,
    /// Plaintext read-ahead for a sequential reader (encrypted images; [`Self::read_vec`]).
    ahead: Option<ReadAhead>,
    locks: RangeLock,
    sector: u64,
    size: u64,
    payload: u64,
    /// Changed-block tracking (images served with [`VolumeImage::open_tracked`]).
    tracker: Option<Tracker>,
}

/// Reads and verifies the header of an image file (no key needed).
pub fn read_header_from(file: &File, path: &Path) -> Result<VolumeHeader, VolumeError> {
    let mut buf = vec![0u8; MAX_HEADER_LEN];
    let mut got = 0usize;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(VolumeError::io("read header of", path, e)),
        }
    }
    Ok(format::decode(&buf[..got])?)
}

impl VolumeImage {
    /// Creates a new image: header, zero padding, sparse payload. Written to a temp file,
    /// fsync'd, then linked into place (never replacing an existing file) and the directory
    /// fsync'd.
    /// Starts the changed-block record of the quiet image at `path` relative to the
    /// completed snapshot `base`, whose stored payload the image holds chunk for chunk (a
    /// restore that copied it as stored): [`super::tracker::seed`].
    pub fn seed_tracker(path: &Path, base: &str) -> Result<(), VolumeError> {
        let file = File::open(path).map_err(|e| VolumeError::io("open", path, e))?;
        let header = read_header_from(&file, path)?;
        Ok(super::tracker::seed(path, &file, &header, base)?)
    }

    pub fn create(path: &Path, params: &VolumeHeaderParams) -> Result<(), VolumeError> {
        let header = format::encode(params)?;
        let total = params.payload_offset.checked_add(params.size_bytes).ok_or(
            format::FormatError::Invalid {
                field: "size_bytes",
                reason: "payload end overflows".into(),
            },
        )?;
        if path.exists() {
            return Err(VolumeError::AlreadyExists(path.to_path_buf()));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| {
                VolumeError::io(
                    "create",
                    path,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
                )
            })?
            .to_string_lossy()
            .into_owned();
        let tmp = dir.join(format!(
            ".{name}.tmp.{}.{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| -> Result<(), VolumeError> {
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| VolumeError::io("create", &tmp, e))?;
            f.write_all_at(&header, 0)
                .map_err(|e| VolumeError::io("write header of", &tmp, e))?;
            f.set_len(total)
                .map_err(|e| VolumeError::io("size", &tmp, e))?;
            f.sync_all()
                .map_err(|e| VolumeError::io("fsync", &tmp, e))?;
            drop(f);
            std::fs::hard_link(&tmp, path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    VolumeError::AlreadyExists(path.to_path_buf())
                } else {
                    VolumeError::io("link", path, e)
                }
            })?;
            Ok(())
        })();
        let _ = std::fs::remove_file(&tmp);
        result?;
        plumbing::durable::sync_dir(dir).map_err(|e| VolumeError::io("fsync dir", dir, e))
    }

    /// Reads and verifies an image's header without a key.
    pub fn read_header(path: &Path) -> Result<VolumeHeader, VolumeError> {
        let f = File::open(path).map_err(|e| VolumeError::io("open", path, e))?;
        read_header_from(&f, path)
    }

    /// Opens an image read-write. `key` is required iff the cipher is `aes-xts-plain64`.
    pub fn open(path: &Path, key: Option<XtsKey>) -> Result<VolumeImage, VolumeError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| VolumeError::io("open", path, e))?;
        Self::from_file(file, path, key)
    }

    /// Opens an image read-write with changed-block tracking: every write is recorded in
    /// `<path>.cbt` before it is issued (see [`super::tracker`]), so the next snapshot
    /// reads only the chunks written since the last one. Waits while a snapshot of the
    /// quiet image holds the tracker.
    pub fn open_tracked(path: &Path, key: Option<XtsKey>) -> Result<VolumeImage, VolumeError> {
        let mut img = Self::open(path, key)?;
        img.tracker = Some(Tracker::open(
            &tracker::path_for(path),
            &img.file,
            &img.header,
        )?);
        Ok(img)
    }

    /// The changed-block tracker, if the image was opened with one.
    pub fn tracker(&self) -> Option<&Tracker> {
        self.tracker.as_ref()
    }

    /// Test hook: drops the image as a killed process would (the tracker is not closed
    /// clean).
    #[doc(hidden)]
    pub fn abandon(mut self) {
        if let Some(t) = self.tracker.take() {
            t.abandon();
        }
    }

    /// Opens an image read-only (snapshots read stored bytes this way; writes fail).
    pub fn open_read_only(path: &Path, key: Option<XtsKey>) -> Result<VolumeImage, VolumeError> {
        let file = File::open(path).map_err(|e| VolumeError::io("open", path, e))?;
        Self::from_file(file, path, key)
    }

    fn from_file(file: File, path: &Path, key: Option<XtsKey>) -> Result<VolumeImage, VolumeError> {
        let header = read_header_from(&file, path)?;
        let p = &header.params;
        let expected = p.payload_offset.saturating_add(p.size_bytes);
        let actual = file
            .metadata()
            .map_err(|e| VolumeError::io("stat", path, e))?
            .len();
        if actual < expected {
            return Err(VolumeError::ImageTruncated {
                path: path.to_path_buf(),
                expected,
                actual,
            });
        }
        let xts = match (p.cipher, key) {
            (Cipher::AesXtsPlain64, Some(k)) => Some(Arc::new(Xts::new(&k))),
            (Cipher::AesXtsPlain64, None) => {
                return Err(VolumeError::KeyRequired {
                    volume_id: p.volume_id.clone(),
                })
            }
            (Cipher::None, Some(_)) => {
                return Err(VolumeError::KeyNotExpected {
                    volume_id: p.volume_id.clone(),
                })
            }
            (Cipher::None, None) => None,
        };
        let file = Arc::new(file);
        let writes = Arc::new(WriteCounter::default());
        let ahead = xts.as_ref().map(|xts| {
            ReadAhead::new(Source {
                file: Arc::clone(&file),
                xts: Arc::clone(xts),
                payload: p.payload_offset,
                sector: p.sector_size as usize,
                writes: Arc::clone(&writes),
            })
        });
        Ok(VolumeImage {
            sector: u64::from(p.sector_size),
            size: p.size_bytes,
            payload: p.payload_offset,
            file,
            path: path.to_path_buf(),
            header,
            xts,
            writes,
            ahead,
            locks: RangeLock::new(),
            tracker: None,
        })
    }

    /// Volume size in bytes (what the FUSE file reports).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn header(&self) -> &VolumeHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fdatasync of the backing file: once it returns, every completed write is durable.
    pub fn sync_data(&self) -> Result<(), VolumeError> {
        self.file
            .sync_data()
            .map_err(|e| VolumeError::io("fdatasync", &self.path, e))
    }

    /// Checks `[offset, offset+len)` lies inside the volume; returns the end and the
    /// covered sector range `[first, last_excl)`.
    fn span(&self, offset: u64, len: usize) -> Result<(u64, u64, u64), VolumeError> {
        let len64 = len as u64;
        let end = offset
            .checked_add(len64)
            .filter(|&e| e <= self.size)
            .ok_or(VolumeError::OutOfRange {
                offset,
                len: len64,
                size: self.size,
            })?;
        let first = offset / self.sector;
        let last = end.div_ceil(self.sector);
        Ok((end, first, last))
    }

    fn pread(&self, buf: &mut [u8], payload_off: u64) -> Result<(), VolumeError> {
        // payload_off + len <= size, and payload + size was checked against the file length.
        self.file
            .read_exact_at(buf, self.payload + payload_off)
            .map_err(|e| VolumeError::io("read", &self.path, e))
    }

    fn pwrite(&self, buf: &[u8], payload_off: u64) -> Result<(), VolumeError> {
        crate::pagecache::write_all_at(&self.file, buf, self.payload + payload_off)
            .map_err(|e| VolumeError::io("write", &self.path, e))
    }

    /// Starts (does not wait for) writeback of a run just written, so a long sequential
    /// write reaches the disk while later requests are still being encrypted instead of all
    /// at the final fdatasync. Advisory: durability still comes only from [`Self::sync_data`],
    /// and a failure here is ignored (the fdatasync reports real write errors).
    fn start_writeback(&self, payload_off: u64, len: usize) {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (
            libc::off64_t::try_from(self.payload + payload_off),
            libc::off64_t::try_from(len),
        ) else {
            return;
        };
        // SAFETY: plain syscall on a descriptor we own; no memory is passed.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
        }
    }

    fn unit(payload_off: u64) -> u64 {
        payload_off / TWEAK_UNIT
    }

    /// Reads plaintext. Any offset and length inside the volume.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VolumeError> {
        let (end, first, last) = self.span(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let _g = self.locks.read(first, last);
        let Some(xts) = &self.xts else {
            return self.pread(buf, offset);
        };
        let ss = self.sector as usize;
        let mut pos = offset;
        let mut done = 0usize;
        while pos < end {
            let sec_start = pos / self.sector * self.sector;
            let remaining = end - pos;
            if pos == sec_start && remaining >= self.sector {
                // Aligned run: read straight into the caller's buffer, decrypt in place.
                let n = (remaining / self.sector * self.sector) as usize;
                let out = &mut buf[done..done + n];
                self.pread(out, pos)?;
                xts.decrypt_stored_sectors(out, ss, Self::unit(pos))?;
                pos += n as u64;
                done += n;
            } else {
                let within = (pos - sec_start) as usize;
                let take = (ss - within).min(remaining as usize);
                let mut sec = [0u8; 4096];
                let sec = &mut sec[..ss];
                self.pread(sec, sec_start)?;
                xts.decrypt_stored_sectors(sec, ss, Self::unit(sec_start))?;
                buf[done..done + take].copy_from_slice(&sec[within..within + take]);
                pos += take as u64;
                done += take;
            }
        }
        Ok(())
    }

    /// Reads `len` bytes of plaintext at `offset` into `buf[..len]` (growing `buf` if
    /// needed), like [`Self::read_at`]. A large read that continues the previous one may
    /// be answered by swapping in a buffer the read-ahead already decrypted (see
    /// [`super::readahead`]); `buf` then holds that buffer and its old one is reused.
    pub fn read_vec(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> Result<(), VolumeError> {
        if let Some(ahead) = &self.ahead {
            let whole = offset % self.sector == 0 && len as u64 % self.sector == 0;
            if len >= AHEAD_MIN
                && whole
                && self.span(offset, len).is_ok()
                && ahead.take(buf, offset, len, self.size)
            {
                return Ok(());
            }
        }
        if buf.len() < len {
            buf.resize(len, 0);
        }
        self.read_at(&mut buf[..len], offset)
    }

    /// Reads answered from the read-ahead so far (tests, diagnostics).
    pub fn read_ahead_hits(&self) -> u64 {
        self.ahead.as_ref().map_or(0, ReadAhead::hits)
    }

    /// Writes plaintext at any offset and length inside the volume. Partial sectors are
    /// read-modify-written under the exclusive lock of exactly the sectors touched.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), VolumeError> {
        let (end, first, last) = self.span(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let _write = self.writes.begin();
        let _g = self.locks.write(first, last);
        // Changed-block tracking: the chunks' bits are recorded before the data is written.
        let _tracked = match &self.tracker {
            Some(t) => Some(t.before_write(offset, buf.len() as u64)?),
            None => None,
        };
        let Some(xts) = &self.xts else {
            return self.pwrite(buf, offset);
        };
        let ss = self.sector as usize;
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut pos = offset;
            let mut done = 0usize;
            while pos < end {
                let sec_start = pos / self.sector * self.sector;
                let remaining = end - pos;
                if pos == sec_start && remaining >= self.sector {
                    let n = ((remaining / self.sector * self.sector) as usize).min(WRITE_BATCH);
                    if scratch.len() < n {
                        scratch.resize(n, 0);
                    }
                    let out = &mut scratch[..n];
                    // Encrypt straight from the caller's buffer: no plaintext copy.
                    xts.encrypt_sectors_into(&buf[done..done + n], out, ss, Self::unit(pos))?;
                    self.pwrite(out, pos)?;
                    if n >= WRITEBACK_MIN {
                        self.start_writeback(pos, n);
                    }
                    pos += n as u64;
                    done += n;
                } else {
                    let within = (pos - sec_start) as usize;
                    let take = (ss - within).min(remaining as usize);
                    let mut sec = [0u8; 4096];
                    let sec = &mut sec[..ss];
                    self.pread(sec, sec_start)?;
                    xts.decrypt_stored_sectors(sec, ss, Self::unit(sec_start))?;
                    sec[within..within + take].copy_from_slice(&buf[done..done + take]);
                    xts.encrypt_sectors(sec, ss, Self::unit(sec_start))?;
                    self.pwrite(sec, sec_start)?;
                    pos += take as u64;
                    done += take;
                }
            }
            Ok(())
        })
    }

    /// Reads payload bytes exactly as stored (ciphertext for encrypted volumes) under a
    /// shared lock of the sectors covered, so no sector is seen half-written. Snapshots use it.
    pub fn read_stored_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VolumeError> {
        let (_, first, last) = self.span(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let _g = self.locks.read(first, last);
        self.pread(buf, offset)
    }

    /// Writes payload bytes exactly as given (already in stored form: ciphertext for
    /// encrypted volumes) under an exclusive lock of the sectors covered. Lazy restores fill
    /// chunks this way; `offset` and the length are whole sectors.
    pub(crate) fn write_stored_at(&self, buf: &[u8], offset: u64) -> Result<(), VolumeError> {
        let (_, first, last) = self.span(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let _write = self.writes.begin();
        let _g = self.locks.write(first, last);
        self.pwrite(buf, offset)
    }

    /// The backing file, for hole detection (SEEK_DATA) by the snapshot store.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}
