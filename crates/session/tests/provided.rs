//! Sessions over buffers in the application's storage
//! ([`SessionBuffers`]): refused when too small or too late, given back for
//! the next session, and never outgrown by what a peer sends. The buffers
//! are exactly the sizes the configuration needs, so a session asking its
//! queues for more than its bounds trips their debug assertion.

mod common;

use std::time::Duration;

use bookend_session::{
    BufferSizes, BuffersError, Config, Event, Integrity, Mode, ModeOffer, Options, Session,
    SessionBuffers,
};
use common::{Pair, exact_buffers};

fn small(mode: Mode, integrity: Integrity) -> Config {
    let mut c = Config::small();
    c.options.mode = mode;
    c.options.integrity = integrity;
    c.offered_modes = ModeOffer::Both;
    c
}

fn connected(mode: Mode, integrity: Integrity) -> Pair {
    let c = small(mode, integrity);
    let mut p = Pair::new(c.clone(), c).provided().seeded(7);
    // Frames split anywhere, so that sealed ones are assembled in the
    // frame buffer.
    p.chunking = common::Chunking::Random;
    let options = Options {
        mode,
        integrity,
        ..Options::SMALL
    };
    p.connect(&[1; 256], &[2; 256], options);
    assert!(p.client.session.has_provided_buffers());
    assert!(p.server.session.has_provided_buffers());
    p
}

/// Drives until nothing moves: the receiver is not reading, so flow control
/// holds the rest in the sender's buffers and the transport.
fn settle(p: &mut Pair) {
    // In flight arrives within the link's latency; timers beyond are idle.
    while p.advance(Duration::from_millis(50)) {}
}

#[test]
fn buffers_smaller_than_the_configuration_needs_are_refused_and_given_back() {
    let config = Config::small();
    let need = BufferSizes::for_config(&config);
    let short = Box::leak(vec![0u8; need.total() - 1].into_boxed_slice());
    assert!(matches!(
        SessionBuffers::new(short, &config),
        Err(BuffersError::TooSmall { need: n, .. }) if n == need
    ));

    // Buffers made for a smaller configuration do not fit a larger one.
    let b = exact_buffers(&config);
    let mut s = Session::caller(Config::default(), 1).unwrap();
    let e = s.provide_buffers(b).unwrap_err();
    assert!(matches!(e.error, BuffersError::TooSmall { .. }), "{e}");
    assert_eq!(e.buffers.sizes(), need, "the storage came back whole");
    assert!(!s.has_provided_buffers());
}

/// A session takes buffers only while it holds no received byte: with half
/// a CONNECT assembled they are refused (given back), and it goes on on the
/// heap; once the request is whole and nothing is held, it may take them,
/// but only one set.
#[test]
fn buffers_are_refused_while_received_bytes_are_held() {
    let mut p = Pair::new(Config::small(), Config::small());
    let t = p.time;
    p.client
        .session
        .connect(t, Some(b"hello"), Options::SMALL)
        .unwrap();
    let mut wire = [0u8; 512];
    let n = p.client.session.poll_transmit(t, &mut wire);
    assert!(n > 8, "a CONNECT");
    assert_eq!(p.server.session.handle_bytes(t, &wire[..n / 2]), n / 2);
    let e = p
        .server
        .session
        .provide_buffers(exact_buffers(&Config::small()))
        .unwrap_err();
    assert_eq!(e.error, BuffersError::InUse);
    assert!(!p.server.session.has_provided_buffers());
    assert_eq!(p.server.session.handle_bytes(t, &wire[n / 2..n]), n - n / 2);
    assert!(matches!(
        p.server.session.poll_event(),
        Some(Event::ConnectRequest(r)) if r.caller_data.as_deref() == Some(&b"hello"[..])
    ));
    p.server.session.provide_buffers(e.buffers).unwrap();
    let again = p
        .server
        .session
        .provide_buffers(exact_buffers(&Config::small()))
        .unwrap_err();
    assert_eq!(again.error, BuffersError::InUse);
}

/// The CONNECT queued before the buffers were given moves into them and
/// still reaches the callee whole.
#[test]
fn a_connect_queued_before_the_buffers_moves_into_them() {
    let mut p = Pair::new(Config::small(), Config::small());
    let t = p.time;
    p.client
        .session
        .connect(t, Some(b"caller data"), Options::SMALL)
        .unwrap();
    let b = exact_buffers(&Config::small());
    p.client.session.provide_buffers(b).unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.events.iter().any(|e| {
            matches!(e, Event::ConnectRequest(r) if r.caller_data.as_deref() == Some(&b"caller data"[..]))
        })
    });
}

/// Message mode: empty messages cost a record header each in the buffer
/// where flow control charges `MESSAGE_OVERHEAD`, so a flood of them stops
/// at the receive bound with the records inside the buffer.
#[test]
fn a_flood_of_empty_messages_fits_exact_buffers() {
    let mut p = connected(Mode::Message, Integrity::None);
    let mut sent = 0;
    while p.client.session.send_message(&[]).is_ok() {
        sent += 1;
    }
    for _ in 0..20 {
        settle(&mut p);
        while p.client.session.send_message(&[]).is_ok() {
            sent += 1;
        }
    }
    let u = p.server.session.buffer_usage();
    assert!(u.rx_messages > 0 && u.rx_queued <= u.rx_queued_max, "{u:?}");
    let mut got = 0;
    let mut buf = [0u8; 1];
    let mut idle = 0;
    while idle < 3 {
        idle += 1;
        while p.server.session.recv_message(&mut buf) == Ok(0) {
            got += 1;
            idle = 0;
        }
        p.settle();
        settle(&mut p);
    }
    assert_eq!(got, sent);
}

/// Message mode: the largest messages, each in several frames, sealed,
/// fill the receive buffer to its bound and arrive intact.
#[test]
fn the_largest_messages_fit_exact_buffers() {
    let mut p = connected(Mode::Message, Integrity::Crc32c);
    let max = Options::SMALL.max_message_size as usize;
    let mut sent = Vec::new();
    let mut got = Vec::new();
    let mut buf = vec![0u8; max];
    for round in 0..40u8 {
        let m = vec![round; max - usize::from(round)];
        if p.client.session.send_message(&m).is_ok() {
            sent.push(m);
        }
        settle(&mut p);
        if round % 8 == 7 {
            while let Ok(n) = p.server.session.recv_message(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
    }
    let mut idle = 0;
    while idle < 3 {
        idle += 1;
        while let Ok(n) = p.server.session.recv_message(&mut buf) {
            got.push(buf[..n].to_vec());
            idle = 0;
        }
        p.settle();
        settle(&mut p);
    }
    assert!(
        got == sent,
        "{} messages sent, {} received",
        sent.len(),
        got.len()
    );
    // `recv_message_bytes` copies out of the application's storage.
    p.client.session.send_message(b"last").unwrap();
    settle(&mut p);
    assert_eq!(&p.server.session.recv_message_bytes().unwrap()[..], b"last");
}

/// Stream mode, sealed: a verified frame is delivered whole, so the
/// receive buffer overshoots its bound by less than one frame, which the
/// provided buffer holds.
#[test]
fn sealed_frames_overshooting_the_receive_buffer_fit_exact_buffers() {
    let mut p = connected(Mode::Stream, Integrity::Crc32c);
    // Every frame assembled byte by byte, the largest to its last byte.
    p.chunking = common::Chunking::OneByte;
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut at = 0;
    let mut got = Vec::new();
    let mut buf = [0u8; 700];
    let mut rounds = 0;
    while got.len() < data.len() {
        rounds += 1;
        assert!(
            rounds < 10_000,
            "stalled at {} of {}",
            got.len(),
            data.len()
        );
        if at < data.len() {
            // Odd sizes, so frames end anywhere in the buffer.
            let end = (at + 1_337).min(data.len());
            at += p.client.session.send(&data[at..end]).unwrap_or(0);
        }
        settle(&mut p);
        if rounds % 3 == 0 {
            while let Ok(n) = p.server.session.recv(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
    }
    assert!(
        got == data,
        "{} bytes sent, {} received",
        data.len(),
        got.len()
    );
}

/// Connect and disconnect data of the largest sizes, both ways, then the
/// buffers go back for another pair.
#[test]
fn buffers_come_back_for_the_next_session() {
    for _ in 0..3 {
        let mut p = connected(Mode::Stream, Integrity::None);
        let t = p.time;
        p.client
            .session
            .send_disconnect(t, Some(&[3; 256]))
            .unwrap();
        p.server
            .session
            .send_disconnect(t, Some(&[4; 256]))
            .unwrap();
        p.finish(Duration::from_secs(30));
        assert_eq!(
            p.server.session.recv_disconnect_bytes().unwrap().as_deref(),
            Some(&[3u8; 256][..])
        );
        assert_eq!(
            p.client.session.recv_disconnect_bytes().unwrap().as_deref(),
            Some(&[4u8; 256][..])
        );
        assert!(p.client.session.is_drained());
        let b = p.client.session.take_buffers().expect("provided");
        let config = small(Mode::Stream, Integrity::None);
        assert_eq!(b.sizes(), BufferSizes::for_config(&config));
        assert!(!p.client.session.has_provided_buffers());
        assert!(p.client.session.take_buffers().is_none());
        // Given back to the pool the harness keeps.
        let mut s = Session::caller(config, 9).unwrap();
        s.provide_buffers(b).unwrap();
        assert!(s.take_buffers().is_some());
    }
}

/// A clone cannot share the application's storage: it holds the same bytes
/// on the heap and reads the same.
#[test]
fn a_clone_of_a_provided_session_reads_the_same_from_the_heap() {
    let mut p = connected(Mode::Message, Integrity::None);
    for m in [&b"one"[..], b"", b"three"] {
        p.client.session.send_message(m).unwrap();
    }
    settle(&mut p);
    let mut clone = p.server.session.clone();
    assert!(!clone.has_provided_buffers());
    for want in [&b"one"[..], b"", b"three"] {
        assert_eq!(&clone.recv_message_bytes().unwrap()[..], want);
        assert_eq!(&p.server.session.recv_message_bytes().unwrap()[..], want);
    }
}

/// A caller proposing options larger than its configuration's, over
/// buffers sized for the configuration, is refused at `connect` (before a
/// peer could grant them and send what the buffers cannot hold).
#[test]
fn a_proposal_the_buffers_cannot_hold_is_refused() {
    let config = Config::small();
    let mut s = Session::caller(config.clone(), 1).unwrap();
    s.provide_buffers(exact_buffers(&config)).unwrap();
    let t = bookend_session::Instant::ZERO;
    assert_eq!(
        s.connect(t, None, Options::DEFAULT),
        Err(bookend_session::Error::InvalidGrant)
    );
    let message = Options {
        mode: Mode::Message,
        ..Options::SMALL
    };
    assert_eq!(
        s.connect(t, None, message),
        Err(bookend_session::Error::InvalidGrant),
        "buffers sized for stream mode do not hold message mode's bounds"
    );
    assert_eq!(s.connect(t, None, Options::SMALL), Ok(()));
}

/// A callee granting more than its buffers were sized for is refused at
/// `accept`; the default grant (capped by its configuration) is not.
#[test]
fn a_grant_the_buffers_cannot_hold_is_refused() {
    let mut p = Pair::new(Config::default(), Config::small());
    let b = exact_buffers(&Config::small());
    p.server.session.provide_buffers(b).unwrap();
    let req = p.request(None, Options::DEFAULT);
    let t = p.time;
    assert_eq!(
        p.server.session.accept(t, None, Options::DEFAULT),
        Err(bookend_session::Error::InvalidGrant)
    );
    assert_eq!(req.grant.max_frame_size, Options::SMALL.max_frame_size);
    assert_eq!(p.server.session.accept(t, None, req.grant), Ok(()));
}

/// `SMALL_SESSION_STORAGE` is what `Config::small` needs, and a
/// `SessionStorage` of that length splits into buffers that fit it.
#[test]
fn session_storage_for_the_small_configuration() {
    let config = Config::small();
    assert_eq!(
        BufferSizes::for_config(&config).total(),
        bookend_session::SMALL_SESSION_STORAGE
    );
    let storage: &'static mut bookend_session::SessionStorage<
        3,
        { bookend_session::SMALL_SESSION_STORAGE },
    > = Box::leak(Box::new(bookend_session::SessionStorage::new()));
    let all: Vec<SessionBuffers> = storage.buffers(&config).unwrap().collect();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|b| b.fits(&config)));

    let short: &'static mut bookend_session::SessionStorage<1, 100> =
        Box::leak(Box::new(bookend_session::SessionStorage::new()));
    assert!(matches!(
        short.buffers(&config).map(|_| ()),
        Err(BuffersError::TooSmall { .. })
    ));
}

/// Stream mode: a sender flooding a receiver that does not read is held
/// back by flow control at the receive buffer, as on the heap; the provided
/// buffer is never asked for more.
#[test]
fn a_stream_flood_stops_at_the_receive_buffer() {
    for integrity in [Integrity::None, Integrity::Crc32c] {
        let mut p = connected(Mode::Stream, integrity);
        let chunk = [9u8; 1000];
        let mut sent = 0;
        for _ in 0..50 {
            while let Ok(n) = p.client.session.send(&chunk) {
                sent += n;
            }
            settle(&mut p);
        }
        let config = small(Mode::Stream, integrity);
        let queued = p.server.session.recv_queue();
        assert!(
            queued <= config.recv_buffer + Options::SMALL.max_frame_size as usize,
            "{queued} bytes queued over a {} B receive buffer ({sent} sent)",
            config.recv_buffer
        );
    }
}

/// Small frames: each DATA frame adds its header (and sealed, its check and
/// trailer) to the payload, so a send buffer's worth of payload in 64-byte
/// frames is 22 % more on the wire. The send queue stays within its bound
/// (the send buffer counts wire bytes), in exact provided buffers and on
/// the heap alike.
#[test]
fn a_send_in_small_frames_stays_within_the_send_queue_bound() {
    let mut config = Config::default();
    config.options = Options {
        max_frame_size: 64,
        max_message_size: 1024,
        max_connect_data: 16,
        max_disconnect_data: 16,
        integrity: Integrity::Crc32c,
        ..Options::DEFAULT
    };
    config.send_buffer = 16_384;
    config.recv_buffer = 16_384;
    for provided in [false, true] {
        let mut p = Pair::new(config.clone(), config.clone());
        if provided {
            p = p.provided();
        }
        p.connect(b"c", b"s", config.options);
        let data: Vec<u8> = (0..16_384u32).map(|i| (i % 251) as u8).collect();
        let mut at = 0;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..200 {
            if at < data.len() {
                at += p.client.session.send(&data[at..]).unwrap_or(0);
                let u = p.client.session.buffer_usage();
                assert!(u.tx <= u.tx_max, "provided {provided}: {u:?}");
            }
            settle(&mut p);
            while let Ok(n) = p.server.session.recv(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if got.len() == data.len() {
                break;
            }
        }
        assert!(
            got == data,
            "provided {provided}: {} of {} bytes",
            got.len(),
            data.len()
        );
    }
}

/// A callee may grant frames smaller than the caller proposed: the
/// caller's buffers, sized for its proposal, still hold what its sends
/// then queue (the bounds only grow as the frames shrink within them).
#[test]
fn a_grant_of_smaller_frames_fits_the_callers_buffers() {
    let mut config = Config::small();
    config.send_buffer = 16_384;
    config.recv_buffer = 16_384;
    let mut p = Pair::new(config.clone(), config.clone()).provided();
    let req = p.request(None, config.options);
    let grant = Options {
        max_frame_size: 64,
        ..req.grant
    };
    let t = p.time;
    p.server.session.accept(t, None, grant).unwrap();
    p.drive_until(Duration::from_secs(1), |p| p.client.session.is_connected());
    assert_eq!(p.client.session.options().max_frame_size, 64);
    let data = vec![5u8; 16_384];
    let n = p.client.session.send(&data).unwrap();
    assert!(n > 0);
    let u = p.client.session.buffer_usage();
    assert!(u.tx <= u.tx_max, "{u:?}");
}

/// The firmware recipe (`Config::small` over `SMALL_SESSION_STORAGE`)
/// accepts a caller proposing smaller frames with the default grant.
#[test]
fn the_default_grant_to_a_caller_of_smaller_frames_is_accepted() {
    let mut p = Pair::new(Config::small(), Config::small());
    let b = exact_buffers(&Config::small());
    assert_eq!(b.sizes().total(), bookend_session::SMALL_SESSION_STORAGE);
    p.server.session.provide_buffers(b).unwrap();
    let proposal = Options {
        max_frame_size: 512,
        ..Options::SMALL
    };
    let req = p.request(None, proposal);
    let t = p.time;
    assert_eq!(p.server.session.accept(t, None, req.grant), Ok(()));
}
