//! Conditional accept (WSAAccept's condition function): CF_ACCEPT with callee
//! data, CF_REJECT with a reason and data, CF_DEFER then a decision or the
//! decision timeout; the caller's connect timeout; and the callee's
//! automatic refusals (`docs/protocol.md` §6.3).

mod common;

use std::time::Duration;

use bookend_session::{
    CloseReason, Config, ConnectRequest, Error, Event, Options, Reason, Side, State, Timer,
};
use common::Pair;

fn request(p: &mut Pair, caller_data: &[u8]) -> ConnectRequest {
    let t = p.time;
    p.client
        .session
        .connect(t, Some(caller_data), Options::DEFAULT)
        .unwrap();
    p.drive_until(Duration::from_secs(1), |p| {
        p.server.session.state() == State::ConnectReceived
    });
    p.server
        .take_events()
        .into_iter()
        .find_map(|e| match e {
            Event::ConnectRequest(r) => Some(r),
            _ => None,
        })
        .expect("ConnectRequest event")
}

#[test]
fn accept_with_callee_data_and_granted_options() {
    let mut server = Config::default();
    server.options.max_frame_size = 4096;
    server.options.keepalive_ms = 5_000;
    let mut p = Pair::new(Config::default(), server);
    let req = request(&mut p, b"caller id 7");
    assert_eq!(req.caller_data.as_deref(), Some(&b"caller id 7"[..]));
    assert_eq!(req.proposed, Options::DEFAULT);
    // The default grant is the callee's limits applied to the proposal.
    assert_eq!(req.grant.max_frame_size, 4096);
    assert_eq!(req.grant.keepalive_ms, 5_000);
    let t = p.time;
    p.server
        .session
        .accept(t, Some(b"callee says hi"), req.grant)
        .unwrap();
    p.drive_until(Duration::from_secs(1), |p| p.client.session.is_connected());
    let events = p.client.take_events();
    assert_eq!(
        events[0],
        Event::Connected {
            callee_data: Some(bytes::Bytes::from_static(b"callee says hi")),
            granted: req.grant
        }
    );
    assert_eq!(events[1], Event::Writable, "FD_WRITE follows FD_CONNECT");
    assert_eq!(
        p.client.session.options(),
        req.grant,
        "the grant binds both directions"
    );
    assert_eq!(p.server.session.options(), req.grant);
}

#[test]
fn accept_refuses_a_grant_larger_than_the_proposal_and_oversize_callee_data() {
    let mut p = Pair::default_pair();
    let req = request(&mut p, b"x");
    let t = p.time;
    let greedy = Options {
        max_frame_size: req.proposed.max_frame_size * 2,
        ..req.grant
    };
    assert_eq!(
        p.server.session.accept(t, None, greedy),
        Err(Error::InvalidGrant)
    );
    let mode_change = Options {
        mode: bookend_session::Mode::Message,
        ..req.grant
    };
    assert_eq!(
        p.server.session.accept(t, None, mode_change),
        Err(Error::InvalidGrant)
    );
    let small = Options {
        max_connect_data: 16,
        ..req.grant
    };
    assert_eq!(
        p.server.session.accept(t, Some(&[0u8; 17]), small),
        Err(Error::TooLarge {
            max: 16,
            what: bookend_session::DataKind::CalleeData
        })
    );
    // Refused commands change nothing: the request is still pending.
    assert_eq!(p.server.session.state(), State::ConnectReceived);
    assert_eq!(p.server.session.send_queue(), 0);
    p.server.session.accept(t, Some(&[0u8; 16]), small).unwrap();
}

#[test]
fn reject_delivers_reason_and_data_to_the_caller() {
    let mut p = Pair::default_pair();
    request(&mut p, b"who am i");
    let t = p.time;
    let reason = Reason::application(42);
    p.server
        .session
        .reject(t, reason, Some(b"not today"))
        .unwrap();
    p.finish(Duration::from_secs(5));
    let events = p.client.take_events();
    assert_eq!(
        events,
        vec![
            Event::Refused {
                reason,
                data: Some(bytes::Bytes::from_static(b"not today"))
            },
            Event::Closed(CloseReason::Refused { reason }),
        ]
    );
    assert_eq!(p.server.closed(), Some(&CloseReason::Rejected { reason }));
    assert!(p.client.sent_fin && p.server.sent_fin && !p.client.sent_rst && !p.server.sent_rst);
    let mut buf = [0u8; 4];
    assert_eq!(
        p.client.session.recv(&mut buf),
        Err(Error::NotConnected),
        "WSAECONNREFUSED, then not connected"
    );
}

#[test]
fn defer_then_accept_later() {
    let mut p = Pair::default_pair();
    let req = request(&mut p, b"maybe");
    p.server.session.defer().unwrap();
    assert_eq!(p.server.session.state(), State::Deferred);
    // Time passes, within the decision timeout: the request stays pending.
    p.run_until(bookend_session::Instant::from_millis(5_000));
    assert_eq!(p.server.session.state(), State::Deferred);
    assert!(!p.client.session.is_connected());
    let t = p.time;
    p.server
        .session
        .accept(t, Some(b"yes after all"), req.grant)
        .unwrap();
    p.drive_until(Duration::from_secs(1), |p| p.client.session.is_connected());
    assert!(
        matches!(&p.client.take_events()[0], Event::Connected { callee_data: Some(d), .. } if &d[..] == b"yes after all")
    );
}

#[test]
fn defer_then_decision_timeout_rejects_with_the_reason() {
    let mut p = Pair::default_pair();
    request(&mut p, b"maybe");
    p.server.session.defer().unwrap();
    p.finish(Duration::from_secs(20));
    let expected = Reason::DECISION_TIMEOUT;
    assert_eq!(
        p.client.events[0],
        Event::Refused {
            reason: expected,
            data: None
        }
    );
    assert_eq!(
        p.client.closed(),
        Some(&CloseReason::Refused { reason: expected })
    );
    assert_eq!(
        p.server.closed(),
        Some(&CloseReason::Rejected { reason: expected })
    );
    // It fired at the configured 10 s, not before.
    let decided = Config::default().decision_timeout;
    assert!(p.time >= bookend_session::Instant::ZERO + decided);
}

#[test]
fn connect_timeout_when_the_callee_never_answers() {
    let mut client = Config::default();
    client.connect_timeout = Duration::from_secs(2);
    let mut server = Config::default();
    server.decision_timeout = Duration::from_secs(60);
    let mut p = Pair::new(client, server);
    request(&mut p, b"hello?");
    p.finish(Duration::from_secs(30));
    assert_eq!(
        p.client.closed(),
        Some(&CloseReason::TimedOut(Timer::Connect))
    );
    assert!(p.time < bookend_session::Instant::from_millis(2_100));
    assert_eq!(
        p.server.closed(),
        Some(&CloseReason::Aborted {
            by: Side::Peer,
            reason: Reason::CONNECT_TIMEOUT,
            data: None
        })
    );
}

#[test]
fn handshake_timeout_when_no_connect_arrives() {
    let mut p = Pair::default_pair();
    // The default plus the abort flush.
    let limit = bookend_session::Config::default().handshake_timeout + Duration::from_secs(5);
    p.finish(limit);
    assert_eq!(
        p.server.closed(),
        Some(&CloseReason::TimedOut(Timer::Handshake))
    );
    assert!(p.server.sent_rst);
}

#[test]
fn oversize_caller_data_is_refused_locally_and_nothing_is_sent() {
    let mut client = Config::default();
    client.options.max_connect_data = 16;
    let mut p = Pair::new(client.clone(), Config::default());
    let t = p.time;
    let err = p
        .client
        .session
        .connect(t, Some(&[1u8; 17]), client.options);
    assert_eq!(
        err,
        Err(Error::TooLarge {
            max: 16,
            what: bookend_session::DataKind::CallerData
        })
    );
    assert_eq!(p.client.session.state(), State::Idle);
    assert_eq!(p.client.session.send_queue(), 0);
}

#[test]
fn callee_refuses_caller_data_over_its_limit_with_data_too_large() {
    let mut server = Config::default();
    server.options.max_connect_data = 16;
    // Under the frame limit (which has 1 KiB of options slack) and over the data limit.
    for size in [100, 5000] {
        let mut p = Pair::new(Config::default(), server.clone());
        let t = p.time;
        p.client
            .session
            .connect(t, Some(&vec![7u8; size]), Options::DEFAULT)
            .unwrap();
        p.finish(Duration::from_secs(5));
        let reason = Reason::DATA_TOO_LARGE;
        assert_eq!(
            p.client.events[0],
            Event::Refused { reason, data: None },
            "size {size}"
        );
        assert_eq!(p.server.closed(), Some(&CloseReason::Rejected { reason }));
        assert!(
            !p.server
                .events
                .iter()
                .any(|e| matches!(e, Event::ConnectRequest(_))),
            "the app never saw it"
        );
    }
}

#[test]
fn closing_an_undecided_request_rejects_it() {
    let mut p = Pair::default_pair();
    request(&mut p, b"x");
    let t = p.time;
    p.server.session.close(t);
    p.finish(Duration::from_secs(5));
    assert_eq!(
        p.client.closed(),
        Some(&CloseReason::Refused {
            reason: Reason::REJECTED
        })
    );
}
