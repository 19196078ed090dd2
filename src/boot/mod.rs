//! Booting instances for real: a qemu guest whose root disk is an instance's root volume
//! (the FUSE-served plaintext file of an encrypted volume, bound to a loop device).
//!
//! - [`profile`]: what to boot ([`BootProfile`]: kernel, initramfs, memory, accelerator).
//! - [`console`]: the serial console protocol of the demo guest (ready and failure lines).
//! - [`qemu`]: the qemu command line, the KVM probe with TCG fallback, start, wait, stop.
//!
//! The demo guest is built by `scripts/make-guest.sh`; see `docs/BOOT.md`.

pub mod console;
mod loopdev;
pub mod profile;
pub mod qemu;

use std::time::Duration;

pub use console::{console_output, ConsoleState, ReadyLine};
pub use profile::{Accel, BootProfile};
pub use qemu::{Guest, StopOutcome};

/// Everything that can go wrong booting or stopping a guest.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("invalid boot profile: {0}")]
    InvalidProfile(String),
    #[error("{what} {path} cannot be used: {reason}")]
    BadPath {
        what: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("cannot run {program}: {source} (install qemu-system-x86 and qemu-utils)")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The guest said why it could not boot (e.g. its root volume is not a file system).
    #[error("guest failed to boot: {reason}\nconsole:\n{console_tail}")]
    GuestFailed {
        reason: String,
        console_tail: String,
    },
    /// qemu ended before the guest printed its line.
    #[error("qemu exited ({status}) before the guest booted\nqemu: {stderr_tail}\nconsole:\n{console_tail}")]
    QemuExited {
        status: String,
        stderr_tail: String,
        console_tail: String,
    },
    #[error("guest did not boot within {waited:?}\nconsole:\n{console_tail}")]
    Timeout {
        waited: Duration,
        console_tail: String,
    },
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("loop device for {file}: {reason}")]
    LoopDevice {
        file: std::path::PathBuf,
        reason: String,
    },
}

impl BootError {
    /// A short reason fit for an instance's `StateReason`/`StateTransitionReason`.
    pub fn reason(&self) -> String {
        match self {
            BootError::GuestFailed { reason, .. } => format!("guest failed to boot: {reason}"),
            BootError::QemuExited { status, .. } => format!("qemu exited ({status}) before boot"),
            BootError::Timeout { waited, .. } => format!("guest did not boot within {waited:?}"),
            other => other.to_string(),
        }
    }
}
