//! `atrest kms ...` end to end: the real CLI binary against a kmsd server.
//!
//! kmsd runs in this test process (`kmsd::testing::server::start`, the same code the
//! daemon binary runs) on a temp home; the CLI is the built `atrest` binary.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

struct Env {
    home: tempfile::TempDir,
    server: Option<kmsd::testing::server::ServerHandle>,
}

impl Env {
    fn start() -> Env {
        let home = tempfile::tempdir().unwrap();
        let mut opts = kmsd::testing::server::ServerOptions::new(home.path());
        opts.allow_clock_control = true;
        let server = kmsd::testing::server::start(opts).unwrap();
        Env {
            home,
            server: Some(server),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_atrest"))
            .arg("--home")
            .arg(self.home.path())
            .arg("kms")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed and returns its JSON (Null if no output).
    fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "atrest kms {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs a command that must fail and returns (exit code, stderr).
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "atrest kms {args:?} succeeded");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    }

    fn text(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.home.path().join(name).display().to_string()
    }

    /// Stops kmsd and starts it again on the same home.
    fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        let mut opts = kmsd::testing::server::ServerOptions::new(self.home.path());
        opts.allow_clock_control = true;
        self.server = Some(kmsd::testing::server::start(opts).unwrap());
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn create_describe_alias_list() {
    let e = Env::start();
    let created = e.ok(&[
        "create-key",
        "--description",
        "lab key",
        "--tags",
        "TagKey=env,TagValue=dev",
    ]);
    let m = &created["KeyMetadata"];
    let key_id = m["KeyId"].as_str().unwrap().to_string();
    let arn = m["Arn"].as_str().unwrap().to_string();
    assert_eq!(
        arn,
        format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}")
    );
    for (field, want) in [
        ("AWSAccountId", "111122223333"),
        ("Description", "lab key"),
        ("KeyUsage", "ENCRYPT_DECRYPT"),
        ("KeyState", "Enabled"),
        ("Origin", "AWS_KMS"),
        ("KeyManager", "CUSTOMER"),
        ("KeySpec", "SYMMETRIC_DEFAULT"),
        ("CustomerMasterKeySpec", "SYMMETRIC_DEFAULT"),
    ] {
        assert_eq!(m[field], want, "{field}");
    }
    assert_eq!(m["Enabled"], true);
    assert_eq!(m["MultiRegion"], false);
    assert_eq!(m["EncryptionAlgorithms"][0], "SYMMETRIC_DEFAULT");
    assert!(m["CreationDate"].as_str().unwrap().ends_with("+00:00"));

    assert_eq!(
        e.ok(&[
            "create-alias",
            "--alias-name",
            "alias/MyKMSKey",
            "--target-key-id",
            &key_id
        ]),
        Value::Null
    );
    let d = e.ok(&["describe-key", "--key-id", "alias/MyKMSKey"]);
    assert_eq!(d["KeyMetadata"]["KeyId"], key_id.as_str());
    let listed = e.ok(&["list-keys"]);
    assert_eq!(listed["Keys"][0]["KeyArn"], arn.as_str());
    let aliases = e.ok(&["list-aliases", "--key-id", &key_id]);
    assert_eq!(aliases["Aliases"][0]["AliasName"], "alias/MyKMSKey");
    assert_eq!(aliases["Aliases"][0]["TargetKeyId"], key_id.as_str());
    assert_eq!(
        e.text(&[
            "describe-key",
            "--key-id",
            &key_id,
            "--query",
            "KeyMetadata.Arn",
            "--output",
            "text"
        ]),
        arn
    );
    let tags = e.ok(&["list-resource-tags", "--key-id", &key_id]);
    assert_eq!(tags["Tags"][0]["TagValue"], "dev");
    e.ok(&[
        "update-alias",
        "--alias-name",
        "alias/MyKMSKey",
        "--target-key-id",
        &key_id,
    ]);
    e.ok(&["delete-alias", "--alias-name", "alias/MyKMSKey"]);
    assert!(e.ok(&["list-aliases"])["Aliases"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn tag_and_untag_resource() {
    let mut e = Env::start();
    let key_id = e.text(&[
        "create-key",
        "--tags",
        "TagKey=env,TagValue=dev",
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]);
    let tags = |e: &Env| e.ok(&["list-resource-tags", "--key-id", &key_id])["Tags"].clone();
    // A new value replaces the old one; a new key is added after the existing ones.
    assert_eq!(
        e.run(&[
            "tag-resource",
            "--key-id",
            &key_id,
            "--tags",
            "TagKey=env,TagValue=prod",
            "TagKey=team,TagValue=kms",
        ])
        .stdout,
        b""
    );
    assert_eq!(
        tags(&e),
        serde_json::json!([
            {"TagKey": "env", "TagValue": "prod"},
            {"TagKey": "team", "TagValue": "kms"}
        ])
    );
    e.ok(&[
        "untag-resource",
        "--key-id",
        &key_id,
        "--tag-keys",
        "team",
        "absent",
    ]);
    e.restart();
    assert_eq!(
        tags(&e),
        serde_json::json!([{"TagKey": "env", "TagValue": "prod"}])
    );
    // Reserved prefix, and more than 50 tags on the key: TagException, nothing changed.
    let (code, err) = e.fails(&[
        "tag-resource",
        "--key-id",
        &key_id,
        "--tags",
        "TagKey=aws:x,TagValue=y",
    ]);
    assert_eq!(code, 254);
    assert!(
        err.contains("(TagException) when calling the TagResource operation"),
        "{err}"
    );
    let many: Vec<String> = (0..50).map(|i| format!("TagKey=k{i},TagValue=v")).collect();
    let mut args = vec!["tag-resource", "--key-id", &key_id, "--tags"];
    args.extend(many.iter().map(String::as_str));
    let (_, err) = e.fails(&args);
    assert!(err.contains("at most 50 tags; 51"), "{err}");
    assert_eq!(tags(&e).as_array().unwrap().len(), 1);
    // A key pending deletion cannot be tagged.
    e.ok(&["schedule-key-deletion", "--key-id", &key_id]);
    let (_, err) = e.fails(&[
        "tag-resource",
        "--key-id",
        &key_id,
        "--tags",
        "TagKey=a,TagValue=b",
    ]);
    assert!(err.contains("(KMSInvalidStateException)"), "{err}");
}

#[test]
fn encrypt_decrypt_with_files_and_context() {
    let e = Env::start();
    let key_id = e.text(&[
        "create-key",
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]);
    std::fs::write(e.path("plain.txt"), b"top secret\n").unwrap();
    let enc = e.ok(&[
        "encrypt",
        "--key-id",
        &key_id,
        "--plaintext",
        &format!("fileb://{}", e.path("plain.txt")),
        "--encryption-context",
        "purpose=test,dept=it",
    ]);
    assert_eq!(enc["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    assert!(enc["KeyId"].as_str().unwrap().starts_with("arn:aws:kms:"));
    let blob = unb64(enc["CiphertextBlob"].as_str().unwrap());
    std::fs::write(e.path("cipher.bin"), &blob).unwrap();
    let blob_arg = format!("fileb://{}", e.path("cipher.bin"));
    // JSON context, other order: same context.
    let plain = e.text(&[
        "decrypt",
        "--ciphertext-blob",
        &blob_arg,
        "--encryption-context",
        r#"{"dept":"it","purpose":"test"}"#,
        "--query",
        "Plaintext",
        "--output",
        "text",
    ]);
    assert_eq!(unb64(&plain), b"top secret\n");
    // Wrong context: InvalidCiphertextException, empty message, AWS CLI's shape.
    let (code, stderr) = e.fails(&[
        "decrypt",
        "--ciphertext-blob",
        &blob_arg,
        "--encryption-context",
        "purpose=prod,dept=it",
    ]);
    assert_eq!(code, 254);
    assert_eq!(
        stderr,
        "An error occurred (InvalidCiphertextException) when calling the Decrypt operation:"
    );
    // Inline base64 plaintext; 4097 bytes is refused with AWS's message.
    let inline = e.ok(&[
        "encrypt",
        "--key-id",
        &key_id,
        "--plaintext",
        &b64(b"inline"),
    ]);
    assert!(inline["CiphertextBlob"].is_string());
    let (_, stderr) = e.fails(&[
        "encrypt",
        "--key-id",
        &key_id,
        "--plaintext",
        &b64(&[0u8; 4097]),
    ]);
    assert_eq!(stderr, "An error occurred (ValidationException) when calling the Encrypt operation: 1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096");
    let (code, stderr) = e.fails(&["encrypt", "--key-id", &key_id, "--plaintext", "%%%"]);
    assert_eq!(code, 252);
    assert!(stderr.contains("Invalid base64"), "{stderr}");
    // A mismatching --key-id on decrypt.
    let other = e.text(&[
        "create-key",
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]);
    let (_, stderr) = e.fails(&[
        "decrypt",
        "--ciphertext-blob",
        &blob_arg,
        "--encryption-context",
        "purpose=test,dept=it",
        "--key-id",
        &other,
    ]);
    assert!(stderr.contains("(IncorrectKeyException)"), "{stderr}");

    // re-encrypt to the other key.
    let re = e.ok(&[
        "re-encrypt",
        "--ciphertext-blob",
        &blob_arg,
        "--source-encryption-context",
        "purpose=test,dept=it",
        "--destination-key-id",
        &other,
    ]);
    assert!(re["KeyId"].as_str().unwrap().ends_with(&other));
    std::fs::write(
        e.path("re.bin"),
        unb64(re["CiphertextBlob"].as_str().unwrap()),
    )
    .unwrap();
    let back = e.ok(&[
        "decrypt",
        "--ciphertext-blob",
        &format!("fileb://{}", e.path("re.bin")),
    ]);
    assert_eq!(unb64(back["Plaintext"].as_str().unwrap()), b"top secret\n");
}

#[test]
fn data_keys_states_deletion_and_rotation() {
    let e = Env::start();
    let key_id = e.text(&[
        "create-key",
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]);
    let arn = e.text(&[
        "describe-key",
        "--key-id",
        &key_id,
        "--query",
        "KeyMetadata.Arn",
        "--output",
        "text",
    ]);
    let dk = e.ok(&[
        "generate-data-key",
        "--key-id",
        &key_id,
        "--key-spec",
        "AES_256",
    ]);
    assert_eq!(unb64(dk["Plaintext"].as_str().unwrap()).len(), 32);
    let dk128 = e.ok(&[
        "generate-data-key",
        "--key-id",
        &key_id,
        "--key-spec",
        "AES_128",
    ]);
    assert_eq!(unb64(dk128["Plaintext"].as_str().unwrap()).len(), 16);
    let dkn = e.ok(&[
        "generate-data-key",
        "--key-id",
        &key_id,
        "--number-of-bytes",
        "64",
    ]);
    assert_eq!(unb64(dkn["Plaintext"].as_str().unwrap()).len(), 64);
    let wp = e.ok(&[
        "generate-data-key-without-plaintext",
        "--key-id",
        &key_id,
        "--key-spec",
        "AES_256",
    ]);
    assert!(wp.get("Plaintext").is_none());
    assert!(wp["CiphertextBlob"].is_string());

    e.ok(&["disable-key", "--key-id", &key_id]);
    let (_, stderr) = e.fails(&[
        "generate-data-key",
        "--key-id",
        &key_id,
        "--key-spec",
        "AES_256",
    ]);
    assert_eq!(
        stderr,
        format!("An error occurred (DisabledException) when calling the GenerateDataKey operation: {arn} is disabled.")
    );
    e.ok(&["enable-key", "--key-id", &key_id]);

    let rot = e.ok(&["get-key-rotation-status", "--key-id", &key_id]);
    assert_eq!(rot["KeyRotationEnabled"], false);
    e.ok(&[
        "enable-key-rotation",
        "--key-id",
        &key_id,
        "--rotation-period-in-days",
        "180",
    ]);
    let rot = e.ok(&["get-key-rotation-status", "--key-id", &key_id]);
    assert_eq!(rot["KeyRotationEnabled"], true);
    assert_eq!(rot["RotationPeriodInDays"], 180);
    assert_eq!(
        e.ok(&["rotate-key-on-demand", "--key-id", &key_id])["KeyId"],
        arn.as_str()
    );
    let rots = e.ok(&["list-key-rotations", "--key-id", &key_id]);
    assert_eq!(rots["Rotations"][0]["RotationType"], "ON_DEMAND");
    e.ok(&["disable-key-rotation", "--key-id", &key_id]);

    let s = e.ok(&[
        "schedule-key-deletion",
        "--key-id",
        &key_id,
        "--pending-window-in-days",
        "7",
    ]);
    assert_eq!(s["KeyState"], "PendingDeletion");
    assert_eq!(s["PendingWindowInDays"], 7);
    assert_eq!(s["KeyId"], arn.as_str());
    assert!(s["DeletionDate"].is_string());
    let d = e.ok(&["describe-key", "--key-id", &key_id]);
    assert!(d["KeyMetadata"]["DeletionDate"].is_string());
    let (_, stderr) = e.fails(&["encrypt", "--key-id", &key_id, "--plaintext", &b64(b"x")]);
    assert_eq!(
        stderr,
        format!("An error occurred (KMSInvalidStateException) when calling the Encrypt operation: {arn} is pending deletion.")
    );
    assert_eq!(
        e.ok(&["cancel-key-deletion", "--key-id", &key_id])["KeyId"],
        arn.as_str()
    );
    assert_eq!(
        e.text(&[
            "describe-key",
            "--key-id",
            &key_id,
            "--query",
            "KeyMetadata.KeyState",
            "--output",
            "text"
        ]),
        "Disabled"
    );
    let (_, stderr) = e.fails(&["cancel-key-deletion", "--key-id", &key_id]);
    assert_eq!(
        stderr,
        format!("An error occurred (KMSInvalidStateException) when calling the CancelKeyDeletion operation: {arn} is not pending deletion.")
    );
}

#[test]
fn errors_for_bad_names_and_no_daemon() {
    let e = Env::start();
    let key_id = e.text(&[
        "create-key",
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]);
    let (_, stderr) = e.fails(&[
        "create-alias",
        "--alias-name",
        "MyKey",
        "--target-key-id",
        &key_id,
    ]);
    assert!(stderr.starts_with(
        "An error occurred (ValidationException) when calling the CreateAlias operation: Alias must start with the prefix \"alias/\"."
    ), "{stderr}");
    let (_, stderr) = e.fails(&["describe-key", "--key-id", "bogus"]);
    assert_eq!(
        stderr,
        "An error occurred (NotFoundException) when calling the DescribeKey operation: Invalid keyId 'bogus'"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .arg("--home")
        .arg(empty.path())
        .args(["kms", "list-keys"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let sock = Path::new(empty.path()).join("kmsd.sock");
    assert!(
        stderr.contains(&format!(
            "cannot reach kmsd at {}: is it running?",
            sock.display()
        )),
        "{stderr}"
    );
}

#[test]
fn acting_as_another_principal_with_as() {
    let e = Env::start();
    let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .arg("--home")
        .arg(e.home.path())
        .args([
            "--as",
            // The other account's administrator: UserA has no KMS rights until
            // the cross-account drill gives it some.
            "arn:aws:iam::444455556666:role/Admin",
            "kms",
            "create-key",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["KeyMetadata"]["AWSAccountId"], "444455556666");
    // The default principal (account 111122223333) does not see it in its list.
    assert!(e.ok(&["list-keys"])["Keys"].as_array().unwrap().is_empty());

    // UserA has only EC2 and CloudTrail rights: its own account's IAM says no.
    let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .arg("--home")
        .arg(e.home.path())
        .args([
            "--as",
            "arn:aws:iam::444455556666:user/UserA",
            "kms",
            "create-key",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(AccessDeniedException)")
            && stderr.contains("no identity-based policy allows the kms:CreateKey action"),
        "{stderr}"
    );
}
