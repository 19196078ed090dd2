//! Supervision of one HOME's three daemons as a unit: kmsd, the volume service
//! (`atrest mount`) and the AWS endpoint (`atrest serve`: KMS, STS, IAM, CloudTrail and
//! S3 on one port, `127.0.0.1:4566` unless `up --listen` says otherwise).
//!
//! Each daemon is still startable on its own; a [`Supervisor`] starts only what is not
//! answering ([`Supervisor::up`]), stops what it finds by its pid file
//! ([`Supervisor::down`]) and then sweeps whatever a crashed daemon may have left behind
//! (qemu guests, loop devices over served files, a stale FUSE mount: [`sweep`]), and
//! reports what runs where ([`Supervisor::status`]). The CLI's `atrest up`, `down` and
//! `status` only call these and print the reports, which serialize to the JSON they show.
//!
//! - [`daemons`]: which daemons there are, their pid and log files, starting and stopping.
//! - [`sweep`]: finding and releasing leftovers (loop devices, guests, the mount).
//! - [`status`]: the report of what runs where.

pub mod daemons;
pub mod status;
pub mod sweep;

use std::path::PathBuf;
use std::time::Duration;

use plumbing::home::Layout;

pub use daemons::{Daemon, Liveness, StopReport, SuperviseError, SETTLE_TIMEOUT};
pub use status::{DownReport, Status, UpReport};

/// The daemons of one HOME.
#[derive(Debug, Clone)]
pub struct Supervisor {
    layout: Layout,
    /// `--socket`: kmsd's socket when not `HOME/kmsd.sock` (passed on to the daemons).
    kmsd_socket: Option<PathBuf>,
    /// How long `up` waits for a silent daemon to answer or be gone.
    settle_timeout: Duration,
    /// `atrest serve`'s arguments when `up` starts the endpoint (`--listen`, TLS).
    endpoint_args: Vec<String>,
}

impl Supervisor {
    pub fn new(layout: Layout, kmsd_socket: Option<PathBuf>) -> Self {
        Supervisor {
            layout,
            kmsd_socket,
            settle_timeout: SETTLE_TIMEOUT,
            endpoint_args: Vec::new(),
        }
    }

    /// How `up` starts the endpoint: `atrest serve` arguments (`--listen ADDR`,
    /// `--tls-cert FILE --tls-key FILE`); none: serve's defaults.
    pub fn with_endpoint_args(mut self, args: Vec<String>) -> Self {
        self.endpoint_args = args;
        self
    }

    /// Another bound on waiting for a silent daemon (default [`SETTLE_TIMEOUT`]).
    pub fn with_settle_timeout(mut self, t: Duration) -> Self {
        self.settle_timeout = t;
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where kmsd listens.
    pub fn kmsd_socket(&self) -> PathBuf {
        self.kmsd_socket
            .clone()
            .unwrap_or_else(|| self.layout.kmsd_socket())
    }

    /// Starts, in order (kmsd first: the others call it), every daemon that is gone; a
    /// daemon that is silent but still there (being killed, or starting) is waited for,
    /// bounded, and never started twice. The report names what was started and shows the
    /// status after.
    pub fn up(&self) -> Result<UpReport, SuperviseError> {
        let mut started = Vec::new();
        for d in Daemon::ALL {
            match self.settle(d)? {
                Liveness::Answering => continue,
                Liveness::Gone | Liveness::Silent { .. } => {
                    self.start(d)?;
                    started.push(d.name());
                }
            }
        }
        Ok(UpReport {
            status: self.status(),
            started,
        })
    }

    /// Stops every daemon (in reverse start order: the endpoint and the volume service
    /// still need kmsd to finish cleanly, retiring grants on stop), then sweeps.
    pub fn down(&self) -> DownReport {
        let stopped = Daemon::ALL.iter().rev().map(|d| self.stop(*d)).collect();
        let swept = sweep::sweep(&self.layout);
        DownReport {
            stopped,
            swept,
            clean: !sweep::leftovers(&self.layout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_socket_that_accepts_but_never_answers_is_not_reported_and_not_doubled() {
        let home = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(Layout::new(home.path()), None)
            .with_settle_timeout(Duration::from_millis(700));
        // What a kmsd being killed looks like for a moment: its socket still accepts,
        // nothing answers (the kernel completes connections into the backlog while it
        // is held, for the whole test).
        let _listener = UnixListener::bind(sup.kmsd_socket()).unwrap();
        assert_eq!(sup.liveness(Daemon::Kmsd), Liveness::Silent { pid: None });
        assert!(!sup.status().kmsd.daemon.running);
        let e = sup.up().unwrap_err();
        assert!(
            matches!(
                e,
                SuperviseError::Silent {
                    what: "kmsd",
                    pid: None,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("does not answer"), "{e}");
        // Nothing was started beside it.
        assert!(!Daemon::Kmsd.pid_file(sup.layout()).exists());
    }

    #[test]
    fn nothing_there_is_gone() {
        let home = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(Layout::new(home.path()), None);
        for d in Daemon::ALL {
            assert_eq!(sup.liveness(d), Liveness::Gone);
        }
        // A pid file naming a process of another program is not the daemon's.
        std::fs::create_dir_all(sup.layout().run_dir()).unwrap();
        plumbing::daemon::write_pid_file(&Daemon::Kmsd.pid_file(sup.layout()), std::process::id())
            .unwrap();
        assert_eq!(sup.pid(Daemon::Kmsd), None);
        assert_eq!(sup.liveness(Daemon::Kmsd), Liveness::Gone);
    }
}
