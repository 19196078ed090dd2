//! Real block-device use of a served encrypted volume: losetup, mkfs.ext4, mount, a tree
//! of files, detach, reattach with the key again, remount: every byte identical.

mod mount_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use atrest::loopdev;
use mount_support::*;

const MIB: u64 = 1 << 20;

/// Writes a tree of files of assorted sizes (empty, tiny, unaligned, multi-MiB) and
/// returns relative path -> content.
fn write_tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let sizes = [
        0usize,
        1,
        511,
        4096,
        4097,
        65_537,
        1_000_003,
        3 * MIB as usize + 17,
    ];
    for d in 0..4u64 {
        let dir = PathBuf::from(format!("dir{d}/sub{}", d % 2));
        std::fs::create_dir_all(root.join(&dir)).unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            let rel = dir.join(format!("file{i}.bin"));
            let data = pattern(d * 100 + i as u64, len);
            std::fs::write(root.join(&rel), &data).unwrap();
            files.insert(rel, data);
        }
    }
    files
}

fn check_tree(root: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    for (rel, data) in files {
        let got = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel:?}: {e}"));
        assert!(got == *data, "{rel:?} differs after reattach");
    }
}

#[test]
fn ext4_tree_survives_detach_and_reattach_byte_identical() {
    require_kernel_and_tools(&["losetup", "mkfs.ext4", "e2fsck", "mount", "umount"]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let h = start(&mp, false);
    let (img, key) = create_volume(dir.path(), "vol-0e4e4e4e4e4e4e4e1", 128 * MIB);
    let served = h
        .add(
            "i-0e4",
            "xvdf",
            open_volume(&img, &key),
            0,
            0,
            "vol-0e4e4e4e4e4e4e4e1",
        )
        .unwrap();

    let files = {
        let lo = Loop::attach(&served, true);
        assert_eq!(
            lo.0.backing_file().as_deref(),
            Some(served.as_path()),
            "loop device bound to the served file"
        );
        assert!(
            h.is_open("i-0e4", "xvdf"),
            "the loop device holds the file open"
        );
        run("mkfs.ext4", &["-q", "-F", &lo.dev()]);
        let m = Mounted::new(&lo.dev(), &dir.path().join("fs"));
        let files = write_tree(&m.0);
        run("sync", &[]);
        // Detach is refused while the loop device holds the file.
        assert!(h.remove("i-0e4", "xvdf").is_err());
        m.unmount();
        lo.0.detach().unwrap();
        std::mem::forget(lo);
        files
    };
    h.remove("i-0e4", "xvdf").unwrap();
    assert!(!served.exists());

    // Reattach: a new image handle with the key obtained again, buffered loop this time.
    let served = h
        .add(
            "i-0e4",
            "xvdf",
            open_volume(&img, &key),
            0,
            0,
            "vol-0e4e4e4e4e4e4e4e1",
        )
        .unwrap();
    let lo = Loop::attach(&served, false);
    run("e2fsck", &["-fn", &lo.dev()]);
    let m = Mounted::new(&lo.dev(), &dir.path().join("fs"));
    check_tree(&m.0, &files);
    m.unmount();
    drop(lo);
    h.remove("i-0e4", "xvdf").unwrap();
    h.unmount().unwrap();

    // The image holds ciphertext only: no 64-byte run of any file is in it.
    let raw = std::fs::read(&img).unwrap();
    let needle = &files[Path::new("dir0/sub0/file7.bin")][4096..4160];
    assert!(
        !raw.windows(64).any(|w| w == needle),
        "plaintext in the image"
    );
}

#[test]
fn losetup_direct_io_on_works_on_a_served_file() {
    require_kernel_and_tools(&["losetup", "dd"]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let h = start(&mp, false);
    let (img, key) = create_volume(dir.path(), "vol-0d10d10d10d10d101", 32 * MIB);
    let served = h
        .add(
            "i-0d1",
            "xvdb",
            open_volume(&img, &key),
            0,
            0,
            "vol-0d10d10d10d10d101",
        )
        .unwrap();
    let out = run(
        "losetup",
        &[
            "--direct-io=on",
            "--sector-size",
            "4096",
            "--find",
            "--show",
            &served.to_string_lossy(),
        ],
    );
    let dev = out.trim().to_string();
    let lo = Loop(loopdev::LoopDevice::from_path(Path::new(&dev)).unwrap());
    assert!(
        lo.0.direct_io(),
        "the kernel must really do direct I/O on the served file"
    );
    let data = pattern(7, 8 * MIB as usize);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    run(
        "dd",
        &[
            &format!("if={}", src.display()),
            &format!("of={dev}"),
            "bs=1M",
            "oflag=direct",
            "conv=fsync",
            "status=none",
        ],
    );
    run("losetup", &["-d", &dev]);
    std::mem::forget(lo);
    // Read back through the mount and straight from the image.
    let got = std::fs::read(&served).unwrap();
    assert!(got[..data.len()] == data[..]);
    h.remove("i-0d1", "xvdb").unwrap();
    let img = open_volume(&img, &key);
    let mut back = vec![0u8; data.len()];
    img.read_at(&mut back, 0).unwrap();
    assert!(back == data);
    h.unmount().unwrap();
}
