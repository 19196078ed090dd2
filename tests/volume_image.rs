//! VolumeImage: round trips, holes, unaligned and concurrent I/O, tamper detection, the
//! OpenSSL cross-check and the golden fixture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use atrest::volume::format::{self, FormatError};
use atrest::volume::{Cipher, VolumeError, VolumeHeaderParams, VolumeImage, XtsKey};
use rand::{Rng, RngCore, SeedableRng};

const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn params(encrypted: bool, size: u64, sector: u32) -> VolumeHeaderParams {
    let mut p = if encrypted {
        VolumeHeaderParams::encrypted("vol-0123456789abcdef0", size, ARN, vec![0xC5; 200])
    } else {
        VolumeHeaderParams::unencrypted("vol-0123456789abcdef0", size)
    };
    p.sector_size = sector;
    p
}

fn make(dir: &Path, encrypted: bool, size: u64, sector: u32) -> (PathBuf, Option<XtsKey>) {
    let path = dir.join("vol.img");
    VolumeImage::create(&path, &params(encrypted, size, sector)).unwrap();
    (path, encrypted.then(XtsKey::generate))
}

#[test]
fn round_trip_every_cipher_and_sector_size() {
    for encrypted in [false, true] {
        for sector in [512u32, 4096] {
            let dir = tempfile::tempdir().unwrap();
            let (path, key) = make(dir.path(), encrypted, 1 << 20, sector);
            let img = VolumeImage::open(&path, key.clone()).unwrap();
            assert_eq!(img.size(), 1 << 20);
            assert_eq!(img.header().params, params(encrypted, 1 << 20, sector));
            let mut data = vec![0u8; 300_000];
            rand::thread_rng().fill_bytes(&mut data);
            img.write_at(&data, 12_345).unwrap();
            img.sync_data().unwrap();
            drop(img);
            let img = VolumeImage::open(&path, key).unwrap();
            let mut back = vec![0u8; data.len()];
            img.read_at(&mut back, 12_345).unwrap();
            assert_eq!(back, data, "encrypted={encrypted} sector={sector}");
            // Bytes around the write are still zeros.
            let mut edge = vec![1u8; 12_345];
            img.read_at(&mut edge, 0).unwrap();
            assert!(edge.iter().all(|&b| b == 0));
        }
    }
}

#[test]
fn fresh_volume_reads_zeros_and_payload_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = make(dir.path(), true, 64 << 20, 4096);
    let img = VolumeImage::open(&path, key).unwrap();
    let mut buf = vec![0xFFu8; 3 << 20];
    img.read_at(&mut buf, (61 << 20) - 7).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(&path).unwrap().blocks();
    assert!(
        blocks * 512 < 1 << 20,
        "fresh image allocates {} bytes",
        blocks * 512
    );
}

#[test]
fn random_unaligned_io_matches_a_model() {
    for (encrypted, sector) in [(true, 512u32), (true, 4096), (false, 4096)] {
        let dir = tempfile::tempdir().unwrap();
        let size = 256 * 1024u64;
        let (path, key) = make(dir.path(), encrypted, size, sector);
        let img = VolumeImage::open(&path, key).unwrap();
        let mut model = vec![0u8; size as usize];
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..400 {
            let len = match rng.gen_range(0..4) {
                0 => rng.gen_range(1..16),
                1 => rng.gen_range(1..5000),
                2 => rng.gen_range(4096..40000),
                _ => 0,
            };
            let off = rng.gen_range(0..=size - len as u64);
            if rng.gen_bool(0.6) {
                let mut d = vec![0u8; len];
                rng.fill_bytes(&mut d);
                img.write_at(&d, off).unwrap();
                model[off as usize..off as usize + len].copy_from_slice(&d);
            } else {
                let mut d = vec![0u8; len];
                img.read_at(&mut d, off).unwrap();
                assert_eq!(d, &model[off as usize..off as usize + len]);
            }
        }
        let mut all = vec![0u8; size as usize];
        img.read_at(&mut all, 0).unwrap();
        assert_eq!(all, model);
    }
}

#[test]
fn out_of_range_and_key_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = make(dir.path(), true, 1 << 20, 4096);
    let img = VolumeImage::open(&path, key).unwrap();
    let mut b = [0u8; 10];
    assert!(matches!(
        img.read_at(&mut b, (1 << 20) - 5),
        Err(VolumeError::OutOfRange { .. })
    ));
    assert!(matches!(
        img.write_at(&b, u64::MAX - 3),
        Err(VolumeError::OutOfRange { .. })
    ));
    let e = img.write_at(&b, 1 << 20).unwrap_err();
    assert_eq!(e.errno(), libc::EFBIG);
    img.write_at(&b[..0], 1 << 20).unwrap(); // empty at the end is fine
    img.write_at(&b, (1 << 20) - 10).unwrap(); // last bytes
    drop(img);

    assert!(matches!(
        VolumeImage::open(&path, None),
        Err(VolumeError::KeyRequired { .. })
    ));
    let dir2 = tempfile::tempdir().unwrap();
    let (plain, _) = make(dir2.path(), false, 1 << 20, 4096);
    assert!(matches!(
        VolumeImage::open(&plain, Some(XtsKey::generate())),
        Err(VolumeError::KeyNotExpected { .. })
    ));
    assert!(matches!(
        VolumeImage::create(&plain, &params(false, 1 << 20, 4096)),
        Err(VolumeError::AlreadyExists(_))
    ));
    assert!(matches!(
        VolumeImage::create(&dir2.path().join("bad.img"), &params(false, 1000, 4096)),
        Err(VolumeError::Format(FormatError::Invalid {
            field: "size_bytes",
            ..
        }))
    ));
    assert!(!dir2.path().join("bad.img").exists());
}

#[test]
fn truncated_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = make(dir.path(), true, 1 << 20, 4096);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len((1 << 20) + 4096).unwrap();
    assert!(matches!(
        VolumeImage::open(&path, key),
        Err(VolumeError::ImageTruncated { .. })
    ));
}

#[test]
fn backing_file_never_holds_the_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = make(dir.path(), true, 4 << 20, 4096);
    let img = VolumeImage::open(&path, key).unwrap();
    let pattern: Vec<u8> = b"ATREST-PLAINTEXT-MARKER-"
        .iter()
        .copied()
        .cycle()
        .take(1 << 20)
        .collect();
    img.write_at(&pattern, 3).unwrap();
    img.sync_data().unwrap();
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.windows(24).any(|w| w == b"ATREST-PLAINTEXT-MARKER-"));
}

#[test]
fn flipped_header_bytes_are_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = make(dir.path(), true, 1 << 20, 4096);
    let pristine = std::fs::read(&path).unwrap();
    let h = VolumeImage::read_header(&path).unwrap().header_len as usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut positions: Vec<usize> = (0..16).collect();
    positions.extend((0..40).map(|_| rng.gen_range(16..h)));
    for pos in positions {
        let mut bytes = pristine.clone();
        bytes[pos] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let err = VolumeImage::open(&path, key.clone())
            .err()
            .expect("tampered header accepted");
        let msg = err.to_string();
        assert!(msg.starts_with("volume header:"), "byte {pos}: {msg}");
        assert!(VolumeImage::read_header(&path).is_err());
        if pos >= 16 {
            assert!(
                matches!(err, VolumeError::Format(FormatError::ChecksumMismatch)),
                "byte {pos}: {msg}"
            );
        }
    }
}

#[test]
fn concurrent_unaligned_writers_to_shared_sectors_do_not_tear() {
    for sector in [512u32, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 * 1024u64;
        let (path, key) = make(dir.path(), true, size, sector);
        let img = VolumeImage::open(&path, key).unwrap();
        const THREADS: usize = 6;
        const STRIPE: usize = 100; // not a sector divisor: neighbours share every sector
        let owner = |i: usize| (i / STRIPE) % THREADS;
        let models: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let img = &img;
                    s.spawn(move || {
                        let mut model = vec![0u8; size as usize];
                        let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                        let stripes: Vec<usize> = (0..size as usize / STRIPE)
                            .filter(|k| owner(k * STRIPE) == t)
                            .collect();
                        for _ in 0..1500 {
                            let k = stripes[rng.gen_range(0..stripes.len())];
                            let a = k * STRIPE + rng.gen_range(0..STRIPE);
                            let b = rng.gen_range(a + 1..=k * STRIPE + STRIPE);
                            let mut d = vec![0u8; b - a];
                            rng.fill_bytes(&mut d);
                            img.write_at(&d, a as u64).unwrap();
                            model[a..b].copy_from_slice(&d);
                        }
                        model
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut expected = vec![0u8; size as usize];
        for (i, e) in expected
            .iter_mut()
            .enumerate()
            .take(size as usize / STRIPE * STRIPE)
        {
            *e = models[owner(i)][i];
        }
        let mut got = vec![0u8; size as usize];
        img.read_at(&mut got, 0).unwrap();
        assert_eq!(got, expected, "sector size {sector}");
    }
}

#[test]
fn openssl_decrypts_the_payload() {
    for sector in [512u32, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 << 20;
        let (path, key) = make(dir.path(), true, size, sector);
        let key = key.unwrap();
        let img = VolumeImage::open(&path, Some(key.clone())).unwrap();
        let mut plain = vec![0u8; size as usize];
        rand::thread_rng().fill_bytes(&mut plain);
        // Unaligned pieces covering the whole volume, in a shuffled order; the last two are
        // large enough (>= 256 KiB) to be encrypted on several cores at once.
        let cuts = [
            0usize,
            1,
            777,
            5000,
            70001,
            100_000,
            200_003,
            1_500_001,
            size as usize,
        ];
        for w in cuts.windows(2).rev() {
            img.write_at(&plain[w[0]..w[1]], w[0] as u64).unwrap();
        }
        img.sync_data().unwrap();
        let mut back = vec![0u8; size as usize];
        img.read_at(&mut back, 0).unwrap();
        assert!(back == plain, "read back differs (sector size {sector})");
        let expected = dir.path().join("expected.bin");
        std::fs::write(&expected, &plain).unwrap();
        let out = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/xts_openssl_check.py"
            ))
            .arg(&path)
            .arg(hex::encode(key.as_bytes()))
            .arg(img.header().payload_offset().to_string())
            .arg(sector.to_string())
            .arg(&expected)
            .output()
            .expect("python3 (with python3-cryptography) is required for the OpenSSL cross-check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("OK"),
            "OpenSSL cross-check failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Seeded random mutations of real headers: decode must return Ok or a typed error, never
/// panic. (The cargo-fuzz target in fuzz/ explores the same function without a seed.)
#[test]
fn header_fuzz_smoke() {
    let mut ctx = BTreeMap::new();
    ctx.insert("aws:ebs:id".to_string(), "vol-1".to_string());
    ctx.insert("team".to_string(), "storage".to_string());
    let mut p = params(true, 1 << 30, 512);
    p.encryption_context = ctx;
    let seeds = [
        format::encode(&p).unwrap(),
        format::encode(&params(false, 4096, 4096)).unwrap(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xf022);
    let mut accepted = 0;
    for i in 0..20_000 {
        let mut b = seeds[i % 2].clone();
        match rng.gen_range(0..5) {
            0 => {
                let n = rng.gen_range(1..8);
                for _ in 0..n {
                    let at = rng.gen_range(0..b.len());
                    b[at] = rng.gen();
                }
            }
            1 => b.truncate(rng.gen_range(0..b.len())),
            2 => {
                let at = rng.gen_range(0..b.len());
                let extra: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
                b.splice(at..at, extra);
            }
            3 => {
                // Mutate a field, then fix up the checksum so parsing goes past it.
                let at = rng.gen_range(16..b.len() - 32);
                b[at] = rng.gen();
                if rng.gen_bool(0.5) {
                    let h = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
                    let h = h.min(b.len());
                    use sha2::Digest;
                    let sum = sha2::Sha256::digest(&b[..h - 32]);
                    b[h - 32..h].copy_from_slice(&sum);
                }
            }
            _ => {
                b = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
                if rng.gen_bool(0.5) && b.len() >= 8 {
                    b[..8].copy_from_slice(&format::MAGIC);
                }
            }
        }
        if let Ok(h) = format::decode(&b) {
            // Anything accepted must re-encode to the same header bytes.
            let again = format::encode(&h.params).unwrap();
            assert_eq!(&b[..again.len()], &again[..]);
            accepted += 1;
        }
    }
    assert!(accepted < 20_000);
}

// ---- golden fixture -------------------------------------------------------------------

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/volume-v1-golden.img"
);

fn golden_key() -> XtsKey {
    XtsKey::from_bytes(&(0u8..64).collect::<Vec<_>>()).unwrap()
}

fn golden_params() -> VolumeHeaderParams {
    let mut p = VolumeHeaderParams::encrypted(
        "vol-0a1b2c3d4e5f60718",
        16384,
        "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000001",
        b"golden-wrapped-data-key-blob-as-kmsd-returned-it".to_vec(),
    );
    p.payload_offset = 4096;
    p
}

fn golden_plaintext() -> Vec<u8> {
    let mut v: Vec<u8> = (0..16384u32).map(|i| (i * 7 + i / 251) as u8).collect();
    v[4096..8192].fill(0); // sector 1 is never written: a hole
    v
}

/// Builds the golden image with the current code.
fn build_golden(path: &Path) {
    VolumeImage::create(path, &golden_params()).unwrap();
    let img = VolumeImage::open(path, Some(golden_key())).unwrap();
    let pt = golden_plaintext();
    img.write_at(&pt[..4096], 0).unwrap();
    img.write_at(&pt[8192..10000], 8192).unwrap();
    img.write_at(&pt[10000..], 10000).unwrap();
    img.sync_data().unwrap();
}

#[test]
fn golden_image_still_opens_and_decrypts() {
    let golden = Path::new(GOLDEN);
    if std::env::var_os("ATREST_REGENERATE_GOLDEN").is_some() {
        let _ = std::fs::remove_file(golden);
        build_golden(golden);
    }
    let bytes = std::fs::read(golden).expect("tests/fixtures/volume-v1-golden.img is committed");
    let h = VolumeImage::read_header(golden).unwrap();
    assert_eq!(h.params, golden_params());
    assert_eq!(h.params.cipher, Cipher::AesXtsPlain64);
    let img = VolumeImage::open_read_only(golden, Some(golden_key())).unwrap();
    let mut got = vec![0u8; 16384];
    img.read_at(&mut got, 0).unwrap();
    assert_eq!(got, golden_plaintext());
    assert!(
        bytes[4096 + 4096..4096 + 8192].iter().all(|&b| b == 0),
        "hole stays zero"
    );
    // The current code must produce the fixture byte for byte (format and crypto unchanged).
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("golden.img");
    build_golden(&fresh);
    assert_eq!(
        std::fs::read(&fresh).unwrap(),
        bytes,
        "on-disk format drifted"
    );
}

#[test]
fn volume_image_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<VolumeImage>();
}

/// Readers racing a writer see every sector either before or after a write, never a mix.
#[test]
fn concurrent_readers_never_see_a_torn_sector() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = make(dir.path(), true, 64 * 1024, 512);
    let img = VolumeImage::open(&path, key).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let (img, stop) = (&img, &stop);
        s.spawn(move || {
            // Each write fills sectors 4..8 with one value, starting mid-sector so every
            // write is a read-modify-write of its first and last sector.
            for v in 1..=400u32 {
                let val = (v % 250) as u8 + 1;
                img.write_at(&vec![val; 4 * 512 - 100], 4 * 512 + 50)
                    .unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        for _ in 0..2 {
            s.spawn(move || {
                let mut buf = vec![0u8; 4 * 512];
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    img.read_at(&mut buf, 4 * 512).unwrap();
                    for (k, sec) in buf.chunks(512).enumerate() {
                        let (lo, hi) = match k {
                            0 => (50, 512),
                            3 => (0, 462),
                            _ => (0, 512),
                        };
                        let v = sec[lo];
                        assert!(sec[lo..hi].iter().all(|&b| b == v), "torn sector {k}");
                    }
                }
            });
        }
    });
}

/// A sequential reader of 1 MiB requests is answered from the plaintext read-ahead
/// (`read_vec`), and a write into a range already read ahead is never hidden by it:
/// the next read returns the written bytes (the read-ahead is discarded, not served).
#[test]
fn read_ahead_serves_a_sequential_reader_and_never_hides_a_write() {
    const MIB: usize = 1 << 20;
    for sector in [512u32, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = make(dir.path(), true, 16 << 20, sector);
        let img = VolumeImage::open(&path, key).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(sector));
        let mut model = vec![0u8; 16 << 20];
        rng.fill_bytes(&mut model);
        img.write_at(&model, 0).unwrap();
        let mut buf = Vec::new();
        let settle = || std::thread::sleep(std::time::Duration::from_millis(30));
        // Plain sequential pass: after the first two reads, every read is a read-ahead hit.
        for i in 0..16 {
            img.read_vec(&mut buf, (i * MIB) as u64, MIB).unwrap();
            assert!(
                buf[..MIB] == model[i * MIB..(i + 1) * MIB],
                "sector {sector} MiB {i}"
            );
            settle(); // let the worker finish the next MiB, so hits are deterministic
        }
        let hits = img.read_ahead_hits();
        assert!(
            hits >= 13,
            "sector {sector}: only {hits} read-ahead hits of 16 reads"
        );
        // Second pass, sequential again: before every even MiB (which the worker has read
        // ahead by then) part of it, or some other place, is overwritten; that read must
        // return the new bytes and not be a hit. The odd MiBs, with no write before them,
        // are hits: the read-ahead was live all along.
        for i in 0..16 {
            let wrote = i >= 2 && i % 2 == 0;
            if wrote {
                let at = if i % 4 == 0 {
                    rng.gen_range(0..(16 * MIB - 5000)) // anywhere, maybe not in this MiB
                } else {
                    i * MIB + rng.gen_range(0..(MIB - 5000))
                };
                let mut patch = vec![0u8; rng.gen_range(1..5000)];
                rng.fill_bytes(&mut patch);
                img.write_at(&patch, at as u64).unwrap();
                model[at..at + patch.len()].copy_from_slice(&patch);
            }
            let before = img.read_ahead_hits();
            img.read_vec(&mut buf, (i * MIB) as u64, MIB).unwrap();
            assert!(
                buf[..MIB] == model[i * MIB..(i + 1) * MIB],
                "sector {sector}: MiB {i} (written before: {wrote}) returned stale bytes"
            );
            let hit = img.read_ahead_hits() > before;
            if wrote {
                assert!(
                    !hit,
                    "sector {sector}: MiB {i}: a read-ahead older than a write was used"
                );
            } else if i >= 3 {
                assert!(hit, "sector {sector}: MiB {i} was not read ahead");
            }
            settle();
        }
        // Small and unaligned reads never use it, and read like read_at.
        let mut small = Vec::new();
        img.read_vec(&mut small, 12_345, 4096).unwrap();
        assert!(small[..4096] == model[12_345..12_345 + 4096]);
        drop(img); // joins the worker
    }
}
