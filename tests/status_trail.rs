//! `atrest status` reports the trail's durability and, when a group fdatasync failed,
//! that kmsd refuses requests until one succeeds; kmsd refuses every key use meanwhile
//! and recovers by itself.
//!
//! kmsd runs in this test process (`kmsd::testing::server::start`) with its trail opened with a
//! fault hook that fails fdatasync on demand (no real disk fails on cue); the CLI is the
//! built `atrest` binary.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmsd::client::{ClientError, KmsClient};
use kmsd::protocol::{CreateKeyRequest, EncryptionContext, ErrorCode};
use kmsd::testing::server::TrailAuditSink;
use kmsd::testing::trail::{IoStep, SyncMode, TrailConfig};
use serde_json::Value;

fn status(home: &std::path::Path) -> (Value, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .arg("--home")
        .arg(home)
        .arg("status")
        .output()
        .unwrap();
    // Exit 3: the other daemons are not running; only the output matters here.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failed_group_fdatasync_refuses_key_use_and_shows_in_atrest_status_until_it_recovers() {
    let home = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let hook_flag = Arc::clone(&fail);
    let trail = TrailConfig {
        sync: SyncMode::DEFAULT,
        fault: Some(Arc::new(move |step| {
            if step == IoStep::Sync && hook_flag.load(Ordering::SeqCst) {
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            } else {
                Ok(())
            }
        })),
        ..TrailConfig::new(home.path().join("trail"))
    };
    let mut opts = kmsd::testing::server::ServerOptions::new(home.path());
    opts.audit = Some(Arc::new(TrailAuditSink::open_with(trail).unwrap()));
    let server = kmsd::testing::server::start(opts).unwrap();
    let c = KmsClient::connect(&server.socket).unwrap();
    let key = c.create_key(CreateKeyRequest::default()).unwrap().key_id;
    let none = EncryptionContext::new();
    let blob = c.encrypt(&key, b"secret", &none).unwrap().ciphertext_blob;

    let (v, stderr) = status(home.path());
    let t = &v["Kmsd"]["Trail"];
    assert_eq!(t["Sync"], "interval", "{v}");
    assert_eq!(t["SyncIntervalMs"], 20);
    assert_eq!(t["Healthy"], true);
    assert!(t["Events"].as_u64().unwrap() >= 2);
    assert!(!stderr.contains("trail"), "{stderr}");
    assert!(v["Kmsd"]["Connections"]["Max"].as_u64().unwrap() >= 1);

    // The disk starts failing fdatasync: the next group sync fails, and from then on
    // every request is refused before any key is used.
    fail.store(true, Ordering::SeqCst);
    let _ = c.decrypt(&blob, &none, None); // written, then its group sync fails
    until("kmsd to refuse after the failed sync", || {
        matches!(c.decrypt(&blob, &none, None),
            Err(ClientError::Kms(e)) if e.code == ErrorCode::KMSInternalException
                && e.message.contains("audit trail"))
    });
    for _ in 0..5 {
        match c.generate_data_key(&key, kmsd::client::DataKeySize::Bytes(32), &none) {
            Err(ClientError::Kms(e)) => assert_eq!(e.code, ErrorCode::KMSInternalException),
            other => panic!("a data key while the trail cannot sync: {other:?}"),
        }
    }
    let (v, stderr) = status(home.path());
    let t = &v["Kmsd"]["Trail"];
    assert_eq!(t["Healthy"], false, "{v}");
    assert!(
        t["Problem"].as_str().unwrap().contains("fdatasync failed"),
        "{t}"
    );
    assert!(
        stderr.contains("kmsd refuses every request until its trail recovers")
            && stderr.contains("fdatasync failed"),
        "{stderr}"
    );

    // The disk works again: the syncer's retry succeeds and kmsd answers by itself.
    fail.store(false, Ordering::SeqCst);
    until("kmsd to answer again", || {
        c.decrypt(&blob, &none, None).is_ok()
    });
    let (v, _) = status(home.path());
    assert_eq!(v["Kmsd"]["Trail"]["Healthy"], true, "{v}");
    assert_eq!(
        &c.decrypt(&blob, &none, None).unwrap().plaintext[..],
        b"secret"
    );
    server.shutdown();
    let report = kmsd::testing::trail::validate(&home.path().join("trail")).unwrap();
    assert!(report.is_ok(), "{:?}", report.broken);

    // kmsd stopped: status still says which mode the newest segment was written in.
    let (v, _) = status(home.path());
    assert_eq!(v["Kmsd"]["Trail"]["Sync"], "interval", "{v}");
    assert!(v["Kmsd"]["Trail"]["Healthy"].is_null());
}
