//! Boot-time benchmark, run by `scripts/bench-boot.sh` (ignored in the normal test run:
//! it boots the guest many times and its figures depend on the machine's load).
//!
//! Measures launch -> the guest's identifying line, booting the same root image
//!   - as a plain file (qemu opens the image directly), and
//!   - through a loop device (`losetup --direct-io=on`, what an instance uses),
//!
//! interleaved so load changes hit both alike; prints medians and the ratio and fails
//! if the loop path is more than `ATREST_BENCH_MAX_RATIO` (default 1.3) times slower.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use atrest::boot::{qemu, BootProfile, Guest, StopOutcome};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One boot to the ready line and a clean stop; returns the boot time.
fn boot_once(start: impl FnOnce() -> Guest, volume: &str) -> Duration {
    let launched = Instant::now();
    let guest = start();
    let ready = guest
        .wait_for_ready(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("boot: {e}"));
    let took = launched.elapsed();
    assert_eq!(ready.volume_id, volume);
    assert_eq!(
        guest.stop(Duration::from_secs(10)).unwrap(),
        StopOutcome::PoweredOff
    );
    took
}

#[test]
#[ignore = "benchmark: run scripts/bench-boot.sh"]
fn boot_time_plain_file_vs_loop_device() {
    let dir = PathBuf::from(
        std::env::var_os("ATREST_GUEST_DIR")
            .expect("ATREST_GUEST_DIR must name a guest built by scripts/make-guest.sh"),
    );
    let runs: usize = env_or("ATREST_BENCH_RUNS", 5);
    let max_ratio: f64 = env_or("ATREST_BENCH_MAX_RATIO", 1.3);
    assert!(runs >= 1, "ATREST_BENCH_RUNS must be at least 1");
    // libtest prints "test NAME ... " without a newline before our output.
    println!();
    let profile = BootProfile::demo_guest(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("root.img");
    std::fs::copy(dir.join("root.img"), &image).expect("copy root.img");
    let console = tmp.path().join("console.log");

    // The accelerator probe runs once per process; time it apart from the boots.
    let probing = Instant::now();
    let accel = qemu::resolve_accel(&profile);
    let probe = probing.elapsed();

    let mut plain = Vec::new();
    let mut looped = Vec::new();
    for i in 0..runs {
        let p = boot_once(
            || Guest::start(&profile, &image, "vol-plain", &console).expect("start"),
            "vol-plain",
        );
        let l = boot_once(
            || {
                Guest::start_on_loop(&profile, &image, "vol-loop", &console, true)
                    .expect("start on loop")
            },
            "vol-loop",
        );
        println!(
            "run {}: plain file {:.0} ms, loop device {:.0} ms",
            i + 1,
            ms(p),
            ms(l)
        );
        plain.push(p);
        looped.push(l);
    }
    let (p, l) = (median(plain), median(looped));
    let ratio = l.as_secs_f64() / p.as_secs_f64();
    println!(
        "accelerator: {accel} (probe {:.0} ms, once per process)",
        ms(probe)
    );
    println!("plain file   median {:.0} ms over {runs} boots", ms(p));
    println!("loop device  median {:.0} ms over {runs} boots", ms(l));
    println!("ratio loop/plain {ratio:.2} (target <= {max_ratio})");
    println!(
        "BENCH {{\"accel\":\"{accel}\",\"probe_ms\":{:.0},\"plain_ms\":{:.0},\"loop_ms\":{:.0},\"ratio\":{ratio:.3},\"runs\":{runs}}}",
        ms(probe),
        ms(p),
        ms(l)
    );
    let leftover = Command::new("losetup")
        .arg("-j")
        .arg(Path::new(&image))
        .output()
        .expect("losetup -j");
    assert!(leftover.stdout.is_empty(), "loop device left attached");
    assert!(
        ratio <= max_ratio,
        "loop device boot is {ratio:.2}x the plain file, target {max_ratio}x"
    );
}
