//! What the heap sees of sessions over provided buffers: once connected,
//! messages and stream bytes both ways, read with the copying calls,
//! allocate nothing, where the same traffic over heap buffers allocates.
//! The harness wires the two sessions through stack arrays, so every
//! allocation counted is the sessions'.
//!
//! One test function: the allocator's counters are process-wide.

use std::alloc::System;

use bookend_session::{
    BufferSizes, Config, Event, Instant, Mode, ModeOffer, Options, Session, SessionBuffers,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn buffers(config: &Config) -> SessionBuffers {
    let storage = Box::leak(vec![0u8; BufferSizes::for_config(config).total()].into_boxed_slice());
    SessionBuffers::new(storage, config).unwrap()
}

/// Moves every byte either way until neither session has output.
fn pump(a: &mut Session, b: &mut Session, t: Instant) {
    let mut wire = [0u8; 1460];
    let mut one_way = |from: &mut Session, to: &mut Session| {
        let n = from.poll_transmit(t, &mut wire);
        if n > 0 {
            let taken = to.handle_bytes(t, &wire[..n]);
            assert_eq!(taken, n, "the receiver reads as it goes");
        }
        n > 0
    };
    while one_way(a, b) | one_way(b, a) {}
}

fn connected(mode: Mode, provided: bool) -> (Session, Session) {
    let mut config = Config::small();
    config.offered_modes = ModeOffer::Both;
    let t = Instant::ZERO;
    let mut c = Session::caller(config.clone(), 1).unwrap();
    let mut s = Session::callee(config.clone(), 2, t).unwrap();
    if provided {
        c.provide_buffers(buffers(&config)).unwrap();
        s.provide_buffers(buffers(&config)).unwrap();
    }
    let options = Options {
        mode,
        ..Options::SMALL
    };
    c.connect(t, Some(b"hello"), options).unwrap();
    pump(&mut c, &mut s, t);
    let Some(Event::ConnectRequest(req)) = s.poll_event() else {
        panic!("no request")
    };
    s.accept(t, Some(b"welcome"), req.grant).unwrap();
    pump(&mut c, &mut s, t);
    while c.poll_event().is_some() {}
    while s.poll_event().is_some() {}
    (c, s)
}

/// Bytes allocated by 200 rounds of: a message (or 1 000 stream bytes)
/// each way, read by the other side.
fn traffic(mode: Mode, provided: bool) -> u64 {
    let (mut c, mut s) = connected(mode, provided);
    let t = Instant::ZERO;
    let data = [7u8; 1000];
    let mut buf = [0u8; 2048];
    let before = GLOBAL.stats().bytes_allocated;
    for i in 0..200 {
        let len = 1 + i * 5 % 1000;
        match mode {
            Mode::Message => {
                c.send_message(&data[..len]).unwrap();
                s.send_message(&data[..len]).unwrap();
                pump(&mut c, &mut s, t);
                assert_eq!(s.recv_message(&mut buf), Ok(len));
                assert_eq!(c.recv_message(&mut buf), Ok(len));
            }
            Mode::Stream => {
                assert_eq!(c.send(&data[..len]), Ok(len));
                assert_eq!(s.send(&data[..len]), Ok(len));
                pump(&mut c, &mut s, t);
                assert_eq!(s.recv(&mut buf), Ok(len));
                assert_eq!(c.recv(&mut buf), Ok(len));
            }
        }
        while c.poll_event().is_some() {}
        while s.poll_event().is_some() {}
    }
    GLOBAL.stats().bytes_allocated as u64 - before as u64
}

#[test]
fn sessions_over_provided_buffers_allocate_nothing_for_payloads() {
    for mode in [Mode::Message, Mode::Stream] {
        let heap = traffic(mode, false);
        let provided = traffic(mode, true);
        eprintln!("{mode:?}: heap buffers {heap} B, provided {provided} B");
        // The measurement sees the heap sessions' buffers.
        assert!(heap > 0, "{mode:?}: nothing seen over heap buffers");
        assert_eq!(
            provided, 0,
            "{mode:?}: bytes allocated over provided buffers"
        );
    }
}
