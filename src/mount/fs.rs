//! The FUSE filesystem: a read-only tree of instance directories whose files are the
//! plaintext view of volumes, read and written at any offset by many kernel threads.
//!
//! Everything here answers the kernel; nothing here ever touches the mountpoint (the
//! serving process must not, or loop-over-FUSE can deadlock).

use std::cell::RefCell;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::table::{MountTable, Node, ServedFile, ROOT_INO};

/// How long the kernel may cache names and attributes. Adds and removes also invalidate
/// explicitly, so this only bounds how long a missed invalidation could linger.
const TTL: Duration = Duration::from_secs(1);

/// Block size reported by stat and statfs (the volume sector size).
const BLOCK: u32 = 4096;

thread_local! {
    /// Per-thread read buffer, reused across requests.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Kernel-facing settings, fixed for the mount's life.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub max_write: u32,
    pub max_readahead: u32,
    pub max_background: u16,
    pub writeback_cache: bool,
    pub direct_io: bool,
    /// See [`super::MountOptions::refuse_own_process`].
    pub refuse_own_process: bool,
    /// Owner of the root directory (the mounting user).
    pub uid: u32,
    pub gid: u32,
}

/// The `fuser::Filesystem` over a [`MountTable`].
pub struct AtrestFs {
    table: Arc<MountTable>,
    cfg: FsConfig,
}

fn errno(code: i32) -> Errno {
    Errno::from_i32(code)
}

/// A directory's entries as readdir hands them out: (inode, type, name, cookie), where
/// the cookie is the offset the next call resumes after. Cookies come from inode numbers,
/// which are never reused and grow with every attach, so a volume attached or detached
/// between two readdir calls of one listing neither shifts nor repeats the other names,
/// as list positions would.
fn listing(
    dir: u64,
    parent: u64,
    mut entries: Vec<super::table::Entry>,
) -> Vec<(u64, FileType, String, u64)> {
    entries.sort_by_key(|e| e.ino);
    [
        (dir, FileType::Directory, ".".to_string(), 1),
        (parent, FileType::Directory, "..".to_string(), 2),
    ]
    .into_iter()
    .chain(entries.into_iter().map(|e| {
        let kind = if e.is_dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        (e.ino, kind, e.name, e.ino.saturating_add(2))
    }))
    .collect()
}

impl AtrestFs {
    pub fn new(table: Arc<MountTable>, cfg: FsConfig) -> AtrestFs {
        AtrestFs { table, cfg }
    }

    fn attr(&self, node: &Node) -> FileAttr {
        let (ino, kind, perm, nlink, uid, gid, size, time) = match node {
            Node::Root => (
                ROOT_INO,
                FileType::Directory,
                0o755,
                2,
                self.cfg.uid,
                self.cfg.gid,
                0,
                self.table.created(),
            ),
            Node::Dir(d) => (
                d.ino,
                FileType::Directory,
                0o755,
                2,
                d.uid,
                d.gid,
                0,
                d.added,
            ),
            Node::File(f) => (
                f.ino,
                FileType::RegularFile,
                0o600,
                1,
                f.uid,
                f.gid,
                f.size,
                f.added,
            ),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind,
            perm,
            nlink,
            uid,
            gid,
            rdev: 0,
            blksize: BLOCK,
            flags: 0,
        }
    }

    fn served(&self, ino: INodeNo) -> Result<Arc<ServedFile>, Errno> {
        match self.table.node(ino.0) {
            Some(Node::File(f)) => Ok(f),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// Whether `req` was sent by a thread of this process (with
    /// [`FsConfig::refuse_own_process`]; then it is logged). The kernel puts the
    /// calling *thread's* id in the request, so it is looked up among our tasks.
    fn sent_by_own_process(&self, req: &Request, op: &'static str) -> bool {
        if !self.cfg.refuse_own_process {
            return false;
        }
        let own = Path::new(&format!("/proc/self/task/{}", req.pid())).exists();
        if own {
            tracing::error!(
                op,
                tid = req.pid(),
                "refused: the serving process touched its own mount (a loop device bound from here could deadlock it); this is a bug"
            );
        }
        own
    }

    /// Makes every completed write of `f` durable (the backing file's fdatasync).
    fn sync(&self, f: &ServedFile, op: &'static str) -> Result<(), Errno> {
        let dev = f.device().map_err(|why| {
            tracing::warn!(volume_id = %f.volume_id, op, reason = ?why, "refused");
            errno(why.errno())
        })?;
        dev.sync_data().map_err(|e| {
            tracing::error!(volume_id = %f.volume_id, op, error = %e, "fdatasync failed");
            errno(e.errno())
        })
    }
}

impl Filesystem for AtrestFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = config.set_max_write(self.cfg.max_write) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(self.cfg.max_readahead) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(self.cfg.max_background);
        let _ = config.set_congestion_threshold(self.cfg.max_background / 4 * 3);
        let mut wanted = vec![
            ("async direct I/O", InitFlags::FUSE_ASYNC_DIO),
            ("parallel dirops", InitFlags::FUSE_PARALLEL_DIROPS),
        ];
        if self.cfg.direct_io {
            // Without it a shared mmap of a direct-I/O file fails with ENODEV.
            wanted.push((
                "mmap of direct-I/O files",
                InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
            ));
        }
        if self.cfg.writeback_cache {
            wanted.push(("writeback cache", InitFlags::FUSE_WRITEBACK_CACHE));
        }
        for (name, flag) in wanted {
            if config.add_capabilities(flag).is_err() {
                tracing::warn!(capability = name, "not supported by this kernel");
            }
        }
        tracing::info!(
            max_write = self.cfg.max_write,
            writeback_cache = self.cfg.writeback_cache,
            direct_io = self.cfg.direct_io,
            "FUSE session initialised"
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if self.sent_by_own_process(req, "lookup") {
            return reply.error(Errno::EDEADLK);
        }
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.table.lookup(parent.0, name) {
            Some(node) => reply.entry(&TTL, &self.attr(&node), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.table.node(ino.0) {
            Some(node) => reply.attr(&TTL, &self.attr(&node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// Only timestamps may be "set" (accepted and ignored, so `touch` works). Size, mode
    /// and owner are fixed: truncation and resizing are refused with `EPERM`.
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let Some(node) = self.table.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let (Some(size), Node::File(f)) = (size, &node) {
            if size != f.size {
                tracing::warn!(volume_id = %f.volume_id, size, volume_size = f.size,
                    "truncate refused: a volume's size is fixed");
                return reply.error(Errno::EPERM);
            }
        }
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(Errno::EPERM);
        }
        if size.is_some() && !matches!(node, Node::File(_)) {
            return reply.error(Errno::EISDIR);
        }
        reply.attr(&TTL, &self.attr(&node));
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EPERM);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.sent_by_own_process(req, "open") {
            return reply.error(Errno::EDEADLK);
        }
        match self.table.node(ino.0) {
            Some(Node::File(_)) => {}
            Some(_) => return reply.error(Errno::EISDIR),
            None => return reply.error(Errno::ENOENT),
        }
        let Some(f) = self.table.opened(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Err(why) = f.device() {
            self.table.released(ino.0);
            tracing::warn!(volume_id = %f.volume_id, op = "open", reason = ?why, "refused");
            return reply.error(errno(why.errno()));
        }
        // Inodes are never reused and every write goes through this mount, so the page
        // cache stays valid across opens.
        let mut flags = FopenFlags::FOPEN_KEEP_CACHE;
        if self.cfg.direct_io {
            flags = FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES;
        }
        reply.opened(FileHandle(ino.0), flags);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let f = match self.served(ino) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        if offset >= f.size {
            return reply.data(&[]);
        }
        // offset < f.size, so the subtraction cannot wrap; the length fits in u32.
        let len = u64::from(size).min(f.size - offset) as usize;
        let dev = match f.device() {
            Ok(d) => d,
            Err(why) => {
                tracing::warn!(volume_id = %f.volume_id, op = "read", offset, reason = ?why, "refused");
                return reply.error(errno(why.errno()));
            }
        };
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match dev.read_vec(&mut buf, offset, len) {
                Ok(()) => match buf.get(..len) {
                    Some(data) => reply.data(data),
                    None => reply.error(Errno::EIO), // a device broke read_vec's contract
                },
                Err(e) => {
                    tracing::error!(volume_id = %f.volume_id, op = "read", offset, len, error = %e, "failed");
                    reply.error(errno(e.errno()))
                }
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let f = match self.served(ino) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let len = data.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > f.size) {
            tracing::warn!(volume_id = %f.volume_id, op = "write", offset, len, volume_size = f.size,
                "refused: past the end of the volume");
            return reply.error(Errno::EFBIG);
        }
        let Ok(written) = u32::try_from(data.len()) else {
            return reply.error(Errno::EINVAL);
        };
        let dev = match f.device() {
            Ok(d) => d,
            Err(why) => {
                tracing::warn!(volume_id = %f.volume_id, op = "write", offset, reason = ?why, "refused");
                return reply.error(errno(why.errno()));
            }
        };
        match dev.write_at(data, offset) {
            Ok(()) => reply.written(written),
            Err(e) => {
                tracing::error!(volume_id = %f.volume_id, op = "write", offset, len, error = %e, "failed");
                reply.error(errno(e.errno()))
            }
        }
    }

    /// Called at every close(): makes the data durable so close reports write-back errors.
    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.served(ino).and_then(|f| self.sync(&f, "flush")) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.table.released(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fsync and fdatasync alike: the file's only metadata (size, owner) never changes.
        match self.served(ino).and_then(|f| self.sync(&f, "fsync")) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(entries) = self.table.list(ino.0) else {
            return reply.error(Errno::ENOTDIR);
        };
        let parent = match self.table.node(ino.0) {
            Some(Node::Dir(_)) | Some(Node::Root) => ROOT_INO,
            _ => return reply.error(Errno::ENOTDIR),
        };
        for (ino, kind, name, cookie) in listing(ino.0, parent, entries)
            .into_iter()
            .filter(|entry| entry.3 > offset)
        {
            if reply.add(INodeNo(ino), cookie, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (dirs, files, bytes) = self.table.counts();
        // Nothing can be created here: no free blocks, no free inodes.
        reply.statfs(
            bytes.div_ceil(u64::from(BLOCK)),
            0,
            0,
            dirs + files + 1,
            0,
            BLOCK,
            super::table::MAX_NAME_LEN as u32,
            BLOCK,
        );
    }

    /// No extended attributes: ENOSYS makes the kernel stop asking (it caches the answer),
    /// so writes do not pay a `security.capability` lookup each.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    /// Not supported (`EOPNOTSUPP` to the caller, e.g. a loop device's discard): a punched
    /// hole would have to read back as zeros, which an encrypted sparse image cannot give
    /// without writing encrypted zeros.
    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::table::Entry;

    fn file(ino: u64, name: &str) -> Entry {
        Entry {
            ino,
            name: name.to_string(),
            is_dir: false,
        }
    }

    fn names_after(list: &[(u64, FileType, String, u64)], offset: u64) -> Vec<String> {
        list.iter()
            .filter(|e| e.3 > offset)
            .map(|e| e.2.clone())
            .collect()
    }

    #[test]
    fn a_listing_resumes_by_inode_whatever_changed_in_between() {
        let before = listing(
            7,
            1,
            vec![file(12, "xvdc"), file(9, "xvda"), file(10, "xvdb")],
        );
        let names: Vec<&str> = before.iter().map(|e| e.2.as_str()).collect();
        assert_eq!(names, [".", "..", "xvda", "xvdb", "xvdc"]);
        // The first call stopped after xvda; then xvda was detached and xvdf attached.
        let resume = before[2].3;
        let after = listing(
            7,
            1,
            vec![file(10, "xvdb"), file(12, "xvdc"), file(13, "xvdf")],
        );
        assert_eq!(names_after(&after, resume), ["xvdb", "xvdc", "xvdf"]);
        // Cookies strictly increase, so the kernel never loops.
        assert!(after.windows(2).all(|w| w[0].3 < w[1].3));
        assert_eq!(names_after(&after, 0).len(), 5);
    }
}
