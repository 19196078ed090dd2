//! fio with `--verify=crc32c`, several jobs at once, random and sequential, on the raw
//! served file and through loop + ext4: zero verify errors, and verification really ran.

mod mount_support;

use std::path::Path;

use mount_support::*;

const MIB: u64 = 1 << 20;

/// Runs fio with JSON output; checks every job finished without error and read back
/// (verified) as many bytes as it wrote.
fn fio(args: &[&str]) {
    let mut all = vec![
        "--output-format=json",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--verify_state_save=0",
    ];
    all.extend_from_slice(args);
    let out = run("fio", &all);
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from fio:\n{out}"));
    let v: serde_json::Value = serde_json::from_str(&out[start..]).expect("fio JSON");
    let jobs = v["jobs"].as_array().expect("fio jobs");
    assert!(!jobs.is_empty());
    for j in jobs {
        let name = j["jobname"].as_str().unwrap_or("?");
        assert_eq!(
            j["error"].as_i64(),
            Some(0),
            "fio job {name} reported an error: {j}"
        );
        let written = j["write"]["io_bytes"].as_u64().unwrap_or(0);
        let verified = j["read"]["io_bytes"].as_u64().unwrap_or(0);
        assert!(written > 0, "job {name} wrote nothing");
        assert!(
            verified >= written,
            "job {name} verified {verified} of {written} bytes"
        );
    }
}

#[test]
fn fio_verify_on_the_raw_served_file() {
    require_kernel_and_tools(&["fio"]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let h = start(&mp, false);
    let (img, key) = create_volume(dir.path(), "vol-0f10f10f10f10f101", 192 * MIB);
    let served = h
        .add(
            "i-0f1",
            "xvdf",
            open_volume(&img, &key),
            0,
            0,
            "vol-0f10f10f10f10f101",
        )
        .unwrap();
    let file = format!("--filename={}", served.display());
    // Random 4 KiB direct writes, 4 jobs on disjoint regions 48 MiB apart, queue depth 16.
    fio(&[
        "--name=rand4k",
        &file,
        "--rw=randwrite",
        "--bs=4k",
        "--ioengine=libaio",
        "--iodepth=16",
        "--direct=1",
        "--numjobs=4",
        "--size=16M",
        "--offset_increment=48M",
    ]);
    // Random unaligned sizes (512 B .. 192 KiB) through the page cache: read-modify-write
    // of partial sectors in the volume layer under concurrency.
    fio(&[
        "--name=randmix",
        &file,
        "--rw=randwrite",
        "--bsrange=512-192k",
        "--ioengine=psync",
        "--direct=0",
        "--numjobs=3",
        "--size=8M",
        "--offset_increment=64M",
    ]);
    // Sequential 1 MiB writes, 2 jobs.
    fio(&[
        "--name=seq1m",
        &file,
        "--rw=write",
        "--bs=1M",
        "--ioengine=libaio",
        "--iodepth=4",
        "--direct=1",
        "--numjobs=2",
        "--size=24M",
        "--offset_increment=96M",
    ]);
    h.remove("i-0f1", "xvdf").unwrap();
    h.unmount().unwrap();
}

#[test]
fn fio_verify_through_loop_and_ext4() {
    require_kernel_and_tools(&["fio", "losetup", "mkfs.ext4", "mount", "e2fsck"]);
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let h = start(&mp, false);
    let (img, key) = create_volume(dir.path(), "vol-0f20f20f20f20f201", 256 * MIB);
    let served = h
        .add(
            "i-0f2",
            "xvdg",
            open_volume(&img, &key),
            0,
            0,
            "vol-0f20f20f20f20f201",
        )
        .unwrap();
    let lo = Loop::attach(&served, true);
    assert!(lo.0.direct_io());
    run("mkfs.ext4", &["-q", "-F", &lo.dev()]);
    let fsdir = dir.path().join("fs");
    let m = Mounted::new(&lo.dev(), &fsdir);
    let d = format!("--directory={}", fsdir.display());
    fio(&[
        "--name=ext4rand",
        &d,
        "--rw=randwrite",
        "--bs=4k",
        "--ioengine=libaio",
        "--iodepth=32",
        "--direct=1",
        "--numjobs=2",
        "--size=16M",
    ]);
    fio(&[
        "--name=ext4seq",
        &d,
        "--rw=write",
        "--bs=1M",
        "--ioengine=psync",
        "--direct=0",
        "--numjobs=2",
        "--size=24M",
        "--fsync_on_close=1",
    ]);
    m.unmount();
    run("e2fsck", &["-fn", &lo.dev()]);
    drop(lo);
    h.remove("i-0f2", "xvdg").unwrap();
    h.unmount().unwrap();
    assert!(Path::new(&img).exists());
}
