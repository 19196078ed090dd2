//! The snapshot store as the source of a lazy restore ([`crate::volume::lazy`]): a
//! completed snapshot's chunks, read on demand and turned into the new volume's stored form
//! by the same [`CopyPlan`] the full restore uses (copied as is, encrypted, or
//! re-encrypted: never written as plaintext of encrypted data).

use std::path::Path;

use super::{Manifest, SnapshotError, SnapshotStore};
use crate::volume::copy::{self, CopyPlan, DataKeys};
use crate::volume::format::VolumeHeaderParams;
use crate::volume::lazy::{ChunkSource, LazyVolume, SourceError};

/// A completed snapshot's chunks in a destination's stored form.
pub struct RestoreSource {
    store: SnapshotStore,
    manifest: Manifest,
    plan: CopyPlan,
}

impl ChunkSource for RestoreSource {
    fn fetch(&self, index: u64, len: u64, buf: &mut Vec<u8>) -> Result<bool, SourceError> {
        let m = &self.manifest;
        let Some(Some(hash)) = usize::try_from(index).ok().and_then(|i| m.chunks.get(i)) else {
            // A null chunk, or past the snapshot's end (a larger volume): zeros.
            return Ok(false);
        };
        let stored = m.chunk_len(index as usize);
        if stored > len {
            return Err(format!(
                "chunk {index} is {stored} bytes in snapshot {} but {len} in the volume",
                m.snapshot_id
            )
            .into());
        }
        // Shared lock per chunk: a delete or gc (exclusive) never runs under a read.
        let _lock = self.store.lock(false)?;
        self.store.chunks.get(hash, stored, buf)?;
        let off = index.saturating_mul(m.chunk_size);
        self.plan.transform(buf, off)?;
        // The snapshot's short last chunk in a larger volume: the rest is a hole (all-zero
        // stored bytes read as zeros, encrypted or not).
        buf.resize(len as usize, 0);
        Ok(true)
    }
}

impl SnapshotStore {
    /// The source of a lazy restore of `snapshot_id` into a volume stored as `dest`.
    pub fn restore_source(
        &self,
        snapshot_id: &str,
        dest: &VolumeHeaderParams,
        keys: DataKeys,
    ) -> Result<RestoreSource, SnapshotError> {
        let _lock = self.lock(false)?;
        let manifest = self.completed(snapshot_id)?;
        if dest.size_bytes < manifest.volume.size_bytes {
            return Err(SnapshotError::DestinationTooSmall {
                need: manifest.volume.size_bytes,
                got: dest.size_bytes,
            });
        }
        let plan = copy::plan(&manifest.volume, dest, keys)?;
        Ok(RestoreSource {
            store: SnapshotStore::open(&self.dir)?,
            manifest,
            plan,
        })
    }

    /// `create-volume --snapshot-id`, lazily: a new image at `dest_path` that is usable at
    /// once and fills itself from the snapshot ([`LazyVolume`]; the caller runs its copier).
    /// `key` is the plaintext data key of `dest` (encrypted volumes).
    pub fn restore_lazily(
        &self,
        snapshot_id: &str,
        dest_path: &Path,
        dest: &VolumeHeaderParams,
        key: Option<crate::volume::XtsKey>,
        keys: DataKeys,
    ) -> Result<LazyVolume, SnapshotError> {
        let source = self.restore_source(snapshot_id, dest, keys)?;
        let chunk_size = source.manifest.chunk_size;
        let present: Vec<bool> = source.manifest.chunks.iter().map(Option::is_some).collect();
        let has_data = |i: u64| usize::try_from(i).ok().and_then(|i| present.get(i)) == Some(&true);
        // Chunks copied as stored into a volume of the same size: the volume starts as the
        // snapshot, so its first snapshot can be incremental from it.
        let base = (matches!(source.plan, CopyPlan::Raw)
            && source.manifest.volume.size_bytes == dest.size_bytes)
            .then_some(snapshot_id);
        LazyVolume::create(
            dest_path,
            dest,
            key,
            snapshot_id,
            chunk_size,
            &has_data,
            base,
            Box::new(source),
        )
        .map_err(lazy_err)
    }

    /// Opens a lazy restore of `snapshot_id` left by a stopped or crashed process.
    pub fn resume_lazily(
        &self,
        snapshot_id: &str,
        dest_path: &Path,
        key: Option<crate::volume::XtsKey>,
        keys: DataKeys,
    ) -> Result<LazyVolume, SnapshotError> {
        let dest = super::super::image::VolumeImage::read_header(dest_path)?.params;
        let source = self.restore_source(snapshot_id, &dest, keys)?;
        LazyVolume::open(dest_path, key, Box::new(source)).map_err(lazy_err)
    }
}

fn lazy_err(e: crate::volume::LazyError) -> SnapshotError {
    match e {
        crate::volume::LazyError::Volume(v) => SnapshotError::Volume(v),
        other => SnapshotError::Lazy(Box::new(other)),
    }
}
