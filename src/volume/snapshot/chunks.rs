//! The content-addressed chunk store: `chunks/<h[0..2]>/<h>` where h is the hex SHA-256 of
//! the chunk's bytes. A chunk is written to a temp file, fsync'd and linked to its final name,
//! so a chunk at its final name is complete; its directory is fsync'd before a manifest
//! names it.
//!
//! Storing is split in two so that the disk waits of many chunks overlap: workers
//! [`ChunkStore::stage`] chunks (hash, write to a temp file, start writeback), and one
//! [`Batch`] makes them durable a batch at a time (all fdatasyncs of a batch at once, which
//! the journal serves with one or two commits, instead of one wait per chunk), links them,
//! and at the end fsyncs each directory that gained a name once, all at once. An
//! incremental snapshot of a few chunks then waits for about two commits instead of two
//! per chunk.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SnapshotError;

/// Staged chunks made durable and linked together (bounds the open temp files too).
const BATCH: usize = 64;
/// Most fsyncs a batch has in flight at once (they wait on the disk, not the CPU).
const SYNC_THREADS: usize = 16;

pub struct ChunkStore {
    dir: PathBuf,
}

/// A chunk written to a temp file beside its final name, neither durable nor linked yet.
/// Dropping it removes the temp file (linked or not: the final name is a second link).
pub struct Staged {
    hash: String,
    len: u64,
    file: File,
    tmp: PathBuf,
    sub: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Chunks staged by one operation (a snapshot, a copy), made durable and linked
/// [`BATCH`] at a time; [`Batch::finish`] makes every new name durable.
pub struct Batch<'a> {
    store: &'a ChunkStore,
    staged: Vec<Staged>,
    dirs: BTreeSet<PathBuf>,
    new_bytes: u64,
}

impl<'a> Batch<'a> {
    pub fn new(store: &'a ChunkStore) -> Batch<'a> {
        Batch {
            store,
            staged: Vec::new(),
            dirs: BTreeSet::new(),
            new_bytes: 0,
        }
    }

    /// Notes a chunk [`ChunkStore::stage`] found present: another operation may have
    /// linked it without having synced its directory yet, so [`Self::finish`] syncs it too.
    pub fn present(&mut self, hash: &str) {
        if valid_hash(hash) {
            self.dirs.insert(self.store.dir.join(&hash[..2]));
        }
    }

    /// Adds a staged chunk; a full batch is made durable and linked before this returns.
    pub fn push(&mut self, s: Staged) -> Result<(), SnapshotError> {
        self.staged.push(s);
        if self.staged.len() >= BATCH {
            self.link()?;
        }
        Ok(())
    }

    fn link(&mut self) -> Result<(), SnapshotError> {
        let batch = std::mem::take(&mut self.staged);
        let new = self.store.link_batch(&batch)?;
        for (s, new) in batch.iter().zip(new) {
            if new {
                self.new_bytes += s.len;
                self.dirs.insert(s.sub.clone());
            }
        }
        Ok(())
    }

    /// Makes every chunk pushed durable under its name: the rest is linked, then each
    /// directory that gained a name is fsync'd (all at once). Returns the bytes of the
    /// chunks that were new to the store.
    pub fn finish(mut self) -> Result<u64, SnapshotError> {
        self.link()?;
        let dirs: Vec<PathBuf> = std::mem::take(&mut self.dirs).into_iter().collect();
        all_at_once(&dirs, |d| {
            plumbing::durable::sync_dir(d).map_err(|e| io("fsync", d, e))
        })?;
        Ok(self.new_bytes)
    }
}

/// Runs `f` on every item from up to [`SYNC_THREADS`] threads (blocking disk waits that
/// overlap); the first error wins.
fn all_at_once<T: Sync>(
    items: &[T],
    f: impl Fn(&T) -> Result<(), SnapshotError> + Sync,
) -> Result<(), SnapshotError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    if items.len() <= 1 {
        return items.iter().try_for_each(&f);
    }
    let next = AtomicUsize::new(0);
    let threads = items.len().min(SYNC_THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<(), SnapshotError> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return Ok(());
                        };
                        f(item)?;
                    }
                })
            })
            .collect();
        let mut first = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

/// Starts (does not wait for) writeback of a staged chunk, so that its fdatasync in the
/// batch finds the data on its way. Only a hint: the fdatasync reports real errors.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range on our own valid fd; no memory is passed.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

pub fn hash_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A chunk name is exactly 64 lowercase hex digits (also guards paths built from manifests).
pub fn valid_hash(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> SnapshotError {
    SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source: e,
    }
}

impl ChunkStore {
    pub fn new(dir: PathBuf) -> Self {
        ChunkStore { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(hash)
    }

    /// First half of storing `data` under its hash: unless the store holds it already, the
    /// bytes go to a temp file beside the final name and their writeback is started. Nothing
    /// is durable or visible under the hash yet: hand the [`Staged`] chunk to a [`Batch`].
    /// Returns the hash, and the staged chunk if it was not present.
    pub fn stage(&self, data: &[u8]) -> Result<(String, Option<Staged>), SnapshotError> {
        let hash = hash_hex(data);
        let path = self.path(&hash);
        if path.exists() {
            return Ok((hash, None));
        }
        let sub = self.dir.join(&hash[..2]);
        if !sub.exists() {
            plumbing::durable::ensure_dir(&sub, 0o700).map_err(|e| io("create", &sub, e))?;
            plumbing::durable::sync_dir(&self.dir).map_err(|e| io("fsync", &self.dir, e))?;
        }
        let tmp = sub.join(format!(
            ".{hash}.tmp.{}.{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create", &tmp, e))?;
        // From here on, dropping `staged` (an error below) removes the temp file.
        let mut staged = Staged {
            hash: hash.clone(),
            len: data.len() as u64,
            file,
            tmp,
            sub,
        };
        staged
            .file
            .write_all(data)
            .map_err(|e| io("write", &staged.tmp, e))?;
        start_writeback(&staged.file);
        Ok((hash, Some(staged)))
    }

    /// Second half of storing a batch of staged chunks: every one is made durable
    /// (fdatasync, all at once, so they share the file system's journal commits) and then
    /// linked to its final name. Returns, in order, whether each chunk was new (a concurrent
    /// writer may have linked the same chunk first: theirs is kept). The new names are not
    /// durable until their directories are synced ([`Batch::finish`]).
    fn link_batch(&self, batch: &[Staged]) -> Result<Vec<bool>, SnapshotError> {
        all_at_once(batch, |s| {
            s.file.sync_data().map_err(|e| io("fsync", &s.tmp, e))
        })?;
        let mut new = Vec::with_capacity(batch.len());
        for s in batch {
            let path = self.path(&s.hash);
            // link, not rename: if a concurrent writer stored the same chunk first, keep
            // theirs and report this one as not new.
            match fs::hard_link(&s.tmp, &path) {
                Ok(()) => new.push(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => new.push(false),
                Err(e) => return Err(io("link", &path, e)),
            }
        }
        Ok(new)
    }

    /// Reads a chunk and checks its hash and length.
    pub fn get(
        &self,
        hash: &str,
        expected_len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), SnapshotError> {
        if !valid_hash(hash) {
            return Err(SnapshotError::CorruptChunk {
                hash: hash.to_string(),
                reason: "not a SHA-256 hex name".into(),
            });
        }
        let path = self.path(hash);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(SnapshotError::MissingChunk {
                    hash: hash.to_string(),
                })
            }
            Err(e) => return Err(io("open", &path, e)),
        };
        buf.clear();
        f.read_to_end(buf).map_err(|e| io("read", &path, e))?;
        if buf.len() as u64 != expected_len {
            return Err(SnapshotError::CorruptChunk {
                hash: hash.to_string(),
                reason: format!("{} bytes, expected {expected_len}", buf.len()),
            });
        }
        if hash_hex(buf) != hash {
            return Err(SnapshotError::CorruptChunk {
                hash: hash.to_string(),
                reason: "content does not match its SHA-256".into(),
            });
        }
        Ok(())
    }

    /// Every chunk name present, plus leftover temp files (from a crash mid-write).
    pub fn scan(&self) -> Result<(BTreeSet<String>, Vec<PathBuf>), SnapshotError> {
        let mut chunks = BTreeSet::new();
        let mut temps = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((chunks, temps)),
            Err(e) => return Err(io("list", &self.dir, e)),
        };
        for sub in rd {
            let sub = sub.map_err(|e| io("list", &self.dir, e))?.path();
            if !sub.is_dir() {
                continue;
            }
            for ent in fs::read_dir(&sub).map_err(|e| io("list", &sub, e))? {
                let ent = ent.map_err(|e| io("list", &sub, e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if valid_hash(&name) {
                    chunks.insert(name);
                } else if name.starts_with('.') && name.contains(".tmp.") {
                    temps.push(ent.path());
                }
            }
        }
        Ok((chunks, temps))
    }

    /// Size of a stored chunk in bytes (0 if absent).
    pub fn size_of(&self, hash: &str) -> u64 {
        fs::metadata(self.path(hash)).map(|m| m.len()).unwrap_or(0)
    }

    pub fn remove(&self, hash: &str) -> Result<(), SnapshotError> {
        let p = self.path(hash);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_stores_each_chunk_once_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::new(dir.path().join("chunks"));
        let a = vec![1u8; 4096];
        let b = vec![2u8; 8192];
        let mut batch = Batch::new(&store);
        // More than one batch, with the same chunk staged twice in one of them.
        let mut hashes = Vec::new();
        for i in 0..BATCH + 3 {
            let data = if i % 2 == 0 {
                a.clone()
            } else {
                i.to_le_bytes().repeat(512)
            };
            let (hash, staged) = store.stage(&data).unwrap();
            match staged {
                Some(s) => batch.push(s).unwrap(),
                None => batch.present(&hash),
            }
            hashes.push((hash, data.len() as u64));
        }
        let new_bytes = batch.finish().unwrap();
        let distinct: BTreeSet<_> = hashes.iter().cloned().collect();
        assert_eq!(new_bytes, distinct.iter().map(|(_, len)| len).sum::<u64>());
        let mut buf = Vec::new();
        for (hash, len) in &distinct {
            store.get(hash, *len, &mut buf).unwrap();
        }
        // Present now: staging it again writes nothing.
        let (hash, staged) = store.stage(&a).unwrap();
        assert!(staged.is_none());
        assert_eq!(hash, hash_hex(&a));
        // A staged chunk that is dropped (an operation that failed) leaves nothing behind.
        let (hash_b, staged) = store.stage(&b).unwrap();
        drop(staged);
        assert!(!store.path(&hash_b).exists());
        let (names, temps) = store.scan().unwrap();
        assert_eq!(names.len(), distinct.len());
        assert!(temps.is_empty(), "{temps:?}");
    }
}
