//! [`TcpConnection`] for smoltcp 0.14's TCP socket (feature `smoltcp`).

use smoltcp::socket::tcp;

use crate::{RecvOutcome, TcpConnection};

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

    fn unacknowledged(&self) -> bool {
        use tcp::State::*;
        // FIN-WAIT-1, CLOSING and LAST-ACK: our FIN awaits its ACK.
        // SYN-SENT: our SYN does, and the session's CONNECT waits behind it
        // (`Endpoint::connect` encodes it at once): the connect timer, which
        // waits for the peer's answer, must not count a TCP handshake that
        // is still retransmitting (§7; smoltcp's time-out bounds it).
        tcp::Socket::send_queue(self) > 0
            || matches!(self.state(), SynSent | FinWait1 | Closing | LastAck)
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

    fn is_closed(&self) -> bool {
        self.state() == tcp::State::Closed
    }
}
