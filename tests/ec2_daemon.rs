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

/// ec2.sock removed under a running volume service (its state directory deleted by
/// hand): SIGTERM still stops it and unmounts. Waking the accept loop by connecting to the
/// socket's path left it waiting for ever.
#[test]
fn sigterm_stops_the_service_whose_socket_path_was_removed() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let mnt = lab.path().join("mnt");
    assert!(matches!(mount_state(&mnt), MountState::Mounted { .. }));
    std::fs::remove_file(lab.path().join("ec2.sock")).unwrap();
    lab.stop_daemon_with(libc::SIGTERM);
    assert_eq!(mount_state(&mnt), MountState::NotMounted);
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

/// Issue 18: idle connections cost the volume service a bounded number of descriptors,
/// time and log lines. Under `prlimit --nofile=128`, 200 clients that connect and send
/// nothing (and connect again whenever they are closed) neither keep a real request from
/// being answered within 2 s nor make the log grow by 100 lines a minute; a client that
/// trickles a frame is closed at the first-frame timeout.
#[test]
fn idle_connections_under_a_file_limit_of_128() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let mut lab = Lab::start();
    lab.start_daemon_with(&["prlimit", "--nofile=128", "--"]);
    let pid = lab.daemon_pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        nofile.split_whitespace().filter(|w| *w == "128").count() == 2,
        "{nofile}"
    );
    let sock = lab.path().join("ec2.sock");
    let log_lines = || lab.daemon_log().lines().count();

    // 200 silent clients, reconnecting whenever the service closes them.
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let (sock, stop, reconnects) =
                (sock.clone(), Arc::clone(&stop), Arc::clone(&reconnects));
            std::thread::spawn(move || {
                let mut held: Vec<UnixStream> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    // Drop the ones the service closed, open new ones up to 50.
                    held.retain(|s| {
                        s.set_nonblocking(true).unwrap();
                        let mut b = [0u8; 1];
                        !matches!((&*s).read(&mut b), Ok(0))
                    });
                    while held.len() < 50 {
                        match UnixStream::connect(&sock) {
                            Ok(s) => {
                                held.push(s);
                                reconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => break,
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let before = log_lines();
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while t0.elapsed() < Duration::from_secs(30) {
        // A request only the running service answers, and the CLI's own path; a service
        // that does not answer fails the test rather than hanging it.
        let (sock2, home) = (sock.clone(), lab.path().to_path_buf());
        let (tx, rx) = std::sync::mpsc::channel();
        let t = Instant::now();
        std::thread::spawn(move || {
            let mut c = atrest::ec2::client::Ec2Client::connect(&sock2, None).unwrap();
            let st = c.send(atrest::ec2::api::StatusRequest {}).unwrap();
            let status_took = t.elapsed();
            let t = Instant::now();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_atrest"))
                .arg("--home")
                .arg(&home)
                .args(["ec2", "describe-volumes"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let _ = tx.send((st.pid, status_took, t.elapsed()));
        });
        let (got_pid, a, b) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no answer within 10 s");
        assert_eq!(got_pid, pid);
        slowest = slowest.max(a).max(b);
        answered += 2;
        std::thread::sleep(Duration::from_millis(500));
    }
    let window = t0.elapsed();
    let grown = log_lines() - before;
    stop.store(true, Ordering::SeqCst);
    for a in attackers {
        a.join().unwrap();
    }
    let churn = reconnects.load(Ordering::Relaxed);
    eprintln!(
        "nofile 128, 200 idle clients ({churn} connects): {answered} requests answered, slowest {slowest:?}; log +{grown} lines in {window:?}"
    );
    assert!(churn > 200, "the clients never had to reconnect ({churn})");
    assert!(
        slowest < Duration::from_secs(2),
        "a request waited {slowest:?} behind idle connections"
    );
    // Each real request logs one line (its operation); the rest must stay under 100 a
    // minute, however many connections come and go.
    let per_minute = grown.saturating_sub(answered) as f64 * 60.0 / window.as_secs_f64();
    assert!(
        per_minute < 100.0,
        "the log grew by {grown} lines in {window:?}:\n{}",
        lab.daemon_log()
    );

    // A client that trickles its first frame is closed at the first-frame timeout (10 s).
    let mut slow = UnixStream::connect(&sock).unwrap();
    slow.write_all(&100u32.to_be_bytes()).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let closed = loop {
        let _ = slow.write_all(&[0]);
        match slow.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => break false,
            Err(_) if t.elapsed() < Duration::from_secs(20) => {}
            Err(_) => break false,
        }
    };
    let waited = t.elapsed();
    assert!(
        closed && waited >= Duration::from_secs(9) && waited < Duration::from_secs(13),
        "trickling client closed: {closed} after {waited:?}"
    );
    lab.stop_daemon();
}
