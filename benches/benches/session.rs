//! The session machine alone: two `Session`s wired in memory, no TCP.

// criterion_group! generates an undocumented `pub fn`; bench binaries have no API.
#![allow(missing_docs)]

use bookend_benches::criterion as config;
use bookend_session::{
    Config, Event, Instant, Mode, Options, Session, TransportAction, TransportClosed,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const T: Instant = Instant::ZERO;

/// Moves everything one session wants to send into the other.
fn shuttle(from: &mut Session, to: &mut Session, buf: &mut [u8]) -> Option<TransportAction> {
    loop {
        let n = from.poll_transmit(T, buf);
        if n == 0 {
            break;
        }
        let mut at = 0;
        while at < n {
            let k = to.handle_bytes(T, &buf[at..n]);
            assert!(k > 0, "receiver full");
            at += k;
        }
    }
    from.poll_transport_action()
}

fn connected(mode: Mode) -> (Session, Session) {
    let mut cfg = Config::default();
    cfg.options.mode = mode;
    cfg.recv_buffer = 1 << 20;
    cfg.send_buffer = 1 << 20;
    let mut c = Session::caller(cfg.clone(), 1).unwrap();
    let mut s = Session::callee(cfg, 2, T).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    c.connect(
        T,
        Some(b"caller"),
        Options {
            mode,
            ..Options::DEFAULT
        },
    )
    .unwrap();
    shuttle(&mut c, &mut s, &mut buf);
    let Some(Event::ConnectRequest(req)) = s.poll_event() else {
        panic!()
    };
    s.accept(T, Some(b"callee"), req.grant).unwrap();
    shuttle(&mut s, &mut c, &mut buf);
    while c.poll_event().is_some() {}
    while s.poll_event().is_some() {}
    (c, s)
}

fn bulk(c: &mut Criterion) {
    let mut g = c.benchmark_group("session/bulk");
    const CHUNK: usize = 256 * 1024;
    g.throughput(Throughput::Bytes(CHUNK as u64));
    let data = vec![0x5Au8; 16 * 1024];
    for mode in [Mode::Stream, Mode::Message] {
        let (mut a, mut b) = connected(mode);
        let mut wire = vec![0u8; 64 * 1024];
        let mut sink = vec![0u8; 64 * 1024];
        g.bench_function(BenchmarkId::from_parameter(format!("{mode:?}")), |bench| {
            bench.iter(|| {
                let mut sent = 0;
                while sent < CHUNK {
                    match mode {
                        Mode::Stream => sent += a.send(&data).unwrap(),
                        Mode::Message => {
                            a.send_message(&data).unwrap();
                            sent += data.len();
                        }
                    }
                    shuttle(&mut a, &mut b, &mut wire);
                    match mode {
                        Mode::Stream => while b.recv(&mut sink).is_ok_and(|n| n > 0) {},
                        Mode::Message => while b.recv_message(&mut sink).is_ok() {},
                    }
                }
                while a.poll_event().is_some() {}
                while b.poll_event().is_some() {}
                black_box(sent)
            })
        });
    }
    g.finish();
}

fn lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("session/lifecycle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("full", |bench| {
        let mut buf = vec![0u8; 1 << 16];
        let mut msg = [0u8; 64];
        bench.iter(|| {
            let (mut a, mut b) = connected(Mode::Message);
            a.send_message(&[1u8; 32]).unwrap();
            shuttle(&mut a, &mut b, &mut buf);
            b.recv_message(&mut msg).unwrap();
            b.send_message(&[2u8; 32]).unwrap();
            shuttle(&mut b, &mut a, &mut buf);
            a.recv_message(&mut msg).unwrap();
            a.send_disconnect(T, Some(b"17")).unwrap();
            shuttle(&mut a, &mut b, &mut buf);
            b.recv_disconnect(&mut msg).unwrap();
            b.send_disconnect(T, Some(b"1017")).unwrap();
            let fin_b = shuttle(&mut b, &mut a, &mut buf);
            b.close(T);
            let fin_a = shuttle(&mut a, &mut b, &mut buf);
            a.recv_disconnect(&mut msg).unwrap();
            a.close(T);
            assert_eq!(
                (fin_a, fin_b),
                (Some(TransportAction::Fin), Some(TransportAction::Fin))
            );
            a.handle_transport_closed(T, TransportClosed::Fin);
            b.handle_transport_closed(T, TransportClosed::Fin);
            assert!(a.is_drained() || a.poll_event().is_some());
            black_box((a, b))
        })
    });
    g.finish();
}

criterion_group! { name = benches; config = config(); targets = bulk, lifecycle }
criterion_main!(benches);
