//! Binding a file to a loop device with `losetup`, for booting from it.
//!
//! Stop-gap: the mount layer owns loop devices (`crate::loopdev`, branch `mount`); once
//! that lands this module goes away in favour of it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::BootError;

/// A loop device bound to a file; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    device: PathBuf,
    file: PathBuf,
}

impl LoopDevice {
    /// `losetup --find --show [--direct-io=on] FILE`. Direct I/O (no second copy of
    /// the volume in the page cache) needs O_DIRECT from the backing file system; if
    /// losetup refuses it, the device is attached without.
    pub fn attach(file: &Path, direct_io: bool) -> Result<Self, BootError> {
        match Self::losetup(file, direct_io) {
            Err(e) if direct_io => {
                tracing::warn!("loop device with direct I/O failed ({e}); retrying without");
                Self::losetup(file, false)
            }
            other => other,
        }
    }

    fn losetup(file: &Path, direct_io: bool) -> Result<Self, BootError> {
        let mut cmd = Command::new("losetup");
        cmd.arg("--find").arg("--show");
        if direct_io {
            cmd.arg("--direct-io=on");
        }
        let out = cmd.arg(file).output().map_err(|e| BootError::LoopDevice {
            file: file.to_path_buf(),
            reason: format!("cannot run losetup: {e}"),
        })?;
        if !out.status.success() {
            return Err(BootError::LoopDevice {
                file: file.to_path_buf(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !device.starts_with("/dev/loop") {
            return Err(BootError::LoopDevice {
                file: file.to_path_buf(),
                reason: format!("losetup printed {device:?}, not a loop device"),
            });
        }
        tracing::debug!(device, file = %file.display(), "loop device attached");
        Ok(LoopDevice {
            device: PathBuf::from(device),
            file: file.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.device
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        match Command::new("losetup").arg("-d").arg(&self.device).output() {
            Ok(out) if out.status.success() => {
                tracing::debug!(device = %self.device.display(), "loop device detached")
            }
            Ok(out) => tracing::warn!(
                device = %self.device.display(),
                file = %self.file.display(),
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "losetup -d failed"
            ),
            Err(e) => tracing::warn!(device = %self.device.display(), "cannot run losetup -d: {e}"),
        }
    }
}
