//! Property tests over random interleavings: random application commands on
//! both sides, random chunking, latency and RST behaviour, then a teardown in
//! which both applications read everything and disconnect.
//!
//! Invariants:
//! * no panic and no illegal transition (the table is consulted with a
//!   `debug_assert` on every change) and no buffer over its bound (the harness
//!   checks after every round);
//! * received data is always a prefix of sent data: never altered, reordered
//!   or duplicated;
//! * when neither side aborts or closes early, both end `Graceful`, and every
//!   data byte (or message) and both disconnect data are delivered exactly
//!   once, in order, unaltered; whenever both end `Graceful` the same holds;
//! * both sessions end with exactly one `Closed`, last, and the two reasons
//!   agree with each other.

mod common;

use std::time::Duration;

use bookend_session::{CloseReason, Error, Event, Integrity, Mode, Options, Reason, Side};
use bytes::Bytes;
use common::{Chunking, Pair, RstBehaviour};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Cmd {
    Send(usize),
    Read,
    SendDisconnect(Option<Vec<u8>>),
    Close,
    Abort(u16),
    Advance(u64),
}

#[derive(Debug, Clone)]
struct Script {
    mode: Mode,
    chunking: Chunking,
    rst: RstBehaviour,
    latency_ms: u64,
    seed: u64,
    reject: bool,
    /// Each side reads with zero-copy `recv_direct` (stream mode) or not.
    direct: (bool, bool),
    /// The caller proposes the CRC-32C trailer; the callee is willing.
    integrity: (bool, bool),
    /// Both sessions over provided buffers of the exact sizes their
    /// configurations need.
    provided: bool,
    cmds: Vec<(bool, Cmd)>,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        6 => (0usize..20_000).prop_map(Cmd::Send),
        4 => Just(Cmd::Read),
        2 => prop::option::of(prop::collection::vec(any::<u8>(), 0..40)).prop_map(Cmd::SendDisconnect),
        1 => Just(Cmd::Close),
        1 => any::<u16>().prop_map(Cmd::Abort),
        3 => (0u64..200).prop_map(Cmd::Advance),
    ]
}

fn script() -> impl Strategy<Value = Script> {
    (
        prop_oneof![Just(Mode::Stream), Just(Mode::Message)],
        prop_oneof![
            Just(Chunking::Whole),
            Just(Chunking::OneByte),
            Just(Chunking::Random)
        ],
        prop_oneof![Just(RstBehaviour::AfterData), Just(RstBehaviour::DropsData)],
        0u64..30,
        any::<u64>(),
        prop::bool::weighted(0.1),
        (any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>()),
        any::<bool>(),
        prop::collection::vec((any::<bool>(), cmd()), 0..30),
    )
        .prop_map(
            |(mode, chunking, rst, latency_ms, seed, reject, direct, integrity, provided, cmds)| {
                Script {
                    mode,
                    chunking,
                    rst,
                    latency_ms,
                    seed,
                    reject,
                    direct,
                    integrity,
                    provided,
                    cmds,
                }
            },
        )
}

/// What one application did and saw.
#[derive(Default, Debug)]
struct App {
    sent: Vec<u8>,
    sent_messages: Vec<Vec<u8>>,
    received: Vec<u8>,
    received_messages: Vec<Bytes>,
    disconnect_sent: Option<Option<Vec<u8>>>,
    disconnect_received: Option<Option<Bytes>>,
    counter: usize,
    aborted: bool,
    closed_early: bool,
    direct: bool,
}

fn pattern(side: u8, i: usize) -> u8 {
    ((i * 7 + usize::from(side) * 13) % 251) as u8
}

fn ep(p: &mut Pair, client: bool) -> &mut common::Endpoint {
    if client { &mut p.client } else { &mut p.server }
}

fn read_all(p: &mut Pair, client: bool, app: &mut App, mode: Mode) {
    let now = p.time;
    let mut buf = vec![0u8; 70_000];
    if app.direct && mode == Mode::Stream {
        // Zero-copy reads until nothing more comes, then the usual checks.
        loop {
            let n = ep(p, client).read_direct(now, &mut buf[..1500]);
            if n == 0 {
                break;
            }
            app.received.extend_from_slice(&buf[..n]);
        }
    }
    let s = &mut ep(p, client).session;
    loop {
        match mode {
            Mode::Stream => match s.recv(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => app.received.extend_from_slice(&buf[..n]),
            },
            Mode::Message => match s.recv_message_bytes() {
                Ok(m) => app.received_messages.push(m),
                Err(_) => break,
            },
        }
    }
    if s.peer_disconnected() && app.disconnect_received.is_none() {
        match s.recv_disconnect_bytes() {
            Ok(d) => app.disconnect_received = Some(d),
            Err(e) => assert!(
                matches!(
                    e,
                    Error::Consumed | Error::ConnectionAborted | Error::ConnectionReset
                ),
                "{e:?}"
            ),
        }
    }
}

fn run(script: &Script, client_app: &mut App, server_app: &mut App) -> Pair {
    let crc = |on: bool| {
        if on {
            Integrity::Crc32c
        } else {
            Integrity::None
        }
    };
    let mut server = bookend_session::Config::default();
    server.offered_modes = bookend_session::ModeOffer::Both;
    server.options.integrity = crc(script.integrity.1);
    // The caller's configuration in the mode it proposes, so that provided
    // buffers sized from it hold that mode's bounds.
    let mut client = bookend_session::Config::default();
    client.options.mode = script.mode;
    let mut p = Pair::new(client, server).seeded(script.seed);
    if script.provided {
        p = p.provided();
    }
    p.chunking = script.chunking;
    p.rst = script.rst;
    p.latency = Duration::from_millis(script.latency_ms);
    let options = Options {
        mode: script.mode,
        keepalive_ms: 1_000,
        integrity: crc(script.integrity.0),
        ..Options::DEFAULT
    };
    let t = p.time;
    p.client
        .session
        .connect(t, Some(b"caller"), options)
        .unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.server
            .events
            .iter()
            .any(|e| matches!(e, Event::ConnectRequest(_)))
    });
    let req = p.server.take_events().into_iter().find_map(|e| match e {
        Event::ConnectRequest(r) => Some(r),
        _ => None,
    });
    let t = p.time;
    if script.reject {
        p.server
            .session
            .reject(t, Reason::BUSY, Some(b"busy"))
            .unwrap();
        p.finish(Duration::from_secs(30));
        return p;
    }
    p.server
        .session
        .accept(t, Some(b"callee"), req.unwrap().grant)
        .unwrap();
    p.settle();

    for (is_client, c) in &script.cmds {
        let app = if *is_client {
            &mut *client_app
        } else {
            &mut *server_app
        };
        let side = u8::from(*is_client);
        let now = p.time;
        let s = &mut ep(&mut p, *is_client).session;
        match c {
            Cmd::Send(n) => {
                let data: Vec<u8> = (app.counter..app.counter + n)
                    .map(|i| pattern(side, i))
                    .collect();
                match script.mode {
                    Mode::Stream => {
                        if let Ok(k) = s.send(&data) {
                            app.sent.extend_from_slice(&data[..k]);
                            app.counter += k;
                        }
                    }
                    Mode::Message => {
                        if s.send_message(&data).is_ok() {
                            app.counter += n;
                            app.sent_messages.push(data);
                        }
                    }
                }
            }
            Cmd::Read => read_all(&mut p, *is_client, app, script.mode),
            Cmd::SendDisconnect(d) => {
                if s.send_disconnect(now, d.as_deref()).is_ok() && app.disconnect_sent.is_none() {
                    app.disconnect_sent = Some(d.clone());
                }
            }
            Cmd::Close => {
                s.close(now);
                app.closed_early = true;
            }
            Cmd::Abort(r) => {
                if s.abort(now, Reason(*r), Some(b"abort data")).is_ok() {
                    app.aborted = true;
                }
            }
            Cmd::Advance(ms) => {
                let t = p.time + Duration::from_millis(*ms);
                p.run_until(t);
            }
        }
        p.settle();
    }

    // Teardown: both applications read everything, disconnect, read the
    // peer's disconnect data, and close: the seed scenario's shape.
    for _ in 0..10_000 {
        for client in [true, false] {
            let app = if client {
                &mut *client_app
            } else {
                &mut *server_app
            };
            read_all(&mut p, client, app, script.mode);
            let now = p.time;
            let s = &mut ep(&mut p, client).session;
            if !s.local_disconnected() && s.send_disconnect(now, Some(b"final")).is_ok() {
                app.disconnect_sent = Some(Some(b"final".to_vec()));
            }
            if s.peer_disconnected() && s.local_disconnected() {
                read_all(&mut p, client, app, script.mode);
                let s = &mut ep(&mut p, client).session;
                s.close(now);
            }
        }
        if p.client.session.is_drained() && p.server.session.is_drained() {
            break;
        }
        if !p.advance(Duration::from_secs(60)) {
            p.settle();
        }
    }
    p
}

/// Whether two close reasons describe one ending. `a_fin` / `b_fin`: that side
/// had transmitted its FIN (the exchange was complete from the peer's view).
fn agree(a: &CloseReason, b: &CloseReason, a_fin: bool, b_fin: bool) -> bool {
    use CloseReason::*;
    match (a, b) {
        (Graceful, Graceful) => true,
        (Refused { reason: r1 }, Rejected { reason: r2 })
        | (Rejected { reason: r2 }, Refused { reason: r1 }) => r1 == r2,
        (
            Aborted {
                by: Side::Local,
                reason: r1,
                data: d1,
            },
            Aborted {
                by: Side::Peer,
                reason: r2,
                data: d2,
            },
        )
        | (
            Aborted {
                by: Side::Peer,
                reason: r2,
                data: d2,
            },
            Aborted {
                by: Side::Local,
                reason: r1,
                data: d1,
            },
        ) => r1 == r2 && d1 == d2,
        // Both aborted at once, or one's RST overtook (or followed) the other's frame.
        (
            Aborted {
                by: Side::Local, ..
            },
            Aborted {
                by: Side::Local, ..
            }
            | Reset,
        ) => true,
        (
            Reset,
            Aborted {
                by: Side::Local, ..
            },
        ) => true,
        // An abort after our FIN went out: the peer already had the whole exchange.
        (
            Aborted {
                by: Side::Local, ..
            },
            Graceful,
        ) => a_fin,
        (
            Graceful,
            Aborted {
                by: Side::Local, ..
            },
        ) => b_fin,
        _ => false,
    }
}

proptest! {
    // 400 cases in `cargo test`; `BOOKEND_PROPTEST_CASES=20000` for the long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("BOOKEND_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_interleavings_keep_the_invariants(s in script()) {
        let mut c = App { direct: s.direct.0, ..App::default() };
        let mut sv = App { direct: s.direct.1, ..App::default() };
        let p = run(&s, &mut c, &mut sv);

        // Exactly one Closed, last, on both sides.
        for e in [&p.client, &p.server] {
            prop_assert_eq!(e.events.iter().filter(|x| matches!(x, Event::Closed(_))).count(), 1, "{:?}", e.events);
            prop_assert!(matches!(e.events.last(), Some(Event::Closed(_))), "{:?}", e.events);
        }
        let (rc, rs) = (p.client.closed().unwrap().clone(), p.server.closed().unwrap().clone());
        prop_assert!(agree(&rc, &rs, p.client.sent_fin, p.server.sent_fin), "client {:?} / server {:?}", rc, rs);

        // Never altered, reordered or duplicated.
        prop_assert!(c.sent.starts_with(&sv.received), "server got a non-prefix");
        prop_assert!(sv.sent.starts_with(&c.received), "client got a non-prefix");
        prop_assert!(c.sent_messages.iter().zip(&sv.received_messages).all(|(a, b)| a[..] == b[..]));
        prop_assert!(sv.sent_messages.iter().zip(&c.received_messages).all(|(a, b)| a[..] == b[..]));
        prop_assert!(sv.received_messages.len() <= c.sent_messages.len());

        let undisturbed = !s.reject && !c.aborted && !sv.aborted && !c.closed_early && !sv.closed_early;
        if undisturbed {
            prop_assert_eq!(&rc, &CloseReason::Graceful);
            prop_assert_eq!(&rs, &CloseReason::Graceful);
        }
        if rc == CloseReason::Graceful && rs == CloseReason::Graceful {
            prop_assert_eq!(&sv.received, &c.sent);
            prop_assert_eq!(&c.received, &sv.sent);
            prop_assert_eq!(sv.received_messages.len(), c.sent_messages.len());
            prop_assert_eq!(c.received_messages.len(), sv.sent_messages.len());
            let as_bytes = |d: &Option<Option<Vec<u8>>>| d.clone().flatten().map(Bytes::from);
            prop_assert_eq!(sv.disconnect_received.clone().flatten(), as_bytes(&c.disconnect_sent));
            prop_assert_eq!(c.disconnect_received.clone().flatten(), as_bytes(&sv.disconnect_sent));
        }
        if s.reject {
            prop_assert_eq!(rc, CloseReason::Refused { reason: Reason::BUSY });
        }
    }
}
