//! The volume service process itself (`atrest mount`): one per HOME, and a clean
//! unmount on every termination signal.

mod ec2_support;

use atrest::mount::daemon::{mount_state, MountState};
use ec2_support::Lab;

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
