//! The build without heap TCP buffers (`TcpBuffers::Provided`), checked by
//! what the heap sees: lifecycle after lifecycle over the application's
//! sockets allocates no TCP buffer, where the same lifecycles over
//! endpoint-made sockets allocate four per lifecycle (the caller's socket
//! and the listener's replacement, each a receive and a send buffer).
//!
//! One test function: the allocator's counters are process-wide.

use std::alloc::System;

use bookend_benches::{Bookend, endpoint_config};
use bookend_smoltcp::TcpBuffers;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// 64 KiB each way: one TCP buffer is more than all else a lifecycle
/// allocates, so a single one would show.
const BUF: usize = 64 * 1024;
const BACKLOG: usize = 8;
const RUNS: usize = 50;

/// Bytes allocated per lifecycle after a warm-up (tables and pools grown).
fn bytes_per_lifecycle(be: &mut Bookend) -> usize {
    for _ in 0..10 {
        be.lifecycles(1);
    }
    let before = GLOBAL.stats().bytes_allocated;
    for _ in 0..RUNS {
        be.lifecycles(1);
    }
    (GLOBAL.stats().bytes_allocated - before) / RUNS
}

#[test]
fn lifecycles_over_provided_sockets_allocate_no_tcp_buffer() {
    let mut heap = Bookend::with_config(|seed| endpoint_config(seed, BUF), BACKLOG, 0);
    let heap_bytes = bytes_per_lifecycle(&mut heap);
    // The measurement sees TCP buffers when they are allocated.
    assert!(
        heap_bytes >= 4 * BUF,
        "{heap_bytes} B per lifecycle with heap sockets"
    );

    let provided = |seed| {
        let mut c = endpoint_config(seed, BUF);
        c.tcp_buffers = TcpBuffers::Provided;
        c
    };
    // The server's backlog and the connection, and the caller's.
    let mut be = Bookend::with_config(provided, BACKLOG, BACKLOG + 2);
    let provided_bytes = bytes_per_lifecycle(&mut be);
    eprintln!(
        "bytes allocated per lifecycle: heap sockets {heap_bytes}, provided {provided_bytes}"
    );
    assert!(
        provided_bytes < BUF,
        "{provided_bytes} B per lifecycle over provided sockets: a TCP buffer is {BUF} B"
    );
    // Session buffers from the application too: the lifecycle allocates
    // no payload buffer at all.
    let mut all = Bookend::with_config(provided, BACKLOG, BACKLOG + 2);
    all.provide_session_buffers(BACKLOG + 2);
    let all_bytes = bytes_per_lifecycle(&mut all);
    eprintln!("bytes allocated per lifecycle: provided sockets and session buffers {all_bytes}");
    assert!(
        all_bytes < provided_bytes,
        "{all_bytes} B per lifecycle over provided session buffers, {provided_bytes} B without"
    );
    assert_eq!(all.client.free_session_buffers_count(), BACKLOG + 2);
    assert_eq!(all.server.free_session_buffers_count(), BACKLOG + 2);

    // Every socket is back, parked, and nothing else is in the sets.
    assert_eq!(be.client.free_socket_count(), BACKLOG + 2);
    assert_eq!(be.server.free_socket_count(), 2);
    assert_eq!(be.pair.a.sockets.iter().count(), BACKLOG + 2);
    assert_eq!(be.pair.b.sockets.iter().count(), BACKLOG + 2);
}
