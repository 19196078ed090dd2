//! Whole-file advisory locks (`flock(2)`): how one atrest process keeps another out of a
//! store, a trail or a pid file. The lock belongs to the open file description, so it is
//! released when the `File` is closed, and two opens in one process exclude each other
//! just as two processes do.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

impl Mode {
    fn op(self) -> libc::c_int {
        match self {
            Mode::Shared => libc::LOCK_SH,
            Mode::Exclusive => libc::LOCK_EX,
        }
    }
}

/// Opens `path` for locking, creating it with `mode` if missing; never truncates it (a
/// pid file's content belongs to whoever holds its lock).
pub fn open(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor the caller's `File` owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits until `file` is locked in `mode`.
pub fn lock(file: &File, mode: Mode) -> io::Result<()> {
    flock(file, mode.op())
}

/// Locks `file` in `mode` if nobody holds a conflicting lock: `Ok(false)` if someone does.
pub fn try_lock(file: &File, mode: Mode) -> io::Result<bool> {
    match flock(file, mode.op() | libc::LOCK_NB) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_every_other_open_and_closing_releases() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let a = open(&p, 0o600).unwrap();
        let b = open(&p, 0o600).unwrap();
        assert!(try_lock(&a, Mode::Exclusive).unwrap());
        assert!(!try_lock(&b, Mode::Exclusive).unwrap());
        assert!(!try_lock(&b, Mode::Shared).unwrap());
        drop(a);
        assert!(try_lock(&b, Mode::Shared).unwrap());
        let c = open(&p, 0o600).unwrap();
        assert!(try_lock(&c, Mode::Shared).unwrap());
        assert!(!try_lock(&c, Mode::Exclusive).unwrap());
    }
}
