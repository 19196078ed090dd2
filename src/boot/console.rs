//! The guest's serial console: what the demo guest prints and how we read it.
//!
//! Pure functions over console text; the only I/O is [`console_output`] reading the log.

use std::path::Path;

/// Start of the line the guest's init prints once it runs from its root volume.
pub const READY_PREFIX: &str = "atrest-guest: booted from volume ";
/// Start of the line the initramfs prints when it cannot boot (then it powers off).
pub const FAILURE_PREFIX: &str = "atrest-guest: boot failed: ";
/// Printed by the initramfs in accelerator-probe mode.
pub const PROBE_OK: &str = "atrest-guest: probe ok";
/// How many console lines an error carries.
pub const TAIL_LINES: usize = 20;
/// Largest console output we hand back (`get-console-output` is capped at 64 KiB by AWS).
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024;

/// The guest's identifying line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyLine {
    /// The volume ID the guest read from its kernel command line.
    pub volume_id: String,
    /// The contents of the guest's `/etc/atrest-marker`.
    pub marker: String,
    /// The whole line as printed.
    pub line: String,
}

/// What the console says so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleState {
    /// Neither the ready line nor a failure line yet.
    Booting,
    Ready(ReadyLine),
    /// The guest's reason for not booting (the text after [`FAILURE_PREFIX`]).
    Failed(String),
}

/// Scans console text for the first ready or failure line. Only complete lines count,
/// so a line being written is never half-parsed.
pub fn scan(text: &str) -> ConsoleState {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return ConsoleState::Booting,
    };
    for raw in complete.split('\n') {
        let line = raw.trim_end_matches('\r');
        if let Some(rest) = find_after(line, READY_PREFIX) {
            let (volume_id, marker) = match rest.split_once(" marker=") {
                Some((v, m)) => (v, m),
                None => (rest, ""),
            };
            return ConsoleState::Ready(ReadyLine {
                volume_id: volume_id.trim().to_string(),
                marker: marker.to_string(),
                line: line.to_string(),
            });
        }
        if let Some(reason) = find_after(line, FAILURE_PREFIX) {
            return ConsoleState::Failed(reason.trim().to_string());
        }
    }
    ConsoleState::Booting
}

/// The text after `prefix` if the line contains it. Kernel messages can share a line
/// with ours on a serial console, so the prefix need not start the line.
fn find_after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.find(prefix).map(|at| &line[at + prefix.len()..])
}

/// The last `n` lines of `text`, for error messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Normalises raw serial bytes for people: lossy UTF-8, CRLF to LF, no NULs.
pub fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace("\r\n", "\n")
        .replace('\0', "")
}

/// The console output of a guest (for `get-console-output`): the last
/// [`MAX_OUTPUT_BYTES`] of its serial log, cleaned. A missing log is empty output,
/// as AWS returns for an instance that never booted.
pub fn console_output(path: &Path) -> String {
    match read_tail(path, MAX_OUTPUT_BYTES) {
        Ok(bytes) => clean(&bytes),
        Err(_) => String::new(),
    }
}

/// The last `max` bytes of a file.
pub(crate) fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        file.seek(SeekFrom::Start(len - max))?;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_is_parsed_with_volume_and_marker() {
        let text = "noise\r\natrest-guest: booted from volume vol-0123 marker=hello world\r\n";
        assert_eq!(
            scan(text),
            ConsoleState::Ready(ReadyLine {
                volume_id: "vol-0123".into(),
                marker: "hello world".into(),
                line: "atrest-guest: booted from volume vol-0123 marker=hello world".into(),
            })
        );
    }

    #[test]
    fn incomplete_line_is_not_ready_yet() {
        assert_eq!(
            scan("atrest-guest: booted from volume vol-01"),
            ConsoleState::Booting
        );
        assert_eq!(scan(""), ConsoleState::Booting);
        assert_eq!(scan("[ 0.1] Linux version\n"), ConsoleState::Booting);
    }

    #[test]
    fn failure_line_gives_the_reason() {
        let text =
            "atrest-guest: boot failed: cannot mount root /dev/vda: mount: Invalid argument\n";
        assert_eq!(
            scan(text),
            ConsoleState::Failed("cannot mount root /dev/vda: mount: Invalid argument".into())
        );
    }

    #[test]
    fn prefix_after_kernel_noise_on_the_same_line_counts() {
        let text = "[    1.2] random: crng initatrest-guest: booted from volume v marker=m\n";
        assert!(
            matches!(scan(text), ConsoleState::Ready(r) if r.volume_id == "v" && r.marker == "m")
        );
    }

    #[test]
    fn tail_keeps_last_nonempty_lines() {
        assert_eq!(tail("a\r\n\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn clean_handles_crlf_nul_and_bad_utf8() {
        assert_eq!(clean(b"a\r\nb\0\xff\n"), "a\nb\u{fffd}\n");
    }

    #[test]
    fn console_output_of_missing_log_is_empty() {
        assert_eq!(
            console_output(Path::new("/nonexistent/atrest/console.log")),
            ""
        );
    }
}
