//! What one connection costs, in bytes, for the default configuration and
//! for the small one (`Config::small`: 1 KiB TCP buffers each way, 1 KiB
//! frames, 2 KiB messages, 4 KiB session buffers), with the TCP buffers on
//! the heap or in the application's storage (`TcpBuffers::Provided`), and
//! the sessions' buffers too (`SessionBuffering::Provided`).
//!
//! Per connection end (one endpoint's share of one connection), from a
//! counting allocator, with 8 connections open at once:
//! * TCP buffers: the configuration's, on the heap or the application's;
//! * socket: smoltcp's `tcp::Socket` in its `SocketSet` slot (the set's
//!   storage: heap with a `Vec`, a fixed array on firmware);
//! * idle: the heap bookend holds for an established, quiet connection
//!   (its slot and session state; trimmed sessions hold no buffer);
//! * flooded: the heap it holds when both applications send until they are
//!   refused and neither reads: every buffer on both sides full, the most a
//!   peer and the application can make it hold.
//!
//! `cargo run --release -p bookend-benches --bin budget`

use std::alloc::System;

use bookend_benches::Bookend;
use bookend_session::{Mode, ModeOffer, Options};
use bookend_smoltcp::{Config, SessionBuffering, TcpBuffers};
use smoltcp::iface::SocketStorage;
use smoltcp::socket::tcp;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CONNECTIONS: usize = 8;
const BACKLOG: usize = 8;

fn in_use() -> i64 {
    bookend_benches::heap_in_use(&GLOBAL.stats())
}

struct Row {
    name: &'static str,
    tcp_buffers: usize,
    provided: bool,
    /// Provided session buffers per connection end (0: on the heap).
    session_storage: usize,
    idle: i64,
    flooded: i64,
    /// Both endpoints' whole heap at the flood: the client's and the
    /// server's connection ends, the server's listener pool, both tables
    /// and spare parts, both socket sets (provided TCP storage excluded).
    /// Not halved: the listener is the server's alone.
    endpoints: i64,
}

fn measure(name: &'static str, config: impl Fn(u64) -> Config) -> Row {
    let sample = config(0);
    let provided = sample.tcp_buffers == TcpBuffers::Provided;
    let tcp_buffers = sample.tcp_rx_buffer + sample.tcp_tx_buffer;
    let options = Options {
        mode: Mode::Stream,
        ..sample.session.options
    };
    let sockets = if provided { BACKLOG + CONNECTIONS } else { 0 };
    let start = in_use();
    let provided_sessions = sample.session_buffers == SessionBuffering::Provided;
    let mut be = Bookend::with_config(config, BACKLOG, sockets);
    let session_storage = if provided_sessions {
        be.provide_session_buffers(BACKLOG + CONNECTIONS)
    } else {
        0
    };
    // The provided storage is the application's, not the endpoints'.
    let storage =
        (2 * sockets * tcp_buffers + 2 * (BACKLOG + CONNECTIONS) * session_storage) as i64;
    be.integrity = options.integrity;
    // Both sets sized for every socket at once, so that growth of the
    // sets' `Vec`s is not charged to a connection (firmware's is an array).
    if !provided {
        for side in [&mut be.pair.a, &mut be.pair.b] {
            let handles: Vec<_> = (0..BACKLOG + CONNECTIONS)
                .map(|_| {
                    side.sockets.add(tcp::Socket::new(
                        tcp::SocketBuffer::new(Vec::new()),
                        tcp::SocketBuffer::new(Vec::new()),
                    ))
                })
                .collect();
            for h in handles {
                side.sockets.remove(h);
            }
        }
    }
    // Warm the pools with one connection that comes and goes, then take the
    // baseline: the listener pool and the endpoints' fixed tables.
    be.lifecycles(1);
    be.pair.release_harness_memory();
    // The harness's own buffers first, so that they are not counted.
    let mut conns = Vec::with_capacity(CONNECTIONS);
    let chunk = vec![0x5a; 1024];
    let before = in_use();
    for _ in 0..CONNECTIONS {
        conns.push(be.connect(options));
    }
    for _ in 0..16 {
        if !be.round() {
            be.advance();
        }
        while be.client.poll_event().is_some() {}
        while be.server.poll_event().is_some() {}
    }
    be.pair.release_harness_memory();
    let idle = (in_use() - before) / (2 * CONNECTIONS as i64);

    // Both applications send until refused; neither reads.
    let mut quiet = 0;
    let mut total = 0;
    while quiet < 50 {
        let now = be.pair.now;
        let mut sent = 0;
        for &(c, s) in &conns {
            while let Ok(n) = be.client.send(&mut be.pair.a.sockets, c, now, &chunk) {
                if n == 0 {
                    break;
                }
                sent += n;
            }
            while let Ok(n) = be.server.send(&mut be.pair.b.sockets, s, now, &chunk) {
                if n == 0 {
                    break;
                }
                sent += n;
            }
        }
        let moved = be.round();
        while be.client.poll_event().is_some() {}
        while be.server.poll_event().is_some() {}
        // Small steps, not to the next deadline: with every window shut the
        // next deadlines are the timers that give a stuck connection up.
        if !moved {
            be.pair.now += smoltcp::time::Duration::from_millis(1);
        }
        total += sent;
        quiet = if moved || sent > 0 { 0 } else { quiet + 1 };
    }
    // Still open, every one: the flood measures connections, not leftovers.
    for &(c, s) in &conns {
        assert!(be.client.buffer_usage(c).is_some() && be.server.buffer_usage(s).is_some());
    }
    assert!(total > 0);
    be.pair.release_harness_memory();
    let flooded = (in_use() - before) / (2 * CONNECTIONS as i64);
    let endpoints = in_use() - start - storage;
    Row {
        name,
        tcp_buffers,
        provided,
        session_storage,
        idle,
        flooded,
        endpoints,
    }
}

fn main() {
    let socket = std::mem::size_of::<SocketStorage<'static>>();
    let both_modes = |mut c: Config| {
        c.session.offered_modes = ModeOffer::Both;
        c
    };
    let rows = [
        measure("default (Config::new)", |seed| {
            both_modes(Config::new(seed))
        }),
        measure("small (Config::small), heap TCP", |seed| {
            both_modes(Config::small(seed))
        }),
        measure("small, provided TCP buffers", |seed| {
            let mut c = both_modes(Config::small(seed));
            c.tcp_buffers = TcpBuffers::Provided;
            c
        }),
        measure("small, provided TCP and session buffers", |seed| {
            let mut c = both_modes(Config::small(seed));
            c.tcp_buffers = TcpBuffers::Provided;
            c.session_buffers = SessionBuffering::Provided;
            c
        }),
    ];
    println!(
        "Per connection end, {CONNECTIONS} connections open; bytes. `heap` excludes provided TCP and session buffers.\n"
    );
    println!(
        "| configuration | TCP buffers | session buffers | socket slot | heap, idle | heap, flooded | total idle | total flooded |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        // Heap-made buffers are in the heap figures already.
        let outside = if r.provided { r.tcp_buffers } else { 0 } + r.session_storage + socket;
        println!(
            "| {} | {} ({}) | {} | {socket} | {} | {} | {} | {} |",
            r.name,
            r.tcp_buffers,
            if r.provided { "application's" } else { "heap" },
            if r.session_storage > 0 {
                format!("{} (application's)", r.session_storage)
            } else {
                "heap".to_string()
            },
            r.idle,
            r.flooded,
            r.idle + outside as i64,
            r.flooded + outside as i64,
        );
    }
    println!(
        "\nBoth endpoints' whole heap at the flood ({CONNECTIONS} connections between them, the server's listener of {BACKLOG}, tables, pools and socket sets; provided storage not included):\n"
    );
    println!("| configuration | heap |");
    println!("|---|---:|");
    for r in &rows {
        println!("| {} | {} |", r.name, r.endpoints);
    }
}
