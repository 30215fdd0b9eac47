//! The seed's client (steps 1, 6-8): connects with its name as caller data,
//! ends with its transaction total as disconnect data, reads the grand total.
//! `cargo run -p bookend-tokio --example seed_client -- 127.0.0.1:7050 client-1 17`

use bookend_tokio::{Config, Options, connect};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7050".into());
    let name = args.next().unwrap_or_else(|| "client-1".into());
    let total: u64 = args.next().and_then(|t| t.parse().ok()).unwrap_or(17);
    // WSAConnect with caller data; the callee data comes back with the answer.
    let (conn, welcome) = connect(
        &*addr,
        Some(name.as_bytes()),
        Options::DEFAULT,
        Config::default(),
    )
    .await?;
    println!(
        "connected: {}",
        String::from_utf8_lossy(&welcome.unwrap_or_default())
    );
    // Step 1: WSASendDisconnect with the transaction total.
    conn.send_disconnect(Some(&total.to_be_bytes())).await?;
    // Steps 6, 7: FD_CLOSE, then WSARecvDisconnect: the grand total.
    let grand = conn.recv_disconnect().await?.unwrap_or_default();
    let grand = u64::from_be_bytes(grand[..].try_into().unwrap_or([0; 8]));
    println!("sent total {total}, grand total {grand}");
    // Step 8: closesocket; resolves once both disconnects are confirmed.
    println!("{}", conn.close().await);
    Ok(())
}
