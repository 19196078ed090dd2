//! Issue 18: a listener out of file descriptors backs off instead of spinning. In its own
//! test binary, because it lowers the process's open-file limit.

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plumbing::listener::{nofile_limit, Connections, Limits};

fn set_soft_nofile(soft: u64) {
    let (_, hard) = nofile_limit().unwrap();
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// The lowest descriptor number not in use.
fn next_fd() -> u64 {
    let f = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    f.as_raw_fd() as u64
}

#[test]
fn out_of_descriptors_the_accept_loop_backs_off_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let conns = Connections::new(
        "test",
        Limits {
            max_connections: 64,
            first_frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(1),
        },
    );
    // Clients waiting in the backlog.
    let clients: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let (original, _) = nofile_limit().unwrap();
    // From here no new descriptor can be made: every accept fails with EMFILE.
    set_soft_nofile(next_fd());
    let looping = {
        let (conns, stop, served) = (Arc::clone(&conns), Arc::clone(&stop), Arc::clone(&served));
        std::thread::spawn(move || {
            conns.accept_loop(
                &listener,
                &stop,
                |conn| {
                    served.fetch_add(1, Ordering::SeqCst);
                    drop(conn);
                    true
                },
                drop,
            )
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let failures = conns.totals().accept_failures;
    assert_eq!(served.load(Ordering::SeqCst), 0);
    // Backing off from 5 ms to 500 ms: about ten tries in two seconds, not millions.
    assert!(
        (1..=20).contains(&failures),
        "{failures} failed accepts in 2 s"
    );
    // Descriptors again: the waiting clients are taken.
    set_soft_nofile(original);
    let t = std::time::Instant::now();
    while served.load(Ordering::SeqCst) < clients.len() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "served {} of {} after the limit was lifted",
            served.load(Ordering::SeqCst),
            clients.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let _ = UnixStream::connect(&path);
    looping.join().unwrap();
}
