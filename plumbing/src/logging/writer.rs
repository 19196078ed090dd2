//! The bounded log writer: rotation of the file a descriptor points at, rate limiting of
//! repeated lines, a cap on line length.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::repeats::Repeats;
use super::Limits;

/// The file behind the descriptor, while it can be rotated.
struct Rotation {
    path: PathBuf,
    mode: u32,
    /// Bytes in the live file as far as we know (refreshed with fstat before rotating).
    size: u64,
    /// Other descriptors on the same file (stdout beside stderr), re-pointed with it.
    others: Vec<RawFd>,
}

/// A `Write` for log lines on a descriptor (stderr for daemons). See the module docs.
pub struct LogWriter {
    fd: RawFd,
    limits: Limits,
    rotation: Option<Rotation>,
    repeats: Repeats,
    /// The line being written, up to the cap.
    pending: Vec<u8>,
    /// Bytes of the current line beyond the cap, dropped.
    overflow: usize,
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: fstat writes into the zeroed struct we own; an invalid fd is an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// The path `fd` was opened at, if it still names the same file.
fn path_of(fd: RawFd, st: &libc::stat) -> Option<PathBuf> {
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let m = std::fs::metadata(&path).ok()?;
    (m.dev() == st.st_dev && m.ino() == st.st_ino).then_some(path)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl LogWriter {
    /// Writes to stderr, rotating its file (and stdout's, when it is the same file).
    pub fn stderr(limits: Limits) -> LogWriter {
        LogWriter::on_fd(2, &[1], limits)
    }

    /// Writes to `fd`; if it is a regular file, rotates it, re-pointing each of `others`
    /// that is open on the same file too.
    pub fn on_fd(fd: RawFd, others: &[RawFd], limits: Limits) -> LogWriter {
        let rotation = fstat(fd).ok().filter(is_regular).and_then(|st| {
            let path = path_of(fd, &st)?;
            let others = others
                .iter()
                .copied()
                .filter(|&o| {
                    o != fd
                        && fstat(o).is_ok_and(|s| s.st_dev == st.st_dev && s.st_ino == st.st_ino)
                })
                .collect();
            Some(Rotation {
                path,
                mode: st.st_mode & 0o7777,
                size: u64::try_from(st.st_size).unwrap_or(0),
                others,
            })
        });
        LogWriter {
            fd,
            repeats: Repeats::new(limits.repeat_window, limits.repeat_burst),
            limits,
            rotation,
            pending: Vec::new(),
            overflow: 0,
        }
    }

    /// The file being rotated, if any.
    pub fn rotated_path(&self) -> Option<&Path> {
        self.rotation.as_ref().map(|r| r.path.as_path())
    }

    fn raw_write(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: the descriptor stays open for the life of the process (stderr, or one the
        // caller keeps open); ManuallyDrop keeps this File from closing it.
        let mut f = ManuallyDrop::new(unsafe { File::from_raw_fd(self.fd) });
        f.write_all(bytes)
    }

    /// Writes one finished line (with its newline), rotating first if it would overflow.
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = bytes.len() as u64;
        let max = self.limits.max_file_bytes;
        if let Some(r) = &mut self.rotation {
            if r.size.saturating_add(len) > max {
                // Others (panics, println) write to the same file: ask the kernel.
                r.size = fstat(self.fd)
                    .map(|st| u64::try_from(st.st_size).unwrap_or(0))
                    .unwrap_or(r.size);
                if r.size.saturating_add(len) > max && r.size > 0 {
                    if let Err(e) = self.rotate() {
                        let path = self.rotation.take().map(|r| r.path).unwrap_or_default();
                        let note = format!(
                            "{}  WARN log: cannot rotate {}: {e}; this log is no longer capped\n",
                            now(),
                            path.display()
                        );
                        self.raw_write(note.as_bytes())?;
                    }
                }
            }
        }
        self.raw_write(bytes)?;
        if let Some(r) = &mut self.rotation {
            r.size = r.size.saturating_add(len);
        }
        Ok(())
    }

    /// `NAME` -> `NAME.1` -> ... -> `NAME.keep` (the oldest dropped), then the descriptor
    /// (and its twins) point at a fresh `NAME`.
    fn rotate(&mut self) -> io::Result<()> {
        let Some(r) = &mut self.rotation else {
            return Ok(());
        };
        let keep = self.limits.keep.max(1);
        for n in (1..keep).rev() {
            match std::fs::rename(numbered(&r.path, n), numbered(&r.path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&r.path, numbered(&r.path, 1))?;
        let fresh = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(r.mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&r.path)?;
        for target in std::iter::once(self.fd).chain(r.others.iter().copied()) {
            // SAFETY: dup2 onto a descriptor this writer owns the use of; both are valid.
            if unsafe { libc::dup2(fresh.as_raw_fd(), target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        r.size = 0;
        Ok(())
    }

    /// Adds part of a line, keeping at most the cap.
    fn take(&mut self, part: &[u8]) {
        let room = self
            .limits
            .max_line_bytes
            .saturating_sub(self.pending.len());
        let kept = room.min(part.len());
        self.pending.extend_from_slice(&part[..kept]);
        self.overflow += part.len() - kept;
    }

    /// Applies the line cap and the repeat limit to the finished line.
    fn finish_line(&mut self) -> io::Result<()> {
        let raw = std::mem::take(&mut self.pending);
        let mut dropped = std::mem::take(&mut self.overflow);
        let mut text = String::from_utf8_lossy(&raw).into_owned();
        let max = self.limits.max_line_bytes;
        if text.len() > max {
            let mut cut = max;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            dropped += text.len() - cut;
            text.truncate(cut);
        }
        if dropped > 0 {
            text.push_str(&format!(" ... [{dropped} bytes cut]"));
        }
        let verdict = self.repeats.admit(identity(&text), Instant::now());
        for s in verdict.summaries {
            self.emit(format!("{}  WARN log: {s}\n", now()).as_bytes())?;
        }
        if verdict.pass {
            text.push('\n');
            self.emit(text.as_bytes())?;
        }
        Ok(())
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.take(&rest[..i]);
            self.finish_line()?;
            rest = &rest[i + 1..];
        }
        self.take(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A line without its leading timestamp (and colour codes): what "identical" compares.
fn identity(line: &str) -> &str {
    let mut s = line;
    while let Some(rest) = s.strip_prefix('\u{1b}') {
        s = rest.split_once('m').map_or("", |(_, after)| after);
    }
    let s = s.trim_start();
    if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        s.split_once(char::is_whitespace)
            .map_or("", |(_, rest)| rest.trim_start())
    } else {
        s
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A writer on a fresh descriptor for `path` (the test process's stderr stays alone).
    fn writer_on(path: &Path, limits: Limits) -> (LogWriter, File) {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        let w = LogWriter::on_fd(f.as_raw_fd(), &[], limits);
        (w, f)
    }

    fn small() -> Limits {
        Limits {
            max_file_bytes: 1000,
            keep: 2,
            max_line_bytes: 200,
            repeat_window: Duration::from_secs(60),
            repeat_burst: 3,
        }
    }

    #[test]
    fn the_file_rotates_at_its_cap_and_keeps_n_old_ones() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s3.log");
        let (mut w, _f) = writer_on(&p, small());
        assert_eq!(w.rotated_path(), Some(p.as_path()));
        for i in 0..500 {
            writeln!(w, "2026-01-01T00:00:00Z  INFO line number {i:05}").unwrap();
        }
        for name in ["s3.log", "s3.log.1", "s3.log.2"] {
            let len = std::fs::metadata(d.path().join(name)).unwrap().len();
            assert!(len > 0 && len <= 1000, "{name}: {len}");
        }
        assert!(!d.path().join("s3.log.3").exists());
        let live = std::fs::read_to_string(&p).unwrap();
        assert!(live.ends_with("line number 00499\n"), "{live}");
        let older = std::fs::read_to_string(d.path().join("s3.log.1")).unwrap();
        assert!(older.lines().all(|l| l.contains("line number")));
    }

    #[test]
    fn repeated_lines_are_counted_not_written_and_long_lines_are_cut() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kmsd.log");
        let (mut w, _f) = writer_on(
            &p,
            Limits {
                max_file_bytes: 1 << 20,
                ..small()
            },
        );
        for i in 0..10_000 {
            // The timestamp differs, the rest is the same line.
            writeln!(
                w,
                "2026-01-01T00:00:{:02}Z  WARN accept failed: EMFILE",
                i % 60
            )
            .unwrap();
        }
        writeln!(w, "2026-01-01T00:00:00Z  INFO {}", "x".repeat(100_000)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.matches("accept failed").count(), 3, "{text}");
        let long = text.lines().last().unwrap();
        assert!(long.len() < 300 && long.ends_with("bytes cut]"), "{long}");
    }

    #[test]
    fn identity_ignores_timestamps_and_colours() {
        assert_eq!(identity("2026-01-01T00:00:00.1Z  WARN x: y"), "WARN x: y");
        assert_eq!(
            identity("\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m  WARN x"),
            "WARN x"
        );
        assert_eq!(identity("kmsd started"), "kmsd started");
    }

    #[test]
    fn a_pipe_is_written_but_never_rotated() {
        let mut fds = [0; 2];
        // SAFETY: pipe fills the array with two new descriptors we own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are ours; the Files close them.
        let (mut r, wf) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let mut w = LogWriter::on_fd(wf.as_raw_fd(), &[], small());
        assert!(w.rotated_path().is_none());
        writeln!(w, "hello").unwrap();
        drop(w);
        drop(wf);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut r, &mut s).unwrap();
        assert_eq!(s, "hello\n");
    }
}
