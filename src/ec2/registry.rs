//! The durable registry: one JSON file (`HOME/ec2/registry.json`) replaced atomically,
//! and an flock'd lock file (`HOME/ec2/registry.lock`) held across every
//! read-modify-write, so concurrent writers (threads of the daemon, or CLI processes
//! working without it) never lose each other's updates.
//!
//! Each `update` opens the lock file anew, so threads of one process get separate open
//! file descriptions and exclude each other through flock exactly like processes do.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::{Ec2Code, Ec2Error};
use super::model::{State, REGISTRY_FORMAT_VERSION};

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry {path} is not valid")]
    Invalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "registry {path} has format version {found}, this build reads {REGISTRY_FORMAT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("cannot encode the registry")]
    Encode(#[source] serde_json::Error),
}

impl From<RegistryError> for Ec2Error {
    fn from(e: RegistryError) -> Ec2Error {
        Ec2Error::caused_by(Ec2Code::InternalError, &e)
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
    let path = path.to_path_buf();
    move |source| RegistryError::Io {
        action,
        path,
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Registry {
    file: PathBuf,
    lock: PathBuf,
}

/// An held flock; released on drop (closing the descriptor releases it).
struct FileLock {
    _file: File,
}

impl FileLock {
    fn acquire(path: &Path, exclusive: bool) -> Result<FileLock, RegistryError> {
        use plumbing::flock::{self, Mode};
        let file = flock::open(path, 0o600).map_err(io("open", path))?;
        let mode = if exclusive {
            Mode::Exclusive
        } else {
            Mode::Shared
        };
        flock::lock(&file, mode).map_err(io("lock", path))?;
        Ok(FileLock { _file: file })
    }
}

impl Registry {
    /// The registry in `dir` (created 0700 if missing).
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        plumbing::durable::ensure_dir(dir, 0o700).map_err(io("create", dir))?;
        Ok(Registry {
            file: dir.join("registry.json"),
            lock: dir.join("registry.lock"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    fn load(&self) -> Result<State, RegistryError> {
        let bytes = match std::fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    format_version: REGISTRY_FORMAT_VERSION,
                    ..State::default()
                })
            }
            Err(e) => return Err(io("read", &self.file)(e)),
        };
        parse_state(&self.file, &bytes)
    }

    /// A consistent snapshot of the registry (under a shared lock).
    pub fn read(&self) -> Result<State, RegistryError> {
        let _lock = FileLock::acquire(&self.lock, false)?;
        self.load()
    }

    /// Runs `f` on the current state under the exclusive lock; if it succeeds and
    /// changed anything, the new state is written atomically before the lock is
    /// released. If `f` fails nothing is written.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, Ec2Error>,
    ) -> Result<T, Ec2Error> {
        let _lock = FileLock::acquire(&self.lock, true)?;
        let before = self.load()?;
        let mut state = before.clone();
        let out = f(&mut state)?;
        if state != before {
            let json = serde_json::to_vec_pretty(&state).map_err(RegistryError::Encode)?;
            plumbing::durable::write_atomic(&self.file, &json, 0o600)
                .map_err(io("write", &self.file))?;
        }
        Ok(out)
    }
}

/// Reads the registry's bytes (its volumes, snapshots, instances and AMIs); `path` names
/// the file in errors (pure, for the fuzz target).
pub fn parse_state(path: &Path, bytes: &[u8]) -> Result<State, RegistryError> {
    let state: State = serde_json::from_slice(bytes).map_err(|source| RegistryError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    if state.format_version != REGISTRY_FORMAT_VERSION {
        return Err(RegistryError::Version {
            path: path.to_path_buf(),
            found: state.format_version,
        });
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::model::{Tag, Volume, VolumeState};

    fn vol(id: &str) -> Volume {
        Volume {
            volume_id: id.into(),
            size_gib: 1,
            availability_zone: "us-east-1a".into(),
            state: VolumeState::Available,
            encrypted: false,
            kms_key_id: None,
            snapshot_id: None,
            create_time: "t".into(),
            tags: vec![],
            attachment: None,
            progress: 100,
            worker: None,
            error_message: None,
            restoring_for: None,
        }
    }

    #[test]
    fn updates_survive_reopen_and_failures_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        r.update(|s| {
            s.volumes.insert("vol-1".into(), vol("vol-1"));
            Ok(())
        })
        .unwrap();
        let err = r.update(|s| {
            s.volumes.clear();
            Err::<(), _>(Ec2Error::internal("no"))
        });
        assert!(err.is_err());
        let r2 = Registry::open(dir.path()).unwrap();
        assert!(r2.read().unwrap().volumes.contains_key("vol-1"));
    }

    #[test]
    fn concurrent_threads_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        r.update(|s| {
            s.volumes.insert("vol-1".into(), vol("vol-1"));
            Ok(())
        })
        .unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let r = r.clone();
                std::thread::spawn(move || {
                    r.update(|s| {
                        if let Some(v) = s.volumes.get_mut("vol-1") {
                            v.tags.push(Tag {
                                key: format!("k{i}"),
                                value: "v".into(),
                            });
                        }
                        Ok(())
                    })
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(r.read().unwrap().volumes["vol-1"].tags.len(), 16);
    }

    #[test]
    fn corrupt_registry_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        std::fs::write(r.path(), b"{not json").unwrap();
        let e = Ec2Error::from(r.read().unwrap_err());
        assert!(e.message.contains("not valid"), "{e}");
        assert!(r.update(|_| Ok(())).is_err());
        assert_eq!(std::fs::read(r.path()).unwrap(), b"{not json");
    }
}
