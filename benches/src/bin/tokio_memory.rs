//! Heap held by idle bookend-tokio sessions, beyond what tokio's own
//! `TcpStream`s hold for the same connections (loopback, both ends in this
//! process, a counting global allocator): `cargo run --release -p
//! bookend-benches --bin tokio_memory`. The process's file limit (20 000
//! here, two descriptors per connection) bounds the count.

use std::alloc::System;
use std::time::Duration;

use bookend_benches::heap_in_use;
use bookend_tokio::{Config, ListenConfig, Listener, Options, connect};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

async fn raw(n: usize) -> i64 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let region = Region::new(GLOBAL);
    let mut held = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        held.push(c);
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let used = heap_in_use(&region.change());
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    used
}

async fn bookend(n: usize) -> i64 {
    let mut listen = ListenConfig::default();
    listen.max_pending = n + 1;
    listen.max_handshaking = n + 1;
    let mut l = Listener::bind("127.0.0.1:0", Config::default(), listen)
        .await
        .unwrap();
    let addr = l.local_addr();
    let region = Region::new(GLOBAL);
    let mut held = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let connecting = connect(addr, Some(b"idle"), Options::DEFAULT, Config::default());
        let accepting = async {
            let req = l.accept().await.unwrap();
            let g = req.grant();
            req.accept(None, g).await.unwrap()
        };
        let ((c, _), s) = tokio::join!(async { connecting.await.unwrap() }, accepting);
        held.push(c);
        held.push(s);
    }
    // Idle: the handshakes' buffers gone, nothing queued.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let used = heap_in_use(&region.change());
    drop(held);
    // Let every connection's task end before the next measurement.
    tokio::time::sleep(Duration::from_secs(2)).await;
    used
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:>6} {:>14} {:>14} {:>22}",
        "n", "raw tokio B", "bookend B", "extra per session end"
    );
    for n in [100usize, 1000, 4000] {
        let r = rt.block_on(raw(n));
        let b = rt.block_on(bookend(n));
        println!("{n:>6} {r:>14} {b:>14} {:>22}", (b - r) / (2 * n as i64));
    }
}
