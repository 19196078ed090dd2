//! The AWS SDK for Rust (`aws-sdk-kms`, `aws-sdk-sts`, at their defaults: standard
//! retries, keep-alive connection pool, SigV4) against atrest's endpoint: typed results,
//! typed errors, paginators, temporary credentials, and many clients at once.

mod s3_common;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState};
use s3_common::Lab;

/// A KMS and an STS client for the endpoint, signing with these credentials.
fn clients(
    lab: &Lab,
    key_id: &str,
    secret: &str,
    token: Option<&str>,
) -> (aws_sdk_kms::Client, aws_sdk_sts::Client) {
    let creds = aws_sdk_kms::config::Credentials::new(
        key_id,
        secret,
        token.map(str::to_string),
        None,
        "atrest-test",
    );
    let url = lab.url("");
    let region = aws_sdk_kms::config::Region::new("us-east-1");
    let kms = aws_sdk_kms::Config::builder()
        .endpoint_url(&url)
        .region(region.clone())
        .credentials_provider(creds.clone())
        .build();
    let sts = aws_sdk_sts::Config::builder()
        .endpoint_url(&url)
        .region(region)
        .credentials_provider(creds)
        .build();
    (
        aws_sdk_kms::Client::from_conf(kms),
        aws_sdk_sts::Client::from_conf(sts),
    )
}

/// Clients signing as `atrest env`'s principal.
fn own_clients(lab: &Lab) -> (aws_sdk_kms::Client, aws_sdk_sts::Client) {
    let (id, secret) = lab.access_key();
    clients(lab, &id, &secret, None)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn rust_sdk_drives_kms_with_typed_results_errors_and_paginators() {
    let lab = Lab::start();
    let (kms, sts) = own_clients(&lab);
    runtime().block_on(async {
        let who = sts
            .get_caller_identity()
            .send()
            .await
            .expect("GetCallerIdentity");
        assert_eq!(who.account(), Some("111122223333"));
        assert!(who
            .arn()
            .is_some_and(|a| a.starts_with("arn:aws:iam::111122223333:user/")));

        let meta = kms
            .create_key()
            .description("rust sdk")
            .send()
            .await
            .expect("CreateKey")
            .key_metadata
            .expect("KeyMetadata");
        let key = meta.key_id().to_string();
        assert_eq!(meta.key_state(), Some(&KeyState::Enabled));
        kms.create_alias()
            .alias_name("alias/rust-sdk")
            .target_key_id(&key)
            .send()
            .await
            .expect("CreateAlias");

        let ct = kms
            .encrypt()
            .key_id("alias/rust-sdk")
            .plaintext(Blob::new(b"from the rust sdk".to_vec()))
            .encryption_context("app", "sdk")
            .send()
            .await
            .expect("Encrypt");
        let blob = ct.ciphertext_blob().expect("CiphertextBlob").clone();
        let pt = kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("app", "sdk")
            .send()
            .await
            .expect("Decrypt");
        assert_eq!(
            pt.plaintext().map(Blob::as_ref),
            Some(&b"from the rust sdk"[..])
        );
        assert_eq!(pt.key_id(), Some(meta.arn().expect("Arn")));
        // The wrong context: InvalidCiphertextException, typed.
        let e = kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .expect_err("no context");
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_invalid_ciphertext_exception()),
            "{e:?}"
        );
        // The SDK's ciphertext opens over kmsd's socket (atrest's own CLI).
        let file = lab.home_path().join("sdk.ct");
        std::fs::write(&file, blob.as_ref()).expect("write");
        let socket = lab.ok(&[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &format!("fileb://{}", file.display()),
            "--encryption-context",
            "app=sdk",
            "--query",
            "Plaintext",
            "--output",
            "text",
        ]);
        assert_eq!(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, socket.trim())
                .expect("b64"),
            b"from the rust sdk"
        );

        let dk = kms
            .generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .expect("GenerateDataKey");
        let plain = dk.plaintext().expect("Plaintext").as_ref().to_vec();
        assert_eq!(plain.len(), 32);
        let back = kms
            .decrypt()
            .ciphertext_blob(dk.ciphertext_blob().expect("CiphertextBlob").clone())
            .send()
            .await
            .expect("Decrypt data key");
        assert_eq!(back.plaintext().map(|b| b.as_ref().to_vec()), Some(plain));

        // The paginator follows NextMarker/Truncated one key a page.
        for _ in 0..3 {
            kms.create_key().send().await.expect("CreateKey");
        }
        let mut pages = kms.list_keys().limit(1).into_paginator().send();
        let (mut n, mut ids) = (0, Vec::new());
        while let Some(page) = pages.next().await {
            let page = page.expect("ListKeys page");
            n += 1;
            ids.extend(
                page.keys()
                    .iter()
                    .filter_map(|k| k.key_id().map(str::to_string)),
            );
        }
        assert!(n >= 4, "{n} pages");
        assert!(ids.contains(&key), "{ids:?}");
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "a key twice: {ids:?}");

        // Typed errors for the key's states.
        kms.disable_key()
            .key_id(&key)
            .send()
            .await
            .expect("DisableKey");
        let encrypt_x = || {
            kms.encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
        };
        let e = encrypt_x().await.expect_err("disabled");
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_disabled_exception()),
            "{e:?}"
        );
        kms.schedule_key_deletion()
            .key_id(&key)
            .pending_window_in_days(7)
            .send()
            .await
            .expect("ScheduleKeyDeletion");
        let e = kms
            .describe_key()
            .key_id(&key)
            .send()
            .await
            .expect("DescribeKey")
            .key_metadata
            .expect("KeyMetadata");
        assert_eq!(e.key_state(), Some(&KeyState::PendingDeletion));
        let e = encrypt_x().await.expect_err("pending deletion");
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_kms_invalid_state_exception()),
            "{e:?}"
        );
        let e = kms
            .describe_key()
            .key_id("alias/nothing-here")
            .send()
            .await
            .expect_err("no such alias");
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()),
            "{e:?}"
        );
    });

    // A wrong secret and an unknown key id: AWS's codes through the SDK's error metadata.
    let (id, _) = lab.access_key();
    let (bad_secret, _) = clients(&lab, &id, "0000000000000000000000000000000000000000", None);
    let (unknown, _) = clients(
        &lab,
        "AKIAAAAAAAAAAAAAAAAA",
        "0000000000000000000000000000000000000000",
        None,
    );
    runtime().block_on(async {
        let e = bad_secret.list_keys().send().await.expect_err("bad secret");
        assert_eq!(e.code(), Some("InvalidSignatureException"), "{e:?}");
        let e = unknown.list_keys().send().await.expect_err("unknown key");
        assert_eq!(e.code(), Some("UnrecognizedClientException"), "{e:?}");
    });
}

#[test]
fn rust_sdk_assumes_a_role_and_uses_its_session() {
    let lab = Lab::start();
    let (_, sts) = own_clients(&lab);
    let rt = runtime();
    let creds = rt.block_on(async {
        let r = sts
            .assume_role()
            .role_arn("arn:aws:iam::111122223333:role/voclabs")
            .role_session_name("sdk")
            .duration_seconds(900)
            .send()
            .await
            .expect("AssumeRole");
        assert_eq!(
            r.assumed_role_user().map(|u| u.arn()),
            Some("arn:aws:sts::111122223333:assumed-role/voclabs/sdk")
        );
        r.credentials.expect("Credentials")
    });
    assert!(creds.access_key_id().starts_with("ASIA"));
    let (kms, sts) = clients(
        &lab,
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token()),
    );
    rt.block_on(async {
        let who = sts
            .get_caller_identity()
            .send()
            .await
            .expect("as the session");
        assert_eq!(
            who.arn(),
            Some("arn:aws:sts::111122223333:assumed-role/voclabs/sdk")
        );
        let key = kms
            .create_key()
            .send()
            .await
            .expect("CreateKey as the role")
            .key_metadata
            .expect("KeyMetadata")
            .key_id()
            .to_string();
        kms.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"role".to_vec()))
            .send()
            .await
            .expect("Encrypt as the role");
    });
}

#[test]
fn rust_sdk_eight_tasks_decrypt_at_once_on_one_client() {
    let lab = Lab::start();
    let (kms, _) = own_clients(&lab);
    let rt = runtime();
    rt.block_on(async {
        let key = kms
            .create_key()
            .send()
            .await
            .expect("CreateKey")
            .key_metadata
            .expect("KeyMetadata")
            .key_id()
            .to_string();
        let blob = kms
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"many".to_vec()))
            .send()
            .await
            .expect("Encrypt")
            .ciphertext_blob
            .expect("CiphertextBlob");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (kms, blob) = (kms.clone(), blob.clone());
                tokio::spawn(async move {
                    for _ in 0..25 {
                        let r = kms
                            .decrypt()
                            .ciphertext_blob(blob.clone())
                            .send()
                            .await
                            .expect("Decrypt");
                        assert_eq!(r.plaintext().map(Blob::as_ref), Some(&b"many"[..]));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
}
