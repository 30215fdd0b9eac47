//! The high-level frame representation: parse from a checked [`Frame`], emit
//! into a caller's buffer with an exact length.

use crate::Error;
use crate::field::read_u16;
use crate::frame::{Frame, FrameType, HEADER_LEN, emit_header, flags};
use crate::hello::{AcceptRepr, ConnectRepr, data_by_flag};
use crate::reason::Reason;

mod field {
    use crate::field::{Field, Rest};
    pub(crate) const REASON: Field = 0..2;
    pub(crate) const DATA: Rest = 2..;
}

/// Fixed part of a REJECT or ABORT body: the 16-bit reason code.
pub const REASON_FIXED_LEN: usize = field::DATA.start;

/// A zero-copy view of a REJECT or ABORT *body*: reason code, then data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reasoned<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Reasoned<T> {
    /// Wraps a body without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a body and checks that the reason code is present.
    ///
    /// This function returns `Err(Error::Truncated)` if the body is shorter
    /// than [`REASON_FIXED_LEN`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let r = Self::new_unchecked(buffer);
        r.check_len()?;
        Ok(r)
    }

    /// See [`new_checked`](Self::new_checked).
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < REASON_FIXED_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The reason code.
    pub fn reason(&self) -> Reason {
        Reason(read_u16(self.buffer.as_ref(), field::REASON.start))
    }

    /// The data after the reason code (possibly empty).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }
}

impl<'a> Reasoned<&'a [u8]> {
    /// The data after the reason code, borrowed for the buffer's lifetime.
    pub fn into_data(self) -> &'a [u8] {
        &self.buffer[field::DATA]
    }
}

/// A parsed REJECT or ABORT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReasonRepr<'a> {
    /// The reason code (§8 registry).
    pub reason: Reason,
    /// Data; `None` when the HAS_DATA flag is clear.
    pub data: Option<&'a [u8]>,
}

impl<'a> ReasonRepr<'a> {
    fn parse(frame_type: FrameType, body: &'a [u8], flag_bits: u8) -> Result<Self, Error> {
        let r = Reasoned::new_checked(body).map_err(|_| Error::BodyTooShort { frame_type })?;
        let reason = r.reason();
        let data = data_by_flag(frame_type, flag_bits, r.into_data())?;
        Ok(Self { reason, data })
    }

    fn body_len(&self) -> usize {
        REASON_FIXED_LEN + self.data.map_or(0, <[u8]>::len)
    }

    fn emit_body(&self, buf: &mut [u8]) {
        buf[field::REASON].copy_from_slice(&self.reason.0.to_be_bytes());
        if let Some(d) = self.data {
            buf[REASON_FIXED_LEN..REASON_FIXED_LEN + d.len()].copy_from_slice(d);
        }
    }
}

/// One frame, parsed. Borrowed from the input: nothing is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameRepr<'a> {
    /// CONNECT (§3.1).
    Connect(ConnectRepr<'a>),
    /// ACCEPT (§3.2).
    Accept(AcceptRepr<'a>),
    /// REJECT (§3.3).
    Reject(ReasonRepr<'a>),
    /// DATA (§3.4).
    Data {
        /// END_OF_MESSAGE flag; meaningful in message mode only.
        end_of_message: bool,
        /// The payload.
        payload: &'a [u8],
    },
    /// DISCONNECT (§3.5): the sender will send no more.
    Disconnect {
        /// Disconnect data; `None` when the HAS_DATA flag is clear.
        data: Option<&'a [u8]>,
    },
    /// ABORT (§3.6): the session is over now.
    Abort(ReasonRepr<'a>),
    /// PING (§3.7): keepalive.
    Ping,
    /// A frame type this version does not define, without MUST_UNDERSTAND:
    /// the receiver skips it (§2.3).
    Unknown {
        /// The type octet.
        frame_type: u8,
        /// Body length that was skipped.
        len: u32,
    },
}

impl<'a> FrameRepr<'a> {
    /// Parses a checked frame.
    ///
    /// This function returns `Err` for the reserved type 0x00, an unknown type
    /// marked MUST_UNDERSTAND, and any malformed body. It does not check the
    /// body against [`crate::Limits`]; [`crate::decode`] does that from the header.
    ///
    /// A frame with [`flags::CRC32C`] has its trailer checked first
    /// ([`crate::verify`]), and the frame is then what precedes the trailer:
    /// nothing of a damaged frame is parsed.
    pub fn parse(frame: &Frame<&'a [u8]>) -> Result<Self, Error> {
        frame.check_len()?;
        let flag_bits = frame.flags();
        let bytes: &'a [u8] = &frame.into_inner()[..frame.total_len()];
        let end = if flag_bits & flags::CRC32C != 0 {
            crate::integrity::verify(bytes)?
        } else {
            bytes.len()
        };
        // `Frame::body` would borrow the local view; slice the buffer itself.
        let body: &'a [u8] = &bytes[frame.header_len()..end];
        Ok(match frame.frame_type() {
            FrameType::Connect => Self::Connect(ConnectRepr::parse(body, flag_bits)?),
            FrameType::Accept => Self::Accept(AcceptRepr::parse(body, flag_bits)?),
            FrameType::Reject => {
                Self::Reject(ReasonRepr::parse(FrameType::Reject, body, flag_bits)?)
            }
            FrameType::Abort => Self::Abort(ReasonRepr::parse(FrameType::Abort, body, flag_bits)?),
            FrameType::Data => Self::Data {
                end_of_message: flag_bits & flags::END_OF_MESSAGE != 0,
                payload: body,
            },
            FrameType::Disconnect => Self::Disconnect {
                data: data_by_flag(FrameType::Disconnect, flag_bits, body)?,
            },
            FrameType::Ping => {
                if !body.is_empty() {
                    return Err(Error::UnexpectedBody {
                        frame_type: FrameType::Ping,
                    });
                }
                Self::Ping
            }
            FrameType::Unknown(0) => return Err(Error::ReservedFrameType),
            FrameType::Unknown(t) => {
                if flag_bits & flags::MUST_UNDERSTAND != 0 {
                    return Err(Error::UnknownCriticalFrame { frame_type: t });
                }
                Self::Unknown {
                    frame_type: t,
                    // Body length as `u32`: it came from the u32 length field.
                    len: body.len() as u32,
                }
            }
        })
    }

    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Connect(_) => FrameType::Connect,
            Self::Accept(_) => FrameType::Accept,
            Self::Reject(_) => FrameType::Reject,
            Self::Data { .. } => FrameType::Data,
            Self::Disconnect { .. } => FrameType::Disconnect,
            Self::Abort(_) => FrameType::Abort,
            Self::Ping => FrameType::Ping,
            Self::Unknown { frame_type, .. } => FrameType::Unknown(*frame_type),
        }
    }

    /// The flags octet this frame is emitted with.
    pub fn flags(&self) -> u8 {
        let has = |d: Option<&[u8]>| if d.is_some() { flags::HAS_DATA } else { 0 };
        match self {
            Self::Connect(c) => has(c.data),
            Self::Accept(a) => has(a.data),
            Self::Reject(r) | Self::Abort(r) => has(r.data),
            Self::Disconnect { data } => has(*data),
            Self::Data { end_of_message, .. } => {
                if *end_of_message {
                    flags::END_OF_MESSAGE
                } else {
                    0
                }
            }
            Self::Ping | Self::Unknown { .. } => 0,
        }
    }

    /// Exact body length, in bytes.
    pub fn body_len(&self) -> usize {
        match self {
            Self::Connect(c) => c.body_len(),
            Self::Accept(a) => a.body_len(),
            Self::Reject(r) | Self::Abort(r) => r.body_len(),
            Self::Data { payload, .. } => payload.len(),
            Self::Disconnect { data } => data.map_or(0, <[u8]>::len),
            Self::Ping => 0,
            Self::Unknown { len, .. } => *len as usize,
        }
    }

    /// Exact length of the emitted frame: header plus body.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// Exact length of the frame emitted sealed: with its header check and
    /// its CRC-32C trailer.
    pub fn sealed_buffer_len(&self) -> usize {
        self.buffer_len() + crate::integrity::SEALED_OVERHEAD
    }

    /// Emits the frame sealed (§2.5): with [`flags::CRC32C`] set, the header
    /// check after the header and the CRC-32C trailer after the body,
    /// returning the bytes written (always
    /// [`sealed_buffer_len`](Self::sealed_buffer_len)).
    ///
    /// This function returns the errors of [`emit`](Self::emit).
    pub fn emit_sealed(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let needed = self.sealed_buffer_len();
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let n = self.emit(buf)?;
        crate::integrity::seal(&mut buf[..n + crate::integrity::SEALED_OVERHEAD])
    }

    /// Emits the frame into the start of `buf`, returning the bytes written
    /// (always [`buffer_len`](Self::buffer_len)).
    ///
    /// An `Unknown` frame is emitted with a zero-filled body, which is useful
    /// for testing receivers. This function returns
    /// `Err(Error::BufferTooSmall)` if `buf` is too short, and
    /// `Err(Error::Unrepresentable)` if the body does not fit the u32 length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let body_len = self.body_len();
        let needed = HEADER_LEN + body_len;
        let wire_len = u32::try_from(body_len).map_err(|_| Error::Unrepresentable)?;
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        emit_header(buf, self.frame_type(), self.flags(), wire_len)?;
        let body = &mut buf[HEADER_LEN..needed];
        match self {
            Self::Connect(c) => {
                c.emit_body(body)?;
            }
            Self::Accept(a) => {
                a.emit_body(body)?;
            }
            Self::Reject(r) | Self::Abort(r) => r.emit_body(body),
            Self::Data { payload, .. } => body.copy_from_slice(payload),
            Self::Disconnect { data } => {
                if let Some(d) = data {
                    body.copy_from_slice(d);
                }
            }
            Self::Ping => {}
            Self::Unknown { .. } => body.fill(0),
        }
        Ok(needed)
    }
}
