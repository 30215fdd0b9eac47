//! What the session tells the application (`poll_event`), and why it ended.

use bytes::Bytes;
use core::fmt;

use bookend_wire::{Error as WireError, FrameType, Reason};

use crate::config::Options;
use crate::state::State;

/// Which end did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Side {
    /// This session (its application or its own timers).
    Local,
    /// The remote session.
    Peer,
}

/// Which timer expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Timer {
    /// Caller: no ACCEPT or REJECT within the connect timeout.
    Connect,
    /// Callee: no complete CONNECT within the handshake timeout.
    Handshake,
    /// Callee: no decision within the decision timeout. The caller was sent
    /// REJECT(`DECISION_TIMEOUT`), so this ends as [`CloseReason::Rejected`].
    Decision,
    /// The close did not complete within the linger timeout.
    Linger,
    /// Nothing received for three keepalive intervals.
    Idle,
    /// The transport gave up (for example a TCP user timeout).
    Transport,
}

/// A peer that broke the protocol. The session ended with ABORT naming
/// [`Violation::reason`], and nothing else was disturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Violation {
    /// Bytes that are not a valid frame (including bodies over their limit).
    Malformed(WireError),
    /// A valid frame that is not legal in the state it arrived in.
    UnexpectedFrame {
        /// The frame's type.
        frame: FrameType,
        /// Our state when it arrived.
        state: State,
    },
    /// A message longer than the negotiated maximum.
    MessageTooLarge {
        /// The negotiated maximum message size.
        max: u32,
    },
    /// DISCONNECT arrived in the middle of a message (no END_OF_MESSAGE yet).
    UnterminatedMessage,
    /// The transport ended (FIN) before DISCONNECT, or inside a frame.
    UnexpectedEof {
        /// Our state when the FIN arrived.
        state: State,
        /// Whether part of a frame was buffered.
        mid_frame: bool,
    },
    /// ACCEPT with a version we did not offer, a grant larger than our
    /// proposal, a different mode, or callee data over our limit.
    InvalidAccept,
    /// A frame without the CRC-32C trailer while integrity was in force
    /// (`docs/protocol.md` §2.5).
    Unsealed {
        /// The frame type its header claimed.
        frame: FrameType,
    },
    /// Received bytes did not fit the session's provided buffers
    /// ([`crate::SessionBuffers`]). Not the peer's doing: the buffers are
    /// sized from the bounds flow control and the frame limits keep, so
    /// this is a sizing defect, reported (ABORT with `PROTOCOL_ERROR`)
    /// rather than a loss of the bytes.
    BuffersExhausted,
}

impl Violation {
    /// The reason code sent in the ABORT (`docs/protocol.md` §5.5).
    pub fn reason(&self) -> Reason {
        match self {
            Self::Malformed(WireError::FrameTooLarge { .. }) => Reason::FRAME_TOO_LARGE,
            Self::Malformed(WireError::UnknownCriticalFrame { .. }) => Reason::UNKNOWN_FRAME,
            Self::Malformed(WireError::UnknownCriticalOption { .. }) => Reason::OPTION_UNSUPPORTED,
            Self::Malformed(
                WireError::ChecksumMismatch { .. }
                | WireError::HeaderChecksumMismatch { .. }
                | WireError::MissingTrailer,
            )
            | Self::Unsealed { .. } => Reason::INTEGRITY_FAILURE,
            Self::Malformed(_)
            | Self::UnterminatedMessage
            | Self::InvalidAccept
            | Self::BuffersExhausted => Reason::PROTOCOL_ERROR,
            Self::UnexpectedFrame { .. } => Reason::UNEXPECTED_FRAME,
            Self::MessageTooLarge { .. } => Reason::MESSAGE_TOO_LARGE,
            Self::UnexpectedEof { .. } => Reason::UNEXPECTED_EOF,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed frame: {e}"),
            Self::UnexpectedFrame { frame, state } => write!(f, "{frame} not allowed in {state}"),
            Self::MessageTooLarge { max } => write!(f, "message over {max} bytes"),
            Self::UnterminatedMessage => write!(f, "DISCONNECT inside a message"),
            Self::UnexpectedEof { state, mid_frame } => {
                write!(
                    f,
                    "transport ended in {state}{}",
                    if *mid_frame { " mid-frame" } else { "" }
                )
            }
            Self::InvalidAccept => write!(f, "ACCEPT does not match the proposal"),
            Self::Unsealed { frame } => {
                write!(f, "{frame} without its CRC-32C while integrity is on")
            }
            Self::BuffersExhausted => write!(f, "received bytes over the provided buffers"),
        }
    }
}

/// Why a session ended. Reported once, as [`Event::Closed`], and kept in
/// [`crate::Session::close_reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both DISCONNECTs and both FINs were exchanged: FD_CLOSE with error 0.
    Graceful,
    /// Caller: the callee refused (`WSAECONNREFUSED`). The reject data came
    /// with [`Event::Refused`].
    Refused {
        /// The callee's reason.
        reason: Reason,
    },
    /// Callee: we refused the request (the application, the decision timer,
    /// or an unservable CONNECT).
    Rejected {
        /// The reason sent.
        reason: Reason,
    },
    /// Callee: the caller closed the transport before sending CONNECT.
    Abandoned,
    /// A TCP RST arrived with no ABORT before it (`WSAECONNRESET`).
    Reset,
    /// An ABORT ended the session (`WSAECONNABORTED`).
    Aborted {
        /// Who aborted.
        by: Side,
        /// The reason code.
        reason: Reason,
        /// The abort data, if any.
        data: Option<Bytes>,
    },
    /// A timer expired (`WSAETIMEDOUT`). The peer was sent ABORT where the
    /// connection still allowed it.
    TimedOut(Timer),
    /// The peer broke the protocol; we sent ABORT naming the violation.
    ProtocolError {
        /// What it did.
        detail: Violation,
    },
}

impl CloseReason {
    /// Whether the session ended because a frame failed the CRC-32C check
    /// or came unsealed while integrity was in force (`docs/protocol.md`
    /// §2.5), detected by either side.
    pub fn is_integrity_failure(&self) -> bool {
        match self {
            Self::ProtocolError { detail } => detail.reason() == Reason::INTEGRITY_FAILURE,
            Self::Aborted { reason, .. } => *reason == Reason::INTEGRITY_FAILURE,
            _ => false,
        }
    }

    /// The Winsock error FD_CLOSE (or the failed call) would carry.
    pub fn winsock_error(&self) -> &'static str {
        match self {
            Self::Graceful | Self::Rejected { .. } | Self::Abandoned => "0",
            Self::Refused { .. } => "WSAECONNREFUSED",
            Self::Reset => "WSAECONNRESET",
            Self::Aborted { .. } | Self::ProtocolError { .. } => "WSAECONNABORTED",
            Self::TimedOut(_) => "WSAETIMEDOUT",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Graceful => write!(f, "graceful"),
            Self::Refused { reason } => write!(f, "refused ({reason})"),
            Self::Rejected { reason } => write!(f, "rejected ({reason})"),
            Self::Abandoned => write!(f, "abandoned before CONNECT"),
            Self::Reset => write!(f, "reset"),
            Self::Aborted { by, reason, .. } => write!(f, "aborted by {by:?} ({reason})"),
            Self::TimedOut(t) => write!(f, "timed out ({t:?})"),
            Self::ProtocolError { detail } => write!(f, "protocol error: {detail}"),
        }
    }
}

/// As `Display` writes it, with the abort data's bytes.
#[cfg(feature = "defmt")]
impl defmt::Format for CloseReason {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Graceful => defmt::write!(f, "graceful"),
            Self::Refused { reason } => defmt::write!(f, "refused ({})", reason),
            Self::Rejected { reason } => defmt::write!(f, "rejected ({})", reason),
            Self::Abandoned => defmt::write!(f, "abandoned before CONNECT"),
            Self::Reset => defmt::write!(f, "reset"),
            Self::Aborted { by, reason, data } => {
                defmt::write!(
                    f,
                    "aborted by {} ({}, data {})",
                    by,
                    reason,
                    data.as_deref()
                )
            }
            Self::TimedOut(t) => defmt::write!(f, "timed out ({})", t),
            Self::ProtocolError { detail } => defmt::write!(f, "protocol error: {}", detail),
        }
    }
}

/// A connect request as the condition function sees it (callee side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The caller data (`lpCallerData`); `None` when CONNECT carried none.
    pub caller_data: Option<Bytes>,
    /// The options the caller proposed, absent ones resolved to the defaults
    /// (the SQOS analog).
    pub proposed: Options,
    /// What this callee would grant by default: its limits applied to the
    /// proposal. Pass it to `accept` unchanged unless the application wants less.
    pub grant: Options,
}

/// What happened, for the application. Mirrors Winsock's network events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Callee: a complete CONNECT arrived: decide with `accept`, `reject` or
    /// `defer` (FD_ACCEPT, then the condition function).
    ConnectRequest(ConnectRequest),
    /// Caller: the callee accepted (FD_CONNECT with error 0).
    Connected {
        /// The callee data (`lpCalleeData`); `None` when ACCEPT carried none.
        callee_data: Option<Bytes>,
        /// The granted options, binding both directions.
        granted: Options,
    },
    /// Caller: the callee refused (FD_CONNECT with `WSAECONNREFUSED`), with
    /// its reason and reject data.
    Refused {
        /// The callee's reason.
        reason: Reason,
        /// The reject data; `None` when REJECT carried none.
        data: Option<Bytes>,
    },
    /// New data can be read (FD_READ). Posted again only after a `recv`.
    Readable,
    /// Sending may resume (FD_WRITE): after connecting, and after a send that
    /// did not take everything.
    Writable,
    /// The peer's DISCONNECT arrived (FD_CLOSE): all data before it, and its
    /// disconnect data, are readable. The send half stays open.
    PeerDisconnected,
    /// The session ended. Always the last event, exactly once.
    Closed(CloseReason),
}

/// The caller data's bytes and both option sets.
#[cfg(feature = "defmt")]
impl defmt::Format for ConnectRequest {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "ConnectRequest {{ caller_data: {}, proposed: {}, grant: {} }}",
            self.caller_data.as_deref(),
            self.proposed,
            self.grant
        );
    }
}

/// Each event with its data's bytes.
#[cfg(feature = "defmt")]
impl defmt::Format for Event {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::ConnectRequest(r) => defmt::write!(f, "{}", r),
            Self::Connected {
                callee_data,
                granted,
            } => defmt::write!(
                f,
                "Connected {{ callee_data: {}, granted: {} }}",
                callee_data.as_deref(),
                granted
            ),
            Self::Refused { reason, data } => {
                defmt::write!(
                    f,
                    "Refused {{ reason: {}, data: {} }}",
                    reason,
                    data.as_deref()
                )
            }
            Self::Readable => defmt::write!(f, "Readable"),
            Self::Writable => defmt::write!(f, "Writable"),
            Self::PeerDisconnected => defmt::write!(f, "PeerDisconnected"),
            Self::Closed(r) => defmt::write!(f, "Closed({})", r),
        }
    }
}
