//! XTS throughput of 4 KiB sectors on one core: `cargo bench --bench xts`
//! (scripts/bench-xts.sh runs it beside `openssl speed`). Prints machine-readable lines
//! `atrest-xts encrypt MBps=<n>` and `atrest-xts decrypt MBps=<n>` (MB = 10^6 bytes).
//!
//! Time is this thread's CPU time, the same divisor `openssl speed` uses by default (user
//! CPU time), so the ratio stays fair on a machine busy with other work.

use atrest::volume::xts::Xts;
use atrest::volume::XtsKey;

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn measure(label: &str, secs: f64, mut f: impl FnMut(u64)) {
    const SECTOR: u64 = 4096;
    let mut i = 0u64;
    let warm = thread_cpu_seconds();
    while thread_cpu_seconds() - warm < 0.3 {
        f(i);
        i += 1;
    }
    let start = thread_cpu_seconds();
    let mut bytes = 0u64;
    while thread_cpu_seconds() - start < secs {
        // 64 sectors between clock reads keeps the clock out of the measurement.
        for _ in 0..64 {
            f(i);
            i += 1;
            bytes += SECTOR;
        }
    }
    let mbps = bytes as f64 / (thread_cpu_seconds() - start) / 1e6;
    println!("atrest-xts {label} MBps={mbps:.0}");
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let xts = Xts::new(&XtsKey::generate());
    // One 4 KiB sector per call, like `openssl speed -bytes 4096` (one EVP call per 4 KiB).
    let mut buf = vec![0x5au8; 4096];
    measure("encrypt", secs, |i| {
        xts.encrypt_sectors(&mut buf, 4096, i * 8).unwrap();
    });
    measure("decrypt", secs, |i| {
        xts.decrypt_sectors(&mut buf, 4096, i * 8).unwrap();
    });
    std::hint::black_box(&buf);
}
