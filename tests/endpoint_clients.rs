//! The AWS endpoint driven by real clients nobody here wrote, from the project venv
//! (scripts/lib/venv.sh; `ATREST_VENV`, default REPO/.venv): the `aws` CLI and boto3
//! reach KMS, STS, CloudTrail and S3 on one port with nothing but what `atrest env`
//! prints. A missing venv fails the test (scripts/install-deps.sh makes it).

mod s3_common;

use std::path::PathBuf;
use std::process::{Command, Output};

use s3_common::Lab;

fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("ATREST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-deps.sh (it makes the project venv)",
        bin.display()
    );
    bin
}

/// The variables `atrest env` exports, parsed from its output.
fn env_of(lab: &Lab) -> Vec<(String, String)> {
    let out = lab.ok(&["env"]);
    let vars: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect();
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ] {
        assert!(vars.iter().any(|(k, _)| k == name), "no {name} in {out}");
    }
    assert!(out.contains("unset AWS_SESSION_TOKEN"), "{out}");
    vars
}

/// A client command in the environment `atrest env` gives, and nothing of this machine's
/// AWS configuration.
fn client(lab: &Lab, program: PathBuf) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", lab.home_path())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .envs(env_of(lab));
    c
}

fn aws(lab: &Lab, args: &[&str]) -> Output {
    client(lab, venv_bin("aws"))
        .args(args)
        .output()
        .expect("run aws")
}

fn aws_ok(lab: &Lab, args: &[&str]) -> String {
    let o = aws(lab, args);
    assert!(
        o.status.success(),
        "aws {args:?}: {}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

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
