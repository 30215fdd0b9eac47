//! The simulator is deterministic: the same seed gives byte-identical traffic
//! (pcap files) and a different seed gives different traffic; faults are
//! really applied.

use bookend_sim::{App, Host, LinkConfig, Sim, host_addr};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;

/// Host 1 sends 200 KiB to host 0 over plain TCP, then closes.
struct Bulk {
    server: Option<SocketHandle>,
    client: Option<SocketHandle>,
    sent: usize,
    received: usize,
}

const TOTAL: usize = 200 * 1024;

fn socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65535]),
        tcp::SocketBuffer::new(vec![0; 65535]),
    )
}

impl App for Bulk {
    fn poll(&mut self, host: usize, h: &mut Host, _now: Instant) {
        if host == 0 {
            let s = *self.server.get_or_insert_with(|| {
                let mut s = socket();
                s.listen(9000).unwrap();
                h.sockets.add(s)
            });
            let s = h.sockets.get_mut::<tcp::Socket>(s);
            while let Ok(n) = s.recv(|b| (b.len(), b.len())) {
                if n == 0 {
                    break;
                }
                self.received += n;
            }
        } else {
            let s = *self.client.get_or_insert_with(|| {
                let mut s = socket();
                s.connect(
                    h.iface.context(),
                    (IpAddress::Ipv4(host_addr(0)), 9000),
                    50000,
                )
                .unwrap();
                h.sockets.add(s)
            });
            let s = h.sockets.get_mut::<tcp::Socket>(s);
            while self.sent < TOTAL && s.can_send() {
                let n = s.send(|b| {
                    let n = b.len().min(TOTAL - self.sent);
                    b[..n].fill((self.sent % 251) as u8);
                    (n, n)
                });
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.sent += n,
                }
            }
        }
    }
    fn poll_at(&mut self, _: usize, _: &mut Host, _: Instant) -> Option<Instant> {
        None
    }
    fn done(&self, _: &bookend_sim::Sim) -> bool {
        self.received >= TOTAL
    }
}

fn faulty() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(3),
        jitter: Duration::from_millis(2),
        bandwidth_bps: Some(50_000_000),
        loss: 0.05,
        reorder: 0.05,
        duplicate: 0.02,
        corrupt: 0.02,
        ..LinkConfig::default()
    }
}

fn run(seed: u64) -> (Vec<u8>, Vec<u8>, bookend_sim::Totals) {
    let mut sim = Sim::new(seed);
    sim.add_host(faulty());
    sim.add_host(faulty());
    let mut app = Bulk {
        server: None,
        client: None,
        sent: 0,
        received: 0,
    };
    sim.run(&mut app, Duration::from_secs(120)).unwrap();
    assert_eq!(app.received, TOTAL, "every byte arrives despite the faults");
    (sim.pcap(0), sim.pcap(1), sim.totals())
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let (a0, a1, ta) = run(7);
    let (b0, b1, tb) = run(7);
    let (c0, _, _) = run(8);
    assert!(a0.len() > 100_000, "a real capture");
    assert!(a0 == b0 && a1 == b1, "same seed, same pcap bytes");
    assert_eq!(ta, tb);
    assert_ne!(a0, c0, "another seed, other traffic");
    // The faults were applied, and TCP recovered from them.
    assert!(
        ta.links.dropped_loss > 0
            && ta.links.corrupted > 0
            && ta.links.duplicated > 0
            && ta.links.reordered > 0,
        "{ta:?}"
    );
    assert!(ta.retransmissions > 0, "{ta:?}");
    // A pcap starts with the classic magic, microsecond resolution, raw IP link type.
    assert_eq!(&a0[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
}

#[test]
fn a_partition_drops_everything_while_it_lasts() {
    let mut sim = Sim::new(3);
    sim.add_host(LinkConfig::default());
    sim.add_host(LinkConfig::default());
    sim.partition(1, Instant::from_millis(50), Instant::from_millis(3_000));
    let mut app = Bulk {
        server: None,
        client: None,
        sent: 0,
        received: 0,
    };
    sim.run(&mut app, Duration::from_secs(120)).unwrap();
    assert!(sim.hosts()[1].uplink_stats().dropped_down > 0);
    assert!(
        sim.now > Instant::from_millis(3_000),
        "the transfer waited out the partition"
    );
}
