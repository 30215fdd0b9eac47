//! bookend-tokio against raw tokio TCP doing the same work over loopback,
//! in the same process run, alternating, medians of the rounds:
//!
//! * lifecycles: connect with 8 bytes of caller data, 8 bytes of callee data
//!   back, 32 bytes each way, 8 bytes of disconnect data each way, both FINs
//!   (raw: the same bytes, the disconnect data followed by `shutdown`),
//!   sequential and 1 000 at once;
//! * bulk: bytes one way through `AsyncWrite`/`AsyncRead`, integrity off and
//!   on (bookend) against a raw `TcpStream`.
//!
//! `cargo run --release -p bookend-benches --bin tokio_compare`
//! (`BOOKEND_BENCH_QUICK=1` for a short run).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bookend_benches::quick;
use bookend_tokio::{Config, Integrity, ListenConfig, Listener, Mode, Options, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn config(integrity: Integrity, mode: Mode) -> Config {
    let mut c = Config::default();
    c.options.integrity = integrity;
    c.options.mode = mode;
    c
}

fn options(integrity: Integrity, mode: Mode) -> Options {
    Options {
        integrity,
        mode,
        ..Options::DEFAULT
    }
}

// ----- raw tokio ------------------------------------------------------------

async fn raw_server(l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut b = [0u8; 32];
            s.read_exact(&mut b[..8]).await.ok()?; // caller data
            s.write_all(b"welcome!").await.ok()?; // callee data
            s.read_exact(&mut b).await.ok()?; // 32 B
            s.write_all(&b).await.ok()?;
            s.read_exact(&mut b[..8]).await.ok()?; // disconnect data
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.ok()?; // FIN
            s.write_all(&b[..8]).await.ok()?;
            s.shutdown().await.ok()
        });
    }
}

async fn raw_lifecycle(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut b = [7u8; 32];
    s.write_all(b"client-1").await.unwrap();
    s.read_exact(&mut b[..8]).await.unwrap();
    s.write_all(&[7u8; 32]).await.unwrap();
    s.read_exact(&mut b).await.unwrap();
    s.write_all(&17u64.to_be_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest.len(), 8);
}

async fn raw_bulk_server(l: TcpListener) -> usize {
    let (mut s, _) = l.accept().await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    loop {
        match s.read(&mut buf).await.unwrap() {
            0 => return n,
            k => n += k,
        }
    }
}

// ----- bookend ----------------------------------------------------------------

async fn bookend_server(mut l: Listener) {
    while let Some(req) = l.accept().await {
        tokio::spawn(async move {
            let g = req.grant();
            let conn = req.accept(Some(b"welcome!"), g).await.ok()?;
            let m = conn.recv_message().await.ok()?;
            conn.send_message(&m).await.ok()?;
            let d = conn.recv_disconnect().await.ok()??;
            conn.send_disconnect(Some(&d)).await.ok()?;
            conn.close().await;
            Some(())
        });
    }
}

async fn bookend_lifecycle(addr: SocketAddr) {
    let o = options(Integrity::Crc32c, Mode::Message);
    let (conn, _) = connect(
        addr,
        Some(b"client-1"),
        o,
        config(Integrity::Crc32c, Mode::Message),
    )
    .await
    .unwrap();
    conn.send_message(&[7u8; 32]).await.unwrap();
    conn.recv_message().await.unwrap();
    conn.send_disconnect(Some(&17u64.to_be_bytes()))
        .await
        .unwrap();
    conn.recv_disconnect().await.unwrap();
    conn.close().await;
}

async fn bookend_bulk_server(mut l: Listener) -> usize {
    let req = l.accept().await.unwrap();
    let g = req.grant();
    let mut conn = req.accept(None, g).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    loop {
        match conn.read(&mut buf).await.unwrap() {
            0 => break,
            k => n += k,
        }
    }
    conn.close().await;
    n
}

// ----- the runs -----------------------------------------------------------------

async fn timed<F: std::future::Future>(f: F) -> (Duration, F::Output) {
    let t = Instant::now();
    let r = f.await;
    (t.elapsed(), r)
}

async fn run(rounds: usize, seq: usize, conc: usize, bulk: usize) {
    // The same accept queue as bookend's listener (`ListenConfig::backlog`).
    let raw_l = {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s.listen(ListenConfig::default().backlog).unwrap()
    };
    let raw_addr = raw_l.local_addr().unwrap();
    tokio::spawn(raw_server(raw_l));
    let mut lc = ListenConfig::default();
    lc.max_pending = conc * 2;
    lc.max_handshaking = conc * 2;
    let be_l = Listener::bind("127.0.0.1:0", config(Integrity::Crc32c, Mode::Message), lc)
        .await
        .unwrap();
    let be_addr = be_l.local_addr();
    tokio::spawn(bookend_server(be_l));
    let data = vec![0x42u8; 256 * 1024];
    let (mut raw_seq, mut be_seq, mut raw_conc, mut be_conc) = (vec![], vec![], vec![], vec![]);
    let (mut raw_bulk, mut off_bulk, mut on_bulk) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (d, ()) = timed(async {
            for _ in 0..seq {
                raw_lifecycle(raw_addr).await;
            }
        })
        .await;
        raw_seq.push(seq as f64 / d.as_secs_f64());
        let (d, ()) = timed(async {
            for _ in 0..seq {
                bookend_lifecycle(be_addr).await;
            }
        })
        .await;
        be_seq.push(seq as f64 / d.as_secs_f64());
        let (d, _) = timed(futures_join((0..conc).map(|_| raw_lifecycle(raw_addr)))).await;
        raw_conc.push(conc as f64 / d.as_secs_f64());
        let (d, _) = timed(futures_join((0..conc).map(|_| bookend_lifecycle(be_addr)))).await;
        be_conc.push(conc as f64 / d.as_secs_f64());

        // Bulk: raw, then bookend with integrity off and on.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        let server = tokio::spawn(raw_bulk_server(l));
        let (d, ()) = timed(async {
            let mut s = TcpStream::connect(a).await.unwrap();
            let mut left = bulk;
            while left > 0 {
                let n = left.min(data.len());
                s.write_all(&data[..n]).await.unwrap();
                left -= n;
            }
            s.shutdown().await.unwrap();
            assert_eq!(server.await.unwrap(), bulk);
        })
        .await;
        raw_bulk.push(bulk as f64 * 8.0 / d.as_secs_f64() / 1e9);
        for (integrity, out) in [
            (Integrity::None, &mut off_bulk),
            (Integrity::Crc32c, &mut on_bulk),
        ] {
            let l = Listener::bind(
                "127.0.0.1:0",
                config(integrity, Mode::Stream),
                ListenConfig::default(),
            )
            .await
            .unwrap();
            let a = l.local_addr();
            let server = tokio::spawn(bookend_bulk_server(l));
            let (d, ()) = timed(async {
                let o = options(integrity, Mode::Stream);
                let (mut c, _) = connect(a, None, o, config(integrity, Mode::Stream))
                    .await
                    .unwrap();
                let mut left = bulk;
                while left > 0 {
                    let n = left.min(data.len());
                    c.write_all(&data[..n]).await.unwrap();
                    left -= n;
                }
                c.shutdown().await.unwrap();
                assert_eq!(server.await.unwrap(), bulk);
                c.close().await;
            })
            .await;
            out.push(bulk as f64 * 8.0 / d.as_secs_f64() / 1e9);
        }
    }
    let rows = [
        ("lifecycles/s, sequential", median(raw_seq), median(be_seq)),
        (
            &*format!("lifecycles/s, {conc} at once"),
            median(raw_conc),
            median(be_conc),
        ),
        (
            "bulk Gbit/s, integrity off",
            median(raw_bulk.clone()),
            median(off_bulk),
        ),
        (
            "bulk Gbit/s, integrity on",
            median(raw_bulk),
            median(on_bulk),
        ),
    ];
    println!(
        "{:<36} {:>12} {:>12} {:>7}",
        "measure (median)", "raw tokio", "bookend", "ratio"
    );
    for (name, raw, be) in rows {
        println!("{name:<36} {raw:>12.2} {be:>12.2} {:>7.3}", be / raw);
    }
    println!(
        "({rounds} rounds; {seq} sequential lifecycles, {conc} at once; bulk {} MiB)",
        bulk >> 20
    );
}

/// Runs every future to completion, concurrently on this task.
async fn futures_join<F: std::future::Future<Output = ()> + 'static>(fs: impl Iterator<Item = F>) {
    let mut set = tokio::task::JoinSet::new();
    for f in fs {
        set.spawn_local(f);
    }
    while set.join_next().await.is_some() {}
}

fn main() {
    let (rounds, seq, conc, bulk) = if quick() {
        (
            3,
            200,
            std::env::var("BOOKEND_BENCH_CONC")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(100),
            32 << 20,
        )
    } else {
        (5, 2000, 1000, 256 << 20)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(rounds, seq, conc, bulk));
}
