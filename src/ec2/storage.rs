//! The data plane as the control plane sees it: image files and the snapshot store.
//! Every call into `crate::volume` goes through here, so the service code reads as
//! registry logic and this file as file work.

use std::io::Read;
use std::path::{Path, PathBuf};

use kmsd::home::Layout;
use zeroize::Zeroizing;

use super::error::{Ec2Code, Ec2Error};
use super::kms::WrappedKey;
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
    let params = match key {
        Some(k) => VolumeHeaderParams::encrypted(volume_id, size_bytes, &k.key_arn, k.blob.clone()),
        None => VolumeHeaderParams::unencrypted(volume_id, size_bytes),
    };
    VolumeImage::create(&image_path(layout, volume_id), &params)
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
            let _ = kmsd::durable::sync_dir(&layout.volumes_dir());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!("cannot remove {}: {e}", p.display()),
    }
}

// ---- snapshot store (wired when the volume branch's SnapshotStore lands) -------------

fn store_missing() -> Ec2Error {
    Ec2Error::internal("the snapshot store is not merged yet")
}

pub fn create_snapshot(
    _layout: &Layout,
    _snapshot_id: &str,
    _volume_id: &str,
    _progress: &mut dyn FnMut(u8),
) -> Result<(), Ec2Error> {
    Err(store_missing())
}

pub fn snapshot_wrapped_key(
    _layout: &Layout,
    _snapshot_id: &str,
) -> Result<Option<WrappedKey>, Ec2Error> {
    Err(store_missing())
}

pub fn copy_snapshot(
    _layout: &Layout,
    _source_id: &str,
    _new_id: &str,
    _source_key: Option<Zeroizing<Vec<u8>>>,
    _dest: Option<(&WrappedKey, Zeroizing<Vec<u8>>)>,
    _progress: &mut dyn FnMut(u8),
) -> Result<(), Ec2Error> {
    Err(store_missing())
}

pub fn restore_snapshot(
    _layout: &Layout,
    _snapshot_id: &str,
    _volume_id: &str,
    _size_bytes: u64,
    _source_key: Option<Zeroizing<Vec<u8>>>,
    _dest: Option<(&WrappedKey, Zeroizing<Vec<u8>>)>,
    _progress: &mut dyn FnMut(u8),
) -> Result<(), Ec2Error> {
    Err(store_missing())
}

pub fn delete_snapshot(_layout: &Layout, _snapshot_id: &str) -> Result<(), Ec2Error> {
    Ok(())
}

pub fn discard_partial_snapshot(_layout: &Layout, _snapshot_id: &str) {}
