//! Binding and releasing loop devices from a short-lived child process
//! (`atrest loop-helper`, a hidden subcommand).
//!
//! Why a child: `LOOP_CONFIGURE` needs an open descriptor of the backing file, and the
//! volume service binds loop devices over the very files its FUSE mount serves. If the
//! service opened one itself it would be a client of its own mount, and loop-over-FUSE
//! could deadlock under memory pressure (docs/MOUNT.md). A thread of the service would not
//! do (same process), and `fork()` without `exec` is not safe in a multi-threaded process,
//! so the service runs its own binary again: the child opens the file, binds it, prints
//! what it bound and exits. The release runs there too, so the service never holds the
//! loop device whose last close drops the backing file either.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{BackingId, BoundLoop, Detached, LoopDevice, LoopError, LoopOptions};

/// The hidden subcommand of the `atrest` binary that runs the child side.
pub const SUBCOMMAND: &str = "loop-helper";

/// Runs the loop calls in a child: `PROGRAM loop-helper ...`.
#[derive(Debug, Clone)]
pub struct LoopHelper {
    program: PathBuf,
}

impl LoopHelper {
    /// A helper run as `program loop-helper ...` (an `atrest` binary).
    pub fn new(program: impl Into<PathBuf>) -> LoopHelper {
        LoopHelper {
            program: program.into(),
        }
    }

    /// The running program itself (the volume service is the `atrest` binary).
    pub fn this_program() -> Result<LoopHelper, LoopError> {
        std::env::current_exe()
            .map(LoopHelper::new)
            .map_err(|source| LoopError::HelperSpawn {
                program: PathBuf::from("/proc/self/exe"),
                source,
            })
    }

    /// Binds `file` to a free loop device in the child; the device and the identity of
    /// the bound file.
    pub fn attach(&self, file: &Path, opts: &LoopOptions) -> Result<BoundLoop, LoopError> {
        let mut args: Vec<OsString> = vec![SUBCOMMAND.into(), "attach".into()];
        if opts.direct_io {
            args.push("--direct-io".into());
        }
        if opts.read_only {
            args.push("--read-only".into());
        }
        if opts.autoclear {
            args.push("--autoclear".into());
        }
        if let Some(bs) = opts.block_size {
            args.push("--block-size".into());
            args.push(bs.to_string().into());
        }
        args.push("--".into());
        args.push(file.into());
        let out = self.run("attach", &args)?;
        let line = out.trim();
        serde_json::from_str(line).map_err(|_| LoopError::HelperOutput(line.to_string()))
    }

    /// Releases `bound.device` in the child, only if it still holds the file it was
    /// bound to (see [`LoopDevice::detach_if_bound_to`]).
    pub fn detach(&self, bound: &BoundLoop) -> Result<Detached, LoopError> {
        let args: Vec<OsString> = vec![
            SUBCOMMAND.into(),
            "detach".into(),
            "--backing-dev".into(),
            bound.backing.dev.to_string().into(),
            "--backing-ino".into(),
            bound.backing.ino.to_string().into(),
            "--".into(),
            bound.device.path().into(),
        ];
        let out = self.run("detach", &args)?;
        match out.trim() {
            "released" => Ok(Detached::Released),
            "already-free" => Ok(Detached::AlreadyFree),
            other => Err(LoopError::HelperOutput(other.to_string())),
        }
    }

    /// Runs the child to completion; its stdout. Its stderr (its log lines) is passed
    /// on to this process's log, or returned in the error if it failed.
    fn run(&self, op: &'static str, args: &[OsString]) -> Result<String, LoopError> {
        let out = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| LoopError::HelperSpawn {
                program: self.program.clone(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !out.status.success() {
            return Err(LoopError::HelperFailed {
                op,
                status: out.status.to_string(),
                stderr,
            });
        }
        for line in stderr.lines() {
            tracing::info!(op, "loop helper: {line}");
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The child side of `loop-helper attach`: binds `file`, returns the line to print.
pub fn child_attach(file: &Path, opts: &LoopOptions) -> Result<String, LoopError> {
    let device = super::attach(file, opts)?;
    let bound = match device.backing_id() {
        Ok(Some(backing)) => BoundLoop { device, backing },
        // Just bound by us: free or unreadable means something is badly wrong; do not
        // leave a device behind that the service would not know of.
        other => {
            let _ = device.detach();
            return Err(match other {
                Err(e) => e,
                _ => LoopError::HelperOutput(format!(
                    "{} was free right after binding it",
                    device.path().display()
                )),
            });
        }
    };
    serde_json::to_string(&bound).map_err(|e| LoopError::HelperOutput(e.to_string()))
}

/// The child side of `loop-helper detach`: the line to print.
pub fn child_detach(device: &Path, backing: BackingId) -> Result<String, LoopError> {
    let dev = LoopDevice::from_path(device)?;
    Ok(match dev.detach_if_bound_to(backing)? {
        Detached::Released => "released",
        Detached::AlreadyFree => "already-free",
    }
    .to_string())
}
