//! The FUSE view itself, served in-process from real encrypted images: layout, ownership,
//! sizes, errno semantics, durability hooks, revocation, detach rules, cache invalidation.

mod mount_support;

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::sync::Arc;

use atrest::mount::{
    BlockDevice, Mount, MountError, MountOptions, PlainFile, TableError, Unavailable,
};
use mount_support::*;

const MIB: u64 = 1 << 20;

#[test]
fn files_appear_with_exact_size_owner_and_mode_and_disappear() {
    require_kernel_and_tools(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let h = start(&mp, false);
    let (img_a, key_a) = create_volume(dir.path(), "vol-0aaaaaaaaaaaaaaaa", 8 * MIB + 4096);
    let (img_b, key_b) = create_volume(dir.path(), "vol-0bbbbbbbbbbbbbbbb", 4 * MIB);

    assert_eq!(std::fs::read_dir(&mp).unwrap().count(), 0);
    let pa = h
        .add(
            "i-0123",
            "xvda",
            open_volume(&img_a, &key_a),
            1234,
            2345,
            "vol-0aaaaaaaaaaaaaaaa",
        )
        .unwrap();
    assert_eq!(pa, mp.canonicalize().unwrap().join("i-0123/xvda"));
    let m = std::fs::metadata(&pa).unwrap();
    assert!(m.is_file());
    assert_eq!(m.len(), 8 * MIB + 4096);
    assert_eq!((m.uid(), m.gid()), (1234, 2345));
    assert_eq!(m.mode() & 0o7777, 0o600);

    // A second volume appears in the same directory without remounting.
    let pb = h
        .add(
            "i-0123",
            "xvdf",
            open_volume(&img_b, &key_b),
            1234,
            2345,
            "vol-0bbbbbbbbbbbbbbbb",
        )
        .unwrap();
    let mut names: Vec<_> = std::fs::read_dir(mp.join("i-0123"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["xvda", "xvdf"]);
    assert_eq!(std::fs::metadata(&pb).unwrap().len(), 4 * MIB);

    // statfs answers.
    let st = nix_statvfs(&mp);
    assert_eq!(st.0, 4096);
    assert!(st.1 >= (12 * MIB + 4096) / 4096);

    // The same volume cannot be served twice, names cannot escape the tree.
    assert!(matches!(
        h.add(
            "i-0999",
            "xvda",
            open_volume(&img_a, &key_a),
            0,
            0,
            "vol-0aaaaaaaaaaaaaaaa"
        ),
        Err(MountError::Table(TableError::VolumeAlreadyServed { .. }))
    ));
    assert!(matches!(
        h.add("../etc", "xvda", open_volume(&img_a, &key_a), 0, 0, "vol-x"),
        Err(MountError::Table(TableError::InvalidName { .. }))
    ));

    h.remove("i-0123", "xvda").unwrap();
    assert_eq!(
        std::fs::metadata(&pa).unwrap_err().kind(),
        ErrorKind::NotFound,
        "detached file must disappear at once (cache invalidated)"
    );
    h.remove("i-0123", "xvdf").unwrap();
    assert!(
        !mp.join("i-0123").exists(),
        "empty instance directory disappears"
    );
    h.unmount().unwrap();
    assert!(!is_mounted(&mp));
}

fn nix_statvfs(p: &std::path::Path) -> (u64, u64) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    (st.f_bsize, st.f_blocks)
}

fn is_mounted(p: &std::path::Path) -> bool {
    let p = p.canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*p.to_string_lossy()))
}

#[test]
fn data_round_trips_and_the_image_never_holds_plaintext() {
    require_kernel_and_tools(&[]);
    let (_dir, _mp, h, path, img, key) = serve_one("vol-0ccccccccccccccc1", 16 * MIB);

    // A known, recognizable 1 MiB pattern, written aligned and unaligned.
    let marker = b"ATREST-PLAINTEXT-MARKER-0123456789abcdef";
    let mut pat = Vec::with_capacity(MIB as usize);
    while pat.len() < MIB as usize {
        pat.extend_from_slice(marker);
    }
    pat.truncate(MIB as usize);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all_at(&pat, 3 * MIB).unwrap();
    f.write_all_at(&pat[..300_001], 7 * MIB + 123).unwrap();
    f.sync_data().unwrap();

    let mut back = vec![0u8; MIB as usize];
    f.read_exact_at(&mut back, 3 * MIB).unwrap();
    assert!(back == pat, "aligned data read back");
    let mut back = vec![0u8; 300_001];
    f.read_exact_at(&mut back, 7 * MIB + 123).unwrap();
    assert!(back == pat[..300_001], "unaligned data read back");
    // Untouched regions read as zeros; a read past the end returns nothing.
    let mut z = vec![1u8; 4096];
    f.read_exact_at(&mut z, 0).unwrap();
    assert!(z.iter().all(|&b| b == 0));
    let mut tail = [0u8; 16];
    assert_eq!(f.read_at(&mut tail, 16 * MIB).unwrap(), 0);
    drop(f);

    // fsync reached the image file: the ciphertext is on disk, the plaintext is nowhere.
    let raw = std::fs::read(&img).unwrap();
    assert!(raw.len() as u64 >= 16 * MIB);
    let needle = &marker[..16];
    assert!(
        !raw.windows(needle.len()).any(|w| w == needle),
        "plaintext marker found in the backing image"
    );
    // ...and it decrypts from the image alone with the key (not from a cache).
    h.remove("i-1", "xvda").unwrap();
    let again = open_volume(&img, &key);
    let mut back = vec![0u8; MIB as usize];
    again.read_at(&mut back, 3 * MIB).unwrap();
    assert!(back == pat);
    h.unmount().unwrap();
}

#[test]
fn writes_past_the_end_truncation_and_creation_are_refused() {
    require_kernel_and_tools(&[]);
    let (_dir, mp, h, path, _img, _key) = serve_one("vol-0ddddddddddddddd1", 4 * MIB);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all_at(b"ok", 4 * MIB - 2).unwrap();
    // Straddling the end: the whole request reaches the server (direct I/O, no page
    // cache to split it) and is refused whole; no byte of it is written.
    let e = f.write_at(b"abc", 4 * MIB - 2).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EFBIG),
        "straddling the end: {e}"
    );
    let expect_tail = b"ok";
    let e = f.write_at(b"abc", 4 * MIB).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "at the end: {e}");
    let e = f.write_at(b"abc", 1 << 40).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "far past the end: {e}");
    // Nothing grew, nothing was lost.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * MIB);
    let mut b = [0u8; 2];
    f.read_exact_at(&mut b, 4 * MIB - 2).unwrap();
    assert_eq!(&b, expect_tail);

    let e = f.set_len(MIB).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "truncate: {e}");
    let e = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "O_TRUNC: {e}");
    f.set_len(4 * MIB)
        .expect("setting the same size is a no-op");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * MIB);

    let e = std::fs::write(mp.join("i-1/new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "create: {e}");
    let e = std::fs::create_dir(mp.join("i-2")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "mkdir: {e}");
    let e = std::fs::remove_file(&path).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "unlink: {e}");
    drop(f);
    h.remove("i-1", "xvda").unwrap();
    h.unmount().unwrap();
}

#[test]
fn strict_revocation_fails_io_with_ekeyrevoked() {
    require_kernel_and_tools(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let (img, key) = create_volume(dir.path(), "vol-0eeeeeeeeeeeeeee1", 4 * MIB);

    // Without strict revocation a key is never dropped under a running volume.
    let h = start(&mp, false);
    h.add(
        "i-1",
        "xvda",
        open_volume(&img, &key),
        0,
        0,
        "vol-0eeeeeeeeeeeeeee1",
    )
    .unwrap();
    assert!(matches!(
        h.revoke("vol-0eeeeeeeeeeeeeee1"),
        Err(MountError::RevocationNotStrict { .. })
    ));
    h.remove("i-1", "xvda").unwrap();
    h.unmount().unwrap();

    let h = start(&mp, true);
    let dev = open_volume(&img, &key);
    let weak = Arc::downgrade(&dev);
    let path = h
        .add("i-1", "xvda", dev, 0, 0, "vol-0eeeeeeeeeeeeeee1")
        .unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap();
    let mut buf = AlignedBuf::new(4096);
    f.write_all_at(buf.as_mut(), 0).unwrap();
    h.revoke("vol-0eeeeeeeeeeeeeee1").unwrap();
    // Freed as soon as the request that last used it has finished (its reply can reach
    // us a moment before the serving thread drops its reference).
    let t0 = std::time::Instant::now();
    while weak.upgrade().is_some() && t0.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        weak.upgrade().is_none(),
        "the image (and its key) is freed at once"
    );
    let e = f.read_at(buf.as_mut(), 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EKEYREVOKED), "read: {e}");
    let e = f.write_at(buf.as_mut(), 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EKEYREVOKED), "write: {e}");
    let e = f.sync_data().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EKEYREVOKED), "fdatasync: {e}");
    let e = OpenOptions::new().read(true).open(&path).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EKEYREVOKED), "open: {e}");
    let info = h.files();
    assert_eq!(info[0].unavailable, Some(Unavailable::Revoked));
    drop(f);
    h.remove("i-1", "xvda").unwrap();
    h.unmount().unwrap();
}

/// Files are opened with `FOPEN_DIRECT_IO`; a shared mapping (which the kernel then allows
/// only with `FUSE_DIRECT_IO_ALLOW_MMAP`) still works and stays coherent with `pread`/`pwrite`.
#[test]
fn shared_mmap_stays_coherent_with_reads_and_writes() {
    require_kernel_and_tools(&[]);
    let (_dir, _mp, h, path, img, key) = serve_one("vol-0ccccccccccccccc5", 4 * MIB);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all_at(&[0xA5; 8192], MIB).unwrap();
    let len = 2 * MIB as usize;
    let mib = MIB as usize;
    // SAFETY: a new shared mapping of a file we hold open; unmapped before `f` is dropped.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        )
    };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: p maps len bytes, readable and writable, until munmap below.
    let m = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
    assert!(m[mib..mib + 8192].iter().all(|&b| b == 0xA5));
    // A store through the mapping reaches the server at msync...
    m[4096..4096 + 11].copy_from_slice(b"via-mmap-ok");
    // SAFETY: p and len are the mapping made above.
    assert_eq!(unsafe { libc::msync(p, len, libc::MS_SYNC) }, 0);
    let mut back = [0u8; 11];
    f.read_exact_at(&mut back, 4096).unwrap();
    assert_eq!(&back, b"via-mmap-ok");
    // ...and a write through the file is seen by the mapping.
    f.write_all_at(b"via-pwrite", MIB + 100).unwrap();
    assert_eq!(&m[mib + 100..mib + 110], b"via-pwrite");
    // SAFETY: unmapping the mapping made above; `m` is not used after this.
    assert_eq!(unsafe { libc::munmap(p, len) }, 0);
    f.sync_data().unwrap();
    drop(f);
    h.remove("i-1", "xvda").unwrap();
    let again = open_volume(&img, &key);
    let mut back = [0u8; 11];
    again.read_at(&mut back, 4096).unwrap();
    assert_eq!(&back, b"via-mmap-ok");
    h.unmount().unwrap();
}

/// A page-aligned buffer for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}
impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        AlignedBuf { ptr, len }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: allocated with len bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}
impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, 4096).unwrap();
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) }
    }
}

#[test]
fn detach_is_refused_while_open_unless_forced_and_unmount_while_busy() {
    require_kernel_and_tools(&[]);
    let (_dir, _mp, h, path, img, key) = serve_one("vol-0fffffffffffffff1", 4 * MIB);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    assert!(h.is_open("i-1", "xvda"));
    assert_eq!(h.open_count("i-1", "xvda"), Some(1));
    assert!(matches!(
        h.remove("i-1", "xvda"),
        Err(MountError::Table(TableError::Busy { open: 1, .. }))
    ));
    assert!(matches!(h.unmount(), Err(MountError::Busy { .. })));
    // Still served after the refusals.
    f.write_all_at(b"still here", 0).unwrap();
    h.force_remove("i-1", "xvda").unwrap();
    assert!(!path.exists());
    let e = f.write_at(b"x", 0).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EIO),
        "I/O after forced detach: {e}"
    );
    drop(f);
    h.unmount().unwrap();
    // The image kept what was written before the detach.
    let again = open_volume(&img, &key);
    let mut b = [0u8; 10];
    again.read_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"still here");
}

#[test]
fn plain_file_device_and_many_threads_in_parallel() {
    require_kernel_and_tools(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let backing = dir.path().join("plain.raw");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    let h = start(&mp, false);
    let dev: Arc<dyn BlockDevice> = Arc::new(PlainFile::open(&backing).unwrap());
    let path = h.add("i-1", "sdb", dev, 0, 0, "vol-plain").unwrap();
    // 8 writers on interleaved unaligned ranges; then every byte checks out.
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let path = &path;
            s.spawn(move || {
                let f = OpenOptions::new().write(true).open(path).unwrap();
                for i in 0..32u64 {
                    let off = (i * 8 + t) * 131_071;
                    f.write_all_at(&pattern(off, 131_071), off).unwrap();
                }
                f.sync_all().unwrap();
            });
        }
    });
    let raw = std::fs::read(&backing).unwrap();
    for k in 0..256u64 {
        let off = k * 131_071;
        assert!(
            raw[off as usize..(off + 131_071) as usize] == pattern(off, 131_071)[..],
            "range {k} differs"
        );
    }
    h.remove("i-1", "sdb").unwrap();
    h.unmount().unwrap();
}

#[test]
fn fuse_threads_are_io_flushers_when_the_kernel_allows_it() {
    require_kernel_and_tools(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let h = start(&mp, false);
    // PF_MEMALLOC_NOIO (0x80000) and PF_LOCAL_THROTTLE (0x100000) in the task flags.
    const PF_IO_FLUSHER: u64 = 0x0008_0000 | 0x0010_0000;
    let mut fuse_threads = 0;
    let mut flagged = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let t = t.unwrap().path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        if !comm.starts_with("fuser-") {
            continue;
        }
        fuse_threads += 1;
        let stat = std::fs::read_to_string(t.join("stat")).unwrap();
        // Field 9 (flags), counted after the ")" that ends the comm field.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let flags: u64 = after.split(' ').nth(6).unwrap().parse().unwrap();
        if flags & PF_IO_FLUSHER == PF_IO_FLUSHER {
            flagged += 1;
        }
    }
    assert!(
        fuse_threads >= MountOptions::new("/").threads,
        "found {fuse_threads} FUSE threads"
    );
    if h.io_flusher() {
        assert_eq!(
            flagged, fuse_threads,
            "every FUSE thread must be an I/O flusher"
        );
    } else {
        // Only without CAP_SYS_RESOURCE (some containers): the prctl failed and said so.
        let caps = std::fs::read_to_string("/proc/self/status").unwrap();
        let eff = caps
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(
            eff & (1 << 24),
            0,
            "prctl failed although CAP_SYS_RESOURCE is held"
        );
        assert_eq!(flagged, 0);
        eprintln!("NOTE: no CAP_SYS_RESOURCE here: PR_SET_IO_FLUSHER refused (warning logged)");
    }
    // The caller's own thread is left alone.
    assert!(!atrest::mount::daemon::is_io_flusher());
    h.unmount().unwrap();
}

#[test]
fn a_second_mount_on_the_same_path_is_refused() {
    require_kernel_and_tools(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let h = start(&mp, false);
    match Mount::start(MountOptions::new(&mp)) {
        Err(MountError::AlreadyMounted { fstype, .. }) => assert!(fstype.starts_with("fuse")),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("second mount accepted"),
    }
    let mut bad = MountOptions::new(&mp);
    bad.threads = 0;
    assert!(matches!(
        Mount::start(bad),
        Err(MountError::InvalidOption { .. })
    ));
    h.unmount().unwrap();
    let e = Mount::start(MountOptions::new(dir.path().join("missing")))
        .err()
        .unwrap();
    assert!(matches!(e, MountError::Mountpoint { .. }), "{e}");
}

#[test]
fn byte_range_locks_work_as_qemu_takes_them() {
    require_kernel_and_tools(&[]);
    let (_dir, _mp, h, path, _img, _key) = serve_one("vol-0a0a0a0a0a0a0a0a1", 4 * MIB);
    let a = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let b = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // qemu locks single bytes at fixed offsets with open file description locks.
    let lock = |f: &std::fs::File, typ: i32, start: i64| {
        use std::os::fd::AsRawFd;
        // SAFETY: zeroed flock is a valid "unlock everything" template.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = typ as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        fl.l_start = start;
        fl.l_len = 1;
        // SAFETY: valid fd and flock.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    lock(&a, libc::F_WRLCK, 100).unwrap();
    lock(&b, libc::F_RDLCK, 101).unwrap();
    let e = lock(&b, libc::F_WRLCK, 100).unwrap_err();
    assert!(
        matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)),
        "conflicting lock must be refused: {e}"
    );
    lock(&a, libc::F_UNLCK, 100).unwrap();
    lock(&b, libc::F_WRLCK, 100).unwrap();
    drop((a, b));
    h.remove("i-1", "xvda").unwrap();
    h.unmount().unwrap();
}

/// The volume service's guard and its loop helper: with `refuse_own_process` the serving
/// process's own opens are refused (`EDEADLK`), other processes are served, and a loop
/// device is bound and released by a child (`atrest loop-helper`), which clears it only
/// while it still holds the file it bound.
#[test]
fn a_mount_refusing_its_own_process_serves_children_and_the_loop_helper() {
    use atrest::loopdev::helper::LoopHelper;
    use atrest::loopdev::{Detached, LoopError, LoopOptions};
    require_kernel_and_tools(&["losetup", "dd"]);
    atrest::logging::init();
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let mut o = MountOptions::new(&mp);
    o.refuse_own_process = true;
    let h = atrest::mount::Mount::start(o).unwrap();
    let (img, key) = create_volume(dir.path(), "vol-0ab0ab0ab0ab0ab01", 16 << 20);
    let path = h
        .add(
            "i-1",
            "xvda",
            open_volume(&img, &key),
            0,
            0,
            "vol-0ab0ab0ab0ab0ab01",
        )
        .unwrap();

    let e = std::fs::File::open(&path).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EDEADLK), "{e}");
    run(
        "dd",
        &[
            &format!("if={}", path.display()),
            "of=/dev/null",
            "bs=4096",
            "count=1",
        ],
    );

    let helper = LoopHelper::new(env!("CARGO_BIN_EXE_atrest"));
    let opts = LoopOptions {
        direct_io: true,
        ..Default::default()
    };
    let other = dir.path().join("other.img");
    std::fs::write(&other, vec![0u8; 1 << 20]).unwrap();
    // Bind, release, and have someone else take the same /dev/loopN (another test may
    // take it first: then try again).
    let mut taken = None;
    for _ in 0..5 {
        let bound = helper.attach(&path, &opts).expect("loop helper attach");
        assert_eq!(bound.device.backing_file().as_deref(), Some(path.as_path()));
        assert!(bound.device.direct_io(), "the loop device does direct I/O");
        assert_eq!(helper.detach(&bound).unwrap(), Detached::Released);
        let dev = bound.device.path();
        let st = std::process::Command::new("losetup")
            .arg(&dev)
            .arg(&other)
            .status()
            .unwrap();
        if st.success() {
            taken = Some(bound);
            break;
        }
    }
    let bound = taken.expect("could not rebind a released loop device to another file");
    // A stale second release must leave the new owner's binding alone.
    match helper.detach(&bound) {
        Err(LoopError::HelperFailed { stderr, .. }) => {
            assert!(stderr.contains("bound to another file"), "{stderr}")
        }
        other => panic!("a released device now holding another file: {other:?}"),
    }
    assert_eq!(
        bound.device.backing_file().as_deref(),
        Some(other.as_path())
    );
    bound.device.detach().unwrap();
    h.remove("i-1", "xvda").unwrap();
}
