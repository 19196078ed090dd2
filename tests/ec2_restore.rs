//! Restores available at once (lazy restores) through the volume service, end to end: the
//! built CLI, a real kmsd, `atrest mount` serving through FUSE. A volume made from a large
//! snapshot is `available` and attachable while its chunks are still being copied; what
//! the guest reads is the snapshot and what it writes stays; fio randrw on it ends equal to
//! the same fio run on a plain copy of the snapshot; a kill -9 of the service mid-copy is
//! resumed at the next start and ends byte-identical.

mod ec2_support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use atrest::volume::fillmap::FillMap;
use atrest::volume::lazy;
use ec2_support::Lab;
use rand::{RngCore, SeedableRng};

const MIB: u64 = 1 << 20;

/// Writes seeded random data into every `stride`-th MiB of the first `data_mib` MiB of a new
/// encrypted 1 GiB volume (the rest stays a hole), snapshots it and returns (snapshot ID,
/// the volume's plaintext as a model).
fn random_snapshot(lab: &Lab, data_mib: u64, stride: u64, seed: u64) -> (String, Vec<u8>) {
    let vol = lab.new_volume(&["--size", "1", "--encrypted", "--kms-key-id", "alias/lazy"]);
    let img = lab.open_image(&vol);
    let mut model = vec![0u8; img.size() as usize];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for c in (0..data_mib).step_by(stride as usize) {
        let at = (c * MIB) as usize;
        rng.fill_bytes(&mut model[at..at + MIB as usize]);
        img.write_at(&model[at..at + MIB as usize], c * MIB)
            .unwrap();
    }
    img.sync_data().unwrap();
    drop(img);
    let s = lab.ec2(&["create-snapshot", "--volume-id", &vol]);
    let snap = s["SnapshotId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "snapshot-completed", "--snapshot-ids", &snap]);
    (snap, model)
}

fn create_from(lab: &Lab, snap: &str) -> String {
    let v = lab.ec2(&[
        "create-volume",
        "--snapshot-id",
        snap,
        "--availability-zone",
        "us-east-1a",
    ]);
    v["VolumeId"].as_str().unwrap().to_string()
}

/// Polls describe-volumes until the volume is `available`.
fn until_available(lab: &Lab, vol: &str) {
    lab.until(30, "the volume to be available", || {
        lab.volume(vol)["State"] == "available"
    });
}

fn fill_map(lab: &Lab, vol: &str) -> Option<FillMap> {
    let bytes = std::fs::read(lazy::fill_path(&lab.image_path(vol))).ok()?;
    Some(FillMap::decode(&bytes).unwrap())
}

fn attach(lab: &Lab, vol: &str) -> PathBuf {
    let out = lab.run_ok(&["attach", vol]);
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn read_served(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off).unwrap();
    buf
}

/// The whole volume through a plain image (the restore must be complete).
fn read_image(lab: &Lab, vol: &str) -> Vec<u8> {
    assert!(!lazy::is_restoring(&lab.image_path(vol)));
    let img = lab.open_image(vol);
    let mut v = vec![0u8; img.size() as usize];
    img.read_at(&mut v, 0).unwrap();
    v
}

#[test]
fn a_volume_from_a_large_snapshot_is_attachable_at_once_and_reads_the_snapshot() {
    let mut lab = Lab::start();
    lab.key("alias/lazy");
    // 1 GiB, random data in every 16th MiB (64 MiB of it).
    let (snap, mut model) = random_snapshot(&lab, 1024, 16, 1);
    // A slow copy (about 6 s), so everything below happens while it runs.
    lab.start_daemon_with(&["env", "ATREST_RESTORE_PACE_MS=400"]);

    let t0 = Instant::now();
    let vol = create_from(&lab, &snap);
    until_available(&lab, &vol);
    let available = t0.elapsed();
    let served = attach(&lab, &vol);
    let attached = t0.elapsed();
    eprintln!("available after {available:?}, attached after {attached:?}");
    assert!(
        available < Duration::from_secs(1),
        "available after {available:?}"
    );
    let map = fill_map(&lab, &vol).expect("still restoring when attached");
    assert!(!map.is_complete());
    let d = lab.volume(&vol);
    assert_eq!(d["State"], "in-use");
    assert_eq!(d["SnapshotId"], snap.as_str());
    // Its snapshot cannot be deleted while the copy needs it.
    lab.ec2_fails(
        "IncorrectState",
        &["delete-snapshot", "--snapshot-id", &snap],
    );

    // Reads of chunks not yet copied come from the snapshot (the copier goes in order:
    // the end of the volume is copied last).
    for c in [1008u64, 992, 16, 5, 1023] {
        let got = read_served(&served, c * MIB, MIB as usize);
        assert!(
            got == model[(c * MIB) as usize..][..MIB as usize],
            "chunk {c}"
        );
    }
    // A partial write into a chunk not yet copied keeps the rest of the chunk.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&served)
        .unwrap();
    let data = b"written by the guest while the restore runs";
    for off in [976 * MIB + 1000, 1000 * MIB - 10, 300 * MIB + 4096] {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(data).unwrap();
        model[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    f.sync_all().unwrap();
    drop(f);
    let got = read_served(&served, 976 * MIB, 2 * MIB as usize);
    assert!(got == model[(976 * MIB) as usize..][..2 * MIB as usize]);

    // Detached, the service keeps copying; then the image alone is the volume.
    lab.run_ok(&["detach", &vol]);
    assert_eq!(lab.volume(&vol)["State"], "available");
    lab.until(60, "the restore to finish", || {
        fill_map(&lab, &vol).is_none()
    });
    lab.stop_daemon();
    assert!(
        read_image(&lab, &vol) == model,
        "snapshot + the guest's writes"
    );
    // Restored: the snapshot may go now.
    lab.ec2(&["delete-snapshot", "--snapshot-id", &snap]);
}

#[test]
fn kill_9_during_the_copy_resumes_at_the_next_start_and_ends_byte_identical() {
    let mut lab = Lab::start();
    lab.key("alias/lazy");
    // 160 MiB of random data: 160 chunks to copy.
    let (snap, mut model) = random_snapshot(&lab, 160, 1, 2);
    lab.start_daemon_with(&["env", "ATREST_RESTORE_PACE_MS=60"]);
    let vol = create_from(&lab, &snap);
    until_available(&lab, &vol);
    // The guest writes near the end, before the copier gets there.
    let served = attach(&lab, &vol);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&served)
        .unwrap();
    let data = vec![0xa5u8; 10_000];
    let off = 150 * MIB + 123;
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    drop(f);
    model[off as usize..off as usize + data.len()].copy_from_slice(&data);
    // The copy is persisted every 64 chunks: kill -9 after the first persist.
    lab.until(60, "the copy to be part way", || {
        fill_map(&lab, &vol).is_some_and(|m| m.filled() >= 64)
    });
    lab.kill_daemon();
    let map = fill_map(&lab, &vol).expect("the fill map survives the crash");
    assert!(!map.is_complete(), "killed in the middle of the copy");
    assert!(map.get(150), "the chunk the guest wrote is durable");

    lab.start_daemon();
    lab.until(30, "the restore to be resumed", || {
        lab.daemon_log().contains("resuming the restore")
    });
    lab.until(60, "the resumed restore to finish", || {
        fill_map(&lab, &vol).is_none()
    });
    // The local attachment was served again at the start; detach, stop, compare.
    lab.run_ok(&["detach", &vol]);
    lab.stop_daemon();
    assert!(
        read_image(&lab, &vol) == model,
        "byte-identical after the crash"
    );
}

fn fio_randrw(path: &Path, size_mib: u64) {
    let out = Command::new("fio")
        .args([
            "--name=randrw",
            &format!("--filename={}", path.display()),
            "--rw=randrw",
            "--bsrange=4k-128k",
            &format!("--size={size_mib}M"),
            "--io_size=48M",
            "--ioengine=psync",
            "--randrepeat=1",
            "--randseed=4242",
            "--refill_buffers=1",
            "--fsync=64",
            "--output-format=json",
        ])
        .output()
        .expect("fio is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fio_randrw_on_a_restoring_volume_equals_the_snapshot_plus_the_same_writes() {
    let mut lab = Lab::start();
    lab.key("alias/lazy");
    let (snap, model) = random_snapshot(&lab, 96, 2, 3);
    lab.start_daemon_with(&["env", "ATREST_RESTORE_PACE_MS=30"]);
    let vol = create_from(&lab, &snap);
    until_available(&lab, &vol);
    let served = attach(&lab, &vol);
    assert!(fill_map(&lab, &vol).is_some(), "fio runs during the copy");
    // The same fio job on a plain file holding the snapshot's bytes is the reference.
    let reference = lab.path().join("reference.raw");
    let mut r = std::fs::File::create(&reference).unwrap();
    r.write_all(&model[..(96 * MIB) as usize]).unwrap();
    r.set_len(1 << 30).unwrap();
    drop(r);
    fio_randrw(&served, 96);
    fio_randrw(&reference, 96);
    let mut want = vec![0u8; (96 * MIB) as usize];
    std::fs::File::open(&reference)
        .unwrap()
        .read_exact(&mut want)
        .unwrap();
    assert!(want[..] != model[..want.len()], "fio wrote something");
    let got = read_served(&served, 0, want.len());
    assert!(got == want, "served volume = snapshot + fio's writes");
    lab.run_ok(&["detach", &vol]);
    lab.until(60, "the restore to finish", || {
        fill_map(&lab, &vol).is_none()
    });
    lab.stop_daemon();
    let all = read_image(&lab, &vol);
    assert!(all[..want.len()] == want[..]);
    assert!(all[want.len()..].iter().all(|b| *b == 0));
}

#[test]
fn a_guest_boots_from_a_root_volume_restored_lazily_from_its_ami() {
    let guest = ec2_support::guest_dir();
    let mut lab = Lab::start();
    // A slow copy: the guest boots while its root is still being filled.
    lab.start_daemon_with(&["env", "ATREST_RESTORE_PACE_MS=200"]);
    // An AMI whose root snapshot holds the guest's root filesystem.
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::read(ec2_support::root_image(tmp.path(), "lazy marker 7")).unwrap();
    let vol = lab.new_volume(&["--size", "1"]);
    let img = lab.open_image(&vol);
    for (i, block) in root.chunks(MIB as usize).enumerate() {
        if block.iter().any(|b| *b != 0) {
            img.write_at(block, i as u64 * MIB).unwrap();
        }
    }
    img.sync_data().unwrap();
    drop(img);
    let s = lab.ec2(&["create-snapshot", "--volume-id", &vol]);
    let snap = s["SnapshotId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "snapshot-completed", "--snapshot-ids", &snap]);
    let ami = lab.ec2(&[
        "register-image",
        "--name",
        "lazy-root",
        "--block-device-mappings",
        &format!("DeviceName=/dev/xvda,Ebs={{SnapshotId={snap}}}"),
        "--boot-image",
        guest.to_str().unwrap(),
    ])["ImageId"]
        .as_str()
        .unwrap()
        .to_string();

    // From the AMI: the root volume is restored from its snapshot, lazily.
    let r = lab.ec2(&["run-instances", "--image-id", &ami]);
    let id = r["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let root_vol = r["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    let out = lab.ec2(&["get-console-output", "--instance-id", &id]);
    assert!(
        out["Output"].as_str().unwrap().contains(&format!(
            "atrest-guest: booted from volume {root_vol} marker=lazy marker 7"
        )),
        "console: {out}"
    );
    assert!(
        fill_map(&lab, &root_vol).is_some() || lab.daemon_log().contains("restore complete"),
        "the root was restored lazily: {}",
        lab.daemon_log()
    );
    // Terminated mid-copy or after it: the copier stops and nothing is left behind.
    lab.ec2(&["terminate-instances", "--instance-ids", &id]);
    lab.wait_state(&id, "terminated", 60);
    // The registry says terminated first; the copier is then stopped and the files go.
    lab.until(30, "the root volume's image to be removed", || {
        !lab.image_path(&root_vol).exists()
    });
    assert!(fill_map(&lab, &root_vol).is_none());
    assert!(!atrest::volume::tracker::path_for(&lab.image_path(&root_vol)).exists());
    lab.stop_daemon();
}
