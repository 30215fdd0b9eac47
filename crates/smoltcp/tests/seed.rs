//! The seed's transaction-total scenario over smoltcp: one server, 100 clients
//! on 4 client hosts, a listener backlog of 8. Each client connects with its
//! name as caller data, is accepted with a greeting, and ends with
//! WSASendDisconnect(its transaction total). The server, on FD_CLOSE, reads it
//! (WSARecvDisconnect), adds it to the cumulative total, answers with
//! WSASendDisconnect(grand total) and closes at once (5a). Every client reads
//! its grand total and closes. Afterwards every SocketSet holds only the
//! listening sockets.

mod world;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bookend_session::{CloseReason, Event, Options};
use bookend_smoltcp::{Config, Decision, EndpointEvent, Handle, ListenConfig, TcpBuffers};
use bytes::Bytes;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;
use world::{World as Net, ip as host_ip};

const PORT: u16 = 7050;

/// Host `n` of the old numbering (1 is the server): host `n - 1` of the world.
fn ip(n: u8) -> smoltcp::wire::IpAddress {
    host_ip(n as usize - 1)
}
const CLIENTS: usize = 100;
const CLIENT_HOSTS: usize = 4;

#[derive(Debug)]
struct Client {
    handle: Option<Handle>,
    total: u64,
    greeting: Option<Bytes>,
    grand_total: Option<u64>,
    attempts: u32,
    start_at: Instant,
    done: bool,
}

#[test]
fn seed_scenario_100_clients_backlog_8() {
    seed_scenario(None);
}

/// The same with `TcpBuffers::Provided`: the server has 16 sockets of 1 KiB
/// each way (its backlog of 8 and 8 connections), each client host 4, and
/// nothing else: 100 sessions go through 32 sockets the application gave,
/// and the endpoints allocate no TCP buffer. A client whose host has no
/// free socket waits and tries again (`Error::NoSocket`), as one whose SYN
/// found no armed listener does.
#[test]
fn seed_scenario_over_provided_sockets() {
    seed_scenario(Some(Provided {
        server: 16,
        per_client_host: 4,
        buffer: 1024,
    }));
}

#[derive(Debug, Clone, Copy)]
struct Provided {
    server: usize,
    per_client_host: usize,
    buffer: usize,
}

fn seed_scenario(provided: Option<Provided>) {
    let mut net = Net::new(1 + CLIENT_HOSTS, |i| {
        let mut c = Config::new(1000 + i as u64);
        if provided.is_some() {
            // No heap for payloads: TCP and session buffers are the
            // application's, sized for firmware.
            c.tcp_buffers = TcpBuffers::Provided;
            c.session_buffers = bookend_smoltcp::SessionBuffering::Provided;
            c.session = bookend_session::Config::small();
        }
        Some(c)
    });
    if let Some(p) = provided {
        net.provide(0, p.server, p.buffer, p.buffer);
        net.provide_session_buffers(0, p.server);
        for host in 1..=CLIENT_HOSTS {
            net.provide(host, p.per_client_host, p.buffer, p.buffer);
            net.provide_session_buffers(host, p.per_client_host);
        }
    }
    // The test takes the endpoints' events itself.
    net.apps.collect = false;
    let server = 0;
    let (h_ep, h_sockets) = net.split(server);
    let listener = h_ep
        .listen(h_sockets, PORT, ListenConfig::new(8, 64))
        .unwrap();
    let names = Rc::new(RefCell::new(Vec::new()));
    let seen = names.clone();
    h_ep.accept_with(listener, move |req| {
        seen.borrow_mut()
            .push(req.caller_data.clone().unwrap_or_default());
        Decision::Accept {
            callee_data: Some(Bytes::from_static(b"welcome")),
            granted: req.grant,
        }
    });
    assert_eq!(
        h_ep.listening_socket_count(),
        8,
        "the backlog pool is armed"
    );

    // Client i: on host 1 + i % 4, transaction total i + 1, starting within 200 ms.
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| Client {
            handle: None,
            total: i as u64 + 1,
            greeting: None,
            grand_total: None,
            attempts: 0,
            start_at: Instant::from_millis((i as i64 * 7) % 200),
            done: false,
        })
        .collect();
    let mut cumulative: u64 = 0;
    let mut server_log: Vec<(u64, u64)> = Vec::new(); // (client total, grand total sent)

    net.run_until(Duration::from_secs(60), |net| {
        let now = net.now();
        // Clients start (or retry after a TCP-level refusal: smoltcp answers a
        // SYN that finds no armed listener with RST).
        for (i, c) in clients.iter_mut().enumerate() {
            if c.handle.is_none() && !c.done && now >= c.start_at {
                let (host_ep, host_iface, host_sockets) = net.parts(1 + i % CLIENT_HOSTS);
                let name = format!("client-{i}");
                let remote = IpEndpoint::new(ip(1), PORT);
                let h = match host_ep.connect(
                    host_iface,
                    host_sockets,
                    now,
                    remote,
                    Some(name.as_bytes()),
                    if provided.is_some() {
                        Options::SMALL
                    } else {
                        Options::DEFAULT
                    },
                ) {
                    Ok(h) => h,
                    Err(
                        bookend_smoltcp::Error::NoSocket | bookend_smoltcp::Error::NoSessionBuffers,
                    ) if provided.is_some() => {
                        // Every socket or session buffer of this host is
                        // busy: later.
                        c.start_at = now + Duration::from_millis(10);
                        continue;
                    }
                    Err(e) => panic!("client {i}: connect: {e}"),
                };
                c.handle = Some(h);
                c.attempts += 1;
            }
        }
        // Server: steps 2-5 and 5a.
        let (s_ep, s_sockets) = net.split(server);
        while let Some((h, ev)) = s_ep.poll_event() {
            if let EndpointEvent::Session(Event::PeerDisconnected) = ev {
                let mut buf = [0u8; 8];
                assert_eq!(
                    s_ep.recv(s_sockets, h, now, &mut buf).ok(),
                    Some(0),
                    "(2) recv returns 0"
                );
                let n = s_ep.recv_disconnect(h, &mut buf).unwrap().unwrap(); // (3)
                let total = u64::from_be_bytes(buf[..n].try_into().unwrap());
                cumulative += total; // (4)
                s_ep.send_disconnect(s_sockets, h, now, Some(&cumulative.to_be_bytes()))
                    .unwrap(); // (5)
                server_log.push((total, cumulative));
                s_ep.close(s_sockets, h, now).unwrap(); // (5a) at once
            }
        }
        // Clients: connect, step 1, then 6-8.
        for host in 1..=CLIENT_HOSTS {
            let (hst_ep, hst_sockets) = net.split(host);
            while let Some((h, ev)) = hst_ep.poll_event() {
                // Handles are per endpoint: match the host too.
                let (i, c) = clients
                    .iter_mut()
                    .enumerate()
                    .find(|(i, c)| 1 + i % CLIENT_HOSTS == host && c.handle == Some(h))
                    .expect("known handle");
                match ev {
                    EndpointEvent::Session(Event::Connected { callee_data, .. }) => {
                        c.greeting = callee_data;
                        let total = c.total.to_be_bytes();
                        hst_ep
                            .send_disconnect(hst_sockets, h, now, Some(&total))
                            .unwrap(); // (1)
                    }
                    EndpointEvent::Session(Event::PeerDisconnected) => {
                        // (6) FD_CLOSE, (7) WSARecvDisconnect, (8) closesocket.
                        let mut buf = [0u8; 8];
                        let n = hst_ep.recv_disconnect(h, &mut buf).unwrap().unwrap();
                        c.grand_total = Some(u64::from_be_bytes(buf[..n].try_into().unwrap()));
                        hst_ep.close(hst_sockets, h, now).unwrap();
                        c.done = true;
                    }
                    EndpointEvent::Session(Event::Closed(CloseReason::Reset))
                        if c.grand_total.is_none() =>
                    {
                        // Refused at the TCP level: retry shortly, as a client would.
                        assert!(c.attempts < 50, "client {i} refused 50 times");
                        hst_ep.close(hst_sockets, h, now).unwrap();
                        c.handle = None;
                        c.start_at = now + Duration::from_millis(20 + (i as u64 % 13) * 3);
                    }
                    EndpointEvent::Session(Event::Closed(r)) => {
                        assert!(c.done, "client {i} closed early: {r}");
                    }
                    _ => {}
                }
            }
        }
        let all_done = clients.iter().all(|c| c.done);
        all_done && net.listeners_only()
    });

    // Every client got the greeting and a grand total that is the server's
    // running sum right after its own total.
    let expected_sum: u64 = (1..=CLIENTS as u64).sum();
    assert_eq!(
        cumulative, expected_sum,
        "cumulative total is the sum of all totals"
    );
    let by_total: BTreeMap<u64, u64> = server_log.iter().copied().collect();
    assert_eq!(by_total.len(), CLIENTS);
    for c in &clients {
        assert_eq!(c.greeting.as_deref(), Some(&b"welcome"[..]));
        assert_eq!(
            c.grand_total,
            by_total.get(&c.total).copied(),
            "client with total {}",
            c.total
        );
    }
    let mut running = 0;
    for (total, grand) in &server_log {
        running += total;
        assert_eq!(*grand, running);
    }
    assert_eq!(
        names.borrow().len(),
        CLIENTS,
        "the condition function saw every caller's data"
    );
    // Back to listeners only: the server keeps its pool of 8, clients hold
    // nothing (the provided sockets are all back, parked in the sets).
    let (server_sockets, client_sockets) = match provided {
        None => (8, 0),
        Some(p) => (p.server, p.per_client_host),
    };
    assert_eq!(net.ep(0).listening_socket_count(), 8);
    assert_eq!(net.sim.host(0).sockets.iter().count(), server_sockets);
    for i in 1..=CLIENT_HOSTS {
        assert_eq!(net.sim.host(i).sockets.iter().count(), client_sockets);
        assert_eq!(net.ep(i).free_socket_count(), client_sockets);
    }
    if let Some(p) = provided {
        assert_eq!(net.ep(0).free_socket_count(), p.server - 8);
    }
    let retries: u32 = clients.iter().map(|c| c.attempts - 1).sum();
    eprintln!(
        "100 clients done at {}; {retries} TCP-level retries; stats {:?}",
        net.now(),
        net.ep(0).stats()
    );
}
