//! CreateSnapshot, DescribeSnapshots, DeleteSnapshot, CopySnapshot.

use serde::{Deserialize, Serialize};

use super::{int, tags_of, Filter, Tag, TagSpecification};
use crate::ec2::model;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSnapshotRequest {
    pub volume_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tag_specifications: Vec<TagSpecification>,
}

/// `Snapshot`: what CreateSnapshot answers and DescribeSnapshots lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshot {
    pub description: String,
    pub encrypted: bool,
    pub owner_id: String,
    /// `42%`.
    pub progress: String,
    pub snapshot_id: String,
    pub start_time: String,
    pub state: String,
    pub volume_id: String,
    pub volume_size: i64,
    pub storage_tier: String,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
    #[serde(default)]
    pub state_message: Option<String>,
}

impl From<&model::Snapshot> for Snapshot {
    fn from(s: &model::Snapshot) -> Snapshot {
        Snapshot {
            description: s.description.clone(),
            encrypted: s.encrypted,
            owner_id: s.owner_id.clone(),
            progress: format!("{}%", s.progress),
            snapshot_id: s.snapshot_id.clone(),
            start_time: s.start_time.clone(),
            state: s.state.as_str().into(),
            volume_id: s.volume_id.clone(),
            volume_size: int(s.volume_size_gib),
            storage_tier: "standard".into(),
            kms_key_id: s.kms_key_id.clone(),
            tags: tags_of(&s.tags),
            state_message: s.state_message.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotsRequest {
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
    /// `self` or account IDs.
    #[serde(default)]
    pub owner_ids: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotsResult {
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSnapshotRequest {
    pub snapshot_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopySnapshotRequest {
    pub source_snapshot_id: String,
    /// Accepted for compatibility: there is one region here.
    #[serde(default)]
    pub source_region: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub encrypted: Option<bool>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tag_specifications: Vec<TagSpecification>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopySnapshotResult {
    pub snapshot_id: String,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
}
