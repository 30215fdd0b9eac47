//! bookend sessions over tokio's TCP: the Linux side of the appliances that
//! run bookend over smoltcp.
//!
//! Connect data, conditional accept and disconnect data, as Windows
//! Sockets 2 defined them (WSAConnect's caller and callee data, WSAAccept's
//! condition function, WSASendDisconnect / WSARecvDisconnect), carried by
//! the session protocol of `docs/protocol.md` over one TCP connection:
//!
//! * [`connect`] sends caller data with the connect and resolves to the
//!   [`Connection`] and the callee data, or to the refusal with its reason
//!   and reject data ([`ConnectError::Refused`]);
//! * [`Listener::accept`] yields each caller's [`Incoming`] request
//!   (address, caller data, proposed options) before anything is committed:
//!   accept it with callee data, reject it with a reason and data, or keep
//!   it undecided while other requests are served;
//! * a [`Connection`] is `AsyncRead + AsyncWrite` in stream mode (so
//!   `tokio::io::copy` works), has `send_message`/`recv_message` in message
//!   mode, `send_disconnect`/`recv_disconnect` for disconnect data,
//!   [`Connection::close`], which resolves once the peer's FIN confirms both
//!   disconnects (closing right after `send_disconnect` still delivers it),
//!   [`Connection::abort`] (ABORT with a reason, then a TCP reset) and
//!   [`Connection::closed`] (how the session ended).
//!
//! Each connection is one task that owns its socket and runs the session's
//! timers in real time; handles lock the session briefly and never across
//! an `.await`. Futures are `Send`.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use bookend_tokio::{Config, ListenConfig, Listener, Options, connect};
//! let mut listener = Listener::bind("127.0.0.1:7050", Config::default(), ListenConfig::default()).await?;
//! tokio::spawn(async move {
//!     while let Some(req) = listener.accept().await {
//!         let grant = req.grant();
//!         let _conn = req.accept(Some(b"welcome"), grant).await;
//!     }
//! });
//! let (conn, welcome) = connect("127.0.0.1:7050", Some(b"client-1"), Options::DEFAULT, Config::default()).await?;
//! conn.send_disconnect(Some(&17u64.to_be_bytes())).await?;
//! let total = conn.recv_disconnect().await?;
//! conn.close().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod conn;
mod connection;
mod listener;

pub use conn::{Plain, Transport};

/// The session crate whose types this crate's API names, and the rest of it:
/// one dependency is enough.
pub use bookend_session as session;
pub use bookend_session::{
    CloseReason, Config, ConfigError, DataKind, Error, Integrity, Mode, ModeOffer, Options, Reason,
    Side, Timer, Violation,
};
pub use bytes::Bytes;
pub use connection::{ConnectError, Connection, RecvHalf, SendHalf, connect, connect_over};
pub use listener::{Incoming, ListenConfig, Listener, MAX_LISTEN_BOUND, Undecided, accept_over};
