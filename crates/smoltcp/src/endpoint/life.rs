//! A connection's life: taken from a listener, driven by its session and
//! its socket, and freed in one place ([`Endpoint::try_free`]) once nobody
//! needs it. Any TCP state the endpoint did not expect ends it with a reason.

use bookend_session::{CloseReason, Event, Instant, Reason, Session, State};
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;
use tracing::{debug, trace};

#[cfg(feature = "conditional-accept")]
use super::TcpDecision;
use super::{
    Conn, Decision, Endpoint, EndpointEvent, Fresh, Handle, IncomingRequest, Phase, PhaseEvent,
    Scratch, phase,
};
use crate::transport::TcpConnection;

/// Why [`Endpoint::poll_conn`] visits a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visit {
    /// `Endpoint::poll`: a wake-up (its own or its group's), a deadline, a
    /// poke. Nothing found means nothing changed.
    Poll,
    /// A command's flush: the command may have changed what the visit does
    /// not look at (a timer armed, spare parts taken).
    Command,
}

/// How long after a connection came up a SYN for the same 4-tuple is taken
/// for a copy of its own (one of its SYNs duplicated or delayed in the
/// network) rather than a caller reconnecting: well past a network's delay,
/// well short of a device's reboot. Counted from when TCP came up, not from
/// the first SYN: a handshake whose SYN-ACKs were lost can take longer than
/// this, and its SYNs' copies arrive after it.
const DUPLICATE_SYN_WINDOW: core::time::Duration = core::time::Duration::from_secs(10);

/// The span of a connection's traces, built where it is entered rather than
/// stored (a stored `tracing::Span` is 40 bytes per idle connection; a
/// disabled span costs one callsite check).
fn conn_span(c: &Conn) -> tracing::Span {
    tracing::debug_span!("conn", session = c.session.id(), local = ?c.local(), remote = ?c.remote())
}

impl Endpoint {
    /// Admission control for listener-born connections, once per poll
    /// (`ListenConfig` describes the policy): counts the undecided requests,
    /// evicts a source's oldest handshaking connections beyond its share
    /// (at once under load, after the loaded handshake time otherwise),
    /// evicts the oldest
    /// handshaking ones over the total, and under load those past the
    /// shorter handshake time. A connection with bytes waiting in its socket
    /// is not handshaking here: its CONNECT, perhaps, is read next and
    /// answered (§6.4).
    pub(super) fn admit(&mut self, t: Instant, sockets: &mut SocketSet<'_>) {
        self.admission_at = None;
        for l in &mut self.listeners {
            l.undecided = 0;
            l.handshaking = 0;
        }
        // Only connections the application has not taken can be handshaking
        // or undecided: prune the others from `waiting` as they are met.
        let conns = &self.conns;
        self.waiting.retain(|&i| {
            conns[i].as_deref().is_some_and(|c| {
                c.listener_born() && (c.phase == Phase::Pending || Self::syn_paused(c.phase))
            })
        });
        // A slot freed and taken again may be listed twice: once is enough.
        self.waiting.sort_unstable();
        self.waiting.dedup();
        if self.waiting.is_empty() {
            // Nothing handshaking or undecided: the common case, and free.
            return;
        }
        // (listener, born, source, index) of every handshaking connection;
        // the lists are the endpoint's scratch, so a poll allocates nothing.
        let mut scratch = core::mem::take(&mut self.scratch);
        let Scratch {
            handshaking,
            kept,
            evictions,
            ..
        } = &mut scratch;
        handshaking.clear();
        evictions.clear();
        for &index in &self.waiting {
            let Some(c) = self.conns[index].as_deref() else {
                continue;
            };
            let Some(l) = c.listener() else { continue };
            // Undecided: reported to the application and still waiting for it
            // (a request the decision timer rejected is no longer counted).
            if c.phase == Phase::Pending
                && c.request().is_some()
                && matches!(c.session.state(), State::ConnectReceived | State::Deferred)
            {
                self.listeners[l].undecided += 1;
            }
            // A SYN-ACK held by SO_CONDITIONAL_ACCEPT's `Defer` is
            // handshaking too: its caller has not even completed TCP's
            // handshake, and its own deferral time alone let SYNs that never
            // complete (spoofed) fill every slot. Bytes waiting in its
            // socket (its CONNECT, perhaps, which the visit after this will
            // read) exempt a connection from both bounds: a caller whose
            // request arrived is answered, REJECT (`BUSY`) if there is no
            // room for it, never evicted (§6.4).
            let held = Self::syn_paused(c.phase) && c.aborted().is_none();
            if held
                || c.phase == Phase::Pending
                    && c.session.state() == State::AwaitConnect
                    && c.aborted().is_none()
                    && c.socket()
                        .is_none_or(|h| sockets.get::<tcp::Socket>(h).recv_queue() == 0)
            {
                self.listeners[l].handshaking += 1;
                handshaking.push((l, c.born(), c.remote().map(|r| r.addr), index));
            }
        }
        // Per source: beyond the share, the oldest go, each once it has had
        // the loaded handshake time (at once under load). A source's
        // silent connections (a host that opened them and went quiet, or
        // the callers behind one NAT) thus give way to its newer callers,
        // whose CONNECT may be held up by a lost segment for seconds,
        // instead of holding the address for the whole handshake time;
        // and an honest burst from one address (a gateway, a host opening
        // many sessions), whose CONNECTs arrive one round trip after the
        // TCP handshake, is answered (REJECT `BUSY` if there is no room),
        // not evicted (§6.4). Grouped by sorting on (listener, source,
        // age), O(n log n): counting, for each, the older ones of its
        // source was quadratic in what one address holds.
        handshaking.sort_unstable_by_key(|&(l, born, source, index)| (l, source, born, index));
        let mut start = 0;
        while start < handshaking.len() {
            let (l, _, source, _) = handshaking[start];
            let end = start
                + handshaking[start..]
                    .iter()
                    .take_while(|h| h.0 == l && h.2 == source)
                    .count();
            let cfg = self.listeners[l].config;
            let loaded = self.listeners[l].handshaking * 2 >= cfg.max_handshaking;
            let mut excess = match source {
                Some(_) => (end - start).saturating_sub(cfg.max_per_source),
                None => 0,
            };
            for h in &mut handshaking[start..end] {
                if excess == 0 {
                    break;
                }
                let grace_end = h.1 + cfg.loaded_handshake_timeout;
                if !loaded && t < grace_end {
                    // The younger ones are younger still: wake up when this
                    // one's grace ends (nothing else may wake the endpoint).
                    self.admission_at =
                        Some(self.admission_at.map_or(grace_end, |a| a.min(grace_end)));
                    break;
                }
                evictions.push((h.3, PhaseEvent::EvictedBeyondShare));
                // Marked, and dropped from the list below.
                h.0 = usize::MAX;
                excess -= 1;
            }
            start = end;
        }
        handshaking.retain(|h| h.0 != usize::MAX);
        // Oldest first.
        handshaking.sort_unstable_by_key(|&(l, born, _, index)| (l, born, index));
        let mut start = 0;
        while start < handshaking.len() {
            let l = handshaking[start].0;
            let end = start + handshaking[start..].iter().take_while(|h| h.0 == l).count();
            let group = &handshaking[start..end];
            let cfg = self.listeners[l].config;
            kept.clear();
            for &(_, born, _, index) in group {
                kept.push((born, index));
            }
            // Over the total: the oldest go; under load, those past the
            // shorter handshake time too.
            let mut over = kept.len().saturating_sub(cfg.max_handshaking);
            let loaded = kept.len() * 2 >= cfg.max_handshaking;
            for &(born, index) in kept.iter() {
                // A held SYN-ACK counts against the bounds (above), but its
                // time is the deferral the application chose, bounded by
                // the SYN-defer timeout: the loaded handshake time starts
                // when the SYN-ACK is released (`Link::restart_handshake`),
                // as the session's handshake timer does.
                let held = self.conns[index]
                    .as_deref()
                    .is_some_and(|c| Self::syn_paused(c.phase));
                let grace_end = born + cfg.loaded_handshake_timeout;
                if loaded && !held && t < grace_end && over == 0 {
                    self.admission_at =
                        Some(self.admission_at.map_or(grace_end, |a| a.min(grace_end)));
                }
                if over > 0 || (loaded && !held && t >= grace_end) {
                    over = over.saturating_sub(1);
                    evictions.push((index, PhaseEvent::Evicted));
                }
            }
            start = end;
        }
        for &(index, why) in evictions.iter() {
            self.evict(index, why, t, sockets);
        }
        self.scratch = scratch;
    }

    /// Ends a handshaking connection the application never saw: with
    /// ABORT(`HANDSHAKE_TIMEOUT`) and RST once TCP is up, with RST before.
    fn evict(&mut self, index: usize, why: PhaseEvent, t: Instant, sockets: &mut SocketSet<'_>) {
        let Some(c) = self.conns[index].as_deref_mut() else {
            return;
        };
        phase::apply(&mut c.phase, why, &mut self.stats);
        let _g = conn_span(c).entered();
        debug!(remote = ?c.remote(), "evicting a connection that has not sent CONNECT");
        // Its ABORT and close reason need parts: from the pool, which the
        // next visit refills (an eviction storm is the high-load path).
        c.session.supply(&mut self.spares);
        let established = c
            .socket()
            .is_some_and(|h| TcpConnection::is_established(sockets.get::<tcp::Socket>(h)));
        // Visited in this poll (admission runs before the visits are
        // gathered): its ABORT goes out, or its aborted socket is tended.
        self.poked.poke(index);
        if established {
            let _ = c.session.abort(t, Reason::HANDSHAKE_TIMEOUT, None);
            while c.session.poll_event().is_some() {}
        } else {
            if let Some(h) = c.socket() {
                sockets.get_mut::<tcp::Socket>(h).abort();
                c.set_aborted(t);
            }
            Self::end_unseen(c, t);
        }
    }

    /// The one place a slot is freed: its socket is gone, its session has
    /// nothing left to do, every event queued for it was delivered (or
    /// dropped, for a released handle), and nobody holds its handle.
    pub(super) fn try_free(&mut self, index: usize) {
        let Some(c) = self.conns[index].as_deref() else {
            return;
        };
        // Anything but `Owned` is nobody's: released, refused, or never seen
        // by the application (pending, or a SYN-ACK still held).
        let unowned = c.phase != Phase::Owned;
        if unowned && c.socket().is_none() && c.session.is_drained() && c.queued_events() == 0 {
            if let Some(mut c) = self.conns[index].take() {
                // Its session's parts and its box serve the next connections;
                // what else it holds on the heap goes now, not at reuse.
                c.session.recycle(&mut self.spares);
                c.clear_waiting();
                if self.spare_conns.len() < self.config.spare_parts {
                    self.spare_conns.push(c);
                }
            }
            self.generations[index] = self.generations[index].wrapping_add(1);
            self.free.push(index);
            self.live -= 1;
            self.timers.set(index, None);
        }
    }

    /// Listening sockets that left LISTEN became connections.
    pub(super) fn take_listeners(&mut self, id: usize, t: Instant, sockets: &mut SocketSet<'_>) {
        let mut i = 0;
        while i < self.listeners[id].armed.len() {
            let h = self.listeners[id].armed[i];
            let s = sockets.get::<tcp::Socket>(h);
            if s.state() == tcp::State::Listen {
                i += 1;
                continue;
            }
            self.listeners[id].armed.swap_remove(i);
            let (local, remote) = (s.local_endpoint(), s.remote_endpoint());
            self.stats.accepted_tcp += 1;
            let sid = self.next_id();
            let session = {
                match Session::callee(self.session_config.clone(), sid, t) {
                    Ok(s) => s,
                    Err(_) => {
                        // Cannot happen (the configuration was validated by
                        // `Endpoint::new`); never leave a socket unmanaged.
                        sockets.remove(h);
                        continue;
                    }
                }
            };
            #[cfg(feature = "conditional-accept")]
            let held =
                self.listeners[id].tcp_condition.is_some() && s.state() == tcp::State::SynReceived;
            #[cfg(not(feature = "conditional-accept"))]
            let held = false;
            let phase = if held {
                Phase::SynPaused
            } else {
                Phase::Pending
            };
            trace!(?local, ?remote, "listener taken");
            let fresh = Fresh {
                socket: h,
                session,
                phase,
                listener: Some(id),
                local,
                remote,
            };
            let h = self.new_conn(fresh, t);
            self.waiting.push(h.index as usize);
        }
    }

    /// A lost SYN-ACK plus a re-armed listener gives two half-open sockets for
    /// one 4-tuple; smoltcp hands every segment to the lower slot, so the
    /// other one would retransmit SYN-ACKs forever. Remove it without a RST
    /// (a RST would kill the caller's real connection).
    pub(super) fn drop_duplicate_half_opens(&mut self, t: Instant, sockets: &mut SocketSet<'_>) {
        // Only a half-open socket can be a stale duplicate, and half-open
        // sockets are among the waiting few: find them first, so that an
        // endpoint with none pays nothing. The twin that shadows one may be
        // any listener-born connection (accepted ones too): only then are
        // all connections looked at, once.
        let listener_born = |c: &Conn| c.listener_born() && c.aborted().is_none();
        if self.waiting.is_empty() {
            return;
        }
        let mut scratch = core::mem::take(&mut self.scratch);
        let Scratch {
            half_open, evict, ..
        } = &mut scratch;
        half_open.clear();
        evict.clear();
        for &index in &self.waiting {
            let Some(c) = self.conns[index].as_deref() else {
                continue;
            };
            let (Some(l), Some(r), Some(h)) = (c.local(), c.remote(), c.socket()) else {
                continue;
            };
            if listener_born(c) && sockets.get::<tcp::Socket>(h).state() == tcp::State::SynReceived
            {
                half_open.push((index, l, r, h));
            }
        }
        // Every segment for a tuple goes to the lowest slot holding it: if
        // another connection has a lower one, a half-open socket never
        // completes. And a half-open twin of a connection that is already
        // up (a duplicated or late SYN, taken by a spare listener ahead of
        // it in the set) would answer the caller's next ACK with a RST that
        // falls in the live connection's window: drop it first.
        //
        // One pass over the connections, each looked up among the
        // half-opens sorted by tuple: O(connections x log half-opens) per
        // poll, where asking every connection about every half-open was
        // quadratic (a SYN flood's thousands of half-opens against
        // thousands of connections: 66 % of a poll's own instructions at
        // 1 000 concurrent lifecycles, callgrind 2026-12-02).
        if half_open.is_empty() {
            // Waiting connections, none half-open: nothing can be shadowed.
            self.scratch = scratch;
            return;
        }
        half_open.sort_unstable_by_key(|&(_, l, r, _)| (l, r));
        for o in self.conns.iter().flatten() {
            let (Some(ol), Some(or), Some(oh)) = (o.local(), o.remote(), o.socket()) else {
                continue;
            };
            if !listener_born(o) {
                continue;
            }
            let first = half_open.partition_point(|&(_, l, r, _)| (l, r) < (ol, or));
            for &(index, _, _, h) in half_open[first..]
                .iter()
                .take_while(|&&(_, l, r, _)| (l, r) == (ol, or))
            {
                if oh == h {
                    continue;
                }
                // A twin that is up and young: this SYN was a copy of its
                // own (a caller reconnecting from the same port later, after
                // a reboot, must get through instead).
                use tcp::State::*;
                let up = matches!(
                    sockets.get::<tcp::Socket>(oh).state(),
                    Established | FinWait1 | FinWait2 | CloseWait | Closing | LastAck
                );
                if oh < h || (up && t < o.born() + DUPLICATE_SYN_WINDOW) {
                    evict.push(index);
                }
            }
        }
        // A half-open shadowed by several twins is listed once.
        evict.sort_unstable();
        evict.dedup();
        for &index in evict.iter() {
            if let Some(c) = self.conns[index].as_deref_mut() {
                debug!(remote = ?c.remote(), "dropping duplicate half-open socket");
                c.session.supply(&mut self.spares);
                if let Some(h) = c.take_socket() {
                    sockets.remove(h);
                }
                Self::end_unseen(c, t);
                self.stats.duplicates_dropped += 1;
            }
            self.try_free(index);
        }
        self.scratch = scratch;
    }

    /// Ends the session of a connection the application never saw, whose
    /// transport is gone: it drains at once.
    fn end_unseen(c: &mut Conn, t: Instant) {
        c.session
            .handle_transport_closed(t, bookend_session::TransportClosed::Reset);
        while c.session.poll_event().is_some() {}
        while c.session.poll_transport_action().is_some() {}
    }

    /// Whether a listener-born socket is no longer the connection it was
    /// taken for: smoltcp 0.14 puts a socket reset in SYN-RECEIVED back into
    /// LISTEN (it would then take the next caller's SYN as a hidden,
    /// unmanaged listener, bypassing SO_CONDITIONAL_ACCEPT), and within one
    /// interface poll that listener may already hold another caller.
    fn lost_its_caller(c: &Conn, socket: &tcp::Socket<'_>) -> bool {
        c.listener_born()
            && (socket.state() == tcp::State::Listen
                || (socket.remote_endpoint().is_some() && socket.remote_endpoint() != c.remote()))
    }

    /// Drives one connection: the whole of its life after creation is here
    /// and in [`Endpoint::try_free`]. Visits it, then puts its next deadline
    /// in the timer heap and trims its session (its wakers are re-armed by
    /// `Endpoint::poll`), unless `Visit::Poll` found nothing at all.
    pub(super) fn poll_conn(
        &mut self,
        index: usize,
        t: Instant,
        sockets: &mut SocketSet<'_>,
        why: Visit,
    ) {
        let changed = self.visit_conn(index, t, sockets);
        // A poll's visit that found nothing (a neighbour in a woken waker
        // group, or a wake-up that brought no news) changed nothing: its
        // deadline stands, safety net included, so it costs the idle check
        // alone (skipping the reschedule and trim took a sequential
        // lifecycle's instructions from 268.9 M to 268.0 M per 2 000,
        // callgrind). Not after a command, which may have armed a timer
        // (`close` after an answered-for DISCONNECT arms linger and queues
        // nothing: `a_close_that_only_arms_linger_is_scheduled`) or taken
        // spare parts; not if the timer heap popped its deadline to bring
        // it here; not with output waiting (below).
        if why == Visit::Poll
            && !changed
            && self.timers.get(index).is_some()
            && !self.conns[index]
                .as_deref()
                .is_some_and(|c| c.session.has_output())
        {
            return;
        }
        // The visit's own decisions (a condition function's ACCEPT or REJECT,
        // an eviction) queue frames after the pump ran: hand them to TCP now.
        // What TCP cannot take yet goes when the socket wakes (ACKs).
        if self.conns[index].as_deref().is_some_and(|c| {
            c.session.has_output() && c.socket().is_some() && c.aborted().is_none()
        }) {
            if let Some(c) = self.conns[index].as_deref_mut() {
                c.set_last_tcp_state(None);
            }
            self.visit_conn(index, t, sockets);
        }
        if let Some(c) = self.conns[index].as_deref_mut() {
            c.session.trim(&mut self.spares);
        }
        self.reschedule(index, Some(t));
    }

    /// Visits a connection; false if it found nothing at all to do (the
    /// idle check passed and no acknowledgement needed bookkeeping), so that
    /// nothing about it changed.
    fn visit_conn(&mut self, index: usize, t: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let Some(c) = self.conns[index].as_deref_mut() else {
            return true;
        };
        let _g = conn_span(c).entered();
        let handle = Handle {
            index: index as u32,
            generation: c.generation(),
        };

        if let Some(h) = c.socket() {
            if let Some(at) = c.aborted() {
                // The RST is out once smoltcp has forgotten the 4-tuple.
                let socket = sockets.get::<tcp::Socket>(h);
                if socket.remote_endpoint().is_none() || t >= at + self.config.abort_flush_timeout {
                    sockets.remove(h);
                    c.take_socket();
                }
            } else if Self::lost_its_caller(c, sockets.get::<tcp::Socket>(h)) {
                c.session.supply(&mut self.spares);
                let socket = sockets.get_mut::<tcp::Socket>(h);
                debug!(state = %socket.state(), "reset in SYN-RECEIVED: dropping the socket");
                if socket.state() == tcp::State::Listen {
                    // A bare listener: nothing to send.
                    sockets.remove(h);
                    c.take_socket();
                } else {
                    // It took another caller's SYN: refuse that one, which retries.
                    socket.abort();
                    c.set_aborted(t);
                }
                phase::apply(&mut c.phase, PhaseEvent::HalfOpenReset, &mut self.stats);
                c.session
                    .handle_transport_closed(t, bookend_session::TransportClosed::Reset);
            } else {
                let socket = sockets.get_mut::<tcp::Socket>(h);
                // Idle: nothing arrived, nothing to send, no timer due, and
                // TCP's state unchanged. Skipping keeps poll cost low with
                // many idle sessions.
                let state = socket.state();
                let quiet = c.last_tcp_state() == Some(state)
                    && socket.recv_queue() == 0
                    && c.session.send_queue() == 0
                    && !c.connect_pending()
                    && !c.link.reset_pending()
                    && c.link.next_at().is_none_or(|d| d > t)
                    && c.session.poll_timeout().is_none_or(|d| d > t)
                    && c.session.pending_events() == 0
                    && !c.want_writable()
                    && c.tcp_done_by().is_none_or(|d| d > t)
                    && !Self::syn_paused(c.phase);
                // The user timeout is taken over from smoltcp by a full
                // visit (below) once the session is connected with keepalive.
                let timeout_settled = c.link.owns_timeout()
                    || c.session.options().keepalive_ms == 0
                    || !c.session.is_connected();
                if quiet && timeout_settled {
                    // An acknowledgement that ends (or a wait that starts) a
                    // pause of the session's peer timers needs only the
                    // pump's bookkeeping of it; then, unless that made a
                    // timer due, there is nothing else to do.
                    if c.link.hold(socket, t) == c.session.transport_pending() {
                        return false;
                    }
                    c.link.acknowledged(&mut c.session, socket, t);
                    c.link.note_unacknowledged(socket);
                    if c.session.poll_timeout().is_none_or(|d| d > t)
                        && c.link.next_at().is_none_or(|d| d > t)
                    {
                        return true;
                    }
                }
                c.set_last_tcp_state(Some(state));
                c.learn_local(socket.local_endpoint());
                #[cfg(feature = "conditional-accept")]
                if let Phase::SynPaused = c.phase {
                    let by = c.born() + self.syn_defer_timeout;
                    let decision = match (c.listener(), c.local(), c.remote()) {
                        (Some(l), Some(local), Some(remote))
                            if socket.state() == tcp::State::SynReceived =>
                        {
                            match self.listeners[l].tcp_condition.as_mut() {
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
                            phase::apply(&mut c.phase, PhaseEvent::SynReleased, &mut self.stats);
                            // The handshake counts from here, not from the
                            // SYN: for the session's handshake timer and for
                            // the listener's admission control alike (one
                            // notion of when it started).
                            c.session.handle_transport_established(t);
                            c.link.restart_handshake(t);
                        }
                        TcpDecision::Refuse => {
                            debug!("SO_CONDITIONAL_ACCEPT refused: RST");
                            socket.abort();
                            c.set_aborted(t);
                            phase::apply(&mut c.phase, PhaseEvent::SynRefused, &mut self.stats);
                            c.session.supply(&mut self.spares);
                            Self::end_unseen(c, t);
                            return true;
                        }
                        TcpDecision::Defer => return true,
                    }
                }
                // Work to do (a SYN-ACK held on `Defer` has none and took
                // nothing): spare parts first, so that it allocates nothing.
                c.session.supply(&mut self.spares);
                if c.connect_pending()
                    && c.session.state() == State::Idle
                    && TcpConnection::is_established(socket)
                {
                    c.send_connect(t);
                }
                let keepalive = c.session.options().keepalive_ms;
                if !c.link.owns_timeout() && c.session.is_connected() && keepalive > 0 {
                    // From here the pump keeps the user timeout, with the peer's
                    // PINGs as signs of life: smoltcp's own would make a peer's
                    // RST look like a time-out.
                    socket.set_timeout(None);
                    c.link.take_timeout(t);
                }
                // One pump moves everything that can move, in order (reads,
                // timers, sends, FIN or RST); it runs again, a bounded number
                // of times, only if something is left that a pump takes: a
                // timer due, or output with room for it in TCP. (Always
                // running a second one cost 9 pumps per lifecycle that never
                // moved anything, measured 2026-12-02.)
                for _ in 0..4 {
                    if !c
                        .link
                        .pump(&mut c.session, socket, t, self.config.abort_flush_timeout)
                    {
                        break;
                    }
                    let more = c.session.poll_timeout().is_some_and(|d| d <= t)
                        || (c.session.has_output() && socket.send_queue() < socket.send_capacity());
                    if !more {
                        break;
                    }
                }
                if c.session.is_connected() && keepalive > 0 {
                    c.link
                        .set_liveness(core::time::Duration::from_millis(3 * u64::from(keepalive)));
                }
                c.link.note_unacknowledged(socket);
                // The state the pump left (its own FIN or RST moved it): only
                // a change from here is news (smoltcp wakes the socket for
                // our own close too, which needs no second visit).
                c.set_last_tcp_state(Some(socket.state()));
                if c.link.aborted() {
                    c.set_aborted(t);
                } else if c.want_writable()
                    && c.session.send_queue() == 0
                    && socket.send_capacity() - socket.send_queue()
                        >= bookend_session::MIN_DIRECT_CHUNK + bookend_session::MAX_FRAME_OVERHEAD
                {
                    // FD_WRITE once a frame fits again: not while the room is
                    // smaller than a send could use (that spun on Writable).
                    c.set_want_writable(false);
                    if c.phase == Phase::Owned {
                        c.post(
                            &mut self.events,
                            handle,
                            EndpointEvent::Session(Event::Writable),
                        );
                    }
                }
            }
        } else {
            c.session.supply(&mut self.spares);
        }

        // Events: the application's, or the condition function's.
        while let Some(event) = c.session.poll_event() {
            if let Event::Closed(reason @ CloseReason::ProtocolError { .. }) = &event
                && reason.is_integrity_failure()
            {
                // Counted where detected, so the peer's end is not counted twice.
                self.stats.integrity_failures += 1;
            }
            match (event, c.phase) {
                (Event::ConnectRequest(req), Phase::Pending) => {
                    let request = IncomingRequest {
                        handle,
                        caller: c.endpoints_as_kept().1,
                        callee: c.endpoints_as_kept().0,
                        caller_data: req.caller_data,
                        proposed: req.proposed,
                        grant: req.grant,
                    };
                    let decision = c
                        .listener()
                        .and_then(|l| self.listeners[l].condition.as_mut())
                        .map(|f| f(&request));
                    let would_wait = matches!(decision, None | Some(Decision::Defer));
                    let full = c.listener().is_some_and(|l| {
                        let l = &self.listeners[l];
                        l.undecided >= l.config.max_pending
                    });
                    if would_wait && full {
                        // Nobody can take it now: the caller learns why (§6.4).
                        debug!("undecided requests at their bound: REJECT(BUSY)");
                        let _ = c.session.reject(t, Reason::BUSY, None);
                        phase::apply(&mut c.phase, PhaseEvent::Busy, &mut self.stats);
                        continue;
                    }
                    match decision {
                        Some(Decision::Accept {
                            callee_data,
                            granted,
                        }) => match c.session.accept(t, callee_data.as_deref(), granted) {
                            Ok(()) => {
                                phase::apply(&mut c.phase, PhaseEvent::Accepted, &mut self.stats);
                                c.post(&mut self.events, handle, EndpointEvent::Accepted(request));
                            }
                            Err(e) => {
                                debug!(error = %e, "condition function's accept refused; rejecting");
                                let _ = c.session.reject(t, Reason::REJECTED, None);
                                phase::apply(&mut c.phase, PhaseEvent::Rejected, &mut self.stats);
                            }
                        },
                        Some(Decision::Reject { reason, data }) => {
                            if c.session.reject(t, reason, data.as_deref()).is_err() {
                                let _ = c.session.reject(t, reason, None);
                            }
                            phase::apply(&mut c.phase, PhaseEvent::Rejected, &mut self.stats);
                        }
                        Some(Decision::Defer) | None => {
                            if decision.is_some() {
                                let _ = c.session.defer();
                            }
                            if let Some(l) = c.listener() {
                                self.listeners[l].undecided += 1;
                            }
                            c.await_decision(request.clone());
                            c.post(&mut self.events, handle, EndpointEvent::Incoming(request));
                        }
                    }
                }
                (event, Phase::Owned) => {
                    c.post(&mut self.events, handle, EndpointEvent::Session(event))
                }
                (Event::Closed(reason), _) => {
                    trace!(%reason, "closed in the background");
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
                    if c.phase == Phase::Released && unconfirmed {
                        // The application closed and moved on; the close was
                        // never confirmed by the peer's FIN (§5.4): count it,
                        // so that it is visible.
                        self.stats.unconfirmed_closes += 1;
                    }
                    if c.phase == Phase::Pending {
                        if c.request().is_some() {
                            c.clear_waiting();
                            // The application was told of this request: tell it it
                            // is gone. The slot stays until this is delivered.
                            c.post(
                                &mut self.events,
                                handle,
                                EndpointEvent::Session(Event::Closed(reason.clone())),
                            );
                        }
                        // Refused by whoever ended it (the caller, a timer:
                        // the decision timer's REJECT included), counted.
                        phase::apply(&mut c.phase, PhaseEvent::EndedUndecided, &mut self.stats);
                    }
                }
                _ => {}
            }
        }

        // Release the TCP socket once the session is done and TCP has finished
        // (or would not finish in time).
        if let Some(h) = c.socket()
            && c.aborted().is_none()
            && c.session.is_drained()
        {
            let socket = sockets.get_mut::<tcp::Socket>(h);
            if TcpConnection::is_finished(socket) || c.link.gone() {
                // TIME-WAIT is cut short here; outgoing ports stay quarantined.
                sockets.remove(h);
                c.take_socket();
                c.set_tcp_done_by(None);
            } else {
                // The FIN exchange gets `tcp_close_timeout` from the
                // session's end or from the last acknowledgement, whichever
                // is later; while bytes are still unacknowledged, as long as
                // the TCP user timeout allows (issue 11, item 2: what TCP can
                // still deliver is not cut short). A peer that stops
                // acknowledging (zero window, gone) gets no extension.
                let close = self.config.tcp_close_timeout;
                let first = c.tcp_done_by().unwrap_or(t + close);
                let grace = if TcpConnection::unacknowledged(socket) {
                    self.config.give_up_after().max(close)
                } else {
                    close
                };
                let by = first.max(c.link.delivered_at() + grace);
                c.set_tcp_done_by(Some(by));
                if t >= by {
                    debug!(state = %socket.state(), "TCP close did not finish: aborting");
                    socket.abort();
                    c.set_aborted(t);
                    self.stats.close_timeouts += 1;
                }
            }
        }
        if c.socket().is_none()
            && let Some(port) = c.take_ephemeral_port()
        {
            self.ports.release(port, t);
        }

        self.try_free(index);
        true
    }
}
