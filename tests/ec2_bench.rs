//! Instance start benchmark, run by `scripts/bench-instance.sh` (ignored in the normal
//! test run: it boots many times and its figures depend on the machine's load).
//!
//! Measures `atrest ec2 start-instances` -> the guest's identifying line for an
//! instance whose root is an encrypted volume (the whole path: Decrypt through kmsd,
//! FUSE file, loop device with direct I/O, qemu), next to qemu booting the same root
//! image as a plain file, interleaved; prints medians and the ratio, and fails if the
//! instance path is more than `ATREST_BENCH_MAX_RATIO` (default 1.3) times slower.

mod ec2_support;

use std::time::{Duration, Instant};

use atrest::boot::console::{self, ConsoleState};
use atrest::boot::{BootProfile, Guest};
use ec2_support::{guest_dir, root_image, Lab};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
#[ignore = "benchmark: run scripts/bench-instance.sh"]
fn start_instances_vs_plain_qemu() {
    let runs: usize = std::env::var("ATREST_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let max_ratio: f64 = std::env::var("ATREST_BENCH_MAX_RATIO")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.3);
    let guest = guest_dir();
    let mut lab = Lab::start();
    lab.start_daemon();
    lab.key("alias/BenchKey");
    let tmp = tempfile::tempdir().unwrap();
    let image = root_image(tmp.path(), "bench");

    // An instance on an encrypted copy of the image.
    let r = lab.ec2(&[
        "run-instances",
        "--image-id",
        image.to_str().unwrap(),
        "--boot-image",
        guest.to_str().unwrap(),
    ]);
    let id = r["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let plain_root = r["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
    lab.ec2(&["stop-instances", "--instance-ids", &id]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
    let snap = lab.ec2(&["create-snapshot", "--volume-id", &plain_root])["SnapshotId"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ec2(&["wait", "snapshot-completed", "--snapshot-ids", &snap]);
    let enc = lab.new_volume(&[
        "--snapshot-id",
        &snap,
        "--encrypted",
        "--kms-key-id",
        "alias/BenchKey",
    ]);
    lab.ec2(&["detach-volume", "--volume-id", &plain_root]);
    lab.ec2(&[
        "attach-volume",
        "--volume-id",
        &enc,
        "--instance-id",
        &id,
        "--device",
        "/dev/xvda",
    ]);
    let console_log = lab.path().join("log/console").join(format!("{id}.log"));

    let profile = BootProfile::demo_guest(guest);
    let mut plain = Vec::new();
    let mut inst = Vec::new();
    for run in 0..runs {
        // qemu on the plain image file.
        let log = tmp.path().join(format!("plain-{run}.log"));
        let t = Instant::now();
        let g = Guest::start(&profile, &image, "vol-0000000000000bench", &log).unwrap();
        g.wait_for_ready(Duration::from_secs(120)).unwrap();
        let p = t.elapsed();
        g.stop(Duration::from_secs(10)).unwrap();
        // The whole start-instances path. The previous boot's console log goes first, so
        // only this boot's line counts (qemu truncates it only once it is launched).
        let _ = std::fs::remove_file(&console_log);
        let t = Instant::now();
        lab.ec2(&["start-instances", "--instance-ids", &id]);
        loop {
            let text = std::fs::read(&console_log)
                .map(|b| console::clean(&b))
                .unwrap_or_default();
            match console::scan(&text) {
                ConsoleState::Ready(_) => break,
                ConsoleState::Failed(r) => panic!("guest failed: {r}"),
                ConsoleState::Booting => {}
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "instance did not boot"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let i = t.elapsed();
        lab.ec2(&["wait", "instance-running", "--instance-ids", &id]);
        lab.ec2(&["stop-instances", "--instance-ids", &id]);
        lab.ec2(&["wait", "instance-stopped", "--instance-ids", &id]);
        println!(
            "run {run}: plain file {:.0} ms, start-instances {:.0} ms",
            ms(p),
            ms(i)
        );
        plain.push(p);
        inst.push(i);
    }
    let (p, i) = (median(plain), median(inst));
    let ratio = i.as_secs_f64() / p.as_secs_f64();
    println!("plain file median {:.0} ms", ms(p));
    println!("start-instances median {:.0} ms", ms(i));
    println!("ratio {ratio:.2} (target <= {max_ratio})");
    println!(
        "BENCH {{\"plain_file_ms\": {:.0}, \"start_instances_ms\": {:.0}, \"ratio\": {ratio:.3}, \"runs\": {runs}}}",
        ms(p),
        ms(i)
    );
    lab.stop_daemon();
    assert!(
        ratio <= max_ratio,
        "start-instances is {ratio:.2}x the plain boot (target {max_ratio})"
    );
}
