//! Identity, audit and reload against a real kmsd binary: the trail records every
//! request (allowed or refused) in CloudTrail's shape and never plaintext (refusals
//! when the trail cannot be written: trail_durability.rs); an ordinary Unix user cannot
//! act as someone else or forge a service; the config reloads on SIGHUP and on
//! request.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::Daemon;
use kmsd::client::KmsClient;
use kmsd::protocol::*;
use serde_json::Value;

const LAB: &str = "111122223333";

fn kms_error(r: Result<impl std::fmt::Debug, kmsd::client::ClientError>) -> KmsError {
    match r {
        Err(kmsd::client::ClientError::Kms(e)) => e,
        other => panic!("expected a KMS error, got {other:?}"),
    }
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// LookupEvents through kmsd: every page's events, newest first, as
/// (LookupEvents entry, parsed CloudTrailEvent).
fn lookup(c: &KmsClient, key: &str, value: &str) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .lookup_events(LookupEventsRequest {
                lookup_attributes: vec![LookupAttribute::new(key, value)],
                next_token: token,
                ..Default::default()
            })
            .unwrap();
        let v: Value = serde_json::to_value(&page).unwrap();
        for e in v["Events"].as_array().unwrap() {
            let record: Value =
                serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
            out.push((e.clone(), record));
        }
        token = v["NextToken"].as_str().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

fn trail_bytes(home: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(home.join("trail")).unwrap().flatten() {
        if e.path().is_file() {
            all.extend(std::fs::read(e.path()).unwrap());
        }
    }
    all
}

#[test]
fn trail_records_crypto_calls_grants_and_refusals_without_plaintext() {
    let d = Daemon::start();
    let c = d.client();
    let key = c.create_key(CreateKeyRequest::default()).unwrap();
    let object_ctx = ctx(&[("aws:s3:arn", "arn:aws:s3:::imagebucket/cat.png")]);
    let dk = c
        .generate_data_key(
            &key.key_id,
            kmsd::client::DataKeySize::Spec(DataKeySpec::Aes256),
            &object_ctx,
        )
        .unwrap();
    let back = c.decrypt(&dk.ciphertext_blob, &object_ctx, None).unwrap();
    assert_eq!(&back.plaintext[..], &dk.plaintext[..]);

    // A refused CreateGrant (KeyAdminOnly has no IAM policy and the default key
    // policy only delegates to IAM) and an allowed one.
    let admin_only = d
        .client()
        .acting_as(format!("arn:aws:iam::{LAB}:user/KeyAdminOnly"));
    let grant = CreateGrantRequest {
        key_id: key.arn.clone(),
        grantee_principal: format!("arn:aws:iam::{LAB}:user/bob"),
        operations: vec!["Decrypt".into()],
        constraints: Some(GrantConstraints {
            encryption_context_equals: None,
            encryption_context_subset: Some(ctx(&[("aws:ebs:id", "vol-1")])),
        }),
        ..Default::default()
    };
    let e = kms_error(admin_only.create_grant(grant.clone()));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    let (grant_id, token) = c.create_grant(grant).unwrap();

    let events = lookup(&c, "EventSource", "kms.amazonaws.com");
    let names: Vec<&str> = events
        .iter()
        .map(|(e, _)| e["EventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CreateGrant",
            "CreateGrant",
            "Decrypt",
            "GenerateDataKey",
            "CreateKey"
        ]
    );
    let find = |name: &str, failed: bool| {
        events
            .iter()
            .find(|(e, r)| e["EventName"] == name && r.get("errorCode").is_some() == failed)
            .unwrap_or_else(|| panic!("{name} failed={failed} not in the trail"))
    };
    for name in ["GenerateDataKey", "Decrypt"] {
        let (e, r) = find(name, false);
        assert_eq!(e["Username"], "root");
        assert_eq!(e["Resources"][0]["ResourceName"], key.arn.as_str());
        assert_eq!(r["eventSource"], "kms.amazonaws.com");
        assert_eq!(
            r["userIdentity"]["arn"],
            format!("arn:aws:iam::{LAB}:user/root")
        );
        assert_eq!(r["userIdentity"]["type"], "IAMUser");
        assert_eq!(
            r["requestParameters"]["encryptionContext"]["aws:s3:arn"],
            "arn:aws:s3:::imagebucket/cat.png"
        );
        assert_eq!(r["readOnly"], true);
        assert_eq!(r["responseElements"], Value::Null);
        assert_eq!(r["resources"][0]["ARN"], key.arn.as_str());
        assert_eq!(r["additionalEventData"]["unixUid"], 0);
        assert_eq!(r["eventType"], "AwsApiCall");
        assert_eq!(r["recipientAccountId"], LAB);
    }
    let (_, dec) = find("Decrypt", false);
    assert_eq!(
        dec["requestParameters"]["encryptionAlgorithm"],
        "SYMMETRIC_DEFAULT"
    );
    let (_, gdk) = find("GenerateDataKey", false);
    assert_eq!(gdk["requestParameters"]["keySpec"], "AES_256");
    assert_eq!(gdk["requestParameters"]["keyId"], key.key_id.as_str());

    let (_, refused) = find("CreateGrant", true);
    assert_eq!(refused["errorCode"], "AccessDeniedException");
    let msg = refused["errorMessage"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "User: arn:aws:iam::{LAB}:user/KeyAdminOnly is not authorized to perform: kms:CreateGrant on resource: {}",
            key.arn
        )),
        "{msg}"
    );
    assert_eq!(
        refused["requestParameters"]["granteePrincipal"],
        format!("arn:aws:iam::{LAB}:user/bob")
    );
    assert_eq!(
        refused["requestParameters"]["constraints"]["encryptionContextSubset"]["aws:ebs:id"],
        "vol-1"
    );
    assert_eq!(refused["userIdentity"]["userName"], "KeyAdminOnly");
    assert_eq!(
        refused["additionalEventData"]["unixPrincipal"],
        format!("arn:aws:iam::{LAB}:user/root")
    );
    let (_, created) = find("CreateGrant", false);
    assert_eq!(created["responseElements"]["grantId"], grant_id.as_str());
    assert_eq!(created["requestParameters"]["keyId"], key.arn.as_str());

    // Never plaintext, never the grant token.
    let raw = trail_bytes(d.home());
    let hay = String::from_utf8_lossy(&raw);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&dk.plaintext[..]);
    assert!(!hay.contains(&b64), "plaintext (base64) in the trail");
    assert!(
        !hay.contains(&hex::encode(&dk.plaintext[..])),
        "plaintext (hex) in the trail"
    );
    assert!(!hay.contains(&token), "grant token in the trail");
    // The chain verifies.
    let report = kmsd::testing::trail::validate(&d.home().join("trail")).unwrap();
    assert!(report.is_ok(), "{report:?}");

    // LookupEvents itself is recorded (as CloudTrail does) and filters work.
    let lookups = lookup(&c, "EventSource", "cloudtrail.amazonaws.com");
    assert!(!lookups.is_empty());
    let e = kms_error(c.lookup_events(LookupEventsRequest {
        lookup_attributes: vec![LookupAttribute::new("Bogus", "x")],
        ..Default::default()
    }));
    assert_eq!(e.code, ErrorCode::InvalidLookupAttributesException);
}

/// The half of `an_ordinary_user_cannot_act_as_others_or_forge_a_service` that runs
/// as `nobody` (re-executed by the parent; does nothing when run directly).
#[test]
fn forgery_child() {
    let Ok(socket) = std::env::var("ATREST_TEST_FORGERY_SOCKET") else {
        return;
    };
    let c = KmsClient::connect(&socket).unwrap();
    let me = c.get_caller_identity().unwrap();
    assert_eq!(me.arn, format!("arn:aws:iam::{LAB}:user/nobody"));
    let voclabs = format!("arn:aws:iam::{LAB}:role/voclabs");
    let e = kms_error(c.clone().acting_as(voclabs.clone()).list_keys());
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    assert!(e.message.contains("may not act as"), "{}", e.message);
    // Who am I: answered for its own uid, refused for another (not a service), and an
    // --as claim is checked as above.
    let me = c.resolve_caller(65534, None).unwrap();
    assert_eq!(me.principal_arn, format!("arn:aws:iam::{LAB}:user/nobody"));
    assert_eq!(me.account, LAB);
    let e = kms_error(c.resolve_caller(0, None));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    assert!(
        e.message.contains("may not ask who uid 0 is"),
        "{}",
        e.message
    );
    let e = kms_error(c.resolve_caller(65534, Some(&voclabs)));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    assert!(e.message.contains("may not act as"), "{}", e.message);
    let forged = ViaService {
        service: "ec2.amazonaws.com".into(),
        on_behalf_of: Some(voclabs),
        grant_is_for_aws_resource: true,
    };
    let e = kms_error(c.clone().via(forged).create_grant(CreateGrantRequest {
        key_id: std::env::var("ATREST_TEST_KEY_ARN").unwrap(),
        grantee_principal: format!("{LAB}:aws:ec2-infrastructure:i-0123456789abcdef0"),
        operations: vec!["Decrypt".into()],
        ..Default::default()
    }));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    assert!(
        e.message.contains("not trusted as ec2.amazonaws.com"),
        "{}",
        e.message
    );
    let s3 = ViaService {
        service: "s3.amazonaws.com".into(),
        on_behalf_of: None,
        grant_is_for_aws_resource: false,
    };
    let e = kms_error(c.clone().via(s3).record_event(RecordEventRequest {
        event_source: "s3.amazonaws.com".into(),
        event_name: "GetObject".into(),
        ..Default::default()
    }));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    let e = kms_error(c.record_event(RecordEventRequest {
        event_source: "s3.amazonaws.com".into(),
        event_name: "GetObject".into(),
        ..Default::default()
    }));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    let e = kms_error(c.create_key(CreateKeyRequest::default()));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    let e = kms_error(c.reload_config());
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    let e = kms_error(c.describe_key(&std::env::var("ATREST_TEST_KEY_ARN").unwrap()));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
}

#[test]
fn an_ordinary_user_cannot_act_as_others_or_forge_a_service() {
    let home = tempfile::tempdir().unwrap();
    // Let `nobody` reach the socket: the point is what kmsd then allows it.
    std::fs::write(
        home.path().join("config.toml"),
        kmsd::testing::server::EMBEDDED_DEFAULT
            .replace("socket_mode = \"0660\"", "socket_mode = \"0666\""),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Daemon { home, child: None };
    d.spawn();
    let c = d.client();
    let key = c.create_key(CreateKeyRequest::default()).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "forgery_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ATREST_TEST_FORGERY_SOCKET", d.socket())
        .env("ATREST_TEST_KEY_ARN", &key.arn)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the child as nobody saw something unexpected:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    // Every refusal is in the trail, with the kernel-checked uid.
    let refused: Vec<(Value, Value)> = lookup(&c, "Username", "nobody")
        .into_iter()
        .filter(|(_, r)| r["additionalEventData"]["unixUid"] == 65534)
        .collect();
    let names: Vec<&str> = refused
        .iter()
        .map(|(e, _)| e["EventName"].as_str().unwrap())
        .collect();
    for n in [
        "ListKeys",
        "CreateGrant",
        "RecordEvent",
        "CreateKey",
        "ReloadConfig",
        "DescribeKey",
        "ResolveCaller",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    for (_, r) in refused
        .iter()
        .filter(|(e, _)| e["EventName"] != "GetCallerIdentity")
    {
        assert_eq!(r["errorCode"], "AccessDeniedException", "{r}");
    }
    // No s3 event was recorded for the forger.
    assert!(lookup(&c, "EventSource", "s3.amazonaws.com").is_empty());
}

/// A trusted service (kmsd's own uid in the default config) learns who the uids on
/// its socket are, `--as` included, as kmsd would admit them; a resolved caller is not
/// recorded (the service's own call is).
#[test]
fn a_trusted_service_resolves_its_callers_as_kmsd_would() {
    let d = Daemon::start();
    let c = d.client();
    let me = c.get_caller_identity().unwrap();
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let own = c.resolve_caller(uid, None).unwrap();
    assert_eq!(
        (own.principal_arn.as_str(), own.account.as_str()),
        (me.arn.as_str(), LAB)
    );
    let other = c.resolve_caller(65534, None).unwrap();
    assert_eq!(
        other.principal_arn,
        format!("arn:aws:iam::{LAB}:user/nobody")
    );
    let role = c
        .resolve_caller(uid, Some(&format!("arn:aws:iam::{LAB}:role/voclabs")))
        .unwrap();
    assert!(
        role.principal_arn
            .starts_with(&format!("arn:aws:sts::{LAB}:assumed-role/voclabs/")),
        "{}",
        role.principal_arn
    );
    // Another uid's --as claim is checked against that uid's rights, not the service's.
    let e = kms_error(c.resolve_caller(65534, Some(&format!("arn:aws:iam::{LAB}:role/voclabs"))));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    assert!(
        e.message.contains("uid 65534 (nobody) may not act as"),
        "{}",
        e.message
    );
    let recorded = lookup(&c, "EventName", "ResolveCaller");
    assert_eq!(
        recorded.len(),
        1,
        "only the refusal is recorded: {recorded:?}"
    );
    assert_eq!(recorded[0].1["errorCode"], "AccessDeniedException");
}

fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn config_reloads_on_sighup_and_on_request_and_a_bad_config_changes_nothing() {
    let d = Daemon::start();
    let c = d.client();
    let user_a = d.client().acting_as("arn:aws:iam::444455556666:user/UserA");
    assert_eq!(
        kms_error(user_a.create_key(CreateKeyRequest::default())).code,
        ErrorCode::AccessDeniedException
    );
    let dir = d.home().join("iam/444455556666/users/UserA");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kms-create.json"),
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:CreateKey","kms:DescribeKey","kms:PutKeyPolicy"],"Resource":"*"}]}"#,
    )
    .unwrap();
    // Not yet: a drop-in takes effect on reload.
    assert!(user_a.create_key(CreateKeyRequest::default()).is_err());
    let pid = d.child.as_ref().unwrap().id();
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        wait_until(|| user_a.create_key(CreateKeyRequest::default()).is_ok()),
        "SIGHUP did not reload"
    );
    let k = user_a.create_key(CreateKeyRequest::default()).unwrap();
    assert_eq!(k.aws_account_id, "444455556666");

    // A broken file is refused and the running configuration stays.
    std::fs::write(d.home().join("config.toml"), "account = \"12\"\n").unwrap();
    let e = kms_error(c.reload_config());
    assert_eq!(e.code, ErrorCode::ValidationException);
    assert!(e.message.contains("account"), "{}", e.message);
    assert!(user_a.describe_key(&k.arn).is_ok());
    std::fs::remove_file(d.home().join("config.toml")).unwrap();
    std::fs::remove_file(dir.join("kms-create.json")).unwrap();
    let summary = c.reload_config().unwrap();
    assert!(summary.contains("uid rule"), "{summary}");
    assert_eq!(
        kms_error(user_a.create_key(CreateKeyRequest::default())).code,
        ErrorCode::AccessDeniedException
    );
}

#[test]
fn trusted_services_record_their_own_events() {
    let d = Daemon::start();
    let ec2 = d.client().via(ViaService {
        service: "ec2.amazonaws.com".into(),
        on_behalf_of: Some(format!("arn:aws:iam::{LAB}:role/voclabs")),
        grant_is_for_aws_resource: false,
    });
    let id = ec2
        .record_event(RecordEventRequest {
            event_source: "ec2.amazonaws.com".into(),
            event_name: "StartInstances".into(),
            request_parameters_json: Some(
                r#"{"instancesSet":{"items":[{"instanceId":"i-0123456789abcdef0"}]}}"#.into(),
            ),
            resources: vec![(
                "AWS::EC2::Instance".into(),
                format!("arn:aws:ec2:us-east-1:{LAB}:instance/i-0123456789abcdef0"),
            )],
            ..Default::default()
        })
        .unwrap();
    // An s3 event through the ec2 door is refused.
    let e = kms_error(ec2.record_event(RecordEventRequest {
        event_source: "s3.amazonaws.com".into(),
        event_name: "PutObject".into(),
        ..Default::default()
    }));
    assert_eq!(e.code, ErrorCode::AccessDeniedException);
    let bad = kms_error(ec2.record_event(RecordEventRequest {
        event_source: "ec2.amazonaws.com".into(),
        event_name: "StopInstances".into(),
        request_parameters_json: Some("[1,2]".into()),
        ..Default::default()
    }));
    assert_eq!(bad.code, ErrorCode::ValidationException);
    let c = d.client();
    let events = lookup(&c, "EventSource", "ec2.amazonaws.com");
    assert_eq!(events.len(), 1);
    let (e, r) = &events[0];
    assert_eq!(e["EventId"], id.as_str());
    assert_eq!(e["EventName"], "StartInstances");
    assert_eq!(
        r["userIdentity"]["arn"],
        format!("arn:aws:sts::{LAB}:assumed-role/voclabs/root")
    );
    assert_eq!(r["userIdentity"]["invokedBy"], "ec2.amazonaws.com");
    assert_eq!(r["resources"][0]["type"], "AWS::EC2::Instance");
    assert_eq!(
        r["requestParameters"]["instancesSet"]["items"][0]["instanceId"],
        "i-0123456789abcdef0"
    );
}
