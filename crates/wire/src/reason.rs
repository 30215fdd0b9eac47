//! The reason-code registry shared by REJECT and ABORT (`docs/protocol.md` §8).
//!
//! A newtype rather than an enum: codes this version does not name, and the
//! application range, must survive a round trip unchanged.

use core::fmt;

/// A 16-bit reason code carried by REJECT and ABORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reason(pub u16);

impl Reason {
    /// 0x0000: no reason given (X.224 "not specified", DECnet 0).
    pub const UNSPECIFIED: Self = Self(0x0000);
    /// 0x0001: the called application refused (CF_REJECT; ISO 8327 REFUSE 2).
    pub const REJECTED: Self = Self(0x0001);
    /// 0x0002: no resources for another session: backlog or pending queue full
    /// (DECnet 1/32, X.224 "congestion at TSAP").
    pub const BUSY: Self = Self(0x0002);
    /// 0x0003: the request was deferred (CF_DEFER) or left undecided, and the
    /// decision timeout expired (Winsock WSAEACCES "timed out or withdrawn").
    pub const DECISION_TIMEOUT: Self = Self(0x0003);
    /// 0x0004: no common protocol version (ISO 8327 REFUSE 0x84).
    pub const VERSION_UNSUPPORTED: Self = Self(0x0004);
    /// 0x0005: an unknown critical option, or a mode the callee does not offer.
    pub const OPTION_UNSUPPORTED: Self = Self(0x0005);
    /// 0x0006: caller data larger than the callee accepts (DECnet 43 "image
    /// data field overflow").
    pub const DATA_TOO_LARGE: Self = Self(0x0006);
    /// 0x0007: the listener is shutting down (DECnet 3/11).
    pub const SHUTTING_DOWN: Self = Self(0x0007);
    /// 0x0008: integrity is required and the peer did not take it up: in
    /// REJECT, a callee that requires the CRC-32C trailer refuses a CONNECT
    /// that does not propose it; in ABORT, a caller that requires it ends a
    /// session whose ACCEPT did not grant it (§2.5). Nothing was damaged:
    /// that is `INTEGRITY_FAILURE`.
    pub const INTEGRITY_REQUIRED: Self = Self(0x0008);

    /// 0x0100: a frame could not be parsed (X.224 133 "protocol error").
    pub const PROTOCOL_ERROR: Self = Self(0x0100);
    /// 0x0101: a well-formed frame not legal in the receiver's state.
    pub const UNEXPECTED_FRAME: Self = Self(0x0101);
    /// 0x0102: a frame body longer than the negotiated limit for its type.
    pub const FRAME_TOO_LARGE: Self = Self(0x0102);
    /// 0x0103: a message longer than the negotiated maximum message size.
    pub const MESSAGE_TOO_LARGE: Self = Self(0x0103);
    /// 0x0104: an unknown frame type marked MUST_UNDERSTAND.
    pub const UNKNOWN_FRAME: Self = Self(0x0104);
    /// 0x0105: the caller's connect timeout expired before ACCEPT or REJECT.
    pub const CONNECT_TIMEOUT: Self = Self(0x0105);
    /// 0x0106: the callee's handshake timeout expired before CONNECT arrived.
    pub const HANDSHAKE_TIMEOUT: Self = Self(0x0106);
    /// 0x0107: nothing was received for the idle timeout (3 keepalive intervals).
    pub const IDLE_TIMEOUT: Self = Self(0x0107);
    /// 0x0108: the linger timeout after a graceful close expired.
    pub const LINGER_TIMEOUT: Self = Self(0x0108);
    /// 0x0109: the application closed with data unread, or data arrived after
    /// it closed (TCP sends RST here, RFC 9293 §3.10.4 / RFC 2525 §2.17).
    pub const UNREAD_DATA: Self = Self(0x0109);
    /// 0x010A: the application aborted without giving a reason (DECnet 9
    /// "end user aborted").
    pub const APPLICATION_ABORT: Self = Self(0x010A);
    /// 0x010B: the transport ended (FIN) before DISCONNECT, or inside a frame.
    pub const UNEXPECTED_EOF: Self = Self(0x010B);
    /// 0x010C: a frame failed its CRC-32C, or came without one while the
    /// INTEGRITY option was in force (§2.5): the bytes were altered on the
    /// way, so nothing more on this connection can be trusted.
    pub const INTEGRITY_FAILURE: Self = Self(0x010C);

    /// First code of the application-defined range.
    pub const APPLICATION_MIN: u16 = 0x8000;

    /// Whether this code is in the application-defined range 0x8000..=0xFFFF.
    pub const fn is_application(self) -> bool {
        self.0 >= Self::APPLICATION_MIN
    }

    /// An application-defined code: `n` in 0..=0x7FFF maps to 0x8000 + n.
    /// Larger `n` are folded into the range (`n & 0x7FFF`).
    pub const fn application(n: u16) -> Self {
        Self(Self::APPLICATION_MIN | (n & 0x7FFF))
    }

    /// The registry name of a code, if it has one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0000 => "UNSPECIFIED",
            0x0001 => "REJECTED",
            0x0002 => "BUSY",
            0x0003 => "DECISION_TIMEOUT",
            0x0004 => "VERSION_UNSUPPORTED",
            0x0005 => "OPTION_UNSUPPORTED",
            0x0006 => "DATA_TOO_LARGE",
            0x0007 => "SHUTTING_DOWN",
            0x0008 => "INTEGRITY_REQUIRED",
            0x0100 => "PROTOCOL_ERROR",
            0x0101 => "UNEXPECTED_FRAME",
            0x0102 => "FRAME_TOO_LARGE",
            0x0103 => "MESSAGE_TOO_LARGE",
            0x0104 => "UNKNOWN_FRAME",
            0x0105 => "CONNECT_TIMEOUT",
            0x0106 => "HANDSHAKE_TIMEOUT",
            0x0107 => "IDLE_TIMEOUT",
            0x0108 => "LINGER_TIMEOUT",
            0x0109 => "UNREAD_DATA",
            0x010A => "APPLICATION_ABORT",
            0x010B => "UNEXPECTED_EOF",
            0x010C => "INTEGRITY_FAILURE",
            _ => return None,
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None if self.is_application() => write!(f, "APPLICATION({:#06x})", self.0),
            None => write!(f, "RESERVED({:#06x})", self.0),
        }
    }
}

/// The registry name, as `Display` writes it.
#[cfg(feature = "defmt")]
impl defmt::Format for Reason {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self.name() {
            Some(name) => defmt::write!(f, "{=str}", name),
            None if self.is_application() => defmt::write!(f, "APPLICATION({=u16:#06x})", self.0),
            None => defmt::write!(f, "RESERVED({=u16:#06x})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_range() {
        assert_eq!(Reason::application(1), Reason(0x8001));
        assert!(Reason::application(0x7FFF).is_application());
        assert!(!Reason::BUSY.is_application());
        assert_eq!(Reason::application(0xFFFF), Reason(0xFFFF));
    }
}
