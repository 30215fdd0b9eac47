//! `TcpBuffers::Provided`: the endpoint runs on the sockets the application
//! gave it, over the application's storage, and reuses them. What a user of
//! a fixed pool relies on: a typed refusal when every socket is busy,
//! listeners that arm what the pool holds and re-arm as sockets come back,
//! and a reused socket that starts clean and never speaks to its previous
//! peer. `SessionBuffering::Provided` likewise for the sessions' buffers:
//! refused when none is free, taken back by each finished connection. The
//! seed scenario over provided sockets and session buffers is in `seed.rs`.

mod world;

use std::time::Duration;

use bookend_session::{CloseReason, Event, Options, Reason};
use bookend_smoltcp::{
    Config, ConfigError, Decision, EndpointEvent, Error, Handle, ListenConfig, SessionBuffering,
    TcpBuffers, TcpDecision, TcpStorage,
};
use bytes::Bytes;
use world::{PORT, World, addr, segments};

fn provided(seed: u64) -> Config {
    let mut c = Config::small(seed);
    c.tcp_buffers = TcpBuffers::Provided;
    c
}

/// A server on host 0 with `server` provided sockets and a listener of
/// `backlog`, accepting with a greeting; a caller on host 1 with `client`.
fn world(server: usize, client: usize, backlog: usize) -> World {
    let mut w = World::new(2, |i| Some(provided(60 + i as u64)));
    w.provide(0, server, 1024, 1024);
    w.provide(1, client, 1024, 1024);
    let (ep, _, sockets) = w.parts(0);
    let l = ep
        .listen(sockets, PORT, ListenConfig::new(backlog, 8))
        .unwrap();
    ep.accept_with(l, |req| Decision::Accept {
        callee_data: Some(Bytes::from_static(b"welcome")),
        granted: req.grant,
    });
    w
}

fn connect(w: &mut World, data: &[u8]) -> Result<Handle, Error> {
    let now = w.now();
    let (ep, iface, sockets) = w.parts(1);
    ep.connect(iface, sockets, now, addr(0), Some(data), Options::SMALL)
}

fn connected(w: &World, host: usize, h: Handle) -> Option<Option<Bytes>> {
    w.apps.events[host].iter().find_map(|(_, hd, e)| match e {
        EndpointEvent::Session(Event::Connected { callee_data, .. }) if *hd == h => {
            Some(callee_data.clone())
        }
        _ => None,
    })
}

fn closed(w: &World, host: usize, h: Handle) -> Option<CloseReason> {
    w.apps.events[host].iter().find_map(|(_, hd, e)| match e {
        EndpointEvent::Session(Event::Closed(r)) if *hd == h => Some(r.clone()),
        _ => None,
    })
}

fn accepted(w: &World) -> Vec<Handle> {
    w.apps.events[0]
        .iter()
        .filter_map(|(_, h, e)| matches!(e, EndpointEvent::Accepted(_)).then_some(*h))
        .collect()
}

/// Both sides close gracefully (the caller first, with disconnect data), and
/// the run goes on until both endpoints hold nothing but listeners.
fn close_both(w: &mut World, caller: Handle, callee: Handle) {
    let now = w.now();
    let (ep, _, sockets) = w.parts(1);
    ep.send_disconnect(sockets, caller, now, Some(b"bye"))
        .unwrap();
    ep.close(sockets, caller, now).unwrap();
    w.run_until(Duration::from_secs(5), |w| {
        w.apps.events[0].iter().any(|(_, h, e)| {
            *h == callee && matches!(e, EndpointEvent::Session(Event::PeerDisconnected))
        })
    });
    let now = w.now();
    let (ep, _, sockets) = w.parts(0);
    ep.close(sockets, callee, now).unwrap();
    w.run_until(Duration::from_secs(30), World::listeners_only);
}

/// One whole lifecycle: connect, accepted with the greeting, both close.
fn lifecycle(w: &mut World, data: &[u8]) {
    let before = accepted(w).len();
    let c = connect(w, data).unwrap();
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, c).is_some());
    assert_eq!(
        connected(w, 1, c),
        Some(Some(Bytes::from_static(b"welcome")))
    );
    let s = accepted(w)[before];
    close_both(w, c, s);
}

/// A second listener on the server, on `PORT + 1`, answering "second".
fn listen_second(w: &mut World) -> Result<(), Error> {
    let (ep, _, sockets) = w.parts(0);
    let l = ep.listen(sockets, PORT + 1, ListenConfig::new(8, 8))?;
    ep.accept_with(l, |req| Decision::Accept {
        callee_data: Some(Bytes::from_static(b"second")),
        granted: req.grant,
    });
    Ok(())
}

/// The caller (host 1) connects to the second listener.
fn connect_second(w: &mut World) -> Handle {
    let now = w.now();
    let (ep, iface, sockets) = w.parts(1);
    let to = smoltcp::wire::IpEndpoint::new(addr(0).addr, PORT + 1);
    ep.connect(iface, sockets, now, to, Some(b"x"), Options::SMALL)
        .unwrap()
}

// ----- set-up ------------------------------------------------------------------------

#[test]
fn add_socket_needs_provided_buffers() {
    let mut w = World::new(1, |_| Some(Config::new(1)));
    let (ep, _, sockets) = w.parts(0);
    let mut storage = TcpStorage::<1, 64, 64>::new();
    let socket = storage.sockets().next().unwrap();
    // The set's lifetime is 'static; a socket over a local borrows less:
    // a set of its own.
    let mut set = smoltcp::iface::SocketSet::new(vec![]);
    assert_eq!(
        ep.add_socket(&mut set, socket),
        Err(Error::InvalidConfig(ConfigError::NotProvided))
    );
    assert_eq!((ep.provided_socket_count(), sockets.iter().count()), (0, 0));
}

#[test]
fn a_socket_without_buffers_is_refused() {
    let mut w = World::new(1, |_| Some(provided(2)));
    let (ep, _, sockets) = w.parts(0);
    let socket = smoltcp::socket::tcp::Socket::new(
        smoltcp::socket::tcp::SocketBuffer::new(vec![0; 64]),
        smoltcp::socket::tcp::SocketBuffer::new(Vec::new()),
    );
    assert_eq!(
        ep.add_socket(sockets, socket),
        Err(Error::InvalidConfig(ConfigError::Zero(
            "socket send buffer"
        )))
    );
    assert_eq!(ep.provided_socket_count(), 0);
}

#[test]
fn provided_buffers_need_no_buffer_sizes() {
    let mut c = provided(3);
    (c.tcp_rx_buffer, c.tcp_tx_buffer) = (0, 0);
    assert_eq!(c.validate(), Ok(()));
    c.tcp_buffers = TcpBuffers::Heap;
    assert_eq!(c.validate(), Err(ConfigError::Zero("tcp_rx_buffer")));
}

#[test]
fn tcp_storage_makes_n_sockets_of_its_sizes() {
    let mut storage = TcpStorage::<3, 512, 256>::new();
    let sockets: Vec<_> = storage.sockets().collect();
    assert_eq!(sockets.len(), 3);
    for s in &sockets {
        assert_eq!((s.recv_capacity(), s.send_capacity()), (512, 256));
    }
    assert_eq!(TcpStorage::<3, 512, 256>::BYTES_PER_SOCKET, 768);
}

// ----- a fixed pool: refusal, listeners, reuse -------------------------------------

#[test]
fn connect_with_every_provided_socket_in_use_is_refused_with_no_socket() {
    let mut w = world(2, 1, 1);
    let first = connect(&mut w, b"one").unwrap();
    assert_eq!(w.ep(1).free_socket_count(), 0);
    assert_eq!(connect(&mut w, b"two"), Err(Error::NoSocket));
    // The refusal took nothing: no connection, no port, no socket.
    assert_eq!(w.ep(1).connection_count(), 1);
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, first).is_some());
    let callee = accepted(&w)[0];
    close_both(&mut w, first, callee);
    assert_eq!(w.ep(1).free_socket_count(), 1, "the socket came back");
    // And serves the next connection.
    lifecycle(&mut w, b"two");
}

/// A connect refused for want of a socket holds no ephemeral port: retried
/// while the pool is busy (as a client would), it neither quarantines the
/// ports it never used nor grows the allocator's tables.
#[test]
fn a_connect_refused_with_no_socket_uses_no_port() {
    let mut w = World::new(2, |i| {
        let mut c = provided(90 + i as u64);
        // Two ephemeral ports: one for the live connection, one spare.
        c.ephemeral_ports = 50_000..=50_001;
        Some(c)
    });
    w.provide(0, 2, 1024, 1024);
    w.provide(1, 1, 1024, 1024);
    {
        let (ep, _, sockets) = w.parts(0);
        let l = ep.listen(sockets, PORT, ListenConfig::new(1, 8)).unwrap();
        ep.accept_with(l, |req| Decision::Accept {
            callee_data: Some(Bytes::from_static(b"welcome")),
            granted: req.grant,
        });
    }
    let first = connect(&mut w, b"one").unwrap();
    for _ in 0..20 {
        assert_eq!(connect(&mut w, b"two"), Err(Error::NoSocket));
    }
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, first).is_some());
    let callee = accepted(&w)[0];
    close_both(&mut w, first, callee);
    // The first connection's port is in TIME-WAIT quarantine; the spare one
    // is free, the refusals having taken none.
    lifecycle(&mut w, b"two");
}

#[test]
fn a_listener_arms_what_the_pool_holds_and_rearms_as_sockets_come_back() {
    let mut w = world(2, 1, 4);
    // A backlog of 4 over 2 sockets: 2 armed.
    assert_eq!(w.ep(0).listening_socket_count(), 2);
    assert_eq!(w.ep(0).free_socket_count(), 0);
    let c = connect(&mut w, b"one").unwrap();
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, c).is_some());
    // One socket carries the connection; the other still listens, and no
    // third can be armed.
    assert_eq!(w.ep(0).listening_socket_count(), 1);
    assert_eq!(w.ep(0).connection_count(), 1);
    let s = accepted(&w)[0];
    close_both(&mut w, c, s);
    assert_eq!(w.ep(0).listening_socket_count(), 2, "re-armed");
    assert_eq!(w.sim.host(0).sockets.iter().count(), 2);
}

/// With every provided socket listening, `connect` takes one from the
/// listener (which keeps at least one): idle listening sockets do not
/// starve outgoing connections.
#[test]
fn connect_takes_a_socket_from_an_idle_listener_when_none_is_free() {
    let mut w = world(4, 2, 1);
    {
        // The caller's host listens too, with more backlog than sockets.
        let (ep, _, sockets) = w.parts(1);
        ep.listen(sockets, PORT, ListenConfig::new(8, 8)).unwrap();
        assert_eq!(ep.listening_socket_count(), 2);
        assert_eq!(ep.free_socket_count(), 0);
    }
    let c = connect(&mut w, b"one").unwrap();
    assert_eq!(w.ep(1).listening_socket_count(), 1, "one taken, one kept");
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, c).is_some());
    // A second connect finds no listener with a socket to spare.
    assert_eq!(connect(&mut w, b"two"), Err(Error::NoSocket));
    let s = accepted(&w)[0];
    close_both(&mut w, c, s);
    assert_eq!(w.ep(1).listening_socket_count(), 2, "back to the listener");
}

/// Two listeners share a pool smaller than their backlogs: the second
/// takes a socket from the first, and both answer their callers.
#[test]
fn listeners_share_a_pool_smaller_than_their_backlogs() {
    let mut w = world(4, 1, 8);
    assert_eq!(w.ep(0).listening_socket_count(), 4);
    listen_second(&mut w).unwrap();
    assert_eq!(w.ep(0).listening_socket_count(), 4);
    let c = connect_second(&mut w);
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, c).is_some());
    assert_eq!(
        connected(&w, 1, c),
        Some(Some(Bytes::from_static(b"second")))
    );
}

/// A listener whose only socket took a caller gets one back from a
/// listener with sockets to spare, at the next poll: sharing a pool never
/// leaves a port answering SYNs with RST while another listener idles on
/// several sockets.
#[test]
fn a_listener_left_without_sockets_takes_one_from_a_listener_with_several() {
    let mut w = world(4, 2, 8);
    listen_second(&mut w).unwrap();
    // The second listener's one socket carries a connection, kept open.
    let first = connect_second(&mut w);
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, first).is_some());
    assert_eq!(w.ep(0).connection_count(), 1);
    // 4 sockets: one connection, and the two listeners share the other 3.
    assert_eq!(w.ep(0).listening_socket_count(), 3);
    let second = connect_second(&mut w);
    w.run_until(Duration::from_secs(5), |w| {
        connected(w, 1, second).is_some()
    });
}

/// With `max_connections` reached by listening sockets alone, `connect`
/// still takes one from a listener: a socket changing hands leaves the
/// count as it was.
#[test]
fn connect_at_max_connections_takes_a_listening_socket() {
    let mut w = World::new(2, |i| {
        let mut c = provided(110 + i as u64);
        c.max_connections = 4;
        Some(c)
    });
    w.provide(0, 4, 1024, 1024);
    w.provide(1, 4, 1024, 1024);
    for host in [0, 1] {
        let (ep, _, sockets) = w.parts(host);
        let l = ep.listen(sockets, PORT, ListenConfig::new(8, 8)).unwrap();
        ep.accept_with(l, |req| Decision::Accept {
            callee_data: Some(Bytes::from_static(b"welcome")),
            granted: req.grant,
        });
        assert_eq!(ep.listening_socket_count(), 4);
    }
    let c = connect(&mut w, b"one").unwrap();
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, c).is_some());
    assert_eq!(w.ep(1).listening_socket_count(), 3);
    // A second listener at the limit takes no parked socket: it may only
    // take one from another listener.
    let (ep, _, sockets) = w.parts(1);
    ep.listen(sockets, PORT + 1, ListenConfig::new(8, 8))
        .unwrap();
    assert_eq!(ep.connection_count() + ep.listening_socket_count(), 4);
}

/// A listener that could never answer a SYN is refused: no provided socket
/// is free, and the only other listener has one, which it keeps.
#[test]
fn listen_with_no_socket_to_spare_is_refused_with_no_socket() {
    let mut w = world(1, 1, 8);
    let (ep, _, sockets) = w.parts(0);
    assert_eq!(
        ep.listen(sockets, PORT + 1, ListenConfig::new(8, 8)).err(),
        Some(Error::NoSocket)
    );
    assert_eq!(ep.listening_socket_count(), 1);
    // The refused listener left nothing behind: its port is free.
    assert_eq!(
        ep.listen(sockets, PORT + 1, ListenConfig::new(8, 8)).err(),
        Some(Error::NoSocket)
    );
}

/// A socket that held a SYN-ACK for SO_CONDITIONAL_ACCEPT and then serves a
/// listener without a TCP condition answers its callers at once: the pause
/// does not travel with the socket.
#[test]
fn a_reused_socket_does_not_keep_another_listeners_syn_ack_pause() {
    let mut w = World::new(2, |i| Some(provided(100 + i as u64)));
    w.provide(0, 2, 1024, 1024);
    w.provide(1, 3, 1024, 1024);
    let plain_port = PORT;
    let conditional_port = PORT + 1;
    {
        let (ep, _, sockets) = w.parts(0);
        // The plain listener first: it is first to re-arm.
        let plain = ep
            .listen(sockets, plain_port, ListenConfig::new(1, 8))
            .unwrap();
        ep.accept_with(plain, |req| Decision::Accept {
            callee_data: None,
            granted: req.grant,
        });
        let conditional = ep
            .listen(sockets, conditional_port, ListenConfig::new(1, 8))
            .unwrap();
        ep.tcp_accept_with(sockets, conditional, |_, _| TcpDecision::Refuse);
    }
    let to = |port| smoltcp::wire::IpEndpoint::new(addr(0).addr, port);
    let connect_to = |w: &mut World, port| {
        let now = w.now();
        let (ep, iface, sockets) = w.parts(1);
        ep.connect(iface, sockets, now, to(port), None, Options::SMALL)
            .unwrap()
    };
    // The plain listener's socket carries a connection, kept open.
    let first = connect_to(&mut w, plain_port);
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, first).is_some());
    // The conditional listener's socket holds a SYN-ACK, refused: it is
    // released, and the plain listener, first in turn, re-arms with it.
    let refused = connect_to(&mut w, conditional_port);
    w.run_until(Duration::from_secs(5), |w| closed(w, 1, refused).is_some());
    w.run_for(Duration::from_millis(100));
    // Its next caller is answered.
    let third = connect_to(&mut w, plain_port);
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, third).is_some());
}

/// The same two sockets carry lifecycle after lifecycle, and the wire sees
/// no RST in any of them: a socket is parked without a word to its last
/// peer, and starts the next connection with nothing of the last one
/// (buffers, sequence numbers, the listener's port).
#[test]
fn reused_sockets_carry_connection_after_connection_without_a_reset() {
    let mut w = world(2, 1, 1);
    let server_handles: Vec<_> = w.sim.host(0).sockets.iter().map(|(h, _)| h).collect();
    for i in 0..10 {
        lifecycle(&mut w, format!("caller {i}").as_bytes());
    }
    let segs = segments(&w.sim.pcap(1));
    let syns = segs.iter().filter(|s| s.syn && !s.ack).count();
    assert_eq!(syns, 10, "one SYN per lifecycle");
    assert!(
        segs.iter().all(|s| !s.rst),
        "no RST: {:?}",
        segs.iter().filter(|s| s.rst).collect::<Vec<_>>()
    );
    // Ten connections, the same sockets.
    let now: Vec<_> = w.sim.host(0).sockets.iter().map(|(h, _)| h).collect();
    assert_eq!(now, server_handles);
    assert_eq!(w.sim.host(1).sockets.iter().count(), 1);
}

/// An aborted connection's RST goes out once, while its sockets carry it;
/// parked afterwards, they send nothing more, and carry the next
/// connection.
#[test]
fn an_aborted_connections_socket_sends_its_reset_once_and_is_reused() {
    let mut w = world(2, 1, 1);
    let c = connect(&mut w, b"one").unwrap();
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, c).is_some());
    let now = w.now();
    let (ep, _, sockets) = w.parts(1);
    ep.abort(sockets, c, now, Reason::APPLICATION_ABORT, Some(b"gone"))
        .unwrap();
    let s = accepted(&w)[0];
    w.run_until(Duration::from_secs(5), |w| closed(w, 0, s).is_some());
    // The callee's closesocket (the abort ended the caller's handle).
    let now = w.now();
    let (ep, _, sockets) = w.parts(0);
    ep.close(sockets, s, now).unwrap();
    w.run_until(Duration::from_secs(5), World::listeners_only);
    assert!(
        matches!(closed(&w, 0, s), Some(CloseReason::Aborted { .. })),
        "{:?}",
        closed(&w, 0, s)
    );
    w.run_for(Duration::from_secs(2));
    lifecycle(&mut w, b"two");
    w.run_for(Duration::from_secs(2));
    // The ABORT's receiver resets too (§7: RecvAbort → RST); whichever RST
    // comes first closes the other socket, so one is on the wire, in the
    // first connection: none from a parked socket, none in the second.
    let segs = segments(&w.sim.pcap(1));
    let rsts: Vec<_> = segs.iter().enumerate().filter(|(_, s)| s.rst).collect();
    let second_syn = segs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.syn && !s.ack)
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    assert_eq!(rsts.len(), 1, "{rsts:?}");
    assert!(rsts[0].0 < second_syn, "{rsts:?}");
}

/// Sockets and session buffers both from the application: on the server
/// (host 0) `sockets.0` sockets and `buffers.0` sessions' buffers, on the
/// caller (host 1) `sockets.1` and `buffers.1`; a listener of backlog 1
/// accepting with a greeting.
fn world_without_heap_payloads(
    seed: u64,
    sockets: (usize, usize),
    buffers: (usize, usize),
) -> World {
    let mut w = World::new(2, |i| {
        let mut c = provided(seed + i as u64);
        c.session_buffers = SessionBuffering::Provided;
        Some(c)
    });
    w.provide(0, sockets.0, 1024, 1024);
    w.provide(1, sockets.1, 1024, 1024);
    w.provide_session_buffers(0, buffers.0);
    w.provide_session_buffers(1, buffers.1);
    let (ep, _, sockets) = w.parts(0);
    let l = ep.listen(sockets, PORT, ListenConfig::new(1, 8)).unwrap();
    ep.accept_with(l, |req| Decision::Accept {
        callee_data: Some(Bytes::from_static(b"welcome")),
        granted: req.grant,
    });
    w
}

/// Each lifecycle takes a session's buffers on both sides and gives them
/// back: one set each serves connection after connection.
#[test]
fn session_buffers_come_back_after_each_connection() {
    let mut w = world_without_heap_payloads(70, (2, 1), (2, 1));
    for i in 0..5 {
        lifecycle(&mut w, format!("caller {i}").as_bytes());
        assert_eq!(w.ep(1).free_session_buffers_count(), 1, "lifecycle {i}");
        assert_eq!(w.ep(0).free_session_buffers_count(), 2, "lifecycle {i}");
    }
    assert_eq!(w.ep(1).provided_session_buffers_count(), 1);
}

/// With every session's buffers in use, `connect` is refused with its own
/// error, before it takes a socket or a port; the buffers of a finished
/// connection then serve the next.
#[test]
fn connect_with_every_session_buffer_in_use_is_refused() {
    // One set of session buffers for the caller, two sockets.
    let mut w = world_without_heap_payloads(80, (2, 2), (2, 1));
    let first = connect(&mut w, b"one").unwrap();
    assert_eq!(connect(&mut w, b"two"), Err(Error::NoSessionBuffers));
    assert_eq!(w.ep(1).connection_count(), 1);
    assert_eq!(w.ep(1).free_socket_count(), 1, "the refusal took no socket");
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, first).is_some());
    let callee = accepted(&w)[0];
    close_both(&mut w, first, callee);
    assert_eq!(w.ep(1).free_session_buffers_count(), 1);
    lifecycle(&mut w, b"two");
}

/// A connection arriving when no session buffers are free is reset at
/// once, counted, and disturbs nothing else; the listener serves the next
/// caller when buffers are back.
#[test]
fn an_incoming_connection_without_session_buffers_is_reset() {
    // The server has sockets but no session buffers yet.
    let mut w = world_without_heap_payloads(85, (2, 1), (0, 1));
    let c = connect(&mut w, b"one").unwrap();
    w.run_until(Duration::from_secs(30), |w| closed(w, 1, c).is_some());
    assert!(
        matches!(
            closed(&w, 1, c),
            Some(CloseReason::Reset | CloseReason::TimedOut(_))
        ),
        "{:?}",
        closed(&w, 1, c)
    );
    assert!(w.ep(0).stats().no_session_buffers >= 1);
    // The caller lets go of its handle; the server's slot went with its RST.
    let now = w.now();
    let (ep, _, sockets) = w.parts(1);
    let _ = ep.close(sockets, c, now);
    w.run_until(Duration::from_secs(5), |w| w.ep(0).connection_count() == 0);
    w.provide_session_buffers(0, 1);
    w.run_until(Duration::from_secs(30), World::listeners_only);
    lifecycle(&mut w, b"two");
}

/// Buffers smaller than the endpoint's session configuration needs are
/// refused and given back whole.
#[test]
fn session_buffers_too_small_are_given_back() {
    let mut w = world_without_heap_payloads(90, (1, 1), (1, 1));
    let small = bookend_session::Config::small();
    let mut tiny = small.clone();
    tiny.recv_buffer = 2048;
    tiny.send_buffer = 1024;
    let len = bookend_session::BufferSizes::for_config(&tiny).total();
    let storage: &'static mut [u8] = Box::leak(vec![0; len].into_boxed_slice());
    let b = bookend_session::SessionBuffers::new(storage, &tiny).unwrap();
    let e = w.ep(1).add_session_buffers(b).unwrap_err();
    assert!(matches!(
        e.error,
        bookend_session::BuffersError::TooSmall { .. }
    ));
    assert_eq!(e.buffers.sizes().total(), len);
    assert_eq!(w.ep(1).provided_session_buffers_count(), 1);
}

/// With `SessionBuffering::Heap`, buffers given to the endpoint are used
/// first, but a proposal larger than they hold runs on the heap instead of
/// being refused; the buffers wait for a connection they fit.
#[test]
fn on_the_heap_a_proposal_beyond_the_given_buffers_uses_the_heap() {
    let mut w = World::new(2, |i| Some(provided(95 + i as u64)));
    w.provide(0, 2, 1024, 1024);
    w.provide(1, 1, 1024, 1024);
    w.provide_session_buffers(1, 1);
    let (ep, _, sockets) = w.parts(0);
    let l = ep.listen(sockets, PORT, ListenConfig::new(1, 8)).unwrap();
    ep.accept_with(l, |req| Decision::Accept {
        callee_data: Some(Bytes::from_static(b"welcome")),
        granted: req.grant,
    });
    let now = w.now();
    let (ep, iface, sockets) = w.parts(1);
    // Frames of 4 KiB, where the configuration's (and the buffers') are
    // 1 KiB.
    let big = Options {
        max_frame_size: 4096,
        ..Options::SMALL
    };
    let c = ep
        .connect(iface, sockets, now, addr(0), Some(b"big"), big)
        .expect("the heap serves what the buffers cannot");
    assert_eq!(w.ep(1).free_session_buffers_count(), 1);
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, c).is_some());
}

/// A pool of mixed sizes serves a proposal the buffer that holds it, not
/// merely the last one given.
#[test]
fn a_proposal_takes_the_given_buffers_that_hold_it() {
    let mut w = world_without_heap_payloads(97, (2, 2), (2, 0));
    let big = Options {
        max_frame_size: 4096,
        ..Options::SMALL
    };
    let config = w.ep(1).config().session.clone();
    let sizes = bookend_session::BufferSizes::for_options(&config, &big);
    let storage: &'static mut [u8] = Box::leak(vec![0; sizes.total()].into_boxed_slice());
    let large = bookend_session::SessionBuffers::with_sizes(storage, sizes).unwrap();
    w.ep(1).add_session_buffers(large).unwrap();
    // The small set last, as a pool filled in any order may have it.
    w.provide_session_buffers(1, 1);
    let now = w.now();
    let (ep, iface, sockets) = w.parts(1);
    let c = ep
        .connect(iface, sockets, now, addr(0), Some(b"big"), big)
        .expect("the large buffers hold the proposal");
    assert_eq!(w.ep(1).free_session_buffers_count(), 1);
    w.run_until(Duration::from_secs(5), |w| connected(w, 1, c).is_some());
}
