//! [`TcpConnection`] over embassy-net's `TcpSocket`, so that the shared
//! pump (`bookend_link::Link`) drives a session over it unchanged.
//!
//! embassy-net's socket offers only `async` reads and writes; the pump wants
//! to try each once and move on. Each is polled once
//! ([`embassy_futures::poll_once`]): a socket with nothing to read or no
//! room answers `Pending` (nothing done), which is "nothing now". That poll
//! registers a no-op waker in the socket's single waker slot; the driver's
//! wait ([`crate::Connection`]) always registers its own after the pump.

use bookend_link::{RecvOutcome, TcpConnection};
use core::task::Poll;
use embassy_futures::poll_once;
use embassy_net::tcp::{State, TcpSocket};

/// One embassy-net TCP socket seen as a [`TcpConnection`], for one pump.
pub(crate) struct Tcp<'s, 'a> {
    pub(crate) socket: &'s mut TcpSocket<'a>,
    /// The peer's FIN was received (seen in the socket's state: CLOSE-WAIT,
    /// LAST-ACK, CLOSING, TIME-WAIT, or reported by a read): a socket that
    /// is CLOSED afterwards with nothing left to read ended after it (the
    /// FIN exchange's last ACK), not by a reset; embassy-net does not say
    /// which it was. One CLOSED with bytes the session cannot take was reset
    /// all the same, FIN or not: `bookend-link`'s pump reports that.
    pub(crate) peer_fin: &'s mut bool,
}

/// Whether `state` is one the peer's FIN leads to.
fn after_peer_fin(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    )
}

/// Whether `state` is past the three-way handshake.
pub(crate) fn established(state: State) -> bool {
    use State::*;
    matches!(
        state,
        Established | FinWait1 | FinWait2 | CloseWait | Closing | LastAck | TimeWait
    )
}

/// Whether anything we sent awaits the peer's acknowledgement: bytes, our
/// SYN (the session's CONNECT waits behind it) or our FIN. Nothing does
/// once the connection is CLOSED, whatever its send buffer still holds
/// (smoltcp leaves it there after a RST).
pub(crate) fn unacknowledged(socket: &TcpSocket<'_>) -> bool {
    use State::*;
    let state = socket.state();
    state != Closed
        && (socket.send_queue() > 0 || matches!(state, SynSent | FinWait1 | Closing | LastAck))
}

/// Whether embassy-net's `flush` would wait now (its own condition): our
/// bytes or FIN unacknowledged, or an RST not yet sent. A wait on a flush
/// that would not is a wait that ends at once.
pub(crate) fn flush_pends(socket: &TcpSocket<'_>) -> bool {
    use State::*;
    let state = socket.state();
    (socket.send_queue() > 0 && state != Closed)
        || matches!(state, FinWait1 | Closing | LastAck)
        || (state == Closed && socket.remote_endpoint().is_some())
}

impl TcpConnection for Tcp<'_, '_> {
    fn is_established(&self) -> bool {
        established(self.socket.state())
    }

    fn recv(&mut self, consume: &mut dyn FnMut(&[u8]) -> usize) -> RecvOutcome {
        let state = self.socket.state();
        if after_peer_fin(state) {
            *self.peer_fin = true;
        }
        // CLOSED without the peer's FIN: reset (or timed out).
        let reset = state == State::Closed && !*self.peer_fin;
        let read = self.socket.read_with(|buf| {
            let n = if buf.is_empty() { 0 } else { consume(buf) };
            (n, n)
        });
        match poll_once(read) {
            // Bytes a reset connection still holds that the session cannot
            // take: `bookend-link`'s pump sees the socket CLOSED with them
            // held back and reports the reset at once (for every driver).
            Poll::Ready(Ok(n)) => RecvOutcome::Read(n),
            Poll::Pending => RecvOutcome::Read(0),
            // embassy-net reports the peer's FIN and the connection's loss
            // alike from `read_with` (embassy #3252): the state tells them
            // apart. After a FIN the receive half is closed with the
            // connection still up; CLOSED is gone, unless a FIN came first.
            Poll::Ready(Err(_)) if reset => RecvOutcome::Gone,
            Poll::Ready(Err(_))
                if matches!(state, State::Listen | State::SynSent | State::SynReceived) =>
            {
                RecvOutcome::Read(0)
            }
            Poll::Ready(Err(_)) => {
                *self.peer_fin = true;
                RecvOutcome::Fin
            }
        }
    }

    fn send(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> usize {
        let write = self.socket.write_with(|buf| {
            let n = if buf.is_empty() { 0 } else { fill(buf) };
            (n, n)
        });
        match poll_once(write) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(_)) | Poll::Pending => 0,
        }
    }

    fn send_queue(&self) -> usize {
        self.socket.send_queue()
    }

    fn unacknowledged(&self) -> bool {
        unacknowledged(self.socket)
    }

    fn close(&mut self) {
        self.socket.close();
    }

    fn abort(&mut self) {
        self.socket.abort();
    }

    fn is_finished(&self) -> bool {
        matches!(self.socket.state(), State::Closed | State::TimeWait)
    }

    fn is_closed(&self) -> bool {
        self.socket.state() == State::Closed
    }
}
