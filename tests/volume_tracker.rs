//! Changed-block tracking: snapshots read only what was written since the last one, and no
//! sequence of writes, snapshots, process kills and machine crashes makes a snapshot miss
//! an acknowledged write (property test), including snapshots taken while writes go on.
//! A volume restored from a snapshot as stored starts its record relative to that snapshot,
//! lazily or not; a crash during its lazy copy makes its first snapshot full (property test).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use atrest::volume::lazy;
use atrest::volume::snapshot::{Manifest, Progress, SnapshotSource, SnapshotStore, CHUNK_SIZE};
use atrest::volume::tracker::{self, record};
use atrest::volume::{DataKeys, VolumeHeaderParams, VolumeImage};
use proptest::prelude::*;

/// Five whole chunks and a short last one.
const SIZE: u64 = 5 * CHUNK_SIZE + 8192;
const VOLUME: &str = "vol-0cbt000000000000";

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    image: PathBuf,
    store: SnapshotStore,
    next: u32,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let image = dir.join("vol.img");
    VolumeImage::create(&image, &VolumeHeaderParams::unencrypted(VOLUME, SIZE)).unwrap();
    let store = SnapshotStore::open(&dir.join("snapshots")).unwrap();
    Env {
        _tmp: tmp,
        dir,
        image,
        store,
        next: 0,
    }
}

impl Env {
    fn open(&self) -> VolumeImage {
        VolumeImage::open_tracked(&self.image, None).unwrap()
    }

    /// Snapshots `source`; returns the manifest and the bytes of payload it read (the
    /// `total` of its progress).
    fn snapshot(&mut self, source: SnapshotSource<'_>) -> (Manifest, u64) {
        self.next += 1;
        let id = format!("snap-{:04}", self.next);
        let mut total = None;
        let mut last = 0;
        let m = self
            .store
            .create(source, &id, &mut |p: Progress| {
                total.get_or_insert(p.total);
                assert!(p.done >= last, "progress went back");
                last = p.done;
            })
            .unwrap();
        let total = total.unwrap();
        assert_eq!(last, total, "progress ends at its total");
        (m, total)
    }

    /// The payload a snapshot restores to.
    fn restored(&self, snapshot_id: &str) -> Vec<u8> {
        let dest = self.dir.join(format!("restore-{snapshot_id}.img"));
        self.store
            .restore(
                snapshot_id,
                &dest,
                &VolumeHeaderParams::unencrypted("vol-0restore00000000", SIZE),
                DataKeys {
                    source: None,
                    dest: None,
                },
                &mut |_| {},
            )
            .unwrap();
        let img = VolumeImage::open_read_only(&dest, None).unwrap();
        let mut v = vec![0u8; SIZE as usize];
        img.read_at(&mut v, 0).unwrap();
        drop(img);
        std::fs::remove_file(&dest).unwrap();
        v
    }

    /// A machine crash while the record was live: this boot's unsynced bits are lost and
    /// the record was written by another boot. False if the record was not live (a clean
    /// record was fsync'd: nothing to lose).
    fn machine_crash(&self) -> bool {
        machine_crash_of(&self.image)
    }
}

/// [`Env::machine_crash`] for the image at `image`.
fn machine_crash_of(image: &std::path::Path) -> bool {
    {
        let path = tracker::path_for(image);
        let Ok(bytes) = std::fs::read(&path) else {
            return false;
        };
        let mut rec = record::Record::decode(&bytes).unwrap();
        if rec.header.state != record::State::Live {
            return false;
        }
        rec.header.boot_id = [0x5a; 16];
        rec.bitmap = record::Bitmap::new(rec.bitmap.count());
        std::fs::write(&path, rec.encode().unwrap()).unwrap();
        true
    }
}

fn write(img: &VolumeImage, model: &mut [u8], offset: u64, len: usize, seed: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8) | 1)
        .collect();
    img.write_at(&data, offset).unwrap();
    model[offset as usize..offset as usize + len].copy_from_slice(&data);
}

#[test]
fn an_unchanged_volume_reads_nothing_and_one_write_reads_one_chunk() {
    let mut e = env();
    let mut model = vec![0u8; SIZE as usize];
    let img = e.open();
    write(&img, &mut model, 0, SIZE as usize, 3);
    drop(img);
    let path = e.image.clone();
    let (first, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(first.incremental_from, None);
    assert_eq!(read, SIZE);

    let (same, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(same.incremental_from.as_deref(), Some("snap-0001"));
    assert_eq!(read, 0, "an unchanged volume reads nothing");
    assert_eq!(same.chunks, first.chunks);
    assert_eq!(same.referenced_bytes, first.referenced_bytes);
    assert_eq!(same.new_bytes, 0);

    let img = e.open();
    write(&img, &mut model, 3 * CHUNK_SIZE + 10, 100, 9);
    drop(img);
    let (one, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(one.incremental_from.as_deref(), Some("snap-0002"));
    assert_eq!(read, CHUNK_SIZE);
    assert_eq!(e.restored(&one.snapshot_id), model);
    assert_eq!(one.new_bytes, CHUNK_SIZE);
}

#[test]
fn a_killed_writer_leaves_a_complete_record_and_a_machine_crash_a_full_scan() {
    let mut e = env();
    let mut model = vec![0u8; SIZE as usize];
    let path = e.image.clone();
    let img = e.open();
    write(&img, &mut model, 0, 4096, 1);
    drop(img);
    e.snapshot(SnapshotSource::Path(&path));

    let img = e.open();
    write(&img, &mut model, CHUNK_SIZE, 4096, 2);
    img.abandon(); // kill -9: the page cache keeps the bits
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(m.incremental_from.as_deref(), Some("snap-0001"));
    assert_eq!(read, CHUNK_SIZE);
    assert_eq!(e.restored(&m.snapshot_id), model);

    let img = e.open();
    write(&img, &mut model, 4 * CHUNK_SIZE, 4096, 3);
    img.abandon();
    assert!(e.machine_crash());
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(
        m.incremental_from, None,
        "a record from another boot is not trusted"
    );
    assert_eq!(read, SIZE);
    assert_eq!(e.restored(&m.snapshot_id), model);
}

/// A quiet snapshot resets the record with one fsync (header first, then the bitmap's zeros
/// unsynced): a power cut that loses those zeros leaves the new header over the old bits,
/// which the next snapshot reads again (more, never less) and still restores exactly.
#[test]
fn a_reset_whose_zeroed_bitmap_is_lost_reads_the_old_chunks_again() {
    let mut e = env();
    let mut model = vec![0u8; SIZE as usize];
    let path = e.image.clone();
    drop(e.open());
    e.snapshot(SnapshotSource::Path(&path));
    let img = e.open();
    write(&img, &mut model, 2 * CHUNK_SIZE, 100, 1);
    write(&img, &mut model, 4 * CHUNK_SIZE, 100, 2);
    drop(img);
    let cbt = tracker::path_for(&path);
    let before = std::fs::read(&cbt).unwrap();
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(m.incremental_from.as_deref(), Some("snap-0001"));
    assert_eq!(read, 2 * CHUNK_SIZE);
    // The power cut: the new header reached the disk, the bitmap's zeros did not.
    let mut after = std::fs::read(&cbt).unwrap();
    assert!(after[record::HEADER_LEN..].iter().all(|&b| b == 0));
    after[record::HEADER_LEN..].copy_from_slice(&before[record::HEADER_LEN..]);
    std::fs::write(&cbt, &after).unwrap();
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(m.incremental_from.as_deref(), Some("snap-0002"));
    assert_eq!(read, 2 * CHUNK_SIZE, "the old bits are read again");
    assert_eq!(m.new_bytes, 0, "and found unchanged");
    assert_eq!(e.restored(&m.snapshot_id), model);
}

#[test]
fn a_write_by_another_tool_after_a_clean_close_voids_the_record() {
    let mut e = env();
    let mut model = vec![0u8; SIZE as usize];
    let path = e.image.clone();
    drop(e.open());
    e.snapshot(SnapshotSource::Path(&path));
    // Untracked: the mtime no longer matches the one recorded at the clean close.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let raw = VolumeImage::open(&path, None).unwrap();
    write(&raw, &mut model, 2 * CHUNK_SIZE, 512, 4);
    drop(raw);
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(m.incremental_from, None);
    assert_eq!(read, SIZE);
    assert_eq!(e.restored(&m.snapshot_id), model);
}

#[test]
fn a_corrupt_or_foreign_record_is_a_full_scan() {
    let mut e = env();
    let mut model = vec![0u8; SIZE as usize];
    let path = e.image.clone();
    let img = e.open();
    write(&img, &mut model, 0, 100, 1);
    drop(img);
    e.snapshot(SnapshotSource::Path(&path));
    let cbt = tracker::path_for(&path);
    let mut bytes = std::fs::read(&cbt).unwrap();
    bytes[record::HEADER_LEN] ^= 0x01; // a bit flipped in the bitmap: still parses
    bytes[40] ^= 0x01; // the volume size in the header: checksum fails
    std::fs::write(&cbt, &bytes).unwrap();
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(m.incremental_from, None);
    assert_eq!(read, SIZE);
    // The full snapshot left a good record again.
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(m.incremental_from.as_deref(), Some("snap-0002"));
    assert_eq!(read, 0);
    assert_eq!(e.restored(&m.snapshot_id), model);
}

#[test]
fn a_writer_holding_the_tracker_makes_a_quiet_snapshot_full_and_leaves_the_record() {
    let mut e = env();
    let mut model = vec![0u8; SIZE as usize];
    let path = e.image.clone();
    drop(e.open());
    e.snapshot(SnapshotSource::Path(&path));
    let img = e.open();
    write(&img, &mut model, CHUNK_SIZE, 100, 5);
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(m.incremental_from, None);
    assert_eq!(read, SIZE);
    write(&img, &mut model, 3 * CHUNK_SIZE, 100, 6);
    drop(img);
    // The record was left relative to snap-0001: both writes are in it.
    let (m, read) = e.snapshot(SnapshotSource::Path(&path));
    assert_eq!(m.incremental_from.as_deref(), Some("snap-0001"));
    assert_eq!(read, 2 * CHUNK_SIZE);
    assert_eq!(e.restored(&m.snapshot_id), model);
}

#[test]
fn a_failed_live_snapshot_gives_its_chunks_back() {
    let mut e = env();
    let mut model = vec![0u8; SIZE as usize];
    let img = e.open();
    write(&img, &mut model, 0, 100, 1);
    e.snapshot(SnapshotSource::Image(&img));
    write(&img, &mut model, 2 * CHUNK_SIZE, 100, 2);
    // Break the chunk store: the next snapshot fails after the rotation.
    let chunks = e.dir.join("snapshots/chunks");
    let aside = e.dir.join("chunks.aside");
    std::fs::rename(&chunks, &aside).unwrap();
    std::fs::write(&chunks, b"not a directory").unwrap();
    let err = e
        .store
        .create(SnapshotSource::Image(&img), "snap-broken", &mut |_| {});
    assert!(err.is_err());
    std::fs::remove_file(&chunks).unwrap();
    std::fs::rename(&aside, &chunks).unwrap();
    let (m, read) = e.snapshot(SnapshotSource::Image(&img));
    assert_eq!(m.incremental_from.as_deref(), Some("snap-0001"));
    assert_eq!(
        read, CHUNK_SIZE,
        "the failed snapshot's chunk is read again"
    );
    assert_eq!(e.restored(&m.snapshot_id), model);
}

#[test]
fn live_snapshots_during_concurrent_writes_lose_nothing() {
    let mut e = env();
    let img = e.open();
    let model = Mutex::new(vec![0u8; SIZE as usize]);
    let stop = AtomicBool::new(false);
    let mut ids = Vec::new();
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (img, model, stop) = (&img, &model, &stop);
            s.spawn(move || {
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let offset = x % (SIZE - 4096) / 512 * 512;
                    let data = vec![(x >> 32) as u8 | 1; 4096];
                    // One writer per region at a time: the model and the image agree.
                    let mut m = model.lock().unwrap();
                    img.write_at(&data, offset).unwrap();
                    m[offset as usize..offset as usize + 4096].copy_from_slice(&data);
                }
            });
        }
        for _ in 0..6 {
            std::thread::sleep(std::time::Duration::from_millis(15));
            let (m, _) = e.snapshot(SnapshotSource::Image(&img));
            ids.push(m.snapshot_id);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (last, _) = e.snapshot(SnapshotSource::Image(&img));
    assert!(last.incremental_from.is_some());
    assert_eq!(e.restored(&last.snapshot_id), *model.lock().unwrap());
}

#[test]
fn a_rotation_waits_for_the_write_in_flight_and_hands_its_chunk_over() {
    let e = env();
    let img = e.open();
    let t = img.tracker().unwrap();
    // A write whose bit is recorded but whose data is not written yet.
    let in_flight = t.before_write(3 * CHUNK_SIZE, 10).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| tx.send(t.rotate()).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "rotated under a write in flight");
        drop(in_flight);
        let r = rx.recv().unwrap();
        assert!(
            r.changed.get(3),
            "the in-flight write's chunk is the snapshot's to read"
        );
        assert_eq!(r.changed.count_ones(), 1);
    });
    // The next generation starts empty: a write after the rotation sets it again.
    drop(t.before_write(3 * CHUNK_SIZE, 10).unwrap());
    assert!(t.rotate().changed.get(3));
}

// ---- golden fixture -------------------------------------------------------------------

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tracker-v1-golden.cbt"
);
const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/tracker_record");

/// The golden record: clean, 11 chunks (10 MiB + 512 bytes), chunks 0, 3 and 10 written.
fn golden() -> record::Record {
    let mut bitmap = record::Bitmap::new(11);
    for c in [0, 3, 10] {
        bitmap.set(c);
    }
    record::Record {
        header: record::Header {
            state: record::State::Clean,
            boot_id: *b"0123456789abcdef",
            chunk_size: CHUNK_SIZE,
            volume_size: 10 * CHUNK_SIZE + 512,
            image_inode: 0x0102_0304_0506_0708,
            image_mtime: (1_764_900_000, 123_456_789),
            volume_id: "vol-0123456789abcdef0".into(),
            base: Some("snap-0fedcba9876543210".into()),
        },
        bitmap,
    }
}

#[test]
fn golden_tracker_file_still_parses_and_matches_the_documented_layout() {
    if std::env::var_os("ATREST_REGENERATE_GOLDEN").is_some() {
        let g = golden();
        std::fs::write(GOLDEN, g.encode().unwrap()).unwrap();
        // Fuzz seeds made by the real code: the golden record, a live one without base.
        std::fs::create_dir_all(SEEDS).unwrap();
        std::fs::write(format!("{SEEDS}/clean.cbt"), g.encode().unwrap()).unwrap();
        let mut live = g;
        live.header.state = record::State::Live;
        live.header.base = None;
        live.header.image_mtime = (0, 0);
        std::fs::write(format!("{SEEDS}/live-no-base.cbt"), live.encode().unwrap()).unwrap();
    }
    let bytes = std::fs::read(GOLDEN).expect("tests/fixtures/tracker-v1-golden.cbt is committed");
    assert_eq!(record::Record::decode(&bytes).unwrap(), golden());
    assert_eq!(golden().encode().unwrap(), bytes, "on-disk format drifted");
    // docs/FORMAT.md "Changed-block tracker", field by field.
    assert_eq!(&bytes[0..8], b"ATRCBT\0\0");
    assert_eq!(bytes[8..12], 1u32.to_le_bytes());
    assert_eq!(bytes[12..16], 1u32.to_le_bytes(), "clean");
    assert_eq!(&bytes[16..32], b"0123456789abcdef");
    assert_eq!(bytes[32..40], CHUNK_SIZE.to_le_bytes());
    assert_eq!(bytes[40..48], (10 * CHUNK_SIZE + 512).to_le_bytes());
    assert_eq!(bytes[48..56], 11u64.to_le_bytes());
    assert_eq!(bytes[56..64], 0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(bytes[64..72], 1_764_900_000i64.to_le_bytes());
    assert_eq!(bytes[72..76], 123_456_789u32.to_le_bytes());
    assert_eq!(bytes[88], 21);
    assert_eq!(&bytes[89..110], b"vol-0123456789abcdef0");
    assert_eq!(bytes[217], 22);
    assert_eq!(&bytes[218..240], b"snap-0fedcba9876543210");
    use sha2::Digest;
    assert_eq!(bytes[480..512], sha2::Sha256::digest(&bytes[..480])[..]);
    assert!(bytes[512..4096].iter().all(|&b| b == 0));
    assert_eq!(bytes.len(), 4096 + 2);
    assert_eq!(bytes[4096..], [0b0000_1001, 0b0000_0100]);
}

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, len: usize, seed: u8 },
    Snapshot { live: bool },
    Kill,
    MachineCrash,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SIZE, 1usize..20_000, any::<u8>()).prop_map(|(offset, len, seed)| {
            let len = len.min((SIZE - offset) as usize);
            Op::Write { offset, len, seed }
        }),
        // A write across a chunk boundary.
        1 => (1..5u64, 1usize..8192, any::<u8>()).prop_map(|(c, len, seed)| Op::Write {
            offset: c * CHUNK_SIZE - 4096,
            len,
            seed,
        }),
        3 => any::<bool>().prop_map(|live| Op::Snapshot { live }),
        1 => Just(Op::Kill),
        1 => Just(Op::MachineCrash),
        1 => Just(Op::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every acknowledged write is in the next snapshot; every snapshot of the chain
    /// restores to the volume as it was; a record that survived is used.
    #[test]
    fn no_sequence_of_writes_snapshots_and_crashes_loses_a_write(ops in prop::collection::vec(op(), 1..24)) {
        let mut e = env();
        let path = e.image.clone();
        let mut model = vec![0u8; SIZE as usize];
        let mut img: Option<VolumeImage> = None;
        let mut chain: Vec<(String, Vec<u8>)> = Vec::new();
        // Whether the record is expected to be complete relative to the last snapshot.
        let mut trusted = false;
        // The chunks written since the last snapshot.
        let mut dirty = BTreeSet::new();
        for op in ops {
            match op {
                Op::Write { offset, len, seed } => {
                    let i = img.get_or_insert_with(|| e.open());
                    write(i, &mut model, offset, len, seed);
                    dirty.extend(offset / CHUNK_SIZE..=(offset + len as u64 - 1) / CHUNK_SIZE);
                }
                Op::Snapshot { live } => {
                    let (m, read) = match (&img, live) {
                        (Some(i), true) => e.snapshot(SnapshotSource::Image(i)),
                        _ => {
                            drop(img.take());
                            e.snapshot(SnapshotSource::Path(&path))
                        }
                    };
                    prop_assert_eq!(m.incremental_from.is_some(), trusted);
                    let want_read = if trusted {
                        dirty.iter().map(|c| (SIZE - c * CHUNK_SIZE).min(CHUNK_SIZE)).sum()
                    } else {
                        SIZE
                    };
                    prop_assert_eq!(read, want_read, "bytes read");
                    dirty.clear();
                    prop_assert!(e.restored(&m.snapshot_id) == model, "snapshot {} differs", m.snapshot_id);
                    chain.push((m.snapshot_id, model.clone()));
                    trusted = true;
                }
                Op::Kill => {
                    if let Some(i) = img.take() {
                        i.abandon();
                    }
                }
                Op::MachineCrash => {
                    if let Some(i) = img.take() {
                        i.abandon();
                    }
                    if e.machine_crash() {
                        trusted = false;
                    }
                }
                Op::Close => drop(img.take()),
            }
        }
        drop(img.take());
        for (id, want) in &chain {
            prop_assert!(&e.restored(id) == want, "snapshot {} no longer restores", id);
        }
    }
}

// ---- restored volumes ------------------------------------------------------------------

/// The source volume of a restore: every chunk written but chunk 2 (a hole in the snapshot).
fn restore_source(e: &mut Env) -> (String, Vec<u8>) {
    let mut model = vec![0u8; SIZE as usize];
    let img = e.open();
    write(&img, &mut model, 0, 2 * CHUNK_SIZE as usize, 7);
    write(
        &img,
        &mut model,
        3 * CHUNK_SIZE,
        (SIZE - 3 * CHUNK_SIZE) as usize,
        8,
    );
    drop(img);
    let path = e.image.clone();
    let (m, _) = e.snapshot(SnapshotSource::Path(&path));
    (m.snapshot_id, model)
}

const RESTORED: &str = "vol-0restored0000000";

#[test]
fn a_volume_restored_as_stored_snapshots_incrementally_from_its_snapshot() {
    let mut e = env();
    let (src, mut model) = restore_source(&mut e);
    let dest = e.dir.join("vol-restored.img");
    e.store
        .restore(
            &src,
            &dest,
            &VolumeHeaderParams::unencrypted(RESTORED, SIZE),
            DataKeys::default(),
            &mut |_| {},
        )
        .unwrap();
    let img = VolumeImage::open_tracked(&dest, None).unwrap();
    write(&img, &mut model, 2 * CHUNK_SIZE + 100, 300, 9);
    drop(img);
    let (m, read) = e.snapshot(SnapshotSource::Path(&dest));
    assert_eq!(m.incremental_from.as_deref(), Some(src.as_str()));
    assert_eq!(read, CHUNK_SIZE, "only the written chunk is read");
    assert_eq!(m.new_bytes, CHUNK_SIZE);
    assert_eq!(e.restored(&m.snapshot_id), model);

    // Restored into a larger volume: the snapshot's entries do not cover it, full scan.
    let bigger = e.dir.join("vol-bigger.img");
    e.store
        .restore(
            &src,
            &bigger,
            &VolumeHeaderParams::unencrypted("vol-0bigger000000000", SIZE + CHUNK_SIZE),
            DataKeys::default(),
            &mut |_| {},
        )
        .unwrap();
    let (m, read) = e.snapshot(SnapshotSource::Path(&bigger));
    assert_eq!(m.incremental_from, None);
    assert_eq!(read, SIZE + CHUNK_SIZE);
}

#[derive(Debug, Clone)]
enum LazyOp {
    /// A guest write while the copy runs (chunks 0-4: the short last chunk is left for
    /// the copier, so the copy never completes before the end).
    Write { offset: u64, len: usize, seed: u8 },
    /// A read, which fills the chunk as the copier would (the same claimed copy).
    Read { chunk: u64 },
    /// The process stops cleanly and the copy resumes.
    Stop,
    /// kill -9 of the process; the copy resumes.
    Kill,
    /// The machine crashes; the copy resumes.
    MachineCrash,
}

fn lazy_op() -> impl Strategy<Value = LazyOp> {
    const END: u64 = 5 * CHUNK_SIZE;
    prop_oneof![
        6 => (0..END, 1usize..20_000, any::<u8>()).prop_map(|(offset, len, seed)| {
            let len = len.min((END - offset) as usize);
            LazyOp::Write { offset, len, seed }
        }),
        2 => (0..5u64).prop_map(|chunk| LazyOp::Read { chunk }),
        2 => Just(LazyOp::Stop),
        1 => Just(LazyOp::Kill),
        1 => Just(LazyOp::MachineCrash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// A volume restored lazily from a snapshot as stored: its first snapshot after the
    /// copy reads only the chunks the guest wrote, unless the copy was interrupted by a
    /// crash (a kill -9 or a machine crash), which makes it read the whole volume; either
    /// way it restores to the volume (the snapshot plus every acknowledged write).
    #[test]
    fn a_lazily_restored_volume_s_first_snapshot_reads_only_what_was_written(
        ops in prop::collection::vec(lazy_op(), 0..16),
    ) {
        use atrest::volume::LazyVolume;
        let mut e = env();
        let (src, mut model) = restore_source(&mut e);
        let dest = e.dir.join("vol-restored.img");
        let start = |e: &Env| {
            e.store
                .restore_lazily(&src, &dest, &VolumeHeaderParams::unencrypted(RESTORED, SIZE), None, DataKeys::default())
                .unwrap()
        };
        let resume = |e: &Env| e.store.resume_lazily(&src, &dest, None, DataKeys::default()).unwrap();
        let mut vol: LazyVolume = start(&e);
        let mut trusted = true;
        let mut dirty = BTreeSet::new();
        for op in ops {
            prop_assert!(lazy::is_restoring(&dest));
            match op {
                LazyOp::Write { offset, len, seed } => {
                    let data: Vec<u8> = (0..len).map(|i| seed.wrapping_add((i % 251) as u8) | 1).collect();
                    vol.write_at(&data, offset).unwrap();
                    model[offset as usize..offset as usize + len].copy_from_slice(&data);
                    dirty.extend(offset / CHUNK_SIZE..=(offset + len as u64 - 1) / CHUNK_SIZE);
                }
                LazyOp::Read { chunk } => {
                    let mut buf = vec![0u8; 4096];
                    vol.read_at(&mut buf, chunk * CHUNK_SIZE + 4096).unwrap();
                    let at = (chunk * CHUNK_SIZE + 4096) as usize;
                    prop_assert!(buf[..] == model[at..at + 4096], "read during the copy");
                }
                LazyOp::Stop => {
                    drop(vol);
                    vol = resume(&e);
                }
                LazyOp::Kill => {
                    vol.abandon();
                    vol = resume(&e);
                    trusted = false;
                }
                LazyOp::MachineCrash => {
                    vol.abandon();
                    machine_crash_of(&dest);
                    vol = resume(&e);
                    trusted = false;
                }
            }
        }
        let done = vol
            .fill_all(2, &AtomicBool::new(false), std::time::Duration::ZERO, &|_, _| {})
            .unwrap();
        prop_assert!(done, "the copy completes");
        vol.sync_data().unwrap();
        drop(vol);
        let (m, read) = e.snapshot(SnapshotSource::Path(&dest));
        prop_assert_eq!(m.incremental_from.as_deref(), trusted.then_some(src.as_str()));
        let want_read: u64 = if trusted {
            dirty.iter().map(|c| (SIZE - c * CHUNK_SIZE).min(CHUNK_SIZE)).sum()
        } else {
            SIZE
        };
        prop_assert_eq!(read, want_read, "bytes read");
        prop_assert!(e.restored(&m.snapshot_id) == model, "the first snapshot differs from the volume");
    }
}
