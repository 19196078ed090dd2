//! Conditional writes through the endpoint, with the stock `aws` CLI, boto3 and curl:
//! `If-None-Match: *` and `If-Match` on PutObject and CompleteMultipartUpload, `If-Match`
//! on DeleteObject and the `ETag` of a DeleteObjects key; racing creators of one key, of
//! which exactly one wins; and the 409 `ConditionalRequestConflict` of an `If-Match` write
//! whose object is deleted while its body streams in.

mod s3_common;

use std::process::{Command, Stdio};

use s3_common::*;

#[test]
fn conditional_puts_completes_and_deletes_answer_as_s3() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "cond"]);
    let v = lab.boto3_s3_json(
        r#"
out = {}
B = 'cond'
put = lambda k, body, **kw: s3.put_object(Bucket=B, Key=k, Body=body, **kw)
body = lambda k: s3.get_object(Bucket=B, Key=k)['Body'].read()
out['create'] = code(lambda: put('k', b'first', IfNoneMatch='*'))
out['create_again'] = code(lambda: put('k', b'second', IfNoneMatch='*'))
out['after_create_again'] = body('k').decode()
etag = s3.head_object(Bucket=B, Key='k')['ETag']
out['match_other'] = code(lambda: put('k', b'third', IfMatch='"0123"'))
out['match_missing'] = code(lambda: put('nothing', b'x', IfMatch=etag))
out['none_match_etag'] = code(lambda: put('k', b'x', IfNoneMatch=etag))
out['both'] = code(lambda: put('k', b'x', IfNoneMatch='*', IfMatch=etag))
out['unchanged'] = body('k').decode()
out['match_same'] = code(lambda: put('k', b'fourth', IfMatch=etag))
out['after_match_same'] = body('k').decode()
out['stale_etag'] = code(lambda: put('k', b'fifth', IfMatch=etag))
etag = s3.head_object(Bucket=B, Key='k')['ETag']
out['delete_other'] = code(lambda: s3.delete_object(Bucket=B, Key='k', IfMatch='"0123"'))
out['after_delete_other'] = body('k').decode()
out['delete_same'] = code(lambda: s3.delete_object(Bucket=B, Key='k', IfMatch=etag))
out['delete_missing'] = code(lambda: s3.delete_object(Bucket=B, Key='k', IfMatch=etag))
out['delete_plain_missing'] = code(lambda: s3.delete_object(Bucket=B, Key='k'))

# Multipart: the condition is decided at CompleteMultipartUpload.
def upload(key, data):
    up = s3.create_multipart_upload(Bucket=B, Key=key)['UploadId']
    p = s3.upload_part(Bucket=B, Key=key, UploadId=up, PartNumber=1, Body=data)
    return up, {'Parts': [{'PartNumber': 1, 'ETag': p['ETag']}]}
def complete(key, up, parts, **kw):
    return s3.complete_multipart_upload(Bucket=B, Key=key, UploadId=up, MultipartUpload=parts, **kw)
up, parts = upload('mp', b'multipart one')
out['mp_create'] = code(lambda: complete('mp', up, parts, IfNoneMatch='*'))
up, parts = upload('mp', b'multipart two')
out['mp_create_again'] = code(lambda: complete('mp', up, parts, IfNoneMatch='*'))
# A refused completion leaves the upload in progress, to be completed or aborted.
out['mp_still_listed'] = [u['UploadId'] for u in s3.list_multipart_uploads(Bucket=B).get('Uploads', [])] == [up]
out['mp_match_other'] = code(lambda: complete('mp', up, parts, IfMatch='"0123"'))
out['mp_unchanged'] = body('mp').decode()
mp_etag = s3.head_object(Bucket=B, Key='mp')['ETag']
out['mp_match_same'] = code(lambda: complete('mp', up, parts, IfMatch=mp_etag))
out['mp_after'] = body('mp').decode()
up, parts = upload('mp-missing', b'x')
out['mp_match_missing'] = code(lambda: complete('mp-missing', up, parts, IfMatch=mp_etag))
s3.abort_multipart_upload(Bucket=B, Key='mp-missing', UploadId=up)

# DeleteObjects: each key's ETag is its If-Match.
put('d1', b'one'); put('d2', b'two')
d2 = s3.head_object(Bucket=B, Key='d2')['ETag']
r = s3.delete_objects(Bucket=B, Delete={'Objects': [
    {'Key': 'd1', 'ETag': '"0123"'}, {'Key': 'd2', 'ETag': d2}]})
out['batch_deleted'] = [d['Key'] for d in r.get('Deleted', [])]
out['batch_errors'] = [[e['Key'], e['Code']] for e in r.get('Errors', [])]
out['batch_left'] = sorted(o['Key'] for o in s3.list_objects_v2(Bucket=B, Prefix='d').get('Contents', []))
print(json.dumps(out))
"#,
        &[],
    );
    let expect = serde_json::json!({
        "create": "ok",
        "create_again": "PreconditionFailed",
        "after_create_again": "first",
        "match_other": "PreconditionFailed",
        "match_missing": "NoSuchKey",
        "none_match_etag": "NotImplemented",
        "both": "NotImplemented",
        "unchanged": "first",
        "match_same": "ok",
        "after_match_same": "fourth",
        "stale_etag": "PreconditionFailed",
        "delete_other": "PreconditionFailed",
        "after_delete_other": "fourth",
        "delete_same": "ok",
        "delete_missing": "NoSuchKey",
        "delete_plain_missing": "ok",
        "mp_create": "ok",
        "mp_create_again": "PreconditionFailed",
        "mp_still_listed": true,
        "mp_match_other": "PreconditionFailed",
        "mp_unchanged": "multipart one",
        "mp_match_same": "ok",
        "mp_after": "multipart two",
        "mp_match_missing": "NoSuchKey",
        "batch_deleted": ["d2"],
        "batch_errors": [["d1", "PreconditionFailed"]],
        "batch_left": ["d1"],
    });
    assert_eq!(v, expect);

    // The stock CLI, and the raw answer: 412 in S3's XML.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"from the cli").unwrap();
    let f = f.to_str().unwrap();
    let args = ["s3api", "put-object", "--bucket", "cond", "--key", "cli"];
    let with = |more: &[&'static str]| {
        let mut a = args.to_vec();
        a.extend(["--body", f]);
        a.extend(more);
        a
    };
    lab.aws_ok(&with(&["--if-none-match", "*"]));
    let err = lab.aws_fails(&with(&["--if-none-match", "*"]));
    assert!(err.contains("PreconditionFailed"), "{err}");
    let (id, secret) = lab.access_key();
    let user = format!("{id}:{secret}");
    let r = curl(
        &lab.url("/cond/cli"),
        &[
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &user,
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "-H",
            "If-None-Match: *",
            "-X",
            "PUT",
            "--data-binary",
            "raw",
        ],
    );
    assert_eq!(r.status, 412, "{}", r.text());
    assert!(
        r.text().contains("<Code>PreconditionFailed</Code>"),
        "{}",
        r.text()
    );
    let got = lab.aws_ok(&["s3", "cp", "s3://cond/cli", "-"]);
    assert_eq!(got, "from the cli");
}

#[test]
fn of_racing_creators_with_if_none_match_exactly_one_wins() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "race"]);
    // boto3: 16 threads, each its own client, each a 1 MiB body of its own, 3 keys in turn;
    // then 6 multipart uploads of one key completed at once.
    let v = lab.boto3_s3_json(
        r#"
import threading
N = 16
out = {'put': [], 'mp': None}
def race(key):
    start = threading.Barrier(N)
    results = [None] * N
    def creator(i):
        c = boto3.client('s3', endpoint_url=os.environ['ATREST_TEST_ENDPOINT'])
        body = bytes([i]) * (1024 * 1024)
        start.wait()
        results[i] = code(lambda: c.put_object(Bucket='race', Key=key, Body=body, IfNoneMatch='*'))
    ts = [threading.Thread(target=creator, args=(i,)) for i in range(N)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    won = [i for i, r in enumerate(results) if r == 'ok']
    data = s3.get_object(Bucket='race', Key=key)['Body'].read()
    return {'codes': sorted(set(results)), 'won': len(won),
            'body_is_winners': len(won) == 1 and data == bytes([won[0]]) * (1024 * 1024)}
for k in ['a', 'b', 'c']:
    out['put'].append(race(k))

M = 6
ups = []
for i in range(M):
    up = s3.create_multipart_upload(Bucket='race', Key='mp')['UploadId']
    p = s3.upload_part(Bucket='race', Key='mp', UploadId=up, PartNumber=1, Body=bytes([i]) * 1000)
    ups.append((up, p['ETag']))
start = threading.Barrier(M)
results = [None] * M
def completer(i):
    c = boto3.client('s3', endpoint_url=os.environ['ATREST_TEST_ENDPOINT'])
    up, etag = ups[i]
    start.wait()
    results[i] = code(lambda: c.complete_multipart_upload(Bucket='race', Key='mp', UploadId=up,
        MultipartUpload={'Parts': [{'PartNumber': 1, 'ETag': etag}]}, IfNoneMatch='*'))
ts = [threading.Thread(target=completer, args=(i,)) for i in range(M)]
[t.start() for t in ts]
[t.join() for t in ts]
won = [i for i, r in enumerate(results) if r == 'ok']
data = s3.get_object(Bucket='race', Key='mp')['Body'].read()
out['mp'] = {'codes': sorted(set(results)), 'won': len(won),
             'body_is_winners': len(won) == 1 and data == bytes([won[0]]) * 1000}
print(json.dumps(out))
"#,
        &[],
    );
    let one_winner = serde_json::json!({
        "codes": ["PreconditionFailed", "ok"], "won": 1, "body_is_winners": true
    });
    for r in v["put"].as_array().expect("three races") {
        assert_eq!(r, &one_winner, "{v}");
    }
    assert_eq!(v["mp"], one_winner, "{v}");

    // curl: 12 processes started together, each PUTting its own 512 KiB body.
    let dir = tempfile::tempdir().unwrap();
    let (id, secret) = lab.access_key();
    let user = format!("{id}:{secret}");
    let url = lab.url("/race/curl");
    let children: Vec<_> = (0..12u8)
        .map(|i| {
            let f = dir.path().join(format!("body{i}"));
            std::fs::write(&f, vec![b'a' + i; 512 * 1024]).unwrap();
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &user])
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .args(["-H", "If-None-Match: *", "-T"])
                .arg(&f)
                .arg(&url)
                .stdout(Stdio::piped())
                .spawn()
                .expect("run curl")
        })
        .collect();
    let statuses: Vec<String> = children
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned())
        .collect();
    let winners: Vec<usize> = (0..statuses.len())
        .filter(|&i| statuses[i] == "200")
        .collect();
    assert_eq!(winners.len(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| s == "200" || s == "412"),
        "{statuses:?}"
    );
    let got = curl(
        &url,
        &[
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &user,
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ],
    );
    assert_eq!(got.body, vec![b'a' + winners[0] as u8; 512 * 1024]);
}

#[test]
fn an_if_match_write_whose_object_is_deleted_meanwhile_is_a_conflict() {
    let lab = Lab::start();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "conf"]);
    // The PUT's body is a generator: 16 MiB of it is sent (more than the socket buffers
    // hold, so the endpoint has begun the write: the condition held then), the object is
    // deleted by another client, then the rest is sent. Signed by botocore.
    let v = lab.boto3_s3_json(
        r#"
import http.client, socket, urllib.parse
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
s3.put_object(Bucket='conf', Key='k', Body=b'v1')
etag = s3.head_object(Bucket='conf', Key='k')['ETag']
url = os.environ['ATREST_TEST_ENDPOINT'].rstrip('/') + '/conf/k'
half = b'x' * (16 << 20)
# Signed over the whole payload (botocore hashes the body it is given), sent in pieces.
req = AWSRequest(method='PUT', url=url, data=half + half, headers={'If-Match': etag})
creds = boto3.Session().get_credentials()
S3SigV4Auth(creds, 's3', 'us-east-1').add_auth(req)
def body():
    for i in range(0, len(half), 1 << 20):
        yield half[i:i + (1 << 20)]
    s3.delete_object(Bucket='conf', Key='k')
    yield half
u = urllib.parse.urlsplit(url)
conn = http.client.HTTPConnection(u.hostname, u.port)
conn.connect()
conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
headers = dict(req.headers.items())
headers['Content-Length'] = str(2 * len(half))
conn.request('PUT', u.path, body=body(), headers=headers)
r = conn.getresponse()
text = r.read().decode()
out = {'status': r.status, 'text': text,
       'after': code(lambda: s3.head_object(Bucket='conf', Key='k'))}
print(json.dumps(out))
"#,
        &[],
    );
    let text = v["text"].as_str().unwrap_or_default();
    assert_eq!(v["status"], 409, "{text}");
    assert!(
        text.contains("<Code>ConditionalRequestConflict</Code>"),
        "{text}"
    );
    // Nothing was written in its place.
    assert_eq!(v["after"], "404", "{v}");
}
