//! Two real sessions, model-checked exhaustively to a bound with stateright:
//! a caller and a callee joined by a transport that delivers each side's
//! bytes in order, each frame in up to four pieces split where the
//! receiver's path changes (after one byte, at the header's end, one byte
//! short of the end; a piece may also end one frame and start the next),
//! then its FIN or its RST, or gives up (a time-out);
//! the applications' commands (connect, send, disconnect with data, read,
//! close, abort, accept, reject, defer) and the timers' expiries injected
//! at any point. Every reachable state is checked against the properties
//! below, which a failure prints as a readable trace (`docs/model-check.md`
//! has the bounds and figures). Run it with the `model` profile, which keeps
//! the sessions' `debug_assert!`s on:
//! `cargo test --profile model -p bookend-session --test model -- --include-ignored --nocapture`;
//! `BOOKEND_MODEL=large` is the larger bound, `BOOKEND_MODEL_BOUND=MESSAGES,STEPS`
//! any other, and `BOOKEND_MODEL_LAZY=0` leaves out the lazy readers.
//!
//! The checker needs to recognise a state seen before: a state is hashed and
//! compared through the sessions' `Debug` form, which prints every field of a
//! session (state, options in force, timers, queued bytes and events, the
//! disconnect data), so nothing that decides a session's future is left out.
//! The applications read everything as soon as it is readable, or (lazy
//! readers) only when the model chooses to, so that `close()` with data
//! unread is in play.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use bookend_session::{
    CloseReason, Config, Event, Instant, Integrity, Mode, ModeOffer, Options, Reason, Role,
    Session, State, TransportAction, TransportClosed,
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
    /// TCP at `Who` gives up (its user timeout, RFC 9293 §3.8.3) while
    /// something it sent is undelivered: what is in flight is lost, and
    /// the peer gets a RST.
    TimeOut(Who),
    /// The caller's application connects (from the initial state where it
    /// has not yet: closing or aborting before connecting is in play too).
    Connect,
    /// Time moves to the next deadline of `Who` (no other comes first),
    /// whose due timers fire.
    Timer(Who),
    /// The application of `Who` sends DATA: two bytes from the caller, one
    /// from the callee (a message in message mode).
    Send(Who),
    /// WSASendDisconnect: one byte of disconnect data from the caller, zero
    /// bytes from the callee.
    SendDisconnect(Who),
    /// closesocket.
    Close(Who),
    /// closesocket with linger {1, 0}: ABORT with a reason, then RST.
    Abort(Who),
    /// The application of `Who` reads everything readable, the disconnect
    /// data last (lazy readers only).
    Read(Who),
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
    /// How many bytes this side had handed to TCP when it asked for FIN:
    /// nothing may follow (a FIN ends the byte stream).
    fin_at: Option<usize>,
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
    /// The application saw `Connected` (caller) or accepted (callee).
    connected: bool,
    /// The application saw `PeerDisconnected`.
    peer_disconnected: bool,
    /// The application closed or aborted: it reads nothing more.
    app_closed: bool,
    /// It did so before its session had ended its sending half (FIN): the
    /// peer's graceful end then depends on what it had read (§5.4). After
    /// its FIN, the peer may already have ended gracefully, as with TCP.
    closed_before_fin: bool,
    /// The application saw a `ConnectRequest` (callee).
    asked: bool,
    /// The first event the application saw that its session's history made
    /// illegal (see [`legal`]).
    illegal: Option<String>,
    /// Pieces of the frame at the head of `in_flight` already delivered (a
    /// frame arrives in at most [`MAX_PIECES`]).
    pieces: u8,
    /// A frame of this side's arrived in more than one piece.
    split: bool,
}

/// Both sessions and the time.
#[derive(Debug, Clone)]
struct World {
    caller: Side,
    callee: Side,
    now: u64,
    /// A session broke one of its own invariants (a `debug_assert`, such as
    /// two timers of a shared slot armed together, `timer.rs`) on the step
    /// into this state: its message. Nothing happens after it.
    broken: Option<String>,
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
    /// Messages (sends) each application may issue; disconnect, close and
    /// abort are once each, outside it.
    budget: u8,
    /// The applications read only when the model says so ([`Action::Read`],
    /// at any point), not as soon as something is readable: `close()` with
    /// data unread is then in play (`AppCloseUnread`, §5.4).
    lazy: bool,
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
        // Short timers (the checker's clock jumps from one to the next),
        // distinct so that each can fire before the others: the callee's
        // decision timer before the caller's connect timer, say, whose
        // REJECT(DECISION_TIMEOUT) then reaches the caller.
        c.connect_timeout = Duration::from_secs(4);
        c.handshake_timeout = Duration::from_secs(3);
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
        fin_at: None,
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
        connected: false,
        peer_disconnected: false,
        app_closed: false,
        closed_before_fin: false,
        asked: false,
        illegal: None,
        pieces: 0,
        split: false,
    }
}

/// After anything happened to a side: what it sends goes in flight, its
/// FIN or RST is noted, its events are acted on as its application would
/// (reading everything readable at once, unless `lazy`).
fn settle(x: &mut Side, now: Instant, message: bool, lazy: bool) {
    while let Some(b) = x.s.poll_transmit_bytes(now, 1 << 16) {
        note(|| format!("{:?} sends {}", x.s.role(), frames(&b)));
        x.in_flight.extend_from_slice(&b);
        x.wire.extend_from_slice(&b);
    }
    while let Some(a) = x.s.poll_transport_action() {
        note(|| format!("{:?} asks TCP for {a:?}", x.s.role()));
        match a {
            TransportAction::Fin => {
                x.fin = true;
                x.fin_at.get_or_insert(x.wire.len());
            }
            TransportAction::Reset => x.rst = true,
        }
    }
    while let Some(e) = x.s.poll_event() {
        note(|| format!("{:?} application sees {e:?}", x.s.role()));
        if x.illegal.is_none()
            && let Err(why) = legal(x, &e)
        {
            x.illegal = Some(format!("{:?} saw {e:?}: {why}", x.s.role()));
        }
        match e {
            Event::ConnectRequest(_) => {
                x.request = true;
                x.asked = true;
            }
            Event::Connected { .. } => x.connected = true,
            Event::Refused { reason, data } => {
                x.refused = Some((reason, data.map(|d| d.to_vec())));
            }
            Event::Closed(r) => x.closed = Some(r),
            Event::PeerDisconnected => x.peer_disconnected = true,
            _ => {}
        }
    }
    if !lazy && !x.app_closed {
        read_all(x, message);
    }
}

/// Whether `x`'s application has something to read: data, or the peer's
/// disconnect data.
fn readable(x: &Side) -> bool {
    x.s.recv_queue() > 0 || (x.peer_disconnected && x.disc_read.is_none())
}

/// The application reads everything readable: the data, then the peer's
/// disconnect data (readable once the data before it is read).
fn read_all(x: &mut Side, message: bool) {
    let mut buf = [0u8; 64];
    loop {
        let got = if message {
            x.s.recv_message(&mut buf)
        } else {
            x.s.recv(&mut buf)
        };
        match got {
            Ok(0) if !message => break,
            Ok(n) => {
                x.read.extend_from_slice(&buf[..n]);
                if message {
                    // Message boundaries are part of what was sent.
                    x.read.push(b'|');
                }
            }
            Err(_) => break,
        }
    }
    if x.peer_disconnected
        && x.disc_read.is_none()
        && let Ok(d) = x.s.recv_disconnect(&mut buf)
    {
        x.disc_read = Some(d.map(|n| buf[..n].to_vec()));
    }
}

/// Whether the application may see `e` now, given what it saw and did
/// before (`Event`'s contract, Winsock's order of network events):
/// `Closed` is the last event, once; a request only at a callee, once; the
/// answer (`Connected` or `Refused`) only at a caller, once; readiness and
/// the peer's disconnect only on a connected session, the disconnect once
/// and no data after it.
fn legal(x: &Side, e: &Event) -> Result<(), &'static str> {
    let caller = x.s.role() == Role::Caller;
    if x.closed.is_some() {
        return Err("an event after Closed, which is the last (event.rs)");
    }
    match e {
        Event::ConnectRequest(_) if caller => Err("a request at the caller"),
        Event::ConnectRequest(_) if x.asked => Err("a second request"),
        Event::Connected { .. } | Event::Refused { .. } if !caller => {
            Err("the callee's answer reported to the callee")
        }
        Event::Connected { .. } | Event::Refused { .. } if x.connected || x.refused.is_some() => {
            Err("a second answer (FD_CONNECT twice)")
        }
        Event::Readable | Event::Writable | Event::PeerDisconnected if !x.connected => {
            Err("readiness or FD_CLOSE before the session was connected")
        }
        Event::PeerDisconnected if x.peer_disconnected => Err("FD_CLOSE twice"),
        Event::Readable if x.peer_disconnected && x.s.recv_queue() == 0 => {
            Err("FD_READ after FD_CLOSE with nothing to read")
        }
        _ => Ok(()),
    }
}

thread_local! {
    /// While a counterexample is replayed ([`trace`]): its lines.
    static TRACE: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Adds a line to the trace being replayed, if one is.
fn note(line: impl FnOnce() -> String) {
    TRACE.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.push(line());
        }
    });
}

/// `bytes` as the frames they hold (type and length), a partial frame last.
fn frames(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some((start, _, end)) = frame_at(bytes, at) else {
            out.push(format!("{} bytes of a frame", bytes.len() - at));
            break;
        };
        let name = match bytes[start] {
            1 => "CONNECT",
            2 => "ACCEPT",
            3 => "REJECT",
            4 => "DATA",
            5 => "DISCONNECT",
            6 => "ABORT",
            7 => "PING",
            _ => "?",
        };
        out.push(format!("{name}({} bytes)", end - start));
        at = end;
    }
    out.join(" ")
}

/// The frame of `wire` that starts at `at` (a frame boundary): its start,
/// the end of its header and its end, if its header is complete.
fn frame_at(wire: &[u8], at: usize) -> Option<(usize, usize, usize)> {
    let h = wire.get(at..at + 6)?;
    let len = u32::from_be_bytes([h[2], h[3], h[4], h[5]]) as usize;
    let hl = bookend_wire::header_len(h[1]);
    Some((at, at + hl, at + hl + len))
}

/// The frame of `wire` that holds byte `offset`: start, header end, end.
fn frame_holding(wire: &[u8], offset: usize) -> Option<(usize, usize, usize)> {
    let mut at = 0;
    loop {
        let f = frame_at(wire, at)?;
        if offset < f.2 {
            return Some(f);
        }
        at = f.2;
    }
}

/// Pieces a frame may arrive in: one byte, the rest of its header, the body
/// up to its last byte, and that byte (issue 23's bound of three splits).
const MAX_PIECES: u8 = 4;

/// How many bytes of `from`'s in-flight bytes a delivery may take: up to
/// the places that change the receiver's path (after one byte, at the end
/// of the header, one byte short of the frame's end, at the frame's end)
/// while the frame at the head has arrived in fewer than [`MAX_PIECES`]
/// pieces, and everything in flight.
fn delivery_sizes(from: &Side) -> Vec<usize> {
    let n = from.in_flight.len();
    if n == 0 {
        return Vec::new();
    }
    let off = from.wire.len() - n;
    let mut ends = vec![from.wire.len()];
    if let Some((_, header_end, end)) = frame_holding(&from.wire, off) {
        // The frame's end, and one byte into the next (a segment that ends
        // one frame and starts another).
        ends.extend([end, end + 1]);
        if from.pieces + 1 < MAX_PIECES {
            ends.extend([off + 1, header_end, end.saturating_sub(1)]);
        }
    } else {
        ends.push(off + 1);
    }
    let mut sizes: Vec<usize> = ends
        .into_iter()
        .filter(|&e| e > off && e <= from.wire.len())
        .map(|e| e - off)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

impl Model for Pair {
    type State = World;
    type Action = Action;

    /// The caller before it connects: its first step is to connect (the
    /// state that follows is the usual start), or to close or abort.
    fn init_states(&self) -> Vec<World> {
        let t = Instant::ZERO;
        let caller = Session::caller(self.config(), 1).unwrap();
        let callee = Session::callee(self.config(), 2, t).unwrap();
        vec![World {
            caller: side(caller, self.budget),
            callee: side(callee, self.budget),
            now: 0,
            broken: None,
        }]
    }

    fn actions(&self, w: &World, out: &mut Vec<Action>) {
        if w.broken.is_some() {
            return;
        }
        // Before the caller connects, only it acts: the callee's session
        // exists once TCP is up, which the caller's connect starts.
        if w.caller.s.state() == State::Idle && w.caller.closed.is_none() {
            if !w.caller.app_closed {
                out.extend([
                    Action::Connect,
                    Action::Close(Who::Caller),
                    Action::Abort(Who::Caller),
                ]);
            }
            return;
        }
        for who in [Who::Caller, Who::Callee] {
            let (me, peer) = match who {
                Who::Caller => (&w.caller, &w.callee),
                Who::Callee => (&w.callee, &w.caller),
            };
            // Deliveries towards `who`, from the peer; none once either
            // side's TCP is gone at `who` (its RST in, or its own out).
            if !me.got_rst && !me.got_fin && !me.rst {
                if !peer.in_flight.is_empty() {
                    for n in delivery_sizes(peer) {
                        out.push(Action::Deliver(who, n));
                    }
                } else if peer.fin && !peer.rst {
                    out.push(Action::Fin(who));
                }
                if peer.rst {
                    out.push(Action::Rst(who));
                }
            }
            if self.lazy && !me.app_closed && readable(me) {
                out.push(Action::Read(who));
            }
            // TCP gives up only with something of its own undelivered.
            if !me.got_rst && !me.rst && (!me.in_flight.is_empty() || (me.fin && !peer.got_fin)) {
                out.push(Action::TimeOut(who));
            }
            // The application's commands where its session is still live:
            // sends within the budget of messages, the rest once each.
            if !me.app_closed && me.closed.is_none() && !me.rst {
                if me.s.is_connected() {
                    if me.budget > 0 {
                        out.push(Action::Send(who));
                    }
                    if me.disc_sent.is_none() {
                        out.push(Action::SendDisconnect(who));
                    }
                }
                out.push(Action::Close(who));
                out.push(Action::Abort(who));
            }
            // Time moves to this side's next deadline, unless the other
            // side's comes first (equal deadlines: either order).
            let mine = me.s.poll_timeout();
            let theirs = peer.s.poll_timeout();
            if mine.is_some_and(|m| theirs.is_none_or(|t| m <= t)) {
                out.push(Action::Timer(who));
            }
        }
        if w.callee.request {
            out.push(Action::Accept);
            out.push(Action::Reject);
            if w.callee.s.state() == State::ConnectReceived {
                out.push(Action::Defer);
            }
        }
    }

    fn next_state(&self, last: &World, action: Action) -> Option<World> {
        note(|| format!("{action:?}"));
        // A session that breaks an invariant of its own panics (its
        // `debug_assert`s are on in the `model` profile): that is a state of
        // the model, reported by a property with its trace.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step(last, action))) {
            Ok(w) => w,
            Err(panic) => {
                let mut w = last.clone();
                w.broken = Some(
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
                );
                Some(w)
            }
        }
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties()
    }
}

impl Pair {
    /// One step of the model: [`Model::next_state`] without the panic guard.
    fn step(&self, last: &World, action: Action) -> Option<World> {
        let mut w = last.clone();
        let message = self.mode == Mode::Message;
        let now = w.now();
        let touched: &[Who] = match action {
            Action::Deliver(who, n) => {
                let before = w.peer(who).wire.len() - w.peer(who).in_flight.len();
                let bytes: Vec<u8> = w.peer(who).in_flight.drain(..n).collect();
                let me = w.side(who);
                let mut at = 0;
                // The session takes what it has room for; its application
                // reads everything at once, so room comes back.
                while at < bytes.len() {
                    let k = me.s.handle_bytes(now, &bytes[at..]);
                    at += k;
                    settle(me, now, message, self.lazy);
                    if k == 0 {
                        break;
                    }
                }
                let peer = w.peer(who);
                if at < bytes.len() {
                    // Not taken: back in flight, first.
                    peer.in_flight.splice(0..0, bytes[at..].iter().copied());
                }
                // Pieces of the frame now at the head: none if the delivery
                // ended on a frame's end, one more if it ended inside the
                // frame it started in, else one.
                let off = before + at;
                peer.split |=
                    frame_holding(&peer.wire, off).is_some_and(|(start, ..)| start != off);
                peer.pieces = match frame_holding(&peer.wire, off) {
                    Some((start, ..)) if start == off => 0,
                    Some((start, ..)) if start <= before => peer.pieces + 1,
                    Some(_) => 1,
                    None => 0,
                };
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
            Action::TimeOut(who) => {
                let me = w.side(who);
                // No more deliveries either way on this side's TCP.
                me.got_rst = true;
                me.in_flight.clear();
                me.rst = true;
                me.s.handle_transport_closed(now, TransportClosed::TimedOut);
                &[Who::Caller, Who::Callee]
            }
            Action::Read(who) => {
                read_all(w.side(who), message);
                &[Who::Caller, Who::Callee]
            }
            Action::Connect => {
                w.caller.s.connect(now, Some(b"c"), self.options()).ok()?;
                &[Who::Caller, Who::Callee]
            }
            Action::Timer(who) => {
                let next = w.side(who).s.poll_timeout()?;
                w.now = next.total_micros().max(w.now);
                let now = w.now();
                w.side(who).s.handle_timeout(now);
                &[Who::Caller, Who::Callee]
            }
            Action::Send(who) => {
                let me = w.side(who);
                me.budget -= 1;
                // Two bytes from the caller, one from the callee (data of
                // at most two bytes: a message boundary inside a frame's
                // body, and one at its end).
                let first = b'0' + me.sent.len() as u8;
                let bytes = [first, first + 1];
                let data = if who == Who::Caller {
                    &bytes[..]
                } else {
                    &bytes[..1]
                };
                let ok = if message {
                    me.s.send_message(data).is_ok()
                } else {
                    me.s.send(data).is_ok_and(|n| n == data.len())
                };
                if ok {
                    me.sent.extend_from_slice(data);
                    if message {
                        me.sent.push(b'|');
                    }
                }
                &[Who::Caller, Who::Callee]
            }
            Action::SendDisconnect(who) => {
                // The caller's carries a byte, the callee's zero bytes: "no
                // data" (a close without it), zero-length data and data must
                // all arrive as they were sent (§2.2).
                let data: &[u8] = if who == Who::Caller { b"d" } else { b"" };
                let me = w.side(who);
                if me.s.send_disconnect(now, Some(data)).is_ok() {
                    me.disc_sent = Some(Some(data.to_vec()));
                }
                &[Who::Caller, Who::Callee]
            }
            Action::Close(who) => {
                let me = w.side(who);
                me.app_closed = true;
                me.closed_before_fin = !me.fin;
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
                me.app_closed = true;
                me.closed_before_fin = !me.fin;
                let _ = me.s.abort(now, Reason::APPLICATION_ABORT, Some(b"a"));
                &[Who::Caller, Who::Callee]
            }
            Action::Accept => {
                let me = &mut w.callee;
                me.request = false;
                let grant = me.s.options();
                me.connected = me.s.accept(now, Some(b"w"), grant).is_ok();
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
            settle(w.side(who), now, message, self.lazy);
        }
        Some(w)
    }
}

/// The properties every reachable state is checked against.
fn properties() -> Vec<Property<Pair>> {
    vec![
        // §5.4, §9: a graceful end on both sides means each read exactly
        // the DATA and the disconnect data the other sent, in order, once.
        // (Once the applications read what they still can: a lazy reader
        // may read after the end.)
        Property::always("graceful ends deliver everything", |_, w: &World| {
            let graceful = |x: &Side| matches!(x.closed, Some(CloseReason::Graceful));
            let done = |x: &Side| graceful(x) && (x.app_closed || !readable(x));
            !(done(&w.caller) && done(&w.callee))
                || (w.caller.read == w.callee.sent
                    && w.callee.read == w.caller.sent
                    && disconnect_data_kept(&w.caller, &w.callee)
                    && disconnect_data_kept(&w.callee, &w.caller))
        }),
        // §5.4: data not all read never ends gracefully on the sender's
        // side: a side that ends gracefully had everything it sent read by
        // the peer's application if that closed or aborted before its own
        // FIN (closesocket with data unread aborts, `AppCloseUnread`). A
        // peer still open may read it yet; one that closes after its FIN
        // (WSASendDisconnect, then closesocket) may find the sender already
        // gone, gracefully, as TCP's would.
        Property::always("a graceful sender's data was all read", |_, w: &World| {
            let ok = |x: &Side, peer: &Side| {
                !matches!(x.closed, Some(CloseReason::Graceful))
                    || !peer.closed_before_fin
                    || peer.read == x.sent
            };
            ok(&w.caller, &w.callee) && ok(&w.callee, &w.caller)
        }),
        // §5.5: no frame follows ABORT.
        Property::always("no frame follows ABORT", |_, w: &World| {
            after_abort(&w.caller.wire) == 0 && after_abort(&w.callee.wire) == 0
        }),
        // §5.4: nothing follows our FIN on the wire (TCP's byte stream ends).
        Property::always("no byte follows FIN", |_, w: &World| {
            [&w.caller, &w.callee]
                .iter()
                .all(|x| x.fin_at.is_none_or(|at| at == x.wire.len()))
        }),
        // event.rs: a session that is CLOSED has told its application why,
        // and what it told is its close reason.
        Property::always("CLOSED is reported, with its reason", |_, w: &World| {
            [&w.caller, &w.callee].iter().all(|x| {
                (x.s.state() == State::Closed) == x.closed.is_some()
                    && (x.closed.is_none() || x.closed.as_ref() == x.s.close_reason())
            })
        }),
        // Two conforming sessions never see a protocol violation.
        Property::always(
            "conforming peers never break the protocol",
            |_, w: &World| {
                [&w.caller, &w.callee]
                    .iter()
                    .all(|x| !matches!(x.closed, Some(CloseReason::ProtocolError { .. })))
            },
        ),
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
        // event.rs, Winsock's order of network events: every event the
        // application sees is legal in its session's history.
        Property::always("every event is legal in its state", |_, w: &World| {
            w.caller.illegal.is_none() && w.callee.illegal.is_none()
        }),
        // The sessions' own invariants (their `debug_assert`s, on in the
        // `model` profile): among them, no two timers of a shared slot
        // are ever armed together (timer.rs), which would cut one short.
        Property::always("no session breaks its own invariants", |_, w: &World| {
            w.broken.is_none()
        }),
        // §7, liveness along every path: a state where nothing more can
        // happen (no command left, nothing in flight, no timer) has both
        // sessions CLOSED. With every path finite (see `docs/model-check.md`),
        // every path ends there.
        Property::always(
            "every path that ends, ends CLOSED on both sides",
            |m, w: &World| {
                let mut actions = Vec::new();
                m.actions(w, &mut actions);
                !actions.is_empty()
                    || w.broken.is_some()
                    || (w.caller.s.state() == State::Closed && w.callee.s.state() == State::Closed)
            },
        ),
        Property::sometimes("both end gracefully", |_, w: &World| {
            matches!(w.caller.closed, Some(CloseReason::Graceful))
                && matches!(w.callee.closed, Some(CloseReason::Graceful))
        }),
        // Witnesses that the delivery properties are not vacuous: a graceful
        // end with the caller's DATA delivered, and one after a frame that
        // arrived in pieces.
        Property::sometimes("both end gracefully after DATA", |_, w: &World| {
            matches!(w.caller.closed, Some(CloseReason::Graceful))
                && matches!(w.callee.closed, Some(CloseReason::Graceful))
                && !w.caller.sent.is_empty()
                && w.callee.read == w.caller.sent
        }),
        Property::sometimes("both end gracefully after a split frame", |_, w: &World| {
            matches!(w.caller.closed, Some(CloseReason::Graceful))
                && matches!(w.callee.closed, Some(CloseReason::Graceful))
                && (w.caller.split || w.callee.split)
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

/// Whether `x` read the disconnect data `peer` sent, as sent (\"no data\"
/// and zero-length data apart), or closed without asking for it (an
/// application need not call WSARecvDisconnect).
fn disconnect_data_kept(x: &Side, peer: &Side) -> bool {
    x.disc_read == peer.disc_sent || (x.app_closed && x.disc_read.is_none())
}

/// Steps the drain of [`ends`] may take: far more than a close needs
/// (each side's DISCONNECT, FIN and the timers that bound them).
const DRAIN_STEPS: usize = 64;

/// Whether both sessions reach CLOSED from `w` when both applications close
/// and everything in flight is delivered, in a fixed order: the decision
/// first, then the closes, then whole deliveries, FINs, RSTs, and time.
fn ends(m: &Pair, w: &World) -> bool {
    // The drain's rows are not the checked states' (`row-coverage`).
    #[cfg(feature = "row-coverage")]
    bookend_session::state::coverage::set_recording(false);
    let ended = drain(m, w);
    #[cfg(feature = "row-coverage")]
    bookend_session::state::coverage::set_recording(true);
    ended
}

/// [`ends`]'s run.
fn drain(m: &Pair, w: &World) -> bool {
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
                .or_else(|| actions.iter().find(|a| matches!(a, Action::Timer(_))))
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
    // One thread: with more, a thread running ahead can claim a state at a
    // deeper level first, and the bounded search is no longer complete.
    // stateright's depth counts the initial state as 1 and does not expand
    // (or check) a state at the target: `steps` actions are checked with a
    // target of `steps + 2`.
    let checker = pair
        .clone()
        .checker()
        .threads(1)
        .target_max_depth(depth + 2)
        .spawn_bfs()
        .join();
    let mut failures = Vec::new();
    for p in properties() {
        let found = checker.discovery(p.name);
        match (p.expectation, found) {
            (stateright::Expectation::Sometimes, None) => {
                failures.push(format!("`{}` was never reached", p.name));
            }
            (stateright::Expectation::Sometimes, Some(_)) | (_, None) => {}
            (_, Some(path)) => {
                // The checker keeps the last path it found to a failing
                // state; the trace stops at that path's first one.
                let states = path.clone().into_states();
                let first = states
                    .iter()
                    .position(|s| !(p.condition)(&pair, s))
                    .unwrap_or(states.len() - 1);
                let actions = path.into_actions();
                failures.push(format!(
                    "`{}` fails after:\n{}",
                    p.name,
                    trace(&pair, &actions[..first.min(actions.len())])
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{:?}, integrity {}:\n{}",
        pair.mode,
        pair.integrity,
        failures.join("\n\n")
    );
    (checker.unique_state_count(), checker.max_depth())
}

/// A counterexample as a readable trace: each step, the frames each side
/// sent, what each asked of TCP and the events its application saw, then
/// the last state's sessions.
fn trace(pair: &Pair, actions: &[Action]) -> String {
    TRACE.with(|t| *t.borrow_mut() = Some(Vec::new()));
    let mut w = pair.init_states().remove(0);
    for a in actions {
        w = pair.next_state(&w, a.clone()).expect("a step of the path");
    }
    let lines = TRACE.with(|t| t.borrow_mut().take()).unwrap_or_default();
    let mut out = String::new();
    for l in lines {
        let indent = if l.starts_with("Caller") || l.starts_with("Callee") {
            "      "
        } else {
            "  -> "
        };
        let _ = writeln!(out, "{indent}{l}");
    }
    let _ = writeln!(
        out,
        "  caller: {:?}, read {:?}, disconnect data read {:?}, closed {:?}{}",
        w.caller.s.state(),
        w.caller.read,
        w.caller.disc_read,
        w.caller.closed,
        w.caller
            .illegal
            .as_deref()
            .map(|i| format!(", illegal: {i}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  callee: {:?}, read {:?}, disconnect data read {:?}, closed {:?}{}",
        w.callee.s.state(),
        w.callee.read,
        w.callee.disc_read,
        w.callee.closed,
        w.callee
            .illegal
            .as_deref()
            .map(|i| format!(", illegal: {i}"))
            .unwrap_or_default()
    );
    if let Some(b) = &w.broken {
        let _ = writeln!(out, "  broken: {b}");
    }
    out
}

/// The CI-sized bound (about 100 s on one core): one message per
/// application, 10 steps (the shortest graceful end with DATA delivered),
/// stream mode without integrity and message mode with it, eager readers
/// (a lazy reader's graceful end with DATA takes 11 steps, one more read).
/// `BOOKEND_MODEL=large` runs all eight
/// combinations of mode, integrity and readers with two messages and 11
/// steps; `BOOKEND_MODEL_BOUND=MESSAGES,STEPS` all eight at any bound.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "run optimised: cargo test --profile model -p bookend-session --test model -- --include-ignored"
)]
fn two_sessions_keep_their_promises_in_every_interleaving() {
    let every = |messages, steps| {
        let mut v = Vec::new();
        for lazy in [false, true] {
            for mode in [Mode::Stream, Mode::Message] {
                for integrity in [false, true] {
                    v.push((
                        Pair {
                            mode,
                            integrity,
                            budget: messages,
                            lazy,
                        },
                        steps,
                    ));
                }
            }
        }
        v
    };
    let custom = std::env::var("BOOKEND_MODEL_BOUND").ok().and_then(|b| {
        let (m, d) = b.split_once(',')?;
        Some((m.parse().ok()?, d.parse().ok()?))
    });
    let runs = match custom {
        Some((messages, steps)) => every(messages, steps),
        None if std::env::var("BOOKEND_MODEL").as_deref() == Ok("large") => every(2, 11),
        None => vec![
            (
                Pair {
                    mode: Mode::Stream,
                    integrity: false,
                    budget: 1,
                    lazy: false,
                },
                10,
            ),
            (
                Pair {
                    mode: Mode::Message,
                    integrity: true,
                    budget: 1,
                    lazy: false,
                },
                10,
            ),
        ],
    };
    let all = std::time::Instant::now();
    for (pair, steps) in runs {
        let started = std::time::Instant::now();
        let label = format!(
            "{:?}, integrity {}, {} readers, {} message(s), {steps} steps",
            pair.mode,
            pair.integrity,
            if pair.lazy { "lazy" } else { "eager" },
            pair.budget
        );
        let (states, _) = check(pair, steps);
        println!(
            "{label}: {states} states, {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    println!("all in {:.1} s", all.elapsed().as_secs_f64());
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
