//! Runs only lifecycles, for profilers:
//! `perf record -g target/release/profile_lifecycle [count] [raw | backlog]`, or
//! `valgrind --tool=callgrind target/release/profile_lifecycle 2000` and
//! `... 2000 raw` for the same exchange in raw smoltcp TCP (instruction
//! counts per lifecycle, the noise-free comparison on shared cores). A third
//! argument runs that many lifecycles at once per round (`... 2 raw 1000`
//! and `... 2 8 1000` for the concurrent rows). A fourth argument `nocrc`
//! runs bookend's lifecycles without the integrity option (on by default).

use bookend_benches::{Bookend, Pair, raw_same_exchange};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let mode = args.next();
    // Lifecycles run at once in each round (`count` rounds), 1 by default;
    // `compare`'s concurrent rows run 1 000.
    let concurrent: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let unsealed = args.next().as_deref() == Some("nocrc");
    if mode.as_deref() == Some("raw") {
        let mut pair = Pair::new();
        for i in 0..count {
            let first = 20_000 + ((i * concurrent) % 40_000) as u16;
            raw_same_exchange(&mut pair, concurrent, 4096, first);
        }
    } else {
        // The listen backlog (armed listening sockets), 1 by default as in
        // the raw baseline.
        let backlog = mode.and_then(|m| m.parse().ok()).unwrap_or(1);
        let mut be = Bookend::new(4096, backlog);
        if unsealed {
            be.integrity = bookend_session::Integrity::None;
        }
        for _ in 0..count {
            be.lifecycles(concurrent);
        }
    }
}
