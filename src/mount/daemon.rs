//! Process plumbing for the serving daemon: `PR_SET_IO_FLUSHER`, termination signals,
//! and detection/recovery of a mountpoint left stale by a crash. (Pid files, log files and
//! detached spawning are `plumbing::daemon`'s.)

use std::path::{Path, PathBuf};
use std::process::Command;

/// `prctl(PR_SET_IO_FLUSHER)`: not in every libc crate version, so named here.
const PR_SET_IO_FLUSHER: libc::c_int = 57;
const PR_GET_IO_FLUSHER: libc::c_int = 58;

/// Marks the calling thread, and every thread it creates afterwards, as an I/O flusher:
/// its allocations never recurse into filesystem I/O and it is not throttled by dirty
/// page writeback. Loop-over-FUSE needs this: under memory pressure the kernel writes
/// back pages of the loop device, which become FUSE requests this process must serve;
/// if serving them needed reclaim that waits on the same writeback, it would deadlock.
/// Needs `CAP_SYS_RESOURCE`.
pub fn set_io_flusher() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1 as libc::c_ulong, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the calling thread is an I/O flusher.
pub fn is_io_flusher() -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0) == 1 }
}

/// What is at a mountpoint path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// A plain directory (or missing).
    NotMounted,
    /// A FUSE mount whose server died: every access fails with "Transport endpoint is not
    /// connected" (ENOTCONN).
    Stale,
    /// Something is mounted and answering (filesystem type from /proc/self/mountinfo).
    Mounted { fstype: String },
}

/// Why a stale mountpoint could not be recovered.
#[derive(Debug, thiserror::Error)]
#[error("{path} is a stale FUSE mount (Transport endpoint is not connected) and lazy unmount failed ({reason}); run: fusermount3 -uz {path}", path = .path.display())]
pub struct StaleMountError {
    pub path: PathBuf,
    pub reason: String,
}

/// Decodes the octal escapes (`\040` for space ...) mountinfo uses in paths.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(oct) = b.get(i + 1..i + 4) {
                if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                    let v = oct
                        .iter()
                        .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                    if let Ok(v) = u8::try_from(v) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystem type mounted exactly at `path` according to a mountinfo text, if any
/// (the last matching line wins: it is the top of the mount stack).
pub fn mounted_fstype(mountinfo: &str, path: &Path) -> Option<String> {
    let want = path.to_string_lossy();
    let mut found = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source super
        let mut fields = line.split(' ');
        let mountpoint = fields.nth(4);
        if mountpoint.map(unescape_mountinfo).as_deref() != Some(&*want) {
            continue;
        }
        let mut rest = line.split(" - ").nth(1).unwrap_or("").split(' ');
        found = rest.next().map(str::to_string);
    }
    found
}

/// Looks at `path` without entering a live mount's filesystem: `stat` of the
/// mountpoint itself is answered by FUSE only for its root, and a dead one answers
/// ENOTCONN at once.
pub fn mount_state(path: &Path) -> MountState {
    let abs = std::fs::canonicalize(path.parent().unwrap_or(Path::new("/")))
        .ok()
        .and_then(|p| path.file_name().map(|n| p.join(n)))
        .unwrap_or_else(|| path.to_path_buf());
    if let Err(e) = std::fs::metadata(&abs) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            return MountState::Stale;
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match mounted_fstype(&info, &abs) {
        Some(fstype) => MountState::Mounted { fstype },
        None => MountState::NotMounted,
    }
}

/// Detaches a stale FUSE mount at `path`: `umount2(MNT_DETACH)` (root), else
/// `fusermount3 -uz`. On failure the error says the exact command to run.
pub fn recover_stale(path: &Path) -> Result<(), StaleMountError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        StaleMountError {
            path: path.to_path_buf(),
            reason: "path contains NUL".into(),
        }
    })?;
    // SAFETY: c is a valid NUL-terminated path.
    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if r == 0 {
        tracing::warn!(path = %path.display(), "detached a stale FUSE mount left by a crash");
        return Ok(());
    }
    let umount_err = std::io::Error::last_os_error();
    match Command::new("fusermount3").arg("-uz").arg(path).output() {
        Ok(o) if o.status.success() => {
            tracing::warn!(path = %path.display(), "detached a stale FUSE mount with fusermount3 -uz");
            Ok(())
        }
        Ok(o) => Err(StaleMountError {
            path: path.to_path_buf(),
            reason: format!(
                "umount2: {umount_err}; fusermount3: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        }),
        Err(e) => Err(StaleMountError {
            path: path.to_path_buf(),
            reason: format!("umount2: {umount_err}; fusermount3: {e}"),
        }),
    }
}

/// SIGINT/SIGTERM/SIGHUP delivered to a waiting thread instead of killing the process.
pub struct TerminationSignals {
    signals: signal_hook::iterator::Signals,
}

/// Closes a [`TerminationSignals`] wait from another thread (e.g. a shutdown request).
pub struct SignalsCloser(signal_hook::iterator::Handle);

impl SignalsCloser {
    pub fn close(&self) {
        self.0.close();
    }
}

impl TerminationSignals {
    /// Installs the handlers. From then on these signals no longer end the process.
    pub fn install() -> std::io::Result<TerminationSignals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        Ok(TerminationSignals {
            signals: signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?,
        })
    }

    pub fn closer(&self) -> SignalsCloser {
        SignalsCloser(self.signals.handle())
    }

    /// Blocks until a signal arrives (returns its number) or the closer is used (`None`).
    pub fn wait(&mut self) -> Option<i32> {
        self.signals.forever().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parsing_finds_the_top_mount_and_unescapes() {
        let info = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
90 22 0:50 / /tmp/a\\040b rw,nosuid shared:1 - fuse.atrest atrest rw,user_id=0
91 22 0:51 / /mnt/x rw - ext4 /dev/loop0 rw
92 91 0:52 / /mnt/x rw - fuse.atrest atrest rw
";
        assert_eq!(
            mounted_fstype(info, Path::new("/tmp/a b")).as_deref(),
            Some("fuse.atrest")
        );
        assert_eq!(
            mounted_fstype(info, Path::new("/mnt/x")).as_deref(),
            Some("fuse.atrest")
        );
        assert_eq!(mounted_fstype(info, Path::new("/mnt")), None);
        assert_eq!(mounted_fstype("garbage\n\n- -", Path::new("/")), None);
    }

    #[test]
    fn plain_directory_is_not_mounted() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(mount_state(d.path()), MountState::NotMounted);
    }
}
