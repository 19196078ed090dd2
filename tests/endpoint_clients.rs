//! The AWS endpoint driven by real clients nobody here wrote, from the project venv
//! (scripts/lib/venv.sh; `ATREST_VENV`, default REPO/.venv): the `aws` CLI and boto3
//! reach KMS, STS, CloudTrail and S3 on one port with nothing but what `atrest env`
//! prints. A missing venv fails the test (scripts/install-deps.sh makes it).

mod endpoint_common;
mod s3_common;

use endpoint_common::{aws, aws_ok, client, env_of, venv_bin};
use s3_common::Lab;

#[test]
fn aws_cli_drives_kms_sts_cloudtrail_and_s3_on_one_port() {
    let lab = Lab::start();
    let url = env_of(&lab)
        .into_iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v)
        .unwrap_or_default();
    assert_eq!(
        url,
        format!("http://{}", lab.addr_text()),
        "S3 and the rest share one port"
    );

    let key = aws_ok(
        &lab,
        &[
            "kms",
            "create-key",
            "--description",
            "cli",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    );
    let plain = lab.home_path().join("plain.txt");
    std::fs::write(&plain, b"made over HTTP\n").expect("write");
    let blob = aws_ok(
        &lab,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            &format!("fileb://{}", plain.display()),
            "--query",
            "CiphertextBlob",
            "--output",
            "text",
        ],
    );
    let ct = lab.home_path().join("ct.bin");
    std::fs::write(
        &ct,
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &blob).expect("b64"),
    )
    .expect("write");
    let ct_arg = format!("fileb://{}", ct.display());
    let back = aws_ok(
        &lab,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &ct_arg,
            "--query",
            "Plaintext",
            "--output",
            "text",
        ],
    );
    let decode = |s: &str| {
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s.trim()).expect("b64")
    };
    assert_eq!(decode(&back), b"made over HTTP\n");
    // The ciphertext made over HTTP opens over kmsd's socket (atrest's own CLI).
    let socket = lab.ok(&[
        "kms",
        "decrypt",
        "--ciphertext-blob",
        &ct_arg,
        "--query",
        "Plaintext",
        "--output",
        "text",
    ]);
    assert_eq!(decode(&socket), b"made over HTTP\n");

    let keys = aws_ok(
        &lab,
        &[
            "kms",
            "list-keys",
            "--query",
            "Keys[].KeyId",
            "--output",
            "text",
        ],
    );
    assert!(keys.contains(&key), "{keys}");

    aws_ok(&lab, &["kms", "disable-key", "--key-id", &key]);
    let o = aws(
        &lab,
        &["kms", "encrypt", "--key-id", &key, "--plaintext", "eA=="],
    );
    assert_eq!(o.status.code(), Some(255));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("An error occurred (DisabledException) when calling the Encrypt operation")
            && err.contains("is disabled."),
        "{err}"
    );

    let who = aws_ok(
        &lab,
        &[
            "sts",
            "get-caller-identity",
            "--query",
            "Arn",
            "--output",
            "text",
        ],
    );
    assert!(who.starts_with("arn:aws:iam::111122223333:user/"), "{who}");

    // S3 on the same port, the same access key.
    aws_ok(&lab, &["s3", "mb", "s3://shared-port"]);
    aws_ok(
        &lab,
        &[
            "s3",
            "cp",
            &plain.display().to_string(),
            "s3://shared-port/p.txt",
        ],
    );
    let got = lab.home_path().join("got.txt");
    aws_ok(
        &lab,
        &[
            "s3",
            "cp",
            "s3://shared-port/p.txt",
            &got.display().to_string(),
        ],
    );
    assert_eq!(std::fs::read(&got).expect("read"), b"made over HTTP\n");

    // The trail names the signer's key, address and client.
    let ev = aws_ok(
        &lab,
        &[
            "cloudtrail",
            "lookup-events",
            "--lookup-attributes",
            "AttributeKey=EventName,AttributeValue=DisableKey",
            "--query",
            "Events[0].CloudTrailEvent",
            "--output",
            "text",
        ],
    );
    let ev: serde_json::Value = serde_json::from_str(&ev).expect("CloudTrailEvent JSON");
    assert_eq!(ev["sourceIPAddress"], "127.0.0.1");
    assert!(
        ev["userAgent"]
            .as_str()
            .is_some_and(|u| u.starts_with("aws-cli/")),
        "{ev}"
    );
    assert!(
        ev["userIdentity"]["accessKeyId"]
            .as_str()
            .is_some_and(|k| k.starts_with("AKIA")),
        "{ev}"
    );
}

#[test]
fn boto3_kms_auth_errors_bad_input_and_lookup_paging() {
    let lab = Lab::start();
    let ct = lab.home_path().join("boto3.ct");
    let o = client(&lab, venv_bin("python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/endpoint_clients.py"
        ))
        .env("CIPHERTEXT_OUT", &ct)
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "boto3 script failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("script JSON");
    assert_eq!(r["data_key_roundtrip"], true);
    assert!(r["aliases"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "alias/boto3")));
    assert!(r["list_keys_pages"].as_u64().is_some_and(|n| n >= 2), "{r}");
    let code = |case: &str| r[case].as_str().unwrap_or_default().to_string();
    assert!(
        code("pending_deletion_encrypt").starts_with("KMSInvalidStateException: "),
        "{r}"
    );
    assert!(
        code("pending_deletion_encrypt").ends_with("is pending deletion."),
        "{r}"
    );
    assert!(
        code("wrong_secret").starts_with(
            "InvalidSignatureException: The request signature we calculated does not match"
        ),
        "{r}"
    );
    assert_eq!(
        code("unknown_key"),
        "UnrecognizedClientException: The security token included in the request is invalid."
    );
    let raw = |case: &str| {
        (
            r[case][0].as_u64().unwrap_or(0),
            r[case][1]["__type"].as_str().unwrap_or("").to_string(),
            r[case][1]["message"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        raw("unsigned"),
        (
            400,
            "MissingAuthenticationTokenException".into(),
            "Missing Authentication Token".into()
        )
    );
    let (s, t, m) = raw("incomplete");
    assert_eq!((s, t.as_str()), (400, "IncompleteSignatureException"));
    assert!(
        m.contains("Authorization header requires 'Signature' parameter."),
        "{m}"
    );
    let (s, t, m) = raw("replayed");
    assert_eq!((s, t.as_str()), (400, "InvalidSignatureException"));
    assert!(m.starts_with("Signature expired: "), "{m}");
    let (s, t, _) = raw("malformed_json");
    assert_eq!((s, t.as_str()), (400, "SerializationException"));
    let (s, t, _) = raw("unknown_target");
    assert_eq!((s, t.as_str()), (400, "UnknownOperationException"));
    let (s, _, m) = raw("too_large");
    assert_eq!(s, 413, "{m}");
    assert_eq!(r["still_serving"], true);
    assert!(r["lookup_pages"].as_u64().is_some_and(|n| n >= 2), "{r}");
    assert_eq!(r["lookup_unique"], true);
    let ev = &r["trail_event"];
    assert!(
        ev["userAgent"]
            .as_str()
            .is_some_and(|u| u.starts_with("Boto3/")),
        "{ev}"
    );
    assert_eq!(ev["sourceIPAddress"], "127.0.0.1");
    assert!(ev["userIdentity"]["accessKeyId"]
        .as_str()
        .is_some_and(|k| k.starts_with("AKIA")));

    // boto3's ciphertext (with its encryption context) opens over the socket.
    let ct_arg = format!("fileb://{}", ct.display());
    let plain = lab.ok(&[
        "kms",
        "decrypt",
        "--ciphertext-blob",
        &ct_arg,
        "--encryption-context",
        "app=t",
        "--query",
        "Plaintext",
        "--output",
        "text",
    ]);
    let plain = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, plain.trim())
        .expect("b64");
    assert_eq!(plain, b"from boto3");
}

/// The trail's newest event named `name`, as its CloudTrail JSON.
fn newest_event(lab: &Lab, name: &str) -> serde_json::Value {
    let attr = format!("AttributeKey=EventName,AttributeValue={name}");
    let text = aws_ok(
        lab,
        &[
            "cloudtrail",
            "lookup-events",
            "--lookup-attributes",
            &attr,
            "--max-results",
            "1",
            "--query",
            "Events[0].CloudTrailEvent",
            "--output",
            "text",
        ],
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("no {name} event ({e}): {text}"))
}

#[test]
fn aws_encryption_sdk_cli_encrypts_and_decrypts_a_file_with_an_atrest_key() {
    let lab = Lab::start();
    let key = aws_ok(
        &lab,
        &[
            "kms",
            "create-key",
            "--query",
            "KeyMetadata.Arn",
            "--output",
            "text",
        ],
    );
    let dir = lab.home_path();
    let plain = dir.join("report.txt");
    let secret = b"quarterly numbers, not for the bucket\n".repeat(1000);
    std::fs::write(&plain, &secret).expect("write");
    let (ct, back) = (dir.join("report.txt.encrypted"), dir.join("report.back"));
    let esdk = |args: &[&str]| {
        client(&lab, venv_bin("aws-encryption-cli"))
            .args(args)
            .output()
            .expect("run aws-encryption-cli")
    };
    let wrapping = format!("key={key}");
    let path = |p: &std::path::Path| p.display().to_string();
    let (plain_s, ct_s, back_s) = (path(&plain), path(&ct), path(&back));
    let meta = path(&dir.join("meta.json"));
    let o = esdk(&[
        "--encrypt",
        "--input",
        &plain_s,
        "--output",
        &ct_s,
        "--wrapping-keys",
        &wrapping,
        "--encryption-context",
        "purpose=report",
        "--metadata-output",
        &meta,
    ]);
    assert!(
        o.status.success(),
        "encrypt: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sealed = std::fs::read(&ct).expect("read ciphertext");
    assert!(
        !sealed
            .windows(b"quarterly numbers".len())
            .any(|w| w == b"quarterly numbers"),
        "plaintext in the message"
    );
    // The message's encrypted data key names atrest's key (it came from GenerateDataKey).
    let key_bytes = key.as_bytes();
    assert!(
        sealed.windows(key_bytes.len()).any(|w| w == key_bytes),
        "the key ARN is not in the message header"
    );
    let ev = newest_event(&lab, "GenerateDataKey");
    assert_eq!(ev["resources"][0]["ARN"], key.as_str(), "{ev}");
    assert!(
        ev["userAgent"]
            .as_str()
            .is_some_and(|u| u.contains("AwsEncryptionSdkCli/")),
        "{ev}"
    );

    let decrypt = |context: &str| {
        esdk(&[
            "--decrypt",
            "--input",
            &ct_s,
            "--output",
            &back_s,
            "--wrapping-keys",
            &wrapping,
            "--encryption-context",
            context,
            "--metadata-output",
            &meta,
            "--overwrite-metadata",
        ])
    };
    let o = decrypt("purpose=report");
    assert!(
        o.status.success(),
        "decrypt: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(&back).expect("read"), secret);
    let ev = newest_event(&lab, "Decrypt");
    assert!(
        ev["userAgent"]
            .as_str()
            .is_some_and(|u| u.contains("AwsEncryptionSdkPython/")),
        "{ev}"
    );

    // With the key disabled, atrest refuses the data key and nothing is written.
    std::fs::remove_file(&back).expect("rm");
    aws_ok(&lab, &["kms", "disable-key", "--key-id", &key]);
    let o = decrypt("purpose=report");
    assert!(!o.status.success(), "decrypted with a disabled key");
    assert!(!back.exists(), "a plaintext was written");
    let ev = newest_event(&lab, "Decrypt");
    assert_eq!(ev["errorCode"], "DisabledException", "{ev}");
}
