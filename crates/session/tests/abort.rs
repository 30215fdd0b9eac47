//! Abortive close in each state (closesocket with linger {1, 0}): the aborting
//! side ends `Aborted { by: Local }`; the peer ends `Aborted { by: Peer }` with
//! exactly the reason and data when the ABORT frame reaches it, or `Reset`
//! when only the RST does (the RST overtook the frame, or our FIN was already
//! sent so no frame could follow it).

mod common;

use std::time::Duration;

use bookend_session::{CloseReason, Error, Options, Reason, Side, State};
use bytes::Bytes;
use common::{Pair, RstBehaviour};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Client,
    Server,
}

/// Brings a fresh pair to the point where `who` is in `state`.
fn reach(state: State) -> (Pair, Who) {
    let mut p = Pair::default_pair();
    let t = p.time;
    let who = match state {
        State::ConnectSent => {
            p.client
                .session
                .connect(t, Some(b"c"), Options::DEFAULT)
                .unwrap();
            Who::Client
        }
        State::AwaitConnect => {
            // CONNECT is in flight: the server has not read it yet.
            p.client
                .session
                .connect(t, Some(b"c"), Options::DEFAULT)
                .unwrap();
            Who::Server
        }
        State::ConnectReceived | State::Deferred => {
            p.client
                .session
                .connect(t, Some(b"c"), Options::DEFAULT)
                .unwrap();
            p.drive_until(Duration::from_secs(1), |p| {
                p.server.session.state() == State::ConnectReceived
            });
            if state == State::Deferred {
                p.server.session.defer().unwrap();
            }
            Who::Server
        }
        State::Open => {
            p.connect(b"c", b"s", Options::DEFAULT);
            Who::Client
        }
        State::LocalDisconnected | State::PeerDisconnected => {
            p.connect(b"c", b"s", Options::DEFAULT);
            let t = p.time;
            p.client.session.send_disconnect(t, Some(b"17")).unwrap();
            p.drive_until(Duration::from_secs(1), |p| {
                p.server.session.peer_disconnected()
            });
            if state == State::LocalDisconnected {
                Who::Client
            } else {
                Who::Server
            }
        }
        State::Closing => {
            p.connect(b"c", b"s", Options::DEFAULT);
            let t = p.time;
            p.client.session.send_disconnect(t, Some(b"17")).unwrap();
            p.drive_until(Duration::from_secs(1), |p| {
                p.server.session.peer_disconnected()
            });
            let t = p.time;
            p.server.session.send_disconnect(t, Some(b"1017")).unwrap();
            Who::Server
        }
        State::Rejecting => {
            p.client
                .session
                .connect(t, Some(b"c"), Options::DEFAULT)
                .unwrap();
            p.drive_until(Duration::from_secs(1), |p| {
                p.server.session.state() == State::ConnectReceived
            });
            let t = p.time;
            p.server.session.reject(t, Reason::REJECTED, None).unwrap();
            Who::Server
        }
        other => panic!("not reachable here: {other}"),
    };
    let s = if who == Who::Client {
        &p.client.session
    } else {
        &p.server.session
    };
    assert_eq!(s.state(), state);
    (p, who)
}

fn abort_in(state: State, rst: RstBehaviour) -> (CloseReason, CloseReason) {
    let (mut p, who) = reach(state);
    p.rst = rst;
    let reason = Reason::application(0x77);
    let t = p.time;
    let me = if who == Who::Client {
        &mut p.client
    } else {
        &mut p.server
    };
    me.session.abort(t, reason, Some(b"going down")).unwrap();
    assert_eq!(me.session.state(), State::Closed);
    assert_eq!(
        me.session.abort(t, reason, None),
        Err(Error::InvalidState {
            state: State::Closed
        })
    );
    p.finish(Duration::from_secs(15));
    let (me, peer) = if who == Who::Client {
        (&p.client, &p.server)
    } else {
        (&p.server, &p.client)
    };
    assert!(me.sent_rst, "abort sends RST in {state}");
    (me.closed().unwrap().clone(), peer.closed().unwrap().clone())
}

#[test]
fn abort_in_each_state_reaches_the_peer_with_reason_and_data() {
    let reason = Reason::application(0x77);
    let data = Some(Bytes::from_static(b"going down"));
    let local = CloseReason::Aborted {
        by: Side::Local,
        reason,
        data: data.clone(),
    };
    let via_frame = CloseReason::Aborted {
        by: Side::Peer,
        reason,
        data: data.clone(),
    };
    for state in [
        State::ConnectSent,
        State::AwaitConnect,
        State::ConnectReceived,
        State::Deferred,
        State::Open,
        State::LocalDisconnected,
        State::PeerDisconnected,
    ] {
        let (me, peer) = abort_in(state, RstBehaviour::AfterData);
        assert_eq!(me, local, "{state}");
        assert_eq!(peer, via_frame, "{state}");
    }
}

#[test]
fn abort_after_our_fin_or_with_the_frame_lost_is_a_reset() {
    for state in [State::Closing, State::Rejecting] {
        let (_, peer) = abort_in(state, RstBehaviour::AfterData);
        assert_eq!(
            peer,
            CloseReason::Reset,
            "{state}: no frame can follow our FIN"
        );
    }
    for state in [
        State::ConnectReceived,
        State::Open,
        State::LocalDisconnected,
        State::PeerDisconnected,
    ] {
        let (_, peer) = abort_in(state, RstBehaviour::DropsData);
        assert_eq!(
            peer,
            CloseReason::Reset,
            "{state}: the RST overtook the ABORT"
        );
    }
}

#[test]
fn reset_discards_unread_data_and_reads_report_it() {
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    p.client.session.send(b"unread").unwrap();
    let t = p.time;
    p.client.session.send_disconnect(t, Some(b"total")).unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.session.peer_disconnected()
    });
    // E12: the RST arrives before the application read anything.
    p.rst = RstBehaviour::AfterData;
    let t = p.time;
    p.client
        .session
        .abort(t, Reason::UNSPECIFIED, None)
        .unwrap();
    p.finish(Duration::from_secs(5));
    let mut buf = [0u8; 16];
    assert_eq!(
        p.server.session.recv(&mut buf),
        Err(Error::ConnectionAborted)
    );
    assert_eq!(
        p.server.session.recv_disconnect(&mut buf),
        Err(Error::ConnectionAborted)
    );
    assert_eq!(p.server.session.send(b"x"), Err(Error::ConnectionAborted));
}

#[test]
fn close_with_unread_data_aborts_like_tcp() {
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    p.client.session.send(b"never read").unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.session.recv_queue() > 0
    });
    let t = p.time;
    p.server.session.close(t);
    p.finish(Duration::from_secs(5));
    let unread = Reason::UNREAD_DATA;
    assert_eq!(
        p.server.closed(),
        Some(&CloseReason::Aborted {
            by: Side::Local,
            reason: unread,
            data: None
        })
    );
    assert_eq!(
        p.client.closed(),
        Some(&CloseReason::Aborted {
            by: Side::Peer,
            reason: unread,
            data: None
        })
    );
}

#[test]
fn data_arriving_after_close_aborts_the_sender() {
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    let t = p.time;
    p.server.session.close(t);
    // The client has not seen the server's DISCONNECT yet and keeps sending.
    p.client.session.send(b"too late").unwrap();
    p.finish(Duration::from_secs(5));
    let unread = Reason::UNREAD_DATA;
    assert_eq!(
        p.client.closed(),
        Some(&CloseReason::Aborted {
            by: Side::Peer,
            reason: unread,
            data: None
        })
    );
}

#[test]
fn linger_timeout_bounds_a_close_the_peer_never_answers() {
    let mut p = Pair::default_pair();
    p.connect(
        b"c",
        b"s",
        Options {
            keepalive_ms: 0,
            ..Options::DEFAULT
        },
    );
    let t = p.time;
    // The server closes; the client application never disconnects.
    p.server.session.close(t);
    p.finish(Duration::from_secs(30));
    assert_eq!(
        p.server.closed(),
        Some(&CloseReason::TimedOut(bookend_session::Timer::Linger))
    );
    let linger = CloseReason::Aborted {
        by: Side::Peer,
        reason: Reason::LINGER_TIMEOUT,
        data: None,
    };
    assert_eq!(p.client.closed(), Some(&linger));
    assert!(p.time <= bookend_session::Instant::from_millis(10_200));
}

#[test]
fn idle_timeout_after_three_silent_keepalive_intervals() {
    let mut p = Pair::default_pair();
    p.connect(
        b"c",
        b"s",
        Options {
            keepalive_ms: 1_000,
            ..Options::DEFAULT
        },
    );
    // Keepalives keep a quiet but healthy session up.
    p.run_until(bookend_session::Instant::from_millis(20_000));
    assert_eq!(p.client.session.state(), State::Open);
    assert_eq!(p.server.session.state(), State::Open);
    // Now the server's transport goes silent (its host vanished): no FIN, no RST.
    p.server.dead = true;
    p.finish(Duration::from_secs(10));
    assert_eq!(
        p.client.closed(),
        Some(&CloseReason::TimedOut(bookend_session::Timer::Idle))
    );
}

/// The seed's steps 5 and 5a with DATA the server never read: `send_disconnect`
/// in `PEER_DISCONNECTED` moves to `CLOSING` with the DATA still queued, and
/// the `closesocket` that follows must not end gracefully on either side, or
/// the client believes its DATA was read (RFC 9293 §3.10.4: TCP resets when
/// closed with data unread). Our FIN is already sent, so the answer is RST
/// alone (§5.5, errors after our own FIN).
#[test]
fn close_in_closing_with_unread_data_resets() {
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    p.client.session.send(b"never read").unwrap();
    let t = p.time;
    p.client.session.send_disconnect(t, Some(b"17")).unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.session.peer_disconnected()
    });
    assert!(p.server.session.recv_queue() > 0);
    // Step 5: the server answers with its own disconnect data; CLOSING.
    let t = p.time;
    p.server.session.send_disconnect(t, Some(b"1017")).unwrap();
    assert_eq!(p.server.session.state(), State::Closing);
    // Step 5a, with the DATA still unread.
    p.server.session.close(t);
    p.finish(Duration::from_secs(30));
    assert_eq!(
        p.server.closed(),
        Some(&CloseReason::Aborted {
            by: Side::Local,
            reason: Reason::UNREAD_DATA,
            data: None
        })
    );
    assert_eq!(p.client.closed(), Some(&CloseReason::Reset));
}

/// §3.6, §2: an abort after part of a frame went to the transport sends the
/// rest of that frame before the ABORT (discarding the unsent data never
/// tears a frame): the peer reads the ABORT's reason and data, not the
/// ABORT's bytes as the torn frame's body.
#[test]
fn an_abort_after_part_of_a_frame_went_out_does_not_tear_it() {
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    let t = p.time;
    let data = vec![0x5au8; 40 * 1024];
    let queued = p.client.session.send(&data).unwrap();
    assert!(queued > 100);
    // The driver took the first 100 bytes (part of the first DATA frame)
    // and TCP delivered them.
    let head = p.client.session.poll_transmit_bytes(t, 100).unwrap();
    assert_eq!(head.len(), 100);
    assert_eq!(p.server.session.handle_bytes(t, &head), 100);
    let reason = Reason::application(0x42);
    p.client.session.abort(t, reason, Some(b"bye")).unwrap();
    p.finish(Duration::from_secs(10));
    assert_eq!(
        p.server.closed(),
        Some(&CloseReason::Aborted {
            by: Side::Peer,
            reason,
            data: Some(Bytes::from_static(b"bye")),
        })
    );
}

/// §7 (abort flush): when the transport takes nothing more after an abort
/// (the peer's window stays closed), the RST goes once the abort-flush
/// timer runs out, even though the rest of a frame partly handed out, and
/// the ABORT behind it, never went.
#[test]
fn the_abort_flush_timer_resets_even_with_a_frame_left_unsent() {
    use bookend_session::TransportAction;
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    let t = p.time;
    p.client.session.send(&vec![0x5au8; 40 * 1024]).unwrap();
    let _head = p.client.session.poll_transmit_bytes(t, 100).unwrap();
    p.client
        .session
        .abort(t, Reason::application(0x42), None)
        .unwrap();
    assert_eq!(p.client.session.poll_transport_action(), None);
    let later = t + Duration::from_secs(5);
    p.client.session.handle_timeout(later);
    assert_eq!(
        p.client.session.poll_transport_action(),
        Some(TransportAction::Reset)
    );
}

/// §5.4: a reset that follows no ABORT (our FIN was queued, or sent) goes
/// at once, even with the rest of a frame partly handed out still unsent:
/// no frame follows the RST, so nothing needs that rest, and waiting for a
/// peer whose window stays closed would hold the RST forever.
#[test]
fn an_abort_after_our_fin_resets_even_with_a_frame_left_unsent() {
    use bookend_session::TransportAction;
    let mut p = Pair::default_pair();
    p.connect(b"c", b"s", Options::DEFAULT);
    let t = p.time;
    p.server.session.send_disconnect(t, Some(b"17")).unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.client.session.peer_disconnected()
    });
    let t = p.time;
    p.client.session.send(&vec![0x5au8; 40 * 1024]).unwrap();
    let _head = p.client.session.poll_transmit_bytes(t, 100).unwrap();
    // Our DISCONNECT too: both are in, so the session is CLOSING, its FIN
    // queued behind the data.
    p.client.session.send_disconnect(t, None).unwrap();
    assert_eq!(p.client.session.state(), State::Closing);
    p.client
        .session
        .abort(t, Reason::application(0x42), None)
        .unwrap();
    assert_eq!(
        p.client.session.poll_transport_action(),
        Some(TransportAction::Reset)
    );
}

/// `docs/protocol.md` §10.6: the bytes of an abort after TCP took the first
/// 3 bytes of a DATA frame are the whole frame, then the ABORT.
#[test]
fn the_abort_after_a_partial_frame_of_spec_10_6() {
    const SPEC: &str = include_str!("../../../docs/protocol.md");
    let start = SPEC.find("### 10.6").expect("§10.6");
    let end = start + 1 + SPEC[start + 1..].find("\n#").expect("end of §10.6");
    let expected: Vec<u8> = SPEC[start..end]
        .split("```hex\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the §10.6 block")
        .split_whitespace()
        .map(|t| u8::from_str_radix(t, 16).unwrap())
        .collect();
    let mut p = Pair::default_pair();
    p.connect(
        b"c",
        b"s",
        Options {
            integrity: bookend_session::Integrity::None,
            ..Options::DEFAULT
        },
    );
    let t = p.time;
    assert_eq!(p.client.session.send(b"hello"), Ok(5));
    let mut wire = p.client.session.poll_transmit_bytes(t, 3).unwrap().to_vec();
    p.client
        .session
        .abort(t, Reason::APPLICATION_ABORT, None)
        .unwrap();
    while let Some(b) = p.client.session.poll_transmit_bytes(t, 64) {
        wire.extend_from_slice(&b);
    }
    assert_eq!(wire, expected);
}
