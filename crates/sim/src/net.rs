//! The simulated network: hosts on a star, links per direction, virtual time.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io;
use std::rc::Rc;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium, PcapMode, PcapWriter};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Packet, TcpPacket};

use crate::rng::Rng;

/// One direction of a host's link to the network (uplink: host to network;
/// downlink: network to host). Every probability is in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Extra delay, uniform in [0, jitter], drawn per packet (reorders a little).
    pub jitter: Duration,
    /// Serialisation rate in bits per second; `None` is infinitely fast.
    pub bandwidth_bps: Option<u64>,
    /// Drop-tail queue: a packet that would wait behind more than this many
    /// bytes is dropped. Only meaningful with a bandwidth.
    pub queue_bytes: usize,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is held back by `reorder_delay`, so that
    /// later ones overtake it.
    pub reorder: f64,
    /// How long a reordered packet is held back.
    pub reorder_delay: Duration,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability that one random bit of a packet is flipped. Checksums are
    /// real, so IP or TCP discards it.
    pub corrupt: f64,
    /// Largest IP packet; larger ones are dropped. Also the host's MTU.
    pub mtu: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(5),
            jitter: Duration::ZERO,
            bandwidth_bps: None,
            queue_bytes: 256 * 1024,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            duplicate: 0.0,
            corrupt: 0.0,
            mtu: 1500,
        }
    }
}

/// Counters of one link direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered to the link.
    pub packets: u64,
    /// Bytes offered to the link.
    pub bytes: u64,
    /// Lost at random.
    pub dropped_loss: u64,
    /// Dropped by the full drop-tail queue.
    pub dropped_queue: u64,
    /// Dropped for exceeding the MTU.
    pub dropped_mtu: u64,
    /// Dropped because the link was partitioned or the host was down.
    pub dropped_down: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Packets with a flipped bit.
    pub corrupted: u64,
    /// Packets held back to be overtaken.
    pub reordered: u64,
}

impl LinkStats {
    /// All drops together.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_queue + self.dropped_mtu + self.dropped_down
    }

    fn add(&mut self, o: &Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.dropped_loss += o.dropped_loss;
        self.dropped_queue += o.dropped_queue;
        self.dropped_mtu += o.dropped_mtu;
        self.dropped_down += o.dropped_down;
        self.duplicated += o.duplicated;
        self.corrupted += o.corrupted;
        self.reordered += o.reordered;
    }
}

/// Counters of one host, as seen on its interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Packets the host sent.
    pub tx_packets: u64,
    /// Bytes the host sent.
    pub tx_bytes: u64,
    /// Packets delivered to the host.
    pub rx_packets: u64,
    /// Bytes delivered to the host.
    pub rx_bytes: u64,
    /// TCP segments the host sent again (sequence range already sent on
    /// that flow): retransmissions, observed on the wire.
    pub retransmissions: u64,
}

/// Counters of the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Every link direction summed.
    pub links: LinkStats,
    /// Retransmissions over all hosts.
    pub retransmissions: u64,
    /// Packets delivered to hosts.
    pub delivered: u64,
}

/// A pcap sink shared with the [`Sim`], so captures can be read during a run.
#[derive(Debug, Clone, Default)]
struct PcapBuffer(Rc<RefCell<Vec<u8>>>);

impl io::Write for PcapBuffer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The host side of the simulated link: packets in and out, Medium::Ip.
#[derive(Debug, Default)]
pub struct SimDevice {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

/// Receive token of [`SimDevice`].
pub struct SimRx(Vec<u8>);
/// Transmit token of [`SimDevice`].
pub struct SimTx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for SimRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for SimTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}

impl Device for SimDevice {
    type RxToken<'a> = SimRx;
    type TxToken<'a> = SimTx<'a>;
    fn receive(&mut self, _t: Instant) -> Option<(SimRx, SimTx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((SimRx(p), SimTx(&mut self.tx)))
    }
    fn transmit(&mut self, _t: Instant) -> Option<SimTx<'_>> {
        Some(SimTx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = self.mtu;
        c
    }
}

#[derive(Debug)]
struct Link {
    config: LinkConfig,
    busy_until: Instant,
    stats: LinkStats,
}

/// One simulated host: a smoltcp interface, its sockets, and its links.
pub struct Host {
    /// The host's address (10.0.x.y/16).
    pub ip: IpAddress,
    /// The host's interface.
    pub iface: Interface,
    /// The host's sockets.
    pub sockets: SocketSet<'static>,
    device: PcapWriter<SimDevice, PcapBuffer>,
    pcap: PcapBuffer,
    up: Link,
    down: Link,
    partitions: Vec<(Instant, Instant)>,
    crashed: bool,
    seed: u64,
    stats: HostStats,
    /// Highest sequence number sent per TCP flow, to spot retransmissions.
    sent_until: BTreeMap<(IpAddress, IpAddress, u16, u16), u32>,
}

impl Host {
    /// Whether the host is up and its link not partitioned at `t`.
    pub fn reachable(&self, t: Instant) -> bool {
        !self.crashed && !self.partitions.iter().any(|&(a, b)| a <= t && t < b)
    }

    /// Whether the host has crashed and not restarted.
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    /// The host's counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// Uplink (host to network) counters.
    pub fn uplink_stats(&self) -> LinkStats {
        self.up.stats
    }

    /// Downlink (network to host) counters.
    pub fn downlink_stats(&self) -> LinkStats {
        self.down.stats
    }

    /// Polls the interface at `now` (no-op while crashed).
    pub fn poll(&mut self, now: Instant) {
        if !self.crashed {
            self.iface.poll(now, &mut self.device, &mut self.sockets);
        }
    }

    /// When the interface wants to be polled next.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.poll_at_with(now, |iface, sockets| iface.poll_at(now, sockets))
    }

    /// When the interface wants to be polled next, its own deadline read by
    /// `f` (given the interface and sockets) instead of `iface.poll_at`:
    /// `None` while crashed, now while a packet waits.
    pub fn poll_at_with(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Interface, &SocketSet<'static>) -> Option<Instant>,
    ) -> Option<Instant> {
        if self.crashed {
            return None;
        }
        if !self.device.get_ref().rx.is_empty() {
            return Some(now);
        }
        f(&mut self.iface, &self.sockets)
    }
}

fn new_iface(
    device: &mut PcapWriter<SimDevice, PcapBuffer>,
    ip: IpAddress,
    seed: u64,
    now: Instant,
) -> Interface {
    let mut cfg = IfaceConfig::new(HardwareAddress::Ip);
    // smoltcp's default seed is 0 (the same ISNs on every boot): never use it.
    cfg.random_seed = seed | 1;
    let mut iface = Interface::new(cfg, device, now);
    // One subnet for every host: /16 (IPv4), /64 (IPv6).
    // (A wildcard, not `Ipv6`: smoltcp may have IPv6 from another crate of
    // the build while this one's `ipv6` feature is off.)
    let prefix = match ip {
        IpAddress::Ipv4(_) => 16,
        #[allow(unreachable_patterns)]
        _ => 64,
    };
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(ip, prefix));
    });
    iface
}

/// What a simulated application does on each host, each round.
pub trait App {
    /// Called after the host's interface was polled; act on its sockets.
    fn poll(&mut self, host: usize, h: &mut Host, now: Instant);
    /// When this host's application needs a poll, beside the interface's own.
    fn poll_at(&mut self, host: usize, h: &mut Host, now: Instant) -> Option<Instant>;
    /// When the host's interface needs a poll: [`Host::poll_at`] unless the
    /// application knows better (bookend's `Endpoint::next_poll` does not
    /// take a SYN-ACK it holds for a segment due now).
    fn interface_poll_at(&mut self, host: usize, h: &mut Host, now: Instant) -> Option<Instant> {
        let _ = host;
        h.poll_at(now)
    }
    /// Whether the run is complete.
    fn done(&self, sim: &Sim) -> bool;
}

/// Why a run ended without the application being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunError {
    /// Virtual time reached the limit.
    TimeLimit(Instant),
    /// Nothing is scheduled and the application is not done.
    Stalled(Instant),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TimeLimit(t) => write!(f, "not done by the time limit ({t})"),
            Self::Stalled(t) => write!(f, "nothing left to happen at {t}, and not done"),
        }
    }
}

impl std::error::Error for RunError {}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    packet: Vec<u8>,
}

/// A deterministic network of smoltcp hosts in virtual time.
///
/// Everything random comes from one [`Rng`] seeded at construction, and time
/// only moves when [`Sim::run`] jumps it to the next packet arrival or poll
/// deadline: the same seed and application give byte-identical traffic.
pub struct Sim {
    /// Virtual time now.
    pub now: Instant,
    hosts: Vec<Host>,
    rng: Rng,
    wire: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    delivered: u64,
    rounds: u64,
    filter: Option<Filter>,
    /// The address family of the hosts added from now on.
    #[cfg(feature = "ipv6")]
    ipv6: bool,
}

/// A test's say over each packet: `(from host, to host, IP packet)`, true to
/// let it through. Dropped packets are counted as losses.
pub type Filter = Box<dyn FnMut(usize, usize, &[u8]) -> bool>;

impl Sim {
    /// An empty network whose randomness comes from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            now: Instant::ZERO,
            hosts: Vec::new(),
            rng: Rng::new(seed),
            wire: BinaryHeap::new(),
            seq: 0,
            delivered: 0,
            rounds: 0,
            filter: None,
            #[cfg(feature = "ipv6")]
            ipv6: false,
        }
    }

    /// Hosts added from now on get IPv6 addresses ([`host_addr_v6`]), and
    /// speak IPv6 (feature `ipv6`).
    #[cfg(feature = "ipv6")]
    pub fn use_ipv6(&mut self) {
        self.ipv6 = true;
    }

    /// The address of host `i` (see [`Sim::add_host`]).
    ///
    /// # Panics
    ///
    /// If there is no host `i`.
    pub fn host_ip(&self, i: usize) -> IpAddress {
        self.hosts[i].ip
    }

    /// The address the next host added gets.
    fn next_ip(&self) -> IpAddress {
        let n = self.hosts.len();
        #[cfg(feature = "ipv6")]
        if self.ipv6 {
            return IpAddress::Ipv6(host_addr_v6(n));
        }
        IpAddress::Ipv4(host_addr(n))
    }

    /// Installs a packet filter (replacing any other): targeted drops, such
    /// as "the first SYN-ACK", for tests that need one particular loss.
    pub fn set_filter(&mut self, f: impl FnMut(usize, usize, &[u8]) -> bool + 'static) {
        self.filter = Some(Box::new(f));
    }

    /// Removes the packet filter.
    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    /// Puts a packet the test made onto host `from`'s uplink, as if the host
    /// had sent it (its source address may be anything: a spoofed SYN flood).
    pub fn inject(&mut self, from: usize, packet: Vec<u8>) {
        self.send(from, packet);
    }

    /// Adds a host at 10.0.(n / 250).(n % 250 + 1) (or, after
    /// [`Sim::use_ipv6`], at fd00::(n + 1)) with the same link config in
    /// both directions; returns its index.
    pub fn add_host(&mut self, link: LinkConfig) -> usize {
        self.add_host_with(link.clone(), link)
    }

    /// Adds a host with distinct uplink and downlink configurations.
    pub fn add_host_with(&mut self, up: LinkConfig, down: LinkConfig) -> usize {
        let n = self.hosts.len();
        let ip = self.next_ip();
        let seed = self.rng.next_u64();
        let pcap = PcapBuffer::default();
        let dev = SimDevice {
            mtu: up.mtu.min(down.mtu),
            ..SimDevice::default()
        };
        let mut device = PcapWriter::new(dev, pcap.clone(), PcapMode::Both);
        let iface = new_iface(&mut device, ip, seed, self.now);
        self.hosts.push(Host {
            ip,
            iface,
            sockets: SocketSet::new(vec![]),
            device,
            pcap,
            up: Link {
                config: up,
                busy_until: Instant::ZERO,
                stats: LinkStats::default(),
            },
            down: Link {
                config: down,
                busy_until: Instant::ZERO,
                stats: LinkStats::default(),
            },
            partitions: Vec::new(),
            crashed: false,
            seed,
            stats: HostStats::default(),
            sent_until: BTreeMap::new(),
        });
        n
    }

    /// The hosts.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// One host.
    pub fn host(&mut self, i: usize) -> &mut Host {
        &mut self.hosts[i]
    }

    /// The pcap capture of host `i` so far (raw IPv4 link type): open it with
    /// Wireshark or tshark.
    pub fn pcap(&self, i: usize) -> Vec<u8> {
        self.hosts[i].pcap.0.borrow().clone()
    }

    /// Takes host `i`'s link down from `from` until `until`: everything to or
    /// from it is dropped in between.
    pub fn partition(&mut self, i: usize, from: Instant, until: Instant) {
        self.hosts[i].partitions.push((from, until));
    }

    /// Host `i` crashes now: it stops, and everything to or from it is dropped.
    pub fn crash(&mut self, i: usize) {
        self.hosts[i].crashed = true;
        self.hosts[i].device.get_mut().rx.clear();
    }

    /// Host `i` restarts with a fresh stack: no sockets, no TCP state, so its
    /// peers see RSTs (or silence). The application must set it up again.
    pub fn restart(&mut self, i: usize) {
        let now = self.now;
        let h = &mut self.hosts[i];
        h.seed = h.seed.wrapping_add(0x9E37_79B9);
        h.iface = new_iface(&mut h.device, h.ip, h.seed, now);
        h.sockets = SocketSet::new(vec![]);
        h.sent_until.clear();
        h.crashed = false;
    }

    /// Counters summed over every link and host.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            delivered: self.delivered,
            ..Totals::default()
        };
        for h in &self.hosts {
            t.links.add(&h.up.stats);
            t.links.add(&h.down.stats);
            t.retransmissions += h.stats.retransmissions;
        }
        t
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// One round at the current time: every live host polls its interface,
    /// then the application, then its interface again (to send what the
    /// application queued); packets go onto the wire; arrived ones are delivered.
    pub fn round(&mut self, app: &mut impl App) {
        self.rounds += 1;
        let now = self.now;
        for i in 0..self.hosts.len() {
            let h = &mut self.hosts[i];
            if h.crashed {
                continue;
            }
            h.poll(now);
            app.poll(i, h, now);
            h.poll(now);
        }
        for i in 0..self.hosts.len() {
            let out: Vec<Vec<u8>> = self.hosts[i].device.get_mut().tx.drain(..).collect();
            for p in out {
                self.send(i, p);
            }
        }
        while let Some(Reverse(top)) = self.wire.peek() {
            if top.at > now {
                break;
            }
            let Some(Reverse(f)) = self.wire.pop() else {
                break;
            };
            let h = &mut self.hosts[f.to];
            if !h.reachable(now) {
                h.down.stats.dropped_down += 1;
                continue;
            }
            h.stats.rx_packets += 1;
            h.stats.rx_bytes += f.packet.len() as u64;
            h.device.get_mut().rx.push_back(f.packet);
            self.delivered += 1;
        }
    }

    fn count_retransmission(h: &mut Host, p: &[u8]) {
        let Some((src, dst, payload)) = ip_parts(p) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(payload) else {
            return;
        };
        let len = tcp.payload().len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
        if len == 0 {
            return;
        }
        let key = (src, dst, tcp.src_port(), tcp.dst_port());
        let end = (tcp.seq_number().0 as u32).wrapping_add(len);
        match h.sent_until.get_mut(&key) {
            Some(until) if (end.wrapping_sub(*until) as i32) <= 0 => h.stats.retransmissions += 1,
            Some(until) => *until = end,
            None => {
                h.sent_until.insert(key, end);
            }
        }
    }

    /// Puts one packet from host `from` through its uplink and the
    /// destination's downlink.
    fn send(&mut self, from: usize, mut p: Vec<u8>) {
        let now = self.now;
        {
            let h = &mut self.hosts[from];
            h.stats.tx_packets += 1;
            h.stats.tx_bytes += p.len() as u64;
            Self::count_retransmission(h, &p);
        }
        let dst = ip_parts(&p).map(|(_, dst, _)| dst);
        let to = dst.and_then(|d| self.hosts.iter().position(|h| h.ip == d));
        let Some(to) = to else {
            self.hosts[from].up.stats.dropped_down += 1;
            return;
        };
        if let Some(f) = self.filter.as_mut()
            && !f(from, to, &p)
        {
            self.hosts[from].up.stats.dropped_loss += 1;
            return;
        }
        // Uplink.
        let Some(at_switch) = self.traverse(from, true, &mut p, now) else {
            return;
        };
        // Downlink.
        let duplicate = {
            let c = &self.hosts[to].down.config;
            self.rng.chance(c.duplicate)
        };
        let copy = duplicate.then(|| p.clone());
        if let Some(at) = self.traverse(to, false, &mut p, at_switch) {
            self.push(at, to, p);
        }
        if let Some(mut c) = copy {
            self.hosts[to].down.stats.duplicated += 1;
            if let Some(at) = self.traverse(to, false, &mut c, at_switch) {
                self.push(at, to, c);
            }
        }
    }

    fn push(&mut self, at: Instant, to: usize, packet: Vec<u8>) {
        self.seq += 1;
        self.wire.push(Reverse(InFlight {
            at,
            seq: self.seq,
            to,
            packet,
        }));
    }

    /// One link direction: returns when the packet leaves it, or `None` if dropped.
    fn traverse(
        &mut self,
        host: usize,
        uplink: bool,
        p: &mut [u8],
        entered: Instant,
    ) -> Option<Instant> {
        let reachable = self.hosts[host].reachable(entered);
        let h = &mut self.hosts[host];
        let link = if uplink { &mut h.up } else { &mut h.down };
        let c = link.config.clone();
        link.stats.packets += 1;
        link.stats.bytes += p.len() as u64;
        if !reachable {
            link.stats.dropped_down += 1;
            return None;
        }
        if p.len() > c.mtu {
            link.stats.dropped_mtu += 1;
            return None;
        }
        if self.rng.chance(c.loss) {
            link.stats.dropped_loss += 1;
            return None;
        }
        let mut depart = entered;
        if let Some(bps) = c.bandwidth_bps.filter(|&b| b > 0) {
            let start = link.busy_until.max(entered);
            let waiting_bytes = (start - entered).total_micros().saturating_mul(bps) / 8_000_000;
            if waiting_bytes as usize > c.queue_bytes {
                link.stats.dropped_queue += 1;
                return None;
            }
            let tx_time = Duration::from_micros((p.len() as u64 * 8_000_000).div_ceil(bps));
            link.busy_until = start + tx_time;
            depart = link.busy_until;
        }
        if self.rng.chance(c.corrupt) && !p.is_empty() {
            let bit = self.rng.below(p.len() as u64 * 8);
            p[(bit / 8) as usize] ^= 1 << (bit % 8);
            link.stats.corrupted += 1;
        }
        let jitter = Duration::from_micros(self.rng.below(c.jitter.total_micros() + 1));
        let mut at = depart + c.latency + jitter;
        if self.rng.chance(c.reorder) {
            at += c.reorder_delay;
            link.stats.reordered += 1;
        }
        Some(at)
    }

    /// The earliest future moment anything happens: a packet arrival, an
    /// interface deadline or an application deadline.
    pub fn next_wakeup(&mut self, app: &mut impl App) -> Option<Instant> {
        let now = self.now;
        let mut next = self.wire.peek().map(|Reverse(f)| f.at);
        for i in 0..self.hosts.len() {
            let h = &mut self.hosts[i];
            let interface = app.interface_poll_at(i, h, now);
            for t in [
                interface,
                if h.crashed {
                    None
                } else {
                    app.poll_at(i, h, now)
                },
            ]
            .into_iter()
            .flatten()
            {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        next
    }

    /// Runs rounds, jumping virtual time from one event to the next, until
    /// `app.done()` or `limit` of virtual time has passed. Never sleeps.
    ///
    /// This function returns `Err` if the limit is reached or nothing is left
    /// to happen while the application is not done.
    pub fn run(&mut self, app: &mut impl App, limit: Duration) -> Result<(), RunError> {
        let end = self.now + limit;
        loop {
            self.round(app);
            if app.done(self) {
                return Ok(());
            }
            let Some(next) = self.next_wakeup(app) else {
                return Err(RunError::Stalled(self.now));
            };
            if next > end {
                self.now = end;
                return Err(RunError::TimeLimit(end));
            }
            // Deadlines already due get a 1 µs step so time always moves.
            self.now = if next <= self.now {
                self.now + Duration::from_micros(1)
            } else {
                next
            };
        }
    }
}

/// The IPv4 address of simulated host `i` (see [`Sim::add_host`]).
pub fn host_addr(i: usize) -> Ipv4Address {
    Ipv4Address::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)
}

/// The IPv6 address of simulated host `i` after [`Sim::use_ipv6`]:
/// fd00::(i + 1), in the unique-local range (RFC 4193).
#[cfg(feature = "ipv6")]
pub fn host_addr_v6(i: usize) -> smoltcp::wire::Ipv6Address {
    let n = i + 1;
    smoltcp::wire::Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, (n >> 16) as u16, n as u16)
}

/// Source, destination and payload of an IP packet (IPv4, or IPv6 without
/// extension headers, as smoltcp sends them), if it is one.
pub fn ip_parts(p: &[u8]) -> Option<(IpAddress, IpAddress, &[u8])> {
    match p.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(p).ok()?;
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let header = usize::from(ip.header_len());
            let end = usize::from(ip.total_len()).min(p.len());
            Some((src.into(), dst.into(), p.get(header..end)?))
        }
        #[cfg(feature = "ipv6")]
        6 => {
            let ip = smoltcp::wire::Ipv6Packet::new_checked(p).ok()?;
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let end = (40 + usize::from(ip.payload_len())).min(p.len());
            Some((src.into(), dst.into(), p.get(40..end)?))
        }
        _ => None,
    }
}
