//! The seed scenario with bookend-embassy: a server and three clients, each
//! on its own embassy-net stack, joined by a simulated wire (1 ms each way)
//! in virtual time. `cargo run -p bookend-embassy --example seed`
//!
//! The client (1) sends its transaction total with WSASendDisconnect; the
//! server (2) sees FD_CLOSE, (3) reads the total, (4) adds it to the grand
//! total, (5) sends that back and (5a) closes at once; the client (6-7)
//! reads the grand total and (8) closes. On hardware the same `serve` and
//! `client` functions run in embassy tasks, the stacks' runners in tasks of
//! their own, and the wire is the board's network driver.
//!
//! No payload byte is on the heap: the TCP buffers are the tasks' own
//! arrays, and the sessions' buffers come from a `SessionPool` on each side
//! (three connections each), filled from `SessionStorage`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::cell::Cell;
use std::pin::pin;

use bookend_embassy::session::{SMALL_SESSION_STORAGE, SessionStorage};
use bookend_embassy::{Config, Listener, SessionPool, connect};
use embassy_futures::join::{join, join3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_time::Duration;

const PORT: u16 = 7050;
const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);

/// One server task: accept a caller with a welcome naming it, then steps
/// (2) to (5a).
async fn serve(stack: Stack<'_>, listener: &Listener, grand: &Cell<u64>) {
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let incoming = listener
        .accept(TcpSocket::new(stack, &mut rx, &mut tx))
        .await
        .expect("listening");
    // The condition function's view: caller address and data, before
    // anything is committed.
    let name =
        String::from_utf8_lossy(incoming.caller_data().map_or(&[][..], |d| &d[..])).into_owned();
    let welcome = format!("welcome, {name}");
    let grant = incoming.grant();
    let mut conn = incoming
        .accept(Some(welcome.as_bytes()), grant)
        .await
        .expect("a valid grant");
    let total = conn.recv_disconnect().await.expect("(3)").expect("a total");
    grand.set(grand.get() + u64::from_be_bytes(total[..].try_into().expect("8 bytes")));
    conn.send_disconnect(Some(&grand.get().to_be_bytes()))
        .await
        .expect("(5)");
    conn.close().await; // (5a)
}

/// One client task: steps (1), (6-7) and (8).
async fn client(stack: Stack<'_>, config: &Config, name: &str, total: u64) {
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let socket = TcpSocket::new(stack, &mut rx, &mut tx);
    let (mut conn, welcome) = connect(
        socket,
        (SERVER, PORT),
        Some(name.as_bytes()),
        bookend_embassy::FIRMWARE_OPTIONS,
        config,
    )
    .await
    .expect("accepted");
    println!(
        "{name} connected: {}",
        String::from_utf8_lossy(welcome.as_deref().unwrap_or_default())
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
    let end = conn.close().await; // (8)
    println!("{name} sent {total}, server's grand total {grand}, closed {end:?}");
}

fn main() {
    let _clock = support::clock();
    let wire = support::Wire::new(Duration::from_millis(1));
    let ip = |addr| {
        embassy_net::Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(addr, 24),
            gateway: None,
            dns_servers: Default::default(),
        })
    };
    let mut rs = StackResources::<4>::new();
    let mut rc = StackResources::<4>::new();
    let (server_stack, mut server_runner) =
        embassy_net::new(wire.embassy(0), ip(SERVER), &mut rs, 1);
    let (client_stack, mut client_runner) = embassy_net::new(
        wire.embassy(1),
        ip(Ipv4Address::new(10, 0, 0, 2)),
        &mut rc,
        2,
    );

    // Each side's sessions' buffers: a pool in a `static`, filled from
    // storage that is `'static` as a session's is (leaked once here; a
    // `static_cell::ConstStaticCell` on firmware).
    static SERVER_POOL: SessionPool = SessionPool::new();
    static CLIENT_POOL: SessionPool = SessionPool::new();
    let pooled = |pool: &'static SessionPool| {
        let mut config = Config::default();
        let storage: &'static mut SessionStorage<3, SMALL_SESSION_STORAGE> =
            Box::leak(Box::new(SessionStorage::new()));
        for b in storage.buffers(&config.session).expect("sized for it") {
            pool.add(b);
        }
        config.session_buffers = Some(pool);
        config
    };
    let server_config = pooled(&SERVER_POOL);
    let client_config = pooled(&CLIENT_POOL);
    let listener = Listener::new(PORT, server_config).expect("a valid configuration");
    let grand = Cell::new(0);
    let servers = join3(
        serve(server_stack, &listener, &grand),
        serve(server_stack, &listener, &grand),
        serve(server_stack, &listener, &grand),
    );
    let clients = join3(
        client(client_stack, &client_config, "client-1", 17),
        client(client_stack, &client_config, "client-2", 25),
        client(client_stack, &client_config, "client-3", 8),
    );
    let mut a = pin!(async { server_runner.run().await });
    let mut b = pin!(async { client_runner.run().await });
    let (_, took) = support::run(
        &wire,
        Duration::from_secs(60),
        vec![a.as_mut(), b.as_mut()],
        join(servers, clients),
    );
    println!(
        "3 clients answered and closed, grand total {}, in {} ms of virtual time",
        grand.get(),
        took.as_millis()
    );
    println!(
        "session buffers back in their pools: server {}, client {}",
        SERVER_POOL.free(),
        CLIENT_POOL.free()
    );
}
