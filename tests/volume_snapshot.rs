//! Snapshots and copies: every copy path round-trips, snapshots are incremental, delete and gc
//! free exactly what nothing references, and a broken store is reported, not trusted.

mod volume_common;

use std::path::Path;

use atrest::volume::snapshot::{
    Progress, SnapshotError, SnapshotSource, SnapshotState, CHUNK_SIZE,
};
use atrest::volume::{CopyError, DataKeys, VolumeError, VolumeHeaderParams, VolumeImage, XtsKey};
use rand::{RngCore, SeedableRng};
use volume_common::{env, ARN_A, ARN_B};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-0123456789";

fn enc(id: &str, size: u64, arn: &str, blob: &[u8]) -> VolumeHeaderParams {
    VolumeHeaderParams::encrypted(id, size, arn, blob.to_vec())
}

/// Fills a volume with seeded random data plus a recognizable plaintext marker in each MiB.
fn fill(img: &VolumeImage, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; img.size() as usize];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    for mib in data.chunks_mut(1 << 20) {
        mib[100..100 + MARKER.len()].copy_from_slice(MARKER);
    }
    // Leave the third MiB never written (a hole): it must not be stored.
    if data.len() >= 3 << 20 {
        data[2 << 20..3 << 20].fill(0);
        img.write_at(&data[..2 << 20], 0).unwrap();
        img.write_at(&data[3 << 20..], 3 << 20).unwrap();
    } else {
        img.write_at(&data, 0).unwrap();
    }
    img.sync_data().unwrap();
    data
}

fn read_all(path: &Path, key: Option<XtsKey>) -> Vec<u8> {
    let img = VolumeImage::open(path, key).unwrap();
    let mut v = vec![0u8; img.size() as usize];
    img.read_at(&mut v, 0).unwrap();
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn all_chunk_bytes(store_dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(store_dir.join("chunks")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            out.extend(std::fs::read(f.unwrap().path()).unwrap());
        }
    }
    out
}

fn noop() -> impl FnMut(Progress) {
    |_| {}
}

#[test]
fn unencrypted_snapshot_to_encrypted_copy_reads_back_equal() {
    let e = env();
    let src = e.vol("vol-plain");
    VolumeImage::create(&src, &VolumeHeaderParams::unencrypted("vol-plain", 6 << 20)).unwrap();
    let data = fill(&VolumeImage::open(&src, None).unwrap(), 1);

    let mut seen = Vec::new();
    let m = e
        .store
        .create(SnapshotSource::Path(&src), "snap-plain", &mut |p| {
            seen.push(p)
        })
        .unwrap();
    assert_eq!(m.state, SnapshotState::Completed);
    assert_eq!(m.chunks.len(), 6);
    assert_eq!(
        m.chunks.iter().filter(|c| c.is_none()).count(),
        1,
        "zero chunk not stored"
    );
    assert_eq!(seen.last().unwrap().done, 6 << 20);
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(seen.last().unwrap().percent(), 100);

    // The lab's encrypted copy: create-volume --snapshot-id --encrypted --kms-key-id.
    let key = XtsKey::generate();
    let dest = e.vol("vol-enc");
    let params = enc("vol-enc", 6 << 20, ARN_A, b"wrapped-by-kmsd-A");
    let h = e
        .store
        .restore(
            "snap-plain",
            &dest,
            &params,
            DataKeys {
                source: None,
                dest: Some(key.clone()),
            },
            &mut noop(),
        )
        .unwrap();
    assert_eq!(h.params, params);
    assert_eq!(read_all(&dest, Some(key)), data);
    assert!(
        !contains(&std::fs::read(&dest).unwrap(), MARKER),
        "copy holds plaintext"
    );
}

#[test]
fn encrypted_snapshot_stays_ciphertext_and_copies_under_same_or_other_key() {
    let e = env();
    let src = e.vol("vol-a");
    let key_a = XtsKey::generate();
    let pa = enc("vol-a", 5 << 20, ARN_A, b"blob-A");
    VolumeImage::create(&src, &pa).unwrap();
    let img = VolumeImage::open(&src, Some(key_a.clone())).unwrap();
    let data = fill(&img, 2);

    // Snapshot of an open image, no key needed beyond the one the image already has.
    let m = e
        .store
        .create(SnapshotSource::Image(&img), "snap-a", &mut noop())
        .unwrap();
    assert_eq!(m.volume.key_arn, ARN_A);
    assert_eq!(m.volume.wrapped_key, b"blob-A");
    assert_eq!(
        m.volume.encryption_context.get("aws:ebs:id").unwrap(),
        "vol-a"
    );
    assert!(
        !contains(&all_chunk_bytes(e.store.dir()), MARKER),
        "snapshot holds plaintext"
    );
    assert_eq!(e.store.verify("snap-a").unwrap(), 4);

    // Same key: ciphertext copied, no key needed at all.
    let same = e.vol("vol-same");
    let mut ps = pa.clone();
    ps.volume_id = "vol-same".into();
    e.store
        .restore("snap-a", &same, &ps, DataKeys::default(), &mut noop())
        .unwrap();
    assert_eq!(read_all(&same, Some(key_a.clone())), data);

    // Another key: re-encrypted; the old key no longer reads it.
    let key_b = XtsKey::generate();
    let other = e.vol("vol-b");
    let mut pb = enc("vol-b", 8 << 20, ARN_B, b"blob-B");
    pb.sector_size = 512; // re-encryption may change the sector size too
    e.store
        .restore(
            "snap-a",
            &other,
            &pb,
            DataKeys {
                source: Some(key_a.clone()),
                dest: Some(key_b.clone()),
            },
            &mut noop(),
        )
        .unwrap();
    let back = read_all(&other, Some(key_b));
    assert_eq!(&back[..data.len()], &data[..]);
    assert!(
        back[data.len()..].iter().all(|&b| b == 0),
        "grown tail reads zeros"
    );
    let wrong = read_all(&other, Some(key_a));
    assert_ne!(&wrong[..4096], &data[..4096]);
}

#[test]
fn encrypted_data_is_never_copied_to_plaintext() {
    let e = env();
    let src = e.vol("vol-a");
    let key = XtsKey::generate();
    VolumeImage::create(&src, &enc("vol-a", 2 << 20, ARN_A, b"blob-A")).unwrap();
    fill(&VolumeImage::open(&src, Some(key.clone())).unwrap(), 3);
    e.store
        .create(SnapshotSource::Path(&src), "snap-a", &mut noop())
        .unwrap();
    let dest = e.vol("vol-plain");
    let err = e
        .store
        .restore(
            "snap-a",
            &dest,
            &VolumeHeaderParams::unencrypted("vol-plain", 2 << 20),
            DataKeys {
                source: Some(key.clone()),
                dest: None,
            },
            &mut noop(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Copy(CopyError::PlaintextCopyOfEncryptedData)
        ),
        "{err}"
    );
    assert!(!dest.exists());
    let err = e
        .store
        .copy(
            "snap-a",
            "snap-plain",
            &VolumeHeaderParams::unencrypted("vol-a", 2 << 20),
            DataKeys {
                source: Some(key),
                dest: None,
            },
            &mut noop(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::Copy(CopyError::PlaintextCopyOfEncryptedData)
    ));
    assert!(matches!(
        e.store.get("snap-plain"),
        Err(SnapshotError::NotFound(_))
    ));
    // Re-encryption without the source key is refused too, with the key named.
    let err = e
        .store
        .restore(
            "snap-a",
            &dest,
            &enc("vol-x", 2 << 20, ARN_B, b"blob-B"),
            DataKeys {
                source: None,
                dest: Some(XtsKey::generate()),
            },
            &mut noop(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::Copy(CopyError::KeyRequired { which: "source" })
    ));
}

#[test]
fn copy_snapshot_encrypts_and_re_encrypts() {
    let e = env();
    let src = e.vol("vol-p");
    VolumeImage::create(&src, &VolumeHeaderParams::unencrypted("vol-p", 4 << 20)).unwrap();
    let data = fill(&VolumeImage::open(&src, None).unwrap(), 4);
    e.store
        .create(SnapshotSource::Path(&src), "snap-p", &mut noop())
        .unwrap();

    // copy-snapshot --encrypted: context is the new snapshot's ID.
    let k1 = XtsKey::generate();
    let mut p1 = enc("vol-p", 4 << 20, ARN_A, b"blob-1");
    p1.encryption_context
        .insert("aws:ebs:id".into(), "snap-e1".into());
    let m1 = e
        .store
        .copy(
            "snap-p",
            "snap-e1",
            &p1,
            DataKeys {
                source: None,
                dest: Some(k1.clone()),
            },
            &mut noop(),
        )
        .unwrap();
    assert_eq!(m1.new_bytes, 3 << 20);
    // Re-encrypt under another key.
    let k2 = XtsKey::generate();
    let p2 = enc("vol-p", 4 << 20, ARN_B, b"blob-2");
    e.store
        .copy(
            "snap-e1",
            "snap-e2",
            &p2,
            DataKeys {
                source: Some(k1),
                dest: Some(k2.clone()),
            },
            &mut noop(),
        )
        .unwrap();
    // Same-key copy shares every chunk.
    let m3 = e
        .store
        .copy("snap-e2", "snap-e3", &p2, DataKeys::default(), &mut noop())
        .unwrap();
    assert_eq!(m3.new_bytes, 0);
    for id in ["snap-e1", "snap-e2"] {
        let m = e.store.get(id).unwrap();
        for h in m.chunks.iter().flatten() {
            let c = std::fs::read(e.store.dir().join("chunks").join(&h[..2]).join(h)).unwrap();
            assert!(!contains(&c, MARKER), "{id} holds plaintext");
        }
    }
    let dest = e.vol("vol-final");
    let mut pd = p2.clone();
    pd.volume_id = "vol-final".into();
    e.store
        .restore("snap-e3", &dest, &pd, DataKeys::default(), &mut noop())
        .unwrap();
    assert_eq!(read_all(&dest, Some(k2)), data);
}

#[test]
fn second_snapshot_stores_only_changed_chunks() {
    let e = env();
    let src = e.vol("vol-i");
    let key = XtsKey::generate();
    VolumeImage::create(&src, &enc("vol-i", 8 << 20, ARN_A, b"blob")).unwrap();
    let img = VolumeImage::open(&src, Some(key)).unwrap();
    fill(&img, 5);
    let m1 = e
        .store
        .create(SnapshotSource::Image(&img), "snap-1", &mut noop())
        .unwrap();
    assert_eq!(m1.new_bytes, 7 << 20);
    let before = e.store.stored_bytes().unwrap();
    assert_eq!(before, 7 << 20);

    img.write_at(b"one changed byte", (7 << 20) + 4321).unwrap();
    let m2 = e
        .store
        .create(SnapshotSource::Image(&img), "snap-2", &mut noop())
        .unwrap();
    assert_eq!(m2.new_bytes, CHUNK_SIZE, "only the changed chunk is new");
    assert_eq!(m2.referenced_bytes, 7 << 20);
    assert_eq!(e.store.stored_bytes().unwrap(), before + CHUNK_SIZE);
    let third = e
        .store
        .create(SnapshotSource::Image(&img), "snap-3", &mut noop())
        .unwrap();
    assert_eq!(third.new_bytes, 0);
}

#[test]
fn delete_frees_only_unshared_chunks_and_gc_collects_crash_leftovers() {
    let e = env();
    let src = e.vol("vol-d");
    VolumeImage::create(&src, &VolumeHeaderParams::unencrypted("vol-d", 4 << 20)).unwrap();
    let img = VolumeImage::open(&src, None).unwrap();
    fill(&img, 6);
    e.store
        .create(SnapshotSource::Image(&img), "snap-1", &mut noop())
        .unwrap();
    img.write_at(&[9u8; 10], 0).unwrap();
    e.store
        .create(SnapshotSource::Image(&img), "snap-2", &mut noop())
        .unwrap();
    assert_eq!(e.store.stored_bytes().unwrap(), 4 << 20);

    let r = e.store.delete("snap-1").unwrap();
    assert_eq!(r.freed_chunks, 1, "only snap-1's old version of chunk 0");
    assert_eq!(r.freed_bytes, CHUNK_SIZE);
    assert_eq!(e.store.verify("snap-2").unwrap(), 3);
    assert!(matches!(
        e.store.delete("snap-1"),
        Err(SnapshotError::NotFound(_))
    ));

    // A crash mid-create: a pending manifest, an orphan chunk, a temp file.
    let orphan = atrest::volume::snapshot::chunks::hash_hex(b"orphan");
    let sub = e.store.dir().join("chunks").join(&orphan[..2]);
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join(&orphan), b"orphan").unwrap();
    std::fs::write(sub.join(format!(".{orphan}.tmp.1.2")), b"half").unwrap();
    let mut pending = e.store.get("snap-2").unwrap();
    pending.snapshot_id = "snap-crashed".into();
    pending.state = SnapshotState::Pending;
    pending.chunks.clear();
    std::fs::write(
        e.store.dir().join("manifests/snap-crashed.json"),
        serde_json::to_vec(&pending).unwrap(),
    )
    .unwrap();
    let g = e.store.gc().unwrap();
    assert_eq!(
        g.removed_pending_manifests,
        vec!["snap-crashed".to_string()]
    );
    assert_eq!(g.removed_temp_files, 1);
    assert_eq!(g.freed_chunks, 1);
    assert_eq!(
        e.store.verify("snap-2").unwrap(),
        3,
        "gc kept every referenced chunk"
    );

    let r = e.store.delete("snap-2").unwrap();
    assert_eq!(r.freed_chunks, 3);
    assert_eq!(e.store.stored_bytes().unwrap(), 0);
}

#[test]
fn missing_or_corrupt_chunks_are_reported_and_never_restored() {
    let e = env();
    let src = e.vol("vol-c");
    VolumeImage::create(&src, &VolumeHeaderParams::unencrypted("vol-c", 3 << 20)).unwrap();
    fill(&VolumeImage::open(&src, None).unwrap(), 7);
    let m = e
        .store
        .create(SnapshotSource::Path(&src), "snap-c", &mut noop())
        .unwrap();
    let h0 = m.chunks[0].clone().unwrap();
    let p0 = e.store.dir().join("chunks").join(&h0[..2]).join(&h0);

    let mut bytes = std::fs::read(&p0).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&p0, &bytes).unwrap();
    assert!(matches!(
        e.store.verify("snap-c"),
        Err(SnapshotError::CorruptChunk { .. })
    ));
    let dest = e.vol("vol-r");
    let err = e
        .store
        .restore(
            "snap-c",
            &dest,
            &VolumeHeaderParams::unencrypted("vol-r", 3 << 20),
            DataKeys::default(),
            &mut noop(),
        )
        .unwrap_err();
    assert!(matches!(err, SnapshotError::CorruptChunk { .. }), "{err}");
    assert!(!dest.exists(), "no half-restored volume");
    let leftovers: Vec<_> = std::fs::read_dir(e.root.join("volumes"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".cbt"))
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the source image (and its tracker), no temp file"
    );

    std::fs::remove_file(&p0).unwrap();
    assert!(matches!(
        e.store.verify("snap-c"),
        Err(SnapshotError::MissingChunk { .. })
    ));

    // A tampered manifest is an error, and gc refuses to free anything because of it.
    std::fs::write(e.store.dir().join("manifests/snap-c.json"), b"{not json").unwrap();
    assert!(matches!(
        e.store.get("snap-c"),
        Err(SnapshotError::BadManifest { .. })
    ));
    assert!(e.store.gc().is_err());
}

#[test]
fn bad_requests_are_typed_errors() {
    let e = env();
    let src = e.vol("vol-e");
    VolumeImage::create(&src, &VolumeHeaderParams::unencrypted("vol-e", 2 << 20)).unwrap();
    for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(129)] {
        assert!(matches!(
            e.store.create(SnapshotSource::Path(&src), bad, &mut noop()),
            Err(SnapshotError::InvalidId(_))
        ));
    }
    assert!(matches!(
        e.store.get("snap-none"),
        Err(SnapshotError::NotFound(_))
    ));
    e.store
        .create(SnapshotSource::Path(&src), "snap-e", &mut noop())
        .unwrap();
    assert!(matches!(
        e.store
            .create(SnapshotSource::Path(&src), "snap-e", &mut noop()),
        Err(SnapshotError::AlreadyExists(_))
    ));
    assert!(matches!(
        e.store.restore(
            "snap-e",
            &e.vol("small"),
            &VolumeHeaderParams::unencrypted("vol-s", 1 << 20),
            DataKeys::default(),
            &mut noop()
        ),
        Err(SnapshotError::DestinationTooSmall { .. })
    ));
    assert!(matches!(
        e.store.restore(
            "snap-e",
            &src,
            &VolumeHeaderParams::unencrypted("vol-e", 2 << 20),
            DataKeys::default(),
            &mut noop()
        ),
        Err(SnapshotError::Volume(VolumeError::AlreadyExists(_)))
    ));
    // A fresh (all-hole) volume snapshot stores nothing.
    let m = e.store.get("snap-e").unwrap();
    assert!(m.chunks.iter().all(|c| c.is_none()));
    assert_eq!(m.referenced_bytes, 0);
}

#[test]
fn identical_chunks_are_stored_once_even_when_written_concurrently() {
    let e = env();
    let src = e.vol("vol-dup");
    VolumeImage::create(&src, &VolumeHeaderParams::unencrypted("vol-dup", 8 << 20)).unwrap();
    let img = VolumeImage::open(&src, None).unwrap();
    let mut chunk = vec![0u8; 1 << 20];
    rand::rngs::StdRng::seed_from_u64(9).fill_bytes(&mut chunk);
    for i in 0..8u64 {
        img.write_at(&chunk, i << 20).unwrap();
    }
    let m = e
        .store
        .create(SnapshotSource::Image(&img), "snap-dup", &mut noop())
        .unwrap();
    assert_eq!(m.referenced_bytes, 8 << 20);
    assert_eq!(m.new_bytes, 1 << 20);
    assert_eq!(e.store.stored_bytes().unwrap(), 1 << 20);
    assert!(m.chunks.iter().all(|c| c == &m.chunks[0]));
}
