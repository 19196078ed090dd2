//! The data plane as the control plane sees it: image files and the snapshot store.
//! Every call into `crate::volume` from `src/ec2` goes through here, so the service
//! code reads as registry logic and this file as file work. Its failures are
//! [`StorageError`]s, with their sources; the service answers them as EC2 errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plumbing::home::Layout;
use zeroize::Zeroizing;

use super::error::{Ec2Code, Ec2Error};
use super::model::{BootSpec, WrappedKey};
use crate::mount::BlockDevice;
use crate::volume::copy::{CopyError, DataKeys};
use crate::volume::snapshot::{Progress, SnapshotError, SnapshotSource, SnapshotStore};
use crate::volume::{
    lazy, KeyError, LazyVolume, VolumeError, VolumeHeaderParams, VolumeImage, XtsKey,
};

/// Why an image or the snapshot store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {action} the image of {volume_id}")]
    Image {
        action: &'static str,
        volume_id: String,
        #[source]
        source: VolumeError,
    },
    #[error("image {path} belongs to {found}, not {volume_id}")]
    WrongImage {
        path: PathBuf,
        found: String,
        volume_id: String,
    },
    #[error("cannot read image {path}")]
    Source {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create {}", .path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image offset overflow")]
    Overflow,
    #[error("the data key kmsd returned is not a 512-bit XTS key")]
    DataKey(#[source] KeyError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{volume_id} is still being restored from {snapshot_id} and its copy is not running here: start the volume service (`atrest mount`) to finish it")]
    Restoring {
        volume_id: String,
        snapshot_id: String,
    },
    #[error("the restore of {volume_id} failed")]
    Lazy {
        volume_id: String,
        #[source]
        source: crate::volume::LazyError,
    },
    #[error("cannot store the boot file {}", .path.display())]
    Boot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<StorageError> for Ec2Error {
    fn from(e: StorageError) -> Ec2Error {
        match e {
            StorageError::Snapshot(SnapshotError::NotFound(id)) => {
                Ec2Error::snapshot_not_found(&id)
            }
            StorageError::Snapshot(
                ref s @ (SnapshotError::Copy(CopyError::PlaintextCopyOfEncryptedData)
                | SnapshotError::DestinationTooSmall { .. }
                | SnapshotError::InvalidId(_)),
            ) => Ec2Error::invalid_parameter(s.to_string()),
            ref r @ (StorageError::Restoring { .. }
            | StorageError::Snapshot(SnapshotError::Restoring(_))) => {
                Ec2Error::new(Ec2Code::IncorrectState, r.to_string())
            }
            other => Ec2Error::caused_by(Ec2Code::InternalError, &other),
        }
    }
}

fn image_err(action: &'static str, volume_id: &str) -> impl FnOnce(VolumeError) -> StorageError {
    let volume_id = volume_id.to_string();
    move |source| StorageError::Image {
        action,
        volume_id,
        source,
    }
}

/// Creates `HOME/volumes` and `HOME/snapshots` (0700) if missing.
pub fn ensure_dirs(layout: &Layout) -> Result<(), StorageError> {
    for path in [layout.volumes_dir(), layout.snapshots_dir()] {
        plumbing::durable::ensure_dir(&path, 0o700)
            .map_err(|source| StorageError::Dir { path, source })?;
    }
    Ok(())
}

/// `HOME/volumes/vol-....img`.
pub fn image_path(layout: &Layout, volume_id: &str) -> PathBuf {
    layout.volumes_dir().join(format!("{volume_id}.img"))
}

pub fn xts_key(bytes: &Zeroizing<Vec<u8>>) -> Result<XtsKey, StorageError> {
    XtsKey::from_bytes(bytes).map_err(StorageError::DataKey)
}

/// A new sparse image; encrypted under `key` (wrapped, as kmsd returned it) if given.
pub fn create_blank(
    layout: &Layout,
    volume_id: &str,
    size_bytes: u64,
    key: Option<&WrappedKey>,
) -> Result<(), StorageError> {
    VolumeImage::create(
        &image_path(layout, volume_id),
        &params(volume_id, size_bytes, key),
    )
    .map_err(image_err("create", volume_id))
}

/// A new unencrypted image holding the bytes of `source` (a raw disk image), written
/// sparsely (all-zero blocks are skipped).
pub fn import_raw(
    layout: &Layout,
    volume_id: &str,
    size_bytes: u64,
    source: &Path,
) -> Result<(), StorageError> {
    create_blank(layout, volume_id, size_bytes, None)?;
    let path = image_path(layout, volume_id);
    let res = (|| {
        let img = VolumeImage::open(&path, None).map_err(image_err("open", volume_id))?;
        let src_err = |e| StorageError::Source {
            path: source.to_path_buf(),
            source: e,
        };
        let mut f = std::fs::File::open(source).map_err(src_err)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        loop {
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(src_err(e)),
                }
            }
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if chunk.iter().any(|b| *b != 0) {
                img.write_at(chunk, off)
                    .map_err(image_err("write", volume_id))?;
            }
            off = off.checked_add(n as u64).ok_or(StorageError::Overflow)?;
        }
        img.sync_data().map_err(image_err("sync", volume_id))
    })();
    if res.is_err() {
        discard_volume(layout, volume_id);
    }
    res
}

/// The size of a raw disk image to import.
pub fn source_len(source: &Path) -> Result<u64, StorageError> {
    std::fs::metadata(source)
        .map(|m| m.len())
        .map_err(|e| StorageError::Source {
            path: source.to_path_buf(),
            source: e,
        })
}

/// The data key a volume's image is encrypted under (`None`: unencrypted), after
/// checking that the image is the volume's.
pub fn volume_key(layout: &Layout, volume_id: &str) -> Result<Option<WrappedKey>, StorageError> {
    let path = image_path(layout, volume_id);
    let header =
        VolumeImage::read_header(&path).map_err(image_err("read the header of", volume_id))?;
    if header.volume_id() != volume_id {
        return Err(StorageError::WrongImage {
            found: header.volume_id().to_string(),
            path,
            volume_id: volume_id.to_string(),
        });
    }
    Ok(header.cipher().is_encrypted().then(|| WrappedKey {
        blob: header.params.wrapped_key.clone(),
        key_arn: header.params.key_arn.clone(),
        context: header.params.encryption_context.clone(),
    }))
}

/// A volume's image opened for serving (with its plaintext data key when encrypted),
/// and the ARN of the KMS key that wraps that data key.
pub struct OpenVolume {
    pub device: Arc<dyn BlockDevice>,
    pub key_arn: Option<String>,
}

pub fn open_volume(
    layout: &Layout,
    volume_id: &str,
    key: Option<XtsKey>,
) -> Result<OpenVolume, StorageError> {
    // Tracked: the volume's next snapshot reads only the chunks written meanwhile.
    let image = VolumeImage::open_tracked(&image_path(layout, volume_id), key)
        .map_err(image_err("open", volume_id))?;
    let key_arn = Some(image.header().params.key_arn.clone()).filter(|k| !k.is_empty());
    Ok(OpenVolume {
        device: Arc::new(image),
        key_arn,
    })
}

/// Removes a volume's image (deleted or never finished), its changed-block tracker and the
/// fill map of its restore. Missing is fine.
pub fn discard_volume(layout: &Layout, volume_id: &str) {
    let image = image_path(layout, volume_id);
    for p in [
        lazy::fill_path(&image),
        crate::volume::tracker::path_for(&image),
        image,
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => {
                let _ = plumbing::durable::sync_dir(&layout.volumes_dir());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!("cannot remove {}: {e}", p.display()),
        }
    }
}

// ---- snapshot store ----------------------------------------------------------------

fn store(layout: &Layout) -> Result<SnapshotStore, StorageError> {
    Ok(SnapshotStore::open(&layout.snapshots_dir())?)
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
) -> Result<DataKeys, StorageError> {
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
/// rules make sure), as stored: ciphertext stays ciphertext under the same key. With a
/// complete changed-block record only the chunks written since the volume's last snapshot
/// are read (`SnapshotStore::create`).
pub fn create_snapshot(
    layout: &Layout,
    snapshot_id: &str,
    volume_id: &str,
    progress: &mut dyn FnMut(u8),
) -> Result<(), StorageError> {
    let path = image_path(layout, volume_id);
    if lazy::is_restoring(&path) {
        return Err(StorageError::Restoring {
            volume_id: volume_id.to_string(),
            snapshot_id: snapshot_of_restore(layout, volume_id),
        });
    }
    store(layout)?.create(
        SnapshotSource::Path(&path),
        snapshot_id,
        &mut percent(progress),
    )?;
    Ok(())
}

/// The data key a snapshot's chunks are stored under (None: unencrypted).
pub fn snapshot_wrapped_key(
    layout: &Layout,
    snapshot_id: &str,
) -> Result<Option<WrappedKey>, StorageError> {
    let m = store(layout)?.get(snapshot_id)?;
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
) -> Result<(), StorageError> {
    let st = store(layout)?;
    let src = st.get(source_id)?;
    let p = params(
        &src.volume.volume_id,
        src.volume.size_bytes,
        dest.as_ref().map(|d| d.0),
    );
    let k = keys(source_key, dest.as_ref().map(|d| &d.1))?;
    st.copy(source_id, new_id, &p, k, &mut percent(progress))?;
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
) -> Result<(), StorageError> {
    let p = params(volume_id, size_bytes, dest.as_ref().map(|d| d.0));
    let k = keys(source_key, dest.as_ref().map(|d| &d.1))?;
    store(layout)?.restore(
        snapshot_id,
        &image_path(layout, volume_id),
        &p,
        k,
        &mut percent(progress),
    )?;
    Ok(())
}

/// CreateVolume --snapshot-id in the volume service: the new image, usable at once, whose
/// chunks the caller's copier (or its first reads and writes) fill from the snapshot.
pub fn restore_lazily(
    layout: &Layout,
    snapshot_id: &str,
    volume_id: &str,
    size_bytes: u64,
    source_key: Option<Zeroizing<Vec<u8>>>,
    dest: Option<(&WrappedKey, Zeroizing<Vec<u8>>)>,
) -> Result<LazyVolume, StorageError> {
    let p = params(volume_id, size_bytes, dest.as_ref().map(|d| d.0));
    let image_key = dest.as_ref().map(|d| xts_key(&d.1)).transpose()?;
    let k = keys(source_key, dest.as_ref().map(|d| &d.1))?;
    Ok(store(layout)?.restore_lazily(
        snapshot_id,
        &image_path(layout, volume_id),
        &p,
        image_key,
        k,
    )?)
}

/// A lazy restore left by a stopped or crashed volume service, opened to resume.
pub fn resume_lazily(
    layout: &Layout,
    snapshot_id: &str,
    volume_id: &str,
    source_key: Option<Zeroizing<Vec<u8>>>,
    dest_key: Option<Zeroizing<Vec<u8>>>,
) -> Result<LazyVolume, StorageError> {
    let image_key = dest_key.as_ref().map(xts_key).transpose()?;
    let k = keys(source_key, dest_key.as_ref())?;
    Ok(store(layout)?.resume_lazily(snapshot_id, &image_path(layout, volume_id), image_key, k)?)
}

/// True while a volume's image is still being filled by a lazy restore.
pub fn is_restoring(layout: &Layout, volume_id: &str) -> bool {
    lazy::is_restoring(&image_path(layout, volume_id))
}

/// The snapshot a lazy restore copies from, as its fill map says (for messages).
pub fn snapshot_of_restore(layout: &Layout, volume_id: &str) -> String {
    let p = lazy::fill_path(&image_path(layout, volume_id));
    std::fs::read(&p)
        .ok()
        .and_then(|b| crate::volume::fillmap::FillMap::decode(&b).ok())
        .map_or_else(
            || "its snapshot".to_string(),
            |m| m.snapshot_id().to_string(),
        )
}

/// Deletes a snapshot's manifest and the chunks only it used.
pub fn delete_snapshot(layout: &Layout, snapshot_id: &str) -> Result<(), StorageError> {
    match store(layout)?.delete(snapshot_id) {
        Ok(_) | Err(SnapshotError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes what an interrupted snapshot left (its pending manifest; chunks no completed
/// snapshot references are collected).
pub fn discard_partial_snapshot(layout: &Layout, snapshot_id: &str) {
    let res = store(layout).and_then(|st| {
        match st.delete(snapshot_id) {
            Ok(_) | Err(SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        st.gc().map(|_| ()).map_err(StorageError::from)
    });
    if let Err(e) = res {
        tracing::error!(snapshot = %snapshot_id, "cannot clean up the interrupted snapshot: {}", super::error::chain(&e));
    }
}

/// `HOME/ec2/images/AMI-ID/`: an image's boot profile.
pub fn image_dir(layout: &Layout, image_id: &str) -> PathBuf {
    layout.ec2_dir().join("images").join(image_id)
}

/// Copies a boot profile (kernel, initrd) into the image's directory, each file written
/// atomically (temp, fsync, rename, fsync dir), and returns where it now is. The image
/// then no longer depends on the directory it was registered from.
pub fn store_boot(
    layout: &Layout,
    image_id: &str,
    from: &BootSpec,
) -> Result<BootSpec, StorageError> {
    let dir = image_dir(layout, image_id);
    plumbing::durable::ensure_dir(&dir, 0o700).map_err(|source| StorageError::Dir {
        path: dir.clone(),
        source,
    })?;
    let copy = |src: &Path, name: &str| -> Result<PathBuf, StorageError> {
        let dest = dir.join(name);
        let boot_err = |source| StorageError::Boot {
            path: src.to_path_buf(),
            source,
        };
        let data = std::fs::read(src).map_err(boot_err)?;
        plumbing::durable::write_atomic(&dest, &data, 0o644).map_err(boot_err)?;
        Ok(dest)
    };
    let res = copy(&from.kernel, "vmlinuz").and_then(|kernel| {
        Ok(BootSpec {
            kernel,
            initrd: copy(&from.initrd, "initrd.img")?,
        })
    });
    if res.is_err() {
        discard_boot(layout, image_id);
    }
    res
}

/// Removes an image's boot profile (deregistered, or never finished). Missing is fine.
pub fn discard_boot(layout: &Layout, image_id: &str) {
    let dir = image_dir(layout, image_id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(image = %image_id, "cannot remove {}: {e}", dir.display()),
    }
}
