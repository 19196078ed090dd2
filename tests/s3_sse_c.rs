//! SSE-C (customer-provided keys) through the endpoint, with boto3 (`SSECustomerKey`) and the
//! stock `aws` CLI (`--sse-c AES256 --sse-c-key`): PUT, GET
//! (whole and ranged), HEAD, CopyObject (source and destination keys), multipart uploads
//! with UploadPart and UploadPartCopy; raw requests signed by botocore for the refusals: a missing key, a wrong key, a key for an object not
//! kept under one, a bad MD5, a short key and a wrong algorithm refused as S3 refuses them;
//! and neither the plaintext nor the key anywhere in the store.

mod s3_common;

use base64::Engine as _;
use s3_common::*;

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
