//! S3's composite checksum of a multipart object (pure): the checksum, under the parts'
//! one algorithm, of the concatenation of the parts' raw checksums, then `-<part count>`
//! (`x-amz-checksum-crc32: <base64>-3`, `x-amz-checksum-type: COMPOSITE`). S3 makes one
//! for CRC32, CRC32C, SHA1 and SHA256 parts; CRC64NVME uploads get a full-object CRC
//! instead, which atrest does not compute, so such an object has no stored checksum.

use base64::Engine as _;
use s3s::crypto::{Crc32, Crc32c, Sha1, Sha256};

use super::meta::{ChecksumKind, StoredChecksum};

/// The composite checksum of parts in object order, if every part was checked against a
/// full-part checksum of the same algorithm S3 composes.
pub fn composite(parts: &[Option<&StoredChecksum>]) -> Option<StoredChecksum> {
    let first = parts.first().copied().flatten()?;
    let mut raw = Vec::new();
    for p in parts {
        let p = (*p)?;
        if p.algorithm != first.algorithm || p.kind != ChecksumKind::FullObject {
            return None;
        }
        raw.extend(
            base64::engine::general_purpose::STANDARD
                .decode(&p.value)
                .ok()?,
        );
    }
    let digest: Vec<u8> = match first.algorithm.as_str() {
        "CRC32" => hash::<Crc32>(&raw),
        "CRC32C" => hash::<Crc32c>(&raw),
        "SHA1" => hash::<Sha1>(&raw),
        "SHA256" => hash::<Sha256>(&raw),
        _ => return None,
    };
    Some(StoredChecksum {
        algorithm: first.algorithm.clone(),
        value: format!(
            "{}-{}",
            base64::engine::general_purpose::STANDARD.encode(digest),
            parts.len()
        ),
        kind: ChecksumKind::Composite,
    })
}

fn hash<H: s3s::crypto::Checksum>(data: &[u8]) -> Vec<u8>
where
    H::Output: AsRef<[u8]>,
{
    let mut h = H::new();
    h.update(data);
    h.finalize().as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(alg: &str, value: &str) -> StoredChecksum {
        StoredChecksum {
            algorithm: alg.into(),
            value: value.into(),
            kind: ChecksumKind::FullObject,
        }
    }

    #[test]
    fn composite_is_the_checksum_of_the_part_checksums() {
        // Parts "hello" and "world": CRC32 NhCmhg== and OncRQw==; the CRC32 of their four
        // bytes each, concatenated, computed independently with Python's zlib.crc32
        // (0xc299fbb6).
        let a = part("CRC32", "NhCmhg==");
        let b = part("CRC32", "OncRQw==");
        let c = composite(&[Some(&a), Some(&b)]).expect("composite");
        assert_eq!(c.value, "wpn7tg==-2");
        assert_eq!(c.kind, ChecksumKind::Composite);
        assert_eq!(c.algorithm, "CRC32");
        // A part without a checksum, another algorithm, or CRC64NVME: none.
        assert!(composite(&[Some(&a), None]).is_none());
        assert!(composite(&[Some(&a), Some(&part("SHA1", "AAAA"))]).is_none());
        assert!(composite(&[Some(&part("CRC64NVME", "AAAAAAAAAAA="))]).is_none());
        assert!(composite(&[]).is_none());
    }
}
