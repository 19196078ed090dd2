//! What the store guarantees on disk, checked through the running endpoint: tampered,
//! reordered or truncated ciphertext is never served as a successful read; a crash in the
//! middle of an upload leaves the old object; hostile keys stay inside their bucket.

mod s3_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use s3_common::*;

const CHUNK: usize = 64 * 1024 + 16;

fn data_files(lab: &Lab, bucket: &str) -> Vec<PathBuf> {
    let dir = lab.home_path().join(format!("s3/buckets/{bucket}/objects"));
    let mut v: Vec<_> = files_under(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    v.sort();
    v
}

fn setup_object(lab: &Lab, bucket: &str, size: usize, kms: bool) -> (Vec<u8>, PathBuf) {
    lab.ok(&["s3api", "create-bucket", "--bucket", bucket]);
    let body = png_like(size, 99);
    let src = lab.home_path().join("src.bin");
    std::fs::write(&src, &body).unwrap();
    let mut args = vec![
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "obj",
        "--body",
        src.to_str().unwrap(),
    ];
    if kms {
        args.extend([
            "--server-side-encryption",
            "aws:kms",
            "--ssekms-key-id",
            "alias/IntegrityKey",
        ]);
    }
    lab.ok(&args);
    let files = data_files(lab, bucket);
    assert_eq!(files.len(), 1);
    (body, files[0].clone())
}

#[test]
fn damaged_ciphertext_is_never_served_as_success() {
    let lab = Lab::start();
    lab.create_key("alias/IntegrityKey");
    let bucket = "integrity";
    let size = 10 * 64 * 1024 + 123;
    let (body, data) = setup_object(&lab, bucket, size, true);
    let original = std::fs::read(&data).unwrap();
    let presigned = lab.ok(&["s3", "presign", &format!("s3://{bucket}/obj")]);
    let presigned = presigned.trim().to_string();
    let out = lab.home_path().join("out.bin");

    let check_refused = |what: &str| {
        // curl: either an error status, or the transfer is cut short (curl exits non-zero).
        let r = curl(&presigned, &[]);
        assert!(
            r.status != 200 || r.exit != 0,
            "{what}: curl got a clean 200"
        );
        assert!(r.body != body, "{what}: the full plaintext came back");
        // The CLI reports an error and leaves no output file.
        let o = lab.atrest(&[
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            "obj",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{what}: get-object succeeded");
        assert!(!out.exists(), "{what}: a partial file was left behind");
        r
    };

    // A flipped bit in a middle chunk: headers already went out, the body is cut short.
    let mut t = original.clone();
    t[5 * CHUNK + 100] ^= 0x01;
    std::fs::write(&data, &t).unwrap();
    let r = check_refused("bit flip in chunk 5");
    assert!(
        r.body.len() <= 5 * 64 * 1024,
        "served {} bytes past the damage",
        r.body.len()
    );

    // Damage in the first chunk is caught before the response starts.
    let mut t = original.clone();
    t[10] ^= 0x80;
    std::fs::write(&data, &t).unwrap();
    let r = check_refused("bit flip in chunk 0");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("<Code>InternalError</Code>"),
        "{}",
        r.text()
    );

    // Two chunks swapped.
    let mut t = original.clone();
    let (a, b) = t.split_at_mut(3 * CHUNK);
    a[2 * CHUNK..].swap_with_slice(&mut b[..CHUNK]);
    std::fs::write(&data, &t).unwrap();
    check_refused("chunks 2 and 3 swapped");

    // Truncated at a chunk boundary, and extended by a copied chunk.
    std::fs::write(&data, &original[..4 * CHUNK]).unwrap();
    check_refused("truncated to 4 chunks");
    let mut t = original.clone();
    t.extend_from_slice(&original[..CHUNK]);
    std::fs::write(&data, &t).unwrap();
    check_refused("extended by a chunk");

    // Restored: served again, byte for byte.
    std::fs::write(&data, &original).unwrap();
    let r = curl(&presigned, &[]);
    assert_eq!((r.status, r.exit), (200, 0));
    assert!(r.body == body);
}

#[test]
fn damaged_sse_s3_object_is_refused_too() {
    let lab = Lab::start();
    let (_, data) = setup_object(&lab, "integrity-s3", 200_000, false);
    let mut t = std::fs::read(&data).unwrap();
    let last = t.len() - 1;
    t[last] ^= 0x01; // the final chunk's tag
    std::fs::write(&data, &t).unwrap();
    let out = lab.home_path().join("o");
    let err = lab.fails(&[
        "s3api",
        "get-object",
        "--bucket",
        "integrity-s3",
        "--key",
        "obj",
        out.to_str().unwrap(),
    ]);
    assert!(!out.exists());
    assert!(err.contains("GetObject"), "{err}");
}

/// A body that sends `limit` bytes, then stalls until released (the crash happens meanwhile).
struct StallingBody {
    sent: u64,
    limit: u64,
    stalled: Option<std::sync::mpsc::Sender<()>>,
    release: std::sync::mpsc::Receiver<()>,
}

impl Read for StallingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent < self.limit {
            let n = buf.len().min((self.limit - self.sent) as usize);
            buf[..n].fill(b'N');
            self.sent += n as u64;
            return Ok(n);
        }
        if let Some(tx) = self.stalled.take() {
            let _ = tx.send(());
        }
        let _ = self.release.recv_timeout(Duration::from_secs(30));
        Err(std::io::Error::other("released after the crash"))
    }
}

#[test]
fn crash_mid_upload_leaves_the_old_object() {
    let mut lab = Lab::start();
    let bucket = "crashy";
    lab.ok(&["s3api", "create-bucket", "--bucket", bucket]);
    let old = png_like(1 << 20, 5);
    let src = lab.home_path().join("old.bin");
    std::fs::write(&src, &old).unwrap();
    lab.ok(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "obj",
        "--body",
        src.to_str().unwrap(),
    ]);

    // Start overwriting it with 8 MiB, send 3 MiB, then stall.
    let layout = plumbing::home::Layout::new(lab.home_path());
    let client = atrest::s3::client::S3Client::from_home(&layout, None).unwrap();
    let (stalled_tx, stalled_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let uploader = std::thread::spawn(move || {
        let body = StallingBody {
            sent: 0,
            limit: 3 << 20,
            stalled: Some(stalled_tx),
            release: release_rx,
        };
        client
            .send(
                "PUT",
                Some("crashy"),
                Some("obj"),
                &[],
                &[],
                atrest::s3::client::Body::Reader {
                    reader: Box::new(body),
                    len: 8 << 20,
                },
            )
            .is_ok()
    });
    stalled_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("upload started");
    // Wait until the endpoint has written part of the new body to disk.
    let t0 = std::time::Instant::now();
    while !data_files(&lab, bucket)
        .iter()
        .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > (1 << 20) + 100_000))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the new body never reached the disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(data_files(&lab, bucket).len(), 2);
    // Readers still see the old object while the upload is in flight.
    let mid = lab.home_path().join("mid.bin");
    lab.ok(&[
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "obj",
        mid.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&mid).unwrap() == old);

    lab.crash_s3(); // kill -9
    let _ = release_tx.send(());
    assert!(
        !uploader.join().unwrap(),
        "the interrupted upload must not report success"
    );

    // After a restart: the old object, intact, and the orphaned half body is gone.
    lab.start_s3();
    let after = lab.home_path().join("after.bin");
    lab.ok(&[
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "obj",
        after.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&after).unwrap() == old);
    assert_eq!(data_files(&lab, bucket).len(), 1);

    // A complete overwrite replaces it and leaves one body on disk.
    let new = png_like(3 << 20, 6);
    std::fs::write(&src, &new).unwrap();
    lab.ok(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "obj",
        "--body",
        src.to_str().unwrap(),
    ]);
    lab.ok(&[
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "obj",
        after.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&after).unwrap() == new);
    assert_eq!(data_files(&lab, bucket).len(), 1);
}

/// One raw HTTP/1.1 request (no client-side path normalization); returns status and body.
fn raw(lab: &Lab, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(&lab.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        lab.addr,
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = match resp.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => resp[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

#[test]
fn hostile_keys_stay_inside_the_bucket() {
    let lab = Lab::start();
    let bucket = "dropbox";
    lab.ok(&[
        "s3api",
        "create-bucket",
        "--bucket",
        bucket,
        "--object-ownership",
        "ObjectWriter",
    ]);
    lab.ok(&["s3api", "put-public-access-block", "--bucket", bucket, "--public-access-block-configuration",
        "BlockPublicAcls=false,IgnorePublicAcls=false,BlockPublicPolicy=false,RestrictPublicBuckets=false"]);
    lab.ok(&[
        "s3api",
        "put-bucket-acl",
        "--bucket",
        bucket,
        "--acl",
        "public-read-write",
    ]);

    // Anonymous raw requests, exactly as written (no client normalizes these paths).
    let paths = [
        "/dropbox/../../../../escape-1",
        "/dropbox/..%2F..%2F..%2Fescape-2",
        "/dropbox/%2e%2e/%2e%2e/escape-3",
        "/dropbox/a/../../../escape-4",
        "/dropbox/%2Fabsolute%2Fescape-5",
        "/dropbox/back%5Cslash%5C..%5Cescape-6",
        "/dropbox/unicode-%C3%BC%F0%9F%98%80/../../escape-7",
    ];
    let mut stored = 0;
    for (i, p) in paths.iter().enumerate() {
        let body = format!("payload {i}");
        let (status, resp) = raw(&lab, "PUT", p, body.as_bytes());
        if status == 200 {
            stored += 1;
            let (st, got) = raw(&lab, "GET", p, b"");
            // Reading back needs the object to be public; it is private, so the anonymous
            // read is refused -- but the write itself landed inside the bucket.
            assert!(st == 403 || got == body.as_bytes(), "{p}: {st}");
        } else {
            assert!(
                (400..500).contains(&status),
                "{p}: {status} {}",
                String::from_utf8_lossy(&resp)
            );
        }
    }
    assert!(
        stored >= 5,
        "only {stored} hostile keys were accepted at all"
    );

    // The CLI can write and read a dot-segment key too (sent with %2F so no URL library
    // resolves it away).
    let src = lab.home_path().join("dots.txt");
    std::fs::write(&src, b"dots").unwrap();
    lab.ok(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "../../cli-escape",
        "--body",
        src.to_str().unwrap(),
    ]);
    let out = lab.home_path().join("dots-back.txt");
    lab.ok(&[
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "../../cli-escape",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), b"dots");
    let listed = lab.json(&["s3api", "list-objects-v2", "--bucket", bucket]);
    let keys: Vec<String> = listed["Contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["Key"].as_str().unwrap().to_string())
        .collect();
    assert!(keys.contains(&"../../cli-escape".to_string()), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("escape-1")), "{keys:?}");

    // Nothing was created outside the bucket's object directory.
    let objects = lab.home_path().join(format!("s3/buckets/{bucket}/objects"));
    for f in files_under(lab.home_path()) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.contains("escape"),
            "{} looks like an escaped write",
            f.display()
        );
        if f.starts_with(&objects) {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b'.' || b.is_ascii_lowercase()),
                "{name}"
            );
        }
    }
    for p in ["/escape-1", "/tmp/escape-1"] {
        assert!(!std::path::Path::new(p).exists());
    }
}

/// Counts what the endpoint pulled from the client, and gives up after 64 MiB so a
/// regression fails in seconds instead of streaming 5 GiB.
struct CountingZeros(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Read for CountingZeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        if self.0.load(Ordering::Relaxed) >= 64 << 20 {
            return Err(std::io::Error::other("the endpoint read the body"));
        }
        buf.fill(0);
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
}

/// An upload announcing more than S3's 5 GiB is refused from its headers: no data key is
/// made and no byte of the body is read or stored.
#[test]
fn an_upload_announcing_more_than_5_gib_is_refused_up_front() {
    let lab = Lab::start();
    let key_arn = lab.create_key("alias/TooBig");
    let bucket = "toobig";
    lab.ok(&["s3api", "create-bucket", "--bucket", bucket]);
    let layout = plumbing::home::Layout::new(lab.home_path());
    let client = atrest::s3::client::S3Client::from_home(&layout, None).unwrap();
    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let headers = [
        (
            "x-amz-server-side-encryption".to_string(),
            "aws:kms".to_string(),
        ),
        (
            "x-amz-server-side-encryption-aws-kms-key-id".to_string(),
            key_arn.clone(),
        ),
    ];
    let result = client.send(
        "PUT",
        Some(bucket),
        Some("huge.bin"),
        &[],
        &headers,
        atrest::s3::client::Body::Reader {
            reader: Box::new(CountingZeros(pulled.clone())),
            len: (5 << 30) + 1,
        },
    );
    match result {
        Err(atrest::s3::client::ClientError::Service { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (400, "EntityTooLarge"));
        }
        Err(other) => panic!("expected EntityTooLarge, got {other}"),
        Ok(r) => panic!("expected EntityTooLarge, got HTTP {}", r.status),
    }
    assert_eq!(
        pulled.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the body was sent although the headers already settled the answer"
    );
    assert!(data_files(&lab, bucket).is_empty());
    let trail = lab.ok(&[
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=GenerateDataKey",
    ]);
    assert!(
        !trail.contains(&key_arn),
        "a data key was made for a refused upload: {trail}"
    );
}

/// The sidecar (metadata JSON) of `bucket/key`.
fn sidecar_of(lab: &Lab, bucket: &str, key: &str) -> PathBuf {
    let dir = lab.home_path().join(format!("s3/buckets/{bucket}/objects"));
    files_under(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .find(|p| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap_or_default();
            v["key"] == key
        })
        .unwrap_or_else(|| panic!("no sidecar for {bucket}/{key}"))
}

/// Rewrites the sidecar of `bucket/key` with `edit`.
fn edit_sidecar(lab: &Lab, bucket: &str, key: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = sidecar_of(lab, bucket, key);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// Nothing under `dir` but the names in `want` (no partial download left behind).
fn only_files(dir: &std::path::Path, want: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
}

/// `atrest s3 cp` downloads are checked against the checksum the object is stored with,
/// as the stock CLI checks a whole GET (`--checksum-mode ENABLED`, botocore's default):
/// a whole-object CRC over a single GET and combined from 8 MiB ranges, a whole-object
/// SHA-256 read back, and S3's composite checksum part by part. Bytes damaged in flight (a
/// proxy flipping a bit of every GET body) are refused for each kind. The stored checksum
/// is then damaged at rest (the sidecar edited, as a disk or an operator could): the download
/// fails with botocore's words, exit 1, and neither the destination nor a partial file is
/// left. The stock CLI refuses the damaged single-GET object as well.
#[test]
fn atrest_s3_cp_downloads_are_checked_against_the_stored_checksum() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "sums"]);
    let dir = lab.home_path().join("sums");
    std::fs::create_dir_all(&dir).unwrap();
    let small = dir.join("small");
    let big = dir.join("big");
    write_random_file(&small, (1 << 20) + 3, 1);
    write_random_file(&big, (20 << 20) + 5, 2);
    let (s, b) = (small.to_str().unwrap(), big.to_str().unwrap());
    // The stock CLI's own default checksum on a single PUT (CRC32, whole object).
    lab.aws_ok(&["s3", "cp", s, "s3://sums/crc-small", "--no-progress"]);
    // Whole-object CRC32 and SHA-256 of an object larger than a range (one PutObject).
    for (key, alg) in [("crc-big", "CRC32"), ("sha-big", "SHA256")] {
        lab.aws_ok(&[
            "s3api",
            "put-object",
            "--bucket",
            "sums",
            "--key",
            key,
            "--body",
            b,
            "--checksum-algorithm",
            alg,
        ]);
    }
    // Composite SHA-256 of three parts, and of two parts of an object below the range
    // threshold (a 5 MiB part and a small one).
    lab.ok(&[
        "s3",
        "cp",
        b,
        "s3://sums/composite",
        "--checksum-algorithm",
        "SHA256",
        "--quiet",
    ]);
    let mid = dir.join("mid");
    write_random_file(&mid, (6 << 20) + 1, 3);
    lab.ok(&[
        "s3",
        "cp",
        mid.to_str().unwrap(),
        "s3://sums/composite-mid",
        "--checksum-algorithm",
        "CRC32",
        "--multipart-threshold",
        "5242880",
        "--multipart-chunksize",
        "5242880",
        "--quiet",
    ]);
    let head = |key: &str| {
        json_of(&lab.aws_ok(&[
            "s3api",
            "head-object",
            "--bucket",
            "sums",
            "--key",
            key,
            "--checksum-mode",
            "ENABLED",
        ]))
    };
    assert!(head("crc-small")["ChecksumCRC32"].is_string());
    assert_eq!(head("crc-big")["ChecksumType"], "FULL_OBJECT");
    assert!(head("composite")["ChecksumSHA256"]
        .as_str()
        .is_some_and(|v| v.ends_with("-3")));
    assert!(head("composite-mid")["ChecksumCRC32"]
        .as_str()
        .is_some_and(|v| v.ends_with("-2")));

    let out = lab.home_path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = |name: &str| out.join(name).to_str().unwrap().to_string();
    for (key, from) in [
        ("crc-small", &small),
        ("crc-big", &big),
        ("sha-big", &big),
        ("composite", &big),
        ("composite-mid", &mid),
    ] {
        lab.ok(&["s3", "cp", &format!("s3://sums/{key}"), &o(key), "--quiet"]);
        assert!(same_file(from, &out.join(key)), "{key}");
    }
    let good: Vec<&str> = vec![
        "crc-small",
        "crc-big",
        "sha-big",
        "composite",
        "composite-mid",
    ];
    only_files(&out, &good);

    // Bytes damaged in flight (plain HTTP: a response body is not signed): through a proxy
    // that flips one bit of every GET's body, an object without a checksum arrives
    // damaged and unnoticed, and every object with one is refused, the stored checksum
    // named as expected.
    lab.ok(&["s3", "cp", s, "s3://sums/unsummed", "--quiet"]);
    let proxy = FlipProxy::start(lab.addr_text());
    let through = |key: &str, dest: &str| {
        std::process::Command::new(atrest_bin())
            .arg("--home")
            .arg(lab.home_path())
            .args(["s3", "cp", &format!("s3://sums/{key}"), dest, "--quiet"])
            .env("ATREST_S3_ENDPOINT", &proxy.url)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run atrest")
    };
    let flipped = lab.home_path().join("unsummed.flipped");
    let r = through("unsummed", flipped.to_str().unwrap());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        !same_file(&small, &flipped),
        "the proxy damages what it passes"
    );
    assert_eq!(
        std::fs::metadata(&flipped).unwrap().len(),
        std::fs::metadata(&small).unwrap().len()
    );
    for key in [
        "crc-small",
        "crc-big",
        "sha-big",
        "composite",
        "composite-mid",
    ] {
        let stored = head(key);
        let alg = if key.starts_with("sha") || key == "composite" {
            "ChecksumSHA256"
        } else {
            "ChecksumCRC32"
        };
        let value = stored[alg].as_str().unwrap().to_string();
        // A composite's parts are checked as they arrive: the first damaged one is named
        // with its own checksum, not the object's.
        let named = if value.contains('-') {
            "(part "
        } else {
            value.as_str()
        };
        let dest = o(&format!("{key}.flipped"));
        let r = through(key, &dest);
        let e = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{key}: {e}");
        assert!(
            e.contains("did not match calculated checksum") && e.contains(named),
            "{key}: {e}"
        );
        only_files(&out, &good);
    }
    drop(proxy);

    // Damage each stored checksum: the download fails and leaves nothing behind.
    let wrong_crc = "AAAAAA=="; // a CRC32 none of these files has
    let wrong_sha = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; // SHA-256 of nothing
    edit_sidecar(&lab, "sums", "crc-small", |v| {
        v["checksum"]["value"] = wrong_crc.into()
    });
    edit_sidecar(&lab, "sums", "crc-big", |v| {
        v["checksum"]["value"] = wrong_crc.into()
    });
    edit_sidecar(&lab, "sums", "sha-big", |v| {
        v["checksum"]["value"] = wrong_sha.into()
    });
    // One part's checksum (checked as the part arrives) ...
    edit_sidecar(&lab, "sums", "composite", |v| {
        v["multipart"]["parts"][1]["checksum"]["value"] = wrong_sha.into()
    });
    // ... and the composite itself, every part's intact (the whole no longer matches).
    let stored_mid = head("composite-mid")["ChecksumCRC32"]
        .as_str()
        .unwrap()
        .to_string();
    edit_sidecar(&lab, "sums", "composite-mid", |v| {
        v["checksum"]["value"] = format!("{wrong_crc}-2").into()
    });
    for (key, expected, part) in [
        ("crc-small", wrong_crc.to_string(), None),
        ("crc-big", wrong_crc.to_string(), None),
        ("sha-big", wrong_sha.to_string(), None),
        ("composite", wrong_sha.to_string(), Some(2)),
        ("composite-mid", format!("{wrong_crc}-2"), None),
    ] {
        let dest = o(&format!("{key}.again"));
        // Run from the destination's directory: the line names it as the AWS CLI does,
        // relative to the current directory.
        let r = std::process::Command::new(atrest_bin())
            .arg("--home")
            .arg(lab.home_path())
            .args(["s3", "cp", &format!("s3://sums/{key}"), &dest, "--quiet"])
            .current_dir(&out)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{key}: {e}");
        assert!(
            e.contains(&format!(
                "download failed: s3://sums/{key} to ./{key}.again Expected checksum {expected} did not match calculated checksum: "
            )),
            "{key}: {e}"
        );
        match part {
            Some(n) => assert!(e.contains(&format!("(part {n})")), "{key}: {e}"),
            None => assert!(!e.contains("(part"), "{key}: {e}"),
        }
        if key == "composite-mid" {
            assert!(e.contains(&stored_mid), "the composite of what came: {e}");
        }
        only_files(&out, &good);
    }
    // The stock CLI refuses the damaged single-GET object as well, in the same words.
    let e = lab.aws_fails(&[
        "s3",
        "cp",
        "s3://sums/crc-small",
        &o("crc-small.aws"),
        "--no-progress",
    ]);
    assert!(
        e.contains(&format!(
            "Expected checksum {wrong_crc} did not match calculated checksum: "
        )),
        "{e}"
    );
    assert!(!out.join("crc-small.aws").exists());
}

/// A TCP proxy in front of the endpoint that flips one bit of the body of every GET's
/// answer (byte 1000 after the head), the rest passed as is; killed when dropped.
struct FlipProxy {
    child: std::process::Child,
    url: String,
}

const FLIP_PROXY: &str = r#"
import socket, sys, threading
host, port = sys.argv[1].rsplit(':', 1)
up = (host, int(port))
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', 0))
ls.listen(64)
print(ls.getsockname()[1], flush=True)
def pump(a, b, flip):
    pos, head, target = 0, b'', None
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            if flip and target is None:
                head += d
                i = head.find(b'\r\n\r\n')
                if i >= 0:
                    target = i + 4 + 1000 if head.split(b' ', 2)[1] in (b'200', b'206') else -1
            if target is not None and pos <= target < pos + len(d):
                d = bytearray(d)
                d[target - pos] ^= 1
                d = bytes(d)
            b.sendall(d)
            pos += len(d)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
def serve(c):
    first = c.recv(65536)
    u = socket.create_connection(up)
    u.sendall(first)
    threading.Thread(target=pump, args=(c, u, False), daemon=True).start()
    pump(u, c, first.startswith(b'GET '))
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

impl FlipProxy {
    fn start(upstream: &str) -> FlipProxy {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args(["-c", FLIP_PROXY, upstream])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the proxy");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("proxy stdout"))
            .read_line(&mut line)
            .expect("the proxy's port");
        let url = format!("http://127.0.0.1:{}", line.trim());
        FlipProxy { child, url }
    }
}

impl Drop for FlipProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
