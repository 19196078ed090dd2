//! Every key-service operation and error, against a real kmsd through the client.

mod common;

use std::collections::BTreeMap;

use common::Daemon;
use kmsd::client::{ClientError, DataKeySize, KmsClient};
use kmsd::protocol::{
    CreateKeyRequest, DataKeySpec, EncryptionContext, ErrorCode, KeyMetadata, KeyState,
    ReEncryptRequest, RotationType, Tag,
};

const DAY: u64 = 86_400;

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn new_key(c: &KmsClient, description: &str) -> KeyMetadata {
    c.create_key(CreateKeyRequest {
        description: Some(description.into()),
        ..Default::default()
    })
    .unwrap()
}

/// The error kmsd sent (code and message).
fn err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Kms(e)) => (e.code, e.message),
        other => panic!("expected a KMS error, got {other:?}"),
    }
}

#[test]
fn create_describe_list_and_every_way_to_name_a_key() {
    let d = Daemon::start();
    let c = d.client();
    let m = c
        .create_key(CreateKeyRequest {
            description: Some("lab key".into()),
            tags: vec![Tag {
                tag_key: "env".into(),
                tag_value: "dev".into(),
            }],
            // A policy is now evaluated: it must let the creator manage the key.
            policy: Some(kmsd::api::default_policies::default_key_policy(
                "111122223333",
            )),
            ..Default::default()
        })
        .unwrap();
    assert!(uuid::Uuid::parse_str(&m.key_id).is_ok());
    assert_eq!(
        m.arn,
        format!("arn:aws:kms:us-east-1:111122223333:key/{}", m.key_id)
    );
    assert_eq!(m.aws_account_id, "111122223333");
    assert_eq!(m.key_state, KeyState::Enabled);
    assert!(m.enabled);
    assert_eq!(m.description, "lab key");
    assert_eq!(m.key_usage, "ENCRYPT_DECRYPT");
    assert_eq!(m.key_spec, "SYMMETRIC_DEFAULT");
    assert_eq!(m.origin, "AWS_KMS");
    assert_eq!(m.key_manager, "CUSTOMER");
    assert_eq!(m.deletion_date, None);
    assert_eq!(c.list_resource_tags(&m.key_id).unwrap()[0].tag_key, "env");

    c.create_alias("alias/lab", &m.key_id).unwrap();
    for name in [
        m.key_id.clone(),
        m.arn.clone(),
        "alias/lab".to_string(),
        "arn:aws:kms:us-east-1:111122223333:alias/lab".to_string(),
    ] {
        assert_eq!(c.describe_key(&name).unwrap().key_id, m.key_id, "{name}");
        let e = c.encrypt(&name, b"x", &EncryptionContext::new()).unwrap();
        assert_eq!(e.key_id, m.arn, "responses name keys by ARN");
    }
    let other = new_key(&c, "second");
    let keys = c.list_keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.key_arn == other.arn));

    c.update_key_description(&m.key_id, "renamed").unwrap();
    assert_eq!(c.describe_key(&m.key_id).unwrap().description, "renamed");
}

#[test]
fn not_found_messages() {
    let d = Daemon::start();
    let c = d.client();
    assert_eq!(
        err(c.describe_key("not-a-key")),
        (
            ErrorCode::NotFoundException,
            "Invalid keyId 'not-a-key'".into()
        )
    );
    let id = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";
    let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
    assert_eq!(
        err(c.describe_key(id)),
        (
            ErrorCode::NotFoundException,
            format!("Key '{arn}' does not exist")
        )
    );
    assert_eq!(
        err(c.encrypt(&arn, b"x", &EncryptionContext::new())),
        (
            ErrorCode::NotFoundException,
            format!("Key '{arn}' does not exist")
        )
    );
    let (code, msg) = err(c.describe_key("alias/missing"));
    assert_eq!(code, ErrorCode::NotFoundException);
    assert_eq!(
        msg,
        "Alias arn:aws:kms:us-east-1:111122223333:alias/missing is not found."
    );
}

#[test]
fn encrypt_decrypt_limits_context_and_incorrect_key() {
    let d = Daemon::start();
    let c = d.client();
    let k = new_key(&c, "a");
    let k2 = new_key(&c, "b");
    let cx = ctx(&[("purpose", "test"), ("dept", "it")]);
    let e = c.encrypt(&k.key_id, b"hello world", &cx).unwrap();
    assert_eq!(e.encryption_algorithm, "SYMMETRIC_DEFAULT");
    // No key ID needed: the blob names its key.
    let p = c.decrypt(&e.ciphertext_blob, &cx, None).unwrap();
    assert_eq!(&p.plaintext[..], b"hello world");
    assert_eq!(p.key_id, k.arn);
    // Context is order independent (the map is canonical) but must match exactly.
    let reordered: EncryptionContext = [("dept", "it"), ("purpose", "test")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect::<BTreeMap<_, _>>();
    assert!(c.decrypt(&e.ciphertext_blob, &reordered, None).is_ok());
    for wrong in [
        ctx(&[("purpose", "test")]),
        ctx(&[("purpose", "prod"), ("dept", "it")]),
        EncryptionContext::new(),
    ] {
        assert_eq!(
            err(c.decrypt(&e.ciphertext_blob, &wrong, None)),
            (ErrorCode::InvalidCiphertextException, String::new())
        );
    }
    // A given key ID must match the blob's key.
    assert_eq!(
        err(c.decrypt(&e.ciphertext_blob, &cx, Some(&k2.key_id))),
        (
            ErrorCode::IncorrectKeyException,
            "The key ID in the request does not identify a CMK that can perform this operation."
                .into()
        )
    );
    c.create_alias("alias/a", &k.key_id).unwrap();
    assert!(c.decrypt(&e.ciphertext_blob, &cx, Some("alias/a")).is_ok());
    // Plaintext size limits.
    assert!(c
        .encrypt(&k.key_id, &[7u8; 4096], &EncryptionContext::new())
        .is_ok());
    assert_eq!(
        err(c.encrypt(&k.key_id, &[7u8; 4097], &EncryptionContext::new())),
        (ErrorCode::ValidationException, "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096".into())
    );
    assert_eq!(
        err(c.encrypt(&k.key_id, b"", &EncryptionContext::new())).0,
        ErrorCode::ValidationException
    );
}

#[test]
fn tampered_and_truncated_blobs_are_invalid_ciphertext() {
    let d = Daemon::start();
    let c = d.client();
    let k = new_key(&c, "t");
    let cx = ctx(&[("a", "b")]);
    let blob = c
        .encrypt(&k.key_id, b"sensitive", &cx)
        .unwrap()
        .ciphertext_blob;
    for i in 0..blob.len() {
        let mut t = blob.clone();
        t[i] ^= 0x01;
        assert_eq!(
            err(c.decrypt(&t, &cx, None)),
            (ErrorCode::InvalidCiphertextException, String::new()),
            "flipped byte {i}"
        );
    }
    for n in 1..blob.len() {
        assert_eq!(
            err(c.decrypt(&blob[..n], &cx, None)),
            (ErrorCode::InvalidCiphertextException, String::new()),
            "truncated to {n}"
        );
    }
    assert_eq!(
        err(c.decrypt(b"garbage that is not a blob", &cx, None)),
        (ErrorCode::InvalidCiphertextException, String::new())
    );
    // The daemon is still fine.
    assert!(c.decrypt(&blob, &cx, None).is_ok());
}

#[test]
fn disabled_and_pending_deletion_refuse_crypto_with_aws_messages() {
    let d = Daemon::start();
    let c = d.client();
    let k = new_key(&c, "s");
    let none = EncryptionContext::new();
    let blob = c.encrypt(&k.key_id, b"x", &none).unwrap().ciphertext_blob;

    c.disable_key(&k.key_id).unwrap();
    let m = c.describe_key(&k.key_id).unwrap();
    assert_eq!((m.key_state, m.enabled), (KeyState::Disabled, false));
    let disabled = (
        ErrorCode::DisabledException,
        format!("{} is disabled.", k.arn),
    );
    assert_eq!(err(c.encrypt(&k.key_id, b"x", &none)), disabled);
    assert_eq!(err(c.decrypt(&blob, &none, None)), disabled);
    assert_eq!(
        err(c.generate_data_key(&k.key_id, DataKeySize::Spec(DataKeySpec::Aes256), &none)),
        disabled
    );
    assert_eq!(
        err(c.generate_data_key_without_plaintext(
            &k.key_id,
            DataKeySize::Spec(DataKeySpec::Aes256),
            &none
        )),
        disabled
    );
    assert_eq!(err(c.enable_key_rotation(&k.key_id, None)), disabled);
    c.enable_key(&k.key_id).unwrap();
    assert!(c.decrypt(&blob, &none, None).is_ok());

    let s = c.schedule_key_deletion(&k.key_id, None).unwrap();
    assert_eq!(s.pending_window_in_days, 30);
    assert_eq!(s.key_state, KeyState::PendingDeletion);
    assert_eq!(s.key_id, k.arn);
    let m = c.describe_key(&k.key_id).unwrap();
    assert_eq!(m.key_state, KeyState::PendingDeletion);
    assert!(!m.enabled);
    let expected = m.creation_date.as_millis() + 30 * 86_400_000;
    let got = m.deletion_date.unwrap().as_millis();
    assert!(
        (got - expected).abs() < 120_000,
        "deletion date {got} vs {expected}"
    );
    let pending = (
        ErrorCode::KMSInvalidStateException,
        format!("{} is pending deletion.", k.arn),
    );
    assert_eq!(err(c.encrypt(&k.key_id, b"x", &none)), pending);
    assert_eq!(err(c.decrypt(&blob, &none, None)), pending);
    assert_eq!(err(c.enable_key(&k.key_id)), pending);
    assert_eq!(err(c.disable_key(&k.key_id)), pending);
    assert_eq!(err(c.schedule_key_deletion(&k.key_id, Some(7))), pending);
    assert_eq!(err(c.create_alias("alias/late", &k.key_id)), pending);
    // Reads still work.
    assert!(c.get_key_rotation_status(&k.key_id).is_ok());

    assert_eq!(c.cancel_key_deletion(&k.key_id).unwrap(), k.arn);
    let m = c.describe_key(&k.key_id).unwrap();
    assert_eq!(
        m.key_state,
        KeyState::Disabled,
        "cancel leaves the key Disabled, as AWS"
    );
    assert_eq!(m.deletion_date, None);
    assert_eq!(
        err(c.cancel_key_deletion(&k.key_id)),
        (
            ErrorCode::KMSInvalidStateException,
            format!("{} is not pending deletion.", k.arn)
        )
    );
    for bad in [0, 6, 31, 365] {
        assert_eq!(
            err(c.schedule_key_deletion(&k.key_id, Some(bad))).0,
            ErrorCode::ValidationException,
            "window {bad}"
        );
    }
}

#[test]
fn deletion_really_happens_after_the_window() {
    let d = Daemon::start();
    let c = d.client();
    let doomed = new_key(&c, "doomed");
    let kept = new_key(&c, "kept");
    c.create_alias("alias/doomed", &doomed.key_id).unwrap();
    c.create_alias("alias/doomed2", &doomed.key_id).unwrap();
    c.create_alias("alias/kept", &kept.key_id).unwrap();
    let none = EncryptionContext::new();
    let blob = c
        .encrypt(&doomed.key_id, b"x", &none)
        .unwrap()
        .ciphertext_blob;
    c.schedule_key_deletion(&doomed.key_id, Some(7)).unwrap();
    c.advance_clock(6 * DAY).unwrap();
    assert_eq!(
        c.describe_key(&doomed.key_id).unwrap().key_state,
        KeyState::PendingDeletion
    );
    c.advance_clock(DAY + 60).unwrap();
    assert_eq!(
        err(c.describe_key(&doomed.key_id)),
        (
            ErrorCode::NotFoundException,
            format!("Key '{}' does not exist", doomed.arn)
        )
    );
    let aliases: Vec<String> = c
        .list_aliases(None)
        .unwrap()
        .into_iter()
        .map(|a| a.alias_name)
        .collect();
    assert_eq!(aliases, vec!["alias/kept".to_string()]);
    assert!(!d
        .home()
        .join("kms/keys")
        .join(format!("{}.json", doomed.key_id))
        .exists());
    assert_eq!(
        err(c.decrypt(&blob, &none, None)),
        (ErrorCode::InvalidCiphertextException, String::new())
    );
    assert_eq!(c.list_keys().unwrap().len(), 1);
    // The deletion survives a restart (nothing comes back).
    let mut d = d;
    d.restart();
    let c = d.client();
    assert!(c.describe_key(&doomed.key_id).is_err());
    assert_eq!(c.list_aliases(None).unwrap().len(), 1);
}

#[test]
fn alias_rules() {
    let d = Daemon::start();
    let c = d.client();
    let a = new_key(&c, "a");
    let b = new_key(&c, "b");
    c.create_alias("alias/app/key_1-x", &a.key_id).unwrap();
    assert_eq!(
        err(c.create_alias("alias/app/key_1-x", &b.key_id)),
        (
            ErrorCode::AlreadyExistsException,
            "An alias with the name arn:aws:kms:us-east-1:111122223333:alias/app/key_1-x already exists".into()
        )
    );
    let (code, msg) = err(c.create_alias("app", &a.key_id));
    assert_eq!(code, ErrorCode::ValidationException);
    assert!(
        msg.starts_with("Alias must start with the prefix \"alias/\"."),
        "{msg}"
    );
    for bad in ["alias/has space", "alias/dot.ted", "alias/"] {
        let (code, msg) = err(c.create_alias(bad, &a.key_id));
        assert_eq!(code, ErrorCode::ValidationException, "{bad}");
        assert!(msg.contains("regular expression"), "{bad}: {msg}");
    }
    let long = format!("alias/{}", "x".repeat(251));
    assert!(err(c.create_alias(&long, &a.key_id)).1.contains("256"));
    assert!(c.create_alias(&long[..256], &a.key_id).is_ok());
    let (code, msg) = err(c.create_alias("alias/aws/ebs", &a.key_id));
    assert_eq!(code, ErrorCode::ValidationException);
    assert!(msg.contains("reserved"));
    assert_eq!(
        err(c.create_alias("alias/x", "alias/app/key_1-x")).0,
        ErrorCode::ValidationException
    );
    assert_eq!(
        err(c.create_alias("alias/x", "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6")).0,
        ErrorCode::NotFoundException
    );

    // UpdateAlias moves the name; new ciphertexts go to the new key.
    c.update_alias("alias/app/key_1-x", &b.key_id).unwrap();
    let e = c
        .encrypt("alias/app/key_1-x", b"x", &EncryptionContext::new())
        .unwrap();
    assert_eq!(e.key_id, b.arn);
    let listed = c.list_aliases(Some(&b.key_id)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].target_key_id, b.key_id);
    assert_eq!(
        listed[0].alias_arn,
        "arn:aws:kms:us-east-1:111122223333:alias/app/key_1-x"
    );
    assert_eq!(
        err(c.update_alias("alias/nope", &b.key_id)),
        (
            ErrorCode::NotFoundException,
            "Alias arn:aws:kms:us-east-1:111122223333:alias/nope is not found.".into()
        )
    );
    c.delete_alias("alias/app/key_1-x").unwrap();
    assert_eq!(
        err(c.delete_alias("alias/app/key_1-x")).0,
        ErrorCode::NotFoundException
    );
    assert_eq!(
        err(c.describe_key("alias/app/key_1-x")).0,
        ErrorCode::NotFoundException
    );
    // Aliases survive a restart.
    let mut d = d;
    d.restart();
    let c = d.client();
    assert_eq!(c.describe_key(&long[..256]).unwrap().key_id, a.key_id);
}

#[test]
fn re_encrypt_and_data_keys() {
    let d = Daemon::start();
    let c = d.client();
    let a = new_key(&c, "a");
    let b = new_key(&c, "b");
    let src_cx = ctx(&[("from", "a")]);
    let dst_cx = ctx(&[("to", "b")]);
    let blob = c
        .encrypt(&a.key_id, b"move me", &src_cx)
        .unwrap()
        .ciphertext_blob;
    let r = c
        .re_encrypt(ReEncryptRequest {
            ciphertext_blob: blob.clone(),
            source_encryption_context: src_cx.clone(),
            source_key_id: None,
            destination_key_id: b.key_id.clone(),
            destination_encryption_context: dst_cx.clone(),
            grant_tokens: vec![],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (r.source_key_id.as_str(), r.key_id.as_str()),
        (a.arn.as_str(), b.arn.as_str())
    );
    let p = c.decrypt(&r.ciphertext_blob, &dst_cx, None).unwrap();
    assert_eq!(
        (&p.plaintext[..], p.key_id.as_str()),
        (&b"move me"[..], b.arn.as_str())
    );
    let wrong_source = c.re_encrypt(ReEncryptRequest {
        ciphertext_blob: blob.clone(),
        source_encryption_context: src_cx.clone(),
        source_key_id: Some(b.key_id.clone()),
        destination_key_id: b.key_id.clone(),
        destination_encryption_context: dst_cx.clone(),
        grant_tokens: vec![],
        ..Default::default()
    });
    assert_eq!(err(wrong_source).0, ErrorCode::IncorrectKeyException);
    c.disable_key(&b.key_id).unwrap();
    let to_disabled = c.re_encrypt(ReEncryptRequest {
        ciphertext_blob: blob,
        source_encryption_context: src_cx,
        source_key_id: None,
        destination_key_id: b.key_id.clone(),
        destination_encryption_context: dst_cx,
        grant_tokens: vec![],
        ..Default::default()
    });
    assert_eq!(err(to_disabled).0, ErrorCode::DisabledException);

    let cx = ctx(&[("aws:ebs:id", "vol-1")]);
    for (size, len) in [
        (DataKeySize::Spec(DataKeySpec::Aes256), 32),
        (DataKeySize::Spec(DataKeySpec::Aes128), 16),
        (DataKeySize::Bytes(64), 64),
        (DataKeySize::Bytes(1), 1),
    ] {
        let g = c.generate_data_key(&a.key_id, size, &cx).unwrap();
        assert_eq!(g.plaintext.len(), len);
        assert_eq!(g.key_id, a.arn);
        let back = c.decrypt(&g.ciphertext_blob, &cx, None).unwrap();
        assert_eq!(back.plaintext, g.plaintext);
        let w = c
            .generate_data_key_without_plaintext(&a.key_id, size, &cx)
            .unwrap();
        assert_eq!(
            c.decrypt(&w.ciphertext_blob, &cx, None)
                .unwrap()
                .plaintext
                .len(),
            len
        );
    }
    let g1 = c
        .generate_data_key(&a.key_id, DataKeySize::Bytes(32), &cx)
        .unwrap();
    let g2 = c
        .generate_data_key(&a.key_id, DataKeySize::Bytes(32), &cx)
        .unwrap();
    assert_ne!(g1.plaintext, g2.plaintext, "data keys are random");
    for bad in [DataKeySize::Bytes(0), DataKeySize::Bytes(1025)] {
        assert_eq!(
            err(c.generate_data_key(&a.key_id, bad, &cx)).0,
            ErrorCode::ValidationException
        );
    }
    let neither = c.call(kmsd::protocol::Request::GenerateDataKey(
        kmsd::protocol::GenerateDataKeyRequest {
            key_id: a.key_id.clone(),
            key_spec: None,
            number_of_bytes: None,
            encryption_context: cx,
            grant_tokens: vec![],
        },
    ));
    assert_eq!(
        err(neither),
        (
            ErrorCode::ValidationException,
            "Please specify either number of bytes or key spec.".into()
        )
    );
}

#[test]
fn rotation_keeps_old_versions_decryptable() {
    let mut d = Daemon::start();
    let c = d.client();
    let k = new_key(&c, "r");
    let none = EncryptionContext::new();
    let s = c.get_key_rotation_status(&k.key_id).unwrap();
    assert!(!s.key_rotation_enabled);
    assert_eq!(
        err(c.enable_key_rotation(&k.key_id, Some(89))).0,
        ErrorCode::ValidationException
    );
    assert_eq!(
        err(c.enable_key_rotation(&k.key_id, Some(2561))).0,
        ErrorCode::ValidationException
    );
    c.enable_key_rotation(&k.key_id, None).unwrap();
    let s = c.get_key_rotation_status(&k.key_id).unwrap();
    assert!(s.key_rotation_enabled);
    assert_eq!(s.rotation_period_in_days, Some(365));
    assert!(s.next_rotation_date.is_some());

    let v1 = c.encrypt(&k.key_id, b"one", &none).unwrap().ciphertext_blob;
    assert_eq!(c.rotate_key_on_demand(&k.key_id).unwrap(), k.arn);
    let v2 = c.encrypt(&k.key_id, b"two", &none).unwrap().ciphertext_blob;
    assert_eq!(kmsd::testing::blob::parse(&v1).unwrap().backing_version, 1);
    assert_eq!(kmsd::testing::blob::parse(&v2).unwrap().backing_version, 2);
    assert_eq!(
        c.describe_key(&k.key_id)
            .unwrap()
            .current_key_material_version,
        2
    );
    let rot = c.list_key_rotations(&k.key_id).unwrap();
    assert_eq!(rot.len(), 1);
    assert_eq!(rot[0].rotation_type, RotationType::OnDemand);

    // Automatic rotation when the period passes (kmsd's clock moved).
    c.disable_key_rotation(&k.key_id).unwrap();
    assert!(
        !c.get_key_rotation_status(&k.key_id)
            .unwrap()
            .key_rotation_enabled
    );
    c.enable_key_rotation(&k.key_id, Some(90)).unwrap();
    c.advance_clock(91 * DAY).unwrap();
    assert_eq!(
        c.describe_key(&k.key_id)
            .unwrap()
            .current_key_material_version,
        3
    );
    let rot = c.list_key_rotations(&k.key_id).unwrap();
    assert_eq!(rot.last().unwrap().rotation_type, RotationType::Automatic);
    let v3 = c
        .encrypt(&k.key_id, b"three", &none)
        .unwrap()
        .ciphertext_blob;
    assert_eq!(kmsd::testing::blob::parse(&v3).unwrap().backing_version, 3);

    d.restart();
    let c = d.client();
    for (blob, pt) in [(v1, "one"), (v2, "two"), (v3, "three")] {
        assert_eq!(
            &c.decrypt(&blob, &none, None).unwrap().plaintext[..],
            pt.as_bytes()
        );
    }
}

#[test]
fn restart_keeps_every_key_and_state() {
    let mut d = Daemon::start();
    let c = d.client();
    let a = new_key(&c, "a");
    let b = new_key(&c, "b");
    let p = new_key(&c, "p");
    c.disable_key(&b.key_id).unwrap();
    c.schedule_key_deletion(&p.key_id, Some(10)).unwrap();
    c.create_alias("alias/a", &a.key_id).unwrap();
    let cx = ctx(&[("k", "v")]);
    let blob = c
        .encrypt("alias/a", b"persist", &cx)
        .unwrap()
        .ciphertext_blob;
    let before = c.describe_key(&p.key_id).unwrap();
    drop(c);
    d.restart();
    let c = d.client();
    assert_eq!(c.list_keys().unwrap().len(), 3);
    assert_eq!(
        c.describe_key(&a.key_id).unwrap().key_state,
        KeyState::Enabled
    );
    assert_eq!(
        c.describe_key(&b.key_id).unwrap().key_state,
        KeyState::Disabled
    );
    assert_eq!(c.describe_key(&p.key_id).unwrap(), before);
    assert_eq!(
        &c.decrypt(&blob, &cx, None).unwrap().plaintext[..],
        b"persist"
    );
    assert_eq!(c.describe_key("alias/a").unwrap().key_id, a.key_id);
    // The root key file is 0600 and key files hold no plaintext material marker.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.home().join("kms/root.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let sock = std::fs::metadata(d.socket()).unwrap().permissions().mode();
    assert_eq!(sock & 0o777, 0o660);
}

#[test]
fn clock_control_is_refused_without_the_flag() {
    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .arg("--home")
        .arg(home.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sock = home.path().join("kmsd.sock");
    common::wait_for_socket(&sock);
    let c = KmsClient::connect(&sock).unwrap();
    assert_eq!(
        err(c.advance_clock(DAY)).0,
        ErrorCode::AccessDeniedException
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn unreachable_daemon_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let e = KmsClient::connect(home.path().join("kmsd.sock")).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ClientError::Unreachable { .. }));
    assert!(
        msg.starts_with(&format!(
            "cannot reach kmsd at {}: is it running? start it with `kmsd --home {}` or `atrest up`",
            home.path().join("kmsd.sock").display(),
            home.path().display()
        )),
        "{msg}"
    );
}

#[test]
fn config_socket_region_account_and_act_as() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("custom.toml");
    std::fs::write(
        &cfg,
        r#"region = "eu-west-3"
account = "999988887777"
[kmsd]
socket_mode = "0600"

# A custom config replaces the default: it must give this uid its rights again.
[[uids]]
uid = "self"
policies = ["Admin"]
may_act_as = ["arn:aws:iam::444455556666:user/*"]

[accounts.444455556666.users.UserA]
policies = ["Admin"]

[policies.Admin]
document = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
"#,
    )
    .unwrap();
    let sock = home.path().join("elsewhere.sock");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .arg("--home")
        .arg(home.path())
        .arg("--socket")
        .arg(&sock)
        .arg("--config")
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_socket(&sock);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let c = KmsClient::connect(&sock).unwrap();
    let mine = new_key(&c, "mine");
    assert!(mine
        .arn
        .starts_with("arn:aws:kms:eu-west-3:999988887777:key/"));
    // Acting as a principal of another account creates keys in that account.
    let other = KmsClient::connect(&sock)
        .unwrap()
        .acting_as("arn:aws:iam::444455556666:user/UserA");
    let theirs = new_key(&other, "theirs");
    assert!(theirs
        .arn
        .starts_with("arn:aws:kms:eu-west-3:444455556666:key/"));
    assert_eq!(theirs.aws_account_id, "444455556666");
    // A bare key ID resolves in the caller's own account only; the ARN names it.
    assert_eq!(
        err(c.describe_key(&theirs.key_id)).0,
        ErrorCode::NotFoundException
    );
    // The ARN finds it, and then the other account's key policy decides: it does not
    // name account 999988887777.
    let (code, message) = err(c.describe_key(&theirs.arn));
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert!(
        message.ends_with("because no resource-based policy allows the kms:DescribeKey action"),
        "{message}"
    );
    assert_eq!(
        other.describe_key(&theirs.arn).unwrap().key_id,
        theirs.key_id
    );
    assert_eq!(c.list_keys().unwrap().len(), 1);
    assert_eq!(other.list_keys().unwrap().len(), 1);
    // Aliases are per account.
    c.create_alias("alias/same", &mine.key_id).unwrap();
    other.create_alias("alias/same", &theirs.key_id).unwrap();
    assert_eq!(
        other.describe_key("alias/same").unwrap().key_id,
        theirs.key_id
    );
    assert_eq!(c.describe_key("alias/same").unwrap().key_id, mine.key_id);
    let bad = KmsClient::connect(&sock).unwrap().acting_as("bob");
    assert_eq!(err(bad.list_keys()).0, ErrorCode::ValidationException);
    child.kill().unwrap();
    child.wait().unwrap();

    // A bad config file stops kmsd with a message naming the problem.
    std::fs::write(&cfg, "account = \"12\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .arg("--home")
        .arg(home.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be 12 digits"));
}

#[test]
fn list_pagination_over_the_wire() {
    use kmsd::protocol::{ListKeysRequest, ListKeysResponse, Request, Response};
    let d = Daemon::start();
    let c = d.client();
    for i in 0..5 {
        new_key(&c, &format!("k{i}"));
    }
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let Response::ListKeys(ListKeysResponse {
            keys,
            next_marker,
            truncated,
        }) = c
            .call(Request::ListKeys(ListKeysRequest {
                limit: Some(2),
                marker: marker.take(),
            }))
            .unwrap()
        else {
            panic!("not a ListKeys response")
        };
        assert!(keys.len() <= 2);
        assert_eq!(truncated, next_marker.is_some());
        seen.extend(keys.into_iter().map(|k| k.key_id));
        match next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    let mut all: Vec<String> = c
        .list_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    all.sort();
    assert_eq!(seen, all);
    assert_eq!(seen.len(), 5);
    let bad = c.call(Request::ListKeys(ListKeysRequest {
        limit: Some(0),
        marker: None,
    }));
    assert_eq!(err(bad).0, ErrorCode::ValidationException);
}
