//! Encrypted volumes: the on-disk image format, AES-XTS sectors, images, snapshots, copies.
//!
//! - [`format`]: the header (pure encode/decode, fuzzed).
//! - [`key`]: the plaintext 512-bit XTS data key, zeroized on drop.
//! - [`xts`]: dm-crypt `aes-xts-plain64` sector crypto (AWS-LC, pure-Rust fallback, sectors in parallel).
//! - [`image`]: [`VolumeImage`], the thread-safe read/write API the FUSE mount serves.
//! - [`rangelock`]: sector-range locks behind partial-sector read-modify-write.
//! - [`snapshot`]: the incremental, content-addressed snapshot store.
//! - [`tracker`]: changed-block tracking, so a snapshot reads only the chunks written since the last.
//! - [`copy`]: the copy / encrypt / re-encrypt chunk transforms used by restores.
//! - [`lazy`]: [`LazyVolume`], a volume usable while its chunks are still copied in.
//! - [`fillmap`]: the lazy restore's fill map file (pure encode/decode, fuzzed).

pub mod copy;
pub mod fillmap;
pub mod format;
pub mod image;
pub mod key;
pub mod lazy;
pub mod rangelock;
pub mod readahead;
pub mod snapshot;
pub mod tracker;

pub mod xts;

pub use copy::{CopyError, DataKeys};
pub use format::{Cipher, FormatError, VolumeHeader, VolumeHeaderParams};
pub use image::VolumeImage;
pub use key::{KeyError, XtsKey};
pub use lazy::{LazyError, LazyVolume};

use std::path::PathBuf;

/// Errors of the volume layer. The FUSE layer maps them with [`VolumeError::errno`].
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{0}")]
    Xts(#[from] xts::XtsError),
    #[error("I/O of {len} bytes at offset {offset} is outside the {size}-byte volume")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("volume {volume_id} is encrypted (aes-xts-plain64): a data key is required")]
    KeyRequired { volume_id: String },
    #[error("volume {volume_id} is not encrypted: no data key may be given")]
    KeyNotExpected { volume_id: String },
    #[error("volume image {path} is truncated: {actual} bytes, header needs {expected}")]
    ImageTruncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Tracker(#[from] tracker::TrackerError),
    #[error("volume image {0} already exists")]
    AlreadyExists(PathBuf),
}

impl VolumeError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VolumeError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The errno a block-device-like file should answer with.
    pub fn errno(&self) -> i32 {
        match self {
            VolumeError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            VolumeError::OutOfRange { .. } => libc::EFBIG,
            VolumeError::KeyRequired { .. } => libc::ENOKEY,
            VolumeError::AlreadyExists(_) => libc::EEXIST,
            VolumeError::Xts(xts::XtsError::Library { .. }) => libc::EIO,
            VolumeError::Xts(_) => libc::EINVAL,
            _ => libc::EIO,
        }
    }
}
