//! What runs where for one HOME: the reports `atrest up`, `down` and `status` print.

use std::path::PathBuf;

use serde::Serialize;

use crate::ec2::api::ServedVolume;

use super::daemons::{s3_addr, Daemon, StopReport};
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
    /// `http://127.0.0.1:PORT/`.
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

    /// What runs where.
    pub fn status(&self) -> Status {
        let layout = &self.layout;
        Status {
            home: layout.root.clone(),
            kmsd: KmsdStatus {
                daemon: self.daemon_status(Daemon::Kmsd),
                socket: self.kmsd_socket(),
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
                url: s3_addr(layout).map(|a| format!("http://{a}/")),
            },
            loop_devices: sweep::loop_devices(layout),
            guests: sweep::guests(layout),
        }
    }
}
