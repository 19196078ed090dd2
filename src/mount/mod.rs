//! The FUSE mount: encrypted volumes served as plaintext files
//! `MOUNTPOINT/<instance-id>/<device>` for losetup, mkfs, mount and qemu.
//!
//! [`Mount::start`] mounts an empty tree and serves it from background threads; the
//! returned [`MountHandle`] adds and removes files as instances start and stop and volumes
//! attach and detach (the volume service embeds it). Only ciphertext reaches the backing
//! images: the files are views through [`BlockDevice`]s ([`crate::volume::VolumeImage`]).
//!
//! - [`device`]: the `BlockDevice` seam and its errno mapping.
//! - [`table`]: what is served, shared by the FUSE threads and the handle.
//! - [`fs`]: the `fuser::Filesystem`.
//! - [`options`]: the mount options ([`MountOptions`]).
//! - [`daemon`]: I/O flusher, signals, pid/log files, stale mount recovery.

pub mod daemon;
pub mod device;
pub mod fs;
pub mod options;
pub mod table;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use device::{BlockDevice, DeviceError, PlainFile};
pub use options::{Access, MountOptions};
pub use table::{TableError, Unavailable};

use fuser::{INodeNo, MountOption, SessionACL};
use table::{MountTable, ROOT_INO};

/// How long [`MountHandle::remove`] and [`MountHandle::unmount`] wait for the kernel's
/// asynchronous RELEASE of a just-closed file before calling it busy.
const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The FUSE character device.
pub const DEV_FUSE: &str = "/dev/fuse";

/// Errors of the mount layer.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{DEV_FUSE} is not usable ({reason}): load the fuse module (modprobe fuse) or give the container the device (--device /dev/fuse)")]
    FuseUnavailable { reason: String },
    #[error("{option} (who besides you may open the served files: root's losetup and qemu need it) is not allowed for a mount by a non-root user (uid {uid}) unless {conf} has the line `user_allow_other`: add that line to {conf} (as root: echo user_allow_other >> {conf}), or run atrest mount as root", conf = .conf.display())]
    AllowOtherNotPermitted {
        option: &'static str,
        uid: u32,
        conf: PathBuf,
    },
    #[error("invalid mount option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error("mountpoint {path}: {reason}", path = .path.display())]
    Mountpoint { path: PathBuf, reason: String },
    #[error("{path} is already mounted ({fstype}): unmount it first", path = .path.display())]
    AlreadyMounted { path: PathBuf, fstype: String },
    #[error(transparent)]
    Stale(#[from] daemon::StaleMountError),
    #[error("mounting {path}: {source}", path = .path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("volume {volume_id}: revocation needs strict revocation (--strict-revocation); otherwise a volume keeps working until detached, as in AWS")]
    RevocationNotStrict { volume_id: String },
    #[error("{path} is busy: {reason}", path = .path.display())]
    Busy { path: PathBuf, reason: String },
    #[error("unmounting {path}: {reason}", path = .path.display())]
    Unmount { path: PathBuf, reason: String },
}

/// One served file, as the volume service lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedInfo {
    pub path: PathBuf,
    pub instance_id: String,
    pub device_name: String,
    pub volume_id: String,
    pub size: u64,
    pub open_count: u64,
    /// Why I/O is refused, if it is (revoked key).
    pub unavailable: Option<Unavailable>,
}

/// Starts mounts.
pub struct Mount;

impl Mount {
    /// Mounts an empty tree at `opts.mountpoint` and serves it from background threads
    /// (which are I/O flushers). A stale mount left by a crash is detached first.
    pub fn start(opts: MountOptions) -> Result<MountHandle, MountError> {
        check_dev_fuse()?;
        check_options(&opts)?;
        check_allow_other(opts.access)?;
        let mountpoint = prepare_mountpoint(&opts.mountpoint)?;

        let table = Arc::new(MountTable::new());
        let cfg = fs::FsConfig {
            max_write: opts.max_write,
            max_readahead: opts.max_readahead,
            max_background: opts.max_background,
            writeback_cache: opts.writeback_cache,
            direct_io: opts.direct_io,
            refuse_own_process: opts.refuse_own_process,
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        };
        let filesystem = fs::AtrestFs::new(Arc::clone(&table), cfg);
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName(opts.fs_name.clone()),
            MountOption::Subtype("atrest".to_string()),
            // The kernel checks modes (0600, owner = instance owner): without this, FUSE
            // with allow_other would let anyone open every volume.
            MountOption::DefaultPermissions,
            MountOption::NoAtime,
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoExec,
        ];
        config.acl = match opts.access {
            Access::Owner => SessionACL::Owner,
            Access::RootAndOwner => SessionACL::RootAndOwner,
            Access::All => SessionACL::All,
        };
        config.n_threads = Some(opts.threads);
        config.clone_fd = true;

        // Mount and spawn from a fresh thread marked as I/O flusher, so that every FUSE
        // thread inherits the flag and the caller's own thread is left as it was.
        let mp = mountpoint.clone();
        let starter = std::thread::Builder::new()
            .name("atrest-mount".into())
            .spawn(move || {
                let io_flusher = match daemon::set_io_flusher() {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "PR_SET_IO_FLUSHER failed (needs CAP_SYS_RESOURCE): loop devices over this mount may deadlock under memory pressure");
                        false
                    }
                };
                let session = fuser::Session::new(filesystem, &mp, &config)?;
                let notifier = session.notifier();
                let bg = session.spawn()?;
                Ok::<_, std::io::Error>((bg, notifier, io_flusher))
            })
            .map_err(|source| MountError::Mount {
                path: mountpoint.clone(),
                source,
            })?;
        let (session, notifier, io_flusher) = starter
            .join()
            .map_err(|_| MountError::Mount {
                path: mountpoint.clone(),
                source: std::io::Error::other("mount thread panicked"),
            })?
            .map_err(|source| MountError::Mount {
                path: mountpoint.clone(),
                source,
            })?;
        tracing::info!(mountpoint = %mountpoint.display(), threads = opts.threads, "mounted");
        Ok(MountHandle {
            table,
            notifier,
            session: Mutex::new(Some(session)),
            mountpoint,
            strict_revocation: opts.strict_revocation,
            io_flusher,
        })
    }
}

fn check_dev_fuse() -> Result<(), MountError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(DEV_FUSE) {
        Ok(m) if m.file_type().is_char_device() => Ok(()),
        Ok(_) => Err(MountError::FuseUnavailable {
            reason: "not a character device".into(),
        }),
        Err(e) => Err(MountError::FuseUnavailable {
            reason: e.to_string(),
        }),
    }
}

/// Where fuse.conf is read from: `$ATREST_FUSE_CONF` (tests), else `/etc/fuse.conf`.
/// Only this early check reads it; fusermount3 enforces the real file either way.
fn fuse_conf_path() -> PathBuf {
    std::env::var_os("ATREST_FUSE_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/fuse.conf"))
}

/// Whether a fuse.conf text enables `user_allow_other` (a line of its own; `#` starts a
/// comment).
pub fn fuse_conf_allows_other(text: &str) -> bool {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .any(|l| l == "user_allow_other")
}

/// `allow_other`/`allow_root` by a non-root user: fusermount3 refuses them unless
/// fuse.conf has `user_allow_other`, with a message that does not say so. Checked first,
/// so the error says exactly what to add.
fn check_allow_other(access: Access) -> Result<(), MountError> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let conf = fuse_conf_path();
    let text = std::fs::read_to_string(&conf).unwrap_or_default();
    allow_other_permitted(access, uid, &text).map_err(|option| MountError::AllowOtherNotPermitted {
        option,
        uid,
        conf,
    })
}

/// The rule of [`check_allow_other`], pure: the refused option, if any.
fn allow_other_permitted(access: Access, uid: u32, fuse_conf: &str) -> Result<(), &'static str> {
    let option = match access {
        Access::Owner => return Ok(()),
        Access::RootAndOwner => "allow_root",
        Access::All => "allow_other",
    };
    if uid == 0 || fuse_conf_allows_other(fuse_conf) {
        Ok(())
    } else {
        Err(option)
    }
}

fn check_options(opts: &MountOptions) -> Result<(), MountError> {
    if opts.threads == 0 || opts.threads > 256 {
        return Err(MountError::InvalidOption {
            option: "threads",
            reason: format!("{} is outside 1..=256", opts.threads),
        });
    }
    if opts.max_write < 4096 {
        return Err(MountError::InvalidOption {
            option: "max_write",
            reason: format!("{} is below 4096", opts.max_write),
        });
    }
    if opts.max_background == 0 {
        return Err(MountError::InvalidOption {
            option: "max_background",
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// Checks the mountpoint is a directory with nothing mounted on it, recovering a stale
/// FUSE mount; returns its absolute path.
fn prepare_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let bad = |reason: String| MountError::Mountpoint {
        path: path.to_path_buf(),
        reason,
    };
    match daemon::mount_state(path) {
        daemon::MountState::NotMounted => {}
        daemon::MountState::Stale => daemon::recover_stale(path)?,
        daemon::MountState::Mounted { fstype } => {
            return Err(MountError::AlreadyMounted {
                path: path.to_path_buf(),
                fstype,
            })
        }
    }
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    std::fs::canonicalize(path).map_err(|e| bad(e.to_string()))
}

/// Control of a running mount. `Send + Sync`: share it behind an `Arc`.
pub struct MountHandle {
    table: Arc<MountTable>,
    notifier: fuser::Notifier,
    session: Mutex<Option<fuser::BackgroundSession>>,
    mountpoint: PathBuf,
    strict_revocation: bool,
    io_flusher: bool,
}

impl MountHandle {
    /// The absolute mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the serving threads are I/O flushers (`PR_SET_IO_FLUSHER` succeeded).
    pub fn io_flusher(&self) -> bool {
        self.io_flusher
    }

    /// Path at which `<instance_id>/<device_name>` is (or would be) served.
    pub fn path_of(&self, instance_id: &str, device_name: &str) -> PathBuf {
        self.mountpoint.join(instance_id).join(device_name)
    }

    /// Serves `device` as `MOUNTPOINT/<instance_id>/<device_name>`: a file of exactly the
    /// device's size, owned by `uid:gid`, mode 0600. Returns its path. The mount holds
    /// `device` (and so its data key) until [`remove`](Self::remove) or
    /// [`revoke`](Self::revoke); pass the only `Arc` so that those really free the key.
    pub fn add(
        &self,
        instance_id: &str,
        device_name: &str,
        device: Arc<dyn BlockDevice>,
        uid: u32,
        gid: u32,
        volume_id: &str,
    ) -> Result<PathBuf, MountError> {
        let added = self
            .table
            .add(instance_id, device_name, device, uid, gid, volume_id)?;
        // The kernel caches no negative entries from us (we answer ENOENT without a
        // TTL), but a directory's listing and attributes may be cached: drop them.
        if added.new_dir {
            self.invalidate(ROOT_INO, instance_id);
        }
        self.invalidate(added.dir_ino, device_name);
        tracing::info!(volume_id, instance_id, device_name, "served");
        Ok(self.path_of(instance_id, device_name))
    }

    /// Stops serving `<instance_id>/<device_name>`; refused (`TableError::Busy`) while
    /// the file is open (a loop device, qemu, a mount of it).
    pub fn remove(&self, instance_id: &str, device_name: &str) -> Result<(), MountError> {
        self.remove_impl(instance_id, device_name, false)
    }

    /// Stops serving even while open: open descriptors get `EIO` from then on.
    pub fn force_remove(&self, instance_id: &str, device_name: &str) -> Result<(), MountError> {
        self.remove_impl(instance_id, device_name, true)
    }

    fn remove_impl(
        &self,
        instance_id: &str,
        device_name: &str,
        force: bool,
    ) -> Result<(), MountError> {
        if !force {
            self.wait_released(|| self.open_count(instance_id, device_name).unwrap_or(0) == 0);
        }
        let removed = self.table.remove(instance_id, device_name, force)?;
        self.invalidate(removed.dir_ino, device_name);
        if removed.dir_removed {
            self.invalidate(ROOT_INO, instance_id);
        }
        tracing::info!(volume_id = %removed.volume_id, instance_id, device_name, force, "no longer served");
        Ok(())
    }

    /// `--strict-revocation`: drops the data key of `volume_id` at once; further I/O on
    /// its file fails with `EKEYREVOKED`. Refused unless the mount was started with
    /// `strict_revocation` (otherwise volumes keep working until detached, as in AWS).
    pub fn revoke(&self, volume_id: &str) -> Result<(), MountError> {
        if !self.strict_revocation {
            return Err(MountError::RevocationNotStrict {
                volume_id: volume_id.to_string(),
            });
        }
        self.table.revoke(volume_id)?;
        tracing::warn!(
            volume_id,
            "data key dropped (strict revocation): further I/O fails with EKEYREVOKED"
        );
        Ok(())
    }

    /// Open count of `<instance_id>/<device_name>`, `None` if it is not served.
    pub fn open_count(&self, instance_id: &str, device_name: &str) -> Option<u64> {
        self.table
            .file(instance_id, device_name)
            .map(|f| f.open_count())
    }

    /// Whether `<instance_id>/<device_name>` is served and open.
    pub fn is_open(&self, instance_id: &str, device_name: &str) -> bool {
        self.open_count(instance_id, device_name).unwrap_or(0) > 0
    }

    /// Every served file.
    pub fn files(&self) -> Vec<ServedInfo> {
        self.table
            .files()
            .into_iter()
            .map(|f| ServedInfo {
                path: self.path_of(&f.instance_id, &f.device_name),
                instance_id: f.instance_id.clone(),
                device_name: f.device_name.clone(),
                volume_id: f.volume_id.clone(),
                size: f.size,
                open_count: f.open_count(),
                unavailable: f.device().err(),
            })
            .collect()
    }

    /// Whether the FUSE session still runs (false after an external `umount`).
    pub fn is_alive(&self) -> bool {
        lock(&self.session)
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    fn invalidate(&self, parent: u64, name: &str) {
        if let Err(e) = self.notifier.inval_entry(INodeNo(parent), OsStr::new(name)) {
            // ENOENT: the kernel had nothing cached. Anything else only delays visibility
            // by the 1 s TTL.
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::debug!(name, error = %e, "cache invalidation failed");
            }
        }
    }

    /// The kernel sends RELEASE asynchronously after the last close() returns, so an
    /// open count can lag a caller that just closed (or `losetup -d`'d) the file: give
    /// it a short grace period before calling the file busy.
    fn wait_released(&self, closed: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + RELEASE_GRACE;
        while !closed() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Clean unmount: refused (`Busy`) while any file is open or the mount is in use; on
    /// success the serving threads have exited.
    pub fn unmount(&self) -> Result<(), MountError> {
        self.wait_released(|| self.table.files().iter().all(|f| f.open_count() == 0));
        let open: Vec<String> = self
            .files()
            .into_iter()
            .filter(|f| f.open_count > 0)
            .map(|f| format!("{} (open {}x)", f.path.display(), f.open_count))
            .collect();
        if !open.is_empty() {
            return Err(MountError::Busy {
                path: self.mountpoint.clone(),
                reason: format!("files still open: {}", open.join(", ")),
            });
        }
        let Some(s) = lock(&self.session).take() else {
            return Ok(());
        };
        // fuser unmounts (umount2, or fusermount3 -u without root), then joins the
        // threads, which end when the kernel closes the connection.
        s.umount_and_join().map_err(|e| {
            let reason = if e.raw_os_error() == Some(libc::EBUSY) {
                format!("in use (a process has its cwd or a file there); the mount stays served until `umount {}`", self.mountpoint.display())
            } else {
                e.to_string()
            };
            MountError::Unmount {
                path: self.mountpoint.clone(),
                reason,
            }
        })?;
        tracing::info!(mountpoint = %self.mountpoint.display(), "unmounted");
        Ok(())
    }

    /// Unmount even while in use: every file is detached (open descriptors get `EIO`)
    /// and the mount is lazily detached. Threads still serving open descriptors end
    /// with the process.
    pub fn unmount_forced(&self) -> Result<(), MountError> {
        for f in self.table.files() {
            let _ = self.table.remove(&f.instance_id, &f.device_name, true);
        }
        let Some(s) = lock(&self.session).take() else {
            return Ok(());
        };
        let r = umount(&self.mountpoint, true);
        // The session's threads end when the last open descriptor goes away (or with
        // the process); joining here could wait forever.
        drop(s.guard);
        r
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if lock(&self.session).is_some() {
            if let Err(e) = self.unmount() {
                tracing::warn!(error = %e, "unmount at drop failed; detaching lazily");
                let _ = self.unmount_forced();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `umount2(path)` (root), else `fusermount3 -u[z] path`.
fn umount(path: &Path, lazy: bool) -> Result<(), MountError> {
    let err = |reason: String| MountError::Unmount {
        path: path.to_path_buf(),
        reason,
    };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| err("path contains NUL".into()))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EBUSY) => Err(MountError::Busy {
            path: path.to_path_buf(),
            reason: "in use (a process has a file or its cwd there)".into(),
        }),
        Some(libc::EPERM) => {
            let out = std::process::Command::new("fusermount3")
                .arg(if lazy { "-uz" } else { "-u" })
                .arg(path)
                .output()
                .map_err(|e| err(format!("fusermount3: {e}")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
            }
        }
        _ => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_conf_user_allow_other_is_a_line_of_its_own() {
        assert!(fuse_conf_allows_other("user_allow_other\n"));
        assert!(fuse_conf_allows_other(
            "# mount_max = 1000\n  user_allow_other  # for atrest\n"
        ));
        assert!(!fuse_conf_allows_other(""));
        assert!(!fuse_conf_allows_other("#user_allow_other\n"));
        assert!(!fuse_conf_allows_other(
            "# user_allow_other\nmount_max = 10\n"
        ));
        assert!(!fuse_conf_allows_other("user_allow_others\n"));
    }

    #[test]
    fn allow_other_needs_root_or_user_allow_other() {
        let without = "# user_allow_other\n";
        assert_eq!(allow_other_permitted(Access::All, 0, without), Ok(()));
        assert_eq!(
            allow_other_permitted(Access::All, 1000, without),
            Err("allow_other")
        );
        assert_eq!(
            allow_other_permitted(Access::RootAndOwner, 1000, without),
            Err("allow_root")
        );
        assert_eq!(allow_other_permitted(Access::Owner, 1000, without), Ok(()));
        assert_eq!(
            allow_other_permitted(Access::All, 1000, "user_allow_other\n"),
            Ok(())
        );
    }
}
