//! A two-session harness in simulated time, after quinn-proto's `Pair`: the
//! sessions are wired byte to byte through an in-memory "TCP" with latency,
//! configurable chunking, backpressure, and FIN/RST semantics.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::VecDeque;
use std::time::Duration;

use bookend_session::{
    BufferSizes, Config, Event, Instant, Options, Session, SessionBuffers, TransportAction,
    TransportClosed,
};

std::thread_local! {
    /// Provided buffers given back by finished pairs, for the next: storage
    /// is `&'static mut`, so a test leaks what it first makes, once per
    /// size and thread.
    static STORAGE: std::cell::RefCell<Vec<SessionBuffers>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers of exactly the sizes `config` needs (no slack: a session that
/// outgrew its bounds would trip the queue's debug assertion).
pub fn exact_buffers(config: &Config) -> SessionBuffers {
    let need = BufferSizes::for_config(config);
    let pooled = STORAGE.with(|s| {
        let mut s = s.borrow_mut();
        let i = s.iter().position(|b| b.sizes() == need)?;
        Some(s.swap_remove(i))
    });
    pooled.unwrap_or_else(|| {
        let storage = Box::leak(vec![0u8; need.total()].into_boxed_slice());
        SessionBuffers::new(storage, config).unwrap()
    })
}

/// How the "TCP" below hands bytes to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// Everything that has arrived, in one call.
    Whole,
    /// One byte per call.
    OneByte,
    /// Random sizes from a seeded generator.
    Random,
}

/// What a RST does to bytes still in flight towards the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstBehaviour {
    /// Bytes sent before the RST arrive before it (the usual case).
    AfterData,
    /// The RST overtakes them: in-flight bytes are lost (smoltcp's `abort`
    /// drops unsent data).
    DropsData,
}

#[derive(Debug, Clone)]
enum Segment {
    Bytes(Vec<u8>),
    Fin,
    Rst,
}

/// One side: a session, the segments in flight towards it, and what the
/// application has seen.
pub struct Endpoint {
    pub session: Session,
    inbound: VecDeque<(Instant, Segment)>,
    /// Arrived but not yet consumed (the session pushed back).
    pending: Vec<u8>,
    fin_arrived: bool,
    fin_delivered: bool,
    /// This side's transport is gone (RST sent or received).
    pub dead: bool,
    pub sent_fin: bool,
    pub sent_rst: bool,
    /// Every event, in order.
    pub events: Vec<Event>,
    cursor: usize,
    /// Total bytes this side handed to its transport.
    pub bytes_sent: usize,
    /// The application reads with `recv_direct`.
    pub direct: bool,
}

impl Endpoint {
    fn new(session: Session) -> Self {
        Self {
            session,
            inbound: VecDeque::new(),
            pending: Vec::new(),
            fin_arrived: false,
            fin_delivered: false,
            dead: false,
            sent_fin: false,
            sent_rst: false,
            events: Vec::new(),
            cursor: 0,
            bytes_sent: 0,
            direct: false,
        }
    }

    /// Events not yet taken by the test.
    pub fn take_events(&mut self) -> Vec<Event> {
        let new = self.events[self.cursor..].to_vec();
        self.cursor = self.events.len();
        new
    }

    /// Zero-copy read, as a driver's `Endpoint::recv` does: what the session
    /// buffered first, then DATA straight from the bytes the transport still
    /// holds. Returns the bytes written to `out`.
    pub fn read_direct(&mut self, now: Instant, out: &mut [u8]) -> usize {
        self.session.set_direct_receive(true);
        self.direct = true;
        if self.session.recv_queue() > 0 {
            return self.session.recv(out).unwrap_or(0);
        }
        if self.dead {
            return 0;
        }
        let (consumed, written) = self.session.recv_direct(now, &self.pending, out);
        self.pending.drain(..consumed);
        written
    }

    /// The `Closed` reason, if the session has ended.
    pub fn closed(&self) -> Option<&bookend_session::CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(r) => Some(r),
            _ => None,
        })
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ep in [&mut self.client, &mut self.server] {
            if let Some(b) = ep.session.take_buffers() {
                STORAGE.with(|s| s.borrow_mut().push(b));
            }
        }
    }
}

pub struct Pair {
    pub time: Instant,
    pub latency: Duration,
    pub chunking: Chunking,
    pub rst: RstBehaviour,
    /// Largest bytes taken from a session per poll (the transport's window).
    pub mtu: usize,
    pub client: Endpoint,
    pub server: Endpoint,
    rng: u64,
    /// Boxes the sessions trim into and are supplied from, at varying
    /// points of each round: recycling must change nothing they do.
    spares: bookend_session::Spares,
    rounds: u64,
}

impl Pair {
    /// A caller and a callee whose transport is established at time 0.
    pub fn new(client: Config, server: Config) -> Self {
        let time = Instant::ZERO;
        Self {
            time,
            latency: Duration::from_millis(10),
            chunking: Chunking::Whole,
            rst: RstBehaviour::AfterData,
            mtu: 1460,
            client: Endpoint::new(Session::caller(client, 1).unwrap()),
            server: Endpoint::new(Session::callee(server, 2, time).unwrap()),
            rng: 0x9E37_79B9_7F4A_7C15,
            spares: bookend_session::Spares::new(4),
            rounds: 0,
        }
    }

    /// Default configurations, except that the callee serves both modes, so
    /// one pair plays the scenarios in either.
    pub fn default_pair() -> Self {
        let mut server = Config::default();
        server.offered_modes = bookend_session::ModeOffer::Both;
        Self::new(Config::default(), server)
    }

    /// Both sessions over provided buffers of exactly the sizes their
    /// configurations need.
    pub fn provided(mut self) -> Self {
        for ep in [&mut self.client, &mut self.server] {
            let b = exact_buffers(ep.session.config());
            ep.session.provide_buffers(b).unwrap();
        }
        self
    }

    pub fn seeded(mut self, seed: u64) -> Self {
        self.rng = seed | 1;
        self
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: deterministic, seedable, good enough for chunk sizes.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn ends(&mut self, client_sends: bool) -> (&mut Endpoint, &mut Endpoint) {
        if client_sends {
            (&mut self.client, &mut self.server)
        } else {
            (&mut self.server, &mut self.client)
        }
    }

    /// Moves output from one side onto the wire towards the other.
    fn transmit(&mut self, client_sends: bool) -> bool {
        let (now, latency, mtu, rst) = (self.time, self.latency, self.mtu, self.rst);
        let (from, to) = self.ends(client_sends);
        let mut progress = false;
        let mut buf = vec![0u8; mtu];
        loop {
            let n = from.session.poll_transmit(now, &mut buf);
            if n == 0 {
                break;
            }
            progress = true;
            if from.dead {
                continue; // a dead transport swallows everything
            }
            from.bytes_sent += n;
            to.inbound
                .push_back((now + latency, Segment::Bytes(buf[..n].to_vec())));
        }
        while let Some(action) = from.session.poll_transport_action() {
            progress = true;
            if from.dead {
                continue;
            }
            match action {
                TransportAction::Fin => {
                    assert!(!from.sent_fin, "FIN requested twice");
                    from.sent_fin = true;
                    to.inbound.push_back((now + latency, Segment::Fin));
                }
                TransportAction::Reset => {
                    from.sent_rst = true;
                    from.dead = true;
                    if rst == RstBehaviour::DropsData {
                        // The FIN sits after the data in sequence space: it goes too.
                        to.inbound
                            .retain(|(_, s)| !matches!(s, Segment::Bytes(_) | Segment::Fin));
                    }
                    to.inbound.push_back((now + latency, Segment::Rst));
                }
            }
        }
        progress
    }

    /// Feeds bytes that have arrived into the session, in chunks, until it
    /// stops taking them (backpressure) or they run out.
    fn feed(&mut self, to_client: bool) -> bool {
        let now = self.time;
        let mut progress = false;
        loop {
            let avail = {
                let (_, to) = self.ends(!to_client);
                if to.dead || to.pending.is_empty() {
                    break;
                }
                to.pending.len()
            };
            let size = match self.chunking {
                Chunking::Whole => avail,
                Chunking::OneByte => 1,
                Chunking::Random => 1 + (self.rand() as usize % avail.min(3000)),
            };
            let (_, to) = self.ends(!to_client);
            let n = to.session.handle_bytes(now, &to.pending[..size]);
            assert!(n <= size);
            to.pending.drain(..n);
            progress |= n > 0;
            if n < size {
                // Backpressure only ever waits for the application: something
                // is readable, so no full buffer can deadlock (issue 9, defect 3).
                let u = to.session.buffer_usage();
                assert!(
                    to.direct || to.session.recv_queue() > 0 || u.rx_messages > 0,
                    "held back with nothing to read: {u:?}"
                );
                break; // backpressure: the application must read first
            }
        }
        progress
    }

    /// Delivers, in order, what has arrived at one side by now.
    fn deliver(&mut self, to_client: bool) -> bool {
        let now = self.time;
        let mut progress = false;
        loop {
            let (_, to) = self.ends(!to_client);
            match to.inbound.front() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            let (_, seg) = to.inbound.pop_front().unwrap();
            progress = true;
            if to.dead {
                continue;
            }
            match seg {
                Segment::Bytes(b) => {
                    to.pending.extend_from_slice(&b);
                    self.feed(to_client);
                }
                Segment::Fin => to.fin_arrived = true,
                Segment::Rst => {
                    // TCP is ordered: what arrived before the RST is offered first;
                    // what the session could not take yet is lost with the connection.
                    self.feed(to_client);
                    let (_, to) = self.ends(!to_client);
                    to.dead = true;
                    to.pending.clear();
                    to.session
                        .handle_transport_closed(now, TransportClosed::Reset);
                }
            }
        }
        progress |= self.feed(to_client);
        let (_, to) = self.ends(!to_client);
        if to.fin_arrived && !to.fin_delivered && to.pending.is_empty() && !to.dead {
            to.fin_delivered = true;
            to.session
                .handle_transport_closed(now, TransportClosed::Fin);
            progress = true;
        }
        progress
    }

    fn collect_events(&mut self) {
        for ep in [&mut self.client, &mut self.server] {
            while let Some(e) = ep.session.poll_event() {
                ep.events.push(e);
            }
        }
    }

    /// One round at the current time. Returns whether anything moved.
    pub fn step(&mut self) -> bool {
        let mut progress = false;
        self.rounds += 1;
        if !self.rounds.is_multiple_of(3) {
            self.client.session.supply(&mut self.spares);
            self.server.session.supply(&mut self.spares);
        }
        for ep in [&mut self.client, &mut self.server] {
            if ep.session.poll_timeout().is_some_and(|t| t <= self.time) {
                ep.session.handle_timeout(self.time);
            }
        }
        progress |= self.transmit(true);
        progress |= self.transmit(false);
        progress |= self.deliver(true);
        progress |= self.deliver(false);
        self.collect_events();
        if self.rounds % 2 == 1 {
            self.client.session.trim(&mut self.spares);
        }
        if self.rounds % 5 != 2 {
            self.server.session.trim(&mut self.spares);
        }
        self.assert_bounds();
        progress
    }

    /// No buffer a session owns exceeds its bound, ever.
    pub fn assert_bounds(&self) {
        for ep in [&self.client, &self.server] {
            let u = ep.session.buffer_usage();
            assert!(
                u.rx_partial <= u.rx_partial_max,
                "rx_partial over bound: {u:?}"
            );
            assert!(
                u.rx_queued <= u.rx_queued_max,
                "rx_queued over bound: {u:?}"
            );
            assert!(u.tx <= u.tx_max, "tx over bound: {u:?}");
        }
    }

    /// The earliest future time anything happens.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for ep in [&self.client, &self.server] {
            consider(ep.inbound.front().map(|(t, _)| *t));
            consider(ep.session.poll_timeout());
        }
        next
    }

    /// Runs rounds at the current time until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("no quiescence at {}", self.time);
    }

    /// Settles, then advances time to the next wakeup, if it is at most `limit`
    /// away. Returns false when nothing is scheduled within the limit.
    pub fn advance(&mut self, limit: Duration) -> bool {
        self.settle();
        match self.next_wakeup() {
            Some(t) if t <= self.time + limit => {
                self.time = self.time.max(t);
                self.settle();
                true
            }
            _ => false,
        }
    }

    /// Runs everything scheduled up to `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Instant) {
        loop {
            self.settle();
            match self.next_wakeup() {
                Some(w) if w <= t => self.time = self.time.max(w),
                _ => break,
            }
        }
        self.time = self.time.max(t);
        self.settle();
    }

    /// Drives until `done` holds, advancing virtual time; panics after `limit`.
    pub fn drive_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) {
        let end = self.time + limit;
        loop {
            self.settle();
            if done(self) {
                return;
            }
            match self.next_wakeup() {
                Some(t) if t <= end => self.time = self.time.max(t),
                _ => panic!("condition not met by {} (now {})", end, self.time),
            }
        }
    }

    /// Drives until both sessions are drained (or `limit` passes).
    pub fn finish(&mut self, limit: Duration) {
        self.drive_until(limit, |p| {
            p.client.session.is_drained() && p.server.session.is_drained()
        });
    }

    /// The caller connects with `caller_data` and `options`; drives until
    /// the callee's application has the request, and returns it.
    pub fn request(
        &mut self,
        caller_data: Option<&[u8]>,
        options: Options,
    ) -> bookend_session::ConnectRequest {
        let t = self.time;
        self.client
            .session
            .connect(t, caller_data, options)
            .unwrap();
        self.drive_until(Duration::from_secs(1), |p| {
            p.server
                .events
                .iter()
                .any(|e| matches!(e, Event::ConnectRequest(_)))
        });
        self.server
            .take_events()
            .into_iter()
            .find_map(|e| match e {
                Event::ConnectRequest(r) => Some(r),
                _ => None,
            })
            .unwrap()
    }

    /// Connects with caller and callee data, accepting with the default grant.
    pub fn connect(&mut self, caller_data: &[u8], callee_data: &[u8], options: Options) {
        let req = self.request(Some(caller_data), options);
        assert_eq!(req.caller_data.as_deref(), Some(caller_data));
        let t = self.time;
        self.server
            .session
            .accept(t, Some(callee_data), req.grant)
            .unwrap();
        self.drive_until(Duration::from_secs(1), |p| {
            p.client
                .events
                .iter()
                .any(|e| matches!(e, Event::Connected { .. }))
        });
        let got = self.client.take_events();
        assert!(
            got.iter().any(|e| matches!(e, Event::Connected { callee_data: Some(d), .. } if &d[..] == callee_data)),
            "{got:?}"
        );
    }
}
