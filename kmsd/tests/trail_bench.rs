//! Throughput and latency of durable appends with 1 and 8 concurrent appenders.
//! Run: scripts/bench-trail.sh (or `cargo test --release -p kmsd --test trail_bench --
//! --ignored --nocapture`). Set TRAIL_BENCH_DIR to measure on another filesystem.

mod trail_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmsd::testing::trail::{validate, Clock, TrailWriter};
use trail_support::*;

fn run(threads: usize, per_thread: usize) -> (f64, Duration, Duration, f64) {
    let base = std::env::var_os("TRAIL_BENCH_DIR").map(std::path::PathBuf::from);
    let tmp = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let w = Arc::new(TrailWriter::open(config(&dir, 16 << 20, clock.clone())).unwrap());
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let w = w.clone();
            let clock = clock.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per_thread);
                for i in 0..per_thread {
                    let r = record((t * per_thread + i) as u64, clock.now());
                    let t0 = Instant::now();
                    append(&w, r).unwrap();
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    let stats = w.stats();
    assert_eq!(stats.events as usize, threads * per_thread);
    let report = validate(&dir).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.events as usize, threads * per_thread);
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (
        (threads * per_thread) as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        stats.events as f64 / stats.batches as f64,
    )
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_append() {
    // fdatasync itself, for reference.
    let tmp = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(tmp.path().join("x")).unwrap();
    let t0 = Instant::now();
    for _ in 0..200 {
        std::io::Write::write_all(&mut &f, &[b'x'; 700]).unwrap();
        f.sync_data().unwrap();
    }
    println!("raw write+fdatasync: {:?} each", t0.elapsed() / 200);
    println!(
        "{:>9} {:>10} {:>10} {:>10} {:>14}",
        "appenders", "events/s", "p50", "p99", "events/fsync"
    );
    for (threads, per) in [(1, 3000), (8, 1500), (1, 3000)] {
        let (rate, p50, p99, per_sync) = run(threads, per);
        println!("{threads:>9} {rate:>10.0} {p50:>10.1?} {p99:>10.1?} {per_sync:>14.1}");
    }
}
