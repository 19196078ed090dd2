//! Daemon logging: `tracing` events written to stderr through a [`LogWriter`] that keeps
//! the log bounded, whatever a client does.
//!
//! Every daemon (kmsd, `atrest mount`, `atrest s3 serve`) runs with its stderr on its file
//! in `HOME/log/`. The writer:
//! - **rotates** that file (the one stderr points at, found through `/proc/self/fd/2`) when
//!   it would pass [`Limits::max_file_bytes`]: `NAME` becomes `NAME.1` (`NAME.1` becomes
//!   `NAME.2`, ... up to [`Limits::keep`]) and stderr (and stdout, if it was the same file)
//!   is re-pointed at a fresh `NAME`. A terminal or a pipe is never rotated.
//! - **rate-limits repeated lines**: a line identical to an earlier one (timestamp aside)
//!   passes at most [`Limits::repeat_burst`] times per [`Limits::repeat_window`]; the rest are
//!   counted and reported in one line when the window closes.
//! - **cuts long lines** at [`Limits::max_line_bytes`], so no event can carry a request body
//!   or other bulk into the log.
//!
//! `ATREST_LOG_MAX_BYTES` and `ATREST_LOG_KEEP` override the size cap and the number of
//! rotated files.

mod repeats;
mod writer;

use std::time::Duration;

pub use writer::LogWriter;

/// Size cap of one log file unless `ATREST_LOG_MAX_BYTES` says otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Rotated files kept (`NAME.1` .. `NAME.N`) unless `ATREST_LOG_KEEP` says otherwise.
pub const DEFAULT_KEEP: u32 = 2;

/// How much a log may hold and repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rotate before the file grows past this many bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept beside the live one (at least 1).
    pub keep: u32,
    /// Lines longer than this are cut (at a character boundary) and marked.
    pub max_line_bytes: usize,
    /// Identical lines pass at most `repeat_burst` times per window.
    pub repeat_window: Duration,
    pub repeat_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            keep: DEFAULT_KEEP,
            max_line_bytes: 4096,
            repeat_window: Duration::from_secs(10),
            repeat_burst: 3,
        }
    }
}

impl Limits {
    /// The defaults, with `ATREST_LOG_MAX_BYTES` / `ATREST_LOG_KEEP` applied when they parse.
    pub fn from_env() -> Limits {
        let mut l = Limits::default();
        if let Some(n) = env_number("ATREST_LOG_MAX_BYTES") {
            l.max_file_bytes = n.max(4096);
        }
        if let Some(n) = env_number("ATREST_LOG_KEEP") {
            l.keep = u32::try_from(n).unwrap_or(u32::MAX).clamp(1, 100);
        }
        l
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Installs the global `tracing` subscriber: events filtered by `RUST_LOG` (else
/// `default_filter`), formatted by `tracing_subscriber::fmt`, written through a
/// [`LogWriter`] on stderr. Each target in `quiet` is turned off unless `RUST_LOG` names it
/// (libraries whose own events would log what a client sent). Colours only on a terminal.
pub fn init(default_filter: &str, quiet: &[&str]) {
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut filter = from_env
        .as_deref()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    for target in quiet {
        let named = from_env.as_deref().is_some_and(|v| v.contains(target));
        if !named {
            if let Ok(d) = format!("{target}=off").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(2) } == 1;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(tty)
        .with_writer(std::sync::Mutex::new(LogWriter::stderr(Limits::from_env())))
        .try_init();
}
