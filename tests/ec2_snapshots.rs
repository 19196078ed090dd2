//! Snapshots, restores and copies end to end (real kmsd, built CLI, snapshot store):
//! the lab's "encrypted copy" read back equal through the image API and through the
//! served file; encrypted data never becomes plaintext; refusals and crashes leave
//! nothing half-made.

mod ec2_support;

use std::io::{Read, Seek, SeekFrom};

use atrest::volume::VolumeImage;
use ec2_support::Lab;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn write(lab: &Lab, volume_id: &str, off: u64, data: &[u8]) {
    let img = lab.open_image(volume_id);
    img.write_at(data, off).unwrap();
    img.sync_data().unwrap();
}

fn read(lab: &Lab, volume_id: &str, off: u64, len: usize) -> Vec<u8> {
    let img = lab.open_image(volume_id);
    let mut buf = vec![0u8; len];
    img.read_at(&mut buf, off).unwrap();
    buf
}

fn snapshot(lab: &Lab, volume_id: &str, desc: &str) -> String {
    let s = lab.ec2(&[
        "create-snapshot",
        "--volume-id",
        volume_id,
        "--description",
        desc,
        "--tag-specifications",
        &format!("ResourceType=snapshot,Tags=[{{Key=Name,Value={desc}}}]"),
    ]);
    assert_eq!(s["State"], "pending");
    assert_eq!(s["VolumeId"], volume_id);
    let id = s["SnapshotId"].as_str().unwrap().to_string();
    assert!(id.starts_with("snap-") && id.len() == 22, "{id}");
    lab.ec2(&["wait", "snapshot-completed", "--snapshot-ids", &id]);
    id
}

#[test]
fn encrypted_copy_of_an_unencrypted_snapshot_reads_back_equal() {
    let mut lab = Lab::start();
    let key = lab.key("alias/MyKMSKey");
    let plain_vol = lab.new_volume(&["--size", "1"]);
    let data = pattern(3 << 20, 1);
    write(&lab, &plain_vol, 5 << 20, &data);
    write(&lab, &plain_vol, 0, b"MARKER: root of the lab");
    let snap = snapshot(&lab, &plain_vol, "unencrypted root");
    let s = lab.snapshot(&snap);
    assert_eq!(s["State"], "completed");
    assert_eq!(s["Progress"], "100%");
    assert_eq!(s["Encrypted"], false);
    assert_eq!(s["VolumeSize"], 1);
    assert_eq!(s["OwnerId"], "111122223333");
    assert_eq!(s["Tags"][0]["Value"], "unencrypted root");

    let v = lab.ec2(&[
        "create-volume",
        "--snapshot-id",
        &snap,
        "--availability-zone",
        "us-east-1a",
        "--encrypted",
        "--kms-key-id",
        "alias/MyKMSKey",
        "--tag-specifications",
        "ResourceType=volume,Tags=[{Key=Name,Value=Encrypted Root}]",
    ]);
    assert_eq!(v["State"], "creating");
    assert_eq!(v["SnapshotId"], snap.as_str());
    let enc = v["VolumeId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "volume-available", "--volume-ids", &enc]);
    let d = lab.volume(&enc);
    assert_eq!(d["Encrypted"], true);
    assert_eq!(d["KmsKeyId"], key.as_str());
    assert_eq!(d["Size"], 1);
    let h = VolumeImage::read_header(&lab.image_path(&enc)).unwrap();
    assert_eq!(
        h.params.encryption_context.get("aws:ebs:id"),
        Some(&enc),
        "bound to the new volume's own ID"
    );

    // Through the image API.
    assert_eq!(read(&lab, &enc, 5 << 20, data.len()), data);
    assert_eq!(read(&lab, &enc, 0, 23), b"MARKER: root of the lab");
    // The stored bytes are ciphertext.
    let mut raw = vec![0u8; 64];
    let mut f = std::fs::File::open(lab.image_path(&enc)).unwrap();
    f.seek(SeekFrom::Start(h.payload_offset())).unwrap();
    f.read_exact(&mut raw).unwrap();
    assert_ne!(&raw[..23], b"MARKER: root of the lab");

    // Through the served file (the volume service, FUSE).
    lab.start_daemon();
    let out = lab.run_ok(&["attach", &enc]);
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut f = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; data.len()];
    f.seek(SeekFrom::Start(5 << 20)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data);
    drop(f);
    lab.run_ok(&["detach", &enc]);
    lab.stop_daemon();
}

#[test]
fn encrypted_stays_encrypted_and_copies_reencrypt() {
    let lab = Lab::start();
    let k1 = lab.key("alias/one");
    let k2 = lab.key("alias/two");
    let vol = lab.new_volume(&["--size", "1", "--encrypted", "--kms-key-id", "alias/one"]);
    let data = pattern(2 << 20, 7);
    write(&lab, &vol, 1 << 20, &data);
    let snap = snapshot(&lab, &vol, "enc");
    let s = lab.snapshot(&snap);
    assert_eq!(s["Encrypted"], true);
    assert_eq!(s["KmsKeyId"], k1.as_str());

    // Without --encrypted, a volume from an encrypted snapshot is still encrypted.
    let v = lab.ec2(&[
        "create-volume",
        "--snapshot-id",
        &snap,
        "--availability-zone",
        "us-east-1b",
    ]);
    let again = v["VolumeId"].as_str().unwrap().to_string();
    assert_eq!(v["Encrypted"], true);
    lab.ec2(&["wait", "volume-available", "--volume-ids", &again]);
    assert_eq!(lab.volume(&again)["KmsKeyId"], k1.as_str());
    assert_eq!(read(&lab, &again, 1 << 20, data.len()), data);

    // copy-snapshot to another key: the copy's key is bound to the copy's ID.
    let c = lab.ec2(&[
        "copy-snapshot",
        "--source-snapshot-id",
        &snap,
        "--encrypted",
        "--kms-key-id",
        "alias/two",
        "--source-region",
        "us-east-1",
    ]);
    let copy = c["SnapshotId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "snapshot-completed", "--snapshot-ids", &copy]);
    let cs = lab.snapshot(&copy);
    assert_eq!(cs["Encrypted"], true);
    assert_eq!(cs["KmsKeyId"], k2.as_str());
    assert!(cs["Description"].as_str().unwrap().contains(&snap));
    let from_copy = lab.new_volume(&["--snapshot-id", &copy]);
    assert_eq!(lab.volume(&from_copy)["KmsKeyId"], k2.as_str());
    assert_eq!(read(&lab, &from_copy, 1 << 20, data.len()), data);

    // No way to a plaintext copy: copy-snapshot without --encrypted stays encrypted.
    let c = lab.ec2(&["copy-snapshot", "--source-snapshot-id", &snap]);
    let copy2 = c["SnapshotId"].as_str().unwrap().to_string();
    lab.ec2(&["wait", "snapshot-completed", "--snapshot-ids", &copy2]);
    assert_eq!(lab.snapshot(&copy2)["Encrypted"], true);

    // A snapshot whose key is disabled cannot be restored, even to an enabled key: the
    // volume ends in `error` and no image is left.
    lab.disable_key(&k1);
    let v = lab.ec2(&[
        "create-volume",
        "--snapshot-id",
        &snap,
        "--availability-zone",
        "us-east-1a",
        "--encrypted",
        "--kms-key-id",
        "alias/two",
    ]);
    let failed = v["VolumeId"].as_str().unwrap().to_string();
    lab.until(30, "the restore to fail", || {
        lab.volume(&failed)["State"] == "error"
    });
    assert!(lab.volume(&failed)["StatusMessage"]
        .as_str()
        .unwrap()
        .contains("DisabledException"));
    assert!(!lab.image_path(&failed).exists());
    // ... and with the disabled key itself it is refused at once, creating nothing.
    let before = lab.ec2(&["describe-volumes"])["Volumes"]
        .as_array()
        .unwrap()
        .len();
    lab.ec2_fails(
        "DisabledException",
        &[
            "create-volume",
            "--snapshot-id",
            &snap,
            "--availability-zone",
            "us-east-1a",
        ],
    );
    assert_eq!(
        lab.ec2(&["describe-volumes"])["Volumes"]
            .as_array()
            .unwrap()
            .len(),
        before
    );
    lab.enable_key(&k1);
}

#[test]
fn snapshot_rules_filters_and_delete() {
    let lab = Lab::start();
    let vol = lab.new_volume(&["--size", "2"]);
    write(&lab, &vol, 0, &pattern(1 << 20, 3));
    let a = snapshot(&lab, &vol, "first");
    let b = snapshot(&lab, &vol, "second");
    let f = lab.ec2(&[
        "describe-snapshots",
        "--owner-ids",
        "self",
        "--filters",
        &format!("Name=volume-id,Values={vol}"),
        "Name=status,Values=completed",
    ]);
    assert_eq!(f["Snapshots"].as_array().unwrap().len(), 2);
    let f = lab.ec2(&[
        "describe-snapshots",
        "--filters",
        "Name=tag:Name,Values=sec*",
    ]);
    assert_eq!(f["Snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(f["Snapshots"][0]["SnapshotId"], b.as_str());
    // A smaller volume than the snapshot is refused; the default size is the snapshot's.
    lab.ec2_fails(
        "InvalidParameterValue",
        &[
            "create-volume",
            "--snapshot-id",
            &a,
            "--size",
            "1",
            "--availability-zone",
            "us-east-1a",
        ],
    );
    let from = lab.new_volume(&["--snapshot-id", &a]);
    assert_eq!(lab.volume(&from)["Size"], 2);
    assert_eq!(lab.volume(&from)["Encrypted"], false);
    lab.ec2_fails(
        "InvalidVolume.NotFound",
        &["create-snapshot", "--volume-id", "vol-0123456789abcdef0"],
    );
    lab.ec2_fails(
        "InvalidSnapshot.NotFound",
        &["delete-snapshot", "--snapshot-id", "snap-0123456789abcdef0"],
    );
    lab.ec2_fails(
        "InvalidSnapshot.NotFound",
        &[
            "copy-snapshot",
            "--source-snapshot-id",
            "snap-0123456789abcdef0",
        ],
    );
    lab.ec2_fails(
        "InvalidParameterDependency",
        &[
            "copy-snapshot",
            "--source-snapshot-id",
            &a,
            "--kms-key-id",
            "alias/x",
        ],
    );
    lab.ec2(&["delete-snapshot", "--snapshot-id", &a]);
    lab.ec2_fails(
        "InvalidSnapshot.NotFound",
        &["describe-snapshots", "--snapshot-ids", &a],
    );
    // The other snapshot still restores whole (delete freed only what it alone used).
    let from_b = lab.new_volume(&["--snapshot-id", &b]);
    assert_eq!(read(&lab, &from_b, 0, 1 << 20), pattern(1 << 20, 3));
}

#[test]
fn an_interrupted_snapshot_is_error_never_completed() {
    let lab = Lab::start();
    let vol = lab.new_volume(&["--size", "1"]);
    let snap = snapshot(&lab, &vol, "x");
    // Rewrite the record as a pending snapshot whose worker died.
    let reg_path = lab.path().join("ec2/registry.json");
    let mut reg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reg_path).unwrap()).unwrap();
    reg["snapshots"][&snap]["state"] = "Pending".into();
    reg["snapshots"][&snap]["worker"] = serde_json::json!({"pid": 999_999_999u32});
    std::fs::write(&reg_path, serde_json::to_vec(&reg).unwrap()).unwrap();
    let s = lab.snapshot(&snap);
    assert_eq!(s["State"], "error");
    lab.ec2_fails(
        "IncorrectState",
        &[
            "create-volume",
            "--snapshot-id",
            &snap,
            "--availability-zone",
            "us-east-1a",
        ],
    );
    lab.ec2(&["delete-snapshot", "--snapshot-id", &snap]);
}

#[test]
fn progress_is_visible_while_pending() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let vol = lab.new_volume(&["--size", "1"]);
    // Enough data that the snapshot takes a moment in a debug build.
    for i in 0..24u64 {
        write(&lab, &vol, i * (16 << 20), &pattern(16 << 20, i as u32));
    }
    let s = lab.ec2(&["create-snapshot", "--volume-id", &vol]);
    let id = s["SnapshotId"].as_str().unwrap().to_string();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let s = lab.snapshot(&id);
        seen.insert(s["Progress"].as_str().unwrap().to_string());
        if s["State"] == "completed" {
            break;
        }
        assert_eq!(s["State"], "pending");
    }
    assert!(seen.contains("100%"));
    assert!(seen.len() >= 2, "saw progress {seen:?}");
    lab.stop_daemon();
}

fn incremental_from(lab: &Lab, snapshot_id: &str) -> Option<String> {
    let p = lab
        .path()
        .join(format!("snapshots/manifests/{snapshot_id}.json"));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    m["incremental_from"].as_str().map(str::to_string)
}

#[test]
fn kill_9_during_an_incremental_snapshot_leaves_the_record_for_the_next_one() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let (_, vol) = lab.encrypted_volume("alias/cbt");
    let img = lab.open_tracked(&vol);
    img.write_at(&pattern(4 << 20, 1), 0).unwrap();
    drop(img); // closed clean, as a stopped instance's volume is
    let first = snapshot(&lab, &vol, "first");
    assert_eq!(incremental_from(&lab, &first), None);

    // Many changed chunks, so the incremental snapshot is still running when killed.
    let img = lab.open_tracked(&vol);
    for i in 0..8u64 {
        img.write_at(
            &pattern(16 << 20, 10 + i as u32),
            (8 << 20) + i * (16 << 20),
        )
        .unwrap();
    }
    drop(img);
    let s = lab.ec2(&["create-snapshot", "--volume-id", &vol]);
    let killed = s["SnapshotId"].as_str().unwrap().to_string();
    lab.kill_daemon();
    lab.start_daemon();
    lab.until(30, "the killed snapshot to be error", || {
        lab.snapshot(&killed)["State"] == "error"
    });

    // One more write: the next snapshot still reads only what changed since `first`.
    let img = lab.open_tracked(&vol);
    img.write_at(b"after the crash", 1 << 20).unwrap();
    drop(img);
    let next = snapshot(&lab, &vol, "next");
    assert_eq!(
        incremental_from(&lab, &next).as_deref(),
        Some(first.as_str())
    );
    // And it restores to the volume as it is.
    let restored = lab.new_volume(&["--snapshot-id", &next]);
    lab.until_restored(&restored);
    assert_eq!(
        read(&lab, &restored, 0, 8 << 20),
        read(&lab, &vol, 0, 8 << 20)
    );
    assert_eq!(&read(&lab, &restored, 1 << 20, 15)[..], b"after the crash");
    for i in 0..9u64 {
        let off = (8 << 20) + i * (16 << 20) - 4096;
        assert_eq!(
            read(&lab, &restored, off, 64 << 10),
            read(&lab, &vol, off, 64 << 10),
            "at {off}"
        );
    }
    lab.stop_daemon();
}

fn manifest(lab: &Lab, snapshot_id: &str) -> serde_json::Value {
    let p = lab
        .path()
        .join(format!("snapshots/manifests/{snapshot_id}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// As EBS: a volume created from a snapshot (lazily, in the volume service) starts as that
/// snapshot, so its first snapshot stores only the chunks written since, not the volume;
/// and that snapshot restores to the written volume byte for byte.
#[test]
fn a_restored_volume_s_first_snapshot_stores_only_what_was_written() {
    const MIB: u64 = 1 << 20;
    let mut lab = Lab::start();
    lab.start_daemon();
    let vol = lab.new_volume(&["--size", "1"]);
    let random = |len: u64, seed: u64| {
        use rand::{RngCore, SeedableRng};
        let mut v = vec![0u8; len as usize];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    };
    let data = random(64 * MIB, 1);
    write(&lab, &vol, 0, &data);
    let source = snapshot(&lab, &vol, "source");
    assert_eq!(manifest(&lab, &source)["new_bytes"], 64 * MIB);

    let restored = lab.new_volume(&["--snapshot-id", &source]);
    lab.until_restored(&restored);
    // 1% of the volume's 1024 chunks, in the snapshot's data and past it.
    let img = lab.open_tracked(&restored);
    for i in 0..10u64 {
        img.write_at(&random(4096, 100 + i), i * 100 * MIB + 12345)
            .unwrap();
    }
    img.sync_data().unwrap();
    drop(img);
    let first = snapshot(&lab, &restored, "first of the restored volume");
    assert_eq!(
        incremental_from(&lab, &first).as_deref(),
        Some(source.as_str())
    );
    let m = manifest(&lab, &first);
    assert_eq!(
        m["new_bytes"],
        10 * MIB,
        "stores the 10 written chunks only"
    );
    let present = m["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c.is_null())
        .count();
    assert_eq!(
        present,
        64 + 9,
        "the snapshot's chunks and the written ones"
    );

    let again = lab.new_volume(&["--snapshot-id", &first]);
    lab.until_restored(&again);
    for off in (0..1u64 << 30).step_by(64 << 20) {
        assert!(
            read(&lab, &again, off, 64 << 20) == read(&lab, &restored, off, 64 << 20),
            "at {off}"
        );
    }
    lab.stop_daemon();
}
