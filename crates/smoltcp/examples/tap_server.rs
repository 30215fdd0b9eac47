//! The seed scenario's server on a Linux TAP device, in real time: an
//! `Endpoint` on a smoltcp `Interface` over a real network device, with the
//! loop an appliance runs. It polls, acts on every event, polls again at
//! once while anything changed, and otherwise sleeps on the device until a
//! frame arrives or `Endpoint::next_poll` is due.
//!
//! ```sh
//! # as root (or after `ip tuntap add bktapex0 mode tap user $USER`):
//! cargo run -p bookend-smoltcp --example tap_server -- bktapex0 10.78.0.2/24 2
//! # in another shell, the host's side of the device and two clients over
//! # the kernel's TCP:
//! ip addr add 10.78.0.1/24 dev bktapex0 && ip link set bktapex0 up
//! cargo run -p bookend-tokio --example seed_client -- 10.78.0.2:7050 client-1 17
//! cargo run -p bookend-tokio --example seed_client -- 10.78.0.2:7050 client-2 25
//! ```
//!
//! Arguments: the TAP device (created if absent, and gone when the program
//! ends unless it was made persistent), the server's address, and how many
//! clients to serve before exiting (default: serve until killed).
//! `--provided` runs it as firmware would: `Config::small` over TCP and
//! session buffers the program owns (`TcpStorage`, `TcpBuffers::Provided`;
//! `SessionStorage`, `SessionBuffering::Provided`). It gives
//! up after 60 s without finishing, so that CI can run it with a bound.

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    linux::main()
}

/// TAP devices (smoltcp's `TunTapInterface`) are Linux's.
#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tap_server needs a Linux TAP device");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::unix::io::AsRawFd;
    use std::time::Duration as StdDuration;

    use bookend_smoltcp::session::{SMALL_SESSION_STORAGE, SessionStorage};
    use bookend_smoltcp::{
        Bytes, Config, Decision, Endpoint, EndpointEvent, Event, ListenConfig, SessionBuffering,
        TcpBuffers, TcpStorage,
    };
    use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet};
    use smoltcp::phy::{Medium, TunTapInterface, wait};
    use smoltcp::time::{Duration, Instant};
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

    /// The server's port (`docs/protocol.md`'s default).
    const PORT: u16 = 7050;

    /// Without finishing within this, the program gives up.
    const LIMIT: StdDuration = StdDuration::from_secs(60);

    /// The longest sleep: a stop condition (the limit) is checked at least this
    /// often, whatever the endpoint's deadlines.
    const MAX_SLEEP: Duration = Duration::from_millis(100);

    pub(crate) fn main() -> Result<(), Box<dyn std::error::Error>> {
        let provided = std::env::args().any(|a| a == "--provided");
        let mut args = std::env::args().skip(1).filter(|a| a != "--provided");
        let tap = args.next().unwrap_or_else(|| "bktapex0".into());
        let addr: IpCidr = args
            .next()
            .unwrap_or_else(|| "10.78.0.2/24".into())
            .parse()
            .map_err(|()| "the address must be ADDR/PREFIX")?;
        let clients: Option<u64> = args.next().map(|n| n.parse()).transpose()?;

        // With `--provided`: firmware's set-up, `Config::small` over TCP
        // buffers this program owns (16 sockets of 1 KiB each way: the
        // listener's backlog of 8 and 8 connections), not the heap's.
        let mut storage = TcpStorage::<16, 1024, 1024>::new();
        let mut config = Config::from_os_entropy();
        if provided {
            let seed = config.seed;
            config = Config::small(seed);
            config.tcp_buffers = TcpBuffers::Provided;
            config.session_buffers = SessionBuffering::Provided;
        }
        let mut device = TunTapInterface::new(&tap, Medium::Ethernet)?;
        let fd = device.as_raw_fd();
        // A locally administered unicast MAC; the interface's ISN seed from the
        // same entropy as the endpoint's (smoltcp's default seed is 0).
        let seed = config.interface_seed();
        let b = seed.to_be_bytes();
        let mac = EthernetAddress([0x02, b[3], b[4], b[5], b[6], b[7]]);
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        iface_config.random_seed = seed;
        let mut iface = Interface::new(iface_config, &mut device, Instant::now());
        iface.update_ip_addrs(|a| {
            let _ = a.push(addr);
        });
        let mut sockets = SocketSet::new(vec![]);
        let mut ep = Endpoint::new(config)?;
        if provided {
            for socket in storage.sockets() {
                ep.add_socket(&mut sockets, socket)?;
            }
            // One session's buffers per connection (8), `'static` as a
            // session's are: leaked once here, a `static` on firmware.
            let sessions: &'static mut SessionStorage<8, SMALL_SESSION_STORAGE> =
                Box::leak(Box::new(SessionStorage::new()));
            for b in sessions.buffers(&ep.config().session)? {
                ep.add_session_buffers(b).map_err(|e| e.error)?;
            }
        }

        // WSAAccept's condition function: the caller's data is seen before
        // anything is committed, and the answer carries the callee's.
        let l = ep.listen(&mut sockets, PORT, ListenConfig::default())?;
        ep.accept_with(l, |req| Decision::Accept {
            callee_data: Some(Bytes::from(format!(
                "welcome, {}",
                String::from_utf8_lossy(req.caller_data.as_deref().unwrap_or_default())
            ))),
            granted: req.grant,
        });
        println!(
            "listening on {}:{PORT} ({tap}{})",
            addr.address(),
            if provided {
                ", provided TCP and session buffers"
            } else {
                ""
            }
        );

        let start = std::time::Instant::now();
        let (mut grand_total, mut served) = (0u64, 0u64);
        loop {
            if start.elapsed() > LIMIT {
                return Err(format!("gave up after {LIMIT:?}: {served} clients served").into());
            }
            let now = Instant::now();
            // 1. The interface, 2. the endpoint.
            let changed =
                iface.poll(now, &mut device, &mut sockets) == PollResult::SocketStateChanged;
            ep.poll(now, &mut sockets);
            // 3. Every event, acted on.
            let mut commanded = false;
            while let Some((h, e)) = ep.poll_event() {
                match e {
                    // Steps 2-5a: FD_CLOSE; the client's total
                    // (WSARecvDisconnect); the grand total back
                    // (WSASendDisconnect), and closesocket at once.
                    EndpointEvent::Session(Event::PeerDisconnected) => {
                        // One client's mistake (a total that is not 8
                        // bytes, an ABORT right behind its DISCONNECT)
                        // ends its connection, not the server.
                        match serve(&mut ep, &mut sockets, h, now, &mut grand_total) {
                            Ok(total) => {
                                println!("a client's total {total}, grand total {grand_total}");
                                served += 1;
                            }
                            Err(e) => {
                                println!("a client not served: {e}");
                                let _ = ep.close(&mut sockets, h, now);
                            }
                        }
                        commanded = true;
                    }
                    // Ended before step 5a (a reset, a timer): nothing to serve.
                    EndpointEvent::Session(Event::Closed(reason)) => {
                        println!("a connection ended early: {reason}");
                        let _ = ep.close(&mut sockets, h, now);
                        commanded = true;
                    }
                    _ => {}
                }
            }
            // Served, and every lingering close delivered (5a): done.
            if clients.is_some_and(|n| served >= n) && ep.connection_count() == 0 {
                println!("{served} clients served, grand total {grand_total}");
                return Ok(());
            }
            // 4. Anything changed or queued: poll again at once. Otherwise
            // sleep until a frame arrives or the next deadline.
            if changed || commanded {
                continue;
            }
            let delay = ep
                .next_poll(now, &mut iface, &sockets)
                .map_or(
                    MAX_SLEEP,
                    |at| if at > now { at - now } else { Duration::ZERO },
                )
                .min(MAX_SLEEP);
            wait(fd, Some(delay))?;
        }
    }

    /// Steps 3-5a for connection `h`: the client's total from its disconnect
    /// data, the grand total back as ours, and closesocket at once.
    fn serve(
        ep: &mut Endpoint,
        sockets: &mut SocketSet<'_>,
        h: bookend_smoltcp::Handle,
        now: Instant,
        grand_total: &mut u64,
    ) -> Result<u64, Box<dyn std::error::Error>> {
        let data = ep.recv_disconnect_bytes(h)?.unwrap_or_default();
        let total = u64::from_be_bytes(
            data[..]
                .try_into()
                .map_err(|_| "the total is not 8 bytes")?,
        );
        // Counted once the answer is on its way.
        let grand = *grand_total + total;
        ep.send_disconnect(sockets, h, now, Some(&grand.to_be_bytes()))?;
        *grand_total = grand;
        ep.close(sockets, h, now)?;
        Ok(total)
    }
}
