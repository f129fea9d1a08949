//! Framing of the meter's protocol: each message is a `u32` little-endian length followed by that
//! many bytes of `postcard`. The length is checked against [`MAX_FRAME`] before any buffer is
//! allocated, so a hostile prefix (`0xFFFF_FFFF`) costs nothing.
//!
//! Blocking ([`read_frame`], [`write_frame`]) and Tokio ([`read_frame_async`],
//! [`write_frame_async`]) flavours share the same encoding and checks.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest accepted frame payload, bytes.
pub const MAX_FRAME: usize = 64 * 1024;

/// Size of the length prefix, bytes.
pub const PREFIX_LEN: usize = 4;

/// A framing or encoding failure.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer announced a frame larger than allowed.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("cannot decode message: {0}")]
    Decode(#[source] postcard::Error),
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[source] postcard::Error),
    /// The stream closed in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Reading or writing the stream failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `msg` as a complete frame (prefix + payload).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; PREFIX_LEN];
    out = postcard::to_extend(msg, out).map_err(CodecError::Encode)?;
    let len = out.len() - PREFIX_LEN;
    if len > MAX_FRAME {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    // len ≤ MAX_FRAME fits in u32.
    out[..PREFIX_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Decodes a frame payload (without its prefix). Trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(CodecError::Decode)?;
    if !rest.is_empty() {
        return Err(CodecError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(msg)
}

/// Validates a length prefix against `max`.
pub fn check_prefix(prefix: [u8; PREFIX_LEN], max: usize) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    Ok(len)
}

fn eof_to_truncated(e: io::Error) -> CodecError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        CodecError::Truncated
    } else {
        CodecError::Io(e)
    }
}

/// Reads one frame's payload into `buf`. `Ok(false)` means a clean end of stream before any
/// byte of a new frame.
pub fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<bool, CodecError> {
    let mut prefix = [0u8; PREFIX_LEN];
    let first = loop {
        match r.read(&mut prefix[..1]) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CodecError::Io(e)),
        }
    };
    if first == 0 {
        return Ok(false);
    }
    r.read_exact(&mut prefix[1..]).map_err(eof_to_truncated)?;
    let len = check_prefix(prefix, max)?;
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).map_err(eof_to_truncated)?;
    Ok(true)
}

/// Writes `msg` as one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), CodecError> {
    let frame = encode(msg)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Async [`read_frame`].
pub async fn read_frame_async<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<bool, CodecError> {
    let mut prefix = [0u8; PREFIX_LEN];
    if r.read(&mut prefix[..1]).await? == 0 {
        return Ok(false);
    }
    r.read_exact(&mut prefix[1..])
        .await
        .map_err(eof_to_truncated)?;
    let len = check_prefix(prefix, max)?;
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).await.map_err(eof_to_truncated)?;
    Ok(true)
}

/// Async [`write_frame`].
pub async fn write_frame_async<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), CodecError> {
    let frame = encode(msg)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{JobId, Request};
    use proptest::prelude::*;

    #[test]
    fn roundtrip_blocking() {
        let msg = Request::QueryJob {
            job: JobId(42),
            fresh: true,
        };
        let frame = encode(&msg).unwrap();
        let mut cursor = io::Cursor::new(frame);
        let mut buf = Vec::new();
        assert!(read_frame(&mut cursor, &mut buf, MAX_FRAME).unwrap());
        assert_eq!(decode::<Request>(&buf).unwrap(), msg);
        assert!(!read_frame(&mut cursor, &mut buf, MAX_FRAME).unwrap());
    }

    #[test]
    fn oversized_prefix_is_rejected_before_allocation() {
        let mut cursor = io::Cursor::new(u32::MAX.to_le_bytes().to_vec());
        let mut buf = Vec::new();
        let err = read_frame(&mut cursor, &mut buf, MAX_FRAME).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { len, .. } if len == u32::MAX as usize));
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn truncated_frame_is_reported() {
        let mut frame = encode(&Request::ListJobs).unwrap();
        frame[0] = 10;
        let mut buf = Vec::new();
        let err = read_frame(&mut io::Cursor::new(frame), &mut buf, MAX_FRAME).unwrap_err();
        assert!(matches!(err, CodecError::Truncated));
        let err = read_frame(&mut io::Cursor::new(vec![1u8, 0]), &mut buf, MAX_FRAME).unwrap_err();
        assert!(matches!(err, CodecError::Truncated));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut payload = postcard::to_stdvec(&Request::ListJobs).unwrap();
        payload.push(0);
        assert!(decode::<Request>(&payload).is_err());
    }

    #[tokio::test]
    async fn roundtrip_async() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let msg = Request::QueryMachine { fresh: false };
        write_frame_async(&mut a, &msg).await.unwrap();
        let mut buf = Vec::new();
        assert!(read_frame_async(&mut b, &mut buf, MAX_FRAME).await.unwrap());
        assert_eq!(decode::<Request>(&buf).unwrap(), msg);
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Request>(&bytes);
            let _ = read_frame(&mut io::Cursor::new(bytes), &mut Vec::new(), MAX_FRAME);
        }
    }
}
