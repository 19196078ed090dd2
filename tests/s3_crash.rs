//! kill -9 of the object endpoint in the middle of multipart uploads, driven by the stock
//! clients: during a 1 GiB `aws s3 cp`, and at moments around CompleteMultipartUpload of an
//! upload replacing an object. After a restart there is either no object or the whole one
//! (the old object or the whole new one, never a mix), no part file is left once the store
//! has swept, and no plaintext is anywhere on disk.

mod s3_common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use s3_common::*;

const MIB: u64 = 1024 * 1024;

fn data_files(lab: &Lab, bucket: &str) -> Vec<PathBuf> {
    files_under(&lab.home_path().join(format!("s3/buckets/{bucket}/objects")))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect()
}

/// 32 bytes of `file` at `offset`.
fn window(file: &Path, offset: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut w = vec![0u8; 32];
    f.read_exact(&mut w).unwrap();
    w
}

fn no_plaintext(lab: &Lab, file: &Path, offsets: &[u64]) {
    for &o in offsets {
        let needle = window(file, o);
        assert_eq!(
            any_file_streams(&lab.home_path().join("s3"), &needle),
            None,
            "plaintext from offset {o} is on disk"
        );
    }
}

fn uploads_in_progress(lab: &Lab, bucket: &str) -> usize {
    let out = lab.ok(&["s3api", "list-multipart-uploads", "--bucket", bucket]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v["Uploads"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_crash_during_a_1_gib_multipart_upload_leaves_no_object_and_no_parts() {
    let mut lab = Lab::start();
    lab.create_key("alias/CrashKey");
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "crash"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    write_random_file(&src, 1024 * MIB, 42);
    let mut cp = lab
        .aws_client("aws")
        .arg("--endpoint-url")
        .arg(lab.url(""))
        .args(["s3", "cp"])
        .arg(&src)
        .args([
            "s3://crash/big.bin",
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            "alias/CrashKey",
            "--no-progress",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until parts are on disk, then crash the endpoint mid-upload.
    let t0 = Instant::now();
    while data_files(&lab, "crash").len() < 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no parts arrived in 2 minutes"
        );
        assert!(cp.try_wait().unwrap().is_none(), "the upload ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.crash_s3();
    let _ = cp.kill();
    let status = cp.wait().unwrap();
    assert!(!status.success(), "the upload cannot have succeeded");
    let left = data_files(&lab, "crash");
    assert!(!left.is_empty(), "the crash left its part files");
    // What the crash left is ciphertext.
    no_plaintext(&lab, &src, &[0, MIB, 8 * MIB + 5, 17 * MIB]);

    lab.start_s3();
    assert!(
        data_files(&lab, "crash").is_empty(),
        "part files survived the sweep: {:?}",
        data_files(&lab, "crash")
    );
    let err = lab.aws_fails(&[
        "s3api",
        "head-object",
        "--bucket",
        "crash",
        "--key",
        "big.bin",
    ]);
    assert!(err.contains("404") || err.contains("Not Found"), "{err}");
    assert_eq!(uploads_in_progress(&lab, "crash"), 0);
    // The store works on: a multipart upload goes through.
    let small = dir.path().join("small.bin");
    write_random_file(&small, 9 * MIB, 43);
    lab.aws_ok(&[
        "s3",
        "cp",
        small.to_str().unwrap(),
        "s3://crash/big.bin",
        "--no-progress",
    ]);
    assert_eq!(data_files(&lab, "crash").len(), 2);
}

/// Uploads the parts with boto3, says READY, completes when told to.
const COMPLETER: &str = r#"
import os, sys, boto3
bucket, key, path, nparts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=os.environ["ATREST_TEST_ENDPOINT"])
data = open(path, "rb").read()
size = len(data) // nparts
up = s3.create_multipart_upload(Bucket=bucket, Key=key, ServerSideEncryption="aws:kms",
                                SSEKMSKeyId="alias/CrashKey", ChecksumAlgorithm="CRC32")
parts = []
for n in range(nparts):
    r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n + 1,
                       Body=data[n * size:(n + 1) * size])
    parts.append({"PartNumber": n + 1, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
print("READY", flush=True)
sys.stdin.readline()
try:
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    print("DONE", flush=True)
except Exception as e:
    print("FAILED", e, flush=True)
"#;

#[test]
fn a_crash_around_complete_multipart_upload_leaves_the_old_object_or_the_whole_new_one() {
    let mut lab = Lab::start();
    lab.create_key("alias/CrashKey");
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "complete"]);
    let dir = tempfile::tempdir().unwrap();
    let nparts = 6u64;
    let src = dir.path().join("parts.bin");
    write_random_file(&src, nparts * 5 * MIB, 7);
    let old = dir.path().join("old.bin");
    write_random_file(&old, MIB + 17, 8);
    let out = dir.path().join("back.bin");
    let (mut new, mut kept) = (0, 0);
    // Kills from the moment the request leaves the client to well after it is answered.
    for delay_us in [0u64, 1000, 2000, 4000, 8000, 16000, 40000] {
        // The object the upload replaces (one PUT: one data file).
        lab.ok(&[
            "s3",
            "cp",
            old.to_str().unwrap(),
            "s3://complete/obj",
            "--quiet",
        ]);
        let mut py = lab
            .aws_client("python")
            .arg("-c")
            .arg(COMPLETER)
            .args(["complete", "obj"])
            .arg(&src)
            .arg(nparts.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
        let ready = lines.next().unwrap().unwrap();
        assert_eq!(ready, "READY", "the parts did not upload");
        assert_eq!(data_files(&lab, "complete").len() as u64, nparts + 1);
        writeln!(py.stdin.as_mut().unwrap()).unwrap();
        std::thread::sleep(Duration::from_micros(delay_us));
        lab.crash_s3();
        let _ = py.kill();
        let _ = py.wait();
        no_plaintext(&lab, &src, &[0, 5 * MIB + 3, 29 * MIB]);
        no_plaintext(&lab, &old, &[0, MIB / 2]);

        lab.start_s3();
        let files = data_files(&lab, "complete").len() as u64;
        assert_eq!(uploads_in_progress(&lab, "complete"), 0);
        // Always an object: the old one or the whole new one, and exactly its files on disk.
        lab.ok(&[
            "s3",
            "cp",
            "s3://complete/obj",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        if same_file(&src, &out) {
            new += 1;
            assert_eq!(files, nparts, "after a kill at {delay_us} us");
        } else {
            assert!(
                same_file(&old, &out),
                "after a kill at {delay_us} us: neither the old object nor the whole new one"
            );
            kept += 1;
            assert_eq!(
                files, 1,
                "part files survived the sweep after a kill at {delay_us} us"
            );
        }
        lab.ok(&[
            "s3api",
            "delete-object",
            "--bucket",
            "complete",
            "--key",
            "obj",
        ]);
        assert!(data_files(&lab, "complete").is_empty());
    }
    eprintln!(
        "kills around CompleteMultipartUpload: {new} left the new object, {kept} the old one"
    );
}
