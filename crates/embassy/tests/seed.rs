//! The seed scenario (the transaction totals of WSASendDisconnect's
//! documentation) played by bookend-embassy over embassy-net stacks on a
//! simulated wire, in virtual time: against itself in both modes, under
//! loss, and against bookend-smoltcp on the same wire.
//!
//! Steps as the seed's table numbers them: the client (1) sends its
//! transaction total with WSASendDisconnect; the server (2) gets FD_CLOSE
//! (`recv` returns 0 in stream mode, WSAEDISCON in message mode), (3) reads
//! the total with WSARecvDisconnect, (4) adds it to the grand total, (5)
//! sends that with WSASendDisconnect and (5a) closes at once; the client (6)
//! gets FD_CLOSE, (7) reads the grand total and (8) closes.

mod support;

use std::cell::Cell;
use std::pin::pin;

use bookend_embassy::session::SessionBuffers;
use bookend_embassy::{
    CloseReason, Config, ConnectError, Error, Listener, Mode, Options, Reason, SessionPool, connect,
};
use embassy_futures::join::{join, join3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Stack, StackResources};
use embassy_time::{Duration, Timer};
use support::{CLIENT, SERVER, TwoStacks, Wire, accept_one, clock, run, runner, stack};

const PORT: u16 = 7050;

/// The seed's clients: names (caller data) and transaction totals.
const CLIENTS: [(&str, u64); 3] = [("client-1", 17), ("client-2", 25), ("client-3", 8)];

/// TCP buffers per socket: small, as firmware's are.
const BUF: usize = 1024;

fn serves_both_modes() -> Config {
    let mut session = bookend_embassy::firmware_session_config();
    session.offered_modes = bookend_embassy::session::ModeOffer::Both;
    Config::with_session(session)
}

fn options(mode: Mode) -> Options {
    Options {
        mode,
        ..bookend_embassy::FIRMWARE_OPTIONS
    }
}

/// One server slot: accepts one caller with a welcome naming it, reads its
/// transactions and its total, answers with the grand total, closes (5a).
/// Returns the client's total and how the session ended.
async fn serve_one(stack: Stack<'_>, listener: &Listener, grand: &Cell<u64>) -> (u64, CloseReason) {
    let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
    let incoming = listener
        .accept(TcpSocket::new(stack, &mut rx, &mut tx))
        .await
        .expect("the listener arms");
    let name = String::from_utf8(incoming.caller_data().expect("caller data").to_vec()).unwrap();
    let welcome = format!("welcome, {name}");
    let grant = incoming.grant();
    let mut conn = incoming
        .accept(Some(welcome.as_bytes()), grant)
        .await
        .expect("a valid grant");
    // (2) FD_CLOSE after the transactions: recv returns 0, or WSAEDISCON.
    let mut count = 0u64;
    let mut buf = [0u8; 64];
    match conn.options().mode {
        Mode::Stream => loop {
            match conn.recv(&mut buf).await {
                Ok(0) => break,
                Ok(n) => count += n as u64,
                Err(e) => panic!("server recv: {e}"),
            }
        },
        Mode::Message => loop {
            match conn.recv_message(&mut buf).await {
                Ok(n) => {
                    assert_eq!(n, 1, "one transaction per message");
                    count += 1;
                }
                Err(Error::Disconnected) => break,
                Err(e) => panic!("server recv_message: {e}"),
            }
        },
    }
    // (3) The client's total, (4) the grand total.
    let data = conn
        .recv_disconnect()
        .await
        .expect("disconnect data")
        .expect("some");
    let total = u64::from_be_bytes(data[..].try_into().unwrap());
    assert_eq!(
        count, total,
        "{name} sent as many transactions as its total"
    );
    grand.set(grand.get() + total);
    // (5) The grand total, (5a) closesocket at once.
    conn.send_disconnect(Some(&grand.get().to_be_bytes()))
        .await
        .expect("the send half is open");
    (total, conn.close().await)
}

/// One client: connects with its name, sends `total` one-byte
/// transactions, (1) its total as disconnect data, (6-7) reads the grand
/// total, (8) closes. Returns the grand total and how the session ended.
async fn client_one(
    stack: Stack<'_>,
    server: Ipv4Address,
    name: &str,
    total: u64,
    mode: Mode,
    config: &Config,
) -> (u64, CloseReason) {
    let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
    let socket = TcpSocket::new(stack, &mut rx, &mut tx);
    let (mut conn, callee_data) = connect(
        socket,
        (server, PORT),
        Some(name.as_bytes()),
        options(mode),
        config,
    )
    .await
    .expect("accepted");
    assert_eq!(
        callee_data.as_deref(),
        Some(format!("welcome, {name}").as_bytes())
    );
    assert_eq!(conn.options().mode, mode);
    for _ in 0..total {
        match mode {
            Mode::Stream => conn.send_all(b"t").await.expect("send"),
            Mode::Message => conn.send_message(b"t").await.expect("send_message"),
        }
    }
    conn.send_disconnect(Some(&total.to_be_bytes()))
        .await
        .expect("(1) send_disconnect");
    let grand = conn
        .recv_disconnect()
        .await
        .expect("(7) the grand total")
        .expect("some");
    let grand = u64::from_be_bytes(grand[..].try_into().unwrap());
    (grand, conn.close().await)
}

/// The seed scenario between two embassy-net stacks: three servers slots
/// and three clients at once; returns the virtual time it took.
fn seed_between_embassy_stacks(wire: &Wire, mode: Mode, limit: Duration) -> Duration {
    seed_with(wire, mode, limit, Config::default(), serves_both_modes())
}

/// [`seed_between_embassy_stacks`] with the clients' and the server's
/// configurations.
fn seed_with(wire: &Wire, mode: Mode, limit: Duration, client: Config, server: Config) -> Duration {
    let mut stacks = TwoStacks::new();
    let (server_stack, server_runner, client_stack, client_runner) = stacks.up(wire);
    let listener = Listener::new(PORT, server).expect("a valid configuration");
    let grand = Cell::new(0);
    let servers = join3(
        serve_one(server_stack, &listener, &grand),
        serve_one(server_stack, &listener, &grand),
        serve_one(server_stack, &listener, &grand),
    );
    let clients = join3(
        client_one(
            client_stack,
            SERVER,
            CLIENTS[0].0,
            CLIENTS[0].1,
            mode,
            &client,
        ),
        client_one(
            client_stack,
            SERVER,
            CLIENTS[1].0,
            CLIENTS[1].1,
            mode,
            &client,
        ),
        client_one(
            client_stack,
            SERVER,
            CLIENTS[2].0,
            CLIENTS[2].1,
            mode,
            &client,
        ),
    );
    let scenario = join(servers, clients);
    let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
    let (out, took) = run(wire, limit, vec![a.as_mut(), b.as_mut()], scenario);
    let ((s1, s2, s3), (c1, c2, c3)) = out;
    for (total, reason) in [s1, s2, s3] {
        assert!(CLIENTS.iter().any(|c| c.1 == total));
        assert_eq!(reason, CloseReason::Graceful, "server side");
    }
    let grands = [c1, c2, c3];
    for (grand, reason) in &grands {
        assert_eq!(*reason, CloseReason::Graceful, "client side");
        assert!(*grand <= 50);
    }
    assert_eq!(grand.get(), 50, "every total counted once");
    assert!(
        grands.iter().any(|(g, _)| *g == 50),
        "the last client answered sees the whole grand total: {grands:?}"
    );
    took
}

/// A lost wake-up would show as a stall of a timer's length (seconds): the
/// exchange takes a few round trips of 2 ms.
fn assert_no_stall(took: Duration) {
    assert!(
        took < Duration::from_millis(200),
        "took {} ms",
        took.as_millis()
    );
}

/// The seed scenario between two embassy-net stacks on a 1 ms wire, in `mode`.
fn seed_on_a_clean_wire(mode: Mode) {
    let _clock = clock();
    let wire = Wire::new(Duration::from_millis(1));
    assert_no_stall(seed_between_embassy_stacks(
        &wire,
        mode,
        Duration::from_secs(60),
    ));
}

/// `n` sessions' buffers for `config`, over storage leaked for the test
/// (firmware's is a `static`), into `pool`.
fn fill(pool: &SessionPool, n: usize, config: &Config) {
    let len = bookend_embassy::session::BufferSizes::for_config(&config.session).total();
    for _ in 0..n {
        let storage: &'static mut [u8] = Box::leak(vec![0; len].into_boxed_slice());
        pool.add(SessionBuffers::new(storage, &config.session).unwrap());
    }
}

/// The seed scenario with no payload byte on the heap: both sides' session
/// buffers from pools of three (the TCP buffers are the application's
/// anyway), in both modes; every connection gives its buffers back.
#[test]
fn seed_scenario_over_pooled_session_buffers() {
    static CLIENTS_POOL: SessionPool = SessionPool::new();
    static SERVERS_POOL: SessionPool = SessionPool::new();
    let _clock = clock();
    let mut client = serves_both_modes();
    let mut server = serves_both_modes();
    fill(&CLIENTS_POOL, 3, &client);
    fill(&SERVERS_POOL, 3, &server);
    client.session_buffers = Some(&CLIENTS_POOL);
    server.session_buffers = Some(&SERVERS_POOL);
    for mode in [Mode::Stream, Mode::Message] {
        let wire = Wire::new(Duration::from_millis(1));
        let took = seed_with(
            &wire,
            mode,
            Duration::from_secs(60),
            client.clone(),
            server.clone(),
        );
        assert_no_stall(took);
        assert_eq!(
            CLIENTS_POOL.free(),
            3,
            "{mode:?}: the clients' buffers came back"
        );
        assert_eq!(
            SERVERS_POOL.free(),
            3,
            "{mode:?}: the servers' buffers came back"
        );
    }
}

#[test]
fn seed_scenario_in_stream_mode_between_embassy_stacks() {
    seed_on_a_clean_wire(Mode::Stream);
}

/// The seed scenario with every connection a task of its own (its own
/// waker, as on an embassy executor): a connection that missed its wake-up
/// would wait for a timer, and the run's time would show it.
#[test]
fn seed_scenario_with_a_task_per_connection() {
    let _clock = clock();
    let wire = Wire::new(Duration::from_millis(1));
    let mut stacks = TwoStacks::new();
    let (server_stack, server_runner, client_stack, client_runner) = stacks.up(&wire);
    let listener = Listener::new(PORT, serves_both_modes()).expect("a valid configuration");
    let grand = Cell::new(0);
    let done = support::Done::default();
    let ends = std::cell::RefCell::new(Vec::new());
    let server_task = async || {
        let (_, end) = serve_one(server_stack, &listener, &grand).await;
        ends.borrow_mut().push(end);
        done.finish();
    };
    let client_task = async |name: &'static str, total: u64| {
        let (_, end) = client_one(
            client_stack,
            SERVER,
            name,
            total,
            Mode::Stream,
            &Config::default(),
        )
        .await;
        ends.borrow_mut().push(end);
        done.finish();
    };
    let (mut s1, mut s2, mut s3) = (
        pin!(server_task()),
        pin!(server_task()),
        pin!(server_task()),
    );
    let mut c1 = pin!(client_task(CLIENTS[0].0, CLIENTS[0].1));
    let mut c2 = pin!(client_task(CLIENTS[1].0, CLIENTS[1].1));
    let mut c3 = pin!(client_task(CLIENTS[2].0, CLIENTS[2].1));
    let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
    let background: Vec<support::Background<'_>> = vec![
        a.as_mut(),
        b.as_mut(),
        s1.as_mut(),
        s2.as_mut(),
        s3.as_mut(),
        c1.as_mut(),
        c2.as_mut(),
        c3.as_mut(),
    ];
    let (_, took) = run(&wire, Duration::from_secs(60), background, done.all(6));
    assert_eq!(grand.get(), 50);
    assert!(
        ends.borrow().iter().all(|e| *e == CloseReason::Graceful),
        "{:?}",
        ends.borrow()
    );
    assert_no_stall(took);
}

#[test]
fn seed_scenario_in_message_mode_between_embassy_stacks() {
    seed_on_a_clean_wire(Mode::Message);
}

#[test]
fn seed_scenario_under_loss_in_both_modes() {
    // One packet in 5, 7 and 10, both ways counted. (At one in 3 a FIN's
    // retransmissions, backed off to seconds, can outlast the peer's
    // 10 s linger timer: a timer doing its job, not a stall.)
    for (mode, every) in [(Mode::Stream, 5), (Mode::Message, 7), (Mode::Message, 10)] {
        let _clock = clock();
        let wire = Wire::new(Duration::from_millis(5)).lossy(every);
        // Retransmissions cost smoltcp's RTO (1 s at first), not a hang.
        seed_between_embassy_stacks(&wire, mode, Duration::from_secs(600));
        assert!(wire.dropped() > 0, "the wire dropped packets");
    }
}

#[test]
fn a_rejected_caller_gets_the_reason_and_the_data() {
    let _clock = clock();
    let wire = Wire::new(Duration::from_millis(1));
    let mut stacks = TwoStacks::new();
    let (server_stack, server_runner, client_stack, client_runner) = stacks.up(&wire);
    let listener = Listener::new(PORT, Config::default()).expect("a valid configuration");
    let server = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let incoming = listener
            .accept(TcpSocket::new(server_stack, &mut rx, &mut tx))
            .await
            .unwrap();
        assert_eq!(
            incoming.caller_data().map(|b| &b[..]),
            Some(&b"intruder"[..])
        );
        incoming
            .reject(Reason::application(7), Some(b"not today"))
            .await
            .expect("a valid rejection")
    };
    let client = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let socket = TcpSocket::new(client_stack, &mut rx, &mut tx);
        match connect(
            socket,
            (SERVER, PORT),
            Some(b"intruder"),
            bookend_embassy::FIRMWARE_OPTIONS,
            &Config::default(),
        )
        .await
        {
            Err(ConnectError::Refused { reason, data }) => (reason, data),
            other => panic!("expected a refusal, got {:?}", other.map(|(_, d)| d)),
        }
    };
    let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
    let (out, _) = run(
        &wire,
        Duration::from_secs(60),
        vec![a.as_mut(), b.as_mut()],
        join(server, client),
    );
    let (server_end, (reason, data)) = out;
    assert_eq!(reason, Reason::application(7));
    assert_eq!(data.as_deref(), Some(&b"not today"[..]));
    assert!(
        matches!(server_end, CloseReason::Rejected { reason } if reason == Reason::application(7)),
        "{server_end:?}"
    );
}

#[test]
fn an_abort_delivers_its_reason_and_data_and_then_the_rst() {
    let _clock = clock();
    let wire = Wire::new(Duration::from_millis(1));
    let mut stacks = TwoStacks::new();
    let (server_stack, server_runner, client_stack, client_runner) = stacks.up(&wire);
    let listener = Listener::new(PORT, Config::default()).expect("a valid configuration");
    let server = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let (mut conn, _) = accept_one(
            &listener,
            TcpSocket::new(server_stack, &mut rx, &mut tx),
            None,
        )
        .await;
        let mut buf = [0u8; 16];
        // The abort reaches a reader as the end of the session.
        let err = conn.recv(&mut buf).await.expect_err("aborted");
        (err, conn.closed().await, conn.session().state())
    };
    let client = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let socket = TcpSocket::new(client_stack, &mut rx, &mut tx);
        let (mut conn, _) = connect(
            socket,
            (SERVER, PORT),
            None,
            bookend_embassy::FIRMWARE_OPTIONS,
            &Config::default(),
        )
        .await
        .unwrap();
        let end = conn
            .abort(Reason::application(3), Some(b"out of paper"))
            .await
            .expect("abort data within the limit");
        (end, conn.is_finished())
    };
    let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
    let (out, took) = run(
        &wire,
        Duration::from_secs(60),
        vec![a.as_mut(), b.as_mut()],
        join(server, client),
    );
    let ((err, server_end, _), (client_end, finished)) = out;
    assert_eq!(
        err,
        Error::ConnectionAborted,
        "the server's recv ends with WSAECONNABORTED"
    );
    match server_end {
        CloseReason::Aborted { by, reason, data } => {
            assert_eq!(by, bookend_embassy::session::Side::Peer);
            assert_eq!(reason, Reason::application(3));
            assert_eq!(data.as_deref(), Some(&b"out of paper"[..]));
        }
        other => panic!("the server saw {other:?}"),
    }
    assert!(matches!(
        client_end,
        CloseReason::Aborted {
            by: bookend_embassy::session::Side::Local,
            ..
        }
    ));
    assert!(
        finished,
        "abort returns with TCP's side finished (the RST sent)"
    );
    // The RST follows the acknowledged ABORT at once, not after a bound.
    assert!(
        took < Duration::from_millis(500),
        "took {} ms",
        took.as_millis()
    );
}

#[test]
fn a_connect_the_session_refuses_fails_before_tcp_connects() {
    let _clock = clock();
    let wire = Wire::new(Duration::from_millis(1));
    let mut rc = StackResources::<4>::new();
    let (client_stack, client_runner) = stack(wire.embassy(1), CLIENT, &mut rc, 2);
    let client = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let socket = TcpSocket::new(client_stack, &mut rx, &mut tx);
        // A message size over the receive buffer the session has.
        let bad = Options {
            max_message_size: u32::MAX,
            ..bookend_embassy::FIRMWARE_OPTIONS
        };
        connect(socket, (SERVER, PORT), None, bad, &Config::default())
            .await
            .map(|_| ())
    };
    let mut b = pin!(runner(client_runner));
    let (r, took) = run(&wire, Duration::from_secs(5), vec![b.as_mut()], client);
    assert_eq!(r, Err(ConnectError::Session(Error::InvalidGrant)));
    assert!(
        took < Duration::from_millis(1),
        "no SYN was sent: nothing waited"
    );
}

/// What a connection costs in memory: its own struct (in the task's future,
/// with the session inline) and the heap it holds. Idle, a connection
/// holds no heap: the session's buffers go back when it goes quiet. The
/// TCP buffers are the application's (here 2 x 1 KiB per socket).
#[test]
fn an_idle_connection_holds_no_heap() {
    let _clock = clock();
    let wire = Wire::new(Duration::from_millis(1));
    let mut stacks = TwoStacks::new();
    let (server_stack, server_runner, client_stack, client_runner) = stacks.up(&wire);
    let listener = Listener::new(PORT, Config::default()).expect("a valid configuration");
    let server = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let (mut conn, _) = accept_one(
            &listener,
            TcpSocket::new(server_stack, &mut rx, &mut tx),
            Some(b"welcome"),
        )
        .await;
        let mut buf = [0u8; 64];
        let n = conn.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        conn.send_all(b"hello back").await.unwrap();
        // Idle now, until the client disconnects.
        let mut peak_idle = usize::MAX;
        if conn.recv(&mut buf).await == Ok(0) {
            peak_idle = conn.session().heap_bytes();
        }
        let _ = conn.recv_disconnect().await;
        conn.close().await;
        peak_idle
    };
    let client = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let socket = TcpSocket::new(client_stack, &mut rx, &mut tx);
        let (mut conn, _) = connect(
            socket,
            (SERVER, PORT),
            Some(b"c"),
            bookend_embassy::FIRMWARE_OPTIONS,
            &Config::default(),
        )
        .await
        .unwrap();
        conn.send_all(b"hello").await.unwrap();
        let mut buf = [0u8; 64];
        let n = conn.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello back");
        // Everything read and sent: a quiet, connected session.
        Timer::after(Duration::from_millis(100)).await;
        let idle = {
            // One pump with nothing to do, as any call would make.
            conn.send(&[]).await.unwrap();
            conn.session().heap_bytes()
        };
        conn.send_disconnect(None).await.unwrap();
        let _ = conn.recv_disconnect().await;
        (idle, conn.close().await)
    };
    let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
    let ((server_idle, (client_idle, end)), _) = run(
        &wire,
        Duration::from_secs(60),
        vec![a.as_mut(), b.as_mut()],
        join(server, client),
    );
    assert_eq!(end, CloseReason::Graceful);
    assert_eq!(client_idle, 0, "an idle connected caller holds no heap");
    assert_eq!(
        server_idle, 0,
        "a callee idle after the peer's DISCONNECT (no data) holds no heap"
    );
    let size = std::mem::size_of::<bookend_embassy::Connection<'static>>();
    eprintln!(
        "Connection: {size} B, of which Session {} B; heap idle: caller {client_idle} B, callee after DISCONNECT {server_idle} B",
        std::mem::size_of::<bookend_embassy::session::Session>()
    );
    assert!(size <= 512, "a connection is {size} B");
}

/// A pool whose buffers are too small for the listener's configuration is
/// the application's mistake: `accept` says so, and the caller is reset
/// rather than left to its connect timer; the buffers stay in the pool.
#[test]
fn a_listener_with_buffers_too_small_says_so_and_resets_the_caller() {
    static POOL: SessionPool = SessionPool::new();
    let _clock = clock();
    let mut tiny = bookend_embassy::firmware_session_config();
    tiny.recv_buffer = 2048;
    tiny.send_buffer = 512;
    let len = bookend_embassy::session::BufferSizes::for_config(&tiny).total();
    let storage: &'static mut [u8] = Box::leak(vec![0; len].into_boxed_slice());
    POOL.add(SessionBuffers::new(storage, &tiny).unwrap());
    let mut server_config = Config::default();
    server_config.session_buffers = Some(&POOL);
    let wire = Wire::new(Duration::from_millis(1));
    let mut stacks = TwoStacks::new();
    let (server_stack, server_runner, client_stack, client_runner) = stacks.up(&wire);
    let listener = Listener::new(PORT, server_config).expect("a valid configuration");
    let server = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        match listener
            .accept(TcpSocket::new(server_stack, &mut rx, &mut tx))
            .await
        {
            Err(e) => e,
            Ok(_) => panic!("accepted over buffers too small"),
        }
    };
    let client = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let socket = TcpSocket::new(client_stack, &mut rx, &mut tx);
        connect(
            socket,
            (SERVER, PORT),
            Some(b"hello"),
            bookend_embassy::FIRMWARE_OPTIONS,
            &Config::default(),
        )
        .await
        .map(|_| ())
    };
    let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
    let ((accept_error, connected), took) = run(
        &wire,
        Duration::from_secs(60),
        vec![a.as_mut(), b.as_mut()],
        join(server, client),
    );
    assert!(
        matches!(
            accept_error,
            bookend_embassy::AcceptError::SessionBuffers(
                bookend_embassy::session::BuffersError::TooSmall { .. }
            )
        ),
        "{accept_error}"
    );
    assert!(
        matches!(
            connected,
            Err(ConnectError::Closed(CloseReason::Reset) | ConnectError::Tcp(_))
        ),
        "{connected:?}"
    );
    assert!(took < Duration::from_secs(5), "the caller was told at once");
    assert_eq!(POOL.free(), 1, "the buffers stayed in the pool");
}
