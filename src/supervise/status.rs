//! What runs where for one HOME: the reports `atrest up`, `down` and `status` print.

use std::path::PathBuf;

use serde::Serialize;

use crate::ec2::api::ServedVolume;

use super::daemons::{endpoint_url, Daemon, StopReport};
use super::sweep::{self, Guest, LoopDevice, Swept};
use super::Supervisor;

/// One daemon: whether it answers, its live pid, its log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DaemonStatus {
    pub running: bool,
    pub pid: Option<i32>,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KmsdStatus {
    #[serde(flatten)]
    pub daemon: DaemonStatus,
    pub socket: PathBuf,
    /// The trail's durability and health (`None`: no trail yet).
    pub trail: Option<TrailState>,
    /// kmsd.sock's connections against their cap (`None`: kmsd does not answer).
    pub connections: Option<kmsd::api::ConnectionStatus>,
}

/// The trail as kmsd reports it; when kmsd does not answer, the sync mode its newest
/// segment states, and nothing else.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrailState {
    /// `interval` or `every-event`.
    pub sync: String,
    pub sync_interval_ms: Option<u64>,
    /// Whether kmsd takes requests (`None`: kmsd does not answer). When not, every
    /// request is refused until the trail recovers, and `problem` says why.
    pub healthy: Option<bool>,
    pub problem: Option<String>,
    pub events: Option<u64>,
    pub writes: Option<u64>,
    pub syncs: Option<u64>,
    pub last_sync_micros: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeServiceStatus {
    #[serde(flatten)]
    pub daemon: DaemonStatus,
    pub socket: PathBuf,
    pub mountpoint: PathBuf,
    pub mounted: bool,
    pub served: Vec<ServedVolume>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointStatus {
    #[serde(flatten)]
    pub daemon: DaemonStatus,
    /// `http://127.0.0.1:PORT/` (`https://` with TLS): the address it really bound.
    pub url: Option<String>,
}

/// `atrest status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    pub home: PathBuf,
    pub kmsd: KmsdStatus,
    pub volume_service: VolumeServiceStatus,
    pub object_endpoint: EndpointStatus,
    pub loop_devices: Vec<LoopDevice>,
    pub guests: Vec<Guest>,
}

impl Status {
    /// Whether all three daemons answer.
    pub fn all_running(&self) -> bool {
        self.kmsd.daemon.running
            && self.volume_service.daemon.running
            && self.object_endpoint.daemon.running
    }
}

/// `atrest up`: the status after, and what was started.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpReport {
    #[serde(flatten)]
    pub status: Status,
    pub started: Vec<&'static str>,
}

/// `atrest down`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DownReport {
    pub stopped: Vec<StopReport>,
    pub swept: Vec<Swept>,
    /// Nothing of this HOME runs or is mounted any more.
    pub clean: bool,
}

impl Supervisor {
    fn daemon_status(&self, d: Daemon) -> DaemonStatus {
        DaemonStatus {
            running: self.answers(d),
            pid: self.pid(d),
            log: d.log_file(&self.layout),
        }
    }

    /// What the running volume service serves, with each volume's key state (empty when
    /// it is not running). This is where a key disabled while a volume is attached shows.
    fn served_volumes(&self) -> Vec<ServedVolume> {
        use crate::ec2::api::StatusRequest;
        use crate::ec2::client::Ec2Client;
        let Ok(mut c) = Ec2Client::connect(&self.layout.ec2_socket(), None) else {
            return Vec::new();
        };
        // Every member, null ones too: `atrest status` shows what it does not know.
        c.send(StatusRequest {})
            .map(|st| st.served)
            .unwrap_or_default()
    }

    /// The trail's state and kmsd.sock's connections, from kmsd's `Status` (recorded
    /// nowhere), or the newest segment's header when kmsd does not answer.
    fn kmsd_state(&self) -> (Option<TrailState>, Option<kmsd::api::ConnectionStatus>) {
        // Bounded: a kmsd that accepts but does not answer (being killed, or stuck) must
        // not hang `atrest status`.
        let answer = kmsd::client::KmsClient::connect_with_timeout(
            self.kmsd_socket(),
            super::daemons::PING_TIMEOUT,
        )
        .and_then(|c| c.status());
        match answer {
            Ok(st) => {
                let trail = st.trail.map(|t| TrailState {
                    sync: t.sync,
                    sync_interval_ms: t.sync_interval_ms,
                    healthy: Some(t.problem.is_none()),
                    problem: t.problem,
                    events: Some(t.events),
                    writes: Some(t.writes),
                    syncs: Some(t.syncs),
                    last_sync_micros: Some(t.last_sync_micros),
                });
                (trail, Some(st.connections))
            }
            Err(_) => {
                let reader = kmsd::trail::reader::TrailReader::new(self.layout.trail_dir());
                let trail = reader
                    .newest_sync_mode()
                    .ok()
                    .flatten()
                    .map(|mode| TrailState {
                        sync: mode.name().to_string(),
                        sync_interval_ms: mode
                            .interval()
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        healthy: None,
                        problem: None,
                        events: None,
                        writes: None,
                        syncs: None,
                        last_sync_micros: None,
                    });
                (trail, None)
            }
        }
    }

    /// What runs where.
    pub fn status(&self) -> Status {
        let layout = &self.layout;
        Status {
            home: layout.root.clone(),
            kmsd: {
                let (trail, connections) = self.kmsd_state();
                KmsdStatus {
                    daemon: self.daemon_status(Daemon::Kmsd),
                    socket: self.kmsd_socket(),
                    trail,
                    connections,
                }
            },
            volume_service: VolumeServiceStatus {
                daemon: self.daemon_status(Daemon::VolumeService),
                socket: layout.ec2_socket(),
                mountpoint: layout.mount_dir(),
                mounted: sweep::fuse_mounted(&layout.mount_dir()),
                served: self.served_volumes(),
            },
            object_endpoint: EndpointStatus {
                daemon: self.daemon_status(Daemon::ObjectEndpoint),
                url: endpoint_url(layout).map(|(url, _)| format!("{url}/")),
            },
            loop_devices: sweep::loop_devices(layout),
            guests: sweep::guests(layout),
        }
    }
}
