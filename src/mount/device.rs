//! What the mount serves: anything that reads and writes plaintext at byte offsets.
//!
//! [`BlockDevice`] is the seam between the FUSE layer and the volume layer: production
//! serves [`VolumeImage`]s (AES-XTS encrypted images), tests and benchmarks can also serve
//! a [`PlainFile`]. Errors carry the errno the kernel should see.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::volume::{LazyError, LazyVolume, VolumeError, VolumeImage};

/// Why a device operation failed; [`DeviceError::errno`] is what the FUSE reply carries.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("I/O of {len} bytes at offset {offset} is outside the {size}-byte device")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Lazy(#[from] LazyError),
}

impl DeviceError {
    /// The errno a block-device-like file answers with.
    pub fn errno(&self) -> i32 {
        match self {
            // A write that would go past the end of the volume: the file cannot grow.
            DeviceError::OutOfRange { .. } => libc::EFBIG,
            DeviceError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            DeviceError::Volume(v) | DeviceError::Lazy(LazyError::Volume(v)) => volume_errno(v),
            DeviceError::Lazy(e) => e.errno(),
        }
    }
}

fn volume_errno(v: &VolumeError) -> i32 {
    match v {
        VolumeError::OutOfRange { .. } => libc::EFBIG,
        VolumeError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        VolumeError::KeyRequired { .. } => libc::EKEYREVOKED,
        _ => libc::EIO,
    }
}

/// A fixed-size, thread-safe, byte-addressed device. `read_at`/`write_at` take any offset
/// and length inside `[0, size)` and either transfer everything or fail.
pub trait BlockDevice: Send + Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError>;
    /// Reads `len` bytes at `offset` into `buf[..len]`, growing `buf` if needed. A device
    /// may instead swap in a buffer it already holds the data in (the FUSE read path
    /// passes its reusable reply buffer); the default reads into `buf`.
    fn read_vec(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> Result<(), DeviceError> {
        if buf.len() < len {
            buf.resize(len, 0);
        }
        self.read_at(&mut buf[..len], offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError>;
    /// fdatasync of the backing store: every completed write is durable when it returns.
    fn sync_data(&self) -> Result<(), DeviceError>;
    fn size(&self) -> u64;
}

impl BlockDevice for VolumeImage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError> {
        Ok(VolumeImage::read_at(self, buf, offset)?)
    }
    /// With the image's plaintext read-ahead for sequential readers.
    fn read_vec(&self, buf: &mut Vec<u8>, offset: u64, len: usize) -> Result<(), DeviceError> {
        Ok(VolumeImage::read_vec(self, buf, offset, len)?)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError> {
        Ok(VolumeImage::write_at(self, buf, offset)?)
    }
    fn sync_data(&self) -> Result<(), DeviceError> {
        Ok(VolumeImage::sync_data(self)?)
    }
    fn size(&self) -> u64 {
        VolumeImage::size(self)
    }
}

/// A volume still being restored: reads and writes fill their chunks first.
impl BlockDevice for LazyVolume {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError> {
        Ok(LazyVolume::read_at(self, buf, offset)?)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError> {
        Ok(LazyVolume::write_at(self, buf, offset)?)
    }
    fn sync_data(&self) -> Result<(), DeviceError> {
        Ok(LazyVolume::sync_data(self)?)
    }
    fn size(&self) -> u64 {
        LazyVolume::size(self)
    }
}

/// An unencrypted file served as is (tests and the benchmark's baseline).
pub struct PlainFile {
    file: File,
    path: PathBuf,
    size: u64,
}

impl PlainFile {
    /// Opens an existing file read-write; its current length is the device size.
    pub fn open(path: &Path) -> Result<PlainFile, DeviceError> {
        let io = |op, source| DeviceError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("open", e))?;
        let size = file.metadata().map_err(|e| io("stat", e))?.len();
        Ok(PlainFile {
            file,
            path: path.to_path_buf(),
            size,
        })
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), DeviceError> {
        let len = len as u64;
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(DeviceError::OutOfRange {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    fn io(&self, op: &'static str, source: std::io::Error) -> DeviceError {
        DeviceError::Io {
            op,
            path: self.path.clone(),
            source,
        }
    }
}

impl BlockDevice for PlainFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DeviceError> {
        self.check(offset, buf.len())?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.io("read", e))
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DeviceError> {
        self.check(offset, buf.len())?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| self.io("write", e))
    }
    fn sync_data(&self) -> Result<(), DeviceError> {
        self.file.sync_data().map_err(|e| self.io("fdatasync", e))
    }
    fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_file_refuses_out_of_range_with_efbig() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let d = PlainFile::open(&p).unwrap();
        assert_eq!(d.size(), 8192);
        d.write_at(b"abc", 8189).unwrap();
        let e = d.write_at(b"abcd", 8189).unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG);
        let e = d.write_at(b"a", u64::MAX).unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG);
        let mut b = [0u8; 3];
        d.read_at(&mut b, 8189).unwrap();
        assert_eq!(&b, b"abc");
    }
}
