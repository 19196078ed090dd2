//! Snapshot manifests: which content-addressed chunk holds each chunk of the payload.
//!
//! JSON, written atomically (`plumbing::durable::write_atomic`): first with state `pending` and
//! no chunks, last with state `completed` once every chunk it lists is durable.

use serde::{Deserialize, Serialize};

use crate::volume::format::VolumeHeaderParams;

/// Manifest format version.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotState {
    /// Being written (or left by a crash: collected by gc).
    Pending,
    /// Every listed chunk was durable before this state was written.
    Completed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub snapshot_id: String,
    pub state: SnapshotState,
    /// The header of the source as stored (volume ID, size, sector size, cipher, key ARN,
    /// wrapped data key, encryption context). The chunks are in this stored form.
    pub volume: VolumeHeaderParams,
    /// Payload bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u64,
    /// One entry per chunk: hex SHA-256 of the stored bytes, or null for an all-zero chunk.
    pub chunks: Vec<Option<String>>,
    /// Bytes of non-zero chunks this snapshot references.
    pub referenced_bytes: u64,
    /// Bytes of chunks this snapshot added to the store (what it cost).
    pub new_bytes: u64,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// The snapshot this one was taken incrementally from (changed-block tracking: only
    /// the chunks written since it were read; the others are its entries). Absent for a
    /// snapshot that read the whole volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_from: Option<String>,
}

impl Manifest {
    /// Length of chunk `index` (the last one may be short).
    pub fn chunk_len(&self, index: usize) -> u64 {
        let start = (index as u64).saturating_mul(self.chunk_size);
        self.volume
            .size_bytes
            .saturating_sub(start)
            .min(self.chunk_size)
    }

    /// Number of chunks a payload of this size has.
    pub fn chunk_count(size: u64, chunk_size: u64) -> u64 {
        size.div_ceil(chunk_size)
    }
}
