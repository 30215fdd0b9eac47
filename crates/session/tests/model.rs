//! Two real sessions, model-checked exhaustively to a bound with stateright:
//! a caller and a callee joined by a transport that delivers each side's
//! bytes in order in any segmentation (one byte, or all that is in flight),
//! then its FIN or its RST; the applications' commands (send, disconnect
//! with data, close, abort, accept, reject, defer) and the timers' expiries
//! injected at any point. Every reachable state is checked against the
//! properties below (`docs/model-check.md` has the bounds and figures; the
//! larger run is `BOOKEND_MODEL=large cargo test --release -p
//! bookend-session --test model -- --nocapture`, and
//! `BOOKEND_MODEL_BOUND=BUDGET,DEPTH` picks any other).
//!
//! The checker needs to recognise a state seen before: a state is hashed and
//! compared through the sessions' `Debug` form, which prints every field of a
//! session (state, options in force, timers, queued bytes and events, the
//! disconnect data), so nothing that decides a session's future is left out.
//! The applications read everything as soon as it is readable (the model's
//! one simplification: a `close()` with data unread is covered by the
//! scenario tests, not here).

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use bookend_session::{
    CloseReason, Config, Event, Instant, Integrity, Mode, ModeOffer, Options, Reason, Session,
    State, TransportAction, TransportClosed,
};
use stateright::{Checker, Model, Property};

/// Which side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Caller,
    Callee,
}

/// One step of the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Action {
    /// The transport delivers this many of the bytes in flight to `Who`.
    Deliver(Who, usize),
    /// The peer's FIN reaches `Who` (after every byte before it).
    Fin(Who),
    /// The peer's RST reaches `Who`.
    Rst(Who),
    /// Time moves to the earliest timer of either side.
    Timer,
    /// The application of `Who` sends one DATA byte (a message in message
    /// mode).
    Send(Who),
    /// WSASendDisconnect: one byte of disconnect data from the caller, zero
    /// bytes from the callee.
    SendDisconnect(Who),
    /// closesocket.
    Close(Who),
    /// closesocket with linger {1, 0}: ABORT with a reason, then RST.
    Abort(Who),
    /// The callee's decision on the request.
    Accept,
    /// CF_REJECT with a reason and one byte of data.
    Reject,
    /// CF_DEFER.
    Defer,
}

/// One side: its session, what is in flight from it, and what its
/// application did and saw.
#[derive(Debug, Clone)]
struct Side {
    s: Session,
    /// Bytes handed to TCP and not yet delivered to the peer.
    in_flight: Vec<u8>,
    /// Our FIN follows `in_flight`.
    fin: bool,
    /// We reset: the peer gets RST (after what is in flight, or not).
    rst: bool,
    /// What the peer's FIN / RST did to us (delivered).
    got_fin: bool,
    got_rst: bool,
    /// Every byte this side ever handed to TCP.
    wire: Vec<u8>,
    /// DATA the application sent, and read.
    sent: Vec<u8>,
    read: Vec<u8>,
    /// Disconnect data sent and read (`None` inside: "no data").
    disc_sent: Option<Option<Vec<u8>>>,
    disc_read: Option<Option<Vec<u8>>>,
    /// Commands left to this application.
    budget: u8,
    /// The request reported to the callee's application, undecided.
    request: bool,
    /// The refusal the caller's application saw: reason and reject data.
    refused: Option<(Reason, Option<Vec<u8>>)>,
    closed: Option<CloseReason>,
}

/// Both sessions and the time.
#[derive(Debug, Clone)]
struct World {
    caller: Side,
    callee: Side,
    now: u64,
}

impl World {
    fn side(&mut self, w: Who) -> &mut Side {
        match w {
            Who::Caller => &mut self.caller,
            Who::Callee => &mut self.callee,
        }
    }

    fn peer(&mut self, w: Who) -> &mut Side {
        match w {
            Who::Caller => &mut self.callee,
            Who::Callee => &mut self.caller,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.now)
    }
}

/// The state as the checker compares it: everything `Debug` shows.
impl Hash for World {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let mut s = String::new();
        let _ = write!(s, "{self:?}");
        s.hash(h);
    }
}

impl PartialEq for World {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

impl Eq for World {}

/// The model: its configuration.
#[derive(Clone)]
struct Pair {
    mode: Mode,
    integrity: bool,
    /// Commands each application may issue.
    budget: u8,
}

impl Pair {
    fn options(&self) -> Options {
        Options {
            mode: self.mode,
            integrity: if self.integrity {
                Integrity::Crc32c
            } else {
                Integrity::None
            },
            ..Options::DEFAULT
        }
    }

    fn config(&self) -> Config {
        let mut c = Config::default();
        c.options = self.options();
        c.offered_modes = ModeOffer::Both;
        // Short timers: the checker's clock jumps from one to the next.
        c.connect_timeout = Duration::from_secs(2);
        c.handshake_timeout = Duration::from_secs(2);
        c.decision_timeout = Duration::from_secs(2);
        c.linger_timeout = Duration::from_secs(2);
        c
    }
}

fn side(s: Session, budget: u8) -> Side {
    Side {
        s,
        in_flight: Vec::new(),
        fin: false,
        rst: false,
        got_fin: false,
        got_rst: false,
        wire: Vec::new(),
        sent: Vec::new(),
        read: Vec::new(),
        disc_sent: None,
        disc_read: None,
        budget,
        request: false,
        refused: None,
        closed: None,
    }
}

/// After anything happened to a side: what it sends goes in flight, its
/// FIN or RST is noted, its events are acted on as its application would
/// (reading everything readable at once).
fn settle(x: &mut Side, now: Instant, message: bool) {
    while let Some(b) = x.s.poll_transmit_bytes(now, 1 << 16) {
        x.in_flight.extend_from_slice(&b);
        x.wire.extend_from_slice(&b);
    }
    while let Some(a) = x.s.poll_transport_action() {
        match a {
            TransportAction::Fin => x.fin = true,
            TransportAction::Reset => x.rst = true,
        }
    }
    while let Some(e) = x.s.poll_event() {
        match e {
            Event::ConnectRequest(_) => x.request = true,
            Event::Refused { reason, data } => {
                x.refused = Some((reason, data.map(|d| d.to_vec())));
            }
            Event::Closed(r) => x.closed = Some(r),
            Event::PeerDisconnected => {
                let mut buf = [0u8; 64];
                if let Ok(d) = x.s.recv_disconnect(&mut buf) {
                    x.disc_read = Some(d.map(|n| buf[..n].to_vec()));
                }
            }
            _ => {}
        }
    }
    let mut buf = [0u8; 64];
    loop {
        let got = if message {
            x.s.recv_message(&mut buf)
        } else {
            x.s.recv(&mut buf)
        };
        match got {
            Ok(0) if !message => break,
            Ok(n) => x.read.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
}

impl Model for Pair {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        let t = Instant::ZERO;
        let mut caller = Session::caller(self.config(), 1).unwrap();
        caller.connect(t, Some(b"c"), self.options()).unwrap();
        let callee = Session::callee(self.config(), 2, t).unwrap();
        let mut w = World {
            caller: side(caller, self.budget),
            callee: side(callee, self.budget),
            now: 0,
        };
        let message = self.mode == Mode::Message;
        settle(&mut w.caller, t, message);
        settle(&mut w.callee, t, message);
        vec![w]
    }

    fn actions(&self, w: &World, out: &mut Vec<Action>) {
        for who in [Who::Caller, Who::Callee] {
            let (me, peer) = match who {
                Who::Caller => (&w.caller, &w.callee),
                Who::Callee => (&w.callee, &w.caller),
            };
            // Deliveries towards `who`, from the peer.
            if !me.got_rst && !me.got_fin {
                if !peer.in_flight.is_empty() {
                    out.push(Action::Deliver(who, 1));
                    if peer.in_flight.len() > 1 {
                        out.push(Action::Deliver(who, peer.in_flight.len()));
                    }
                } else if peer.fin && !peer.rst {
                    out.push(Action::Fin(who));
                }
                if peer.rst {
                    out.push(Action::Rst(who));
                }
            }
            // The application's commands, within its budget, where its
            // session is still live.
            if me.budget > 0 && me.closed.is_none() && !me.rst {
                if me.s.is_connected() {
                    out.push(Action::Send(who));
                    out.push(Action::SendDisconnect(who));
                }
                out.push(Action::Close(who));
                out.push(Action::Abort(who));
            }
        }
        // The decision is not counted against the budget: every request gets
        // one.
        if w.callee.request {
            out.push(Action::Accept);
            out.push(Action::Reject);
            if w.callee.s.state() == State::ConnectReceived {
                out.push(Action::Defer);
            }
        }
        let next = [w.caller.s.poll_timeout(), w.callee.s.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if next.is_some() {
            out.push(Action::Timer);
        }
    }

    fn next_state(&self, last: &World, action: Action) -> Option<World> {
        let mut w = last.clone();
        let message = self.mode == Mode::Message;
        let now = w.now();
        let touched: &[Who] = match action {
            Action::Deliver(who, n) => {
                let bytes: Vec<u8> = w.peer(who).in_flight.drain(..n).collect();
                let me = w.side(who);
                let mut at = 0;
                // The session takes what it has room for; its application
                // reads everything at once, so room comes back.
                while at < bytes.len() {
                    let k = me.s.handle_bytes(now, &bytes[at..]);
                    at += k;
                    settle(me, now, message);
                    if k == 0 {
                        break;
                    }
                }
                if at < bytes.len() {
                    // Not taken: back in flight, first.
                    let rest = bytes[at..].to_vec();
                    let peer = w.peer(who);
                    peer.in_flight.splice(0..0, rest);
                }
                &[Who::Caller, Who::Callee]
            }
            Action::Fin(who) => {
                let me = w.side(who);
                me.got_fin = true;
                me.s.handle_transport_closed(now, TransportClosed::Fin);
                &[Who::Caller, Who::Callee]
            }
            Action::Rst(who) => {
                let me = w.side(who);
                me.got_rst = true;
                me.s.handle_transport_closed(now, TransportClosed::Reset);
                &[Who::Caller, Who::Callee]
            }
            Action::Timer => {
                let next = [w.caller.s.poll_timeout(), w.callee.s.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()?;
                w.now = next.total_micros().max(w.now);
                let now = w.now();
                w.caller.s.handle_timeout(now);
                w.callee.s.handle_timeout(now);
                &[Who::Caller, Who::Callee]
            }
            Action::Send(who) => {
                let me = w.side(who);
                me.budget -= 1;
                let byte = [b'0' + me.sent.len() as u8];
                let ok = if message {
                    me.s.send_message(&byte).is_ok()
                } else {
                    me.s.send(&byte).is_ok_and(|n| n == 1)
                };
                if ok {
                    me.sent.push(byte[0]);
                }
                &[Who::Caller, Who::Callee]
            }
            Action::SendDisconnect(who) => {
                // The caller's carries a byte, the callee's zero bytes: "no
                // data" (a close without it), zero-length data and data must
                // all arrive as they were sent (§2.2).
                let data: &[u8] = if who == Who::Caller { b"d" } else { b"" };
                let me = w.side(who);
                me.budget -= 1;
                if me.s.send_disconnect(now, Some(data)).is_ok() {
                    me.disc_sent = Some(Some(data.to_vec()));
                }
                &[Who::Caller, Who::Callee]
            }
            Action::Close(who) => {
                let me = w.side(who);
                me.budget = 0;
                // closesocket sends DISCONNECT without data if none was sent
                // (§5.4): "no data", not zero-length data.
                if me.s.is_connected() && me.disc_sent.is_none() {
                    me.disc_sent = Some(None);
                }
                me.s.close(now);
                &[Who::Caller, Who::Callee]
            }
            Action::Abort(who) => {
                let me = w.side(who);
                me.budget = 0;
                let _ = me.s.abort(now, Reason::APPLICATION_ABORT, Some(b"a"));
                &[Who::Caller, Who::Callee]
            }
            Action::Accept => {
                let me = &mut w.callee;
                me.request = false;
                let grant = me.s.options();
                let _ = me.s.accept(now, Some(b"w"), grant);
                &[Who::Caller, Who::Callee]
            }
            Action::Reject => {
                let me = &mut w.callee;
                me.request = false;
                let _ = me.s.reject(now, Reason::REJECTED, Some(b"r"));
                &[Who::Caller, Who::Callee]
            }
            Action::Defer => {
                let me = &mut w.callee;
                // Still to decide: the request stays the application's.
                let _ = me.s.defer();
                &[Who::Caller, Who::Callee]
            }
        };
        let now = w.now();
        for &who in touched {
            settle(w.side(who), now, message);
        }
        Some(w)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            // §5.4, §9: a graceful end on both sides means each read exactly
            // the DATA and the disconnect data the other sent, in order, once.
            Property::always("graceful ends deliver everything", |_, w: &World| {
                let graceful = |x: &Side| matches!(x.closed, Some(CloseReason::Graceful));
                !(graceful(&w.caller) && graceful(&w.callee))
                    || (w.caller.read == w.callee.sent
                        && w.callee.read == w.caller.sent
                        && w.caller.disc_read == w.callee.disc_sent
                        && w.callee.disc_read == w.caller.disc_sent)
            }),
            // §5.4: a side that ends gracefully had everything it sent read:
            // what was not read never ends gracefully on the sender's side.
            Property::always("a graceful sender's data was all read", |_, w: &World| {
                let ok = |x: &Side, peer: &Side| {
                    !matches!(x.closed, Some(CloseReason::Graceful)) || peer.read == x.sent
                };
                ok(&w.caller, &w.callee) && ok(&w.callee, &w.caller)
            }),
            // §5.5: no frame follows ABORT.
            Property::always("no frame follows ABORT", |_, w: &World| {
                after_abort(&w.caller.wire) == 0 && after_abort(&w.callee.wire) == 0
            }),
            // §3.3: REJECT's reason and data reach the caller.
            // What the callee's REJECT carried is what the caller's
            // application is told.
            Property::always("REJECT's reason and data are delivered", |_, w: &World| {
                w.caller.refused.is_none() || w.caller.refused == rejected(&w.callee.wire)
            }),
            // §7, liveness: from every reachable state, once both
            // applications close (the callee rejecting a request it holds)
            // and the transport delivers what it carries, both sessions
            // reach CLOSED, timers included.
            Property::always("every state can still end on both sides", |m, w: &World| {
                ends(m, w)
            }),
            Property::sometimes("both end gracefully", |_, w: &World| {
                matches!(w.caller.closed, Some(CloseReason::Graceful))
                    && matches!(w.callee.closed, Some(CloseReason::Graceful))
            }),
            Property::sometimes("the caller is refused", |_, w: &World| {
                matches!(w.caller.closed, Some(CloseReason::Refused { .. }))
            }),
            Property::sometimes("an abort is delivered", |_, w: &World| {
                matches!(w.callee.closed, Some(CloseReason::Aborted { .. }))
                    || matches!(w.caller.closed, Some(CloseReason::Aborted { .. }))
            }),
        ]
    }
}

/// Steps the drain of [`ends`] may take: far more than a close needs
/// (each side's DISCONNECT, FIN and the timers that bound them).
const DRAIN_STEPS: usize = 64;

/// Whether both sessions reach CLOSED from `w` when both applications close
/// and everything in flight is delivered, in a fixed order: the decision
/// first, then the closes, then whole deliveries, FINs, RSTs, and time.
fn ends(m: &Pair, w: &World) -> bool {
    let mut w = w.clone();
    let mut closed = [false, false];
    for _ in 0..DRAIN_STEPS {
        if w.caller.s.state() == State::Closed && w.callee.s.state() == State::Closed {
            return true;
        }
        let mut next = None;
        if w.callee.request {
            next = Some(Action::Reject);
        }
        for (i, who) in [Who::Caller, Who::Callee].into_iter().enumerate() {
            if next.is_none() && !closed[i] {
                closed[i] = true;
                next = Some(Action::Close(who));
            }
        }
        if next.is_none() {
            let mut actions = Vec::new();
            m.actions(&w, &mut actions);
            // Whole deliveries first (a one-byte one is offered first when
            // more than one byte is in flight), then FIN, RST and time.
            let whole = |a: &Action| match a {
                Action::Deliver(who, n) => {
                    let peer = match who {
                        Who::Caller => &w.callee,
                        Who::Callee => &w.caller,
                    };
                    *n == peer.in_flight.len()
                }
                Action::Fin(_) | Action::Rst(_) => true,
                _ => false,
            };
            next = actions
                .iter()
                .find(|a| whole(a))
                .or_else(|| actions.iter().find(|a| matches!(a, Action::Timer)))
                .cloned();
        }
        let Some(action) = next else {
            return false;
        };
        match m.next_state(&w, action) {
            Some(n) => w = n,
            None => return false,
        }
    }
    false
}

/// The reason and data of the first REJECT on the wire, if any.
fn rejected(wire: &[u8]) -> Option<(Reason, Option<Vec<u8>>)> {
    let mut at = 0;
    while wire.len() >= at + 6 {
        let (t, flags) = (wire[at], wire[at + 1]);
        let len = u32::from_be_bytes([wire[at + 2], wire[at + 3], wire[at + 4], wire[at + 5]]);
        let hl = bookend_wire::header_len(flags);
        let end = at + hl + len as usize;
        if end > wire.len() {
            return None;
        }
        if t == 0x03 {
            // The trailer, if sealed, is not the frame's layout (§2.5).
            let body = &wire[at + hl..end - if flags & 0x40 != 0 { 4 } else { 0 }];
            let reason = Reason(u16::from_be_bytes([body[0], body[1]]));
            let data = (flags & 0x01 != 0).then(|| body[2..].to_vec());
            return Some((reason, data));
        }
        at = end;
    }
    None
}

/// Bytes on the wire after the first complete ABORT frame.
fn after_abort(wire: &[u8]) -> usize {
    let mut at = 0;
    while wire.len() >= at + 6 {
        let (t, flags) = (wire[at], wire[at + 1]);
        let len = u32::from_be_bytes([wire[at + 2], wire[at + 3], wire[at + 4], wire[at + 5]]);
        let end = at + bookend_wire::header_len(flags) + len as usize;
        if end > wire.len() {
            break;
        }
        if t == 0x06 {
            return wire.len() - end;
        }
        at = end;
    }
    0
}

fn check(pair: Pair, depth: usize) -> (usize, usize) {
    let checker = pair.checker().target_max_depth(depth).spawn_bfs().join();
    checker.assert_properties();
    (checker.unique_state_count(), checker.max_depth())
}

/// The CI-sized bound (about 40 s optimised): stream and message mode,
/// integrity off and on, one command per application besides the callee's
/// decision, 12 steps deep.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "run optimised: cargo test --release -p bookend-session --test model"
)]
fn two_sessions_keep_their_promises_in_every_interleaving() {
    let large = std::env::var("BOOKEND_MODEL").as_deref() == Ok("large");
    let (budget, depth) = match std::env::var("BOOKEND_MODEL_BOUND").ok().and_then(|b| {
        let (a, d) = b.split_once(',')?;
        Some((a.parse().ok()?, d.parse().ok()?))
    }) {
        Some(b) => b,
        None if large => (1, 14),
        None => (1, 12),
    };
    let all = std::time::Instant::now();
    for mode in [Mode::Stream, Mode::Message] {
        for integrity in [false, true] {
            let started = std::time::Instant::now();
            let (states, max) = check(
                Pair {
                    mode,
                    integrity,
                    budget,
                },
                depth,
            );
            println!(
                "{mode:?}, integrity {integrity}, budget {budget}, depth {depth}: {states} states, depth reached {max}, {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!("all four in {:.1} s", all.elapsed().as_secs_f64());
    report_unreached_rows();
}

/// With the `row-coverage` feature: the rows of the transition table no run
/// of the checks above reached, so that a row no interleaving can reach (to
/// this bound) is reported.
#[cfg(feature = "row-coverage")]
fn report_unreached_rows() {
    use bookend_session::state::{TRANSITIONS, coverage};
    let unreached: Vec<String> = TRANSITIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| !coverage::fired(*i))
        .map(|(_, r)| format!("{:?} on {:?}", r.from, r.input))
        .collect();
    println!(
        "transition table rows reached: {} of {}; not reached at this bound:",
        TRANSITIONS.len() - unreached.len(),
        TRANSITIONS.len()
    );
    for r in &unreached {
        println!("  {r}");
    }
}

#[cfg(not(feature = "row-coverage"))]
fn report_unreached_rows() {
    println!("(rows reached: run with --features row-coverage)");
}
