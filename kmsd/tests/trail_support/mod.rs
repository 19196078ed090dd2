//! Helpers shared by the trail integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kmsd::testing::trail::record::{TrailRecord, UserIdentity, EC2_SOURCE};
use kmsd::testing::trail::{Clock, EventClass, TrailConfig, TrailError, TrailWriter};
use time::macros::datetime;
use time::OffsetDateTime;

/// A clock the test moves by hand.
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock(Mutex::new(datetime!(2026-01-01 00:00:00 UTC))))
    }
    pub fn advance_days(&self, days: i64) {
        let mut t = self.0.lock().unwrap();
        *t += time::Duration::days(days);
    }
    pub fn advance_secs(&self, secs: i64) {
        let mut t = self.0.lock().unwrap();
        *t += time::Duration::seconds(secs);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

pub fn config(dir: &Path, max_segment_bytes: u64, clock: Arc<ManualClock>) -> TrailConfig {
    TrailConfig {
        max_segment_bytes,
        clock,
        ..TrailConfig::new(dir)
    }
}

pub const KEY_ARN: &str =
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// A KMS Decrypt by Alice (even `i`) or an ec2 StartInstances (odd `i`), at `t`.
pub fn record(i: u64, t: OffsetDateTime) -> TrailRecord {
    let who = UserIdentity::iam_user("111122223333", "Alice", "AIDAALICE");
    if i % 2 == 0 {
        TrailRecord::kms_call("Decrypt", "us-east-1", "111122223333", who, t)
            .with_key(KEY_ARN)
            .read_only(true)
            .with_request_parameters(
                serde_json::json!({"n": i, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
            )
            .with_unix_uid(1000)
    } else {
        TrailRecord::service_event(
            EC2_SOURCE,
            "StartInstances",
            "us-east-1",
            "111122223333",
            who,
            t,
        )
        .with_request_parameters(serde_json::json!({"n": i}))
    }
}

/// Appends `r` in the class kmsd would give it (read-only: no change).
pub fn append(w: &TrailWriter, r: TrailRecord) -> Result<(), TrailError> {
    let class = if r.read_only {
        EventClass::NoChange
    } else {
        EventClass::StateChange
    };
    w.append(&r, class)
}

/// Opens a writer and appends `n` events, the clock moving one second per event.
pub fn write_events(
    dir: &Path,
    n: u64,
    max_segment_bytes: u64,
    clock: &Arc<ManualClock>,
) -> TrailWriter {
    let w = TrailWriter::open(config(dir, max_segment_bytes, clock.clone())).unwrap();
    for i in 0..n {
        append(&w, record(i, clock.now())).unwrap();
        clock.advance_secs(1);
    }
    w
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    kmsd::testing::trail::segment::list(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// The file's lines (without newlines) and whether it ended with one.
pub fn read_lines(path: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = s.split('\n').map(str::to_string).collect();
    assert_eq!(
        lines.pop().as_deref(),
        Some(""),
        "file should end with a newline"
    );
    lines
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

pub fn event_id_of_line(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["record"]["eventID"].as_str().unwrap().to_string()
}
