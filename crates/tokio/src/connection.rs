//! The application's handle on one session: `connect`, stream I/O
//! (`AsyncRead`/`AsyncWrite`), messages, disconnect data, close and abort.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bookend_session::{CloseReason, Config, Error as SessionError, Options, Reason, Session};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::conn::{self, Conn, Handshake, Transport};

/// Why a connect did not give a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The callee refused: REJECT with its reason and reject data
    /// (WSAECONNREFUSED with bookend's extension).
    Refused {
        /// The REJECT's reason code (`docs/protocol.md` §8).
        reason: Reason,
        /// The reject data; `None` and empty differ.
        data: Option<Bytes>,
    },
    /// The session ended before ACCEPT: reset, aborted by either side with
    /// reason and data, timed out (which timer), or a protocol error.
    Closed(CloseReason),
    /// TCP could not connect (refused, unreachable) or the address did not
    /// resolve.
    Io(io::ErrorKind, String),
    /// The configuration or options cannot work (out of range, a receive
    /// buffer smaller than a message, caller data over the proposal).
    Invalid(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused { reason, data } => {
                write!(f, "refused: {reason}")?;
                if let Some(d) = data {
                    write!(f, " ({} bytes of reject data)", d.len())?;
                }
                Ok(())
            }
            Self::Closed(r) => write!(f, "closed before ACCEPT: {r}"),
            Self::Io(_, e) => write!(f, "TCP: {e}"),
            Self::Invalid(e) => write!(f, "invalid: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Connects to `addr` with `caller_data` (WSAConnect's caller data) and
/// `options` as the proposal, under `config` (timers, buffers, whether
/// integrity is required). Resolves once the callee answers: the connection
/// and the callee data, or the refusal with its reason and data.
///
/// Cancel safety: dropping the future before it resolves abandons the
/// attempt; the session is closed (an ABORT, or a RST before TCP is up).
///
/// This function returns `Err(ConnectError::Refused)` for a REJECT,
/// `Err(ConnectError::Closed)` when the session ends otherwise before ACCEPT
/// (a reset, an ABORT, the connect timer; it resolves once the connection is
/// finished with, our ABORT and RST sent), `Err(ConnectError::Io)` when TCP
/// cannot connect, and `Err(ConnectError::Invalid)` for unusable settings.
pub async fn connect(
    addr: impl ToSocketAddrs,
    caller_data: Option<&[u8]>,
    options: Options,
    config: Config,
) -> Result<(Connection, Option<Bytes>), ConnectError> {
    // What the session would refuse fails here, before TCP connects (as
    // WSAConnect checks its arguments first): the callee never sees a
    // connection that would only wait out its handshake timer.
    config
        .validate()
        .map_err(|e| ConnectError::Invalid(e.to_string()))?;
    Session::check_connect(&config, caller_data, &options)
        .map_err(|e| ConnectError::Invalid(e.to_string()))?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ConnectError::Io(e.kind(), e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map_err(|e| ConnectError::Io(e.kind(), e.to_string()))?;
    let local = stream
        .local_addr()
        .map_err(|e| ConnectError::Io(e.kind(), e.to_string()))?;
    connect_over(stream, peer, local, caller_data, options, config).await
}

/// [`connect`] over a stream already established: TCP made elsewhere, a
/// TLS stream, a simulated network's stream (wrap what this crate does not
/// know in [`Plain`](crate::Plain)). `peer` and `local` are what the
/// connection reports as its addresses.
///
/// Cancel safety: as [`connect`].
///
/// This function returns the errors of [`connect`] but `Io`.
pub async fn connect_over<T: Transport>(
    stream: T,
    peer: SocketAddr,
    local: SocketAddr,
    caller_data: Option<&[u8]>,
    options: Options,
    config: Config,
) -> Result<(Connection, Option<Bytes>), ConnectError> {
    let session =
        Session::caller(config, next_id()).map_err(|e| ConnectError::Invalid(e.to_string()))?;
    let conn = Conn::new(session, tokio::time::Instant::now(), peer, local);
    conn.command(|s, now| s.connect(now, caller_data, options))
        .map_err(|e| ConnectError::Invalid(e.to_string()))?;
    let span = tracing::debug_span!("bookend", %peer, role = "caller");
    conn::spawn(conn.clone(), stream, span);
    // Closed if this future is dropped before the answer.
    let guard = Connection::new(conn.clone());
    let outcome = conn
        .wait(|st| {
            if let Some(h) = st.handshake.pop_front() {
                return Some(Ok(h));
            }
            st.closed.clone().map(Err)
        })
        .await;
    match outcome {
        Ok(Handshake::Connected { callee_data }) => Ok((guard, callee_data)),
        Ok(Handshake::Refused { reason, data }) => Err(ConnectError::Refused { reason, data }),
        Ok(Handshake::Request(_)) => unreachable!("a caller receives no CONNECT"),
        Err(reason) => {
            // Our ABORT and RST (or whatever this end needs) go out before
            // the error does: a program that exits on it drops its runtime
            // and the driver with it, and the socket would close with a
            // FIN. Bounded by the driver's abort linger.
            conn.wait(|st| st.done.then_some(())).await;
            Err(ConnectError::Closed(reason))
        }
    }
}

pub(crate) fn next_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One established session: stream I/O (stream mode) or messages (message
/// mode), disconnect data, and its end.
///
/// Dropping it without [`close`](Self::close) closes it gracefully in the
/// background (closesocket with the default linger): a DISCONNECT without
/// data, everything queued delivered, or an ABORT(`UNREAD_DATA`) if
/// received data was left unread (RFC 9293 §3.10.4).
///
/// The teardown (that background close, an [`abort`](Self::abort)'s ABORT
/// and RST, the flush after a session error) runs on the connection's task:
/// a program that is about to end its runtime awaits
/// [`closed`](Self::closed) first, as quinn's users await `wait_idle`, or a
/// dropped runtime closes the socket with a plain FIN.
pub struct Connection {
    conn: Arc<Conn>,
    /// Closes the session when the last of this connection's handles (it,
    /// or both its halves) is gone.
    guard: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.conn.peer)
            .field("state", &self.conn.lock().session.state())
            .finish()
    }
}

fn io_error(e: SessionError) -> io::Error {
    let kind = match e {
        SessionError::WouldBlock => io::ErrorKind::WouldBlock,
        SessionError::ConnectionReset => io::ErrorKind::ConnectionReset,
        SessionError::ConnectionAborted => io::ErrorKind::ConnectionAborted,
        SessionError::Shutdown => io::ErrorKind::BrokenPipe,
        SessionError::TooLarge { .. } | SessionError::MessageTruncated { .. } => {
            io::ErrorKind::InvalidInput
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

impl Connection {
    pub(crate) fn new(conn: Arc<Conn>) -> Self {
        let guard = Arc::new(CloseOnDrop(conn.clone()));
        Self { conn, guard }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddr {
        self.conn.local
    }

    /// The options in force (granted).
    pub fn options(&self) -> Options {
        self.conn.lock().session.options()
    }

    /// Message mode: sends one whole message; waits while the send buffer
    /// cannot take it. Any number of tasks may wait at once.
    ///
    /// Cancel safety: a message is queued whole or not at all; dropping the
    /// future before it resolves queues nothing.
    ///
    /// This function returns the session's errors: `TooLarge` over the
    /// negotiated message size, `WrongMode` in stream mode, `Shutdown` after
    /// `send_disconnect`, `ConnectionReset`/`ConnectionAborted` once ended.
    pub async fn send_message(&self, message: &[u8]) -> Result<(), SessionError> {
        Ops(&self.conn).send_message(message).await
    }

    /// Message mode: the next whole message. After the peer's DISCONNECT and
    /// its last message, `Err(Disconnected)` (WSAEDISCON). Any number of
    /// tasks may wait at once; each message goes to one of them.
    ///
    /// Cancel safety: a message is taken only when this resolves; dropping
    /// the future loses nothing.
    ///
    /// This function returns the session's errors (`WrongMode`,
    /// `Disconnected`, `ConnectionReset`, `ConnectionAborted`).
    pub async fn recv_message(&self) -> Result<Bytes, SessionError> {
        Ops(&self.conn).recv_message().await
    }

    /// Ends our sending half with `data` (WSASendDisconnect): the peer gets
    /// FD_CLOSE and reads `data` with its `recv_disconnect`. Our receiving
    /// half stays open.
    ///
    /// This function returns the session's errors: `TooLarge` over the
    /// negotiated disconnect data size, `Shutdown` if already sent with
    /// data, `ConnectionReset`/`ConnectionAborted` once ended.
    pub async fn send_disconnect(&self, data: Option<&[u8]>) -> Result<(), SessionError> {
        Ops(&self.conn).send_disconnect(data).await
    }

    /// The peer's disconnect data (WSARecvDisconnect), once its DISCONNECT
    /// has arrived: `Some(data)` (possibly empty) or `None` when it sent
    /// none. Waits for the DISCONNECT; normal data before it stays readable.
    ///
    /// Cancel safety: nothing is taken until it resolves.
    ///
    /// This function returns `Err(Consumed)` if it was already read, and
    /// `ConnectionReset`/`ConnectionAborted` if the session ended without it.
    pub async fn recv_disconnect(&self) -> Result<Option<Bytes>, SessionError> {
        Ops(&self.conn).recv_disconnect().await
    }

    /// Closes gracefully (closesocket with the default linger) and waits for
    /// the end: DISCONNECT without data if not yet sent, everything queued
    /// delivered, until the peer's FIN confirms both disconnects (the seed's
    /// step 5a: closing right after `send_disconnect` still delivers). With
    /// received data unread the session is aborted with `UNREAD_DATA`.
    /// Returns how the session ended.
    pub async fn close(&self) -> CloseReason {
        Ops(&self.conn).close().await
    }

    /// Aborts (closesocket with linger {1, 0}): unsent data is discarded,
    /// then ABORT with `reason` and `data`, then a TCP reset.
    ///
    /// This function returns `TooLarge` for data over the disconnect data
    /// size, `InvalidState` once ended.
    pub fn abort(&self, reason: Reason, data: Option<&[u8]>) -> Result<(), SessionError> {
        Ops(&self.conn).abort(reason, data)
    }

    /// Waits for the end of the session and says how it ended: gracefully
    /// (both disconnects confirmed), refused, reset, aborted by either side
    /// with reason and data, timed out (which timer), or a protocol error.
    pub async fn closed(&self) -> CloseReason {
        Ops(&self.conn).closed().await
    }

    /// How the session ended, once it has (without waiting, as
    /// [`closed`](Self::closed) does, for the socket to be finished with):
    /// `None` while it lives. A send that failed because the session
    /// ended says so here.
    pub fn close_reason(&self) -> Option<CloseReason> {
        Ops(&self.conn).close_reason()
    }
}

/// The session's operations on a borrowed connection, shared by
/// [`Connection`] and its halves (which must not close it on drop as a
/// `Connection` would).
struct Ops<'a>(&'a Conn);

impl Ops<'_> {
    /// Message mode: sends one whole message; waits while the send buffer
    /// cannot take it.
    ///
    /// Cancel safety: a message is queued whole or not at all; dropping the
    /// future before it resolves queues nothing.
    ///
    /// This function returns the session's errors: `TooLarge` over the
    /// negotiated message size, `WrongMode` in stream mode, `Shutdown` after
    /// `send_disconnect`, `ConnectionReset`/`ConnectionAborted` once ended.
    async fn send_message(&self, message: &[u8]) -> Result<(), SessionError> {
        // Any number of tasks may wait here at once: each checks again
        // whenever the connection changes (room made, the end).
        let r = self
            .0
            .wait(|st| match st.session.send_message(message) {
                Err(SessionError::WouldBlock) if st.closed.is_none() => None,
                r => Some(r),
            })
            .await;
        self.0.kick();
        r
    }

    /// Message mode: the next whole message. After the peer's DISCONNECT and
    /// its last message, `Err(Disconnected)` (WSAEDISCON).
    ///
    /// Cancel safety: a message is taken only when this resolves; dropping
    /// the future loses nothing.
    ///
    /// This function returns the session's errors (`WrongMode`,
    /// `Disconnected`, `ConnectionReset`, `ConnectionAborted`).
    async fn recv_message(&self) -> Result<Bytes, SessionError> {
        // Any number of tasks may wait here at once (each message goes to
        // one of them): each checks again whenever the connection changes.
        let r = self
            .0
            .wait(|st| match st.session.recv_message_bytes() {
                Err(SessionError::WouldBlock) if st.closed.is_none() => None,
                r => Some(r),
            })
            .await;
        self.0.kick();
        r
    }

    /// Ends our sending half with `data` (WSASendDisconnect): the peer gets
    /// FD_CLOSE and reads `data` with its `recv_disconnect`. Our receiving
    /// half stays open.
    ///
    /// This function returns the session's errors: `TooLarge` over the
    /// negotiated disconnect data size, `Shutdown` if already sent with
    /// data, `ConnectionReset`/`ConnectionAborted` once ended.
    async fn send_disconnect(&self, data: Option<&[u8]>) -> Result<(), SessionError> {
        self.0.command(|s, now| s.send_disconnect(now, data))
    }

    /// The peer's disconnect data (WSARecvDisconnect), once its DISCONNECT
    /// has arrived: `Some(data)` (possibly empty) or `None` when it sent
    /// none. Waits for the DISCONNECT; normal data before it stays readable.
    ///
    /// Cancel safety: nothing is taken until it resolves.
    ///
    /// This function returns `Err(Consumed)` if it was already read, and
    /// `ConnectionReset`/`ConnectionAborted` if the session ended without it.
    async fn recv_disconnect(&self) -> Result<Option<Bytes>, SessionError> {
        self.0
            .wait(|st| match st.session.recv_disconnect_bytes() {
                Err(SessionError::NotYet) if st.closed.is_none() => None,
                r => Some(r),
            })
            .await
    }

    /// Closes gracefully (closesocket with the default linger) and waits for
    /// the end: DISCONNECT without data if not yet sent, everything queued
    /// delivered, until the peer's FIN confirms both disconnects (the seed's
    /// step 5a: closing right after `send_disconnect` still delivers). With
    /// received data unread the session is aborted with `UNREAD_DATA`.
    /// Returns how the session ended.
    async fn close(&self) -> CloseReason {
        self.0.command(|s, now| s.close(now));
        self.closed().await
    }

    /// Aborts (closesocket with linger {1, 0}): unsent data is discarded,
    /// then ABORT with `reason` and `data`, then a TCP reset.
    ///
    /// This function returns `TooLarge` for data over the disconnect data
    /// size, `InvalidState` once ended.
    fn abort(&self, reason: Reason, data: Option<&[u8]>) -> Result<(), SessionError> {
        self.0.command(|s, now| s.abort(now, reason, data))
    }

    /// Waits for the end of the session and says how it ended: gracefully
    /// (both disconnects confirmed), refused, reset, aborted by either side
    /// with reason and data, timed out (which timer), or a protocol error.
    async fn closed(&self) -> CloseReason {
        self.0
            .wait(|st| if st.done { st.closed.clone() } else { None })
            .await
    }

    fn close_reason(&self) -> Option<CloseReason> {
        self.0.lock().closed.clone()
    }
}

impl AsyncRead for Connection {
    /// Stream mode: received DATA; `Ok(())` with nothing read at the end of
    /// the peer's data (its DISCONNECT: `recv` returns 0).
    ///
    /// Cancel safety: a read takes bytes only when it returns them.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.conn, cx, buf)
    }
}

impl AsyncWrite for Connection {
    /// Stream mode: queues as much of `buf` as the send buffer takes.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write(&self.conn, cx, buf)
    }

    /// Waits until everything queued has been taken by TCP (written, and
    /// flushed where the transport buffers).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_flush(&self.conn, cx)
    }

    /// WSASendDisconnect without data: ends our sending half.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown(&self.conn))
    }
}

// The stream operations, shared by `Connection` and its halves. Each checks
// and registers its waker under one lock, the one under which the task posts
// the event that wakes it, so no wake-up falls between the two.

fn poll_read(conn: &Conn, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    let mut st = conn.lock();
    match st.session.recv(buf.initialize_unfilled()) {
        Ok(n) => {
            buf.advance(n);
            drop(st);
            conn.kick();
            Poll::Ready(Ok(()))
        }
        Err(SessionError::WouldBlock) if st.closed.is_none() => {
            st.read_waker = Some(cx.waker().clone());
            Poll::Pending
        }
        Err(SessionError::WouldBlock) => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the session ended",
        ))),
        Err(e) => Poll::Ready(Err(io_error(e))),
    }
}

fn poll_write(conn: &Conn, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    let mut st = conn.lock();
    match st.session.send(buf) {
        Ok(n) => {
            drop(st);
            conn.kick();
            Poll::Ready(Ok(n))
        }
        Err(SessionError::WouldBlock) => {
            st.write_waker = Some(cx.waker().clone());
            Poll::Pending
        }
        Err(e) => Poll::Ready(Err(io_error(e))),
    }
}

fn poll_flush(conn: &Conn, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut st = conn.lock();
    if (st.session.send_queue() == 0 && !st.in_flight) || st.closed.is_some() {
        return Poll::Ready(Ok(()));
    }
    st.write_waker = Some(cx.waker().clone());
    drop(st);
    conn.kick();
    Poll::Pending
}

fn shutdown(conn: &Conn) -> io::Result<()> {
    conn.command(|s, now| {
        if s.local_disconnected() {
            Ok(())
        } else {
            s.send_disconnect(now, None)
        }
    })
    .map_err(io_error)
}

impl Connection {
    /// Splits the connection into a receiving and a sending half, owned,
    /// for two tasks (tokio's `into_split`). The session closes gracefully
    /// when both are dropped, as when a `Connection` is.
    pub fn into_split(self) -> (RecvHalf, SendHalf) {
        // The halves share the close on drop.
        let Self { conn, guard } = self;
        (
            RecvHalf {
                conn: conn.clone(),
                _guard: guard.clone(),
            },
            SendHalf {
                conn,
                _guard: guard,
            },
        )
    }
}

/// Closes the session gracefully (closesocket, in the background) once the
/// last handle is gone; nothing once it has ended.
struct CloseOnDrop(Arc<Conn>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let closed = self.0.lock().closed.is_some();
        if !closed {
            self.0.command(|s, now| s.close(now));
        }
    }
}

/// The receiving half of a [`Connection`] ([`Connection::into_split`]):
/// stream data (`AsyncRead`), messages, the peer's disconnect data, the end.
pub struct RecvHalf {
    conn: Arc<Conn>,
    _guard: Arc<CloseOnDrop>,
}

/// The sending half of a [`Connection`] ([`Connection::into_split`]):
/// stream data (`AsyncWrite`), messages, disconnect data, close and abort.
pub struct SendHalf {
    conn: Arc<Conn>,
    _guard: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvHalf")
            .field("peer", &self.conn.peer)
            .finish()
    }
}

impl std::fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHalf")
            .field("peer", &self.conn.peer)
            .finish()
    }
}

impl RecvHalf {
    /// As [`Connection::recv_message`].
    ///
    /// This function returns the errors of [`Connection::recv_message`].
    pub async fn recv_message(&self) -> Result<Bytes, SessionError> {
        Ops(&self.conn).recv_message().await
    }

    /// As [`Connection::recv_disconnect`].
    ///
    /// This function returns the errors of [`Connection::recv_disconnect`].
    pub async fn recv_disconnect(&self) -> Result<Option<Bytes>, SessionError> {
        Ops(&self.conn).recv_disconnect().await
    }

    /// As [`Connection::closed`].
    pub async fn closed(&self) -> CloseReason {
        Ops(&self.conn).closed().await
    }

    /// As [`Connection::close_reason`].
    pub fn close_reason(&self) -> Option<CloseReason> {
        Ops(&self.conn).close_reason()
    }

    /// As [`Connection::abort`]: a reader that cannot go on (its output
    /// is gone) aborts the whole session.
    ///
    /// This function returns the errors of [`Connection::abort`].
    pub fn abort(&self, reason: Reason, data: Option<&[u8]>) -> Result<(), SessionError> {
        Ops(&self.conn).abort(reason, data)
    }
}

impl SendHalf {
    /// As [`Connection::send_message`].
    ///
    /// This function returns the errors of [`Connection::send_message`].
    pub async fn send_message(&self, message: &[u8]) -> Result<(), SessionError> {
        Ops(&self.conn).send_message(message).await
    }

    /// As [`Connection::send_disconnect`].
    ///
    /// This function returns the errors of [`Connection::send_disconnect`].
    pub async fn send_disconnect(&self, data: Option<&[u8]>) -> Result<(), SessionError> {
        Ops(&self.conn).send_disconnect(data).await
    }

    /// As [`Connection::close`]: closes the whole session gracefully.
    pub async fn close(&self) -> CloseReason {
        Ops(&self.conn).close().await
    }

    /// As [`Connection::close_reason`].
    pub fn close_reason(&self) -> Option<CloseReason> {
        Ops(&self.conn).close_reason()
    }

    /// As [`Connection::abort`].
    ///
    /// This function returns the errors of [`Connection::abort`].
    pub fn abort(&self, reason: Reason, data: Option<&[u8]>) -> Result<(), SessionError> {
        Ops(&self.conn).abort(reason, data)
    }
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.conn, cx, buf)
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write(&self.conn, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_flush(&self.conn, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown(&self.conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A split connection frees its state once both halves are gone (the
    /// split forgot the `Connection` and leaked one reference).
    #[tokio::test]
    async fn split_halves_free_the_connection() {
        let session = Session::caller(Config::default(), 1).unwrap();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let conn = Conn::new(session, tokio::time::Instant::now(), addr, addr);
        let weak = Arc::downgrade(&conn);
        let (rx, tx) = Connection::new(conn).into_split();
        drop((rx, tx));
        assert!(weak.upgrade().is_none(), "the connection's state leaked");
    }
}
