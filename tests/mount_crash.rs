//! kill -9 of the serving process during writes: the mountpoint is left stale, the next
//! server recovers it by itself, the ext4 inside is consistent (journal replay, then
//! `e2fsck -fn` clean) and everything fsync'd before the crash is there; and the
//! changed-block record the killed server leaves makes the next snapshot incremental with
//! every acknowledged write in it.

mod mount_support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atrest::mount::daemon::{self, MountState};
use mount_support::*;

const MIB: u64 = 1 << 20;

struct Server {
    child: Child,
    served: PathBuf,
}

impl Server {
    fn start(mp: &Path, img: &Path, key_hex: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atrest-serve-volume"))
            .args(["--mountpoint", &mp.to_string_lossy()])
            .args(["--image", &img.to_string_lossy()])
            .args(["--key-stdin", "--volume-id", "vol-0c0c0c0c0c0c0c0c1"])
            .args(["--instance", "i-0crash", "--device", "xvda"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn atrest-serve-volume");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{key_hex}").unwrap();
        drop(stdin);
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let served = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("server did not get ready: {line:?}"))
            .into();
        Server { child, served }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kill_9_during_writes_then_recover_remount_fsck_clean_fsynced_data_present() {
    require_kernel_and_tools(&["losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "dd"]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let fsdir = dir.path().join("fs");
    let (img, key) = create_volume(dir.path(), "vol-0c0c0c0c0c0c0c0c1", 160 * MIB);
    let key_hex = hex::encode(key.as_bytes());

    let durable = pattern(42, 5 * MIB as usize + 123);
    {
        let server = Server::start(&mp, &img, &key_hex);
        let lo = Loop::attach(&server.served, true);
        run("mkfs.ext4", &["-q", "-F", &lo.dev()]);
        let m = Mounted::new(&lo.dev(), &fsdir);
        // Data made durable before the crash: one fsync'd file, a synced directory.
        let mut f = std::fs::File::create(m.0.join("durable.bin")).unwrap();
        f.write_all(&durable).unwrap();
        f.sync_all().unwrap();
        drop(f);
        std::fs::create_dir(m.0.join("small")).unwrap();
        for i in 0..50u64 {
            std::fs::write(
                m.0.join(format!("small/{i}")),
                pattern(i, 100 + i as usize * 37),
            )
            .unwrap();
        }
        run("sync", &[]);

        // Writes in flight when the server dies: the file is rewritten over and over
        // until a write fails, however fast the mount is.
        let mut writer = Command::new("sh")
            .arg("-c")
            .arg(
                "while dd if=/dev/urandom of=\"$1\" bs=1M count=100 oflag=direct status=none; \
                 do :; done; exit 1",
            )
            .arg("writer")
            .arg(m.0.join("inflight.bin"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            writer.try_wait().unwrap().is_none(),
            "the writer must still be writing when the server is killed"
        );
        let mut server = server;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        let st = writer.wait().unwrap();
        assert!(
            !st.success(),
            "writes in flight must fail once the server is gone"
        );

        assert_eq!(
            daemon::mount_state(&mp),
            MountState::Stale,
            "a killed server leaves a stale mount (Transport endpoint is not connected)"
        );
        // Tear down what sat on top of the dead file.
        drop(m); // umount -l
        drop(lo); // LOOP_CLR_FD
    }

    // The next server detaches the stale mount by itself and serves the same volume.
    let server = Server::start(&mp, &img, &key_hex);
    assert!(matches!(
        daemon::mount_state(&mp),
        MountState::Mounted { .. }
    ));
    let lo = Loop::attach(&server.served, true);
    let m = Mounted::new(&lo.dev(), &fsdir); // replays the journal
    let got = std::fs::read(m.0.join("durable.bin")).unwrap();
    assert!(got == durable, "fsync'd file differs after the crash");
    for i in 0..50u64 {
        let got = std::fs::read(m.0.join(format!("small/{i}"))).unwrap();
        assert_eq!(got, pattern(i, 100 + i as usize * 37), "small/{i}");
    }
    m.unmount();
    run("e2fsck", &["-fn", &lo.dev()]);
    drop(lo);

    // SIGTERM: clean unmount and exit 0.
    let mut server = server;
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert!(status.success(), "server exit after SIGTERM: {status}");
    assert_eq!(daemon::mount_state(&mp), MountState::NotMounted);
}

/// The whole payload of an image, decrypted.
fn payload_of(path: &Path, key: &atrest::volume::XtsKey) -> Vec<u8> {
    let k = atrest::volume::XtsKey::from_bytes(key.as_bytes()).unwrap();
    let img = atrest::volume::VolumeImage::open_read_only(path, Some(k)).unwrap();
    let mut v = vec![0u8; img.size() as usize];
    img.read_at(&mut v, 0).unwrap();
    v
}

fn sigterm(mut server: Server) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert!(status.success(), "server exit after SIGTERM: {status}");
}

#[test]
fn kill_9_during_writes_then_the_incremental_snapshot_has_every_acknowledged_write() {
    use atrest::volume::snapshot::{SnapshotSource, SnapshotStore};
    use std::os::unix::fs::FileExt;
    require_kernel_and_tools(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let (img, key) = create_volume(dir.path(), "vol-0c0c0c0c0c0c0c0c2", 32 * MIB);
    let key_hex = hex::encode(key.as_bytes());
    let store = SnapshotStore::open(&dir.path().join("snapshots")).unwrap();
    let snapshot = |id: &str| {
        let mut total = None;
        let m = store
            .create(SnapshotSource::Path(&img), id, &mut |p| {
                total.get_or_insert(p.total);
            })
            .unwrap();
        (m, total.unwrap())
    };
    let restored = |m: &atrest::volume::snapshot::Manifest| {
        let dest = dir.path().join(format!("{}.img", m.snapshot_id));
        store
            .restore(
                &m.snapshot_id,
                &dest,
                &m.volume,
                atrest::volume::DataKeys::default(),
                &mut |_| {},
            )
            .unwrap();
        payload_of(&dest, &key)
    };

    // The volume written through the mount, the server stopped cleanly, a full snapshot.
    let server = Server::start(&mp, &img, &key_hex);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&server.served)
        .unwrap();
    f.write_all_at(&pattern(1, 32 * MIB as usize), 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    sigterm(server);
    let (first, read) = snapshot("snap-first");
    assert_eq!(first.incremental_from, None);
    assert_eq!(read, 32 * MIB);

    // Writes to chunks 8..12 in flight when the server is killed.
    let mut server = Server::start(&mp, &img, &key_hex);
    let served = server.served.clone();
    let writer = std::thread::spawn(move || {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&served)
            .unwrap();
        let mut acked = Vec::new();
        for i in 0u64.. {
            let off = 8 * MIB + (i % 64) * (64 << 10);
            let data = pattern(100 + i, 64 << 10);
            if f.write_all_at(&data, off).is_err() {
                break;
            }
            acked.push((off, data));
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(400));
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let acked = writer.join().unwrap();
    assert!(
        acked.len() > 10,
        "only {} writes before the kill",
        acked.len()
    );

    let (after_kill, read) = snapshot("snap-after-kill");
    assert_eq!(after_kill.incremental_from.as_deref(), Some("snap-first"));
    assert!(read <= 4 * MIB, "read {read} bytes for 4 changed chunks");
    let snap = restored(&after_kill);
    assert!(
        snap == payload_of(&img, &key),
        "snapshot differs from the image"
    );
    for (off, data) in acked.iter().rev().take(64) {
        let o = *off as usize;
        assert!(
            &snap[o..o + data.len()] == data,
            "acknowledged write at {off} missing"
        );
    }

    // The next server recovers the stale mount and takes the record over.
    let server = Server::start(&mp, &img, &key_hex);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&server.served)
        .unwrap();
    f.write_all_at(b"one more", 30 * MIB).unwrap();
    drop(f);
    sigterm(server);
    let (last, read) = snapshot("snap-last");
    assert_eq!(last.incremental_from.as_deref(), Some("snap-after-kill"));
    assert_eq!(read, MIB);
    assert!(restored(&last) == payload_of(&img, &key));
    assert_eq!(daemon::mount_state(&mp), MountState::NotMounted);
}
