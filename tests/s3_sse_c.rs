//! SSE-C (customer-provided keys) through the endpoint, with boto3 (`SSECustomerKey`) and the
//! stock `aws` CLI (`--sse-c AES256 --sse-c-key`): PUT, GET
//! (whole and ranged), HEAD, CopyObject (source and destination keys), multipart uploads
//! with UploadPart and UploadPartCopy; raw requests signed by botocore for the refusals: a missing key, a wrong key, a key for an object not
//! kept under one, a bad MD5, a short key and a wrong algorithm refused as S3 refuses them;
//! and neither the plaintext nor the key anywhere in the store.

mod s3_common;

use base64::Engine as _;
use s3_common::*;
use std::path::Path;

const MARKER: &[u8] = b"SSE-C-PLAINTEXT-MARKER:";

#[test]
fn sse_c_objects_open_only_with_their_key_and_nothing_clear_is_stored() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "ssec"]);
    let script = r#"
import boto3, hashlib, base64, json, os, sys
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
s3 = boto3.client('s3', endpoint_url=os.environ['ATREST_TEST_ENDPOINT'])
def code(f):
    try:
        f()
        return 'ok'
    except ClientError as e:
        return e.response['Error']['Code']
K1, K2 = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
marker = sys.argv[3].encode()
c1 = {'SSECustomerAlgorithm': 'AES256', 'SSECustomerKey': K1}
c2 = {'SSECustomerAlgorithm': 'AES256', 'SSECustomerKey': K2}
src1 = {'CopySourceSSECustomerAlgorithm': 'AES256', 'CopySourceSSECustomerKey': K1}
md5 = lambda k: base64.b64encode(hashlib.md5(k).digest()).decode()
body = (marker * 20000)[:300001]
out = {}
r = s3.put_object(Bucket='ssec', Key='o', Body=body, **c1)
out['put_echo'] = [r.get('SSECustomerAlgorithm'), r.get('SSECustomerKeyMD5') == md5(K1), r.get('ServerSideEncryption')]
g = s3.get_object(Bucket='ssec', Key='o', **c1)
out['get_same'] = g['Body'].read() == body
out['get_echo'] = [g.get('SSECustomerAlgorithm'), g.get('SSECustomerKeyMD5') == md5(K1), g.get('ServerSideEncryption')]
out['range'] = s3.get_object(Bucket='ssec', Key='o', Range='bytes=70000-70099', **c1)['Body'].read() == body[70000:70100]
h = s3.head_object(Bucket='ssec', Key='o', **c1)
out['head'] = [h['ContentLength'], h.get('SSECustomerAlgorithm')]
out['get_no_key'] = code(lambda: s3.get_object(Bucket='ssec', Key='o'))
out['head_no_key'] = code(lambda: s3.head_object(Bucket='ssec', Key='o'))
out['get_wrong_key'] = code(lambda: s3.get_object(Bucket='ssec', Key='o', **c2))
out['head_wrong_key'] = code(lambda: s3.head_object(Bucket='ssec', Key='o', **c2))
s3.put_object(Bucket='ssec', Key='plain', Body=b'plain')
out['key_for_plain'] = code(lambda: s3.get_object(Bucket='ssec', Key='plain', **c1))

# Copies: under another customer key, out of SSE-C, and without the source's key.
s3.copy_object(Bucket='ssec', Key='o2', CopySource={'Bucket': 'ssec', 'Key': 'o'}, **src1, **c2)
out['copy_k2'] = s3.get_object(Bucket='ssec', Key='o2', **c2)['Body'].read() == body
out['copy_k2_with_k1'] = code(lambda: s3.get_object(Bucket='ssec', Key='o2', **c1))
s3.copy_object(Bucket='ssec', Key='o3', CopySource={'Bucket': 'ssec', 'Key': 'o'}, **src1)
o3 = s3.get_object(Bucket='ssec', Key='o3')
out['copy_plain'] = [o3['Body'].read() == body, o3.get('ServerSideEncryption')]
out['copy_no_source_key'] = code(lambda: s3.copy_object(Bucket='ssec', Key='o4', CopySource={'Bucket': 'ssec', 'Key': 'o'}))
out['copy_wrong_source_key'] = code(lambda: s3.copy_object(Bucket='ssec', Key='o4', CopySource={'Bucket': 'ssec', 'Key': 'o'}, CopySourceSSECustomerAlgorithm='AES256', CopySourceSSECustomerKey=K2))
# Rotating an object's customer key in place (a copy onto itself under a new key).
s3.copy_object(Bucket='ssec', Key='o2', CopySource={'Bucket': 'ssec', 'Key': 'o2'}, CopySourceSSECustomerAlgorithm='AES256', CopySourceSSECustomerKey=K2, **c1)
out['rotated'] = s3.get_object(Bucket='ssec', Key='o2', **c1)['Body'].read() == body

# Multipart through the transfer manager (20 MiB: 3 parts at 8 MiB).
big = (marker * 1000000)[:20 * 1024 * 1024 + 5]
path = os.path.join(os.environ['HOME'], 'big.bin')
open(path, 'wb').write(big)
s3.upload_file(path, 'ssec', 'big', ExtraArgs=c1)
back = path + '.back'
s3.download_file('ssec', 'big', back, ExtraArgs=c1)
out['mp_same'] = open(back, 'rb').read() == big
out['mp_no_key'] = code(lambda: s3.head_object(Bucket='ssec', Key='big'))
# Parts must carry the upload's key; UploadPartCopy takes the source's key too.
up = s3.create_multipart_upload(Bucket='ssec', Key='pc', **c2)
out['create_echo'] = up.get('SSECustomerAlgorithm')
uid = up['UploadId']
out['part_no_key'] = code(lambda: s3.upload_part(Bucket='ssec', Key='pc', UploadId=uid, PartNumber=1, Body=b'x'))
out['part_wrong_key'] = code(lambda: s3.upload_part(Bucket='ssec', Key='pc', UploadId=uid, PartNumber=1, Body=b'x', **c1))
p1 = s3.upload_part_copy(Bucket='ssec', Key='pc', UploadId=uid, PartNumber=1, CopySource={'Bucket': 'ssec', 'Key': 'big'}, CopySourceRange='bytes=0-5242879', **src1, **c2)
p2 = s3.upload_part(Bucket='ssec', Key='pc', UploadId=uid, PartNumber=2, Body=b'tail', **c2)
s3.complete_multipart_upload(Bucket='ssec', Key='pc', UploadId=uid, MultipartUpload={'Parts': [
    {'PartNumber': 1, 'ETag': p1['CopyPartResult']['ETag']}, {'PartNumber': 2, 'ETag': p2['ETag']}]})
out['pc_same'] = s3.get_object(Bucket='ssec', Key='pc', **c2)['Body'].read() == big[:5242880] + b'tail'
out['pc_part2'] = s3.get_object(Bucket='ssec', Key='pc', PartNumber=2, **c2)['Body'].read() == b'tail'
out['pc_wrong_key'] = code(lambda: s3.get_object(Bucket='ssec', Key='pc', **c1))
print(json.dumps(out))
"#;
    let (k1, k2) = ([0x5au8; 32], {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        k
    });
    let marker = std::str::from_utf8(MARKER).unwrap();
    let v = json_of(&lab.boto3(script, &[&hex::encode(k1), &hex::encode(k2), marker]));
    let expect = serde_json::json!({
        "put_echo": ["AES256", true, null],
        "get_same": true,
        "get_echo": ["AES256", true, null],
        "range": true,
        "head": [300001, "AES256"],
        "get_no_key": "InvalidRequest",
        "head_no_key": "400",
        "get_wrong_key": "AccessDenied",
        "head_wrong_key": "403",
        "key_for_plain": "InvalidRequest",
        "copy_k2": true,
        "copy_k2_with_k1": "AccessDenied",
        "copy_plain": [true, "AES256"],
        "copy_no_source_key": "InvalidRequest",
        "copy_wrong_source_key": "AccessDenied",
        "rotated": true,
        "mp_same": true,
        "mp_no_key": "400",
        "create_echo": "AES256",
        "part_no_key": "InvalidRequest",
        "part_wrong_key": "AccessDenied",
        "pc_same": true,
        "pc_part2": true,
        "pc_wrong_key": "AccessDenied",
    });
    assert_eq!(v, expect);

    // Neither the plaintext nor the keys (raw or base64) anywhere under the home but the
    // client's own files.
    let s3_dir = lab.home_path().join("s3");
    assert_eq!(any_file_streams(&s3_dir, MARKER), None);
    for k in [k1, k2] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(k);
        for needle in [&k[..], b64.as_bytes()] {
            for dir in [s3_dir.clone(), lab.home_path().join("kms")] {
                assert_eq!(any_file_contains(&dir, needle), None);
            }
        }
    }
}

#[test]
fn bad_customer_keys_are_refused_as_s3_refuses_them() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "raw"]);
    // Signed by botocore and sent as given (curl 7.88 signs `...-key` and `...-key-MD5`
    // in the wrong order; boto3 would compute the MD5 itself).
    let script = r#"
import boto3, base64, hashlib, http.client, json, os, urllib.parse
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
b64 = lambda b: base64.b64encode(b).decode()
md5 = lambda b: b64(hashlib.md5(b).digest())
creds = boto3.Session().get_credentials()
url = os.environ['ATREST_TEST_ENDPOINT'].rstrip('/') + '/raw/k'
def send(method, headers, body=b''):
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    S3SigV4Auth(creds, 's3', 'us-east-1').add_auth(req)
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request(method, u.path, body=body, headers=dict(req.headers.items()))
    r = c.getresponse()
    return [r.status, r.read().decode()]
A, K, M = ('x-amz-server-side-encryption-customer-algorithm',
           'x-amz-server-side-encryption-customer-key',
           'x-amz-server-side-encryption-customer-key-MD5')
key, short = bytes([7]) * 32, bytes([7]) * 16
cases = {
    'md5_of_another_key': {A: 'AES256', K: b64(key), M: md5(bytes([8]) * 32)},
    'no_md5': {A: 'AES256', K: b64(key)},
    'short_key': {A: 'AES256', K: b64(short), M: md5(short)},
    'no_key': {A: 'AES256', M: md5(key)},
    'aes128': {A: 'AES128', K: b64(key), M: md5(key)},
    'no_algorithm': {K: b64(key), M: md5(key)},
    'with_sse_s3': {'x-amz-server-side-encryption': 'AES256', A: 'AES256', K: b64(key), M: md5(key)},
}
out = {name: send('PUT', h, b'raw body') for name, h in cases.items()}
out['stored_after_refusals'] = send('HEAD', {})[0]
out['right'] = send('PUT', {A: 'AES256', K: b64(key), M: md5(key)}, b'raw body')[0]
print(json.dumps(out))
"#;
    let v = json_of(&lab.boto3(script, &[]));
    for (case, code) in [
        ("md5_of_another_key", "InvalidArgument"),
        ("no_md5", "InvalidArgument"),
        ("short_key", "InvalidArgument"),
        ("no_key", "InvalidArgument"),
        ("aes128", "InvalidEncryptionAlgorithmError"),
        ("no_algorithm", "InvalidArgument"),
        ("with_sse_s3", "InvalidArgument"),
    ] {
        let r = &v[case];
        assert_eq!(r[0], 400, "{case}: {r}");
        let text = r[1].as_str().unwrap_or_default();
        assert!(
            text.contains(&format!("<Code>{code}</Code>")),
            "{case}: {text}"
        );
    }
    // Nothing was stored by any of them; the right headers store the object.
    assert_eq!(v["stored_after_refusals"], 404, "{v}");
    assert_eq!(v["right"], 200, "{v}");

    // The stock CLI: aws s3 cp --sse-c both ways (a 9 MiB file: multipart).
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.bin");
    write_random_file(&f, 9 * 1024 * 1024 + 1, 3);
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, [0x33u8; 32]).unwrap();
    let sse_key = format!("fileb://{}", keyfile.display());
    let f_str = f.to_str().unwrap();
    lab.aws_ok(&[
        "s3",
        "cp",
        f_str,
        "s3://raw/cli.bin",
        "--sse-c",
        "AES256",
        "--sse-c-key",
        &sse_key,
        "--no-progress",
    ]);
    let back = dir.path().join("back.bin");
    let back_str = back.to_str().unwrap();
    let err = lab.aws_fails(&["s3", "cp", "s3://raw/cli.bin", back_str, "--no-progress"]);
    assert!(err.contains("400") || err.contains("Bad Request"), "{err}");
    lab.aws_ok(&[
        "s3",
        "cp",
        "s3://raw/cli.bin",
        back_str,
        "--sse-c",
        "AES256",
        "--sse-c-key",
        &sse_key,
        "--no-progress",
    ]);
    assert!(same_file(&f, &back));
}

/// Runs a short Python snippet with the venv's interpreter (no AWS client) and returns
/// its stdout, trimmed: the test's independent reference for checksums.
fn python(lab: &Lab, code: &str, args: &[&str]) -> String {
    lab.boto3(code, args).trim().to_string()
}

#[test]
fn atrest_s3_cp_and_s3api_sse_c_and_checksums_interoperate_with_the_stock_cli() {
    let lab = Lab::start();
    lab.ok(&["s3api", "create-bucket", "--bucket", "cli"]);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("k1"), [0x41u8; 32]).unwrap();
    std::fs::write(p("k2"), [0x42u8; 32]).unwrap();
    let (k1, k2) = (
        format!("fileb://{}", p("k1")),
        format!("fileb://{}", p("k2")),
    );
    // 1 MiB + 3: one PUT, one GET. 20 MiB + 7: three 8 MiB parts up, three ranges down.
    write_random_file(Path::new(&p("small")), (1 << 20) + 3, 5);
    write_random_file(Path::new(&p("big")), (20 << 20) + 7, 6);
    let sse = |k: &str| {
        vec!["--sse-c", "AES256", "--sse-c-key"]
            .into_iter()
            .map(str::to_string)
            .chain([k.to_string()])
            .collect::<Vec<_>>()
    };
    let run_ok = |args: Vec<String>| lab.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let aws_ok =
        |args: Vec<String>| lab.aws_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let aws_fails =
        |args: Vec<String>| lab.aws_fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // atrest writes (CRC32 on the small one, SHA256 per part on the big one), the stock
    // CLI reads with the same key, and refuses without it or with another.
    for (name, alg) in [("small", "CRC32"), ("big", "SHA256")] {
        let mut a = v(&["s3", "cp", &p(name), &format!("s3://cli/{name}"), "--quiet"]);
        a.extend(sse(&k1));
        a.extend(v(&["--checksum-algorithm", alg]));
        run_ok(a);
        let back = p(&format!("{name}.aws"));
        let mut a = v(&[
            "s3",
            "cp",
            &format!("s3://cli/{name}"),
            &back,
            "--no-progress",
        ]);
        a.extend(sse(&k1));
        aws_ok(a);
        assert!(same_file(Path::new(&p(name)), Path::new(&back)), "{name}");
        let mut a = v(&[
            "s3",
            "cp",
            &format!("s3://cli/{name}"),
            &back,
            "--no-progress",
        ]);
        a.extend(sse(&k2));
        let e = aws_fails(a);
        assert!(e.contains("(403)"), "{name} with another key: {e}");
        let e = aws_fails(v(&[
            "s3",
            "cp",
            &format!("s3://cli/{name}"),
            &back,
            "--no-progress",
        ]));
        assert!(e.contains("(400)"), "{name} without a key: {e}");
    }
    // The checksums, as the stock CLI shows them: the small one's CRC32 is zlib's; the
    // big one's is S3's composite SHA-256 of its three 8 MiB parts.
    let head = |key: &str| {
        let mut a = v(&[
            "s3api",
            "head-object",
            "--bucket",
            "cli",
            "--key",
            key,
            "--checksum-mode",
            "ENABLED",
            "--sse-customer-algorithm",
            "AES256",
            "--sse-customer-key",
        ]);
        a.push(k1.clone());
        json_of(&aws_ok(a))
    };
    let small_crc = python(
        &lab,
        "import zlib, base64, sys; d = open(sys.argv[1], 'rb').read(); print(base64.b64encode(zlib.crc32(d).to_bytes(4, 'big')).decode())",
        &[&p("small")],
    );
    let h = head("small");
    assert_eq!(h["ChecksumCRC32"], small_crc.as_str(), "{h}");
    assert_eq!(h["SSECustomerAlgorithm"], "AES256", "{h}");
    let big_sum = python(
        &lab,
        "import hashlib, base64, sys\nd = open(sys.argv[1], 'rb').read(); n = 8 << 20\nparts = [hashlib.sha256(d[i:i + n]).digest() for i in range(0, len(d), n)]\nprint(base64.b64encode(hashlib.sha256(b''.join(parts)).digest()).decode() + '-%d' % len(parts))",
        &[&p("big")],
    );
    assert!(big_sum.ends_with("-3"), "{big_sum}");
    let h = head("big");
    assert_eq!(h["ChecksumSHA256"], big_sum.as_str(), "{h}");
    assert_eq!(h["ChecksumType"], "COMPOSITE", "{h}");

    // The stock CLI writes (multipart for the big one), atrest reads: whole and in
    // ranges, each range with the key; another key or none is refused with S3's error.
    for name in ["small", "big"] {
        let mut a = v(&[
            "s3",
            "cp",
            &p(name),
            &format!("s3://cli/aws-{name}"),
            "--no-progress",
        ]);
        a.extend(sse(&k2));
        aws_ok(a);
        let back = p(&format!("{name}.atrest"));
        let mut a = v(&[
            "s3",
            "cp",
            &format!("s3://cli/aws-{name}"),
            &back,
            "--quiet",
        ]);
        a.extend(sse(&k2));
        run_ok(a);
        assert!(same_file(Path::new(&p(name)), Path::new(&back)), "{name}");
        // A refused download is the refused HEAD before it, in the stock CLI's words.
        let wrong = p(&format!("{name}.wrong"));
        let src = format!("s3://cli/aws-{name}");
        let mut with_k1 = v(&["s3", "cp", &src, &wrong]);
        with_k1.extend(sse(&k1));
        for (args, words) in [
            (
                with_k1,
                "An error occurred (403) when calling the HeadObject operation: Forbidden",
            ),
            (
                v(&["s3", "cp", &src, &wrong]),
                "An error occurred (400) when calling the HeadObject operation: Bad Request",
            ),
        ] {
            let stock = aws_fails(args.clone());
            assert!(stock.contains(words), "{stock}");
            let e = lab.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(e.contains(words), "{e}");
            assert!(!Path::new(&wrong).exists());
        }
    }
    // A key without --sse-c (or the reverse) is the AWS CLI's parameter error.
    let e = lab.fails(&["s3", "cp", &p("small"), "s3://cli/x", "--sse-c-key", &k1]);
    assert!(
        e.contains("--sse-c-key is specified, --sse-c must be specified as well"),
        "{e}"
    );
    let e = lab.fails(&[
        "s3",
        "cp",
        &p("small"),
        "s3://cli/x",
        "--checksum-algorithm",
        "MD5",
    ]);
    assert!(e.contains("invalid checksum algorithm"), "{e}");

    // Object to object: from k1 to k2 (CopyObject), read by the stock CLI with k2 only.
    let mut a = v(&[
        "s3",
        "cp",
        "s3://cli/big",
        "s3://cli/big-k2",
        "--quiet",
        "--sse-c-copy-source",
        "--sse-c-copy-source-key",
    ]);
    a.push(k1.clone());
    a.extend(sse(&k2));
    run_ok(a);
    let back = p("big-k2");
    let mut a = v(&["s3", "cp", "s3://cli/big-k2", &back, "--no-progress"]);
    a.extend(sse(&k2));
    aws_ok(a);
    assert!(same_file(Path::new(&p("big")), Path::new(&back)));
    // Without the source's key, the source's HEAD is refused, as the stock CLI says.
    let args = [
        "s3",
        "cp",
        "s3://cli/big",
        "s3://cli/big-x",
        "--sse-c",
        "--sse-c-key",
        &k2,
    ];
    let words = "An error occurred (400) when calling the HeadObject operation: Bad Request";
    let stock = lab.aws_fails(&args);
    assert!(stock.contains(words), "{stock}");
    let e = lab.fails(&args);
    assert!(e.contains(words), "{e}");
    // With it, a refusal of the copy itself is CopyObject's: a destination key that is
    // not 32 bytes.
    let e = lab.fails(&[
        "s3",
        "cp",
        "s3://cli/big",
        "s3://cli/big-x",
        "--sse-c-copy-source",
        "--sse-c-copy-source-key",
        &k1,
        "--sse-c",
        "--sse-c-key",
        "short",
    ]);
    assert!(e.contains("when calling the CopyObject operation"), "{e}");

    // s3api: put-object with a key and a checksum; the answer echoes both, as the stock
    // CLI's does; get-object and head-object with --checksum-mode ENABLED show it.
    let put = lab.json(&[
        "s3api",
        "put-object",
        "--bucket",
        "cli",
        "--key",
        "api",
        "--body",
        &p("small"),
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &k1,
        "--checksum-algorithm",
        "crc32",
    ]);
    assert_eq!(put["SSECustomerAlgorithm"], "AES256", "{put}");
    assert_eq!(put["ChecksumCRC32"], small_crc.as_str(), "{put}");
    let stock = json_of(&aws_ok(v(&[
        "s3api",
        "put-object",
        "--bucket",
        "cli",
        "--key",
        "api-aws",
        "--body",
        &p("small"),
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &k1,
    ])));
    assert_eq!(
        put["SSECustomerKeyMD5"], stock["SSECustomerKeyMD5"],
        "{put} {stock}"
    );
    let got = lab.json(&[
        "s3api",
        "get-object",
        "--bucket",
        "cli",
        "--key",
        "api",
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &k1,
        "--checksum-mode",
        "ENABLED",
        &p("api.back"),
    ]);
    assert_eq!(got["ChecksumCRC32"], small_crc.as_str(), "{got}");
    assert!(same_file(Path::new(&p("small")), Path::new(&p("api.back"))));
    let e = lab.fails(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli",
        "--key",
        "api",
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &k2,
    ]);
    assert!(
        e.contains("An error occurred (403) when calling the HeadObject operation"),
        "{e}"
    );
    let e = lab.fails(&[
        "s3api",
        "get-object",
        "--bucket",
        "cli",
        "--key",
        "api",
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &k2,
        &p("api.wrong"),
    ]);
    assert!(e.contains("(AccessDenied)"), "{e}");
    // The key given base64 with its MD5, as the AWS CLI also takes it.
    let b64 = base64::engine::general_purpose::STANDARD.encode([0x41u8; 32]);
    let h = lab.json(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli",
        "--key",
        "api",
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &b64,
        "--sse-customer-key-md5",
        put["SSECustomerKeyMD5"].as_str().unwrap(),
    ]);
    assert_eq!(h["ContentLength"], (1 << 20) + 3, "{h}");

    // copy-object from k1 to k2 with a new checksum, then the stock CLI reads it.
    let cp = lab.json(&[
        "s3api",
        "copy-object",
        "--bucket",
        "cli",
        "--key",
        "api-k2",
        "--copy-source",
        "cli/api",
        "--copy-source-sse-customer-algorithm",
        "AES256",
        "--copy-source-sse-customer-key",
        &k1,
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &k2,
        "--checksum-algorithm",
        "CRC32",
    ]);
    assert_eq!(cp["SSECustomerAlgorithm"], "AES256", "{cp}");
    assert!(cp["CopyObjectResult"]["ETag"].is_string(), "{cp}");
    let mut a = v(&["s3", "cp", "s3://cli/api-k2", &p("api-k2"), "--no-progress"]);
    a.extend(sse(&k2));
    aws_ok(a);
    assert!(same_file(Path::new(&p("small")), Path::new(&p("api-k2"))));
    assert_eq!(
        head_k2(&lab, &k2, "api-k2")["ChecksumCRC32"],
        small_crc.as_str()
    );

    // The multipart verbs: every step with the key, each part with its CRC32.
    std::fs::write(p("part1"), vec![b'a'; 5 << 20]).unwrap();
    std::fs::write(p("part2"), b"tail").unwrap();
    let up = lab.json(&[
        "s3api",
        "create-multipart-upload",
        "--bucket",
        "cli",
        "--key",
        "mp",
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &k1,
        "--checksum-algorithm",
        "CRC32",
    ]);
    assert_eq!(up["SSECustomerAlgorithm"], "AES256", "{up}");
    let id = up["UploadId"].as_str().unwrap().to_string();
    let e = lab.fails(&[
        "s3api",
        "upload-part",
        "--bucket",
        "cli",
        "--key",
        "mp",
        "--upload-id",
        &id,
        "--part-number",
        "1",
        "--body",
        &p("part1"),
    ]);
    assert!(e.contains("(InvalidRequest)"), "{e}");
    let mut parts = Vec::new();
    for (n, f) in [("1", "part1"), ("2", "part2")] {
        let r = lab.json(&[
            "s3api",
            "upload-part",
            "--bucket",
            "cli",
            "--key",
            "mp",
            "--upload-id",
            &id,
            "--part-number",
            n,
            "--body",
            &p(f),
            "--sse-customer-algorithm",
            "AES256",
            "--sse-customer-key",
            &k1,
            "--checksum-algorithm",
            "CRC32",
        ]);
        assert!(r["ChecksumCRC32"].is_string(), "{r}");
        parts.push(serde_json::json!({"PartNumber": n.parse::<u32>().unwrap(), "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]}));
    }
    let done = lab.json(&[
        "s3api",
        "complete-multipart-upload",
        "--bucket",
        "cli",
        "--key",
        "mp",
        "--upload-id",
        &id,
        "--multipart-upload",
        &serde_json::json!({"Parts": parts}).to_string(),
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        &k1,
    ]);
    assert!(done["ETag"].as_str().unwrap().ends_with("-2\""), "{done}");
    assert!(
        done["ChecksumCRC32"].as_str().unwrap().ends_with("-2"),
        "{done}"
    );
    let h = head("mp");
    assert_eq!(h["ChecksumCRC32"], done["ChecksumCRC32"], "{h}");
    assert_eq!(h["ContentLength"], (5 << 20) + 4, "{h}");
}

fn head_k2(lab: &Lab, k2: &str, key: &str) -> serde_json::Value {
    json_of(&lab.aws_ok(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli",
        "--key",
        key,
        "--checksum-mode",
        "ENABLED",
        "--sse-customer-algorithm",
        "AES256",
        "--sse-customer-key",
        k2,
    ]))
}
