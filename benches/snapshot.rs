//! Snapshot and create-from-snapshot of a volume filled with data, a lazy restore (usable at
//! once, copied in the background), then the incremental snapshots changed-block tracking
//! makes possible (nothing changed; 1% of the chunks):
//! `BENCH_DIR=/var/tmp/x BENCH_MIB=1024 cargo bench --bench snapshot` (scripts/bench-snapshot.sh
//! runs it beside `cp --sparse=always`). Prints `name seconds=<s> MBps=<n>` lines and leaves
//! `BENCH_DIR/source.img` for the script's `cp` comparison.
//!
//! The volume is filled whole with random data, so `cp` copies as many bytes as the volume
//! holds and "1% of the chunks" is 1% of its data; `BENCH_FILL_MIB=N` caps the data at N MiB
//! of chunks spread evenly over the volume (the rest sparse) for disks too small for that.
//! Each restored image is deleted once its figure is taken, so the peak on disk is the
//! source, the snapshot store and one restore: three times the volume.

use std::path::Path;
use std::time::Instant;

use atrest::volume::snapshot::{SnapshotSource, SnapshotStore, CHUNK_SIZE};
use atrest::volume::{DataKeys, VolumeHeaderParams, VolumeImage, XtsKey};
use rand::{RngCore, SeedableRng};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn timed<T>(name: &str, bytes: u64, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let c = cpu_seconds();
    let out = f();
    let s = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c;
    println!(
        "{name} seconds={s:.4} MBps={:.0} cpu_seconds={cpu:.4}",
        bytes as f64 / s / 1e6
    );
    out
}

/// A lazy restore (re-encrypted, as create-volume makes one in the volume service): the time
/// until the new volume answers its first read (of the last data chunk, which the copier
/// reaches last), then the time its background copy takes to fill the rest.
fn lazy_restore(store: &SnapshotStore, dir: &Path, size: u64, last_data: u64, key_a: &XtsKey) {
    let path = dir.join("restored-lazy.img");
    let pb = VolumeHeaderParams::encrypted(
        "vol-lazy",
        size,
        "arn:aws:kms:local:0:key/b",
        b"blob-b".to_vec(),
    );
    let key_b = XtsKey::generate();
    let vol = timed("create-from-snapshot-lazy-usable", 4096, || {
        let vol = store
            .restore_lazily(
                "snap-bench",
                &path,
                &pb,
                Some(key_b.clone()),
                DataKeys {
                    source: Some(key_a.clone()),
                    dest: Some(key_b.clone()),
                },
            )
            .expect("lazy restore");
        let mut first = vec![0u8; 4096];
        let end = (last_data + CHUNK_SIZE).min(size);
        vol.read_at(&mut first, end - 4096).expect("first read");
        vol
    });
    let never = std::sync::atomic::AtomicBool::new(false);
    timed("create-from-snapshot-lazy-copy", size, || {
        let done = vol
            .fill_all(4, &never, std::time::Duration::ZERO, &|_, _| {})
            .expect("copy");
        assert!(done);
    });
    drop(vol);
    remove_restore(&path);
}

/// Deletes a restored image (and the files the volume service keeps beside one) once its
/// figure is taken, to keep the bench's peak disk use at three times the volume.
fn remove_restore(path: &Path) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if let (Some(dir), false) = (path.parent(), name.is_empty()) {
        for entry in std::fs::read_dir(dir).expect("read BENCH_DIR").flatten() {
            if entry.file_name().to_string_lossy().starts_with(name) {
                std::fs::remove_file(entry.path()).expect("remove a restored image");
            }
        }
    }
}

fn main() {
    let dir = std::env::var("BENCH_DIR").expect("BENCH_DIR");
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let dir = Path::new(&dir);
    let size = mib << 20;
    let src = dir.join("source.img");
    let key_a = XtsKey::generate();
    let params = VolumeHeaderParams::encrypted(
        "vol-bench",
        size,
        "arn:aws:kms:local:0:key/a",
        b"blob-a".to_vec(),
    );
    VolumeImage::create(&src, &params).expect("create");
    // Written through a changed-block tracker, as the volume service serves volumes.
    // Filled whole unless BENCH_FILL_MIB caps the data (chunks spread evenly, the rest sparse).
    let fill_limit = std::env::var("BENCH_FILL_MIB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(size, |m| (m << 20).clamp(CHUNK_SIZE, size));
    let chunks = size.div_ceil(CHUNK_SIZE);
    let stride = (size / fill_limit).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    {
        let img = VolumeImage::open_tracked(&src, Some(key_a.clone())).expect("open");
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        for c in (0..chunks).step_by(stride as usize) {
            rng.fill_bytes(&mut buf);
            let off = c * CHUNK_SIZE;
            let n = buf.len().min((size - off) as usize);
            img.write_at(&buf[..n], off).expect("fill");
        }
        img.sync_data().expect("sync");
    }
    let last_data = (chunks - 1) / stride * stride * CHUNK_SIZE;
    println!(
        "filled-bytes={}",
        chunks.div_ceil(stride) * CHUNK_SIZE.min(size)
    );
    let store = SnapshotStore::open(&dir.join("snapshots")).expect("store");
    let m = timed("snapshot-create", size, || {
        store
            .create(SnapshotSource::Path(&src), "snap-bench", &mut |_| {})
            .expect("snapshot")
    });
    assert_eq!(m.incremental_from, None);
    let same = dir.join("restored-same-key.img");
    let mut p = params.clone();
    p.volume_id = "vol-same".into();
    timed("create-from-snapshot-same-key", size, || {
        store
            .restore("snap-bench", &same, &p, DataKeys::default(), &mut |_| {})
            .expect("restore")
    });
    remove_restore(&same);
    let other = dir.join("restored-new-key.img");
    let pb = VolumeHeaderParams::encrypted(
        "vol-new",
        size,
        "arn:aws:kms:local:0:key/b",
        b"blob-b".to_vec(),
    );
    timed("create-from-snapshot-re-encrypt", size, || {
        store
            .restore(
                "snap-bench",
                &other,
                &pb,
                DataKeys {
                    source: Some(key_a.clone()),
                    dest: Some(XtsKey::generate()),
                },
                &mut |_| {},
            )
            .expect("restore")
    });
    remove_restore(&other);
    lazy_restore(&store, dir, size, last_data, &key_a);
    let m2 = timed("snapshot-create-incremental-unchanged", size, || {
        store
            .create(SnapshotSource::Path(&src), "snap-bench-2", &mut |_| {})
            .expect("snapshot")
    });
    assert_eq!(m2.incremental_from.as_deref(), Some("snap-bench"));
    println!("incremental-new-bytes={}", m2.new_bytes);

    // 1% of the chunks (at least one) rewritten at random places, through the tracker.
    let changed = chunks.div_ceil(100);
    {
        let img = VolumeImage::open_tracked(&src, Some(key_a)).expect("open");
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        let mut picked = std::collections::BTreeSet::new();
        while (picked.len() as u64) < changed {
            picked.insert(rng.next_u64() % chunks);
        }
        for c in picked {
            rng.fill_bytes(&mut buf);
            let off = c * CHUNK_SIZE;
            let n = buf.len().min((size - off) as usize);
            img.write_at(&buf[..n], off).expect("write");
        }
        img.sync_data().expect("sync");
    }
    let mut read = 0;
    let m3 = timed("snapshot-create-incremental-1pct", size, || {
        store
            .create(SnapshotSource::Path(&src), "snap-bench-3", &mut |p| {
                read = p.total;
            })
            .expect("snapshot")
    });
    assert_eq!(m3.incremental_from.as_deref(), Some("snap-bench-2"));
    println!("incremental-1pct-read-bytes={read}");
}
