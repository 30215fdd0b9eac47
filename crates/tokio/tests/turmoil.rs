//! bookend-tokio on turmoil's deterministic simulated network, in virtual
//! time: the seed scenario across a network that holds every segment for a
//! while (the timers wait), and a network that drops everything for longer
//! than the session's idle bound (both sides end, each with its reason).

use std::net::SocketAddr;
use std::time::Duration;

use bookend_tokio::{
    CloseReason, Config, Options, Plain, Reason, Side, Timer, accept_over, connect_over,
};
use turmoil::net::{TcpListener, TcpStream};

const PORT: u16 = 7050;

fn addrs(s: &TcpStream) -> (SocketAddr, SocketAddr) {
    (s.peer_addr().unwrap(), s.local_addr().unwrap())
}

fn u64_of(d: Option<bookend_tokio::Bytes>) -> u64 {
    u64::from_be_bytes(d.unwrap()[..].try_into().unwrap())
}

/// The seed scenario while the network holds every segment for 20 s in the
/// middle of the teardown (longer than a keepalive interval, shorter than
/// the idle bound of 90 s): delivered when it is released, graceful on both
/// sides.
#[test]
fn the_seed_scenario_survives_a_held_network() -> turmoil::Result {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(300))
        .build();
    sim.host("server", || async {
        let l = TcpListener::bind(("0.0.0.0", PORT)).await?;
        let (s, _) = l.accept().await?;
        let (peer, local) = addrs(&s);
        let req = accept_over(Plain(s), peer, local, Config::default())
            .await
            .unwrap();
        assert_eq!(req.caller_data().map(|b| &b[..]), Some(&b"client-1"[..]));
        let g = req.grant();
        let conn = req.accept(Some(b"welcome"), g).await.unwrap();
        let total = u64_of(conn.recv_disconnect().await.unwrap());
        conn.send_disconnect(Some(&(1000 + total).to_be_bytes()))
            .await
            .unwrap();
        assert_eq!(conn.close().await, CloseReason::Graceful);
        Ok(())
    });
    sim.client("client", async {
        let s = TcpStream::connect(("server", PORT)).await?;
        let (peer, local) = addrs(&s);
        let (conn, welcome) = connect_over(
            Plain(s),
            peer,
            local,
            Some(b"client-1"),
            Options::DEFAULT,
            Config::default(),
        )
        .await
        .unwrap();
        assert_eq!(welcome.as_deref(), Some(&b"welcome"[..]));
        turmoil::hold("client", "server");
        conn.send_disconnect(Some(&17u64.to_be_bytes()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        turmoil::release("client", "server");
        assert_eq!(u64_of(conn.recv_disconnect().await.unwrap()), 1017);
        assert_eq!(conn.close().await, CloseReason::Graceful);
        Ok(())
    });
    sim.run()
}

/// A network that holds everything for longer than the idle bound (three
/// keepalive intervals of 1 s): the session ends with its reason, on both
/// sides, instead of waiting forever.
#[test]
fn a_silent_network_ends_the_session_with_its_reason() -> turmoil::Result {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(300))
        .build();
    let keepalive = || {
        let mut c = Config::default();
        c.options.keepalive_ms = 1_000;
        c
    };
    sim.host("server", move || async move {
        let l = TcpListener::bind(("0.0.0.0", PORT)).await?;
        let (s, _) = l.accept().await?;
        let (peer, local) = addrs(&s);
        let req = accept_over(Plain(s), peer, local, keepalive())
            .await
            .unwrap();
        let g = req.grant();
        let conn = req.accept(None, g).await.unwrap();
        let end = conn.closed().await;
        assert!(
            matches!(
                end,
                CloseReason::TimedOut(Timer::Idle)
                    | CloseReason::Aborted {
                        by: Side::Peer,
                        reason: Reason::IDLE_TIMEOUT,
                        ..
                    }
                    | CloseReason::Reset
            ),
            "server: {end}"
        );
        Ok(())
    });
    sim.client("client", async move {
        let s = TcpStream::connect(("server", PORT)).await?;
        let (peer, local) = addrs(&s);
        let o = Options {
            keepalive_ms: 1_000,
            ..Options::DEFAULT
        };
        let (conn, _) = connect_over(Plain(s), peer, local, None, o, keepalive())
            .await
            .unwrap();
        turmoil::hold("client", "server");
        let end = conn.closed().await;
        assert_eq!(end, CloseReason::TimedOut(Timer::Idle), "client: {end}");
        turmoil::release("client", "server");
        Ok(())
    });
    sim.run()
}
