//! The writer: concurrent group commit, rotation, retention, crash recovery, fail closed.

mod trail_support;

use std::collections::HashSet;
use std::sync::Arc;

use kmsd::trail::retention::{read_anchor, ANCHOR_FILE};
use kmsd::trail::segment::read_all;
use kmsd::trail::{validate, BreakKind, Clock, TrailError, TrailWriter};
use trail_support::*;

#[test]
fn concurrent_appenders_all_land_on_a_valid_chain() {
    const THREADS: u64 = 8;
    const PER: u64 = 150;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    // Small segments so rotation happens under contention too.
    let w = Arc::new(TrailWriter::open(config(&dir, 32 * 1024, clock.clone())).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let w = w.clone();
            let clock = clock.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..PER {
                    let r = record(t * 1000 + i, clock.now());
                    ids.push(r.event_id.clone());
                    w.append(r).unwrap();
                }
                ids
            })
        })
        .collect();
    let mut written = HashSet::new();
    for h in handles {
        written.extend(h.join().unwrap());
    }
    assert_eq!(written.len() as u64, THREADS * PER);
    assert_eq!(w.next_seq(), THREADS * PER);
    let report = validate(&dir).unwrap();
    assert!(report.is_ok(), "{:?}", report.broken);
    assert_eq!(report.events, THREADS * PER);
    assert!(report.segments > 3, "rotation should have happened");
    let read: Vec<String> = read_all(&dir)
        .unwrap()
        .into_iter()
        .map(|e| e.record.event_id)
        .collect();
    assert_eq!(read.len() as u64, THREADS * PER);
    assert_eq!(read.into_iter().collect::<HashSet<_>>(), written);
}

#[test]
fn reopen_continues_the_chain_and_a_second_writer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let w = write_events(&dir, 5, 4000, &clock);
    match TrailWriter::open(config(&dir, 4000, clock.clone())) {
        Err(TrailError::Locked(_)) => {}
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    drop(w);
    let w = TrailWriter::open(config(&dir, 4000, clock.clone())).unwrap();
    assert_eq!(w.next_seq(), 5);
    w.append(record(5, clock.now())).unwrap();
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.events, 6);
}

#[test]
fn torn_tail_is_truncated_on_open_and_acknowledged_events_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    drop(write_events(&dir, 10, 1 << 20, &clock));
    let seg = segments(&dir).pop().unwrap();
    let good_len = std::fs::metadata(&seg).unwrap().len();
    // A kill -9 mid-write: half a line, then (another crash shape) zero-filled blocks.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":10,\"prev\":\"0123").unwrap();
    drop(f);
    let w = TrailWriter::open(config(&dir, 1 << 20, clock.clone())).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    // The removed bytes are kept aside, named by segment and offset.
    let saved = dir.join(format!("torn-segment-00000001.jsonl.{good_len}.bin"));
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        b"{\"seq\":10,\"prev\":\"0123"
    );
    assert_eq!(w.next_seq(), 10);
    w.append(record(10, clock.now())).unwrap();
    drop(w);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 4096]).unwrap();
    std::io::Write::write_all(&mut f, b"junk after zeros\n").unwrap();
    drop(f);
    let w = TrailWriter::open(config(&dir, 1 << 20, clock.clone())).unwrap();
    assert_eq!(w.next_seq(), 11);
    w.append(record(11, clock.now())).unwrap();
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!((r.events, r.torn_tail_bytes), (12, 0));
}

#[test]
fn torn_header_of_a_new_segment_is_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    drop(write_events(&dir, 4, 1 << 20, &clock));
    let torn = dir.join(kmsd::trail::segment::file_name(2));
    std::fs::write(&torn, b"{\"atrestTrail\":1,\"seg").unwrap();
    let w = TrailWriter::open(config(&dir, 1 << 20, clock.clone())).unwrap();
    assert!(!torn.exists());
    assert_eq!(w.next_seq(), 4);
    w.append(record(4, clock.now())).unwrap();
    assert!(validate(&dir).unwrap().is_ok());
}

#[test]
fn tampered_last_line_makes_open_fail_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    drop(write_events(&dir, 3, 1 << 20, &clock));
    let seg = segments(&dir).pop().unwrap();
    let mut lines = read_lines(&seg);
    let last = lines.len() - 1;
    lines[last] = lines[last].replacen("Alice", "Alicf", 1);
    write_lines(&seg, &lines);
    match TrailWriter::open(config(&dir, 1 << 20, clock)) {
        Err(TrailError::Corrupt { detail, .. }) => assert!(detail.contains("hash"), "{detail}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn rotation_and_retention_with_an_injected_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let w = TrailWriter::open(config(&dir, 3000, clock.clone())).unwrap();
    // Ten days of old events, one a day: several segments.
    for i in 0..12 {
        w.append(record(i, clock.now())).unwrap();
        clock.advance_days(1);
    }
    let before = segments(&dir);
    assert!(before.len() >= 4, "got {} segments", before.len());
    for p in &before {
        assert!(std::fs::metadata(p).unwrap().len() <= 3000 + 1200);
    }
    // Nothing is 90 days old yet.
    assert!(w.apply_retention().unwrap().deleted.is_empty());
    // At day 95 only segments whose newest event is before day 5 go.
    clock.advance_days(95 - 12);
    let report = w.apply_retention().unwrap();
    assert!(!report.deleted.is_empty() && report.deleted.len() < before.len() - 1);
    assert_eq!(report.deleted, before[..report.deleted.len()].to_vec());
    let first_kept = read_lines(&before[report.deleted.len()]);
    let newest_kept: serde_json::Value = serde_json::from_str(first_kept.last().unwrap()).unwrap();
    assert!(newest_kept["record"]["eventTime"].as_str().unwrap() >= "2026-01-06");
    // A week later every old segment goes, except the newest.
    clock.advance_days(7);
    let more = w.apply_retention().unwrap();
    assert_eq!(report.deleted.len() + more.deleted.len(), before.len() - 1);
    assert!(read_anchor(&dir).unwrap().is_some());
    // New events continue the chain; validation is anchored.
    for i in 12..30 {
        w.append(record(i, clock.now())).unwrap();
    }
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert!(r.first_seq.unwrap() > 0);
    assert_eq!(r.last_seq, Some(29));
    assert!(r.anchored_at.is_some());
    // Another 100 days: rotation itself applies retention.
    clock.advance_days(100);
    let anchor_before = read_anchor(&dir).unwrap().unwrap().segment;
    let newest_before = kmsd::trail::segment::list(&dir).unwrap().last().unwrap().0;
    for i in 30..40 {
        w.append(record(i, clock.now())).unwrap();
    }
    let anchor_after = read_anchor(&dir).unwrap().unwrap().segment;
    assert!(anchor_after > anchor_before);
    assert!(segments(&dir)
        .iter()
        .all(
            |p| kmsd::trail::segment::parse_file_name(p.file_name().unwrap().to_str().unwrap())
                .unwrap()
                > newest_before
        ));
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.last_seq, Some(39));
    drop(w);
    // A deleted segment after the anchor is still caught.
    let segs = segments(&dir);
    assert!(segs.len() >= 2);
    std::fs::remove_file(&segs[0]).unwrap();
    let b = validate(&dir).unwrap().broken.expect("must be detected");
    assert_eq!(b.kind, BreakKind::MissingSegment, "{b}");
    // And so is an edited anchor.
    let tmp2 = tempfile::tempdir().unwrap();
    let dir2 = tmp2.path().join("trail");
    let clock2 = ManualClock::new();
    let w2 = write_events(&dir2, 12, 3000, &clock2);
    clock2.advance_days(100);
    w2.apply_retention().unwrap();
    let anchor_path = dir2.join(ANCHOR_FILE);
    let a = std::fs::read_to_string(&anchor_path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    let edited = a.replace(
        &format!("\"firstSeq\": {}", v["firstSeq"]),
        &format!("\"firstSeq\": {}", v["firstSeq"].as_u64().unwrap() + 1),
    );
    assert_ne!(a, edited);
    std::fs::write(&anchor_path, edited).unwrap();
    let b = validate(&dir2).unwrap().broken.expect("must be detected");
    assert_eq!(b.kind, BreakKind::BadAnchor, "{b}");
}

/// Fail closed: when the disk is full, append errors, and keeps erroring even after
/// space returns (the chain tail is uncertain); a reopen recovers a valid chain.
#[test]
fn write_failure_fails_closed_until_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("run mount (this test needs root)");
    assert!(
        st.success(),
        "mounting a small tmpfs failed (this test needs root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let dir = mnt.join("trail");
    let clock = ManualClock::new();
    let w = TrailWriter::open(config(&dir, 1 << 30, clock.clone())).unwrap();
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 200 * 1024]).unwrap();
    let mut ok = 0u64;
    let err = loop {
        match w.append(record(ok, clock.now())) {
            Ok(()) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 10_000, "the disk never filled");
    };
    assert!(err.to_string().contains("No space left"), "{err}");
    std::fs::remove_file(&filler).unwrap();
    match w.append(record(ok, clock.now())) {
        Err(TrailError::Failed(_)) => {}
        other => panic!("writer must stay failed, got {other:?}"),
    }
    drop(w);
    let w = TrailWriter::open(config(&dir, 1 << 30, clock.clone())).unwrap();
    let acknowledged = w.next_seq();
    assert!(acknowledged >= ok, "acknowledged events lost");
    w.append(record(acknowledged, clock.now())).unwrap();
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.events, acknowledged + 1);
}
