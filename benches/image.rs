//! VolumeImage data-path throughput (page cache, no fsync): `cargo bench --bench image`.
//! Shows the sector crypto plus pread/pwrite path the FUSE mount serves reaches GB/s for
//! large I/O. BENCH_DIR picks the directory (default: a temp dir under /var/tmp).

use std::time::Instant;

use atrest::volume::{VolumeHeaderParams, VolumeImage, XtsKey};
use rand::{Rng, SeedableRng};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Prints wall-clock and per-CPU-second rates (the second is what the box can do when it is
/// not shared with other work).
struct Meter {
    t: Instant,
    c: f64,
}

impl Meter {
    fn start() -> Self {
        Meter {
            t: Instant::now(),
            c: cpu_seconds(),
        }
    }
    fn report(&self, label: &str, unit: &str, amount: f64) {
        let wall = self.t.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - self.c;
        println!(
            "image {label} {unit}={:.0} (per CPU-second: {:.0})",
            amount / wall,
            amount / cpu
        );
    }
}

fn main() {
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let size: u64 = 512 << 20;
    let path = dir.path().join("bench.img");
    let params = VolumeHeaderParams::encrypted(
        "vol-bench",
        size,
        "arn:aws:kms:local:0:key/a",
        b"blob".to_vec(),
    );
    VolumeImage::create(&path, &params).expect("create");
    let img = VolumeImage::open(&path, Some(XtsKey::generate())).expect("open");
    let mut buf = vec![0xA5u8; 1 << 20];

    for pass in ["write (cold, allocating)", "write (overwrite)"] {
        let m = Meter::start();
        for off in (0..size).step_by(buf.len()) {
            img.write_at(&buf, off).expect("write");
        }
        m.report(&format!("seq {pass} 1MiB ops"), "MBps", size as f64 / 1e6);
    }
    let m = Meter::start();
    for off in (0..size).step_by(buf.len()) {
        img.read_at(&mut buf, off).expect("read");
    }
    m.report("seq read 1MiB ops", "MBps", size as f64 / 1e6);

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut small = [0u8; 4096];
    let n = 100_000;
    let m = Meter::start();
    for _ in 0..n {
        let off = rng.gen_range(0..size / 4096) * 4096;
        if rng.gen_bool(0.3) {
            img.write_at(&small, off).expect("write");
        } else {
            img.read_at(&mut small, off).expect("read");
        }
    }
    m.report("rand 4KiB 70/30 read/write", "IOPS", n as f64);

    let m = Meter::start();
    std::thread::scope(|s| {
        for k in 0..2u64 {
            let img = &img;
            s.spawn(move || {
                let data = vec![k as u8 + 1; 1 << 20];
                for off in (k * (size / 2)..(k + 1) * (size / 2)).step_by(1 << 20) {
                    img.write_at(&data, off).expect("write");
                }
            });
        }
    });
    m.report("seq write 2 threads 1MiB ops", "MBps", size as f64 / 1e6);
}
