//! The content-addressed chunk store: `chunks/<h[0..2]>/<h>` where h is the hex SHA-256 of
//! the chunk's bytes. A chunk is written to a temp file, fsync'd and renamed, so a chunk at its
//! final name is complete; the caller fsyncs the directories before relying on it.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SnapshotError;

pub struct ChunkStore {
    dir: PathBuf,
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

    /// Stores `data` under its hash unless present. Returns (hash, newly written, directory
    /// to fsync if a new entry was linked).
    pub fn put(&self, data: &[u8]) -> Result<(String, bool, Option<PathBuf>), SnapshotError> {
        let hash = hash_hex(data);
        let path = self.path(&hash);
        if path.exists() {
            return Ok((hash, false, None));
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
        let res = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io("create", &tmp, e))?;
            f.write_all(data).map_err(|e| io("write", &tmp, e))?;
            f.sync_data().map_err(|e| io("fsync", &tmp, e))?;
            // link, not rename: if a concurrent writer stored the same chunk first, keep
            // theirs and report this one as not new.
            match fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(io("link", &path, e)),
            }
        })();
        let _ = fs::remove_file(&tmp);
        let new = res?;
        Ok((hash, new, new.then_some(sub)))
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
