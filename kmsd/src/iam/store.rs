//! The IAM store on disk (`HOME/kms/iam.json`) and in memory.
//!
//! Every change is made on a copy, written whole with
//! [`plumbing::durable::write_atomic`] (temp file, fsync, rename, fsync of the
//! directory) and only then swapped in, so a change is acknowledged only once it is
//! durable, a crash leaves the old file or the new one (never a torn mix: a leftover
//! temp file is ignored and removed at the next open), and readers see one
//! consistent state. Changes are serialized by one lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use plumbing::durable;

use super::{parse_file, IamFile, IamFileError, IAM_FILE};

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IamStoreError {
    #[error("{path}: not an IAM store: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: IamFileError,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The store.
pub struct IamStore {
    path: PathBuf,
    state: RwLock<Arc<IamFile>>,
    write: Mutex<()>,
}

impl std::fmt::Debug for IamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The bytes of the file for `f`: pretty JSON (two-space indent, maps in key order)
/// and a final newline.
pub fn to_bytes(f: &IamFile) -> Vec<u8> {
    // Serializing plain structs, maps with string keys and strings cannot fail.
    let mut out = serde_json::to_vec_pretty(f).unwrap_or_default();
    out.push(b'\n');
    out
}

impl IamStore {
    /// Loads `dir/iam.json` (none yet: an empty store), removing temp files a crash
    /// left behind.
    pub fn open(dir: &Path) -> Result<Self, IamStoreError> {
        let path = dir.join(IAM_FILE);
        sweep_temp_files(dir);
        let file = match std::fs::read(&path) {
            Ok(bytes) => parse_file(&bytes).map_err(|source| IamStoreError::Invalid {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IamFile::default(),
            Err(source) => return Err(IamStoreError::Read { path, source }),
        };
        Ok(IamStore {
            path,
            state: RwLock::new(Arc::new(file)),
            write: Mutex::new(()),
        })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current state.
    pub fn snapshot(&self) -> Arc<IamFile> {
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies `change` to a copy of the state; if it returns `Ok((out, true))`, the
    /// copy is checked ([`parse_file`]'s rules), written durably and swapped in.
    /// `Ok((out, false))`: nothing changed, nothing is written. Then `after` runs on
    /// the (new or unchanged) state and whether it changed, while changes are still
    /// serialized, to publish what is derived from it in the same order. The
    /// closure's own error leaves everything as it was and `after` does not run.
    pub fn change<T, E: From<IamStoreError>>(
        &self,
        change: impl FnOnce(&mut IamFile) -> Result<(T, bool), E>,
        after: impl FnOnce(&Arc<IamFile>, bool) -> Result<(), E>,
    ) -> Result<T, E> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (*self.snapshot()).clone();
        let (out, changed) = change(&mut next)?;
        if !changed {
            after(&self.snapshot(), false)?;
            return Ok(out);
        }
        let bytes = to_bytes(&next);
        // The handlers check every rule before changing; this guards the file
        // against a handler that forgot one.
        parse_file(&bytes).map_err(|source| IamStoreError::Invalid {
            path: self.path.clone(),
            source,
        })?;
        durable::write_atomic(&self.path, &bytes, 0o600).map_err(|source| {
            IamStoreError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        let next = Arc::new(next);
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&next);
        after(&next, true)?;
        Ok(out)
    }
}

/// Removes `.iam.json.tmp.*` files: a write a crash interrupted before its rename.
fn sweep_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{IAM_FILE}.tmp.");
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err, "cannot remove a stale IAM store temp file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::UserRecord;

    fn add_user(s: &IamStore, name: &str) -> Result<(), IamStoreError> {
        s.change(
            |f| {
                f.accounts
                    .entry("111122223333".into())
                    .or_default()
                    .users
                    .insert(
                        name.into(),
                        UserRecord {
                            id: crate::iam::new_id("AIDA"),
                            path: "/".into(),
                            create_date_ms: 1,
                            declared: false,
                            permissions: Default::default(),
                        },
                    );
                Ok::<_, IamStoreError>(((), true))
            },
            |_, _| Ok(()),
        )
    }

    #[test]
    fn changes_survive_reopening_and_temp_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = IamStore::open(dir.path()).unwrap();
        add_user(&s, "alice").unwrap();
        std::fs::write(dir.path().join(".iam.json.tmp.1.2"), b"{torn").unwrap();
        let s = IamStore::open(dir.path()).unwrap();
        assert!(s.snapshot().accounts["111122223333"]
            .users
            .contains_key("alice"));
        assert!(!dir.path().join(".iam.json.tmp.1.2").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_refused_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = IamStore::open(dir.path()).unwrap();
        let r: Result<(), IamStoreError> = s.change(
            |f| {
                f.accounts.entry("1".into()).or_default();
                Err(IamStoreError::Invalid {
                    path: "refused".into(),
                    source: IamFileError::Format(0),
                })
            },
            |_, _| Ok(()),
        );
        assert!(r.is_err());
        assert!(!s.path().exists());
        assert!(s.snapshot().accounts.is_empty());
    }
}
