//! The streaming decoder step (`docs/protocol.md` §2.4).

use crate::Error;
use crate::frame::{Frame, FrameType, HEADER_LEN};
use crate::limits::Limits;
use crate::repr::FrameRepr;

/// What [`decode`] found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decoded<'a> {
    /// A complete frame, borrowed from the buffer, and its length in bytes:
    /// the caller discards `len` bytes before decoding the next frame.
    Frame {
        /// The parsed frame.
        repr: FrameRepr<'a>,
        /// Header plus body length.
        len: usize,
    },
    /// The buffer holds the start of a frame only. At least `needed` more
    /// bytes must arrive before calling again. Once the header is complete,
    /// `needed` is exact, so a caller can size one buffer for the frame.
    Incomplete {
        /// Minimum number of further bytes.
        needed: usize,
    },
}

/// Decodes the frame at the start of `buf`, which holds bytes received so far.
///
/// The header is checked against `limits` before the body is waited for: a
/// peer announcing an oversized body gets `Err(Error::FrameTooLarge)` at once,
/// so a receiver never buffers more than `limits` allow. The function neither
/// allocates nor loops over the input; its cost is linear in one frame.
///
/// This function returns `Err` for a sealed header whose check fails, the
/// reserved frame type, an oversized body, and any error of
/// [`FrameRepr::parse`].
pub fn decode<'a>(buf: &'a [u8], limits: &Limits) -> Result<Decoded<'a>, Error> {
    if buf.len() < HEADER_LEN {
        return Ok(Decoded::Incomplete {
            needed: HEADER_LEN - buf.len(),
        });
    }
    let frame = Frame::new_unchecked(buf);
    // A sealed header is checked before anything it says is acted on
    // (§2.4, §2.5): a damaged length must not make us wait for a body.
    let header = frame.header_len();
    if buf.len() < header {
        return Ok(Decoded::Incomplete {
            needed: header - buf.len(),
        });
    }
    crate::integrity::verify_header(buf)?;
    let len = frame.body_len();
    if header > HEADER_LEN && (len as usize) < crate::integrity::TRAILER_LEN {
        // Sealed, with no room for its trailer: decided from the header.
        return Err(Error::MissingTrailer);
    }
    let frame_type = frame.frame_type();
    if frame_type == FrameType::Unknown(0) {
        return Err(Error::ReservedFrameType);
    }
    let max = limits.max_wire_body_len(frame_type, frame.flags());
    if len > max {
        return Err(Error::FrameTooLarge {
            frame_type,
            len,
            max,
        });
    }
    // `len <= max <= MAX_FRAME_SIZE + overhead`, far below usize::MAX even on 32-bit.
    let total = header + len as usize;
    if buf.len() < total {
        return Ok(Decoded::Incomplete {
            needed: total - buf.len(),
        });
    }
    let repr = FrameRepr::parse(&Frame::new_unchecked(&buf[..total]))?;
    Ok(Decoded::Frame { repr, len: total })
}
