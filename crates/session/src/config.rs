//! Session configuration and negotiated options (`docs/protocol.md` §4, §6, §7).

use core::fmt;
use core::time::Duration;

use bookend_wire::{
    DEFAULT_FRAME_SIZE, DEFAULT_MESSAGE_SIZE, DEFAULT_USER_DATA, Integrity, LimitError, Limits,
    MAX_FRAME_SIZE, MAX_KEEPALIVE_MS, MAX_MESSAGE_SIZE, MAX_USER_DATA, MIN_FRAME_SIZE,
    MIN_MESSAGE_SIZE, MIN_USER_DATA, Mode, OptionsRepr,
};

/// Whether [`Options::DEFAULT`] asks for the CRC-32C check (`docs/protocol.md`
/// §2.5): on. TCP's 16-bit checksum misses corruptions that cancel, and
/// SCTP made CRC-32c mandatory for that reason (RFC 3309). As a caller's
/// options the default proposes it (preferred, not required:
/// [`Config::require_integrity`]); as a callee's it grants it to callers
/// that propose it, and serves those that do not, unsealed. A peer that
/// does not know the option ignores it (it is never sent `CRITICAL`), so
/// the default costs no interoperability. What it costs in bulk throughput
/// is measured in `benches/README.md`.
pub const DEFAULT_INTEGRITY: Integrity = Integrity::Crc32c;

/// The options of one session, every value concrete.
///
/// As a caller's [`Config::options`] they are the proposal sent in CONNECT; as
/// a callee's they are its own limits, which cap what it grants. After
/// ACCEPT, the granted values bind both directions (`docs/protocol.md` §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Options {
    /// Largest DATA payload per frame.
    pub max_frame_size: u32,
    /// Largest message (message mode).
    pub max_message_size: u32,
    /// Largest caller, callee or reject data.
    pub max_connect_data: u32,
    /// Largest disconnect or abort data.
    pub max_disconnect_data: u32,
    /// Stream or message semantics.
    pub mode: Mode,
    /// Keepalive interval in milliseconds; 0 turns keepalive and the idle
    /// timeout off.
    pub keepalive_ms: u32,
    /// The per-frame check (`docs/protocol.md` §2.5). A caller proposes it;
    /// a callee grants CRC-32C only when both sides ask for it. With it,
    /// altered bytes end the session with `INTEGRITY_FAILURE` instead of
    /// being delivered; without it only TCP's 16-bit checksum stands guard.
    pub integrity: Integrity,
}

impl Default for Options {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// An option value outside the range the protocol allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OptionsError(pub LimitError);

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl core::error::Error for OptionsError {}

fn within(what: &'static str, value: u32, min: u32, max: u32) -> Result<(), OptionsError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(OptionsError(LimitError {
            what,
            value,
            min,
            max,
        }))
    }
}

impl Options {
    /// The protocol defaults (`docs/protocol.md` §4.1), stream mode.
    pub const DEFAULT: Self = Self {
        max_frame_size: DEFAULT_FRAME_SIZE,
        max_message_size: DEFAULT_MESSAGE_SIZE,
        max_connect_data: DEFAULT_USER_DATA,
        max_disconnect_data: DEFAULT_USER_DATA,
        mode: Mode::Stream,
        keepalive_ms: 30_000,
        integrity: DEFAULT_INTEGRITY,
    };

    /// Small sizes for firmware and other memory-bound peers: 1 KiB frames,
    /// 2 KiB messages, 256 bytes of connect and disconnect data each; the
    /// rest as [`Options::DEFAULT`]. These bound what a peer can make a
    /// session hold (a message being assembled, user data), and a peer's
    /// larger proposal is granted down to them (§4.1).
    pub const SMALL: Self = Self {
        max_frame_size: 1024,
        max_message_size: 2048,
        max_connect_data: 256,
        max_disconnect_data: 256,
        ..Self::DEFAULT
    };

    /// Checks every value against the protocol's ranges.
    ///
    /// This function returns `Err` naming the first value out of range.
    pub fn validate(&self) -> Result<(), OptionsError> {
        within(
            "max_frame_size",
            self.max_frame_size,
            MIN_FRAME_SIZE,
            MAX_FRAME_SIZE,
        )?;
        within(
            "max_message_size",
            self.max_message_size,
            MIN_MESSAGE_SIZE,
            MAX_MESSAGE_SIZE,
        )?;
        within(
            "max_connect_data",
            self.max_connect_data,
            MIN_USER_DATA,
            MAX_USER_DATA,
        )?;
        within(
            "max_disconnect_data",
            self.max_disconnect_data,
            MIN_USER_DATA,
            MAX_USER_DATA,
        )?;
        within("keepalive_ms", self.keepalive_ms, 0, MAX_KEEPALIVE_MS)
    }

    /// Resolves a received options block: absent options take the defaults of
    /// `docs/protocol.md` §4.1.
    pub fn from_proposal(repr: &OptionsRepr) -> Self {
        let d = Self::DEFAULT;
        Self {
            max_frame_size: repr.max_frame_size.unwrap_or(d.max_frame_size),
            max_message_size: repr.max_message_size.unwrap_or(d.max_message_size),
            max_connect_data: repr.max_connect_data.unwrap_or(d.max_connect_data),
            max_disconnect_data: repr.max_disconnect_data.unwrap_or(d.max_disconnect_data),
            mode: repr.mode.unwrap_or(d.mode),
            keepalive_ms: repr.keepalive_ms.unwrap_or(d.keepalive_ms),
            // Absent: not proposed (a peer that does not know the option).
            integrity: repr.integrity.unwrap_or(Integrity::None),
        }
    }

    /// Resolves an ACCEPT's options against what we proposed: absent options
    /// mean "as proposed" (§4.2).
    pub fn from_grant(repr: &OptionsRepr, proposed: &Self) -> Self {
        Self {
            max_frame_size: repr.max_frame_size.unwrap_or(proposed.max_frame_size),
            max_message_size: repr.max_message_size.unwrap_or(proposed.max_message_size),
            max_connect_data: repr.max_connect_data.unwrap_or(proposed.max_connect_data),
            max_disconnect_data: repr
                .max_disconnect_data
                .unwrap_or(proposed.max_disconnect_data),
            mode: repr.mode.unwrap_or(proposed.mode),
            keepalive_ms: repr.keepalive_ms.unwrap_or(proposed.keepalive_ms),
            // Absent in ACCEPT is none, whatever was proposed (§4.2): a callee
            // that ignored the option must not be sent sealed frames it
            // would misread.
            integrity: repr.integrity.unwrap_or(Integrity::None),
        }
    }

    /// Every option explicit, as bookend sends them.
    pub fn to_repr(&self) -> OptionsRepr {
        OptionsRepr {
            max_frame_size: Some(self.max_frame_size),
            max_message_size: Some(self.max_message_size),
            max_connect_data: Some(self.max_connect_data),
            max_disconnect_data: Some(self.max_disconnect_data),
            mode: Some(self.mode),
            keepalive_ms: Some(self.keepalive_ms),
            // Sent only when asked for, so a session without it looks on the
            // wire exactly as before the option existed.
            integrity: (self.integrity != Integrity::None).then_some(self.integrity),
            connect_crc: None,
        }
    }

    /// What a callee with limits `self` grants for `proposed`: each size the
    /// smaller of the two, the proposed mode, and the smaller non-zero
    /// keepalive (§4.2).
    pub fn grant_for(&self, proposed: &Self) -> Self {
        let keepalive_ms = match (proposed.keepalive_ms, self.keepalive_ms) {
            (0, k) | (k, 0) => k,
            (a, b) => a.min(b),
        };
        Self {
            max_frame_size: self.max_frame_size.min(proposed.max_frame_size),
            max_message_size: self.max_message_size.min(proposed.max_message_size),
            max_connect_data: self.max_connect_data.min(proposed.max_connect_data),
            max_disconnect_data: self.max_disconnect_data.min(proposed.max_disconnect_data),
            mode: proposed.mode,
            keepalive_ms,
            integrity: if self.integrity == Integrity::Crc32c
                && proposed.integrity == Integrity::Crc32c
            {
                Integrity::Crc32c
            } else {
                Integrity::None
            },
        }
    }

    /// Whether `self`, as a grant, respects `proposed`: sizes no larger, same mode.
    pub fn is_valid_grant_for(&self, proposed: &Self) -> bool {
        self.validate().is_ok()
            && self.max_frame_size <= proposed.max_frame_size
            && self.max_message_size <= proposed.max_message_size
            && self.max_connect_data <= proposed.max_connect_data
            && self.max_disconnect_data <= proposed.max_disconnect_data
            && self.mode == proposed.mode
            && (self.integrity == Integrity::None || self.integrity == proposed.integrity)
    }

    /// The decoder limits these options imply.
    pub(crate) fn limits(&self) -> Limits {
        // Options are validated on every path that builds them, so the ranges hold.
        Limits::new(
            self.max_frame_size,
            self.max_connect_data,
            self.max_disconnect_data,
        )
        .unwrap_or(Limits::DEFAULT)
    }
}

/// Which transfer modes a callee serves (§4.2: the mode is never negotiated
/// down; a caller proposing another is refused with `OPTION_UNSUPPORTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ModeOffer {
    /// Only the mode of [`Config::options`]: the application is written for it.
    #[default]
    Configured,
    /// Stream and message mode: the caller chooses, and the application reads
    /// `ConnectRequest::grant.mode` to know which calls to use.
    Both,
}

/// Everything one session needs to know before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Caller: the proposal. Callee: its own limits, capping the grant.
    pub options: Options,
    /// Caller: from CONNECT until ACCEPT or REJECT (default 360 s, when
    /// bookend-smoltcp gives a connection up by default: its 300 s user
    /// timeout plus smoltcp's largest retransmission interval. A timer that
    /// waits for the peer's answer gives up no sooner than TCP would. The callee's TCP may still be
    /// retransmitting that answer: smoltcp's retransmission timeout doubles
    /// from 1 s to 60 s, so a segment lost seven times leaves for the eighth
    /// time 123 s after the first. Measured with `bookend soak` at 20 % loss
    /// per link: 15 s lost 1.2 % of the callers to this timer, 120 s 0.25 %,
    /// 300 s none; `docs/protocol.md` §7). Paused while CONNECT is
    /// unacknowledged.
    pub connect_timeout: Duration,
    /// Callee: from transport establishment until CONNECT is complete
    /// (default 360 s, for the same reason as `connect_timeout`: the
    /// caller's TCP may still be retransmitting CONNECT, up to 60 s apart,
    /// after an outage shorter than the user timeout. The endpoint's admission control, which also
    /// shortens this timer to 2 s under load, is the defence against floods
    /// of silent connections, not this timer).
    pub handshake_timeout: Duration,
    /// Callee: from CONNECT until accept or reject, CF_DEFER included (default 10 s).
    pub decision_timeout: Duration,
    /// Both: after `close()`, and in the closing states, until the peer's FIN (default 10 s).
    /// Paused while the driver reports anything unacknowledged
    /// ([`Session::handle_transport_pending`](crate::Session::handle_transport_pending)):
    /// it measures the wait for the peer, not TCP's retransmissions.
    pub linger_timeout: Duration,
    /// Both: after ABORT is queued, how long to wait for it to reach the
    /// transport before the reset is issued anyway (default 1 s).
    pub abort_flush_timeout: Duration,
    /// Largest number of received DATA bytes held for the application. When it
    /// is reached, `handle_bytes` stops consuming and TCP's window closes.
    /// Must be at least `options.max_message_size` and at most
    /// [`MAX_RECV_BUFFER`]. Queued messages count
    /// [`crate::MESSAGE_OVERHEAD`] bytes each besides their length, so that
    /// memory is bounded whatever the frame sizes. Default 256 KiB.
    pub recv_buffer: usize,
    /// Largest number of DATA bytes queued for the transport. Default 256 KiB.
    pub send_buffer: usize,
    /// Callee: the modes it serves. Default: only `options.mode`.
    pub offered_modes: ModeOffer,
    /// Whether the CRC-32C trailer (§2.5) is required rather than preferred.
    /// Preferred (`false`, the default): a caller proposing it is served
    /// unsealed by a callee that does not grant it, and a callee willing to
    /// grant it serves a caller that does not propose it, unsealed; both
    /// sides know from the ACCEPT. Required: a caller ends a session whose
    /// ACCEPT does not grant it with ABORT(`INTEGRITY_REQUIRED`), and a
    /// callee refuses a CONNECT that does not propose it with
    /// REJECT(`INTEGRITY_REQUIRED`) before its application sees it.
    /// Requires `options.integrity` to be CRC-32C.
    pub require_integrity: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            options: Options::DEFAULT,
            connect_timeout: Duration::from_secs(360),
            handshake_timeout: Duration::from_secs(360),
            decision_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(10),
            abort_flush_timeout: Duration::from_secs(1),
            recv_buffer: 256 * 1024,
            send_buffer: 256 * 1024,
            offered_modes: ModeOffer::Configured,
            require_integrity: false,
        }
    }
}

impl Config {
    /// Sized for firmware: [`Options::SMALL`], [`SMALL_SESSION_BUFFER`]
    /// each way, a 10 s handshake (a caller that connects and says nothing
    /// holds a socket of a small pool no longer) and a 30 s connect timer
    /// (beyond the callee's 10 s decision timer); the other timers as
    /// [`Config::default`]. What a peer can make such a session hold on
    /// the heap is a few KiB whatever it sends.
    pub fn small() -> Self {
        Self {
            options: Options::SMALL,
            recv_buffer: SMALL_SESSION_BUFFER,
            send_buffer: SMALL_SESSION_BUFFER,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            ..Self::default()
        }
    }
}

/// The session buffers of [`Config::small`]: 4 KiB each way, two of its
/// largest messages.
pub const SMALL_SESSION_BUFFER: usize = 4 * 1024;

/// A configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// An option outside its protocol range.
    Option(OptionsError),
    /// `recv_buffer` below `max_message_size`: a whole message could never be held.
    RecvBufferTooSmall {
        /// The smallest acceptable value.
        min: usize,
    },
    /// `send_buffer` of zero: nothing could ever be sent.
    SendBufferTooSmall,
    /// `require_integrity` without `options.integrity`: a requirement the
    /// session would never propose.
    IntegrityRequiredButOff,
    /// `recv_buffer` over [`MAX_RECV_BUFFER`].
    RecvBufferTooLarge {
        /// The largest acceptable value.
        max: usize,
    },
}

/// The largest `Config::recv_buffer`: 1 GiB. A session counts what it holds
/// for the application in 32-bit counters (issue 10: idle memory), and what
/// it holds is the receive buffer plus at most one message or frame.
pub const MAX_RECV_BUFFER: usize = 1 << 30;

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Option(e) => write!(f, "invalid option: {e}"),
            Self::RecvBufferTooSmall { min } => write!(f, "recv_buffer must be at least {min}"),
            Self::SendBufferTooSmall => write!(f, "send_buffer must be non-zero"),
            Self::IntegrityRequiredButOff => {
                write!(f, "require_integrity needs options.integrity = Crc32c")
            }
            Self::RecvBufferTooLarge { max } => write!(f, "recv_buffer must be at most {max}"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl Config {
    /// Whether a callee with this configuration serves `mode`.
    pub fn offers(&self, mode: Mode) -> bool {
        match self.offered_modes {
            ModeOffer::Configured => mode == self.options.mode,
            ModeOffer::Both => true,
        }
    }

    /// Checks the configuration.
    ///
    /// This function returns `Err` for options out of range, a receive
    /// buffer smaller than one message or over [`MAX_RECV_BUFFER`], an
    /// empty send buffer, or integrity required but not proposed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.options.validate().map_err(ConfigError::Option)?;
        let min = self.options.max_message_size as usize;
        if self.recv_buffer < min {
            return Err(ConfigError::RecvBufferTooSmall { min });
        }
        if self.send_buffer == 0 {
            return Err(ConfigError::SendBufferTooSmall);
        }
        if self.recv_buffer > MAX_RECV_BUFFER {
            return Err(ConfigError::RecvBufferTooLarge {
                max: MAX_RECV_BUFFER,
            });
        }
        if self.require_integrity && self.options.integrity != Integrity::Crc32c {
            return Err(ConfigError::IntegrityRequiredButOff);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The session's receive counters are 32-bit: a receive buffer over
    /// `MAX_RECV_BUFFER` is refused with its bound, one at it is fine.
    #[test]
    fn recv_buffer_is_bounded() {
        let mut c = Config {
            recv_buffer: MAX_RECV_BUFFER,
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
        c.recv_buffer = MAX_RECV_BUFFER + 1;
        assert_eq!(
            c.validate(),
            Err(ConfigError::RecvBufferTooLarge {
                max: MAX_RECV_BUFFER
            })
        );
    }
}
