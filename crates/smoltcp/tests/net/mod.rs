//! A minimal in-memory network of smoltcp hosts in virtual time, for the
//! driver's tests (the full simulator lives in `crates/sim`). Medium::Ip,
//! real checksums, one-way latency, a drop filter, and hosts that can vanish.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::VecDeque;

use bookend_smoltcp::{Config, Endpoint};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Packet, TcpPacket};

#[derive(Default)]
pub struct QueueDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;
    fn receive(&mut self, _t: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxToken(p), TxToken(&mut self.tx)))
    }
    fn transmit(&mut self, _t: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1500;
        c
    }
}

pub struct Host {
    pub ip: IpAddress,
    pub iface: Interface,
    pub dev: QueueDevice,
    pub sockets: SocketSet<'static>,
    pub ep: Endpoint,
    /// Drops everything to and from this host (crashed or unplugged).
    pub vanished: bool,
}

impl Host {
    /// The endpoint with the socket set it drives, for commands.
    pub fn split(&mut self) -> (&mut Endpoint, &mut SocketSet<'static>) {
        (&mut self.ep, &mut self.sockets)
    }
}

/// Describes a packet for filters: (src, dst, TCP flags, payload length).
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo {
    pub src: IpAddress,
    pub dst: IpAddress,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub len: usize,
    pub src_port: u16,
    pub dst_port: u16,
}

pub fn info(b: &[u8]) -> Option<PacketInfo> {
    let ip = Ipv4Packet::new_checked(b).ok()?;
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(PacketInfo {
        src: IpAddress::Ipv4(ip.src_addr()),
        dst: IpAddress::Ipv4(ip.dst_addr()),
        syn: t.syn(),
        ack: t.ack(),
        fin: t.fin(),
        rst: t.rst(),
        len: t.payload().len(),
        src_port: t.src_port(),
        dst_port: t.dst_port(),
    })
}

pub struct Net {
    pub now: Instant,
    pub hosts: Vec<Host>,
    pub latency: Duration,
    wire: Vec<(Instant, usize, Vec<u8>)>,
    /// Returns true to drop a packet.
    pub drop: Box<dyn FnMut(&PacketInfo) -> bool>,
    pub delivered: u64,
    pub dropped: u64,
}

pub fn ip(n: u8) -> IpAddress {
    IpAddress::v4(10, 0, 0, n)
}

impl Net {
    /// `n` hosts at 10.0.0.1 ..= 10.0.0.n, each with an endpoint from `config(i)`.
    pub fn new(n: usize, mut config: impl FnMut(usize) -> Config) -> Self {
        let mut hosts = Vec::new();
        for i in 0..n {
            let cfg = config(i);
            let mut dev = QueueDevice::default();
            let mut ic = IfaceConfig::new(HardwareAddress::Ip);
            ic.random_seed = cfg.interface_seed();
            let mut iface = Interface::new(ic, &mut dev, Instant::ZERO);
            let addr = ip(i as u8 + 1);
            iface.update_ip_addrs(|a| a.push(IpCidr::new(addr, 24)).unwrap());
            hosts.push(Host {
                ip: addr,
                iface,
                dev,
                sockets: SocketSet::new(vec![]),
                ep: Endpoint::new(cfg).unwrap(),
                vanished: false,
            });
        }
        Self {
            now: Instant::ZERO,
            hosts,
            latency: Duration::from_millis(1),
            wire: Vec::new(),
            drop: Box::new(|_| false),
            delivered: 0,
            dropped: 0,
        }
    }

    /// One round at the current time: every host polls its interface and
    /// endpoint (twice, so bytes queued by the endpoint go out), packets move.
    pub fn poll_all(&mut self) {
        for _ in 0..2 {
            for h in &mut self.hosts {
                h.iface.poll(self.now, &mut h.dev, &mut h.sockets);
                h.ep.poll(self.now, &mut h.iface, &mut h.sockets);
            }
        }
        for i in 0..self.hosts.len() {
            let out: Vec<Vec<u8>> = self.hosts[i].dev.tx.drain(..).collect();
            for p in out {
                let Some(pi) = info(&p) else { continue };
                let to = self.hosts.iter().position(|h| h.ip == pi.dst);
                let vanished = self.hosts[i].vanished || to.is_some_and(|t| self.hosts[t].vanished);
                if vanished || (self.drop)(&pi) {
                    self.dropped += 1;
                    continue;
                }
                if let Some(to) = to {
                    self.wire.push((self.now + self.latency, to, p));
                }
            }
        }
        let now = self.now;
        let mut i = 0;
        while i < self.wire.len() {
            if self.wire[i].0 <= now {
                let (_, to, p) = self.wire.remove(i);
                self.hosts[to].dev.rx.push_back(p);
                self.delivered += 1;
            } else {
                i += 1;
            }
        }
    }

    pub fn next_wakeup(&mut self) -> Option<Instant> {
        let mut next = self.wire.iter().map(|w| w.0).min();
        for h in &mut self.hosts {
            if !h.dev.rx.is_empty() {
                return Some(self.now);
            }
            for t in [
                h.iface.poll_at(self.now, &h.sockets),
                h.ep.poll_at(self.now),
            ]
            .into_iter()
            .flatten()
            {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        next
    }

    /// Runs until `done` returns true, calling `app` after every round; panics
    /// after `limit` of virtual time.
    pub fn run(&mut self, limit: Duration, mut app: impl FnMut(&mut Self) -> bool) {
        let end = self.now + limit;
        loop {
            self.poll_all();
            if app(self) {
                return;
            }
            // Commands issued by the app are written by the next round at once.
            self.poll_all();
            if app(self) {
                return;
            }
            if self.now >= end {
                for (i, h) in self.hosts.iter().enumerate() {
                    let states: Vec<String> = h
                        .sockets
                        .iter()
                        .filter_map(|(_, s)| match s {
                            smoltcp::socket::Socket::Tcp(t) => Some(t.state().to_string()),
                            #[allow(unreachable_patterns)]
                            _ => None,
                        })
                        .collect();
                    eprintln!("host {i}: {:?} sockets {states:?}", h.ep);
                }
                panic!("not done by {end}");
            }
            let next = self.next_wakeup().unwrap_or(end).min(end);
            let next = if next <= self.now {
                self.now + Duration::from_micros(100)
            } else {
                next
            };
            self.now = next;
        }
    }
}
