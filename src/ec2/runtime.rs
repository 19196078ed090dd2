//! What only the daemon has: the FUSE mount serving attached volumes of running
//! instances (with their plaintext keys, in memory only), loop devices, qemu guests,
//! and the grants that let it decrypt. Everything here is forgotten when the daemon
//! exits; the registry says what should be served and the daemon rebuilds the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::api::{DaemonStatus, ServedVolume};
use super::error::{Ec2Code, Ec2Error};
use super::keywatch::{self, KeyChange, TrailFollower};
use super::model::{canonical_device, BootSpec, GrantRef};
use super::storage::OpenVolume;
use crate::boot::{BootError, BootProfile, Guest};
use crate::loopdev::helper::LoopHelper;
use crate::loopdev::{BoundLoop, LoopError, LoopOptions};
use crate::mount::{Mount, MountError, MountHandle, MountOptions, TableError};

/// How long a guest may take to print its ready line.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a guest gets to power off before qemu is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the mount, a loop device or a guest refused.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A served file is still open (answered as `VolumeInUse`).
    #[error("{source} (use --force to detach anyway)")]
    Busy {
        #[source]
        source: MountError,
    },
    #[error("{} is mounted or held: unmount it first, or detach with --force", .device.display())]
    LoopBusy { device: PathBuf },
    #[error("{volume_id} is already being detached")]
    Detaching { volume_id: String },
    #[error("cannot find the loop helper")]
    LoopHelper(#[source] LoopError),
    #[error("cannot mount {}", .mountpoint.display())]
    MountStart {
        mountpoint: PathBuf,
        #[source]
        source: MountError,
    },
    #[error(transparent)]
    Mount(MountError),
    #[error("cannot bind {} to a loop device", .path.display())]
    LoopAttach {
        path: PathBuf,
        #[source]
        source: LoopError,
    },
    #[error("cannot release {}", .device.display())]
    LoopRelease {
        device: PathBuf,
        #[source]
        source: LoopError,
    },
    #[error("{}", .0.reason())]
    Boot(BootError),
}

impl From<RuntimeError> for Ec2Error {
    fn from(e: RuntimeError) -> Ec2Error {
        let code = match e {
            RuntimeError::Busy { .. } | RuntimeError::LoopBusy { .. } => Ec2Code::VolumeInUse,
            RuntimeError::Detaching { .. } => Ec2Code::IncorrectState,
            _ => Ec2Code::InternalError,
        };
        Ec2Error::caused_by(code, &e)
    }
}

/// One volume served by the mount.
pub struct Served {
    pub instance_id: String,
    pub volume_id: String,
    pub device: String,
    pub path: PathBuf,
    /// The loop device bound to `path` (by a child process: see [`Backend::loop_attach`]).
    pub loop_device: Option<BoundLoop>,
    /// The grant the instance decrypts through (encrypted volumes).
    pub grant: Option<GrantRef>,
    /// The KMS key that wraps its data key (`None`: unencrypted).
    pub key_arn: Option<String>,
    /// The key's state as last seen in the trail (`None`: as when attached, enabled).
    key_change: Option<KeyChange>,
    /// Strict revocation dropped its data key: I/O fails until it is detached.
    revoked: bool,
    /// A detach is releasing it (claimed under the lock, done without it).
    detaching: bool,
}

impl Served {
    /// The KMS key state shown to the user (`None`: unencrypted).
    fn key_state(&self) -> Option<String> {
        self.key_arn.as_ref()?;
        Some(
            self.key_change
                .map_or("Enabled", KeyChange::key_state)
                .to_string(),
        )
    }

    /// What the key state means for this volume, when there is something to say.
    fn notice(&self) -> Option<String> {
        let state = self.key_change?.key_state();
        if self.revoked {
            return Some(format!(
                "the KMS key was disabled or scheduled for deletion (now {state}): strict revocation dropped the data key; I/O fails with EKEYREVOKED until {} is detached",
                self.volume_id
            ));
        }
        self.key_change.filter(|c| c.is_unusable()).map(|_| {
            format!(
                "the KMS key is {state}: {} keeps working until it is detached or its instance stops (as in AWS); the next attach or start will fail",
                self.volume_id
            )
        })
    }
}

pub struct Runtime {
    pub mountpoint: PathBuf,
    served: Mutex<Vec<Served>>,
    lifecycle: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    backend: Backend,
    strict_revocation: bool,
    /// Where key changes are read from (see [`Runtime::watch_keys`]).
    trail: Mutex<TrailFollower>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    /// Starts the FUSE mount at `mountpoint`. `strict_revocation`: a key disabled or
    /// scheduled for deletion drops the data keys it wraps at once (drills); otherwise
    /// served volumes keep working until detached, as in AWS.
    /// Key changes are read from the trail in `trail_dir`, from its current end.
    pub fn start(
        mountpoint: &Path,
        strict_revocation: bool,
        trail_dir: &Path,
    ) -> Result<Runtime, RuntimeError> {
        Ok(Runtime {
            mountpoint: mountpoint.to_path_buf(),
            served: Mutex::new(Vec::new()),
            lifecycle: Mutex::new(HashMap::new()),
            backend: Backend::start(mountpoint, strict_revocation)?,
            strict_revocation,
            trail: Mutex::new(TrailFollower::at_end(trail_dir)),
        })
    }

    /// Applies the key changes the trail recorded since the last call. The daemon
    /// calls it periodically, and [`Runtime::status`] before answering, so a key
    /// disabled while attached shows at once: kmsd writes a state-changing event
    /// (fsync'd) before it replies to `DisableKey`.
    pub fn watch_keys(&self) {
        let records = lock(&self.trail).poll();
        for record in records {
            if let Some((change, keys)) = keywatch::key_change(&record) {
                for key in keys {
                    self.key_changed(&key, change);
                }
            }
        }
    }

    /// A key the trail says was disabled or scheduled for deletion: each volume served
    /// under it keeps working until detached (as in AWS), which is logged and shown by
    /// `atrest status`; with strict revocation its data key is dropped now and further
    /// I/O fails with EKEYREVOKED. A key enabled again is recorded as such.
    pub fn key_changed(&self, key_arn: &str, change: KeyChange) {
        let mut served = lock(&self.served);
        for s in served
            .iter_mut()
            .filter(|s| s.key_arn.as_deref() == Some(key_arn))
        {
            // Remembered for `atrest status`, which is how the user hears of it.
            s.key_change = Some(change);
            let state = change.key_state();
            if !change.is_unusable() {
                tracing::info!(volume_id = %s.volume_id, key = %key_arn, "the key is {state} again");
                continue;
            }
            if !self.strict_revocation {
                tracing::warn!(
                    volume_id = %s.volume_id, instance_id = %s.instance_id, key = %key_arn,
                    "the key is now {state}: {} keeps working until it is detached or its instance stops (as in AWS); the next attach or start will fail",
                    s.volume_id
                );
                continue;
            }
            match self.backend.mount.revoke(&s.volume_id) {
                Ok(()) => {
                    s.revoked = true;
                    tracing::warn!(
                        volume_id = %s.volume_id, instance_id = %s.instance_id, key = %key_arn,
                        "the key is now {state}: strict revocation dropped the data key of {}; its I/O fails with EKEYREVOKED until it is detached",
                        s.volume_id
                    )
                }
                Err(e) => tracing::error!(volume_id = %s.volume_id, "cannot revoke: {e}"),
            }
        }
    }

    /// The lock that serializes start and stop of one instance.
    pub fn lifecycle_lock(&self, instance_id: &str) -> Arc<Mutex<()>> {
        Arc::clone(
            lock(&self.lifecycle)
                .entry(instance_id.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(()))),
        )
    }

    /// Serves `image` as `MOUNTPOINT/<instance>/<device>` (and binds a loop device),
    /// remembering the grant it was decrypted through. On error the caller still owns
    /// the grant (it passed a clone) and retires it.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &self,
        instance_id: &str,
        device: &str,
        image: OpenVolume,
        uid: u32,
        gid: u32,
        volume_id: &str,
        grant: Option<GrantRef>,
        loop_device: bool,
    ) -> Result<PathBuf, RuntimeError> {
        let name = canonical_device(device);
        let key_arn = image.key_arn;
        let path = self
            .backend
            .mount
            .add(instance_id, &name, image.device, uid, gid, volume_id)
            .map_err(mount_err)?;
        let loop_dev = if loop_device {
            match self.backend.loop_attach(&path) {
                Ok(d) => Some(d),
                Err(e) => {
                    let _ = self.backend.remove(instance_id, &name, true);
                    return Err(e);
                }
            }
        } else {
            None
        };
        lock(&self.served).push(Served {
            instance_id: instance_id.into(),
            volume_id: volume_id.into(),
            device: device.into(),
            path: path.clone(),
            loop_device: loop_dev,
            grant,
            key_arn,
            key_change: None,
            revoked: false,
            detaching: false,
        });
        Ok(path)
    }

    /// Stops serving one volume (releasing its loop device). Refused while the file or
    /// loop device is busy unless `force`.
    ///
    /// The entry is claimed under the `served` lock and released without it: the loop
    /// helper and the wait for a closing file take seconds, and status and key changes
    /// must not wait on them. A second detach of the same volume meanwhile is refused.
    pub fn remove(
        &self,
        instance_id: &str,
        volume_id: &str,
        force: bool,
    ) -> Result<Option<Served>, RuntimeError> {
        let is_it = |s: &Served| s.instance_id == instance_id && s.volume_id == volume_id;
        let (bound, device) = {
            let mut served = lock(&self.served);
            let Some(s) = served.iter_mut().find(|s| is_it(s)) else {
                return Ok(None);
            };
            if s.detaching {
                return Err(RuntimeError::Detaching {
                    volume_id: volume_id.to_string(),
                });
            }
            s.detaching = true;
            (s.loop_device.clone(), canonical_device(&s.device))
        };
        let result = self.release(instance_id, volume_id, bound, &device, force);
        let mut served = lock(&self.served);
        let pos = served.iter().position(is_it);
        match result {
            Ok(()) => Ok(pos.map(|p| served.remove(p))),
            Err(e) => {
                if let Some(p) = pos {
                    served[p].detaching = false;
                }
                Err(e)
            }
        }
    }

    /// The work of [`Runtime::remove`], without the `served` lock held.
    fn release(
        &self,
        instance_id: &str,
        volume_id: &str,
        bound: Option<BoundLoop>,
        device: &str,
        force: bool,
    ) -> Result<(), RuntimeError> {
        if let Some(bound) = bound {
            self.backend.loop_detach(&bound, force)?;
            // Released: forget it now. If stopping the file fails below, a retried detach
            // must not clear /dev/loopN again: by then it may be someone else's.
            if let Some(s) = lock(&self.served)
                .iter_mut()
                .find(|s| s.instance_id == instance_id && s.volume_id == volume_id)
            {
                s.loop_device = None;
            }
        }
        self.backend.remove(instance_id, device, force)
    }

    /// The served volumes of one instance.
    pub fn served_of(&self, instance_id: &str) -> Vec<(String, PathBuf, Option<String>)> {
        lock(&self.served)
            .iter()
            .filter(|s| s.instance_id == instance_id)
            .map(|s| (s.volume_id.clone(), s.path.clone(), loop_path(s)))
            .collect()
    }

    pub fn status(&self) -> DaemonStatus {
        self.watch_keys();
        DaemonStatus {
            pid: std::process::id(),
            mountpoint: Some(self.mountpoint.clone()),
            served: lock(&self.served)
                .iter()
                .map(|s| ServedVolume {
                    instance_id: s.instance_id.clone(),
                    volume_id: s.volume_id.clone(),
                    path: s.path.clone(),
                    loop_device: loop_path(s),
                    key_state: s.key_state(),
                    notice: s.notice(),
                })
                .collect(),
        }
    }

    pub fn start_guest(
        &self,
        instance_id: &str,
        spec: &BootSpec,
        disk: &Path,
        volume_id: &str,
        console: &Path,
    ) -> Result<(), RuntimeError> {
        self.backend
            .start_guest(instance_id, spec, disk, volume_id, console)
    }

    pub fn stop_guest(&self, instance_id: &str) -> Result<(), RuntimeError> {
        self.backend.stop_guest(instance_id)
    }

    /// Blocks until the instance's guest has exited (at once if it has none).
    pub fn wait_guest(&self, instance_id: &str) {
        self.backend.wait_guest(instance_id)
    }

    pub fn shutdown(&self) {
        self.backend.shutdown();
    }
}

/// `/dev/loopN` of a served volume's loop device, as the CLI shows it.
fn loop_path(s: &Served) -> Option<String> {
    s.loop_device
        .as_ref()
        .map(|l| l.device.path().display().to_string())
}

// ---- the mount, loop and boot parts ----------------------------------------------------

struct Backend {
    mount: MountHandle,
    /// Loop devices are bound and released by a child process (this binary again).
    loops: LoopHelper,
    guests: Mutex<HashMap<String, Arc<Guest>>>,
}

fn mount_err(e: MountError) -> RuntimeError {
    match e {
        MountError::Table(TableError::Busy { .. }) | MountError::Busy { .. } => {
            RuntimeError::Busy { source: e }
        }
        other => RuntimeError::Mount(other),
    }
}

/// Whether a block device is mounted (or held by device-mapper and the like).
fn block_device_busy(dev: &Path) -> bool {
    let name = dev
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let holders = std::fs::read_dir(format!("/sys/block/{name}/holders"))
        .map(|d| d.count() > 0)
        .unwrap_or(false);
    let dev_s = dev.to_string_lossy();
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                l.split(" - ")
                    .nth(1)
                    .is_some_and(|r| r.split(' ').nth(1) == Some(&*dev_s))
            })
        })
        .unwrap_or(false);
    holders || mounted
}

impl Backend {
    fn start(mountpoint: &Path, strict_revocation: bool) -> Result<Backend, RuntimeError> {
        let mut opts = MountOptions::new(mountpoint);
        opts.strict_revocation = strict_revocation;
        // This process binds loop devices over its own files (through a child): any
        // lookup or open of the mount from here is a bug, refused rather than risked.
        opts.refuse_own_process = true;
        let loops = LoopHelper::this_program().map_err(RuntimeError::LoopHelper)?;
        let mount = Mount::start(opts).map_err(|source| RuntimeError::MountStart {
            mountpoint: mountpoint.to_path_buf(),
            source,
        })?;
        Ok(Backend {
            mount,
            loops,
            guests: Mutex::new(HashMap::new()),
        })
    }

    /// Stops serving; a file still open (a loop device releasing, qemu exiting) gets a
    /// moment to be closed before `force` is needed.
    fn remove(&self, instance_id: &str, device: &str, force: bool) -> Result<(), RuntimeError> {
        if force {
            return self
                .mount
                .force_remove(instance_id, device)
                .map_err(mount_err);
        }
        let start = std::time::Instant::now();
        loop {
            match self.mount.remove(instance_id, device) {
                Ok(()) => return Ok(()),
                Err(MountError::Table(TableError::NotServed { .. })) => return Ok(()),
                Err(e @ MountError::Table(TableError::Busy { .. }))
                    if start.elapsed() > std::time::Duration::from_secs(3) =>
                {
                    return Err(mount_err(e))
                }
                Err(MountError::Table(TableError::Busy { .. })) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => return Err(mount_err(e)),
            }
        }
    }

    /// Binds a served file to a loop device (direct I/O, so pages are not cached twice).
    /// The child process opens the file: this process never touches its own mount.
    fn loop_attach(&self, path: &Path) -> Result<BoundLoop, RuntimeError> {
        self.loops
            .attach(
                path,
                &LoopOptions {
                    direct_io: true,
                    ..LoopOptions::default()
                },
            )
            .map_err(|source| RuntimeError::LoopAttach {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Releases a loop device (in a child, and only while it still holds the file it was
    /// bound to); refused while it is mounted unless `force` (then the kernel releases
    /// it at the last close, as `losetup -d` does).
    fn loop_detach(&self, bound: &BoundLoop, force: bool) -> Result<(), RuntimeError> {
        let device = bound.device.path();
        if !force && block_device_busy(&device) {
            return Err(RuntimeError::LoopBusy { device });
        }
        self.loops
            .detach(bound)
            .map(|_| ())
            .map_err(|source| RuntimeError::LoopRelease { device, source })
    }

    /// Boots the guest from `disk` (the served root file) through a loop device
    /// (direct I/O, so pages are not cached twice) and waits for its ready line.
    fn start_guest(
        &self,
        instance_id: &str,
        spec: &BootSpec,
        disk: &Path,
        volume_id: &str,
        console: &Path,
    ) -> Result<(), RuntimeError> {
        let mut profile = BootProfile::demo_guest(Path::new("/"));
        profile.kernel = spec.kernel.clone();
        profile.initrd = spec.initrd.clone();
        let guest = Guest::start_on_loop(&profile, disk, volume_id, console, true)
            .map_err(RuntimeError::Boot)?;
        let guest = Arc::new(guest);
        lock(&self.guests).insert(instance_id.to_string(), Arc::clone(&guest));
        match guest.wait_for_ready(BOOT_TIMEOUT) {
            Ok(line) => {
                tracing::info!(instance = %instance_id, "guest ready: {}", line.line);
                Ok(())
            }
            Err(e) => {
                lock(&self.guests).remove(instance_id);
                if let Err(stop) = guest.stop(STOP_TIMEOUT) {
                    tracing::error!(instance = %instance_id, "cannot stop the failed guest: {stop}");
                }
                Err(RuntimeError::Boot(e))
            }
        }
    }

    /// Powers the guest off (ACPI, then QMP quit, then kill) and releases its loop device.
    fn stop_guest(&self, instance_id: &str) -> Result<(), RuntimeError> {
        let guest = lock(&self.guests).remove(instance_id);
        if let Some(g) = guest {
            let outcome = g.stop(STOP_TIMEOUT).map_err(RuntimeError::Boot)?;
            tracing::info!(instance = %instance_id, "guest stopped: {outcome:?}");
        }
        Ok(())
    }

    fn wait_guest(&self, instance_id: &str) {
        let guest = lock(&self.guests).get(instance_id).cloned();
        if let Some(g) = guest {
            while g.is_running() {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }

    fn shutdown(&self) {
        let all: Vec<(String, Arc<Guest>)> = lock(&self.guests).drain().collect();
        for (id, g) in all {
            if let Err(e) = g.stop(STOP_TIMEOUT) {
                tracing::error!(instance = %id, "cannot stop the guest: {e}");
            }
        }
        if let Err(e) = self.mount.unmount() {
            tracing::warn!("clean unmount refused ({e}); forcing it");
            if let Err(e) = self.mount.unmount_forced() {
                tracing::error!("cannot unmount: {e}");
            }
        }
    }
}
