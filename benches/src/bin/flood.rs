//! What a SYN flood costs the listening endpoint: the server's
//! `Endpoint::poll` alone, timed, while `H` half-open connections from one
//! address (SYN-ACKs never answered) sit beside `C` idle established
//! sessions. Admission control and the duplicate check look at the
//! half-opens at every poll; their cost must grow with the connections held,
//! not with their product.
//!
//! `cargo run --release -p bookend-benches --bin flood`

use std::time::Instant as Wall;

use bookend_benches::{B, Bookend, PORT, idle_bookend, tcp_socket};
use smoltcp::wire::IpEndpoint;

/// `h` callers whose SYN-ACKs are lost: their connections stay half-open
/// on the server (SYN-RECEIVED), all from the client host's one address.
fn flood(be: &mut Bookend, h: usize) {
    for i in 0..h {
        let mut s = tcp_socket(256);
        s.connect(
            be.pair.a.iface.context(),
            IpEndpoint::new(B, PORT),
            30_000 + i as u16,
        )
        .unwrap();
        be.pair.a.sockets.add(s);
    }
    for _ in 0..4 {
        be.round();
        // Everything bound for the callers is lost: they never ACK.
        be.pair.a.dev.drop_received();
    }
}

fn main() {
    const C: usize = 1000;
    println!(
        "Server Endpoint::poll with {C} idle sessions and H half-open connections from one address:\n"
    );
    println!("{:>7} {:>14} {:>12}", "H", "us per poll", "connections");
    for h in [0usize, 100, 1000, 2000] {
        let mut be = Bookend::new(4096, h.max(C) + 8);
        idle_bookend(&mut be, C);
        flood(&mut be, h);
        let rounds = 200;
        let p = &mut be.pair;
        let t = Wall::now();
        for _ in 0..rounds {
            be.server.poll(p.now, &mut p.b.sockets);
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        println!("{h:>7} {us:>14.1} {:>12}", be.server.connection_count());
    }
}
