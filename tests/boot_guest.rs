//! Boots the real demo guest under qemu (KVM if it works, else TCG).
//!
//! Needs root (losetup), qemu-system-x86 and the packages `scripts/make-guest.sh`
//! installs. Nothing here skips: a missing tool fails the test with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use atrest::boot::{self, Accel, BootError, BootProfile, Guest, StopOutcome};

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// The guest must power itself off within this (PoweredOff, not Quit or Killed); it
/// takes about 0.1 s on an idle host, the margin is for loaded CI machines.
const STOP_TIMEOUT: Duration = Duration::from_secs(8);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kernel and initramfs, built once into a cache shared by every test process
/// (`make-guest.sh` serializes concurrent builds on a lock in the directory).
fn guest_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("ATREST_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest"));
        let out = Command::new(repo().join("scripts/make-guest.sh"))
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/make-guest.sh: {e}"));
        assert!(
            out.status.success(),
            "scripts/make-guest.sh {} failed (the boot tests need it):\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A fresh root image carrying `marker`.
fn root_image(dir: &Path, marker: &str) -> PathBuf {
    let image = dir.join("root.img");
    let out = Command::new(repo().join("scripts/make-guest.sh"))
        .args(["--marker", marker, "--root-image"])
        .arg(&image)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/make-guest.sh: {e}"));
    assert!(
        out.status.success(),
        "make-guest.sh --root-image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

fn loop_devices_of(file: &Path) -> String {
    let out = Command::new("losetup")
        .arg("-j")
        .arg(file)
        .output()
        .expect("losetup -j");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn guest_boots_from_a_loop_device_prints_its_volume_and_marker_and_powers_off() {
    let profile = BootProfile::demo_guest(guest_dir());
    let tmp = tempfile::tempdir().unwrap();
    let marker = format!("marker-{:016x}", rand::random::<u64>());
    let image = root_image(tmp.path(), &marker);
    let console = tmp.path().join("i-0123/console.log");

    let launched = Instant::now();
    let guest = Guest::start_on_loop(&profile, &image, "vol-0feedbeef", &console, true)
        .unwrap_or_else(|e| panic!("start: {e}"));
    assert!(
        guest.disk().to_string_lossy().starts_with("/dev/loop"),
        "boots from {}",
        guest.disk().display()
    );
    assert_eq!(loop_devices_of(&image).lines().count(), 1);

    let ready = guest
        .wait_for_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("boot: {e}"));
    let boot_time = launched.elapsed();
    assert_eq!(ready.volume_id, "vol-0feedbeef");
    assert_eq!(ready.marker, marker);
    assert!(guest.is_running());
    eprintln!("booted under {} in {boot_time:?}", guest.accel());
    // Auto ran the KVM probe, which always concludes (a KVM that fails in any way means
    // TCG); the guest runs under what it decided, whichever way that went on this host.
    let decided = boot::qemu::kvm_probe_result();
    assert!(decided.is_some(), "an Auto guest ran, so the probe ran");
    let expected = if decided == Some(true) {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    assert_eq!(guest.accel(), expected, "the probe decided {decided:?}");

    // get-console-output sees the same line.
    let output = boot::console_output(&console);
    assert!(
        output.contains(&format!(
            "atrest-guest: booted from volume vol-0feedbeef marker={marker}\n"
        )),
        "console: {output}"
    );

    let stopping = Instant::now();
    let outcome = guest.stop(STOP_TIMEOUT).unwrap();
    let stop_time = stopping.elapsed();
    assert_eq!(
        outcome,
        StopOutcome::PoweredOff,
        "console: {}",
        guest.console_output()
    );
    assert!(!guest.is_running());
    assert!(guest.exit_status().is_some_and(|s| s.success()));
    assert!(guest
        .console_output()
        .contains("atrest-guest: powering off"));
    assert_eq!(loop_devices_of(&image), "", "loop device left attached");
    assert_eq!(
        guest.stop(STOP_TIMEOUT).unwrap(),
        StopOutcome::AlreadyStopped
    );
    eprintln!("powered off in {stop_time:?}");
}

#[test]
fn guest_on_a_garbage_disk_fails_with_a_reason_and_qemu_exits() {
    let profile = BootProfile::demo_guest(guest_dir());
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("garbage.img");
    let mut bytes = vec![0u8; 16 << 20];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&rand::random::<u64>().to_le_bytes());
    }
    std::fs::write(&disk, &bytes).unwrap();
    let console = tmp.path().join("console.log");

    let guest = Guest::start(&profile, &disk, "vol-0garbage", &console).unwrap();
    let err = guest
        .wait_for_ready(BOOT_TIMEOUT)
        .expect_err("a garbage disk must not boot");
    match &err {
        BootError::GuestFailed { reason, .. } => {
            assert!(
                reason.contains("cannot mount root /dev/vda"),
                "reason: {reason}"
            )
        }
        other => panic!("expected GuestFailed, got {other}"),
    }
    assert!(err
        .reason()
        .starts_with("guest failed to boot: cannot mount root"));
    assert!(!guest.is_running(), "qemu still runs after the failure");
    assert!(boot::console_output(&console).contains("atrest-guest: boot failed: cannot mount root"));
}

#[test]
fn bad_input_is_refused_before_qemu_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    std::fs::write(&disk, [0u8; 512]).unwrap();
    let console = tmp.path().join("console.log");
    let profile = BootProfile::demo_guest(tmp.path()); // no kernel there

    let err = Guest::start(&profile, &disk, "vol-1", &console).unwrap_err();
    assert!(
        matches!(err, BootError::BadPath { what: "kernel", .. }),
        "{err}"
    );
    let err = Guest::start(&profile, &disk, "vol-1 init=/bin/sh", &console).unwrap_err();
    assert!(matches!(err, BootError::InvalidProfile(_)), "{err}");
    let err = Guest::start_on_loop(&profile, &disk, "vol 1", &console, false).unwrap_err();
    assert!(matches!(err, BootError::InvalidProfile(_)), "{err}");
    assert_eq!(loop_devices_of(&disk), "");
    let err = Guest::start_on_loop(
        &profile,
        &tmp.path().join("missing"),
        "vol-1",
        &console,
        false,
    )
    .unwrap_err();
    assert!(matches!(err, BootError::LoopDevice { .. }), "{err}");
}

#[test]
fn stop_while_the_guest_is_still_booting_ends_qemu_and_frees_the_loop_device() {
    let profile = BootProfile::demo_guest(guest_dir());
    let tmp = tempfile::tempdir().unwrap();
    let image = root_image(tmp.path(), "early-stop");
    let console = tmp.path().join("console.log");

    let guest = Guest::start_on_loop(&profile, &image, "vol-0early", &console, true).unwrap();
    // Press the power button before the guest's init can watch it (an instance
    // stopped while `pending`): the early presses are lost, a later one lands.
    let stopping = Instant::now();
    let outcome = guest.stop(STOP_TIMEOUT).unwrap();
    eprintln!("early stop: {outcome:?} in {:?}", stopping.elapsed());
    assert!(
        matches!(outcome, StopOutcome::PoweredOff | StopOutcome::Quit),
        "outcome {outcome:?}, console: {}",
        guest.console_output()
    );
    assert!(!guest.is_running());
    assert_eq!(loop_devices_of(&image), "", "loop device left attached");
    assert!(matches!(
        guest.wait_for_ready(Duration::from_secs(1)),
        Err(BootError::QemuExited { .. }) | Ok(_)
    ));
}

#[test]
fn qemu_refusing_the_kernel_is_a_typed_error_with_its_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut profile = BootProfile::demo_guest(guest_dir());
    profile.accel = Accel::Tcg;
    profile.kernel = tmp.path().join("not-a-kernel");
    std::fs::write(&profile.kernel, b"this is not a bzImage").unwrap();
    let disk = tmp.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let console = tmp.path().join("console.log");

    let guest = Guest::start(&profile, &disk, "vol-1", &console).unwrap();
    match guest.wait_for_ready(BOOT_TIMEOUT) {
        Err(BootError::QemuExited {
            status,
            stderr_tail,
            ..
        }) => {
            assert!(
                !stderr_tail.is_empty(),
                "qemu said nothing (status {status})"
            );
            eprintln!("qemu: {status}: {stderr_tail}");
        }
        other => panic!("expected QemuExited, got {other:?}"),
    }
    assert!(!guest.is_running());
}

#[test]
fn make_guest_is_idempotent_and_checks_its_arguments() {
    let dir = guest_dir();
    let mtimes = || {
        ["vmlinuz", "initrd.img", "root.img"].map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .unwrap_or_else(|e| panic!("{f}: {e}"))
        })
    };
    let before = mtimes();
    let out = Command::new(repo().join("scripts/make-guest.sh"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(mtimes(), before, "a second run rebuilt something");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dir.to_string_lossy()
    );

    let out = Command::new(repo().join("scripts/make-guest.sh"))
        .args([
            "--marker",
            "two\nlines",
            "--root-image",
            "/nonexistent/x.img",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("single line"));
    let out = Command::new(repo().join("scripts/make-guest.sh"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
