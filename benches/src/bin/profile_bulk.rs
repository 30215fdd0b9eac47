//! Runs only a bulk transfer, for profilers:
//! `perf record -g target/release/profile_bulk [MiB] [raw | backlog]`, or
//! `valgrind --tool=callgrind target/release/profile_bulk 64` and
//! `... 64 raw` for the same transfer over raw smoltcp TCP (instruction
//! counts, the noise-free comparison on shared cores). A third argument,
//! `... 64 1 31` (or `... 64 raw 31`), first opens that many idle
//! connections, so that the bulk connection shares its waker group with
//! them (what a busy connection costs its idle neighbours: each of its
//! wake-ups visits them; smoltcp's own egress loop visits every socket too).
//! `... 64 crc` and `... 64 nocrc` run the bookend transfer with the CRC-32C
//! integrity option proposed or not (`docs/protocol.md` §2.5), whatever the
//! default.

use bookend_benches::{Bookend, Pair, idle_bookend, idle_raw, raw_connect, raw_transfer};
use bookend_session::{Integrity, Options};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);
    let data = vec![0x42u8; 64 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let mode = args.next();
    let idle: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    if mode.as_deref() == Some("raw") {
        // The same idle connections beside it, for the same-work baseline.
        let mut pair = if idle > 0 {
            idle_raw(idle, 64 * 1024)
        } else {
            Pair::new()
        };
        let (c, s) = raw_connect(&mut pair, 64 * 1024, 40_000);
        raw_transfer(&mut pair, c, s, mib << 20, &data, &mut sink);
    } else {
        let integrity = match mode.as_deref() {
            Some("crc") => Integrity::Crc32c,
            Some("nocrc") => Integrity::None,
            _ => Options::DEFAULT.integrity,
        };
        // The listen backlog (armed listening sockets), 1 by default: the raw
        // baseline has no listening socket left during the transfer.
        let backlog = mode.and_then(|m| m.parse().ok()).unwrap_or(1);
        let mut be = Bookend::new(64 * 1024, backlog);
        idle_bookend(&mut be, idle);
        let (c, s) = be.connect(Options {
            integrity,
            ..Options::DEFAULT
        });
        be.transfer(c, s, mib << 20, &data, &mut sink);
    }
}
