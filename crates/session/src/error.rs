//! Errors of application commands.

use core::fmt;

use crate::state::State;

/// Which user data an [`Error::TooLarge`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DataKind {
    /// WSAConnect's caller data.
    CallerData,
    /// The condition function's callee data (CF_ACCEPT).
    CalleeData,
    /// Reject data (CF_REJECT).
    RejectData,
    /// WSASendDisconnect's disconnect data.
    DisconnectData,
    /// Abort data.
    AbortData,
    /// A message (message mode).
    Message,
}

impl DataKind {
    /// Whether the data goes with the connection's set-up, where Winsock
    /// reports a buffer over the provider's limit as `WSAEFAULT`.
    pub const fn is_connect_time(self) -> bool {
        matches!(self, Self::CallerData | Self::CalleeData | Self::RejectData)
    }
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CallerData => "caller data",
            Self::CalleeData => "callee data",
            Self::RejectData => "reject data",
            Self::DisconnectData => "disconnect data",
            Self::AbortData => "abort data",
            Self::Message => "message",
        })
    }
}

/// Why a command was refused. A refused command changes nothing: nothing is
/// queued and the state stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// the limit in force. Nothing was sent. The Winsock name depends on the
    /// call: `WSAEFAULT` for connect-time data (WSAConnect's and the
    /// condition function's buffers), `WSAEMSGSIZE` for the rest.
    TooLarge {
        /// The limit.
        max: u32,
        /// Which data was too large.
        what: DataKind,
    },
    /// `connect` while a connect is in progress (`WSAEALREADY`).
    AlreadyConnecting,
    /// `connect` on a connected session (`WSAEISCONN`).
    AlreadyConnected,
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
            Self::TooLarge { what, .. } if what.is_connect_time() => "WSAEFAULT",
            Self::TooLarge { .. } | Self::MessageTruncated { .. } => "WSAEMSGSIZE",
            Self::AlreadyConnecting => "WSAEALREADY",
            Self::AlreadyConnected => "WSAEISCONN",
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
            Self::TooLarge { max, what } => write!(f, "{what} over the {max}-byte limit"),
            Self::AlreadyConnecting => write!(f, "a connect is already in progress"),
            Self::AlreadyConnected => write!(f, "already connected"),
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
