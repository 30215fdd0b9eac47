//! The rows of the machine, and their O(1) lookup matrix.

use bookend_wire::Reason;

use super::{Control, Discard, End, Input, Next, Post, Row, Seal, State, TimerId, Timers};
use crate::event::Timer;

use Next::{Same, To};
use State::*;

const fn to(s: State) -> Next {
    To(s)
}

const LIVE: &[State] = &[
    Idle,
    ConnectSent,
    AwaitConnect,
    ConnectReceived,
    Deferred,
    Open,
    LocalDisconnected,
    PeerDisconnected,
    Closing,
    Rejecting,
    Refused,
];
/// States where the transport carries frames and our FIN has not been sent.
const FRAMING: &[State] = &[
    ConnectSent,
    AwaitConnect,
    ConnectReceived,
    Deferred,
    Open,
    LocalDisconnected,
    PeerDisconnected,
];
const AFTER_FIN: &[State] = &[Closing, Rejecting, Refused];
const CONNECTED: &[State] = &[Open, LocalDisconnected, PeerDisconnected];
const SKIPPABLE: &[State] = &[Open, LocalDisconnected, PeerDisconnected, Closing];
const UNDECIDED: &[State] = &[ConnectReceived, Deferred];
const LINGER: Timers = Timers::of(TimerId::Linger);
/// Entering CLOSING: our FIN goes; liveness timers stop, linger bounds the wait.
const CLOSING_TIMERS: Timers = Timers::LIVENESS;

/// Every row, grouped by input. See the module docs.
pub const TRANSITIONS: &[Row] = &[
    // --- application commands -------------------------------------------
    Row::new(&[Idle], Input::AppConnect, to(ConnectSent))
        .send(Control::Connect)
        .seal(Seal::AfterConnect)
        .arm(Timers::of(TimerId::Connect)),
    Row::new(UNDECIDED, Input::AppAccept, to(Open))
        .seal(Seal::ByGrant)
        .send(Control::Accept)
        .clear(Timers::of(TimerId::Decision))
        .arm(Timers::LIVENESS)
        .post(Post::Writable),
    Row::new(UNDECIDED, Input::AppReject, to(Rejecting))
        .send(Control::Reject(None))
        .fin()
        .clear(Timers::of(TimerId::Decision))
        .arm(LINGER),
    Row::new(UNDECIDED, Input::AppDefer, to(Deferred)),
    Row::new(&[Open, PeerDisconnected], Input::AppSend, Same),
    Row::new(&[Open], Input::AppSendDisconnect, to(LocalDisconnected)).send(Control::Disconnect),
    Row::new(&[PeerDisconnected], Input::AppSendDisconnect, to(Closing))
        .send(Control::Disconnect)
        .fin()
        .clear(CLOSING_TIMERS)
        .arm(LINGER),
    // Winsock: closesocket on a connecting socket abandons the attempt.
    Row::new(&[Idle], Input::AppClose, to(Closed)).resets(Discard::Both, End::AbortedLocally),
    Row::new(&[ConnectSent, AwaitConnect], Input::AppClose, to(Closed))
        .aborts(Some(Reason::APPLICATION_ABORT), End::AbortedLocally),
    // Closing an undecided request refuses it rather than leaving the caller waiting.
    Row::new(UNDECIDED, Input::AppClose, to(Rejecting))
        .send(Control::Reject(Some(Reason::REJECTED)))
        .fin()
        .clear(Timers::of(TimerId::Decision))
        .arm(LINGER),
    Row::new(&[Open], Input::AppClose, to(LocalDisconnected))
        .send(Control::Disconnect)
        .arm(LINGER),
    Row::new(&[LocalDisconnected], Input::AppClose, Same).arm(LINGER),
    Row::new(&[PeerDisconnected], Input::AppClose, to(Closing))
        .send(Control::Disconnect)
        .fin()
        .clear(CLOSING_TIMERS)
        .arm(LINGER),
    Row::new(AFTER_FIN, Input::AppClose, Same),
    Row::new(CONNECTED, Input::AppCloseUnread, to(Closed))
        .aborts(Some(Reason::UNREAD_DATA), End::AbortedLocally),
    // The seed's step 5 then 5a with DATA unread: our FIN is out, so RST
    // alone tells the peer its data was not read (RFC 9293 §3.10.4, §5.5).
    Row::new(&[Closing], Input::AppCloseUnread, to(Closed))
        .resets(Discard::Both, End::AbortedLocallyFor(Reason::UNREAD_DATA)),
    Row::new(&[Idle], Input::AppAbort, to(Closed)).resets(Discard::Both, End::AbortedLocally),
    Row::new(FRAMING, Input::AppAbort, to(Closed)).aborts(None, End::AbortedLocally),
    Row::new(AFTER_FIN, Input::AppAbort, to(Closed)).resets(Discard::Both, End::AbortedLocally),
    // --- received frames -------------------------------------------------
    Row::new(&[AwaitConnect], Input::RecvConnect, to(ConnectReceived))
        .seal(Seal::ByProposal)
        .clear(Timers::of(TimerId::Handshake))
        .arm(Timers::of(TimerId::Decision))
        .post(Post::ConnectRequest),
    Row::new(
        &[AwaitConnect],
        Input::RecvUnacceptableConnect,
        to(Rejecting),
    )
    .seal(Seal::ByProposal)
    .send(Control::Reject(None))
    .fin()
    .clear(Timers::of(TimerId::Handshake))
    .arm(LINGER),
    Row::new(&[ConnectSent], Input::RecvAccept, to(Open))
        .seal(Seal::ByGrant)
        .clear(Timers::of(TimerId::Connect))
        .arm(Timers::LIVENESS)
        .post(Post::Connected),
    // A caller that requires integrity ends a session that does not have
    // it (§2.5); the ABORT names the cause.
    Row::new(&[ConnectSent], Input::RecvUnacceptableAccept, to(Closed))
        .seal(Seal::ByGrant)
        .aborts(Some(Reason::INTEGRITY_REQUIRED), End::AbortedLocally),
    Row::new(&[ConnectSent], Input::RecvReject, to(Refused))
        .fin()
        .clear(Timers::of(TimerId::Connect))
        .arm(LINGER)
        .post(Post::Refused),
    // Delivery and FD_READ belong to the data path.
    Row::new(&[Open, LocalDisconnected], Input::RecvData, Same),
    // Data for an application that has closed: tell the sender, as TCP's RST
    // would, instead of letting it believe the data was read.
    Row::new(&[LocalDisconnected], Input::RecvDataAfterClose, to(Closed))
        .aborts(Some(Reason::UNREAD_DATA), End::AbortedLocally),
    Row::new(&[Open], Input::RecvDisconnect, to(PeerDisconnected)).post(Post::PeerDisconnected),
    Row::new(&[LocalDisconnected], Input::RecvDisconnect, to(Closing))
        .fin()
        .clear(CLOSING_TIMERS)
        .arm(LINGER)
        .post(Post::PeerDisconnected),
    // Pending data in both directions is discarded (§3.6); answer with RST.
    Row::new(
        &[
            ConnectSent,
            AwaitConnect,
            ConnectReceived,
            Deferred,
            Open,
            LocalDisconnected,
            PeerDisconnected,
            Closing,
        ],
        Input::RecvAbort,
        to(Closed),
    )
    .resets(Discard::Both, End::AbortedByPeer),
    Row::new(SKIPPABLE, Input::RecvPing, Same),
    Row::new(SKIPPABLE, Input::RecvUnknown, Same),
    // --- the transport ---------------------------------------------------
    // The defence against a caller that connects and never asks (slowloris).
    Row::new(&[AwaitConnect], Input::TransportUp, Same).arm(Timers::of(TimerId::Handshake)),
    // The caller went away before asking: close our half cleanly too.
    Row::new(&[AwaitConnect], Input::RecvFin, to(Closed))
        .fin()
        .ends(End::Abandoned),
    Row::new(&[Closing], Input::RecvFin, to(Closed)).ends(End::Graceful),
    Row::new(&[Rejecting], Input::RecvFin, to(Closed)).ends(End::Rejected),
    Row::new(&[Refused], Input::RecvFin, to(Closed)).ends(End::Refused),
    // IDLE included: a driver may hold an IDLE caller while TCP connects,
    // and a RST then is "connection refused". Windows discards unread data (E12).
    Row::new(LIVE, Input::RecvRst, to(Closed))
        .discard(Discard::TransportGoneAndUnread)
        .ends(End::Reset),
    // The peer's RST answering our ABORT: nothing more can be sent.
    Row::new(&[Closed], Input::RecvRst, Same)
        .discard(Discard::TransportGone)
        .clear(Timers::of(TimerId::AbortFlush)),
    Row::new(LIVE, Input::TransportTimeout, to(Closed))
        .discard(Discard::TransportGone)
        .ends(End::TimedOut(Timer::Transport)),
    Row::new(&[Closed], Input::TransportTimeout, Same)
        .discard(Discard::TransportGone)
        .clear(Timers::of(TimerId::AbortFlush)),
    // --- protocol violations ---------------------------------------------
    Row::new(&[Idle], Input::Violation, to(Closed)).resets(Discard::Both, End::ProtocolError),
    Row::new(FRAMING, Input::Violation, to(Closed)).aborts(None, End::ProtocolError),
    // After our FIN no ABORT can follow (§5.4): RST only.
    Row::new(&[Closing], Input::Violation, to(Closed)).resets(Discard::Both, End::ProtocolError),
    // --- timers ------------------------------------------------------------
    Row::new(&[ConnectSent], Input::ConnectTimer, to(Closed))
        .aborts(Some(Reason::CONNECT_TIMEOUT), End::TimedOut(Timer::Connect)),
    Row::new(&[AwaitConnect], Input::HandshakeTimer, to(Closed)).aborts(
        Some(Reason::HANDSHAKE_TIMEOUT),
        End::TimedOut(Timer::Handshake),
    ),
    // The caller always learns why: REJECT, not silence.
    Row::new(UNDECIDED, Input::DecisionTimer, to(Rejecting))
        .send(Control::Reject(Some(Reason::DECISION_TIMEOUT)))
        .fin()
        .clear(Timers::of(TimerId::Decision))
        .arm(LINGER),
    Row::new(&[LocalDisconnected], Input::LingerTimer, to(Closed))
        .aborts(Some(Reason::LINGER_TIMEOUT), End::TimedOut(Timer::Linger)),
    // After the peer's DISCONNECT a linger timeout only means its FIN is
    // missing: everything it sent is here and stays readable.
    Row::new(&[Closing], Input::LingerTimer, to(Closed))
        .resets(Discard::Unsent, End::TimedOut(Timer::Linger)),
    Row::new(&[Rejecting, Refused], Input::LingerTimer, to(Closed))
        .resets(Discard::Both, End::TimedOut(Timer::Linger)),
    Row::new(CONNECTED, Input::IdleTimer, to(Closed))
        .aborts(Some(Reason::IDLE_TIMEOUT), End::TimedOut(Timer::Idle)),
    Row::new(CONNECTED, Input::KeepaliveTimer, Same)
        .send(Control::Ping)
        .arm(Timers::of(TimerId::Keepalive)),
    Row::new(CONNECTED, Input::KeepaliveTimerBusy, Same).arm(Timers::of(TimerId::Keepalive)),
    // The ABORT could not get out in time: drop it, and the rest of any
    // frame before it, so the RST goes.
    Row::new(&[Closed], Input::AbortFlushTimer, Same).discard(Discard::All),
    // The RST left, after every byte before it: nothing is left to flush.
    Row::new(&[Closed], Input::RstTaken, Same).clear(Timers::of(TimerId::AbortFlush)),
];

const NONE: u8 = u8::MAX;
const STATES: usize = State::ALL.len();
const INPUTS: usize = Input::ALL.len();

/// `MATRIX[state][input]` is the index of the row for that cell, or `NONE`.
const MATRIX: [[u8; INPUTS]; STATES] = {
    assert!(TRANSITIONS.len() < NONE as usize);
    let mut m = [[NONE; INPUTS]; STATES];
    let mut i = 0;
    while i < TRANSITIONS.len() {
        let row = &TRANSITIONS[i];
        let mut j = 0;
        while j < row.from.len() {
            let cell = &mut m[row.from[j] as usize][row.input as usize];
            // Two rows for one (state, input) cell would make the machine
            // ambiguous: refuse to build.
            assert!(*cell == NONE, "two rows for one cell");
            *cell = i as u8;
            j += 1;
        }
        i += 1;
    }
    m
};

/// The row for `input` in `state`, or `None` if the input is illegal there.
pub const fn row(state: State, input: Input) -> Option<&'static Row> {
    let i = MATRIX[state as usize][input as usize];
    if i == NONE {
        None
    } else {
        Some(&TRANSITIONS[i as usize])
    }
}

/// The state after `input` in `state`, or `None` if the input is illegal there.
pub const fn next(state: State, input: Input) -> Option<State> {
    match row(state, input) {
        Some(Row { next: To(s), .. }) => Some(*s),
        Some(Row { next: Same, .. }) => Some(state),
        None => None,
    }
}
