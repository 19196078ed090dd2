//! One sealed chunk stream written into a fresh file as its plaintext streams in: the body of
//! a PUT, one part of a multipart upload, or a part copied from another object. The
//! plaintext is sealed a chunk at a time (`sse::Sealer`) and written in large batches, so
//! nothing is held whole in memory; writeback starts as the file grows, and [`SealedFile::finish`]
//! makes it durable. The file is removed when the writer is dropped unless [`SealedFile::keep`]
//! was called after the caller committed it somewhere.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::sse::{self, DataKey, Sealer, SseError};
use super::store::StoreError;

/// Sealed bytes gathered before one write(2).
const WRITE_BATCH: usize = 1024 * 1024;
/// Start writeback every this many bytes, so the final fdatasync has little left.
const WRITEBACK_EVERY: u64 = 64 * 1024 * 1024;

/// What [`SealedFile::finish`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Plaintext bytes.
    pub size: u64,
    /// MD5 of the plaintext, if it was asked for.
    pub md5: Option<[u8; 16]>,
}

/// A sealed chunk stream being written into a new file.
pub struct SealedFile {
    path: PathBuf,
    /// The object key, for error messages.
    key: String,
    file: Option<File>,
    sealer: Option<Sealer>,
    out: Vec<u8>,
    /// Sealed bytes written so far, and where writeback was last started.
    written: u64,
    writeback_from: u64,
    md5: Option<md5::Md5>,
    /// Largest plaintext accepted.
    limit: u64,
    size: u64,
    kept: bool,
}

impl SealedFile {
    /// Creates `path` (it must not exist) to hold `key`'s plaintext (at most `limit` bytes)
    /// sealed under `dek` with `prefix` and `aad`; `md5` also hashes the plaintext.
    pub fn create(
        path: PathBuf,
        key: &str,
        seal: (&DataKey, [u8; sse::NONCE_PREFIX_LEN], &[u8]),
        limit: u64,
        md5: bool,
    ) -> Result<SealedFile, StoreError> {
        let (dek, prefix, aad) = seal;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(SealedFile {
            path,
            key: key.to_string(),
            file: Some(file),
            sealer: Some(Sealer::new(dek, prefix, aad)),
            out: Vec::with_capacity(WRITE_BATCH + sse::SEALED_CHUNK_SIZE),
            written: 0,
            writeback_from: 0,
            md5: md5.then(<md5::Md5 as md5::Digest>::new),
            limit,
            size: 0,
            kept: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Seals and writes the next piece of plaintext.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let sealer = self
            .sealer
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("write after finish".into()))?;
        if sealer.plaintext_len().saturating_add(data.len() as u64) > self.limit {
            return Err(StoreError::EntityTooLarge);
        }
        sealer
            .update(data, &mut self.out)
            .map_err(|source| integrity(&self.key, source))?;
        if let Some(h) = self.md5.as_mut() {
            md5::Digest::update(h, data);
        }
        if self.out.len() >= WRITE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Plaintext bytes written so far.
    pub fn len(&self) -> u64 {
        self.sealer
            .as_ref()
            .map_or(self.size, Sealer::plaintext_len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if let Some(f) = self.file.as_mut() {
            crate::pagecache::write_all(f, &self.out).map_err(io_err(&self.path))?;
            self.written += self.out.len() as u64;
            if self.written - self.writeback_from >= WRITEBACK_EVERY {
                start_writeback(f, self.writeback_from, self.written - self.writeback_from);
                self.writeback_from = self.written;
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Seals the last chunk and makes the file durable (fdatasync). The file is still
    /// removed on drop until [`SealedFile::keep`].
    pub fn finish(&mut self) -> Result<Sealed, StoreError> {
        let sealer = self
            .sealer
            .take()
            .ok_or_else(|| StoreError::Corrupt("finish twice".into()))?;
        self.size = sealer
            .finish(&mut self.out)
            .map_err(|source| integrity(&self.key, source))?;
        self.flush()?;
        if let Some(f) = self.file.take() {
            f.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(Sealed {
            size: self.size,
            md5: self.md5.take().map(|h| md5::Digest::finalize(h).into()),
        })
    }

    /// The file now belongs to whoever committed it: dropping no longer removes it.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for SealedFile {
    fn drop(&mut self) {
        if !self.kept {
            self.file.take();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn integrity(key: &str, source: SseError) -> StoreError {
    StoreError::Integrity {
        key: key.to_string(),
        source,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Asks the kernel to start writing a range back now (no waiting), so the data reaches the
/// disk while the upload continues and the final fdatasync only waits for the tail.
fn start_writeback(f: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on an open fd we own; it reads no memory of ours.
    let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE) };
}
