//! Runs only a bulk transfer, for profilers:
//! `perf record -g target/release/profile_bulk [MiB] [raw | backlog]`, or
//! `valgrind --tool=callgrind target/release/profile_bulk 64` and
//! `... 64 raw` for the same transfer over raw smoltcp TCP (instruction
//! counts, the noise-free comparison on shared cores).

use bookend_benches::{Bookend, Pair, raw_connect, raw_transfer};
use bookend_session::Options;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);
    let data = vec![0x42u8; 64 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let mode = args.next();
    if mode.as_deref() == Some("raw") {
        let mut pair = Pair::new();
        let (c, s) = raw_connect(&mut pair, 64 * 1024, 40_000);
        raw_transfer(&mut pair, c, s, mib << 20, &data, &mut sink);
    } else {
        // The listen backlog (armed listening sockets), 1 by default: the raw
        // baseline has no listening socket left during the transfer.
        let backlog = mode.and_then(|m| m.parse().ok()).unwrap_or(1);
        let mut be = Bookend::new(64 * 1024, backlog);
        let (c, s) = be.connect(Options::DEFAULT);
        be.transfer(c, s, mib << 20, &data, &mut sink);
    }
}
