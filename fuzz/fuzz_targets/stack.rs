//! Fuzzes the whole stack: a bookend `Endpoint` listening on a smoltcp
//! `Interface`, fed arbitrary TCP segments from up to four callers, with
//! valid checksums and (when the input asks) sequence and acknowledgement
//! numbers that follow a model of each connection, so that the fuzzer gets
//! past TCP's checks and into the session layer. Bodies are arbitrary bytes or
//! well-formed bookend frames. Time steps and application calls are mixed in.
//!
//! After the input, two hours of silence must release everything: no
//! connection left, and nothing in the socket set but the armed listeners.
//! Beyond that, no panic and no hang (a poll loop bounded per step).
#![no_main]

use bookend_session::{Event, Options, Reason};
use bookend_smoltcp::{
    Config, Decision, Endpoint, EndpointEvent, Handle, ListenConfig, TcpBuffers,
};
use bookend_wire::{ConnectRepr, FrameRepr, ReasonRepr, VERSION};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber,
};

const PORT: u16 = 7050;
const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);

#[derive(Debug, Arbitrary)]
enum Body {
    None,
    Raw(Vec<u8>),
    Connect(Option<Vec<u8>>),
    Data(bool, Vec<u8>),
    Disconnect(Option<Vec<u8>>),
    Abort(u16),
    Ping,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// A segment from caller `who` (0..4).
    Segment {
        who: u8,
        syn: bool,
        ack: bool,
        fin: bool,
        rst: bool,
        /// Follow the model's sequence and acknowledgement numbers.
        valid: bool,
        seq: u32,
        ackn: u32,
        window: u16,
        body: Body,
    },
    Advance(u16),
    Accept(u8),
    Reject(u8, u16),
    Close(u8),
    Abort(u8),
    Send(u8, u16),
    Recv(u8, u16),
    SendDisconnect(u8),
    RecvDisconnect(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    condition: u8,
    tcp_condition: bool,
    message_mode: bool,
    /// The server grants the CRC-32C trailer, and callers propose it and
    /// seal every frame they send (bookend-built bodies).
    integrity: bool,
    /// The endpoint runs on 6 provided sockets (`TcpBuffers::Provided`)
    /// instead of making its own: parked, reused, shared with the listener;
    /// and on 6 provided sessions' buffers (`SessionBuffering::Provided`)
    /// of exactly the configuration's sizes.
    provided: bool,
    ops: Vec<Op>,
}

/// Provided sockets when `Input::provided`: fewer than the backlog plus the
/// callers, so the pool runs dry.
const PROVIDED: usize = 6;

/// Provided buffers given back at the end of each run, for the next: the
/// storage is `&'static mut`, leaked once per size, and stays reachable
/// from this global (so that the leak sanitizer does not count it).
static STORAGE: std::sync::Mutex<Vec<bookend_session::SessionBuffers>> =
    std::sync::Mutex::new(Vec::new());

#[derive(Default)]
struct Dev {
    rx: std::collections::VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxT(Vec<u8>);
struct TxT<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxT {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxT<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}

impl Device for Dev {
    type RxToken<'a> = RxT;
    type TxToken<'a> = TxT<'a>;
    fn receive(&mut self, _t: Instant) -> Option<(RxT, TxT<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxT(p), TxT(&mut self.tx)))
    }
    fn transmit(&mut self, _t: Instant) -> Option<TxT<'_>> {
        Some(TxT(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1500;
        c
    }
}

/// The model of one caller's connection: our next sequence number and what
/// we acknowledge of the server's.
#[derive(Clone, Copy, Default)]
struct Peer {
    next_seq: u32,
    server_next: Option<u32>,
}

fn frame(repr: FrameRepr<'_>, sealed: bool) -> Vec<u8> {
    if sealed {
        let mut b = vec![0; repr.sealed_buffer_len()];
        let _ = repr.emit_sealed(&mut b);
        return b;
    }
    let mut b = vec![0; repr.buffer_len()];
    let _ = repr.emit(&mut b);
    b
}

fn body_bytes(body: &Body, message_mode: bool, sealed: bool) -> Vec<u8> {
    let cap = |v: &Vec<u8>| v[..v.len().min(1200)].to_vec();
    match body {
        Body::None => Vec::new(),
        Body::Raw(v) => cap(v),
        Body::Connect(d) => {
            let mut o = Options::DEFAULT;
            if message_mode {
                o.mode = bookend_session::Mode::Message;
            }
            if sealed {
                o.integrity = bookend_session::Integrity::Crc32c;
            }
            let d = d.as_ref().map(cap);
            frame(
                FrameRepr::Connect(ConnectRepr {
                    min_version: VERSION,
                    max_version: VERSION,
                    options: o.to_repr(),
                    data: d.as_deref(),
                }),
                sealed,
            )
        }
        Body::Data(eom, v) => frame(
            FrameRepr::Data {
                end_of_message: *eom,
                payload: &cap(v),
            },
            sealed,
        ),
        Body::Disconnect(d) => {
            let d = d.as_ref().map(cap);
            frame(FrameRepr::Disconnect { data: d.as_deref() }, sealed)
        }
        Body::Abort(r) => frame(
            FrameRepr::Abort(ReasonRepr {
                reason: Reason(*r),
                data: None,
            }),
            sealed,
        ),
        Body::Ping => frame(FrameRepr::Ping, sealed),
    }
}

fn caller(who: u8) -> (Ipv4Address, u16) {
    (
        Ipv4Address::new(10, 0, 0, 2 + who % 2),
        40_000 + u16::from(who % 4),
    )
}

struct Stack {
    iface: Interface,
    dev: Dev,
    sockets: SocketSet<'static>,
    ep: Endpoint,
    now: Instant,
    peers: [Peer; 4],
    handles: Vec<Handle>,
}

impl Stack {
    /// Interface, endpoint, events, interface again; learns the server's
    /// sequence numbers from what it sends.
    fn step(&mut self) {
        for _ in 0..2 {
            self.iface.poll(self.now, &mut self.dev, &mut self.sockets);
            self.ep.poll(self.now, &mut self.sockets);
            while let Some((h, e)) = self.ep.poll_event() {
                match e {
                    EndpointEvent::Incoming(_) | EndpointEvent::Accepted(_) => {
                        if self.handles.len() < 16 {
                            self.handles.push(h);
                        }
                    }
                    EndpointEvent::Session(Event::Closed(_)) => {
                        let _ = self.ep.close(&mut self.sockets, h, self.now);
                        self.handles.retain(|x| *x != h);
                    }
                    _ => {}
                }
            }
        }
        for p in self.dev.tx.drain(..) {
            let Ok(ip) = Ipv4Packet::new_checked(&p[..]) else {
                continue;
            };
            let Ok(t) = TcpPacket::new_checked(ip.payload()) else {
                continue;
            };
            let who = (0..4u8).find(|&w| {
                let (a, port) = caller(w);
                ip.dst_addr() == a && t.dst_port() == port
            });
            if let Some(w) = who {
                let len = t.payload().len() as u32 + u32::from(t.syn()) + u32::from(t.fin());
                let end = (t.seq_number().0 as u32).wrapping_add(len);
                self.peers[w as usize].server_next = Some(end);
            }
        }
    }

    fn segment(&mut self, op: &Op, message_mode: bool, sealed: bool) {
        let Op::Segment {
            who,
            syn,
            ack,
            fin,
            rst,
            valid,
            seq,
            ackn,
            window,
            body,
        } = op
        else {
            return;
        };
        let w = (*who % 4) as usize;
        let (addr, port) = caller(*who);
        let payload = body_bytes(body, message_mode, sealed);
        let peer = &mut self.peers[w];
        if *syn && *valid {
            peer.next_seq = 1000 + (*seq % 1000);
            peer.server_next = None;
        }
        let seq_number = if *valid { peer.next_seq } else { *seq };
        let ack_number = if *valid {
            peer.server_next
        } else if *ack {
            Some(*ackn)
        } else {
            None
        };
        let control = if *rst {
            TcpControl::Rst
        } else if *syn {
            TcpControl::Syn
        } else if *fin {
            TcpControl::Fin
        } else {
            TcpControl::None
        };
        let tcp = TcpRepr {
            src_port: port,
            dst_port: PORT,
            control,
            seq_number: TcpSeqNumber(seq_number as i32),
            ack_number: ack_number
                .filter(|_| *ack || *valid)
                .map(|a| TcpSeqNumber(a as i32)),
            window_len: (*window).max(512),
            window_scale: None,
            max_seg_size: syn.then_some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: if *syn { &[] } else { &payload },
        };
        if *valid {
            let used = tcp.payload.len() as u32 + u32::from(*syn) + u32::from(*fin && !*syn);
            peer.next_seq = peer.next_seq.wrapping_add(used);
        }
        let ip = Ipv4Repr {
            src_addr: addr,
            dst_addr: SERVER,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p, &caps);
        let mut t = TcpPacket::new_unchecked(p.payload_mut());
        tcp.emit(
            &mut t,
            &IpAddress::Ipv4(addr),
            &IpAddress::Ipv4(SERVER),
            &caps,
        );
        self.dev.rx.push_back(buf);
    }

    fn handle(&self, i: u8) -> Option<Handle> {
        (!self.handles.is_empty()).then(|| self.handles[i as usize % self.handles.len()])
    }
}

fuzz_target!(|input: Input| {
    let mut config = Config::new(7);
    config.max_connections = 64;
    if input.message_mode {
        config.session.options.mode = bookend_session::Mode::Message;
    }
    if input.integrity {
        config.session.options.integrity = bookend_session::Integrity::Crc32c;
    }
    let mut dev = Dev::default();
    let mut ic = IfaceConfig::new(HardwareAddress::Ip);
    ic.random_seed = 7;
    let mut iface = Interface::new(ic, &mut dev, Instant::ZERO);
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(SERVER), 24));
    });
    if input.provided {
        config.tcp_buffers = TcpBuffers::Provided;
        config.session_buffers = bookend_smoltcp::SessionBuffering::Provided;
    }
    let mut sockets = SocketSet::new(vec![]);
    let mut ep = Endpoint::new(config).unwrap();
    if input.provided {
        for _ in 0..PROVIDED {
            let socket = smoltcp::socket::tcp::Socket::new(
                smoltcp::socket::tcp::SocketBuffer::new(vec![0; 4096]),
                smoltcp::socket::tcp::SocketBuffer::new(vec![0; 4096]),
            );
            ep.add_socket(&mut sockets, socket).unwrap();
        }
        let need = bookend_session::BufferSizes::for_config(&ep.config().session);
        for _ in 0..PROVIDED {
            let pooled = {
                let mut s = STORAGE.lock().unwrap();
                s.iter()
                    .position(|b| b.sizes() == need)
                    .map(|i| s.swap_remove(i))
            };
            let b = pooled.unwrap_or_else(|| {
                let storage = Box::leak(vec![0u8; need.total()].into_boxed_slice());
                bookend_session::SessionBuffers::new(storage, &ep.config().session).unwrap()
            });
            ep.add_session_buffers(b).unwrap();
        }
    }
    let l = ep
        .listen(&mut sockets, PORT, ListenConfig::new(4, 4))
        .unwrap();
    match input.condition % 3 {
        0 => {}
        1 => ep.accept_with(l, |req| Decision::Accept {
            callee_data: None,
            granted: req.grant,
        }),
        _ => ep.accept_with(l, |_| Decision::Defer),
    }
    if input.tcp_condition {
        ep.tcp_accept_with(&mut sockets, l, |c, _| {
            if c.port % 2 == 0 {
                bookend_smoltcp::TcpDecision::Accept
            } else {
                bookend_smoltcp::TcpDecision::Defer
            }
        });
    }
    let mut s = Stack {
        iface,
        dev,
        sockets,
        ep,
        now: Instant::ZERO,
        peers: [Peer::default(); 4],
        handles: Vec::new(),
    };
    let mut buf = vec![0u8; 4096];
    for op in input.ops.iter().take(200) {
        let now = s.now;
        match op {
            Op::Segment { .. } => s.segment(op, input.message_mode, input.integrity),
            Op::Advance(ms) => s.now += Duration::from_millis(u64::from(*ms) * 4),
            Op::Accept(i) => {
                if let Some(h) = s.handle(*i) {
                    let _ = s.ep.accept(&mut s.sockets, h, now, None, Options::DEFAULT);
                }
            }
            Op::Reject(i, r) => {
                if let Some(h) = s.handle(*i) {
                    let _ = s.ep.reject(&mut s.sockets, h, now, Reason(*r), None);
                }
            }
            Op::Close(i) => {
                if let Some(h) = s.handle(*i) {
                    let _ = s.ep.close(&mut s.sockets, h, now);
                    s.handles.retain(|x| *x != h);
                }
            }
            Op::Abort(i) => {
                if let Some(h) = s.handle(*i) {
                    let _ = s.ep.abort(&mut s.sockets, h, now, Reason(0x8000), None);
                    s.handles.retain(|x| *x != h);
                }
            }
            Op::Send(i, n) => {
                if let Some(h) = s.handle(*i) {
                    let n = usize::from(*n).min(buf.len());
                    let _ = s.ep.send(&mut s.sockets, h, now, &buf[..n]);
                    let _ = s.ep.send_message(&mut s.sockets, h, now, &buf[..n]);
                }
            }
            Op::Recv(i, n) => {
                if let Some(h) = s.handle(*i) {
                    let n = usize::from(*n).min(buf.len());
                    let _ = s.ep.recv(&mut s.sockets, h, now, &mut buf[..n]);
                    let _ = s.ep.recv_message_bytes(h);
                }
            }
            Op::SendDisconnect(i) => {
                if let Some(h) = s.handle(*i) {
                    let _ = s.ep.send_disconnect(&mut s.sockets, h, now, Some(b"bye"));
                }
            }
            Op::RecvDisconnect(i) => {
                if let Some(h) = s.handle(*i) {
                    let _ = s.ep.recv_disconnect_bytes(h);
                }
            }
        }
        s.step();
    }
    // Two hours of silence: everything is released. The application closes
    // what it still holds, as any would at the end.
    for h in std::mem::take(&mut s.handles) {
        let now = s.now;
        let _ = s.ep.close(&mut s.sockets, h, now);
    }
    let end = s.now + Duration::from_secs(2 * 3600);
    let mut steps = 0u32;
    while s.now < end {
        s.step();
        steps += 1;
        assert!(steps < 200_000, "no quiescence");
        // The documented sleep rule; "now" means work is waiting (a held
        // SYN-ACK is not, with `next_poll`): step.
        let next = s.ep.next_poll(s.now, &mut s.iface, &s.sockets);
        s.now = match next {
            Some(t) if t > s.now => t.min(end),
            Some(_) => s.now + Duration::from_millis(100),
            None => end,
        };
    }
    s.step();
    if std::env::var_os("STACK_DEBUG").is_some() {
        // Replaying a failure: what is left.
        eprintln!("{:#?}", s.ep);
        for (_, sock) in s.sockets.iter() {
            // Only TCP sockets are enabled here; the match stays in case others are.
            #[allow(irrefutable_let_patterns)]
            if let smoltcp::socket::Socket::Tcp(t) = sock {
                eprintln!("socket {} {:?}", t.state(), t.remote_endpoint());
            }
        }
    }
    assert_eq!(
        s.ep.connection_count(),
        0,
        "connections left after two hours"
    );
    assert_eq!(
        s.sockets.iter().count(),
        s.ep.listening_socket_count() + s.ep.free_socket_count(),
        "sockets left after two hours"
    );
    if input.provided {
        assert_eq!(
            s.ep.provided_socket_count(),
            PROVIDED,
            "a provided socket lost"
        );
        assert_eq!(
            s.ep.free_session_buffers_count(),
            PROVIDED,
            "provided session buffers lost"
        );
        while let Some(b) = s.ep.take_session_buffers() {
            STORAGE.lock().unwrap().push(b);
        }
    }
});
