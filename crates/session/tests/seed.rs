//! The seed's transaction-total scenario (`../shared/seeds/000_07d71ad31d3f3e75.txt`,
//! `docs/protocol.md` §9.2), steps 1–8 and 5a, played between two sessions.
//!
//! The client has done some transactions and ends with WSASendDisconnect(total);
//! the server reads it after FD_CLOSE, adds it to its cumulative total, answers
//! with WSASendDisconnect(grand total) and closes at once (5a). Step 5a "has no
//! timing relationship with step (6), (7), or (8)": every position of 5a among
//! them is played, in stream and message mode, under every chunking.

mod common;

use std::time::Duration;

use bookend_session::{CloseReason, Error, Event, Mode, Options, State};
use common::{Chunking, Pair};

const CLIENT_TOTAL: u64 = 17;
const PRIOR_TOTAL: u64 = 1000;

/// Where step 5a (server closesocket) falls relative to the client's 6, 7, 8.
#[derive(Debug, Clone, Copy)]
enum CloseAt {
    BeforeSix,
    AfterSix,
    AfterSeven,
    AfterEight,
}

fn options(mode: Mode) -> Options {
    Options {
        mode,
        ..Options::DEFAULT
    }
}

/// One transaction each way before the teardown, so that normal data precedes
/// the disconnect data on both directions.
fn transaction(p: &mut Pair, mode: Mode) {
    let mut buf = [0u8; 64];
    match mode {
        Mode::Stream => {
            assert_eq!(p.client.session.send(b"txn 1"), Ok(5));
            p.drive_until(Duration::from_secs(1), |p| {
                p.server.session.recv_queue() == 5
            });
            assert_eq!(p.server.session.recv(&mut buf), Ok(5));
            assert_eq!(p.server.session.send(b"ok 1"), Ok(4));
            p.drive_until(Duration::from_secs(1), |p| {
                p.client.session.recv_queue() == 4
            });
            assert_eq!(p.client.session.recv(&mut buf), Ok(4));
        }
        Mode::Message => {
            p.client.session.send_message(b"txn 1").unwrap();
            p.drive_until(Duration::from_secs(1), |p| {
                p.server.session.recv_queue() == 5
            });
            assert_eq!(p.server.session.recv_message(&mut buf), Ok(5));
            p.server.session.send_message(b"ok 1").unwrap();
            p.drive_until(Duration::from_secs(1), |p| {
                p.client.session.recv_queue() == 4
            });
            assert_eq!(p.client.session.recv_message(&mut buf), Ok(4));
        }
    }
}

fn total(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("an 8-byte total"))
}

fn seed_scenario(mode: Mode, close_at: CloseAt, chunking: Chunking, latency_ms: u64) {
    let mut p = Pair::default_pair().seeded(latency_ms * 31 + close_at as u64);
    p.chunking = chunking;
    p.latency = Duration::from_millis(latency_ms);
    p.connect(b"client-1", b"welcome", options(mode));
    transaction(&mut p, mode);
    let mut cumulative = PRIOR_TOTAL;

    // (1) Client: WSASendDisconnect to conclude the session, with its transaction total.
    let t = p.time;
    p.client
        .session
        .send_disconnect(t, Some(&CLIENT_TOTAL.to_be_bytes()))
        .unwrap();
    // E9: sending after WSASendDisconnect fails with WSAESHUTDOWN.
    match mode {
        Mode::Stream => assert_eq!(p.client.session.send(b"late"), Err(Error::Shutdown)),
        Mode::Message => assert_eq!(p.client.session.send_message(b"late"), Err(Error::Shutdown)),
    }

    // (2) Server: FD_CLOSE; recv returns 0 (stream) or WSAEDISCON (message).
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.events.contains(&Event::PeerDisconnected)
    });
    let mut buf = [0u8; 64];
    match mode {
        Mode::Stream => assert_eq!(p.server.session.recv(&mut buf), Ok(0)),
        Mode::Message => assert_eq!(
            p.server.session.recv_message(&mut buf),
            Err(Error::Disconnected)
        ),
    }

    // (3) Server: WSARecvDisconnect gets the client's transaction total.
    let n = p.server.session.recv_disconnect(&mut buf).unwrap().unwrap();
    let client_total = total(&buf[..n]);
    assert_eq!(client_total, CLIENT_TOTAL);

    // (4) Server: compute the cumulative grand total of all transactions.
    cumulative += client_total;

    // (5) Server: WSASendDisconnect to transmit the grand total.
    let t = p.time;
    p.server
        .session
        .send_disconnect(t, Some(&cumulative.to_be_bytes()))
        .unwrap();
    assert_eq!(p.server.session.state(), State::Closing);

    let mut closed_5a = false;
    let close_5a = |p: &mut Pair| {
        // (5a) Server: closesocket, at once, with no wait for anything.
        let t = p.time;
        p.server.session.close(t);
    };
    if let CloseAt::BeforeSix = close_at {
        close_5a(&mut p);
        closed_5a = true;
    }

    // (6) Client: receive the FD_CLOSE indication.
    p.drive_until(Duration::from_secs(1), |p| {
        p.client.events.contains(&Event::PeerDisconnected)
    });
    if let CloseAt::AfterSix = close_at {
        close_5a(&mut p);
        closed_5a = true;
    }

    // (7) Client: WSARecvDisconnect receives and stores the grand total.
    let n = p.client.session.recv_disconnect(&mut buf).unwrap().unwrap();
    assert_eq!(total(&buf[..n]), PRIOR_TOTAL + CLIENT_TOTAL);
    assert_eq!(
        p.client.session.recv_disconnect(&mut buf),
        Err(Error::Consumed),
        "readable once"
    );
    p.settle();
    if let CloseAt::AfterSeven = close_at {
        close_5a(&mut p);
        closed_5a = true;
    }

    // (8) Client: closesocket.
    let t = p.time;
    p.client.session.close(t);
    p.settle();
    if !closed_5a {
        close_5a(&mut p);
    }

    p.finish(Duration::from_secs(5));
    assert_eq!(
        p.client.closed(),
        Some(&CloseReason::Graceful),
        "client: {:?}",
        p.client.events
    );
    assert_eq!(
        p.server.closed(),
        Some(&CloseReason::Graceful),
        "server: {:?}",
        p.server.events
    );
    assert!(p.client.sent_fin && p.server.sent_fin);
    assert!(
        !p.client.sent_rst && !p.server.sent_rst,
        "a graceful teardown sends no RST"
    );
    // Closed is the last event, exactly once.
    for ep in [&p.client, &p.server] {
        assert_eq!(
            ep.events
                .iter()
                .filter(|e| matches!(e, Event::Closed(_)))
                .count(),
            1
        );
        assert!(matches!(ep.events.last(), Some(Event::Closed(_))));
    }
}

/// Options without the integrity option: frames as §3 lays them out.
const UNSEALED: Options = Options {
    integrity: bookend_session::Integrity::None,
    ..Options::DEFAULT
};

#[test]
fn seed_scenario_every_5a_ordering_both_modes_every_chunking() {
    for mode in [Mode::Stream, Mode::Message] {
        for close_at in [
            CloseAt::BeforeSix,
            CloseAt::AfterSix,
            CloseAt::AfterSeven,
            CloseAt::AfterEight,
        ] {
            for chunking in [Chunking::Whole, Chunking::OneByte, Chunking::Random] {
                for latency in [0, 1, 50] {
                    seed_scenario(mode, close_at, chunking, latency);
                }
            }
        }
    }
}

/// E3: "no data" and "zero-length data" are different on the wire and to the reader.
#[test]
fn disconnect_without_data_is_distinct_from_empty_data() {
    for data in [None, Some(&b""[..])] {
        let mut p = Pair::default_pair();
        p.connect(b"c", b"s", Options::DEFAULT);
        let t = p.time;
        p.client.session.send_disconnect(t, data).unwrap();
        p.drive_until(Duration::from_secs(1), |p| {
            p.server.session.peer_disconnected()
        });
        let mut buf = [0u8; 4];
        let got = p.server.session.recv_disconnect(&mut buf).unwrap();
        assert_eq!(got, data.map(<[u8]>::len));
    }
}

/// E5, E10, E13: disconnect data before it arrives, twice, and into a small buffer.
#[test]
fn recv_disconnect_edge_cases() {
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    let mut small = [0u8; 2];
    assert_eq!(
        p.server.session.recv_disconnect(&mut small),
        Err(Error::NotYet)
    );
    let t = p.time;
    p.client.session.send_disconnect(t, Some(b"12345")).unwrap();
    // E10: a second WSASendDisconnect: no data succeeds, data fails.
    assert_eq!(p.client.session.send_disconnect(t, None), Ok(()));
    assert_eq!(
        p.client.session.send_disconnect(t, Some(b"x")),
        Err(Error::Shutdown)
    );
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.session.peer_disconnected()
    });
    // E13: too small a buffer: WSAEFAULT, and the data stays.
    assert_eq!(
        p.server.session.recv_disconnect(&mut small),
        Err(Error::BufferTooSmall { needed: 5 })
    );
    let mut buf = [0u8; 8];
    assert_eq!(p.server.session.recv_disconnect(&mut buf), Ok(Some(5)));
    assert_eq!(&buf[..5], b"12345");
    assert_eq!(
        p.server.session.recv_disconnect(&mut buf),
        Err(Error::Consumed)
    );
}

/// E8: after step 1 the server may still send normal data, which the client
/// reads before the grand total; E11: simultaneous WSASendDisconnect.
#[test]
fn half_close_keeps_the_other_direction_open_and_simultaneous_disconnect_works() {
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    let t = p.time;
    p.client.session.send_disconnect(t, Some(b"A")).unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.session.peer_disconnected()
    });
    assert_eq!(p.server.session.send(b"more data"), Ok(9));
    let t = p.time;
    p.server.session.send_disconnect(t, Some(b"B")).unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.client.session.peer_disconnected()
    });
    let mut buf = [0u8; 16];
    assert_eq!(p.client.session.recv(&mut buf), Ok(9));
    assert_eq!(&buf[..9], b"more data");
    assert_eq!(p.client.session.recv(&mut buf), Ok(0));
    assert_eq!(
        p.client.session.recv(&mut buf),
        Ok(0),
        "recv keeps returning 0"
    );
    p.finish(Duration::from_secs(5));
    assert_eq!(p.client.closed(), Some(&CloseReason::Graceful));

    // E11: both at the same instant.
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    let t = p.time;
    p.client
        .session
        .send_disconnect(t, Some(b"from client"))
        .unwrap();
    p.server
        .session
        .send_disconnect(t, Some(b"from server"))
        .unwrap();
    p.finish(Duration::from_secs(5));
    let mut buf = [0u8; 32];
    assert_eq!(p.client.session.recv_disconnect(&mut buf), Ok(Some(11)));
    assert_eq!(&buf[..11], b"from server");
    assert_eq!(p.server.session.recv_disconnect(&mut buf), Ok(Some(11)));
    assert_eq!(&buf[..11], b"from client");
    assert_eq!(p.client.closed(), Some(&CloseReason::Graceful));
    assert_eq!(p.server.closed(), Some(&CloseReason::Graceful));
}

/// The zero-copy send path keeps frame order and delivers every byte.
#[test]
fn send_direct_keeps_order_and_delivers() {
    use bookend_session::{Instant, MIN_DIRECT_CHUNK};
    let mut p = Pair::default_pair();
    // Unsealed frames, whose sizes the test counts (sealed ones:
    // tests/integrity.rs).
    p.connect(b"c", b"s", UNSEALED);
    let t = Instant::ZERO;
    let a = &mut p.client.session;
    // Something queued: the direct path must not overtake it.
    assert_eq!(a.send(b"first "), Ok(6));
    let mut out = vec![0u8; 4096];
    assert_eq!(a.send_direct(t, b"second", &mut out), Ok((0, 0)));
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.session.recv_queue() == 6
    });
    // Queue empty: frames go straight into the caller's buffer.
    let a = &mut p.client.session;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    let mut taken = 0;
    while taken < data.len() {
        let (k, w) = a.send_direct(t, &data[taken..], &mut out).unwrap();
        assert!(k > 0 && w > k, "took {k}, wrote {w}");
        wire.extend_from_slice(&out[..w]);
        taken += k;
    }
    // Not below the minimum chunk when the room is short.
    let mut tiny = vec![0u8; 100];
    assert_eq!(a.send_direct(t, &data, &mut tiny), Ok((0, 0)));
    let mut room = vec![0u8; 6 + MIN_DIRECT_CHUNK];
    assert_eq!(
        a.send_direct(t, &data, &mut room),
        Ok((MIN_DIRECT_CHUNK, 6 + MIN_DIRECT_CHUNK))
    );
    wire.extend_from_slice(&room);
    let b = &mut p.server.session;
    let mut at = 0;
    while at < wire.len() {
        at += b.handle_bytes(t, &wire[at..]);
    }
    let mut got = vec![0u8; 20_000];
    let mut n = 0;
    while let Ok(k) = b.recv(&mut got[n..]) {
        if k == 0 {
            break;
        }
        n += k;
    }
    let mut expected = b"first ".to_vec();
    expected.extend_from_slice(&data);
    expected.extend_from_slice(&data[..MIN_DIRECT_CHUNK]);
    assert!(
        got[..n] == expected[..],
        "{} bytes received, {} expected, or out of order",
        n,
        expected.len()
    );
}

/// Zero-copy receive: DATA straight from the "transport" into the
/// application's buffer, control frames handled, any split of the wire.
#[test]
fn recv_direct_delivers_in_order_across_every_split() {
    use bookend_session::{Instant, TransportAction};
    use bookend_wire::FrameRepr;
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut wire = Vec::new();
    for chunk in data.chunks(1700) {
        let f = FrameRepr::Data {
            end_of_message: false,
            payload: chunk,
        };
        let at = wire.len();
        wire.resize(at + f.buffer_len(), 0);
        f.emit(&mut wire[at..]).unwrap();
    }
    let d = FrameRepr::Disconnect { data: Some(b"17") };
    let at = wire.len();
    wire.resize(at + d.buffer_len(), 0);
    d.emit(&mut wire[at..]).unwrap();
    for split in [1usize, 5, 6, 7, 100, 1705, 1706, 3000, wire.len()] {
        let mut p = Pair::default_pair();
        // The transport below holds unsealed frames (sealed ones:
        // tests/integrity.rs).
        p.connect(b"c", b"s", UNSEALED);
        let t = Instant::ZERO;
        let s = &mut p.server.session;
        s.set_direct_receive(true);
        // The transport holds `wire`; the application reads in 999-byte bites,
        // and the driver's pump (handle_bytes) runs in between.
        let mut held = &wire[..];
        let mut got = Vec::new();
        let mut out = [0u8; 999];
        let mut rounds = 0;
        while !held.is_empty() {
            rounds += 1;
            assert!(rounds < 10_000, "no progress at split {split}");
            let window = &held[..held.len().min(split)];
            let pumped = s.handle_bytes(t, window);
            held = &held[pumped..];
            // As Endpoint::recv does: what the session buffered first, then direct.
            while s.recv_queue() > 0 {
                let n = s.recv(&mut out).unwrap();
                got.extend_from_slice(&out[..n]);
            }
            let window = &held[..held.len().min(split)];
            let (consumed, written) = s.recv_direct(t, window, &mut out);
            got.extend_from_slice(&out[..written]);
            held = &held[consumed..];
        }
        while s.recv_queue() > 0 {
            let n = s.recv(&mut out).unwrap();
            got.extend_from_slice(&out[..n]);
        }
        assert!(
            got == data,
            "split {split}: {} of {} bytes, or out of order",
            got.len(),
            data.len()
        );
        assert!(s.peer_disconnected(), "split {split}");
        let mut buf = [0u8; 8];
        assert_eq!(s.recv_disconnect(&mut buf), Ok(Some(2)));
        assert_eq!(s.recv(&mut buf), Ok(0), "end of stream after the data");
        let _ = TransportAction::Fin;
    }
}
