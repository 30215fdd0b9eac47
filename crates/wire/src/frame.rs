//! The common frame header (`docs/protocol.md` §2) and its zero-copy view.

use core::fmt;

use crate::Error;
use crate::field::read_u32;

mod field {
    use crate::field::{Field, Rest};
    pub(crate) const TYPE: usize = 0;
    pub(crate) const FLAGS: usize = 1;
    pub(crate) const LENGTH: Field = 2..6;
    pub(crate) const BODY: Rest = 6..;
}

/// Length of the fixed frame header: type (1), flags (1), body length (4).
pub const HEADER_LEN: usize = field::BODY.start;

/// Length of the header check a sealed frame's header ends in: the CRC-32C
/// of the 6 bytes before it (`docs/protocol.md` §2.5).
pub const HEADER_CHECK_LEN: usize = 4;

/// Length of a sealed frame's header: the 6 bytes and their check. The
/// `length` field does not count the check (it counts the body and the
/// trailer), so a frame is `header_len(flags) + length` bytes.
pub const SEALED_HEADER_LEN: usize = HEADER_LEN + HEADER_CHECK_LEN;

/// The header length of a frame whose flags octet is `flags`:
/// [`HEADER_LEN`], or [`SEALED_HEADER_LEN`] with [`flags::CRC32C`].
pub const fn header_len(flags: u8) -> usize {
    if flags & flags::CRC32C != 0 {
        SEALED_HEADER_LEN
    } else {
        HEADER_LEN
    }
}

/// Flag bits of the header's flags octet.
pub mod flags {
    /// Bit 0 of CONNECT, ACCEPT, REJECT, DISCONNECT and ABORT: user data is
    /// present (possibly zero bytes long). Winsock cannot tell "no data" from
    /// "zero-length data" (winsock-semantics E3); bookend can.
    pub const HAS_DATA: u8 = 0x01;
    /// Bit 0 of DATA: this frame ends a message (message mode only).
    pub const END_OF_MESSAGE: u8 = 0x01;
    /// Bit 7 of any frame: a receiver that does not know the frame type must
    /// end the session instead of skipping the frame.
    pub const MUST_UNDERSTAND: u8 = 0x80;
    /// Bit 6 of any frame: the frame is sealed (`docs/protocol.md` §2.5).
    /// Its 6 header bytes are followed by their CRC-32C (the header check,
    /// not counted by `length`), and its body ends in a 4-byte CRC-32C of
    /// every byte before it (the trailer, counted by `length`). A receiver
    /// checks both whenever it is set, negotiated or not.
    pub const CRC32C: u8 = 0x40;
}

/// The frame type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameType {
    /// 0x01: the caller's connect request, with caller data and proposed options.
    Connect,
    /// 0x02: the callee's acceptance, with callee data and granted options.
    Accept,
    /// 0x03: the callee's refusal, with a reason and callee data.
    Reject,
    /// 0x04: user data, with an end-of-message flag.
    Data,
    /// 0x05: "I will send no more", with disconnect data.
    Disconnect,
    /// 0x06: "this session is over now", with a reason and data.
    Abort,
    /// 0x07: keepalive; empty body; never answered.
    Ping,
    /// Any other value except the reserved 0x00.
    Unknown(u8),
}

impl FrameType {
    /// Every frame type this version defines, in code order.
    pub const KNOWN: [Self; 7] = [
        Self::Connect,
        Self::Accept,
        Self::Reject,
        Self::Data,
        Self::Disconnect,
        Self::Abort,
        Self::Ping,
    ];
}

impl From<u8> for FrameType {
    fn from(v: u8) -> Self {
        match v {
            0x01 => Self::Connect,
            0x02 => Self::Accept,
            0x03 => Self::Reject,
            0x04 => Self::Data,
            0x05 => Self::Disconnect,
            0x06 => Self::Abort,
            0x07 => Self::Ping,
            other => Self::Unknown(other),
        }
    }
}

impl From<FrameType> for u8 {
    fn from(t: FrameType) -> Self {
        match t {
            FrameType::Connect => 0x01,
            FrameType::Accept => 0x02,
            FrameType::Reject => 0x03,
            FrameType::Data => 0x04,
            FrameType::Disconnect => 0x05,
            FrameType::Abort => 0x06,
            FrameType::Ping => 0x07,
            FrameType::Unknown(v) => v,
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect => f.write_str("CONNECT"),
            Self::Accept => f.write_str("ACCEPT"),
            Self::Reject => f.write_str("REJECT"),
            Self::Data => f.write_str("DATA"),
            Self::Disconnect => f.write_str("DISCONNECT"),
            Self::Abort => f.write_str("ABORT"),
            Self::Ping => f.write_str("PING"),
            Self::Unknown(v) => write!(f, "UNKNOWN({v:#04x})"),
        }
    }
}

/// The frame's name, as `Display` writes it.
#[cfg(feature = "defmt")]
impl defmt::Format for FrameType {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Connect => defmt::write!(f, "CONNECT"),
            Self::Accept => defmt::write!(f, "ACCEPT"),
            Self::Reject => defmt::write!(f, "REJECT"),
            Self::Data => defmt::write!(f, "DATA"),
            Self::Disconnect => defmt::write!(f, "DISCONNECT"),
            Self::Abort => defmt::write!(f, "ABORT"),
            Self::Ping => defmt::write!(f, "PING"),
            Self::Unknown(v) => defmt::write!(f, "UNKNOWN({=u8:#04x})", v),
        }
    }
}

/// A zero-copy view of one frame: header plus body.
///
/// The buffer may be longer than the frame; [`Frame::total_len`] says where
/// the frame ends. After [`Frame::check_len`] succeeds no accessor panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it. Accessors may panic until
    /// [`check_len`](Self::check_len) has succeeded.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer and checks that it holds a whole header and the whole
    /// body that the header announces.
    ///
    /// This function returns `Err(Error::Truncated)` if it does not.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the header (its check included, when
    /// sealed) and the announced body.
    ///
    /// This function returns `Err(Error::Truncated)` if it does not. The body
    /// length is a u32; on 16-bit targets a length that does not fit `usize`
    /// is also `Truncated`, as such a buffer cannot exist.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header = self.header_len();
        match usize::try_from(self.body_len()) {
            Ok(body) if len >= header && len - header >= body => Ok(()),
            _ => Err(Error::Truncated),
        }
    }

    /// The header's length: [`HEADER_LEN`], or [`SEALED_HEADER_LEN`] when
    /// the frame is sealed.
    pub fn header_len(&self) -> usize {
        header_len(self.flags())
    }

    /// A sealed frame's header check, as received; `None` when unsealed.
    pub fn header_check(&self) -> Option<u32> {
        (self.flags() & flags::CRC32C != 0).then(|| read_u32(self.buffer.as_ref(), HEADER_LEN))
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The frame type octet.
    pub fn frame_type(&self) -> FrameType {
        FrameType::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The flags octet.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The body length announced by the header.
    pub fn body_len(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Header plus body length, in bytes.
    pub fn total_len(&self) -> usize {
        self.header_len() + self.body_len() as usize
    }

    /// The body bytes (with its trailer, when sealed).
    pub fn body(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[self.header_len()..][..self.body_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the frame type octet.
    pub fn set_frame_type(&mut self, t: FrameType) {
        self.buffer.as_mut()[field::TYPE] = t.into();
    }

    /// Sets the flags octet.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the body length field.
    pub fn set_body_len(&mut self, len: u32) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// The mutable body bytes, as long as the length field says.
    pub fn body_mut(&mut self) -> &mut [u8] {
        let len = self.body_len() as usize;
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..][..len]
    }
}

/// Writes a frame header into the first [`HEADER_LEN`] bytes of `buf`.
///
/// This is the building block for senders that copy a payload straight into a
/// transport buffer after the header (no intermediate frame buffer). This
/// function returns `Err(Error::BufferTooSmall)` if `buf` is shorter than a header.
pub fn emit_header(
    buf: &mut [u8],
    frame_type: FrameType,
    flags: u8,
    body_len: u32,
) -> Result<(), Error> {
    if buf.len() < HEADER_LEN {
        return Err(Error::BufferTooSmall { needed: HEADER_LEN });
    }
    let mut frame = Frame::new_unchecked(&mut buf[..HEADER_LEN]);
    frame.set_frame_type(frame_type);
    frame.set_flags(flags);
    frame.set_body_len(body_len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_type_round_trips_every_octet() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(FrameType::from(v)), v);
        }
    }

    #[test]
    fn check_len_refuses_short_header_and_body() {
        assert_eq!(
            Frame::new_checked(&[4u8, 0, 0, 0][..]),
            Err(Error::Truncated)
        );
        assert_eq!(
            Frame::new_checked(&[4u8, 0, 0, 0, 0, 2, 9][..]),
            Err(Error::Truncated)
        );
        let f = Frame::new_checked(&[4u8, 1, 0, 0, 0, 1, 9, 0xEE][..]).unwrap();
        assert_eq!(f.body(), &[9]);
        assert_eq!(f.total_len(), 7);
        assert_eq!(f.frame_type(), FrameType::Data);
    }

    #[test]
    fn huge_length_is_truncated_not_panic() {
        let buf = [4u8, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(Frame::new_checked(&buf[..]), Err(Error::Truncated));
    }
}
