//! S3's multipart rules, pure (no I/O):
//! part numbers and sizes, which uploaded parts a `CompleteMultipartUpload` list selects,
//! and the multipart ETag.

use std::collections::BTreeMap;

/// Smallest part but the last, in bytes (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part, in bytes (5 GiB).
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Part numbers run from 1 to this.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Largest object a multipart upload may make (5 TiB).
pub const MAX_MULTIPART_OBJECT: u64 = 5 * 1024 * 1024 * 1024 * 1024;

/// Why a part number or a completion list is refused, with S3's code for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// `InvalidArgument`.
    #[error("Part number must be an integer between 1 and 10000, inclusive")]
    BadPartNumber,
    /// `MalformedXML`: a completion naming no part, or a part without its number.
    #[error(
        "The XML you provided was not well-formed or did not validate against our published schema"
    )]
    MalformedList,
    /// `InvalidPartOrder`.
    #[error("The list of parts was not in ascending order. The parts list must be specified in order by part number.")]
    InvalidPartOrder,
    /// `InvalidPart`.
    #[error("One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.")]
    InvalidPart { number: u32 },
    /// `EntityTooSmall`: a part other than the last is under [`MIN_PART_SIZE`].
    #[error("Your proposed upload is smaller than the minimum allowed object size.")]
    EntityTooSmall { number: u32, size: u64 },
    /// `EntityTooLarge`: the parts add up to more than [`MAX_MULTIPART_OBJECT`].
    #[error("Your proposed upload exceeds the maximum allowed size")]
    EntityTooLarge,
}

impl PartsError {
    /// S3's error code.
    pub fn code(&self) -> &'static str {
        match self {
            PartsError::BadPartNumber => "InvalidArgument",
            PartsError::MalformedList => "MalformedXML",
            PartsError::InvalidPartOrder => "InvalidPartOrder",
            PartsError::InvalidPart { .. } => "InvalidPart",
            PartsError::EntityTooSmall { .. } => "EntityTooSmall",
            PartsError::EntityTooLarge => "EntityTooLarge",
        }
    }
}

/// A part number from a request (1 to 10000).
pub fn part_number(n: i32) -> Result<u32, PartsError> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or(PartsError::BadPartNumber)
}

/// What the store knows of an uploaded part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadedPart<'a> {
    pub size: u64,
    /// The part's ETag, unquoted hex of these bytes.
    pub etag: [u8; 16],
    /// The checksum stored with the part, if it has one: (algorithm as `CRC32`, base64).
    pub checksum: Option<(&'a str, &'a str)>,
}

/// One `<Part>` of a `CompleteMultipartUpload` body, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requested {
    pub number: Option<i32>,
    /// The ETag, quoted or not.
    pub etag: Option<String>,
    /// The part's `<ChecksumCRC32>`, `<ChecksumSHA256>`... it names: (algorithm as
    /// `CRC32`, base64 value as sent).
    pub checksums: Vec<(String, String)>,
}

/// The part numbers a completion list selects, in order, checked as S3 checks them: the
/// list is not empty and strictly ascending; every part was uploaded with that ETag and,
/// for each checksum the list gives with it, was stored with that same checksum; every
/// part but the last is at least 5 MiB; the whole is at most 5 TiB.
pub fn select(
    requested: &[Requested],
    uploaded: &BTreeMap<u32, UploadedPart<'_>>,
) -> Result<Vec<u32>, PartsError> {
    if requested.is_empty() {
        return Err(PartsError::MalformedList);
    }
    let mut numbers = Vec::with_capacity(requested.len());
    for r in requested {
        let n = r.number.ok_or(PartsError::MalformedList)?;
        // A number out of 1..=10000 was never uploaded.
        let n = part_number(n).map_err(|_| PartsError::InvalidPart {
            number: u32::try_from(n).unwrap_or(0),
        })?;
        if numbers.last().is_some_and(|&prev| n <= prev) {
            return Err(PartsError::InvalidPartOrder);
        }
        numbers.push(n);
    }
    let mut total = 0u64;
    for (i, (r, &n)) in requested.iter().zip(&numbers).enumerate() {
        let part = uploaded
            .get(&n)
            .filter(|p| r.etag.as_deref().is_some_and(|e| etag_matches(e, &p.etag)))
            .filter(|p| r.checksums.iter().all(|c| checksum_matches(c, p.checksum)))
            .ok_or(PartsError::InvalidPart { number: n })?;
        if i + 1 < numbers.len() && part.size < MIN_PART_SIZE {
            return Err(PartsError::EntityTooSmall {
                number: n,
                size: part.size,
            });
        }
        total = total.saturating_add(part.size);
    }
    if total > MAX_MULTIPART_OBJECT {
        return Err(PartsError::EntityTooLarge);
    }
    Ok(numbers)
}

/// Whether a client's ETag (`"hex"`, `hex`, any case) names `etag`.
fn etag_matches(given: &str, etag: &[u8; 16]) -> bool {
    let given = given.trim();
    let given = given
        .strip_prefix('"')
        .and_then(|g| g.strip_suffix('"'))
        .unwrap_or(given);
    hex::decode(given).is_ok_and(|g| g == etag)
}

/// Whether a checksum a completion list gives for a part is the one stored with it: same
/// algorithm (any case) and same base64 value. A part stored without a checksum matches
/// none (S3 answers `InvalidPart` for both).
fn checksum_matches((algorithm, value): &(String, String), stored: Option<(&str, &str)>) -> bool {
    stored.is_some_and(|(a, v)| a.eq_ignore_ascii_case(algorithm) && v == value.trim())
}

/// A multipart object's ETag as S3 makes it: the MD5 of the part ETags' bytes, then `-N`.
pub fn multipart_etag(parts: &[[u8; 16]]) -> String {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), parts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn uploaded(parts: &[(u32, u64)]) -> BTreeMap<u32, UploadedPart<'static>> {
        parts
            .iter()
            .map(|&(n, size)| {
                (
                    n,
                    UploadedPart {
                        size,
                        etag: [n as u8; 16],
                        checksum: None,
                    },
                )
            })
            .collect()
    }

    fn req(n: i32) -> Requested {
        Requested {
            number: Some(n),
            etag: Some(format!("\"{}\"", hex::encode([n as u8; 16]))),
            checksums: Vec::new(),
        }
    }

    #[test]
    fn a_valid_list_selects_its_parts_in_order() {
        let up = uploaded(&[(1, 5 * MIB), (2, 7 * MIB), (3, 1), (9, 5 * MIB)]);
        assert_eq!(select(&[req(1), req(3)], &up), Ok(vec![1, 3]));
        assert_eq!(select(&[req(2), req(9)], &up), Ok(vec![2, 9]));
        assert_eq!(
            select(&[req(3)], &up),
            Ok(vec![3]),
            "a lone part may be small"
        );
        // Unquoted and upper-case ETags name the same part.
        let mut r = req(2);
        r.etag = Some(hex::encode_upper([2u8; 16]));
        assert_eq!(select(&[r], &up), Ok(vec![2]));
    }

    #[test]
    fn bad_lists_get_s3s_errors() {
        let up = uploaded(&[(1, 5 * MIB), (2, 1), (3, 5 * MIB)]);
        assert_eq!(select(&[], &up), Err(PartsError::MalformedList));
        let no_number = Requested {
            number: None,
            ..req(1)
        };
        assert_eq!(select(&[no_number], &up), Err(PartsError::MalformedList));
        assert_eq!(
            select(&[req(3), req(1)], &up),
            Err(PartsError::InvalidPartOrder)
        );
        assert_eq!(
            select(&[req(1), req(1)], &up),
            Err(PartsError::InvalidPartOrder)
        );
        assert_eq!(
            select(&[req(1), req(4)], &up),
            Err(PartsError::InvalidPart { number: 4 })
        );
        assert_eq!(
            select(&[req(0)], &up),
            Err(PartsError::InvalidPart { number: 0 })
        );
        let mut wrong = req(3);
        wrong.etag = req(1).etag;
        assert_eq!(
            select(&[req(1), wrong], &up),
            Err(PartsError::InvalidPart { number: 3 })
        );
        let mut none = req(3);
        none.etag = None;
        assert_eq!(
            select(&[none], &up),
            Err(PartsError::InvalidPart { number: 3 })
        );
        assert_eq!(
            select(&[req(2), req(3)], &up),
            Err(PartsError::EntityTooSmall { number: 2, size: 1 })
        );
        assert_eq!(select(&[req(1), req(2)], &up), Ok(vec![1, 2]));
        let huge = uploaded(&[(1, MAX_PART_SIZE), (2, MAX_MULTIPART_OBJECT)]);
        assert_eq!(
            select(&[req(1), req(2)], &huge),
            Err(PartsError::EntityTooLarge)
        );
    }

    #[test]
    fn a_part_checksum_in_the_list_must_be_the_stored_one() {
        let mut up = uploaded(&[(1, 5 * MIB), (2, 1)]);
        if let Some(p) = up.get_mut(&1) {
            p.checksum = Some(("CRC32", "AAAAAQ=="));
        }
        let with = |n: i32, alg: &str, v: &str| Requested {
            checksums: vec![(alg.to_string(), v.to_string())],
            ..req(n)
        };
        // The same value (the algorithm in any case) selects; none given is not checked.
        assert_eq!(
            select(&[with(1, "CRC32", "AAAAAQ=="), req(2)], &up),
            Ok(vec![1, 2])
        );
        assert_eq!(select(&[with(1, "crc32", "AAAAAQ==")], &up), Ok(vec![1]));
        let invalid = Err(PartsError::InvalidPart { number: 1 });
        // Another value, another algorithm, or one for a part stored without any.
        assert_eq!(
            select(&[with(1, "CRC32", "AAAAAg=="), req(2)], &up),
            invalid
        );
        assert_eq!(select(&[with(1, "CRC32C", "AAAAAQ==")], &up), invalid);
        assert_eq!(
            select(&[req(1), with(2, "CRC32", "AAAAAQ==")], &up),
            Err(PartsError::InvalidPart { number: 2 })
        );
    }

    #[test]
    fn part_numbers_run_from_1_to_10000() {
        assert_eq!(part_number(1), Ok(1));
        assert_eq!(part_number(10_000), Ok(10_000));
        for bad in [0, -1, 10_001, i32::MAX, i32::MIN] {
            assert_eq!(part_number(bad), Err(PartsError::BadPartNumber));
        }
    }

    #[test]
    fn the_etag_is_the_md5_of_the_part_md5s() {
        use md5::Digest;
        // Two parts "a" and "b": what `aws s3` users compute by hand to check an upload.
        let a: [u8; 16] = md5::Md5::digest(b"a").into();
        let b: [u8; 16] = md5::Md5::digest(b"b").into();
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        let expect = format!("\"{}-2\"", hex::encode(md5::Md5::digest(&both)));
        assert_eq!(multipart_etag(&[a, b]), expect);
    }
}
