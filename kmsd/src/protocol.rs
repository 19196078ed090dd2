//! The kmsd socket protocol: length-prefixed postcard frames of the [`crate::api`]
//! operation types.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of postcard.
//! A request frame is a [`RequestEnvelope`], whose first field is the protocol
//! version (decoded first, so a peer speaking another version gets a clear error);
//! a reply frame is a [`ResponseEnvelope`]. Frames larger than [`MAX_FRAME`] are
//! refused. The byte layout is documented in docs/FORMAT.md ("kmsd socket frames").
//!
//! STABILITY RULE: postcard encodes enum variants by index and struct fields by
//! position. Append new operations at the END of the `api` table and new variants at
//! the END of every enum; never reorder or remove. Adding a field to a struct is a
//! protocol change: bump [`PROTOCOL_VERSION`].

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

pub use crate::api::*;

/// The protocol version this build speaks: 2 since requests and responses are the
/// `api` operation types (one variant per operation), 3 since the envelope carries a
/// SigV4 [`Signer`], 4 since
/// `GetCallerIdentityResponse` has STS's members only, 5 since `ResolveCallerResponse`
/// says whether the uid is trusted as the AWS endpoint, 6 since `ResolveCallerRequest`
/// may carry a signer whose access key kmsd checks.
pub const PROTOCOL_VERSION: u16 = 6;
/// The largest frame (payload bytes, excluding the 4-byte length) either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// A request as sent on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u16,
    /// Act as another principal (an IAM ARN). The config decides whether the peer's
    /// uid may (issue 3); the kernel-checked uid is always recorded as well.
    pub act_as: Option<String>,
    /// The request comes through an AWS-shaped service on behalf of a caller.
    /// Trusted only from peers the config lists as that service (issue 3).
    pub via: Option<ViaService>,
    pub request: Request,
    /// The request comes from the AWS endpoint, which verified this signer's SigV4
    /// signature: it is evaluated as the signer's principal. Trusted only from the
    /// uids the config lists as the endpoint (`[kmsd] endpoint_uids`); kmsd checks
    /// the access key again, so a key deleted after the endpoint resolved it is
    /// refused. Excludes `act_as` and `via`.
    pub signer: Option<Signer>,
}

/// Who signed an HTTP request, as the AWS endpoint verified it; what CloudTrail
/// records as `userIdentity.accessKeyId`, `sourceIPAddress` and `userAgent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    pub access_key_id: String,
    /// `x-amz-security-token` of temporary (STS) credentials.
    pub session_token: Option<String>,
    /// The principal the endpoint resolved the access key to.
    pub principal_arn: String,
    /// The client's IP address.
    pub source_ip: String,
    /// The client's `User-Agent` header.
    pub user_agent: Option<String>,
}

/// "This request comes via service S (on behalf of P)": `kms:ViaService` and
/// `kms:GrantIsForAWSResource` in policy conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViaService {
    /// e.g. `ec2.amazonaws.com`.
    pub service: String,
    /// The principal ARN the service acts for.
    pub on_behalf_of: Option<String>,
    pub grant_is_for_aws_resource: bool,
}

/// `kms:ViaService` for a service, and the retiring principal of the grants it makes:
/// `ec2.amazonaws.com` in `us-east-1` is `ec2.us-east-1.amazonaws.com`, as AWS spells it.
pub fn via_service_value(service: &str, region: &str) -> String {
    match service.strip_suffix(".amazonaws.com") {
        Some(prefix) => format!("{prefix}.{region}.amazonaws.com"),
        None => service.to_string(),
    }
}

/// A reply as sent on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub version: u16,
    pub result: Result<Response, KmsError>,
}

/// Why a frame could not be read: the framing is [`plumbing::frame`]'s.
pub use plumbing::frame::FrameError;

/// Serializes `value` as one frame (length prefix + postcard) into `buf`, which is
/// cleared first; the caller writes `buf` with a single `write_all`.
pub fn encode_frame<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    plumbing::frame::encode(value, buf, MAX_FRAME)
}

/// Writes one frame.
pub fn write_frame<W: Write, T: Serialize>(
    w: &mut W,
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    plumbing::frame::write(w, value, buf, MAX_FRAME)
}

/// Reads one frame's payload into `buf` (resized to the payload length).
pub fn read_frame_bytes<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    plumbing::frame::read_bytes(r, buf, MAX_FRAME)
}

/// Decodes a request frame payload: the version first, then the rest.
pub fn decode_request(payload: &[u8]) -> Result<RequestEnvelope, FrameError> {
    plumbing::frame::decode_versioned(payload, PROTOCOL_VERSION)
}

/// Decodes a reply frame payload: the version first, then the rest.
pub fn decode_response(payload: &[u8]) -> Result<ResponseEnvelope, FrameError> {
    plumbing::frame::decode_versioned(payload, PROTOCOL_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrips_through_a_frame() {
        let env = RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: Some("arn:aws:iam::111122223333:user/a".into()),
            via: None,
            request: Request::DescribeKey(DescribeKeyRequest {
                key_id: "alias/x".into(),
                grant_tokens: vec![],
            }),
            signer: Some(Signer {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                session_token: None,
                principal_arn: "arn:aws:iam::111122223333:user/a".into(),
                source_ip: "127.0.0.1".into(),
                user_agent: Some("aws-cli/1.46.3".into()),
            }),
        };
        let mut buf = Vec::new();
        encode_frame(&env, &mut buf).unwrap();
        let mut payload = Vec::new();
        read_frame_bytes(&mut &buf[..], &mut payload).unwrap();
        let back = decode_request(&payload).unwrap();
        assert_eq!(back.act_as, env.act_as);
        assert_eq!(back.signer, env.signer);
        assert!(matches!(back.request, Request::DescribeKey(r) if r.key_id == "alias/x"));
    }

    #[test]
    fn debug_never_shows_plaintext() {
        let r = DecryptResponse {
            key_id: "k".into(),
            plaintext: SecretBlob::new(b"SECRETSECRET".to_vec()),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("83, 69, 67") && shown.contains("12 bytes redacted"));
    }

    #[test]
    fn wrong_version_oversized_and_garbage_are_refused() {
        let mut buf = Vec::new();
        encode_frame(&(7u16, 0u8), &mut buf).unwrap();
        assert!(matches!(
            decode_request(&buf[4..]),
            Err(FrameError::Version { got: 7, .. })
        ));
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let mut payload = Vec::new();
        assert!(matches!(
            read_frame_bytes(&mut &huge[..], &mut payload),
            Err(FrameError::TooLarge { .. })
        ));
        // Right version, then an out-of-range variant index.
        assert!(matches!(
            decode_request(&[PROTOCOL_VERSION as u8, 0, 0, 200, 1]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame_bytes(&mut &[0u8, 0][..], &mut payload),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame_bytes(&mut &[][..], &mut payload),
            Err(FrameError::Closed)
        ));
    }
}
