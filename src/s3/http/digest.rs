//! The integrity a client declares for a body: `Content-MD5` and `x-amz-checksum-*` (in the
//! headers, or as a trailer of an `aws-chunked` body, named by `x-amz-trailer`), checked as
//! the body streams in (`upload.rs`'s [`BodyCheck`]) and before anything is committed, as S3
//! checks them: a malformed value is `InvalidDigest` (MD5) or `InvalidRequest` (checksums)
//! before a byte is stored; a value that does not match the body is `BadDigest`, and the
//! upload is discarded. The digests are s3s's (`s3s::crypto`), the ones it signs with.

use base64::Engine as _;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};

use super::super::checksum::Hasher;
use super::super::meta::{ChecksumKind, StoredChecksum};
use super::error::ApiError;
use super::upload::BodyCheck;

/// The checksum algorithms S3 knows, by their `x-amz-checksum-<name>` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// The header suffix and `x-amz-sdk-checksum-algorithm` value, lower case.
    fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "crc32",
            Algorithm::Crc32c => "crc32c",
            Algorithm::Crc64Nvme => "crc64nvme",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
        }
    }

    fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name())
    }

    fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// What a request declares about its body.
#[derive(Debug, Default)]
pub struct Declared<'a> {
    pub content_md5: Option<&'a str>,
    /// `x-amz-checksum-*` headers: (algorithm, base64 value).
    pub checksums: Vec<(Algorithm, &'a str)>,
    /// `x-amz-sdk-checksum-algorithm`.
    pub sdk_algorithm: Option<&'a str>,
    /// `x-amz-trailer`: the trailing header the body ends with.
    pub trailer: Option<&'a str>,
}

impl Declared<'_> {
    /// The checksum algorithm the request names (an `x-amz-checksum-*` header, the trailer,
    /// or `x-amz-sdk-checksum-algorithm`), as stored (`CRC32`...); `None` if it names none
    /// or one S3 does not know (which [`checks`] refuses).
    pub fn algorithm(&self) -> Option<&'static str> {
        let alg = match (self.checksums.first(), self.trailer) {
            (Some(&(a, _)), _) => Some(a),
            (None, Some(t)) => t
                .trim()
                .strip_prefix("x-amz-checksum-")
                .and_then(Algorithm::parse),
            (None, None) => self.sdk_algorithm.and_then(Algorithm::parse),
        };
        alg.map(|a| match a {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        })
    }
}

/// The digests an s3s input declares (`Content-MD5`, `x-amz-checksum-*`,
/// `x-amz-sdk-checksum-algorithm`), so PutObject and UploadPart read them one way.
pub trait DeclaresDigests {
    /// What the request declares; `trailer` is the request's `x-amz-trailer`.
    fn declared<'a>(&'a self, trailer: Option<&'a str>) -> Declared<'a>;
}

macro_rules! declares_digests {
    ($($input:ty),+) => {$(
        impl DeclaresDigests for $input {
            fn declared<'a>(&'a self, trailer: Option<&'a str>) -> Declared<'a> {
                // The x-amz-checksum-* members, in [`Algorithm`] order.
                let values = [
                    self.checksum_crc32.as_deref(),
                    self.checksum_crc32c.as_deref(),
                    self.checksum_crc64nvme.as_deref(),
                    self.checksum_sha1.as_deref(),
                    self.checksum_sha256.as_deref(),
                ];
                Declared {
                    content_md5: self.content_md5.as_deref(),
                    checksums: Algorithm::ALL
                        .into_iter()
                        .zip(values)
                        .filter_map(|(a, v)| v.map(|v| (a, v)))
                        .collect(),
                    sdk_algorithm: self.checksum_algorithm.as_ref().map(|a| a.as_str()),
                    trailer,
                }
            }
        }
    )+};
}

declares_digests!(s3s::dto::PutObjectInput, s3s::dto::UploadPartInput);

/// What a request's headers declare about its body, for operations whose s3s input does
/// not carry the digests (DeleteObjects, whose body s3s reads whole).
pub fn declared_in(headers: &hyper::HeaderMap) -> Declared<'_> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Declared {
        content_md5: text("content-md5"),
        checksums: Algorithm::ALL
            .into_iter()
            .filter_map(|a| headers.get(a.header()).map(|v| (a, v)))
            .map(|(a, v)| (a, v.to_str().unwrap_or("")))
            .collect(),
        sdk_algorithm: text("x-amz-sdk-checksum-algorithm"),
        trailer: None,
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// The checks a request's declarations ask for; refuses malformed ones before any byte
/// is read.
pub fn checks(d: &Declared<'_>) -> Result<Vec<Box<dyn BodyCheck>>, ApiError> {
    let mut out: Vec<Box<dyn BodyCheck>> = Vec::new();
    if let Some(md5) = d.content_md5 {
        let want = b64(md5)
            .and_then(|v| <[u8; 16]>::try_from(v).ok())
            .ok_or_else(|| {
                ApiError::refused(
                    "InvalidDigest",
                    400,
                    "The Content-MD5 you specified was invalid.",
                )
            })?;
        out.push(Box::new(Md5Check {
            want,
            hasher: Md5::new(),
        }));
    }
    if d.checksums.len() > 1 {
        return Err(ApiError::refused(
            "InvalidRequest",
            400,
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ));
    }
    let sdk = match d.sdk_algorithm {
        Some(name) => Some(Algorithm::parse(name).ok_or_else(|| {
            ApiError::refused(
                "InvalidRequest",
                400,
                "Value for x-amz-sdk-checksum-algorithm header is invalid.",
            )
        })?),
        None => None,
    };
    let trailing = match d.trailer {
        Some(t) => Some(
            t.trim()
                .strip_prefix("x-amz-checksum-")
                .and_then(Algorithm::parse)
                .ok_or_else(|| {
                    ApiError::refused(
                        "InvalidRequest",
                        400,
                        format!(
                            "The value specified in the x-amz-trailer header is not supported: {t}"
                        ),
                    )
                })?,
        ),
        None => None,
    };
    if let Some(&(alg, value)) = d.checksums.first() {
        let want = b64(value)
            .filter(|v| v.len() == alg.digest_len())
            .ok_or_else(|| {
                ApiError::refused(
                    "InvalidRequest",
                    400,
                    format!("Value for {} header is invalid.", alg.header()),
                )
            })?;
        if sdk.is_some_and(|s| s != alg) {
            return Err(mismatched_algorithm());
        }
        out.push(Box::new(ChecksumCheck::new(alg, Some(want))));
    } else if let Some(alg) = trailing {
        if sdk.is_some_and(|s| s != alg) {
            return Err(mismatched_algorithm());
        }
        out.push(Box::new(ChecksumCheck::new(alg, None)));
    }
    Ok(out)
}

fn mismatched_algorithm() -> ApiError {
    ApiError::refused(
        "InvalidRequest",
        400,
        "Value for x-amz-sdk-checksum-algorithm header is invalid.",
    )
}

struct Md5Check {
    want: [u8; 16],
    hasher: Md5,
}

impl BodyCheck for Md5Check {
    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    fn verify(
        self: Box<Self>,
        _trailers: Option<&hyper::HeaderMap>,
    ) -> Result<Option<StoredChecksum>, ApiError> {
        let got: [u8; 16] = self.hasher.finalize();
        if got != self.want {
            return Err(ApiError::refused(
                "BadDigest",
                400,
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
        Ok(None)
    }
}

/// One `x-amz-checksum-*`: from the headers (`want`) or, when `None`, from the trailer;
/// summed by the store's own [`Hasher`].
struct ChecksumCheck {
    alg: Algorithm,
    want: Option<Vec<u8>>,
    hasher: Hasher,
}

impl ChecksumCheck {
    fn new(alg: Algorithm, want: Option<Vec<u8>>) -> Self {
        let hasher = match alg {
            Algorithm::Crc32 => Hasher::Crc32(Crc32::new()),
            Algorithm::Crc32c => Hasher::Crc32c(Crc32c::new()),
            Algorithm::Crc64Nvme => Hasher::Crc64Nvme(Crc64Nvme::new()),
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        };
        ChecksumCheck { alg, want, hasher }
    }
}

impl BodyCheck for ChecksumCheck {
    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    fn verify(
        self: Box<Self>,
        trailers: Option<&hyper::HeaderMap>,
    ) -> Result<Option<StoredChecksum>, ApiError> {
        let invalid = || {
            ApiError::refused(
                "InvalidRequest",
                400,
                format!(
                    "Value for {} trailing header is invalid.",
                    self.alg.header()
                ),
            )
        };
        let want = match &self.want {
            Some(w) => w.clone(),
            None => trailers
                .and_then(|t| t.get(self.alg.header()))
                .and_then(|v| v.to_str().ok())
                .and_then(b64)
                .filter(|v| v.len() == self.alg.digest_len())
                .ok_or_else(invalid)?,
        };
        let got = self.hasher.finalize();
        if got != want {
            return Err(ApiError::refused(
                "BadDigest",
                400,
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    self.alg.name().to_uppercase()
                ),
            ));
        }
        Ok(Some(StoredChecksum {
            algorithm: self.alg.name().to_uppercase(),
            value: base64::engine::general_purpose::STANDARD.encode(&want),
            kind: ChecksumKind::FullObject,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        d: &Declared<'_>,
        body: &[u8],
        trailers: Option<&hyper::HeaderMap>,
    ) -> Result<(), String> {
        let checks = checks(d).map_err(|e| format!("{e:?}"))?;
        for mut c in checks {
            c.update(body);
            c.verify(trailers).map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }

    // Known values for b"hello": md5 XUFAKrxLKna5cZ2REBfFkg==, crc32 NhCmhg==,
    // crc32c mnG7TA==, sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=.
    #[test]
    fn matching_declarations_pass_and_others_are_refused() {
        let ok = |d: Declared<'_>| run(&d, b"hello", None);
        assert_eq!(
            ok(Declared {
                content_md5: Some("XUFAKrxLKna5cZ2REBfFkg=="),
                ..Default::default()
            }),
            Ok(())
        );
        for (alg, v) in [
            (Algorithm::Crc32, "NhCmhg=="),
            (Algorithm::Crc32c, "mnG7TA=="),
            (
                Algorithm::Sha256,
                "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
            ),
        ] {
            assert_eq!(
                ok(Declared {
                    checksums: vec![(alg, v)],
                    ..Default::default()
                }),
                Ok(()),
                "{alg:?}"
            );
        }
        let bad_md5 = ok(Declared {
            content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA=="),
            ..Default::default()
        });
        assert!(bad_md5.unwrap_err().contains("BadDigest"));
        let bad_crc = ok(Declared {
            checksums: vec![(Algorithm::Crc32, "AAAAAA==")],
            ..Default::default()
        });
        assert!(bad_crc.unwrap_err().contains("BadDigest"));
        let malformed = ok(Declared {
            content_md5: Some("nope"),
            ..Default::default()
        });
        assert!(malformed.unwrap_err().contains("InvalidDigest"));
        let short = ok(Declared {
            checksums: vec![(Algorithm::Sha256, "NhCmhg==")],
            ..Default::default()
        });
        assert!(short.unwrap_err().contains("InvalidRequest"));
    }

    #[test]
    fn trailing_checksums_are_read_from_the_trailers() {
        let d = Declared {
            sdk_algorithm: Some("CRC32"),
            trailer: Some("x-amz-checksum-crc32"),
            ..Default::default()
        };
        let mut t = hyper::HeaderMap::new();
        t.insert("x-amz-checksum-crc32", "NhCmhg==".parse().unwrap());
        assert_eq!(run(&d, b"hello", Some(&t)), Ok(()));
        t.insert("x-amz-checksum-crc32", "AAAAAA==".parse().unwrap());
        assert!(run(&d, b"hello", Some(&t))
            .unwrap_err()
            .contains("BadDigest"));
        assert!(run(&d, b"hello", None)
            .unwrap_err()
            .contains("InvalidRequest"));
        let other = Declared {
            trailer: Some("x-amz-checksum-md5"),
            ..Default::default()
        };
        assert!(run(&other, b"", None)
            .unwrap_err()
            .contains("InvalidRequest"));
    }
}
