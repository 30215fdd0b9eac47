//! A connection's visit, in named steps: what one wake-up, deadline or
//! command does to one [`Conn`]. The visit touches nothing of the endpoint
//! but what [`Cx`] lends it (configuration, spare parts, counters, the
//! listeners' decisions, the event queue); freeing the slot and releasing
//! its port are the endpoint's, after the visit.
//!
//! Order of the steps (each may end the visit):
//! 1. an aborted socket leaves the set once its RST is out;
//! 2. a listener-born socket that lost its caller is dropped;
//! 3. otherwise the socket is driven: the idle check, the held SYN-ACK's
//!    decision, the user timeout taken over, the pump (which hands the
//!    CONNECT `connect` encoded to TCP once it is up), and FD_WRITE once a
//!    frame fits again;
//! 4. the session's events are routed (to the application, or to the
//!    listener's condition function and admission bounds);
//! 5. the socket is released once the session is drained and TCP finished,
//!    or aborted if TCP's close takes too long.

use alloc::collections::VecDeque;

use crate::fmt::{debug, trace};
use bookend_session::{CloseReason, Event, Instant, Reason, Spares};
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;

#[cfg(feature = "conditional-accept")]
use super::TcpDecision;
use super::{
    Conn, Decision, EndpointEvent, Handle, IncomingRequest, Listener, Phase, PhaseEvent, Stats,
    phase,
};
use crate::config::Config;
use crate::transport::TcpConnection;

/// What a visit may touch besides its connection.
pub(super) struct Cx<'a> {
    pub(super) config: &'a Config,
    pub(super) spares: &'a mut Spares,
    pub(super) tcp: &'a mut super::sockets::Sockets,
    pub(super) stats: &'a mut Stats,
    pub(super) listeners: &'a mut [Listener],
    pub(super) events: &'a mut VecDeque<(Handle, EndpointEvent)>,
    #[cfg_attr(not(feature = "conditional-accept"), allow(dead_code))]
    pub(super) syn_defer_timeout: core::time::Duration,
}

/// How a visit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visited {
    /// It stopped early: `true` if anything changed (a held SYN-ACK asked
    /// again, a timer made due by acknowledgement bookkeeping), `false` if
    /// it found nothing at all to do.
    Stopped(bool),
    /// It ran to the end: its socket may be gone and its slot free.
    Finished,
}

impl Conn {
    /// Visits the connection (see the module docs for the steps).
    pub(super) fn visit(
        &mut self,
        cx: &mut Cx<'_>,
        handle: Handle,
        t: Instant,
        sockets: &mut SocketSet<'_>,
    ) -> Visited {
        match self.socket() {
            Some(h) if self.aborted().is_some() => self.tend_aborted(cx, h, t, sockets),
            Some(h) if self.lost_its_caller(sockets.get::<tcp::Socket>(h)) => {
                self.drop_lost_caller(cx, h, t, sockets);
            }
            Some(h) => {
                if let Some(stop) = self.drive(cx, handle, h, t, sockets) {
                    return Visited::Stopped(stop);
                }
            }
            None => self.session.supply(cx.spares),
        }
        self.route_events(cx, handle, t);
        self.release_socket(cx, t, sockets);
        Visited::Finished
    }

    /// Step 1: the RST is out once smoltcp has forgotten the 4-tuple (or
    /// the interface never sent it in `abort_ack_timeout`).
    fn tend_aborted(
        &mut self,
        cx: &mut Cx<'_>,
        h: smoltcp::iface::SocketHandle,
        t: Instant,
        sockets: &mut SocketSet<'_>,
    ) {
        let Some(at) = self.aborted() else { return };
        let socket = sockets.get::<tcp::Socket>(h);
        if socket.remote_endpoint().is_none() || t >= at + cx.config.abort_ack_timeout {
            cx.tcp.release(sockets, h);
            self.take_socket();
        }
    }

    /// Whether a listener-born socket is no longer the connection it was
    /// taken for: smoltcp 0.14 puts a socket reset in SYN-RECEIVED back into
    /// LISTEN (it would then take the next caller's SYN as a hidden,
    /// unmanaged listener, bypassing SO_CONDITIONAL_ACCEPT), and within one
    /// interface poll that listener may already hold another caller.
    pub(super) fn lost_its_caller(&self, socket: &tcp::Socket<'_>) -> bool {
        self.listener_born()
            && (socket.state() == tcp::State::Listen
                || (socket.remote_endpoint().is_some()
                    && socket.remote_endpoint() != self.remote()))
    }

    /// Step 2: reset in SYN-RECEIVED. A bare listener is removed; one that
    /// took another caller's SYN refuses that caller, which retries.
    fn drop_lost_caller(
        &mut self,
        cx: &mut Cx<'_>,
        h: smoltcp::iface::SocketHandle,
        t: Instant,
        sockets: &mut SocketSet<'_>,
    ) {
        self.session.supply(cx.spares);
        let socket = sockets.get_mut::<tcp::Socket>(h);
        debug!(
            "session {}: reset in {}: dropping the socket",
            self.session.id(),
            socket.state()
        );
        if socket.state() == tcp::State::Listen {
            cx.tcp.release(sockets, h);
            self.take_socket();
        } else {
            socket.abort();
            self.set_aborted(t);
        }
        phase::apply(&mut self.phase, PhaseEvent::HalfOpenReset, cx.stats);
        self.session
            .handle_transport_closed(t, bookend_session::TransportClosed::Reset);
    }

    /// Step 3: drives the socket. `Some(changed)` ends the visit early.
    fn drive(
        &mut self,
        cx: &mut Cx<'_>,
        handle: Handle,
        h: smoltcp::iface::SocketHandle,
        t: Instant,
        sockets: &mut SocketSet<'_>,
    ) -> Option<bool> {
        let socket = sockets.get_mut::<tcp::Socket>(h);
        if let Some(changed) = self.idle(socket, t) {
            return Some(changed);
        }
        self.set_last_tcp_state(Some(socket.state()));
        self.learn_local(socket.local_endpoint());
        // A SYN-ACK still held on `Defer` (or just refused) has no work
        // and takes nothing.
        #[cfg(feature = "conditional-accept")]
        if self.phase == Phase::SynPaused && self.decide_held_syn(cx, socket, t).is_none() {
            return Some(true);
        }
        // Work to do: spare parts first, so that it allocates nothing.
        self.session.supply(cx.spares);
        let keepalive = self.session.options().keepalive_ms;
        if !self.link.owns_timeout() && self.session.is_connected() && keepalive > 0 {
            // From here the pump keeps the user timeout, with the peer's
            // PINGs as signs of life: smoltcp's own would make a peer's RST
            // look like a time-out.
            socket.set_timeout(None);
            self.link.take_timeout(t);
        }
        self.pump_all(cx, socket, t);
        if self.session.is_connected() && keepalive > 0 {
            self.link
                .set_liveness(core::time::Duration::from_millis(3 * u64::from(keepalive)));
        }
        self.link.note_unacknowledged(socket);
        // The state the pump left (its own FIN or RST moved it): only a
        // change from here is news (smoltcp wakes the socket for our own
        // close too, which needs no second visit).
        self.set_last_tcp_state(Some(socket.state()));
        if self.link.aborted() {
            self.set_aborted(t);
        } else {
            self.owe_writable(cx, handle, socket);
        }
        None
    }

    /// The idle check: nothing arrived, nothing to send, no timer due, and
    /// TCP's state unchanged (skipping keeps a poll cheap with many idle
    /// sessions). `Some(changed)` if the visit can stop here; only the
    /// pump's bookkeeping of an acknowledgement (which ends, or starts, a
    /// pause of the session's peer timers) may have been needed.
    fn idle(&mut self, socket: &mut tcp::Socket<'_>, t: Instant) -> Option<bool> {
        let state = socket.state();
        let quiet = self.last_tcp_state() == Some(state)
            && socket.recv_queue() == 0
            // Queued bytes wait for TCP to be able to take them: not while
            // it connects (a state change ends the wait, and is news).
            && (self.session.send_queue() == 0 || !socket.may_send())
            && !self.link.reset_pending()
            && self.link.next_at().is_none_or(|d| d > t)
            && self.session.poll_timeout().is_none_or(|d| d > t)
            && self.session.pending_events() == 0
            && !self.want_writable()
            && self.tcp_done_by().is_none_or(|d| d > t)
            && self.phase != Phase::SynPaused;
        // The user timeout is taken over from smoltcp by a full visit once
        // the session is connected with keepalive.
        let timeout_settled = self.link.owns_timeout()
            || self.session.options().keepalive_ms == 0
            || !self.session.is_connected();
        if !(quiet && timeout_settled) {
            return None;
        }
        if self.link.hold(socket, t) == self.session.transport_pending() {
            return Some(false);
        }
        self.link.acknowledged(&mut self.session, socket, t);
        self.link.note_unacknowledged(socket);
        let nothing_due = self.session.poll_timeout().is_none_or(|d| d > t)
            && self.link.next_at().is_none_or(|d| d > t);
        // A timer made due goes on to the full visit.
        nothing_due.then_some(true)
    }

    /// SO_CONDITIONAL_ACCEPT: asks the listener's TCP condition again about
    /// the held SYN-ACK (refused once the SYN-defer time is out). `None`
    /// ends the visit (still held, or refused); `Some(())` goes on with the
    /// SYN-ACK released.
    #[cfg(feature = "conditional-accept")]
    fn decide_held_syn(
        &mut self,
        cx: &mut Cx<'_>,
        socket: &mut tcp::Socket<'_>,
        t: Instant,
    ) -> Option<()> {
        let by = self.born() + cx.syn_defer_timeout;
        let decision = match (self.listener(), self.local(), self.remote()) {
            (Some(l), Some(local), Some(remote)) if socket.state() == tcp::State::SynReceived => {
                match cx.listeners[l].tcp_condition.as_mut() {
                    Some(f) => f(remote, local),
                    None => TcpDecision::Accept,
                }
            }
            _ => TcpDecision::Accept,
        };
        let decision = if decision == TcpDecision::Defer && t >= by {
            TcpDecision::Refuse
        } else {
            decision
        };
        match decision {
            TcpDecision::Accept => {
                socket.pause_synack(false);
                phase::apply(&mut self.phase, PhaseEvent::SynReleased, cx.stats);
                // The handshake counts from here, not from the SYN: for the
                // session's handshake timer and for the listener's admission
                // control alike (one notion of when it started).
                self.session.handle_transport_established(t);
                self.link.restart_handshake(t);
                Some(())
            }
            TcpDecision::Refuse => {
                debug!(
                    "session {}: SO_CONDITIONAL_ACCEPT refused {:?}: RST",
                    self.session.id(),
                    self.remote()
                );
                socket.abort();
                self.set_aborted(t);
                phase::apply(&mut self.phase, PhaseEvent::SynRefused, cx.stats);
                self.session.supply(cx.spares);
                self.end_unseen(t);
                None
            }
            TcpDecision::Defer => None,
        }
    }

    /// One pump moves everything that can move, in order (reads, timers,
    /// sends, FIN or RST); it runs again, a bounded number of times, only if
    /// something is left that a pump takes: a timer due, or output with room
    /// for it in TCP (always running a second one cost pumps that never
    /// moved anything).
    fn pump_all(&mut self, cx: &Cx<'_>, socket: &mut tcp::Socket<'_>, t: Instant) {
        for _ in 0..4 {
            if !self
                .link
                .pump(&mut self.session, socket, t, cx.config.abort_ack_timeout)
            {
                break;
            }
            let more = self.session.poll_timeout().is_some_and(|d| d <= t)
                || (self.session.has_output() && socket.send_queue() < socket.send_capacity());
            if !more {
                break;
            }
        }
    }

    /// FD_WRITE once a frame fits again after a direct send was cut short:
    /// not while the room is smaller than a send could use (that spun on
    /// `Writable`).
    fn owe_writable(&mut self, cx: &mut Cx<'_>, handle: Handle, socket: &tcp::Socket<'_>) {
        let room = socket.send_capacity() - socket.send_queue();
        if self.want_writable()
            && self.session.send_queue() == 0
            && room >= bookend_session::MIN_DIRECT_CHUNK + bookend_session::MAX_FRAME_OVERHEAD
        {
            self.set_want_writable(false);
            if self.phase == Phase::Owned {
                self.post(cx.events, handle, EndpointEvent::Session(Event::Writable));
            }
        }
    }

    /// Ends the session of a connection the application never saw, whose
    /// transport is gone: it drains at once.
    pub(super) fn end_unseen(&mut self, t: Instant) {
        self.session
            .handle_transport_closed(t, bookend_session::TransportClosed::Reset);
        while self.session.poll_event().is_some() {}
        while self.session.poll_transport_action().is_some() {}
    }

    /// Step 4: the session's events go to the application if it owns the
    /// connection, to the listener's decision if it is pending, and are
    /// counted if it ends in the background.
    fn route_events(&mut self, cx: &mut Cx<'_>, handle: Handle, t: Instant) {
        while let Some(event) = self.session.poll_event() {
            if let Event::Closed(reason @ CloseReason::ProtocolError { .. }) = &event
                && reason.is_integrity_failure()
            {
                // Counted where detected, so the peer's end is not counted twice.
                cx.stats.integrity_failures += 1;
            }
            match (event, self.phase) {
                (Event::ConnectRequest(req), Phase::Pending) => {
                    self.on_request(cx, handle, req, t);
                }
                (event, Phase::Owned) => {
                    self.post(cx.events, handle, EndpointEvent::Session(event));
                }
                (Event::Closed(reason), _) => self.closed_in_background(cx, handle, reason),
                _ => {}
            }
        }
    }

    /// A CONNECT on a pending connection: the condition function decides
    /// (WSAAccept's CF_ACCEPT, CF_REJECT, CF_DEFER), or the application
    /// does (`Incoming`); REJECT(`BUSY`) if it would wait while the
    /// undecided requests are at their bound (§6.4).
    fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        handle: Handle,
        req: bookend_session::ConnectRequest,
        t: Instant,
    ) {
        let (callee, caller) = self.endpoints_as_kept();
        let request = IncomingRequest {
            handle,
            caller,
            callee,
            caller_data: req.caller_data,
            proposed: req.proposed,
            grant: req.grant,
        };
        let decision = self
            .listener()
            .and_then(|l| cx.listeners[l].condition.as_mut())
            .map(|f| f(&request));
        let would_wait = matches!(decision, None | Some(Decision::Defer));
        let full = self.listener().is_some_and(|l| {
            let l = &cx.listeners[l];
            l.undecided >= l.config.max_pending
        });
        if would_wait && full {
            // Nobody can take it now: the caller learns why (§6.4).
            debug!(
                "session {}: undecided requests at their bound: REJECT(BUSY) to {:?}",
                self.session.id(),
                self.remote()
            );
            let _ = self.session.reject(t, Reason::BUSY, None);
            phase::apply(&mut self.phase, PhaseEvent::Busy, cx.stats);
            return;
        }
        match decision {
            Some(Decision::Accept {
                callee_data,
                granted,
            }) => match self.session.accept(t, callee_data.as_deref(), granted) {
                Ok(()) => {
                    phase::apply(&mut self.phase, PhaseEvent::Accepted, cx.stats);
                    self.post(cx.events, handle, EndpointEvent::Accepted(request));
                }
                Err(e) => {
                    debug!(
                        "session {}: the condition function's accept refused ({}): rejecting",
                        self.session.id(),
                        e
                    );
                    let _ = self.session.reject(t, Reason::REJECTED, None);
                    phase::apply(&mut self.phase, PhaseEvent::Rejected, cx.stats);
                }
            },
            Some(Decision::Reject { reason, data }) => {
                if self.session.reject(t, reason, data.as_deref()).is_err() {
                    let _ = self.session.reject(t, reason, None);
                }
                phase::apply(&mut self.phase, PhaseEvent::Rejected, cx.stats);
            }
            Some(Decision::Defer) | None => {
                if decision.is_some() {
                    let _ = self.session.defer();
                }
                if let Some(l) = self.listener() {
                    cx.listeners[l].undecided += 1;
                }
                self.await_decision(request.clone());
                self.post(cx.events, handle, EndpointEvent::Incoming(request));
            }
        }
    }

    /// The session ended while nobody owned it: a released connection's
    /// unconfirmed close is counted; a pending one is refused (and the
    /// application, if it was told of the request, is told it is gone).
    fn closed_in_background(&mut self, cx: &mut Cx<'_>, handle: Handle, reason: CloseReason) {
        trace!(
            "session {}: closed in the background: {}",
            self.session.id(),
            reason
        );
        let unconfirmed = matches!(
            &reason,
            CloseReason::TimedOut(_)
                | CloseReason::Reset
                | CloseReason::ProtocolError { .. }
                | CloseReason::Aborted {
                    by: bookend_session::Side::Peer,
                    ..
                }
        );
        if self.phase == Phase::Released && unconfirmed {
            // The application closed and moved on; the close was never
            // confirmed by the peer's FIN (§5.4): count it, so that it is
            // visible.
            cx.stats.unconfirmed_closes += 1;
        }
        if self.phase == Phase::Pending {
            if self.request().is_some() {
                self.clear_waiting();
                // The slot stays until this is delivered.
                self.post(
                    cx.events,
                    handle,
                    EndpointEvent::Session(Event::Closed(reason.clone())),
                );
            }
            // Refused by whoever ended it (the caller, a timer: the decision
            // timer's REJECT included), counted.
            phase::apply(&mut self.phase, PhaseEvent::EndedUndecided, cx.stats);
        }
    }

    /// Step 5: the socket is released once the session is done and TCP has
    /// finished (or would not finish in time: aborted).
    fn release_socket(&mut self, cx: &mut Cx<'_>, t: Instant, sockets: &mut SocketSet<'_>) {
        let Some(h) = self.socket() else { return };
        if self.aborted().is_some() || !self.session.is_drained() {
            return;
        }
        let socket = sockets.get_mut::<tcp::Socket>(h);
        if TcpConnection::is_finished(socket) || self.link.gone() {
            // TIME-WAIT is cut short here; outgoing ports stay quarantined.
            cx.tcp.release(sockets, h);
            self.take_socket();
            self.set_tcp_done_by(None);
            return;
        }
        // The FIN exchange gets `tcp_close_timeout` from the session's end
        // or from the last acknowledgement, whichever is later; while bytes
        // are still unacknowledged, as long as the TCP user timeout allows
        // (what TCP can still deliver is not cut short). A peer that stops
        // acknowledging (zero window, gone) gets no extension.
        let close = cx.config.tcp_close_timeout;
        let first = self.tcp_done_by().unwrap_or(t + close);
        let grace = if TcpConnection::unacknowledged(socket) {
            cx.config.give_up_after().max(close)
        } else {
            close
        };
        let by = first.max(self.link.delivered_at() + grace);
        self.set_tcp_done_by(Some(by));
        if t >= by {
            debug!(
                "session {}: TCP close did not finish in {}: aborting",
                self.session.id(),
                socket.state()
            );
            socket.abort();
            self.set_aborted(t);
            cx.stats.close_timeouts += 1;
        }
    }
}
