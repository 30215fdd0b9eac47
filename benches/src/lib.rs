//! Shared harness of bookend's benchmarks: two smoltcp interfaces wired in
//! memory, and the same work done through raw smoltcp TCP sockets and through
//! bookend sessions, so that every ratio compares like with like in one run.
//!
//! Both variants use the same device (Medium::Ip, MTU 1500, checksums
//! ignored as in smoltcp's own loopback benchmark), the same TCP buffers,
//! delayed ACKs off and Nagle off. Time is virtual: it only moves when
//! nothing else can, so no benchmark waits on a timer.

#![allow(missing_docs, unreachable_pub)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration as StdDuration;

use bookend_session::{Event, Instant as SessionInstant, Options};
use bookend_smoltcp::{Config, Decision, Endpoint, EndpointEvent, Handle, ListenConfig};
use bytes::Bytes;
use criterion::Criterion;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

/// Criterion settings; `BOOKEND_BENCH_QUICK=1` runs every benchmark for about
/// a second, so a reviewer can check them all in a couple of minutes.
pub fn criterion() -> Criterion {
    let c = Criterion::default().configure_from_args();
    if quick() {
        c.warm_up_time(StdDuration::from_millis(200))
            .measurement_time(StdDuration::from_millis(800))
            .sample_size(10)
    } else {
        c
    }
}

/// Whether quick mode is on.
pub fn quick() -> bool {
    std::env::var_os("BOOKEND_BENCH_QUICK").is_some_and(|v| v != "0")
}

pub const PORT: u16 = 7050;
pub const A: IpAddress = IpAddress::v4(10, 0, 0, 1);
pub const B: IpAddress = IpAddress::v4(10, 0, 0, 2);
pub const MTU: usize = 1500;

type Pool = Rc<RefCell<Vec<Vec<u8>>>>;

/// An in-memory device; packet buffers are recycled through a shared pool so
/// the harness allocates nothing per packet (for either variant).
pub struct MemDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    pool: Pool,
}

pub struct Rx(Vec<u8>, Pool);
pub struct Tx<'a>(&'a mut VecDeque<Vec<u8>>, Pool);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.0);
        self.1.borrow_mut().push(self.0);
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = self.1.borrow_mut().pop().unwrap_or_default();
        b.resize(len, 0);
        let r = f(&mut b);
        self.0.push_back(b);
        r
    }
}

impl MemDevice {
    /// Loses every packet waiting to be received (a link that drops all
    /// traffic one way, for the flood benchmark).
    pub fn drop_received(&mut self) {
        while let Some(p) = self.rx.pop_front() {
            self.pool.borrow_mut().push(p);
        }
    }
}

impl MemDevice {
    /// Frees the harness's own memory: the recycled packet buffers and the
    /// queues' spare capacity (packets still queued stay).
    pub fn release_harness_memory(&mut self) {
        let mut pool = self.pool.borrow_mut();
        pool.clear();
        pool.shrink_to_fit();
        drop(pool);
        self.rx.shrink_to_fit();
        self.tx.shrink_to_fit();
    }

    /// Heap the harness itself holds for this device: recycled packet
    /// buffers and the queues' capacity. Not the stack's: memory figures must
    /// not count it (see [`idle_memory`]).
    pub fn harness_bytes(&self) -> usize {
        let held = |q: &VecDeque<Vec<u8>>| {
            q.capacity() * std::mem::size_of::<Vec<u8>>()
                + q.iter().map(Vec::capacity).sum::<usize>()
        };
        let pool = self.pool.borrow();
        // The pool is shared by both devices of a pair: each reports half.
        let pooled = pool.capacity() * std::mem::size_of::<Vec<u8>>()
            + pool.iter().map(Vec::capacity).sum::<usize>();
        held(&self.rx) + held(&self.tx) + pooled / 2
    }
}

impl Device for MemDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _t: Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((
            Rx(p, self.pool.clone()),
            Tx(&mut self.tx, self.pool.clone()),
        ))
    }
    fn transmit(&mut self, _t: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx, self.pool.clone()))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = MTU;
        c.checksum = ChecksumCapabilities::ignored();
        c
    }
}

pub struct Side {
    pub iface: Interface,
    pub dev: MemDevice,
    pub sockets: SocketSet<'static>,
}

/// Two interfaces, A (10.0.0.1) and B (10.0.0.2), wired back to back.
pub struct Pair {
    pub now: Instant,
    pub a: Side,
    pub b: Side,
    /// Packets moved between the interfaces so far.
    pub packets: u64,
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

impl Pair {
    pub fn new() -> Self {
        let pool: Pool = Rc::default();
        let mk = |ip: IpAddress, seed: u64| {
            let mut dev = MemDevice {
                rx: VecDeque::new(),
                tx: VecDeque::new(),
                pool: pool.clone(),
            };
            let mut cfg = IfaceConfig::new(HardwareAddress::Ip);
            cfg.random_seed = seed;
            let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
            iface.update_ip_addrs(|a| a.push(IpCidr::new(ip, 24)).unwrap());
            Side {
                iface,
                dev,
                sockets: SocketSet::new(vec![]),
            }
        };
        Self {
            now: Instant::ZERO,
            a: mk(A, 11),
            b: mk(B, 22),
            packets: 0,
        }
    }

    /// Frees both devices' harness memory ([`MemDevice::release_harness_memory`]).
    pub fn release_harness_memory(&mut self) {
        self.a.dev.release_harness_memory();
        self.b.dev.release_harness_memory();
    }

    /// Heap the harness holds for both devices ([`MemDevice::harness_bytes`]).
    pub fn harness_bytes(&self) -> usize {
        self.a.dev.harness_bytes() + self.b.dev.harness_bytes()
    }

    /// Polls both interfaces and moves packets across; true if any moved.
    pub fn round(&mut self) -> bool {
        self.a
            .iface
            .poll(self.now, &mut self.a.dev, &mut self.a.sockets);
        self.b
            .iface
            .poll(self.now, &mut self.b.dev, &mut self.b.sockets);
        let moved = !self.a.dev.tx.is_empty() || !self.b.dev.tx.is_empty();
        self.packets += (self.a.dev.tx.len() + self.b.dev.tx.len()) as u64;
        self.b.dev.rx.append(&mut self.a.dev.tx);
        self.a.dev.rx.append(&mut self.b.dev.tx);
        moved
    }

    /// Jumps virtual time to the earliest interface deadline (or 1 ms).
    pub fn advance(&mut self, extra: Option<Instant>) {
        let a = self.a.iface.poll_at(self.now, &self.a.sockets);
        let b = self.b.iface.poll_at(self.now, &self.b.sockets);
        let next = [a, b, extra]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.now + Duration::from_millis(1));
        self.now = if next > self.now {
            next
        } else {
            self.now + Duration::from_micros(1)
        };
    }
}

/// The TCP tuning both variants share.
pub fn tcp_socket(buffer: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    );
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
    s
}

/// bookend endpoint configuration with the same TCP tuning.
pub fn endpoint_config(seed: u64, buffer: usize) -> Config {
    let mut c = Config::new(seed);
    c.tcp_rx_buffer = buffer;
    c.tcp_tx_buffer = buffer;
    c.tcp_ack_delay = None;
    c.tcp_nagle = false;
    c.max_connections = 100_000;
    c.session.recv_buffer = buffer.max(c.session.options.max_message_size as usize);
    c.session.send_buffer = buffer;
    // The benches play stream (bulk) and message (lifecycle) sessions.
    c.session.offered_modes = bookend_session::ModeOffer::Both;
    // Willing to seal: a caller that proposes the CRC-32C trailer gets it
    // (the `compare` bulk rows measure both).
    c.session.options.integrity = bookend_session::Integrity::Crc32c;
    c
}

// ----- raw smoltcp --------------------------------------------------------------

/// A connected raw TCP pair: (client socket on A, server socket on B).
pub fn raw_connect(
    pair: &mut Pair,
    buffer: usize,
    local_port: u16,
) -> (SocketHandle, SocketHandle) {
    let mut l = tcp_socket(buffer);
    l.listen(PORT).unwrap();
    let s = pair.b.sockets.add(l);
    let mut c = tcp_socket(buffer);
    c.connect(pair.a.iface.context(), (B, PORT), local_port)
        .unwrap();
    let c = pair.a.sockets.add(c);
    while !(pair.a.sockets.get::<tcp::Socket>(c).may_send()
        && pair.b.sockets.get::<tcp::Socket>(s).may_recv())
    {
        if !pair.round() {
            pair.advance(None);
        }
    }
    (c, s)
}

/// Moves `bytes` from client to server over raw TCP.
pub fn raw_transfer(
    pair: &mut Pair,
    c: SocketHandle,
    s: SocketHandle,
    bytes: usize,
    data: &[u8],
    sink: &mut [u8],
) {
    let (mut sent, mut got) = (0, 0);
    while got < bytes {
        let cs = pair.a.sockets.get_mut::<tcp::Socket>(c);
        while sent < bytes && cs.can_send() {
            let n = (bytes - sent).min(data.len());
            match cs.send_slice(&data[..n]) {
                Ok(0) | Err(_) => break,
                Ok(k) => sent += k,
            }
        }
        let moved = pair.round();
        let ss = pair.b.sockets.get_mut::<tcp::Socket>(s);
        while let Ok(k) = ss.recv_slice(sink) {
            if k == 0 {
                break;
            }
            got += k;
        }
        if !moved {
            pair.advance(None);
        }
    }
}

/// One raw TCP lifecycle: connect, 32 B each way, FIN both ways, sockets
/// released. Returns when both sides are closed.
pub fn raw_lifecycles(pair: &mut Pair, n: usize, buffer: usize, first_port: u16) {
    let msg = [7u8; 32];
    let mut listeners = Vec::new();
    let mut clients = Vec::new();
    for i in 0..n {
        let mut l = tcp_socket(buffer);
        l.listen(PORT).unwrap();
        listeners.push(pair.b.sockets.add(l));
        let mut c = tcp_socket(buffer);
        c.connect(pair.a.iface.context(), (B, PORT), first_port + i as u16)
            .unwrap();
        clients.push(pair.a.sockets.add(c));
    }
    // Per connection: 0 = connecting, 1 = request sent, 2 = reply sent, 3 = closed.
    let mut cstate = vec![0u8; n];
    let mut sstate = vec![0u8; n];
    let mut done = 0;
    let mut buf = [0u8; 64];
    while done < 2 * n {
        let moved = pair.round();
        for i in 0..n {
            let c = pair.a.sockets.get_mut::<tcp::Socket>(clients[i]);
            match cstate[i] {
                0 if c.may_send() => {
                    c.send_slice(&msg).unwrap();
                    cstate[i] = 1;
                }
                1 if c.recv_queue() >= 32 => {
                    c.recv_slice(&mut buf).unwrap();
                    c.close();
                    cstate[i] = 2;
                }
                2 if matches!(c.state(), tcp::State::Closed | tcp::State::TimeWait) => {
                    cstate[i] = 3;
                    done += 1;
                }
                _ => {}
            }
        }
        for i in 0..n {
            let s = pair.b.sockets.get_mut::<tcp::Socket>(listeners[i]);
            match sstate[i] {
                0 if s.recv_queue() >= 32 => {
                    s.recv_slice(&mut buf).unwrap();
                    s.send_slice(&msg).unwrap();
                    sstate[i] = 1;
                }
                1 if !s.may_recv() && s.recv_queue() == 0 && s.state() == tcp::State::CloseWait => {
                    s.close();
                    sstate[i] = 2;
                }
                2 if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) => {
                    sstate[i] = 3;
                    done += 1;
                }
                _ => {}
            }
        }
        if !moved {
            pair.advance(None);
        }
    }
    for h in clients {
        pair.a.sockets.remove(h);
    }
    for h in listeners {
        pair.b.sockets.remove(h);
    }
}

/// Reads one length-prefixed message (`[len u8][len bytes]`) if it is all there.
fn take_message(s: &mut tcp::Socket<'_>, buf: &mut [u8; 256]) -> Option<usize> {
    let mut head = [0u8; 1];
    if s.peek_slice(&mut head).ok()? == 0 {
        return None;
    }
    let len = usize::from(head[0]);
    if s.recv_queue() < 1 + len {
        return None;
    }
    s.recv_slice(&mut head).ok()?;
    s.recv_slice(&mut buf[..len]).ok()
}

fn put_message(s: &mut tcp::Socket<'_>, body: &[u8]) {
    s.send_slice(&[body.len() as u8]).unwrap();
    s.send_slice(body).unwrap();
}

/// The same exchange as a bookend lifecycle, in raw smoltcp TCP with an
/// ad-hoc length-prefixed protocol: connect; caller data ("client") and
/// callee data ("welcome"); 32 B each way; disconnect data each way ("bye",
/// "bye too"); FIN both ways; sockets released. What an application would
/// hand-write to get the same semantics without bookend.
pub fn raw_same_exchange(pair: &mut Pair, n: usize, buffer: usize, first_port: u16) {
    let msg = [7u8; 32];
    let mut listeners = Vec::new();
    let mut clients = Vec::new();
    for i in 0..n {
        let mut l = tcp_socket(buffer);
        l.listen(PORT).unwrap();
        listeners.push(pair.b.sockets.add(l));
        let mut c = tcp_socket(buffer);
        c.connect(pair.a.iface.context(), (B, PORT), first_port + i as u16)
            .unwrap();
        clients.push(pair.a.sockets.add(c));
    }
    let mut cstate = vec![0u8; n];
    let mut sstate = vec![0u8; n];
    let mut done = 0;
    let mut buf = [0u8; 256];
    while done < 2 * n {
        let moved = pair.round();
        for i in 0..n {
            let c = pair.a.sockets.get_mut::<tcp::Socket>(clients[i]);
            match cstate[i] {
                0 if c.may_send() => {
                    put_message(c, b"client");
                    cstate[i] = 1;
                }
                1 if take_message(c, &mut buf).is_some() => {
                    put_message(c, &msg);
                    cstate[i] = 2;
                }
                2 if take_message(c, &mut buf).is_some() => {
                    put_message(c, b"bye");
                    cstate[i] = 3;
                }
                3 if take_message(c, &mut buf).is_some() => {
                    c.close();
                    cstate[i] = 4;
                }
                4 if matches!(c.state(), tcp::State::Closed | tcp::State::TimeWait) => {
                    cstate[i] = 5;
                    done += 1;
                }
                _ => {}
            }
        }
        for i in 0..n {
            let s = pair.b.sockets.get_mut::<tcp::Socket>(listeners[i]);
            match sstate[i] {
                0 if take_message(s, &mut buf).is_some() => {
                    put_message(s, b"welcome");
                    sstate[i] = 1;
                }
                1 if take_message(s, &mut buf).is_some() => {
                    put_message(s, &msg);
                    sstate[i] = 2;
                }
                2 if take_message(s, &mut buf).is_some() => {
                    put_message(s, b"bye too");
                    s.close();
                    sstate[i] = 3;
                }
                3 if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) => {
                    sstate[i] = 4;
                    done += 1;
                }
                _ => {}
            }
        }
        if !moved {
            pair.advance(None);
        }
    }
    for h in clients {
        pair.a.sockets.remove(h);
    }
    for h in listeners {
        pair.b.sockets.remove(h);
    }
}

// ----- bookend ---------------------------------------------------------------

/// bookend endpoints on both interfaces, the server listening on B.
pub struct Bookend {
    pub pair: Pair,
    pub client: Endpoint,
    pub server: Endpoint,
    /// The server's accept backlog (connections are made in batches of it).
    pub backlog: usize,
    /// The integrity option the lifecycles' callers propose (the default's).
    pub integrity: bookend_session::Integrity,
}

impl Bookend {
    pub fn new(buffer: usize, backlog: usize) -> Self {
        Self::with_config(|seed| endpoint_config(seed, buffer), backlog, 0)
    }

    /// As [`Bookend::new`], each endpoint configured by `config(seed)`;
    /// with `TcpBuffers::Provided`, each is given `provided` sockets of
    /// `config`'s `tcp_rx_buffer` / `tcp_tx_buffer` bytes, over storage
    /// made here and leaked (`'static`, as firmware's `static` storage is),
    /// and both socket sets get room for them at once: all of it before
    /// anything a caller measures afterwards.
    pub fn with_config(config: impl Fn(u64) -> Config, backlog: usize, provided: usize) -> Self {
        let mut pair = Pair::new();
        let mut client = Endpoint::new(config(1)).unwrap();
        let mut server = Endpoint::new(config(2)).unwrap();
        if provided > 0 {
            for (ep, side) in [(&mut client, &mut pair.a), (&mut server, &mut pair.b)] {
                side.sockets = SocketSet::new(Vec::with_capacity(provided));
                let (rx, tx) = (ep.config().tcp_rx_buffer, ep.config().tcp_tx_buffer);
                for _ in 0..provided {
                    let rx: &'static mut [u8] = Box::leak(vec![0; rx].into_boxed_slice());
                    let tx: &'static mut [u8] = Box::leak(vec![0; tx].into_boxed_slice());
                    let socket =
                        tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
                    ep.add_socket(&mut side.sockets, socket).unwrap();
                }
            }
        }
        let l = server
            .listen(&mut pair.b.sockets, PORT, {
                // Every caller comes from one host, all at once: admission
                // bounds sized for that (the defaults protect against it).
                let mut l = ListenConfig::new(backlog, backlog.max(8) * 2);
                l.max_per_source = backlog.max(8) * 2;
                l.max_handshaking = backlog.max(8) * 2;
                l
            })
            .unwrap();
        server.accept_with(l, |req| Decision::Accept {
            callee_data: Some(Bytes::from_static(b"welcome")),
            granted: req.grant,
        });
        Self {
            pair,
            client,
            server,
            backlog,
            integrity: Options::DEFAULT.integrity,
        }
    }

    /// Gives each endpoint `n` sessions' buffers over storage made here and
    /// leaked (`'static`, as firmware's `static` storage is), sized for its
    /// session configuration in message mode too (the lifecycles' mode).
    /// Returns the bytes of storage each session's buffers take.
    pub fn provide_session_buffers(&mut self, n: usize) -> usize {
        let mut each = 0;
        for ep in [&mut self.client, &mut self.server] {
            let config = ep.config().session.clone();
            let message = Options {
                mode: bookend_session::Mode::Message,
                ..config.options
            };
            let len = bookend_session::BufferSizes::for_config(&config)
                .total()
                .max(bookend_session::BufferSizes::for_options(&config, &message).total());
            each = len;
            for _ in 0..n {
                let storage: &'static mut [u8] = Box::leak(vec![0; len].into_boxed_slice());
                let b = bookend_session::SessionBuffers::new(storage, &config).unwrap();
                ep.add_session_buffers(b).unwrap();
            }
        }
        each
    }

    /// One round: interfaces, endpoints, interfaces again for what they queued.
    pub fn round(&mut self) -> bool {
        let p = &mut self.pair;
        let moved = p.round();
        self.client.poll(p.now, &mut p.a.sockets);
        self.server.poll(p.now, &mut p.b.sockets);
        moved
    }

    pub fn advance(&mut self) {
        let now = self.pair.now;
        let extra = [self.client.poll_at(now), self.server.poll_at(now)]
            .into_iter()
            .flatten()
            .min();
        self.pair.advance(extra);
    }

    pub fn t(&self) -> SessionInstant {
        SessionInstant::from_micros(self.pair.now.total_micros().max(0) as u64)
    }

    /// A connected session pair: (client handle, server handle).
    pub fn connect(&mut self, options: Options) -> (Handle, Handle) {
        let p = &mut self.pair;
        let c = self
            .client
            .connect(
                &mut p.a.iface,
                &mut p.a.sockets,
                p.now,
                IpEndpoint::new(B, PORT),
                Some(b"client"),
                options,
            )
            .unwrap();
        let mut server = None;
        let mut connected = false;
        while !(connected && server.is_some()) {
            let moved = self.round();
            while let Some((h, e)) = self.server.poll_event() {
                if let EndpointEvent::Accepted(_) = e {
                    server = Some(h);
                }
            }
            while let Some((_, e)) = self.client.poll_event() {
                if let EndpointEvent::Session(Event::Connected { .. }) = e {
                    connected = true;
                }
            }
            if !moved {
                self.advance();
            }
        }
        (c, server.unwrap())
    }

    /// Moves `bytes` from client to server in stream mode.
    pub fn transfer(&mut self, c: Handle, s: Handle, bytes: usize, data: &[u8], sink: &mut [u8]) {
        let (mut sent, mut got) = (0, 0);
        while got < bytes {
            // The zero-copy path: frames go straight into TCP's send buffer.
            while sent < bytes {
                let n = (bytes - sent).min(data.len());
                let p = &mut self.pair;
                match self.client.send(&mut p.a.sockets, c, p.now, &data[..n]) {
                    Ok(k) => sent += k,
                    Err(_) => break,
                }
            }
            let moved = self.round();
            // The zero-copy path: DATA straight from TCP's receive buffer.
            let p = &mut self.pair;
            while let Ok(k) = self.server.recv(&mut p.b.sockets, s, p.now, sink) {
                if k == 0 {
                    break;
                }
                got += k;
            }
            while self.server.poll_event().is_some() {}
            while self.client.poll_event().is_some() {}
            if !moved {
                self.advance();
            }
        }
    }

    /// `n` full bookend lifecycles at once: connect with caller data, accept
    /// with callee data, one 32 B message each way, disconnect data both ways,
    /// close; returns when every connection (both sides) has been released.
    pub fn lifecycles(&mut self, n: usize) {
        let msg = [7u8; 32];
        // Messages are read by copy, as the raw baseline reads its bytes.
        let mut buf = [0u8; 64];
        // The client's own options (the benches' are the defaults), so that a
        // small configuration proposes what it may.
        let options = Options {
            mode: bookend_session::Mode::Message,
            integrity: self.integrity,
            ..self.client.config().session.options
        };
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let p = &mut self.pair;
            clients.push(
                self.client
                    .connect(
                        &mut p.a.iface,
                        &mut p.a.sockets,
                        p.now,
                        IpEndpoint::new(B, PORT),
                        Some(b"client"),
                        options,
                    )
                    .unwrap(),
            );
        }
        let mut finished = 0;
        while finished < n
            || self.client.connection_count() > 0
            || self.server.connection_count() > 0
        {
            let moved = self.round();
            let now = self.pair.now;
            let (srv, cli) = (&mut self.pair.b.sockets, &mut self.pair.a.sockets);
            while let Some((h, e)) = self.server.poll_event() {
                let EndpointEvent::Session(e) = e else {
                    continue;
                };
                match e {
                    Event::Readable => {
                        while self.server.recv_message(h, &mut buf).is_ok() {
                            self.server.send_message(srv, h, now, &msg).unwrap();
                        }
                    }
                    Event::PeerDisconnected => {
                        let _ = self.server.recv_disconnect_bytes(h);
                        self.server
                            .send_disconnect(srv, h, now, Some(b"bye too"))
                            .unwrap();
                        self.server.close(srv, h, now).unwrap();
                    }
                    _ => {}
                }
            }
            while let Some((h, e)) = self.client.poll_event() {
                let EndpointEvent::Session(e) = e else {
                    continue;
                };
                match e {
                    Event::Connected { .. } => self.client.send_message(cli, h, now, &msg).unwrap(),
                    Event::Readable if self.client.recv_message(h, &mut buf).is_ok() => {
                        self.client
                            .send_disconnect(cli, h, now, Some(b"bye"))
                            .unwrap();
                    }
                    Event::PeerDisconnected => {
                        let _ = self.client.recv_disconnect_bytes(h);
                        self.client.close(cli, h, now).unwrap();
                        finished += 1;
                    }
                    Event::Closed(r) => panic!("lifecycle ended early: {r}"),
                    _ => {}
                }
            }
            if !moved {
                self.advance();
            }
        }
    }
}

/// `n` idle established raw TCP connections (client on A, server on B),
/// TCP buffers of `buffer` bytes each way: the baseline of the memory
/// figures.
pub fn idle_raw(n: usize, buffer: usize) -> Pair {
    let mut pair = Pair::new();
    for i in 0..n {
        let mut l = tcp_socket(buffer);
        l.listen(PORT).unwrap();
        pair.b.sockets.add(l);
        let mut c = tcp_socket(buffer);
        c.connect(pair.a.iface.context(), (B, PORT), 20000 + i as u16)
            .unwrap();
        pair.a.sockets.add(c);
    }
    while pair.round() {}
    let established = pair
        .b
        .sockets
        .iter()
        .filter(|(_, s)| {
            matches!(s, smoltcp::socket::Socket::Tcp(t) if t.state() == tcp::State::Established)
        })
        .count();
    assert_eq!(established, n);
    pair
}

/// Heap allocations per lifecycle of the same exchange, `(raw smoltcp,
/// bookend)`, averaged over `runs` after a warm-up of 10 (so that one-off
/// growth of tables and pools is not counted). `allocations` reads the
/// process's allocation counter (the caller's counting allocator).
pub fn allocations_per_lifecycle(
    runs: u16,
    buffer: usize,
    backlog: usize,
    allocations: impl Fn() -> u64,
) -> (f64, f64) {
    let mut pair = Pair::new();
    for i in 0..10u16 {
        raw_same_exchange(&mut pair, 1, buffer, 30_000 + i);
    }
    let before = allocations();
    for i in 0..runs {
        raw_same_exchange(&mut pair, 1, buffer, 31_000 + i);
    }
    let raw = (allocations() - before) as f64 / f64::from(runs);
    let mut be = Bookend::new(buffer, backlog);
    for _ in 0..10 {
        be.lifecycles(1);
    }
    let before = allocations();
    for _ in 0..runs {
        be.lifecycles(1);
    }
    let bookend = (allocations() - before) as f64 / f64::from(runs);
    (raw, bookend)
}

/// Connects `n` more idle established sessions on `be`, in batches of its
/// backlog, and lets them settle.
pub fn idle_bookend(be: &mut Bookend, n: usize) {
    let mut done = 0;
    while done < n {
        let batch = be.backlog.min(n - done);
        for _ in 0..batch {
            let p = &mut be.pair;
            bookend_smoltcp::Endpoint::connect(
                &mut be.client,
                &mut p.a.iface,
                &mut p.a.sockets,
                p.now,
                smoltcp::wire::IpEndpoint::new(B, PORT),
                Some(b"client"),
                Options::DEFAULT,
            )
            .unwrap();
        }
        let mut connected = 0;
        while connected < batch {
            let moved = be.round();
            while let Some((_, e)) = be.client.poll_event() {
                if let EndpointEvent::Session(bookend_session::Event::Connected { .. }) = e {
                    connected += 1;
                }
            }
            while be.server.poll_event().is_some() {}
            if !moved {
                be.advance();
            }
        }
        for _ in 0..4 {
            be.round();
        }
        done += batch;
    }
}

/// Heap bytes in use by a counting allocator's statistics: allocated minus
/// freed. stats_alloc adds a reallocation's growth to `bytes_allocated` (and
/// its shrinking to `bytes_deallocated`) already; its `bytes_reallocated` is
/// the same net change once more, so adding it, as the memory figures did
/// until 2026-12-02, counted every `Vec` grown in place twice (and a queue
/// that grew in place and was then freed left phantom bytes behind: the free
/// subtracts the whole block, `bytes_reallocated` keeps its growth).
pub fn heap_in_use(s: &stats_alloc::Stats) -> i64 {
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Idle memory of `n` established connections, raw smoltcp and bookend
/// ([`idle_raw`], [`idle_bookend`]), read from the process's heap counter
/// `in_use` (the caller's counting allocator; bytes allocated minus freed).
#[derive(Debug, Clone, Copy)]
pub struct IdleMemory {
    /// Connections per variant.
    pub n: usize,
    /// Heap raw smoltcp took for them (sockets, buffers, tables).
    pub raw: i64,
    /// Heap bookend took for them, its listener pool included.
    pub bookend: i64,
    /// Of `bookend`, the listener pool alone (measured before any connection).
    pub listeners: i64,
    /// Heap the harness itself still held when each figure was read (packet
    /// buffers, queues), summed over both variants: not the stacks' memory,
    /// so it must be zero for the figures to be the stacks' alone.
    pub harness: usize,
}

impl IdleMemory {
    /// Bookend's state per idle session and endpoint beyond raw smoltcp
    /// holding the same connections (both ends hold a session: 2n of them).
    pub fn per_endpoint(&self) -> i64 {
        (self.bookend - self.listeners - self.raw) / (2 * self.n as i64)
    }
}

/// Measures [`IdleMemory`] for `n` connections of `buffer`-byte TCP buffers.
///
/// Both variants' socket sets grow by doubling, and bookend's server set
/// holds `n` + backlog sockets: for `n` just under a power of two bookend's
/// set doubles where raw's does not, and is charged for it. The sizes the
/// benchmarks use (200, 1 000, 10 000) are clear of that.
pub fn idle_memory(
    n: usize,
    buffer: usize,
    backlog: usize,
    in_use: impl Fn() -> i64,
) -> IdleMemory {
    let before = in_use();
    let mut pair = idle_raw(n, buffer);
    // Raw smoltcp opens its n connections at once: the harness kept n
    // recycled packets from that burst, which are not raw's memory.
    pair.release_harness_memory();
    let raw = in_use() - before;
    let mut harness = pair.harness_bytes();
    drop(pair);
    let before = in_use();
    let mut be = Bookend::new(buffer, backlog);
    let listeners = in_use() - before;
    idle_bookend(&mut be, n);
    be.pair.release_harness_memory();
    let bookend = in_use() - before;
    harness += be.pair.harness_bytes();
    IdleMemory {
        n,
        raw,
        bookend,
        listeners,
        harness,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_lifecycle_exchanges_the_whole_conversation() {
        let mut pair = Pair::new();
        raw_lifecycles(&mut pair, 1, 4096, 40000);
        // SYN, SYN-ACK, ACK, data, data, FIN and ACKs: at least 8 segments.
        assert!(pair.packets >= 8, "{} packets", pair.packets);
        assert_eq!(
            pair.a.sockets.iter().count() + pair.b.sockets.iter().count(),
            0
        );
    }

    #[test]
    fn a_bookend_lifecycle_releases_everything() {
        let mut be = Bookend::new(4096, 8);
        be.lifecycles(3);
        assert_eq!(
            be.client.connection_count() + be.server.connection_count(),
            0
        );
        assert_eq!(be.pair.a.sockets.iter().count(), 0);
        assert_eq!(
            be.pair.b.sockets.iter().count(),
            be.server.listening_socket_count()
        );
        eprintln!("bookend: {} packets for 3 lifecycles", be.pair.packets);
    }
}
