//! The header rules over their whole space (`docs/protocol.md` §2.4, §2.3,
//! §2.5, §5.3, §10.2): every type byte × every flags byte × the boundary
//! lengths (0, 1, 3 and 4 around a sealed body's trailer, the type's limit
//! and one past it, each sealed and unsealed), fed whole and one byte at a
//! time, in every state a peer can send a frame into, with integrity in force
//! and not. Each header gets the refusal §2.4's order of checks prescribes,
//! or none: a header that passes them leaves the session waiting for its
//! body, having sent nothing.
//!
//! The expectation is computed here from the specification's text (checks 0
//! to 4 of §2.4) and, for check 3, from the transition table the
//! specification's §5.3 is generated from. It runs about 16 million
//! feedings, so it runs optimised (`cargo test --profile model -p
//! bookend-session --test header_space -- --include-ignored`, as `.ci/run`
//! does, with the session's debug assertions on) and is ignored otherwise.

mod common;

use bookend_session::state::{Input, State, row};
use bookend_session::{Config, Integrity, Mode, Options, Reason, Session};
use bookend_wire::MAX_OPTIONS_LEN;
use bookend_wire::crc32c;
use common::Pair;

const CRC32C: u8 = 0x40;
const MUST_UNDERSTAND: u8 = 0x80;

/// What §2.4 says a header alone decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The session ends with this ABORT.
    Abort(Reason),
    /// CONNECT in AWAIT_CONNECT over its limit: REJECT(`DATA_TOO_LARGE`).
    Reject(Reason),
    /// The header passes: the session waits for the body.
    Waits,
}

/// A session ready to receive in `state`, and whether integrity is in force
/// there (negotiated: ACCEPT sent or received with it granted).
struct Receiver {
    name: String,
    session: Session,
    state: State,
    sealed: bool,
    limits: Limits,
}

/// The negotiated limits the receiver checks (§2.4's table).
#[derive(Clone, Copy)]
struct Limits {
    frame: u32,
    connect_data: u32,
    disconnect_data: u32,
}

impl Limits {
    /// The largest body of a frame of `t` (without the trailer).
    fn of(&self, t: u8) -> u32 {
        match t {
            0x01 | 0x02 => 8 + MAX_OPTIONS_LEN + self.connect_data,
            0x03 => 2 + self.connect_data,
            0x05 => self.disconnect_data,
            0x06 => 2 + self.disconnect_data,
            0x07 => 0,
            _ => self.frame,
        }
    }
}

fn options(integrity: bool) -> Options {
    Options {
        mode: Mode::Stream,
        integrity: if integrity {
            Integrity::Crc32c
        } else {
            Integrity::None
        },
        ..Options::DEFAULT
    }
}

/// Every receiving state, with integrity proposed and granted or not.
fn receivers() -> Vec<Receiver> {
    let mut out = Vec::new();
    for integrity in [false, true] {
        let tag = if integrity { "sealed" } else { "unsealed" };
        let d = Config::default().options;
        let limits = Limits {
            frame: d.max_frame_size,
            connect_data: d.max_connect_data,
            disconnect_data: d.max_disconnect_data,
        };
        // A callee before CONNECT; a caller after it.
        let mut p = Pair::default_pair();
        out.push(Receiver {
            name: format!("callee AWAIT_CONNECT ({tag})"),
            session: p.server.session.clone(),
            state: State::AwaitConnect,
            sealed: false,
            limits,
        });
        let t = p.time;
        p.client
            .session
            .connect(t, Some(b"hello"), options(integrity))
            .unwrap();
        out.push(Receiver {
            name: format!("caller CONNECT_SENT ({tag})"),
            session: p.client.session.clone(),
            state: State::ConnectSent,
            sealed: false,
            limits,
        });
        // Both sides OPEN, then each disconnected side.
        let mut p = Pair::default_pair();
        p.connect(b"hello", b"welcome", options(integrity));
        for (who, e) in [("caller", &p.client), ("callee", &p.server)] {
            out.push(Receiver {
                name: format!("{who} OPEN ({tag})"),
                session: e.session.clone(),
                state: State::Open,
                sealed: integrity,
                limits,
            });
        }
        let t = p.time;
        let mut local = p.client.session.clone();
        local.send_disconnect(t, Some(b"bye")).unwrap();
        out.push(Receiver {
            name: format!("caller LOCAL_DISCONNECTED ({tag})"),
            session: local,
            state: State::LocalDisconnected,
            sealed: integrity,
            limits,
        });
        p.client.session.send_disconnect(t, Some(b"bye")).unwrap();
        p.drive_until(std::time::Duration::from_secs(1), |p| {
            p.server.session.state() == State::PeerDisconnected
        });
        out.push(Receiver {
            name: format!("callee PEER_DISCONNECTED ({tag})"),
            session: p.server.session.clone(),
            state: State::PeerDisconnected,
            sealed: integrity,
            limits,
        });
    }
    for r in &mut out {
        // What it had queued already went out: only its answer to the
        // header is looked at.
        let now = bookend_session::Instant::from_micros(1);
        while r.session.poll_transmit_bytes(now, 1 << 20).is_some() {}
        while r.session.poll_transport_action().is_some() {}
        while r.session.poll_event().is_some() {}
        assert_eq!(r.session.state(), r.state, "{}", r.name);
    }
    out
}

/// The input a received frame of type `t` is, for the table (§5.3).
fn input_of(t: u8) -> Input {
    match t {
        0x01 => Input::RecvConnect,
        0x02 => Input::RecvAccept,
        0x03 => Input::RecvReject,
        0x04 => Input::RecvData,
        0x05 => Input::RecvDisconnect,
        0x06 => Input::RecvAbort,
        0x07 => Input::RecvPing,
        _ => Input::RecvUnknown,
    }
}

/// §2.4's order of checks, from the header alone.
fn expect(r: &Receiver, t: u8, flags: u8, len: u32) -> Expect {
    let sealed = flags & CRC32C != 0;
    // 0a, 0c (0b passes: the header check is right).
    if r.sealed && !sealed || sealed && len < 4 {
        return Expect::Abort(Reason::INTEGRITY_FAILURE);
    }
    // 1.
    if t == 0 {
        return Expect::Abort(Reason::PROTOCOL_ERROR);
    }
    // 2.
    if t > 0x07 && flags & MUST_UNDERSTAND != 0 {
        return Expect::Abort(Reason::UNKNOWN_FRAME);
    }
    // 3.
    if row(r.state, input_of(t)).is_none() {
        return Expect::Abort(Reason::UNEXPECTED_FRAME);
    }
    // 4.
    let limit = r.limits.of(t) + if sealed { 4 } else { 0 };
    if len > limit {
        return if t == 0x01 && r.state == State::AwaitConnect {
            Expect::Reject(Reason::DATA_TOO_LARGE)
        } else {
            Expect::Abort(Reason::FRAME_TOO_LARGE)
        };
    }
    Expect::Waits
}

/// The header: 6 bytes, and the header check when sealed.
fn header(t: u8, flags: u8, len: u32) -> Vec<u8> {
    let mut h = vec![t, flags];
    h.extend_from_slice(&len.to_be_bytes());
    if flags & CRC32C != 0 {
        let check = crc32c(&h);
        h.extend_from_slice(&check.to_be_bytes());
    }
    h
}

/// What the session did with the header: the first frame it sent, as
/// (type, reason), if any.
fn outcome(mut s: Session, bytes: &[u8], one_at_a_time: bool) -> Option<(u8, u16)> {
    let now = bookend_session::Instant::from_micros(1);
    if one_at_a_time {
        for b in bytes {
            s.handle_bytes(now, std::slice::from_ref(b));
        }
    } else {
        s.handle_bytes(now, bytes);
    }
    let out = s.poll_transmit_bytes(now, 1 << 16)?;
    let hl = bookend_wire::header_len(*out.get(1)?);
    let reason = out
        .get(hl..hl + 2)
        .map_or(0, |r| u16::from_be_bytes([r[0], r[1]]));
    Some((out[0], reason))
}

/// The lengths worth trying for type `t` at receiver `r`.
fn lengths(r: &Receiver, t: u8) -> Vec<u32> {
    let limit = r.limits.of(t);
    let mut v = vec![0, 1, 3, 4, 5, limit, limit + 1, limit + 4, limit + 5];
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive: run optimised (cargo test --profile model -p bookend-session --test header_space -- --include-ignored)"
)]
fn every_header_gets_the_refusal_the_order_of_checks_prescribes() {
    let receivers = receivers();
    let mut checked = 0u64;
    let mut failures = Vec::new();
    for r in &receivers {
        for t in 0..=255u8 {
            for flags in 0..=255u8 {
                for len in lengths(r, t) {
                    let e = expect(r, t, flags, len);
                    // A complete frame (nothing after the header) goes on to
                    // the layout checks of §3, beyond the header's space.
                    let complete = len == 0 || (flags & CRC32C != 0 && len <= 4);
                    if e == Expect::Waits && complete {
                        continue;
                    }
                    let bytes = header(t, flags, len);
                    for one_at_a_time in [false, true] {
                        let got = outcome(r.session.clone(), &bytes, one_at_a_time);
                        let ok = match e {
                            Expect::Waits => got.is_none(),
                            Expect::Abort(reason) => got == Some((0x06, reason.0)),
                            Expect::Reject(reason) => got == Some((0x03, reason.0)),
                        };
                        checked += 1;
                        if !ok && failures.len() < 20 {
                            failures.push(format!(
                                "{}: type {t:#04x} flags {flags:#04x} length {len} ({}): expected {e:?}, got {got:x?}",
                                r.name,
                                if one_at_a_time { "one byte at a time" } else { "whole" },
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every receiver, every type and flags byte, at least one length each.
    assert!(checked > receivers.len() as u64 * 65_536, "{checked}");
    println!("{checked} headers checked in {} receivers", receivers.len());
}
