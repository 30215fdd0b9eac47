//! Option TLVs carried by CONNECT (proposed) and ACCEPT (granted), `docs/protocol.md` §4.

use crate::Error;
use crate::field::{read_u16, read_u32};
use crate::integrity::Integrity;
use crate::limits::{
    MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, MAX_USER_DATA, MIN_FRAME_SIZE, MIN_MESSAGE_SIZE,
    MIN_USER_DATA,
};

/// Length of an option TLV header: kind (2) and value length (2).
pub const OPTION_HEADER_LEN: usize = 4;
/// Bit 15 of the kind: a receiver that does not know the option must refuse
/// the frame (REJECT for CONNECT, ABORT for ACCEPT) instead of ignoring it.
pub const OPTION_CRITICAL: u16 = 0x8000;
/// Largest keepalive interval the wire accepts: one hour, in milliseconds.
pub const MAX_KEEPALIVE_MS: u32 = 3_600_000;

/// The option kinds defined by version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OptionKind {
    /// Largest DATA payload per frame, u32.
    MaxFrameSize = 0x0001,
    /// Largest message in message mode, u32.
    MaxMessageSize = 0x0002,
    /// Largest callee data (ACCEPT) or reject data, u32.
    MaxConnectData = 0x0003,
    /// Largest disconnect or abort data, u32.
    MaxDisconnectData = 0x0004,
    /// Stream (0) or message (1) mode, u8. Always sent critical.
    Mode = 0x0005,
    /// Keepalive interval in milliseconds, u32; 0 turns keepalive off.
    KeepaliveMs = 0x0006,
    /// The per-frame check after ACCEPT, u8: 0 none, 1 CRC-32C (§2.5).
    Integrity = 0x0007,
}

impl OptionKind {
    fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0x0001 => Self::MaxFrameSize,
            0x0002 => Self::MaxMessageSize,
            0x0003 => Self::MaxConnectData,
            0x0004 => Self::MaxDisconnectData,
            0x0005 => Self::Mode,
            0x0006 => Self::KeepaliveMs,
            0x0007 => Self::Integrity,
            _ => return None,
        })
    }
}

/// Stream or message semantics of DATA (Winsock `XP1_MESSAGE_ORIENTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// A byte stream: message boundaries are not kept; graceful close reads as 0.
    #[default]
    Stream,
    /// Messages: boundaries are kept; graceful close is a distinct error (WSAEDISCON).
    Message,
}

impl Mode {
    /// The wire value of the MODE option.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Stream => 0,
            Self::Message => 1,
        }
    }
}

/// The options of one CONNECT or ACCEPT. `None` means "absent": the receiver
/// applies the protocol default (`docs/protocol.md` §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OptionsRepr {
    /// [`OptionKind::MaxFrameSize`].
    pub max_frame_size: Option<u32>,
    /// [`OptionKind::MaxMessageSize`].
    pub max_message_size: Option<u32>,
    /// [`OptionKind::MaxConnectData`].
    pub max_connect_data: Option<u32>,
    /// [`OptionKind::MaxDisconnectData`].
    pub max_disconnect_data: Option<u32>,
    /// [`OptionKind::Mode`].
    pub mode: Option<Mode>,
    /// [`OptionKind::KeepaliveMs`].
    pub keepalive_ms: Option<u32>,
    /// [`OptionKind::Integrity`].
    pub integrity: Option<Integrity>,
    /// CONNECT only: the CRC-32C of the caller data (of no bytes when there
    /// is none), sent after the `INTEGRITY` value (§2.5). CONNECT itself is
    /// never sealed, so that a callee that predates the option reads it;
    /// this lets one that knows the option check the caller data.
    pub connect_crc: Option<u32>,
}

fn ranged(kind: OptionKind, value: u32, min: u32, max: u32) -> Result<u32, Error> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::OptionOutOfRange {
            kind: kind as u16,
            value,
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, kind: OptionKind, value: T) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::DuplicateOption { kind: kind as u16 });
    }
    *slot = Some(value);
    Ok(())
}

fn u32_value(kind: OptionKind, value: &[u8]) -> Result<u32, Error> {
    if value.len() != 4 {
        return Err(Error::MalformedOption { kind: kind as u16 });
    }
    Ok(read_u32(value, 0))
}

impl OptionsRepr {
    /// Every option absent (the same as `Default`, usable in constants).
    pub const NONE: Self = Self {
        max_frame_size: None,
        max_message_size: None,
        max_connect_data: None,
        max_disconnect_data: None,
        mode: None,
        keepalive_ms: None,
        integrity: None,
        connect_crc: None,
    };

    /// Parses an options block.
    ///
    /// Unknown options without [`OPTION_CRITICAL`] are skipped. This function
    /// returns `Err` for a TLV running past the block, an unknown critical
    /// option, a duplicated or malformed known option, or a value out of range.
    pub fn parse(mut block: &[u8]) -> Result<Self, Error> {
        let mut repr = Self::default();
        while !block.is_empty() {
            if block.len() < OPTION_HEADER_LEN {
                return Err(Error::TruncatedOption);
            }
            let raw_kind = read_u16(block, 0);
            let len = read_u16(block, 2) as usize;
            let rest = &block[OPTION_HEADER_LEN..];
            if rest.len() < len {
                return Err(Error::TruncatedOption);
            }
            let (value, next) = rest.split_at(len);
            block = next;
            let kind_code = raw_kind & !OPTION_CRITICAL;
            let Some(kind) = OptionKind::from_u16(kind_code) else {
                if raw_kind & OPTION_CRITICAL != 0 {
                    return Err(Error::UnknownCriticalOption { kind: kind_code });
                }
                continue;
            };
            match kind {
                OptionKind::MaxFrameSize => {
                    let v = ranged(
                        kind,
                        u32_value(kind, value)?,
                        MIN_FRAME_SIZE,
                        MAX_FRAME_SIZE,
                    )?;
                    set_once(&mut repr.max_frame_size, kind, v)?;
                }
                OptionKind::MaxMessageSize => {
                    let v = ranged(
                        kind,
                        u32_value(kind, value)?,
                        MIN_MESSAGE_SIZE,
                        MAX_MESSAGE_SIZE,
                    )?;
                    set_once(&mut repr.max_message_size, kind, v)?;
                }
                OptionKind::MaxConnectData => {
                    let v = ranged(kind, u32_value(kind, value)?, MIN_USER_DATA, MAX_USER_DATA)?;
                    set_once(&mut repr.max_connect_data, kind, v)?;
                }
                OptionKind::MaxDisconnectData => {
                    let v = ranged(kind, u32_value(kind, value)?, MIN_USER_DATA, MAX_USER_DATA)?;
                    set_once(&mut repr.max_disconnect_data, kind, v)?;
                }
                OptionKind::KeepaliveMs => {
                    let v = ranged(kind, u32_value(kind, value)?, 0, MAX_KEEPALIVE_MS)?;
                    set_once(&mut repr.keepalive_ms, kind, v)?;
                }
                OptionKind::Mode => {
                    let mode = match value {
                        [0] => Mode::Stream,
                        [1] => Mode::Message,
                        _ => return Err(Error::MalformedOption { kind: kind as u16 }),
                    };
                    set_once(&mut repr.mode, kind, mode)?;
                }
                OptionKind::Integrity => {
                    let (v, crc) = match value {
                        [v] => (*v, None),
                        [v, rest @ ..] if rest.len() == 4 => (*v, Some(read_u32(rest, 0))),
                        _ => return Err(Error::MalformedOption { kind: kind as u16 }),
                    };
                    let integrity = Integrity::from_u8(v).ok_or(Error::OptionOutOfRange {
                        kind: kind as u16,
                        value: u32::from(v),
                    })?;
                    set_once(&mut repr.integrity, kind, integrity)?;
                    repr.connect_crc = crc;
                }
            }
        }
        Ok(repr)
    }

    fn u32_fields(&self) -> [(OptionKind, Option<u32>); 5] {
        [
            (OptionKind::MaxFrameSize, self.max_frame_size),
            (OptionKind::MaxMessageSize, self.max_message_size),
            (OptionKind::MaxConnectData, self.max_connect_data),
            (OptionKind::MaxDisconnectData, self.max_disconnect_data),
            (OptionKind::KeepaliveMs, self.keepalive_ms),
        ]
    }

    /// Exact length of the emitted options block.
    pub fn buffer_len(&self) -> usize {
        let words = self
            .u32_fields()
            .iter()
            .filter(|(_, v)| v.is_some())
            .count();
        let bytes = usize::from(self.mode.is_some()) + usize::from(self.integrity.is_some());
        let crc = if self.integrity.is_some() && self.connect_crc.is_some() {
            4
        } else {
            0
        };
        words * (OPTION_HEADER_LEN + 4) + bytes * (OPTION_HEADER_LEN + 1) + crc
    }

    /// Emits the options block in ascending kind order (MODE with the critical
    /// bit) into `buf`, returning the bytes written.
    ///
    /// This function returns `Err(Error::BufferTooSmall)` if `buf` is shorter
    /// than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let mut at = 0;
        let mut put = |kind: u16, value: &[u8]| {
            buf[at..at + 2].copy_from_slice(&kind.to_be_bytes());
            // Values are at most 4 bytes: the cast cannot truncate.
            buf[at + 2..at + 4].copy_from_slice(&(value.len() as u16).to_be_bytes());
            buf[at + 4..at + 4 + value.len()].copy_from_slice(value);
            at += OPTION_HEADER_LEN + value.len();
        };
        let [frame, message, connect, disconnect, keepalive] = self.u32_fields();
        for (kind, value) in [frame, message, connect, disconnect] {
            if let Some(v) = value {
                put(kind as u16, &v.to_be_bytes());
            }
        }
        if let Some(mode) = self.mode {
            put(OptionKind::Mode as u16 | OPTION_CRITICAL, &[mode.to_u8()]);
        }
        if let (kind, Some(v)) = keepalive {
            put(kind as u16, &v.to_be_bytes());
        }
        // Not critical: a peer that does not know it ignores it and grants
        // nothing, which leaves integrity off (§4.2).
        if let Some(i) = self.integrity {
            match self.connect_crc {
                Some(c) => {
                    let c = c.to_be_bytes();
                    put(
                        OptionKind::Integrity as u16,
                        &[i.to_u8(), c[0], c[1], c[2], c[3]],
                    );
                }
                None => put(OptionKind::Integrity as u16, &[i.to_u8()]),
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_block_is_all_absent() {
        assert_eq!(OptionsRepr::parse(&[]).unwrap(), OptionsRepr::default());
    }

    #[test]
    fn unknown_options_follow_the_critical_bit() {
        // kind 0x0042, len 1, value 7: skipped.
        assert_eq!(
            OptionsRepr::parse(&[0x00, 0x42, 0, 1, 7]).unwrap(),
            OptionsRepr::default()
        );
        // kind 0x8042: refused.
        assert_eq!(
            OptionsRepr::parse(&[0x80, 0x42, 0, 1, 7]),
            Err(Error::UnknownCriticalOption { kind: 0x42 })
        );
    }

    #[test]
    fn integrity_option() {
        let repr = OptionsRepr {
            integrity: Some(Integrity::Crc32c),
            ..OptionsRepr::default()
        };
        let mut buf = [0u8; 5];
        assert_eq!(repr.emit(&mut buf), Ok(5));
        assert_eq!(buf, [0, 7, 0, 1, 1]);
        assert_eq!(OptionsRepr::parse(&buf).unwrap(), repr);
        assert_eq!(
            OptionsRepr::parse(&[0, 7, 0, 1, 2]),
            Err(Error::OptionOutOfRange { kind: 7, value: 2 })
        );
        assert_eq!(
            OptionsRepr::parse(&[0, 7, 0, 4, 0, 0, 0, 1]),
            Err(Error::MalformedOption { kind: 7 })
        );
        let with_crc = OptionsRepr {
            integrity: Some(Integrity::Crc32c),
            connect_crc: Some(0xE306_9283),
            ..OptionsRepr::default()
        };
        let mut buf = [0u8; 9];
        assert_eq!(with_crc.emit(&mut buf), Ok(9));
        assert_eq!(buf, [0, 7, 0, 5, 1, 0xE3, 0x06, 0x92, 0x83]);
        assert_eq!(OptionsRepr::parse(&buf).unwrap(), with_crc);
    }

    #[test]
    fn known_options_are_checked() {
        assert_eq!(
            OptionsRepr::parse(&[0, 5, 0, 1, 2]),
            Err(Error::MalformedOption { kind: 5 })
        );
        assert_eq!(
            OptionsRepr::parse(&[0, 1, 0, 4, 0, 0, 0, 1]),
            Err(Error::OptionOutOfRange { kind: 1, value: 1 })
        );
        assert_eq!(
            OptionsRepr::parse(&[0, 5, 0, 1, 1, 0x80, 5, 0, 1, 1]),
            Err(Error::DuplicateOption { kind: 5 })
        );
        assert_eq!(
            OptionsRepr::parse(&[0, 5, 0, 2, 1]),
            Err(Error::TruncatedOption)
        );
        assert_eq!(OptionsRepr::parse(&[0, 5, 0]), Err(Error::TruncatedOption));
    }
}
