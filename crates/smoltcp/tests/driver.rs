//! The driver's scenarios: conditional accept at both levels, overflow of the
//! listener pool, slowloris, a vanishing peer, and the lost-SYN-ACK duplicate.

mod world;

use std::cell::RefCell;
use std::rc::Rc;

use bookend_session::{CloseReason, Event, Options, Reason, Timer};
use bookend_smoltcp::{Config, Decision, EndpointEvent, Handle, ListenConfig, TcpDecision};
use bytes::Bytes;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;
use world::{World as Net, ip as host_ip};

const PORT: u16 = 7050;

/// Host `n` of the old numbering (1 is the server): host `n - 1` of the world.
fn ip(n: u8) -> smoltcp::wire::IpAddress {
    host_ip(n as usize - 1)
}

fn server() -> IpEndpoint {
    IpEndpoint::new(ip(1), PORT)
}

/// Two hosts: 10.0.0.1 serves, 10.0.0.2 connects.
fn pair(listen: ListenConfig) -> (Net, bookend_smoltcp::ListenerId) {
    world(2, listen)
}

/// `n` hosts with endpoints on bookend-sim; host 0 listens. The tests take
/// the endpoints' events themselves.
fn world(n: usize, listen: ListenConfig) -> (Net, bookend_smoltcp::ListenerId) {
    let mut net = Net::new(n, |i| {
        let mut c = Config::new(7 + i as u64);
        // Shorter than the default (360 s), to keep the runs short.
        c.session.handshake_timeout = std::time::Duration::from_secs(5);
        Some(c)
    });
    net.apps.collect = false;
    let (ep, sockets) = net.split(0);
    let l = ep.listen(sockets, PORT, listen).unwrap();
    (net, l)
}

/// [`pair`] whose listener accepts every request with the default grant.
fn accepting_pair() -> Net {
    let (mut net, l) = pair(ListenConfig::default());
    net.ep(0).accept_with(l, |req| Decision::Accept {
        callee_data: None,
        granted: req.grant,
    });
    net
}

fn connect(net: &mut Net, host: usize, data: &[u8]) -> Handle {
    let now = net.now();
    let (ep, iface, sockets) = net.parts(host);
    ep.connect(iface, sockets, now, server(), Some(data), Options::DEFAULT)
        .unwrap()
}

/// Every event of `host` so far.
fn events(net: &mut Net, host: usize) -> Vec<(Handle, EndpointEvent)> {
    std::iter::from_fn(|| net.ep(host).poll_event()).collect()
}

fn closed_of(evs: &[(Handle, EndpointEvent)]) -> Option<CloseReason> {
    evs.iter().find_map(|(_, e)| match e {
        EndpointEvent::Session(Event::Closed(r)) => Some(r.clone()),
        _ => None,
    })
}

/// The application lets go of connections that ended (closesocket).
fn close_ended(net: &mut Net, host: usize, evs: &[(Handle, EndpointEvent)]) {
    let now = net.now();
    for (h, e) in evs {
        if matches!(e, EndpointEvent::Session(Event::Closed(_))) {
            {
                let (ep, so) = net.split(host);
                ep.close(so, *h, now)
            }
            .unwrap();
        }
    }
}

fn listeners_only(net: &mut Net) -> bool {
    net.listeners_only()
}

#[test]
fn reject_with_reason_and_data_reaches_the_caller() {
    let (mut net, l) = pair(ListenConfig::default());
    net.ep(0).accept_with(l, |req| {
        assert_eq!(req.caller_data.as_deref(), Some(&b"let me in"[..]));
        assert_eq!(
            req.caller,
            IpEndpoint::new(ip(2), req.caller.port),
            "caller id"
        );
        assert_eq!(req.callee, server(), "callee id");
        Decision::Reject {
            reason: Reason::application(9),
            data: Some(Bytes::from_static(b"members only")),
        }
    });
    connect(&mut net, 1, b"let me in");
    let mut seen = Vec::new();
    net.run_until(Duration::from_secs(20), |net| {
        let new = events(net, 1);
        close_ended(net, 1, &new);
        seen.extend(new);
        closed_of(&seen).is_some() && listeners_only(net)
    });
    let refused = seen.iter().find_map(|(_, e)| match e {
        EndpointEvent::Session(Event::Refused { reason, data }) => Some((*reason, data.clone())),
        _ => None,
    });
    assert_eq!(
        refused,
        Some((
            Reason::application(9),
            Some(Bytes::from_static(b"members only"))
        ))
    );
    assert_eq!(
        closed_of(&seen),
        Some(CloseReason::Refused {
            reason: Reason::application(9)
        })
    );
    assert_eq!(net.ep(0).stats().refused, 1);
}

#[test]
fn defer_then_accept_later_and_the_event_form() {
    for with_condition in [true, false] {
        let (mut net, l) = pair(ListenConfig::default());
        if with_condition {
            net.ep(0).accept_with(l, |_| Decision::Defer);
        }
        let c = connect(&mut net, 1, b"maybe");
        let mut pending = None;
        net.run_until(Duration::from_secs(5), |net| {
            for (h, e) in events(net, 0) {
                if let EndpointEvent::Incoming(req) = e {
                    assert_eq!(req.caller_data.as_deref(), Some(&b"maybe"[..]));
                    pending = Some((h, req));
                }
            }
            pending.is_some()
        });
        let (h, req) = pending.unwrap();
        assert_eq!(net.ep(0).request(h), Some(&req));
        // Two seconds later (within the decision timeout) the application accepts.
        let later = net.now() + Duration::from_secs(2);
        net.run_until(Duration::from_secs(3), |net| net.now() >= later);
        let now = net.now();
        let (ep, so) = net.split(0);
        ep.accept(so, h, now, Some(b"ok then"), req.grant).unwrap();
        let mut connected = None;
        net.run_until(Duration::from_secs(5), |net| {
            for (hc, e) in events(net, 1) {
                if let EndpointEvent::Session(Event::Connected { callee_data, .. }) = e {
                    assert_eq!(hc, c);
                    connected = callee_data;
                }
            }
            connected.is_some()
        });
        assert_eq!(connected.as_deref(), Some(&b"ok then"[..]));
    }
}

#[test]
fn defer_then_decision_timeout_refuses_with_the_reason() {
    let (mut net, l) = pair(ListenConfig::default());
    net.ep(0).accept_with(l, |_| Decision::Defer);
    connect(&mut net, 1, b"maybe");
    let mut seen = Vec::new();
    net.run_until(Duration::from_secs(30), |net| {
        let new = events(net, 1);
        close_ended(net, 1, &new);
        seen.extend(new);
        events(net, 0);
        closed_of(&seen).is_some() && listeners_only(net)
    });
    assert_eq!(
        closed_of(&seen),
        Some(CloseReason::Refused {
            reason: Reason::DECISION_TIMEOUT
        })
    );
    assert!(
        net.now() >= Instant::from_secs(10),
        "not before the 10 s decision timeout"
    );
}

#[test]
fn tcp_level_conditional_accept_refuses_before_the_syn_ack() {
    let mut net = Net::new(3, |i| Some(Config::new(i as u64 + 1)));
    net.apps.collect = false;
    let (h_ep, h_sockets) = net.split(0);
    let l = h_ep
        .listen(h_sockets, PORT, ListenConfig::default())
        .unwrap();
    let asked = Rc::new(RefCell::new(Vec::new()));
    let log = asked.clone();
    h_ep.tcp_accept_with(h_sockets, l, move |caller, callee| {
        log.borrow_mut().push((caller, callee));
        if caller.addr == ip(3) {
            TcpDecision::Refuse
        } else {
            TcpDecision::Accept
        }
    });
    h_ep.accept_with(l, |req| Decision::Accept {
        callee_data: None,
        granted: req.grant,
    });
    // No SYN-ACK may reach the refused caller.
    net.set_drop(|p| {
        assert!(
            !(p.syn && p.ack && p.dst == ip(3)),
            "SYN-ACK sent to a refused caller"
        );
        false
    });
    connect(&mut net, 1, b"friend");
    connect(&mut net, 2, b"stranger");
    let (mut friend, mut stranger) = (Vec::new(), Vec::new());
    net.run_until(Duration::from_secs(10), |net| {
        friend.extend(events(net, 1));
        stranger.extend(events(net, 2));
        friend
            .iter()
            .any(|(_, e)| matches!(e, EndpointEvent::Session(Event::Connected { .. })))
            && closed_of(&stranger).is_some()
    });
    // Refusal is a RST to the SYN: the caller's connect is reset (WSAECONNREFUSED),
    // and it never saw a session frame.
    assert_eq!(closed_of(&stranger), Some(CloseReason::Reset));
    assert!(
        !stranger
            .iter()
            .any(|(_, e)| matches!(e, EndpointEvent::Session(Event::Refused { .. })))
    );
    assert_eq!(asked.borrow().len(), 2);
}

#[test]
fn more_clients_than_pending_are_answered_busy() {
    // Backlog 2, at most 4 undecided; the application defers every request and
    // accepts them only after a second, so the pending queue fills.
    let (mut net, l) = pair(ListenConfig::new(2, 4));
    net.ep(0).accept_with(l, |_| Decision::Defer);
    // Twenty callers, one every 10 ms.
    let mut clients: Vec<Handle> = Vec::new();
    let mut deferred: Vec<(Handle, Options)> = Vec::new();
    let mut outcome: std::collections::HashMap<Handle, CloseReason> = Default::default();
    let mut connected = 0;
    type Outcomes = std::collections::HashMap<Handle, CloseReason>;
    let step = |net: &mut Net,
                deferred: &mut Vec<(Handle, Options)>,
                accept_now: bool,
                outcome: &mut Outcomes,
                connected: &mut usize| {
        let now = net.now();
        for (h, e) in events(net, 0) {
            match e {
                EndpointEvent::Incoming(req) => deferred.push((h, req.grant)),
                EndpointEvent::Session(Event::PeerDisconnected) => {
                    let (ep, so) = net.split(0);
                    let _ = ep.send_disconnect(so, h, now, Some(b"bye"));
                    {
                        let (ep, so) = net.split(0);
                        ep.close(so, h, now)
                    }
                    .unwrap();
                }
                _ => {}
            }
        }
        if accept_now {
            for (h, grant) in deferred.drain(..) {
                let (ep, so) = net.split(0);
                ep.accept(so, h, now, None, grant).unwrap();
            }
        }
        for (h, e) in events(net, 1) {
            match e {
                EndpointEvent::Session(Event::Connected { .. }) => {
                    *connected += 1;
                    let (ep, so) = net.split(1);
                    ep.send_disconnect(so, h, now, Some(b"done")).unwrap();
                }
                EndpointEvent::Session(Event::Closed(r)) => {
                    outcome.insert(h, r);
                    {
                        let (ep, so) = net.split(1);
                        ep.close(so, h, now)
                    }
                    .unwrap();
                }
                _ => {}
            }
        }
    };
    // For one second nobody is accepted: the pending queue fills, the rest
    // are answered REJECT(BUSY). One caller every 10 ms.
    for i in 0..20 {
        clients.push(connect(&mut net, 1, format!("c{i}").as_bytes()));
        let until = net.now() + Duration::from_millis(10);
        net.run_until(Duration::from_millis(20), |net| {
            step(net, &mut deferred, false, &mut outcome, &mut connected);
            net.now() >= until
        });
    }
    let one_second = Instant::from_secs(1);
    net.run_until(Duration::from_secs(2), |net| {
        step(net, &mut deferred, false, &mut outcome, &mut connected);
        net.now() >= one_second
    });
    assert_eq!(deferred.len(), 4, "max_pending requests held");
    net.run_until(Duration::from_secs(30), |net| {
        step(net, &mut deferred, true, &mut outcome, &mut connected);
        outcome.len() == clients.len() && listeners_only(net)
    });
    let graceful = outcome
        .values()
        .filter(|r| **r == CloseReason::Graceful)
        .count();
    let busy = outcome
        .values()
        .filter(|r| {
            **r == CloseReason::Refused {
                reason: Reason::BUSY,
            }
        })
        .count();
    assert_eq!(
        graceful + busy,
        clients.len(),
        "every client ends cleanly and learns why: {outcome:?}"
    );
    // The 4 held requests completed; every other caller was answered
    // REJECT(BUSY) (docs/protocol.md §6.4), none reset.
    assert_eq!(graceful, 4, "the pending queue held 4; they completed");
    assert_eq!(connected, graceful);
    assert_eq!(busy, 16);
}

#[test]
fn a_raw_tcp_client_that_never_sends_connect_is_dropped_after_the_handshake_timeout() {
    let (mut net, l) = pair(ListenConfig::new(2, 8));
    net.ep(0).accept_with(l, |req| Decision::Accept {
        callee_data: None,
        granted: req.grant,
    });
    // Host 2 is a plain smoltcp client: TCP only, no bookend.
    let raw = {
        let h_ = net.sim.host(1);
        let (h_iface, h_sockets) = (&mut h_.iface, &mut h_.sockets);
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        s.connect(h_iface.context(), server(), 40000).unwrap();
        h_sockets.add(s)
    };
    // Meanwhile a real client is served.
    let mut net3 = net;
    let ok = {
        let now = net3.now();
        let (h_ep, h_iface, h_sockets) = net3.parts(1);
        h_ep.connect(
            h_iface,
            h_sockets,
            now,
            server(),
            Some(b"real"),
            Options::DEFAULT,
        )
        .unwrap()
    };
    let mut served = false;
    net3.run_until(Duration::from_secs(20), |net| {
        for (h, e) in events(net, 1) {
            if h == ok && matches!(e, EndpointEvent::Session(Event::Connected { .. })) {
                served = true;
            }
        }
        events(net, 0);
        let s = net.sim.host(1).sockets.get::<tcp::Socket>(raw);
        served && s.state() == tcp::State::Closed
    });
    assert!(served);
    let t = net3.now();
    assert!(
        t >= Instant::from_secs(5) && t <= Instant::from_secs(6),
        "dropped at the 5 s handshake timeout, not {t}"
    );
    // Its slot is freed once the RST has left (within the abort flush time).
    net3.run_until(Duration::from_secs(2), |net| {
        events(net, 0);
        events(net, 1);
        net.ep(0).connection_count() == 1
    });
    // It was told why: the ABORT frame (HANDSHAKE_TIMEOUT) arrived before the RST.
    let s = net3.sim.host(1).sockets.get_mut::<tcp::Socket>(raw);
    let mut buf = [0u8; 64];
    let n = s.recv_slice(&mut buf).unwrap_or(0);
    assert_eq!(
        &buf[..8],
        &[0x06, 0x00, 0, 0, 0, 2, 0x01, 0x06],
        "ABORT(HANDSHAKE_TIMEOUT), got {:02x?}",
        &buf[..n]
    );
}

#[test]
fn a_peer_that_vanishes_times_out_on_both_sides_within_bounds() {
    let cfg = |i: usize| {
        let mut c = Config::new(i as u64 + 3);
        c.session.options.keepalive_ms = 1_000;
        c.tcp_timeout = std::time::Duration::from_secs(8);
        c.tcp_keep_alive = std::time::Duration::from_secs(2);
        c
    };
    let mut net = Net::new(2, |i| Some(cfg(i)));
    net.apps.collect = false;
    let (h_ep, h_sockets) = net.split(0);
    let l = h_ep
        .listen(h_sockets, PORT, ListenConfig::default())
        .unwrap();
    h_ep.accept_with(l, |req| Decision::Accept {
        callee_data: None,
        granted: req.grant,
    });
    let now = net.now();
    let (h_ep, h_iface, h_sockets) = net.parts(1);
    let c = h_ep
        .connect(
            h_iface,
            h_sockets,
            now,
            server(),
            None,
            Options {
                keepalive_ms: 1_000,
                ..Options::DEFAULT
            },
        )
        .unwrap();
    let (mut client, mut srv) = (Vec::new(), Vec::new());
    net.run_until(Duration::from_secs(5), |net| {
        client.extend(events(net, 1));
        srv.extend(events(net, 0));
        client
            .iter()
            .any(|(_, e)| matches!(e, EndpointEvent::Session(Event::Connected { .. })))
    });
    // Healthy and idle for 20 s: keepalives keep it up.
    let quiet_until = net.now() + Duration::from_secs(20);
    net.run_until(Duration::from_secs(25), |net| {
        client.extend(events(net, 1));
        srv.extend(events(net, 0));
        net.now() >= quiet_until
    });
    assert!(
        closed_of(&client).is_none() && closed_of(&srv).is_none(),
        "idle but healthy sessions stay up"
    );
    // Now the server's cable is pulled: no FIN, no RST, nothing.
    net.vanish(0);
    let gone_at = net.now();
    net.run_until(Duration::from_secs(30), |net| {
        client.extend(events(net, 1));
        srv.extend(events(net, 0));
        closed_of(&client).is_some() && closed_of(&srv).is_some()
    });
    let took = net.now() - gone_at;
    // Our PINGs go unacknowledged: the session's idle timer is held and
    // TCP is the judge: it gives up one retransmission interval after its
    // user timeout, 8 + 8 s from the last acknowledgement (issue 11, item 1:
    // a session timer never kills a transport still inside its user
    // timeout).
    assert_eq!(
        closed_of(&client),
        Some(CloseReason::TimedOut(Timer::Transport)),
        "client"
    );
    assert_eq!(
        closed_of(&srv),
        Some(CloseReason::TimedOut(Timer::Transport)),
        "server"
    );
    assert!(
        took <= Duration::from_secs(8 + 8 + 1 + 1),
        "the give-up time after the last acknowledged PING, not {took}"
    );
    let _ = c;
}

#[test]
fn lost_syn_ack_duplicate_half_open_socket_is_cleaned_up() {
    // Backlog 1. A occupies slot 0; C's SYN lands in slot 1 and its SYN-ACK is
    // lost; A finishes (slot 0 free); D's SYN takes the armed listener and the
    // pool re-arms into slot 0; C's retransmitted SYN then lands in slot 0:
    // two sockets for C's 4-tuple. The stale one must go, without a RST.
    let mut net = Net::new(4, |i| Some(Config::new(i as u64 + 11)));
    net.apps.collect = false;
    let (h_ep, h_sockets) = net.split(0);
    let l = h_ep
        .listen(h_sockets, PORT, ListenConfig::new(1, 8))
        .unwrap();
    h_ep.accept_with(l, |req| Decision::Accept {
        callee_data: None,
        granted: req.grant,
    });
    let dropped_one = Rc::new(RefCell::new(false));
    let flag = dropped_one.clone();
    net.set_drop(move |p| {
        let first_syn_ack_to_c = p.syn && p.ack && p.dst == ip(3) && !*flag.borrow();
        if first_syn_ack_to_c {
            *flag.borrow_mut() = true;
        }
        // The stale socket's SYN-ACK retransmissions would make C answer with an
        // ACK on the right tuple; drop any RST to C so nothing kills it.
        first_syn_ack_to_c
    });
    let a = connect(&mut net, 1, b"A");
    let mut done_a = false;
    net.run_until(Duration::from_secs(2), |net| {
        let now = net.now();
        for (h, e) in events(net, 1) {
            if h == a && matches!(e, EndpointEvent::Session(Event::Connected { .. })) {
                done_a = true;
            }
            let _ = now;
        }
        events(net, 0);
        done_a
    });
    let c = connect(&mut net, 2, b"C");
    net.run_until(Duration::from_millis(50), |net| {
        *dropped_one.borrow() && net.now() >= Instant::from_millis(20)
    });
    // A ends abortively: slot 0 is released at once.
    let now = net.now();
    let (ep, so) = net.split(1);
    ep.abort(so, a, now, Reason::UNSPECIFIED, None).unwrap();
    net.run_until(Duration::from_millis(100), |net| {
        let ended = events(net, 0);
        close_ended(net, 0, &ended);
        events(net, 1);
        net.ep(0).connection_count() == 1
    });
    connect(&mut net, 3, b"D");
    let mut c = c;
    let mut c_connected = false;
    let mut c_attempts = 1;
    net.run_until(Duration::from_secs(10), |net| {
        let now = net.now();
        for (h, e) in events(net, 2) {
            match e {
                EndpointEvent::Session(Event::Connected { .. }) if h == c => c_connected = true,
                // The two SYN-ACKs raced and C acknowledged the removed socket's
                // ISN: the survivor resets it, and C retries, as any client would.
                EndpointEvent::Session(Event::Closed(CloseReason::Reset))
                    if h == c && !c_connected =>
                {
                    {
                        let (ep, so) = net.split(2);
                        ep.close(so, h, now)
                    }
                    .unwrap();
                    c = connect(net, 2, b"C again");
                    c_attempts += 1;
                }
                _ => {}
            }
        }
        let ended = events(net, 0);
        close_ended(net, 0, &ended);
        events(net, 3);
        c_connected
    });
    assert!(c_attempts <= 2, "at most one retry");
    assert_eq!(
        net.ep(0).stats().duplicates_dropped,
        1,
        "{:?}",
        net.ep(0).stats()
    );
    // Nothing is left half-open for long: a socket orphaned by the race is
    // bounded by the handshake timeout (5 s), not retransmitting forever.
    let half_open = |net: &mut Net| {
        net.sim
            .host(0)
            .sockets
            .iter()
            .filter(|(_, s)| matches!(s, smoltcp::socket::Socket::Tcp(t) if t.state() == tcp::State::SynReceived))
            .count()
    };
    let connected_at = net.now();
    net.run_until(Duration::from_secs(7), |net| {
        let ended = events(net, 0);
        close_ended(net, 0, &ended);
        half_open(net) == 0
    });
    assert!(net.now() - connected_at <= Duration::from_secs(6));
}

#[test]
fn tcp_level_defer_holds_the_syn_ack_for_a_bounded_time() {
    let mut net = Net::new(2, |i| Some(Config::new(i as u64 + 21)));
    net.apps.collect = false;
    let (h_ep, h_sockets) = net.split(0);
    let l = h_ep
        .listen(h_sockets, PORT, ListenConfig::default())
        .unwrap();
    h_ep.set_syn_defer_timeout(std::time::Duration::from_millis(1500));
    h_ep.tcp_accept_with(h_sockets, l, |_, _| TcpDecision::Defer);
    net.set_drop(|p| {
        assert!(!(p.syn && p.ack), "no SYN-ACK while deferred");
        false
    });
    connect(&mut net, 1, b"waiting");
    let mut seen = Vec::new();
    net.run_until(Duration::from_secs(10), |net| {
        let new = events(net, 1);
        close_ended(net, 1, &new);
        seen.extend(new);
        closed_of(&seen).is_some() && listeners_only(net)
    });
    assert_eq!(
        closed_of(&seen),
        Some(CloseReason::Reset),
        "refused once the deferral ran out"
    );
    assert!(
        net.now() >= Instant::from_millis(1500) && net.now() < Instant::from_millis(2600),
        "at {}",
        net.now()
    );
}

#[test]
fn zero_copy_send_delivers_a_megabyte_in_order_with_writable_events() {
    let mut net = accepting_pair();
    let c = connect(&mut net, 1, b"bulk");
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (mut sent, mut writable, mut connected) = (0usize, 0, false);
    let mut got: Vec<u8> = Vec::new();
    net.run_until(Duration::from_secs(60), |net| {
        let now = net.now();
        for (h, e) in events(net, 1) {
            match e {
                EndpointEvent::Session(Event::Connected { .. }) if h == c => connected = true,
                EndpointEvent::Session(Event::Writable) => writable += 1,
                _ => {}
            }
        }
        if connected {
            let (host_ep, host_sockets) = net.split(1);
            while sent < data.len() {
                match host_ep.send(host_sockets, c, now, &data[sent..]) {
                    Ok(k) => sent += k,
                    Err(_) => break,
                }
            }
        }
        let (srv_ep, srv_sockets) = net.split(0);
        while let Some((h, e)) = srv_ep.poll_event() {
            if matches!(
                e,
                EndpointEvent::Session(Event::Readable) | EndpointEvent::Accepted(_)
            ) {
                let mut buf = [0u8; 8192];
                while let Ok(k) = srv_ep.recv(srv_sockets, h, now, &mut buf) {
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                }
            }
        }
        got.len() == data.len()
    });
    assert!(got == data, "every byte, in order");
    assert!(
        writable > 1,
        "Writable reported when TCP had room again ({writable})"
    );
}

#[test]
fn zero_copy_receive_with_a_small_buffer_then_the_seed_teardown() {
    let mut net = accepting_pair();
    let c = connect(&mut net, 1, b"bulk");
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (mut sent, mut connected, mut disconnected) = (0usize, false, false);
    let mut server_handle = None;
    let mut got: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut server_total = None;
    let mut client_total = None;
    net.run_until(Duration::from_secs(60), |net| {
        let now = net.now();
        for (h, e) in events(net, 1) {
            match e {
                EndpointEvent::Session(Event::Connected { .. }) if h == c => connected = true,
                EndpointEvent::Session(Event::PeerDisconnected) => {
                    let mut b = [0u8; 8];
                    if let Ok(Some(8)) = net.ep(1).recv_disconnect(h, &mut b) {
                        client_total = Some(u64::from_be_bytes(b));
                    }
                    {
                        let (ep, so) = net.split(1);
                        ep.close(so, h, now)
                    }
                    .unwrap();
                }
                _ => {}
            }
        }
        if connected && !disconnected {
            let (host_ep, host_sockets) = net.split(1);
            while sent < data.len() {
                match host_ep.send(host_sockets, c, now, &data[sent..]) {
                    Ok(k) => sent += k,
                    Err(_) => break,
                }
            }
            if sent == data.len() {
                host_ep
                    .send_disconnect(host_sockets, c, now, Some(&(sent as u64).to_be_bytes()))
                    .unwrap();
                disconnected = true;
            }
        }
        let (srv_ep, srv_sockets) = net.split(0);
        while let Some((h, e)) = srv_ep.poll_event() {
            if matches!(e, EndpointEvent::Accepted(_)) {
                server_handle = Some(h);
            }
        }
        if let Some(h) = server_handle.filter(|_| !eof) {
            // A small, odd buffer: DATA frames straddle reads.
            let mut buf = [0u8; 3000];
            loop {
                match srv_ep.recv(srv_sockets, h, now, &mut buf) {
                    Ok(0) => {
                        eof = true;
                        let mut b = [0u8; 8];
                        if let Ok(Some(8)) = srv_ep.recv_disconnect(h, &mut b) {
                            server_total = Some(u64::from_be_bytes(b));
                        }
                        srv_ep
                            .send_disconnect(
                                srv_sockets,
                                h,
                                now,
                                Some(&(got.len() as u64).to_be_bytes()),
                            )
                            .unwrap();
                        srv_ep.close(srv_sockets, h, now).unwrap();
                        break;
                    }
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                    Err(_) => break,
                }
            }
        }
        eof && client_total.is_some() && listeners_only(net)
    });
    assert!(
        got == data,
        "every byte, in order ({} of {})",
        got.len(),
        data.len()
    );
    assert_eq!(
        server_total,
        Some(data.len() as u64),
        "the client's disconnect data"
    );
    assert_eq!(
        client_total,
        Some(data.len() as u64),
        "the server's disconnect data"
    );
}

/// Review of issue 10: reads took spare session parts from the endpoint's
/// pool (on 0be133b the command lookup, `owned`, supplied every session) and
/// only a later visit gave them back, so an application trying `recv` on
/// every idle handle scattered the pool over idle sessions. Fails with the
/// supply put back into `owned` (`spare_parts`, which it reads, came with
/// the fix).
#[test]
fn reads_on_idle_sessions_leave_the_spare_pool_alone() {
    let mut net = accepting_pair();
    let clients: Vec<Handle> = (0..6).map(|_| connect(&mut net, 1, b"hi")).collect();
    net.run_for(std::time::Duration::from_millis(300));
    let evs = events(&mut net, 1);
    let connected = evs
        .iter()
        .filter(|(_, e)| matches!(e, EndpointEvent::Session(Event::Connected { .. })))
        .count();
    assert_eq!(connected, clients.len());
    let _ = events(&mut net, 0);
    net.run_for(std::time::Duration::from_millis(100));
    let before = net.ep(1).spare_parts();
    let now = net.now();
    let mut buf = [0u8; 64];
    for &h in &clients {
        let (ep, _, sockets) = net.parts(1);
        assert!(ep.recv(sockets, h, now, &mut buf).is_err());
        let ep = net.ep(1);
        assert!(ep.recv_message(h, &mut buf).is_err());
        assert!(ep.recv_disconnect(h, &mut buf).is_err());
    }
    assert_eq!(net.ep(1).spare_parts(), before);
}

/// A connect that fails once its session took spare parts from the pool
/// (no ephemeral port left) gives them back: failures do not drain the
/// pool that keeps lifecycles free of allocations.
#[test]
fn a_failed_connect_gives_its_spare_parts_back() {
    let mut net = Net::new(2, |i| {
        let mut c = Config::new(41 + i as u64);
        c.ephemeral_ports = 50_000..=50_000;
        Some(c)
    });
    net.apps.collect = false;
    {
        let (ep, sockets) = net.split(0);
        let l = ep.listen(sockets, PORT, ListenConfig::default()).unwrap();
        ep.accept_with(l, |req| Decision::Accept {
            callee_data: None,
            granted: req.grant,
        });
    }
    let _first = connect(&mut net, 1, b"hi");
    net.run_for(std::time::Duration::from_millis(300));
    let _ = events(&mut net, 1);
    let before = net.ep(1).spare_parts();
    assert!(before > 0, "the idle connection gave its parts to the pool");
    let now = net.now();
    let (ep, iface, sockets) = net.parts(1);
    let r = ep.connect(iface, sockets, now, server(), Some(b"hi"), Options::DEFAULT);
    assert!(
        matches!(r, Err(bookend_smoltcp::Error::PortsExhausted)),
        "{r:?}"
    );
    assert_eq!(net.ep(1).spare_parts(), before);
}

/// Connections whose slots share a waker (one per group of 32 slots, issue
/// 10: idle memory) each hear their own news and only theirs, in either
/// order, and the endpoints go quiet after each wake-up (the world panics
/// on a `poll_at` stuck in the past: a visit of the group that left work
/// for the next poll at every poll would be one).
#[test]
fn connections_sharing_a_waker_each_hear_their_own_news() {
    let mut net = accepting_pair();
    let callers: Vec<Handle> = (0..3u8).map(|i| connect(&mut net, 1, &[i])).collect();
    let mut up = 0;
    net.run_until(Duration::from_secs(5), |net| {
        up += events(net, 1)
            .iter()
            .filter(|(_, e)| matches!(e, EndpointEvent::Session(Event::Connected { .. })))
            .count();
        events(net, 0);
        up == 3
    });
    net.run_for(std::time::Duration::from_secs(1));
    assert!(events(&mut net, 0).is_empty() && events(&mut net, 1).is_empty());
    let mut heard = Vec::new();
    for (i, msg) in [(1, &b"middle"[..]), (0, b"first"), (2, b"last")] {
        let now = net.now();
        {
            let (ep, sockets) = net.split(1);
            assert_eq!(ep.send(sockets, callers[i], now, msg).unwrap(), msg.len());
        }
        let mut readable = Vec::new();
        net.run_until(Duration::from_secs(2), |net| {
            readable.extend(events(net, 0).into_iter().filter_map(|(h, e)| {
                matches!(e, EndpointEvent::Session(Event::Readable)).then_some(h)
            }));
            !readable.is_empty()
        });
        net.run_for(std::time::Duration::from_millis(500));
        readable.extend(events(&mut net, 0).into_iter().filter_map(|(h, e)| {
            matches!(e, EndpointEvent::Session(Event::Readable)).then_some(h)
        }));
        assert_eq!(readable.len(), 1, "{readable:?} readable after one send");
        let now = net.now();
        let mut buf = [0u8; 16];
        let n = {
            let (ep, sockets) = net.split(0);
            ep.recv(sockets, readable[0], now, &mut buf).unwrap()
        };
        assert_eq!(&buf[..n], msg);
        assert!(
            !heard.contains(&readable[0]),
            "one server handle for two callers"
        );
        heard.push(readable[0]);
    }
    // They did share one: slots are numbered `#index.generation`, 32 a group.
    let group = |h: &Handle| {
        let index: usize = h.to_string()[1..]
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        index / 32
    };
    assert!(
        heard.iter().all(|h| group(h) == group(&heard[0])),
        "{heard:?}"
    );
}

/// `Endpoint::connect` refuses at once what the session would refuse:
/// options that need more than the receive buffer (a `max_message_size`
/// above `recv_buffer`) are an error from the call, not a connection that
/// hangs until the callee's handshake timer.
#[test]
fn connect_refuses_options_the_session_refuses_at_once() {
    let mut net = accepting_pair();
    let now = net.now();
    let (ep, iface, sockets) = net.parts(1);
    let options = Options {
        mode: bookend_session::Mode::Message,
        max_message_size: 16 * 1024 * 1024,
        ..Options::DEFAULT
    };
    let r = ep.connect(iface, sockets, now, server(), Some(b"c"), options);
    assert!(
        matches!(
            r,
            Err(bookend_smoltcp::Error::Session(
                bookend_session::Error::InvalidGrant
            ))
        ),
        "{r:?}"
    );
    assert_eq!(ep.connection_count(), 0, "nothing left behind");
}

/// §7, RFC 9293 §3.8.3: a server that goes silent once TCP is up, before it
/// answers CONNECT (crashed, or its cable pulled), ends the caller's session
/// as TCP's give-up (`TimedOut(Transport)`) after the user timeout, not as
/// a reset: nothing reset it (issue 20, defect 6).
#[test]
fn tcps_give_up_before_the_answer_is_a_transport_time_out() {
    let cfg = |i: usize| {
        let mut c = Config::new(i as u64 + 11);
        c.tcp_timeout = std::time::Duration::from_secs(8);
        c.tcp_keep_alive = std::time::Duration::from_secs(2);
        c
    };
    let mut net = Net::new(2, |i| Some(cfg(i)));
    net.apps.collect = false;
    let (h_ep, h_sockets) = net.split(0);
    let l = h_ep
        .listen(h_sockets, PORT, ListenConfig::default())
        .unwrap();
    h_ep.accept_with(l, |req| Decision::Accept {
        callee_data: None,
        granted: req.grant,
    });
    // The server's SYN-ACK gets through; nothing of it after that does.
    let server_ip = ip(1);
    net.set_drop(move |p| p.src == server_ip && !p.syn);
    let _c = connect(&mut net, 1, b"caller");
    let mut client = Vec::new();
    net.run_until(Duration::from_secs(60), |net| {
        client.extend(events(net, 1));
        closed_of(&client).is_some()
    });
    assert_eq!(
        closed_of(&client),
        Some(CloseReason::TimedOut(Timer::Transport))
    );
}

/// §6.4, §7: a caller whose SYN-ACK SO_CONDITIONAL_ACCEPT held (`Defer`)
/// for longer than the loaded handshake time is not evicted the moment it
/// is released: its handshake starts at the release, for the listener's
/// admission control as for the session's handshake timer (issue 20,
/// defect 2).
#[test]
fn a_released_syn_ack_starts_the_handshake_for_admission_too() {
    let mut net = Net::new(2, |i| Some(Config::new(i as u64 + 31)));
    net.apps.collect = false;
    let (h_ep, h_sockets) = net.split(0);
    let mut lc = ListenConfig::default();
    // One handshaking connection is half the bound: the listener is loaded.
    lc.max_handshaking = 2;
    let l = h_ep.listen(h_sockets, PORT, lc).unwrap();
    h_ep.set_syn_defer_timeout(std::time::Duration::from_secs(10));
    let release = Rc::new(RefCell::new(false));
    let r = release.clone();
    h_ep.tcp_accept_with(h_sockets, l, move |_, _| {
        if *r.borrow() {
            TcpDecision::Accept
        } else {
            TcpDecision::Defer
        }
    });
    h_ep.accept_with(l, |req| Decision::Accept {
        callee_data: None,
        granted: req.grant,
    });
    connect(&mut net, 1, b"held");
    // Held for 3 s, more than the loaded handshake time (2 s).
    net.run_for(std::time::Duration::from_secs(3));
    *release.borrow_mut() = true;
    let mut seen = Vec::new();
    net.run_until(Duration::from_secs(10), |net| {
        seen.extend(events(net, 1));
        closed_of(&seen).is_some()
            || seen
                .iter()
                .any(|(_, e)| matches!(e, EndpointEvent::Session(Event::Connected { .. })))
    });
    assert!(
        seen.iter()
            .any(|(_, e)| matches!(e, EndpointEvent::Session(Event::Connected { .. }))),
        "the released caller is served: {:?}",
        closed_of(&seen)
    );
}

/// SYN-ACKs held by SO_CONDITIONAL_ACCEPT's `Defer` are handshaking
/// connections like any other for the listener's bounds (§6.4): a flood of
/// SYNs from one spoofed address, every one deferred and none ever
/// completing, holds at most `max_handshaking` of them, the listener stays
/// armed, and a good caller from another address is served at its first
/// attempt (issue 20, defect 1).
#[test]
fn deferred_syn_acks_count_against_the_listeners_bounds() {
    let flood = smoltcp::wire::IpAddress::v4(10, 9, 0, 1);
    let mut net = Net::new(3, |i| {
        (i < 2).then(|| {
            let mut c = Config::new(41 + i as u64);
            c.max_connections = 64;
            c
        })
    });
    net.apps.collect = false;
    let mut lc = ListenConfig::default();
    lc.max_per_source = 2;
    lc.max_pending = 4;
    lc.max_handshaking = 8;
    {
        let (ep, sockets) = net.split(0);
        let l = ep.listen(sockets, PORT, lc).unwrap();
        ep.tcp_accept_with(sockets, l, move |remote, _| {
            if remote.addr == flood {
                TcpDecision::Defer
            } else {
                TcpDecision::Accept
            }
        });
        ep.accept_with(l, |req| Decision::Accept {
            callee_data: None,
            granted: req.grant,
        });
    }
    let start = net.now();
    let mut seq = 1u32;
    let mut good: Option<Handle> = None;
    let mut seen = Vec::new();
    let mut most = 0;
    net.run_until(Duration::from_secs(10), |net| {
        let now = net.now();
        // Two SYNs per millisecond, each from a new port of one address
        // (within the backlog of 8 per interface poll: smoltcp has no SYN
        // queue, §6.4).
        for _ in 0..2 {
            seq += 1;
            let src = IpEndpoint::new(flood, 1024 + (seq % 60_000) as u16);
            net.sim
                .inject(2, world::syn_packet(src, server(), seq.wrapping_mul(7919)));
        }
        most = most.max(net.ep(0).connection_count());
        if good.is_none() && now >= start + Duration::from_secs(1) {
            good = Some(connect(net, 1, b"good"));
        }
        seen.extend(events(net, 1));
        net.sim.now += Duration::from_millis(1);
        seen.iter().any(|(h, e)| {
            Some(*h) == good
                && matches!(
                    e,
                    EndpointEvent::Session(Event::Connected { .. } | Event::Closed(_))
                )
        })
    });
    assert!(
        seen.iter()
            .any(|(_, e)| matches!(e, EndpointEvent::Session(Event::Connected { .. }))),
        "the good caller was not served: {:?}",
        closed_of(&seen)
    );
    // The held SYN-ACKs (at most `max_handshaking`) and the armed listeners.
    assert!(
        most <= lc.max_handshaking + lc.backlog + 1,
        "{most} connections held"
    );
}

/// The wake-up time the type docs of `Endpoint` prescribe for step 4.
fn documented_wakeup(net: &mut Net, host: usize, now: Instant) -> Option<Instant> {
    let (ep, iface, sockets) = net.parts(host);
    ep.next_poll(now, iface, sockets)
}

/// The documented loop sleeps while a SYN-ACK is held by `Defer` (issue 20,
/// defect 1): smoltcp reports a paused SYN-ACK as a segment due now (its
/// `poll_at` mirrors `dispatch`, which then sends nothing), so a loop that
/// slept until `iface.poll_at` spun for the whole deferral. A second of
/// deferral costs about one wake-up per `SYN_DEFER_RECHECK`.
#[test]
fn the_documented_loop_sleeps_while_a_syn_ack_is_held() {
    let mut net = Net::new(2, |i| Some(Config::new(i as u64 + 51)));
    net.apps.collect = false;
    {
        let (ep, sockets) = net.split(0);
        let l = ep.listen(sockets, PORT, ListenConfig::default()).unwrap();
        ep.set_syn_defer_timeout(std::time::Duration::from_secs(5));
        ep.tcp_accept_with(sockets, l, |_, _| TcpDecision::Defer);
    }
    connect(&mut net, 1, b"held");
    let held = |net: &mut Net| {
        net.sim.host(0).sockets.iter().any(|(_, s)| {
            matches!(s, smoltcp::socket::Socket::Tcp(t) if t.state() == tcp::State::SynReceived)
        })
    };
    net.run_until(Duration::from_secs(1), held);
    assert!(held(&mut net), "the SYN-ACK is held");
    // One second of the documented loop on the listening host alone (a
    // spinning loop moves 1 µs per turn: at most 10 000 turns are run).
    let mut now = net.now();
    let end = now + Duration::from_secs(1);
    let mut wakeups = 0;
    while now < end && wakeups < 10_000 {
        net.sim.now = now;
        net.sim.host(0).poll(now);
        let (ep, sockets) = net.split(0);
        ep.poll(now, sockets);
        net.sim.host(0).poll(now);
        let next = documented_wakeup(&mut net, 0, now).unwrap_or(end);
        now = next.max(now + Duration::from_micros(1));
        wakeups += 1;
    }
    assert!(held(&mut net), "still held: the decision is still Defer");
    assert!(
        wakeups <= 1_000 / bookend_smoltcp::SYN_DEFER_RECHECK.as_millis() as u32 + 10,
        "{wakeups} wake-ups in a second of deferral"
    );
}

/// One address at its `max_per_source` of silent connections (a host that
/// opened them and went quiet, or a NAT in front of an office) does not
/// keep its other callers out for the handshake time (§6.4): a good caller
/// from the same address is served within seconds, its silent neighbours
/// shortened or evicted, and a caller from another address at its first
/// try (issue 20, defect 3).
#[test]
fn silent_connections_at_the_source_bound_do_not_lock_their_address_out() {
    let mut net = Net::new(3, |i| {
        let mut c = Config::new(61 + i as u64);
        // The default handshake time: a lockout would last six minutes.
        c.session.handshake_timeout = std::time::Duration::from_secs(360);
        Some(c)
    });
    net.apps.collect = false;
    let lc = ListenConfig::default();
    {
        let (ep, sockets) = net.split(0);
        let l = ep.listen(sockets, PORT, lc).unwrap();
        ep.accept_with(l, |req| Decision::Accept {
            callee_data: None,
            granted: req.grant,
        });
    }
    // Host 1 opens `max_per_source` connections and never sends a byte.
    let silent: Vec<_> = (0..lc.max_per_source as u16)
        .map(|k| net.raw_connect(1, server(), 20_000 + k))
        .collect();
    net.run_for(std::time::Duration::from_secs(1));
    let established = silent
        .iter()
        .filter(|&&s| net.raw(1, s).state() == tcp::State::Established)
        .count();
    assert_eq!(established, lc.max_per_source, "the silent ones are in");
    // Then a good caller from the same address, whose CONNECT is lost twice
    // (TCP repairs it in about 3 s: longer than the loaded handshake time),
    // and one from another address.
    let mut lost = 0;
    let same_addr = host_ip(1);
    net.set_drop(move |p| {
        let drop = p.src == same_addr && p.len > 0 && lost < 2;
        lost += usize::from(drop);
        drop
    });
    let same = connect(&mut net, 1, b"same address");
    let other = connect(&mut net, 2, b"other address");
    let start = net.now();
    let (mut same_seen, mut other_seen) = (Vec::new(), Vec::new());
    let outcome = |seen: &[(Handle, EndpointEvent)], h: Handle| {
        seen.iter().find_map(|(k, e)| match e {
            EndpointEvent::Session(Event::Connected { .. }) if *k == h => Some(true),
            EndpointEvent::Session(Event::Closed(_)) if *k == h => Some(false),
            _ => None,
        })
    };
    net.run_until(Duration::from_secs(30), |net| {
        same_seen.extend(events(net, 1));
        other_seen.extend(events(net, 2));
        outcome(&same_seen, same).is_some() && outcome(&other_seen, other).is_some()
    });
    assert_eq!(
        outcome(&other_seen, other),
        Some(true),
        "another address at its first try: {:?}",
        closed_of(&other_seen)
    );
    assert_eq!(
        outcome(&same_seen, same),
        Some(true),
        "the same address: {:?}",
        closed_of(&same_seen)
    );
    assert!(
        net.now() - start < Duration::from_secs(8),
        "served after {}",
        net.now() - start
    );
}

/// SYNs spoofed from a caller's address (they never complete: the SYN-ACKs
/// go to a host that drops them) do not push the caller's real connection
/// out of its source's share while a lost segment holds up its CONNECT:
/// beyond the share, half-open connections go before established ones
/// (§6.4 rule 2).
#[test]
fn spoofed_syns_from_a_callers_address_do_not_evict_its_real_connection() {
    let mut net = Net::new(3, |i| {
        (i < 2).then(|| {
            let mut c = Config::new(81 + i as u64);
            c.session.handshake_timeout = std::time::Duration::from_secs(360);
            c
        })
    });
    net.apps.collect = false;
    let mut lc = ListenConfig::default();
    lc.max_per_source = 2;
    {
        let (ep, sockets) = net.split(0);
        let l = ep.listen(sockets, PORT, lc).unwrap();
        ep.accept_with(l, |req| Decision::Accept {
            callee_data: None,
            granted: req.grant,
        });
    }
    let victim = host_ip(1);
    // The caller's CONNECT is lost twice (TCP repairs it in about 3 s), and
    // once its connection is up, SYN-ACKs to its address are dropped (the
    // spoofed SYNs' never reach anyone who would answer them with RST).
    let clock = Rc::new(RefCell::new(net.now()));
    let c = clock.clone();
    let mut lost = 0;
    net.set_drop(move |p| {
        let connect = p.src == victim && p.len > 0 && lost < 2;
        lost += usize::from(connect);
        let syn_ack_to_victim =
            p.dst == victim && p.syn && p.ack && *c.borrow() > Instant::from_millis(300);
        connect || syn_ack_to_victim
    });
    let real = connect(&mut net, 1, b"real");
    let start = net.now();
    let mut seq = 7u32;
    let mut seen = Vec::new();
    net.run_until(Duration::from_secs(20), |net| {
        *clock.borrow_mut() = net.now();
        // Three spoofed SYNs from the caller's address, 0.5 s in.
        if seq < 10 && net.now() >= start + Duration::from_millis(500) {
            seq += 1;
            let src = IpEndpoint::new(victim, 30_000 + seq as u16);
            net.sim.inject(
                2,
                world::syn_packet(src, server(), seq.wrapping_mul(104_729)),
            );
        }
        seen.extend(events(net, 1));
        seen.iter().any(|(h, e)| {
            *h == real
                && matches!(
                    e,
                    EndpointEvent::Session(Event::Connected { .. } | Event::Closed(_))
                )
        })
    });
    assert!(
        seen.iter().any(
            |(h, e)| *h == real && matches!(e, EndpointEvent::Session(Event::Connected { .. }))
        ),
        "the real connection was evicted: {:?}",
        closed_of(&seen)
    );
    assert!(
        net.ep(0).stats().per_source_refused >= 1,
        "the spoofed ones went"
    );
}

/// Under load, a silent connection gets the loaded handshake time counted
/// from its SYN (§6.4 rule 4), as the session's handshake timer counts:
/// completing TCP's handshake late, its final ACK lost once, does not buy it
/// a second grace.
#[test]
fn a_late_final_ack_does_not_restart_the_loaded_handshake_time() {
    let mut net = Net::new(2, |i| {
        let mut c = Config::new(91 + i as u64);
        c.session.handshake_timeout = std::time::Duration::from_secs(360);
        Some(c)
    });
    net.apps.collect = false;
    let mut lc = ListenConfig::default();
    // One handshaking connection is half the bound: the listener is loaded.
    lc.max_handshaking = 2;
    {
        let (ep, sockets) = net.split(0);
        ep.listen(sockets, PORT, lc).unwrap();
    }
    // The caller's first pure ACK (the end of TCP's handshake) is lost: the
    // callee's SYN-ACK retransmission, a second later, completes it.
    let caller = host_ip(1);
    let mut dropped = false;
    net.set_drop(move |p| {
        let drop = !dropped && p.src == caller && p.ack && !p.syn && !p.fin && !p.rst && p.len == 0;
        dropped |= drop;
        drop
    });
    let start = net.now();
    let silent = net.raw_connect(1, server(), 20_001);
    let mut up_at = None;
    net.run_until(Duration::from_secs(10), |net| {
        // Up on the callee's side: its socket for the caller established.
        let up = net.sim.host(0).sockets.iter().any(|(_, s)| {
            matches!(s, smoltcp::socket::Socket::Tcp(t)
                if t.state() == tcp::State::Established
                    && t.remote_endpoint().is_some_and(|r| r.port == 20_001))
        });
        if up_at.is_none() && up {
            up_at = Some(net.now());
        }
        net.raw(1, silent).state() == tcp::State::Closed
    });
    let up_at = up_at.expect("TCP came up");
    assert!(up_at >= start + Duration::from_millis(900), "up at {up_at}");
    let evicted = net.now() - start;
    assert!(
        evicted <= Duration::from_millis(2_500),
        "evicted {evicted} after the SYN: the loaded handshake time restarted at TCP's handshake"
    );
}
