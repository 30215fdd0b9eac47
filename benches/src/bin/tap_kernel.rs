//! bookend over a TAP device against a Linux kernel TCP peer, next to raw
//! smoltcp under the same conditions (the model is smoltcp's
//! `examples/benchmark.rs`). Not run in CI: it needs root and a namespace.
//!
//! ```sh
//! cargo build --release -p bookend-benches --bin tap_kernel
//! ip netns add bkbench
//! ip netns exec bkbench target/release/tap_kernel [MiB]
//! ip netns del bkbench
//! ```
//!
//! Inside the namespace the binary creates TAP device `bkb0`, gives the kernel
//! side 10.88.0.1/24 on it (smoltcp is 10.88.0.2), and for each variant lets
//! smoltcp send N MiB to a kernel listener: raw TCP, whose kernel reader
//! discards the bytes, and bookend, whose kernel peer is a `bookend-session`
//! callee over a std `TcpStream` (sans-IO makes that a few lines).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Instant as Wall;

use bookend_session::{
    Config as SessionConfig, Event, Instant as SInstant, Options, Session, TransportAction,
    TransportClosed,
};
use bookend_sim::tap::TapHost;
use bookend_smoltcp::{Config, Endpoint, EndpointEvent};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};

const TAP: &str = "bkb0";
const KERNEL: IpAddress = IpAddress::v4(10, 88, 0, 1);
const BUF: usize = 256 * 1024;

fn sh(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {} failed", args.join(" "));
}

/// Kernel side, raw: accept one connection and read until EOF.
fn kernel_raw(listener: TcpListener) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
}

/// Kernel side, bookend: a callee session over a kernel TCP stream.
fn kernel_bookend(listener: TcpListener) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let t0 = std::time::Instant::now();
        let now = || SInstant::from_micros(t0.elapsed().as_micros() as u64);
        let mut cfg = SessionConfig::default();
        cfg.recv_buffer = 1 << 20;
        let mut session = Session::callee(cfg, 1, now()).unwrap();
        let mut inbuf = vec![0u8; 1 << 20];
        let mut out = vec![0u8; 64 * 1024];
        let mut sink = vec![0u8; 1 << 20];
        let mut total = 0;
        let flush = |session: &mut Session, s: &mut TcpStream, out: &mut [u8]| {
            loop {
                let n = session.poll_transmit(now(), out);
                if n == 0 {
                    break;
                }
                s.write_all(&out[..n]).unwrap();
            }
            while let Some(a) = session.poll_transport_action() {
                if a == TransportAction::Fin {
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
            }
        };
        loop {
            let n = match s.read(&mut inbuf) {
                Ok(0) | Err(_) => {
                    session.handle_transport_closed(now(), TransportClosed::Fin);
                    return total;
                }
                Ok(n) => n,
            };
            let mut at = 0;
            while at < n {
                at += session.handle_bytes(now(), &inbuf[at..n]);
                while let Ok(k) = session.recv(&mut sink) {
                    if k == 0 {
                        break;
                    }
                    total += k;
                }
            }
            while let Some(e) = session.poll_event() {
                match e {
                    Event::ConnectRequest(req) => session.accept(now(), None, req.grant).unwrap(),
                    Event::PeerDisconnected => {
                        let _ = session.send_disconnect(now(), Some(&(total as u64).to_be_bytes()));
                    }
                    _ => {}
                }
            }
            flush(&mut session, &mut s, &mut out);
        }
    })
}

fn run_raw(host: &mut TapHost, bytes: usize) -> f64 {
    let debug = std::env::var_os("TAP_KERNEL_DEBUG").is_some();
    let listener = TcpListener::bind((std::net::Ipv4Addr::new(10, 88, 0, 1), 7001)).unwrap();
    if debug {
        eprintln!("bound");
    }
    let reader = kernel_raw(listener);
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUF]),
        tcp::SocketBuffer::new(vec![0; BUF]),
    );
    s.set_nagle_enabled(false);
    s.connect(host.iface.context(), (KERNEL, 7001), 40001)
        .unwrap();
    let h = host.sockets.add(s);
    let data = vec![0x42u8; 64 * 1024];
    let mut sent = 0;
    let mut start = None;
    let mut elapsed = None;
    let mut last_report = Wall::now();
    let mut loops = 0u64;
    if debug {
        eprintln!("running");
    }
    host.run(|_now, _iface, sockets| {
        loops += 1;
        let s = sockets.get_mut::<tcp::Socket>(h);
        if debug && (loops < 30 || loops.is_multiple_of(200)) {
            eprintln!(
                "loop {loops}: {} sent {sent} queue {} win?",
                s.state(),
                s.send_queue()
            );
        }
        if std::env::var_os("TAP_KERNEL_DEBUG").is_some() && last_report.elapsed().as_secs() >= 1 {
            eprintln!(
                "raw: state {} sent {sent} queue {}",
                s.state(),
                s.send_queue()
            );
            last_report = Wall::now();
        }
        if s.may_send() && start.is_none() {
            start = Some(Wall::now());
        }
        while sent < bytes && s.can_send() {
            match s.send_slice(&data[..(bytes - sent).min(data.len())]) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        if sent == bytes && s.send_queue() == 0 {
            // Everything acknowledged: that is the measurement. Then close,
            // and keep polling until the FIN is out and answered.
            if elapsed.is_none() {
                elapsed = start.map(|t: Wall| t.elapsed());
                s.close();
            }
            if matches!(
                s.state(),
                tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
            ) {
                return None;
            }
        }
        Some(None)
    })
    .unwrap();
    let total = reader.join().unwrap();
    assert_eq!(total, bytes);
    bytes as f64 * 8.0 / elapsed.unwrap().as_secs_f64() / 1e9
}

fn run_bookend(host: &mut TapHost, bytes: usize) -> f64 {
    let listener = TcpListener::bind((std::net::Ipv4Addr::new(10, 88, 0, 1), 7002)).unwrap();
    let reader = kernel_bookend(listener);
    let mut config = Config::new(99);
    config.tcp_rx_buffer = BUF;
    config.tcp_tx_buffer = BUF;
    let mut ep = Endpoint::new(config).unwrap();
    let now = Instant::now();
    let c = ep
        .connect(
            &mut host.iface,
            &mut host.sockets,
            now,
            IpEndpoint::new(KERNEL, 7002),
            None,
            Options::DEFAULT,
        )
        .unwrap();
    let data = vec![0x42u8; 64 * 1024];
    let (mut sent, mut connected, mut start, mut elapsed, mut peer_total) =
        (0, false, None, None, None);
    let debug = std::env::var_os("TAP_KERNEL_DEBUG").is_some();
    let mut loops = 0u64;
    host.run(|now, _iface, sockets| {
        loops += 1;
        if debug && (loops < 20 || loops.is_multiple_of(1000)) {
            let q = ep.state(c).zip(ep.send_queue(c));
            eprintln!("bookend loop {loops}: connected {connected} sent {sent} session {q:?}");
        }
        ep.poll(now, sockets);
        while let Some((_, e)) = ep.poll_event() {
            match e {
                EndpointEvent::Session(Event::Connected { .. }) => {
                    connected = true;
                    start = Some(Wall::now());
                }
                // The kernel peer's answer: how many bytes it received.
                EndpointEvent::Session(Event::PeerDisconnected) => {
                    let mut b = [0u8; 8];
                    if let Ok(Some(8)) = ep.recv_disconnect(c, &mut b) {
                        peer_total = Some(u64::from_be_bytes(b));
                    }
                    let _ = ep.close(sockets, c, now);
                }
                _ => {}
            }
        }
        if connected {
            while sent < bytes {
                match ep.send(sockets, c, now, &data[..(bytes - sent).min(data.len())]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
        }
        ep.poll(now, sockets);
        let acked = sent == bytes
            && ep.send_queue(c) == Some(0)
            && sockets.iter().all(|(_, s)| match s {
                smoltcp::socket::Socket::Tcp(t) => t.send_queue() == 0,
                #[allow(unreachable_patterns)]
                _ => true,
            });
        if acked && elapsed.is_none() {
            // Everything acknowledged: that is the measurement. Then end the
            // session properly: the kernel peer answers with its byte count.
            elapsed = start.map(|t: Wall| t.elapsed());
            let _ = ep.send_disconnect(sockets, c, now, None);
            ep.poll(now, sockets);
        }
        if elapsed.is_some() {
            if debug && loops.is_multiple_of(50) {
                let st = (ep.state(c), ep.send_queue(c), ep.peer_disconnected(c));
                eprintln!(
                    "tail {loops}: session {st:?} conns {} peer_total {peer_total:?}",
                    ep.connection_count()
                );
            }
            ep.poll(now, sockets);
            if peer_total.is_some() && ep.connection_count() == 0 {
                return None;
            }
        }
        Some(ep.poll_at(now))
    })
    .unwrap();
    let total = reader.join().unwrap();
    assert_eq!(total, bytes, "kernel peer received");
    assert_eq!(
        peer_total,
        Some(bytes as u64),
        "and said so in its disconnect data"
    );
    bytes as f64 * 8.0 / elapsed.unwrap().as_secs_f64() / 1e9
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let bytes = mib << 20;
    let mut host = TapHost::open(TAP, IpCidr::new(IpAddress::v4(10, 88, 0, 2), 24), None, 7)
        .unwrap_or_else(|e| {
            eprintln!("tap_kernel: {e}");
            std::process::exit(2)
        });
    let debug = std::env::var_os("TAP_KERNEL_DEBUG").is_some();
    if debug {
        eprintln!("tap open");
    }
    sh(&["link", "set", "lo", "up"]);
    sh(&["addr", "add", "10.88.0.1/24", "dev", TAP]);
    sh(&["link", "set", TAP, "up"]);
    if debug {
        eprintln!("addresses set");
    }
    let raw = run_raw(&mut host, bytes);
    let be = run_bookend(&mut host, bytes);
    println!("smoltcp on TAP sending {mib} MiB to a Linux kernel TCP peer");
    println!("raw smoltcp TCP  {raw:>8.3} Gbit/s");
    println!("bookend          {be:>8.3} Gbit/s");
    println!("ratio            {:>8.3}", be / raw);
}
