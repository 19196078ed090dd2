//! Which bytes of an object a GetObject or HeadObject asks for: all of it, one `Range`
//! (`range.rs` has S3's rules), or one part (`partNumber`), and the refusals S3 gives.

use std::ops::Range;

use super::super::meta::ObjectMeta;
use super::super::parts;
use super::super::range::{self, ByteRange};
use super::error::ApiError;

/// The bytes a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Whole,
    Range(ByteRange),
    /// A part number (1 to 10000).
    Part(u32),
}

impl Want {
    /// From the request's `Range` header (as s3s parsed it) and `partNumber`.
    pub fn of(range: Option<&s3s::dto::Range>, part_number: Option<i32>) -> Result<Want, ApiError> {
        match (range, part_number) {
            (Some(_), Some(_)) => Err(ApiError::refused(
                "InvalidRequest",
                400,
                "Cannot specify both Range header and partNumber query parameter",
            )),
            (None, Some(n)) => Ok(Want::Part(
                parts::part_number(n).map_err(|e| ApiError::invalid_argument(e.to_string()))?,
            )),
            (Some(r), None) => Ok(Want::Range(match *r {
                s3s::dto::Range::Int {
                    first,
                    last: Some(last),
                } => ByteRange::FromTo { first, last },
                s3s::dto::Range::Int { first, last: None } => ByteRange::From { first },
                s3s::dto::Range::Suffix { length } => ByteRange::Suffix { len: length },
            })),
            (None, None) => Ok(Want::Whole),
        }
    }

    /// The stored checksum a read with `x-amz-checksum-mode: ENABLED` returns for
    /// `span`: the object's when it reads the whole object; with `partNumber`, that part's
    /// (a multipart object keeps each part's checksum under its upload's algorithm, typed
    /// as the object's), as S3 returns them; none for other ranges.
    pub fn checksum(
        &self,
        meta: &ObjectMeta,
        span: &Range<u64>,
    ) -> Option<super::super::meta::StoredChecksum> {
        if let (Want::Part(n), Some(mp)) = (self, &meta.multipart) {
            let part = mp.parts.iter().find(|p| p.number == *n)?.checksum.clone()?;
            let kind = meta.checksum.as_ref().map_or(part.kind, |c| c.kind);
            return Some(super::super::meta::StoredChecksum { kind, ..part });
        }
        (*span == (0..meta.size))
            .then(|| meta.checksum.clone())
            .flatten()
    }

    /// Whether the answer is a 206 with a `Content-Range`.
    pub fn is_partial(&self) -> bool {
        !matches!(self, Want::Whole)
    }

    /// The bytes of the object this asks for, or S3's refusal (416 `InvalidRange`,
    /// 416 `InvalidPartNumber`).
    pub fn span(&self, meta: &ObjectMeta) -> Result<Range<u64>, ApiError> {
        match *self {
            Want::Whole => Ok(0..meta.size),
            Want::Range(r) => r
                .resolve(meta.size)
                .map_err(|e| ApiError::refused("InvalidRange", 416, e.to_string())),
            Want::Part(n) => {
                let span = match meta.segments() {
                    // An object stored by one PUT is its own part 1.
                    Some(_) if meta.multipart.is_none() => (n == 1).then_some(0..meta.size),
                    Some(segs) => segs
                        .iter()
                        .find(|s| s.part == Some(n))
                        .map(|s| s.offset..s.offset + s.size),
                    None => None,
                };
                span.ok_or_else(|| {
                    ApiError::refused(
                        "InvalidPartNumber",
                        416,
                        "The requested partnumber is not satisfiable",
                    )
                })
            }
        }
    }

    /// The `Content-Range` of the answer, for a partial one.
    pub fn content_range(&self, span: &Range<u64>, size: u64) -> Option<String> {
        self.is_partial().then(|| range::content_range(span, size))
    }

    /// `x-amz-mp-parts-count`: S3 sends it when a part of a multipart object was asked for.
    pub fn parts_count(&self, meta: &ObjectMeta) -> Option<i32> {
        match self {
            Want::Part(_) => meta.parts_count().and_then(|n| i32::try_from(n).ok()),
            _ => None,
        }
    }
}
