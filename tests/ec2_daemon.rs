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
    lab.run_ok(&["attach", &vol]);
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
        lab.run_ok(&["attach", &vol]);
        let mnt = lab.path().join("mnt");
        assert!(matches!(mount_state(&mnt), MountState::Mounted { .. }));
        lab.stop_daemon_with(sig);
        assert_eq!(mount_state(&mnt), MountState::NotMounted, "signal {sig}");
        assert!(!lab.path().join("ec2.sock").exists(), "signal {sig}");
        assert!(!lab.path().join("run/mount.pid").exists(), "signal {sig}");
    }
}

/// A non-root user whose fuse.conf lacks `user_allow_other` cannot mount with
/// allow_other (the default): `atrest mount` fails at once saying exactly what to add.
#[test]
fn a_non_root_mount_without_user_allow_other_says_what_to_add() {
    use std::os::unix::process::CommandExt;
    let lab = Lab::start();
    const NOBODY: u32 = 65534;
    std::os::unix::fs::chown(lab.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let conf = lab.path().join("fuse.conf");
    std::fs::write(&conf, "# mount_max = 1000\n#user_allow_other\n").unwrap();
    let out = lab
        .cmd()
        .args(["mount", "--foreground"])
        .env("ATREST_FUSE_CONF", &conf)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted as nobody: {err}");
    assert!(
        err.contains("allow_other")
            && err.contains(&format!("uid {NOBODY}"))
            && err.contains(&format!(
                "add that line to {} (as root: echo user_allow_other >> {})",
                conf.display(),
                conf.display()
            )),
        "{err}"
    );
    assert_eq!(mount_state(&lab.path().join("mnt")), MountState::NotMounted);
}
