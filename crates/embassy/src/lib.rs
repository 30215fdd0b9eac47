/*! bookend sessions over embassy-net's TCP, for firmware written with embassy.

bookend carries Windows Sockets 2 connect data, conditional accept (accept,
reject with reason and data, defer) and disconnect data over TCP
(`docs/protocol.md` in the repository). This crate drives a
[`bookend_session::Session`] over an [`embassy_net::tcp::TcpSocket`] with
the pump every bookend driver shares ([`bookend_link::Link`]): the TCP user
timeout, the pause of the session's timers while TCP still delivers, and
the ABORT-before-RST order are the same as `bookend-smoltcp`'s. embassy-net
0.9 is built on smoltcp 0.13 (bookend-smoltcp on 0.14), so this crate works
on embassy-net's sockets, not on a shared `Interface`.

* `#![no_std]`. The TCP buffers are the application's (`TcpSocket::new`
  takes them). The session's own state lives in the [`Connection`] (in the
  task's future). Its queues (received data, the frame in assembly, frames
  to send) are the application's too with a [`SessionPool`] in
  [`Config::session_buffers`] (a `static` of
  [`SessionStorage`](bookend_session::SessionStorage) buffers): the heap
  then holds a few hundred bytes of session state per connection, and no
  payload. Without one they are on the heap, while they hold something,
  within the configuration's bounds (`bookend-session` needs `alloc`).
* Driving happens inside the connection's `async` methods: each pumps, then
  sleeps until the socket or the next timer wakes it. A task that awaits
  something else meanwhile leaves the session's timers to be run at its next
  call; answering the peer (its PINGs, its DISCONNECT) waits for it too, as
  with any embassy socket the task does not read.
* [`Connection::close`] and [`Connection::abort`] run the whole sequence
  (DISCONNECT or ABORT frame, FIN or RST, flushed within bounds), because
  embassy-net removes a dropped socket at once (embassy #1471); the peer's
  FIN and RST stay apart (a graceful end, `Reset`), which `read_with` alone
  does not tell (embassy #3252).

```no_run
# async fn run(stack: embassy_net::Stack<'_>) -> Result<(), bookend_embassy::ConnectError> {
use bookend_embassy::{Config, connect};
use embassy_net::tcp::TcpSocket;

let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
let config = Config::default();
let socket = TcpSocket::new(stack, &mut rx, &mut tx);
let remote = (embassy_net::Ipv4Address::new(10, 0, 0, 1), 7050);
// WSAConnect with caller data; the callee's data comes back.
let (mut conn, callee_data) = connect(socket, remote, Some(b"client-1"), config.options(), &config).await?;
conn.send_all(&17u64.to_be_bytes()).await.ok();
// WSASendDisconnect, then closesocket at once: both still delivered (5a).
conn.send_disconnect(None).await.ok();
let total = conn.recv_disconnect().await.ok().flatten();
let _ = conn.close().await;
# let _ = (callee_data, total);
# Ok(())
# }
```
*/
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

extern crate alloc;

mod buffers;
mod connection;
mod fmt;
mod listener;
mod tcp;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use bookend_session::Session;
use embassy_net::IpEndpoint;
use embassy_net::tcp::TcpSocket;

pub use buffers::SessionPool;
pub use connection::{BACKPRESSURE_RECHECK, Connection};
pub use listener::{AcceptError, Incoming, Listener, Undecided};

use connection::Answer;
use fmt::debug;

/// The session crate this one drives (its `Config`, `Options`, errors).
pub use bookend_session as session;
pub use bookend_session::{CloseReason, Error, Mode, Options, Reason};
pub use bytes::Bytes;

/// How connections are set up and ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The sessions' configuration (options offered, protocol timers,
    /// session buffers), shared by every connection made with this one.
    pub session: Arc<bookend_session::Config>,
    /// TCP user timeout: the longest outage a connection rides out (as
    /// `bookend-smoltcp`'s, default 300 s: RFC 1122 §4.2.3.5). A connection
    /// is given up after this plus one retransmission interval without
    /// progress ([`Config::give_up_after`]).
    pub tcp_timeout: Duration,
    /// TCP keep-alive interval, shorter than `tcp_timeout` (default 10 s).
    pub tcp_keep_alive: Duration,
    /// After the session ended, how long TCP's FIN exchange may take before
    /// the socket is reset (default 10 s; while bytes are unacknowledged,
    /// the give-up time).
    pub tcp_close_timeout: Duration,
    /// After the session asked for a reset, how long the ABORT before it may
    /// take to be acknowledged before the RST goes anyway (default 1 s, §7).
    pub abort_ack_timeout: Duration,
    /// Where sessions' buffers come from: `None` (the default), the heap,
    /// within the session configuration's bounds; a [`SessionPool`], the
    /// application's storage, taken when a connection starts and given
    /// back when it is dropped. With a pool, a `connect` finding it empty
    /// fails with [`ConnectError::NoSessionBuffers`] before TCP connects,
    /// and [`Listener::accept`] resets a caller that arrives while it is
    /// empty and listens again (buffers too small for the configuration
    /// fail `accept` with [`AcceptError::SessionBuffers`]).
    pub session_buffers: Option<&'static SessionPool>,
}

/// smoltcp's largest retransmission interval: the margin
/// [`Config::give_up_after`] adds to the user timeout.
pub const MAX_RETRANSMIT_INTERVAL: Duration = Duration::from_secs(60);

/// The options a firmware connection proposes and grants by default
/// ([`Config::default`]'s): frames of 1 KiB, messages of 2 KiB, 256 bytes of
/// connect and disconnect data, keepalive and integrity as the protocol's
/// defaults. The host defaults (16 KiB frames, 64 KiB messages and user
/// data) would let one peer's frame or message take a small heap.
pub const FIRMWARE_OPTIONS: Options = Options::SMALL;

/// The session buffers of [`Config::default`]: 4 KiB each way.
pub const FIRMWARE_SESSION_BUFFER: usize = bookend_session::SMALL_SESSION_BUFFER;

/// The session configuration of [`Config::default`]: [`FIRMWARE_OPTIONS`],
/// [`FIRMWARE_SESSION_BUFFER`] each way, a 10 s handshake (a caller that
/// connects and says nothing holds a socket of a small pool no longer) and
/// a 30 s connect timer (beyond the callee's 10 s decision timer); the
/// other timers as the session's defaults.
pub fn firmware_session_config() -> bookend_session::Config {
    bookend_session::Config::small()
}

/// Firmware-sized: [`firmware_session_config`], so that the heap a
/// connection can be made to hold is bounded by a few KiB whatever the peer
/// sends (6 KiB measured with a peer flooding an application that does not
/// read: the receive buffer and the frame being assembled).
impl Default for Config {
    fn default() -> Self {
        Self {
            session: Arc::new(firmware_session_config()),
            tcp_timeout: Duration::from_secs(300),
            tcp_keep_alive: Duration::from_secs(10),
            tcp_close_timeout: Duration::from_secs(10),
            abort_ack_timeout: Duration::from_secs(1),
            session_buffers: None,
        }
    }
}

impl Config {
    /// The defaults with `session` as the sessions' configuration.
    pub fn with_session(session: bookend_session::Config) -> Self {
        Self {
            session: Arc::new(session),
            ..Self::default()
        }
    }

    /// The options this configuration proposes as a caller (and grants at
    /// most as a callee): pass them to [`connect`], changed as needed.
    pub fn options(&self) -> Options {
        self.session.options
    }

    /// When a connection without progress is given up: `tcp_timeout` plus
    /// one retransmission interval ([`MAX_RETRANSMIT_INTERVAL`], or
    /// `tcp_timeout` itself if shorter), as `bookend-smoltcp`'s.
    pub fn give_up_after(&self) -> Duration {
        self.tcp_timeout + self.tcp_timeout.min(MAX_RETRANSMIT_INTERVAL)
    }

    /// Sets a new socket's TCP options: the user timeout (until the session
    /// keeps its own liveness), keep-alive, and Nagle off (session frames
    /// are small and latency matters).
    fn prepare(&self, socket: &mut TcpSocket<'_>) {
        socket.set_timeout(Some(duration(self.give_up_after())));
        socket.set_keep_alive(Some(duration(self.tcp_keep_alive)));
        socket.set_nagle_enabled(false);
    }
}

fn duration(d: Duration) -> embassy_time::Duration {
    embassy_time::Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Session ids, for the log messages that name a session.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Why [`connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The callee refused: REJECT with its reason and reject data
    /// (WSAECONNREFUSED with bookend's extension); `None` and empty differ.
    Refused {
        /// The REJECT's reason code (`docs/protocol.md` §8).
        reason: Reason,
        /// The reject data.
        data: Option<Bytes>,
    },
    /// The session ended before ACCEPT: reset, aborted (reason and data),
    /// timed out (which timer), or a protocol error.
    Closed(CloseReason),
    /// TCP could not connect (embassy-net's refusal: reset, timed out, no
    /// route, a socket not closed).
    Tcp(embassy_net::tcp::ConnectError),
    /// The session refused the arguments before anything was sent: options
    /// out of range or needing more than the receive buffer
    /// (`InvalidGrant`), caller data over the proposal (`TooLarge`).
    Session(Error),
    /// The sessions' configuration is unusable.
    Config(bookend_session::ConfigError),
    /// `Config::session_buffers` names a pool with no buffers free.
    NoSessionBuffers,
    /// The pool's buffers are too small for the configuration; they stay
    /// in the pool. (Options proposed beyond what they hold are
    /// `Session(InvalidGrant)`, as without a pool.)
    SessionBuffers(bookend_session::BuffersError),
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused { reason, .. } => write!(f, "refused: {reason}"),
            Self::Closed(reason) => write!(f, "closed before ACCEPT: {reason}"),
            Self::Tcp(e) => write!(f, "TCP connect failed: {e:?}"),
            Self::Session(e) => write!(f, "connect refused by the session: {e}"),
            Self::Config(e) => write!(f, "unusable configuration: {e}"),
            Self::NoSessionBuffers => write!(f, "no session buffers free in the pool"),
            Self::SessionBuffers(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for ConnectError {}

/// Connects `socket` (a closed embassy-net socket, with the application's
/// buffers) to `remote`, with `caller_data` (WSAConnect's) and `options` as
/// the proposal. Resolves once the callee answers: the connection and the
/// callee data (`None` and empty differ), or the refusal with its reason
/// and data.
///
/// The arguments are checked before TCP connects: a bad option fails at
/// once, nothing sent.
///
/// This function returns `Err(ConnectError::Refused)` for a REJECT (once
/// the caller's side of it is finished), `Err(ConnectError::Closed)` when
/// the session ends otherwise before ACCEPT (the connect timer, a reset, an
/// ABORT), `Err(ConnectError::Tcp)` when TCP cannot connect,
/// `Err(ConnectError::Session)` for arguments the session refuses (options
/// beyond what the pool's buffers hold among them),
/// `Err(ConnectError::Config)` for an unusable configuration, and, with a
/// [`SessionPool`] in `config.session_buffers`,
/// `Err(ConnectError::NoSessionBuffers)` when it has none free and
/// `Err(ConnectError::SessionBuffers)` when its buffers are too small for
/// the configuration: all before TCP connects.
pub async fn connect<'a>(
    mut socket: TcpSocket<'a>,
    remote: impl Into<IpEndpoint>,
    caller_data: Option<&[u8]>,
    options: Options,
    config: &Config,
) -> Result<(Connection<'a>, Option<Bytes>), ConnectError> {
    let session =
        Session::caller(config.session.clone(), next_id()).map_err(ConnectError::Config)?;
    Session::check_connect(&config.session, caller_data, &options)
        .map_err(ConnectError::Session)?;
    // Buffers before TCP: an empty pool, or options the buffers cannot
    // hold, fail here with nothing sent.
    let mut session =
        buffers::PooledSession::new(session, config.session_buffers).map_err(|r| match r {
            buffers::Refusal::Empty => ConnectError::NoSessionBuffers,
            buffers::Refusal::Buffers(e) => ConnectError::SessionBuffers(e),
        })?;
    if !session.buffers_hold(&options) {
        // What the session's `connect` would say, said before TCP connects.
        return Err(ConnectError::Session(Error::InvalidGrant));
    }
    config.prepare(&mut socket);
    // The session connects once TCP is up: its connect timer then measures
    // the callee's answer, not a TCP handshake still retransmitting its SYN
    // (bounded by TCP's own time-out).
    socket.connect(remote).await.map_err(ConnectError::Tcp)?;
    session
        .connect(connection::now(), caller_data, options)
        .map_err(ConnectError::Session)?;
    let mut conn = Connection::new(socket, session, config.clone());
    let answer = conn
        .until(|c| {
            c.answer
                .take()
                .map(Ok)
                .or_else(|| c.session.close_reason().cloned().map(Err))
        })
        .await;
    match answer {
        Ok(Answer::Connected(callee_data)) => Ok((conn, callee_data)),
        Ok(Answer::Refused { reason, data }) => {
            // The REJECT is followed by both FINs (§5.2): finish them.
            let _ = conn.closed().await;
            Err(ConnectError::Refused { reason, data })
        }
        Err(reason) => {
            debug!(
                "session {}: connect ended before ACCEPT: {}",
                conn.session.id(),
                reason
            );
            let _ = conn.closed().await;
            Err(ConnectError::Closed(reason))
        }
    }
}
