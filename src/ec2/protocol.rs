//! The ec2.sock protocol: length-prefixed postcard frames, one request and one reply
//! per frame, the same framing kmsd uses (4-byte big-endian length, then postcard).
//! The caller is identified by the kernel (SO_PEERCRED), never by the frame. The
//! payloads are [`super::api`]'s operation types.
//!
//! STABILITY RULE: append new variants at the END of every enum; adding a struct
//! field is a protocol change: bump [`PROTOCOL_VERSION`].

use std::io::{Read, Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::api::{Request, Response};
use super::error::Ec2Error;

/// Who signed an HTTP request, as the AWS endpoint verified it (kmsd's type: the same
/// signer reaches kmsd.sock and ec2.sock).
pub use kmsd::protocol::Signer;

/// 3: the operations' types carry EC2's member names and shapes (`super::api`).
/// 4: AMIs (RegisterImage .. CopyImage, snapshot attributes).
/// 5: the envelope carries the AWS endpoint's verified SigV4 [`Signer`].
pub const PROTOCOL_VERSION: u16 = 5;
/// The largest frame either side accepts (a describe of thousands of volumes fits).
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u16,
    /// `--as ARN`: act as another principal (kmsd decides whether the uid may).
    pub act_as: Option<String>,
    pub request: Request,
    /// The request comes from the AWS endpoint, which verified this signer's SigV4
    /// signature: it is served as the signer's principal (and the KMS calls it makes
    /// go via ec2.amazonaws.com on that principal's behalf). Trusted only from the uids
    /// kmsd's config lists as the endpoint (`[kmsd] endpoint_uids`); excludes `act_as`.
    pub signer: Option<Signer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub version: u16,
    pub result: Result<Response, Ec2Error>,
}

pub use plumbing::frame::FrameError;

pub fn write_frame<W: Write, T: Serialize>(w: &mut W, value: &T) -> Result<(), FrameError> {
    plumbing::frame::write(w, value, &mut Vec::new(), MAX_FRAME)
}

/// Reads one frame and decodes it; the version (first field) is checked before the rest.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut buf = Vec::new();
    plumbing::frame::read_bytes(r, &mut buf, MAX_FRAME)?;
    plumbing::frame::decode_versioned(&buf, PROTOCOL_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let env = RequestEnvelope {
            version: PROTOCOL_VERSION,
            act_as: None,
            request: Request::DeleteVolume(super::super::api::DeleteVolumeRequest {
                volume_id: "vol-1".into(),
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
        write_frame(&mut buf, &env).unwrap();
        let back: RequestEnvelope = read_frame(&mut &buf[..]).unwrap();
        assert!(matches!(back.request, Request::DeleteVolume(r) if r.volume_id == "vol-1"));
        assert_eq!(back.signer, env.signer);

        let mut bad = Vec::new();
        write_frame(&mut bad, &(9u16, 0u8)).unwrap();
        assert!(matches!(
            read_frame::<_, RequestEnvelope>(&mut &bad[..]),
            Err(FrameError::Version { got: 9, .. })
        ));
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(
            read_frame::<_, RequestEnvelope>(&mut &huge[..]),
            Err(FrameError::TooLarge { .. })
        ));
        // The current version (a one-byte varint), then bytes that decode as nothing.
        let garbage = [0u8, 0, 0, 3, PROTOCOL_VERSION as u8, 0, 250];
        assert!(matches!(
            read_frame::<_, RequestEnvelope>(&mut &garbage[..]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame::<_, RequestEnvelope>(&mut &[][..]),
            Err(FrameError::Closed)
        ));
    }
}
