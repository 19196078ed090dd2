//! What is served: instances (directories) and their attached volumes (files), changed at
//! run time by the volume service while the FUSE threads read it.
//!
//! Inode numbers are never reused, so a kernel cache entry for something removed can only
//! ever miss (ENOENT), never point at another volume. A file detached while open (forced)
//! stays reachable by inode until its last release, but its I/O fails with `EIO`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use super::device::BlockDevice;

/// Inode of the mountpoint's root directory (FUSE's fixed root).
pub const ROOT_INO: u64 = 1;

/// Longest instance or device name (a path component).
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("{instance_id}/{device_name} is already served")]
    AlreadyServed {
        instance_id: String,
        device_name: String,
    },
    #[error("volume {volume_id} is already served as {instance_id}/{device_name}")]
    VolumeAlreadyServed {
        volume_id: String,
        instance_id: String,
        device_name: String,
    },
    #[error("{instance_id}/{device_name} is not served")]
    NotServed {
        instance_id: String,
        device_name: String,
    },
    #[error("volume {volume_id} is not served")]
    VolumeNotServed { volume_id: String },
    #[error("{instance_id}/{device_name} is open {open} time(s) (loop device, qemu, mount?): detach it first or force")]
    Busy {
        instance_id: String,
        device_name: String,
        open: u64,
    },
}

/// Why I/O on a served file is refused before it reaches the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The data key was dropped by [`MountTable::revoke`] (`EKEYREVOKED`).
    Revoked,
    /// The volume was detached (forced) while this file was open (`EIO`).
    Detached,
}

impl Unavailable {
    pub fn errno(self) -> i32 {
        match self {
            Unavailable::Revoked => libc::EKEYREVOKED,
            Unavailable::Detached => libc::EIO,
        }
    }
}

enum DeviceState {
    Active(Arc<dyn BlockDevice>),
    Gone(Unavailable),
}

/// One served volume: `MOUNTPOINT/<instance_id>/<device_name>`.
pub struct ServedFile {
    pub ino: u64,
    pub instance_id: String,
    pub device_name: String,
    pub volume_id: String,
    pub uid: u32,
    pub gid: u32,
    /// Fixed for the file's life: volumes are not resized while attached.
    pub size: u64,
    pub added: SystemTime,
    state: RwLock<DeviceState>,
    open: AtomicU64,
    removed: AtomicBool,
}

impl ServedFile {
    /// The device to do I/O on, or why there is none. The returned `Arc` keeps the device
    /// (and its key) alive only for the duration of one request.
    pub fn device(&self) -> Result<Arc<dyn BlockDevice>, Unavailable> {
        match &*read(&self.state) {
            DeviceState::Active(d) => Ok(Arc::clone(d)),
            DeviceState::Gone(why) => Err(*why),
        }
    }

    /// Number of open file descriptions (a loop device or qemu holds one).
    pub fn open_count(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    /// Drops this table's reference to the device: when no request is using it, the
    /// device and its data key are freed (and the key zeroized).
    fn drop_device(&self, why: Unavailable) {
        let mut s = write(&self.state);
        if !matches!(*s, DeviceState::Gone(Unavailable::Revoked)) || why == Unavailable::Revoked {
            *s = DeviceState::Gone(why);
        }
    }
}

/// An instance directory.
#[derive(Debug, Clone)]
pub struct DirInfo {
    pub ino: u64,
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub added: SystemTime,
}

struct InstanceDir {
    info: DirInfo,
    files: BTreeMap<String, Arc<ServedFile>>,
}

/// A node the kernel may ask about.
#[derive(Clone)]
pub enum Node {
    Root,
    Dir(DirInfo),
    File(Arc<ServedFile>),
}

/// A directory entry, as readdir lists it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ino: u64,
    pub name: String,
    pub is_dir: bool,
}

/// What [`MountTable::add`] created (the mount invalidates kernel caches with it).
#[derive(Debug, Clone)]
pub struct Added {
    pub dir_ino: u64,
    pub file_ino: u64,
    pub new_dir: bool,
}

/// What [`MountTable::remove`] removed.
#[derive(Debug, Clone)]
pub struct Removed {
    pub dir_ino: u64,
    pub file_ino: u64,
    pub dir_removed: bool,
    pub volume_id: String,
}

#[derive(Default)]
struct Inner {
    instances: BTreeMap<String, InstanceDir>,
    dirs: HashMap<u64, String>,
    /// Every file the kernel may still address: served ones and detached-but-open ones.
    files: HashMap<u64, Arc<ServedFile>>,
}

/// The live set of served files, shared by the FUSE threads and the control handle.
pub struct MountTable {
    inner: RwLock<Inner>,
    next_ino: AtomicU64,
    created: SystemTime,
}

impl Default for MountTable {
    fn default() -> Self {
        Self::new()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated (every update is
    // a single insert/remove), so a poisoned lock is still consistent.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Checks a path component supplied by the volume service.
pub fn check_name(what: &'static str, name: &str) -> Result<(), TableError> {
    let bad = |reason| {
        Err(TableError::InvalidName {
            what,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 255 bytes");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("contains '/' or NUL");
    }
    Ok(())
}

impl MountTable {
    pub fn new() -> MountTable {
        MountTable {
            inner: RwLock::new(Inner::default()),
            next_ino: AtomicU64::new(ROOT_INO + 1),
            created: SystemTime::now(),
        }
    }

    pub fn created(&self) -> SystemTime {
        self.created
    }

    fn alloc_ino(&self) -> u64 {
        self.next_ino.fetch_add(1, Ordering::Relaxed)
    }

    /// Serves `device` as `<instance_id>/<device_name>`, creating the instance directory
    /// if needed. A volume may be served once.
    pub fn add(
        &self,
        instance_id: &str,
        device_name: &str,
        device: Arc<dyn BlockDevice>,
        uid: u32,
        gid: u32,
        volume_id: &str,
    ) -> Result<Added, TableError> {
        check_name("instance id", instance_id)?;
        check_name("device name", device_name)?;
        let mut inner = write(&self.inner);
        if inner
            .instances
            .get(instance_id)
            .is_some_and(|d| d.files.contains_key(device_name))
        {
            return Err(TableError::AlreadyServed {
                instance_id: instance_id.to_string(),
                device_name: device_name.to_string(),
            });
        }
        if let Some(f) = inner
            .instances
            .values()
            .flat_map(|d| d.files.values())
            .find(|f| f.volume_id == volume_id)
        {
            return Err(TableError::VolumeAlreadyServed {
                volume_id: volume_id.to_string(),
                instance_id: f.instance_id.clone(),
                device_name: f.device_name.clone(),
            });
        }
        let now = SystemTime::now();
        let new_dir = !inner.instances.contains_key(instance_id);
        if new_dir {
            let ino = self.alloc_ino();
            inner.dirs.insert(ino, instance_id.to_string());
            inner.instances.insert(
                instance_id.to_string(),
                InstanceDir {
                    info: DirInfo {
                        ino,
                        name: instance_id.to_string(),
                        uid,
                        gid,
                        added: now,
                    },
                    files: BTreeMap::new(),
                },
            );
        }
        let file = Arc::new(ServedFile {
            ino: self.alloc_ino(),
            instance_id: instance_id.to_string(),
            device_name: device_name.to_string(),
            volume_id: volume_id.to_string(),
            uid,
            gid,
            size: device.size(),
            added: now,
            state: RwLock::new(DeviceState::Active(device)),
            open: AtomicU64::new(0),
            removed: AtomicBool::new(false),
        });
        let file_ino = file.ino;
        inner.files.insert(file_ino, Arc::clone(&file));
        let dir = inner
            .instances
            .get_mut(instance_id)
            .ok_or_else(|| TableError::NotServed {
                instance_id: instance_id.to_string(),
                device_name: device_name.to_string(),
            })?;
        dir.files.insert(device_name.to_string(), file);
        Ok(Added {
            dir_ino: dir.info.ino,
            file_ino,
            new_dir,
        })
    }

    /// Stops serving `<instance_id>/<device_name>`. Refused while the file is open unless
    /// `force`; forced, open descriptors get `EIO` from then on. The device is released
    /// (and its key zeroized) once no request uses it.
    pub fn remove(
        &self,
        instance_id: &str,
        device_name: &str,
        force: bool,
    ) -> Result<Removed, TableError> {
        let mut inner = write(&self.inner);
        let not_served = || TableError::NotServed {
            instance_id: instance_id.to_string(),
            device_name: device_name.to_string(),
        };
        let dir = inner
            .instances
            .get_mut(instance_id)
            .ok_or_else(not_served)?;
        let file = dir.files.get(device_name).ok_or_else(not_served)?;
        let open = file.open_count();
        if open > 0 && !force {
            return Err(TableError::Busy {
                instance_id: instance_id.to_string(),
                device_name: device_name.to_string(),
                open,
            });
        }
        let file = dir.files.remove(device_name).ok_or_else(not_served)?;
        file.removed.store(true, Ordering::SeqCst);
        file.drop_device(Unavailable::Detached);
        let dir_ino = dir.info.ino;
        let dir_removed = dir.files.is_empty();
        if dir_removed {
            inner.instances.remove(instance_id);
            inner.dirs.remove(&dir_ino);
        }
        // Opened files stay addressable until their last release.
        if file.open_count() == 0 {
            inner.files.remove(&file.ino);
        }
        Ok(Removed {
            dir_ino,
            file_ino: file.ino,
            dir_removed,
            volume_id: file.volume_id.clone(),
        })
    }

    /// Drops the data key of `volume_id` at once: further I/O fails with `EKEYREVOKED`.
    /// The file stays listed (so the failure is visible) until removed.
    pub fn revoke(&self, volume_id: &str) -> Result<(), TableError> {
        let inner = read(&self.inner);
        let mut found = false;
        for f in inner.files.values().filter(|f| f.volume_id == volume_id) {
            f.drop_device(Unavailable::Revoked);
            found = true;
        }
        if found {
            Ok(())
        } else {
            Err(TableError::VolumeNotServed {
                volume_id: volume_id.to_string(),
            })
        }
    }

    /// The file served as `<instance_id>/<device_name>`, if any.
    pub fn file(&self, instance_id: &str, device_name: &str) -> Option<Arc<ServedFile>> {
        read(&self.inner)
            .instances
            .get(instance_id)?
            .files
            .get(device_name)
            .cloned()
    }

    /// Every served file, in path order.
    pub fn files(&self) -> Vec<Arc<ServedFile>> {
        read(&self.inner)
            .instances
            .values()
            .flat_map(|d| d.files.values().cloned())
            .collect()
    }

    /// The node with inode `ino`.
    pub fn node(&self, ino: u64) -> Option<Node> {
        if ino == ROOT_INO {
            return Some(Node::Root);
        }
        let inner = read(&self.inner);
        if let Some(f) = inner.files.get(&ino) {
            return Some(Node::File(Arc::clone(f)));
        }
        let name = inner.dirs.get(&ino)?;
        inner.instances.get(name).map(|d| Node::Dir(d.info.clone()))
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Option<Node> {
        let inner = read(&self.inner);
        if parent == ROOT_INO {
            return inner.instances.get(name).map(|d| Node::Dir(d.info.clone()));
        }
        let dir_name = inner.dirs.get(&parent)?;
        let f = inner.instances.get(dir_name)?.files.get(name)?;
        Some(Node::File(Arc::clone(f)))
    }

    /// Entries of directory `ino` (without `.` and `..`), or `None` if it is not a directory.
    pub fn list(&self, ino: u64) -> Option<Vec<Entry>> {
        let inner = read(&self.inner);
        if ino == ROOT_INO {
            return Some(
                inner
                    .instances
                    .values()
                    .map(|d| Entry {
                        ino: d.info.ino,
                        name: d.info.name.clone(),
                        is_dir: true,
                    })
                    .collect(),
            );
        }
        let name = inner.dirs.get(&ino)?;
        let dir = inner.instances.get(name)?;
        Some(
            dir.files
                .values()
                .map(|f| Entry {
                    ino: f.ino,
                    name: f.device_name.clone(),
                    is_dir: false,
                })
                .collect(),
        )
    }

    /// Counts an open of file `ino`; `None` if no such file.
    pub fn opened(&self, ino: u64) -> Option<Arc<ServedFile>> {
        let inner = read(&self.inner);
        let f = inner.files.get(&ino)?;
        f.open.fetch_add(1, Ordering::SeqCst);
        Some(Arc::clone(f))
    }

    /// Counts a release of file `ino`; forgets a detached file at its last release.
    pub fn released(&self, ino: u64) {
        let mut inner = write(&self.inner);
        let Some(f) = inner.files.get(&ino) else {
            return;
        };
        let before = f
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .unwrap_or(0);
        if before <= 1 && f.removed.load(Ordering::SeqCst) {
            inner.files.remove(&ino);
        }
    }

    /// Number of instance directories and files (for statfs).
    pub fn counts(&self) -> (u64, u64, u64) {
        let inner = read(&self.inner);
        let dirs = inner.instances.len() as u64;
        let files: u64 = inner.instances.values().map(|d| d.files.len() as u64).sum();
        let bytes = inner
            .instances
            .values()
            .flat_map(|d| d.files.values())
            .fold(0u64, |acc, f| acc.saturating_add(f.size));
        (dirs, files, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::device::DeviceError;

    struct Mem(u64);
    impl BlockDevice for Mem {
        fn read_at(&self, _: &mut [u8], _: u64) -> Result<(), DeviceError> {
            Ok(())
        }
        fn write_at(&self, _: &[u8], _: u64) -> Result<(), DeviceError> {
            Ok(())
        }
        fn sync_data(&self) -> Result<(), DeviceError> {
            Ok(())
        }
        fn size(&self) -> u64 {
            self.0
        }
    }

    fn dev(n: u64) -> Arc<dyn BlockDevice> {
        Arc::new(Mem(n))
    }

    #[test]
    fn add_lookup_list_remove() {
        let t = MountTable::new();
        let a = t
            .add("i-1", "xvda", dev(4096), 1000, 1000, "vol-a")
            .unwrap();
        assert!(a.new_dir);
        let b = t
            .add("i-1", "xvdb", dev(8192), 1000, 1000, "vol-b")
            .unwrap();
        assert!(!b.new_dir);
        assert_eq!(a.dir_ino, b.dir_ino);
        let names: Vec<_> = t
            .list(ROOT_INO)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["i-1"]);
        let names: Vec<_> = t
            .list(a.dir_ino)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["xvda", "xvdb"]);
        match t.lookup(a.dir_ino, "xvdb") {
            Some(Node::File(f)) => assert_eq!((f.size, f.volume_id.as_str()), (8192, "vol-b")),
            _ => panic!("xvdb not found"),
        }
        assert!(t.lookup(a.dir_ino, "xvdc").is_none());
        let r = t.remove("i-1", "xvda", false).unwrap();
        assert!(!r.dir_removed);
        assert!(t.node(a.file_ino).is_none());
        let r = t.remove("i-1", "xvdb", false).unwrap();
        assert!(r.dir_removed);
        assert!(t.node(a.dir_ino).is_none());
        assert!(t.list(ROOT_INO).unwrap().is_empty());
        // Inodes are never reused.
        let c = t.add("i-1", "xvda", dev(4096), 0, 0, "vol-a").unwrap();
        assert!(c.dir_ino > b.file_ino && c.file_ino > c.dir_ino);
    }

    #[test]
    fn duplicates_and_bad_names_refused() {
        let t = MountTable::new();
        t.add("i-1", "xvda", dev(1), 0, 0, "vol-a").unwrap();
        assert!(matches!(
            t.add("i-1", "xvda", dev(1), 0, 0, "vol-b"),
            Err(TableError::AlreadyServed { .. })
        ));
        assert!(matches!(
            t.add("i-2", "xvda", dev(1), 0, 0, "vol-a"),
            Err(TableError::VolumeAlreadyServed { .. })
        ));
        // Same device name on another instance is fine.
        t.add("i-2", "xvda", dev(1), 0, 0, "vol-b").unwrap();
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(matches!(
                t.add(bad, "xvda", dev(1), 0, 0, "vol-z"),
                Err(TableError::InvalidName { .. })
            ));
            assert!(matches!(
                t.add("i-3", bad, dev(1), 0, 0, "vol-z"),
                Err(TableError::InvalidName { .. })
            ));
        }
        assert!(matches!(
            t.add(&"x".repeat(256), "xvda", dev(1), 0, 0, "vol-z"),
            Err(TableError::InvalidName { .. })
        ));
        assert!(matches!(
            t.remove("i-9", "xvda", false),
            Err(TableError::NotServed { .. })
        ));
    }

    #[test]
    fn open_files_block_remove_unless_forced() {
        let t = MountTable::new();
        let a = t.add("i-1", "xvda", dev(4096), 0, 0, "vol-a").unwrap();
        let f = t.opened(a.file_ino).unwrap();
        assert_eq!(f.open_count(), 1);
        assert!(matches!(
            t.remove("i-1", "xvda", false),
            Err(TableError::Busy { open: 1, .. })
        ));
        t.remove("i-1", "xvda", true).unwrap();
        // Still addressable by inode while open, but I/O is refused.
        assert!(matches!(t.node(a.file_ino), Some(Node::File(_))));
        assert_eq!(f.device().err(), Some(Unavailable::Detached));
        t.released(a.file_ino);
        assert!(t.node(a.file_ino).is_none());
    }

    #[test]
    fn revoke_drops_the_device() {
        let t = MountTable::new();
        let d = dev(4096);
        let weak = Arc::downgrade(&d);
        t.add("i-1", "xvda", d, 0, 0, "vol-a").unwrap();
        assert!(weak.upgrade().is_some());
        t.revoke("vol-a").unwrap();
        assert!(weak.upgrade().is_none(), "device (and key) freed at once");
        let f = t.file("i-1", "xvda").unwrap();
        assert_eq!(f.device().err(), Some(Unavailable::Revoked));
        assert_eq!(Unavailable::Revoked.errno(), libc::EKEYREVOKED);
        // A later forced detach does not turn "revoked" into "detached"...
        let g = t.opened(f.ino).unwrap();
        t.remove("i-1", "xvda", true).unwrap();
        assert_eq!(g.device().err(), Some(Unavailable::Revoked));
        // ...and the file is forgotten at its last release all the same.
        t.released(f.ino);
        assert!(t.node(f.ino).is_none());
        assert!(matches!(
            t.revoke("vol-x"),
            Err(TableError::VolumeNotServed { .. })
        ));
    }
}
