//! One bookend connection over an embassy-net `TcpSocket`: the session, the
//! shared pump ([`bookend_link::Link`]) and the waits between pumps.
//!
//! The connection is driven while one of its `async` methods runs: each
//! pumps (received bytes into the session, its frames out, FIN or RST,
//! timers), checks whether what the caller waits for has happened, and
//! otherwise sleeps until the socket or the next deadline wakes it. There is
//! no task per connection and no lock: the application's task owns the
//! connection, as it owns an embassy `TcpSocket`.

use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;
use core::time::Duration;

use bookend_link::Link;
use bookend_session::{
    CloseReason, ConnectRequest, Error, Event, Instant, Options, Reason, Session, Spares,
};
use bytes::Bytes;
use embassy_net::IpEndpoint;
use embassy_net::tcp::TcpSocket;
use embassy_time::Timer;

use crate::Config;
use crate::fmt::debug;
use crate::tcp::{self, Tcp};

/// How often a connection whose session holds back input (the application
/// has not read) looks at its socket again while it waits for something
/// else: embassy-net wakes a reader only when the socket has nothing to
/// read, so with unread bytes in it only a state change sent to the writer
/// or a timer would. A safety net, not the usual path.
pub const BACKPRESSURE_RECHECK: Duration = Duration::from_millis(50);

/// The most pumps in a row before the driver sleeps: each moves everything
/// that can move; another is needed only for a timer made due by the first
/// or output TCP made room for (as `bookend-smoltcp`'s visit).
const PUMPS_PER_STEP: usize = 4;

/// The session's clock: embassy-time's, in microseconds since boot.
pub(crate) fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

/// The session's deadline `t` on embassy-time's clock, rounded up to its
/// tick: rounded down, a timer would fire just before the deadline, find
/// nothing due and fire again at once until the clock reached it.
fn at(t: Instant) -> embassy_time::Instant {
    let us = t.total_micros();
    let at = embassy_time::Instant::from_micros(us);
    if at.as_micros() < us {
        at + embassy_time::Duration::from_ticks(1)
    } else {
        at
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// What the handshake ended with, for the caller.
#[derive(Debug)]
pub(crate) enum Answer {
    Connected(Option<Bytes>),
    Refused { reason: Reason, data: Option<Bytes> },
}

/// A bookend session over one embassy-net TCP socket (either role): what
/// [`crate::connect`] and [`crate::Incoming::accept`] return.
///
/// End it with [`close`](Self::close) or [`abort`](Self::abort) and await
/// them: embassy-net removes a dropped socket from its stack at once, so a
/// connection dropped before they return loses what TCP had not yet sent,
/// its FIN or its RST (embassy #1471). Both run the whole sequence: the
/// DISCONNECT or ABORT frame, TCP's FIN or RST, flushed within bounds.
#[must_use = "end a connection with `close().await` or `abort(..).await`"]
pub struct Connection<'a> {
    pub(crate) socket: TcpSocket<'a>,
    /// The session, with the pool its buffers go back to when dropped.
    pub(crate) session: crate::buffers::PooledSession,
    link: Link,
    config: Config,
    /// The peer's FIN was received (`tcp::Tcp::peer_fin`).
    peer_fin: bool,
    /// The handshake's outcome, until taken.
    pub(crate) answer: Option<Answer>,
    /// The caller's request (callee), until taken.
    pub(crate) request: Option<ConnectRequest>,
    /// TCP's side is done (FIN or RST flushed, or bounded out): nothing
    /// more to send.
    finished: bool,
    /// The application's abort was taken by the session: a later `abort`
    /// finishes it (its first future may have been dropped mid-flush).
    aborted: bool,
}

impl<'a> Connection<'a> {
    pub(crate) fn new(
        socket: TcpSocket<'a>,
        session: crate::buffers::PooledSession,
        config: Config,
    ) -> Self {
        let link = Link::new(now(), config.give_up_after());
        Self {
            socket,
            session,
            link,
            config,
            peer_fin: false,
            answer: None,
            request: None,
            finished: false,
            aborted: false,
        }
    }

    /// The peer's address and port.
    pub fn remote_endpoint(&self) -> Option<IpEndpoint> {
        self.socket.remote_endpoint()
    }

    /// Our address and port.
    pub fn local_endpoint(&self) -> Option<IpEndpoint> {
        self.socket.local_endpoint()
    }

    /// The options in force (granted at the handshake).
    pub fn options(&self) -> Options {
        self.session.options()
    }

    /// The session, for what this type does not wrap (its state, buffer
    /// usage, `heap_bytes`). Commands belong to this type's methods, which
    /// also send what they queue.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.session.close_reason()
    }

    /// Whether the peer's DISCONNECT arrived (FD_CLOSE): stream reads then
    /// return 0 once the data before it is read, message reads
    /// `Error::Disconnected` (WSAEDISCON); its data is for
    /// [`recv_disconnect`](Self::recv_disconnect).
    pub fn peer_disconnected(&self) -> bool {
        self.session.peer_disconnected()
    }

    /// Stream mode: sends some of `data`, waiting until the session takes at
    /// least one byte; returns how many it took (WSASend).
    ///
    /// This function returns the session's refusals (`Shutdown` after
    /// `send_disconnect`, `WrongMode`, the reason it ended).
    pub async fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.command_until(|s, _| match s.send(data) {
            Err(Error::WouldBlock) => None,
            r => Some(r),
        })
        .await
    }

    /// Stream mode: sends all of `data`.
    pub async fn send_all(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let n = self.send(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Message mode: sends `message` whole, waiting for room for it.
    ///
    /// This function returns `Err(Error::TooLarge)` for a message over the
    /// negotiated maximum, and the session's other refusals.
    pub async fn send_message(&mut self, message: &[u8]) -> Result<(), Error> {
        self.command_until(|s, _| match s.send_message(message) {
            Err(Error::WouldBlock) => None,
            r => Some(r),
        })
        .await
    }

    /// Stream mode: reads into `buf`, waiting for at least one byte.
    /// `Ok(0)` is the peer's DISCONNECT once everything before it was read
    /// (Winsock's "recv returns zero": read its data with
    /// [`recv_disconnect`](Self::recv_disconnect)).
    ///
    /// This function returns the reason the session ended
    /// (`ConnectionReset`, `ConnectionAborted`, ...) once it has and
    /// nothing is left to read.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.command_until(|s, _| match s.recv(buf) {
            Err(Error::WouldBlock) => None,
            r => Some(r),
        })
        .await
    }

    /// Message mode: reads the next whole message into `buf`, waiting for
    /// one. `Err(Error::Disconnected)` is the peer's DISCONNECT once every
    /// message before it was read (WSAEDISCON).
    ///
    /// This function returns `Err(Error::MessageTruncated)` when the message
    /// is longer than `buf` (it stays queued), and the session's other
    /// errors.
    pub async fn recv_message(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.command_until(|s, _| match s.recv_message(buf) {
            Err(Error::WouldBlock) => None,
            r => Some(r),
        })
        .await
    }

    /// Ends our sending half with disconnect data (WSASendDisconnect): the
    /// peer sees FD_CLOSE and reads `data` with its `recv_disconnect`. Our
    /// receiving half stays open. Returns once the DISCONNECT is queued.
    pub async fn send_disconnect(&mut self, data: Option<&[u8]>) -> Result<(), Error> {
        self.command_until(|s, now| Some(s.send_disconnect(now, data)))
            .await
    }

    /// Waits for the peer's DISCONNECT and returns its data
    /// (WSARecvDisconnect): `None` when it carried none.
    ///
    /// This function returns `Err(Error::Consumed)` if it was already read,
    /// and the reason the session ended if it ended without one.
    pub async fn recv_disconnect(&mut self) -> Result<Option<Bytes>, Error> {
        self.command_until(|s, _| match s.recv_disconnect_bytes() {
            Err(Error::NotYet) => None,
            r => Some(r),
        })
        .await
    }

    /// Closes gracefully (closesocket after WSASendDisconnect, the seed's
    /// step 5a): sends our DISCONNECT if `send_disconnect` did not, waits
    /// for the peer's and both FINs, then for TCP to have delivered ours.
    /// Everything queued before is delivered. Returns why the session ended:
    /// `Graceful`, or what stopped it (data left unread aborts, §5.4, as
    /// closesocket does with unread data; a linger timeout; a reset).
    pub async fn close(&mut self) -> CloseReason {
        let t = now();
        self.session.close(t);
        self.step(t);
        self.finish().await
    }

    /// Aborts (a hard closesocket): discards what is unsent, sends ABORT with
    /// `reason` and `data`, then RST once the ABORT is acknowledged or
    /// `Config::abort_ack_timeout` passes; returns once the RST is sent.
    /// The peer sees `Aborted` with exactly these, or `Reset` if only the
    /// RST reaches it.
    ///
    /// Cancel safety: if the future is dropped before it returns (a
    /// timeout around it), the ABORT may be queued but not the RST; call
    /// `abort` again (or [`closed`](Self::closed)) to finish it, rather than
    /// dropping the connection, which would lose the RST. The second call's
    /// `reason` and `data` are not sent: the first call's ABORT was.
    ///
    /// This function returns `Err(Error::TooLarge)` for data over the
    /// negotiated `max_disconnect_data` (nothing is done), and
    /// `Err(Error::InvalidState)` once the session has ended otherwise than
    /// by an earlier `abort` of this connection.
    pub async fn abort(
        &mut self,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<CloseReason, Error> {
        let t = now();
        match self.session.abort(t, reason, data) {
            Ok(()) => self.aborted = true,
            // Our own abort, already taken: finish it.
            Err(Error::InvalidState { .. }) if self.aborted => {}
            Err(e) => return Err(e),
        }
        self.step(t);
        Ok(self.finish().await)
    }

    /// Waits until the session ends (the peer's abort, a timer, a reset, or
    /// a close that completes) and finishes TCP's side; returns why.
    pub async fn closed(&mut self) -> CloseReason {
        self.finish().await
    }

    /// Runs `f` on the session until it answers, pumping between tries.
    pub(crate) async fn command_until<R>(
        &mut self,
        mut f: impl FnMut(&mut Session, Instant) -> Option<R>,
    ) -> R {
        loop {
            let t = now();
            let progress = self.step(t);
            if let Some(r) = f(&mut self.session, t) {
                // What the command queued goes to TCP now, not at the next
                // wake-up.
                self.step(t);
                return r;
            }
            self.wait(progress).await;
        }
    }

    /// Waits, pumping, until `ready` says yes.
    pub(crate) async fn until<R>(&mut self, mut ready: impl FnMut(&mut Self) -> Option<R>) -> R {
        loop {
            let progress = self.step(now());
            if let Some(r) = ready(self) {
                return r;
            }
            self.wait(progress).await;
        }
    }

    /// Runs the session until it ends, then TCP's side: our FIN acknowledged
    /// (bounded by `tcp_close_timeout`, or by the give-up time while bytes
    /// are unacknowledged and TCP still delivers), or the RST sent.
    async fn finish(&mut self) -> CloseReason {
        self.finish_within(None).await
    }

    /// [`finish`](Self::finish), TCP's side bounded by `bound` when given.
    pub(crate) async fn finish_within(&mut self, bound: Option<Duration>) -> CloseReason {
        let reason = self
            .until(|c| {
                // Everything the session queued goes to TCP first: an ABORT
                // (set as the close reason when queued) and the RST after
                // it, which waits for the ABORT's acknowledgement or the
                // abort-flush timers; the pump sends them.
                let drained = !c.session.has_output() || c.link.aborted() || c.link.gone();
                let rst_due = c.link.reset_pending();
                c.session
                    .close_reason()
                    .filter(|_| drained && !rst_due)
                    .cloned()
            })
            .await;
        if !self.finished {
            let bound = bound.unwrap_or(if tcp::unacknowledged(&self.socket) {
                self.config
                    .give_up_after()
                    .max(self.config.tcp_close_timeout)
            } else {
                self.config.tcp_close_timeout
            });
            // embassy-net's `flush` waits for our bytes and FIN to be
            // acknowledged, or for a RST to be sent (embassy #1471, #3198).
            let bound = embassy_time::Duration::from_micros(bound.as_micros() as u64);
            if embassy_time::with_timeout(bound, self.socket.flush())
                .await
                .is_err()
            {
                debug!(
                    "session {}: TCP close did not finish in {}: aborting",
                    self.session.id(),
                    self.socket.state()
                );
                self.socket.abort();
                let _ = embassy_time::with_timeout(
                    embassy_time::Duration::from_secs(1),
                    self.socket.flush(),
                )
                .await;
            }
            // Only now: a `close` or `abort` after a cancelled one still
            // flushes.
            self.finished = true;
        }
        reason
    }

    /// One round of work at `t`: the pump (as often as it moves something
    /// that makes another worthwhile), the user timeout taken over once the
    /// session keeps its own liveness, and the session's events noted.
    /// Returns whether anything moved.
    pub(crate) fn step(&mut self, t: Instant) -> bool {
        let mut progress = false;
        let keepalive = self.session.options().keepalive_ms;
        if !self.link.owns_timeout() && self.session.is_connected() && keepalive > 0 {
            // From here the pump keeps the user timeout, the peer's PINGs
            // counting as signs of life: smoltcp's own would make a peer's
            // RST look like a time-out (`bookend-link`'s `Link`).
            self.socket.set_timeout(None);
            self.link.take_timeout(t);
        }
        let abort_ack = self.config.abort_ack_timeout;
        for _ in 0..PUMPS_PER_STEP {
            let mut conn = Tcp {
                socket: &mut self.socket,
                peer_fin: &mut self.peer_fin,
            };
            if !self.link.pump(&mut self.session, &mut conn, t, abort_ack) {
                break;
            }
            progress = true;
            let more = self.session.poll_timeout().is_some_and(|d| d <= t)
                || (self.session.has_output()
                    && self.socket.send_queue() < self.socket.send_capacity());
            if !more {
                break;
            }
        }
        if self.session.is_connected() && keepalive > 0 {
            self.link
                .set_liveness(Duration::from_millis(3 * u64::from(keepalive)));
        }
        let conn = Tcp {
            socket: &mut self.socket,
            peer_fin: &mut self.peer_fin,
        };
        self.link.note_unacknowledged(&conn);
        if !self.session.has_output() && self.session.recv_queue() == 0 {
            // Quiet: the session's empty buffers go back to the heap (a
            // pool of none), so that an idle connection holds no heap at
            // all; it allocates again when it next has something to hold.
            self.session.trim(&mut Spares::new(0));
        }
        while let Some(e) = self.session.poll_event() {
            progress = true;
            match e {
                Event::ConnectRequest(r) => self.request = Some(r),
                Event::Connected { callee_data, .. } => {
                    self.answer = Some(Answer::Connected(callee_data));
                }
                Event::Refused { reason, data } => {
                    self.answer = Some(Answer::Refused { reason, data });
                }
                // Reads, writes and the end are asked of the session
                // directly by the method waiting for them.
                Event::Readable | Event::Writable | Event::PeerDisconnected | Event::Closed(_) => {}
            }
        }
        progress
    }

    /// Sleeps until the socket has news for the pump (bytes, room, an
    /// acknowledgement, a state change) or the next deadline (the session's
    /// timers, the pump's user timeout and pending RST). `progress`: the
    /// step before it moved something.
    ///
    /// A wait that would end at once after a step that moved nothing yields
    /// to the executor first: a condition the pump cannot act on must not
    /// keep this task from ever returning `Pending` (the stack's runner, and
    /// every other task, would starve).
    async fn wait(&mut self, progress: bool) {
        let conn = Tcp {
            socket: &mut self.socket,
            peer_fin: &mut self.peer_fin,
        };
        let mut deadline = earliest(self.session.poll_timeout(), self.link.poll_at(&conn));
        let want_room = self.session.has_output() || self.session.send_queue() > 0;
        // The flush is waited on only where it would wait: one that is ready
        // at once (a CLOSED socket whose send buffer still holds bytes) would
        // end every wait at once.
        let unacked = tcp::unacknowledged(&self.socket) && tcp::flush_pends(&self.socket);
        // Bytes the session did not take: the reader's wake-up would fire at
        // once; look again after a while instead (see the constant).
        let held_back = self.socket.recv_queue() > 0;
        if held_back {
            deadline = earliest(deadline, Some(now() + BACKPRESSURE_RECHECK));
        }
        let (reader, mut writer) = self.socket.split();
        // Each future's first poll registers the socket's waker (and a
        // ready one means there is work now); any wake-up after that ends
        // the wait, and the pump sorts out what it was.
        let mut readable = pin!(async {
            if held_back {
                core::future::pending::<()>().await;
            }
            reader.wait_read_ready().await;
        });
        let mut writable = pin!(async {
            if want_room {
                writer.wait_write_ready().await;
            } else if unacked {
                // Resolves once our bytes, SYN or FIN are acknowledged (or
                // the connection is gone): the pause of the session's peer
                // timers ends then.
                let _ = writer.flush().await;
            } else {
                core::future::pending::<()>().await;
            }
        });
        let mut timer = pin!(async {
            match deadline {
                Some(t) => Timer::at(at(t)).await,
                None => core::future::pending().await,
            }
        });
        let mut first = true;
        let at_once = poll_fn(|cx| {
            if !first {
                return Poll::Ready(false);
            }
            first = false;
            let ready = readable.as_mut().poll(cx).is_ready()
                | writable.as_mut().poll(cx).is_ready()
                | timer.as_mut().poll(cx).is_ready();
            if ready {
                Poll::Ready(true)
            } else {
                Poll::Pending
            }
        })
        .await;
        if at_once && !progress {
            embassy_futures::yield_now().await;
        }
    }

    /// Whether TCP's side is done (after `close`, `abort` or `closed`).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The socket back, for another connection (a listener re-arms it).
    pub(crate) fn into_socket(self) -> TcpSocket<'a> {
        self.socket
    }
}
