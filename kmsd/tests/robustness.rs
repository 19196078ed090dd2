//! Crashes, concurrency and hostile frames against a real kmsd.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Daemon;
use kmsd::client::KmsClient;
use kmsd::protocol::{
    decode_response, encode_frame, CreateKeyRequest, EncryptionContext, ErrorCode, Request,
    RequestEnvelope, MAX_FRAME, PROTOCOL_VERSION,
};

/// kill -9 in the middle of a burst of CreateKey from several clients: after a
/// restart, every key whose creation was acknowledged is there and usable, and
/// the keystore loads.
#[test]
fn kill9_during_create_key_burst_loses_no_acknowledged_key() {
    let mut d = Daemon::start();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let c = d.client();
                let acked = Arc::clone(&acked);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match c.create_key(CreateKeyRequest::default()) {
                            Ok(m) => acked.lock().unwrap().push(m.key_id),
                            Err(_) => return, // the daemon died mid-request
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + 200 * round));
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        let got = acked.lock().unwrap().clone();
        assert!(
            !got.is_empty(),
            "round {round}: no key was created before the kill"
        );
        eprintln!(
            "round {round}: {} keys acknowledged before kill -9",
            got.len()
        );
        acknowledged.extend(got);
        d.spawn();
        let c = d.client();
        let listed: std::collections::HashSet<String> = c
            .list_keys()
            .unwrap()
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        for id in &acknowledged {
            assert!(
                listed.contains(id),
                "round {round}: acknowledged key {id} was lost"
            );
        }
        // The newest keys (written just before the kill) are whole: their material
        // unseals and works.
        for id in acknowledged.iter().rev().take(32) {
            let e = c
                .encrypt(id, b"still here", &EncryptionContext::new())
                .unwrap();
            assert_eq!(
                &c.decrypt(&e.ciphertext_blob, &EncryptionContext::new(), None)
                    .unwrap()
                    .plaintext[..],
                b"still here"
            );
        }
    }
    // No temp files survive a load.
    let stray: Vec<_> = std::fs::read_dir(d.home().join("kms/keys"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temp files left: {stray:?}");
}

#[test]
fn many_concurrent_clients() {
    let d = Daemon::start();
    let setup = d.client();
    let key = setup
        .create_key(CreateKeyRequest::default())
        .unwrap()
        .key_id;
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let c = setup.clone(); // own connection
            let key = key.clone();
            std::thread::spawn(move || {
                let cx: EncryptionContext = [("worker".to_string(), i.to_string())].into();
                for n in 0..150u32 {
                    let pt = format!("{i}-{n}");
                    let e = c.encrypt(&key, pt.as_bytes(), &cx).unwrap();
                    let p = c.decrypt(&e.ciphertext_blob, &cx, None).unwrap();
                    assert_eq!(&p.plaintext[..], pt.as_bytes());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // One client shared between threads works too (calls are serialized).
    let shared = Arc::new(d.client());
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&shared);
            let key = key.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    s.describe_key(&key).unwrap();
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
}

#[test]
fn a_slow_client_does_not_block_others() {
    let d = Daemon::start();
    // Sends half a frame and then sits there.
    let mut slow = UnixStream::connect(d.socket()).unwrap();
    slow.write_all(&[0, 0, 0, 50, 1, 0]).unwrap();
    let mut idle = UnixStream::connect(d.socket()).unwrap();
    idle.write_all(&[]).unwrap();
    let c = d.client();
    let start = Instant::now();
    for _ in 0..100 {
        c.create_key(CreateKeyRequest::default()).unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(20));
    drop(slow);
    drop(idle);
}

/// Sends raw bytes, then reads one reply frame and checks the connection closes.
fn refused(d: &Daemon, bytes: &[u8]) -> (ErrorCode, String) {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    let reply = decode_response(&payload).unwrap();
    let e = reply.result.unwrap_err();
    // Then the daemon closes this connection.
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "connection left open");
    (e.code, e.message)
}

#[test]
fn malformed_oversized_unknown_and_wrong_version_frames() {
    let d = Daemon::start();
    // Oversized length prefix.
    let big = ((MAX_FRAME + 1) as u32).to_be_bytes();
    let (code, msg) = refused(&d, &big);
    assert_eq!(code, ErrorCode::ValidationException);
    assert!(msg.contains("exceeds the maximum"), "{msg}");
    // Garbage payload (after the current version, so it is the payload that is refused).
    let v = PROTOCOL_VERSION as u8;
    let (code, msg) = refused(&d, &[0, 0, 0, 3, v, 0xff, 0xff]);
    assert_eq!(code, ErrorCode::ValidationException);
    assert!(msg.contains("malformed"), "{msg}");
    // Right version, unknown request variant (index 200).
    let (code, _) = refused(&d, &[0, 0, 0, 5, v, 0, 0, 0xc8, 0x01]);
    assert_eq!(code, ErrorCode::ValidationException);
    // Wrong protocol version.
    let mut buf = Vec::new();
    encode_frame(&(99u16, 0u8), &mut buf).unwrap();
    let (code, msg) = refused(&d, &buf);
    assert_eq!(code, ErrorCode::ValidationException);
    assert!(msg.contains("unsupported protocol version 99"), "{msg}");
    // Trailing bytes after a valid request.
    let env = RequestEnvelope {
        version: PROTOCOL_VERSION,
        act_as: None,
        via: None,
        request: Request::ListKeys(Default::default()),
        signer: None,
    };
    let mut ok = Vec::new();
    encode_frame(&env, &mut ok).unwrap();
    let mut trailing = ok[4..].to_vec();
    trailing.push(0);
    let mut framed = (trailing.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&trailing);
    assert_eq!(refused(&d, &framed).0, ErrorCode::ValidationException);
    // A torn frame (peer hangs up mid-frame) does not hurt the daemon.
    {
        let mut s = UnixStream::connect(d.socket()).unwrap();
        s.write_all(&ok[..ok.len() - 2]).unwrap();
    }
    // The daemon still serves well-formed clients, on the same frame bytes.
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(&ok).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    assert!(decode_response(&payload).unwrap().result.is_ok());
    assert!(d.client().list_keys().is_ok());
}

#[test]
fn daemonize_writes_a_pid_file_and_serves() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .arg("--home")
        .arg(home.path())
        .arg("--daemonize")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid_file = home.path().join("run/kmsd.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let c = KmsClient::connect(home.path().join("kmsd.sock")).unwrap();
    assert!(c.list_keys().unwrap().is_empty());
    // A second kmsd on the same socket refuses to start.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .arg("--home")
        .arg(home.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already serving"));
    // SAFETY: sending SIGKILL to the daemon this test started (pid from its pid file).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut d = Daemon::start();
    let key = d
        .client()
        .create_key(CreateKeyRequest::default())
        .unwrap()
        .key_id;
    let mut child = d.child.take().unwrap();
    // SAFETY: signalling the kmsd child this test spawned.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!d.socket().exists());
    d.spawn();
    assert!(d.client().describe_key(&key).is_ok());
}

/// A state directory whose socket was removed under a running kmsd (say, deleted by
/// hand): SIGTERM still stops it. Waking the accept loop by connecting to the socket's
/// path left it waiting for ever.
#[test]
fn sigterm_stops_kmsd_whose_socket_path_was_removed() {
    let mut d = Daemon::start();
    assert!(d.client().list_keys().is_ok());
    std::fs::remove_file(d.socket()).unwrap();
    let mut child = d.child.take().unwrap();
    // SAFETY: signalling the kmsd child this test spawned.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kmsd did not stop on SIGTERM with its socket path removed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_frame_announced_large_but_never_sent_costs_only_what_arrived() {
    let d = Daemon::start();
    // Announce 1 MiB, send 3 bytes, hang up: the daemon drops the connection
    // and keeps serving.
    {
        let mut s = UnixStream::connect(d.socket()).unwrap();
        s.write_all(&(MAX_FRAME as u32).to_be_bytes()).unwrap();
        s.write_all(&[1, 0, 0]).unwrap();
    }
    assert!(d.client().list_keys().is_ok());
}
