//! One connection's shared state and the task that drives its session over
//! a byte stream: a tokio `TcpStream`, or any [`Transport`].
//!
//! The [`bookend_session::Session`] is sans-IO; this module is its driver,
//! in the shape of quinn's: a task owns the socket and is the only one that
//! reads, writes and waits on timers, and the application's handles call
//! the session's commands under a short lock and wake the task. Nothing
//! holds the lock across an `.await`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bookend_session::{CloseReason, Event, Instant, Session, TransportAction, TransportClosed};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{Instrument, debug, trace};

/// A byte stream a session can run over: TCP, or anything ordered and
/// reliable that ends with an end of stream and can be reset (a TLS stream,
/// a simulated TCP in tests). The session's FIN is the stream's
/// `shutdown`, its RST [`reset_on_drop`](Self::reset_on_drop) then drop.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether written bytes may wait in the stream until it is flushed (a
    /// TLS stream's records): the driver then flushes after writing. A
    /// kernel socket sends on write, and is spared the flush.
    const BUFFERS_WRITES: bool = true;

    /// Makes dropping the stream reset the connection (TCP: SO_LINGER 0, so
    /// that close sends RST, §3.6). Streams that cannot are just dropped.
    fn reset_on_drop(&mut self) {}
}

impl Transport for TcpStream {
    const BUFFERS_WRITES: bool = false;

    fn reset_on_drop(&mut self) {
        if let Err(e) = self.set_zero_linger() {
            debug!(error = %e, "SO_LINGER 0 failed");
        }
    }
}

/// Any ordered, reliable byte stream, as a [`Transport`] that cannot be
/// reset (a reset is a plain drop): for streams this crate does not know.
#[derive(Debug)]
pub struct Plain<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for Plain<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Plain<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for Plain<S> {}

/// The read buffer's first size; it grows (×4) while reads fill it.
const INPUT_START: usize = 1024;

/// Small reads in a row after which a quiet session's grown read buffer
/// goes back to [`INPUT_START`].
const SMALL_READS_TO_SHRINK: u8 = 8;

/// Bytes read from TCP per read, and the most handed to TCP per write.
const IO_CHUNK: usize = 64 * 1024;

/// How long the task lets TCP carry our ABORT before it resets the
/// connection, waiting for the peer's own reset or FIN (`docs/protocol.md`
/// §5.4: the RST follows the ABORT within a bounded time, 1 s after the
/// ABORT reached TCP; the session's abort-flush timer bounds the wait for
/// the ABORT to reach TCP).
pub(crate) const ABORT_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// What the handshake produced, for the one who waits on it (`connect`, or
/// the listener's acceptor).
#[derive(Debug)]
pub(crate) enum Handshake {
    /// Caller: the callee's ACCEPT.
    Connected { callee_data: Option<Bytes> },
    /// Caller: the callee's REJECT.
    Refused {
        reason: bookend_session::Reason,
        data: Option<Bytes>,
    },
    /// Callee: the caller's CONNECT.
    Request(bookend_session::ConnectRequest),
}

/// The part of a connection both the task and the handles see.
pub(crate) struct State {
    pub(crate) session: Session,
    /// Time zero of the session's clock.
    epoch: tokio::time::Instant,
    /// Handshake outcomes not yet taken.
    pub(crate) handshake: VecDeque<Handshake>,
    /// Woken on FD_READ, the peer's DISCONNECT and the end.
    pub(crate) read_waker: Option<Waker>,
    /// Woken on FD_WRITE and the end.
    pub(crate) write_waker: Option<Waker>,
    /// The session ended, and how.
    pub(crate) closed: Option<CloseReason>,
    /// The task has finished with the socket.
    pub(crate) done: bool,
    /// The task holds bytes taken from the session that the transport has
    /// not yet taken (or not yet flushed): a flush waits for them too.
    pub(crate) in_flight: bool,
}

impl State {
    /// The session's clock now.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + std::time::Duration::from_micros(at.total_micros())
    }

    /// Takes the session's events: wakes whoever each concerns.
    fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.session.poll_event() {
            any = true;
            trace!(event = ?e, "event");
            match e {
                Event::ConnectRequest(r) => self.handshake.push_back(Handshake::Request(r)),
                Event::Connected { callee_data, .. } => {
                    self.handshake
                        .push_back(Handshake::Connected { callee_data });
                    wake(&mut self.write_waker);
                }
                Event::Refused { reason, data } => {
                    self.handshake
                        .push_back(Handshake::Refused { reason, data });
                }
                Event::Readable | Event::PeerDisconnected => wake(&mut self.read_waker),
                Event::Writable => wake(&mut self.write_waker),
                Event::Closed(reason) => {
                    debug!(%reason, "closed");
                    self.closed = Some(reason);
                    wake(&mut self.read_waker);
                    wake(&mut self.write_waker);
                }
            }
        }
        any
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// A connection: the state, and the two notifications between its handles
/// and its task.
pub(crate) struct Conn {
    state: Mutex<State>,
    /// The task has work: a command queued bytes, a read made room.
    kick: Notify,
    /// Something the handles wait on changed (handshake, disconnect, end).
    changed: Notify,
    pub(crate) peer: std::net::SocketAddr,
    pub(crate) local: std::net::SocketAddr,
}

impl Conn {
    pub(crate) fn new(
        session: Session,
        epoch: tokio::time::Instant,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                session,
                epoch,
                handshake: VecDeque::new(),
                read_waker: None,
                write_waker: None,
                closed: None,
                done: false,
                in_flight: false,
            }),
            kick: Notify::new(),
            changed: Notify::new(),
            peer,
            local,
        })
    }

    /// The state, locked. A panic while it was held (a bug) must not turn
    /// every later call into a second panic: the state is still consistent
    /// at every lock boundary, so the poison is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the session, then lets the task send what it queued and
    /// the waiters see what it changed.
    pub(crate) fn command<R>(&self, f: impl FnOnce(&mut Session, Instant) -> R) -> R {
        let r = {
            let mut st = self.lock();
            let now = st.now();
            let r = f(&mut st.session, now);
            st.dispatch();
            r
        };
        self.kick.notify_one();
        self.changed.notify_waiters();
        r
    }

    /// Lets the task look again (a read made room for more input).
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    /// Waits until `ready` says yes, checking it under the lock whenever
    /// the task or a command changed something.
    pub(crate) async fn wait<R>(&self, mut ready: impl FnMut(&mut State) -> Option<R>) -> R {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = ready(&mut self.lock()) {
                return r;
            }
            notified.await;
        }
    }
}

/// Drives `conn`'s session over `stream` until both are done: feeds the
/// session what TCP delivers (keeping what it does not take until it makes
/// room), hands TCP what the session queues, its FIN or RST, and runs its
/// timers. Spawned once per connection.
pub(crate) fn spawn<T: Transport>(conn: Arc<Conn>, stream: T, span: tracing::Span) {
    tokio::spawn(drive(conn, stream).instrument(span));
}

async fn drive<T: Transport>(conn: Arc<Conn>, mut stream: T) {
    let end = exchange(&conn, &mut stream).await;
    // The side that received the ABORT (or a reset) has nothing of its own
    // in flight to protect: it resets at once (§5.4), which also ends the
    // aborting side's wait below.
    let ours_in_flight = !matches!(
        conn.lock().closed,
        Some(CloseReason::Aborted {
            by: bookend_session::Side::Peer,
            ..
        }) | Some(CloseReason::Reset)
    );
    let linger = matches!(end, End::Reset { linger: true }) && ours_in_flight;
    if matches!(end, End::Reset { .. }) && !linger {
        // Nothing of ours to protect (no ABORT went: our FIN did, or the
        // flush bound ran out; or the peer ended it): the RST goes at once.
        stream.reset_on_drop();
    } else if linger {
        // The ABORT (if any) is with TCP. A peer that receives it resets
        // the connection itself (§5.4); wait for that, or for its FIN, at
        // most ABORT_LINGER, so that our reset does not overtake the ABORT
        // still in flight or in the send buffer, then reset (SO_LINGER 0:
        // close sends RST, §3.6).
        // On the heap, and only here: an array local to this async fn
        // would sit in every connection's task for its whole life (4 KiB
        // of each idle session's memory).
        let mut sink = vec![0u8; 4096];
        let _ = tokio::time::timeout(ABORT_LINGER, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        stream.reset_on_drop();
    }
    drop(stream);
    let mut st = conn.lock();
    st.done = true;
    st.dispatch();
    wake(&mut st.read_waker);
    wake(&mut st.write_waker);
    drop(st);
    conn.changed.notify_waiters();
}

/// The I/O loop: reading, writing, the session's timers and the handles'
/// kicks all wait in one `select!`, so that a write TCP cannot take now
/// (the peer's window is closed) never stops the reading that may open it,
/// nor the timers that bound the wait. Returns whether the session asked
/// for a reset.
/// What the write side did in one turn of [`exchange`].
enum WriteStep {
    Wrote(std::io::Result<usize>),
    Flushed(std::io::Result<()>),
    Shut(std::io::Result<()>),
}

/// How [`exchange`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Nothing more to do with the socket: drop it.
    Done,
    /// The session asked for a reset; `linger` when an ABORT went to TCP
    /// (and no FIN before it) that the RST must not overtake.
    Reset { linger: bool },
}

async fn exchange<T: Transport>(conn: &Conn, stream: &mut T) -> End {
    let (mut rd, mut wr) = tokio::io::split(stream);
    // The read buffer grows when reads fill it, up to IO_CHUNK, and starts
    // small: an idle connection holds little (a session waiting for its
    // peer's next message needs no 64 KiB).
    let mut input = vec![0u8; INPUT_START];
    // Reads in a row that a start-size buffer would have held: several
    // after a burst mean the burst is over, and a grown buffer can go back
    // to its start size (one small read in a bulk transfer does not: going
    // back then cost bulk three quarters of its throughput).
    let mut small_reads: u8 = 0;
    // Empty parts of the session are freed when it goes quiet.
    let mut spares = bookend_session::Spares::new(0);
    // Received, not yet taken by the session (it pushes back while the
    // application has not read: TCP's window closes meanwhile).
    let mut pending: Vec<u8> = Vec::new();
    // Taken from the session, not yet all taken by TCP.
    let mut out: Option<Bytes> = None;
    let mut written = 0;
    let mut eof = false;
    let mut eof_told = false;
    // One timer for the connection's life, moved only when the session's
    // next deadline moves: a timer registered afresh on every turn of the
    // loop made tokio's time driver wake its I/O driver (an eventfd write
    // and an extra epoll_wait) whenever it was the earliest deadline.
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    let mut armed: Option<tokio::time::Instant> = None;
    // Bytes written since the last flush: a transport that buffers (TLS)
    // sends them only when flushed, and the peer may be waiting for them.
    let mut unflushed = false;
    // The session's FIN, taken while bytes before it were still to be
    // written or flushed: sent (`shutdown`) once they are.
    let mut fin_wanted = false;
    // Our FIN went: no ABORT can follow it, so a reset then has nothing to
    // protect.
    let mut fin_sent = false;
    // The session's RST, taken while bytes before it (its ABORT) were still
    // to be written or flushed: sent once they are, or at this time.
    let mut reset_by: Option<tokio::time::Instant> = None;
    loop {
        // The session's turn, under the lock: input, the peer's FIN once
        // every byte before it was taken, timers, then what it wants sent.
        let (deadline, finished, all_out) = {
            let mut st = conn.lock();
            let now = st.now();
            if !pending.is_empty() {
                let n = st.session.handle_bytes(now, &pending);
                pending.drain(..n);
            }
            if eof && pending.is_empty() && !eof_told {
                eof_told = true;
                st.session
                    .handle_transport_closed(now, TransportClosed::Fin);
            }
            st.session.handle_timeout(now);
            let changed = st.dispatch();
            if out.is_none() {
                out = st.session.poll_transmit_bytes(now, IO_CHUNK);
                written = 0;
            }
            // The session's FIN or RST is asked for on every turn, even
            // while a chunk is still with TCP: an RST (abort, or the
            // abort-flush timer giving up on a peer whose window stays
            // closed) must not wait for a write that may never finish. A
            // FIN waits for the chunk before it: it is kept until then.
            match st.session.poll_transport_action() {
                Some(TransportAction::Fin) => fin_wanted = true,
                // The RST waits for the ABORT before it to be written and
                // flushed, at most ABORT_LINGER (§5.4: the RST follows once
                // the ABORT is with TCP, or when the flush bound runs out).
                Some(TransportAction::Reset) => {
                    reset_by.get_or_insert(tokio::time::Instant::now() + ABORT_LINGER);
                }
                None => {}
            }
            let all_out = out.is_none() && !unflushed;
            st.in_flight = !all_out;
            if reset_by.is_some() && all_out {
                return End::Reset { linger: !fin_sent };
            }
            let deadline = st.session.poll_timeout().map(|t| st.deadline(t));
            if all_out && pending.is_empty() && !fin_wanted && reset_by.is_none() {
                // Quiet: give back what the session holds empty, and the
                // input kept for it.
                st.session.trim(&mut spares);
                pending = Vec::new();
                if input.len() > INPUT_START && small_reads >= SMALL_READS_TO_SHRINK {
                    input = vec![0u8; INPUT_START];
                    small_reads = 0;
                }
            }
            let finished = st.closed.is_some() && all_out && !fin_wanted && reset_by.is_none();
            if all_out && st.session.send_queue() == 0 {
                // Everything is with TCP: a flush waiting on it is done.
                wake(&mut st.write_waker);
            }
            drop(st);
            if changed {
                conn.changed.notify_waiters();
            }
            (deadline, finished, all_out)
        };
        if finished {
            // The session has ended and handed TCP everything: a graceful
            // end came with the peer's FIN (both FINs exchanged); any other
            // end needs nothing more from this socket.
            return End::Done;
        }
        if deadline != armed {
            if let Some(at) = deadline {
                sleep.as_mut().reset(at);
            }
            armed = deadline;
        }
        let unsent: &[u8] = out.as_deref().map_or(&[], |b| &b[written..]);
        // The write side's one step: the unsent bytes, else a flush, else
        // the FIN. Flushing and the FIN wait here with the reading and the
        // timers, never apart: a TLS stream's flush or close_notify held up
        // by the peer's closed window must not stop the reading that opens
        // it.
        let shut = all_out && fin_wanted;
        let flush = out.is_none() && unflushed;
        let step = async {
            if !unsent.is_empty() {
                WriteStep::Wrote(wr.write(unsent).await)
            } else if flush {
                WriteStep::Flushed(wr.flush().await)
            } else {
                WriteStep::Shut(wr.shutdown().await)
            }
        };
        tokio::select! {
            w = step, if !unsent.is_empty() || flush || shut => match w {
                // A transport that takes nothing would be asked forever.
                WriteStep::Wrote(Ok(0)) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    debug!(error = %e, "write failed");
                    transport_gone(conn, &e);
                    return End::Done;
                }
                WriteStep::Wrote(Ok(n)) => {
                    written += n;
                    unflushed = T::BUFFERS_WRITES;
                    if out.as_ref().is_some_and(|b| written >= b.len()) {
                        out = None;
                    }
                }
                WriteStep::Flushed(Ok(())) => unflushed = false,
                WriteStep::Shut(r) => {
                    if let Err(e) = r {
                        debug!(error = %e, "shutdown failed");
                    }
                    fin_wanted = false;
                    fin_sent = true;
                }
                WriteStep::Wrote(Err(e)) | WriteStep::Flushed(Err(e)) => {
                    debug!(error = %e, "write failed");
                    transport_gone(conn, &e);
                    return End::Done;
                }
            },
            r = rd.read(&mut input), if pending.is_empty() && !eof => match r {
                Ok(0) => eof = true,
                Ok(n) => {
                    small_reads = if n <= INPUT_START {
                        small_reads.saturating_add(1)
                    } else {
                        0
                    };
                    // Straight to the session; only what it does not take
                    // now (it pushes back) is kept, not every read copied.
                    let mut st = conn.lock();
                    let now = st.now();
                    st.session.handle_peer_alive(now);
                    let taken = st.session.handle_bytes(now, &input[..n]);
                    drop(st);
                    pending.extend_from_slice(&input[taken..n]);
                    if n == input.len() && input.len() < IO_CHUNK {
                        input.resize(input.len() * 4, 0);
                    }
                }
                Err(e) => {
                    // Reads happen only once `pending` is empty, and every
                    // read's bytes went to the session at once: nothing
                    // received (the peer's ABORT, say) is lost here.
                    debug!(error = %e, "read failed");
                    transport_gone(conn, &e);
                    return End::Done;
                }
            },
            // Fired: the session's turn above handles it; the timer is
            // re-armed for whatever deadline that leaves.
            () = &mut sleep, if armed.is_some() => armed = None,
            () = conn.kick.notified() => {}
            // The flush bound ran out with the ABORT still unwritten:
            // nothing to wait for.
            () = tokio::time::sleep_until(reset_by.unwrap_or_else(tokio::time::Instant::now)),
                if reset_by.is_some() => return End::Reset { linger: false },
        }
    }
}

/// The socket failed: the session learns it as a reset, or as the
/// transport's time-out when TCP gave up (ETIMEDOUT).
fn transport_gone(conn: &Conn, e: &std::io::Error) {
    let how = if e.kind() == std::io::ErrorKind::TimedOut {
        TransportClosed::TimedOut
    } else {
        TransportClosed::Reset
    };
    let mut st = conn.lock();
    let now = st.now();
    st.session.handle_transport_closed(now, how);
    st.dispatch();
}
