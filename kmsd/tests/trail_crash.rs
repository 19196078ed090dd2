//! kill -9 of a process in the middle of appending: every acknowledged event survives,
//! the chain stays valid, and the next writer continues it.
//!
//! The test re-runs its own binary as the child (selected by an environment variable):
//! the child appends from 4 threads and prints `ACK <eventID>` after each append
//! returns; the parent kills it with SIGKILL mid-stream.

mod trail_support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use kmsd::testing::trail::segment::read_all;
use kmsd::testing::trail::{validate, Clock, TrailWriter};
use trail_support::*;

const CHILD_ENV: &str = "ATREST_TRAIL_CRASH_CHILD_DIR";

#[test]
fn kill_9_during_appends_loses_nothing_acknowledged() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(std::path::Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_9_during_appends_loses_nothing_acknowledged",
                "--nocapture",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut acked = HashSet::new();
    while acked.len() < 400 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.insert(id.to_string());
        }
    }
    child.0.kill().unwrap(); // SIGKILL
                             // Acknowledgements already in the pipe count too.
    for line in lines {
        if let Some(id) = line.unwrap().strip_prefix("ACK ") {
            acked.insert(id.to_string());
        }
    }
    child.0.wait().unwrap();

    let clock = ManualClock::new();
    let w = TrailWriter::open(config(&dir, 64 * 1024, clock.clone())).unwrap();
    let on_disk: HashSet<String> = read_all(&dir)
        .unwrap()
        .into_iter()
        .map(|e| e.record.event_id)
        .collect();
    let lost: Vec<_> = acked.difference(&on_disk).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
    append(&w, record(0, clock.now())).unwrap();
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.events as usize, on_disk.len() + 1);
}

fn child(dir: &std::path::Path) {
    let clock = ManualClock::new();
    let w = Arc::new(TrailWriter::open(config(dir, 64 * 1024, clock.clone())).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (w, out, clock) = (w.clone(), out.clone(), clock.clone());
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let r = record(t * 1_000_000 + i, clock.now());
                    let id = r.event_id.clone();
                    append(&w, r).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {id}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
