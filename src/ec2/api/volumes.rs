//! CreateVolume, DescribeVolumes, DeleteVolume, AttachVolume, DetachVolume.

use serde::{Deserialize, Serialize};

use super::{int, tags_of, Filter, Tag, TagSpecification};
use crate::ec2::model::{self, VolumeState};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateVolumeRequest {
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub encrypted: Option<bool>,
    /// Key ID, ARN, alias name or alias ARN (requires `Encrypted`).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// GiB (default: the snapshot's size).
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// `gp2` or `gp3` (every volume is the same here).
    #[serde(default)]
    pub volume_type: Option<String>,
    #[serde(default)]
    pub tag_specifications: Vec<TagSpecification>,
}

/// `Volume`: what CreateVolume answers and DescribeVolumes lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    #[serde(default)]
    pub attachments: Vec<VolumeAttachment>,
    pub availability_zone: String,
    pub create_time: String,
    pub encrypted: bool,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    pub size: i64,
    /// Empty when the volume was not made from a snapshot, as EC2 answers.
    pub snapshot_id: String,
    pub state: String,
    pub volume_id: String,
    pub iops: i64,
    pub volume_type: String,
    pub throughput: i64,
    pub multi_attach_enabled: bool,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
    /// atrest: how far a volume being created from a snapshot is (`42%`).
    #[serde(default)]
    pub progress: Option<String>,
    /// atrest: why the volume is in `error`.
    #[serde(default)]
    pub status_message: Option<String>,
}

impl From<&model::Volume> for Volume {
    fn from(v: &model::Volume) -> Volume {
        Volume {
            attachments: v
                .attachment
                .iter()
                .map(|a| VolumeAttachment::of(&v.volume_id, a, a.state.as_str()))
                .collect(),
            availability_zone: v.availability_zone.clone(),
            create_time: v.create_time.clone(),
            encrypted: v.encrypted,
            kms_key_id: v.kms_key_id.clone(),
            size: int(v.size_gib),
            snapshot_id: v.snapshot_id.clone().unwrap_or_default(),
            state: v.state.as_str().into(),
            volume_id: v.volume_id.clone(),
            iops: 3000,
            volume_type: "gp3".into(),
            throughput: 125,
            multi_attach_enabled: false,
            tags: tags_of(&v.tags),
            progress: (v.state == VolumeState::Creating && v.snapshot_id.is_some())
                .then(|| format!("{}%", v.progress)),
            status_message: v.error_message.clone(),
        }
    }
}

/// `VolumeAttachment`: a volume's attachment, and what AttachVolume and DetachVolume
/// answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeAttachment {
    pub attach_time: String,
    pub device: String,
    pub instance_id: String,
    pub state: String,
    pub volume_id: String,
    pub delete_on_termination: bool,
}

impl VolumeAttachment {
    /// `a` (of `volume_id`) in state `state`.
    pub fn of(volume_id: &str, a: &model::Attachment, state: &str) -> VolumeAttachment {
        VolumeAttachment {
            attach_time: a.attach_time.clone(),
            device: a.device.clone(),
            instance_id: a.instance_id.clone(),
            state: state.into(),
            volume_id: volume_id.into(),
            delete_on_termination: a.delete_on_termination,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeVolumesRequest {
    #[serde(default)]
    pub volume_ids: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeVolumesResult {
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteVolumeRequest {
    pub volume_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachVolumeRequest {
    pub device: String,
    pub instance_id: String,
    pub volume_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DetachVolumeRequest {
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub force: Option<bool>,
    #[serde(default)]
    pub instance_id: Option<String>,
    pub volume_id: String,
}
