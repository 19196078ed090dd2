//! What a client request asks of an object beyond its name (pure): a customer-provided key
//! (SSE-C) and a checksum, as the headers S3 takes them. `atrest s3 cp`, `atrest s3api` and
//! the parallel transfers ([`super::transfer`]) all build their SSE-C and checksum headers
//! here, so every part and every range of a transfer carries the same ones.
//!
//! The key is handled as botocore handles `SSECustomerKey`: given raw, it is sent base64
//! with the base64 MD5 computed here; given with its MD5, both are sent as given (the
//! endpoint checks them, [`super::customer_key`]). A checksum is computed from the body
//! before it is sent and goes in an `x-amz-checksum-<algorithm>` header, which is what
//! botocore sends over plain HTTP: the body itself streams unsigned, so the header (which
//! is signed) is what binds it.

use std::io::Read;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::Digest as _;

use super::checksum::{Hasher, ALGORITHMS};

/// The customer key of an SSE-C request, ready to send. The key text is zeroized when
/// dropped.
#[derive(Clone)]
pub struct SseCustomerKey {
    /// `None` sends no algorithm header (the endpoint then refuses the key, as S3 does).
    algorithm: Option<String>,
    key_b64: zeroize::Zeroizing<String>,
    md5_b64: String,
}

impl std::fmt::Debug for SseCustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseCustomerKey")
            .field("algorithm", &self.algorithm)
            .field("md5", &self.md5_b64)
            .finish_non_exhaustive()
    }
}

impl SseCustomerKey {
    /// A raw key (the bytes of `--sse-c-key fileb://KEYFILE`): sent base64, with its MD5.
    pub fn from_raw(algorithm: Option<&str>, raw: &[u8]) -> SseCustomerKey {
        SseCustomerKey {
            algorithm: algorithm.map(str::to_string),
            key_b64: zeroize::Zeroizing::new(STANDARD.encode(raw)),
            md5_b64: STANDARD.encode(md5::Md5::digest(raw)),
        }
    }

    /// A key already base64 with the MD5 the caller gives: both sent as given.
    pub fn given(algorithm: Option<&str>, key_b64: &str, md5_b64: &str) -> SseCustomerKey {
        SseCustomerKey {
            algorithm: algorithm.map(str::to_string),
            key_b64: zeroize::Zeroizing::new(key_b64.to_string()),
            md5_b64: md5_b64.to_string(),
        }
    }

    /// The base64 MD5 the endpoint echoes for this key.
    pub fn md5(&self) -> &str {
        &self.md5_b64
    }

    /// `x-amz-server-side-encryption-customer-*`: the key of the object a request writes
    /// or reads.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.with_prefix("x-amz-server-side-encryption-customer-")
    }

    /// `x-amz-copy-source-server-side-encryption-customer-*`: the key of a copy's source.
    pub fn copy_source_headers(&self) -> Vec<(String, String)> {
        self.with_prefix("x-amz-copy-source-server-side-encryption-customer-")
    }

    fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(3);
        if let Some(a) = &self.algorithm {
            h.push((format!("{prefix}algorithm"), a.clone()));
        }
        h.push((format!("{prefix}key"), self.key_b64.to_string()));
        h.push((format!("{prefix}key-MD5"), self.md5_b64.clone()));
        h
    }
}

/// One of S3's checksum algorithms, as stored (`CRC32`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumAlgorithm(&'static str);

/// A name that is not one of S3's checksum algorithms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid checksum algorithm {0:?}: valid choices are CRC32 | CRC32C | SHA1 | SHA256 | CRC64NVME")]
pub struct UnknownAlgorithm(pub String);

impl ChecksumAlgorithm {
    /// The algorithm named (any case), as the AWS CLI's `--checksum-algorithm` takes it.
    pub fn parse(name: &str) -> Result<ChecksumAlgorithm, UnknownAlgorithm> {
        ALGORITHMS
            .into_iter()
            .find(|a| a.eq_ignore_ascii_case(name.trim()))
            .map(ChecksumAlgorithm)
            .ok_or_else(|| UnknownAlgorithm(name.to_string()))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// `x-amz-checksum-<algorithm>`, the header a body's checksum travels in.
    pub fn header(self) -> String {
        format!("x-amz-checksum-{}", self.0.to_ascii_lowercase())
    }

    /// `ChecksumCRC32`...: the element a completion list and the AWS CLI's JSON name it by.
    pub fn member(self) -> String {
        format!("Checksum{}", self.0)
    }

    /// The base64 checksum of everything `body` yields.
    pub fn of_reader(self, mut body: impl Read) -> std::io::Result<String> {
        let mut h = Hasher::new(self.0).ok_or_else(|| {
            std::io::Error::other(format!("no hasher for checksum algorithm {}", self.0))
        })?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(STANDARD.encode(h.finalize()))
    }

    /// The header carrying the checksum of `body`.
    pub fn header_for(self, body: impl Read) -> std::io::Result<(String, String)> {
        Ok((self.header(), self.of_reader(body)?))
    }
}

/// The stored checksum a GET or HEAD with `x-amz-checksum-mode: ENABLED` answered, as a
/// download checks it: of the whole body, or (`parts: Some(n)`) S3's composite, the
/// checksum of the `n` parts' raw checksums (`<base64>-<n>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredChecksum {
    pub algorithm: ChecksumAlgorithm,
    /// The base64 digest, without a composite's `-<n>`.
    pub digest: String,
    pub parts: Option<u32>,
}

/// An `x-amz-checksum-*` answer header a download cannot check against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the endpoint answered an unreadable checksum {header}: {value:?}")]
pub struct BadAnsweredChecksum {
    pub header: String,
    pub value: String,
}

impl AnsweredChecksum {
    /// The first `x-amz-checksum-<algorithm>` header of an answer (none: the object has no
    /// stored checksum, or the endpoint does not return it).
    pub fn from_headers(
        headers: &[(String, String)],
    ) -> Result<Option<AnsweredChecksum>, BadAnsweredChecksum> {
        for alg in ALGORITHMS {
            let a = ChecksumAlgorithm(alg);
            let name = a.header();
            let Some((_, v)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name)) else {
                continue;
            };
            let bad = || BadAnsweredChecksum {
                header: name.clone(),
                value: v.clone(),
            };
            let (digest, parts) = match v.trim().split_once('-') {
                None => (v.trim(), None),
                Some((d, n)) => (
                    d,
                    Some(
                        n.parse::<u32>()
                            .ok()
                            .filter(|n| (1..=super::parts::MAX_PART_NUMBER).contains(n))
                            .ok_or_else(bad)?,
                    ),
                ),
            };
            if STANDARD.decode(digest).map_err(|_| bad())?.is_empty() {
                return Err(bad());
            }
            return Ok(Some(AnsweredChecksum {
                algorithm: a,
                digest: digest.to_string(),
                parts,
            }));
        }
        Ok(None)
    }

    /// As the header carries it (`<base64>` or `<base64>-<n>`).
    pub fn value(&self) -> String {
        match self.parts {
            Some(n) => format!("{}-{n}", self.digest),
            None => self.digest.clone(),
        }
    }
}

/// The `x-amz-checksum-*` answer headers as the AWS CLI's JSON shows them
/// (`ChecksumCRC32`..., `ChecksumType`), in the order given.
pub fn checksum_fields(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for alg in ALGORITHMS {
        let a = ChecksumAlgorithm(alg);
        let name = a.header();
        if let Some((_, v)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name)) {
            out.push((a.member(), v.clone()));
        }
    }
    if let Some((_, v)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-checksum-type"))
    {
        out.push(("ChecksumType".to_string(), v.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_key_goes_base64_with_its_md5_as_botocore_sends_it() {
        let k = SseCustomerKey::from_raw(Some("AES256"), &[0x33; 32]);
        let h = k.headers();
        assert_eq!(
            h[0],
            (
                "x-amz-server-side-encryption-customer-algorithm".into(),
                "AES256".into()
            )
        );
        assert_eq!(h[1].1, STANDARD.encode([0x33u8; 32]));
        assert_eq!(h[2].1, STANDARD.encode(md5::Md5::digest([0x33u8; 32])));
        assert_eq!(
            h[2].0,
            "x-amz-server-side-encryption-customer-key-MD5".to_string()
        );
        let c = k.copy_source_headers();
        assert!(c
            .iter()
            .all(|(n, _)| n.starts_with("x-amz-copy-source-server-side-encryption-customer-")));
        assert_eq!(c[1].1, h[1].1);
        // Given with an MD5: sent exactly as given, even a wrong one (the endpoint judges).
        let g = SseCustomerKey::given(Some("AES256"), "a2V5", "bm90LXRoZS1tZDU=");
        assert_eq!(g.headers()[1].1, "a2V5");
        // No algorithm: none sent (the endpoint refuses that as S3 does).
        let bare = SseCustomerKey::given(None, "a2V5", "bm90LXRoZS1tZDU=").headers();
        assert_eq!(bare.len(), 2);
        assert!(bare[0].0.ends_with("-key"));
        assert_eq!(g.md5(), "bm90LXRoZS1tZDU=");
        assert!(
            !format!("{k:?}").contains(&h[1].1),
            "the key is not in Debug"
        );
    }

    #[test]
    fn checksums_are_s3s_in_any_case_and_unknown_names_are_refused() {
        let crc = ChecksumAlgorithm::parse("crc32").unwrap();
        assert_eq!(crc.as_str(), "CRC32");
        assert_eq!(crc.header(), "x-amz-checksum-crc32");
        assert_eq!(crc.member(), "ChecksumCRC32");
        // CRC32 of "hello world" is 0x0d4a1185; SHA-256 is b94d27b9...
        assert_eq!(crc.of_reader(&b"hello world"[..]).unwrap(), "DUoRhQ==");
        let sha = ChecksumAlgorithm::parse("SHA256").unwrap();
        assert_eq!(
            sha.of_reader(&b"hello world"[..]).unwrap(),
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
        assert_eq!(
            ChecksumAlgorithm::parse("CRC64NVME").unwrap().member(),
            "ChecksumCRC64NVME"
        );
        assert!(ChecksumAlgorithm::parse("MD5").is_err());
        assert!(ChecksumAlgorithm::parse("").is_err());
    }

    #[test]
    fn answered_checksums_are_whole_or_composite_and_garbage_is_refused() {
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let whole = AnsweredChecksum::from_headers(&h("X-Amz-Checksum-CRC32", "DUoRhQ=="))
            .unwrap()
            .unwrap();
        assert_eq!(whole.algorithm.as_str(), "CRC32");
        assert_eq!((whole.digest.as_str(), whole.parts), ("DUoRhQ==", None));
        assert_eq!(whole.value(), "DUoRhQ==");
        let comp = AnsweredChecksum::from_headers(&h("x-amz-checksum-sha256", "wpn7tg==-3"))
            .unwrap()
            .unwrap();
        assert_eq!((comp.digest.as_str(), comp.parts), ("wpn7tg==", Some(3)));
        assert_eq!(comp.value(), "wpn7tg==-3");
        assert_eq!(
            AnsweredChecksum::from_headers(&h("etag", "\"x\"")).unwrap(),
            None
        );
        for bad in ["wpn7tg==-0", "wpn7tg==-x", "wpn7tg==-10001", "!!", ""] {
            assert!(
                AnsweredChecksum::from_headers(&h("x-amz-checksum-crc32c", bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn answer_checksums_become_the_cli_fields() {
        let h = vec![
            ("x-amz-checksum-type".to_string(), "FULL_OBJECT".to_string()),
            ("X-Amz-Checksum-CRC32C".to_string(), "yZRlqg==".to_string()),
            ("etag".to_string(), "\"e\"".to_string()),
        ];
        assert_eq!(
            checksum_fields(&h),
            vec![
                ("ChecksumCRC32C".to_string(), "yZRlqg==".to_string()),
                ("ChecksumType".to_string(), "FULL_OBJECT".to_string()),
            ]
        );
        assert!(checksum_fields(&h[2..]).is_empty());
    }
}
