//! The seed scenario on one smoltcp `Interface` over an in-memory device
//! (`Loopback`), served and called by one `Endpoint`, with the poll loop an
//! embedded application needs. `cargo run -p bookend-smoltcp --example loopback_seed`
//!
//! The loop is the part to copy. An in-memory device (a loopback, a queue
//! between two stacks in one program, a simulator) holds packets that
//! `iface.poll_at` does not see: it reports the sockets' next timer, not a
//! packet already waiting in the device. A loop that sleeps until
//! `poll_at` (or `Endpoint::next_poll`) after every poll therefore stalls
//! until a retransmission timer fires, a second or more per exchange. The
//! rule: poll again at once while the interface reports progress
//! (`PollResult::SocketStateChanged`) or a command was issued, and sleep to
//! `Endpoint::next_poll` only when a whole round changed nothing. A real
//! network device also wakes the loop when a packet arrives (an interrupt, a
//! readable file descriptor); the loopback needs no such wake-up because
//! everything it holds arrives within the rounds of progress.
//!
//! Time here is virtual (a sleep moves the clock), so the run is instant and
//! the same every time; firmware reads its clock and sleeps instead.
//! `-- --naive` runs the stalling loop instead, for comparison: it sleeps to
//! `next_poll` after every round. `-- --provided` runs it as firmware
//! would: `Config::small`, with the TCP buffers and the sessions' buffers
//! in storage this program owns (`TcpStorage`, `TcpBuffers::Provided`;
//! `SessionStorage`, `SessionBuffering::Provided`), so the endpoint
//! allocates no payload buffer.

use std::collections::HashMap;

use bookend_smoltcp::session::{SMALL_SESSION_STORAGE, SessionStorage};
use bookend_smoltcp::{
    Bytes, Config, Decision, Endpoint, EndpointEvent, Event, Handle, ListenConfig,
    SessionBuffering, TcpBuffers, TcpStorage,
};
use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

/// The server's port (`docs/protocol.md`'s default).
const PORT: u16 = 7050;

/// The seed's clients: their names (caller data) and transaction totals
/// (disconnect data).
const CLIENTS: [(&str, u64); 3] = [("client-1", 17), ("client-2", 25), ("client-3", 8)];

/// A bound on the run, in virtual time: the scenario takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(60);

fn main() {
    let naive = std::env::args().any(|a| a == "--naive");
    let provided = std::env::args().any(|a| a == "--provided");
    // With `--provided`: 16 sockets of 1 KiB each way (the listener's
    // backlog of 8, the three clients, the server's three connections),
    // here on the stack; firmware puts them in a `static`. Declared before
    // the socket set, which borrows them.
    let mut storage = TcpStorage::<16, 1024, 1024>::new();
    let mut device = Loopback::new(Medium::Ip);
    let mut iface = Interface::new(
        IfaceConfig::new(HardwareAddress::Ip),
        &mut device,
        Instant::ZERO,
    );
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
            .expect("one address fits");
    });
    let mut sockets = SocketSet::new(vec![]);
    let config = if provided {
        let mut c = Config::small(0x5eed);
        c.tcp_buffers = TcpBuffers::Provided;
        c.session_buffers = SessionBuffering::Provided;
        c
    } else {
        Config::new(0x5eed)
    };
    let mut ep = Endpoint::new(config).expect("the configuration is valid");
    if provided {
        for socket in storage.sockets() {
            ep.add_socket(&mut sockets, socket)
                .expect("the endpoint takes provided sockets");
        }
        // Six sessions' buffers (three clients, the server's three
        // connections), `'static` as a session's are: leaked once here,
        // a `static` (`static_cell::ConstStaticCell`) on firmware.
        let sessions: &'static mut SessionStorage<6, SMALL_SESSION_STORAGE> =
            Box::leak(Box::new(SessionStorage::new()));
        for b in sessions
            .buffers(&ep.config().session)
            .expect("sized for Config::small")
        {
            ep.add_session_buffers(b)
                .expect("the endpoint takes session buffers");
        }
    }
    let server = IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), PORT);

    // The server: the condition function (WSAAccept's) sees the caller data
    // before anything is committed, and accepts with a welcome.
    let l = ep
        .listen(&mut sockets, PORT, ListenConfig::default())
        .expect("port 7050 is free");
    ep.accept_with(l, |req| Decision::Accept {
        callee_data: Some(Bytes::from(format!(
            "welcome, {}",
            String::from_utf8_lossy(req.caller_data.as_deref().unwrap_or_default())
        ))),
        granted: req.grant,
    });

    // The clients: WSAConnect with their names as caller data, proposing
    // the configuration's options.
    let options = ep.config().session.options;
    let mut now = Instant::ZERO;
    let mut clients: HashMap<Handle, u64> = HashMap::new();
    for (name, total) in CLIENTS {
        let h = ep
            .connect(
                &mut iface,
                &mut sockets,
                now,
                server,
                Some(name.as_bytes()),
                options,
            )
            .expect("a connect with valid options");
        clients.insert(h, total);
    }

    let mut grand_total = 0u64;
    let mut answered = 0;
    let mut sleeps = 0;
    // Until every client has its answer and every connection has closed.
    while answered < CLIENTS.len() || ep.connection_count() > 0 {
        assert!(now < Instant::ZERO + DEADLINE, "the scenario stalled");
        // 1. The interface, 2. the endpoint.
        let progress = iface.poll(now, &mut device, &mut sockets) == PollResult::SocketStateChanged;
        ep.poll(now, &mut sockets);
        // 3. Every event, acted on with the endpoint's commands.
        let mut commanded = false;
        while let Some((h, e)) = ep.poll_event() {
            let Some(e) = (match e {
                EndpointEvent::Session(e) => Some(e),
                // Accepted by the condition function: the server's new
                // connection; its events follow.
                EndpointEvent::Accepted(_) | EndpointEvent::Incoming(_) => None,
            }) else {
                continue;
            };
            commanded |= act(
                &mut ep,
                &mut sockets,
                now,
                h,
                e,
                &clients,
                &mut grand_total,
                &mut answered,
            );
        }
        // 4. Progress: poll again at once (what a command queued goes out,
        // and the loopback's packets come in). Nothing changed: sleep to the
        // endpoint's next deadline.
        if (progress || commanded) && !naive {
            continue;
        }
        match ep.next_poll(now, &mut iface, &sockets) {
            Some(at) if at > now => {
                now = at;
                sleeps += 1;
            }
            Some(_) => {}
            None if naive => {
                println!(
                    "the naive loop stalled at {} ms: nothing is due, and the packets waiting in the device are invisible to next_poll",
                    now.total_millis()
                );
                return;
            }
            None => panic!("nothing left to wait for, and the scenario is not done"),
        }
    }
    println!(
        "{} clients answered and closed, grand total {grand_total}, in {} ms of virtual time ({sleeps} sleeps)",
        CLIENTS.len(),
        now.total_millis()
    );
    if provided {
        println!(
            "{} provided sockets: {} listening, {} free; {} session buffers, {} free; the endpoint allocated no payload buffer",
            ep.provided_socket_count(),
            ep.listening_socket_count(),
            ep.free_socket_count(),
            ep.provided_session_buffers_count(),
            ep.free_session_buffers_count()
        );
    }
}

/// One event of connection `h`, as the seed's server and clients act on it.
/// Returns whether a command was issued.
#[allow(clippy::too_many_arguments)]
fn act(
    ep: &mut Endpoint,
    sockets: &mut SocketSet<'_>,
    now: Instant,
    h: Handle,
    e: Event,
    clients: &HashMap<Handle, u64>,
    grand_total: &mut u64,
    answered: &mut usize,
) -> bool {
    let mut buf = [0u8; 64];
    match (clients.get(&h), e) {
        // Client, step 1: connected, with the server's welcome: send the
        // transaction total as disconnect data (WSASendDisconnect).
        (Some(total), Event::Connected { callee_data, .. }) => {
            println!(
                "client connected: {}",
                String::from_utf8_lossy(callee_data.as_deref().unwrap_or_default())
            );
            ep.send_disconnect(sockets, h, now, Some(&total.to_be_bytes()))
                .expect("connected");
            true
        }
        // Server, steps 2-4: FD_CLOSE, the client's total
        // (WSARecvDisconnect); answer with the grand total so far, then
        // closesocket at once (step 5a: everything is still delivered).
        (None, Event::PeerDisconnected) => {
            let n = ep
                .recv_disconnect(h, &mut buf)
                .expect("disconnect data arrived")
                .unwrap_or(0);
            let total = u64::from_be_bytes(buf[..n].try_into().unwrap_or([0; 8]));
            *grand_total += total;
            ep.send_disconnect(sockets, h, now, Some(&grand_total.to_be_bytes()))
                .expect("the send half is open");
            ep.close(sockets, h, now).expect("a live handle");
            true
        }
        // Client, steps 6-8: FD_CLOSE, the grand total, closesocket.
        (Some(total), Event::PeerDisconnected) => {
            let n = ep
                .recv_disconnect(h, &mut buf)
                .expect("disconnect data arrived")
                .unwrap_or(0);
            let grand = u64::from_be_bytes(buf[..n].try_into().unwrap_or([0; 8]));
            println!("client sent {total}, server's grand total {grand}");
            ep.close(sockets, h, now).expect("a live handle");
            *answered += 1;
            true
        }
        (_, Event::Closed(reason)) => {
            assert!(
                matches!(reason, bookend_smoltcp::CloseReason::Graceful),
                "a connection ended {reason:?}"
            );
            false
        }
        _ => false,
    }
}
