//! The changed-block tracker file, as bytes: header encode/decode and the bitmap. Pure (no
//! I/O), so the fuzz target and the property test drive it directly. Byte layout:
//! docs/FORMAT.md "Changed-block tracker".

use sha2::{Digest, Sha256};

/// The first 8 bytes of every tracker file.
pub const MAGIC: [u8; 8] = *b"ATRCBT\0\0";
/// Tracker format version.
pub const VERSION: u32 = 1;
/// Bytes of the header block; the bitmap starts right after it.
pub const HEADER_LEN: usize = 4096;
/// Bytes of the header that mean something (the rest of the block is zero).
pub const HEADER_USED: usize = 512;
/// Offset of the 32-byte SHA-256 over `[0, CHECKSUM_AT)`.
pub const CHECKSUM_AT: usize = HEADER_USED - 32;
/// Longest volume or snapshot ID the header holds.
pub const MAX_ID: usize = 128;

const OFF_VOLUME_ID: usize = 88;
const OFF_BASE: usize = OFF_VOLUME_ID + 1 + MAX_ID;
const OFF_END: usize = OFF_BASE + 1 + MAX_ID;

/// What the record says about the writes since its base snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Closed cleanly: the bitmap was fsync'd before this state, and nobody wrote since
    /// (the image's mtime is recorded to check that).
    Clean,
    /// A writer has (or had) the image open; bits are written before the data they cover
    /// but not fsync'd, so the record is complete only within the boot that wrote it.
    Live,
    /// Being rewritten, or known to be incomplete: says nothing.
    Void,
}

impl State {
    fn code(self) -> u32 {
        match self {
            State::Clean => 1,
            State::Live => 2,
            State::Void => 3,
        }
    }

    fn from_code(c: u32) -> Option<State> {
        match c {
            1 => Some(State::Clean),
            2 => Some(State::Live),
            3 => Some(State::Void),
            _ => None,
        }
    }
}

/// The header of a tracker file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub state: State,
    /// `/proc/sys/kernel/random/boot_id` of the boot that last wrote the record.
    pub boot_id: [u8; 16],
    /// Payload bytes per tracked chunk (`snapshot::CHUNK_SIZE`).
    pub chunk_size: u64,
    /// Payload bytes of the volume.
    pub volume_size: u64,
    /// Inode number of the image file the record belongs to.
    pub image_inode: u64,
    /// The image's mtime when the record was closed clean (seconds, nanoseconds); zero
    /// otherwise.
    pub image_mtime: (i64, u32),
    /// The volume ID of the image.
    pub volume_id: String,
    /// The snapshot the bitmap is relative to; `None`: no base (the next snapshot is full).
    pub base: Option<String>,
}

/// Why tracker bytes were refused. Any of these makes the record incomplete: the next
/// snapshot reads the whole volume.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("tracker file is {0} bytes: shorter than its header")]
    Short(usize),
    #[error("not a tracker file (bad magic)")]
    Magic,
    #[error("unsupported tracker version {0}")]
    Version(u32),
    #[error("header checksum mismatch")]
    Checksum,
    #[error("unknown tracker state {0}")]
    State(u32),
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("bitmap is {got} bytes, {want} expected for the volume")]
    BitmapLength { got: usize, want: usize },
}

fn invalid(field: &'static str, reason: &'static str) -> RecordError {
    RecordError::Invalid { field, reason }
}

/// Number of chunks of a volume.
pub fn chunk_count(volume_size: u64, chunk_size: u64) -> u64 {
    volume_size.div_ceil(chunk_size.max(1))
}

/// Bytes of the bitmap of a volume (one bit a chunk).
pub fn bitmap_len(volume_size: u64, chunk_size: u64) -> usize {
    chunk_count(volume_size, chunk_size).div_ceil(8) as usize
}

fn put_id(out: &mut [u8], at: usize, id: &str) {
    out[at] = id.len() as u8;
    out[at + 1..at + 1 + id.len()].copy_from_slice(id.as_bytes());
}

fn get_id(b: &[u8], at: usize, field: &'static str) -> Result<String, RecordError> {
    let len = usize::from(b[at]);
    if len > MAX_ID {
        return Err(invalid(field, "longer than 128 bytes"));
    }
    let bytes = &b[at + 1..at + 1 + len];
    if b[at + 1 + len..at + 1 + MAX_ID].iter().any(|&x| x != 0) {
        return Err(invalid(field, "padding is not zero"));
    }
    let ok = bytes
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if !ok {
        return Err(invalid(field, "not [A-Za-z0-9._-]"));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn valid_id(id: &str) -> bool {
    id.len() <= MAX_ID
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

impl Header {
    /// The header block (`HEADER_LEN` bytes). Fails only on an ID the block cannot hold.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        if !valid_id(&self.volume_id) {
            return Err(invalid("volume_id", "not 0-128 of [A-Za-z0-9._-]"));
        }
        if let Some(b) = &self.base {
            if b.is_empty() || !valid_id(b) {
                return Err(invalid("base", "not 1-128 of [A-Za-z0-9._-]"));
            }
        }
        if self.chunk_size == 0 || self.chunk_size % 4096 != 0 {
            return Err(invalid("chunk_size", "not a positive multiple of 4096"));
        }
        let mut out = vec![0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.state.code().to_le_bytes());
        out[16..32].copy_from_slice(&self.boot_id);
        out[32..40].copy_from_slice(&self.chunk_size.to_le_bytes());
        out[40..48].copy_from_slice(&self.volume_size.to_le_bytes());
        out[48..56].copy_from_slice(&chunk_count(self.volume_size, self.chunk_size).to_le_bytes());
        out[56..64].copy_from_slice(&self.image_inode.to_le_bytes());
        out[64..72].copy_from_slice(&self.image_mtime.0.to_le_bytes());
        out[72..76].copy_from_slice(&self.image_mtime.1.to_le_bytes());
        // 76..88 reserved, zero.
        put_id(&mut out, OFF_VOLUME_ID, &self.volume_id);
        put_id(&mut out, OFF_BASE, self.base.as_deref().unwrap_or(""));
        let sum = Sha256::digest(&out[..CHECKSUM_AT]);
        out[CHECKSUM_AT..HEADER_USED].copy_from_slice(&sum);
        Ok(out)
    }

    /// Decodes and checks a header block (at least `HEADER_LEN` bytes; only the first
    /// `HEADER_LEN` are read).
    pub fn decode(b: &[u8]) -> Result<Header, RecordError> {
        if b.len() < HEADER_LEN {
            return Err(RecordError::Short(b.len()));
        }
        if b[0..8] != MAGIC {
            return Err(RecordError::Magic);
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let version = u32_at(8);
        if version != VERSION {
            return Err(RecordError::Version(version));
        }
        if Sha256::digest(&b[..CHECKSUM_AT])[..] != b[CHECKSUM_AT..HEADER_USED] {
            return Err(RecordError::Checksum);
        }
        let zero = |r: std::ops::Range<usize>| b[r].iter().all(|&x| x == 0);
        if !zero(76..OFF_VOLUME_ID) || !zero(OFF_END..CHECKSUM_AT) || !zero(HEADER_USED..HEADER_LEN)
        {
            return Err(invalid("reserved", "not zero"));
        }
        let code = u32_at(12);
        let state = State::from_code(code).ok_or(RecordError::State(code))?;
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(&b[16..32]);
        let chunk_size = u64_at(32);
        if chunk_size == 0 || chunk_size % 4096 != 0 {
            return Err(invalid("chunk_size", "not a positive multiple of 4096"));
        }
        let volume_size = u64_at(40);
        if u64_at(48) != chunk_count(volume_size, chunk_size) {
            return Err(invalid("chunk_count", "does not match the volume size"));
        }
        let nanos = u32_at(72);
        if nanos >= 1_000_000_000 {
            return Err(invalid("image_mtime", "nanoseconds out of range"));
        }
        let volume_id = get_id(b, OFF_VOLUME_ID, "volume_id")?;
        let base = get_id(b, OFF_BASE, "base")?;
        Ok(Header {
            state,
            boot_id,
            chunk_size,
            volume_size,
            image_inode: u64_at(56),
            image_mtime: (u64_at(64) as i64, nanos),
            volume_id,
            base: Some(base).filter(|s| !s.is_empty()),
        })
    }
}

/// A whole tracker file: header and bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub header: Header,
    pub bitmap: Bitmap,
}

impl Record {
    /// Parses a whole tracker file; the bitmap must be exactly as long as the volume needs
    /// and have no bit set past the last chunk.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let header = Header::decode(bytes)?;
        let count = chunk_count(header.volume_size, header.chunk_size);
        let want = bitmap_len(header.volume_size, header.chunk_size);
        let got = bytes.len() - HEADER_LEN;
        if got != want {
            return Err(RecordError::BitmapLength { got, want });
        }
        let bitmap = Bitmap::from_bytes(count, &bytes[HEADER_LEN..])?;
        Ok(Record { header, bitmap })
    }

    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = self.header.encode()?;
        out.extend_from_slice(self.bitmap.as_bytes());
        Ok(out)
    }
}

/// What the caller knows about the image now, to judge a record against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    pub volume_id: String,
    pub volume_size: u64,
    pub chunk_size: u64,
    pub inode: u64,
    pub mtime: (i64, u32),
    /// This boot's ID.
    pub boot_id: [u8; 16],
}

impl Record {
    /// The base snapshot and the chunks written since it, if the record is known to be
    /// complete for this image now; `None` if it is not (the next snapshot reads all).
    pub fn changes(&self, now: &ImageFacts) -> Option<(&str, &Bitmap)> {
        let h = &self.header;
        let base = h.base.as_deref()?;
        let same_image = h.volume_id == now.volume_id
            && h.volume_size == now.volume_size
            && h.chunk_size == now.chunk_size
            && h.image_inode == now.inode;
        let complete = match h.state {
            State::Clean => h.image_mtime == now.mtime,
            State::Live => h.boot_id == now.boot_id && now.boot_id != [0u8; 16],
            State::Void => false,
        };
        (same_image && complete).then_some((base, &self.bitmap))
    }
}

/// One bit per chunk, LSB first within each byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    count: u64,
    bytes: Vec<u8>,
}

impl Bitmap {
    pub fn new(count: u64) -> Bitmap {
        Bitmap {
            count,
            bytes: vec![0u8; count.div_ceil(8) as usize],
        }
    }

    /// A bitmap of `count` bits from its bytes; a set bit past `count` is refused.
    pub fn from_bytes(count: u64, bytes: &[u8]) -> Result<Bitmap, RecordError> {
        if bytes.len() as u64 != count.div_ceil(8) {
            return Err(RecordError::BitmapLength {
                got: bytes.len(),
                want: count.div_ceil(8) as usize,
            });
        }
        let spare = (bytes.len() as u64 * 8 - count) as u32;
        if spare > 0 {
            if let Some(last) = bytes.last() {
                if last >> (8 - spare) != 0 {
                    return Err(invalid("bitmap", "a bit is set past the last chunk"));
                }
            }
        }
        Ok(Bitmap {
            count,
            bytes: bytes.to_vec(),
        })
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn get(&self, i: u64) -> bool {
        i < self.count && self.bytes[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Sets bit `i` (ignored past the end); returns the index of the byte that holds it.
    pub fn set(&mut self, i: u64) -> Option<usize> {
        if i >= self.count {
            return None;
        }
        let at = (i / 8) as usize;
        self.bytes[at] |= 1 << (i % 8);
        Some(at)
    }

    /// Sets every bit set in `other` (same length).
    pub fn union(&mut self, other: &Bitmap) {
        for (a, b) in self.bytes.iter_mut().zip(&other.bytes) {
            *a |= *b;
        }
    }

    /// The indices of the set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.count).filter(|&i| self.get(i))
    }

    pub fn count_ones(&self) -> u64 {
        self.bytes.iter().map(|b| u64::from(b.count_ones())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            state: State::Live,
            boot_id: [7u8; 16],
            chunk_size: 1 << 20,
            volume_size: (10 << 20) + 512,
            image_inode: 42,
            image_mtime: (0, 0),
            volume_id: "vol-0123456789abcdef0".into(),
            base: Some("snap-0123456789abcdef0".into()),
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let mut r = Record {
            header: header(),
            bitmap: Bitmap::new(11),
        };
        r.bitmap.set(0);
        r.bitmap.set(10);
        let bytes = r.encode().unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 2);
        assert_eq!(Record::decode(&bytes).unwrap(), r);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert_eq!(Record::decode(&bad), Err(RecordError::Checksum));
        let mut past = bytes.clone();
        past[HEADER_LEN + 1] |= 0x80;
        assert!(Record::decode(&past).is_err());
        assert!(Record::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn completeness_rules() {
        let r = Record {
            header: header(),
            bitmap: Bitmap::new(11),
        };
        let now = ImageFacts {
            volume_id: "vol-0123456789abcdef0".into(),
            volume_size: (10 << 20) + 512,
            chunk_size: 1 << 20,
            inode: 42,
            mtime: (5, 6),
            boot_id: [7u8; 16],
        };
        assert!(r.changes(&now).is_some());
        let other_boot = ImageFacts {
            boot_id: [8u8; 16],
            ..now.clone()
        };
        assert!(r.changes(&other_boot).is_none());
        let mut clean = r.clone();
        clean.header.state = State::Clean;
        clean.header.image_mtime = (5, 6);
        assert!(clean.changes(&other_boot).is_some());
        let touched = ImageFacts {
            mtime: (5, 7),
            ..other_boot.clone()
        };
        assert!(clean.changes(&touched).is_none());
        let replaced = ImageFacts {
            inode: 43,
            ..now.clone()
        };
        assert!(r.changes(&replaced).is_none());
        let mut void = r.clone();
        void.header.state = State::Void;
        assert!(void.changes(&now).is_none());
        let mut nobase = r;
        nobase.header.base = None;
        assert!(nobase.changes(&now).is_none());
    }
}
