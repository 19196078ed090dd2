//! The stock AWS clients at their default settings against the object endpoint: the `aws`
//! CLI (`s3 cp`, `s3 sync`, `s3api`; `s3 rm` and `s3 mv` beside atrest's) and boto3
//! (`upload_file`, `download_file`), from the project's venv. Above 8 MiB both use multipart uploads and ranged, parallel downloads,
//! with CRC32 checksums on every part; every file must come back byte-identical.

mod s3_common;

use std::path::Path;

use s3_common::*;

const MIB: u64 = 1024 * 1024;

fn head(lab: &Lab, bucket: &str, key: &str) -> serde_json::Value {
    let out = lab.aws_ok(&["s3api", "head-object", "--bucket", bucket, "--key", key]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("head-object: {e}: {out}"))
}

fn s3_url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn aws_s3_cp_copies_every_size_both_ways_byte_identical() {
    let lab = Lab::start();
    lab.create_key("alias/CpKey");
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "copies"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let out = dir.path().join("out.bin");
    for (i, size) in [0, 1, 5 * MIB, 8 * MIB + 1, 100 * MIB, 1024 * MIB]
        .into_iter()
        .enumerate()
    {
        write_random_file(&src, size, i as u64 + 1);
        let key = format!("sizes/{size}.bin");
        lab.aws_ok(&[
            "s3",
            "cp",
            path_str(&src),
            &s3_url("copies", &key),
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            "alias/CpKey",
            "--no-progress",
        ]);
        let h = head(&lab, "copies", &key);
        assert_eq!(h["ContentLength"], size, "{key}: {h}");
        assert_eq!(h["ServerSideEncryption"], "aws:kms", "{key}: {h}");
        let etag = h["ETag"].as_str().unwrap();
        // The CLI uploads in 8 MiB parts above its 8 MiB threshold.
        let parts = size.div_ceil(8 * MIB);
        if size > 8 * MIB {
            assert!(etag.ends_with(&format!("-{parts}\"")), "{key}: {etag}");
        } else {
            assert!(!etag.contains('-'), "{key}: {etag}");
        }
        lab.aws_ok(&[
            "s3",
            "cp",
            &s3_url("copies", &key),
            path_str(&out),
            "--no-progress",
        ]);
        assert!(same_file(&src, &out), "{key} did not come back identical");
        if size == 100 * MIB {
            // No window of the plaintext is anywhere in the store.
            let mut needle = vec![0u8; 32];
            let f = std::fs::read(&src).unwrap();
            needle.copy_from_slice(&f[(50 * MIB) as usize..(50 * MIB) as usize + 32]);
            assert_eq!(any_file_streams(&lab.home_path().join("s3"), &needle), None);
        }
        std::fs::remove_file(&out).unwrap();
    }
    // Every part was sealed under a data key kmsd released to the caller, and every use is
    // in kmsd's trail: for the 1 GiB object one GenerateDataKey (CreateMultipartUpload), a
    // Decrypt per part written (128) and at least one per ranged read.
    let arn = "arn:aws:s3:::copies/sizes/1073741824.bin";
    let uses = |op: &str| {
        kms_events(&lab, op)
            .iter()
            .filter(|e| e["requestParameters"]["encryptionContext"]["aws:s3:arn"] == arn)
            .count()
    };
    assert_eq!(uses("GenerateDataKey"), 1);
    assert!(uses("Decrypt") >= 128 + 128, "{} Decrypts", uses("Decrypt"));
}

#[test]
fn aws_s3_sync_moves_a_tree_both_ways() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "synced"]);
    let up = tempfile::tempdir().unwrap();
    let files = [
        ("a.txt", 10),
        ("empty", 0),
        ("deep/er/b.bin", 3 * MIB),
        ("deep/c.bin", 9 * MIB + 7),
        ("sp ace/d ü.bin", 1000),
    ];
    for (i, (name, size)) in files.iter().enumerate() {
        let p = up.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_random_file(&p, *size, 100 + i as u64);
        // `aws s3 sync` uploads a file again when its mtime is later than the object's
        // LastModified, which S3 (and atrest) gives to the second. A file written in the
        // same second as its upload would look newer than its object, and the second sync
        // below would send it again: the tree is dated an hour back, as a user's files are.
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(hour_ago))
            .expect("date the file an hour back");
    }
    let out = lab.aws_ok(&[
        "s3",
        "sync",
        path_str(up.path()),
        "s3://synced/tree",
        "--no-progress",
    ]);
    assert_eq!(out.matches("upload:").count(), files.len(), "{out}");
    // Nothing changed: a second sync sends nothing.
    let again = lab.aws_ok(&[
        "s3",
        "sync",
        path_str(up.path()),
        "s3://synced/tree",
        "--no-progress",
    ]);
    assert!(!again.contains("upload:"), "{again}");
    // Every file changes (new bytes, a later mtime): a sync sends them all again, over
    // the objects that are there (the empty file and the multipart one among them).
    for (i, (name, size)) in files.iter().enumerate() {
        let p = up.path().join(name);
        write_random_file(&p, *size, 200 + i as u64);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(later))
            .expect("date the file an hour on");
    }
    let changed = lab.aws_ok(&[
        "s3",
        "sync",
        path_str(up.path()),
        "s3://synced/tree",
        "--no-progress",
    ]);
    assert_eq!(changed.matches("upload:").count(), files.len(), "{changed}");
    let down = tempfile::tempdir().unwrap();
    let out = lab.aws_ok(&[
        "s3",
        "sync",
        "s3://synced/tree",
        path_str(down.path()),
        "--no-progress",
    ]);
    assert_eq!(out.matches("download:").count(), files.len(), "{out}");
    for (name, _) in files {
        assert!(
            same_file(&up.path().join(name), &down.path().join(name)),
            "{name} differs after the round trip"
        );
    }
    let ls = lab.aws_ok(&["s3", "ls", "--recursive", "s3://synced/"]);
    assert_eq!(ls.lines().count(), files.len(), "{ls}");
}

/// boto3's managed transfers at its default TransferConfig (8 MiB threshold and parts, 10
/// threads), and the low-level calls they make.
const BOTO3_SCRIPT: &str = r#"
import hashlib, json, os, sys
import boto3
src, dst = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["ATREST_TEST_ENDPOINT"])
s3.create_bucket(Bucket="boto")
out = {}
for name in ["20mib.bin", "tiny.bin", "empty.bin"]:
    s3.upload_file(os.path.join(src, name), "boto", name)
    s3.download_file("boto", name, os.path.join(dst, name))
h = s3.head_object(Bucket="boto", Key="20mib.bin")
out["etag"] = h["ETag"]
out["length"] = h["ContentLength"]
p2 = s3.head_object(Bucket="boto", Key="20mib.bin", PartNumber=2)
out["part2"] = {"length": p2["ContentLength"], "parts": p2.get("PartsCount"), "range": p2.get("ContentRange")}
r = s3.get_object(Bucket="boto", Key="20mib.bin", Range="bytes=8388600-8388615")
body = r["Body"].read()
with open(os.path.join(src, "20mib.bin"), "rb") as f:
    f.seek(8388600)
    out["range_ok"] = body == f.read(16)
out["range"] = {"status": r["ResponseMetadata"]["HTTPStatusCode"], "content_range": r["ContentRange"], "accept": r["AcceptRanges"]}
print(json.dumps(out))
"#;

#[test]
fn boto3_upload_file_and_download_file_at_default_settings() {
    let lab = Lab::start();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    write_random_file(&src.path().join("20mib.bin"), 20 * MIB, 7);
    write_random_file(&src.path().join("tiny.bin"), 1, 8);
    write_random_file(&src.path().join("empty.bin"), 0, 9);
    let out = lab.boto3(BOTO3_SCRIPT, &[path_str(src.path()), path_str(dst.path())]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("script prints JSON");
    for name in ["20mib.bin", "tiny.bin", "empty.bin"] {
        assert!(
            same_file(&src.path().join(name), &dst.path().join(name)),
            "{name} differs"
        );
    }
    assert!(v["etag"].as_str().unwrap().ends_with("-3\""), "{v}");
    assert_eq!(v["length"], 20 * MIB);
    assert_eq!(v["part2"]["length"], 8 * MIB, "{v}");
    assert_eq!(v["part2"]["parts"], 3, "{v}");
    assert_eq!(
        v["part2"]["range"],
        format!("bytes {}-{}/{}", 8 * MIB, 16 * MIB - 1, 20 * MIB)
    );
    assert_eq!(v["range_ok"], true, "{v}");
    assert_eq!(v["range"]["status"], 206);
    assert_eq!(
        v["range"]["content_range"],
        format!("bytes 8388600-8388615/{}", 20 * MIB)
    );
    assert_eq!(v["range"]["accept"], "bytes");
}

#[test]
fn aws_s3api_multipart_calls_answer_as_s3() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "parts"]);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let small = dir.path().join("small.bin");
    write_random_file(&big, 5 * MIB, 1);
    write_random_file(&small, 1024, 2);
    let source = dir.path().join("source.bin");
    write_random_file(&source, 3000, 3);
    lab.aws_ok(&["s3", "cp", path_str(&source), "s3://parts/source.bin"]);

    let up = json_of(&lab.aws_ok(&[
        "s3api",
        "create-multipart-upload",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--content-type",
        "text/x-test",
        "--metadata",
        "color=blue",
    ]));
    let id = up["UploadId"].as_str().unwrap().to_string();
    assert_eq!(up["ServerSideEncryption"], "AES256", "{up}");
    let part = |n: &str, body: &Path| -> String {
        let r = json_of(&lab.aws_ok(&[
            "s3api",
            "upload-part",
            "--bucket",
            "parts",
            "--key",
            "obj",
            "--upload-id",
            &id,
            "--part-number",
            n,
            "--body",
            path_str(body),
        ]));
        r["ETag"].as_str().unwrap().to_string()
    };
    let e1 = part("1", &big);
    let e2 = part("2", &small);
    let e3 = part("3", &big);
    assert_eq!(e1, e3, "SSE-S3 part ETags are the parts' MD5s");
    let err = lab.aws_fails(&[
        "s3api",
        "upload-part",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--upload-id",
        &id,
        "--part-number",
        "10001",
        "--body",
        path_str(&small),
    ]);
    assert!(err.contains("InvalidArgument"), "{err}");
    let copied = json_of(&lab.aws_ok(&[
        "s3api",
        "upload-part-copy",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--upload-id",
        &id,
        "--part-number",
        "4",
        "--copy-source",
        "parts/source.bin",
        "--copy-source-range",
        "bytes=1000-1999",
    ]));
    let e4 = copied["CopyPartResult"]["ETag"]
        .as_str()
        .unwrap()
        .to_string();

    let parts = json_of(&lab.aws_ok(&[
        "s3api",
        "list-parts",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--upload-id",
        &id,
    ]));
    let listed: Vec<(i64, i64)> = parts["Parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["PartNumber"].as_i64().unwrap(),
                p["Size"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(1, 5 << 20), (2, 1024), (3, 5 << 20), (4, 1000)]);
    let uploads = json_of(&lab.aws_ok(&["s3api", "list-multipart-uploads", "--bucket", "parts"]));
    assert_eq!(uploads["Uploads"][0]["UploadId"], id.as_str(), "{uploads}");
    assert_eq!(uploads["Uploads"][0]["Key"], "obj");

    let complete = |parts: &[(&str, &str)]| {
        let list: Vec<serde_json::Value> = parts
            .iter()
            .map(|(n, e)| serde_json::json!({"PartNumber": n.parse::<i64>().unwrap(), "ETag": e}))
            .collect();
        let doc = serde_json::json!({ "Parts": list }).to_string();
        lab.aws(&[
            "s3api",
            "complete-multipart-upload",
            "--bucket",
            "parts",
            "--key",
            "obj",
            "--upload-id",
            &id,
            "--multipart-upload",
            &doc,
        ])
    };
    let stderr = |o: std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let o = complete(&[("3", &e3), ("1", &e1)]);
    assert!(stderr(o).contains("InvalidPartOrder"));
    let o = complete(&[("1", &e2)]);
    assert!(stderr(o).contains("InvalidPart"));
    let o = complete(&[("1", &e1), ("2", &e2), ("3", &e3)]);
    assert!(stderr(o).contains("EntityTooSmall"));
    let o = complete(&[("1", &e1), ("3", &e3), ("4", &e4)]);
    assert!(o.status.success(), "{}", stderr(o));
    let done = json_of(&String::from_utf8_lossy(&o.stdout));
    assert!(done["ETag"].as_str().unwrap().ends_with("-3\""), "{done}");

    let out = dir.path().join("out.bin");
    let got = json_of(&lab.aws_ok(&[
        "s3api",
        "get-object",
        "--bucket",
        "parts",
        "--key",
        "obj",
        path_str(&out),
    ]));
    assert_eq!(got["ContentType"], "text/x-test");
    assert_eq!(got["Metadata"]["color"], "blue");
    let mut expect = std::fs::read(&big).unwrap();
    expect.extend(std::fs::read(&big).unwrap());
    expect.extend(&std::fs::read(&source).unwrap()[1000..2000]);
    assert!(
        std::fs::read(&out).unwrap() == expect,
        "the object is parts 1, 3, 4"
    );
    let p2 = json_of(&lab.aws_ok(&[
        "s3api",
        "get-object",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--part-number",
        "3",
        path_str(&out),
    ]));
    assert_eq!(p2["PartsCount"], 3, "{p2}");
    assert_eq!(
        p2["ContentRange"],
        format!("bytes {}-{}/{}", 5 << 20, (10 << 20) - 1, expect.len())
    );
    assert!(std::fs::read(&out).unwrap() == expect[5 << 20..10 << 20]);
    let err = lab.aws_fails(&[
        "s3api",
        "get-object",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--part-number",
        "2",
        path_str(&out),
    ]);
    assert!(err.contains("InvalidPartNumber"), "{err}");
    let r = json_of(&lab.aws_ok(&[
        "s3api",
        "get-object",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--range",
        "bytes=-10",
        path_str(&out),
    ]));
    assert_eq!(r["ContentLength"], 10);
    assert!(std::fs::read(&out).unwrap() == expect[expect.len() - 10..]);
    let err = lab.aws_fails(&[
        "s3api",
        "get-object",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--range",
        "bytes=99999999-",
        path_str(&out),
    ]);
    assert!(err.contains("InvalidRange"), "{err}");

    // The upload is gone once completed; an aborted one refuses further parts.
    let err = lab.aws_fails(&[
        "s3api",
        "upload-part",
        "--bucket",
        "parts",
        "--key",
        "obj",
        "--upload-id",
        &id,
        "--part-number",
        "5",
        "--body",
        path_str(&small),
    ]);
    assert!(err.contains("NoSuchUpload"), "{err}");
    let up = json_of(&lab.aws_ok(&[
        "s3api",
        "create-multipart-upload",
        "--bucket",
        "parts",
        "--key",
        "gone",
    ]));
    let id2 = up["UploadId"].as_str().unwrap();
    lab.aws_ok(&[
        "s3api",
        "abort-multipart-upload",
        "--bucket",
        "parts",
        "--key",
        "gone",
        "--upload-id",
        id2,
    ]);
    let err = lab.aws_fails(&[
        "s3api",
        "upload-part",
        "--bucket",
        "parts",
        "--key",
        "gone",
        "--upload-id",
        id2,
        "--part-number",
        "1",
        "--body",
        path_str(&small),
    ]);
    assert!(err.contains("NoSuchUpload"), "{err}");
    let uploads = json_of(&lab.aws_ok(&["s3api", "list-multipart-uploads", "--bucket", "parts"]));
    assert!(
        uploads
            .get("Uploads")
            .is_none_or(|u| u.as_array().unwrap().is_empty()),
        "{uploads}"
    );
}

/// curl with `Range: VALUE` on a presigned URL: (status, headers, body).
fn ranged(url: &str, range: &str) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("h");
    let r = curl(
        url,
        &["-H", &format!("Range: {range}"), "-D", path_str(&headers)],
    );
    (
        r.status,
        std::fs::read_to_string(&headers)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        r.body,
    )
}

#[test]
fn ranges_are_answered_as_s3_answers_them() {
    let lab = Lab::start();
    lab.ok(&["s3api", "create-bucket", "--bucket", "ranges"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("r.bin");
    let size = 3 * 64 * 1024 + 100;
    write_random_file(&src, size as u64, 5);
    let body = std::fs::read(&src).unwrap();
    lab.ok(&["s3", "cp", path_str(&src), "s3://ranges/r.bin", "--quiet"]);
    let url = lab
        .ok(&["s3", "presign", "s3://ranges/r.bin"])
        .trim()
        .to_string();

    let (status, h, got) = ranged(&url, "bytes=0-9");
    assert_eq!(status, 206);
    assert_eq!(got, body[..10]);
    assert!(
        h.contains(&format!("content-range: bytes 0-9/{size}")),
        "{h}"
    );
    assert!(h.contains("accept-ranges: bytes"), "{h}");
    assert!(h.contains("content-length: 10"), "{h}");
    let (status, _, got) = ranged(&url, "bytes=-5");
    assert_eq!((status, got.as_slice()), (206, &body[size - 5..]));
    let (status, h, got) = ranged(&url, &format!("bytes={}-", size - 3));
    assert_eq!((status, got.as_slice()), (206, &body[size - 3..]));
    assert!(h.contains(&format!(
        "content-range: bytes {}-{}/{size}",
        size - 3,
        size - 1
    )));
    let (status, _, got) = ranged(&url, &format!("bytes=65530-{}", size * 2));
    assert_eq!((status, got.as_slice()), (206, &body[65530..]));
    let (status, _, got) = ranged(&url, &format!("bytes={size}-"));
    assert_eq!(status, 416);
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("<Code>InvalidRange</Code>"), "{text}");
    // What S3 does not serve as a range is answered whole, 200.
    for whole in ["bytes=0-1,5-6", "bytes=5-2", "items=0-1", "bytes=abc"] {
        let (status, h, got) = ranged(&url, whole);
        assert_eq!(status, 200, "{whole}");
        assert!(got == body, "{whole}: not the whole object");
        assert!(!h.contains("content-range"), "{whole}: {h}");
    }
    // Also when the Range header is signed (the aws CLI signs every header) ...
    let out = dir.path().join("out.bin");
    let r = json_of(&lab.aws_ok(&[
        "s3api",
        "get-object",
        "--bucket",
        "ranges",
        "--key",
        "r.bin",
        "--range",
        "bytes=0-1,5-6",
        path_str(&out),
    ]));
    assert_eq!(r["ContentLength"], size, "{r}");
    assert!(r.get("ContentRange").is_none(), "{r}");
    assert!(std::fs::read(&out).unwrap() == body);
    let r = json_of(&lab.aws_ok(&[
        "s3api",
        "head-object",
        "--bucket",
        "ranges",
        "--key",
        "r.bin",
        "--range",
        "bytes=1-2",
    ]));
    assert_eq!(r["ContentLength"], 2, "{r}");
    assert_eq!(r["ContentRange"], format!("bytes 1-2/{size}"), "{r}");
    // ... and a bad signature is still refused, whatever the range.
    let at = url.find("X-Amz-Signature=").expect("a SigV4 presigned URL") + 16;
    let mut forged = url.clone();
    let flipped = if &url[at..at + 1] == "0" { "1" } else { "0" };
    forged.replace_range(at..at + 1, flipped);
    let (status, _, got) = ranged(&forged, "bytes=0-1,5-6");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&got));
    assert!(String::from_utf8_lossy(&got).contains("SignatureDoesNotMatch"));
}

/// A body that does not match its declared `Content-MD5` or `x-amz-checksum-*` is refused
/// (`BadDigest`, `InvalidDigest`, `InvalidRequest`) and nothing is stored; matching ones,
/// and the CRC32 the aws CLI sends by default, are accepted.
#[test]
fn declared_digests_are_checked_before_anything_is_stored() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "digests"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hello.txt");
    std::fs::write(&src, b"hello").unwrap();
    let put = |key: &str, extra: &[&str]| {
        let mut args = vec![
            "s3api",
            "put-object",
            "--bucket",
            "digests",
            "--key",
            key,
            "--body",
            path_str(&src),
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let refused = |key: &str, extra: &[&str], code: &str| {
        let args = put(key, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = lab.aws_fails(&args);
        assert!(err.contains(code), "{extra:?}: {err}");
        let err = lab.aws_fails(&["s3api", "head-object", "--bucket", "digests", "--key", key]);
        assert!(err.contains("404"), "{key} was stored: {err}");
    };
    refused(
        "md5",
        &["--content-md5", "AAAAAAAAAAAAAAAAAAAAAA=="],
        "BadDigest",
    );
    refused("md5bad", &["--content-md5", "nope"], "InvalidDigest");
    refused("crc", &["--checksum-crc32", "AAAAAA=="], "BadDigest");
    refused("sha", &["--checksum-sha256", "AAAAAA=="], "InvalidRequest");

    for (key, extra) in [
        ("md5ok", vec!["--content-md5", "XUFAKrxLKna5cZ2REBfFkg=="]),
        ("crcok", vec!["--checksum-crc32", "NhCmhg=="]),
        (
            "shaok",
            vec![
                "--checksum-sha256",
                "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
            ],
        ),
        // The aws CLI's default over plain HTTP: a signed CRC32 header (trailers go only
        // over TLS: trailing_checksums_of_aws_chunked_bodies_over_tls_...).
        ("default", vec![]),
        ("sha-trailer", vec!["--checksum-algorithm", "SHA256"]),
    ] {
        let args = put(key, &extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.aws_ok(&args);
        assert_eq!(head(&lab, "digests", key)["ContentLength"], 5, "{key}");
    }
}

/// botocore waits for `100 Continue` before sending a PutObject or UploadPart body; an
/// answer that comes without one (an empty body, a refusal before the body) must not
/// break the next such request on the same kept-alive connection. The `aws` CLI's own
/// botocore (awscli 1.46's vendored 1.43) keeps the status line it read while waiting:
/// the next answer was parsed as headers, had no ETag, and waited 30 s for the
/// connection to close (`aws s3 sync` failed with `'ETag'` one run in three). Run with
/// that botocore and with boto3's, over one connection (a pool of one).
const EXPECT_CONTINUE_SCRIPT: &str = r#"
import json, os, sys, time
if sys.argv[1] == "awscli":
    from awscli.botocore.session import get_session
    from awscli.botocore.config import Config
else:
    from botocore.session import get_session
    from botocore.config import Config
s3 = get_session().create_client("s3", endpoint_url=os.environ["ATREST_TEST_ENDPOINT"],
    config=Config(max_pool_connections=1, read_timeout=10, retries={"total_max_attempts": 1}))
bucket = "expect-" + sys.argv[1]
s3.create_bucket(Bucket=bucket)
out = []
def timed(call):
    t = time.monotonic()
    try:
        res = {"etag": call().get("ETag")}
    except s3.exceptions.ClientError as e:
        res = {"error": e.response["Error"]["Code"]}
    res["seconds"] = round(time.monotonic() - t, 1)
    out.append(res)
timed(lambda: s3.put_object(Bucket=bucket, Key="empty", Body=b""))
timed(lambda: s3.put_object(Bucket=bucket, Key="after-empty", Body=b"x" * 1000))
timed(lambda: s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"y" * 1000))
timed(lambda: s3.put_object(Bucket=bucket, Key="after-refusal", Body=b"z" * 1000))
up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
timed(lambda: s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b""))
timed(lambda: s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=b"p" * 1000))
print(json.dumps(out))
"#;

#[test]
fn an_answer_without_100_continue_leaves_the_connection_usable_for_botocore() {
    let lab = Lab::start();
    for flavour in ["awscli", "boto3"] {
        let out = lab.boto3(EXPECT_CONTINUE_SCRIPT, &[flavour]);
        let calls: Vec<serde_json::Value> =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{flavour}: {e}: {out}"));
        assert_eq!(calls.len(), 6, "{flavour}: {out}");
        for (i, c) in calls.iter().enumerate() {
            let quick = c["seconds"].as_f64().is_some_and(|s| s < 5.0);
            assert!(quick, "{flavour}: call {i} waited: {out}");
            if i == 2 {
                assert_eq!(c["error"], "NoSuchBucket", "{flavour}: {out}");
            } else {
                let etag = c["etag"].as_str().unwrap_or_default();
                assert_eq!(etag.len(), 34, "{flavour}: call {i} has no ETag: {out}");
            }
        }
    }
}

/// Kills the endpoint a test started itself (by its handle), however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Over HTTPS the stock clients send their checksums as trailers of `aws-chunked` bodies
/// (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, `x-amz-trailer: x-amz-checksum-crc32`: botocore
/// 1.43/1.44 as pinned, for PutObject and UploadPart; over plain HTTP they send a signed
/// header instead, as `atrest s3 cp` does). The endpoint, serving TLS, takes them: the
/// stock `aws s3 cp` of 1 B, 5 MiB and 20 MiB (multipart) files and boto3's `put_object`
/// with SHA-256 are stored with the checksum the trailer carried (HeadObject with checksum
/// mode shows zlib's CRC32) and read back byte-identical; a trailer that does not match
/// its body (boto3 with its CRC32 class made to lie) is refused with BadDigest and nothing
/// is stored.
#[test]
fn trailing_checksums_of_aws_chunked_bodies_over_tls_are_checked_and_stored() {
    let mut lab = Lab::start();
    lab.crash_s3();
    let h = lab.home_path().to_path_buf();
    let (cert, key) = (h.join("cert.pem"), h.join("key.pem"));
    let o = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A TLS endpoint names itself in endpoint.url only (s3.addr is for plain HTTP).
    let url_file = h.join("endpoint.url");
    let _ = std::fs::remove_file(&url_file);
    let log = std::fs::File::create(h.join("tls-serve.err")).unwrap();
    let _serve = Killed(
        std::process::Command::new(atrest_bin())
            .arg("--home")
            .arg(&h)
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start atrest serve"),
    );
    let t0 = std::time::Instant::now();
    let url = loop {
        if let Ok(s) = std::fs::read_to_string(&url_file) {
            if s.ends_with('\n') {
                break s.trim().to_string();
            }
        }
        assert!(
            t0.elapsed().as_secs() < 20,
            "the TLS endpoint did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let aws = |args: &[&str]| {
        lab.aws_client("aws")
            .args(["--endpoint-url", &url, "--ca-bundle"])
            .arg(&cert)
            .args(args)
            .output()
            .expect("run aws")
    };
    let aws_ok = |args: &[&str]| {
        let o = aws(args);
        assert!(
            o.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    aws_ok(&["s3api", "create-bucket", "--bucket", "trail"]);
    let dir = tempfile::tempdir().unwrap();
    for (name, len) in [("one", 1u64), ("five", 5 << 20), ("twenty", (20 << 20) + 3)] {
        let src = dir.path().join(name);
        write_random_file(&src, len, len);
        let to = format!("s3://trail/{name}");
        aws_ok(&["s3", "cp", path_str(&src), &to, "--no-progress"]);
        let head = json_of(&aws_ok(&[
            "s3api",
            "head-object",
            "--bucket",
            "trail",
            "--key",
            name,
            "--checksum-mode",
            "ENABLED",
        ]));
        let zlib = crc32_b64(&std::fs::read(&src).unwrap());
        if len > 8 << 20 {
            // Multipart: each part's CRC32 came in its trailer; the object's is their
            // full-object combination or S3's composite, whichever the client asked.
            let v = head["ChecksumCRC32"].as_str().unwrap_or_default();
            assert!(v == zlib || v.ends_with("-3"), "{name}: {head}");
        } else {
            assert_eq!(head["ChecksumCRC32"], zlib.as_str(), "{name}: {head}");
        }
        let back = dir.path().join(format!("{name}.back"));
        aws_ok(&["s3", "cp", &to, path_str(&back), "--no-progress"]);
        assert!(same_file(&src, &back), "{name}");
    }
    // boto3: SHA-256 in the trailer; then a CRC32 trailer that lies about its body.
    let script = r#"
import base64, hashlib, json, os, sys
import boto3, botocore.httpchecksum as hc
from botocore.exceptions import ClientError
s3 = boto3.client('s3', endpoint_url=sys.argv[1], verify=sys.argv[2])
body = b'trailer body ' * 1000
trailers = []
def seen(request, **kw):
    trailers.append([request.headers.get('x-amz-trailer'), request.headers.get('x-amz-content-sha256')])
s3.meta.events.register('before-send.s3.PutObject', seen)
s3.put_object(Bucket='trail', Key='sha', Body=body, ChecksumAlgorithm='SHA256')
h = s3.head_object(Bucket='trail', Key='sha', ChecksumMode='ENABLED')
out = {'sha': h.get('ChecksumSHA256') == base64.b64encode(hashlib.sha256(body).digest()).decode()}
sent = []
real = hc._CHECKSUM_CLS['crc32']
class Lying(real):
    def digest(self):
        sent.append(1)
        return b'\x00\x00\x00\x00'
hc._CHECKSUM_CLS['crc32'] = Lying
try:
    s3.put_object(Bucket='trail', Key='lie', Body=body)
    out['lie'] = 'stored'
except ClientError as e:
    out['lie'] = e.response['Error']['Code']
out['lying_trailer_sent'] = len(sent) > 0
hc._CHECKSUM_CLS['crc32'] = real
try:
    s3.head_object(Bucket='trail', Key='lie')
    out['lie_head'] = 'found'
except ClientError as e:
    out['lie_head'] = e.response['Error']['Code']
out['trailers'] = [[t.decode() if isinstance(t, bytes) else t for t in x] for x in trailers]
print(json.dumps(out))
"#;
    let o = lab
        .aws_client("python")
        .arg("-c")
        .arg(script)
        .arg(&url)
        .arg(&cert)
        .output()
        .expect("run python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = json_of(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        out,
        serde_json::json!({
            "sha": true,
            "lie": "BadDigest",
            "lying_trailer_sent": true,
            "lie_head": "404",
            "trailers": [
                ["x-amz-checksum-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"],
                ["x-amz-checksum-crc32", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"],
            ],
        }),
    );
}

/// Base64 of the big-endian CRC32 (zlib's) of `data`.
fn crc32_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, data) as u32;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// Runs `args` from `dir` with the stock `aws` and then with `atrest`, each after
/// `setup()`: the same lines on stdout (sorted, since the stock CLI deletes and moves on
/// several threads; its progress lines, written only by it, dropped), the same stderr and
/// exit code (252 from atrest where the venv's v1 exits 255, AWS CLI v2's code). Returns
/// atrest's stdout lines.
fn same_lines_as_stock(lab: &Lab, dir: &Path, args: &[&str], setup: &dyn Fn()) -> Vec<String> {
    let lines = |out: &[u8]| {
        let mut l: Vec<String> = String::from_utf8_lossy(out)
            .split(['\n', '\r'])
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with("Completed "))
            .map(str::to_string)
            .collect();
        l.sort();
        l
    };
    setup();
    let mut stock = lab.aws_client("aws");
    let stock = stock
        .current_dir(dir)
        .arg("--endpoint-url")
        .arg(lab.url(""))
        .args(args)
        .output()
        .expect("run aws");
    setup();
    let ours = std::process::Command::new(atrest_bin())
        .current_dir(dir)
        .arg("--home")
        .arg(lab.home_path())
        .args(args)
        .output()
        .expect("run atrest");
    let ol = lines(&ours.stdout);
    assert_eq!(ol, lines(&stock.stdout), "{args:?}: stdout");
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        String::from_utf8_lossy(&stock.stderr),
        "{args:?}: stderr"
    );
    match (stock.status.code(), ours.status.code()) {
        (s, o) if s == o => {}
        (Some(255), Some(252)) => {}
        (s, o) => panic!("{args:?}: aws exited {s:?}, atrest {o:?}"),
    }
    ol
}

/// `atrest s3 rm` (one key, --recursive over a prefix taken as a directory, --dryrun,
/// --quiet) deletes and prints as the stock `aws s3 rm`, fails in its words and codes.
#[test]
fn atrest_s3_rm_deletes_and_says_so_as_the_stock_cli() {
    let lab = Lab::start();
    let dir = lab.home_path().join("rm");
    std::fs::create_dir_all(&dir).unwrap();
    lab.aws_ok(&["s3", "mb", "s3://rmb"]);
    let put = || {
        for k in ["r/1", "r/2", "r/s/3", "rr", "other"] {
            lab.aws_ok(&["s3api", "put-object", "--bucket", "rmb", "--key", k]);
        }
    };
    let keys = || -> Vec<String> {
        let v = json_of(&lab.aws_ok(&["s3api", "list-objects-v2", "--bucket", "rmb"]));
        v["Contents"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|o| o["Key"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let same = |args: &[&str]| same_lines_as_stock(&lab, &dir, args, &put);
    assert_eq!(
        same(&["s3", "rm", "s3://rmb/r/1"]),
        ["delete: s3://rmb/r/1"]
    );
    assert_eq!(keys(), ["other", "r/2", "r/s/3", "rr"]);
    assert_eq!(
        same(&["s3", "rm", "s3://rmb/missing"]),
        ["delete: s3://rmb/missing"]
    );
    assert_eq!(
        same(&["s3", "rm", "--recursive", "s3://rmb/r", "--dryrun"]),
        [
            "(dryrun) delete: s3://rmb/r/1",
            "(dryrun) delete: s3://rmb/r/2",
            "(dryrun) delete: s3://rmb/r/s/3"
        ]
    );
    assert_eq!(keys().len(), 5);
    assert_eq!(
        same(&["s3", "rm", "--recursive", "s3://rmb/r"]),
        [
            "delete: s3://rmb/r/1",
            "delete: s3://rmb/r/2",
            "delete: s3://rmb/r/s/3"
        ]
    );
    assert_eq!(keys(), ["other", "rr"]);
    assert!(same(&["s3", "rm", "s3://rmb/rr", "--quiet"]).is_empty());
    assert_eq!(keys(), ["other", "r/1", "r/2", "r/s/3"]);
    assert_eq!(same(&["s3", "rm", "--recursive", "s3://rmb/"]).len(), 5);
    assert!(keys().is_empty());
    // Failures: a missing bucket, for one key (the delete) and recursively (the listing).
    let none = || {};
    let s = |args: &[&str]| same_lines_as_stock(&lab, &dir, args, &none);
    assert!(s(&["s3", "rm", "s3://no-such-bucket/k"]).is_empty());
    assert!(s(&["s3", "rm", "--recursive", "s3://no-such-bucket/"]).is_empty());
    let o = lab.atrest(&["s3", "rm", "--recursive", "s3://no-such-bucket/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr)
        .starts_with("fatal error: An error occurred (NoSuchBucket)"));
}

/// `atrest s3 mb` and `s3 rb` (--force: the objects first) as the stock CLI's: the same
/// lines, failure lines and exit codes.
#[test]
fn atrest_s3_mb_and_rb_answer_as_the_stock_cli() {
    let lab = Lab::start();
    let dir = lab.home_path().join("mb");
    std::fs::create_dir_all(&dir).unwrap();
    let absent = || {
        let _ = lab.aws(&["s3", "rb", "--force", "s3://mby"]);
    };
    let present = || {
        absent();
        lab.aws_ok(&["s3", "mb", "s3://mby"]);
    };
    let full = || {
        present();
        lab.aws_ok(&["s3api", "put-object", "--bucket", "mby", "--key", "k"]);
    };
    let exists = || {
        lab.aws(&["s3api", "head-bucket", "--bucket", "mby"])
            .status
            .success()
    };
    let same = |args: &[&str], setup: &dyn Fn()| same_lines_as_stock(&lab, &dir, args, setup);
    assert_eq!(
        same(&["s3", "mb", "s3://mby"], &absent),
        ["make_bucket: mby"]
    );
    assert!(exists());
    assert!(same(&["s3", "mb", "s3://mby"], &present).is_empty());
    assert!(same(&["s3", "mb", "mby"], &absent).is_empty());
    assert!(same(&["s3", "mb", "s3://Bad_Name"], &absent).is_empty());
    assert!(same(&["s3", "rb", "s3://mby"], &full).is_empty());
    assert!(exists());
    assert_eq!(
        same(&["s3", "rb", "s3://mby"], &present),
        ["remove_bucket: mby"]
    );
    assert!(!exists());
    assert_eq!(
        same(&["s3", "rb", "--force", "s3://mby"], &full),
        ["delete: s3://mby/k", "remove_bucket: mby"]
    );
    assert!(!exists());
    assert!(same(&["s3", "rb", "s3://no-such-bucket"], &absent).is_empty());
}

/// `atrest s3 mv` moves as the stock `aws s3 mv`: upload, copy and download, each then
/// deleting its source; onto itself refused (nothing deleted); a failed move keeps its
/// source.
#[test]
fn atrest_s3_mv_moves_as_the_stock_cli() {
    let lab = Lab::start();
    let dir = lab.home_path().join("mv");
    std::fs::create_dir_all(&dir).unwrap();
    lab.aws_ok(&["s3", "mb", "s3://mvb"]);
    let f = dir.join("f.txt");
    let setup = || {
        std::fs::write(&f, "moved\n").unwrap();
        let _ = std::fs::remove_file(dir.join("g.txt"));
        for k in ["m/a.txt", "m/g.txt"] {
            lab.aws_ok(&[
                "s3api",
                "put-object",
                "--bucket",
                "mvb",
                "--key",
                k,
                "--body",
                path_str(&f),
            ]);
        }
        let _ = lab.aws(&[
            "s3api",
            "delete-object",
            "--bucket",
            "mvb",
            "--key",
            "m/f.txt",
        ]);
    };
    let exists = |k: &str| {
        lab.aws(&["s3api", "head-object", "--bucket", "mvb", "--key", k])
            .status
            .success()
    };
    let same = |args: &[&str]| same_lines_as_stock(&lab, &dir, args, &setup);
    assert_eq!(
        same(&["s3", "mv", "f.txt", "s3://mvb/m/f.txt"]),
        ["move: ./f.txt to s3://mvb/m/f.txt"]
    );
    assert!(!f.exists() && exists("m/f.txt"));
    assert_eq!(
        same(&["s3", "mv", "s3://mvb/m/a.txt", "s3://mvb/m/b.txt"]),
        ["move: s3://mvb/m/a.txt to s3://mvb/m/b.txt"]
    );
    assert!(!exists("m/a.txt") && exists("m/b.txt"));
    assert_eq!(
        same(&["s3", "mv", "s3://mvb/m/g.txt", "."]),
        ["move: s3://mvb/m/g.txt to ./g.txt"]
    );
    assert!(!exists("m/g.txt"));
    assert_eq!(std::fs::read(dir.join("g.txt")).unwrap(), b"moved\n");
    // Onto itself (named whole, or by its directory): refused, the object kept.
    assert!(same(&["s3", "mv", "s3://mvb/m/g.txt", "s3://mvb/m/g.txt"]).is_empty());
    assert!(same(&["s3", "mv", "s3://mvb/m/g.txt", "s3://mvb/m/"]).is_empty());
    assert!(exists("m/g.txt"));
    // Failures: the source is kept.
    assert!(same(&["s3", "mv", "s3://mvb/m/missing", "x"]).is_empty());
    assert!(same(&["s3", "mv", "f.txt", "s3://no-such-bucket/k"]).is_empty());
    assert!(f.exists());
}

/// `atrest s3` and `atrest s3api` fail as the stock CLI does, on the same failures, from
/// the same directory: the same line on stderr, word for word, and the same exit code: 1
/// for a failed `s3 cp` (`fatal error: ...` for the HEAD before a download or copy,
/// `upload failed: SRC to DST ...` for the transfer itself, a refused one too), 2 for a
/// command line that does not parse. A service error of `s3 ls` or `s3api` exits 254 and
/// a parameter error 252, AWS CLI v2's codes; the venv's v1 exits 255 for both (the one
/// difference: v2 split 255 into 252, 253 and 254).
#[test]
fn atrest_s3_fails_as_the_stock_cli_does_in_exit_code_and_words() {
    let lab = Lab::start();
    let dir = lab.home_path().join("fails");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f.txt"), "hello\n").unwrap();
    // Above the 8 MiB threshold: a multipart upload, its failure named by its call.
    write_random_file(&dir.join("big.bin"), 9 * MIB, 7);
    lab.aws_ok(&["s3", "mb", "s3://fails-here"]);
    lab.aws_ok(&[
        "s3api",
        "put-object",
        "--bucket",
        "fails-here",
        "--key",
        "f.txt",
    ]);
    let run = |mut c: std::process::Command, args: &[&str]| {
        let o = c.current_dir(&dir).args(args).output().expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let stock = |args: &[&str]| {
        let mut c = lab.aws_client("aws");
        c.arg("--endpoint-url").arg(lab.url(""));
        run(c, args)
    };
    let ours = |args: &[&str]| {
        let mut c = std::process::Command::new(atrest_bin());
        c.arg("--home").arg(lab.home_path());
        run(c, args)
    };
    // (args, atrest's exit code, the exit codes of the stock CLI, v1's and v2's)
    let cases: &[(&[&str], i32, &[i32])] = &[
        (&["s3", "cp", "s3://fails-here/missing", "x"], 1, &[1]),
        (
            &["s3", "cp", "s3://fails-here/missing", "s3://fails-here/y"],
            1,
            &[1],
        ),
        (&["s3", "cp", "f.txt", "s3://no-such-bucket/k"], 1, &[1]),
        (
            &["s3", "cp", "s3://fails-here/f.txt", "s3://no-such-bucket/k"],
            1,
            &[1],
        ),
        // Refused: the key the upload names is not there (the data key is never made).
        (
            &[
                "s3",
                "cp",
                "f.txt",
                "s3://fails-here/k",
                "--sse",
                "aws:kms",
                "--sse-kms-key-id",
                "alias/no-such-key",
            ],
            1,
            &[1],
        ),
        (
            &[
                "s3",
                "cp",
                "big.bin",
                "s3://fails-here/big",
                "--sse",
                "aws:kms",
                "--sse-kms-key-id",
                "alias/no-such-key",
            ],
            1,
            &[1],
        ),
        (&["s3", "cp", "big.bin", "s3://no-such-bucket/big"], 1, &[1]),
        (&["s3", "ls", "s3://no-such-bucket"], 254, &[255, 254]),
        (
            &["s3", "cp", "no-such-file", "s3://fails-here/k"],
            252,
            &[255, 252],
        ),
        (
            &["s3", "cp", "f.txt", "s3://fails-here/k", "--sse-c-key", "x"],
            252,
            &[255, 252],
        ),
        (
            &[
                "s3api",
                "head-object",
                "--bucket",
                "fails-here",
                "--key",
                "missing",
            ],
            254,
            &[255, 254],
        ),
        (
            &[
                "s3api",
                "get-object",
                "--bucket",
                "fails-here",
                "--key",
                "missing",
                "out",
            ],
            254,
            &[255, 254],
        ),
    ];
    for (args, code, stock_codes) in cases {
        let (sc, se) = stock(args);
        let (oc, oe) = ours(args);
        assert!(
            sc.is_some_and(|c| stock_codes.contains(&c)),
            "aws {args:?} exited {sc:?}: {se}"
        );
        assert_eq!(oc, Some(*code), "atrest {args:?}: {oe}");
        assert_eq!(oe, se, "atrest {args:?} vs aws");
        assert!(!dir.join("x").exists() && !dir.join("out").exists());
    }
    // Stderr of the ones that matter, so that the comparison is of the right words.
    let (_, e) = ours(&["s3", "cp", "s3://fails-here/missing", "x"]);
    assert_eq!(
        e,
        "fatal error: An error occurred (404) when calling the HeadObject operation: \
         Key \"missing\" does not exist\n"
    );
    let (_, e) = ours(&["s3", "cp", "f.txt", "s3://no-such-bucket/k"]);
    assert_eq!(
        e,
        "upload failed: ./f.txt to s3://no-such-bucket/k An error occurred (NoSuchBucket) \
         when calling the PutObject operation: The specified bucket does not exist\n"
    );
    let (_, e) = ours(&["s3", "cp", "big.bin", "s3://no-such-bucket/big"]);
    assert!(
        e.contains("when calling the CreateMultipartUpload operation"),
        "{e}"
    );
    // A command line that does not parse: 2 for both (the usage texts differ).
    let (sc, _) = stock(&["s3", "cp", "f.txt"]);
    let (oc, _) = ours(&["s3", "cp", "f.txt"]);
    assert_eq!((sc, oc), (Some(2), Some(2)));
    // No endpoint at all (a state directory nothing was started in): the download's HEAD
    // fails first, the upload itself; both exit 1, as the stock CLI does when it cannot
    // connect.
    let empty = tempfile::tempdir().unwrap();
    let nowhere = |args: &[&str]| {
        let mut c = std::process::Command::new(atrest_bin());
        c.arg("--home").arg(empty.path());
        run(c, args)
    };
    let (c, e) = nowhere(&["s3", "cp", "s3://fails-here/f.txt", "y"]);
    assert_eq!(c, Some(1), "{e}");
    assert!(e.starts_with("fatal error: no object endpoint"), "{e}");
    let (c, e) = nowhere(&["s3", "cp", "f.txt", "s3://fails-here/k"]);
    assert_eq!(c, Some(1), "{e}");
    assert!(
        e.starts_with("upload failed: ./f.txt to s3://fails-here/k no object endpoint"),
        "{e}"
    );
    // Nothing was stored by the failed uploads.
    let (c, _) = ours(&[
        "s3api",
        "head-object",
        "--bucket",
        "fails-here",
        "--key",
        "k",
    ]);
    assert_eq!(c, Some(254));
}
