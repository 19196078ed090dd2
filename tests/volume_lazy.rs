//! Lazy restores at the volume layer: a volume restored from a snapshot is read and written
//! while its copier runs and ends equal to the snapshot plus the writes; a copy stopped (or
//! crashed) part way resumes from its fill map and never copies over a guest write; a second
//! opener is locked out; the fill map's format is pinned by a golden file.

mod volume_common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use atrest::volume::fillmap::FillMap;
use atrest::volume::lazy::{self, LazyError};
use atrest::volume::snapshot::{Progress, SnapshotSource, CHUNK_SIZE};
use atrest::volume::{DataKeys, LazyVolume, VolumeHeaderParams, VolumeImage, XtsKey};
use rand::{Rng, RngCore, SeedableRng};
use volume_common::{env, Env, ARN_A, ARN_B};

const MIB: u64 = 1 << 20;

/// How the snapshot and the restored volume are stored.
#[derive(Clone, Copy, Debug)]
enum Path_ {
    /// Unencrypted snapshot, unencrypted volume (bytes copied as is).
    Plain,
    /// Unencrypted snapshot, encrypted volume.
    Encrypt,
    /// Encrypted snapshot, volume under another key (decrypted and encrypted again).
    ReEncrypt,
}

struct Restore {
    env: Env,
    snapshot: String,
    dest: VolumeHeaderParams,
    dest_key: Option<XtsKey>,
    source_key: Option<XtsKey>,
    /// The snapshot's plaintext, zero-extended to the volume's size.
    model: Vec<u8>,
}

impl Restore {
    fn image(&self) -> PathBuf {
        self.env.vol("vol-restored")
    }

    fn keys(&self) -> DataKeys {
        DataKeys {
            source: self.source_key.clone(),
            dest: self.dest_key.clone(),
        }
    }

    fn start(&self) -> LazyVolume {
        self.env
            .store
            .restore_lazily(
                &self.snapshot,
                &self.image(),
                &self.dest,
                self.dest_key.clone(),
                self.keys(),
            )
            .unwrap()
    }

    fn resume(&self) -> LazyVolume {
        self.env
            .store
            .resume_lazily(
                &self.snapshot,
                &self.image(),
                self.dest_key.clone(),
                self.keys(),
            )
            .unwrap()
    }

    /// The whole volume read through a plain image (after the restore completed).
    fn read_back(&self) -> Vec<u8> {
        let img = VolumeImage::open(&self.image(), self.dest_key.clone()).unwrap();
        let mut v = vec![0u8; img.size() as usize];
        img.read_at(&mut v, 0).unwrap();
        v
    }
}

/// A snapshot of `chunks` MiB where every third chunk is a hole and the rest is seeded
/// random data, restored into a volume of `chunks + extra` MiB.
fn snapshot(path: Path_, chunks: u64, extra: u64, seed: u64) -> Restore {
    let env = env();
    let size = chunks * MIB;
    let src_path = env.root.join("volumes/vol-source.img");
    let source_key = XtsKey::generate();
    let (src_params, src_key) = match path {
        Path_::ReEncrypt => (
            VolumeHeaderParams::encrypted("vol-source", size, ARN_A, b"blob-a".to_vec()),
            Some(source_key.clone()),
        ),
        _ => (VolumeHeaderParams::unencrypted("vol-source", size), None),
    };
    VolumeImage::create(&src_path, &src_params).unwrap();
    let img = VolumeImage::open(&src_path, src_key.clone()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut model = vec![0u8; ((chunks + extra) * MIB) as usize];
    for c in 0..chunks {
        if c % 3 == 1 {
            continue;
        }
        let at = (c * MIB) as usize;
        rng.fill_bytes(&mut model[at..at + MIB as usize]);
        img.write_at(&model[at..at + MIB as usize], c * MIB)
            .unwrap();
    }
    img.sync_data().unwrap();
    env.store
        .create(SnapshotSource::Image(&img), "snap-1", &mut |_: Progress| {})
        .unwrap();
    drop(img);
    let dest_size = (chunks + extra) * MIB;
    let (dest, dest_key) = match path {
        Path_::Plain => (
            VolumeHeaderParams::unencrypted("vol-restored", dest_size),
            None,
        ),
        _ => (
            VolumeHeaderParams::encrypted("vol-restored", dest_size, ARN_B, b"blob-b".to_vec()),
            Some(XtsKey::generate()),
        ),
    };
    Restore {
        env,
        snapshot: "snap-1".into(),
        dest,
        dest_key,
        source_key: src_key,
        model,
    }
}

/// Random reads (checked against the model) and writes (applied to it) of any offset and
/// length, some crossing chunk and sector boundaries.
fn drive(vol: &LazyVolume, model: &mut [u8], rng: &mut rand::rngs::StdRng, ops: usize) {
    let size = model.len() as u64;
    for _ in 0..ops {
        let len = match rng.gen_range(0..4) {
            0 => rng.gen_range(1..600),
            1 => 4096,
            2 => rng.gen_range(1..(3 * MIB / 2)) as usize,
            _ => 512 * rng.gen_range(1..64),
        };
        let off = rng.gen_range(0..size - len as u64);
        let range = off as usize..off as usize + len;
        if rng.gen_bool(0.5) {
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            vol.write_at(&data, off).unwrap();
            model[range].copy_from_slice(&data);
        } else {
            let mut got = vec![0u8; len];
            vol.read_at(&mut got, off).unwrap();
            assert!(got == model[range], "read of {len} at {off} differs");
        }
    }
}

#[test]
fn reads_and_writes_during_the_copy_equal_the_snapshot_plus_the_writes() {
    for (n, path) in [Path_::Plain, Path_::Encrypt, Path_::ReEncrypt]
        .into_iter()
        .enumerate()
    {
        let mut r = snapshot(path, 24, 4, n as u64);
        let vol = r.start();
        assert!(
            lazy::is_restoring(&r.image()),
            "{path:?}: the fill map exists"
        );
        let (filled, total) = vol.progress();
        assert_eq!(total, 28);
        assert_eq!(
            filled,
            8 + 4,
            "{path:?}: holes and the extra space need no copy"
        );
        let stop = AtomicBool::new(false);
        let mut model = std::mem::take(&mut r.model);
        std::thread::scope(|s| {
            let copier = s.spawn(|| {
                vol.fill_all(2, &stop, Duration::from_millis(2), &|_, _| {})
                    .unwrap()
            });
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + n as u64);
            drive(&vol, &mut model, &mut rng, 150);
            assert!(copier.join().unwrap(), "{path:?}: the copy completes");
        });
        assert!(vol.is_complete());
        assert!(
            !lazy::is_restoring(&r.image()),
            "{path:?}: the fill map is gone"
        );
        drive(
            &vol,
            &mut model,
            &mut rand::rngs::StdRng::seed_from_u64(7),
            50,
        );
        vol.sync_data().unwrap();
        drop(vol);
        assert!(
            r.read_back() == model,
            "{path:?}: the volume is the snapshot plus the writes"
        );
    }
}

#[test]
fn a_stopped_copy_resumes_and_never_copies_over_a_guest_write() {
    let mut r = snapshot(Path_::ReEncrypt, 32, 0, 3);
    let mut model = std::mem::take(&mut r.model);
    let stop = AtomicBool::new(false);
    {
        let vol = r.start();
        // The guest writes into chunks the copier has not reached (they are filled first).
        for c in [20u64, 26, 31] {
            let data = vec![c as u8 ^ 0x5a; 3000];
            let off = c * MIB + 1000;
            vol.write_at(&data, off).unwrap();
            model[off as usize..off as usize + data.len()].copy_from_slice(&data);
        }
        // Durable before the writes returned: a crash now cannot let a copy land on them.
        let map = FillMap::decode(&std::fs::read(lazy::fill_path(&r.image())).unwrap()).unwrap();
        assert!(map.get(20) && map.get(26) && !map.get(21));
        // The copier runs part way, then stops: what it filled since the last persist is
        // lost with the process, as in a crash.
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(60));
                stop.store(true, Ordering::SeqCst);
            });
            let done = vol
                .fill_all(1, &stop, Duration::from_millis(5), &|_, _| {})
                .unwrap();
            assert!(!done, "stopped before the end");
        });
        let (filled, total) = vol.progress();
        assert!(filled < total, "{filled} of {total}");
    }
    let on_disk = FillMap::decode(&std::fs::read(lazy::fill_path(&r.image())).unwrap()).unwrap();
    for c in [20u64, 26, 31] {
        assert!(
            on_disk.get(c),
            "a chunk the guest wrote is durable in the map"
        );
    }
    assert!(!on_disk.is_complete());
    let vol = r.resume();
    assert!(vol
        .fill_all(2, &AtomicBool::new(false), Duration::ZERO, &|_, _| {})
        .unwrap());
    drop(vol);
    assert!(
        r.read_back() == model,
        "resumed copy = snapshot + the guest's writes"
    );
}

/// The changed-block tracker and a lazy restore: the copier's fills are not recorded as
/// writes, so no snapshot may be taken (nor be incremental) before the copy is done. A
/// snapshot of a restoring image is refused; the first snapshot after the copy (here after
/// a kill -9 mid-copy and a resume) reads the whole volume; the next one reads only the
/// chunks written since; both restore to the volume as it was.
#[test]
fn the_first_snapshot_after_a_lazy_restore_is_full_and_the_next_incremental() {
    let mut r = snapshot(Path_::ReEncrypt, 16, 2, 11);
    let mut model = std::mem::take(&mut r.model);
    let write = |vol: &dyn Fn(&[u8], u64), model: &mut Vec<u8>, c: u64, seed: u8| {
        let data = vec![seed; 5000];
        let off = c * MIB + 700;
        vol(&data, off);
        model[off as usize..off as usize + data.len()].copy_from_slice(&data);
    };
    let stop = AtomicBool::new(false);
    {
        let vol = r.start();
        for c in [3u64, 9, 17] {
            write(&|d, o| vol.write_at(d, o).unwrap(), &mut model, c, c as u8);
        }
        for source in [
            SnapshotSource::Image(vol.image()),
            SnapshotSource::Path(&r.image()),
        ] {
            match r.env.store.create(source, "snap-early", &mut |_| {}) {
                Err(atrest::volume::snapshot::SnapshotError::Restoring(p)) => {
                    assert_eq!(p, r.image())
                }
                other => panic!(
                    "a snapshot of a restoring image: {:?}",
                    other.map(|m| m.chunks.len())
                ),
            }
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(40));
                stop.store(true, Ordering::SeqCst);
            });
            assert!(!vol
                .fill_all(1, &stop, Duration::from_millis(5), &|_, _| {})
                .unwrap());
        });
        vol.abandon();
    }
    let vol = r.resume();
    write(&|d, o| vol.write_at(d, o).unwrap(), &mut model, 5, 0xa5);
    assert!(vol
        .fill_all(2, &AtomicBool::new(false), Duration::ZERO, &|_, _| {})
        .unwrap());
    write(&|d, o| vol.write_at(d, o).unwrap(), &mut model, 6, 0x5a);
    vol.sync_data().unwrap();
    drop(vol);
    assert!(r.read_back() == model);

    let restored = |id: &str| {
        let path = r.env.root.join(format!("volumes/vol-check-{id}.img"));
        let mut p = r.dest.clone();
        p.volume_id = format!("vol-check-{id}");
        r.env
            .store
            .restore(id, &path, &p, DataKeys::default(), &mut |_| {})
            .unwrap();
        let img = VolumeImage::open(&path, r.dest_key.clone()).unwrap();
        let mut v = vec![0u8; img.size() as usize];
        img.read_at(&mut v, 0).unwrap();
        v
    };
    let mut read = 0;
    let first = r
        .env
        .store
        .create(SnapshotSource::Path(&r.image()), "snap-2", &mut |p| {
            read = p.total
        })
        .unwrap();
    assert_eq!(first.incremental_from, None, "the first snapshot is full");
    assert_eq!(read, model.len() as u64, "it read the whole volume");
    assert!(restored("snap-2") == model, "snap-2 restores to the volume");

    let img = VolumeImage::open_tracked(&r.image(), r.dest_key.clone()).unwrap();
    write(&|d, o| img.write_at(d, o).unwrap(), &mut model, 12, 0x33);
    img.sync_data().unwrap();
    drop(img);
    let second = r
        .env
        .store
        .create(SnapshotSource::Path(&r.image()), "snap-3", &mut |p| {
            read = p.total
        })
        .unwrap();
    assert_eq!(second.incremental_from.as_deref(), Some("snap-2"));
    assert_eq!(read, MIB, "only the written chunk is read");
    assert!(restored("snap-3") == model, "snap-3 restores to the volume");
}

#[test]
fn a_second_opener_is_locked_out() {
    let r = snapshot(Path_::Encrypt, 4, 0, 9);
    let vol = r.start();
    match r
        .env
        .store
        .resume_lazily(&r.snapshot, &r.image(), r.dest_key.clone(), r.keys())
    {
        Err(atrest::volume::snapshot::SnapshotError::Lazy(e)) => {
            assert!(matches!(*e, LazyError::Locked { .. }), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second opener got the restore"),
    }
    drop(vol);
    // Released with the first: the restore can be resumed now.
    drop(r.resume());
}

#[test]
fn a_volume_smaller_than_the_snapshot_is_refused_and_leaves_nothing() {
    let mut r = snapshot(Path_::Plain, 4, 0, 1);
    r.dest.size_bytes = 2 * MIB;
    assert!(r
        .env
        .store
        .restore_lazily(&r.snapshot, &r.image(), &r.dest, None, DataKeys::default())
        .is_err());
    assert!(!r.image().exists());
    assert!(!lazy::is_restoring(&r.image()));
}

// ---- golden fill map --------------------------------------------------------------------

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fillmap-v1-golden.fill"
);

fn golden_map() -> FillMap {
    let mut m = FillMap::new(
        "vol-0a1b2c3d4e5f60718",
        "snap-0123456789abcdef0",
        CHUNK_SIZE,
        13 * CHUNK_SIZE - 4096,
    )
    .unwrap();
    for i in [0, 2, 3, 8, 12] {
        m.set(i);
    }
    m
}

#[test]
fn golden_fill_map_still_opens() {
    let golden = Path::new(GOLDEN);
    if std::env::var_os("ATREST_REGENERATE_GOLDEN").is_some() {
        std::fs::write(golden, golden_map().encode()).unwrap();
    }
    let bytes = std::fs::read(golden).expect("tests/fixtures/fillmap-v1-golden.fill is committed");
    let m = FillMap::decode(&bytes).unwrap();
    assert_eq!(m, golden_map());
    assert_eq!(m.count(), 13);
    assert_eq!(m.filled(), 5);
    assert_eq!(bytes, golden_map().encode(), "one encoding, byte for byte");
    // The layout docs/FORMAT.md gives, field by field.
    assert_eq!(&bytes[0..8], b"ATRESTFM");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1);
    assert_eq!(&bytes[10..12], &[0, 0]);
    assert_eq!(
        u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
        1 << 20
    );
    assert_eq!(
        u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        13 * CHUNK_SIZE - 4096
    );
    assert_eq!(u64::from_le_bytes(bytes[24..32].try_into().unwrap()), 13);
    assert_eq!(&bytes[32..36], &[0, 0, 0, 0]);
    assert_eq!(bytes[36], 21);
    assert_eq!(&bytes[37..58], b"vol-0a1b2c3d4e5f60718");
    assert_eq!(bytes[58], 22);
    assert_eq!(&bytes[59..81], b"snap-0123456789abcdef0");
    assert_eq!(&bytes[81..83], &[0b0000_1101, 0b0001_0001]);
    assert_eq!(bytes.len(), 83 + 32);
}
