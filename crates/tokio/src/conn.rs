//! One connection's shared state and the task that drives its session over
//! a tokio `TcpStream`.
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
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{Instrument, debug, trace};

/// Bytes read from TCP per read, and the most handed to TCP per write.
const IO_CHUNK: usize = 64 * 1024;

/// How long the task lets TCP carry our ABORT before it resets the
/// connection (`docs/protocol.md` §5.4: the RST follows the ABORT within a
/// bounded time; the session's own abort-flush timer bounds the wait for the
/// ABORT to reach TCP).
pub(crate) const ABORT_LINGER: std::time::Duration = std::time::Duration::from_millis(200);

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
pub(crate) fn spawn(conn: Arc<Conn>, stream: TcpStream, span: tracing::Span) {
    tokio::spawn(drive(conn, stream).instrument(span));
}

async fn drive(conn: Arc<Conn>, mut stream: TcpStream) {
    let mut input = vec![0u8; IO_CHUNK];
    // Received, not yet taken by the session (it pushes back while the
    // application has not read: TCP's window closes meanwhile).
    let mut pending: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut eof_told = false;
    let mut reset = false;
    loop {
        // The session's turn, under the lock: input, the peer's FIN once
        // every byte before it was taken, then what it wants sent.
        let (out, action, deadline, finished) = {
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
            let out = st.session.poll_transmit_bytes(now, IO_CHUNK);
            let action = if out.is_none() {
                st.session.poll_transport_action()
            } else {
                None
            };
            let deadline = st.session.poll_timeout().map(|t| st.deadline(t));
            let finished = st.closed.is_some() && out.is_none() && action.is_none();
            drop(st);
            if changed {
                conn.changed.notify_waiters();
            }
            (out, action, deadline, finished)
        };
        if let Some(bytes) = out {
            if let Err(e) = stream.write_all(&bytes).await {
                debug!(error = %e, "write failed");
                transport_gone(&conn, TransportClosed::Reset);
                break;
            }
            let mut st = conn.lock();
            if st.session.send_queue() == 0 {
                // Everything is with TCP: a flush waiting on it is done.
                wake(&mut st.write_waker);
            }
            continue;
        }
        match action {
            Some(TransportAction::Fin) => {
                if let Err(e) = stream.shutdown().await {
                    debug!(error = %e, "shutdown failed");
                }
                continue;
            }
            Some(TransportAction::Reset) => {
                reset = true;
                break;
            }
            None => {}
        }
        if finished {
            // The session has ended and handed TCP everything: a graceful
            // end came with the peer's FIN (both FINs exchanged); any other
            // end needs nothing more from this socket.
            break;
        }
        tokio::select! {
            r = stream.read(&mut input), if pending.is_empty() && !eof => {
                match r {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        pending.extend_from_slice(&input[..n]);
                        let mut st = conn.lock();
                        let now = st.now();
                        st.session.handle_peer_alive(now);
                    }
                    Err(e) => {
                        debug!(error = %e, "read failed");
                        transport_gone(&conn, TransportClosed::Reset);
                        break;
                    }
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {}
            () = conn.kick.notified() => {}
        }
    }
    if reset {
        // ABORT (if any) was handed to TCP above: let it leave, briefly,
        // then reset (SO_LINGER 0: close sends RST, §3.6).
        let _ = tokio::time::timeout(ABORT_LINGER, stream.flush()).await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        if let Err(e) = stream.set_zero_linger() {
            debug!(error = %e, "SO_LINGER 0 failed");
        }
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

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The socket failed: the session learns it as a reset.
fn transport_gone(conn: &Conn, how: TransportClosed) {
    let mut st = conn.lock();
    let now = st.now();
    st.session.handle_transport_closed(now, how);
    st.dispatch();
}
