//! The seed scenario across two TCP stacks and two bookend drivers on real
//! packets: three clients on bookend-embassy over embassy-net on a TAP
//! device (embassy's own `embassy-net-tuntap` driver, embassy's std
//! executor and clock), a server on bookend-tokio over the kernel's TCP,
//! answering at the TAP device's host address. `.ci/run` runs it where it
//! is root with `/dev/net/tun`; it creates the TAP device and deletes it.
//!
//! Usage: `embassy-tap` (exit 0 when every client got its grand total and
//! every session ended gracefully).

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use bookend_embassy::{CloseReason, Config, connect};
use embassy_executor::{Executor, Spawner};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use static_cell::StaticCell;

const TAP: &str = "bkemb0";
const HOST: &str = "192.168.69.1";
const PORT: u16 = 7050;
const CLIENTS: [(&str, u64); 3] = [("client-1", 17), ("client-2", 25), ("client-3", 8)];

/// The TAP device, deleted when this is dropped (also on a panic).
struct Tap;

impl Tap {
    fn create() -> Self {
        // A device left by an interrupted run goes first (quietly: usually
        // there is none).
        let _ = Command::new("ip")
            .args(["link", "del", TAP])
            .stderr(std::process::Stdio::null())
            .status();
        assert!(
            ip(&["tuntap", "add", "name", TAP, "mode", "tap"]),
            "ip tuntap add (root and /dev/net/tun needed)"
        );
        let tap = Self;
        assert!(ip(&["addr", "add", &format!("{HOST}/24"), "dev", TAP]));
        assert!(ip(&["link", "set", TAP, "up"]));
        tap
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", TAP]);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// The seed's server on bookend-tokio (steps 2-5a), in its own thread.
fn server(done: mpsc::Sender<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let mut listener = bookend_tokio::Listener::bind(
            (HOST, PORT),
            bookend_tokio::Config::default(),
            bookend_tokio::ListenConfig::default(),
        )
        .await
        .expect("bind on the TAP device's address");
        let mut grand = 0u64;
        for _ in CLIENTS {
            let req = listener.accept().await.expect("a caller");
            let name =
                String::from_utf8_lossy(req.caller_data().expect("caller data")).into_owned();
            let grant = req.grant();
            let conn = req
                .accept(Some(format!("welcome, {name}").as_bytes()), grant)
                .await
                .expect("accepted");
            let total = conn.recv_disconnect().await.expect("(3)").expect("a total");
            grand += u64::from_be_bytes(total[..].try_into().expect("8 bytes"));
            conn.send_disconnect(Some(&grand.to_be_bytes()))
                .await
                .expect("(5)");
            let end = conn.close().await;
            let _ = done.send(format!("server: {name} ended {end}"));
        }
    });
}

#[embassy_executor::task]
async fn net(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task(pool_size = 3)]
async fn client(stack: Stack<'static>, name: &'static str, total: u64, done: mpsc::Sender<String>) {
    let rx = Box::leak(Box::new([0u8; 2048]));
    let tx = Box::leak(Box::new([0u8; 2048]));
    let socket = TcpSocket::new(stack, rx, tx);
    let host = Ipv4Address::new(192, 168, 69, 1);
    let (mut conn, welcome) = connect(
        socket,
        (host, PORT),
        Some(name.as_bytes()),
        bookend_embassy::FIRMWARE_OPTIONS,
        &Config::default(),
    )
    .await
    .expect("accepted by bookend-tokio");
    assert_eq!(
        welcome.as_deref(),
        Some(format!("welcome, {name}").as_bytes())
    );
    conn.send_disconnect(Some(&total.to_be_bytes()))
        .await
        .expect("(1)");
    let grand = conn
        .recv_disconnect()
        .await
        .expect("(7)")
        .expect("a grand total");
    let grand = u64::from_be_bytes(grand[..].try_into().expect("8 bytes"));
    let end = conn.close().await;
    assert_eq!(end, CloseReason::Graceful, "{name}");
    let _ = done.send(format!("{name}: sent {total}, grand total {grand}, {end}"));
}

/// The scenario is over: a panic from here on is the TAP driver's, as its
/// device goes away.
static FINISHED: AtomicBool = AtomicBool::new(false);

fn main() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !FINISHED.load(Ordering::SeqCst) {
            default_hook(info);
        }
    }));
    let tap = Tap::create();
    let (done, results) = mpsc::channel();
    let server_done = done.clone();
    std::thread::spawn(move || server(server_done));
    std::thread::spawn(move || {
        static EXECUTOR: StaticCell<Executor> = StaticCell::new();
        EXECUTOR.init(Executor::new()).run(move |spawner: Spawner| {
            let device = TunTapDevice::new(TAP).expect("the TAP device opens");
            static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
            let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
                address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 69, 2), 24),
                gateway: None,
                dns_servers: Default::default(),
            });
            let (stack, runner) = embassy_net::new(
                device,
                config,
                RESOURCES.init(StackResources::new()),
                0x5eed,
            );
            spawner.spawn(net(runner).expect("one net task"));
            for (name, total) in CLIENTS {
                spawner
                    .spawn(client(stack, name, total, done.clone()).expect("three client tasks"));
            }
        });
    });
    let mut lines = Vec::new();
    while lines.len() < 2 * CLIENTS.len() {
        match results.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                println!("{line}");
                lines.push(line);
            }
            Err(_) => {
                drop(tap);
                eprintln!("the seed scenario over TAP did not finish within 60 s");
                std::process::exit(1);
            }
        }
    }
    // Deleting the device ends embassy-net-tuntap's reads with an error it
    // panics on, in the executor's thread: expected now, and not shown.
    FINISHED.store(true, Ordering::SeqCst);
    drop(tap);
    assert!(
        lines.iter().any(|l| l.contains("grand total 50")),
        "the last client sees 50"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("server"))
            .all(|l| l.ends_with("graceful"))
    );
    println!(
        "seed scenario over TAP: 3 clients on bookend-embassy, server on bookend-tokio, all graceful"
    );
    std::process::exit(0);
}
