//! Memory and scaling of idle sessions, with a counting global allocator:
//! * bytes of bookend state per idle established session, beyond the smoltcp
//!   socket and its buffers (bookend minus raw smoltcp holding the same
//!   connections, both sides, identical TCP buffers);
//! * memory of a stack holding 10,000 idle sessions;
//! * poll cost as idle sessions grow from 10 to 10,000.
//!
//! `cargo run --release -p bookend-benches --bin memory` (`BOOKEND_BENCH_QUICK=1`: up to 1,000).

use std::alloc::System;
use std::time::Instant as Wall;

use bookend_benches::{Bookend, Pair, quick};
use bookend_session::Options;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BUF: usize = 4096;
const BACKLOG: usize = 8;

fn in_use() -> i64 {
    bookend_benches::heap_in_use(&GLOBAL.stats())
}

/// `n` idle established raw TCP connections and the heap they took.
fn raw(n: usize) -> (Pair, i64) {
    let before = in_use();
    let mut pair = bookend_benches::idle_raw(n, BUF);
    pair.release_harness_memory();
    (pair, in_use() - before)
}

/// `n` idle established bookend sessions, the heap they took, and the
/// heap of the listener pool alone.
fn bookend(n: usize) -> (Bookend, i64, i64) {
    let before = in_use();
    let mut be = Bookend::new(BUF, BACKLOG);
    let listeners = in_use() - before;
    bookend_benches::idle_bookend(&mut be, n);
    be.pair.release_harness_memory();
    (be, in_use() - before, listeners)
}

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Heap held by `n` idle established session pairs on their own (no TCP).
fn session_heap(n: usize) -> i64 {
    use bookend_session::{Config as SConfig, Event, Instant, Session};
    let t = Instant::ZERO;
    let before = in_use();
    // One configuration for all, as an endpoint shares it.
    let config = std::sync::Arc::new(SConfig::default());
    let mut pairs = Vec::with_capacity(n);
    let mut buf = vec![0u8; 4096];
    for i in 0..n {
        let mut c = Session::caller(config.clone(), i as u32).unwrap();
        let mut s = Session::callee(config.clone(), i as u32, t).unwrap();
        c.connect(t, Some(b"client"), Options::DEFAULT).unwrap();
        let k = c.poll_transmit(t, &mut buf);
        s.handle_bytes(t, &buf[..k]);
        let Some(Event::ConnectRequest(req)) = s.poll_event() else {
            panic!()
        };
        s.accept(t, Some(b"welcome"), req.grant).unwrap();
        let k = s.poll_transmit(t, &mut buf);
        c.handle_bytes(t, &buf[..k]);
        while c.poll_event().is_some() {}
        while s.poll_event().is_some() {}
        pairs.push((c, s));
    }
    let used = in_use() - before;
    let inline = (std::mem::size_of::<bookend_session::Session>() * 2 * n) as i64;
    println!(
        "{n} idle session pairs alone: {} B heap per session ({} B of it the Session structs in a Vec)",
        used / (2 * n as i64),
        inline / (2 * n as i64)
    );
    // What a driver does when a session goes quiet: its empty parts go to a
    // bounded pool (freed beyond it).
    let mut spares = bookend_session::Spares::new(64);
    for (c, s) in &mut pairs {
        c.trim(&mut spares);
        s.trim(&mut spares);
    }
    let trimmed = in_use() - before;
    println!(
        "  trimmed: {} B heap per session (the Session structs in a Vec, the shared Config and the pool of spares included)",
        trimmed / (2 * n as i64)
    );
    drop(pairs);
    used
}

fn main() {
    session_heap(1000);
    let sizes: &[usize] = if quick() {
        &[10, 100, 1000]
    } else {
        &[10, 100, 1000, 10_000]
    };
    println!(
        "Idle established connections, TCP buffers {BUF} B each way, both ends in this process.\n"
    );
    println!(
        "{:>7} {:>14} {:>14} {:>16} {:>16}",
        "N", "raw bytes", "bookend bytes", "extra/session", "extra/endpoint"
    );
    for &n in sizes {
        // Both variants hold 2N connected sockets; bookend also holds its
        // listener pool (measured on its own, before any connection).
        let m = bookend_benches::idle_memory(n, BUF, BACKLOG, in_use);
        assert_eq!(
            m.harness, 0,
            "the figures would count the harness's packets"
        );
        let extra = m.bookend - m.listeners - m.raw;
        println!(
            "{n:>7} {:>14} {:>14} {:>16.0} {:>16.0}",
            m.raw,
            m.bookend,
            extra as f64 / n as f64,
            extra as f64 / (2 * n) as f64
        );
    }
    let big = *sizes.last().unwrap();
    let (be, be_bytes, _) = bookend(big);
    println!(
        "\n{big} idle sessions (both ends): {:.1} MiB allocated; process peak RSS {} KiB",
        be_bytes as f64 / (1 << 20) as f64,
        vm_hwm_kib().map_or("?".to_string(), |k| k.to_string())
    );
    drop(be);

    println!(
        "\nPoll cost with N idle connections (one round: both interfaces, and both endpoints for bookend; fastest of 5 alternating batches):\n"
    );
    println!(
        "{:>7} {:>16} {:>16} {:>8}",
        "N", "raw us/round", "bookend us/round", "ratio"
    );
    for &n in sizes {
        let rounds = (200_000 / n).clamp(20, 2000);
        let (mut pair, _) = raw(n);
        let (mut be, _, _) = bookend(n);
        // Five alternating batches, the fastest of each kept: on shared
        // cores a batch is only ever slowed down by others' work.
        let (mut raw_us, mut be_us) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t = Wall::now();
            for _ in 0..rounds {
                pair.round();
            }
            raw_us = raw_us.min(t.elapsed().as_secs_f64() * 1e6 / rounds as f64);
            let t = Wall::now();
            for _ in 0..rounds {
                be.round();
            }
            be_us = be_us.min(t.elapsed().as_secs_f64() * 1e6 / rounds as f64);
        }
        println!(
            "{n:>7} {raw_us:>16.2} {be_us:>16.2} {:>8.3}",
            raw_us / be_us
        );
    }

    // Heap allocations per lifecycle, the same exchange both ways (after a
    // warm-up, so that one-off growth of tables is not counted).
    let (raw_allocs, be_allocs) =
        bookend_benches::allocations_per_lifecycle(200, BUF, BACKLOG, || {
            GLOBAL.stats().allocations as u64
        });
    println!(
        "\nHeap allocations per lifecycle (same exchange): raw smoltcp {raw_allocs:.1}, bookend {be_allocs:.1}, bookend beyond raw {:.1}",
        be_allocs - raw_allocs
    );
}
