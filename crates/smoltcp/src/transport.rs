//! The seam between a session and a TCP stack: a small trait for one TCP
//! connection, and [`Link::pump`], which moves bytes, FIN/RST and timers
//! between a [`Session`] and it. smoltcp's socket implements the trait here;
//! another stack (embassy-net's successor, a kernel socket) implements it and
//! reuses `pump` unchanged.

use core::time::Duration;

use bookend_session::{Instant, Session, TransportAction, TransportClosed};
use smoltcp::socket::tcp;

/// What [`TcpConnection::recv`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvOutcome {
    /// `n` bytes were offered and consumed (0: nothing to read now, or the
    /// consumer pushed back).
    Read(usize),
    /// The peer's FIN: everything before it has been read.
    Fin,
    /// The connection is gone without a FIN: reset, or timed out.
    Gone,
}

/// What bookend needs from one TCP connection.
pub trait TcpConnection {
    /// Whether the three-way handshake has completed.
    fn is_established(&self) -> bool;
    /// Offers received bytes to `consume`, which returns how many it took.
    fn recv(&mut self, consume: &mut dyn FnMut(&[u8]) -> usize) -> RecvOutcome;
    /// Offers free send space to `fill`, which returns how many bytes it wrote.
    fn send(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> usize;
    /// Bytes written but not yet acknowledged by the peer.
    fn send_queue(&self) -> usize;
    /// Sends FIN after the queued bytes.
    fn close(&mut self);
    /// Sends RST; queued bytes are lost.
    fn abort(&mut self);
    /// Whether the connection is over (CLOSED or TIME-WAIT).
    fn is_finished(&self) -> bool;
}

impl TcpConnection for tcp::Socket<'_> {
    fn is_established(&self) -> bool {
        use tcp::State::*;
        matches!(
            self.state(),
            Established | FinWait1 | FinWait2 | CloseWait | Closing | LastAck | TimeWait
        )
    }

    fn recv(&mut self, consume: &mut dyn FnMut(&[u8]) -> usize) -> RecvOutcome {
        let state = self.state();
        match tcp::Socket::recv(self, |buf| {
            let n = if buf.is_empty() { 0 } else { consume(buf) };
            (n, n)
        }) {
            Ok(n) => RecvOutcome::Read(n),
            Err(tcp::RecvError::Finished) => RecvOutcome::Fin,
            // smoltcp reports "not yet" and "gone" alike; only CLOSED is gone.
            Err(_) if state == tcp::State::Closed => RecvOutcome::Gone,
            Err(_) => RecvOutcome::Read(0),
        }
    }

    fn send(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> usize {
        tcp::Socket::send(self, |buf| {
            let n = if buf.is_empty() { 0 } else { fill(buf) };
            (n, n)
        })
        .unwrap_or(0)
    }

    fn send_queue(&self) -> usize {
        tcp::Socket::send_queue(self)
    }

    fn close(&mut self) {
        tcp::Socket::close(self);
    }

    fn abort(&mut self) {
        tcp::Socket::abort(self);
    }

    fn is_finished(&self) -> bool {
        matches!(self.state(), tcp::State::Closed | tcp::State::TimeWait)
    }
}

/// Per-connection bookkeeping of the pump.
#[derive(Debug, Clone)]
pub struct Link {
    fin_delivered: bool,
    gone_delivered: bool,
    reset_at: Option<Instant>,
    aborted: bool,
    last_progress: Instant,
    abort_flush: Duration,
    tcp_timeout: Duration,
}

impl Link {
    /// A link for a connection created at `now`.
    pub fn new(now: Instant, tcp_timeout: Duration, abort_flush: Duration) -> Self {
        Self {
            fin_delivered: false,
            gone_delivered: false,
            reset_at: None,
            aborted: false,
            last_progress: now,
            abort_flush,
            tcp_timeout,
        }
    }

    /// Whether the pump has aborted the connection (RST requested).
    pub fn aborted(&self) -> bool {
        self.aborted
    }

    /// Whether the transport has gone (reset or timed out) without a FIN.
    pub fn gone(&self) -> bool {
        self.gone_delivered
    }

    /// The next time the pump needs to run for a pending reset.
    pub fn poll_at(&self) -> Option<Instant> {
        self.reset_at.filter(|_| !self.aborted)
    }

    /// Moves everything that can move between `session` and `conn` at `now`.
    /// Returns whether anything moved.
    ///
    /// Order: received bytes (with backpressure), then FIN or the loss of the
    /// connection, then timers, then bytes to send, then FIN/RST. A RST the
    /// session asks for waits until queued bytes (the ABORT frame) are
    /// acknowledged, or `abort_flush` passes.
    pub fn pump<C: TcpConnection + ?Sized>(
        &mut self,
        session: &mut Session,
        conn: &mut C,
        now: Instant,
    ) -> bool {
        if self.aborted {
            return false;
        }
        let mut progress = false;
        loop {
            let mut offered = 0;
            let mut taken = 0;
            let outcome = conn.recv(&mut |buf| {
                offered = buf.len();
                taken = session.handle_bytes(now, buf);
                taken
            });
            match outcome {
                RecvOutcome::Read(n) if n > 0 => {
                    progress = true;
                    self.last_progress = now;
                    if taken < offered {
                        break; // the session's receive buffer is full
                    }
                }
                RecvOutcome::Read(_) => break,
                RecvOutcome::Fin => {
                    if !self.fin_delivered {
                        self.fin_delivered = true;
                        progress = true;
                        session.handle_transport_closed(now, TransportClosed::Fin);
                    }
                    break;
                }
                RecvOutcome::Gone => {
                    if !self.gone_delivered {
                        self.gone_delivered = true;
                        progress = true;
                        // smoltcp reports reset and time-out alike; a connection
                        // silent for the whole user timeout timed out.
                        let how = if now >= self.last_progress + self.tcp_timeout {
                            TransportClosed::TimedOut
                        } else {
                            TransportClosed::Reset
                        };
                        session.handle_transport_closed(now, how);
                    }
                    break;
                }
            }
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
            progress = true;
        }
        if !self.gone_delivered {
            loop {
                let n = conn.send(&mut |buf| session.poll_transmit(now, buf));
                if n == 0 {
                    break;
                }
                progress = true;
                self.last_progress = now;
            }
        }
        while let Some(action) = session.poll_transport_action() {
            progress = true;
            match action {
                TransportAction::Fin => conn.close(),
                TransportAction::Reset => self.reset_at = Some(now + self.abort_flush),
            }
        }
        if let Some(at) = self.reset_at
            && (conn.send_queue() == 0 || now >= at || self.gone_delivered)
        {
            conn.abort();
            self.aborted = true;
            progress = true;
        }
        progress
    }
}
