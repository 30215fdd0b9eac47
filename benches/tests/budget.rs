//! Issue 10's memory and allocation figures as a guard (counts, not times,
//! so they are exact on any machine): what an idle established session
//! costs beyond raw smoltcp holding the same connections, and heap
//! allocations per lifecycle beyond raw smoltcp doing the same exchange.
//! `benches/README.md` has the full figures from `--bin memory`.
//!
//! One test function: the counters are process-wide.

use std::alloc::System;

use bookend_benches::{allocations_per_lifecycle, idle_memory};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BUF: usize = 4096;
const BACKLOG: usize = 8;
const IDLE: usize = 200;

/// Idle bytes per session and endpoint at 200 sessions: 447 measured on
/// 2026-12-02 (third session) once the harness's own packets were no longer
/// counted as raw smoltcp's memory, 358 after that session's slimming (340
/// at 10 000). Those figures added stats_alloc's `bytes_reallocated` to a
/// counter that already held a reallocation's growth (see `heap_in_use`;
/// the check at the top of the test below fails on 681f2e1): counted
/// correctly, the fourth session measured 278 halfway and ended at 260
/// (253 at 1 000 and at 10 000, where the target of 256 applies:
/// reached; `--bin memory` measures it, see benches/README.md). At 200 the
/// endpoint's fixed pools weigh more per session; this bound catches a
/// regression.
const MAX_IDLE_BYTES: i64 = 268;

/// Heap allocations per lifecycle beyond raw smoltcp: 5.2 measured (the four
/// user data deliveries and the two received messages, each handed to the
/// application as `Bytes` owning its buffer, less what raw's harness does);
/// the target is 6.
const MAX_EXTRA_ALLOCATIONS: f64 = 6.0;

fn in_use() -> i64 {
    bookend_benches::heap_in_use(&GLOBAL.stats())
}

#[test]
fn idle_sessions_and_lifecycles_stay_within_their_budget() {
    // The heap counter itself: a `Vec` grown in place (a reallocation)
    // holds its new capacity once, not its growth twice (stats_alloc adds a
    // reallocation's growth to `bytes_allocated` already).
    let before = in_use();
    let mut v: Vec<u8> = Vec::with_capacity(16);
    v.reserve_exact(4096 - 16);
    assert_eq!(
        in_use() - before,
        v.capacity() as i64,
        "the counter's reading"
    );
    drop(v);

    // Idle memory: bookend minus raw for the same connections, the listener
    // pool (measured before any connection) subtracted.
    let m = idle_memory(IDLE, BUF, BACKLOG, in_use);
    // The figures are the stacks' alone: raw smoltcp opens its N connections
    // at once, and the harness's recycled packets from that burst once
    // counted as raw's memory (about 85 B per session and endpoint at 1 000),
    // making bookend's extra look that much smaller.
    assert_eq!(m.harness, 0, "harness memory counted: {m:?}");
    let per_endpoint = m.per_endpoint();
    assert!(
        per_endpoint <= MAX_IDLE_BYTES,
        "{per_endpoint} B per idle session and endpoint (bound {MAX_IDLE_BYTES})"
    );

    // Allocations per lifecycle, after a warm-up (one-off growth of tables
    // and pools is not counted).
    let (raw_allocs, be_allocs) =
        allocations_per_lifecycle(100, BUF, BACKLOG, || GLOBAL.stats().allocations as u64);
    let extra = be_allocs - raw_allocs;
    assert!(
        extra <= MAX_EXTRA_ALLOCATIONS,
        "{extra:.1} heap allocations per lifecycle beyond raw smoltcp (bound {MAX_EXTRA_ALLOCATIONS})"
    );
    println!(
        "idle: {per_endpoint} B per session and endpoint; lifecycle: {extra:.1} allocations beyond raw"
    );
}
