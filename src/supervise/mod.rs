//! Supervision of one HOME's three daemons as a unit: kmsd, the volume service
//! (`atrest mount`) and the object endpoint (`atrest s3 serve`).
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

use plumbing::home::Layout;

pub use daemons::{Daemon, StopReport, SuperviseError};
pub use status::{DownReport, Status, UpReport};

/// The daemons of one HOME.
#[derive(Debug, Clone)]
pub struct Supervisor {
    layout: Layout,
    /// `--socket`: kmsd's socket when not `HOME/kmsd.sock` (passed on to the daemons).
    kmsd_socket: Option<PathBuf>,
}

impl Supervisor {
    pub fn new(layout: Layout, kmsd_socket: Option<PathBuf>) -> Self {
        Supervisor {
            layout,
            kmsd_socket,
        }
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

    /// Starts, in order (kmsd first: the others call it), every daemon that is not
    /// answering; the report names what was started and shows the status after.
    pub fn up(&self) -> Result<UpReport, SuperviseError> {
        let mut started = Vec::new();
        for d in Daemon::ALL {
            if self.answers(d) {
                continue;
            }
            self.start(d)?;
            started.push(d.name());
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
