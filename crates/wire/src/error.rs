//! The one error type of the codec.

use core::fmt;

use crate::frame::FrameType;

/// Why bytes could not be parsed, or a frame could not be emitted.
///
/// Every variant is a refusal of specific input; none means "bug". A session that
/// receives any of these from its peer ends with ABORT(protocol error), except
/// where `docs/protocol.md` §7 says a CONNECT is answered with REJECT instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The buffer is shorter than a header, a length field or a fixed field says.
    Truncated,
    /// Frame type 0x00 is reserved and never valid on the wire.
    ReservedFrameType,
    /// A frame type this implementation does not know, with the MUST_UNDERSTAND
    /// flag set: the receiver must not skip it.
    UnknownCriticalFrame {
        /// The type octet.
        frame_type: u8,
    },
    /// The header announces a body longer than the limit for its type. Raised
    /// from the header alone, before any body byte is buffered.
    FrameTooLarge {
        /// The frame's type.
        frame_type: FrameType,
        /// The announced body length.
        len: u32,
        /// The limit in force for that type.
        max: u32,
    },
    /// A body shorter than the fixed part of its frame type.
    BodyTooShort {
        /// The frame's type.
        frame_type: FrameType,
    },
    /// A body that must be empty (PING) is not.
    UnexpectedBody {
        /// The frame's type.
        frame_type: FrameType,
    },
    /// User data present although the HAS_DATA flag is clear.
    DataWithoutFlag {
        /// The frame's type.
        frame_type: FrameType,
    },
    /// CONNECT or ACCEPT does not start with the `BKND` magic.
    BadMagic,
    /// CONNECT announces `min_version > max_version`, or a version of 0.
    BadVersion,
    /// The options block length runs past the body, or over [`crate::MAX_OPTIONS_LEN`].
    BadOptionsLength,
    /// An option TLV runs past the options block.
    TruncatedOption,
    /// A known option with the wrong value length or an invalid value.
    MalformedOption {
        /// The option kind, without the critical bit.
        kind: u16,
    },
    /// A known option whose value is outside the range the protocol allows.
    OptionOutOfRange {
        /// The option kind, without the critical bit.
        kind: u16,
        /// The offending value.
        value: u32,
    },
    /// The same known option appears twice.
    DuplicateOption {
        /// The option kind, without the critical bit.
        kind: u16,
    },
    /// An unknown option with the critical bit set.
    UnknownCriticalOption {
        /// The option kind, without the critical bit.
        kind: u16,
    },
    /// A frame with the CRC32C flag whose body is shorter than its trailer.
    MissingTrailer,
    /// A frame's CRC-32C trailer does not match its bytes: they were altered
    /// on the way (or the stream lost its framing).
    ChecksumMismatch {
        /// The CRC-32C of the header and body as received.
        computed: u32,
        /// The trailer as received.
        received: u32,
    },
    /// A sealed frame's header check (the CRC-32C of its first 6 bytes,
    /// §2.5) does not match: the type, flags or length were altered on the
    /// way, so the length cannot be trusted to find the body.
    HeaderChecksumMismatch {
        /// The CRC-32C of the 6 header bytes as received.
        computed: u32,
        /// The header check as received.
        received: u32,
    },
    /// `emit` was given a buffer shorter than [`crate::FrameRepr::buffer_len`].
    BufferTooSmall {
        /// The bytes the frame needs.
        needed: usize,
    },
    /// `emit` was asked for a body longer than a u32 length field can carry,
    /// or an options block longer than [`crate::MAX_OPTIONS_LEN`].
    Unrepresentable,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated => write!(f, "truncated frame"),
            Self::ReservedFrameType => write!(f, "reserved frame type 0x00"),
            Self::UnknownCriticalFrame { frame_type } => {
                write!(
                    f,
                    "unknown frame type {frame_type:#04x} marked must-understand"
                )
            }
            Self::FrameTooLarge {
                frame_type,
                len,
                max,
            } => {
                write!(f, "{frame_type} body of {len} bytes exceeds limit {max}")
            }
            Self::BodyTooShort { frame_type } => write!(f, "{frame_type} body too short"),
            Self::UnexpectedBody { frame_type } => {
                write!(f, "{frame_type} must have an empty body")
            }
            Self::DataWithoutFlag { frame_type } => {
                write!(f, "{frame_type} carries data but HAS_DATA is clear")
            }
            Self::MissingTrailer => write!(f, "CRC32C flag set but no room for the trailer"),
            Self::ChecksumMismatch { computed, received } => write!(
                f,
                "CRC-32C mismatch: frame has {received:#010x}, its bytes give {computed:#010x}"
            ),
            Self::HeaderChecksumMismatch { computed, received } => write!(
                f,
                "header CRC-32C mismatch: header check {received:#010x}, header gives {computed:#010x}"
            ),
            Self::BadMagic => write!(f, "missing BKND magic"),
            Self::BadVersion => write!(f, "invalid version range"),
            Self::BadOptionsLength => write!(f, "options block length invalid"),
            Self::TruncatedOption => write!(f, "option runs past the options block"),
            Self::MalformedOption { kind } => write!(f, "option {kind:#06x} malformed"),
            Self::OptionOutOfRange { kind, value } => {
                write!(f, "option {kind:#06x} value {value} out of range")
            }
            Self::DuplicateOption { kind } => write!(f, "option {kind:#06x} repeated"),
            Self::UnknownCriticalOption { kind } => {
                write!(f, "unknown critical option {kind:#06x}")
            }
            Self::BufferTooSmall { needed } => write!(f, "buffer too small, {needed} bytes needed"),
            Self::Unrepresentable => write!(f, "frame too large to represent"),
        }
    }
}

impl core::error::Error for Error {}
