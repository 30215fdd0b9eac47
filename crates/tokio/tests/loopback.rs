//! bookend-tokio over loopback TCP: the seed's transaction-total scenario in
//! both modes, the condition function's three answers, abort and the end of
//! a session as each side sees it.

use std::time::Duration;

use bookend_tokio::{
    CloseReason, Config, ConnectError, Error, ListenConfig, Listener, Mode, Options, Reason, Side,
    connect,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

fn config(mode: Mode) -> Config {
    let mut c = Config::default();
    c.options.mode = mode;
    c
}

fn options(mode: Mode) -> Options {
    Options {
        mode,
        ..Options::DEFAULT
    }
}

async fn listener(mode: Mode) -> Listener {
    Listener::bind("127.0.0.1:0", config(mode), ListenConfig::default())
        .await
        .unwrap()
}

/// The seed scenario (steps 1-8 and 5a), `transactions` requests first.
async fn seed(mode: Mode) {
    let mut l = listener(mode).await;
    let addr = l.local_addr();
    let server = tokio::spawn(async move {
        let req = l.accept().await.unwrap();
        assert_eq!(req.caller_data().map(|b| &b[..]), Some(&b"client-1"[..]));
        let grant = req.grant();
        let conn = req.accept(Some(b"welcome"), grant).await.unwrap();
        // One transaction: request in, reply out.
        match mode {
            Mode::Stream => {
                let mut conn = conn;
                let mut buf = [0u8; 5];
                conn.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"txn 1");
                conn.write_all(b"ok 1").await.unwrap();
                // Step 2: FD_CLOSE, recv returns 0.
                assert_eq!(conn.read(&mut buf).await.unwrap(), 0);
                steps_3_to_5a(conn).await
            }
            Mode::Message => {
                assert_eq!(&conn.recv_message().await.unwrap()[..], b"txn 1");
                conn.send_message(b"ok 1").await.unwrap();
                // Step 2: WSAEDISCON.
                assert_eq!(conn.recv_message().await, Err(Error::Disconnected));
                steps_3_to_5a(conn).await
            }
        }
    });
    let (conn, welcome) = connect(addr, Some(b"client-1"), options(mode), config(mode))
        .await
        .unwrap();
    assert_eq!(welcome.as_deref(), Some(&b"welcome"[..]));
    let mut conn = conn;
    match mode {
        Mode::Stream => {
            conn.write_all(b"txn 1").await.unwrap();
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ok 1");
        }
        Mode::Message => {
            conn.send_message(b"txn 1").await.unwrap();
            assert_eq!(&conn.recv_message().await.unwrap()[..], b"ok 1");
        }
    }
    // Step 1: the transaction total.
    conn.send_disconnect(Some(&17u64.to_be_bytes()))
        .await
        .unwrap();
    // Steps 6, 7: FD_CLOSE, the grand total.
    let total = conn.recv_disconnect().await.unwrap().unwrap();
    assert_eq!(u64::from_be_bytes(total[..].try_into().unwrap()), 1017);
    // Step 8.
    assert_eq!(conn.close().await, CloseReason::Graceful);
    assert_eq!(server.await.unwrap(), CloseReason::Graceful);
}

async fn steps_3_to_5a(conn: bookend_tokio::Connection) -> CloseReason {
    // Step 3: the client's total; 4: the grand total; 5: sent; 5a: closed at once.
    let total = conn.recv_disconnect().await.unwrap().unwrap();
    let total = u64::from_be_bytes(total[..].try_into().unwrap());
    assert_eq!(total, 17);
    conn.send_disconnect(Some(&(1000 + total).to_be_bytes()))
        .await
        .unwrap();
    conn.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_stream_mode() {
    tokio::time::timeout(LIMIT, seed(Mode::Stream))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_message_mode() {
    tokio::time::timeout(LIMIT, seed(Mode::Message))
        .await
        .unwrap();
}

/// CF_REJECT: the caller's connect fails with the reason and the reject
/// data, delivered; the callee sees its session end as rejected.
#[tokio::test]
async fn reject_delivers_reason_and_data() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Stream).await;
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            req.reject(Reason::application(7), Some(b"come back later"))
                .await
                .unwrap()
        });
        let r = connect(addr, None, Options::DEFAULT, Config::default()).await;
        assert_eq!(
            r.unwrap_err(),
            ConnectError::Refused {
                reason: Reason::application(7),
                data: Some(bookend_tokio::Bytes::from_static(b"come back later")),
            }
        );
        assert!(matches!(
            server.await.unwrap(),
            CloseReason::Rejected { .. }
        ));
    })
    .await
    .unwrap();
}

/// Dropping a request undecided rejects it: the caller learns why.
#[tokio::test]
async fn a_dropped_request_is_rejected() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Stream).await;
        let addr = l.local_addr();
        tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            drop(req);
            // Keep the listener while the caller is answered.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let r = connect(addr, None, Options::DEFAULT, Config::default()).await;
        assert!(
            matches!(
                r,
                Err(ConnectError::Refused {
                    reason: Reason::REJECTED,
                    ..
                })
            ),
            "{r:?}"
        );
    })
    .await
    .unwrap();
}

/// CF_DEFER: a request kept undecided does not block the next one, and is
/// accepted later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_request_does_not_block_the_next() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Stream).await;
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let first = l.accept().await.unwrap();
            // Kept undecided while the second is served.
            let second = l.accept().await.unwrap();
            assert_eq!(second.caller_data().map(|b| &b[..]), Some(&b"second"[..]));
            let g = second.grant();
            let c2 = second.accept(Some(b"2"), g).await.unwrap();
            let g = first.grant();
            let c1 = first.accept(Some(b"1"), g).await.unwrap();
            tokio::join!(c1.close(), c2.close())
        });
        let first = tokio::spawn(connect(
            addr,
            Some(b"first"),
            Options::DEFAULT,
            Config::default(),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (c2, d2) = connect(addr, Some(b"second"), Options::DEFAULT, Config::default())
            .await
            .unwrap();
        assert_eq!(d2.as_deref(), Some(&b"2"[..]));
        let (c1, d1) = first.await.unwrap().unwrap();

        assert_eq!(d1.as_deref(), Some(&b"1"[..]));
        let (e1, e2) = tokio::join!(c1.close(), c2.close());
        assert_eq!((e1, e2), (CloseReason::Graceful, CloseReason::Graceful));
        let (s1, s2) = server.await.unwrap();
        assert_eq!((s1, s2), (CloseReason::Graceful, CloseReason::Graceful));
    })
    .await
    .unwrap();
}

/// Abortive close: the peer sees ABORT's reason and data; then the TCP
/// connection is reset.
#[tokio::test]
async fn abort_delivers_reason_and_data() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Stream).await;
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            let g = req.grant();
            let conn = req.accept(None, g).await.unwrap();
            conn.closed().await
        });
        let (conn, _) = connect(addr, None, Options::DEFAULT, Config::default())
            .await
            .unwrap();
        conn.abort(Reason::application(3), Some(b"bye")).unwrap();
        assert!(matches!(
            conn.closed().await,
            CloseReason::Aborted {
                by: Side::Local,
                ..
            }
        ));
        assert_eq!(
            server.await.unwrap(),
            CloseReason::Aborted {
                by: Side::Peer,
                reason: Reason::application(3),
                data: Some(bookend_tokio::Bytes::from_static(b"bye")),
            }
        );
    })
    .await
    .unwrap();
}

/// `recv` is cancel-safe: a read dropped while waiting loses nothing, and
/// `accept` likewise.
#[tokio::test]
async fn recv_and_accept_are_cancel_safe() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Message).await;
        let addr = l.local_addr();
        // accept, cancelled before any caller.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), l.accept())
                .await
                .is_err()
        );
        let server = tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            let g = req.grant();
            let conn = req.accept(None, g).await.unwrap();
            // recv, cancelled while nothing has arrived.
            assert!(
                tokio::time::timeout(Duration::from_millis(20), conn.recv_message())
                    .await
                    .is_err()
            );
            let m = conn.recv_message().await.unwrap();
            assert_eq!(&m[..], b"after the cancelled read");
            conn.close().await
        });
        let (conn, _) = connect(addr, None, options(Mode::Message), config(Mode::Message))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.send_message(b"after the cancelled read")
            .await
            .unwrap();
        assert_eq!(conn.close().await, CloseReason::Graceful);
        assert_eq!(server.await.unwrap(), CloseReason::Graceful);
    })
    .await
    .unwrap();
}

/// Stream mode carries bulk both ways through `tokio::io::copy`-style use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_through_async_read_and_write() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Stream).await;
        let addr = l.local_addr();
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let expect = data.clone();
        let server = tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            let g = req.grant();
            let mut conn = req.accept(None, g).await.unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).await.unwrap();
            assert!(got == expect, "{} bytes, differ", got.len());
            conn.close().await
        });
        let (mut conn, _) = connect(addr, None, Options::DEFAULT, Config::default())
            .await
            .unwrap();
        conn.write_all(&data).await.unwrap();
        conn.shutdown().await.unwrap();
        assert_eq!(conn.close().await, CloseReason::Graceful);
        assert_eq!(server.await.unwrap(), CloseReason::Graceful);
    })
    .await
    .unwrap();
}

/// Nothing listening: the connect fails with TCP's error, at once.
#[tokio::test]
async fn connect_to_nothing_is_an_io_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let r = connect(addr, None, Options::DEFAULT, Config::default()).await;
    assert!(matches!(r, Err(ConnectError::Io(..))), "{r:?}");
}

/// What the session refuses (caller data over `max_connect_data`, options
/// out of range) fails before TCP connects, as WSAConnect checks its
/// arguments first: the callee never sees a connection that would only
/// wait out its handshake timer.
#[tokio::test]
async fn a_connect_the_session_refuses_opens_no_tcp_connection() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let too_big = vec![0u8; Options::DEFAULT.max_connect_data as usize + 1];
    let r = connect(addr, Some(&too_big), Options::DEFAULT, Config::default()).await;
    assert!(matches!(r, Err(ConnectError::Invalid(_))), "{r:?}");
    let out_of_range = Options {
        max_frame_size: 0,
        ..Options::DEFAULT
    };
    let r = connect(addr, None, out_of_range, Config::default()).await;
    assert!(matches!(r, Err(ConnectError::Invalid(_))), "{r:?}");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), l.accept())
            .await
            .is_err(),
        "a TCP connection was opened"
    );
}

/// Both sides write more than TCP's buffers hold before reading anything:
/// a driver blocked in a write that the peer's closed window holds up must
/// still read, or both sides wait for each other forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ways_at_once_do_not_deadlock() {
    const SIZE: usize = 48 << 20;
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Stream).await;
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            let g = req.grant();
            let conn = req.accept(None, g).await.unwrap();
            let (mut rd, mut wr) = tokio::io::split(conn);
            let writer = tokio::spawn(async move {
                wr.write_all(&vec![1u8; SIZE]).await.unwrap();
                wr.shutdown().await.unwrap();
                wr
            });
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await.unwrap();
            let wr = writer.await.unwrap();
            assert_eq!(got.len(), SIZE);
            rd.unsplit(wr).close().await
        });
        let (conn, _) = connect(addr, None, Options::DEFAULT, Config::default())
            .await
            .unwrap();
        let (mut rd, mut wr) = tokio::io::split(conn);
        let writer = tokio::spawn(async move {
            wr.write_all(&vec![2u8; SIZE]).await.unwrap();
            wr.shutdown().await.unwrap();
            wr
        });
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        let wr = writer.await.unwrap();
        assert_eq!(got.len(), SIZE);
        assert_eq!(rd.unsplit(wr).close().await, CloseReason::Graceful);
        assert_eq!(server.await.unwrap(), CloseReason::Graceful);
    })
    .await
    .unwrap();
}

/// §6.4: silent connections (a caller that connects and never sends
/// CONNECT) cannot lock a listener out for the handshake timer's 360 s:
/// under load they get the loaded handshake time, then are evicted, and a
/// real caller is served.
#[tokio::test]
async fn silent_connections_do_not_lock_the_listener_out() {
    tokio::time::timeout(LIMIT, async {
        let mut listen = ListenConfig::default();
        listen.max_handshaking = 4;
        let mut l = Listener::bind("127.0.0.1:0", Config::default(), listen)
            .await
            .unwrap();
        let addr = l.local_addr();
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::spawn(async move {
            while let Some(req) = l.accept().await {
                let g = req.grant();
                let c = req.accept(None, g).await.unwrap();
                tokio::spawn(async move { c.close().await });
            }
        });
        let (conn, _) = connect(addr, Some(b"real"), Options::DEFAULT, Config::default())
            .await
            .unwrap();
        assert_eq!(conn.close().await, CloseReason::Graceful);
        drop(silent);
    })
    .await
    .unwrap();
}

/// §6.4: a source at its `max_per_source` of silent connections (a host
/// that opened them and went quiet, or the callers behind one NAT) does not
/// keep its next caller out: beyond the share its oldest are evicted, so a
/// caller from the same address whose CONNECT comes late (a lost segment,
/// a slow start) is still served.
#[tokio::test]
async fn a_sources_silent_connections_give_way_to_its_late_caller() {
    tokio::time::timeout(LIMIT, async {
        let mut listen = ListenConfig::default();
        listen.max_per_source = 2;
        listen.loaded_handshake_timeout = Duration::from_millis(300);
        let mut l = Listener::bind("127.0.0.1:0", Config::default(), listen)
            .await
            .unwrap();
        let addr = l.local_addr();
        let mut silent = Vec::new();
        for _ in 0..2 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::spawn(async move {
            while let Some(req) = l.accept().await {
                let g = req.grant();
                let c = req.accept(None, g).await.unwrap();
                tokio::spawn(async move { c.close().await });
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The late caller: its minimal CONNECT (§10.1) 700 ms after TCP's
        // handshake, more than twice the loaded handshake time.
        let mut late = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        late.write_all(&[
            0x01, 0, 0, 0, 0, 0x08, 0x42, 0x4b, 0x4e, 0x44, 0x01, 0x01, 0, 0,
        ])
        .await
        .unwrap();
        let mut first = [0u8; 1];
        late.read_exact(&mut first).await.unwrap();
        assert_eq!(first[0], 0x02, "ACCEPT, not ABORT(HANDSHAKE_TIMEOUT)");
        drop(silent);
    })
    .await
    .unwrap();
}

/// §6.4: a source's share counts its connections *without a CONNECT*: one
/// refused REJECT(`BUSY`) and lingering for the caller's FIN no longer
/// counts, so it cannot make the source's silent connection look like the
/// oldest beyond the share.
#[tokio::test]
async fn a_refused_connection_lingering_does_not_count_against_its_source() {
    tokio::time::timeout(LIMIT, async {
        let mut listen = ListenConfig::default();
        listen.max_per_source = 1;
        listen.max_pending = 1;
        listen.loaded_handshake_timeout = Duration::from_millis(300);
        let mut l = Listener::bind("127.0.0.1:0", Config::default(), listen)
            .await
            .unwrap();
        let addr = l.local_addr();
        let connect_frame = [
            0x01, 0, 0, 0, 0, 0x08, 0x42, 0x4b, 0x4e, 0x44, 0x01, 0x01, 0, 0,
        ];
        // F fills the one pending place; the application takes it 500 ms in.
        let mut f = tokio::net::TcpStream::connect(addr).await.unwrap();
        f.write_all(&connect_frame).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // S connects and stays silent for a second.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // B asks while the pending place is full: REJECT(BUSY); it keeps its
        // socket open, so the listener lingers for its FIN.
        let mut b = tokio::net::TcpStream::connect(addr).await.unwrap();
        b.write_all(&connect_frame).await.unwrap();
        let mut first = [0u8; 1];
        b.read_exact(&mut first).await.unwrap();
        assert_eq!(first[0], 0x03, "B is refused (REJECT)");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            while let Some(req) = l.accept().await {
                let g = req.grant();
                let c = req.accept(None, g).await.unwrap();
                tokio::spawn(async move { c.close().await });
            }
        });
        tokio::time::sleep(Duration::from_millis(900)).await;
        s.write_all(&connect_frame).await.unwrap();
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(first[0], 0x02, "S is accepted, not evicted");
        drop((f, b));
    })
    .await
    .unwrap();
}

/// A decision the session refuses hands the request back undecided, with
/// nothing sent: the application decides again.
#[tokio::test]
async fn a_refused_decision_can_be_made_again() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Stream).await;
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            let mut bad = req.grant();
            bad.mode = Mode::Message; // the mode is never changed by a grant (§4.2)
            let undecided = req.accept(None, bad).await.unwrap_err();
            assert_eq!(undecided.error, Error::InvalidGrant);
            let req = undecided.incoming;
            let g = req.grant();
            let conn = req.accept(Some(b"second try"), g).await.unwrap();
            conn.close().await
        });
        let (conn, data) = connect(addr, None, Options::DEFAULT, Config::default())
            .await
            .unwrap();
        assert_eq!(data.as_deref(), Some(&b"second try"[..]));
        assert_eq!(conn.close().await, CloseReason::Graceful);
        assert_eq!(server.await.unwrap(), CloseReason::Graceful);
    })
    .await
    .unwrap();
}

/// Several tasks may wait in `recv_message` on one connection: each message
/// wakes one of them, none is left waiting for a message that came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_readers_of_one_connection_are_all_woken() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Message).await;
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            let g = req.grant();
            let conn = std::sync::Arc::new(req.accept(None, g).await.unwrap());
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let c = conn.clone();
                    tokio::spawn(async move { c.recv_message().await.unwrap() })
                })
                .collect();
            let mut got = Vec::new();
            for r in readers {
                got.push(r.await.unwrap());
            }
            got.sort();
            assert_eq!(got, [&b"one"[..], &b"two"[..]]);
            std::sync::Arc::into_inner(conn).unwrap().close().await
        });
        let (conn, _) = connect(addr, None, options(Mode::Message), config(Mode::Message))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.send_message(b"one").await.unwrap();
        conn.send_message(b"two").await.unwrap();
        assert_eq!(conn.close().await, CloseReason::Graceful);
        assert_eq!(server.await.unwrap(), CloseReason::Graceful);
    })
    .await
    .unwrap();
}

/// `into_split`: one task sends, another receives, on owned halves; the
/// session closes gracefully when both are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_halves_in_two_tasks() {
    tokio::time::timeout(LIMIT, async {
        let mut l = listener(Mode::Message).await;
        let addr = l.local_addr();
        let server = tokio::spawn(async move {
            let req = l.accept().await.unwrap();
            let g = req.grant();
            let conn = req.accept(None, g).await.unwrap();
            // Echo every message, then the disconnect data.
            while let Ok(m) = conn.recv_message().await {
                conn.send_message(&m).await.unwrap();
            }
            let d = conn.recv_disconnect().await.unwrap();
            conn.send_disconnect(d.as_deref()).await.unwrap();
            conn.close().await
        });
        let (conn, _) = connect(addr, None, options(Mode::Message), config(Mode::Message))
            .await
            .unwrap();
        let (rx, tx) = conn.into_split();
        let sender = tokio::spawn(async move {
            for i in 0..100u32 {
                tx.send_message(&i.to_be_bytes()).await.unwrap();
            }
            tx.send_disconnect(Some(b"done")).await.unwrap();
            tx
        });
        let mut n = 0u32;
        while let Ok(m) = rx.recv_message().await {
            assert_eq!(&m[..], &n.to_be_bytes());
            n += 1;
        }
        assert_eq!(n, 100);
        assert_eq!(
            rx.recv_disconnect().await.unwrap().as_deref(),
            Some(&b"done"[..])
        );
        drop(sender.await.unwrap());
        drop(rx);
        assert_eq!(server.await.unwrap(), CloseReason::Graceful);
    })
    .await
    .unwrap();
}

/// `accept_over` is cancel-safe: dropped before a request came, it answers
/// the caller (here an ABORT, as CONNECT never came) instead of leaving the
/// session to its handshake timer.
#[tokio::test]
async fn a_dropped_accept_over_answers_the_caller() {
    let (ours, mut theirs) = tokio::io::duplex(4096);
    let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let waiting =
        bookend_tokio::accept_over(bookend_tokio::Plain(ours), addr, addr, Config::default());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), waiting)
            .await
            .is_err()
    );
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, theirs.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.first(), Some(&0x06), "an ABORT: {got:02x?}");
}

/// §6.4: one source address may hold `max_per_source` connections without a
/// CONNECT; beyond that share its oldest are evicted once the loaded
/// handshake time has passed, even on a listener that is not loaded, while
/// its newest `max_per_source` wait for the handshake timer.
#[tokio::test]
async fn a_source_beyond_its_share_is_evicted() {
    tokio::time::timeout(LIMIT, async {
        let mut listen = ListenConfig::default();
        listen.max_per_source = 2;
        let l = Listener::bind("127.0.0.1:0", Config::default(), listen)
            .await
            .unwrap();
        let addr = l.local_addr();
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            // Accepted in this order: the earlier ones give way.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut ended = Vec::new();
        for s in &mut silent {
            let mut b = [0u8; 64];
            let done = matches!(
                tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await,
                Ok(Ok(_) | Err(_))
            );
            ended.push(done);
        }
        assert_eq!(ended, [true, true, false, false]);
        drop(l);
    })
    .await
    .unwrap();
}

/// Server-side TCP connections to `port` in ESTABLISHED on 127.0.0.1, from
/// `/proc/net/tcp` (accepted or waiting in the kernel's accept queue).
#[cfg(target_os = "linux")]
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == local && f[3] == "01"
        })
        .count()
}

/// §6.4: a burst of callers beyond what the listener takes at once waits in
/// the kernel's accept queue, as `ListenConfig` documents, rather than being
/// dropped by the kernel (its callers' TCP retrying a second later, RFC 6298
/// §2.1): appliances reconnecting together after an outage come as one
/// burst. The listener here takes one connection and holds it, so every
/// other caller must stay queued.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_burst_of_callers_waits_in_the_kernels_accept_queue() {
    let mut lc = ListenConfig::default();
    lc.max_handshaking = 1;
    lc.loaded_handshake_timeout = Duration::from_secs(60);
    lc.max_per_source = 1000;
    let l = Listener::bind("127.0.0.1:0", config(Mode::Stream), lc)
        .await
        .unwrap();
    let port = l.local_addr().port();
    const BURST: usize = 400;
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let a = l.local_addr();
        callers.spawn(async move {
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(a))
                .await
                .ok()
                .and_then(Result::ok)
        });
    }
    let mut held = Vec::new();
    while let Some(s) = callers.join_next().await {
        held.extend(s.unwrap());
    }
    // Every caller's handshake done on the server's side too: a connection
    // the kernel dropped for a full queue exists only on the caller's side.
    let mut seen = 0;
    for _ in 0..50 {
        seen = established_to(port);
        if seen >= BURST {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, BURST, "callers queued by the kernel");
    drop(held);
}

/// Writes until the peer's closed window holds a write up (its application
/// never reads): the driver is then stuck in a TCP write.
async fn fill_until_stuck(c: &mut bookend_tokio::Connection) {
    let chunk = vec![0x55u8; 64 * 1024];
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), c.write(&chunk)).await {}
}

/// A callee whose application accepts and then never reads, for `hold`.
async fn never_reading_callee(
    hold: Duration,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let mut l = listener(Mode::Stream).await;
    let addr = l.local_addr();
    let task = tokio::spawn(async move {
        let req = l.accept().await.unwrap();
        let g = req.grant();
        let conn = req.accept(None, g).await.unwrap();
        tokio::time::sleep(hold).await;
        drop(conn);
    });
    (addr, task)
}

/// §5.5, §7 (abort flush): an abort resets TCP within the abort-flush bound
/// even while a write is held up by the peer's closed window, and
/// `closed()` says so: a peer that stops reading cannot pin the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_resets_even_while_a_write_is_stuck() {
    let (addr, callee) = never_reading_callee(Duration::from_secs(30)).await;
    let (mut c, _) = connect(addr, None, options(Mode::Stream), config(Mode::Stream))
        .await
        .unwrap();
    fill_until_stuck(&mut c).await;
    c.abort(Reason::APPLICATION_ABORT, None).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), c.closed()).await;
    callee.abort();
    assert!(
        matches!(end, Ok(CloseReason::Aborted { .. })),
        "closed() after abort with a stuck write: {end:?}"
    );
}

/// §5.4: the side that receives an ABORT resets the connection at once (it
/// has nothing left to flush), so both sides' `closed()` resolve when the
/// ABORT arrives, not after a linger each waits out for the other
/// (ABORT_LINGER is 1 s; the bound here leaves room for a loaded machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_ends_both_sides_at_once() {
    let mut l = listener(Mode::Stream).await;
    let addr = l.local_addr();
    let callee = tokio::spawn(async move {
        let req = l.accept().await.unwrap();
        let g = req.grant();
        let conn = req.accept(None, g).await.unwrap();
        let end = conn.closed().await;
        (end, std::time::Instant::now())
    });
    let (conn, _) = connect(addr, None, options(Mode::Stream), config(Mode::Stream))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    conn.abort(Reason::application(1), None).unwrap();
    let ours = conn.closed().await;
    let our_time = t0.elapsed();
    let (theirs, at) = callee.await.unwrap();
    assert!(
        matches!(
            ours,
            CloseReason::Aborted {
                by: Side::Local,
                ..
            }
        ),
        "{ours:?}"
    );
    assert!(
        matches!(theirs, CloseReason::Aborted { by: Side::Peer, .. }),
        "{theirs:?}"
    );
    let their_time = at - t0;
    assert!(
        our_time < Duration::from_millis(600) && their_time < Duration::from_millis(600),
        "closed() after {our_time:?} (aborting side), {their_time:?} (receiving side)"
    );
}

/// Over a transport that buffers what it is given until flushed (as a TLS
/// stream does), every frame still goes out: the driver flushes after it
/// writes, so the handshake, the data and the teardown complete, gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffering_transport_is_flushed() {
    use bookend_tokio::Plain;
    use tokio::io::BufWriter;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let callee = tokio::spawn(async move {
        let (s, peer) = tcp.accept().await.unwrap();
        let req =
            bookend_tokio::accept_over(Plain(BufWriter::new(s)), peer, addr, config(Mode::Message))
                .await
                .unwrap();
        let g = req.grant();
        let conn = req.accept(Some(b"welcome"), g).await.unwrap();
        let m = conn.recv_message().await.unwrap();
        conn.send_message(&m).await.unwrap();
        let d = conn.recv_disconnect().await.unwrap();
        conn.send_disconnect(d.as_deref()).await.unwrap();
        conn.close().await
    });
    let run = async {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = s.local_addr().unwrap();
        let (conn, welcome) = bookend_tokio::connect_over(
            Plain(BufWriter::new(s)),
            addr,
            local,
            Some(b"client-1"),
            options(Mode::Message),
            config(Mode::Message),
        )
        .await
        .unwrap();
        assert_eq!(welcome.as_deref(), Some(&b"welcome"[..]));
        conn.send_message(b"ping").await.unwrap();
        assert_eq!(&conn.recv_message().await.unwrap()[..], b"ping");
        conn.send_disconnect(Some(b"17")).await.unwrap();
        assert_eq!(
            conn.recv_disconnect().await.unwrap().as_deref(),
            Some(&b"17"[..])
        );
        conn.close().await
    };
    let ours = tokio::time::timeout(LIMIT, run)
        .await
        .expect("stalled on unflushed bytes");
    assert_eq!(ours, CloseReason::Graceful);
    assert_eq!(callee.await.unwrap(), CloseReason::Graceful);
}

/// Server-side sockets on 127.0.0.1:`port` that this process holds, the
/// listening one aside, in any state (a connection not yet accepted, or in
/// TIME_WAIT, has no inode in `/proc/net/tcp`).
#[cfg(target_os = "linux")]
fn held_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9 && f[1] == local && f[3] != "0A" && f[9] != "0"
        })
        .count()
}

/// §6.4: a listener holds at most `max_handshaking` connections it has not
/// handed to the application plus `max_pending` requests, whatever the
/// callers do: callers answered REJECT(BUSY) that never close their side
/// keep counting against the bound until their sessions end (else a flood
/// of complete CONNECTs holds one socket each for the reject's linger).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_callers_count_against_the_listeners_bound() {
    use tokio::io::AsyncWriteExt as _;
    let mut lc = ListenConfig::default();
    lc.max_pending = 1;
    lc.max_handshaking = 2;
    lc.max_per_source = 100;
    let _l = Listener::bind("127.0.0.1:0", config(Mode::Stream), lc)
        .await
        .unwrap();
    let addr = _l.local_addr();
    // §10.1's minimal CONNECT; the callers then hold their side open.
    let connect_minimal = [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x42, 0x4b, 0x4e, 0x44, 0x01, 0x01, 0x00, 0x00,
    ];
    const CALLERS: usize = 40;
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&connect_minimal).await.unwrap();
        callers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = held_on(addr.port());
    drop(callers);
    assert!(
        held <= lc.max_handshaking + lc.max_pending + 1,
        "the listener holds {held} sockets for callers it has not handed over"
    );
}

/// A stream whose writes wait while its gate is shut (a peer's closed
/// window, made deterministic).
struct Gated {
    inner: tokio::io::DuplexStream,
    shut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    waker: std::sync::Arc<std::sync::Mutex<Option<std::task::Waker>>>,
}

impl tokio::io::AsyncRead for Gated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Gated {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.shut.load(std::sync::atomic::Ordering::SeqCst) {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `flush()` resolves once TCP has everything written, not once the
/// session has handed its bytes to the driver: while the transport takes
/// nothing, a flush waits; once it takes them, the flush resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_until_the_transport_took_everything() {
    use bookend_tokio::Plain;
    let (a, b) = tokio::io::duplex(256 * 1024);
    let shut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waker = std::sync::Arc::new(std::sync::Mutex::new(None::<std::task::Waker>));
    let gated = Gated {
        inner: a,
        shut: shut.clone(),
        waker: waker.clone(),
    };
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let callee = tokio::spawn(async move {
        let req = bookend_tokio::accept_over(Plain(b), addr, addr, config(Mode::Stream))
            .await
            .unwrap();
        let g = req.grant();
        let mut conn = req.accept(None, g).await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        got.len()
    });
    let (mut c, _) = bookend_tokio::connect_over(
        Plain(gated),
        addr,
        addr,
        None,
        options(Mode::Stream),
        config(Mode::Stream),
    )
    .await
    .unwrap();
    shut.store(true, std::sync::atomic::Ordering::SeqCst);
    c.write_all(b"held at the gate").await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), c.flush()).await;
    assert!(
        early.is_err(),
        "flush resolved while the transport took nothing"
    );
    shut.store(false, std::sync::atomic::Ordering::SeqCst);
    if let Some(w) = waker.lock().unwrap().take() {
        w.wake();
    }
    tokio::time::timeout(LIMIT, c.flush())
        .await
        .unwrap()
        .unwrap();
    c.shutdown().await.unwrap();
    assert_eq!(c.close().await, CloseReason::Graceful);
    assert_eq!(callee.await.unwrap(), 16);
}

/// Listener bounds that cannot work are refused by `bind` with a clear
/// error, not accepted and then failed on (a zero loaded handshake time
/// spun each handshake's task; bounds beyond tokio's semaphore panicked
/// inside the acceptor, after `bind` had returned `Ok`).
#[tokio::test]
async fn unworkable_listener_bounds_are_refused_at_bind() {
    let mut cases = Vec::new();
    let mut lc = ListenConfig::default();
    lc.loaded_handshake_timeout = Duration::ZERO;
    cases.push(lc);
    let mut lc = ListenConfig::default();
    lc.max_handshaking = usize::MAX;
    cases.push(lc);
    let mut lc = ListenConfig::default();
    lc.max_pending = usize::MAX;
    cases.push(lc);
    for lc in cases {
        // Spawned, so that a panic shows as a join error.
        let r = tokio::spawn(Listener::bind("127.0.0.1:0", config(Mode::Stream), lc)).await;
        match r {
            Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{lc:?}"),
            Ok(Ok(_)) => panic!("bound with {lc:?}"),
            Err(_) => panic!("bind panicked with {lc:?}"),
        }
    }
}

/// §10.5, §5.4: a connect that fails because the caller aborted (an ACCEPT
/// granting beyond the proposal) resolves only once its ABORT and RST are
/// out, so a program that exits on the error (its runtime dropped at once)
/// still resets instead of closing with a FIN.
#[test]
fn a_failed_connect_has_reset_before_it_returns() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let callee = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 256];
        let _ = s.read(&mut b);
        // §10.5: MODE = message granted to a stream-mode proposal.
        s.write_all(&[
            0x02, 0, 0, 0, 0, 0x0d, 0x42, 0x4b, 0x4e, 0x44, 0x01, 0x00, 0x00, 0x05, 0x80, 0x05,
            0x00, 0x01, 0x01,
        ])
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        loop {
            match s.read(&mut b) {
                Ok(0) => return (got, "FIN"),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, "RST"),
                Err(_) => return (got, "nothing"),
            }
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(connect(addr, None, Options::DEFAULT, Config::default()));
    // The program exits on the error: its runtime goes at once.
    drop(rt);
    assert!(matches!(r, Err(ConnectError::Closed(_))), "{r:?}");
    let (got, end) = callee.join().unwrap();
    // ABORT(PROTOCOL_ERROR), sealed or not as the proposal had integrity.
    assert_eq!(got.first(), Some(&0x06), "the ABORT: {got:02x?}");
    assert_eq!(end, "RST");
}

/// §5.4: a reset with no ABORT before it (a violation after our FIN: the
/// caller's DATA after both DISCONNECTs) has nothing to protect, so the RST
/// goes at once, not after the abort linger (1 s) that an ABORT in flight
/// gets.
#[test]
fn a_reset_after_our_fin_goes_at_once() {
    use std::io::{Read, Write};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut l = rt.block_on(listener(Mode::Stream));
    let addr = l.local_addr();
    rt.spawn(async move {
        let req = l.accept().await.unwrap();
        let g = req.grant();
        let conn = req.accept(None, g).await.unwrap();
        let _ = conn.recv_disconnect().await;
        let _ = conn.send_disconnect(None).await;
        conn.closed().await
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // §10.1's minimal CONNECT, then our DISCONNECT once ACCEPT is in.
    s.write_all(&[0x01, 0, 0, 0, 0, 8, 0x42, 0x4b, 0x4e, 0x44, 1, 1, 0, 0])
        .unwrap();
    let mut b = [0u8; 256];
    assert!(s.read(&mut b).unwrap() > 0);
    s.write_all(&[0x05, 0, 0, 0, 0, 0]).unwrap();
    // Its DISCONNECT and FIN.
    while s.read(&mut b).unwrap() > 0 {}
    // DATA after both DISCONNECTs: a violation in CLOSING, answered by RST.
    let t0 = std::time::Instant::now();
    s.write_all(&[0x04, 0, 0, 0, 0, 1, 0x41]).unwrap();
    let mut reset = None;
    while t0.elapsed() < Duration::from_secs(3) {
        // The RST comes after the peer's FIN: only the socket's error shows it.
        if let Ok(Some(_)) = s.take_error() {
            reset = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = reset.expect("no RST");
    assert!(took < Duration::from_millis(600), "RST after {took:?}");
}
