//! atrest's own operations (no EC2 counterpart): `atrest attach`, `atrest detach`, and
//! the status of the running volume service.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `atrest attach [--loop] VOL`: attach to the local instance (this machine) and serve
/// it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachRequest {
    pub volume_id: String,
    /// Bind a loop device to the served file too.
    #[serde(default, rename = "Loop")]
    pub loop_device: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachResult {
    pub path: PathBuf,
    #[serde(default)]
    pub loop_device: Option<String>,
}

/// `atrest detach [--force] VOL`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DetachRequest {
    pub volume_id: String,
    #[serde(default)]
    pub force: bool,
}

/// Is the service up, and what does it serve?
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {}

/// What one served volume looks like to `atrest status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServedVolume {
    pub instance_id: String,
    pub volume_id: String,
    pub path: PathBuf,
    #[serde(default)]
    pub loop_device: Option<String>,
    /// The KMS key state as the service last learnt it from the trail (`Enabled` when it
    /// was attached); `None` for an unencrypted volume.
    #[serde(default)]
    pub key_state: Option<String>,
    /// What that means for this volume, when the user should know (key disabled or
    /// pending deletion while attached, data key revoked).
    #[serde(default)]
    pub notice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DaemonStatus {
    pub pid: u32,
    #[serde(default)]
    pub mountpoint: Option<PathBuf>,
    #[serde(default)]
    pub served: Vec<ServedVolume>,
}
