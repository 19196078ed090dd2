//! The writer: concurrent group commit, rotation, retention, crash recovery, fail closed.

mod trail_support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kmsd::testing::trail::retention::{newest_time, read_anchor, segment_newest_time, ANCHOR_FILE};
use kmsd::testing::trail::segment::read_all;
use kmsd::testing::trail::{
    validate, BreakKind, Clock, EventClass, IoStep, SyncMode, TrailConfig, TrailError, TrailWriter,
};
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
                    append(&w, r).unwrap();
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
    // Closed segments gave back the space reserved past their end.
    let segs = segments(&dir);
    for p in &segs[..segs.len() - 1] {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        assert!(
            m.blocks() * 512 <= m.len().next_multiple_of(4096) + 4096,
            "{}: {} bytes but {} allocated",
            p.display(),
            m.len(),
            m.blocks() * 512
        );
    }
    let active = std::fs::metadata(segs.last().unwrap()).unwrap();
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&active) * 512 > active.len() + (1 << 20),
        "the active segment has space reserved ahead"
    );
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
    append(&w, record(5, clock.now())).unwrap();
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
    append(&w, record(10, clock.now())).unwrap();
    drop(w);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 4096]).unwrap();
    std::io::Write::write_all(&mut f, b"junk after zeros\n").unwrap();
    drop(f);
    let w = TrailWriter::open(config(&dir, 1 << 20, clock.clone())).unwrap();
    assert_eq!(w.next_seq(), 11);
    append(&w, record(11, clock.now())).unwrap();
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
    let torn = dir.join(kmsd::testing::trail::segment::file_name(2));
    std::fs::write(&torn, b"{\"atrestTrail\":1,\"seg").unwrap();
    let w = TrailWriter::open(config(&dir, 1 << 20, clock.clone())).unwrap();
    assert!(!torn.exists());
    assert_eq!(w.next_seq(), 4);
    append(&w, record(4, clock.now())).unwrap();
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
        append(&w, record(i, clock.now())).unwrap();
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
        append(&w, record(i, clock.now())).unwrap();
    }
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert!(r.first_seq.unwrap() > 0);
    assert_eq!(r.last_seq, Some(29));
    assert!(r.anchored_at.is_some());
    // Another 100 days: rotation itself applies retention.
    clock.advance_days(100);
    let anchor_before = read_anchor(&dir).unwrap().unwrap().segment;
    let newest_before = kmsd::testing::trail::segment::list(&dir)
        .unwrap()
        .last()
        .unwrap()
        .0;
    for i in 30..40 {
        append(&w, record(i, clock.now())).unwrap();
    }
    let anchor_after = read_anchor(&dir).unwrap().unwrap().segment;
    assert!(anchor_after > anchor_before);
    assert!(segments(&dir)
        .iter()
        .all(|p| kmsd::testing::trail::segment::parse_file_name(
            p.file_name().unwrap().to_str().unwrap()
        )
        .unwrap()
            > newest_before));
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

/// A small tmpfs mounted for the test (needs root; CI runs as root), unmounted on drop.
struct SmallFs {
    _tmp: tempfile::TempDir,
    mnt: std::path::PathBuf,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let tmp = tempfile::tempdir().unwrap();
        let mnt = tmp.path().join("small");
        std::fs::create_dir(&mnt).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("run mount (this test needs root)");
        assert!(
            st.success(),
            "mounting a small tmpfs failed (this test needs root)"
        );
        SmallFs { _tmp: tmp, mnt }
    }

    /// Fills the file system with `name` until a write fails for lack of space.
    fn fill(&self, name: &str) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.mnt.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![1u8; 4096];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}

/// Waits up to 5 s for `f` to hold.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A full file system: space is reserved ahead, so every event admitted before the
/// disk ran out is still written; then admission refuses (before any key would be
/// used), and it comes back by itself once space returns. In both sync modes.
#[test]
fn full_file_system_refuses_admission_and_recovers_in_both_modes() {
    for sync in [SyncMode::DEFAULT, SyncMode::EveryEvent] {
        let fs = SmallFs::mount("1m");
        let dir = fs.mnt.join("trail");
        let clock = ManualClock::new();
        let w = TrailWriter::open(TrailConfig {
            sync,
            ..config(&dir, 1 << 30, clock.clone())
        })
        .unwrap();
        let filler = fs.fill("filler");
        let mut ok = 0u64;
        while w.admit().is_ok() {
            // Admitted: the write must not fail, the space is reserved.
            append(&w, record(ok, clock.now())).unwrap_or_else(|e| {
                panic!("{sync}: an admitted append failed after {ok} events: {e}")
            });
            ok += 1;
            assert!(ok < 100_000, "{sync}: admission never refused");
        }
        assert!(
            ok > 0,
            "{sync}: nothing was admitted before the disk was full"
        );
        match w.admit() {
            Err(TrailError::Unavailable(m)) => assert!(m.contains("no space"), "{m}"),
            other => panic!("{sync}: expected Unavailable, got {other:?}"),
        }
        let h = w.health();
        assert_eq!(h.sync, sync);
        assert!(h.problem.unwrap().contains("no space"));
        std::fs::remove_file(&filler).unwrap();
        eventually("admission after space returns", || w.admit().is_ok());
        assert_eq!(w.health().problem, None);
        append(&w, record(ok, clock.now())).unwrap();
        drop(w);
        let r = validate(&dir).unwrap();
        assert!(r.is_ok(), "{sync}: {:?}", r.broken);
        assert_eq!(r.events, ok + 1, "{sync}");
    }
}

/// Retention dates a segment from its end only; that agrees with reading the whole
/// segment for a header-only segment, small records, and records longer than the first
/// window (64 KiB), so the window has to grow.
#[test]
fn a_segment_is_dated_from_its_tail_as_from_all_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let w = TrailWriter::open(config(&dir, 64 << 20, clock.clone())).unwrap();
    let check = |what: &str| {
        for path in segments(&dir) {
            let whole = newest_time(&std::fs::read(&path).unwrap());
            assert!(whole.is_some(), "{what}");
            assert_eq!(segment_newest_time(&path).unwrap(), whole, "{what}");
        }
    };
    check("header only");
    for i in 0..500 {
        clock.advance_secs(1);
        append(&w, record(i * 2, clock.now())).unwrap();
    }
    check("small records");
    for i in 0..3u64 {
        clock.advance_secs(1);
        let big = "x".repeat(150 << 10);
        let r =
            record(i * 2, clock.now()).with_request_parameters(serde_json::json!({ "big": big }));
        append(&w, r).unwrap();
    }
    check("records longer than the window");
}

/// A syncer that cannot top the space reservation up in time (its thread starved under
/// load, here stalled in its fallocate) does not turn into "no space" refusals: the
/// writer reserves for itself before the reservation runs out. (Before, kmsd-bench's
/// 8 clients got thousands of "the audit trail could not record it" with a nearly
/// empty disk.)
#[test]
fn a_stalled_syncer_does_not_refuse_requests_for_lack_of_reserved_space() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let stall = Arc::new(AtomicBool::new(true));
    let hook_stall = stall.clone();
    let w = TrailWriter::open(TrailConfig {
        fault: Some(Arc::new(move |s| {
            if s == IoStep::Reserve && std::thread::current().name() == Some("trail-sync") {
                while hook_stall.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            Ok(())
        })),
        ..config(&dir, 64 << 20, clock.clone())
    })
    .unwrap();
    // Read-only events (even numbers) until well past one reservation (8 MiB).
    let mut written = 0u64;
    let mut i = 0u64;
    while written < 20 << 20 {
        let r = record(i * 2, clock.now());
        written += serde_json::to_vec(&r).unwrap().len() as u64;
        let admitted = w.admit().and_then(|()| append(&w, r));
        if let Err(e) = admitted {
            stall.store(false, Ordering::SeqCst);
            panic!("event {i} after {written} bytes refused: {e}");
        }
        i += 1;
    }
    stall.store(false, Ordering::SeqCst);
    drop(w);
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.events, i);
}

/// A failed write(2) refuses that group, leaves nothing of it in the file, and the
/// writer goes on with a valid chain.
#[test]
fn failed_write_is_rolled_back_and_the_writer_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let fail = Arc::new(AtomicBool::new(false));
    let w = TrailWriter::open(TrailConfig {
        fault: Some(fault_on(IoStep::Write, fail.clone())),
        ..config(&dir, 1 << 20, clock.clone())
    })
    .unwrap();
    for i in 0..3 {
        append(&w, record(i, clock.now())).unwrap();
    }
    fail.store(true, Ordering::SeqCst);
    let refused = record(3, clock.now());
    let refused_id = refused.event_id.clone();
    assert!(append(&w, refused).is_err());
    fail.store(false, Ordering::SeqCst);
    assert!(w.admit().is_ok());
    append(&w, record(4, clock.now())).unwrap();
    drop(w);
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.events, 4);
    assert!(read_all(&dir)
        .unwrap()
        .iter()
        .all(|e| e.record.event_id != refused_id));
}

/// A failed group fdatasync: admission and appends refuse until the syncer has
/// rewritten and synced the unsynced events; then everything goes on. In both modes
/// (in every-event mode the failing sync is the appender's own).
#[test]
fn failed_sync_refuses_until_a_sync_succeeds_in_both_modes() {
    for sync in [SyncMode::DEFAULT, SyncMode::EveryEvent] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("trail");
        let clock = ManualClock::new();
        let fail = Arc::new(AtomicBool::new(false));
        let w = TrailWriter::open(TrailConfig {
            sync,
            fault: Some(fault_on(IoStep::Sync, fail.clone())),
            ..config(&dir, 1 << 20, clock.clone())
        })
        .unwrap();
        append(&w, record(0, clock.now())).unwrap();
        fail.store(true, Ordering::SeqCst);
        // Read-only events: in the default mode the append returns before the failing
        // group sync; every-event refuses the event itself.
        let first = append(&w, record(2, clock.now()));
        assert_eq!(first.is_ok(), sync != SyncMode::EveryEvent, "{sync}");
        eventually("admission refused after a failed sync", || {
            w.admit().is_err()
        });
        match w.admit() {
            Err(TrailError::Unavailable(m)) => assert!(m.contains("fdatasync failed"), "{m}"),
            other => panic!("{sync}: expected Unavailable, got {other:?}"),
        }
        assert!(append(&w, record(4, clock.now())).is_err(), "{sync}");
        assert!(w.health().problem.unwrap().contains("fdatasync"));
        fail.store(false, Ordering::SeqCst);
        eventually("admission after a sync succeeds", || w.admit().is_ok());
        append(&w, record(6, clock.now())).unwrap();
        drop(w);
        let r = validate(&dir).unwrap();
        assert!(r.is_ok(), "{sync}: {:?}", r.broken);
        // The event written before the failure stays (it was acknowledged in the
        // default mode; in every-event mode it was refused: over-reported).
        assert_eq!(r.events, 3, "{sync}");
    }
}

/// The durability classes: in the default mode a state change is fdatasync'd before
/// append returns, a read-only event only written, and synced by the syncer within
/// the interval; every-event syncs each.
#[test]
fn state_changes_are_synced_before_return_and_others_within_the_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let w = TrailWriter::open(TrailConfig {
        sync: SyncMode::Interval(std::time::Duration::from_millis(300)),
        ..config(&dir, 1 << 20, clock.clone())
    })
    .unwrap();
    let syncs = |w: &TrailWriter| w.stats().syncs;
    let before = syncs(&w);
    let t0 = std::time::Instant::now();
    w.append(&record(0, clock.now()), EventClass::NoChange)
        .unwrap();
    assert_eq!(
        syncs(&w),
        before,
        "a no-change event must not wait for a sync"
    );
    // Written before append returned: a reader sees it at once.
    assert_eq!(read_all(&dir).unwrap().len(), 1);
    eventually("the group sync", || syncs(&w) > before);
    let took = t0.elapsed();
    assert!(
        took <= std::time::Duration::from_millis(300 + 250),
        "group sync came after {took:?}"
    );
    let before = syncs(&w);
    w.append(&record(1, clock.now()), EventClass::StateChange)
        .unwrap();
    assert!(
        syncs(&w) > before,
        "a state change must be synced before return"
    );
    drop(w);

    let dir2 = tmp.path().join("trail2");
    let w = TrailWriter::open(TrailConfig {
        sync: SyncMode::EveryEvent,
        ..config(&dir2, 1 << 20, clock.clone())
    })
    .unwrap();
    let before = syncs(&w);
    w.append(&record(0, clock.now()), EventClass::NoChange)
        .unwrap();
    assert!(syncs(&w) > before, "every-event syncs every event");
}

/// An every-event writer in `dir` whose every fdatasync takes 3 ms (a slow disk).
fn every_event_with_slow_fdatasync(
    dir: &std::path::Path,
    clock: &Arc<ManualClock>,
) -> Arc<TrailWriter> {
    let slow_sync: kmsd::testing::trail::FaultHook = Arc::new(|s| {
        if s == IoStep::Sync {
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        Ok(())
    });
    Arc::new(
        TrailWriter::open(TrailConfig {
            sync: SyncMode::EveryEvent,
            fault: Some(slow_sync),
            ..config(dir, 1 << 20, clock.clone())
        })
        .unwrap(),
    )
}

/// Every-event group commit: one fdatasync covers nearly every appender waiting. Each
/// of 8 threads appends in a closed loop (as 8 clients do) to a trail whose fdatasync
/// takes 3 ms. Were the next group's fdatasync started at once with what queued during
/// the last one, the groups would alternate 1 and 7 (4 events per fdatasync); the next
/// group waits (bounded) for the last group's callers to come back instead, and the
/// caller that completes it leads it.
#[test]
fn every_event_groups_carry_nearly_every_waiting_appender() {
    const THREADS: u64 = 8;
    const PER: u64 = 40;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let w = every_event_with_slow_fdatasync(&dir, &clock);
    let before = w.stats();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (w, clock) = (w.clone(), clock.clone());
            std::thread::spawn(move || {
                for i in 0..PER {
                    append(&w, record(t * 1000 + i, clock.now())).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let after = w.stats();
    let events = after.events - before.events;
    let syncs = after.syncs - before.syncs;
    assert_eq!(events, THREADS * PER);
    let per_sync = events as f64 / syncs as f64;
    assert!(
        per_sync >= 0.75 * THREADS as f64,
        "{per_sync:.2} events per fdatasync ({events} events, {syncs} fdatasyncs) with {THREADS} appenders"
    );
    drop(w);
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
}

/// Every-event: a group that waits for callers who do not come back goes once its bound
/// (at most one fdatasync's time, and 1 ms) is up. 8 threads append at once (the next
/// group then expects 8), then one of them alone appends 20 more: each goes after at
/// most the bound, not never (the caller that starts a group parks with that timeout and
/// leads when nobody completed the group), and the group sizes adapt to the one caller.
#[test]
fn every_event_a_group_short_of_its_callers_goes_after_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    let w = every_event_with_slow_fdatasync(&dir, &clock);
    // The appends run on their own threads; this one only watches the clock, so a
    // group that never goes fails the test instead of hanging it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let appends = {
        let (w, clock) = (w.clone(), clock.clone());
        std::thread::spawn(move || {
            let barrier = Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (0..8u64)
                .map(|t| {
                    let (w, clock, barrier) = (w.clone(), clock.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        append(&w, record(t, clock.now())).unwrap();
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            for i in 0..20u64 {
                append(&w, record(100 + i, clock.now())).unwrap();
                done_tx.send(i).unwrap();
            }
        })
    };
    // 28 fdatasyncs of 3 ms and at most a few waits of 1 ms: well under 10 s unless a
    // group waits for callers that never come.
    let t0 = std::time::Instant::now();
    for i in 0..20u64 {
        let left = std::time::Duration::from_secs(10).saturating_sub(t0.elapsed());
        assert_eq!(
            done_rx.recv_timeout(left),
            Ok(i),
            "append {i} of the lone caller did not return: a group waits for callers who are gone"
        );
    }
    appends.join().unwrap();
    assert_eq!(w.stats().events, 28);
    drop(w);
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
}

/// The segment header says which sync mode wrote its events; changing the mode starts
/// a new segment; version 1 trails (written before the modes existed) keep opening and
/// validating.
#[test]
fn headers_state_the_sync_mode_and_version_1_trails_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/trail-v1");
    std::fs::create_dir(&dir).unwrap();
    let name = kmsd::testing::trail::segment::file_name(1);
    std::fs::copy(golden.join(&name), dir.join(&name)).unwrap();
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.events, 4);
    let header = |i: u64| {
        let lines = read_lines(&dir.join(kmsd::testing::trail::segment::file_name(i)));
        kmsd::testing::trail::chain::SegmentHeader::parse(lines[0].as_bytes()).unwrap()
    };
    assert_eq!(header(1).atrest_trail, 1);
    assert_eq!(header(1).sync_mode().unwrap(), SyncMode::EveryEvent);

    let clock = ManualClock::new();
    let open = |sync| {
        TrailWriter::open(TrailConfig {
            sync,
            ..config(&dir, 1 << 20, clock.clone())
        })
        .unwrap()
    };
    // Same mode as the v1 segment says (every-event): it is continued.
    let w = open(SyncMode::EveryEvent);
    append(&w, record(4, clock.now())).unwrap();
    drop(w);
    assert_eq!(segments(&dir).len(), 1);
    // Another mode: a new segment with a version 2 header.
    let w = open(SyncMode::DEFAULT);
    append(&w, record(5, clock.now())).unwrap();
    drop(w);
    assert_eq!(segments(&dir).len(), 2);
    let h = header(2);
    assert_eq!((h.atrest_trail, h.first_seq), (2, 5));
    assert_eq!(h.sync.as_deref(), Some("interval"));
    assert_eq!(h.sync_interval_ms, Some(20));
    let w = open(SyncMode::DEFAULT);
    append(&w, record(6, clock.now())).unwrap();
    drop(w);
    assert_eq!(segments(&dir).len(), 2);
    let w = open(SyncMode::EveryEvent);
    drop(w);
    assert_eq!(header(3).sync.as_deref(), Some("every-event"));
    assert_eq!(header(3).sync_interval_ms, None);
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!((r.events, r.segments), (7, 3));
    // The golden file itself is untouched by all this (copied, never written).
    assert!(validate(&golden).unwrap().is_ok());
}

/// A fault hook failing `step` while `flag` is set.
fn fault_on(step: IoStep, flag: Arc<AtomicBool>) -> kmsd::testing::trail::FaultHook {
    Arc::new(move |s| {
        if s == step && flag.load(Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        } else {
            Ok(())
        }
    })
}
