//! Errors of application commands.

use core::fmt;

use crate::state::State;

/// Why a command was refused. A refused command changes nothing: nothing is
/// queued and the state stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The command is not legal in this state (`WSAEINVAL`).
    InvalidState {
        /// The state it was tried in.
        state: State,
    },
    /// The session is not connected yet, or was refused (`WSAENOTCONN`).
    NotConnected,
    /// Sending after `send_disconnect` (`WSAESHUTDOWN`), or a second
    /// `send_disconnect` with data (winsock-semantics E10).
    Shutdown,
    /// `recv_disconnect` before the peer's DISCONNECT arrived.
    NotYet,
    /// `recv_disconnect` after the disconnect data was already returned.
    Consumed,
    /// Caller, callee, reject, disconnect or abort data, or a message, over
    /// the limit in force (`WSAEFAULT` for connect data, `WSAEMSGSIZE` for
    /// the rest). Nothing was sent.
    TooLarge {
        /// The limit.
        max: u32,
    },
    /// The caller's buffer cannot hold the disconnect data (`WSAEFAULT`). The
    /// data stays retrievable.
    BufferTooSmall {
        /// The bytes needed.
        needed: usize,
    },
    /// The next message is longer than the caller's buffer (`WSAEMSGSIZE`).
    /// It stays queued; read it with a larger buffer or `recv_message_bytes`.
    MessageTruncated {
        /// The message length.
        len: usize,
    },
    /// Nothing to read, or no room to send, now (`WSAEWOULDBLOCK`).
    WouldBlock,
    /// Message mode: the peer disconnected gracefully and every message has
    /// been read (`WSAEDISCON`).
    Disconnected,
    /// A stream call on a message-mode session or the reverse.
    WrongMode,
    /// `accept` with granted options larger than proposed, of another mode,
    /// or with a message size this session cannot buffer.
    InvalidGrant,
    /// The connection was reset (`WSAECONNRESET`); unread data was discarded.
    ConnectionReset,
    /// The connection was aborted, timed out, or broken by a protocol error
    /// (`WSAECONNABORTED`).
    ConnectionAborted,
}

impl Error {
    /// The Winsock error this corresponds to.
    pub fn winsock(&self) -> &'static str {
        match self {
            Self::InvalidState { .. } | Self::WrongMode | Self::InvalidGrant => "WSAEINVAL",
            Self::NotConnected | Self::NotYet | Self::Consumed => "WSAENOTCONN",
            Self::Shutdown => "WSAESHUTDOWN",
            Self::TooLarge { .. } | Self::MessageTruncated { .. } => "WSAEMSGSIZE",
            Self::BufferTooSmall { .. } => "WSAEFAULT",
            Self::WouldBlock => "WSAEWOULDBLOCK",
            Self::Disconnected => "WSAEDISCON",
            Self::ConnectionReset => "WSAECONNRESET",
            Self::ConnectionAborted => "WSAECONNABORTED",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidState { state } => write!(f, "not allowed in {state}"),
            Self::NotConnected => write!(f, "not connected"),
            Self::Shutdown => write!(f, "sending half already shut down"),
            Self::NotYet => write!(f, "the peer has not disconnected yet"),
            Self::Consumed => write!(f, "disconnect data already read"),
            Self::TooLarge { max } => write!(f, "data over the {max}-byte limit"),
            Self::BufferTooSmall { needed } => write!(f, "buffer too small, {needed} bytes needed"),
            Self::MessageTruncated { len } => write!(f, "message of {len} bytes does not fit"),
            Self::WouldBlock => write!(f, "would block"),
            Self::Disconnected => write!(f, "peer disconnected gracefully"),
            Self::WrongMode => write!(f, "call not valid in this session's mode"),
            Self::InvalidGrant => write!(f, "granted options exceed the proposal"),
            Self::ConnectionReset => write!(f, "connection reset"),
            Self::ConnectionAborted => write!(f, "connection aborted"),
        }
    }
}

impl core::error::Error for Error {}
