//! Daemons: starting them detached, their pid files, and whether a pid still runs.
//!
//! Two ways to become a daemon, both here:
//! - [`spawn_detached`] starts a program in its own session with its output appended to a
//!   log file (how `atrest up` starts the object endpoint and how `atrest mount`
//!   re-executes itself: forking a multi-threaded process is not safe);
//! - [`daemonize`] forks a process that has no threads yet (kmsd) and lets the parent exit
//!   only once the child says it serves, so the parent's exit status means something.
//!
//! A [`PidFile`] is held under an exclusive `flock` for the life of the process: a second
//! daemon fails to take it, and a file left by a crash (no holder) is taken over. Plain
//! pid files ([`write_pid_file`], [`read_pid`]) are for processes started by someone else.
//! [`alive`] counts a zombie as dead: a daemon killed with SIGKILL whose parent has not
//! reaped it yet holds nothing any more.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::flock::{self, Mode};

/// Why a pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("already running (pid {pid}, pid file {path})", path = .path.display())]
    AlreadyRunning { pid: String, path: PathBuf },
    #[error("pid file {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A pid file held under an exclusive `flock` for the life of the process; removed on drop.
pub struct PidFile {
    file: File,
    path: PathBuf,
}

impl PidFile {
    /// Takes the pid file and writes this process's pid into it.
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io = |source| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = flock::open(path, 0o644).map_err(io)?;
        if !flock::try_lock(&file, Mode::Exclusive).map_err(io)? {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(PidFileError::AlreadyRunning {
                pid: pid.trim().to_string(),
                path: path.to_path_buf(),
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(PidFile {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid written in `path` if a live process holds its lock (`None`: no file, or
    /// left by a process that is gone). Takes a shared lock for an instant, never the
    /// exclusive one, and writes nothing.
    pub fn holder(path: &Path) -> Option<String> {
        let mut file = File::open(path).ok()?;
        // A shared lock we can take means no live holder of the exclusive one.
        if flock::try_lock(&file, Mode::Shared).unwrap_or(false) {
            return None;
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        Some(pid.trim().to_string())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // The lock goes with the descriptor, after the file is gone.
        let _ = &self.file;
    }
}

/// Writes `pid` to `path` atomically (mode 0644), for a process started by someone else.
pub fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    crate::durable::write_atomic(path, format!("{pid}\n").as_bytes(), 0o644)
}

/// The positive pid written in `path`, if any.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// Whether `pid` names a running process: it exists and is not a zombie (a killed
/// process whose parent has not reaped it yet has already closed every file).
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid, 0) } != 0
        && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
    {
        return false;
    }
    !matches!(process_state(pid), Some('Z' | 'X'))
}

/// The name the kernel gives a process (`/proc/PID/comm`: its program's file name, at most
/// 15 bytes), if it exists.
pub fn process_name(pid: i32) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`...), if readable.
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: the state follows
    // the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Sends `signal` to `pid` (`false` if it could not be sent).
pub fn signal(pid: i32, signal: libc::c_int) -> bool {
    // SAFETY: plain kill(2) with a positive pid; no memory is passed.
    pid > 0 && unsafe { libc::kill(pid, signal) } == 0
}

/// Calls `f` every 50 ms until it returns true or `deadline` has passed; its last answer.
pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Opens (creating, mode 0600) a log file for appending.
pub fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `cmd` detached: its own session (a Ctrl-C in this terminal does not reach it),
/// stdin from /dev/null, stdout and stderr appended to `log`.
pub fn spawn_detached(cmd: &mut Command, log: &Path) -> io::Result<Child> {
    let out = open_log(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Held by a daemon made by [`daemonize`]: tells the waiting parent it serves.
pub struct Readiness(File);

impl Readiness {
    /// The parent exits 0 once this is called; if the child exits first, it exits 1.
    pub fn ready(mut self) {
        let _ = self.0.write_all(b"R");
    }
}

/// Forks into a daemon (call before any thread starts). The parent waits until the child
/// calls [`Readiness::ready`], prints `NAME started (pid N)` and exits 0, or, if the child
/// dies first, says where its log is and exits 1. The child runs in its own session with
/// stdin from /dev/null and stdout and stderr appended to `log`.
pub fn daemonize(name: &str, log: &Path) -> io::Result<Readiness> {
    let log_file = OpenOptions::new().create(true).append(true).open(log)?;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe writes two fds into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the caller guarantees no other thread exists yet.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        // Parent: wait for the child's readiness byte.
        // SAFETY: fds[1] is the pipe's write end, ours to close.
        unsafe { libc::close(fds[1]) };
        // SAFETY: fds[0] is the pipe's read end, owned by nobody else from now on.
        let mut r = unsafe { File::from_raw_fd(fds[0]) };
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(1) => {
                println!("{name} started (pid {pid})");
                std::process::exit(0)
            }
            _ => {
                eprintln!("{name}: the daemon failed to start; see {}", log.display());
                std::process::exit(1)
            }
        }
    }
    // Child.
    // SAFETY: closing our copy of the read end; setsid detaches from the terminal.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    use std::os::unix::io::AsRawFd;
    let devnull = File::open("/dev/null")?;
    // SAFETY: dup2 onto the standard fds from fds we own.
    unsafe {
        libc::dup2(devnull.as_raw_fd(), 0);
        libc::dup2(log_file.as_raw_fd(), 1);
        libc::dup2(log_file.as_raw_fd(), 2);
    }
    // SAFETY: fds[1] is the pipe's write end, owned only by this File from now on.
    Ok(Readiness(unsafe { File::from_raw_fd(fds[1]) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_is_exclusive_and_removed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mount.pid");
        let a = PidFile::acquire(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        match PidFile::acquire(&p) {
            Err(PidFileError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, std::process::id().to_string())
            }
            _ => panic!("second pid file acquired"),
        }
        assert_eq!(
            PidFile::holder(&p).as_deref(),
            Some(std::process::id().to_string().as_str())
        );
        drop(a);
        assert!(!p.exists());
        assert_eq!(PidFile::holder(&p), None);
        // A leftover file without a lock holder is taken over.
        std::fs::write(&p, "999999\n").unwrap();
        assert_eq!(PidFile::holder(&p), None);
        let _b = PidFile::acquire(&p).unwrap();
    }

    #[test]
    fn a_zombie_is_not_alive_and_a_reaped_child_neither() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: a zombie once it has exited.
        assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
        child.wait().unwrap();
        assert!(!alive(pid));
        assert!(alive(std::process::id() as i32));
        assert!(!alive(0) && !alive(-1));
        assert_eq!(process_name(pid), None);
        let me = process_name(std::process::id() as i32).unwrap();
        assert!(!me.is_empty() && !me.ends_with('\n'), "{me:?}");
    }

    #[test]
    fn plain_pid_files_and_log_tails() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.pid");
        assert_eq!(read_pid(&p), None);
        write_pid_file(&p, 4242).unwrap();
        assert_eq!(read_pid(&p), Some(4242));
        std::fs::write(&p, "garbage").unwrap();
        assert_eq!(read_pid(&p), None);
        let log = d.path().join("x.log");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in 1 2 3 4 5; do echo line$i; done; echo err >&2",
        ]);
        spawn_detached(&mut cmd, &log).unwrap().wait().unwrap();
        assert_eq!(log_tail(&log, 2), "line5\nerr");
        assert_eq!(log_tail(&d.path().join("none"), 2), "");
    }
}
