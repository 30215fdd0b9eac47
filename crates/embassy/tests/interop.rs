//! bookend-embassy against bookend-smoltcp on one simulated wire: embassy-net
//! (smoltcp 0.13) on one side, a bookend-smoltcp `Endpoint` on a smoltcp
//! 0.14 `Interface` on the other, playing the seed scenario in both roles
//! and both modes. Two drivers, two TCP stacks, one protocol.

mod support;

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;

use bookend_embassy::{CloseReason, Config, Listener, Mode, Options, connect};
use bookend_smoltcp::{Decision, Endpoint, EndpointEvent, Event, Handle, ListenConfig};
use embassy_futures::join::join3;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Stack, StackResources};
use embassy_time::{Duration, Timer};
use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use support::{CLIENT, SERVER, SmolPort, Wire, clock, run, runner, smol_now, stack};

const PORT: u16 = 7050;
const CLIENTS: [(&str, u64); 3] = [("client-1", 17), ("client-2", 25), ("client-3", 8)];
const BUF: usize = 1024;

fn both_modes() -> bookend_embassy::session::Config {
    let mut c = bookend_embassy::session::Config::default();
    c.offered_modes = bookend_embassy::session::ModeOffer::Both;
    c
}

/// A bookend-smoltcp host at 10.0.0.1: its interface, sockets and endpoint,
/// polled as firmware's loop would (poll again while anything changed,
/// then sleep to `next_poll` or the next packet).
struct SmolHost {
    device: SmolPort,
    iface: Interface,
    sockets: SocketSet<'static>,
    ep: Endpoint,
}

impl SmolHost {
    fn new(mut device: SmolPort, config: bookend_smoltcp::Config) -> Self {
        let mut iface = Interface::new(
            IfaceConfig::new(HardwareAddress::Ip),
            &mut device,
            smol_now(),
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 1), 24)).unwrap();
        });
        Self {
            device,
            iface,
            sockets: SocketSet::new(vec![]),
            ep: Endpoint::new(config).expect("a valid configuration"),
        }
    }

    /// One round: the interface, then the endpoint; whether it changed
    /// anything.
    fn poll(&mut self) -> bool {
        let now = smol_now();
        let progress = self.iface.poll(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged;
        self.ep.poll(now, &mut self.sockets);
        progress
    }

    /// Sleeps until the next packet or the endpoint's next deadline.
    async fn sleep(&mut self) {
        let now = smol_now();
        let at = self.ep.next_poll(now, &mut self.iface, &self.sockets);
        let mut timer = pin!(async {
            match at {
                Some(at) => {
                    Timer::at(embassy_time::Instant::from_micros(at.total_micros() as u64)).await
                }
                None => std::future::pending().await,
            }
        });
        let device = &self.device;
        let mut first = true;
        poll_fn(|cx| {
            if !first {
                return Poll::Ready(());
            }
            first = false;
            device.wait(cx.waker());
            if timer.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// The seed's server on bookend-smoltcp: the condition function accepts
/// with a welcome; each client's transactions are read, its total taken
/// from its disconnect data, the grand total sent back, and the connection
/// closed at once (5a). Returns the grand total once every connection is
/// released (an application's `close` hands the rest of the session to the
/// endpoint, which reports a close the peer never confirmed in
/// `Stats::unconfirmed_closes`), and any `Closed` seen before that.
async fn smoltcp_server(mut host: SmolHost, clients: usize) -> (u64, Vec<CloseReason>) {
    let l = host
        .ep
        .listen(&mut host.sockets, PORT, ListenConfig::default())
        .expect("the port is free");
    host.ep.accept_with(l, |req| Decision::Accept {
        callee_data: Some(bookend_smoltcp::Bytes::from(format!(
            "welcome, {}",
            String::from_utf8_lossy(req.caller_data.as_deref().unwrap_or_default())
        ))),
        granted: req.grant,
    });
    let mut grand = 0u64;
    let mut ends = Vec::new();
    let mut counted: HashMap<Handle, u64> = HashMap::new();
    let mut closed = 0;
    loop {
        let mut progress = host.poll();
        while let Some((h, e)) = host.ep.poll_event() {
            progress = true;
            let EndpointEvent::Session(e) = e else {
                continue;
            };
            let now = smol_now();
            let mut buf = [0u8; 64];
            match e {
                Event::Readable => loop {
                    let mode = host.ep.options(h).map(|o| o.mode);
                    let r = match mode {
                        Some(Mode::Message) => host.ep.recv_message(h, &mut buf),
                        _ => host.ep.recv(&mut host.sockets, h, now, &mut buf),
                    };
                    match r {
                        Ok(0) => break,
                        Ok(n) => {
                            let per = if mode == Some(Mode::Message) {
                                1
                            } else {
                                n as u64
                            };
                            *counted.entry(h).or_default() += per;
                        }
                        Err(_) => break,
                    }
                },
                Event::PeerDisconnected => {
                    // Whatever is still queued first (stream reads then
                    // return 0, message reads WSAEDISCON).
                    while let Ok(n) = host.ep.recv(&mut host.sockets, h, now, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        *counted.entry(h).or_default() += n as u64;
                    }
                    while host.ep.recv_message(h, &mut buf).is_ok() {
                        *counted.entry(h).or_default() += 1;
                    }
                    let n = host
                        .ep
                        .recv_disconnect(h, &mut buf)
                        .expect("the client's total")
                        .expect("some");
                    let total = u64::from_be_bytes(buf[..n].try_into().unwrap());
                    assert_eq!(
                        counted.get(&h).copied().unwrap_or(0),
                        total,
                        "every transaction read"
                    );
                    grand += total;
                    host.ep
                        .send_disconnect(&mut host.sockets, h, now, Some(&grand.to_be_bytes()))
                        .expect("the send half is open");
                    host.ep
                        .close(&mut host.sockets, h, now)
                        .expect("a live handle");
                    closed += 1;
                }
                Event::Closed(reason) => ends.push(reason),
                _ => {}
            }
        }
        if closed == clients && host.ep.connection_count() == 0 {
            assert_eq!(
                host.ep.stats().unconfirmed_closes,
                0,
                "every close confirmed"
            );
            return (grand, ends);
        }
        if !progress {
            host.sleep().await;
        }
        // Otherwise round again at once (the loop firmware needs: a command
        // or a packet that changed something may have more behind it).
        embassy_futures::yield_now().await;
    }
}

/// An embassy client as in the seed: name as caller data, `total` one-byte
/// transactions, the total as disconnect data, the grand total read back.
async fn embassy_client(
    stack: Stack<'_>,
    name: &str,
    total: u64,
    mode: Mode,
) -> (u64, CloseReason) {
    let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
    let socket = TcpSocket::new(stack, &mut rx, &mut tx);
    let options = Options {
        mode,
        ..bookend_embassy::FIRMWARE_OPTIONS
    };
    let (mut conn, welcome) = connect(
        socket,
        (SERVER, PORT),
        Some(name.as_bytes()),
        options,
        &Config::default(),
    )
    .await
    .expect("accepted by bookend-smoltcp");
    assert_eq!(
        welcome.as_deref(),
        Some(format!("welcome, {name}").as_bytes())
    );
    for _ in 0..total {
        match mode {
            Mode::Stream => conn.send_all(b"t").await.unwrap(),
            Mode::Message => conn.send_message(b"t").await.unwrap(),
        }
    }
    conn.send_disconnect(Some(&total.to_be_bytes()))
        .await
        .unwrap();
    let grand = conn
        .recv_disconnect()
        .await
        .unwrap()
        .expect("the grand total");
    let grand = u64::from_be_bytes(grand[..].try_into().unwrap());
    (grand, conn.close().await)
}

#[test]
fn embassy_clients_against_a_bookend_smoltcp_server_in_both_modes() {
    for mode in [Mode::Stream, Mode::Message] {
        let _clock = clock();
        let wire = Wire::new(Duration::from_millis(1));
        let mut config = bookend_smoltcp::Config::new(0x5eed);
        config.session = both_modes();
        let host = SmolHost::new(wire.smoltcp(0), config);
        let mut rc = StackResources::<4>::new();
        let (stack, r) = stack(wire.embassy(1), CLIENT, &mut rc, 3);
        let clients = join3(
            embassy_client(stack, CLIENTS[0].0, CLIENTS[0].1, mode),
            embassy_client(stack, CLIENTS[1].0, CLIENTS[1].1, mode),
            embassy_client(stack, CLIENTS[2].0, CLIENTS[2].1, mode),
        );
        let mut r = pin!(runner(r));
        let (((grand, ends), (c1, c2, c3)), took) = run(
            &wire,
            Duration::from_secs(60),
            vec![r.as_mut()],
            embassy_futures::join::join(smoltcp_server(host, CLIENTS.len()), clients),
        );
        assert_eq!(grand, 50, "{mode:?}");
        assert!(
            ends.iter().all(|e| *e == CloseReason::Graceful),
            "{mode:?}: {ends:?}"
        );
        for (g, end) in [c1, c2, c3] {
            assert_eq!(end, CloseReason::Graceful, "{mode:?}");
            assert!(g <= 50);
        }
        assert!(
            took < Duration::from_millis(500),
            "{mode:?}: took {} ms",
            took.as_millis()
        );
    }
}

/// bookend-smoltcp's clients against an embassy server: connect with
/// caller data, send the total as disconnect data, read the grand total.
#[test]
fn bookend_smoltcp_clients_against_an_embassy_server() {
    let _clock = clock();
    let wire = Wire::new(Duration::from_millis(1));
    // The embassy server at 10.0.0.1, the smoltcp clients at 10.0.0.2.
    let mut rs = StackResources::<4>::new();
    let (stack, r) = stack(wire.embassy(0), SERVER, &mut rs, 3);
    let listener = Listener::new(PORT, Config::default()).expect("a valid configuration");
    let grand = std::cell::Cell::new(0u64);
    let serve = async |stack: Stack<'_>| {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let incoming = listener
            .accept(TcpSocket::new(stack, &mut rx, &mut tx))
            .await
            .unwrap();
        let name = incoming.caller_data().cloned().unwrap();
        let grant = incoming.grant();
        let welcome = [&b"welcome, "[..], &name[..]].concat();
        let mut conn = incoming.accept(Some(&welcome), grant).await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(conn.recv(&mut buf).await, Ok(0), "FD_CLOSE: recv returns 0");
        let total = conn.recv_disconnect().await.unwrap().unwrap();
        grand.set(grand.get() + u64::from_be_bytes(total[..].try_into().unwrap()));
        conn.send_disconnect(Some(&grand.get().to_be_bytes()))
            .await
            .unwrap();
        conn.close().await
    };
    let servers = join3(serve(stack), serve(stack), serve(stack));

    let mut device = wire.smoltcp(1);
    let mut iface = Interface::new(
        IfaceConfig::new(HardwareAddress::Ip),
        &mut device,
        smol_now(),
    );
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 2), 24)).unwrap();
    });
    let mut host = SmolHost {
        device,
        iface,
        sockets: SocketSet::new(vec![]),
        ep: Endpoint::new(bookend_smoltcp::Config::new(9)).unwrap(),
    };
    let clients = async {
        let server = IpEndpoint::new(IpAddress::v4(10, 0, 0, 1), PORT);
        let mut totals = HashMap::new();
        for (name, total) in CLIENTS {
            let h = host
                .ep
                .connect(
                    &mut host.iface,
                    &mut host.sockets,
                    smol_now(),
                    server,
                    Some(name.as_bytes()),
                    Options::DEFAULT,
                )
                .unwrap();
            totals.insert(h, (name, total));
        }
        let mut results = Vec::new();
        let mut ends = Vec::new();
        loop {
            let mut progress = host.poll();
            while let Some((h, e)) = host.ep.poll_event() {
                progress = true;
                let EndpointEvent::Session(e) = e else {
                    continue;
                };
                let now = smol_now();
                let (name, total) = totals[&h];
                match e {
                    Event::Connected { callee_data, .. } => {
                        assert_eq!(
                            callee_data.as_deref(),
                            Some(format!("welcome, {name}").as_bytes())
                        );
                        host.ep
                            .send_disconnect(&mut host.sockets, h, now, Some(&total.to_be_bytes()))
                            .unwrap();
                    }
                    Event::PeerDisconnected => {
                        let mut buf = [0u8; 8];
                        let n = host.ep.recv_disconnect(h, &mut buf).unwrap().unwrap();
                        results.push(u64::from_be_bytes(buf[..n].try_into().unwrap()));
                        host.ep.close(&mut host.sockets, h, now).unwrap();
                    }
                    Event::Closed(reason) => ends.push(reason),
                    _ => {}
                }
            }
            if results.len() == CLIENTS.len() && host.ep.connection_count() == 0 {
                assert_eq!(
                    host.ep.stats().unconfirmed_closes,
                    0,
                    "every close confirmed"
                );
                break;
            }
            if !progress {
                host.sleep().await;
            }
            embassy_futures::yield_now().await;
        }
        (results, ends)
    };
    let mut r = pin!(runner(r));
    let (((s1, s2, s3), (results, ends)), _) = run(
        &wire,
        Duration::from_secs(60),
        vec![r.as_mut()],
        embassy_futures::join::join(servers, clients),
    );
    assert_eq!(grand.get(), 50);
    assert!(results.contains(&50), "{results:?}");
    assert!(ends.iter().all(|e| *e == CloseReason::Graceful), "{ends:?}");
    for end in [s1, s2, s3] {
        assert_eq!(end, CloseReason::Graceful);
    }
}
