//! Regression tests for the defects of issue 9 (the session machine,
//! hardened). Each test is named after the defect it pins down and failed on
//! commit 916ac5a, before the fix.

mod common;

use std::time::Duration;

use bookend_session::{
    CloseReason, Config, Event, Instant, Mode, Options, Reason, Session, State, Timer,
    TransportAction, TransportClosed, Violation,
};
use bookend_wire::{ConnectRepr, Decoded, FrameRepr, Limits, VERSION, decode};
use common::Pair;

const T: Instant = Instant::ZERO;

fn frame(repr: FrameRepr<'_>) -> Vec<u8> {
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b).unwrap();
    b
}

fn data(payload: &[u8], eom: bool) -> Vec<u8> {
    frame(FrameRepr::Data {
        end_of_message: eom,
        payload,
    })
}

/// A CONNECT from a scripted peer without the integrity option: its frames
/// are unsealed (§2.5), whatever `options` says.
fn connect_frame(options: Options) -> Vec<u8> {
    let options = Options {
        integrity: bookend_session::Integrity::None,
        ..options
    };
    frame(FrameRepr::Connect(ConnectRepr {
        min_version: VERSION,
        max_version: VERSION,
        options: options.to_repr(),
        data: Some(b"hello"),
    }))
}

/// Everything the session wants to send, decoded, plus its transport actions.
fn output(s: &mut Session) -> (Vec<String>, Vec<TransportAction>) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.poll_transmit(T, &mut buf);
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let mut actions = Vec::new();
    while let Some(a) = s.poll_transport_action() {
        actions.push(a);
    }
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let Ok(Decoded::Frame { repr, len }) = decode(rest, &Limits::DEFAULT) else {
            panic!("bad output")
        };
        frames.push(match repr {
            FrameRepr::Abort(r) => format!("ABORT({})", r.reason),
            FrameRepr::Reject(r) => format!("REJECT({})", r.reason),
            FrameRepr::Data { payload, .. } => {
                format!("DATA({})", String::from_utf8_lossy(payload))
            }
            other => other.frame_type().to_string(),
        });
        rest = &rest[len..];
    }
    (frames, actions)
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A callee with `config` that has accepted a CONNECT proposing `mode`.
fn accepted_with(config: Config, mode: Mode) -> Session {
    let mut s = Session::callee(config, 9, T).unwrap();
    s.handle_bytes(
        T,
        &connect_frame(Options {
            mode,
            ..Options::DEFAULT
        }),
    );
    let req = events(&mut s)
        .into_iter()
        .find_map(|e| match e {
            Event::ConnectRequest(r) => Some(r),
            _ => None,
        })
        .expect("a connect request");
    s.accept(T, None, req.grant).unwrap();
    output(&mut s);
    events(&mut s);
    s
}

fn message_config() -> Config {
    let mut c = Config::default();
    c.options.mode = Mode::Message;
    c
}

fn keepalive_config(ms: u32) -> Config {
    let mut c = Config::default();
    c.options.keepalive_ms = ms;
    c
}

/// Defect 1: empty END_OF_MESSAGE frames cost memory (a queued message each)
/// and must count against the receive buffer, or a peer queues without bound.
#[test]
fn d1_empty_messages_are_flow_controlled() {
    let mut s = accepted_with(message_config(), Mode::Message);
    let empty = data(&[], true);
    let wire: Vec<u8> = empty.iter().copied().cycle().take(200_000 * 6).collect();
    let taken = s.handle_bytes(T, &wire);
    assert!(
        taken < wire.len(),
        "200,000 empty messages were all queued: no pushback"
    );
    let queued = taken / 6;
    assert!(
        queued <= Config::default().recv_buffer / 16,
        "{queued} empty messages queued for a 256 KiB buffer"
    );
    // Reading them makes room again: nothing is stuck.
    let mut buf = [0u8; 8];
    for _ in 0..queued {
        assert_eq!(s.recv_message(&mut buf), Ok(0));
    }
    let more = s.handle_bytes(T, &wire[taken..]);
    assert!(more > 0);
}

/// Defect 2: a reader whose buffer is full holds the peer's PINGs back in
/// TCP; its idle timer must not then blame the (live) peer.
#[test]
fn d2_slow_reader_is_not_killed_by_its_own_idle_timer() {
    let mut config = keepalive_config(1_000);
    config.recv_buffer = 64 * 1024;
    let mut p = Pair::new(config.clone(), config);
    p.connect(b"reader", b"writer", p.client.session.config().options);
    // The server fills the client's buffer and TCP beyond it; the client
    // application does not read for 20 s (over 3 keepalive intervals).
    let chunk = vec![7u8; 16 * 1024];
    let mut sent = 0;
    for _ in 0..64 {
        sent += p.server.session.send(&chunk).unwrap_or(0);
    }
    assert!(sent > 2 * 64 * 1024, "the writer queued only {sent} bytes");
    p.run_until(T + Duration::from_secs(20));
    assert_eq!(
        p.client.closed(),
        None,
        "reader killed: {:?}",
        p.client.events
    );
    assert_eq!(
        p.server.closed(),
        None,
        "writer killed: {:?}",
        p.server.events
    );
    // Reading now gets everything, in order.
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..10_000 {
        match p.client.session.recv(&mut buf) {
            Ok(n) => {
                assert!(buf[..n].iter().all(|&b| b == 7));
                total += n;
            }
            Err(_) => {
                let now = p.time + Duration::from_millis(5);
                p.run_until(now);
            }
        }
        if total == sent {
            break;
        }
    }
    assert_eq!(total, sent);
    assert_eq!(p.client.closed(), None);
}

/// Defect 2, the other half: with direct receive, the idle timer still fires
/// when the peer has really gone silent and the application read everything.
#[test]
fn d2_direct_receive_idle_timer_still_fires_for_a_silent_peer() {
    let config = keepalive_config(1_000);
    let mut p = Pair::new(config.clone(), config);
    p.connect(b"reader", b"writer", p.client.session.config().options);
    p.server.session.send(b"some data").unwrap();
    p.run_until(T + Duration::from_millis(100));
    let mut out = [0u8; 64];
    let t = p.time;
    assert_eq!(p.client.read_direct(t, &mut out), 9);
    // The server's transport vanishes: nothing more ever arrives.
    p.server.dead = true;
    p.run_until(T + Duration::from_secs(10));
    assert_eq!(
        p.client.closed(),
        Some(&CloseReason::TimedOut(Timer::Idle)),
        "{:?}",
        p.client.events
    );
}

/// Defect 3: `recv_buffer == max_message_size` and a full-size message ended
/// by a trailing empty END_OF_MESSAGE frame must not deadlock.
#[test]
fn d3_full_size_message_with_trailing_empty_frame_completes() {
    let mut config = message_config();
    config.recv_buffer = 64 * 1024;
    let mut s = accepted_with(config, Mode::Message);
    let chunk = vec![1u8; 16 * 1024];
    let mut wire = Vec::new();
    for _ in 0..4 {
        wire.extend(data(&chunk, false));
    }
    wire.extend(data(&[], true));
    let taken = s.handle_bytes(T, &wire);
    assert_eq!(taken, wire.len(), "the message's last frame was not taken");
    let msg = s
        .recv_message_bytes()
        .expect("the whole message is readable");
    assert_eq!(msg.len(), 64 * 1024);
}

/// Defect 4: an unservable CONNECT whose header arrived in two reads is
/// refused with REJECT, and the caller's FIN then ends it gracefully.
#[test]
fn d4_split_oversize_connect_rejects_then_closes_gracefully() {
    let mut s = Session::callee(Config::default(), 9, T).unwrap();
    // CONNECT announcing a 1 MiB body: over the callee's CONNECT limit.
    let header = [0x01, 0x01, 0x00, 0x10, 0x00, 0x00];
    assert_eq!(s.handle_bytes(T, &header[..3]), 3);
    assert_eq!(s.handle_bytes(T, &header[3..]), 3);
    let (frames, actions) = output(&mut s);
    assert_eq!(frames, vec![format!("REJECT({})", Reason::DATA_TOO_LARGE)]);
    assert_eq!(actions, vec![TransportAction::Fin]);
    // The caller answers with its FIN, as §5.3 says.
    s.handle_transport_closed(T, TransportClosed::Fin);
    let (frames, actions) = output(&mut s);
    assert!(frames.is_empty(), "{frames:?}");
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(
        s.close_reason(),
        Some(&CloseReason::Rejected {
            reason: Reason::DATA_TOO_LARGE
        })
    );
}

/// Defect 5: a skippable unknown frame is legal only from OPEN on (§5.3).
#[test]
fn d5_unknown_frame_before_open_is_unexpected() {
    let unknown = [0x40, 0x00, 0x00, 0x00, 0x00, 0x03, 1, 2, 3];
    // Callee, AWAIT_CONNECT.
    let mut s = Session::callee(Config::default(), 9, T).unwrap();
    s.handle_bytes(T, &unknown);
    let (frames, actions) = output(&mut s);
    assert_eq!(
        frames,
        vec![format!("ABORT({})", Reason::UNEXPECTED_FRAME)],
        "AWAIT_CONNECT"
    );
    assert_eq!(actions, vec![TransportAction::Reset]);
    // Caller, CONNECT_SENT.
    let mut c = Session::caller(Config::default(), 1).unwrap();
    c.connect(T, None, Options::DEFAULT).unwrap();
    output(&mut c);
    c.handle_bytes(T, &unknown);
    assert!(
        matches!(
            c.close_reason(),
            Some(CloseReason::ProtocolError {
                detail: Violation::UnexpectedFrame {
                    state: State::ConnectSent,
                    ..
                }
            })
        ),
        "{:?}",
        c.close_reason()
    );
    // Callee, CONNECT_RECEIVED.
    let mut s = Session::callee(Config::default(), 9, T).unwrap();
    let mut wire = connect_frame(Options::DEFAULT);
    wire.extend_from_slice(&unknown);
    s.handle_bytes(T, &wire);
    assert_eq!(s.state(), State::Closed);
    // OPEN: skipped.
    let mut s = accepted_with(Config::default(), Mode::Stream);
    s.handle_bytes(T, &unknown);
    assert_eq!(s.state(), State::Open);
}

/// Defect 6: a callee refuses a mode it does not offer, with
/// REJECT(`OPTION_UNSUPPORTED`), instead of accepting it.
#[test]
fn d6_callee_refuses_a_mode_it_does_not_offer() {
    let mut p = Pair::new(message_config(), Config::default());
    let t = p.time;
    p.client
        .session
        .connect(t, Some(b"msg please"), message_config().options)
        .unwrap();
    p.drive_until(Duration::from_secs(5), |p| p.client.closed().is_some());
    assert!(
        p.client.events.iter().any(|e| matches!(
            e,
            Event::Refused {
                reason: Reason::OPTION_UNSUPPORTED,
                ..
            }
        )),
        "{:?}",
        p.client.events
    );
    assert!(
        !p.server
            .events
            .iter()
            .any(|e| matches!(e, Event::ConnectRequest(_))),
        "the application saw a request it cannot serve"
    );
}

/// Defect 7: `abort()` discards unsent queued DATA: ABORT goes next (§3.6).
#[test]
fn d7_abort_discards_queued_data() {
    let mut s = accepted_with(Config::default(), Mode::Stream);
    s.send(b"never").unwrap();
    s.abort(T, Reason::application(1), Some(b"why")).unwrap();
    let (frames, actions) = output(&mut s);
    assert_eq!(frames, vec![format!("ABORT({})", Reason::application(1))]);
    assert_eq!(actions, vec![TransportAction::Reset]);
}

/// Defect 7, large: 200 KB queued on a slow link must not delay the ABORT.
#[test]
fn d7_abort_is_not_stuck_behind_a_large_queue() {
    let mut s = accepted_with(Config::default(), Mode::Stream);
    let big = vec![0u8; 200_000];
    let n = s.send(&big).unwrap();
    assert_eq!(n, big.len());
    s.abort(T, Reason::application(2), None).unwrap();
    // The transport takes one small segment: it must be the ABORT.
    let mut buf = [0u8; 64];
    let n = s.poll_transmit(T, &mut buf);
    assert_eq!(buf[0], 0x06, "first byte after abort is not ABORT");
    assert_eq!(n, 8);
}

/// Defect 8: the Winsock name of an error depends on the call.
#[test]
fn d8_winsock_names_follow_the_call() {
    let mut c = Session::caller(Config::default(), 1).unwrap();
    let big = vec![0u8; 70_000];
    let e = c.connect(T, Some(&big), Options::DEFAULT).unwrap_err();
    assert_eq!(
        e.winsock(),
        "WSAEFAULT",
        "WSAConnect with caller data too long"
    );
    c.connect(T, None, Options::DEFAULT).unwrap();
    let e = c.connect(T, None, Options::DEFAULT).unwrap_err();
    assert_eq!(e.winsock(), "WSAEALREADY", "connect while connecting");
    let mut p = Pair::default_pair();
    p.connect(b"a", b"b", Options::DEFAULT);
    let t = p.time;
    let e = p
        .client
        .session
        .connect(t, None, Options::DEFAULT)
        .unwrap_err();
    assert_eq!(e.winsock(), "WSAEISCONN", "connect when connected");
    // WSASendDisconnect with data too long stays WSAEMSGSIZE (bookend's choice).
    let mut s = accepted_with(Config::default(), Mode::Stream);
    let e = s.send_disconnect(T, Some(&big)).unwrap_err();
    assert_eq!(e.winsock(), "WSAEMSGSIZE");
}

// ----- found by review of the fix (fail on bbc6b7f) -----------------------

/// DATA whose header arrived before `close()` and whose payload after it is
/// data nobody will read: ABORT(`UNREAD_DATA`), not a graceful close.
#[test]
fn r1_payload_after_close_of_a_frame_begun_before_it_aborts() {
    let mut s = accepted_with(Config::default(), Mode::Stream);
    let wire = data(&[9u8; 100], false);
    assert_eq!(s.handle_bytes(T, &wire[..6]), 6);
    s.close(T);
    s.handle_bytes(T, &wire[6..]);
    let (frames, actions) = output(&mut s);
    assert_eq!(
        frames.last().map(String::as_str),
        Some(format!("ABORT({})", Reason::UNREAD_DATA).as_str()),
        "{frames:?}"
    );
    assert_eq!(actions, vec![TransportAction::Reset]);
}

/// A transport that keeps what the session did not take, as TCP does.
struct Wire(Vec<u8>);

impl Wire {
    /// Offers what the transport holds; like a socket, nothing when empty.
    fn offer(&mut self, s: &mut Session) {
        if self.0.is_empty() {
            return;
        }
        let n = s.handle_bytes(T, &self.0);
        self.0.drain(..n);
    }
}

/// An empty message whose header arrives in two reads while the receive
/// buffer is full is delivered once the application has read.
#[test]
fn r2_split_empty_message_header_with_a_full_buffer_is_not_lost() {
    let mut config = message_config();
    config.recv_buffer = 64 * 1024;
    let mut s = accepted_with(config, Mode::Message);
    let mut wire = Wire(Vec::new());
    for _ in 0..4 {
        wire.0.extend(data(&[1u8; 16 * 1024], false));
    }
    wire.0.extend(data(&[], true)); // the full-size message: the buffer is full
    wire.offer(&mut s);
    let empty = data(&[], true);
    wire.0.extend_from_slice(&empty[..3]);
    wire.offer(&mut s);
    wire.0.extend_from_slice(&empty[3..]);
    wire.offer(&mut s);
    assert_eq!(s.recv_message_bytes().unwrap().len(), 64 * 1024);
    // The driver offers what is still in the transport.
    wire.offer(&mut s);
    assert_eq!(s.recv_message_bytes().map(|m| m.len()), Ok(0));
}

/// Keepalive PINGs do not pile up behind bytes that cannot leave.
#[test]
fn r3_keepalive_pings_do_not_pile_up() {
    let mut s = accepted_with(keepalive_config(1_000), Mode::Stream);
    s.send(&[0u8; 1000]).unwrap();
    let before = s.send_queue();
    let mut now = T;
    let ping = frame(FrameRepr::Ping);
    for _ in 0..100 {
        now = now + Duration::from_secs(1);
        // The peer is alive; only our sending is stuck.
        s.handle_bytes(now, &ping);
        s.handle_timeout(now);
    }
    assert_eq!(s.state(), State::Open);
    assert!(
        s.send_queue() <= before + 6,
        "{} bytes queued after 100 keepalive intervals, from {before}",
        s.send_queue()
    );
}

/// A control frame begun before ACCEPT is read under the limits in force
/// when its header came in, even if the grant is smaller.
#[test]
fn r4_frame_begun_before_accept_keeps_its_limits() {
    let mut s = Session::callee(Config::default(), 9, T).unwrap();
    s.handle_bytes(T, &connect_frame(Options::DEFAULT));
    let req = events(&mut s)
        .into_iter()
        .find_map(|e| match e {
            Event::ConnectRequest(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let abort = frame(FrameRepr::Abort(bookend_wire::ReasonRepr {
        reason: Reason::application(7),
        data: Some(&[5u8; 1000]),
    }));
    s.handle_bytes(T, &abort[..100]);
    let small = Options {
        max_disconnect_data: 16,
        ..req.grant
    };
    s.accept(T, None, small).unwrap();
    s.handle_bytes(T, &abort[100..]);
    assert!(
        matches!(
            s.close_reason(),
            Some(CloseReason::Aborted {
                by: bookend_session::Side::Peer,
                ..
            })
        ),
        "{:?}",
        s.close_reason()
    );
}

/// Once the transport is gone after our ABORT, no timer is left running.
#[test]
fn r5_no_timer_after_the_transport_is_gone() {
    let mut s = accepted_with(Config::default(), Mode::Stream);
    s.abort(T, Reason::application(1), None).unwrap();
    s.handle_transport_closed(T, TransportClosed::Reset);
    assert_eq!(s.poll_timeout(), None);
    assert!(s.is_drained() || s.pending_events() > 0);
}

/// A zero-copy read that leaves data in the transport posts FD_READ again.
#[test]
fn r6_direct_read_that_leaves_data_posts_readable_again() {
    let mut s = accepted_with(Config::default(), Mode::Stream);
    s.set_direct_receive(true);
    let wire = data(&[3u8; 100], false);
    s.handle_bytes(T, &wire);
    events(&mut s);
    let mut out = [0u8; 10];
    let (consumed, written) = s.recv_direct(T, &wire, &mut out);
    assert_eq!((consumed, written), (16, 10));
    assert!(events(&mut s).contains(&Event::Readable));
}

/// Issue 11, item 4 (fails on 916ac5a): a garbled header that reads as a
/// frame illegal in the state (CONNECT with a 2 KiB body, while OPEN) is
/// refused from the header alone, instead of waiting for a body that the
/// peer's PINGs would never complete.
#[test]
fn i11_4_illegal_frame_is_refused_from_its_header() {
    let mut s = accepted_with(message_config(), Mode::Message);
    let header = [0x01, 0x01, 0x00, 0x00, 0x08, 0x00];
    assert_eq!(s.handle_bytes(T, &header), 6);
    let (frames, actions) = output(&mut s);
    assert_eq!(frames, vec![format!("ABORT({})", Reason::UNEXPECTED_FRAME)]);
    assert_eq!(actions, vec![TransportAction::Reset]);
}

// ----- issue 11, item 1: timers measure what they name ---------------------

/// A session's own timers do not kill a session whose transport is still
/// delivering what it sent (fails on af3a43b): while CONNECT sits
/// unacknowledged in TCP (lost, RTO backing off) the connect timer waits,
/// TCP's user timeout bounds that; from the acknowledgement it runs in full.
#[test]
fn i11_1_connect_timer_waits_while_connect_is_unacknowledged() {
    let mut s = Session::caller(Config::default(), 1).unwrap();
    s.connect(T, Some(b"hello"), Options::DEFAULT).unwrap();
    let (frames, _) = output(&mut s);
    assert_eq!(frames.len(), 1);
    s.handle_transport_pending(T, true);
    // 40 s of retransmissions: no session timer fires.
    let later = T + Duration::from_secs(40);
    assert!(
        s.poll_timeout().is_none_or(|t| t > later),
        "{:?}",
        s.poll_timeout()
    );
    s.handle_timeout(later);
    assert_eq!(s.state(), State::ConnectSent);
    // Acknowledged at 40 s: the callee has the whole connect time from then.
    s.handle_transport_pending(later, false);
    let connect = Config::default().connect_timeout;
    assert_eq!(s.poll_timeout(), Some(later + connect));
    s.handle_timeout(later + connect);
    assert_eq!(s.state(), State::Closed);
    assert!(
        events(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Closed(CloseReason::TimedOut(Timer::Connect))))
    );
}

/// Same for the idle timer: while our bytes (PINGs, DATA) are
/// unacknowledged, the transport's user timeout is the judge, not the idle
/// timer (fails on af3a43b).
#[test]
fn i11_1_idle_timer_waits_while_our_bytes_are_unacknowledged() {
    let mut s = accepted_with(keepalive_config(1000), Mode::Stream);
    let _ = output(&mut s);
    s.handle_transport_pending(T, true);
    let later = T + Duration::from_secs(60);
    let mut t = T;
    while t < later {
        t = t + Duration::from_millis(500);
        s.handle_timeout(t);
        let _ = output(&mut s);
    }
    assert_ne!(s.state(), State::Closed, "{:?}", events(&mut s));
    // All acknowledged: the peer gets three keepalive intervals from now.
    s.handle_transport_pending(later, false);
    s.handle_timeout(later + Duration::from_millis(2999));
    assert_ne!(s.state(), State::Closed);
    s.handle_timeout(later + Duration::from_millis(3000));
    assert_eq!(s.state(), State::Closed);
}

/// Review of the timer change (fails on 8bdea83): the PINGs a lingering
/// session keeps sending are unacknowledged for a round trip each; pausing
/// the linger timer for those moments must not restart it, or a peer that
/// never answers our DISCONNECT holds the session forever.
#[test]
fn i11_2_keepalive_round_trips_do_not_restart_linger() {
    let mut config = keepalive_config(1000);
    config.linger_timeout = Duration::from_secs(10);
    let mut s = accepted_with(config, Mode::Stream);
    s.close(T);
    let _ = output(&mut s);
    let mut t = T;
    // Every 100 ms: anything queued goes out, stays unacknowledged for
    // 20 ms, then is acknowledged (and the peer is alive).
    while s.state() != State::Closed && t < T + Duration::from_secs(60) {
        s.handle_timeout(t);
        let sent = !output(&mut s).0.is_empty();
        s.handle_transport_pending(t, sent);
        t = t + Duration::from_millis(20);
        s.handle_transport_pending(t, false);
        s.handle_peer_alive(t);
        t = t + Duration::from_millis(80);
    }
    assert_eq!(s.state(), State::Closed);
    assert!(t <= T + Duration::from_secs(13), "linger fired only at {t}");
    assert!(
        events(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Closed(CloseReason::TimedOut(Timer::Linger))))
    );
}
