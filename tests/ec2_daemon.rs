//! The volume service process itself (`atrest mount`): one per HOME, and a clean
//! unmount on every termination signal.

mod ec2_support;

use atrest::mount::daemon::{mount_state, MountState};
use ec2_support::Lab;

/// A second `atrest mount` (background or foreground, same or another mountpoint) is
/// refused up front, naming the running service's pid and mountpoint; the running one
/// keeps serving (its socket and pid file untouched).
#[test]
fn a_second_mount_is_refused_naming_the_running_one() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let pid = lab.daemon_pid().unwrap().to_string();
    let mnt = lab.path().join("mnt");
    let other = lab.path().join("other-mnt");
    for args in [
        vec!["mount"],
        vec!["mount", "--foreground"],
        vec!["mount", other.to_str().unwrap()],
    ] {
        let out = lab.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "atrest {args:?} succeeded while pid {pid} runs: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            err.contains("already running")
                && err.contains(&format!("pid {pid} "))
                && err.contains(&format!("serving {}", mnt.display())),
            "atrest {args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(lab.path().join("run/mount.pid"))
            .unwrap()
            .trim(),
        pid
    );
    assert!(!matches!(mount_state(&other), MountState::Mounted { .. }));
    // The running service still answers and serves.
    let vol = lab.new_volume(&["--size", "1"]);
    let out = lab.run(&["attach", &vol]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.served_path("local", "xvdf").exists());
    lab.stop_daemon();
    assert!(!lab.path().join("run/mount.pid").exists());
}

/// SIGINT (Ctrl-C) and SIGHUP (the terminal closed) end a foreground `atrest mount` as
/// SIGTERM does: exit 0, nothing left mounted, socket and pid file gone.
#[test]
fn sigint_and_sighup_unmount_cleanly() {
    for sig in [libc::SIGINT, libc::SIGHUP] {
        let mut lab = Lab::start();
        lab.start_daemon();
        let vol = lab.new_volume(&["--size", "1"]);
        let out = lab.run(&["attach", &vol]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mnt = lab.path().join("mnt");
        assert!(matches!(mount_state(&mnt), MountState::Mounted { .. }));
        lab.stop_daemon_with(sig);
        assert_eq!(mount_state(&mnt), MountState::NotMounted, "signal {sig}");
        assert!(!lab.path().join("ec2.sock").exists(), "signal {sig}");
        assert!(!lab.path().join("run/mount.pid").exists(), "signal {sig}");
    }
}
