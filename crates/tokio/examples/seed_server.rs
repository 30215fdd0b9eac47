//! The seed's server (steps 2-5a): keeps a grand total over every client,
//! answers each client's transaction total with it as disconnect data.
//! `cargo run -p bookend-tokio --example seed_server -- 127.0.0.1:7050`

use bookend_tokio::{Config, ListenConfig, Listener, Reason};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7050".into());
    let mut listener = Listener::bind(addr, Config::default(), ListenConfig::default()).await?;
    println!("listening on {}", listener.local_addr());
    let grand_total = Arc::new(AtomicU64::new(0));
    while let Some(req) = listener.accept().await {
        // The condition function: sees the caller before committing.
        if req.caller_data().is_none() {
            req.reject(Reason::REJECTED, Some(b"say who you are"))
                .await?;
            continue;
        }
        let who = String::from_utf8_lossy(req.caller_data().unwrap()).into_owned();
        let grant = req.grant();
        let mut conn = req.accept(Some(b"welcome to bookend"), grant).await?;
        let grand_total = grand_total.clone();
        tokio::spawn(async move {
            // Echo nothing; read until the client's DISCONNECT (step 2: recv = 0).
            let mut sink = Vec::new();
            conn.read_to_end(&mut sink).await?;
            // Step 3: the client's transaction total.
            let total = conn.recv_disconnect().await?.map_or(0, |d| {
                u64::from_be_bytes(d[..].try_into().unwrap_or([0; 8]))
            });
            // Steps 4, 5 and 5a: the grand total, then closesocket at once.
            let g = grand_total.fetch_add(total, Ordering::SeqCst) + total;
            conn.send_disconnect(Some(&g.to_be_bytes())).await?;
            let end = conn.close().await;
            println!("{who}: total {total}, grand total {g}, {end}");
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    Ok(())
}
