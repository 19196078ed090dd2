//! Hostile clients against a real `atrest s3 serve` (issue 18): requests that are unsigned
//! or badly signed cost at most their headers and never fill the log. Raw sockets (no
//! client library would send these), curl and Python where a foreign client says more.

mod s3_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use s3_common::*;

const MIB: usize = 1024 * 1024;

/// A response as read off a raw socket.
#[derive(Debug)]
struct Response {
    status: u16,
    body: String,
}

/// Reads one HTTP response (head and a Content-Length body), or `None` if none arrives
/// before `timeout` (or the connection dies first).
fn read_response(s: &mut TcpStream, timeout: Duration) -> Option<Response> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = resp.parse(&buf) {
            let status = resp.code?;
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= head_len + len {
                return Some(Response {
                    status,
                    body: String::from_utf8_lossy(&buf[head_len..head_len + len]).into_owned(),
                });
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Caps the kernel's send buffer for `s`, so bytes "sent" are bytes the peer took in
/// (its receive buffer, and what it read), not bytes parked on our side.
fn small_send_buffer(s: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: setsockopt reads `size` for the socket we own.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_SNDBUF");
}

fn connect(lab: &Lab) -> TcpStream {
    let s = TcpStream::connect(&lab.addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// `YYYYMMDDTHHMMSSZ` now, as SigV4's `x-amz-date`.
fn amz_date_now() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc().format(&f).expect("format")
}

/// A SigV4 Authorization header that parses but whose signature is wrong.
fn forged_sigv4(access_key: &str, service: &str, date: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{}/us-east-1/{service}/aws4_request, \
         SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
        &date[..8],
        "0".repeat(64)
    )
}

#[test]
fn unsigned_and_badly_signed_requests_are_answered_from_their_headers() {
    let lab = Lab::start();
    lab.ok(&["s3api", "create-bucket", "--bucket", "hostile"]);
    let (ak, _) = lab.access_key();
    let date = amz_date_now();
    let sha = "a".repeat(64);
    let signed = |service: &str, key: &str| {
        format!(
            "Authorization: {}\r\nx-amz-date: {date}\r\nx-amz-content-sha256: {sha}\r\n",
            forged_sigv4(key, service, &date)
        )
    };
    let len = format!("Content-Length: {}\r\n", 16 * MIB);
    // (what, request line, extra headers, expected status, expected code)
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "unsigned PutBucketEncryption, no bucket",
            "PUT /no-such-bucket?encryption",
            len.clone(),
            403,
            "AccessDenied",
        ),
        (
            "unsigned PutBucketEncryption",
            "PUT /hostile?encryption",
            len.clone(),
            403,
            "AccessDenied",
        ),
        (
            "unsigned PutBucketAcl",
            "PUT /hostile?acl",
            len.clone(),
            403,
            "AccessDenied",
        ),
        (
            "unsigned PutObject, private bucket",
            "PUT /hostile/k",
            len.clone(),
            403,
            "AccessDenied",
        ),
        (
            "unsigned chunked PutObject",
            "PUT /hostile/k",
            "Transfer-Encoding: chunked\r\n".into(),
            403,
            "AccessDenied",
        ),
        (
            "unsigned DeleteObjects",
            "POST /hostile?delete",
            len.clone(),
            403,
            "AccessDenied",
        ),
        (
            "unsigned PutBucketTagging (not served)",
            "PUT /hostile?tagging",
            len.clone(),
            501,
            "NotImplemented",
        ),
        (
            "browser POST upload",
            "POST /hostile",
            format!("{len}Content-Type: multipart/form-data; boundary=xyz\r\n"),
            501,
            "NotImplemented",
        ),
        (
            "forged SigV4",
            "PUT /hostile?encryption",
            format!("{len}{}", signed("s3", &ak)),
            403,
            "SignatureDoesNotMatch",
        ),
        (
            "unknown access key",
            "PUT /hostile?encryption",
            format!("{len}{}", signed("s3", "AKIAUNKNOWNKEY000001")),
            403,
            "InvalidAccessKeyId",
        ),
        (
            "SigV4 scoped to sts",
            "PUT /hostile?encryption",
            format!("{len}{}", signed("sts", &ak)),
            400,
            "InvalidRequest",
        ),
    ];
    for (what, line, extra, status, code) in cases {
        let mut s = connect(&lab);
        let head = format!("{line} HTTP/1.1\r\nHost: {}\r\n{extra}\r\n", lab.addr);
        s.write_all(head.as_bytes()).expect("send head");
        // Not one byte of the body is sent: the answer must come from the headers.
        let r = read_response(&mut s, Duration::from_secs(3))
            .unwrap_or_else(|| panic!("{what}: no answer without the body"));
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert!(
            r.body.contains(&format!("<Code>{code}</Code>")),
            "{what}: {}",
            r.body
        );
        assert!(r.body.contains("<RequestId>"), "{what}: {}", r.body);
    }
    // The refusal of a bucket-level call is still in the log's audit lines.
    assert!(
        lab.s3_log().contains("PutBucketEncryption"),
        "{}",
        lab.s3_log()
    );
}

/// The attack: 1,000 unsigned 16 MiB XML bodies. The log grows by less than 1 MiB
/// and never shows the body; the endpoint stops each upload at its headers.
/// While kmsd is down, a signed request cannot be authenticated: S3 answers a retryable 503
/// `ServiceUnavailable`, never `InvalidAccessKeyId` (which tells the client its
/// credentials are wrong, and which no SDK retries); once kmsd is back, the same key works.
#[test]
fn a_signed_request_while_kmsd_is_down_is_a_retryable_503() {
    let mut lab = Lab::start();
    lab.ok(&["s3api", "create-bucket", "--bucket", "hostile"]);
    let (id, secret) = lab.access_key();
    let list = |lab: &Lab| {
        // Not aws_client: it asks kmsd for the key (`atrest env`).
        let mut c = std::process::Command::new(venv_bin("aws"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", lab.home.path().join("client-home"))
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", &id)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_MAX_ATTEMPTS", "1")
            .args(["--endpoint-url", &lab.url(""), "s3api", "list-objects-v2"])
            .args(["--bucket", "hostile"]);
        c.output().expect("run the venv's aws")
    };
    lab.crash_kmsd();
    let down = list(&lab);
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(!down.status.success(), "listed with kmsd down");
    assert!(err.contains("(ServiceUnavailable)"), "aws said: {err}");
    assert!(!err.contains("InvalidAccessKeyId"), "aws said: {err}");
    lab.start_kmsd();
    let up = list(&lab);
    assert!(
        up.status.success(),
        "kmsd back, the key still refused: {}",
        String::from_utf8_lossy(&up.stderr)
    );
}

#[test]
fn a_thousand_unsigned_16_mib_requests_leave_the_log_small() {
    let lab = Lab::start();
    lab.ok(&["s3api", "create-bucket", "--bucket", "hostile"]);
    let before = lab.s3_log_bytes();
    // Malformed XML (the MalformedXML case): a parser error would quote it.
    let mut body = b"<ServerSideEncryptionConfiguration><Rule><SSEAlgorithm>".to_vec();
    body.resize(16 * MIB, b'A');
    let body = std::sync::Arc::new(body);
    // A regression would write gigabytes of log: stop the attack once it passes 4 MiB.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (addr, body) = (lab.addr.clone(), std::sync::Arc::clone(&body));
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut sent_total = 0usize;
                let mut answered = 0usize;
                for i in 0..125 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let path = if (t + i) % 2 == 0 { "/no-such-bucket" } else { "/hostile" };
                    let mut s = TcpStream::connect(&addr).expect("connect");
                    small_send_buffer(&s);
                    s.set_write_timeout(Some(Duration::from_secs(5))).expect("timeout");
                    let head = format!(
                        "PUT {path}?encryption HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    s.write_all(head.as_bytes()).expect("head");
                    // An attacker does not wait: it pushes the body until the endpoint
                    // hangs up.
                    for piece in body.chunks(256 * 1024) {
                        match s.write(piece) {
                            Ok(n) => sent_total += n,
                            Err(_) => break,
                        }
                    }
                    if read_response(&mut s, Duration::from_secs(5)).is_some_and(|r| r.status == 403) {
                        answered += 1;
                    }
                }
                (sent_total, answered)
            })
        })
        .collect();
    while !threads.iter().all(|t| t.is_finished()) {
        if lab.s3_log_bytes() - before > 4 * MIB as u64 {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut sent, mut answered) = (0usize, 0usize);
    for t in threads {
        let (s, a) = t.join().expect("client thread");
        sent += s;
        answered += a;
    }
    let elapsed = started.elapsed();
    let grown = lab.s3_log_bytes() - before;
    eprintln!(
        "1000 unsigned 16 MiB PUTs in {elapsed:?}: {} MiB accepted by the socket, {answered} 403s read, log grew {grown} bytes",
        sent / MIB
    );
    assert!(grown < MIB as u64, "the log grew by {grown} bytes");
    assert!(
        !lab.s3_log().contains("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        "a body reached the log"
    );
    // The endpoint read none of the bodies: what its kernel took before it hung up is its
    // receive buffer (~128 KiB each), far below the 16 MiB each request offered.
    assert!(
        sent < 1000 * MIB,
        "{} MiB of bodies were taken in",
        sent / MIB
    );
    // And it still answers a signed client at once.
    let t0 = Instant::now();
    lab.ok(&["s3api", "list-buckets"]);
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_endpoint_log_rotates_at_its_size_cap() {
    let lab = Lab::start_with(S3Options {
        env: vec![("ATREST_LOG_MAX_BYTES".into(), "65536".into())],
        ..S3Options::default()
    });
    lab.ok(&["s3api", "create-bucket", "--bucket", "hostile"]);
    // Each unsigned GetObject is one audit line at info level (~300 bytes, all different).
    for _ in 0..40 {
        let mut conns: Vec<TcpStream> = (0..25).map(|_| connect(&lab)).collect();
        for s in &mut conns {
            let head = format!(
                "GET /hostile/missing HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                lab.addr
            );
            s.write_all(head.as_bytes()).expect("send");
        }
        for s in &mut conns {
            assert!(read_response(s, Duration::from_secs(5)).is_some());
        }
    }
    let home = lab.home_path();
    let size = |n: &str| std::fs::metadata(home.join(n)).map(|m| m.len()).ok();
    assert!(
        size("s3.err").is_some_and(|n| n <= 65536),
        "{:?}",
        size("s3.err")
    );
    assert!(
        size("s3.err.1").is_some_and(|n| n > 32768 && n <= 65536),
        "{:?}",
        size("s3.err.1")
    );
    assert!(
        size("s3.err.2").is_some_and(|n| n <= 65536),
        "{:?}",
        size("s3.err.2")
    );
    assert!(size("s3.err.3").is_none());
    // Still the endpoint's lines, in order, in the newest file.
    let live = std::fs::read_to_string(home.join("s3.err")).expect("log");
    assert!(
        live.lines()
            .all(|l| l.contains(" INFO ") || l.contains(" WARN ")),
        "{live}"
    );
}

/// Issue 18: under `prlimit --nofile=128`, 200 connections that send nothing (more than
/// the process has descriptors) do not stop the endpoint: a signed request is still
/// answered within 2 s, the accept loop backs off instead of spinning on `EMFILE`, and
/// the log grows by a few lines, not millions.
#[test]
fn idle_connections_past_the_file_limit_leave_the_endpoint_answering() {
    let lab = Lab::start_with(S3Options {
        wrapper: ["prlimit", "--nofile=128", "--"].map(String::from).to_vec(),
        ..S3Options::default()
    });
    lab.ok(&["s3api", "create-bucket", "--bucket", "idle"]);
    let lines = |lab: &Lab| lab.s3_log().lines().count();
    let before = lines(&lab);
    let idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&lab.addr).ok())
        .collect();
    assert!(idle.len() >= 150, "only {} connections opened", idle.len());
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..3 {
        let t0 = Instant::now();
        let out = lab.ok(&["s3api", "list-objects-v2", "--bucket", "idle"]);
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "round {round}: a signed request took {took:?} behind 200 idle connections: {out}"
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    let grew = lines(&lab) - before;
    assert!(
        grew < 20,
        "the log grew by {grew} lines in ~6 s:\n{}",
        lab.s3_log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(idle);
}
