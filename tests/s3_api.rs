//! The everyday S3 calls beyond PUT and GET, driven by the stock `aws` CLI and boto3 from the
//! project's venv at their default settings: CopyObject (URL-encoded sources, metadata
//! directives, re-encryption under another KMS key with both key uses in kmsd's trail,
//! copy-source conditions, copy onto itself, `aws s3 cp` between buckets with UploadPartCopy
//! above 8 MiB, `aws s3 mv`), DeleteObjects (verbose, quiet, per-key errors, the required
//! and checked body digest), ListObjects v1 (boto3's resource API, markers, delimiters),
//! ListObjectVersions of an unversioned bucket, GetBucketLocation, conditional GET/HEAD; and
//! `atrest s3api`'s verbs for them beside the stock CLI's, on the same endpoint.

mod s3_common;

use std::path::Path;

use base64::Engine as _;
use s3_common::*;

const MIB: u64 = 1024 * 1024;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// `s3api copy-object` of `source` to `dst/key`, with more arguments.
fn copy_args<'a>(source: &'a str, key: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["s3api", "copy-object", "--copy-source", source];
    args.extend(["--bucket", "dst", "--key", key]);
    args.extend(more);
    args
}

/// The KMS events named `op` whose encryption context names the object `bucket/key`.
fn key_uses(lab: &Lab, op: &str, bucket: &str, key: &str) -> Vec<serde_json::Value> {
    let arn = format!("arn:aws:s3:::{bucket}/{key}");
    kms_events(lab, op)
        .into_iter()
        .filter(|e| e["requestParameters"]["encryptionContext"]["aws:s3:arn"] == arn.as_str())
        .collect()
}

/// Timestamps in one form: the venv's AWS CLI v1 prints S3's own (`...T06:51:56.000Z`),
/// atrest v2's (`...T06:51:56+00:00`).
fn one_time_form(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => match s.strip_suffix(".000Z") {
            Some(t) if t.len() == 19 && t.as_bytes()[10] == b'T' => {
                Value::String(format!("{t}+00:00"))
            }
            _ => Value::String(s),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(one_time_form).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, one_time_form(v))).collect())
        }
        v => v,
    }
}

/// Runs `args` with the stock `aws` and then with `atrest` against the lab's endpoint, each
/// after `setup()`: the same JSON on stdout (timestamps in one form; `null` for none), the
/// same words on stderr and the same exit code (a failure exits 254 or 252 from atrest,
/// AWS CLI v2's codes, where the venv's v1 exits 255). Returns the JSON.
fn same_as_stock(lab: &Lab, args: &[&str], setup: &dyn Fn()) -> serde_json::Value {
    let json = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            one_time_form(json_of(&text))
        }
    };
    setup();
    let stock = lab.aws(args);
    setup();
    let ours = lab.atrest(args);
    let (sj, oj) = (json(&stock.stdout), json(&ours.stdout));
    assert_eq!(oj, sj, "{args:?}: atrest's output vs the stock CLI's");
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        String::from_utf8_lossy(&stock.stderr),
        "{args:?}: stderr"
    );
    match (stock.status.code(), ours.status.code()) {
        (Some(0), Some(0)) => {}
        (Some(255), Some(254 | 252)) => {}
        (s, o) => panic!("{args:?}: aws exited {s:?}, atrest {o:?}"),
    }
    oj
}

#[test]
fn atrest_s3api_delete_objects_answers_as_the_stock_cli() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "batch"]);
    let put = || {
        for k in ["a", "b", "c d+e"] {
            lab.aws_ok(&["s3api", "put-object", "--bucket", "batch", "--key", k]);
        }
    };
    let del = |delete: &str| -> Vec<String> {
        vec![
            "s3api".into(),
            "delete-objects".into(),
            "--bucket".into(),
            "batch".into(),
            "--delete".into(),
            delete.into(),
        ]
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        same_as_stock(&lab, &a, &put)
    };
    let v = run(del("Objects=[{Key=a},{Key=never},{Key=c d+e}]"));
    assert_eq!(
        v,
        serde_json::json!({"Deleted": [{"Key": "a"}, {"Key": "never"}, {"Key": "c d+e"}]})
    );
    // Quiet: nothing to say when every key went.
    let v = run(del(r#"{"Objects":[{"Key":"a"},{"Key":"b"}],"Quiet":true}"#));
    assert_eq!(v, serde_json::Value::Null);
    // A version id of an unversioned bucket: an error for that key alone.
    let v = run(del(
        "Objects=[{Key=b,VersionId=3HL4kqtJlcpXroDTDmJ},{Key=a}]",
    ));
    assert_eq!(v["Errors"][0]["Code"], "InvalidArgument", "{v}");
    assert_eq!(v["Deleted"], serde_json::json!([{"Key": "a"}]), "{v}");
    // From a file, as the stock CLI reads one.
    let f = lab.home_path().join("delete.json");
    std::fs::write(&f, r#"{"Objects":[{"Key":"b"}]}"#).unwrap();
    let v = run(del(&format!("file://{}", f.display())));
    assert_eq!(v, serde_json::json!({"Deleted": [{"Key": "b"}]}));
    // A missing bucket: the same words, a failure's exit code.
    let v = same_as_stock(
        &lab,
        &[
            "s3api",
            "delete-objects",
            "--bucket",
            "no-such-bucket",
            "--delete",
            "Objects=[{Key=a}]",
        ],
        &|| {},
    );
    assert_eq!(v, serde_json::Value::Null);
    let left = json_of(&lab.aws_ok(&["s3api", "list-objects-v2", "--bucket", "batch"]));
    assert_eq!(left["Contents"].as_array().map(Vec::len), Some(2), "{left}");
}

/// The listing verbs and GetBucketLocation of `atrest s3api` print what the stock CLI
/// prints: every page merged, or, given a page size or marker (which turn the CLI's
/// paginator off), the one page whole; names URL-encoded on the wire and decoded back
/// unless `--encoding-type` is asked for.
#[test]
fn atrest_s3api_listings_and_location_answer_as_the_stock_cli() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "listed"]);
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "empty"]);
    for k in [
        "a/1",
        "a/2",
        "b",
        "c/x/1",
        "c/y",
        "d",
        "sp ace",
        "odd+plus%",
        // XML 1.0 cannot carry it: the listing must come URL-encoded and be decoded.
        "ctl\u{1}key",
    ] {
        lab.aws_ok(&["s3api", "put-object", "--bucket", "listed", "--key", k]);
    }
    let none = || {};
    let same = |args: &[&str]| same_as_stock(&lab, args, &none);
    let ls = |verb: &'static str, more: &[&'static str]| {
        let mut a = vec!["s3api", verb, "--bucket", "listed"];
        a.extend(more);
        a
    };
    // ListObjectsV2.
    let v = same(&ls("list-objects-v2", &[]));
    assert_eq!(v["Contents"].as_array().map(Vec::len), Some(9), "{v}");
    assert!(
        v["Contents"]
            .as_array()
            .is_some_and(|c| c.iter().any(|o| o["Key"] == "ctl\u{1}key")),
        "{v}"
    );
    assert!(v["Contents"][0].get("Owner").is_none(), "{v}");
    let v = same(&ls("list-objects-v2", &["--max-keys", "2"]));
    assert_eq!(
        (v["IsTruncated"].clone(), v["KeyCount"].clone()),
        (true.into(), 2.into()),
        "{v}"
    );
    let token = v["NextContinuationToken"]
        .as_str()
        .expect("a token")
        .to_string();
    let v = same(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "listed",
        "--continuation-token",
        &token,
        "--delimiter",
        "/",
    ]);
    assert_eq!(
        v["CommonPrefixes"],
        serde_json::json!([{"Prefix": "c/"}]),
        "{v}"
    );
    same(&ls(
        "list-objects-v2",
        &["--page-size", "2", "--delimiter", "/"],
    ));
    same(&ls(
        "list-objects-v2",
        &["--prefix", "c/", "--delimiter", "/", "--start-after", "c/x"],
    ));
    let v = same(&ls(
        "list-objects-v2",
        &["--encoding-type", "url", "--max-keys", "20"],
    ));
    assert!(
        v["Contents"]
            .as_array()
            .is_some_and(|c| c.iter().any(|o| o["Key"] == "sp%20ace")),
        "{v}"
    );
    let v = same(&ls(
        "list-objects-v2",
        &["--fetch-owner", "--max-keys", "1"],
    ));
    assert!(v["Contents"][0]["Owner"]["ID"].is_string(), "{v}");
    same(&["s3api", "list-objects-v2", "--bucket", "empty"]);
    same(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "empty",
        "--max-keys",
        "3",
    ]);
    // ListObjects (v1).
    let v = same(&ls("list-objects", &[]));
    assert!(
        v["Contents"]
            .as_array()
            .is_some_and(|c| c.iter().any(|o| o["Key"] == "odd+plus%")),
        "{v}"
    );
    let v = same(&ls(
        "list-objects",
        &["--max-keys", "2", "--delimiter", "/"],
    ));
    assert_eq!(v["NextMarker"], "b", "{v}");
    same(&ls("list-objects", &["--marker", "b"]));
    same(&ls("list-objects", &["--page-size", "2", "--prefix", "c/"]));
    // ListObjectVersions of an unversioned bucket.
    let v = same(&ls("list-object-versions", &[]));
    assert_eq!(v["Versions"][0]["VersionId"], "null", "{v}");
    same(&ls("list-object-versions", &["--max-keys", "2"]));
    same(&ls(
        "list-object-versions",
        &["--key-marker", "b", "--delimiter", "/"],
    ));
    same(&ls("list-object-versions", &["--page-size", "3"]));
    // GetBucketLocation: us-east-1 is null.
    let v = same(&["s3api", "get-bucket-location", "--bucket", "listed"]);
    assert_eq!(v, serde_json::json!({"LocationConstraint": null}));
    // A missing bucket: the same words and a failure's exit code, for each.
    for verb in [
        "list-objects-v2",
        "list-objects",
        "list-object-versions",
        "get-bucket-location",
    ] {
        let v = same(&["s3api", verb, "--bucket", "no-such-bucket"]);
        assert_eq!(v, serde_json::Value::Null);
    }
}

#[test]
fn copy_object_re_encrypts_copies_metadata_and_honours_conditions() {
    let lab = Lab::start();
    let arn_a = lab.create_key("alias/CopyA");
    let arn_b = lab.create_key("alias/CopyB");
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "src"]);
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "dst"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    write_random_file(&file, 100_000, 7);
    // A key that must be URL-encoded in x-amz-copy-source (botocore percent-encodes the
    // source it is given; the endpoint decodes it once, as S3 does).
    let key = "dir/a b+c ü%.txt";
    lab.aws_ok(&[
        "s3api",
        "put-object",
        "--bucket",
        "src",
        "--key",
        key,
        "--body",
        path_str(&file),
        "--content-type",
        "text/plain",
        "--metadata",
        "colour=blue",
        "--server-side-encryption",
        "aws:kms",
        "--ssekms-key-id",
        "alias/CopyA",
    ]);
    let head = |b: &str, k: &str| {
        json_of(&lab.aws_ok(&["s3api", "head-object", "--bucket", b, "--key", k]))
    };
    let etag = head("src", key)["ETag"].as_str().unwrap().to_string();

    // Across buckets, re-encrypted under another key; COPY keeps type and metadata.
    let out = json_of(&lab.aws_ok(&copy_args(
        "src/dir/a b+c ü%.txt",
        "copy.txt",
        &[
            "--server-side-encryption",
            "aws:kms",
            "--ssekms-key-id",
            "alias/CopyB",
        ],
    )));
    assert_eq!(out["SSEKMSKeyId"], arn_b.as_str(), "{out}");
    assert!(out["CopyObjectResult"]["ETag"].is_string(), "{out}");
    let h = head("dst", "copy.txt");
    assert_eq!(h["SSEKMSKeyId"], arn_b.as_str(), "{h}");
    assert_eq!(h["ContentType"], "text/plain", "{h}");
    assert_eq!(h["Metadata"]["colour"], "blue", "{h}");
    assert_eq!(h["ContentLength"], 100_000);
    let back = dir.path().join("back.txt");
    lab.aws_ok(&[
        "s3",
        "cp",
        "s3://dst/copy.txt",
        path_str(&back),
        "--no-progress",
    ]);
    assert!(same_file(&file, &back));
    // The trail shows both keys: the source opened under A, the copy sealed under B.
    let dec = key_uses(&lab, "Decrypt", "src", key);
    assert!(
        dec.iter()
            .any(|e| e["resources"][0]["ARN"] == arn_a.as_str()),
        "no Decrypt under key A for the source: {dec:?}"
    );
    let gen = key_uses(&lab, "GenerateDataKey", "dst", "copy.txt");
    assert_eq!(gen.len(), 1, "{gen:?}");
    assert_eq!(gen[0]["resources"][0]["ARN"], arn_b.as_str(), "{}", gen[0]);

    // REPLACE takes the request's type and metadata; no SSE header: the bucket default.
    lab.aws_ok(&copy_args(
        "src/dir/a b+c ü%.txt",
        "replaced.txt",
        &[
            "--metadata-directive",
            "REPLACE",
            "--content-type",
            "application/x-new",
            "--metadata",
            "shape=round",
        ],
    ));
    let h = head("dst", "replaced.txt");
    assert_eq!(h["ContentType"], "application/x-new", "{h}");
    assert_eq!(h["Metadata"], serde_json::json!({"shape": "round"}), "{h}");
    assert_eq!(h["ServerSideEncryption"], "AES256", "{h}");

    // Onto itself: only with REPLACE (or new encryption).
    let err = lab.aws_fails(&copy_args("dst/copy.txt", "copy.txt", &[]));
    assert!(err.contains("InvalidRequest"), "{err}");
    lab.aws_ok(&copy_args(
        "dst/copy.txt",
        "copy.txt",
        &["--metadata-directive", "REPLACE", "--metadata", "v=2"],
    ));
    assert_eq!(head("dst", "copy.txt")["Metadata"]["v"], "2");

    // Copy-source conditions: 412 PreconditionFailed, nothing written.
    for (flag, value) in [
        (
            "--copy-source-if-match",
            "\"0123456789abcdef0123456789abcdef\"",
        ),
        ("--copy-source-if-none-match", etag.as_str()),
        ("--copy-source-if-unmodified-since", "2001-01-01T00:00:00Z"),
        ("--copy-source-if-modified-since", "2100-01-01T00:00:00Z"),
    ] {
        let err = lab.aws_fails(&copy_args(
            "src/dir/a b+c ü%.txt",
            "conditional.txt",
            &[flag, value],
        ));
        assert!(err.contains("PreconditionFailed"), "{flag}: {err}");
    }
    let err = lab.aws_fails(&[
        "s3api",
        "head-object",
        "--bucket",
        "dst",
        "--key",
        "conditional.txt",
    ]);
    assert!(err.contains("404"), "{err}");
    lab.aws_ok(&copy_args(
        "src/dir/a b+c ü%.txt",
        "conditional.txt",
        &["--copy-source-if-match", &etag],
    ));

    // Missing sources, as S3 names them (SSE-C copies: tests/s3_sse_c.rs).
    for (source, code) in [("src/nope", "NoSuchKey"), ("nobucket/x", "NoSuchBucket")] {
        let err = lab.aws_fails(&copy_args(source, "x", &[]));
        assert!(err.contains(code), "{source}: {err}");
    }

    // aws s3 cp between buckets (UploadPartCopy above 8 MiB) and aws s3 mv.
    let big = dir.path().join("big.bin");
    write_random_file(&big, 20 * MIB + 3, 11);
    lab.aws_ok(&[
        "s3",
        "cp",
        path_str(&big),
        "s3://src/big.bin",
        "--no-progress",
    ]);
    lab.aws_ok(&[
        "s3",
        "cp",
        "s3://src/big.bin",
        "s3://dst/big-copy.bin",
        "--no-progress",
        "--sse",
        "aws:kms",
        "--sse-kms-key-id",
        "alias/CopyB",
    ]);
    let h = head("dst", "big-copy.bin");
    assert!(h["ETag"].as_str().unwrap().ends_with("-3\""), "{h}");
    assert_eq!(h["SSEKMSKeyId"], arn_b.as_str(), "{h}");
    lab.aws_ok(&[
        "s3",
        "mv",
        "s3://dst/big-copy.bin",
        "s3://dst/moved/big.bin",
        "--no-progress",
    ]);
    let err = lab.aws_fails(&[
        "s3api",
        "head-object",
        "--bucket",
        "dst",
        "--key",
        "big-copy.bin",
    ]);
    assert!(err.contains("404"), "{err}");
    lab.aws_ok(&[
        "s3",
        "cp",
        "s3://dst/moved/big.bin",
        path_str(&back),
        "--no-progress",
    ]);
    assert!(same_file(&big, &back), "the moved copy differs");

    // boto3's managed copy.
    let v = lab.boto3_s3_json(
        "s3.copy({'Bucket': 'src', 'Key': sys.argv[1]}, 'dst', 'boto3-copy.txt')\n\
         print(json.dumps({'len': s3.head_object(Bucket='dst', Key='boto3-copy.txt')['ContentLength']}))",
        &[key],
    );
    assert_eq!(v["len"], 100_000);

    // No copy left plaintext anywhere in the store.
    let plain = std::fs::read(&big).unwrap();
    assert_eq!(
        any_file_streams(
            &lab.home_path().join("s3"),
            &plain[(10 * MIB) as usize..(10 * MIB) as usize + 32]
        ),
        None
    );
}

#[test]
fn delete_objects_answers_per_key_and_checks_the_body_digest() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "batch"]);
    let v = lab.boto3_s3_json(
        r#"
for k in ['a', 'b', 'c', 'd/e', 'f']:
    s3.put_object(Bucket='batch', Key=k, Body=k.encode())
out = {}
r = s3.delete_objects(Bucket='batch', Delete={'Objects': [{'Key': 'a'}, {'Key': 'never'}, {'Key': 'b', 'VersionId': '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY'}]})
out['verbose'] = {'deleted': sorted(d['Key'] for d in r.get('Deleted', [])), 'errors': [[e['Key'], e['Code']] for e in r.get('Errors', [])]}
r = s3.delete_objects(Bucket='batch', Delete={'Objects': [{'Key': 'c'}], 'Quiet': True})
out['quiet'] = {'deleted': r.get('Deleted', []), 'errors': r.get('Errors', [])}
# A wrong digest: refused whole, nothing deleted.
def bad_md5(request, **kw):
    for h in list(request.headers.keys()):
        if h.lower().startswith('x-amz-checksum-') or h.lower() == 'x-amz-sdk-checksum-algorithm':
            del request.headers[h]
    request.headers['Content-MD5'] = 'AAAAAAAAAAAAAAAAAAAAAA=='
def no_digest(request, **kw):
    for h in list(request.headers.keys()):
        if h.lower().startswith('x-amz-checksum-') or h.lower() in ('x-amz-sdk-checksum-algorithm', 'content-md5'):
            del request.headers[h]
for name, hook in [('bad_md5', bad_md5), ('no_digest', no_digest)]:
    s3.meta.events.register_first('before-sign.s3.DeleteObjects', hook)
    out[name] = code(lambda: s3.delete_objects(Bucket='batch', Delete={'Objects': [{'Key': 'f'}]}))
    s3.meta.events.unregister('before-sign.s3.DeleteObjects', hook)
out['left'] = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='batch').get('Contents', []))
# The resource API deletes in batches.
boto3.resource('s3', endpoint_url=os.environ['ATREST_TEST_ENDPOINT']).Bucket('batch').objects.all().delete()
out['after'] = s3.list_objects_v2(Bucket='batch').get('KeyCount')
print(json.dumps(out))
"#,
        &[],
    );
    assert_eq!(
        v["verbose"]["deleted"],
        serde_json::json!(["a", "never"]),
        "{v}"
    );
    assert_eq!(
        v["verbose"]["errors"],
        serde_json::json!([["b", "InvalidArgument"]]),
        "{v}"
    );
    assert_eq!(v["quiet"]["deleted"], serde_json::json!([]), "{v}");
    assert_eq!(v["quiet"]["errors"], serde_json::json!([]), "{v}");
    assert_eq!(v["bad_md5"], "BadDigest", "{v}");
    assert_eq!(v["no_digest"], "InvalidRequest", "{v}");
    assert_eq!(v["left"], serde_json::json!(["b", "d/e", "f"]), "{v}");
    assert_eq!(v["after"], 0, "{v}");
}

#[test]
fn list_objects_v1_versions_and_location_answer_as_s3() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "listed"]);
    let v = lab.boto3_s3_json(
        r#"
keys = ['a/1', 'a/2', 'b', 'c/x/1', 'c/y', 'd', 'odd\x01key', 'sp ace+plus']
for k in keys:
    s3.put_object(Bucket='listed', Key=k, Body=b'x')
out = {}
b = boto3.resource('s3', endpoint_url=os.environ['ATREST_TEST_ENDPOINT']).Bucket('listed')
out['all'] = [o.key for o in b.objects.page_size(3).all()]
r = s3.list_objects(Bucket='listed', Delimiter='/', MaxKeys=2)
out['p1'] = {'keys': [o['Key'] for o in r.get('Contents', [])], 'prefixes': [p['Prefix'] for p in r.get('CommonPrefixes', [])], 'truncated': r['IsTruncated'], 'next': r.get('NextMarker')}
r = s3.list_objects(Bucket='listed', Delimiter='/', MaxKeys=2, Marker=r['NextMarker'])
out['p2'] = {'keys': [o['Key'] for o in r.get('Contents', [])], 'prefixes': [p['Prefix'] for p in r.get('CommonPrefixes', [])], 'truncated': r['IsTruncated'], 'next': r.get('NextMarker')}
r = s3.list_objects(Bucket='listed', MaxKeys=2, Marker='c/y')
out['nodelim'] = {'keys': [o['Key'] for o in r.get('Contents', [])], 'truncated': r['IsTruncated'], 'next': r.get('NextMarker'), 'owner': 'Owner' in r['Contents'][0]}
vs = []
for page in s3.get_paginator('list_object_versions').paginate(Bucket='listed', PaginationConfig={'PageSize': 3}):
    vs += [[v['Key'], v['VersionId'], v['IsLatest']] for v in page.get('Versions', [])]
    out['markers'] = out.get('markers', []) + [page.get('NextVersionIdMarker')]
out['versions'] = vs
r = s3.list_object_versions(Bucket='listed', Prefix='c/', Delimiter='/')
out['vprefix'] = {'keys': [v['Key'] for v in r.get('Versions', [])], 'prefixes': [p['Prefix'] for p in r.get('CommonPrefixes', [])]}
out['location'] = s3.get_bucket_location(Bucket='listed').get('LocationConstraint')
out['nobucket'] = code(lambda: s3.list_objects(Bucket='nobucket'))
print(json.dumps(out))
"#,
        &[],
    );
    let keys = [
        "a/1",
        "a/2",
        "b",
        "c/x/1",
        "c/y",
        "d",
        "odd\u{1}key",
        "sp ace+plus",
    ];
    assert_eq!(v["all"], serde_json::json!(keys), "{v}");
    // Page 1: the prefix a/ and key b; page 2: c/ and d.
    assert_eq!(v["p1"]["prefixes"], serde_json::json!(["a/"]), "{v}");
    assert_eq!(v["p1"]["keys"], serde_json::json!(["b"]), "{v}");
    assert_eq!(v["p1"]["truncated"], true, "{v}");
    assert_eq!(v["p1"]["next"], "b", "{v}");
    assert_eq!(v["p2"]["prefixes"], serde_json::json!(["c/"]), "{v}");
    assert_eq!(v["p2"]["keys"], serde_json::json!(["d"]), "{v}");
    assert_eq!(v["p2"]["next"], "d", "{v}");
    assert_eq!(
        v["nodelim"]["keys"],
        serde_json::json!(["d", "odd\u{1}key"]),
        "{v}"
    );
    assert_eq!(v["nodelim"]["truncated"], true, "{v}");
    assert_eq!(v["nodelim"]["next"], serde_json::Value::Null, "{v}");
    assert_eq!(v["nodelim"]["owner"], true, "{v}");
    let versions: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| serde_json::json!([k, "null", true]))
        .collect();
    assert_eq!(v["versions"], serde_json::Value::from(versions), "{v}");
    assert_eq!(
        v["markers"],
        serde_json::json!(["null", "null", null]),
        "{v}"
    );
    assert_eq!(v["vprefix"]["keys"], serde_json::json!(["c/y"]), "{v}");
    assert_eq!(v["vprefix"]["prefixes"], serde_json::json!(["c/x/"]), "{v}");
    assert_eq!(v["location"], serde_json::Value::Null, "{v}");
    assert_eq!(v["nobucket"], "NoSuchBucket", "{v}");
    // The stock CLI's listing verbs over v1.
    let out = json_of(&lab.aws_ok(&[
        "s3api",
        "list-objects",
        "--bucket",
        "listed",
        "--prefix",
        "c/",
    ]));
    assert_eq!(out["Contents"].as_array().map(Vec::len), Some(2), "{out}");
}

#[test]
fn conditional_reads_and_sse_c_answer_as_s3() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "cond"]);
    let v = lab.boto3_s3_json(
        r#"
import datetime
r = s3.put_object(Bucket='cond', Key='k', Body=b'hello')
etag = r['ETag']
past = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
out = {}
for op in ['get_object', 'head_object']:
    f = getattr(s3, op)
    out[op] = {
        'match': code(lambda: f(Bucket='cond', Key='k', IfMatch=etag)),
        'match_star': code(lambda: f(Bucket='cond', Key='k', IfMatch='*')),
        'match_other': code(lambda: f(Bucket='cond', Key='k', IfMatch='"0123456789abcdef0123456789abcdef"')),
        'none_match': code(lambda: f(Bucket='cond', Key='k', IfNoneMatch=etag)),
        'none_match_other': code(lambda: f(Bucket='cond', Key='k', IfNoneMatch='"0123456789abcdef0123456789abcdef"')),
        'modified_since_past': code(lambda: f(Bucket='cond', Key='k', IfModifiedSince=past)),
        'modified_since_future': code(lambda: f(Bucket='cond', Key='k', IfModifiedSince=future)),
        'unmodified_since_past': code(lambda: f(Bucket='cond', Key='k', IfUnmodifiedSince=past)),
        'unmodified_since_future': code(lambda: f(Bucket='cond', Key='k', IfUnmodifiedSince=future)),
        'match_and_unmodified_past': code(lambda: f(Bucket='cond', Key='k', IfMatch=etag, IfUnmodifiedSince=past)),
        'none_match_other_and_modified_future': code(lambda: f(Bucket='cond', Key='k', IfNoneMatch='"0123456789abcdef0123456789abcdef"', IfModifiedSince=future)),
    }
key = os.urandom(32)
out['ssec_put'] = code(lambda: s3.put_object(Bucket='cond', Key='c', Body=b'x', SSECustomerAlgorithm='AES256', SSECustomerKey=key))
out['ssec_get'] = code(lambda: s3.get_object(Bucket='cond', Key='k', SSECustomerAlgorithm='AES256', SSECustomerKey=key))
out['ssec_head'] = code(lambda: s3.head_object(Bucket='cond', Key='k', SSECustomerAlgorithm='AES256', SSECustomerKey=key))
out['ssec_mpu'] = code(lambda: s3.create_multipart_upload(Bucket='cond', Key='c', SSECustomerAlgorithm='AES256', SSECustomerKey=key))
out['ssec_stored'] = code(lambda: s3.head_object(Bucket='cond', Key='c'))
print(json.dumps(out))
"#,
        &[],
    );
    for op in ["get_object", "head_object"] {
        let r = &v[op];
        assert_eq!(r["match"], "ok", "{op}: {r}");
        assert_eq!(r["match_star"], "ok", "{op}: {r}");
        assert_eq!(r["none_match_other"], "ok", "{op}: {r}");
        assert_eq!(r["modified_since_past"], "ok", "{op}: {r}");
        assert_eq!(r["unmodified_since_future"], "ok", "{op}: {r}");
        assert_eq!(r["match_and_unmodified_past"], "ok", "{op}: {r}");
        assert_eq!(r["none_match_other_and_modified_future"], "ok", "{op}: {r}");
        // A HEAD's error has no body: botocore names it by its status.
        let failed = if op == "head_object" {
            "412"
        } else {
            "PreconditionFailed"
        };
        assert_eq!(r["match_other"], failed, "{op}: {r}");
        assert_eq!(r["unmodified_since_past"], failed, "{op}: {r}");
        assert_eq!(r["none_match"], "304", "{op}: {r}");
        assert_eq!(r["modified_since_future"], "304", "{op}: {r}");
    }
    // SSE-C (tests/s3_sse_c.rs has the rest): a customer key for an object not kept under
    // one is refused; an SSE-C object read without its key is refused.
    assert_eq!(v["ssec_put"], "ok", "{v}");
    assert_eq!(v["ssec_get"], "InvalidRequest", "{v}");
    assert_eq!(v["ssec_head"], "400", "{v}");
    assert_eq!(v["ssec_mpu"], "ok", "{v}");
    assert_eq!(v["ssec_stored"], "400", "{v}");
    // The raw answers: 304 with no body, 412 in S3's XML.
    let (id, secret) = lab.access_key();
    let user = format!("{id}:{secret}");
    // curl signs a GET's empty payload only if told its hash.
    let sign = [
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        user.as_str(),
        "-H",
        "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ];
    let mut args = sign.to_vec();
    args.extend(["-H", "If-Match: \"nope\""]);
    let r = curl(&lab.url("/cond/k"), &args);
    assert_eq!(r.status, 412, "{}", r.text());
    assert!(
        r.text().contains("<Code>PreconditionFailed</Code>"),
        "{}",
        r.text()
    );
    let etag = json_of(&lab.aws_ok(&["s3api", "head-object", "--bucket", "cond", "--key", "k"]))
        ["ETag"]
        .as_str()
        .unwrap()
        .to_string();
    let inm = format!("If-None-Match: {etag}");
    let mut args = sign.to_vec();
    args.extend(["-H", inm.as_str()]);
    let r = curl(&lab.url("/cond/k"), &args);
    assert_eq!(r.status, 304, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
}

#[test]
fn checksums_are_stored_and_returned_with_checksum_mode() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "sums"]);
    let v = lab.boto3_s3_json(
        r#"
import base64, zlib
out = {}
s3.put_object(Bucket='sums', Key='sha', Body=b'hello', ChecksumAlgorithm='SHA256')
s3.put_object(Bucket='sums', Key='default', Body=b'hello')
h = s3.head_object(Bucket='sums', Key='sha', ChecksumMode='ENABLED')
out['head_sha'] = [h.get('ChecksumSHA256'), h.get('ChecksumType')]
# botocore checks a returned full-object checksum against the body it reads.
g = s3.get_object(Bucket='sums', Key='sha', ChecksumMode='ENABLED')
out['get_sha'] = [g.get('ChecksumSHA256'), g['Body'].read().decode()]
out['head_default'] = s3.head_object(Bucket='sums', Key='default', ChecksumMode='ENABLED').get('ChecksumCRC32')
out['head_plain'] = sorted(k for k in s3.head_object(Bucket='sums', Key='sha') if k.startswith('Checksum'))
out['ranged'] = sorted(k for k in s3.get_object(Bucket='sums', Key='sha', Range='bytes=0-1', ChecksumMode='ENABLED') if k.startswith('Checksum'))
s3.copy_object(Bucket='sums', Key='sha-copy', CopySource={'Bucket': 'sums', 'Key': 'sha'})
out['copy'] = s3.head_object(Bucket='sums', Key='sha-copy', ChecksumMode='ENABLED').get('ChecksumSHA256')
# Multipart with CRC32 parts: a composite checksum, as S3 makes it.
parts = [b'a' * (5 * 1024 * 1024), b'tail']
up = s3.create_multipart_upload(Bucket='sums', Key='mp', ChecksumAlgorithm='CRC32')
done = []
for i, body in enumerate(parts, 1):
    r = s3.upload_part(Bucket='sums', Key='mp', UploadId=up['UploadId'], PartNumber=i, Body=body, ChecksumAlgorithm='CRC32')
    done.append({'PartNumber': i, 'ETag': r['ETag'], 'ChecksumCRC32': r['ChecksumCRC32']})
c = s3.complete_multipart_upload(Bucket='sums', Key='mp', UploadId=up['UploadId'], MultipartUpload={'Parts': done})
raw = b''.join(zlib.crc32(p).to_bytes(4, 'big') for p in parts)
out['mp_want'] = base64.b64encode(zlib.crc32(raw).to_bytes(4, 'big')).decode() + '-2'
out['mp_parts'] = [d['ChecksumCRC32'] == base64.b64encode(zlib.crc32(p).to_bytes(4, 'big')).decode() for d, p in zip(done, parts)]
out['mp_complete'] = c.get('ChecksumCRC32')
h = s3.head_object(Bucket='sums', Key='mp', ChecksumMode='ENABLED')
out['mp_head'] = [h.get('ChecksumCRC32'), h.get('ChecksumType')]
out['mp_body'] = s3.get_object(Bucket='sums', Key='mp', ChecksumMode='ENABLED')['Body'].read() == b''.join(parts)
print(json.dumps(out))
"#,
        &[],
    );
    let sha = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
    assert_eq!(
        v["head_sha"],
        serde_json::json!([sha, "FULL_OBJECT"]),
        "{v}"
    );
    assert_eq!(v["get_sha"], serde_json::json!([sha, "hello"]), "{v}");
    // boto3 sends a CRC32 with every PutObject by default.
    assert_eq!(v["head_default"], "NhCmhg==", "{v}");
    assert_eq!(v["head_plain"], serde_json::json!([]), "{v}");
    assert_eq!(v["ranged"], serde_json::json!([]), "{v}");
    assert_eq!(v["copy"], sha, "{v}");
    assert_eq!(v["mp_parts"], serde_json::json!([true, true]), "{v}");
    assert_eq!(v["mp_complete"], v["mp_want"], "{v}");
    assert_eq!(
        v["mp_head"],
        serde_json::json!([v["mp_want"], "COMPOSITE"]),
        "{v}"
    );
    assert_eq!(v["mp_body"], true, "{v}");
}

#[test]
fn multipart_checksums_composite_full_object_and_per_part_as_sdks_send_them() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "mpsums"]);
    let v = lab.boto3_s3_json(
        r#"
import base64, zlib
from boto3.s3.transfer import TransferConfig
b64 = lambda b: base64.b64encode(b).decode()
crc32 = lambda d: zlib.crc32(d).to_bytes(4, 'big')
# CRC-64/NVME (reflected 0x9a6c9329ac4bc9b5, init and xorout all ones), written here from
# its definition: botocore computes it only with awscrt, which the pinned venv lacks.
T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x9a6c9329ac4bc9b5 if c & 1 else c >> 1
    T.append(c)
def crc64(d):
    c = 0xffffffffffffffff
    for b in d:
        c = T[(c ^ b) & 0xff] ^ (c >> 8)
    return (c ^ 0xffffffffffffffff).to_bytes(8, 'big')
assert crc64(b'123456789').hex() == 'ae8b14860a799888'
out = {}
MIB = 1024 * 1024
whole = bytes((i * 131 + i // 4099) & 0xff for i in range(20 * MIB + 5))
path = os.path.join(os.environ['HOME'], 'whole.bin')
open(path, 'wb').write(whole)
parts = [whole[i:i + 8 * MIB] for i in range(0, len(whole), 8 * MIB)]

# The transfer manager at its defaults: CRC32 named at CreateMultipartUpload, so COMPOSITE.
s3.upload_file(path, 'mpsums', 'tm')
h = s3.head_object(Bucket='mpsums', Key='tm', ChecksumMode='ENABLED')
out['tm_head'] = [h.get('ChecksumCRC32') == b64(crc32(b''.join(crc32(p) for p in parts))) + '-3', h.get('ChecksumType')]
h2 = s3.head_object(Bucket='mpsums', Key='tm', PartNumber=2, ChecksumMode='ENABLED')
out['tm_part2'] = [h2.get('ChecksumCRC32') == b64(crc32(parts[1])), h2.get('PartsCount'), h2['ContentLength']]
# botocore checks a part's full checksum against the body it reads.
g3 = s3.get_object(Bucket='mpsums', Key='tm', PartNumber=3, ChecksumMode='ENABLED')
out['tm_part3'] = [g3['Body'].read() == parts[2], g3.get('ChecksumCRC32') == b64(crc32(parts[2]))]

# A full-object CRC32 given to the transfer manager: FULL_OBJECT, checked at completion.
s3.upload_file(path, 'mpsums', 'full', ExtraArgs={'ChecksumCRC32': b64(crc32(whole))})
h = s3.head_object(Bucket='mpsums', Key='full', ChecksumMode='ENABLED')
out['full_head'] = [h.get('ChecksumCRC32') == b64(crc32(whole)), h.get('ChecksumType')]
g = s3.get_object(Bucket='mpsums', Key='full', ChecksumMode='ENABLED')
out['full_get'] = g['Body'].read() == whole
try:
    s3.upload_file(path, 'mpsums', 'bad', ExtraArgs={'ChecksumCRC32': b64(crc32(whole + b'!'))})
    out['full_bad'] = 'stored'
except Exception as e:
    out['full_bad'] = 'BadDigest' if 'BadDigest' in str(e) else str(e)
out['full_bad_head'] = code(lambda: s3.head_object(Bucket='mpsums', Key='bad'))

# CRC64NVME: FULL_OBJECT by default, combined from the parts; ListParts shows it all.
small = [whole[:5 * MIB], whole[5 * MIB:5 * MIB + 1000]]
sums = [b64(crc64(b)) for b in small]
want = b64(crc64(b''.join(small)))
up = s3.create_multipart_upload(Bucket='mpsums', Key='nvme', ChecksumAlgorithm='CRC64NVME')
out['nvme_create'] = [up.get('ChecksumAlgorithm'), up.get('ChecksumType')]
uid = up['UploadId']
done = []
for i, body in enumerate(small, 1):
    r = s3.upload_part(Bucket='mpsums', Key='nvme', UploadId=uid, PartNumber=i, Body=body, ChecksumCRC64NVME=sums[i - 1])
    done.append({'PartNumber': i, 'ETag': r['ETag'], 'ChecksumCRC64NVME': r.get('ChecksumCRC64NVME')})
out['nvme_part_echo'] = [d['ChecksumCRC64NVME'] == w for d, w in zip(done, sums)]
out['nvme_part_other_alg'] = code(lambda: s3.upload_part(Bucket='mpsums', Key='nvme', UploadId=uid, PartNumber=3, Body=b'x', ChecksumAlgorithm='SHA256'))
lp = s3.list_parts(Bucket='mpsums', Key='nvme', UploadId=uid)
out['nvme_list'] = [lp.get('ChecksumAlgorithm'), lp.get('ChecksumType'), [p.get('ChecksumCRC64NVME') == w for p, w in zip(lp['Parts'], sums)]]
out['nvme_wrong_type'] = code(lambda: s3.complete_multipart_upload(Bucket='mpsums', Key='nvme', UploadId=uid, ChecksumType='COMPOSITE', MultipartUpload={'Parts': done}))
out['nvme_wrong_size'] = code(lambda: s3.complete_multipart_upload(Bucket='mpsums', Key='nvme', UploadId=uid, MpuObjectSize=5, MultipartUpload={'Parts': done}))
out['nvme_wrong_value'] = code(lambda: s3.complete_multipart_upload(Bucket='mpsums', Key='nvme', UploadId=uid, ChecksumCRC64NVME=b64(crc64(b'other')), MultipartUpload={'Parts': done}))
# A part's checksum in the list that is not the one stored with it: InvalidPart, as S3.
swapped = [dict(done[0], ChecksumCRC64NVME=sums[1]), done[1]]
out['nvme_wrong_part_sum'] = code(lambda: s3.complete_multipart_upload(Bucket='mpsums', Key='nvme', UploadId=uid, MultipartUpload={'Parts': swapped}))
out['nvme_refused_left_nothing'] = code(lambda: s3.head_object(Bucket='mpsums', Key='nvme'))
c = s3.complete_multipart_upload(Bucket='mpsums', Key='nvme', UploadId=uid, ChecksumCRC64NVME=want, ChecksumType='FULL_OBJECT', MpuObjectSize=len(b''.join(small)), MultipartUpload={'Parts': done})
out['nvme_complete'] = [c.get('ChecksumCRC64NVME') == want, c.get('ChecksumType')]
h = s3.head_object(Bucket='mpsums', Key='nvme', ChecksumMode='ENABLED')
out['nvme_head'] = [h.get('ChecksumCRC64NVME') == want, h.get('ChecksumType')]
out['bad_choice'] = code(lambda: s3.create_multipart_upload(Bucket='mpsums', Key='x', ChecksumAlgorithm='SHA256', ChecksumType='FULL_OBJECT'))
print(json.dumps(out))
"#,
        &[],
    );
    let expect = serde_json::json!({
        "tm_head": [true, "COMPOSITE"],
        "tm_part2": [true, 3, 8 * 1024 * 1024],
        "tm_part3": [true, true],
        "full_head": [true, "FULL_OBJECT"],
        "full_get": true,
        "full_bad": "BadDigest",
        "full_bad_head": "404",
        "nvme_create": ["CRC64NVME", "FULL_OBJECT"],
        "nvme_part_echo": [true, true],
        "nvme_part_other_alg": "InvalidRequest",
        "nvme_list": ["CRC64NVME", "FULL_OBJECT", [true, true]],
        "nvme_wrong_type": "InvalidRequest",
        "nvme_wrong_size": "InvalidRequest",
        "nvme_wrong_value": "BadDigest",
        "nvme_wrong_part_sum": "InvalidPart",
        "nvme_refused_left_nothing": "404",
        "nvme_complete": [true, "FULL_OBJECT"],
        "nvme_head": [true, "FULL_OBJECT"],
        "bad_choice": "InvalidRequest",
    });
    assert_eq!(v, expect);

    // The stock CLI at its defaults: a multipart `aws s3 cp`, then a part's checksum.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.bin");
    write_random_file(&f, 17 * 1024 * 1024, 5);
    lab.aws_ok(&[
        "s3",
        "cp",
        f.to_str().unwrap(),
        "s3://mpsums/cli",
        "--no-progress",
    ]);
    let head = json_of(&lab.aws_ok(&[
        "s3api",
        "head-object",
        "--bucket",
        "mpsums",
        "--key",
        "cli",
        "--part-number",
        "3",
        "--checksum-mode",
        "ENABLED",
    ]));
    let tail = &std::fs::read(&f).unwrap()[16 * 1024 * 1024..];
    let want = base64::engine::general_purpose::STANDARD.encode(crc32_of(tail));
    assert_eq!(head["ChecksumCRC32"], want.as_str(), "{head}");
    assert_eq!(head["ChecksumType"], "COMPOSITE", "{head}");
    assert_eq!(head["PartsCount"], 3, "{head}");
}

/// The CRC32 (zlib's) of `data`, big-endian, computed bitwise here.
fn crc32_of(data: &[u8]) -> [u8; 4] {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    (!c).to_be_bytes()
}

/// `atrest s3 cp` object to object takes `--metadata-directive`, `--metadata` and
/// `--content-type` as the stock `aws s3 cp` does: each combination is run through both
/// CLIs on the same 1 MiB source (CopyObject for both) and the copies' HeadObject answers
/// compared, besides the values expected. Above the copy limit (lowered with the hidden
/// `--copy-in-parts-above`: the real one is 5 GiB) the copy goes as UploadPartCopy parts,
/// byte-identical as the stock CLI reads it back, storing what CopyObject would: the
/// source's content type and metadata (COPY) or the ones given (REPLACE, as the stock CLI's
/// own multipart copy stores them). At the limit itself it is one CopyObject, one byte
/// above it parts. Uploads take `--metadata` too.
#[test]
fn atrest_s3_cp_copies_metadata_as_the_aws_cli_and_in_parts_above_the_copy_limit() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "meta"]);
    let dir = lab.home_path().join("meta");
    std::fs::create_dir_all(&dir).unwrap();
    let (small, big) = (dir.join("small"), dir.join("big"));
    write_random_file(&small, MIB + 1, 11);
    let big_len = 20 * MIB + 7;
    write_random_file(&big, big_len, 12);
    lab.aws_ok(&[
        "s3",
        "cp",
        path_str(&small),
        "s3://meta/src",
        "--content-type",
        "text/x-src",
        "--metadata",
        "a=1,b=two",
        "--no-progress",
    ]);
    // atrest's multipart upload stores --metadata and --content-type.
    lab.ok(&[
        "s3",
        "cp",
        path_str(&big),
        "s3://meta/big",
        "--content-type",
        "text/x-big",
        "--metadata",
        "{\"big\": \"yes\"}",
        "--quiet",
    ]);
    let head = |key: &str| {
        json_of(&lab.aws_ok(&["s3api", "head-object", "--bucket", "meta", "--key", key]))
    };
    let shown = |key: &str| {
        let h = head(key);
        (h["ContentType"].clone(), h["Metadata"].clone())
    };
    let big_head = head("big");
    assert!(
        big_head["ETag"].as_str().unwrap().ends_with("-3\""),
        "{big_head}"
    );
    assert_eq!(
        shown("big"),
        ("text/x-big".into(), serde_json::json!({"big": "yes"}))
    );
    let src = (
        "text/x-src".into(),
        serde_json::json!({"a": "1", "b": "two"}),
    );
    assert_eq!(shown("src"), src);

    type Shown = (serde_json::Value, serde_json::Value);
    let cases: Vec<(Vec<&str>, Option<Shown>)> = vec![
        (vec![], Some(src.clone())),
        (
            vec![
                "--metadata-directive",
                "COPY",
                "--content-type",
                "text/ignored",
                "--metadata",
                "x=ignored",
            ],
            Some(src.clone()),
        ),
        (
            vec![
                "--metadata-directive",
                "REPLACE",
                "--content-type",
                "text/new",
                "--metadata",
                "c=3,d=four",
            ],
            Some((
                "text/new".into(),
                serde_json::json!({"c": "3", "d": "four"}),
            )),
        ),
        // Metadata alone means REPLACE; what the content type becomes is compared only.
        (vec!["--metadata", "c=3"], None),
        (vec!["--metadata-directive", "REPLACE"], None),
    ];
    for (i, (flags, want)) in cases.iter().enumerate() {
        let (by_aws, by_atrest) = (format!("aws-{i}"), format!("atrest-{i}"));
        let mut a = vec!["s3", "cp", "s3://meta/src"];
        let to_aws = format!("s3://meta/{by_aws}");
        a.push(&to_aws);
        a.extend(flags.iter().copied());
        a.push("--no-progress");
        lab.aws_ok(&a);
        let to_atrest = format!("s3://meta/{by_atrest}");
        let mut a = vec!["s3", "cp", "s3://meta/src", &to_atrest, "--quiet"];
        a.extend(flags.iter().copied());
        lab.ok(&a);
        assert_eq!(shown(&by_atrest), shown(&by_aws), "{flags:?}");
        if let Some(w) = want {
            assert_eq!(&shown(&by_atrest), w, "{flags:?}");
        }
        if flags.first() == Some(&"--metadata") {
            assert_eq!(shown(&by_atrest).1, serde_json::json!({"c": "3"}));
        }
    }

    // In parts: 20 MiB + 7 above a lowered limit: three UploadPartCopy parts of 8 MiB.
    let parts_above = (8 * MIB).to_string();
    let copy = |to: &str, more: &[&str]| {
        let mut a = vec![
            "s3",
            "cp",
            "s3://meta/big",
            to,
            "--quiet",
            "--copy-in-parts-above",
        ];
        a.push(&parts_above);
        a.extend(more);
        lab.ok(&a);
    };
    copy("s3://meta/parts-copy", &[]);
    copy(
        "s3://meta/parts-replace",
        &[
            "--metadata-directive",
            "REPLACE",
            "--content-type",
            "text/new",
            "--metadata",
            "c=3",
        ],
    );
    // The stock CLI's own multipart copy (above its 8 MiB threshold) with the same flags.
    lab.aws_ok(&[
        "s3",
        "cp",
        "s3://meta/big",
        "s3://meta/aws-parts-replace",
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "text/new",
        "--metadata",
        "c=3",
        "--no-progress",
    ]);
    assert_eq!(
        shown("parts-copy"),
        ("text/x-big".into(), serde_json::json!({"big": "yes"}))
    );
    assert_eq!(
        shown("parts-replace"),
        ("text/new".into(), serde_json::json!({"c": "3"}))
    );
    assert_eq!(shown("parts-replace"), shown("aws-parts-replace"));
    for key in ["parts-copy", "parts-replace", "aws-parts-replace"] {
        let h = head(key);
        assert!(h["ETag"].as_str().unwrap().ends_with("-3\""), "{key}: {h}");
        assert_eq!(h["ContentLength"], big_len, "{key}");
        let back = dir.join(format!("{key}.back"));
        lab.aws_ok(&[
            "s3",
            "cp",
            &format!("s3://meta/{key}"),
            path_str(&back),
            "--no-progress",
        ]);
        assert!(same_file(&big, &back), "{key}");
    }
    // The boundary: a source of exactly the limit is one CopyObject, one byte above it parts.
    let at = big_len.to_string();
    let below = (big_len - 1).to_string();
    for (limit, key, in_parts) in [(&at, "at-limit", false), (&below, "above-limit", true)] {
        lab.ok(&[
            "s3",
            "cp",
            "s3://meta/big",
            &format!("s3://meta/{key}"),
            "--quiet",
            "--copy-in-parts-above",
            limit,
        ]);
        let h = head(key);
        let etag = h["ETag"].as_str().unwrap();
        assert_eq!(etag.ends_with("-3\""), in_parts, "{key}: {h}");
        assert_eq!(h["ContentLength"], big_len, "{key}");
    }

    // Refusals as the stock CLI's: an unknown directive, metadata that is not a map.
    let e = lab.fails(&[
        "s3",
        "cp",
        "s3://meta/src",
        "s3://meta/x",
        "--metadata-directive",
        "MERGE",
    ]);
    assert!(e.contains("MERGE") && e.contains("REPLACE"), "{e}");
    let e = lab.fails(&[
        "s3",
        "cp",
        "s3://meta/src",
        "s3://meta/x",
        "--metadata",
        "[1, 2]",
    ]);
    assert!(e.contains("--metadata"), "{e}");
}
