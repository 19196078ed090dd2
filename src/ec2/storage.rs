//! The data plane as the control plane sees it: image files and the snapshot store.
//! Every call into `crate::volume` goes through here, so the service code reads as
//! registry logic and this file as file work.

use std::io::Read;
use std::path::{Path, PathBuf};

use plumbing::home::Layout;
use zeroize::Zeroizing;

use super::error::{Ec2Code, Ec2Error};
use super::kms::WrappedKey;
use crate::volume::copy::{CopyError, DataKeys};
use crate::volume::snapshot::{Progress, SnapshotError, SnapshotSource, SnapshotStore};
use crate::volume::{VolumeHeaderParams, VolumeImage, XtsKey};

/// `HOME/volumes/vol-....img`.
pub fn image_path(layout: &Layout, volume_id: &str) -> PathBuf {
    layout.volumes_dir().join(format!("{volume_id}.img"))
}

fn vol_err(what: &str, e: impl std::fmt::Display) -> Ec2Error {
    Ec2Error::internal(format!("{what}: {e}"))
}

pub fn xts_key(bytes: &Zeroizing<Vec<u8>>) -> Result<XtsKey, Ec2Error> {
    XtsKey::from_bytes(bytes).map_err(|e| {
        Ec2Error::new(
            Ec2Code::InternalError,
            format!("the data key kmsd returned is not a 512-bit XTS key: {e}"),
        )
    })
}

/// A new sparse image; encrypted under `key` (wrapped, as kmsd returned it) if given.
pub fn create_blank(
    layout: &Layout,
    volume_id: &str,
    size_bytes: u64,
    key: Option<&WrappedKey>,
) -> Result<(), Ec2Error> {
    VolumeImage::create(
        &image_path(layout, volume_id),
        &params(volume_id, size_bytes, key),
    )
    .map_err(|e| vol_err(&format!("cannot create the image of {volume_id}"), e))
}

/// A new unencrypted image holding the bytes of `source` (a raw disk image), written
/// sparsely (all-zero blocks are skipped).
pub fn import_raw(
    layout: &Layout,
    volume_id: &str,
    size_bytes: u64,
    source: &Path,
) -> Result<(), Ec2Error> {
    create_blank(layout, volume_id, size_bytes, None)?;
    let path = image_path(layout, volume_id);
    let res = (|| {
        let img = VolumeImage::open(&path, None)
            .map_err(|e| vol_err(&format!("cannot open {}", path.display()), e))?;
        let mut f = std::fs::File::open(source)
            .map_err(|e| Ec2Error::io(&format!("cannot read image {}", source.display()), &e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        loop {
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Ec2Error::io("cannot read the image", &e)),
                }
            }
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if chunk.iter().any(|b| *b != 0) {
                img.write_at(chunk, off)
                    .map_err(|e| vol_err(&format!("cannot write {volume_id}"), e))?;
            }
            off = off
                .checked_add(n as u64)
                .ok_or_else(|| Ec2Error::internal("image offset overflow"))?;
        }
        img.sync_data()
            .map_err(|e| vol_err(&format!("cannot sync {volume_id}"), e))
    })();
    if res.is_err() {
        discard_volume(layout, volume_id);
    }
    res
}

/// Removes a volume's image (deleted or never finished). Missing is fine.
pub fn discard_volume(layout: &Layout, volume_id: &str) {
    let p = image_path(layout, volume_id);
    match std::fs::remove_file(&p) {
        Ok(()) => {
            let _ = plumbing::durable::sync_dir(&layout.volumes_dir());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!("cannot remove {}: {e}", p.display()),
    }
}

// ---- snapshot store ----------------------------------------------------------------

fn store(layout: &Layout) -> Result<SnapshotStore, Ec2Error> {
    SnapshotStore::open(&layout.snapshots_dir()).map_err(snap_err)
}

fn snap_err(e: SnapshotError) -> Ec2Error {
    match e {
        SnapshotError::NotFound(id) => Ec2Error::snapshot_not_found(&id),
        SnapshotError::Copy(CopyError::PlaintextCopyOfEncryptedData)
        | SnapshotError::DestinationTooSmall { .. }
        | SnapshotError::InvalidId(_) => Ec2Error::invalid_parameter(e.to_string()),
        other => Ec2Error::internal(other.to_string()),
    }
}

fn percent(progress: &mut dyn FnMut(u8)) -> impl FnMut(Progress) + '_ {
    let mut last = u8::MAX;
    move |p: Progress| {
        let pct = p.percent();
        // The registry is written on whole-percent changes only.
        if pct != last {
            last = pct;
            progress(pct);
        }
    }
}

fn keys(
    source: Option<Zeroizing<Vec<u8>>>,
    dest: Option<&Zeroizing<Vec<u8>>>,
) -> Result<DataKeys, Ec2Error> {
    Ok(DataKeys {
        source: source.as_ref().map(xts_key).transpose()?,
        dest: dest.map(xts_key).transpose()?,
    })
}

/// Header parameters of a new encrypted payload wrapped by `w` (bound to `w.context`),
/// or of an unencrypted one.
fn params(volume_id: &str, size_bytes: u64, w: Option<&WrappedKey>) -> VolumeHeaderParams {
    match w {
        Some(w) => {
            let mut p =
                VolumeHeaderParams::encrypted(volume_id, size_bytes, &w.key_arn, w.blob.clone());
            p.encryption_context = w.context.clone();
            p
        }
        None => VolumeHeaderParams::unencrypted(volume_id, size_bytes),
    }
}

/// Snapshots a quiet volume's image (its instance is stopped or it is detached: the
/// rules make sure), as stored: ciphertext stays ciphertext under the same key.
pub fn create_snapshot(
    layout: &Layout,
    snapshot_id: &str,
    volume_id: &str,
    progress: &mut dyn FnMut(u8),
) -> Result<(), Ec2Error> {
    let path = image_path(layout, volume_id);
    store(layout)?
        .create(
            SnapshotSource::Path(&path),
            snapshot_id,
            &mut percent(progress),
        )
        .map_err(snap_err)?;
    Ok(())
}

/// The data key a snapshot's chunks are stored under (None: unencrypted).
pub fn snapshot_wrapped_key(
    layout: &Layout,
    snapshot_id: &str,
) -> Result<Option<WrappedKey>, Ec2Error> {
    let m = store(layout)?.get(snapshot_id).map_err(snap_err)?;
    Ok(m.volume.cipher.is_encrypted().then(|| WrappedKey {
        blob: m.volume.wrapped_key.clone(),
        key_arn: m.volume.key_arn.clone(),
        context: m.volume.encryption_context.clone(),
    }))
}

/// CopySnapshot: the chunks of `source_id` as a new snapshot `new_id`, re-encrypted (or
/// encrypted) under `dest` when given, copied as stored otherwise.
pub fn copy_snapshot(
    layout: &Layout,
    source_id: &str,
    new_id: &str,
    source_key: Option<Zeroizing<Vec<u8>>>,
    dest: Option<(&WrappedKey, Zeroizing<Vec<u8>>)>,
    progress: &mut dyn FnMut(u8),
) -> Result<(), Ec2Error> {
    let st = store(layout)?;
    let src = st.get(source_id).map_err(snap_err)?;
    let p = params(
        &src.volume.volume_id,
        src.volume.size_bytes,
        dest.as_ref().map(|d| d.0),
    );
    let k = keys(source_key, dest.as_ref().map(|d| &d.1))?;
    st.copy(source_id, new_id, &p, k, &mut percent(progress))
        .map_err(snap_err)?;
    Ok(())
}

/// CreateVolume --snapshot-id: a new image of `size_bytes` for `volume_id` with the
/// snapshot's data, under the new volume's own data key when encrypted.
pub fn restore_snapshot(
    layout: &Layout,
    snapshot_id: &str,
    volume_id: &str,
    size_bytes: u64,
    source_key: Option<Zeroizing<Vec<u8>>>,
    dest: Option<(&WrappedKey, Zeroizing<Vec<u8>>)>,
    progress: &mut dyn FnMut(u8),
) -> Result<(), Ec2Error> {
    let p = params(volume_id, size_bytes, dest.as_ref().map(|d| d.0));
    let k = keys(source_key, dest.as_ref().map(|d| &d.1))?;
    store(layout)?
        .restore(
            snapshot_id,
            &image_path(layout, volume_id),
            &p,
            k,
            &mut percent(progress),
        )
        .map_err(snap_err)?;
    Ok(())
}

/// Deletes a snapshot's manifest and the chunks only it used.
pub fn delete_snapshot(layout: &Layout, snapshot_id: &str) -> Result<(), Ec2Error> {
    match store(layout)?.delete(snapshot_id) {
        Ok(_) | Err(SnapshotError::NotFound(_)) => Ok(()),
        Err(e) => Err(snap_err(e)),
    }
}

/// Removes what an interrupted snapshot left (its pending manifest; chunks no completed
/// snapshot references are collected).
pub fn discard_partial_snapshot(layout: &Layout, snapshot_id: &str) {
    let res = store(layout).and_then(|st| {
        match st.delete(snapshot_id) {
            Ok(_) | Err(SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(snap_err(e)),
        }
        st.gc().map(|_| ()).map_err(snap_err)
    });
    if let Err(e) = res {
        tracing::error!(snapshot = %snapshot_id, "cannot clean up the interrupted snapshot: {e}");
    }
}
