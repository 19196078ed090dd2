//! SSE-C on the wire: the customer key a request carries (`x-amz-server-side-encryption-
//! customer-*`, or the `x-amz-copy-source-` twins for a copy's source), refused as S3
//! refuses it, and the headers an answer echoes. A customer key is accepted only on a
//! confidential transport ([`Transport`]: TLS, or an endpoint on loopback, where the key
//! never crosses a network), as S3 accepts SSE-C only over HTTPS.

use std::sync::Arc;

use super::super::customer_key::{CustomerKey, ALGORITHM};
use super::super::meta::KeyProtection;
use super::error::ApiError;

/// How the request reached the endpoint, set by the listener on every request.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// TLS, or a plain-HTTP endpoint bound to loopback.
    pub confidential: bool,
}

/// The customer key of a request's three SSE-C headers, if it names one; `confidential`
/// is the request's [`Transport`] (a key that crossed a network in clear is refused, as
/// S3 refuses one sent over plain HTTP).
pub fn customer_key(
    confidential: bool,
    algorithm: Option<&str>,
    key: Option<&str>,
    md5: Option<&str>,
) -> Result<Option<Arc<CustomerKey>>, ApiError> {
    let ck = CustomerKey::from_headers(algorithm, key, md5)
        .map_err(|e| ApiError::refused(e.code(), 400, e.to_string()))?;
    if ck.is_some() && !confidential {
        return Err(ApiError::refused(
            "InvalidRequest",
            400,
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.",
        ));
    }
    Ok(ck.map(Arc::new))
}

/// `x-amz-server-side-encryption-customer-algorithm` and `-key-MD5` of an answer about an
/// object (or upload) kept as `p`: echoed from the request's key for an SSE-C one.
pub fn echo(p: &KeyProtection, ck: Option<&CustomerKey>) -> (Option<String>, Option<String>) {
    match ck {
        Some(ck) if p.is_customer_key() => {
            (Some(ALGORITHM.to_string()), Some(ck.md5().to_string()))
        }
        _ => (None, None),
    }
}

/// The [`customer_key`] of an s3s input's `sse_customer_*` fields.
macro_rules! customer_key_of {
    ($cx:expr, $input:expr) => {
        super::customer::customer_key(
            $cx.confidential,
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
        )
    };
}
pub(crate) use customer_key_of;

/// The [`customer_key`] of a copy's source, from an s3s input's `copy_source_sse_customer_*`.
macro_rules! source_customer_key {
    ($cx:expr, $input:expr) => {
        super::customer::customer_key(
            $cx.confidential,
            $input.copy_source_sse_customer_algorithm.as_deref(),
            $input.copy_source_sse_customer_key.as_deref(),
            $input.copy_source_sse_customer_key_md5.as_deref(),
        )
    };
}
pub(crate) use source_customer_key;

/// [`echo`] into an s3s output's `sse_customer_algorithm` and `sse_customer_key_md5`.
macro_rules! set_echo {
    ($out:expr, $protection:expr, $ck:expr) => {{
        let (a, m) = super::customer::echo($protection, $ck);
        $out.sse_customer_algorithm = a;
        $out.sse_customer_key_md5 = m;
    }};
}
pub(crate) use set_echo;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use md5::Digest as _;

    fn headers(key: &[u8]) -> (String, String) {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        (b64(key), b64(&md5::Md5::digest(key)))
    }

    #[test]
    fn a_customer_key_is_refused_off_a_confidential_transport() {
        let (k, m) = headers(&[3u8; 32]);
        let got = |confidential| customer_key(confidential, Some("AES256"), Some(&k), Some(&m));
        assert!(got(true).unwrap().is_some());
        match got(false) {
            Err(ApiError::Refused {
                code,
                status,
                message,
            }) => {
                assert_eq!((code, status), ("InvalidRequest", 400));
                assert!(message.contains("secure connection"), "{message}");
            }
            other => panic!("not refused: {other:?}"),
        }
        // A request naming no key is served on any transport.
        assert!(customer_key(false, None, None, None).unwrap().is_none());
    }
}
