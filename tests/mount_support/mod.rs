//! Shared helpers of the mount tests: real kernel, real tools, no silent skips.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use atrest::loopdev::{self, LoopDevice, LoopOptions};
use atrest::mount::{Mount, MountHandle, MountOptions};
use atrest::volume::{VolumeHeaderParams, VolumeImage, XtsKey};

pub const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// Fails (never skips) with a clear message when the machine cannot run these tests.
pub fn require_kernel_and_tools(tools: &[&str]) {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these tests need the FUSE device (modprobe fuse, or run the container with --device /dev/fuse)"
    );
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the mount tests need root (losetup, mount, mkfs)"
    );
    for t in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{t} is missing: run scripts/install-deps.sh");
    }
    if tools.contains(&"losetup") {
        assert!(
            Path::new("/dev/loop-control").exists(),
            "/dev/loop-control is missing: these tests need loop devices"
        );
    }
}

/// Creates an encrypted image of `size` bytes with a fresh random key.
pub fn create_volume(dir: &Path, volume_id: &str, size: u64) -> (PathBuf, XtsKey) {
    let path = dir.join(format!("{volume_id}.img"));
    let params = VolumeHeaderParams::encrypted(volume_id, size, ARN, vec![0xA5; 184]);
    VolumeImage::create(&path, &params).expect("create volume image");
    (path, XtsKey::generate())
}

/// Opens an image with a copy of `key` (as a reattach would, after a new Decrypt).
pub fn open_volume(path: &Path, key: &XtsKey) -> Arc<VolumeImage> {
    let k = XtsKey::from_bytes(key.as_bytes()).expect("key copy");
    Arc::new(VolumeImage::open(path, Some(k)).expect("open volume image"))
}

pub fn start(mountpoint: &Path, strict: bool) -> MountHandle {
    atrest::logging::init();
    let mut o = MountOptions::new(mountpoint);
    o.strict_revocation = strict;
    Mount::start(o).expect("start mount")
}

/// A fresh mount (under a new temp dir) serving one new encrypted volume as `i-1/xvda`:
/// (temp dir, mountpoint, handle, served file, image, key). Bind them in that order, so
/// the mount is dropped before its directory.
pub fn serve_one(
    volume_id: &str,
    size: u64,
) -> (
    tempfile::TempDir,
    PathBuf,
    MountHandle,
    PathBuf,
    PathBuf,
    XtsKey,
) {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let h = start(&mp, false);
    let (img, key) = create_volume(dir.path(), volume_id, size);
    let path = h
        .add("i-1", "xvda", open_volume(&img, &key), 0, 0, volume_id)
        .unwrap();
    (dir, mp, h, path, img, key)
}

/// Runs a command; panics with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device released on drop (also when a test fails).
pub struct Loop(pub LoopDevice);

impl Loop {
    pub fn attach(file: &Path, direct_io: bool) -> Loop {
        let opts = LoopOptions {
            direct_io,
            block_size: Some(4096),
            ..Default::default()
        };
        Loop(loopdev::attach(file, &opts).expect("attach loop device"))
    }
    pub fn dev(&self) -> String {
        self.0.path().to_string_lossy().into_owned()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = self.0.detach();
    }
}

/// A mounted block filesystem, unmounted on drop.
pub struct Mounted(pub PathBuf);

impl Mounted {
    pub fn new(dev: &str, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        run("mount", &[dev, &dir.to_string_lossy()]);
        Mounted(dir.to_path_buf())
    }
    pub fn unmount(self) {
        run("umount", &[&self.0.to_string_lossy()]);
        std::mem::forget(self);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Deterministic pseudo-random bytes (xorshift), so expected contents need no storage.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
