//! S3's checksums of a multipart object (pure). An upload names its algorithm and type at
//! CreateMultipartUpload (`x-amz-checksum-algorithm`, `x-amz-checksum-type`; CRC64NVME is
//! always `FULL_OBJECT`, the others `COMPOSITE` unless asked otherwise, SHA1 and SHA256
//! only `COMPOSITE`), and every part's checksum under it is kept ([`Hasher`] computes it
//! as the part streams in, whether or not the client sent one):
//! - `COMPOSITE`: the checksum, under the parts' one algorithm, of the concatenation of the
//!   parts' raw checksums, then `-<part count>` (`x-amz-checksum-crc32: <base64>-3`);
//! - `FULL_OBJECT` (CRC32, CRC32C, CRC64NVME): the CRC of the whole object, combined from
//!   the parts' CRCs and sizes (`crc_fast::checksum_combine`, the GF(2) shift zlib's
//!   `crc32_combine` does), so no byte is read again at CompleteMultipartUpload.

use base64::Engine as _;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};

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

/// The algorithms S3 names, as stored (`x-amz-checksum-<lower case>` on the wire).
pub const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

/// What an upload's parts and object are checked and summed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadChecksum {
    /// One of [`ALGORITHMS`].
    pub algorithm: String,
    pub kind: ChecksumKind,
}

/// Why a CreateMultipartUpload's checksum headers are refused (S3's `InvalidRequest`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumChoiceError {
    #[error("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")]
    Algorithm,
    #[error("Checksum type provided is unsupported. Please try again with any of the valid types: [COMPOSITE, FULL_OBJECT]")]
    Type,
    #[error("The {kind} checksum type cannot be used with the {algorithm} checksum algorithm.")]
    Combination {
        kind: &'static str,
        algorithm: String,
    },
    #[error(
        "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
    )]
    TypeWithoutAlgorithm,
}

impl UploadChecksum {
    /// The upload's checksum from `x-amz-checksum-algorithm` and `x-amz-checksum-type`, as
    /// S3 resolves them (none: the object gets no checksum, as before SDKs sent one).
    pub fn resolve(
        algorithm: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Option<UploadChecksum>, ChecksumChoiceError> {
        let Some(algorithm) = algorithm else {
            return match kind {
                Some(_) => Err(ChecksumChoiceError::TypeWithoutAlgorithm),
                None => Ok(None),
            };
        };
        let algorithm = ALGORITHMS
            .into_iter()
            .find(|a| a.eq_ignore_ascii_case(algorithm.trim()))
            .ok_or(ChecksumChoiceError::Algorithm)?
            .to_string();
        let kind = match kind.map(str::trim) {
            None if algorithm == "CRC64NVME" => ChecksumKind::FullObject,
            None => ChecksumKind::Composite,
            Some(k) if k.eq_ignore_ascii_case("COMPOSITE") => ChecksumKind::Composite,
            Some(k) if k.eq_ignore_ascii_case("FULL_OBJECT") => ChecksumKind::FullObject,
            Some(_) => return Err(ChecksumChoiceError::Type),
        };
        let allowed = match kind {
            ChecksumKind::Composite => algorithm != "CRC64NVME",
            ChecksumKind::FullObject => algorithm.starts_with("CRC"),
        };
        if !allowed {
            return Err(ChecksumChoiceError::Combination {
                kind: kind.as_str(),
                algorithm,
            });
        }
        Ok(Some(UploadChecksum { algorithm, kind }))
    }
}

/// A running checksum under one of [`ALGORITHMS`] (s3s's digests, the ones it signs with).
pub enum Hasher {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Crc64Nvme(Crc64Nvme),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    /// A hasher for `algorithm` (`None` for a name S3 does not know).
    pub fn new(algorithm: &str) -> Option<Hasher> {
        Some(match algorithm {
            "CRC32" => Hasher::Crc32(Crc32::new()),
            "CRC32C" => Hasher::Crc32c(Crc32c::new()),
            "CRC64NVME" => Hasher::Crc64Nvme(Crc64Nvme::new()),
            "SHA1" => Hasher::Sha1(Sha1::new()),
            "SHA256" => Hasher::Sha256(Sha256::new()),
            _ => return None,
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Crc32c(h) => h.update(data),
            Hasher::Crc64Nvme(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    /// The raw digest (big-endian for the CRCs, as S3 encodes them).
    pub fn finalize(self) -> Vec<u8> {
        match self {
            Hasher::Crc32(h) => h.finalize().to_vec(),
            Hasher::Crc32c(h) => h.finalize().to_vec(),
            Hasher::Crc64Nvme(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().as_ref().to_vec(),
            Hasher::Sha256(h) => h.finalize().as_ref().to_vec(),
        }
    }
}

/// The full-object CRC of a multipart object from its parts' (checksum, size) in object
/// order, if every part has a full-part CRC of one algorithm that combines.
pub fn full_object(parts: &[(Option<&StoredChecksum>, u64)]) -> Option<StoredChecksum> {
    let first = parts.first()?.0?;
    let (crc, width) = match first.algorithm.as_str() {
        "CRC32" => (crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
        "CRC32C" => (crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
        "CRC64NVME" => (crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        _ => return None,
    };
    let mut acc: Option<u64> = None;
    for (p, size) in parts {
        let p = (*p)?;
        if p.algorithm != first.algorithm || p.kind != ChecksumKind::FullObject {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&p.value)
            .ok()
            .filter(|r| r.len() == width)?;
        let value = raw.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
        acc = Some(match acc {
            None => value,
            Some(a) => crc_fast::checksum_combine(crc, a, value, *size),
        });
    }
    let value = acc?;
    let bytes = value.to_be_bytes();
    Some(StoredChecksum {
        algorithm: first.algorithm.clone(),
        value: base64::engine::general_purpose::STANDARD.encode(&bytes[8 - width..]),
        kind: ChecksumKind::FullObject,
    })
}

/// The object checksum of an upload made under `choice` from its parts' (checksum, size)
/// in object order. Without a choice (a client that named no algorithm) a composite one
/// is still made if every part was checked against the same algorithm, as before.
pub fn of_upload(
    choice: Option<&UploadChecksum>,
    parts: &[(Option<&StoredChecksum>, u64)],
) -> Option<StoredChecksum> {
    match choice.map(|c| c.kind) {
        Some(ChecksumKind::FullObject) => full_object(parts),
        _ => composite(&parts.iter().map(|(c, _)| *c).collect::<Vec<_>>()),
    }
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

    fn crc(alg: &str, data: &[u8]) -> StoredChecksum {
        let mut h = Hasher::new(alg).unwrap();
        h.update(data);
        part(
            alg,
            &base64::engine::general_purpose::STANDARD.encode(h.finalize()),
        )
    }

    #[test]
    fn full_object_crcs_combine_from_the_parts() {
        // The CRC of the whole, computed in one pass, equals the combination of the parts'.
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for alg in ["CRC32", "CRC32C", "CRC64NVME"] {
            let cuts = [0, 1, 65_536, 200_000, 300_001];
            let parts: Vec<StoredChecksum> = cuts
                .windows(2)
                .map(|w| crc(alg, &data[w[0]..w[1]]))
                .collect();
            let sized: Vec<(Option<&StoredChecksum>, u64)> = parts
                .iter()
                .zip(cuts.windows(2))
                .map(|(p, w)| (Some(p), (w[1] - w[0]) as u64))
                .collect();
            let got = full_object(&sized).unwrap();
            assert_eq!(got, crc(alg, &data), "{alg}");
        }
        // Known answers: CRC32 of "hello world" (Python zlib.crc32: 0x0d4a1185) from
        // "hello" and " world"; CRC64NVME of "123456789" is 0xae8b14860a799888 (the
        // check value of the CRC-64/NVME catalogue entry).
        let hw = full_object(&[
            (Some(&crc("CRC32", b"hello")), 5),
            (Some(&crc("CRC32", b" world")), 6),
        ])
        .unwrap();
        assert_eq!(hw.value, "DUoRhQ==");
        let nvme = full_object(&[
            (Some(&crc("CRC64NVME", b"1234")), 4),
            (Some(&crc("CRC64NVME", b"56789")), 5),
        ])
        .unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(nvme.value)
                .unwrap(),
            0xae8b_1486_0a79_9888u64.to_be_bytes()
        );
        // SHA256 does not combine; a missing part checksum leaves none.
        assert!(full_object(&[(Some(&crc("SHA256", b"x")), 1)]).is_none());
        assert!(full_object(&[(Some(&crc("CRC32", b"x")), 1), (None, 1)]).is_none());
    }

    #[test]
    fn an_upload_checksum_is_resolved_as_s3_resolves_it() {
        let ok = |a, k| {
            UploadChecksum::resolve(a, k)
                .unwrap()
                .map(|c| (c.algorithm, c.kind))
        };
        assert_eq!(ok(None, None), None);
        assert_eq!(
            ok(Some("crc32"), None),
            Some(("CRC32".into(), ChecksumKind::Composite))
        );
        assert_eq!(
            ok(Some("CRC64NVME"), None),
            Some(("CRC64NVME".into(), ChecksumKind::FullObject))
        );
        assert_eq!(
            ok(Some("CRC32C"), Some("FULL_OBJECT")),
            Some(("CRC32C".into(), ChecksumKind::FullObject))
        );
        let err = |a, k| UploadChecksum::resolve(a, k).unwrap_err();
        assert!(matches!(
            err(Some("SHA256"), Some("FULL_OBJECT")),
            ChecksumChoiceError::Combination { .. }
        ));
        assert!(matches!(
            err(Some("CRC64NVME"), Some("COMPOSITE")),
            ChecksumChoiceError::Combination { .. }
        ));
        assert_eq!(err(Some("MD5"), None), ChecksumChoiceError::Algorithm);
        assert_eq!(
            err(Some("CRC32"), Some("PARTIAL")),
            ChecksumChoiceError::Type
        );
        assert_eq!(
            err(None, Some("COMPOSITE")),
            ChecksumChoiceError::TypeWithoutAlgorithm
        );
    }
}
