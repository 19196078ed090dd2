//! Loop devices: bind a file (e.g. a served volume) to a free `/dev/loopN`, with optional
//! direct I/O, and release it. Talks to the kernel through the loop ioctls
//! (`LOOP_CTL_GET_FREE`, `LOOP_CONFIGURE`, `LOOP_CLR_FD`), so there is no `losetup`
//! output to parse; the state comes back from `/sys/block/loopN/loop/`.
//!
//! [`helper`] runs the same calls in a short-lived child process, for the volume service,
//! which must never open the files it serves itself.

pub mod helper;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const LOOP_CONTROL: &str = "/dev/loop-control";
// From <linux/loop.h>.
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

impl LoopInfo64 {
    fn zeroed() -> LoopInfo64 {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("{op} {path}: {source}", path = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid loop block size {0}: must be a power of two from 512 to 4096")]
    BlockSize(u32),
    #[error("no free loop device after {0} attempts (others kept taking them)")]
    NoFreeDevice(u32),
    #[error("{0} is not a loop device")]
    NotLoop(String),
    #[error("{device} is now bound to another file (device {found_dev}, inode {found_ino}; this service bound device {dev}, inode {ino}): left alone", device = .device.display(), dev = .expected.dev, ino = .expected.ino, found_dev = .found.dev, found_ino = .found.ino)]
    NotOurs {
        device: PathBuf,
        expected: BackingId,
        found: BackingId,
    },
    #[error("cannot run the loop helper {program}: {source}", program = .program.display())]
    HelperSpawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the loop helper ({op}) failed ({status}): {stderr}")]
    HelperFailed {
        op: &'static str,
        status: String,
        stderr: String,
    },
    #[error("the loop helper printed {0:?}, not a bound device")]
    HelperOutput(String),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LoopError {
    let path = path.to_path_buf();
    move |source| LoopError::Io { op, path, source }
}

/// How to bind the file.
#[derive(Debug, Clone, Default)]
pub struct LoopOptions {
    /// Open the backing file with `O_DIRECT` and ask the loop driver for direct I/O, so
    /// pages are not cached twice (once for /dev/loopN, once for the file).
    pub direct_io: bool,
    pub read_only: bool,
    /// Logical block size (512..=4096); the kernel default (512) when `None`.
    pub block_size: Option<u32>,
    /// Release the device automatically when its last user closes it.
    pub autoclear: bool,
}

/// A bound loop device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoopDevice {
    pub number: u32,
}

/// The file a loop device is bound to, as the kernel recorded it when binding: the
/// backing file's device and inode (`LOOP_GET_STATUS64`). A path can be bound again by
/// someone else; this identity tells whether `/dev/loopN` still holds *our* file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackingId {
    pub dev: u64,
    pub ino: u64,
}

/// A loop device with the identity of the file it was bound to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoundLoop {
    pub device: LoopDevice,
    pub backing: BackingId,
}

/// What [`LoopDevice::detach_if_bound_to`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// Released (or, while still open, marked to be released at its last close).
    Released,
    /// It was free already.
    AlreadyFree,
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.number))
    }

    fn sys(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/sys/block/loop{}/loop/{name}", self.number))
    }

    /// The device for `/dev/loopN`.
    pub fn from_path(dev: &Path) -> Result<LoopDevice, LoopError> {
        let s = dev.to_string_lossy();
        s.strip_prefix("/dev/loop")
            .and_then(|n| n.parse().ok())
            .map(|number| LoopDevice { number })
            .ok_or_else(|| LoopError::NotLoop(s.into_owned()))
    }

    /// The bound file, or `None` if the device is free.
    pub fn backing_file(&self) -> Option<PathBuf> {
        let s = std::fs::read_to_string(self.sys("backing_file")).ok()?;
        let s = s.trim_end_matches('\n');
        (!s.is_empty()).then(|| PathBuf::from(s))
    }

    /// Whether the kernel actually does direct I/O on the backing file.
    pub fn direct_io(&self) -> bool {
        std::fs::read_to_string(self.sys("dio")).is_ok_and(|s| s.trim() == "1")
    }

    /// The identity of the bound file, or `None` if the device is free.
    pub fn backing_id(&self) -> Result<Option<BackingId>, LoopError> {
        let path = self.path();
        let dev = File::open(&path).map_err(io_err("open", &path))?;
        status_of(&dev, &path)
    }

    /// Unbinds the file only if it is still the one identified by `expected` (checked on
    /// the same descriptor right before `LOOP_CLR_FD`): a device released earlier may
    /// since have been taken by someone else, whose binding must not be cleared.
    pub fn detach_if_bound_to(&self, expected: BackingId) -> Result<Detached, LoopError> {
        let path = self.path();
        let dev = File::open(&path).map_err(io_err("open", &path))?;
        match status_of(&dev, &path)? {
            None => return Ok(Detached::AlreadyFree),
            Some(found) if found != expected => {
                return Err(LoopError::NotOurs {
                    device: path,
                    expected,
                    found,
                })
            }
            Some(_) => {}
        }
        clear_fd(&dev, &path)
    }

    /// Unbinds the file (`LOOP_CLR_FD`). If the device is still open (mounted), the
    /// kernel defers the release to the last close, as `losetup -d` does.
    pub fn detach(&self) -> Result<(), LoopError> {
        let path = self.path();
        let dev = OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        clear_fd(&dev, &path).map(|_| ())
    }
}

/// `LOOP_GET_STATUS64` on an open loop device: the bound file's identity, `None` if free.
fn status_of(dev: &File, path: &Path) -> Result<Option<BackingId>, LoopError> {
    let mut info = LoopInfo64::zeroed();
    // SAFETY: LOOP_GET_STATUS64 writes one `struct loop_info64` into `info`, which is
    // ours, of the kernel's layout (checked by a test) and outlives the call.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_GET_STATUS64 as _, &mut info) };
    if r == 0 {
        return Ok(Some(BackingId {
            dev: info.lo_device,
            ino: info.lo_inode,
        }));
    }
    let e = std::io::Error::last_os_error();
    // ENXIO: nothing bound.
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(io_err("LOOP_GET_STATUS64", path)(e))
    }
}

/// `LOOP_CLR_FD` on an open loop device.
fn clear_fd(dev: &File, path: &Path) -> Result<Detached, LoopError> {
    // SAFETY: ioctl without argument on an fd we own.
    if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        // ENXIO: already free.
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(Detached::AlreadyFree);
        }
        return Err(io_err("detach", path)(e));
    }
    Ok(Detached::Released)
}

fn free_device(control: &File) -> Result<LoopDevice, LoopError> {
    // SAFETY: ioctl without argument on an fd we own; returns a device number.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if n < 0 {
        return Err(io_err("LOOP_CTL_GET_FREE on", Path::new(LOOP_CONTROL))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(LoopDevice { number: n as u32 })
}

fn open_backing(file: &Path, opts: &LoopOptions, direct: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(!opts.read_only)
        .custom_flags(if direct { libc::O_DIRECT } else { 0 })
        .open(file)
}

/// Binds `file` to a free loop device.
pub fn attach(file: &Path, opts: &LoopOptions) -> Result<LoopDevice, LoopError> {
    if let Some(bs) = opts.block_size {
        if !(512..=4096).contains(&bs) || !bs.is_power_of_two() {
            return Err(LoopError::BlockSize(bs));
        }
    }
    let backing = match open_backing(file, opts, opts.direct_io) {
        Ok(f) => f,
        // Filesystems without O_DIRECT refuse it at open: fall back to buffered I/O.
        Err(e) if opts.direct_io && e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(file = %file.display(), "O_DIRECT refused; loop device will use buffered I/O");
            open_backing(file, opts, false).map_err(io_err("open", file))?
        }
        Err(e) => return Err(io_err("open", file)(e)),
    };
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(LOOP_CONTROL)
        .map_err(io_err("open", Path::new(LOOP_CONTROL)))?;
    let mut flags = 0;
    if opts.read_only {
        flags |= LO_FLAGS_READ_ONLY;
    }
    if opts.autoclear {
        flags |= LO_FLAGS_AUTOCLEAR;
    }
    if opts.direct_io {
        flags |= LO_FLAGS_DIRECT_IO;
    }
    let mut name = [0u8; LO_NAME_SIZE];
    let bytes = file.as_os_str().as_encoded_bytes();
    let n = bytes.len().min(LO_NAME_SIZE - 1);
    name[..n].copy_from_slice(&bytes[..n]);
    const ATTEMPTS: u32 = 16;
    for _ in 0..ATTEMPTS {
        let dev = free_device(&control)?;
        let path = dev.path();
        let loop_file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            // udev may not have created the node yet; another number next time.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let config = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: opts.block_size.unwrap_or(0),
            info: LoopInfo64 {
                lo_flags: flags,
                lo_file_name: name,
                ..LoopInfo64::zeroed()
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config` that outlives the call.
        let r = unsafe { libc::ioctl(loop_file.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
        if r == 0 {
            tracing::info!(file = %file.display(), device = %path.display(), direct_io = dev.direct_io(), "loop device bound");
            return Ok(dev);
        }
        let e = std::io::Error::last_os_error();
        // EBUSY: someone bound it between GET_FREE and CONFIGURE; take another.
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(io_err("LOOP_CONFIGURE", &path)(e));
        }
    }
    Err(LoopError::NoFreeDevice(ATTEMPTS))
}

/// Loop devices currently bound to `file` (compared by canonical path).
pub fn find_by_backing_file(file: &Path) -> Vec<LoopDevice> {
    let want = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out: Vec<LoopDevice> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("loop")?.parse().ok())
        .map(|number| LoopDevice { number })
        .filter(|d| d.backing_file().as_deref() == Some(want.as_path()))
        .collect();
    out.sort_by_key(|d| d.number);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_config_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn device_paths_parse() {
        let d = LoopDevice::from_path(Path::new("/dev/loop12")).unwrap();
        assert_eq!(d.number, 12);
        assert_eq!(d.path(), Path::new("/dev/loop12"));
        assert!(LoopDevice::from_path(Path::new("/dev/sda")).is_err());
        assert!(LoopDevice::from_path(Path::new("/dev/loopx")).is_err());
    }

    #[test]
    fn bad_block_size_refused() {
        let o = LoopOptions {
            block_size: Some(1000),
            ..Default::default()
        };
        assert!(matches!(
            attach(Path::new("/nonexistent"), &o),
            Err(LoopError::BlockSize(1000))
        ));
    }
}
