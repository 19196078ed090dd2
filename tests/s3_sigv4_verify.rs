//! The endpoint's signature verification (s3s behind atrest's service) against AWS's published
//! Amazon S3 SigV4 examples (S3 API reference, "Signature Calculations for the Authorization
//! Header" and "Authenticating Requests: Using Query Parameters"), run in-process.
//!
//! Each example must pass verification (the request then fails only for S3 reasons, e.g.
//! `NoSuchBucket`), the same request with one signature character changed must get
//! `403 SignatureDoesNotMatch`, and atrest's own S3-mode signer must reproduce each signature.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use atrest::s3::auth::{sign, AccessKey, Keyring, Payload, SigningConfig, ToSign};
use atrest::s3::kms::{DataKeys, DecryptedKey, EncryptionContext, GeneratedKey, KmsFailure};
use atrest::s3::store::Store;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// No KMS in these tests: every call is refused.
struct NoKms;
impl DataKeys for NoKms {
    fn generate(
        &self,
        _: &str,
        _: &str,
        _: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsFailure> {
        Err(KmsFailure::unavailable("no kms in this test"))
    }
    fn decrypt(
        &self,
        _: &str,
        _: &[u8],
        _: &EncryptionContext,
    ) -> Result<DecryptedKey, KmsFailure> {
        Err(KmsFailure::unavailable("no kms in this test"))
    }
}

struct Example {
    name: &'static str,
    method: &'static str,
    path_and_query: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    signed_headers: &'static str,
    body: &'static [u8],
    signature: &'static str,
}

fn examples() -> Vec<Example> {
    vec![
        Example {
            name: "GET Object",
            method: "GET",
            path_and_query: "/test.txt",
            headers: vec![
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA),
                ("x-amz-date", "20130524T000000Z"),
            ],
            signed_headers: "host;range;x-amz-content-sha256;x-amz-date",
            body: b"",
            signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        },
        Example {
            name: "PUT Object",
            method: "PUT",
            path_and_query: "/test%24file.text",
            headers: vec![
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                (
                    "x-amz-content-sha256",
                    "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                ),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            signed_headers: "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            body: b"Welcome to Amazon S3.",
            signature: "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        },
        Example {
            name: "GET Bucket Lifecycle",
            method: "GET",
            path_and_query: "/?lifecycle",
            headers: vec![
                ("x-amz-content-sha256", EMPTY_SHA),
                ("x-amz-date", "20130524T000000Z"),
            ],
            signed_headers: "host;x-amz-content-sha256;x-amz-date",
            body: b"",
            signature: "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        },
        Example {
            name: "GET Bucket (List Objects)",
            method: "GET",
            path_and_query: "/?max-keys=2&prefix=J",
            headers: vec![
                ("x-amz-content-sha256", EMPTY_SHA),
                ("x-amz-date", "20130524T000000Z"),
            ],
            signed_headers: "host;x-amz-content-sha256;x-amz-date",
            body: b"",
            signature: "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        },
    ]
}

const HOST: &str = "examplebucket.s3.amazonaws.com";

fn service(dir: &std::path::Path) -> s3s::service::S3Service {
    let s3 = dir.join("s3");
    let store = Store::open(&s3, Arc::new(NoKms)).unwrap();
    let keyring = Keyring::fixed(vec![AccessKey {
        access_key_id: AK.into(),
        secret_access_key: SK.into(),
        principal: "arn:aws:iam::111122223333:user/example".into(),
    }]);
    let mut cfg = s3s::config::S3Config::default();
    // The examples are dated 2013: widen the clock-skew window so the signature is checked.
    cfg.presigned_url_max_skew_time_secs = u32::MAX;
    atrest::s3::http::build_service_with(
        store,
        Arc::new(keyring),
        atrest::s3::audit::Trail::log_only(),
        cfg,
    )
}

async fn send(svc: &s3s::service::S3Service, ex: &Example, signature: &str) -> (u16, String) {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders={},Signature={signature}",
        ex.signed_headers
    );
    let mut b = hyper::Request::builder()
        .method(ex.method)
        .uri(ex.path_and_query)
        .header("host", HOST)
        .header("authorization", auth)
        .header("content-length", ex.body.len().to_string());
    for (k, v) in &ex.headers {
        b = b.header(*k, *v);
    }
    let req = b.body(s3s::Body::from(ex.body.to_vec())).unwrap();
    let resp = atrest::s3::http::handle(svc, req).await;
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn at_2013() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600) // 2013-05-24T00:00:00Z
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_accepts_aws_s3_examples_and_rejects_altered_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    for ex in examples() {
        let (status, body) = send(&svc, &ex, ex.signature).await;
        assert!(
            !body.contains("SignatureDoesNotMatch"),
            "{}: {status} {body}",
            ex.name
        );
        assert_ne!(status, 403, "{}: {body}", ex.name);
        // The signature was accepted; the example bucket simply does not exist here.
        assert!(
            body.contains("<Code>NoSuchBucket</Code>") || body.contains("NotImplemented"),
            "{}: {status} {body}",
            ex.name
        );
        assert!(body.contains("<RequestId>"), "{}: {body}", ex.name);

        let mut bad = ex.signature.to_string();
        let last = if bad.ends_with('0') { '1' } else { '0' };
        bad.pop();
        bad.push(last);
        let (status, body) = send(&svc, &ex, &bad).await;
        assert_eq!(status, 403, "{}: {body}", ex.name);
        assert!(
            body.contains("<Code>SignatureDoesNotMatch</Code>"),
            "{}: {body}",
            ex.name
        );
        assert!(
            body.contains("<Message>The request signature we calculated does not match"),
            "{body}"
        );
    }
}

#[test]
fn s3_mode_signer_reproduces_the_aws_s3_examples() {
    let key = AccessKey {
        access_key_id: AK.into(),
        secret_access_key: SK.into(),
        principal: String::new(),
    };
    let mut cfg = SigningConfig::s3();
    cfg.content_sha256_header = false; // the examples carry the header themselves
    for ex in examples() {
        let headers: Vec<(String, String)> = ex
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let signed = sign(
            &cfg,
            &key,
            ToSign {
                method: ex.method,
                url: &format!("https://{HOST}{}", ex.path_and_query),
                headers: &headers,
                payload: Payload::Bytes(ex.body),
                time: at_2013(),
                session_token: None,
            },
        )
        .unwrap();
        assert_eq!(signed.signature, ex.signature, "{}", ex.name);
    }
    // The presigned-URL example: GET /test.txt valid for 86400 s.
    let mut cfg = SigningConfig::s3();
    cfg.presign_expires = Some(Duration::from_secs(86400));
    let signed = sign(
        &cfg,
        &key,
        ToSign {
            method: "GET",
            url: &format!("https://{HOST}/test.txt"),
            headers: &[],
            payload: Payload::Unsigned,
            time: at_2013(),
            session_token: None,
        },
    )
    .unwrap();
    assert_eq!(
        signed.signature,
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_presigned_url_is_refused_as_s3_does() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let uri = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    let req = hyper::Request::builder()
        .uri(uri)
        .header("host", HOST)
        .body(s3s::Body::empty())
        .unwrap();
    let resp = atrest::s3::http::handle(&svc, req).await;
    assert_eq!(resp.status().as_u16(), 403);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("<Code>AccessDenied</Code><Message>Request has expired</Message>"),
        "{body}"
    );
}
