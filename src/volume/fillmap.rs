//! The fill map of a lazily restored volume (`HOME/volumes/vol-*.fill`, beside its image):
//! which chunks of the image already hold their final bytes. Pure encode/decode (fuzzed);
//! the I/O and the rules for when it is written are in [`super::lazy`]. Byte layout:
//! docs/FORMAT.md, "Fill map".

use sha2::{Digest, Sha256};

/// `ATRESTFM`.
pub const MAGIC: [u8; 8] = *b"ATRESTFM";
pub const VERSION: u16 = 1;
/// Bytes before the variable fields.
const FIXED: usize = 36;
const CHECKSUM: usize = 32;
/// At most this many chunks (a 64 TiB volume of 1 MiB chunks): the bitmap stays <= 8 MiB.
pub const MAX_CHUNKS: u64 = 1 << 26;
/// Largest volume a map describes (as the volume header's limit).
const MAX_SIZE: u64 = 64 << 40;

/// Why a fill map's bytes were refused. Every field is checked; nothing panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillMapError {
    #[error("not a fill map (bad magic)")]
    BadMagic,
    #[error("unsupported fill map version {0}")]
    UnsupportedVersion(u16),
    #[error("fill map truncated in {field}")]
    Truncated { field: &'static str },
    #[error("fill map checksum mismatch")]
    ChecksumMismatch,
    #[error("fill map field {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> FillMapError {
    FillMapError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Which chunks of a restored volume are filled. A set bit means the image holds the
/// chunk's final bytes (copied from the snapshot, or written by the guest after its fill):
/// nothing may copy over it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillMap {
    volume_id: String,
    snapshot_id: String,
    chunk_size: u64,
    size_bytes: u64,
    count: u64,
    bits: Vec<u8>,
}

fn check_id(field: &'static str, id: &str, max: usize) -> Result<(), FillMapError> {
    if id.is_empty() || id.len() > max {
        return Err(invalid(
            field,
            format!("length {} not in 1..={max}", id.len()),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid(field, "only A-Z a-z 0-9 . _ - are allowed"));
    }
    Ok(())
}

impl FillMap {
    /// A map with nothing filled for a `size_bytes` volume cut into `chunk_size` chunks.
    pub fn new(
        volume_id: &str,
        snapshot_id: &str,
        chunk_size: u64,
        size_bytes: u64,
    ) -> Result<FillMap, FillMapError> {
        check_id("volume_id", volume_id, 255)?;
        check_id("snapshot_id", snapshot_id, 128)?;
        if chunk_size == 0 || chunk_size % 4096 != 0 || chunk_size > u64::from(u32::MAX) {
            return Err(invalid(
                "chunk_size",
                format!("{chunk_size} is not a multiple of 4096 below 4 GiB"),
            ));
        }
        if size_bytes == 0 || size_bytes > MAX_SIZE || size_bytes % 512 != 0 {
            return Err(invalid(
                "size_bytes",
                format!("{size_bytes} is not a multiple of 512 in 1..=64 TiB"),
            ));
        }
        let count = size_bytes.div_ceil(chunk_size);
        if count > MAX_CHUNKS {
            return Err(invalid(
                "chunk_count",
                format!("{count} chunks (at most {MAX_CHUNKS})"),
            ));
        }
        Ok(FillMap {
            volume_id: volume_id.to_string(),
            snapshot_id: snapshot_id.to_string(),
            chunk_size,
            size_bytes,
            count,
            bits: vec![0u8; count.div_ceil(8) as usize],
        })
    }

    pub fn volume_id(&self) -> &str {
        &self.volume_id
    }
    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    /// Number of chunks (the last one may be shorter than `chunk_size`).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True if chunk `i` is filled (false for an index past the end).
    pub fn get(&self, i: u64) -> bool {
        i < self.count
            && self
                .bits
                .get((i / 8) as usize)
                .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Marks chunk `i` filled (an index past the end is ignored).
    pub fn set(&mut self, i: u64) {
        if i < self.count {
            if let Some(b) = self.bits.get_mut((i / 8) as usize) {
                *b |= 1 << (i % 8);
            }
        }
    }

    /// How many chunks are filled.
    pub fn filled(&self) -> u64 {
        self.bits.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    pub fn is_complete(&self) -> bool {
        self.filled() == self.count
    }

    /// The file's bytes (docs/FORMAT.md, "Fill map").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            FIXED + 2 + self.volume_id.len() + self.snapshot_id.len() + self.bits.len() + CHECKSUM,
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        // new() keeps chunk_size below 4 GiB.
        out.extend_from_slice(&(self.chunk_size as u32).to_le_bytes());
        out.extend_from_slice(&self.size_bytes.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(self.volume_id.len() as u8);
        out.extend_from_slice(self.volume_id.as_bytes());
        out.push(self.snapshot_id.len() as u8);
        out.extend_from_slice(self.snapshot_id.as_bytes());
        out.extend_from_slice(&self.bits);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses a fill map: magic, version, checksum, then every field by the rules of
    /// [`FillMap::new`]; the file must end exactly after the checksum and bits past the
    /// last chunk must be zero, so one map has one encoding.
    pub fn decode(bytes: &[u8]) -> Result<FillMap, FillMapError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8, "magic")? != MAGIC {
            return Err(FillMapError::BadMagic);
        }
        let version = r.u16("version")?;
        if version != VERSION {
            return Err(FillMapError::UnsupportedVersion(version));
        }
        let body_len = bytes
            .len()
            .checked_sub(CHECKSUM)
            .ok_or(FillMapError::Truncated { field: "checksum" })?;
        if body_len < FIXED {
            return Err(FillMapError::Truncated { field: "header" });
        }
        let (body, sum) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != sum {
            return Err(FillMapError::ChecksumMismatch);
        }
        let mut r = Reader {
            bytes: body,
            pos: 10,
        };
        if r.u16("flags")? != 0 {
            return Err(invalid("flags", "reserved, must be 0"));
        }
        let chunk_size = u64::from(r.u32("chunk_size")?);
        let size_bytes = r.u64("size_bytes")?;
        let count = r.u64("chunk_count")?;
        if r.u32("reserved")? != 0 {
            return Err(invalid("reserved", "must be 0"));
        }
        let volume_id = r.string("volume_id")?;
        let snapshot_id = r.string("snapshot_id")?;
        let mut map = FillMap::new(&volume_id, &snapshot_id, chunk_size, size_bytes)?;
        if count != map.count {
            return Err(invalid(
                "chunk_count",
                format!("{count}, but the size and chunk size make {}", map.count),
            ));
        }
        let bits = r.take(map.bits.len(), "bitmap")?;
        if r.pos != body.len() {
            return Err(invalid("length", "bytes after the bitmap"));
        }
        if count % 8 != 0 {
            let last = bits.last().copied().unwrap_or(0);
            if last >> (count % 8) != 0 {
                return Err(invalid("bitmap", "bits set past the last chunk"));
            }
        }
        map.bits.copy_from_slice(bits);
        Ok(map)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FillMapError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(FillMapError::Truncated { field })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FillMapError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, FillMapError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, FillMapError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, FillMapError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    fn string(&mut self, field: &'static str) -> Result<String, FillMapError> {
        let [n] = self.array::<1>(field)?;
        let s = self.take(usize::from(n), field)?;
        String::from_utf8(s.to_vec()).map_err(|_| invalid(field, "not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> FillMap {
        let mut m = FillMap::new(
            "vol-0123456789abcdef0",
            "snap-0123456789abcdef0",
            1 << 20,
            11 << 20,
        )
        .unwrap();
        m.set(0);
        m.set(9);
        m.set(10);
        m
    }

    #[test]
    fn round_trips_and_counts() {
        let m = map();
        assert_eq!(m.count(), 11);
        assert_eq!(m.filled(), 3);
        assert!(m.get(9) && !m.get(8) && !m.get(11));
        let bytes = m.encode();
        assert_eq!(FillMap::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let bytes = map().encode();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(FillMap::decode(&b).is_err(), "bit {i}");
        }
        for n in 0..bytes.len() {
            assert!(FillMap::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn refuses_bad_fields() {
        assert!(FillMap::new("vol 1", "snap-1", 1 << 20, 1 << 20).is_err());
        assert!(FillMap::new("vol-1", "", 1 << 20, 1 << 20).is_err());
        assert!(FillMap::new("vol-1", "snap-1", 1000, 1 << 20).is_err());
        assert!(FillMap::new("vol-1", "snap-1", 4096, 0).is_err());
        assert!(FillMap::new("vol-1", "snap-1", 4096, 64 << 40).is_err());
    }
}
