//! The `Range` header of a GET or HEAD, read the way S3 reads it. Pure: no I/O, fuzzed by
//! `fuzz/fuzz_targets/range_header.rs`.
//!
//! S3 serves one byte range per request (RFC 9110 §14):
//! - `bytes=FIRST-LAST`, `bytes=FIRST-` and `bytes=-SUFFIX` select bytes; `LAST` past the end
//!   is cut to the end, a suffix longer than the object selects all of it;
//! - a range starting at or past the end, a zero-length suffix, and any range of an empty
//!   object cannot be served: `416 InvalidRange`;
//! - a header that is not a valid byte range (another unit, `LAST < FIRST`, garbage) is
//!   ignored, as RFC 9110 says, and so is a request for several ranges, which S3 does not
//!   serve: the whole object is answered with 200.

use std::ops::Range;

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeHeader {
    /// One byte range.
    Single(ByteRange),
    /// Nothing S3 serves as a range (invalid, or several ranges): the whole object, 200.
    Whole,
}

/// One byte range, before the object's size is known. Offsets are inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=FIRST-LAST`, `FIRST <= LAST`.
    FromTo { first: u64, last: u64 },
    /// `bytes=FIRST-`.
    From { first: u64 },
    /// `bytes=-LEN`: the last `LEN` bytes.
    Suffix { len: u64 },
}

/// A range the object cannot serve (S3's `InvalidRange`, HTTP 416).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The requested range is not satisfiable")]
pub struct Unsatisfiable;

/// Reads a `Range` header value. Never fails: what is not one valid byte range is
/// [`RangeHeader::Whole`].
pub fn parse(value: &[u8]) -> RangeHeader {
    let Ok(s) = std::str::from_utf8(value) else {
        return RangeHeader::Whole;
    };
    let Some((unit, set)) = s.trim().split_once('=') else {
        return RangeHeader::Whole;
    };
    if !unit.trim_end().eq_ignore_ascii_case("bytes") {
        return RangeHeader::Whole;
    }
    // RFC 9110 lists may hold empty elements (`a, , b`); they do not count.
    let mut specs = set.split(',').map(str::trim).filter(|e| !e.is_empty());
    match (specs.next(), specs.next()) {
        (Some(spec), None) => parse_spec(spec).map_or(RangeHeader::Whole, RangeHeader::Single),
        _ => RangeHeader::Whole,
    }
}

/// The largest offset a range keeps (`i64::MAX`): no object is that large, so a larger
/// `FIRST` is unsatisfiable and a larger `LAST` means "to the end" either way, and s3s's
/// strict parser (which the rewritten header goes through again) refuses larger offsets.
pub const MAX_OFFSET: u64 = i64::MAX as u64;

fn parse_spec(spec: &str) -> Option<ByteRange> {
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(ByteRange::Suffix { len: number(last)? });
    }
    let first = number(first)?;
    if last.is_empty() {
        return Some(ByteRange::From {
            first: first.min(MAX_OFFSET),
        });
    }
    let last = number(last)?;
    (first <= last).then_some(ByteRange::FromTo {
        first: first.min(MAX_OFFSET),
        last: last.min(MAX_OFFSET),
    })
}

/// Decimal digits only (no sign, no spaces), fitting a `u64`.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl ByteRange {
    /// The bytes this range selects of an object of `size` bytes (never empty).
    pub fn resolve(self, size: u64) -> Result<Range<u64>, Unsatisfiable> {
        if size == 0 {
            return Err(Unsatisfiable);
        }
        match self {
            ByteRange::FromTo { first, last } if first < size => {
                Ok(first..last.min(size - 1).saturating_add(1))
            }
            ByteRange::From { first } if first < size => Ok(first..size),
            ByteRange::Suffix { len } if len > 0 => Ok(size - len.min(size)..size),
            _ => Err(Unsatisfiable),
        }
    }

    /// The header value that asks for this range.
    pub fn to_header(self) -> String {
        match self {
            ByteRange::FromTo { first, last } => format!("bytes={first}-{last}"),
            ByteRange::From { first } => format!("bytes={first}-"),
            ByteRange::Suffix { len } => format!("bytes=-{len}"),
        }
    }
}

/// The `Content-Range` of a 206 answer: `bytes FIRST-LAST/SIZE` (`span` is not empty).
pub fn content_range(span: &Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{size}", span.start, span.end.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ByteRange::*;
    use RangeHeader::*;

    #[test]
    fn the_three_forms_parse() {
        assert_eq!(
            parse(b"bytes=0-499"),
            Single(FromTo {
                first: 0,
                last: 499
            })
        );
        assert_eq!(parse(b"bytes=9500-"), Single(From { first: 9500 }));
        assert_eq!(parse(b"bytes=-500"), Single(Suffix { len: 500 }));
        assert_eq!(parse(b"bytes=0-0"), Single(FromTo { first: 0, last: 0 }));
        // Optional whitespace, a case-insensitive unit and empty list elements are allowed.
        assert_eq!(
            parse(b" Bytes = 1-2 , "),
            Single(FromTo { first: 1, last: 2 })
        );
        assert_eq!(parse(b"bytes=-0"), Single(Suffix { len: 0 }));
    }

    #[test]
    fn offsets_past_i64_max_are_kept_at_it_so_s3s_reads_the_rewritten_header() {
        // Found by the range_header fuzz smoke (seed fuzz/seeds/range_header/huge.txt): the
        // rewritten header was one s3s's strict parser refuses, so pass 2 failed with 400
        // where S3 answers 416 (FIRST) or the range to the end (LAST).
        for (header, want) in [
            (
                &b"bytes=18446744073709551615-"[..],
                From { first: MAX_OFFSET },
            ),
            (
                b"bytes=0-18446744073709551615",
                FromTo {
                    first: 0,
                    last: MAX_OFFSET,
                },
            ),
            (
                b"bytes=9223372036854775808-18446744073709551615",
                FromTo {
                    first: MAX_OFFSET,
                    last: MAX_OFFSET,
                },
            ),
        ] {
            let Single(r) = parse(header) else {
                panic!("{header:?} is one range")
            };
            assert_eq!(r, want);
            assert!(s3s::dto::Range::parse(&r.to_header()).is_ok());
        }
        assert_eq!(From { first: MAX_OFFSET }.resolve(100), Err(Unsatisfiable));
        assert_eq!(
            parse(b"bytes=18446744073709551615-9223372036854775808"),
            Whole
        );
    }

    #[test]
    fn anything_else_means_the_whole_object() {
        for bad in [
            &b"bytes=0-1,3-4"[..],
            b"bytes=-1,-2",
            b"bytes=5-2",
            b"items=0-1",
            b"bytes 0-1",
            b"bytes=",
            b"bytes=-",
            b"bytes=a-b",
            b"bytes=+1-2",
            b"bytes=1-+2",
            b"bytes=1 -2",
            b"bytes=0-1-2",
            b"bytes=99999999999999999999-",
            b"",
            b"\xff\xfe",
        ] {
            assert_eq!(parse(bad), Whole, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn ranges_resolve_against_the_size_as_s3_does() {
        assert_eq!(FromTo { first: 0, last: 9 }.resolve(100), Ok(0..10));
        assert_eq!(
            FromTo {
                first: 90,
                last: 500
            }
            .resolve(100),
            Ok(90..100)
        );
        assert_eq!(
            FromTo {
                first: 99,
                last: 99
            }
            .resolve(100),
            Ok(99..100)
        );
        assert_eq!(
            FromTo {
                first: 0,
                last: u64::MAX
            }
            .resolve(100),
            Ok(0..100)
        );
        assert_eq!(From { first: 99 }.resolve(100), Ok(99..100));
        assert_eq!(Suffix { len: 10 }.resolve(100), Ok(90..100));
        assert_eq!(Suffix { len: 1000 }.resolve(100), Ok(0..100));
        for unsat in [
            FromTo {
                first: 100,
                last: 200,
            },
            From { first: 100 },
            From { first: u64::MAX },
            Suffix { len: 0 },
        ] {
            assert_eq!(unsat.resolve(100), Err(Unsatisfiable), "{unsat:?}");
        }
        for any in [From { first: 0 }, Suffix { len: 1 }] {
            assert_eq!(any.resolve(0), Err(Unsatisfiable));
        }
    }

    #[test]
    fn headers_round_trip_and_content_range_is_inclusive() {
        for r in [
            FromTo { first: 3, last: 7 },
            From { first: 3 },
            Suffix { len: 7 },
        ] {
            assert_eq!(parse(r.to_header().as_bytes()), Single(r));
        }
        assert_eq!(content_range(&(0..10), 100), "bytes 0-9/100");
        assert_eq!(content_range(&(99..100), 100), "bytes 99-99/100");
    }
}
