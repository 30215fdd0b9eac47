//! Listener policy: taking connections from listening sockets, admission
//! control (the handshaking and undecided bounds of `ListenConfig`, §6.4),
//! eviction, and dropping duplicate half-open sockets.

use alloc::vec::Vec;

use crate::fmt::{debug, trace};
use bookend_session::{Instant, Reason, Session, State};
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;

use super::{Conn, Endpoint, Fresh, Phase, PhaseEvent, Scratch, phase};
use crate::transport::TcpConnection;

/// (listener, born, source, index) of a handshaking connection.
type Handshaking = (usize, Instant, Option<smoltcp::wire::IpAddress>, usize);

/// How long after a connection came up a SYN for the same 4-tuple is taken
/// for a copy of its own (one of its SYNs duplicated or delayed in the
/// network) rather than a caller reconnecting: well past a network's delay,
/// well short of a device's reboot. Counted from when TCP came up, not from
/// the first SYN: a handshake whose SYN-ACKs were lost can take longer than
/// this, and its SYNs' copies arrive after it.
const DUPLICATE_SYN_WINDOW: core::time::Duration = core::time::Duration::from_secs(10);

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
        self.count_waiting(handshaking, sockets);
        self.evict_beyond_share(handshaking, evictions, t);
        self.evict_over_total(handshaking, kept, evictions, t);
        for &(index, why) in evictions.iter() {
            self.evict(index, why, t, sockets);
        }
        self.scratch = scratch;
    }

    /// Admission control, step 1: counts each listener's undecided requests
    /// and lists its handshaking connections (listener, born, source, index).
    fn count_waiting(&mut self, handshaking: &mut Vec<Handshaking>, sockets: &SocketSet<'_>) {
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
    }

    /// Admission control, step 2 (§6.4 rule 2): a source's oldest beyond its
    /// share go; they leave `handshaking`.
    fn evict_beyond_share(
        &mut self,
        handshaking: &mut Vec<Handshaking>,
        evictions: &mut Vec<(usize, PhaseEvent)>,
        t: Instant,
    ) {
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
        //
        // Half-open and held connections go before established ones: SYNs
        // spoofed from a caller's address never complete, and must not push
        // out its real connection, established and waiting for a CONNECT a
        // lost segment holds up.
        let conns = &self.conns;
        let up = |index: usize| {
            conns[index]
                .as_deref()
                .is_some_and(|c| c.link.established())
        };
        handshaking
            .sort_unstable_by_key(|&(l, born, source, index)| (l, source, up(index), born, index));
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
                    // The ones after it go after it: wake up when this one's
                    // grace ends (nothing else may wake the endpoint).
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
    }

    /// Admission control, steps 3 and 4 (§6.4): over the total the oldest go;
    /// under load, those past the loaded handshake time too.
    fn evict_over_total(
        &mut self,
        handshaking: &mut [Handshaking],
        kept: &mut Vec<(Instant, usize)>,
        evictions: &mut Vec<(usize, PhaseEvent)>,
        t: Instant,
    ) {
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
    }

    /// Ends a handshaking connection the application never saw: with
    /// ABORT(`HANDSHAKE_TIMEOUT`) and RST once TCP is up, with RST before.
    fn evict(&mut self, index: usize, why: PhaseEvent, t: Instant, sockets: &mut SocketSet<'_>) {
        let Some(c) = self.conns[index].as_deref_mut() else {
            return;
        };
        phase::apply(&mut c.phase, why, &mut self.stats);
        debug!(
            "session {}: evicting {:?}, which has not sent CONNECT",
            c.session.id(),
            c.remote()
        );
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
            c.end_unseen(t);
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
            let mut session = {
                match Session::callee(self.session_config.clone(), sid, t) {
                    Ok(s) => s,
                    Err(_) => {
                        // Cannot happen (the configuration was validated by
                        // `Endpoint::new`); never leave a socket unmanaged.
                        self.tcp.release(sockets, h);
                        continue;
                    }
                }
            };
            let buffered = self.attach_buffers(&mut session, None);
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
            trace!(
                "session {}: listener at {:?} taken by {:?}",
                sid, local, remote
            );
            let fresh = Fresh {
                socket: h,
                session,
                phase,
                listener: Some(id),
                local,
                remote,
            };
            let h = self.new_conn(fresh, t);
            if buffered {
                self.waiting.push(h.index as usize);
            } else {
                self.refuse_without_buffers(h.index as usize, t, sockets);
            }
        }
    }

    /// A connection taken from a listener when no provided session buffers
    /// were free: reset at once, like a SYN refused by SO_CONDITIONAL_ACCEPT,
    /// rather than served by a session that could not hold what its limits
    /// allow. Its slot lives until the RST is out, as every aborted one's.
    fn refuse_without_buffers(&mut self, index: usize, t: Instant, sockets: &mut SocketSet<'_>) {
        let Some(c) = self.conns[index].as_deref_mut() else {
            return;
        };
        debug!(
            "session {}: no session buffers free: {:?} reset",
            c.session.id(),
            c.remote()
        );
        phase::apply(&mut c.phase, PhaseEvent::NoSessionBuffers, &mut self.stats);
        if let Some(h) = c.socket() {
            sockets.get_mut::<tcp::Socket>(h).abort();
            c.set_aborted(t);
        }
        c.end_unseen(t);
        self.poked.poke(index);
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
        // poll, where asking every connection about every half-open is
        // quadratic (a SYN flood's thousands of half-opens against
        // thousands of connections).
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
                if oh < h || (up && copy_of_young_twin(o.link.up_at(), t)) {
                    evict.push(index);
                }
            }
        }
        // A half-open shadowed by several twins is listed once.
        evict.sort_unstable();
        evict.dedup();
        for &index in evict.iter() {
            if let Some(c) = self.conns[index].as_deref_mut() {
                debug!(
                    "session {}: dropping the duplicate half-open socket of {:?}",
                    c.session.id(),
                    c.remote()
                );
                c.session.supply(&mut self.spares);
                if let Some(h) = c.take_socket() {
                    self.tcp.release(sockets, h);
                }
                c.end_unseen(t);
                self.stats.duplicates_dropped += 1;
            }
            self.try_free(index);
        }
        self.scratch = scratch;
    }
}

/// Whether a SYN taken at `t` beside a twin that is up is a copy of the
/// twin's own (a duplicate or late SYN, RFC 9293 §3.10.7.4): the twin came
/// up within [`DUPLICATE_SYN_WINDOW`], or came up this very poll and no
/// pump has seen it yet (`up_at` unknown: it is now). A caller reconnecting
/// from the same port later, after a reboot, must get through instead.
fn copy_of_young_twin(up_at: Option<Instant>, t: Instant) -> bool {
    t < up_at.unwrap_or(t) + DUPLICATE_SYN_WINDOW
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + core::time::Duration::from_millis(ms)
    }

    #[test]
    fn a_twin_up_but_not_yet_pumped_counts_as_young() {
        assert!(copy_of_young_twin(None, at(50_000)));
    }

    #[test]
    fn the_duplicate_syn_window_counts_from_when_the_twin_came_up() {
        let window = DUPLICATE_SYN_WINDOW.as_millis() as u64;
        let up = at(15_000);
        assert!(copy_of_young_twin(Some(up), at(15_000 + window - 1)));
        assert!(!copy_of_young_twin(Some(up), at(15_000 + window)));
    }
}
