//! The session state machine, declared as data (`docs/protocol.md` §5).
//!
//! [`TRANSITIONS`] is the single source of truth: one row per legal
//! (state, input) pair. The session consults it for every change of state; an
//! input with no row is illegal (a received frame ends the session with
//! ABORT(`UNEXPECTED_FRAME`), an application command fails with
//! `InvalidState`). A `const` builder turns the rows into an O(1) lookup matrix
//! and fails the build if two rows contradict each other. The snapshot test
//! prints every input in every state, and [`mermaid`] draws the diagram
//! checked into `docs/session-states.md`; both come from this table.

use core::fmt;

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

    /// Whether received bytes are still parsed as frames in this state. In
    /// `Rejecting`, `Refused` and `Closed` everything until the FIN is ignored.
    pub const fn parses_frames(self) -> bool {
        !matches!(self, Self::Rejecting | Self::Refused | Self::Closed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec_name())
    }
}

/// Everything that can move the machine: application commands, received
/// frames, transport events and timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
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
    /// `close()`: graceful closesocket.
    AppClose,
    /// `abort(reason, data)`: closesocket with linger {1, 0}.
    AppAbort,
    /// CONNECT received and acceptable (version, options, size).
    RecvConnect,
    /// CONNECT received but unservable: answered with REJECT at once (§6.3).
    RecvUnacceptableConnect,
    /// ACCEPT received and valid.
    RecvAccept,
    /// REJECT received.
    RecvReject,
    /// DATA received.
    RecvData,
    /// DISCONNECT received.
    RecvDisconnect,
    /// ABORT received.
    RecvAbort,
    /// PING received.
    RecvPing,
    /// TCP FIN (end of the received stream).
    RecvFin,
    /// TCP RST.
    RecvRst,
    /// A malformed frame, or a limit exceeded by the peer.
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
}

impl Input {
    /// Every input, in declaration order.
    pub const ALL: [Self; 25] = [
        Self::AppConnect,
        Self::AppAccept,
        Self::AppReject,
        Self::AppDefer,
        Self::AppSend,
        Self::AppSendDisconnect,
        Self::AppClose,
        Self::AppAbort,
        Self::RecvConnect,
        Self::RecvUnacceptableConnect,
        Self::RecvAccept,
        Self::RecvReject,
        Self::RecvData,
        Self::RecvDisconnect,
        Self::RecvAbort,
        Self::RecvPing,
        Self::RecvFin,
        Self::RecvRst,
        Self::Violation,
        Self::TransportTimeout,
        Self::ConnectTimer,
        Self::HandshakeTimer,
        Self::DecisionTimer,
        Self::LingerTimer,
        Self::IdleTimer,
    ];
}

/// One legal transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state the input arrives in.
    pub from: State,
    /// The input.
    pub input: Input,
    /// The state after it.
    pub to: State,
}

macro_rules! transitions {
    ($( $input:ident { $( $($from:ident)|+ => $to:ident ),+ $(,)? } )*) => {
        /// Every legal transition, grouped by input. See the module docs.
        pub const TRANSITIONS: &[Transition] = &[
            $( $( $( Transition { from: State::$from, input: Input::$input, to: State::$to }, )+ )+ )*
        ];
    };
}

transitions! {
    AppConnect { Idle => ConnectSent }
    AppAccept { ConnectReceived | Deferred => Open }
    AppReject { ConnectReceived | Deferred => Rejecting }
    AppDefer { ConnectReceived | Deferred => Deferred }
    AppSend { Open => Open, PeerDisconnected => PeerDisconnected }
    AppSendDisconnect { Open => LocalDisconnected, PeerDisconnected => Closing }
    AppClose {
        // Winsock: closesocket on a connecting socket abandons the attempt.
        Idle | ConnectSent | AwaitConnect => Closed,
        // Closing an undecided request refuses it rather than leaving the caller waiting.
        ConnectReceived | Deferred => Rejecting,
        Open | LocalDisconnected => LocalDisconnected,
        PeerDisconnected | Closing => Closing,
        Rejecting => Rejecting,
        Refused => Refused,
    }
    AppAbort {
        Idle | ConnectSent | AwaitConnect | ConnectReceived | Deferred | Open | LocalDisconnected
            | PeerDisconnected | Closing | Rejecting | Refused => Closed
    }
    RecvConnect { AwaitConnect => ConnectReceived }
    RecvUnacceptableConnect { AwaitConnect => Rejecting }
    RecvAccept { ConnectSent => Open }
    RecvReject { ConnectSent => Refused }
    RecvData { Open => Open, LocalDisconnected => LocalDisconnected }
    RecvDisconnect { Open => PeerDisconnected, LocalDisconnected => Closing }
    RecvAbort {
        ConnectSent | AwaitConnect | ConnectReceived | Deferred | Open | LocalDisconnected
            | PeerDisconnected | Closing => Closed
    }
    RecvPing {
        Open => Open,
        LocalDisconnected => LocalDisconnected,
        PeerDisconnected => PeerDisconnected,
        Closing => Closing,
    }
    // Anywhere else a FIN means the peer's session layer ended without
    // DISCONNECT: the session turns it into a Violation (UNEXPECTED_EOF).
    RecvFin { AwaitConnect | Closing | Rejecting | Refused => Closed }
    // IDLE included: a driver holds an IDLE caller while TCP connects, and a
    // RST then is "connection refused".
    RecvRst {
        Idle | ConnectSent | AwaitConnect | ConnectReceived | Deferred | Open | LocalDisconnected
            | PeerDisconnected | Closing | Rejecting | Refused => Closed
    }
    Violation {
        Idle | ConnectSent | AwaitConnect | ConnectReceived | Deferred | Open | LocalDisconnected
            | PeerDisconnected | Closing => Closed
    }
    TransportTimeout {
        Idle | ConnectSent | AwaitConnect | ConnectReceived | Deferred | Open | LocalDisconnected
            | PeerDisconnected | Closing | Rejecting | Refused => Closed
    }
    ConnectTimer { ConnectSent => Closed }
    HandshakeTimer { AwaitConnect => Closed }
    DecisionTimer { ConnectReceived | Deferred => Rejecting }
    LingerTimer { LocalDisconnected | Closing | Rejecting | Refused => Closed }
    IdleTimer { Open | LocalDisconnected | PeerDisconnected => Closed }
}

const ILLEGAL: u8 = u8::MAX;
const STATES: usize = State::ALL.len();
const INPUTS: usize = Input::ALL.len();

/// `MATRIX[state][input]` is the next state's index, or `ILLEGAL`.
const MATRIX: [[u8; INPUTS]; STATES] = {
    let mut m = [[ILLEGAL; INPUTS]; STATES];
    let mut i = 0;
    while i < TRANSITIONS.len() {
        let t = TRANSITIONS[i];
        let cell = &mut m[t.from as usize][t.input as usize];
        // Two rows for one (state, input) pair with different targets would make
        // the machine ambiguous: refuse to build.
        assert!(
            *cell == ILLEGAL || *cell == t.to as u8,
            "contradictory transitions"
        );
        *cell = t.to as u8;
        i += 1;
    }
    m
};

/// The state after `input` in `state`, or `None` if the input is illegal there.
pub const fn next(state: State, input: Input) -> Option<State> {
    let to = MATRIX[state as usize][input as usize];
    if to == ILLEGAL {
        None
    } else {
        Some(State::ALL[to as usize])
    }
}

/// The transition table as text: one line per state, each input's target or
/// `-`. Used by the snapshot test.
pub fn table_text() -> alloc::string::String {
    use core::fmt::Write;
    let mut out = alloc::string::String::new();
    for s in State::ALL {
        let _ = writeln!(out, "{s}");
        for i in Input::ALL {
            match next(s, i) {
                Some(to) => {
                    let _ = writeln!(out, "    {i:?} -> {to}");
                }
                None => {
                    let _ = writeln!(out, "    {i:?} -");
                }
            }
        }
    }
    out
}

/// A Mermaid state diagram of [`TRANSITIONS`]: one edge per (from, to) pair,
/// labelled with every input that takes it. Self-loops are left out to keep
/// the picture readable; the table lists them.
pub fn mermaid() -> alloc::string::String {
    use alloc::vec::Vec;
    use core::fmt::Write;
    let mut out = alloc::string::String::from("stateDiagram-v2\n");
    let _ = writeln!(out, "    [*] --> IDLE: caller");
    let _ = writeln!(out, "    [*] --> AWAIT_CONNECT: callee");
    for from in State::ALL {
        for to in State::ALL {
            if from == to {
                continue;
            }
            let labels: Vec<_> = Input::ALL
                .iter()
                .filter(|&&i| next(from, i) == Some(to))
                .map(|i| alloc::format!("{i:?}"))
                .collect();
            if !labels.is_empty() {
                let _ = writeln!(out, "    {from} --> {to}: {}", labels.join(", "));
            }
        }
    }
    let _ = writeln!(out, "    CLOSED --> [*]");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_is_terminal() {
        for i in Input::ALL {
            assert_eq!(next(State::Closed, i), None, "{i:?} leaves CLOSED");
        }
    }

    #[test]
    fn every_live_state_can_be_aborted_and_reset() {
        for s in State::ALL {
            if s == State::Closed {
                continue;
            }
            assert_eq!(next(s, Input::AppAbort), Some(State::Closed), "{s}");
            assert_eq!(next(s, Input::RecvRst), Some(State::Closed), "{s}");
            assert_eq!(next(s, Input::TransportTimeout), Some(State::Closed), "{s}");
        }
    }

    #[test]
    fn every_state_is_reachable_and_reaches_closed() {
        let mut reach = [false; STATES];
        reach[State::Idle as usize] = true;
        reach[State::AwaitConnect as usize] = true;
        let mut changed = true;
        while changed {
            changed = false;
            for t in TRANSITIONS {
                if reach[t.from as usize] && !reach[t.to as usize] {
                    reach[t.to as usize] = true;
                    changed = true;
                }
            }
        }
        assert!(reach.iter().all(|&r| r), "unreachable state");
        // Every non-terminal state has a path to CLOSED that needs no peer
        // cooperation (a timer or the application), so nothing waits forever.
        for s in State::ALL {
            if s == State::Closed {
                continue;
            }
            let local = [
                Input::AppAbort,
                Input::LingerTimer,
                Input::ConnectTimer,
                Input::HandshakeTimer,
            ];
            assert!(
                local.iter().any(|&i| next(s, i) == Some(State::Closed)),
                "{s} cannot end locally"
            );
        }
    }

    #[test]
    fn every_event_in_every_state_snapshot() {
        insta::assert_snapshot!("transition_table", table_text());
    }

    #[test]
    fn checked_in_diagram_is_current() {
        let doc = include_str!("../../../docs/session-states.md");
        let generated = mermaid();
        assert!(
            doc.contains(generated.as_str()),
            "docs/session-states.md is stale; regenerate with \
             `cargo run -p bookend-session --example state_diagram > docs/session-states.md`"
        );
    }
}
