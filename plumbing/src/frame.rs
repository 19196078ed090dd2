//! Length-prefixed postcard frames: how kmsd.sock and ec2.sock carry one message each way.
//!
//! A frame is a 4-byte big-endian payload length followed by that many bytes of postcard
//! (docs/FORMAT.md, "Socket frames"). Each socket has its own size limit and protocol
//! version; the version is the first field of every envelope and is decoded before the
//! rest ([`decode_versioned`]), so a peer speaking another version gets a clear error
//! instead of a garbled one.
//!
//! An empty payload is not a message: it is a ping. A server that reads one answers with an
//! empty frame and keeps the connection ([`is_ping`], [`write_ping`]); a client uses it to
//! learn that the daemon behind a socket is alive and serving, not merely that something
//! still holds the listening socket (a process being killed does, for a moment).
//!
//! Reading never allocates ahead of the bytes that arrived: a peer announcing a large frame
//! and then trickling bytes holds no more memory than it sent.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Why a frame could not be written, read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {got} (this side speaks {speaks})")]
    Version { got: u16, speaks: u16 },
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Serializes `value` as one frame (length prefix + postcard) into `buf`, which is cleared
/// first, so that the caller writes the frame with a single `write_all`.
pub fn encode<T: Serialize>(value: &T, buf: &mut Vec<u8>, max: usize) -> Result<(), FrameError> {
    buf.clear();
    buf.extend_from_slice(&[0u8; 4]);
    let out = postcard::to_extend(value, std::mem::take(buf))
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    *buf = out;
    let len = buf.len() - 4;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let prefix = u32::try_from(len)
        .map_err(|_| FrameError::TooLarge { len, max })?
        .to_be_bytes();
    buf[..4].copy_from_slice(&prefix);
    Ok(())
}

/// Writes one frame (through `buf`, reused between calls) and flushes.
pub fn write<W: Write, T: Serialize>(
    w: &mut W,
    value: &T,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), FrameError> {
    encode(value, buf, max)?;
    w.write_all(buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame's payload into `buf` (resized to the payload length).
pub fn read_bytes<R: Read>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<(), FrameError> {
    let mut len_bytes = [0u8; 4];
    // Distinguish a clean close (EOF before any byte) from a torn frame.
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len_bytes[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Malformed(
                    "connection closed inside a frame length".into(),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    buf.clear();
    let got = r.take(len as u64).read_to_end(buf)?;
    if got != len {
        return Err(FrameError::Malformed(format!(
            "connection closed inside a frame of {len} bytes"
        )));
    }
    Ok(())
}

/// Decodes a payload whose first field is a `u16` protocol version: the version is checked
/// first, then the whole payload must decode as `T` with nothing left over.
pub fn decode_versioned<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
    speaks: u16,
) -> Result<T, FrameError> {
    let (got, _) = postcard::take_from_bytes::<u16>(payload)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if got != speaks {
        return Err(FrameError::Version { got, speaks });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(payload)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(value)
}

/// Whether a payload just read is a ping (empty) rather than a message.
pub fn is_ping(payload: &[u8]) -> bool {
    payload.is_empty()
}

/// Writes a ping, or a server's answer to one: an empty frame.
pub fn write_ping<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(&[0u8; 4])?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 10;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Envelope {
        version: u16,
        body: String,
    }

    #[test]
    fn a_value_roundtrips_through_a_frame() {
        let env = Envelope {
            version: 3,
            body: "alias/x".into(),
        };
        let mut out = Vec::new();
        write(&mut out, &env, &mut Vec::new(), MAX).unwrap();
        let mut payload = Vec::new();
        read_bytes(&mut &out[..], &mut payload, MAX).unwrap();
        assert_eq!(decode_versioned::<Envelope>(&payload, 3).unwrap(), env);
    }

    #[test]
    fn wrong_version_oversized_torn_and_trailing_are_refused() {
        let mut buf = Vec::new();
        encode(&(7u16, 0u8), &mut buf, MAX).unwrap();
        let e = decode_versioned::<(u16, u8)>(&buf[4..], 1).unwrap_err();
        assert!(matches!(e, FrameError::Version { got: 7, speaks: 1 }));
        assert_eq!(
            e.to_string(),
            "unsupported protocol version 7 (this side speaks 1)"
        );
        let huge = ((MAX + 1) as u32).to_be_bytes();
        let mut payload = Vec::new();
        assert!(matches!(
            read_bytes(&mut &huge[..], &mut payload, MAX),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            encode(&vec![0u8; MAX + 1], &mut buf, MAX),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_bytes(&mut &[0u8, 0][..], &mut payload, MAX),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_bytes(&mut &[0u8, 0, 0, 9, 1][..], &mut payload, MAX),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_bytes(&mut &[][..], &mut payload, MAX),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            decode_versioned::<u16>(&[1, 0, 5], 1),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn a_ping_is_an_empty_frame() {
        let mut out = Vec::new();
        write_ping(&mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 0]);
        let mut payload = vec![1, 2, 3];
        read_bytes(&mut &out[..], &mut payload, MAX).unwrap();
        assert!(is_ping(&payload));
    }
}
