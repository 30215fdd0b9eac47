//! A scripted hostile peer: raw frames, written by hand, fed to a session.
//! Each illegal sequence ends the session with `ProtocolError` and an ABORT
//! frame on the wire naming the reason, and never panics.

use std::sync::{Arc, Mutex};

use bookend_session::{
    CloseReason, Config, Event, Instant, Mode, Options, Reason, Session, State, TransportAction,
    TransportClosed, Violation,
};
use bookend_wire::{
    AcceptRepr, ConnectRepr, Decoded, FrameRepr, Limits, OptionsRepr, ReasonRepr, VERSION, decode,
};

const T: Instant = Instant::ZERO;

fn frame(repr: FrameRepr<'_>) -> Vec<u8> {
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b).unwrap();
    b
}

fn connect_frame(options: Options) -> Vec<u8> {
    frame(FrameRepr::Connect(ConnectRepr {
        min_version: VERSION,
        max_version: VERSION,
        options: options.to_repr(),
        data: Some(b"evil"),
    }))
}

fn data(payload: &[u8], eom: bool) -> Vec<u8> {
    frame(FrameRepr::Data {
        end_of_message: eom,
        payload,
    })
}

/// Everything the session wants to send, decoded, plus its transport actions.
fn output(s: &mut Session) -> (Vec<String>, Vec<TransportAction>) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 512];
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
            other => other.frame_type().to_string(),
        });
        rest = &rest[len..];
    }
    (frames, actions)
}

fn callee() -> Session {
    let mut config = Config::default();
    // The scripts speak both modes.
    config.offered_modes = bookend_session::ModeOffer::Both;
    Session::callee(config, 9, T).unwrap()
}

/// A callee that has accepted our CONNECT; its ACCEPT is drained.
fn accepted(mode: Mode) -> Session {
    let mut s = callee();
    s.handle_bytes(
        T,
        &connect_frame(Options {
            mode,
            // The scripts' frames are unsealed: a peer without the
            // integrity option (§2.5), as the framing checks are meant for.
            integrity: bookend_session::Integrity::None,
            ..Options::DEFAULT
        }),
    );
    let Some(Event::ConnectRequest(req)) = s.poll_event() else {
        panic!("no request")
    };
    s.accept(T, None, req.grant).unwrap();
    output(&mut s);
    while s.poll_event().is_some() {}
    s
}

fn assert_protocol_error(s: &mut Session, reason: Reason, detail: impl Fn(&Violation) -> bool) {
    let (frames, actions) = output(s);
    assert_eq!(
        frames.last().map(String::as_str),
        Some(format!("ABORT({reason})").as_str()),
        "{frames:?}"
    );
    assert_eq!(actions, vec![TransportAction::Reset]);
    assert_eq!(s.state(), State::Closed);
    match s.close_reason() {
        Some(CloseReason::ProtocolError { detail: d }) => assert!(detail(d), "{d:?}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(matches!(
        std::iter::from_fn(|| s.poll_event()).last(),
        Some(Event::Closed(_))
    ));
    assert!(s.is_drained());
}

#[test]
fn data_before_connect() {
    let mut s = callee();
    s.handle_bytes(T, &data(b"hi", false));
    assert_protocol_error(&mut s, Reason::UNEXPECTED_FRAME, |v| {
        matches!(
            v,
            Violation::UnexpectedFrame {
                state: State::AwaitConnect,
                ..
            }
        )
    });
}

#[test]
fn two_connects() {
    let mut s = callee();
    let mut bytes = connect_frame(Options::DEFAULT);
    bytes.extend(connect_frame(Options::DEFAULT));
    s.handle_bytes(T, &bytes);
    assert_protocol_error(&mut s, Reason::UNEXPECTED_FRAME, |v| {
        matches!(
            v,
            Violation::UnexpectedFrame {
                state: State::ConnectReceived,
                ..
            }
        )
    });
}

#[test]
fn data_after_disconnect() {
    let mut s = accepted(Mode::Stream);
    let mut bytes = frame(FrameRepr::Disconnect { data: Some(b"17") });
    bytes.extend(data(b"more", false));
    s.handle_bytes(T, &bytes);
    assert_protocol_error(&mut s, Reason::UNEXPECTED_FRAME, |v| {
        matches!(
            v,
            Violation::UnexpectedFrame {
                state: State::PeerDisconnected,
                ..
            }
        )
    });
}

#[test]
fn oversize_frame_is_refused_from_its_header() {
    let mut s = accepted(Mode::Stream);
    // Only the header: 16 MiB announced, nothing buffered.
    let consumed = s.handle_bytes(T, &[0x04, 0x00, 0x01, 0x00, 0x00, 0x00]);
    assert_eq!(consumed, 6);
    assert!(s.buffer_usage().rx_partial == 0);
    assert_protocol_error(&mut s, Reason::FRAME_TOO_LARGE, |v| {
        matches!(v, Violation::Malformed(_))
    });
}

#[test]
fn oversize_message() {
    let mut s = accepted(Mode::Message);
    let chunk = vec![0u8; 16 * 1024];
    let mut bytes = Vec::new();
    for _ in 0..5 {
        bytes.extend(data(&chunk, false)); // 80 KiB, over the 64 KiB default
    }
    s.handle_bytes(T, &bytes);
    assert_protocol_error(&mut s, Reason::MESSAGE_TOO_LARGE, |v| {
        matches!(v, Violation::MessageTooLarge { .. })
    });
}

#[test]
fn disconnect_inside_a_message() {
    let mut s = accepted(Mode::Message);
    let mut bytes = data(b"half a message", false);
    bytes.extend(frame(FrameRepr::Disconnect { data: None }));
    s.handle_bytes(T, &bytes);
    assert_protocol_error(&mut s, Reason::PROTOCOL_ERROR, |v| {
        matches!(v, Violation::UnterminatedMessage)
    });
}

#[test]
fn unknown_frame_without_must_understand_is_skipped() {
    // docs/protocol.md §2.3: a receiver skips it and carries on.
    let mut s = accepted(Mode::Stream);
    let mut bytes = vec![0x40, 0x00, 0, 0, 0, 3, 1, 2, 3];
    bytes.extend(data(b"still here", false));
    assert_eq!(s.handle_bytes(T, &bytes), bytes.len());
    assert_eq!(s.state(), State::Open);
    let mut buf = [0u8; 16];
    assert_eq!(s.recv(&mut buf), Ok(10));
}

#[test]
fn unknown_frame_with_must_understand() {
    let mut s = accepted(Mode::Stream);
    s.handle_bytes(T, &[0x40, 0x80, 0, 0, 0, 0]);
    assert_protocol_error(&mut s, Reason::UNKNOWN_FRAME, |v| {
        matches!(v, Violation::Malformed(_))
    });
}

#[test]
fn truncated_frame_then_fin() {
    let mut s = accepted(Mode::Stream);
    let d = data(b"cut short", false);
    s.handle_bytes(T, &d[..d.len() - 3]);
    s.handle_transport_closed(T, TransportClosed::Fin);
    assert_protocol_error(&mut s, Reason::UNEXPECTED_EOF, |v| {
        matches!(
            v,
            Violation::UnexpectedEof {
                mid_frame: true,
                ..
            }
        )
    });
}

#[test]
fn fin_without_disconnect() {
    let mut s = accepted(Mode::Stream);
    s.handle_transport_closed(T, TransportClosed::Fin);
    assert_protocol_error(&mut s, Reason::UNEXPECTED_EOF, |v| {
        matches!(
            v,
            Violation::UnexpectedEof {
                mid_frame: false,
                state: State::Open
            }
        )
    });
}

#[test]
fn garbage_instead_of_connect() {
    let mut s = callee();
    s.handle_bytes(T, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (frames, actions) = output(&mut s);
    assert_eq!(actions, vec![TransportAction::Reset]);
    assert_eq!(frames.len(), 1, "one ABORT: {frames:?}");
    assert!(matches!(
        s.close_reason(),
        Some(CloseReason::ProtocolError { .. })
    ));
}

#[test]
fn caller_refuses_an_accept_that_grants_more_than_proposed() {
    let mut c = Session::caller(Config::default(), 1).unwrap();
    c.connect(
        T,
        None,
        Options {
            max_frame_size: 1024,
            ..Options::DEFAULT
        },
    )
    .unwrap();
    output(&mut c);
    let greedy = OptionsRepr {
        max_frame_size: Some(8192),
        ..OptionsRepr::default()
    };
    c.handle_bytes(
        T,
        &frame(FrameRepr::Accept(AcceptRepr {
            version: VERSION,
            options: greedy,
            data: None,
        })),
    );
    assert_protocol_error(&mut c, Reason::PROTOCOL_ERROR, |v| {
        matches!(v, Violation::InvalidAccept)
    });
}

/// `docs/protocol.md` §10.5: every ACCEPT in the table grants what a caller
/// proposing stream mode and no integrity did not propose, and is refused
/// with exactly the ABORT given there, then RST (§4.2).
#[test]
fn caller_refuses_the_accepts_of_spec_10_5() {
    const SPEC: &str = include_str!("../../../docs/protocol.md");
    let start = SPEC.find("### 10.5").expect("§10.5");
    // The section ends at the next heading, of any level.
    let end = start + 1 + SPEC[start + 1..].find("\n#").expect("end of §10.5");
    let section = &SPEC[start..end];
    let hex = |s: &str| -> Vec<u8> {
        s.split_whitespace()
            .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|_| panic!("bad hex {t:?}")))
            .collect()
    };
    let abort = hex(section
        .split("```hex\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the ABORT block"));
    let mut rows = 0;
    for line in section.lines() {
        let Some(bytes) = line.strip_prefix("| `").and_then(|l| l.split('`').next()) else {
            continue;
        };
        rows += 1;
        let mut c = Session::caller(Config::default(), 1).unwrap();
        c.connect(
            T,
            None,
            Options {
                mode: Mode::Stream,
                integrity: bookend_session::Integrity::None,
                ..Options::DEFAULT
            },
        )
        .unwrap();
        output(&mut c);
        c.handle_bytes(T, &hex(bytes));
        let mut wire = [0u8; 64];
        let n = c.poll_transmit(T, &mut wire);
        assert_eq!(wire[..n], abort[..], "{bytes}");
        assert_eq!(c.poll_transmit(T, &mut wire), 0, "{bytes}");
        assert_eq!(
            c.poll_transport_action(),
            Some(TransportAction::Reset),
            "{bytes}"
        );
        assert!(
            matches!(c.close_reason(), Some(CloseReason::ProtocolError { .. })),
            "{bytes}: {:?}",
            c.close_reason()
        );
        assert!(
            !std::iter::from_fn(|| c.poll_event()).any(|e| matches!(e, Event::Connected { .. })),
            "{bytes}: the application saw the grant"
        );
    }
    assert_eq!(rows, 2, "§10.5 rows");
}

#[test]
fn caller_refuses_a_second_answer() {
    let mut c = Session::caller(Config::default(), 1).unwrap();
    c.connect(T, None, Options::DEFAULT).unwrap();
    output(&mut c);
    let accept = frame(FrameRepr::Accept(AcceptRepr {
        version: VERSION,
        options: OptionsRepr::default(),
        data: None,
    }));
    let reject = frame(FrameRepr::Reject(ReasonRepr {
        reason: Reason::BUSY,
        data: None,
    }));
    c.handle_bytes(T, &[accept, reject].concat());
    assert_protocol_error(&mut c, Reason::UNEXPECTED_FRAME, |v| {
        matches!(v, Violation::UnexpectedFrame { .. })
    });
}

#[test]
fn unknown_critical_option_in_connect_is_rejected_not_aborted() {
    let mut s = callee();
    let mut c = connect_frame(Options::DEFAULT);
    // Append a critical unknown option 0x7FFF with no value and fix the lengths.
    let olen = u16::from_be_bytes([c[12], c[13]]) as usize;
    let at = 6 + 8 + olen;
    c.splice(at..at, [0xFF, 0xFF, 0, 0]);
    let new_olen = (olen + 4) as u16;
    c[12..14].copy_from_slice(&new_olen.to_be_bytes());
    let body = (c.len() - 6) as u32;
    c[2..6].copy_from_slice(&body.to_be_bytes());
    s.handle_bytes(T, &c);
    let (frames, actions) = output(&mut s);
    assert_eq!(frames, vec!["REJECT(OPTION_UNSUPPORTED)".to_string()]);
    assert_eq!(actions, vec![TransportAction::Fin]);
    assert_eq!(s.state(), State::Rejecting);
}

#[test]
fn a_peer_that_fills_our_buffer_is_pushed_back_not_buffered() {
    let mut cfg = Config::default();
    cfg.recv_buffer = 64 * 1024;
    let mut s = Session::callee(cfg, 9, T).unwrap();
    s.handle_bytes(
        T,
        &connect_frame(Options {
            // The flood below is unsealed DATA: a peer without integrity.
            integrity: bookend_session::Integrity::None,
            ..Options::DEFAULT
        }),
    );
    let Some(Event::ConnectRequest(req)) = s.poll_event() else {
        panic!()
    };
    s.accept(T, None, req.grant).unwrap();
    let chunk = data(&[0u8; 16 * 1024], false);
    let flood: Vec<u8> = std::iter::repeat_n(chunk, 100).flatten().collect();
    let taken = s.handle_bytes(T, &flood);
    assert!(
        taken < flood.len(),
        "consumption stops at the receive buffer"
    );
    let u = s.buffer_usage();
    assert!(u.rx_queued <= u.rx_queued_max, "{u:?}");
    assert_eq!(s.state(), State::Open, "backpressure is not an error");
}

/// Every message names its session in its text (`defmt` has no spans, and
/// both loggers get the same message), state changes at debug level.
#[test]
fn tracing_messages_name_their_session_and_debug_state_changes() {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut s = callee();
        s.handle_bytes(T, &connect_frame(Options::DEFAULT));
    });
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("session 9 (Callee): AWAIT_CONNECT -> CONNECT_RECEIVED"),
        "{log}"
    );
}

/// A sealed CONNECT whose options block runs into its trailer, the 5-byte
/// `INTEGRITY` option's check overlapping the trailer (§2.5): refused as
/// damaged or malformed, without a panic, and nothing reaches the
/// application.
#[test]
fn a_sealed_connect_whose_options_reach_into_its_trailer_is_refused() {
    let frame = [
        0x01, 0x40, 0x00, 0x00, 0x00, 0x11, 0x6d, 0x7e, 0x39, 0x51, // sealed header
        0x42, 0x4b, 0x4e, 0x44, 0x01, 0x01, 0x00, 0x09, // magic, v1..v1, options 9 bytes
        0x00, 0x07, 0x00, 0x05, 0x01, // INTEGRITY = 1, check to follow...
        0x00, 0x00, 0x00, 0x00, // ...which is also the trailer
    ];
    let mut s = callee();
    s.handle_bytes(T, &frame);
    assert!(
        s.poll_event()
            .is_none_or(|e| !matches!(e, Event::ConnectRequest(_)))
    );
    assert_eq!(s.state(), State::Closed);
}

/// §10.2's row for the same CONNECT with a valid trailer: the header check
/// and trailer pass, and the options block that would end inside the
/// trailer is malformed, ABORT(`PROTOCOL_ERROR`) and RST (§2.5).
#[test]
fn a_sealed_connect_with_a_valid_trailer_and_options_into_it_is_a_protocol_error() {
    let frame = [
        0x01, 0x40, 0x00, 0x00, 0x00, 0x11, 0x6d, 0x7e, 0x39, 0x51, // sealed header
        0x42, 0x4b, 0x4e, 0x44, 0x01, 0x01, 0x00, 0x09, // magic, v1..v1, options 9 bytes
        0x00, 0x07, 0x00, 0x05, 0x01, // INTEGRITY = 1, check to follow...
        0xa8, 0x37, 0x57, 0x86, // ...which is the (valid) trailer
    ];
    let mut s = callee();
    s.handle_bytes(T, &frame);
    assert_protocol_error(&mut s, Reason::PROTOCOL_ERROR, |v| {
        matches!(
            v,
            Violation::Malformed(bookend_wire::Error::BadOptionsLength)
        )
    });
}

/// §5.3: DATA before ACCEPT is illegal, refused from its header
/// (UNEXPECTED_FRAME), also when the application reads directly and has no
/// room: the header must not be left in the transport as data waiting for
/// the application, which a later close() would count as unread (found by
/// the session fuzz target).
#[test]
fn data_before_connect_is_refused_even_without_room_to_read_it() {
    let mut s = callee();
    s.set_direct_receive(true);
    let d = data(b"early", false);
    let (consumed, written) = s.recv_direct(T, &d, &mut []);
    assert_eq!(written, 0);
    assert!(consumed > 0, "left in the transport");
    assert_protocol_error(&mut s, Reason::UNEXPECTED_FRAME, |v| {
        matches!(v, Violation::UnexpectedFrame { .. })
    });
    s.close(T);
}

/// A callee that answers before the CONNECT has left the caller (an ACCEPT
/// granting less caller data than was proposed, while the CONNECT is still
/// queued) leaves the caller's send queue within its reported bound: the
/// bound counts the proposal beside the grant.
#[test]
fn an_accept_before_the_connect_left_keeps_the_send_queue_within_its_bound() {
    let mut config = Config::small();
    config.options.integrity = bookend_session::Integrity::None;
    let mut c = Session::caller(config, 1).unwrap();
    let proposal = Options {
        max_connect_data: 60_000,
        integrity: bookend_session::Integrity::None,
        ..Options::SMALL
    };
    c.connect(T, Some(&[7u8; 60_000]), proposal).unwrap();
    let modest = OptionsRepr {
        max_connect_data: Some(256),
        ..proposal.to_repr()
    };
    c.handle_bytes(
        T,
        &frame(FrameRepr::Accept(AcceptRepr {
            version: VERSION,
            options: modest,
            data: None,
        })),
    );
    let u = c.buffer_usage();
    assert!(u.tx > 60_000, "the CONNECT is still queued: {u:?}");
    assert!(u.tx <= u.tx_max, "{u:?}");
}
