//! The lab's Tasks 2 to 4 (and the object half of Task 7) against a real kmsd and a real
//! `atrest s3 serve`, with the `atrest` CLI and curl as the clients.

mod s3_common;

use base64::Engine;
use hmac::{Hmac, Mac};
use s3_common::*;

const INVALID_ARG_MSG: &str =
    "Requests specifying Server Side Encryption with AWS KMS managed keys require AWS Signature Version 4.";

fn xml_field(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(body[start..end].to_string())
}

fn assert_s3_error(r: &Curl, status: u16, code: &str, message: &str) {
    let body = r.text();
    assert_eq!(r.status, status, "{body}");
    assert_eq!(xml_field(&body, "Code").as_deref(), Some(code), "{body}");
    assert_eq!(
        xml_field(&body, "Message").as_deref(),
        Some(message),
        "{body}"
    );
    assert!(
        xml_field(&body, "RequestId").is_some_and(|r| !r.is_empty()),
        "{body}"
    );
}

/// SigV2 query-string auth (`AWSAccessKeyId`, `Expires`, `Signature`) for a GET.
fn sigv2_presigned(lab: &Lab, bucket: &str, key: &str) -> String {
    let (ak, sk) = lab.access_key();
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let sts = format!("GET\n\n\n{expires}\n/{bucket}/{key}");
    let sig = sigv2(&sk, &sts);
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    lab.url(&format!(
        "/{bucket}/{key}?AWSAccessKeyId={ak}&Expires={expires}&Signature={}",
        enc(&sig)
    ))
}

fn sigv2(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// SigV2 header auth (`Authorization: AWS AK:SIG`) for a GET.
fn sigv2_header_get(lab: &Lab, bucket: &str, key: &str) -> Curl {
    let (ak, sk) = lab.access_key();
    let date = httpdate_now();
    let sig = sigv2(&sk, &format!("GET\n\n\n{date}\n/{bucket}/{key}"));
    let auth = format!("Authorization: AWS {ak}:{sig}");
    let date_h = format!("Date: {date}");
    curl(
        &lab.url(&format!("/{bucket}/{key}")),
        &["-H", &auth, "-H", &date_h],
    )
}

fn httpdate_now() -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::now_utc().format(&f).unwrap()
}

#[test]
fn lab_tasks_2_to_4_and_key_disable() {
    let lab = Lab::start();
    let bucket = "imagebucket-lab-1";
    let key_arn = lab.create_key("alias/MyKMSKey");

    // Task 2: a bucket as S3 makes them.
    let loc = lab.json(&["s3api", "create-bucket", "--bucket", bucket]);
    assert_eq!(loc["Location"], format!("/{bucket}"));
    let enc = lab.json(&["s3api", "get-bucket-encryption", "--bucket", bucket]);
    assert_eq!(
        enc["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
            ["SSEAlgorithm"],
        "AES256"
    );
    let bpa = lab.json(&["s3api", "get-public-access-block", "--bucket", bucket]);
    for k in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(bpa["PublicAccessBlockConfiguration"][k], true, "{k}");
    }
    let own = lab.json(&["s3api", "get-bucket-ownership-controls", "--bucket", bucket]);
    assert_eq!(
        own["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
        "BucketOwnerEnforced"
    );

    // Upload clock.png with SSE-KMS under the alias: the response names the key by ARN.
    let png = png_like(300_000, 7);
    let src = lab.home_path().join("clock.png");
    std::fs::write(&src, &png).unwrap();
    let put = lab.json(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
        "--body",
        src.to_str().unwrap(),
        "--content-type",
        "image/png",
        "--server-side-encryption",
        "aws:kms",
        "--ssekms-key-id",
        "alias/MyKMSKey",
    ]);
    assert_eq!(put["ServerSideEncryption"], "aws:kms");
    assert_eq!(put["SSEKMSKeyId"], key_arn.as_str());
    let head = lab.json(&[
        "s3api",
        "head-object",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
    ]);
    assert_eq!(head["ServerSideEncryption"], "aws:kms");
    assert_eq!(head["SSEKMSKeyId"], key_arn.as_str());
    assert_eq!(head["ContentLength"], 300_000);
    assert_eq!(head["ContentType"], "image/png");

    // The raw store never holds the plaintext.
    let s3_dir = lab.home_path().join("s3");
    assert_eq!(any_file_contains(&s3_dir, &png[1000..1064]), None);
    assert_eq!(any_file_contains(&s3_dir, &png[..16]), None);

    // Task 3: the object URL, unsigned.
    let object_url = lab.url(&format!("/{bucket}/clock.png"));
    assert_s3_error(
        &curl(&object_url, &[]),
        403,
        "AccessDenied",
        "Access Denied",
    );

    // ACLs are disabled; a public ACL is blocked while BPA is on.
    let err = lab.fails(&[
        "s3api",
        "put-object-acl",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
        "--acl",
        "public-read",
    ]);
    assert!(
        err.contains("An error occurred (AccessControlListNotSupported) when calling the PutObjectAcl operation: The bucket does not allow ACLs"),
        "{err}"
    );
    lab.ok(&[
        "s3api",
        "put-bucket-ownership-controls",
        "--bucket",
        bucket,
        "--ownership-controls",
        "Rules=[{ObjectOwnership=BucketOwnerPreferred}]",
    ]);
    let err = lab.fails(&[
        "s3api",
        "put-object-acl",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
        "--acl",
        "public-read",
    ]);
    assert!(
        err.contains("(AccessDenied) when calling the PutObjectAcl operation: Access Denied"),
        "{err}"
    );
    lab.ok(&[
        "s3api", "put-public-access-block", "--bucket", bucket, "--public-access-block-configuration",
        "BlockPublicAcls=false,IgnorePublicAcls=false,BlockPublicPolicy=false,RestrictPublicBuckets=false",
    ]);
    lab.ok(&[
        "s3api",
        "put-object-acl",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
        "--acl",
        "public-read",
    ]);
    let acl = lab.json(&[
        "s3api",
        "get-object-acl",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
    ]);
    assert!(acl["Grants"]
        .as_array()
        .unwrap()
        .iter()
        .any(
            |g| g["Grantee"]["URI"] == "http://acs.amazonaws.com/groups/global/AllUsers"
                && g["Permission"] == "READ"
        ));

    // Public, but SSE-KMS: S3 insists on SigV4.
    assert_s3_error(
        &curl(&object_url, &[]),
        400,
        "InvalidArgument",
        INVALID_ARG_MSG,
    );
    // ... and so for SigV2, presigned or header-signed, even with a valid signature.
    assert_s3_error(
        &curl(&sigv2_presigned(&lab, bucket, "clock.png"), &[]),
        400,
        "InvalidArgument",
        INVALID_ARG_MSG,
    );
    assert_s3_error(
        &sigv2_header_get(&lab, bucket, "clock.png"),
        400,
        "InvalidArgument",
        INVALID_ARG_MSG,
    );

    // Task 4: a presigned URL opens it, byte-identical.
    let url = lab.ok(&[
        "s3",
        "presign",
        &format!("s3://{bucket}/clock.png"),
        "--expires-in",
        "300",
    ]);
    let url = url.trim();
    assert!(
        url.contains("X-Amz-Algorithm=AWS4-HMAC-SHA256") && url.contains("X-Amz-Signature="),
        "{url}"
    );
    let r = curl(url, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == png, "presigned download differs from the upload");

    // A wrong signature, and an expired URL.
    let bad = format!(
        "{}{}",
        &url[..url.len() - 1],
        if url.ends_with('0') { '1' } else { '0' }
    );
    let r = curl(&bad, &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        xml_field(&r.text(), "Code").as_deref(),
        Some("SignatureDoesNotMatch")
    );
    let short = lab.ok(&[
        "s3",
        "presign",
        &format!("s3://{bucket}/clock.png"),
        "--expires-in",
        "1",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_s3_error(
        &curl(short.trim(), &[]),
        403,
        "AccessDenied",
        "Request has expired",
    );

    // The CLI reads it back too.
    let out = lab.home_path().join("clock-copy.png");
    let got = lab.json(&[
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
        out.to_str().unwrap(),
    ]);
    assert_eq!(got["SSEKMSKeyId"], key_arn.as_str());
    assert!(std::fs::read(&out).unwrap() == png);

    // The trail has GenerateDataKey (upload) and Decrypt (download), made by S3 on the
    // caller's behalf, with the object's ARN as encryption context.
    let object_arn = format!("arn:aws:s3:::{bucket}/clock.png");
    let trail = lab.json(&[
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventSource,AttributeValue=kms.amazonaws.com",
    ]);
    for op in ["GenerateDataKey", "Decrypt"] {
        let found = trail["Events"].as_array().unwrap().iter().any(|e| {
            let r: serde_json::Value =
                serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
            r["eventName"] == op
                && r["errorCode"].is_null()
                && r["userIdentity"]["invokedBy"] == "s3.amazonaws.com"
                && r["requestParameters"]["encryptionContext"]["aws:s3:arn"] == object_arn
        });
        assert!(found, "no {op} for {object_arn} in {trail}");
    }

    // Task 7: a disabled key makes the read fail as S3 reports it, and nothing is written.
    lab.ok(&["kms", "disable-key", "--key-id", "alias/MyKMSKey"]);
    let out2 = lab.home_path().join("after-disable.png");
    let err = lab.fails(&[
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
        out2.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!(
            "An error occurred (KMS.DisabledException) when calling the GetObject operation: {key_arn} is disabled."
        )),
        "{err}"
    );
    assert!(!out2.exists());
    let url = lab.ok(&["s3", "presign", &format!("s3://{bucket}/clock.png")]);
    assert_s3_error(
        &curl(url.trim(), &[]),
        400,
        "KMS.DisabledException",
        &format!("{key_arn} is disabled."),
    );
    // Uploads under a disabled key fail too.
    let err = lab.fails(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "new.png",
        "--body",
        src.to_str().unwrap(),
        "--server-side-encryption",
        "aws:kms",
        "--ssekms-key-id",
        "alias/MyKMSKey",
    ]);
    assert!(err.contains("(KMS.DisabledException)"), "{err}");
    lab.ok(&["kms", "enable-key", "--key-id", "alias/MyKMSKey"]);
    let r = curl(url.trim(), &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == png);
}

#[test]
fn kms_key_states_and_unknown_keys_surface_as_s3_errors() {
    let lab = Lab::start();
    let bucket = "imagebucket-states";
    lab.ok(&["s3api", "create-bucket", "--bucket", bucket]);
    let src = lab.home_path().join("f.bin");
    std::fs::write(&src, png_like(5000, 3)).unwrap();
    let put = |key_id: &str| {
        lab.atrest(&[
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            "k",
            "--body",
            src.to_str().unwrap(),
            "--server-side-encryption",
            "aws:kms",
            "--ssekms-key-id",
            key_id,
        ])
    };
    let o = put("alias/does-not-exist");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "An error occurred (KMS.NotFoundException) when calling the PutObject operation"
        ),
        "{err}"
    );

    let arn = lab.create_key("alias/Doomed");
    assert!(put("alias/Doomed").status.success());
    lab.ok(&[
        "kms",
        "schedule-key-deletion",
        "--key-id",
        &arn,
        "--pending-window-in-days",
        "7",
    ]);
    let out = lab.home_path().join("o");
    let err = lab.fails(&[
        "s3api",
        "get-object",
        "--bucket",
        bucket,
        "--key",
        "k",
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("(KMS.KMSInvalidStateException) when calling the GetObject operation"),
        "{err}"
    );
    assert!(err.contains("pending deletion"), "{err}");
}

#[test]
fn public_sse_s3_objects_are_served_unsigned_and_sigv2_works_for_them() {
    let lab = Lab::start();
    let bucket = "public-site";
    lab.ok(&["s3api", "create-bucket", "--bucket", bucket]);
    lab.ok(&["s3api", "put-public-access-block", "--bucket", bucket, "--public-access-block-configuration",
        r#"{"BlockPublicAcls":false,"IgnorePublicAcls":false,"BlockPublicPolicy":false,"RestrictPublicBuckets":false}"#]);
    lab.ok(&[
        "s3api",
        "put-bucket-ownership-controls",
        "--bucket",
        bucket,
        "--ownership-controls",
        r#"{"Rules":[{"ObjectOwnership":"ObjectWriter"}]}"#,
    ]);
    let page = b"<html>hello</html>".to_vec();
    let src = lab.home_path().join("index.html");
    std::fs::write(&src, &page).unwrap();
    let put = lab.json(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "index.html",
        "--body",
        src.to_str().unwrap(),
        "--acl",
        "public-read",
    ]);
    assert_eq!(put["ServerSideEncryption"], "AES256");
    assert!(put.get("SSEKMSKeyId").is_none());

    // Path-style and virtual-hosted-style, unsigned: 200.
    let r = curl(&lab.url(&format!("/{bucket}/index.html")), &[]);
    assert_eq!((r.status, r.body.clone()), (200, page.clone()));
    let port = lab.addr.rsplit(':').next().unwrap();
    let host = format!("Host: {bucket}.localhost:{port}");
    let r = curl(&lab.url("/index.html"), &["-H", &host]);
    assert_eq!(
        (r.status, r.body.clone()),
        (200, page.clone()),
        "{}",
        r.text()
    );
    // SigV2 is verified (not refused outright) for objects that are not SSE-KMS.
    let r = curl(&sigv2_presigned(&lab, bucket, "index.html"), &[]);
    assert_eq!(
        (r.status, r.body.clone()),
        (200, page.clone()),
        "{}",
        r.text()
    );
    let r = sigv2_header_get(&lab, bucket, "index.html");
    assert_eq!(
        (r.status, r.body.clone()),
        (200, page.clone()),
        "{}",
        r.text()
    );

    // A private object next to it stays private, and a missing key is not revealed.
    lab.ok(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "secret.txt",
        "--body",
        src.to_str().unwrap(),
    ]);
    assert_s3_error(
        &curl(&lab.url(&format!("/{bucket}/secret.txt")), &[]),
        403,
        "AccessDenied",
        "Access Denied",
    );
    assert_s3_error(
        &curl(&lab.url(&format!("/{bucket}/nope")), &[]),
        403,
        "AccessDenied",
        "Access Denied",
    );

    // IgnorePublicAcls switches the public ACL off again.
    lab.ok(&[
        "s3api",
        "put-public-access-block",
        "--bucket",
        bucket,
        "--public-access-block-configuration",
        "IgnorePublicAcls=true",
    ]);
    assert_s3_error(
        &curl(&lab.url(&format!("/{bucket}/index.html")), &[]),
        403,
        "AccessDenied",
        "Access Denied",
    );
}

#[test]
fn cli_covers_the_bucket_lifecycle() {
    let lab = Lab::start();
    let b = "lifecycle-bucket";
    lab.ok(&["s3api", "create-bucket", "--bucket", b]);
    let err = lab.fails(&["s3api", "create-bucket", "--bucket", b]);
    assert!(err.contains("(BucketAlreadyOwnedByYou)"), "{err}");
    let err = lab.fails(&["s3api", "create-bucket", "--bucket", "Bad_Name"]);
    assert!(err.contains("(InvalidBucketName)"), "{err}");
    let list = lab.json(&["s3api", "list-buckets"]);
    assert_eq!(list["Buckets"][0]["Name"], b);

    let arn = lab.create_key("alias/BucketDefault");
    lab.ok(&["s3api", "put-bucket-encryption", "--bucket", b, "--server-side-encryption-configuration",
        r#"{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"alias/BucketDefault"},"BucketKeyEnabled":true}]}"#]);
    let enc = lab.json(&["s3api", "get-bucket-encryption", "--bucket", b]);
    let rule = &enc["ServerSideEncryptionConfiguration"]["Rules"][0];
    assert_eq!(
        rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "aws:kms"
    );
    assert_eq!(
        rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"],
        "alias/BucketDefault"
    );
    assert_eq!(rule["BucketKeyEnabled"], true);

    // Uploads without SSE headers now get the bucket default, with a bucket key.
    let dir = lab.home_path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, name) in ["a/1.txt", "a/2.txt", "b.txt"].iter().enumerate() {
        let p = dir.join(format!("f{i}"));
        std::fs::write(&p, format!("file {i}")).unwrap();
        let out = lab.ok(&["s3", "cp", p.to_str().unwrap(), &format!("s3://{b}/{name}")]);
        // As the AWS CLI: the file relative to the current directory.
        let shown = out
            .strip_prefix("upload: ")
            .and_then(|l| l.strip_suffix(&format!(" to s3://{b}/{name}\n")))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(!std::path::Path::new(shown).is_absolute(), "{out}");
        assert_eq!(
            std::fs::canonicalize(shown).unwrap(),
            p.canonicalize().unwrap()
        );
    }
    let head = lab.json(&["s3api", "head-object", "--bucket", b, "--key", "b.txt"]);
    assert_eq!(head["SSEKMSKeyId"], arn.as_str());
    assert_eq!(head["BucketKeyEnabled"], true);
    // The point of a bucket key: three uploads, one GenerateDataKey in kmsd's trail,
    // bound to the bucket's ARN rather than an object's.
    let made = lab.json(&[
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=GenerateDataKey",
    ]);
    let under_key: Vec<serde_json::Value> = made["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap())
        .filter(|e: &serde_json::Value| e["resources"][0]["ARN"] == arn.as_str())
        .collect();
    assert_eq!(under_key.len(), 1, "{under_key:?}");
    assert_eq!(
        under_key[0]["requestParameters"]["encryptionContext"]["aws:s3:arn"],
        format!("arn:aws:s3:::{b}")
    );
    let ls = lab.ok(&["s3", "ls", &format!("s3://{b}/")]);
    assert!(ls.contains("PRE a/") && ls.contains("b.txt"), "{ls}");
    let listed = lab.json(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        b,
        "--page-size",
        "1",
    ]);
    let keys: Vec<&str> = listed["Contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a/1.txt", "a/2.txt", "b.txt"]);
    let back = dir.join("back.txt");
    lab.ok(&[
        "s3",
        "cp",
        &format!("s3://{b}/a/2.txt"),
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "file 1");

    let err = lab.fails(&["s3api", "delete-bucket", "--bucket", b]);
    assert!(err.contains("(BucketNotEmpty)"), "{err}");
    for k in ["a/1.txt", "a/2.txt", "b.txt"] {
        lab.ok(&["s3api", "delete-object", "--bucket", b, "--key", k]);
    }
    let err = lab.fails(&["s3api", "head-object", "--bucket", b, "--key", "b.txt"]);
    assert!(
        err.contains("(404) when calling the HeadObject operation: Not Found"),
        "{err}"
    );
    lab.ok(&["s3api", "delete-bucket", "--bucket", b]);
    let list = lab.json(&["s3api", "list-buckets"]);
    assert_eq!(list["Buckets"].as_array().unwrap().len(), 0);
    let err = lab.fails(&["s3api", "get-bucket-encryption", "--bucket", b]);
    assert!(err.contains("(NoSuchBucket)"), "{err}");

    // The bucket-level calls are management events in kmsd's trail (object reads
    // and writes are data events, kept out of the event history as in AWS).
    let trail = lab.json(&[
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventSource,AttributeValue=s3.amazonaws.com",
    ]);
    let events: Vec<serde_json::Value> = trail["Events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap())
        .collect();
    let names: Vec<(String, Option<String>)> = events
        .iter()
        .map(|e| {
            (
                e["eventName"].as_str().unwrap().to_string(),
                e["errorCode"].as_str().map(str::to_string),
            )
        })
        .collect();
    let want = [
        ("CreateBucket", None),
        ("CreateBucket", Some("BucketAlreadyOwnedByYou")),
        ("PutBucketEncryption", None),
        ("DeleteBucket", Some("BucketNotEmpty")),
        ("DeleteBucket", None),
    ];
    let want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(n, e)| (n.to_string(), e.map(str::to_string)))
        .collect();
    assert_eq!(names, want, "{trail}");
    let put = &events[2];
    assert_eq!(put["requestParameters"]["bucketName"], b);
    assert_eq!(put["resources"][0]["ARN"], format!("arn:aws:s3:::{b}"));
}

/// A streamed upload the endpoint refuses up front (unknown KMS key) reports that refusal,
/// not a broken pipe halfway through the body (the client waits for `100 Continue`).
#[test]
fn a_refused_large_upload_reports_the_endpoints_error() {
    let lab = Lab::start();
    lab.ok(&["s3api", "create-bucket", "--bucket", "refusals"]);
    let big = lab.home_path().join("big.bin");
    std::fs::write(&big, png_like(48 << 20, 7)).unwrap();
    let big = big.to_str().unwrap();
    let err = lab.fails(&[
        "s3",
        "cp",
        big,
        "s3://refusals/big.bin",
        "--sse",
        "aws:kms",
        "--sse-kms-key-id",
        "alias/NoSuchKey",
    ]);
    assert!(err.contains("(KMS.NotFoundException)"), "{err}");
    assert!(err.contains("alias/NoSuchKey is not found"), "{err}");
    let list = lab.json(&["s3api", "list-objects-v2", "--bucket", "refusals"]);
    assert!(list.get("Contents").is_none(), "nothing stored: {list}");
}

/// A second endpoint on a home that one already serves is refused, and leaves the first
/// one's address file in place.
#[test]
fn a_second_endpoint_on_the_same_home_is_refused() {
    let lab = Lab::start();
    lab.ok(&["s3api", "create-bucket", "--bucket", "busy"]);
    // What an upload in flight looks like on disk: a body no sidecar names yet, and a
    // sidecar's temp file. Opening a store sweeps both away, so a refused endpoint must
    // be refused before it opens the store.
    let objects = lab.home_path().join("s3/buckets/busy/objects");
    let in_flight = [
        objects.join(format!("{}.{}.data", "ab".repeat(32), "cd".repeat(8))),
        objects.join(".sidecar.tmp"),
    ];
    for f in &in_flight {
        std::fs::write(f, b"upload in progress").unwrap();
    }
    let o = lab.atrest(&["s3", "serve", "--listen", "127.0.0.1:0"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "already serves this home at http://{}",
            lab.addr_text()
        )),
        "{err}"
    );
    let addr = std::fs::read_to_string(lab.home_path().join("s3.addr")).unwrap();
    assert_eq!(addr.trim(), lab.addr_text());
    for f in &in_flight {
        assert!(f.exists(), "the refused endpoint removed {}", f.display());
    }
    lab.ok(&["s3api", "list-buckets"]);
}

/// ACL headers on CreateBucket and PutObject meet the same rules as put-object-acl:
/// disabled ACLs are a 400, a public ACL under Block Public Access a 403, and a refused
/// request leaves nothing behind.
#[test]
fn acl_headers_on_create_bucket_and_put_object_follow_ownership_and_bpa() {
    let lab = Lab::start();
    let err = lab.fails(&[
        "s3api",
        "create-bucket",
        "--bucket",
        "acl-enforced",
        "--acl",
        "public-read",
    ]);
    assert!(
        err.contains("(InvalidBucketAclWithObjectOwnership)"),
        "{err}"
    );
    let err = lab.fails(&[
        "s3api",
        "create-bucket",
        "--bucket",
        "acl-public",
        "--object-ownership",
        "BucketOwnerPreferred",
        "--acl",
        "public-read",
    ]);
    assert!(
        err.contains("(AccessDenied) when calling the CreateBucket operation: Access Denied"),
        "{err}"
    );
    let buckets = lab.ok(&["s3api", "list-buckets"]);
    assert!(
        !buckets.contains("acl-enforced") && !buckets.contains("acl-public"),
        "{buckets}"
    );
    lab.ok(&[
        "s3api",
        "create-bucket",
        "--bucket",
        "acl-private",
        "--object-ownership",
        "ObjectWriter",
        "--acl",
        "private",
    ]);

    lab.ok(&["s3api", "create-bucket", "--bucket", "acl-off"]);
    let body = lab.home_path().join("body.txt");
    std::fs::write(&body, b"hello").unwrap();
    let err = lab.fails(&[
        "s3api",
        "put-object",
        "--bucket",
        "acl-off",
        "--key",
        "o.txt",
        "--body",
        body.to_str().unwrap(),
        "--acl",
        "public-read",
    ]);
    assert!(
        err.contains("(AccessControlListNotSupported) when calling the PutObject operation: The bucket does not allow ACLs"),
        "{err}"
    );
    let list = lab.json(&["s3api", "list-objects-v2", "--bucket", "acl-off"]);
    assert!(list.get("Contents").is_none(), "nothing stored: {list}");
}

/// DeletePublicAccessBlock removes the configuration, as S3 does: reading it back is
/// `NoSuchPublicAccessBlockConfiguration`, and nothing is blocked any more.
#[test]
fn deleting_the_public_access_block_unblocks_and_get_says_there_is_none() {
    let lab = Lab::start();
    let bucket = "bpa-gone";
    lab.ok(&[
        "s3api",
        "create-bucket",
        "--bucket",
        bucket,
        "--object-ownership",
        "ObjectWriter",
    ]);
    let body = lab.home_path().join("hello.txt");
    std::fs::write(&body, b"hello, public").unwrap();
    lab.ok(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "hello.txt",
        "--body",
        body.to_str().unwrap(),
    ]);
    let url = lab.url(&format!("/{bucket}/hello.txt"));
    assert_eq!(curl(&url, &[]).status, 403);

    lab.ok(&["s3api", "delete-public-access-block", "--bucket", bucket]);
    let err = lab.fails(&["s3api", "get-public-access-block", "--bucket", bucket]);
    assert!(
        err.contains("(NoSuchPublicAccessBlockConfiguration) when calling the GetPublicAccessBlock operation: The public access block configuration was not found"),
        "{err}"
    );
    lab.ok(&[
        "s3api",
        "put-object-acl",
        "--bucket",
        bucket,
        "--key",
        "hello.txt",
        "--acl",
        "public-read",
    ]);
    let got = curl(&url, &[]);
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"hello, public"[..])
    );

    // Putting a configuration back brings the block back.
    lab.ok(&[
        "s3api", "put-public-access-block", "--bucket", bucket, "--public-access-block-configuration",
        "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true",
    ]);
    let v = lab.json(&["s3api", "get-public-access-block", "--bucket", bucket]);
    assert_eq!(
        v["PublicAccessBlockConfiguration"]["IgnorePublicAcls"],
        true
    );
    assert_eq!(curl(&url, &[]).status, 403);
}

/// `aws:kms` without a key, on the request or as the bucket default, uses the AWS managed
/// key `alias/aws/s3` (created by kmsd on that first use), as S3 does; the key is used
/// through S3 only.
#[test]
fn aws_kms_without_a_key_uses_the_aws_managed_s3_key() {
    let lab = Lab::start();
    let bucket = "managed";
    lab.ok(&["s3api", "create-bucket", "--bucket", bucket]);
    let body = lab.home_path().join("body.bin");
    let data = png_like(200_000, 11);
    std::fs::write(&body, &data).unwrap();
    let put = lab.json(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "a.bin",
        "--body",
        body.to_str().unwrap(),
        "--server-side-encryption",
        "aws:kms",
    ]);
    let managed = lab.json(&["kms", "describe-key", "--key-id", "alias/aws/s3"]);
    assert_eq!(managed["KeyMetadata"]["KeyManager"], "AWS");
    let arn = managed["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    assert_eq!(put["SSEKMSKeyId"], arn.as_str());
    assert_eq!(put["ServerSideEncryption"], "aws:kms");

    // The bucket default without a key id means the same key.
    lab.ok(&[
        "s3api",
        "put-bucket-encryption",
        "--bucket",
        bucket,
        "--server-side-encryption-configuration",
        r#"{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms"}}]}"#,
    ]);
    lab.ok(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "b.bin",
        "--body",
        body.to_str().unwrap(),
    ]);
    for key in ["a.bin", "b.bin"] {
        let head = lab.json(&["s3api", "head-object", "--bucket", bucket, "--key", key]);
        assert_eq!(head["SSEKMSKeyId"], arn.as_str(), "{key}");
        let out = lab.home_path().join(format!("out-{key}"));
        lab.ok(&[
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            key,
            out.to_str().unwrap(),
        ]);
        assert!(std::fs::read(&out).unwrap() == data, "{key}");
    }
    // Directly, outside S3, the managed key is not the caller's to use.
    let err = lab.fails(&[
        "kms",
        "encrypt",
        "--key-id",
        "alias/aws/s3",
        "--plaintext",
        "aGVsbG8=",
    ]);
    assert!(err.contains("AccessDeniedException"), "{err}");
}

/// curl as a fully independent client: its own SigV4 signer (`--aws-sigv4`) uploads an
/// SSE-KMS object, reads it back and heads it; a body that does not match its signed
/// hash, and a wrong secret, are refused.
///
/// The key comes from the bucket default rather than request headers: curl before 8.10
/// (Debian's is 7.88) sorts canonical headers by whole line, so it signs
/// `x-amz-server-side-encryption-aws-kms-key-id` before `x-amz-server-side-encryption`
/// and every SigV4 server, AWS included, rejects it (curl/curl#14370).
#[test]
fn curls_own_sigv4_signer_uploads_and_reads_sse_kms_objects() {
    use sha2::Digest;
    let lab = Lab::start();
    let key_arn = lab.create_key("alias/MyKMSKey");
    let bucket = "curl-signed";
    lab.ok(&["s3api", "create-bucket", "--bucket", bucket]);
    lab.ok(&["s3api", "put-bucket-encryption", "--bucket", bucket, "--server-side-encryption-configuration",
        r#"{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"alias/MyKMSKey"}}]}"#]);
    let (ak, sk) = lab.access_key();
    let user = format!("{ak}:{sk}");
    let sign = [
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        user.as_str(),
    ];
    let png = png_like(300_000, 21);
    let file = lab.home_path().join("clock.png");
    std::fs::write(&file, &png).unwrap();
    let sha = format!(
        "x-amz-content-sha256: {}",
        hex::encode(sha2::Sha256::digest(&png))
    );
    let url = lab.url(&format!("/{bucket}/clock.png"));
    let headers = lab.home_path().join("put-headers.txt");

    let mut put = sign.to_vec();
    put.extend([
        "-H",
        sha.as_str(),
        "-H",
        "Content-Type: image/png",
        "-D",
        headers.to_str().unwrap(),
        "-T",
        file.to_str().unwrap(),
    ]);
    let r = curl(&url, &put);
    assert_eq!(r.status, 200, "{}", r.text());
    let head = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.contains(&format!(
            "x-amz-server-side-encryption-aws-kms-key-id: {}",
            key_arn.to_ascii_lowercase()
        )),
        "{head}"
    );

    let mut get = sign.to_vec();
    get.extend(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
    let r = curl(&url, &get);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == png, "curl read back different bytes");
    let h = lab.json(&[
        "s3api",
        "head-object",
        "--bucket",
        bucket,
        "--key",
        "clock.png",
    ]);
    assert_eq!(h["ContentType"], "image/png");
    assert_eq!(h["SSEKMSKeyId"], key_arn.as_str());

    // Another body under the first body's signed hash.
    let other = lab.home_path().join("other.png");
    std::fs::write(&other, png_like(300_000, 22)).unwrap();
    let mut forged = sign.to_vec();
    forged.extend(["-H", sha.as_str(), "-T", other.to_str().unwrap()]);
    let r = curl(&lab.url(&format!("/{bucket}/forged.png")), &forged);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("XAmzContentSHA256Mismatch"),
        "{}",
        r.text()
    );
    let wrong = format!("{ak}:{}", "x".repeat(sk.len()));
    let r = curl(
        &url,
        &[
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            wrong.as_str(),
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("SignatureDoesNotMatch"), "{}", r.text());
    let list = lab.json(&["s3api", "list-objects-v2", "--bucket", bucket]);
    assert_eq!(list["Contents"].as_array().map(Vec::len), Some(1), "{list}");
}

/// S3's ETag of a single-part SSE-S3 object is the MD5 of its content (clients such as
/// rclone check it after an upload); an SSE-KMS object's is not.
#[test]
fn sse_s3_etags_are_the_content_md5() {
    use md5::Digest;
    let lab = Lab::start();
    lab.create_key("alias/EtagKey");
    lab.ok(&["s3api", "create-bucket", "--bucket", "etags"]);
    let data = png_like(1_500_000, 31);
    let body = lab.home_path().join("e.bin");
    std::fs::write(&body, &data).unwrap();
    let md5 = format!("\"{}\"", hex::encode(md5::Md5::digest(&data)));
    let put = |key: &str, extra: &[&str]| {
        let mut args = vec![
            "s3api",
            "put-object",
            "--bucket",
            "etags",
            "--key",
            key,
            "--body",
            body.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        lab.json(&args)
    };
    let head = |key: &str| lab.json(&["s3api", "head-object", "--bucket", "etags", "--key", key]);
    assert_eq!(put("s3.bin", &[])["ETag"], md5.as_str());
    assert_eq!(head("s3.bin")["ETag"], md5.as_str());
    put(
        "kms.bin",
        &[
            "--server-side-encryption",
            "aws:kms",
            "--ssekms-key-id",
            "alias/EtagKey",
        ],
    );
    assert_ne!(head("kms.bin")["ETag"], md5.as_str());
}
