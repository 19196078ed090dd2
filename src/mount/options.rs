//! Mount options: who may open the files, how many threads serve them, and the kernel
//! cache settings (chosen by measurement: see docs/MOUNT.md).

use std::path::PathBuf;

/// Who besides the mounting user may open the served files. Root's `losetup` and qemu
/// need at least [`Access::RootAndOwner`] when the mount runs as another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only the user that mounted (FUSE's default).
    Owner,
    /// The mounting user and root (`allow_root`).
    RootAndOwner,
    /// Anyone the file modes allow (`allow_other`; the kernel checks modes because the
    /// mount always uses `default_permissions`).
    All,
}

/// Everything [`super::Mount::start`] needs.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// An existing empty directory. A stale FUSE mount left there by a crash is detached first.
    pub mountpoint: PathBuf,
    pub access: Access,
    /// FUSE request threads, each with its own cloned `/dev/fuse` descriptor.
    pub threads: usize,
    /// Largest WRITE the kernel may send, in bytes (also sets `max_pages`).
    pub max_write: u32,
    /// Kernel readahead for buffered reads, in bytes.
    pub max_readahead: u32,
    /// Let the kernel cache dirty pages and write back later (`FUSE_WRITEBACK_CACHE`).
    /// Off by default: with it, a write past the end of a volume succeeds into the page
    /// cache and only fails at writeback, which breaks "writes past the end are refused".
    pub writeback_cache: bool,
    /// Open every file with `FOPEN_DIRECT_IO`: every read and write goes straight to the
    /// server, with no page cache in front of the mount (the image's own page cache holds
    /// the ciphertext). On by default: measured faster for both sequential write and cold
    /// read (docs/MOUNT.md), and writes stay write-through, so a write past the end is
    /// refused at `write()`. `false` serves through the page cache (`FOPEN_KEEP_CACHE`).
    pub direct_io: bool,
    /// Limit of background requests (readahead, async direct I/O) the kernel keeps in flight.
    pub max_background: u16,
    /// `true`: [`super::MountHandle::revoke`] may be used to drop a key at once (drills).
    /// The mount itself never drops keys on its own: a key disabled in kmsd keeps an attached
    /// volume working until detach, as in AWS.
    pub strict_revocation: bool,
    /// Name shown in /proc/mounts.
    pub fs_name: String,
    /// Refuse (`EDEADLK`, logged) a lookup or open that comes from the serving process
    /// itself. A daemon that binds loop devices over its own files must never be a client
    /// of its own mount (loop-over-FUSE could deadlock under memory pressure): with this
    /// on, a code path that forgets is an error at once instead of a rare hang. Off by
    /// default because tests and tools that serve and read in one process are legitimate.
    pub refuse_own_process: bool,
}

impl MountOptions {
    /// The defaults chosen by measurement (docs/MOUNT.md) for `mountpoint`.
    pub fn new(mountpoint: impl Into<PathBuf>) -> MountOptions {
        MountOptions {
            mountpoint: mountpoint.into(),
            access: Access::All,
            threads: 8,
            max_write: 1 << 20,
            max_readahead: 1 << 20,
            writeback_cache: false,
            direct_io: true,
            max_background: 64,
            strict_revocation: false,
            fs_name: "atrest".to_string(),
            refuse_own_process: false,
        }
    }
}
