//! Typed size limits (`docs/protocol.md` §6).
//!
//! Every bound a receiver enforces is one of these constants or a field of
//! [`Limits`]; there are no other magic numbers in the codec.

use core::fmt;

use crate::frame::FrameType;
use crate::hello::HELLO_FIXED_LEN;
use crate::repr::REASON_FIXED_LEN;

/// Smallest configurable limit for connect, callee, reject and disconnect data:
/// DECnet's 16 bytes.
pub const MIN_USER_DATA: u32 = 16;
/// Default limit for connect, callee, reject and disconnect data: 64 KiB.
pub const DEFAULT_USER_DATA: u32 = 64 * 1024;
/// Largest configurable limit for user data: 1 MiB.
pub const MAX_USER_DATA: u32 = 1024 * 1024;

/// Smallest allowed maximum DATA payload per frame.
pub const MIN_FRAME_SIZE: u32 = 64;
/// Default maximum DATA payload per frame: 16 KiB.
pub const DEFAULT_FRAME_SIZE: u32 = 16 * 1024;
/// Largest allowed maximum DATA payload per frame: 16 MiB.
pub const MAX_FRAME_SIZE: u32 = 16 * 1024 * 1024;

/// Smallest allowed maximum message size (message mode).
pub const MIN_MESSAGE_SIZE: u32 = 16;
/// Default maximum message size: 64 KiB.
pub const DEFAULT_MESSAGE_SIZE: u32 = 64 * 1024;
/// Largest allowed maximum message size: 16 MiB.
pub const MAX_MESSAGE_SIZE: u32 = 16 * 1024 * 1024;

/// Largest options block in CONNECT or ACCEPT, in bytes.
pub const MAX_OPTIONS_LEN: u32 = 1024;

/// A limit outside its allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LimitError {
    /// Which limit.
    pub what: &'static str,
    /// The value asked for.
    pub value: u32,
    /// The smallest allowed value.
    pub min: u32,
    /// The largest allowed value.
    pub max: u32,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} outside {}..={}",
            self.what, self.value, self.min, self.max
        )
    }
}

impl core::error::Error for LimitError {}

/// The receive limits a decoder enforces, checked from the frame header
/// before any body byte is waited for.
///
/// Fields are private so that a `Limits` is always within the protocol's
/// ranges; build one with [`Limits::new`] or start from [`Limits::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limits {
    max_frame_size: u32,
    max_connect_data: u32,
    max_disconnect_data: u32,
}

fn check(what: &'static str, value: u32, min: u32, max: u32) -> Result<u32, LimitError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(LimitError {
            what,
            value,
            min,
            max,
        })
    }
}

impl Limits {
    /// The protocol defaults: 16 KiB DATA payloads, 64 KiB connect and disconnect data.
    pub const DEFAULT: Self = Self {
        max_frame_size: DEFAULT_FRAME_SIZE,
        max_connect_data: DEFAULT_USER_DATA,
        max_disconnect_data: DEFAULT_USER_DATA,
    };

    /// Builds limits, each checked against its allowed range.
    ///
    /// This function returns `Err(LimitError)` naming the first value out of range.
    pub fn new(
        max_frame_size: u32,
        max_connect_data: u32,
        max_disconnect_data: u32,
    ) -> Result<Self, LimitError> {
        Ok(Self {
            max_frame_size: check(
                "max_frame_size",
                max_frame_size,
                MIN_FRAME_SIZE,
                MAX_FRAME_SIZE,
            )?,
            max_connect_data: check(
                "max_connect_data",
                max_connect_data,
                MIN_USER_DATA,
                MAX_USER_DATA,
            )?,
            max_disconnect_data: check(
                "max_disconnect_data",
                max_disconnect_data,
                MIN_USER_DATA,
                MAX_USER_DATA,
            )?,
        })
    }

    /// Largest DATA payload per frame.
    pub const fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Largest caller, callee or reject data.
    pub const fn max_connect_data(&self) -> u32 {
        self.max_connect_data
    }

    /// Largest disconnect or abort data.
    pub const fn max_disconnect_data(&self) -> u32 {
        self.max_disconnect_data
    }

    /// Largest body a receiver accepts for a frame of type `t`.
    ///
    /// Unknown frames are bounded like DATA so that a skippable frame can never
    /// be larger than the largest frame the receiver must buffer anyway.
    pub const fn max_body_len(&self, t: FrameType) -> u32 {
        match t {
            FrameType::Connect | FrameType::Accept => {
                HELLO_FIXED_LEN as u32 + MAX_OPTIONS_LEN + self.max_connect_data
            }
            FrameType::Reject => REASON_FIXED_LEN as u32 + self.max_connect_data,
            FrameType::Disconnect => self.max_disconnect_data,
            FrameType::Abort => REASON_FIXED_LEN as u32 + self.max_disconnect_data,
            FrameType::Ping => 0,
            FrameType::Data | FrameType::Unknown(_) => self.max_frame_size,
        }
    }

    /// The largest `length` a header of type `t` with flags `fl` may carry:
    /// [`max_body_len`](Self::max_body_len), plus the CRC-32C trailer when
    /// `fl` has [`crate::flags::CRC32C`] (the trailer is not user data, so
    /// it does not count against the negotiated sizes).
    pub const fn max_wire_body_len(&self, t: FrameType, fl: u8) -> u32 {
        let trailer = if fl & crate::flags::CRC32C != 0 {
            crate::integrity::TRAILER_LEN as u32
        } else {
            0
        };
        self.max_body_len(t) + trailer
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced() {
        assert!(Limits::new(MIN_FRAME_SIZE, MIN_USER_DATA, MIN_USER_DATA).is_ok());
        assert!(Limits::new(MAX_FRAME_SIZE, MAX_USER_DATA, MAX_USER_DATA).is_ok());
        let e = Limits::new(MIN_FRAME_SIZE - 1, 16, 16).unwrap_err();
        assert_eq!(e.what, "max_frame_size");
        assert_eq!(
            Limits::new(1024, 15, 16).unwrap_err().what,
            "max_connect_data"
        );
        assert_eq!(
            Limits::new(1024, 16, MAX_USER_DATA + 1).unwrap_err().what,
            "max_disconnect_data"
        );
    }

    #[test]
    fn default_body_bounds() {
        let l = Limits::DEFAULT;
        assert_eq!(l.max_body_len(FrameType::Connect), 8 + 1024 + 65536);
        assert_eq!(l.max_body_len(FrameType::Abort), 2 + 65536);
        assert_eq!(l.max_body_len(FrameType::Ping), 0);
        assert_eq!(l.max_body_len(FrameType::Unknown(0x42)), 16384);
    }
}
