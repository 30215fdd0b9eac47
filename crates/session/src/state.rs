//! The session state machine, declared as data (`docs/protocol.md` §5).
//!
//! [`TRANSITIONS`] is the whole behaviour of a session. Each row names a
//! state (or several), an input, the next state and **every effect** of the
//! transition, in the style of the ISO 8073 / X.225 state tables: what is
//! discarded, the frame sent, FIN or RST, the timers cleared and armed, and the
//! events posted, and the integrity rule (which frames are sealed, §2.5).
//! The session classifies what happened into an [`Input`] (predicates such
//! as "with unread data" are separate inputs, so every cell is
//! deterministic), looks up the row and executes its effects; no other code
//! changes the state, sends a control frame, issues FIN/RST, arms or clears
//! a timer, or decides sealing.
//!
//! What the rows do not hold, stated so that the claim stays exact: the
//! data path (DATA payloads, FD_READ/FD_WRITE: rows only say where DATA is
//! legal); the classification itself (the order of header checks, §2.4,
//! and which check a frame fails); what a received frame carries, kept for
//! the application before its row runs (the options in force after a grant,
//! user data, reasons, the peer's disconnect data); and the liveness rules
//! of §7 that restart or pause a running timer without arming or clearing
//! it (bytes or acknowledgements from the peer restart idle and connect;
//! unacknowledged bytes pause the timers that wait for the peer).
//!
//! A `const` builder turns the rows into an O(1) lookup matrix and fails the
//! build if two rows claim one cell. An input with no row is illegal: a
//! received frame or FIN there becomes a [`Input::Violation`] (ABORT
//! `UNEXPECTED_FRAME` / `UNEXPECTED_EOF`), an application command fails with
//! an error and changes nothing. [`table_text`] (snapshot-tested) and
//! [`mermaid`] print the table; `docs/session-states.md` is generated from them.

use core::fmt;

use bookend_wire::Reason;

use crate::event::Timer;

/// The state of one session. Both roles share the set; each doc says which
/// Winsock situation the state corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum State {
    /// Caller: the socket exists, `WSAConnect` has not been called.
    Idle,
    /// Caller: `WSAConnect` is in progress: CONNECT sent, FD_CONNECT not yet posted.
    ConnectSent,
    /// Callee: TCP is established but CONNECT is not complete. The request is
    /// still in the listener's backlog, invisible to `WSAAccept`.
    AwaitConnect,
    /// Callee: the request is at the head of the backlog and the condition
    /// function is looking at it (caller ID, caller data, options).
    ConnectReceived,
    /// Callee: the condition function returned `CF_DEFER` (`WSATRY_AGAIN`).
    Deferred,
    /// Both: connected. Caller after FD_CONNECT, callee after `CF_ACCEPT`.
    Open,
    /// Both: after `WSASendDisconnect` (shutdown `SD_SEND`); still receiving.
    LocalDisconnected,
    /// Both: FD_CLOSE has been posted: the peer's DISCONNECT arrived; still sending.
    PeerDisconnected,
    /// Both: both DISCONNECTs exchanged and our FIN queued; waiting for the
    /// peer's FIN, which confirms it holds our disconnect data.
    Closing,
    /// Callee: `CF_REJECT` (or the decision timer): REJECT and FIN sent,
    /// waiting for the caller's FIN.
    Rejecting,
    /// Caller: REJECT received (`WSAECONNREFUSED`); FIN sent, waiting for the callee's FIN.
    Refused,
    /// Both: terminal. `closesocket` may be called; nothing more happens.
    Closed,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [Self; 12] = [
        Self::Idle,
        Self::ConnectSent,
        Self::AwaitConnect,
        Self::ConnectReceived,
        Self::Deferred,
        Self::Open,
        Self::LocalDisconnected,
        Self::PeerDisconnected,
        Self::Closing,
        Self::Rejecting,
        Self::Refused,
        Self::Closed,
    ];

    /// The name used in `docs/protocol.md`.
    pub const fn spec_name(self) -> &'static str {
        match self {
            Self::Idle => "IDLE",
            Self::ConnectSent => "CONNECT_SENT",
            Self::AwaitConnect => "AWAIT_CONNECT",
            Self::ConnectReceived => "CONNECT_RECEIVED",
            Self::Deferred => "DEFERRED",
            Self::Open => "OPEN",
            Self::LocalDisconnected => "LOCAL_DISCONNECTED",
            Self::PeerDisconnected => "PEER_DISCONNECTED",
            Self::Closing => "CLOSING",
            Self::Rejecting => "REJECTING",
            Self::Refused => "REFUSED",
            Self::Closed => "CLOSED",
        }
    }

    /// Whether received DATA can be waiting for the application in this
    /// state: the states reachable from those where DATA is received, until
    /// `Closed` (checked against the table by its tests).
    pub const fn may_hold_data(self) -> bool {
        matches!(
            self,
            Self::Open | Self::LocalDisconnected | Self::PeerDisconnected | Self::Closing
        )
    }

    /// Whether received bytes are still parsed as frames in this state. In
    /// `Rejecting`, `Refused` and `Closed` everything until the FIN is ignored,
    /// and entering them drops any partly received frame.
    pub const fn parses_frames(self) -> bool {
        !matches!(self, Self::Rejecting | Self::Refused | Self::Closed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec_name())
    }
}

/// The specification's name, as `Display` writes it.
#[cfg(feature = "defmt")]
impl defmt::Format for State {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.spec_name());
    }
}

/// Everything that can move the machine: application commands, received
/// frames, transport events and timers. Where one event leads to different
/// behaviour depending on a condition (ISO's predicates), the condition is
/// part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Input {
    /// `connect(caller_data, options)`: WSAConnect.
    AppConnect,
    /// `accept(callee_data, granted)`: CF_ACCEPT.
    AppAccept,
    /// `reject(reason, data)`: CF_REJECT.
    AppReject,
    /// `defer()`: CF_DEFER.
    AppDefer,
    /// `send` / `send_message`.
    AppSend,
    /// `send_disconnect(data)`: WSASendDisconnect.
    AppSendDisconnect,
    /// `close()` with nothing unread: graceful closesocket.
    AppClose,
    /// `close()` with received data unread: TCP would reset (RFC 9293 §3.10.4).
    AppCloseUnread,
    /// `abort(reason, data)`: closesocket with linger {1, 0}.
    AppAbort,
    /// CONNECT received and acceptable (version, options, mode, size).
    RecvConnect,
    /// CONNECT received but unservable: answered with REJECT at once (§6.3).
    RecvUnacceptableConnect,
    /// ACCEPT received and valid.
    RecvAccept,
    /// ACCEPT received, valid, but not granting what this caller requires:
    /// the CRC-32C trailer (`Config::require_integrity`, §2.5).
    RecvUnacceptableAccept,
    /// REJECT received.
    RecvReject,
    /// DATA received while the application still reads.
    RecvData,
    /// DATA received after the application closed: nobody will read it.
    RecvDataAfterClose,
    /// DISCONNECT received.
    RecvDisconnect,
    /// ABORT received.
    RecvAbort,
    /// PING received.
    RecvPing,
    /// A frame of unknown type without `MUST_UNDERSTAND` (skipped where legal).
    RecvUnknown,
    /// Callee: the session is created on an established transport.
    TransportUp,
    /// TCP FIN (end of the received stream) on a frame boundary.
    RecvFin,
    /// TCP RST.
    RecvRst,
    /// A malformed frame, a frame or FIN illegal in the state, or a limit
    /// exceeded by the peer.
    Violation,
    /// The transport gave up (for example a TCP user timeout).
    TransportTimeout,
    /// The caller's connect timer.
    ConnectTimer,
    /// The callee's handshake timer.
    HandshakeTimer,
    /// The callee's decision timer.
    DecisionTimer,
    /// The linger timer.
    LingerTimer,
    /// The idle timer: nothing received for 3 keepalive intervals.
    IdleTimer,
    /// The keepalive timer: nothing sent for one keepalive interval.
    KeepaliveTimer,
    /// The keepalive timer while bytes still wait to be sent: they will do
    /// what a PING would, and PINGs must not pile up behind them.
    KeepaliveTimerBusy,
    /// The abort-flush timer: the ABORT did not reach the transport in time.
    AbortFlushTimer,
    /// The transport took our RST (so the ABORT before it had left).
    RstTaken,
}

impl Input {
    /// Every input, in declaration order.
    pub const ALL: [Self; 34] = [
        Self::AppConnect,
        Self::AppAccept,
        Self::AppReject,
        Self::AppDefer,
        Self::AppSend,
        Self::AppSendDisconnect,
        Self::AppClose,
        Self::AppCloseUnread,
        Self::AppAbort,
        Self::RecvConnect,
        Self::RecvUnacceptableConnect,
        Self::RecvAccept,
        Self::RecvUnacceptableAccept,
        Self::RecvReject,
        Self::RecvData,
        Self::RecvDataAfterClose,
        Self::RecvDisconnect,
        Self::RecvAbort,
        Self::RecvPing,
        Self::RecvUnknown,
        Self::TransportUp,
        Self::RecvFin,
        Self::RecvRst,
        Self::Violation,
        Self::TransportTimeout,
        Self::ConnectTimer,
        Self::HandshakeTimer,
        Self::DecisionTimer,
        Self::LingerTimer,
        Self::IdleTimer,
        Self::KeepaliveTimer,
        Self::KeepaliveTimerBusy,
        Self::AbortFlushTimer,
        Self::RstTaken,
    ];
}

/// The session's timers, each armed and cleared only by rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TimerId {
    /// Caller: CONNECT sent, until ACCEPT or REJECT.
    Connect,
    /// Callee: transport up, until CONNECT is complete.
    Handshake,
    /// Callee: CONNECT received, until accept or reject.
    Decision,
    /// Closing: until the peer's FIN.
    Linger,
    /// ABORT queued: until it reached the transport.
    AbortFlush,
    /// Connected: 3 keepalive intervals after the transport last delivered bytes.
    Idle,
    /// Connected: one keepalive interval after we last sent.
    Keepalive,
}

impl TimerId {
    /// Whether the timer waits for the peer's answer (connect, linger,
    /// idle), and so is paused (keeping the time it had left) while the
    /// transport still holds anything the peer has not acknowledged: the
    /// driver bounds that time by TCP's user timeout (§7).
    /// Handshake and decision wait for nothing we sent; abort-flush and
    /// keepalive are about our own sending.
    pub const fn waits_for_peer(self) -> bool {
        matches!(self, Self::Connect | Self::Linger | Self::Idle)
    }

    /// Which of the session's three timer slots holds it: the phase timers
    /// share one (never two of them are armed together; checked over the
    /// table by `tests::timers_sharing_a_slot_are_never_armed_together`),
    /// idle and keepalive, which run together, have one each.
    pub(crate) const fn slot(self) -> usize {
        match self {
            Self::Connect | Self::Handshake | Self::Decision | Self::Linger | Self::AbortFlush => 0,
            Self::Idle => 1,
            Self::Keepalive => 2,
        }
    }

    /// Every timer, in declaration order.
    pub const ALL: [Self; 7] = [
        Self::Connect,
        Self::Handshake,
        Self::Decision,
        Self::Linger,
        Self::AbortFlush,
        Self::Idle,
        Self::Keepalive,
    ];

    /// The input its expiry feeds to the machine.
    pub const fn input(self) -> Input {
        match self {
            Self::Connect => Input::ConnectTimer,
            Self::Handshake => Input::HandshakeTimer,
            Self::Decision => Input::DecisionTimer,
            Self::Linger => Input::LingerTimer,
            Self::AbortFlush => Input::AbortFlushTimer,
            Self::Idle => Input::IdleTimer,
            Self::Keepalive => Input::KeepaliveTimer,
        }
    }

    pub(super) const fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Handshake => "handshake",
            Self::Decision => "decision",
            Self::Linger => "linger",
            Self::AbortFlush => "abort-flush",
            Self::Idle => "idle",
            Self::Keepalive => "keepalive",
        }
    }
}

/// A set of timers, as a row names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timers(u8);

impl Timers {
    /// No timer.
    pub const NONE: Self = Self(0);
    /// Every timer but the abort flush, which outlives the end of a session.
    pub const ALL_BUT_FLUSH: Self = Self(0x7F & !(1 << TimerId::AbortFlush as u8));
    /// Idle and keepalive: the liveness pair of the connected states.
    pub const LIVENESS: Self = Self((1 << TimerId::Idle as u8) | (1 << TimerId::Keepalive as u8));

    /// The set holding only `t`.
    pub const fn of(t: TimerId) -> Self {
        Self(1 << t as u8)
    }

    /// `self` with `t` added.
    pub const fn and(self, t: TimerId) -> Self {
        Self(self.0 | (1 << t as u8))
    }

    /// Whether `t` is in the set.
    pub const fn contains(self, t: TimerId) -> bool {
        self.0 & (1 << t as u8) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What is thrown away before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Discard {
    /// Nothing.
    Nothing,
    /// Frames and DATA queued but not yet handed to the transport (§3.6: an
    /// ABORT goes next, not after the queue), but for the rest of a frame
    /// partly handed out: a torn frame would make the peer read the ABORT
    /// as its body.
    Unsent,
    /// Every byte not yet handed to the transport, the rest of a frame
    /// partly handed out included: the RST goes now (§7, abort flush), so
    /// nothing after it is read.
    All,
    /// `All`, and received data the application has not read: a reset
    /// with no ABORT before it (§5.4).
    AllAndUnread,
    /// Unsent bytes and received data the application has not read.
    Both,
    /// The transport is gone: unsent bytes, and no FIN or RST will ever go.
    TransportGone,
    /// Like `TransportGone`, and unread received data too (a RST: E12).
    TransportGoneAndUnread,
}

/// The control frame a row sends. A fixed reason is part of the row; `None`
/// takes the reason (and data) the command or the detected violation gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Control {
    /// CONNECT with the caller data and proposal.
    Connect,
    /// ACCEPT with the callee data and grant.
    Accept,
    /// REJECT with a reason.
    Reject(Option<Reason>),
    /// DISCONNECT with the disconnect data (none from `close`).
    Disconnect,
    /// ABORT with a reason; then the row's RST.
    Abort(Option<Reason>),
    /// PING.
    Ping,
}

/// What a row does to the integrity check (`docs/protocol.md` §2.5): from
/// which frame on the session seals what it sends. Integrity's rules are
/// this column: the proposal and the grant a row reads are the row's
/// arguments, and the rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Seal {
    /// Unchanged.
    Keep,
    /// Caller, after its CONNECT (which is never sealed): seal what follows
    /// (an ABORT before ACCEPT) iff it proposed integrity.
    AfterConnect,
    /// Callee, before its answer to a CONNECT: seal iff the CONNECT proposed
    /// integrity (read wherever the option sits; unknown when refused from
    /// the header alone) and the callee is willing to grant it.
    ByProposal,
    /// Both, before the ACCEPT sent or after the ACCEPT received: seal iff
    /// integrity was granted; from here on integrity is in force exactly
    /// then.
    ByGrant,
}

/// FIN or RST, issued after every byte queued before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Transport {
    /// Close our sending half.
    Fin,
    /// Reset the connection.
    Rst,
}

/// How a session ended, as a row states it (the details come with the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum End {
    /// Both DISCONNECTs and FINs exchanged.
    Graceful,
    /// Caller: the callee's REJECT.
    Refused,
    /// Callee: our REJECT.
    Rejected,
    /// Callee: the caller left before CONNECT.
    Abandoned,
    /// RST without ABORT.
    Reset,
    /// We aborted (the application): the reason is the one our ABORT frame
    /// carries, or the application's.
    AbortedLocally,
    /// We aborted for this reason, after our FIN, so with RST alone (no
    /// ABORT frame carries it to the peer, §5.5).
    AbortedLocallyFor(Reason),
    /// The peer's ABORT.
    AbortedByPeer,
    /// A timer of ours.
    TimedOut(Timer),
    /// The peer broke the protocol.
    ProtocolError,
}

/// An event a row posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Post {
    /// `Event::ConnectRequest` (FD_ACCEPT).
    ConnectRequest,
    /// `Event::Connected` then `Event::Writable` (FD_CONNECT, FD_WRITE).
    Connected,
    /// `Event::Writable` (FD_WRITE) after CF_ACCEPT.
    Writable,
    /// `Event::Refused` (FD_CONNECT with WSAECONNREFUSED).
    Refused,
    /// `Event::PeerDisconnected` (FD_CLOSE).
    PeerDisconnected,
    /// `Event::Closed`: the last event.
    Closed(End),
}

/// The next state of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Next {
    /// The state the input arrived in.
    Same,
    /// Another state.
    To(State),
}

/// One row: in any of `from`, `input` leads to `next` with these effects,
/// executed in field order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Row {
    /// The states the input may arrive in.
    pub from: &'static [State],
    /// The input.
    pub input: Input,
    /// The state after it.
    pub next: Next,
    /// 1. What is discarded.
    pub discard: Discard,
    /// 2a. The integrity rule: applied before the control frame, except
    /// [`Seal::AfterConnect`], applied after it.
    pub seal: Seal,
    /// 2. The control frame sent.
    pub send: Option<Control>,
    /// 3. FIN or RST, after every byte queued before it.
    pub transport: Option<Transport>,
    /// 4. Timers cleared.
    pub clear: Timers,
    /// 5. Timers armed (re-armed if running).
    pub arm: Timers,
    /// 6. Event posted once the state has changed.
    pub post: Option<Post>,
}

impl Row {
    pub(super) const fn new(from: &'static [State], input: Input, next: Next) -> Self {
        Self {
            from,
            input,
            next,
            discard: Discard::Nothing,
            seal: Seal::Keep,
            send: None,
            transport: None,
            clear: Timers::NONE,
            arm: Timers::NONE,
            post: None,
        }
    }
    pub(super) const fn discard(mut self, d: Discard) -> Self {
        self.discard = d;
        self
    }
    pub(super) const fn seal(mut self, s: Seal) -> Self {
        self.seal = s;
        self
    }
    pub(super) const fn send(mut self, s: Control) -> Self {
        self.send = Some(s);
        self
    }
    pub(super) const fn fin(mut self) -> Self {
        self.transport = Some(Transport::Fin);
        self
    }
    pub(super) const fn rst(mut self) -> Self {
        self.transport = Some(Transport::Rst);
        self
    }
    pub(super) const fn clear(mut self, t: Timers) -> Self {
        self.clear = t;
        self
    }
    pub(super) const fn arm(mut self, t: Timers) -> Self {
        self.arm = t;
        self
    }
    pub(super) const fn post(mut self, p: Post) -> Self {
        self.post = Some(p);
        self
    }
    /// The session ends: every timer but the flush is cleared.
    pub(super) const fn ends(self, end: End) -> Self {
        self.clear(Timers::ALL_BUT_FLUSH).post(Post::Closed(end))
    }
    /// Our abort: discard what is unsent (and unread), ABORT, RST, flush timer, end.
    pub(super) const fn aborts(self, reason: Option<Reason>, end: End) -> Self {
        self.discard(Discard::Both)
            .send(Control::Abort(reason))
            .rst()
            .arm(Timers::of(TimerId::AbortFlush))
            .ends(end)
    }
    /// Our abort after our FIN (or an ABORT received): no frame follows, so
    /// RST only (§5.4), and every unsent byte goes, the rest of a frame
    /// partly handed out included: nothing after the RST is read, and a
    /// peer whose window stays closed would otherwise hold it forever.
    pub(super) const fn resets(self, discard: Discard, end: End) -> Self {
        let discard = match discard {
            Discard::Unsent => Discard::All,
            Discard::Both => Discard::AllAndUnread,
            other => other,
        };
        self.discard(discard).rst().ends(end)
    }
}

mod table;
mod text;
pub use table::{TRANSITIONS, next, row};

/// Which rows of [`TRANSITIONS`] have fired in this process (feature
/// `row-coverage`): the model check reports the rows no run reached.
#[cfg(feature = "row-coverage")]
pub mod coverage {
    use core::sync::atomic::{AtomicBool, Ordering};

    use super::{Row, TRANSITIONS};

    const ROWS: usize = TRANSITIONS.len();
    static FIRED: [AtomicBool; ROWS] = [const { AtomicBool::new(false) }; ROWS];
    static RECORDING: AtomicBool = AtomicBool::new(true);

    /// Stops (`false`) or resumes recording, for runs whose rows must not
    /// count (a checker's look-ahead from a state, say).
    pub fn set_recording(on: bool) {
        RECORDING.store(on, Ordering::Relaxed);
    }

    /// Records that `row` fired.
    pub(crate) fn mark(row: &'static Row) {
        if !RECORDING.load(Ordering::Relaxed) {
            return;
        }
        // The lookup matrix holds copies of the rows: a row is known by its
        // input and the states it applies in (unique, as the build checks).
        if let Some(i) = TRANSITIONS
            .iter()
            .position(|r| r.input == row.input && r.from == row.from)
        {
            FIRED[i].store(true, Ordering::Relaxed);
        }
    }

    /// Whether row `index` of [`TRANSITIONS`] has fired.
    pub fn fired(index: usize) -> bool {
        FIRED.get(index).is_some_and(|f| f.load(Ordering::Relaxed))
    }
}
pub use text::{effects_text, markdown_table, mermaid, table_text};

#[cfg(test)]
mod tests;
