//! `atrest up` decides liveness by pid and a protocol-level ping (issue 18, point 3): right
//! after `kill -9` of kmsd, the dying kmsd may still accept connections for a moment; `up`
//! must wait for it to be gone, start a new one, and report kmsd running only once it saw it
//! answer. Real binaries, a real HOME (the volume service needs FUSE: run as root).

mod s3_common;

use std::path::Path;
use std::process::{Command, Output};

use s3_common::{atrest_bin, kmsd_bin};

fn atrest(home: &Path, args: &[&str]) -> Output {
    Command::new(atrest_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run atrest")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Stops whatever `atrest up` started, even when an assertion fails.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = atrest(self.0, &["down"]);
    }
}

#[test]
fn up_after_kill_9_of_kmsd_leaves_kmsd_answering_every_time() {
    kmsd_bin(); // built beside atrest, where `atrest up` looks for it
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let _down = Down(h);
    let o = atrest(h, &["up"]);
    assert!(o.status.success(), "first up: {}", text(&o.stderr));
    for round in 1..=20 {
        let pid: i32 = std::fs::read_to_string(h.join("run/kmsd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) of the kmsd this test started (its pid file names it).
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGKILL) },
            0,
            "round {round}"
        );
        let o = atrest(h, &["up"]);
        assert!(
            o.status.success(),
            "round {round}: up failed: {}",
            text(&o.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["Kmsd"]["Running"], true, "round {round}: {report}");
        assert_ne!(report["Kmsd"]["Pid"], pid, "round {round}: {report}");
        // And it really answers: the next call does not meet a dead socket.
        let o = atrest(h, &["kms", "list-keys"]);
        assert!(
            o.status.success(),
            "round {round}: kmsd does not answer after up: {}",
            text(&o.stderr)
        );
    }
}
