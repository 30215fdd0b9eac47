//! Executes rows of [`crate::state::TRANSITIONS`]: the only place that
//! changes the state, sends control frames, issues FIN/RST, arms or clears
//! timers and posts the connection events.

use crate::fmt::{debug, trace};
use bookend_wire::{
    AcceptRepr, ConnectRepr, FrameRepr, FrameType, Integrity, Reason, ReasonRepr, VERSION,
};
use bytes::Bytes;
use core::time::Duration;

use super::{EventKind, PeerDisconnect, Session};
use crate::config::Options;
use crate::event::{CloseReason, Side, Violation};
use crate::state::{
    self, Control, Discard, End, Input, Next, Post, Row, Seal, State, TimerId, Transport,
};
use crate::time::Instant;

/// What an input carries besides its kind: the parameters of the command,
/// or what the received frame said.
#[derive(Debug, Default)]
pub(crate) struct Args<'a> {
    /// The reason to send (REJECT, ABORT) or that was received.
    pub(crate) reason: Option<Reason>,
    /// User data to send with the row's frame.
    pub(crate) data: Option<&'a [u8]>,
    /// User data received with the frame (caller, callee, reject, abort data).
    pub(crate) peer_data: Option<Bytes>,
    /// CONNECT: the proposal to send. CONNECT received: the default grant.
    pub(crate) options: Option<Options>,
    /// The violation behind `Input::Violation`.
    pub(crate) violation: Option<Violation>,
    /// The frame behind a received input, for the "illegal here" report.
    pub(crate) frame: Option<FrameType>,
    /// What the row's integrity rule reads (`Row::seal`): the proposal
    /// (CONNECT sent or received; `None` when refused from the header
    /// alone) or the grant (ACCEPT sent or received).
    pub(crate) integrity: Option<Integrity>,
}

impl Session {
    /// Feeds `input` to the machine: looks up its row and executes it. A
    /// received frame or FIN with no row is a violation (§5.3); a timer with
    /// no row is stale and ignored; commands check their row before firing.
    pub(crate) fn fire(&mut self, now: Instant, input: Input, args: Args<'_>) {
        let Some(row) = state::row(self.state, input) else {
            match input {
                Input::RecvFin => self.violate(
                    now,
                    Violation::UnexpectedEof {
                        state: self.state,
                        mid_frame: false,
                    },
                ),
                Input::RecvConnect
                | Input::RecvUnacceptableConnect
                | Input::RecvAccept
                | Input::RecvUnacceptableAccept
                | Input::RecvReject
                | Input::RecvData
                | Input::RecvDataAfterClose
                | Input::RecvDisconnect
                | Input::RecvAbort
                | Input::RecvPing
                | Input::RecvUnknown => self.violate(
                    now,
                    Violation::UnexpectedFrame {
                        frame: args.frame.unwrap_or(FrameType::Unknown(0)),
                        state: self.state,
                    },
                ),
                _ => debug!(
                    "session {}: no row for {:?} in {}: ignored",
                    self.id, input, self.state
                ),
            }
            return;
        };
        #[cfg(feature = "row-coverage")]
        state::coverage::mark(row);
        self.execute(now, row, args);
    }

    fn execute(&mut self, now: Instant, row: &'static Row, mut args: Args<'_>) {
        let from = self.state;
        // 1. Discard.
        match row.discard {
            Discard::Nothing => {}
            Discard::Unsent => self.discard_unsent(),
            Discard::All => self.tx.discard_all(),
            Discard::AllAndUnread => {
                self.tx.discard_all();
                self.discard_unread();
            }
            Discard::Both => {
                self.discard_unsent();
                self.discard_unread();
            }
            Discard::TransportGone => self.tx.gone(),
            Discard::TransportGoneAndUnread => {
                self.tx.gone();
                self.discard_unread();
            }
        }
        // 2a. The integrity rule (§2.5), then the control frame.
        let offered = args.integrity == Some(Integrity::Crc32c);
        match row.seal {
            Seal::Keep | Seal::AfterConnect => {}
            Seal::ByProposal => {
                self.tx
                    .set_seal(offered && self.config.options.integrity == Integrity::Crc32c);
            }
            Seal::ByGrant => self.tx.set_seal(offered),
        }
        if let Some(control) = row.send {
            self.send_control(control, &args);
        }
        if row.seal == Seal::AfterConnect {
            // CONNECT went out unsealed, so that a callee that predates the
            // option reads it; the one frame that may follow before ACCEPT,
            // an ABORT, is sealed if we proposed integrity (a callee that
            // granted it requires seals).
            self.tx.set_seal(offered);
        }
        // 3. FIN or RST.
        match row.transport {
            Some(Transport::Fin) => self.tx.request_fin(),
            Some(Transport::Rst) => self.tx.request_rst(),
            None => {}
        }
        // 4, 5. Timers.
        for t in TimerId::ALL {
            if row.clear.contains(t) {
                self.timers.clear(t);
            }
        }
        for t in TimerId::ALL {
            if row.arm.contains(t) {
                match self.duration(t) {
                    Some(d) => self.timers.set(t, now, d),
                    None => self.timers.clear(t),
                }
            }
        }
        // The state.
        let to = match row.next {
            Next::Same => from,
            Next::To(s) => s,
        };
        if to != from {
            debug!(
                "session {} ({:?}): {} -> {} on {:?}",
                self.id, self.role, from, to, row.input
            );
            self.state = to;
            if !to.parses_frames() {
                // Bytes are ignored from here on: a frame begun is dropped, so a
                // later FIN is on a frame boundary (§5.3).
                self.rx.drop_partial();
            }
        }
        // 6. The event.
        if let Some(post) = row.post {
            self.post(post, row, &mut args);
        }
    }

    fn duration(&self, t: TimerId) -> Option<Duration> {
        let c = &self.config;
        match t {
            TimerId::Connect => Some(c.connect_timeout),
            TimerId::Handshake => Some(c.handshake_timeout),
            TimerId::Decision => Some(c.decision_timeout),
            TimerId::Linger => Some(c.linger_timeout),
            TimerId::AbortFlush => Some(c.abort_flush_timeout),
            TimerId::Idle => self.keepalive().map(|k| k * 3),
            TimerId::Keepalive => self.keepalive(),
        }
    }

    /// Throws away what the transport has not taken (§3.6).
    fn discard_unsent(&mut self) {
        let gone = self.tx.discard_unsent();
        if gone > 0 {
            trace!("session {}: {} unsent bytes discarded", self.id, gone);
        }
    }

    fn send_control(&mut self, control: Control, args: &Args<'_>) {
        trace!("session {}: queues {:?}", self.id, control);
        match control {
            Control::Connect => {
                let options = args.options.unwrap_or_else(|| self.proposed());
                let mut repr = options.to_repr();
                if options.integrity == Integrity::Crc32c {
                    // CONNECT is not sealed; the whole frame is checked by
                    // this CRC instead, written by `Tx::queue` (§2.5).
                    repr.connect_crc = Some(0);
                }
                self.tx.queue(&FrameRepr::Connect(ConnectRepr {
                    min_version: VERSION,
                    max_version: VERSION,
                    options: repr,
                    data: args.data,
                }));
            }
            Control::Accept => self.tx.queue(&FrameRepr::Accept(AcceptRepr {
                version: VERSION,
                options: self.params().to_repr(),
                data: args.data,
            })),
            Control::Reject(fixed) => {
                let (reason, data) = fixed_or_given(fixed, args, Reason::REJECTED);
                self.cold.make().refusal = Some(reason);
                self.tx
                    .queue(&FrameRepr::Reject(ReasonRepr { reason, data }));
            }
            Control::Disconnect => {
                self.flags.set(Self::LOCAL_DISCONNECTED, true);
                self.tx.queue(&FrameRepr::Disconnect { data: args.data });
            }
            Control::Abort(fixed) => {
                let (reason, data) = fixed_or_given(fixed, args, Reason::APPLICATION_ABORT);
                self.tx
                    .queue(&FrameRepr::Abort(ReasonRepr { reason, data }));
            }
            Control::Ping => self.tx.queue(&FrameRepr::Ping),
        }
    }

    /// Queues the row's event; its data waits in `Cold` until it is polled
    /// (`Session::poll_event` builds the `Event`).
    fn post(&mut self, post: Post, row: &Row, args: &mut Args<'_>) {
        let kind = match post {
            Post::ConnectRequest => {
                let grant = args.options.unwrap_or_else(|| self.proposed());
                let cold = self.cold.make();
                cold.grant = grant;
                cold.event_data = args.peer_data.take();
                EventKind::ConnectRequest
            }
            Post::Connected => {
                let data = args.peer_data.take();
                if data.is_some() {
                    self.cold.make().event_data = data;
                }
                self.events.push(EventKind::Connected);
                EventKind::Writable
            }
            Post::Writable => EventKind::Writable,
            Post::Refused => {
                let data = args.peer_data.take();
                if data.is_some() {
                    self.cold.make().event_data = data;
                }
                EventKind::Refused
            }
            Post::PeerDisconnected => EventKind::PeerDisconnected,
            Post::Closed(end) => {
                let reason = self.close_reason_for(end, row, args);
                debug!("session {}: closed: {}", self.id, reason);
                self.tx.set_writable_wanted(false);
                self.cold.make().close_reason = Some(reason);
                EventKind::Closed
            }
        };
        self.events.push(kind);
    }

    fn close_reason_for(&self, end: End, row: &Row, args: &mut Args<'_>) -> CloseReason {
        match end {
            End::Graceful => CloseReason::Graceful,
            End::Refused => CloseReason::Refused {
                reason: self.refusal().unwrap_or(Reason::UNSPECIFIED),
            },
            End::Rejected => CloseReason::Rejected {
                reason: self.refusal().unwrap_or(Reason::REJECTED),
            },
            End::Abandoned => CloseReason::Abandoned,
            End::Reset => CloseReason::Reset,
            End::AbortedLocallyFor(reason) => CloseReason::Aborted {
                by: Side::Local,
                reason,
                data: None,
            },
            End::AbortedLocally => {
                let (reason, data) = match row.send {
                    Some(Control::Abort(Some(fixed))) => (fixed, None),
                    _ => (
                        args.reason.unwrap_or(Reason::APPLICATION_ABORT),
                        args.data.map(Bytes::copy_from_slice),
                    ),
                };
                CloseReason::Aborted {
                    by: Side::Local,
                    reason,
                    data,
                }
            }
            End::AbortedByPeer => CloseReason::Aborted {
                by: Side::Peer,
                reason: args.reason.unwrap_or(Reason::UNSPECIFIED),
                data: args.peer_data.take(),
            },
            End::TimedOut(t) => CloseReason::TimedOut(t),
            End::ProtocolError => CloseReason::ProtocolError {
                detail: args.violation.unwrap_or(Violation::InvalidAccept),
            },
        }
    }

    /// The peer broke the protocol: the Violation row ends the session.
    pub(crate) fn violate(&mut self, now: Instant, v: Violation) {
        debug!(
            "session {}: protocol violation in {}: {}",
            self.id, self.state, v
        );
        self.fire(
            now,
            Input::Violation,
            Args {
                reason: Some(v.reason()),
                violation: Some(v),
                ..Args::default()
            },
        );
    }

    /// Unread DATA and the peer's disconnect data are thrown away, as Windows
    /// does on a reset (winsock-semantics E12).
    fn discard_unread(&mut self) {
        self.rx.discard();
        if self.peer_disconnect == PeerDisconnect::Ready {
            self.peer_disconnect = PeerDisconnect::NotYet;
            if let Some(c) = self.cold.get_mut() {
                c.peer_disconnect = None;
            }
        }
    }

    /// Whether the session has ended (used by commands for their errors).
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
}

/// The reason and data of a REJECT or ABORT: the row's fixed reason (with no
/// data), or what the command or violation gave.
fn fixed_or_given<'a>(
    fixed: Option<Reason>,
    args: &Args<'a>,
    default: Reason,
) -> (Reason, Option<&'a [u8]>) {
    match fixed {
        Some(r) => (r, None),
        None => (args.reason.unwrap_or(default), args.data),
    }
}
