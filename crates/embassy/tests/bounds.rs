//! What a peer can make a bookend-embassy connection hold, and for how long:
//! heap bounded by the session's buffers whatever the peer sends, an abort
//! that ends within its bounds when the peer's window is shut, a reset that
//! reaches a session holding back input, and a listening socket that a
//! silent caller cannot keep. Each runs on a simulated wire in virtual
//! time, inside a wall-clock bound (a task that never yields would hang).

mod support;

use std::pin::pin;

use bookend_embassy::session::{BufferSizes, SessionBuffers};
use bookend_embassy::{
    CloseReason, Config, Error, FIRMWARE_OPTIONS, FIRMWARE_SESSION_BUFFER, Listener, Reason,
    SessionPool, connect,
};
use embassy_futures::join::join;
use embassy_net::tcp::TcpSocket;
use embassy_time::{Duration, Instant, Timer, with_timeout};
use support::{SERVER, TwoStacks, Wire, accept_one, clock, run, runner, within};

const PORT: u16 = 7050;
const BUF: usize = 1024;
const WALL: std::time::Duration = std::time::Duration::from_secs(20);

/// What [`flood_then_abort`] saw.
struct Flood {
    /// The most heap the server's session held while flooded.
    server_heap_peak: usize,
    /// How the server's wait for the peer's DISCONNECT ended, and when.
    server_wait: Result<Option<bookend_embassy::Bytes>, Error>,
    server_end_at: Duration,
    server_end: CloseReason,
    /// How the client's abort ended, and how long it took.
    client_end: CloseReason,
    client_abort_took: Duration,
    client_finished: bool,
    /// RSTs the client had sent when its abort returned.
    client_rsts_at_return: u32,
}

/// A client floods a server that does not read (it waits for the peer's
/// DISCONNECT, as the seed's server does), until the server's session and
/// TCP window are full; then the client aborts. The ABORT cannot pass the
/// shut window, so the RST follows it after the abort bounds, and reaches a
/// server whose session holds back input.
fn flood_then_abort() -> Flood {
    flood_then(Abort::Once)
}

/// How the client of [`flood_then`] aborts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Abort {
    /// One call, awaited to the end.
    Once,
    /// A first call dropped by a timeout long before the flush could end,
    /// then a second, awaited.
    CancelledThenAgain,
}

fn flood_then(abort: Abort) -> Flood {
    flood_with(abort, Config::default(), Config::default())
}

/// [`flood_then`] with the client's and the server's configurations.
fn flood_with(abort: Abort, client_config: Config, server_config: Config) -> Flood {
    let _clock = clock();
    let wire = Wire::new(Duration::from_millis(1));
    let mut stacks = TwoStacks::new();
    let (server_stack, server_runner, client_stack, client_runner) = stacks.up(&wire);
    let listener = Listener::new(PORT, server_config).expect("a valid configuration");
    let start = Instant::now();
    let server = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let (mut conn, _) = accept_one(
            &listener,
            TcpSocket::new(server_stack, &mut rx, &mut tx),
            None,
        )
        .await;
        let mut peak = 0;
        let wait = loop {
            match with_timeout(Duration::from_millis(10), conn.recv_disconnect()).await {
                Ok(r) => break r,
                Err(_) => peak = peak.max(conn.session().heap_bytes()),
            }
        };
        let at = Instant::now() - start;
        (peak, wait, at, conn.closed().await)
    };
    let client = async {
        let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
        let socket = TcpSocket::new(client_stack, &mut rx, &mut tx);
        let (mut conn, _) = connect(
            socket,
            (SERVER, PORT),
            None,
            FIRMWARE_OPTIONS,
            &client_config,
        )
        .await
        .expect("accepted");
        // More than the server's session and TCP can hold: the send stalls
        // once they are full.
        let flood = vec![7u8; 64 * 1024];
        let _ = with_timeout(Duration::from_millis(500), conn.send_all(&flood)).await;
        let t = Instant::now();
        if abort == Abort::CancelledThenAgain {
            let first = with_timeout(
                Duration::from_millis(50),
                conn.abort(Reason::application(9), Some(b"enough")),
            )
            .await;
            assert!(first.is_err(), "the flush into a shut window takes longer");
        }
        let end = conn
            .abort(Reason::application(9), Some(b"enough"))
            .await
            .expect("abort data within the limit");
        (end, Instant::now() - t, conn.is_finished(), wire.rsts(1))
    };
    let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
    let (((peak, wait, at, server_end), (client_end, took, finished, rsts)), _) = run(
        &wire,
        Duration::from_secs(600),
        vec![a.as_mut(), b.as_mut()],
        join(server, client),
    );
    Flood {
        server_heap_peak: peak,
        server_wait: wait,
        server_end_at: at,
        server_end,
        client_end,
        client_abort_took: took,
        client_finished: finished,
        client_rsts_at_return: rsts,
    }
}

/// A peer that sends more than the application reads is held to the
/// session's receive buffer (and TCP's window): the heap a connection holds
/// is bounded by its configuration, not by the peer.
#[test]
fn a_flooding_peer_is_held_to_the_session_buffers() {
    let f = within(WALL, flood_then_abort);
    // The receive buffer and the frame being assembled (with their
    // allocations' growth), and the parts' own structures (boxes of a few
    // hundred bytes, which the pooled-buffer test bounds alone).
    let bound = FIRMWARE_SESSION_BUFFER + 2 * 1024 + 512;
    assert!(
        f.server_heap_peak <= bound,
        "the flooded session held {} B of heap (bound {bound} B)",
        f.server_heap_peak
    );
    assert!(f.server_heap_peak > 0, "the flood reached the session");
}

/// Over pooled session buffers (`Config::session_buffers`) the flooded
/// session holds no payload on the heap: only its parts' own structures,
/// the same whether idle or flooded; the buffers go back to their pools.
#[test]
fn a_flooding_peer_fills_pooled_buffers_not_the_heap() {
    static CLIENT_POOL: SessionPool = SessionPool::new();
    static SERVER_POOL: SessionPool = SessionPool::new();
    let mut client = Config::default();
    let mut server = Config::default();
    for (pool, config) in [(&CLIENT_POOL, &mut client), (&SERVER_POOL, &mut server)] {
        let len = BufferSizes::for_config(&config.session).total();
        let storage: &'static mut [u8] = Box::leak(vec![0; len].into_boxed_slice());
        pool.add(SessionBuffers::new(storage, &config.session).unwrap());
        config.session_buffers = Some(pool);
    }
    let f = within(WALL, || flood_with(Abort::Once, client, server));
    // The boxes holding the queues' positions and the close data: no
    // buffer of the flood's bytes.
    assert!(
        f.server_heap_peak <= 512,
        "the flooded session held {} B of heap over pooled buffers",
        f.server_heap_peak
    );
    assert!(matches!(f.client_end, CloseReason::Aborted { .. }));
    assert_eq!(CLIENT_POOL.free(), 1);
    assert_eq!(SERVER_POOL.free(), 1);
}

/// A reset reaches a session that holds back input: TCP's RST flushes what
/// the application had not read (RFC 9293 §3.10.7.4, WSAECONNRESET), and the
/// application waiting for something else learns it at once.
#[test]
fn a_reset_reaches_a_session_holding_back_input() {
    let f = within(WALL, flood_then_abort);
    assert_eq!(
        f.server_wait,
        Err(Error::ConnectionReset),
        "the wait ends with the reset"
    );
    assert_eq!(f.server_end, CloseReason::Reset);
    // The abort bounds (1 s for the ABORT to reach TCP, 1 s for it to be
    // acknowledged), after the half-second flood.
    assert!(
        f.server_end_at < Duration::from_secs(5),
        "the server learnt the reset after {} ms",
        f.server_end_at.as_millis()
    );
}

/// An abort whose ABORT frame cannot all reach TCP (the peer's window is
/// shut) still ends within the abort bounds, with the RST sent: the session
/// is drained through its abort-flush timer, not left with half a frame.
#[test]
fn an_abort_into_a_shut_window_ends_within_its_bounds() {
    let f = within(WALL, flood_then_abort);
    assert!(
        matches!(f.client_end, CloseReason::Aborted { .. }),
        "{:?}",
        f.client_end
    );
    assert!(f.client_finished, "abort returns with TCP's side finished");
    assert!(
        f.client_rsts_at_return > 0,
        "abort returned before its RST was on the wire"
    );
    assert!(
        f.client_abort_took < Duration::from_secs(5),
        "the abort took {} ms",
        f.client_abort_took.as_millis()
    );
}

/// An abort whose future is dropped before it returns (a timeout around it)
/// is finished by calling `abort` again: the ABORT and RST go out within the
/// same bounds, and the call reports how the connection ended. (Dropping the
/// connection instead would lose the RST: embassy-net's socket sends
/// nothing once dropped.)
#[test]
fn an_abort_cancelled_by_a_timeout_is_finished_by_aborting_again() {
    let f = within(WALL, || flood_then(Abort::CancelledThenAgain));
    assert!(
        matches!(f.client_end, CloseReason::Aborted { .. }),
        "{:?}",
        f.client_end
    );
    assert!(f.client_finished, "abort returns with TCP's side finished");
    assert!(f.client_rsts_at_return > 0, "the RST is on the wire");
    assert!(
        matches!(
            f.server_end,
            CloseReason::Reset | CloseReason::Aborted { .. }
        ),
        "{:?}",
        f.server_end
    );
}

/// A caller that connects and says nothing holds a listening socket for the
/// handshake timer (10 s for firmware), then the socket listens again: a
/// good caller behind it gets in.
#[test]
fn a_silent_caller_does_not_keep_the_listening_socket() {
    within(WALL, || {
        let _clock = clock();
        let wire = Wire::new(Duration::from_millis(1));
        let mut stacks = TwoStacks::new();
        let (server_stack, server_runner, client_stack, client_runner) = stacks.up(&wire);
        let listener = Listener::new(PORT, Config::default()).expect("a valid configuration");
        let start = Instant::now();
        // One listening socket, taken first by a caller that sends nothing.
        let server = async {
            let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
            let (mut conn, who) = accept_one(
                &listener,
                TcpSocket::new(server_stack, &mut rx, &mut tx),
                None,
            )
            .await;
            let _ = conn.recv_disconnect().await;
            conn.close().await;
            who
        };
        let clients = async {
            let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
            let mut silent = TcpSocket::new(client_stack, &mut rx, &mut tx);
            silent.connect((SERVER, PORT)).await.expect("TCP connects");
            // The good caller, once the silent one holds the socket.
            Timer::after(Duration::from_millis(10)).await;
            let (mut rx2, mut tx2) = ([0u8; BUF], [0u8; BUF]);
            let accepted = loop {
                // smoltcp answers a SYN nobody listens for with RST: retry,
                // as a client would.
                let socket = TcpSocket::new(client_stack, &mut rx2, &mut tx2);
                match connect(
                    socket,
                    (SERVER, PORT),
                    Some(b"good"),
                    FIRMWARE_OPTIONS,
                    &Config::default(),
                )
                .await
                {
                    Ok((mut conn, _)) => {
                        conn.send_disconnect(None).await.expect("connected");
                        conn.close().await;
                        break Instant::now() - start;
                    }
                    Err(_) => Timer::after(Duration::from_millis(500)).await,
                }
            };
            drop(silent);
            accepted
        };
        let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
        let ((who, accepted_at), _) = run(
            &wire,
            Duration::from_secs(900),
            vec![a.as_mut(), b.as_mut()],
            join(server, clients),
        );
        assert_eq!(
            who.as_deref(),
            Some(&b"good"[..]),
            "the good caller was the one decided"
        );
        assert!(
            accepted_at < Duration::from_secs(25),
            "the good caller got in after {} ms",
            accepted_at.as_millis()
        );
    });
}

/// A caller whose CONNECT and ABORT arrive together has ended before the
/// application could decide: its request is not handed out (every decision
/// on it would be refused), and the socket listens again for the next
/// caller.
#[test]
fn a_request_whose_caller_already_aborted_is_not_handed_out() {
    within(WALL, || {
        let _clock = clock();
        let wire = Wire::new(Duration::from_millis(1));
        let mut stacks = TwoStacks::new();
        let (server_stack, server_runner, client_stack, client_runner) = stacks.up(&wire);
        let listener = Listener::new(PORT, Config::default()).expect("a valid configuration");
        let server = async {
            let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
            let (mut conn, who) = accept_one(
                &listener,
                TcpSocket::new(server_stack, &mut rx, &mut tx),
                None,
            )
            .await;
            let _ = conn.recv_disconnect().await;
            conn.close().await;
            who
        };
        let clients = async {
            // CONNECT and ABORT, written together: a caller that gave up at
            // once, as a session encodes them.
            let t = bookend_embassy::session::Instant::ZERO;
            let mut s = bookend_embassy::session::Session::caller(
                bookend_embassy::firmware_session_config(),
                99,
            )
            .expect("a valid configuration");
            s.connect(t, Some(b"dead"), FIRMWARE_OPTIONS)
                .expect("valid");
            let mut frames = vec![0u8; 512];
            let mut n = s.poll_transmit(t, &mut frames);
            // Aborted once its CONNECT has left: the ABORT follows it.
            s.abort(t, Reason::application(1), None)
                .expect("abort while connecting");
            n += s.poll_transmit(t, &mut frames[n..]);
            assert!(n > 60, "CONNECT and ABORT: {n} bytes");
            let (mut rx, mut tx) = ([0u8; BUF], [0u8; BUF]);
            let mut raw = TcpSocket::new(client_stack, &mut rx, &mut tx);
            raw.connect((SERVER, PORT)).await.expect("TCP connects");
            let mut sent = 0;
            while sent < n {
                sent += raw.write(&frames[sent..n]).await.expect("written");
            }
            raw.close();
            let _ = with_timeout(Duration::from_secs(2), raw.flush()).await;
            // Then a live caller.
            let (mut rx2, mut tx2) = ([0u8; BUF], [0u8; BUF]);
            loop {
                let socket = TcpSocket::new(client_stack, &mut rx2, &mut tx2);
                match connect(
                    socket,
                    (SERVER, PORT),
                    Some(b"good"),
                    FIRMWARE_OPTIONS,
                    &Config::default(),
                )
                .await
                {
                    Ok((mut conn, _)) => {
                        conn.send_disconnect(None).await.expect("connected");
                        conn.close().await;
                        break;
                    }
                    Err(_) => Timer::after(Duration::from_millis(500)).await,
                }
            }
            drop(raw);
        };
        let (mut a, mut b) = (pin!(runner(server_runner)), pin!(runner(client_runner)));
        let ((who, ()), _) = run(
            &wire,
            Duration::from_secs(120),
            vec![a.as_mut(), b.as_mut()],
            join(server, clients),
        );
        assert_eq!(
            who.as_deref(),
            Some(&b"good"[..]),
            "the aborted caller's request was handed out"
        );
    });
}
