//! Lazy restores in the volume service: who copies, and when.
//!
//! Ownership: the daemon (`atrest mount`, the process with the [`super::runtime::Runtime`])
//! owns every lazy restore. It opens each restoring volume once, as one
//! [`LazyVolume`] that both its copier thread and the mount (when the volume is served) use,
//! and that holds the image's exclusive `flock` for as long as it is open, so no other
//! process can fill or serve the same image meanwhile. Without the daemon, the CLI runs the
//! service in-process and restores the whole snapshot before the volume is `available`
//! (the old way): nobody would be left to copy after the CLI exits.
//!
//! Lifecycle of a restoring volume (registry: `restoring_for` = the principal):
//! - CreateVolume / RunInstances: the data keys are decrypted on the caller's behalf, the
//!   empty image and its fill map are made, the volume is `available` (or attached), and a
//!   copier thread fills it.
//! - A restart (a crash, kill -9, or a stop): [`Ec2Service::resume_restores`] decrypts the
//!   keys again on the recorded principal's behalf and resumes from the fill map.
//! - CreateSnapshot of it first finishes the copy; DeleteVolume (and termination) stops
//!   the copier before the image is removed.
//! - Done: `restoring_for` is cleared and the fill map is gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::error::Ec2Error;
use super::model::{Caller, Snapshot, WrappedKey};
use super::service::Ec2Service;
use super::storage::{self, StorageError};
use crate::volume::LazyVolume;

/// Copier threads per restoring volume (chunk reads, SHA-256 checks and XTS overlap).
const COPIERS: usize = 4;

/// `ATREST_RESTORE_PACE_MS`: a pause in ms before each chunk the background copier copies
/// (0, the default, copies at full speed). Tests and demos use it to watch a restore and
/// to crash the service in the middle of one.
fn pace() -> std::time::Duration {
    let ms = std::env::var("ATREST_RESTORE_PACE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    std::time::Duration::from_millis(ms)
}

struct Active {
    volume: Arc<LazyVolume>,
    stop: AtomicBool,
    copier: Mutex<Option<JoinHandle<()>>>,
}

/// The restores this process owns, by volume ID.
#[derive(Default)]
pub struct Restores {
    active: Mutex<HashMap<String, Arc<Active>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Restores {
    fn get(&self, volume_id: &str) -> Option<Arc<Active>> {
        lock(&self.active).get(volume_id).cloned()
    }

    fn stop_and_join(a: &Active) {
        a.stop.store(true, Ordering::SeqCst);
        if let Some(h) = lock(&a.copier).take() {
            let _ = h.join();
        }
    }

    /// Stops every copier (the fill maps are persisted: the next start resumes).
    pub fn shutdown(&self) {
        let all: Vec<Arc<Active>> = lock(&self.active).drain().map(|(_, a)| a).collect();
        for a in all {
            Self::stop_and_join(&a);
        }
    }
}

impl Ec2Service {
    /// The restoring volume this process serves and fills, if `volume_id` is one.
    pub(crate) fn lazy_volume(&self, volume_id: &str) -> Option<Arc<LazyVolume>> {
        self.restores.get(volume_id).map(|a| Arc::clone(&a.volume))
    }

    /// A volume opened for serving: the restoring volume this process fills (served as is:
    /// the instance's key, just decrypted through its grant, is then dropped), else its
    /// image with `key`. A restore nobody here resumed is refused.
    pub(crate) fn open_served(
        &self,
        volume_id: &str,
        key: Option<crate::volume::XtsKey>,
    ) -> Result<storage::OpenVolume, StorageError> {
        match self.lazy_volume(volume_id) {
            Some(lazy) => {
                let key_arn =
                    Some(lazy.image().header().params.key_arn.clone()).filter(|k| !k.is_empty());
                Ok(storage::OpenVolume {
                    device: lazy,
                    key_arn,
                })
            }
            None if storage::is_restoring(&self.layout, volume_id) => {
                Err(StorageError::Restoring {
                    volume_id: volume_id.to_string(),
                    snapshot_id: storage::snapshot_of_restore(&self.layout, volume_id),
                })
            }
            None => storage::open_volume(&self.layout, volume_id, key),
        }
    }

    /// The lazy restore of CreateVolume --snapshot-id (daemon only): keys on the caller's
    /// behalf, the image and fill map made, the principal recorded, the copier started.
    pub(crate) fn restore_lazily(
        self: &Arc<Self>,
        caller: &Caller,
        snap: &Snapshot,
        volume_id: &str,
        size_bytes: u64,
        new_key: Option<&WrappedKey>,
    ) -> Result<(), Ec2Error> {
        let (source_key, dest_key) = self.data_keys(caller, &snap.snapshot_id, new_key)?;
        let lazy = storage::restore_lazily(
            &self.layout,
            &snap.snapshot_id,
            volume_id,
            size_bytes,
            source_key,
            new_key.zip(dest_key),
        )?;
        self.registry.update(|s| {
            if let Some(v) = s.volumes.get_mut(volume_id) {
                v.restoring_for = Some(caller.principal.clone());
            }
            Ok(())
        })?;
        self.start_copier(volume_id, lazy);
        Ok(())
    }

    fn start_copier(self: &Arc<Self>, volume_id: &str, lazy: LazyVolume) {
        let active = Arc::new(Active {
            volume: Arc::new(lazy),
            stop: AtomicBool::new(false),
            copier: Mutex::new(None),
        });
        lock(&self.restores.active).insert(volume_id.to_string(), Arc::clone(&active));
        let svc = Arc::clone(self);
        let id = volume_id.to_string();
        let copying = Arc::clone(&active);
        let handle = std::thread::Builder::new()
            .name(format!("fill-{id}"))
            .spawn(move || {
                let progress = |done: u64, total: u64| {
                    tracing::debug!(volume = %id, "restored {done} of {total} chunks");
                };
                match copying.volume.fill_all(COPIERS, &copying.stop, pace(), &progress) {
                    Ok(true) => svc.restore_done(&id),
                    Ok(false) => tracing::info!(volume = %id, "restore paused; it resumes at the next start"),
                    Err(e) => tracing::error!(volume = %id, "the restore's copy failed (reads and writes still fill their chunks): {}", super::error::chain(&e)),
                }
            });
        match handle {
            Ok(h) => *lock(&active.copier) = Some(h),
            Err(e) => {
                tracing::error!(volume = %volume_id, "cannot start the restore's copier: {e}")
            }
        }
    }

    /// Every chunk is in: the registry forgets the principal, this process the restore (a
    /// served volume keeps its `LazyVolume`, which is now plain image I/O).
    fn restore_done(&self, volume_id: &str) {
        tracing::info!(volume = %volume_id, "restore complete");
        let res = self.registry.update(|s| {
            if let Some(v) = s.volumes.get_mut(volume_id) {
                v.restoring_for = None;
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::error!(volume = %volume_id, "cannot record the end of the restore: {e}");
        }
        lock(&self.restores.active).remove(volume_id);
    }

    /// Finishes a volume's restore now (CreateSnapshot reads the image as stored). A
    /// restoring volume this process does not own is refused (`IncorrectState`).
    pub(crate) fn finish_restore(&self, volume_id: &str) -> Result<(), Ec2Error> {
        if let Some(a) = self.restores.get(volume_id) {
            let never = AtomicBool::new(false);
            let done = a
                .volume
                .fill_all(COPIERS, &never, std::time::Duration::ZERO, &|_, _| {})
                .map_err(|e| StorageError::Lazy {
                    volume_id: volume_id.to_string(),
                    source: e,
                })?;
            if done {
                self.restore_done(volume_id);
            }
        }
        Ok(())
    }

    /// Stops a volume's copier before its image is removed (DeleteVolume, termination).
    pub(crate) fn cancel_restore(&self, volume_id: &str) {
        let a = lock(&self.restores.active).remove(volume_id);
        if let Some(a) = a {
            Restores::stop_and_join(&a);
        }
    }

    /// At the daemon's start: every volume whose restore a stopped or crashed service left
    /// is opened again and its copy resumed, with the data keys decrypted on behalf of the
    /// principal it was created for. A refusal (key disabled) is logged; the volume then
    /// cannot be served until a later start resumes it.
    pub fn resume_restores(self: &Arc<Self>) {
        let state = match self.registry.read() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot read the registry to resume restores: {e}");
                return;
            }
        };
        for v in state.volumes.values() {
            let (Some(principal), Some(snapshot_id)) = (&v.restoring_for, &v.snapshot_id) else {
                continue;
            };
            if self.restores.get(&v.volume_id).is_some() {
                continue;
            }
            if !storage::is_restoring(&self.layout, &v.volume_id) {
                // Finished just before the stop: only the registry was not told.
                self.restore_done(&v.volume_id);
                continue;
            }
            let caller = Caller {
                uid: 0,
                gid: 0,
                pid: std::process::id(),
                principal: principal.clone(),
                signer: None,
            };
            let res = (|| -> Result<LazyVolume, Ec2Error> {
                let wrapped = storage::volume_key(&self.layout, &v.volume_id)?;
                let (source_key, dest_key) =
                    self.data_keys(&caller, snapshot_id, wrapped.as_ref())?;
                Ok(storage::resume_lazily(
                    &self.layout,
                    snapshot_id,
                    &v.volume_id,
                    source_key,
                    dest_key,
                )?)
            })();
            match res {
                Ok(lazy) => {
                    let (done, total) = lazy.progress();
                    tracing::info!(volume = %v.volume_id, "resuming the restore from {snapshot_id} at {done} of {total} chunks");
                    self.start_copier(&v.volume_id, lazy);
                }
                Err(e) => {
                    tracing::error!(volume = %v.volume_id, "cannot resume the restore from {snapshot_id}: {e}")
                }
            }
        }
    }
}
