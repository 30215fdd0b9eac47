//! The INTEGRITY option (issue 11, item 3; `docs/protocol.md` §2.5): bytes
//! altered on the way in a way TCP's 16-bit checksum misses are never
//! delivered, and the session ends with `INTEGRITY_FAILURE` on both sides.
//!
//! `altered_data_is_never_delivered` is the regression test of the defect:
//! before the option existed (a47c5df) there was no way to ask for the
//! check, and the same damage is delivered as it arrived, as
//! `without_the_option_damage_gets_through` still shows for sessions that
//! do not negotiate it.

use bookend_session::{
    CloseReason, Config, Error, Event, Instant, Integrity, Mode, Options, Reason, Session, Side,
    State, TransportAction, Violation,
};
use bookend_wire::{Decoded, FrameType, Limits, decode, flags};

const T: Instant = Instant::ZERO;

/// The hex blocks of `docs/protocol.md` §10.4, in order: the CONNECT with an
/// unknown critical option, the sealed REJECT answering it, the
/// REJECT(`INTEGRITY_REQUIRED`) and the ABORT(`INTEGRITY_REQUIRED`).
fn spec_10_4() -> Vec<Vec<u8>> {
    const SPEC: &str = include_str!("../../../docs/protocol.md");
    let start = SPEC.find("### 10.4").expect("§10.4");
    // The section ends at the next heading, of any level.
    let end = start + 1 + SPEC[start + 1..].find("\n#").expect("end of §10.4");
    let mut blocks = Vec::new();
    let mut lines = SPEC[start..end].lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```hex" {
            continue;
        }
        let mut bytes = Vec::new();
        for body in lines.by_ref() {
            if body.trim() == "```" {
                break;
            }
            let body = body.split('#').next().unwrap_or("");
            bytes.extend(
                body.split_whitespace()
                    .map(|t| u8::from_str_radix(t, 16).unwrap()),
            );
        }
        blocks.push(bytes);
    }
    assert_eq!(blocks.len(), 4, "§10.4 blocks");
    blocks
}

fn config(integrity: Integrity, mode: Mode) -> Config {
    let mut c = Config::default();
    c.options.integrity = integrity;
    c.options.mode = mode;
    c
}

fn drain(s: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.poll_transmit(T, &mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Frames as (type, flags).
type Frames = Vec<(FrameType, u8)>;

/// The frames in `bytes`.
fn frames(mut bytes: &[u8]) -> Frames {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(Decoded::Frame { repr, len }) = decode(bytes, &Limits::DEFAULT) else {
            panic!("undecodable output {bytes:02x?}")
        };
        out.push((repr.frame_type(), bytes[1]));
        bytes = &bytes[len..];
    }
    out
}

fn sealed(fs: &[(FrameType, u8)]) -> Vec<bool> {
    fs.iter().map(|(_, f)| f & flags::CRC32C != 0).collect()
}

/// A connected pair; returns the caller, the callee, and the frames each
/// sent during the handshake.
fn pair(caller: Integrity, callee: Integrity, mode: Mode) -> (Session, Session, Frames, Frames) {
    let c_conf = config(caller, mode);
    let options = c_conf.options;
    let mut c = Session::caller(c_conf, 1).unwrap();
    let mut s = Session::callee(config(callee, mode), 2, T).unwrap();
    c.connect(T, Some(b"client"), options).unwrap();
    let connect = drain(&mut c);
    assert_eq!(s.handle_bytes(T, &connect), connect.len());
    let Some(Event::ConnectRequest(req)) = s.poll_event() else {
        panic!("no request")
    };
    assert_eq!(req.proposed.integrity, caller);
    s.accept(T, Some(b"welcome"), req.grant).unwrap();
    let accept = drain(&mut s);
    assert_eq!(c.handle_bytes(T, &accept), accept.len());
    assert!(
        events(&mut c)
            .iter()
            .any(|e| matches!(e, Event::Connected { .. }))
    );
    events(&mut s);
    (c, s, frames(&connect), frames(&accept))
}

/// A caller and a callee, both asking for integrity, before CONNECT; and
/// the caller's options.
fn proposing_pair() -> (Session, Session, bookend_session::Options) {
    let c_conf = config(Integrity::Crc32c, Mode::Stream);
    let options = c_conf.options;
    let c = Session::caller(c_conf, 1).unwrap();
    let s = Session::callee(config(Integrity::Crc32c, Mode::Stream), 2, T).unwrap();
    (c, s, options)
}

fn output_actions(s: &mut Session) -> (Vec<u8>, Vec<TransportAction>) {
    let bytes = drain(s);
    let actions = std::iter::from_fn(|| s.poll_transport_action()).collect();
    (bytes, actions)
}

#[test]
fn negotiation_needs_both_sides() {
    for (caller, callee, granted) in [
        (Integrity::Crc32c, Integrity::Crc32c, Integrity::Crc32c),
        (Integrity::Crc32c, Integrity::None, Integrity::None),
        (Integrity::None, Integrity::Crc32c, Integrity::None),
        (Integrity::None, Integrity::None, Integrity::None),
    ] {
        let (mut c, mut s, connect, accept) = pair(caller, callee, Mode::Stream);
        assert_eq!(c.options().integrity, granted, "{caller:?}/{callee:?}");
        assert_eq!(s.options().integrity, granted, "{caller:?}/{callee:?}");
        // CONNECT is never sealed (a callee that predates the option must
        // read it); the ACCEPT that grants integrity is the first sealed frame.
        let on = granted == Integrity::Crc32c;
        assert_eq!(sealed(&connect), [false]);
        assert_eq!(sealed(&accept), [on]);
        // After ACCEPT, both seal exactly when it was granted.
        c.send(b"ping").unwrap();
        c.send_disconnect(T, Some(b"5")).unwrap();
        let from_c = drain(&mut c);
        assert_eq!(sealed(&frames(&from_c)), [on, on]);
        assert_eq!(s.handle_bytes(T, &from_c), from_c.len());
        let mut buf = [0u8; 16];
        assert_eq!(s.recv(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"ping");
        assert_eq!(
            s.recv_disconnect_bytes().unwrap().as_deref(),
            Some(&b"5"[..])
        );
        s.send_disconnect(T, Some(b"5")).unwrap();
        let from_s = drain(&mut s);
        assert_eq!(sealed(&frames(&from_s)), [on]);
        c.handle_bytes(T, &from_s);
        assert_eq!(
            c.recv_disconnect_bytes().unwrap().as_deref(),
            Some(&b"5"[..])
        );
    }
}

/// The defect: a payload bit flipped where TCP did not notice. With the
/// option the frame is refused whole, nothing of it reaches the
/// application, the receiver aborts with `INTEGRITY_FAILURE`, and the
/// sender learns why.
#[test]
fn altered_data_is_never_delivered() {
    for mode in [Mode::Stream, Mode::Message] {
        let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, mode);
        match mode {
            Mode::Stream => {
                c.send(b"total=5").unwrap();
            }
            Mode::Message => c.send_message(b"total=5").unwrap(),
        }
        let mut wire = drain(&mut c);
        let at = wire.iter().position(|&b| b == b'5').unwrap();
        wire[at] ^= 0x02; // '5' becomes '7'
        s.handle_bytes(T, &wire);
        let mut buf = [0u8; 64];
        let read = match mode {
            Mode::Stream => s.recv(&mut buf),
            Mode::Message => s.recv_message(&mut buf),
        };
        assert!(read.is_err(), "{mode:?}: damaged bytes delivered: {read:?}");
        assert!(
            !events(&mut s).contains(&Event::Readable),
            "{mode:?}: FD_READ for a damaged frame"
        );
        assert!(
            matches!(
                s.close_reason(),
                Some(CloseReason::ProtocolError {
                    detail: Violation::Malformed(bookend_wire::Error::ChecksumMismatch { .. })
                })
            ),
            "{mode:?}: {:?}",
            s.close_reason()
        );
        let (abort, actions) = output_actions(&mut s);
        assert_eq!(actions, [TransportAction::Reset]);
        c.handle_bytes(T, &abort);
        assert!(
            matches!(
                c.close_reason(),
                Some(CloseReason::Aborted {
                    by: Side::Peer,
                    reason: Reason::INTEGRITY_FAILURE,
                    ..
                })
            ),
            "{mode:?}: {:?}",
            c.close_reason()
        );
    }
}

/// The same flip without the option: delivered as it arrived. This is the
/// behaviour the option exists to end; it stays for sessions that do not
/// ask for it (the default while it costs more than the bulk budget).
#[test]
fn without_the_option_damage_gets_through() {
    let (mut c, mut s, _, _) = pair(Integrity::None, Integrity::None, Mode::Stream);
    c.send(b"total=5").unwrap();
    let mut wire = drain(&mut c);
    let at = wire.iter().position(|&b| b == b'5').unwrap();
    wire[at] ^= 0x02;
    s.handle_bytes(T, &wire);
    let mut buf = [0u8; 64];
    assert_eq!(s.recv(&mut buf), Ok(7));
    assert_eq!(&buf[..7], b"total=7");
}

/// Damage that clears the CRC32C flag itself must not turn a sealed frame
/// into an unchecked one: once integrity is in force, an unsealed header is
/// refused before its body is looked at.
#[test]
fn a_cleared_flag_is_refused_from_the_header() {
    let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
    c.send(b"total=5").unwrap();
    let mut wire = drain(&mut c);
    wire[1] &= !flags::CRC32C;
    // Only the header: the refusal must not wait for the body.
    s.handle_bytes(T, &wire[..6]);
    assert!(
        matches!(
            s.close_reason(),
            Some(CloseReason::ProtocolError {
                detail: Violation::Unsealed {
                    frame: FrameType::Data
                }
            })
        ),
        "{:?}",
        s.close_reason()
    );
    let (abort, _) = output_actions(&mut s);
    c.handle_bytes(T, &abort);
    assert!(matches!(
        c.close_reason(),
        Some(CloseReason::Aborted {
            reason: Reason::INTEGRITY_FAILURE,
            ..
        })
    ));
}

/// A damaged control frame (DISCONNECT carrying the seed's total) is refused
/// too: the peer's disconnect data is never reported.
#[test]
fn altered_disconnect_data_is_never_delivered() {
    let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
    c.send_disconnect(T, Some(&5u64.to_be_bytes())).unwrap();
    let mut wire = drain(&mut c);
    let last_data = wire.len() - 5; // the total's low byte, before the trailer
    wire[last_data] ^= 0x01;
    s.handle_bytes(T, &wire);
    assert!(!s.peer_disconnected());
    assert!(s.recv_disconnect_bytes().is_err());
    assert!(!events(&mut s).contains(&Event::PeerDisconnected));
}

/// Sealed frames are checked whole however the transport cuts them, and a
/// verified frame longer than the reader's buffer is not lost in the
/// zero-copy path: the rest waits in the session, in order.
#[test]
fn sealed_frames_in_any_chunking_and_in_direct_receive() {
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    // One byte at a time, buffered.
    let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
    assert_eq!(c.send(&payload), Ok(payload.len()));
    let wire = drain(&mut c);
    for b in &wire {
        assert_eq!(s.handle_bytes(T, std::slice::from_ref(b)), 1);
    }
    let mut got = vec![0u8; payload.len()];
    assert_eq!(s.recv(&mut got), Ok(payload.len()));
    assert_eq!(got, payload);

    // Direct receive into a small buffer: every byte, in order.
    let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
    s.set_direct_receive(true);
    c.send(&payload).unwrap();
    let wire = drain(&mut c);
    let mut at = 0;
    let mut got = Vec::new();
    let mut out = [0u8; 1000];
    for _ in 0..10_000 {
        if got.len() == payload.len() {
            break;
        }
        match s.recv(&mut out) {
            Ok(n) => {
                got.extend_from_slice(&out[..n]);
                continue;
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{e:?}"),
        }
        // The transport offers what it holds, up to 3000 bytes at a time.
        let end = (at + 3000).min(wire.len());
        let (used, n) = s.recv_direct(T, &wire[at..end], &mut out);
        at += used;
        got.extend_from_slice(&out[..n]);
    }
    assert_eq!(got, payload);
    let u = s.buffer_usage();
    assert!(u.rx_partial <= u.rx_partial_max && u.rx_queued <= u.rx_queued_max);
}

/// Damage that clears the flag of the ACCEPT granting integrity would turn
/// its trailer into callee data: an unsealed ACCEPT that grants it is
/// refused (review of the first version of this change).
#[test]
fn an_unsealed_accept_granting_integrity_is_refused() {
    let options = config(Integrity::Crc32c, Mode::Stream).options;
    let accept = bookend_wire::FrameRepr::Accept(bookend_wire::AcceptRepr {
        version: bookend_wire::VERSION,
        options: options.to_repr(),
        data: Some(b"welcome"),
    });
    // An ACCEPT granting integrity sent unsealed, and a sealed one whose
    // flag bit was cleared on the way (its header check then reads as the
    // start of the body, which no longer parses).
    let mut unsealed = vec![0u8; accept.buffer_len()];
    accept.emit(&mut unsealed).unwrap();
    let mut flag_cleared = vec![0u8; accept.sealed_buffer_len()];
    accept.emit_sealed(&mut flag_cleared).unwrap();
    flag_cleared[1] &= !flags::CRC32C;
    for (bytes, unsealed_reported) in [(unsealed, true), (flag_cleared, false)] {
        let mut c = Session::caller(config(Integrity::Crc32c, Mode::Stream), 1).unwrap();
        c.connect(T, Some(b"client"), options).unwrap();
        drain(&mut c);
        c.handle_bytes(T, &bytes);
        assert!(
            !events(&mut c)
                .iter()
                .any(|e| matches!(e, Event::Connected { .. })),
            "connected on a damaged ACCEPT"
        );
        let reason = c.close_reason();
        assert!(
            matches!(reason, Some(CloseReason::ProtocolError { .. })),
            "{reason:?}"
        );
        if unsealed_reported {
            assert!(
                matches!(
                    reason,
                    Some(CloseReason::ProtocolError {
                        detail: Violation::Unsealed {
                            frame: FrameType::Accept
                        }
                    })
                ),
                "{reason:?}"
            );
        }
    }
}

/// A callee willing to seal answers a caller that proposed integrity with a
/// sealed REJECT, whose reason and data the caller reads; the damage of one
/// bit is caught.
#[test]
fn a_reject_to_a_proposing_caller_is_sealed() {
    for damage in [false, true] {
        let (mut c, mut s, options) = proposing_pair();
        c.connect(T, None, options).unwrap();
        let connect = drain(&mut c);
        s.handle_bytes(T, &connect);
        events(&mut s);
        s.reject(T, Reason::BUSY, Some(b"later")).unwrap();
        let mut reject = drain(&mut s);
        assert_eq!(sealed(&frames(&reject)), [true]);
        if damage {
            let last_data = reject.len() - 5;
            reject[last_data] ^= 0x20;
        }
        c.handle_bytes(T, &reject);
        let refused = events(&mut c).into_iter().find_map(|e| match e {
            Event::Refused { reason, data } => Some((reason, data)),
            _ => None,
        });
        if damage {
            assert_eq!(refused, None);
            assert!(
                c.close_reason()
                    .is_some_and(CloseReason::is_integrity_failure)
            );
        } else {
            let (reason, data) = refused.expect("refused");
            assert_eq!(reason, Reason::BUSY);
            assert_eq!(data.as_deref(), Some(&b"later"[..]));
        }
    }
}

/// Sealed DATA that arrives after `close()` is checked before it is acted on:
/// intact, it is unread data (UNREAD_DATA, as TCP resets); damaged, an
/// integrity failure. An empty sealed stream DATA after close is harmless,
/// as the unsealed one is.
#[test]
fn sealed_data_after_close_is_checked_first() {
    for (payload, damage) in [
        (&b"late"[..], false),
        (&b"late"[..], true),
        (&b""[..], false),
    ] {
        let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
        s.close(T);
        drain(&mut s);
        let data = bookend_wire::FrameRepr::Data {
            end_of_message: false,
            payload,
        };
        let mut wire = vec![0u8; data.sealed_buffer_len()];
        data.emit_sealed(&mut wire).unwrap();
        if damage {
            wire[6] ^= 0x01;
        }
        s.handle_bytes(T, &wire);
        let reason = s.close_reason().cloned();
        match (payload.is_empty(), damage) {
            (true, _) => assert!(
                !matches!(
                    reason,
                    Some(CloseReason::Aborted { .. } | CloseReason::ProtocolError { .. })
                ),
                "{reason:?}"
            ),
            (false, false) => assert!(
                matches!(
                    reason,
                    Some(CloseReason::Aborted {
                        reason: Reason::UNREAD_DATA,
                        ..
                    })
                ),
                "{reason:?}"
            ),
            (false, true) => assert!(
                reason
                    .as_ref()
                    .is_some_and(CloseReason::is_integrity_failure),
                "{reason:?}"
            ),
        }
        let _ = &mut c;
    }
}

/// The one frame a caller may send before it sees ACCEPT, an ABORT, is
/// sealed when the caller proposed integrity, so a callee that has already
/// granted it reads the caller's reason (found by proptest: an unsealed
/// ABORT crossing the ACCEPT was taken for damage).
#[test]
fn an_abort_crossing_the_accept_is_read_with_its_reason() {
    let (mut c, mut s, options) = proposing_pair();
    c.connect(T, None, options).unwrap();
    let connect = drain(&mut c);
    assert_eq!(sealed(&frames(&connect)), [false]);
    s.handle_bytes(T, &connect);
    let Some(Event::ConnectRequest(req)) = s.poll_event() else {
        panic!("no request")
    };
    s.accept(T, None, req.grant).unwrap();
    let accept = drain(&mut s);
    c.abort(T, Reason::application(1), Some(b"bye")).unwrap();
    let (abort, actions) = output_actions(&mut c);
    assert_eq!(sealed(&frames(&abort)), [true]);
    assert_eq!(actions, [TransportAction::Reset]);
    s.handle_bytes(T, &abort);
    assert!(
        matches!(
            s.close_reason(),
            Some(CloseReason::Aborted { by: Side::Peer, reason, data: Some(d) })
                if *reason == Reason::application(1) && &d[..] == b"bye"
        ),
        "{:?}",
        s.close_reason()
    );
    c.handle_bytes(T, &accept);
    assert!(c.close_reason().is_some());
}

/// CONNECT is never sealed; its caller data carries its own CRC-32C in the
/// `INTEGRITY` option, so damaged caller data never reaches the condition
/// function (found by `bookend soak` with 64 KiB of caller data at 5 %
/// corruption: the first version delivered it altered).
#[test]
fn altered_caller_data_is_refused_before_the_condition_function() {
    for damage in [false, true] {
        let (mut c, mut s, options) = proposing_pair();
        c.connect(T, Some(b"total=5"), options).unwrap();
        let mut connect = drain(&mut c);
        if damage {
            let at = connect.len() - 1; // the caller data's last byte
            connect[at] ^= 0x02;
        }
        s.handle_bytes(T, &connect);
        let request = events(&mut s).into_iter().find_map(|e| match e {
            Event::ConnectRequest(r) => Some(r),
            _ => None,
        });
        if damage {
            assert!(
                request.is_none(),
                "a damaged request reached the application"
            );
            assert!(
                s.close_reason()
                    .is_some_and(CloseReason::is_integrity_failure)
            );
            let (_, actions) = output_actions(&mut s);
            assert_eq!(actions, [TransportAction::Reset]);
        } else {
            assert_eq!(
                request.expect("request").caller_data.as_deref(),
                Some(&b"total=5"[..])
            );
        }
    }
}

/// Damage to CONNECT's options must not turn integrity off unseen: the
/// check covers the whole CONNECT, so the value 1 turned into 0 is caught
/// (review of the version whose check covered the caller data only).
#[test]
fn a_downgraded_proposal_is_caught() {
    let (mut c, mut s, options) = proposing_pair();
    c.connect(T, Some(b"x"), options).unwrap();
    let mut connect = drain(&mut c);
    // The INTEGRITY TLV: kind 00 07, length 00 05, value 01, then the check.
    let at = connect
        .windows(5)
        .position(|w| w == [0x00, 0x07, 0x00, 0x05, 0x01])
        .expect("the 5-byte INTEGRITY option");
    connect[at + 4] = 0x00;
    s.handle_bytes(T, &connect);
    assert!(
        !events(&mut s)
            .iter()
            .any(|e| matches!(e, Event::ConnectRequest(_)))
    );
    assert!(
        s.close_reason()
            .is_some_and(CloseReason::is_integrity_failure)
    );
}

/// A CONNECT with `TLVs` (raw option bytes), no caller data, and the
/// 5-byte `INTEGRITY` check written if it carries one (§2.5).
fn raw_connect(tlvs: &[u8]) -> Vec<u8> {
    let body_len = 8 + tlvs.len();
    let mut f = vec![0x01, 0x00];
    f.extend_from_slice(&(body_len as u32).to_be_bytes());
    f.extend_from_slice(b"BKND");
    f.extend_from_slice(&[1, 1]);
    f.extend_from_slice(&(tlvs.len() as u16).to_be_bytes());
    f.extend_from_slice(tlvs);
    bookend_wire::seal_connect(&mut f);
    f
}

/// §2.5: a callee willing to grant seals the REJECT to a CONNECT it parsed
/// that proposed `INTEGRITY` = 1, and a CONNECT whose options are well
/// formed but hold an unknown critical option is parsed: REJECT
/// (`OPTION_UNSUPPORTED`) is sealed wherever the two options sit.
#[test]
fn a_reject_for_an_unknown_critical_option_is_sealed() {
    const UNKNOWN_CRITICAL: [u8; 4] = [0x80, 0x42, 0x00, 0x00];
    const INTEGRITY_1: [u8; 9] = [0x00, 0x07, 0x00, 0x05, 0x01, 0, 0, 0, 0];
    for order in [
        [&UNKNOWN_CRITICAL[..], &INTEGRITY_1[..]].concat(),
        [&INTEGRITY_1[..], &UNKNOWN_CRITICAL[..]].concat(),
    ] {
        let mut s = Session::callee(config(Integrity::Crc32c, Mode::Stream), 2, T).unwrap();
        let connect = raw_connect(&order);
        assert_eq!(s.handle_bytes(T, &connect), connect.len());
        let out = drain(&mut s);
        assert_eq!(
            frames(&out),
            [(FrameType::Reject, flags::CRC32C)],
            "options {order:02x?}"
        );
        let Ok(Decoded::Frame { repr, .. }) = decode(&out, &Limits::DEFAULT) else {
            unreachable!()
        };
        let bookend_wire::FrameRepr::Reject(r) = repr else {
            panic!("{repr:?}")
        };
        assert_eq!(r.reason, Reason::OPTION_UNSUPPORTED);
        // docs/protocol.md §10.4, byte for byte.
        let spec = spec_10_4();
        assert_eq!(out, spec[1]);
        if order[0] == 0x80 {
            assert_eq!(connect, spec[0]);
        }
    }
}

/// §2.5: a caller that requires integrity cannot propose a session without
/// it: the connect is refused at once (no CONNECT that could only end in
/// ABORT(`INTEGRITY_REQUIRED`) once the callee answered), and the session is
/// left as it was.
#[test]
fn a_caller_that_requires_integrity_cannot_propose_without_it() {
    let mut conf = config(Integrity::Crc32c, Mode::Stream);
    conf.require_integrity = true;
    let without = Options {
        integrity: Integrity::None,
        ..conf.options
    };
    assert_eq!(
        Session::check_connect(&conf, None, &without),
        Err(Error::InvalidGrant)
    );
    let mut c = Session::caller(conf, 1).unwrap();
    assert_eq!(c.connect(T, None, without), Err(Error::InvalidGrant));
    assert_eq!(c.state(), State::Idle);
    assert!(drain(&mut c).is_empty(), "nothing was sent");
}

/// §2.5: integrity required rather than preferred. A caller that requires
/// it ends a session whose ACCEPT does not grant it with
/// ABORT(`INTEGRITY_REQUIRED`), unsealed (it was not granted), and a callee
/// that requires it refuses a CONNECT that does not propose it with
/// REJECT(`INTEGRITY_REQUIRED`) before its application sees it.
#[test]
fn integrity_required_is_enforced_with_its_own_reason() {
    // The caller requires; the callee does not grant.
    let mut c_conf = config(Integrity::Crc32c, Mode::Stream);
    c_conf.require_integrity = true;
    let options = c_conf.options;
    let mut c = Session::caller(c_conf, 1).unwrap();
    let mut s = Session::callee(config(Integrity::None, Mode::Stream), 2, T).unwrap();
    c.connect(T, None, options).unwrap();
    let connect = drain(&mut c);
    s.handle_bytes(T, &connect);
    let Some(Event::ConnectRequest(req)) = s.poll_event() else {
        panic!("no request")
    };
    s.accept(T, None, req.grant).unwrap();
    let accept = drain(&mut s);
    c.handle_bytes(T, &accept);
    let (abort, actions) = output_actions(&mut c);
    // docs/protocol.md §10.4.
    assert_eq!(abort, spec_10_4()[3]);
    assert!(actions.contains(&TransportAction::Reset), "{actions:?}");
    let required = Reason::INTEGRITY_REQUIRED;
    assert_eq!(
        c.close_reason(),
        Some(&CloseReason::Aborted {
            by: Side::Local,
            reason: required,
            data: None
        })
    );
    assert!(!c.close_reason().unwrap().is_integrity_failure());
    s.handle_bytes(T, &abort);
    assert_eq!(
        s.close_reason(),
        Some(&CloseReason::Aborted {
            by: Side::Peer,
            reason: required,
            data: None
        })
    );

    // The callee requires; the caller does not propose.
    let mut s_conf = config(Integrity::Crc32c, Mode::Stream);
    s_conf.require_integrity = true;
    let mut s = Session::callee(s_conf, 2, T).unwrap();
    let c_conf = config(Integrity::None, Mode::Stream);
    let options = c_conf.options;
    let mut c = Session::caller(c_conf, 1).unwrap();
    c.connect(T, None, options).unwrap();
    let connect = drain(&mut c);
    s.handle_bytes(T, &connect);
    assert!(events(&mut s).is_empty(), "the application saw the request");
    let reject = drain(&mut s);
    // docs/protocol.md §10.4.
    assert_eq!(reject, spec_10_4()[2]);
    c.handle_bytes(T, &reject);
    assert!(events(&mut c).iter().any(
        |e| matches!(e, Event::Refused { reason, .. } if *reason == Reason::INTEGRITY_REQUIRED)
    ));

    // Required without proposing it is a configuration error.
    let mut bad = config(Integrity::None, Mode::Stream);
    bad.require_integrity = true;
    assert!(Session::caller(bad, 1).is_err());
}

/// §10.2's last row: unsealed DATA "hello" while integrity is in force is
/// refused from its first 6 bytes.
#[test]
fn unsealed_data_under_integrity_is_refused_from_six_bytes() {
    let (_, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
    let row = [0x04, 0x00, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'];
    const SPEC: &str = include_str!("../../../docs/protocol.md");
    assert!(SPEC.contains(
        "| `04 00 00 00 00 05 68 65 6c 6c 6f` | unsealed DATA while integrity is in force"
    ));
    s.handle_bytes(T, &row[..6]);
    assert!(
        s.close_reason()
            .is_some_and(CloseReason::is_integrity_failure),
        "{:?}",
        s.close_reason()
    );
}

/// §2.3 and §10.2: a skippable unknown frame that is sealed has its trailer
/// checked all the same, so damage to it ends the session with
/// `INTEGRITY_FAILURE` and nothing after it is acted on; the same frame with
/// its trailer intact is skipped.
#[test]
fn a_skipped_sealed_frame_is_checked_too() {
    let good = [
        0x40, 0x40, 0, 0, 0, 4, 0xa9, 0xe5, 0xda, 0xd0, 0x85, 0xdb, 0x33, 0x45,
    ];
    let (_, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
    s.handle_bytes(T, &good);
    assert_eq!(
        s.close_reason(),
        None,
        "an intact skippable frame is skipped"
    );

    let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
    let mut bad = good;
    bad[13] ^= 1;
    c.send(b"after").unwrap();
    let mut wire = bad.to_vec();
    wire.extend_from_slice(&drain(&mut c));
    s.handle_bytes(T, &wire);
    assert!(
        s.close_reason()
            .is_some_and(CloseReason::is_integrity_failure),
        "{:?}",
        s.close_reason()
    );
    let mut buf = [0u8; 16];
    assert!(s.recv(&mut buf).is_err(), "nothing after it is delivered");
}

/// §2.4/§2.5: with integrity in force, damage to a header's `length` is
/// caught from the header, before the body is waited for. Two flips that
/// cancel in TCP's checksum turned a sealed DATA frame's length from 12
/// into 8 204, under the frame limit; the receiver waited for that body
/// while the only bytes arriving were the peer's PINGs, which also kept
/// its idle timer fresh, and the CRC failed hours later.
#[test]
fn a_damaged_length_ends_the_session_at_once() {
    let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
    c.send(b"total=5").unwrap();
    let mut wire = drain(&mut c);
    wire[4] ^= 0x20; // length 11 becomes 8 203
    s.handle_bytes(T, &wire);
    assert!(
        s.close_reason()
            .is_some_and(CloseReason::is_integrity_failure),
        "still waiting for a body of {} bytes: {:?}",
        u32::from_be_bytes(wire[2..6].try_into().unwrap()),
        s.close_reason()
    );
    let mut buf = [0u8; 64];
    assert!(s.recv(&mut buf).is_err());
}

/// §2.5: with integrity in force, damage that lands in a header (a stream
/// shifted by corruption TCP missed, a type or flag bit hit) is reported as
/// `INTEGRITY_FAILURE`, whichever header check it would otherwise fail
/// first: reserved type, unknown `MUST_UNDERSTAND` type, a frame illegal in
/// the state, a length over the limit.
#[test]
fn header_damage_under_integrity_is_an_integrity_failure() {
    // (byte, xor) applied to a sealed DATA frame's header.
    for (byte, xor, was) in [
        (0usize, 0x04u8, "reserved type 0x00"),
        (0, 0x44, "unknown type 0x40"),
        (1, 0x80, "MUST_UNDERSTAND on DATA"),
        (0, 0x05, "type 0x01: CONNECT, illegal in OPEN"),
        (2, 0x01, "length over the limit"),
        (1, 0x40, "CRC32C flag cleared"),
    ] {
        let (mut c, mut s, _, _) = pair(Integrity::Crc32c, Integrity::Crc32c, Mode::Stream);
        c.send(b"total=5").unwrap();
        let mut wire = drain(&mut c);
        wire[byte] ^= xor;
        s.handle_bytes(T, &wire);
        assert!(
            s.close_reason()
                .is_some_and(CloseReason::is_integrity_failure),
            "{was}: {:?}",
            s.close_reason()
        );
        let (abort, _) = output_actions(&mut s);
        c.handle_bytes(T, &abort);
        assert!(
            matches!(
                c.close_reason(),
                Some(CloseReason::Aborted {
                    reason: Reason::INTEGRITY_FAILURE,
                    ..
                })
            ),
            "{was}: {:?}",
            c.close_reason()
        );
    }
}
