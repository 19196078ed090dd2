//! What unauthenticated traffic may cost kmsd.sock, against a real kmsd: a first-frame
//! timeout, an idle timeout, a connection cap that refuses with a clear error (after
//! closing the connections doing least), `EMFILE` handled with back-off, and a log that
//! does not grow with the attack.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Daemon;
use kmsd::client::{ClientError, KmsClient};
use kmsd::protocol::{encode_frame, ErrorCode, Request, RequestEnvelope, PROTOCOL_VERSION};

/// The embedded default configuration with `lines` added to its `[kmsd]` table.
fn config(lines: &str) -> String {
    let anchor = "default_principal = \"arn:aws:iam::{account}:user/{user}\"\n";
    let text =
        kmsd::testing::server::EMBEDDED_DEFAULT.replacen(anchor, &format!("{anchor}{lines}\n"), 1);
    assert!(text.contains(lines));
    text
}

/// A ListKeys request frame.
fn list_keys_frame() -> Vec<u8> {
    let env = RequestEnvelope {
        version: PROTOCOL_VERSION,
        act_as: None,
        via: None,
        request: Request::ListKeys(Default::default()),
        signer: None,
    };
    let mut buf = Vec::new();
    encode_frame(&env, &mut buf).unwrap();
    buf
}

/// Reads one reply frame's payload (the connection must answer within 10 s).
fn read_reply(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    payload
}

/// Connects, sends one request and reads its reply: the connection is then idle.
fn idle_connection(d: &Daemon) -> UnixStream {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(&list_keys_frame()).unwrap();
    let reply = kmsd::protocol::decode_response(&read_reply(&mut s)).unwrap();
    assert!(reply.result.is_ok());
    s
}

/// How long until kmsd closes `s` (reads until end-of-file, at most `limit`).
fn closed_after(s: &mut UnixStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(t0.elapsed()),
            Err(_) => return None,
        }
    }
}

/// Whether kmsd closed `s` already (without waiting).
fn is_closed(s: &UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let closed = match (&*s).read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

fn log_lines(d: &Daemon) -> usize {
    std::fs::read_to_string(d.log_path())
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn silent_and_trickling_connections_are_closed_after_the_first_frame_timeout() {
    let d = Daemon::start_with_config(&config("first_frame_timeout_ms = 400"));
    // Sends nothing.
    let mut silent = UnixStream::connect(d.socket()).unwrap();
    let took = closed_after(&mut silent, Duration::from_secs(5)).expect("never closed");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    // Starts a 1000-byte frame and trickles a byte every 100 ms: the whole frame must
    // arrive within the timeout, however regularly bytes come.
    let mut trickler = UnixStream::connect(d.socket()).unwrap();
    let t0 = Instant::now();
    trickler.write_all(&1000u32.to_be_bytes()).unwrap();
    let mut sent = 0;
    while trickler.write_all(&[1]).is_ok() && !is_closed(&trickler) {
        sent += 1;
        assert!(t0.elapsed() < Duration::from_secs(5), "trickler kept open");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sent >= 2, "closed before the timeout ({sent} bytes)");
    // A real client that connects and waits before its first call is not hurt: kmsd
    // closed its connection unused, and the client sends on a new one.
    let c = KmsClient::connect(d.socket()).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    c.list_keys().unwrap();
    let st = c.status().unwrap();
    assert!(st.connections.first_frame_timeouts >= 3, "{st:?}");
}

#[test]
fn idle_connections_are_closed_and_clients_reconnect() {
    let d = Daemon::start_with_config(&config("idle_timeout_seconds = 1"));
    let mut s = idle_connection(&d);
    let took = closed_after(&mut s, Duration::from_secs(5)).expect("never closed");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    let c = KmsClient::connect(d.socket()).unwrap();
    c.list_keys().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // The connection is gone; the call goes through on a new one.
    c.list_keys().unwrap();
    let st = c.status().unwrap();
    assert!(st.connections.idle_timeouts >= 2, "{st:?}");
}

#[test]
fn the_cap_makes_room_from_idle_connections_then_refuses_with_a_clear_error() {
    let d = Daemon::start_with_config(&config("max_connections = 4"));
    // Connections that never sent a request make room first, oldest first.
    let mut silent: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(d.socket()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let c = KmsClient::connect(d.socket()).unwrap();
    c.list_keys().unwrap();
    assert!(
        closed_after(&mut silent[0], Duration::from_secs(5)).is_some(),
        "the oldest silent connection should have made room"
    );
    drop(silent);
    drop(c);
    // Connections in use (idle for less than a second) are kept: a new one is refused
    // with LimitExceededException. Timing-dependent on a loaded machine, so retried.
    let mut refused = None;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(1200));
        let busy: Vec<UnixStream> = (0..4).map(|_| idle_connection(&d)).collect();
        match KmsClient::connect(d.socket()).and_then(|c| c.list_keys()) {
            Err(ClientError::Kms(e)) => {
                refused = Some(e);
                // After a second of idling they may go: the next client gets in.
                std::thread::sleep(Duration::from_millis(1200));
                let c = KmsClient::connect(d.socket()).unwrap();
                c.list_keys().unwrap();
                let st = c.status().unwrap();
                assert_eq!(st.connections.max, 4);
                assert!(
                    st.connections.refused >= 1 && st.connections.evicted >= 2,
                    "{st:?}"
                );
                assert!(busy.iter().any(is_closed), "no idle connection made room");
                break;
            }
            Ok(_) => eprintln!("not refused (the machine is slow); again"),
            Err(e) => panic!("{e}"),
        }
    }
    let e = refused.expect("never refused at the cap");
    assert_eq!(e.code, ErrorCode::LimitExceededException);
    assert!(
        e.message.contains("maximum of 4 connections"),
        "{}",
        e.message
    );
}

/// Keeps `n` connections open that never send anything, reopening those kmsd closes,
/// until `stop`.
fn flood(
    socket: std::path::PathBuf,
    n: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conns: Vec<Option<UnixStream>> = (0..n).map(|_| None).collect();
        let mut opened = 0u64;
        while !stop.load(Ordering::SeqCst) {
            for slot in conns.iter_mut() {
                if slot.as_ref().is_none_or(is_closed) {
                    *slot = UnixStream::connect(&socket).ok();
                    opened += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        opened
    })
}

#[test]
fn with_128_files_and_200_idle_connections_a_real_client_is_served_within_2s() {
    let home = tempfile::tempdir().unwrap();
    let mut d = Daemon { home, child: None };
    d.spawn_under(&["prlimit", "--nofile=128", "--"]);
    let lines_before = log_lines(&d);
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = flood(d.socket(), 200, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    let window = Instant::now();
    let mut worst = Duration::ZERO;
    let mut calls = 0;
    while window.elapsed() < Duration::from_secs(12) {
        let t0 = Instant::now();
        let c = KmsClient::connect(d.socket()).unwrap();
        c.list_keys()
            .unwrap_or_else(|e| panic!("a real client was refused: {e}"));
        worst = worst.max(t0.elapsed());
        calls += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let elapsed = window.elapsed();
    let st = KmsClient::connect(d.socket()).unwrap().status().unwrap();
    stop.store(true, Ordering::SeqCst);
    let opened = attacker.join().unwrap();
    let lines = log_lines(&d) - lines_before;
    eprintln!(
        "{calls} real calls, slowest {worst:?}; attacker opened {opened} connections; {} log lines in {elapsed:?}; {st:?}",
        lines
    );
    assert!(worst < Duration::from_secs(2), "a real call took {worst:?}");
    assert_eq!(
        st.connections.max,
        128 - 64,
        "the cap fits the open-file limit"
    );
    assert!(st.connections.evicted > 0, "{st:?}");
    // Under 100 lines a minute.
    let per_minute = lines as f64 * 60.0 / elapsed.as_secs_f64();
    assert!(per_minute < 100.0, "{lines} log lines in {elapsed:?}");
}

/// Out of file descriptors below the cap (the limit lowered under a running kmsd):
/// accept fails with EMFILE; kmsd closes a connection doing nothing, backs off instead
/// of spinning, logs it once per interval, and keeps serving real clients.
#[test]
fn emfile_backs_off_and_keeps_serving() {
    let d = Daemon::start();
    let pid = d.pid();
    let ok = std::process::Command::new("prlimit")
        .args([&format!("--pid={pid}"), "--nofile=48:48"])
        .status()
        .unwrap();
    assert!(ok.success());
    let lines_before = log_lines(&d);
    let cpu_before = cpu_ticks(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = flood(d.socket(), 80, Arc::clone(&stop));
    let window = Instant::now();
    let mut worst = Duration::ZERO;
    while window.elapsed() < Duration::from_secs(6) {
        let t0 = Instant::now();
        let c = KmsClient::connect(d.socket()).unwrap();
        c.list_keys()
            .unwrap_or_else(|e| panic!("a real client was refused: {e}"));
        worst = worst.max(t0.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::SeqCst);
    attacker.join().unwrap();
    let cpu = cpu_ticks(pid) - cpu_before;
    let log = std::fs::read_to_string(d.log_path()).unwrap();
    let new: Vec<&str> = log.lines().skip(lines_before).collect();
    eprintln!(
        "slowest real call {worst:?}; kmsd used {cpu} ticks; log:\n{}",
        new.join("\n")
    );
    assert!(worst < Duration::from_secs(2), "a real call took {worst:?}");
    assert!(
        new.iter().any(|l| l.contains("accept failed")),
        "the test never made accept fail"
    );
    assert!(
        new.iter().filter(|l| l.contains("accept failed")).count() <= 2,
        "accept failures logged more than once per 10 s"
    );
    // Not spinning: well under one CPU-second over the 6 s window.
    let hz = 100; // USER_HZ
    assert!(cpu < 3 * hz, "kmsd used {cpu} ticks of CPU");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}
