//! Endpoints on `bookend-sim`: the driver's tests run on the same simulated
//! network as the demo (virtual time, real checksums, pcap per host).
//! Hosts without an endpoint are raw smoltcp hosts the test drives itself:
//! hostile peers, SYN scanners, silent callers.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::Duration as StdDuration;

use bookend_sim::{App, Host, LinkConfig, Sim, host_addr};
use bookend_smoltcp::{Config, Endpoint, EndpointEvent, Handle};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Packet, TcpPacket};

pub const PORT: u16 = 7050;

/// Every endpoint's events, in order, with the time they were taken.
pub struct Apps {
    pub eps: Vec<Option<Endpoint>>,
    pub events: Vec<Vec<(Instant, Handle, EndpointEvent)>>,
    /// How often `Endpoint::poll` runs per interface poll (the TAP CLI ran it twice).
    pub polls_per_round: usize,
    /// Whether the harness takes the endpoints' events into `events` (else
    /// the test takes them itself with `poll_event`).
    pub collect: bool,
}

impl App for Apps {
    fn poll(&mut self, host: usize, h: &mut Host, now: Instant) {
        let Some(ep) = self.eps[host].as_mut() else {
            return;
        };
        for _ in 0..self.polls_per_round {
            ep.poll(now, &mut h.sockets);
            while self.collect
                && let Some((hd, e)) = ep.poll_event()
            {
                self.events[host].push((now, hd, e));
            }
        }
    }

    fn poll_at(&mut self, host: usize, _h: &mut Host, now: Instant) -> Option<Instant> {
        self.eps[host].as_ref()?.poll_at(now)
    }

    fn interface_poll_at(&mut self, host: usize, h: &mut Host, now: Instant) -> Option<Instant> {
        match self.eps[host].as_ref() {
            Some(ep) => h.poll_at_with(now, |iface, sockets| ep.next_poll(now, iface, sockets)),
            None => h.poll_at(now),
        }
    }

    fn done(&self, _sim: &Sim) -> bool {
        false
    }
}

pub struct World {
    pub sim: Sim,
    pub apps: Apps,
}

pub fn ip(i: usize) -> IpAddress {
    IpAddress::Ipv4(host_addr(i))
}

pub fn addr(i: usize) -> IpEndpoint {
    IpEndpoint::new(ip(i), PORT)
}

impl World {
    /// `n` hosts on default links; `endpoint(i)` says which get an endpoint.
    pub fn new(n: usize, mut endpoint: impl FnMut(usize) -> Option<Config>) -> Self {
        let mut sim = Sim::new(0xB00C);
        let mut eps = Vec::new();
        for i in 0..n {
            sim.add_host(LinkConfig::default());
            eps.push(endpoint(i).map(|c| Endpoint::new(c).unwrap()));
        }
        Self {
            sim,
            apps: Apps {
                eps,
                events: vec![Vec::new(); n],
                polls_per_round: 1,
                collect: true,
            },
        }
    }

    pub fn now(&self) -> Instant {
        self.sim.now
    }

    pub fn ep(&mut self, i: usize) -> &mut Endpoint {
        self.apps.eps[i].as_mut().unwrap()
    }

    /// The endpoint of host `i` with the socket set it drives, for commands.
    pub fn split(&mut self, i: usize) -> (&mut Endpoint, &mut smoltcp::iface::SocketSet<'static>) {
        let (ep, _, sockets) = self.parts(i);
        (ep, sockets)
    }

    /// Host `i` drops off the network from now on (unplugged, or crashed
    /// without a word).
    pub fn vanish(&mut self, i: usize) {
        let now = self.sim.now;
        self.sim.partition(i, now, Instant::from_secs(1 << 30));
    }

    /// Drops the packets `drop` says so, described as [`Packet`]s.
    pub fn set_drop(&mut self, mut drop: impl FnMut(&Packet) -> bool + 'static) {
        self.sim
            .set_filter(move |_, _, p| !packet(p).is_some_and(|p| drop(&p)));
    }

    /// Whether every endpoint holds nothing but its armed listeners.
    pub fn listeners_only(&mut self) -> bool {
        (0..self.apps.eps.len()).all(|i| {
            let Some(ep) = self.apps.eps[i].as_ref() else {
                return true;
            };
            let (conns, armed) = (ep.connection_count(), ep.listening_socket_count());
            // Provided sockets stay in the set, parked.
            let parked = ep.free_socket_count();
            conns == 0 && self.sim.host(i).sockets.iter().count() == armed + parked
        })
    }

    /// Gives host `i`'s endpoint (made with `TcpBuffers::Provided`) `n`
    /// sockets of `rx` and `tx` bytes, over storage leaked for the test's
    /// life: the simulator's socket sets are `'static`, as a firmware's
    /// `static` storage is.
    pub fn provide(&mut self, i: usize, n: usize, rx: usize, tx: usize) {
        let (ep, _, sockets) = self.parts(i);
        for _ in 0..n {
            let rx: &'static mut [u8] = Box::leak(vec![0; rx].into_boxed_slice());
            let tx: &'static mut [u8] = Box::leak(vec![0; tx].into_boxed_slice());
            let s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
            ep.add_socket(sockets, s).unwrap();
        }
    }

    /// Gives host `i`'s endpoint `n` sessions' buffers of exactly the sizes
    /// its session configuration needs.
    pub fn provide_session_buffers(&mut self, i: usize, n: usize) {
        let (ep, _, _) = self.parts(i);
        let config = ep.config().session.clone();
        let len = bookend_session::BufferSizes::for_config(&config).total();
        for _ in 0..n {
            let storage: &'static mut [u8] = Box::leak(vec![0; len].into_boxed_slice());
            let b = bookend_session::SessionBuffers::new(storage, &config).unwrap();
            ep.add_session_buffers(b).unwrap();
        }
    }

    /// The endpoint of host `i` with that host's interface and sockets.
    pub fn parts(
        &mut self,
        i: usize,
    ) -> (
        &mut Endpoint,
        &mut smoltcp::iface::Interface,
        &mut smoltcp::iface::SocketSet<'static>,
    ) {
        let h = self.sim.host(i);
        let ep = self.apps.eps[i].as_mut().unwrap();
        (ep, &mut h.iface, &mut h.sockets)
    }

    /// One round at the current time.
    pub fn round(&mut self) {
        self.sim.round(&mut self.apps);
    }

    /// Moves time to the next wakeup (at most `end`); false if there is
    /// none by then. A wakeup in the past steps 100 µs. An endpoint whose
    /// `poll_at` stays in the past for 100 000 rounds is a busy loop: that panics.
    fn advance(&mut self, end: Instant, stuck: &mut u32) -> bool {
        let now = self.sim.now;
        let ep_due = self
            .apps
            .eps
            .iter()
            .flatten()
            .any(|ep| ep.poll_at(now).is_some_and(|t| t <= now));
        if ep_due {
            *stuck += 1;
            assert!(*stuck < 100_000, "poll_at stuck in the past at {now}");
        } else {
            *stuck = 0;
        }
        match self.sim.next_wakeup(&mut self.apps) {
            Some(t) if t <= end => {
                self.sim.now = if t <= now {
                    now + Duration::from_micros(if ep_due { 1 } else { 100 })
                } else {
                    t
                };
                true
            }
            _ => false,
        }
    }

    /// Runs until `cond` holds (checked after every round); panics after `limit`.
    pub fn run_until(
        &mut self,
        limit: impl Into<StdDuration>,
        mut cond: impl FnMut(&mut Self) -> bool,
    ) {
        let limit: StdDuration = limit.into();
        let end = self.sim.now + Duration::from_micros(limit.as_micros() as u64);
        let mut stuck = 0;
        loop {
            self.round();
            if cond(self) {
                return;
            }
            if !self.advance(end, &mut stuck) {
                // Nothing happens before the end: time passes to it.
                if self.sim.now < end {
                    self.sim.now = end;
                    self.round();
                    if cond(self) {
                        return;
                    }
                }
                panic!("condition not met by {end} (now {})", self.sim.now);
            }
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: impl Into<StdDuration>) {
        let d: StdDuration = d.into();
        let end = self.sim.now + Duration::from_micros(d.as_micros() as u64);
        let mut stuck = 0;
        loop {
            self.round();
            if !self.advance(end, &mut stuck) {
                self.sim.now = end;
                self.round();
                return;
            }
        }
    }

    /// Events of host `i` taken so far, and forgets them.
    pub fn take_events(&mut self, i: usize) -> Vec<(Instant, Handle, EndpointEvent)> {
        std::mem::take(&mut self.apps.events[i])
    }

    /// A raw smoltcp TCP socket on host `i` (which has no endpoint),
    /// connecting from `local_port` to `to`.
    pub fn raw_connect(
        &mut self,
        i: usize,
        to: IpEndpoint,
        local_port: u16,
    ) -> smoltcp::iface::SocketHandle {
        let h = self.sim.host(i);
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        s.connect(h.iface.context(), to, local_port).unwrap();
        h.sockets.add(s)
    }

    pub fn raw(&mut self, i: usize, s: smoltcp::iface::SocketHandle) -> &mut tcp::Socket<'static> {
        self.sim.host(i).sockets.get_mut::<tcp::Socket>(s)
    }
}

/// One TCP segment seen in a pcap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub src: IpAddress,
    pub dst: IpAddress,
    pub src_port: u16,
    pub dst_port: u16,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: Vec<u8>,
}

/// Every TCP segment of a raw-IP pcap (each direction once: the capture is
/// of one host, in and out).
pub fn segments(pcap: &[u8]) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let body = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        let Ok(ip4) = Ipv4Packet::new_checked(body) else {
            continue;
        };
        let Ok(t) = TcpPacket::new_checked(ip4.payload()) else {
            continue;
        };
        out.push(Seg {
            src: IpAddress::Ipv4(ip4.src_addr()),
            dst: IpAddress::Ipv4(ip4.dst_addr()),
            src_port: t.src_port(),
            dst_port: t.dst_port(),
            syn: t.syn(),
            ack: t.ack(),
            fin: t.fin(),
            rst: t.rst(),
            payload: t.payload().to_vec(),
        });
    }
    out
}

/// A TCP SYN from `src` (any address: spoofed) to `dst`, with valid checksums.
pub fn syn_packet(src: IpEndpoint, dst: IpEndpoint, seq: u32) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpProtocol, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};
    let tcp = TcpRepr {
        src_port: src.port,
        dst_port: dst.port,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    // The simulated hosts of these tests are IPv4 ones.
    #[allow(irrefutable_let_patterns)]
    let (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) = (src.addr, dst.addr) else {
        panic!("a SYN between IPv4 hosts");
    };
    let ip4 = Ipv4Repr {
        src_addr: s,
        dst_addr: d,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; ip4.buffer_len() + tcp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip4.emit(&mut p, &caps);
    let mut t = TcpPacket::new_unchecked(p.payload_mut());
    tcp.emit(&mut t, &src.addr, &dst.addr, &caps);
    buf
}

/// A TCP packet as a drop filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub src: IpAddress,
    pub dst: IpAddress,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub len: usize,
}

/// Describes an IPv4/TCP packet.
pub fn packet(b: &[u8]) -> Option<Packet> {
    let ip4 = Ipv4Packet::new_checked(b).ok()?;
    let t = TcpPacket::new_checked(ip4.payload()).ok()?;
    Some(Packet {
        src: IpAddress::Ipv4(ip4.src_addr()),
        dst: IpAddress::Ipv4(ip4.dst_addr()),
        syn: t.syn(),
        ack: t.ack(),
        fin: t.fin(),
        rst: t.rst(),
        len: t.payload().len(),
    })
}
