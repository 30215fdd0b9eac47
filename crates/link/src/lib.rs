/*! The seam between a bookend session and a TCP stack: a small trait for one
TCP connection ([`TcpConnection`]), and [`Link`], whose [`Link::pump`] moves
bytes, FIN/RST and timers between a [`Session`] and it, keeping the TCP user
timeout (RFC 9293 §3.8.3, RFC 5482), the pause of the session's peer timers
while TCP still delivers (`docs/protocol.md` §7) and the ABORT-then-RST
order (§5.4).

One implementation for every TCP stack a bookend driver runs over:
`bookend-smoltcp` over smoltcp 0.14's sockets (feature `smoltcp`, which
implements the trait for `smoltcp::socket::tcp::Socket`), `bookend-embassy`
over embassy-net's `TcpSocket` (smoltcp 0.13 inside, so it implements the
trait for its own wrapper). `#![no_std]`, no allocation of its own.
*/
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

#[cfg(test)]
extern crate alloc;

mod flags;
#[cfg(feature = "smoltcp")]
mod smoltcp_socket;

use core::time::Duration;

use bookend_session::{Instant, Session, TransportAction, TransportClosed};

/// One byte of one-bit flags: shared with `bookend-smoltcp`'s connection
/// record, which keeps its own flags the same way; not part of this crate's
/// API proper.
#[doc(hidden)]
pub use flags::Flags;

/// What [`TcpConnection::recv`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// Whether anything sent is still unacknowledged: bytes, or our FIN.
    /// While it is, TCP is still trying to deliver, and its user timeout,
    /// not a session timer, bounds the wait (issue 11).
    fn unacknowledged(&self) -> bool {
        self.send_queue() > 0
    }
    /// Sends FIN after the queued bytes.
    fn close(&mut self);
    /// Sends RST; queued bytes are lost.
    fn abort(&mut self);
    /// Whether the connection is over (CLOSED or TIME-WAIT).
    fn is_finished(&self) -> bool;
    /// Whether the connection is CLOSED: gone, however it ended.
    fn is_closed(&self) -> bool {
        false
    }
}

/// Per-connection bookkeeping of the pump.
///
/// Once the session has negotiated a keepalive, it keeps the TCP user timeout
/// (RFC 5482: how long sent data may stay unacknowledged) itself and the
/// driver turns smoltcp's off ([`Link::take_timeout`]), because smoltcp
/// reports its own time-out and a peer's RST alike (CLOSED): a connection that
/// then ends without FIN, and without our time-out, was reset. Any sign of
/// life counts as progress: an acknowledgement, or bytes from the peer (its
/// PINGs arrive at least every keepalive interval, even while we keep its
/// window closed). With keepalive off, smoltcp's own time-out stays: it alone
/// sees the answers to TCP keep-alive probes, so an idle connection to a
/// vanished peer still ends. Such an end is reported as a reset: without the
/// last segment's time, smoltcp's time-out and a RST look the same.
#[derive(Debug, Clone)]
pub struct Link {
    /// [`Link::FIN_DELIVERED`] and the six other flags, one bit each: one
    /// byte, so that a link was 64 bytes, not 72 (issue 10: idle memory).
    flags: Flags,
    reset_at: Option<Instant>,
    created: Instant,
    /// Bytes handed to the transport so far (by the pump and by direct
    /// sends), modulo 2^32: compared as serial numbers (RFC 1982), like TCP's
    /// own sequence numbers, which is exact while fewer than 2^31 bytes are
    /// unacknowledged (a send buffer is far smaller). 4 bytes, not 8, with
    /// `acked`: a link is 56 bytes, not 64 (issue 10: idle memory).
    written: u32,
    /// Bytes the peer had acknowledged at `acked_at`, modulo 2^32 like
    /// `written`.
    acked: u32,
    acked_at: Instant,
    /// When the peer last acknowledged new bytes (received bytes do not
    /// count): how long TCP has been stuck delivering, for the close bound.
    delivered_at: Instant,
    /// Since when something sent is unacknowledged, if it is.
    pending_since: Option<Instant>,
    /// How long after `created` TCP came up (seen by a pump), in
    /// [`UP_DELAY_UNIT`]s plus one, saturating; 0 until then. Two bytes in
    /// what was padding (a link stays 56 bytes): only the duplicate-SYN
    /// window needs it, to 10 ms.
    up_delay: u16,
    /// The user timeout in milliseconds, rounded up, saturating at
    /// `u32::MAX` ms (49.7 days; a longer configured bound is shortened to
    /// that): the driver's TCP user timeout, raised to the session's idle
    /// bound (3 keepalive intervals) once that is negotiated
    /// ([`Link::set_liveness`]), so that a peer whose only sign of life is
    /// its PING is not taken for dead between two of them. One field for
    /// both: the bare TCP timeout is needed alone only before TCP is seen
    /// established (to tell a handshake that timed out), and the idle bound
    /// is taken only after that ([`Link::set_liveness`]).
    /// (The abort flush, the same for every link of a driver, is passed to
    /// [`Link::pump`] instead of kept here.)
    limit_ms: u32,
}

/// The unit of [`Link::up_at`].
pub const UP_DELAY_UNIT: Duration = Duration::from_millis(10);

/// `d` in milliseconds, rounded up (a bound is never shortened below one
/// millisecond's precision), saturating at 49.7 days.
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u32::MAX)
}

fn from_millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

impl Link {
    /// The peer's FIN was reported to the session.
    const FIN_DELIVERED: u8 = 1;
    /// The loss of the transport (reset or time-out) was reported.
    const GONE_DELIVERED: u8 = 2;
    /// The pump aborted the connection (RST requested).
    const ABORTED: u8 = 4;
    /// TCP's handshake has been seen complete.
    const ESTABLISHED: u8 = 8;
    /// The user timeout is ours (smoltcp's is off).
    const OWNS_TIMEOUT: u8 = 16;
    /// What the session was last told: its peer timers are paused.
    const HOLDING: u8 = 32;
    /// As of the last [`Link::note_unacknowledged`], something sent was
    /// unacknowledged: all [`Link::next_at`] needs from the connection.
    const UNACKED: u8 = 64;

    /// A link for a connection created at `now`.
    pub fn new(now: Instant, tcp_timeout: Duration) -> Self {
        Self {
            flags: Flags::default(),
            reset_at: None,
            created: now,
            written: 0,
            acked: 0,
            acked_at: now,
            delivered_at: now,
            pending_since: None,
            up_delay: 0,
            limit_ms: millis(tcp_timeout),
        }
    }

    /// When the connection's handshake started: when the link was created
    /// (the SYN taken, or `connect`) or its held SYN-ACK was released
    /// ([`Link::restart_handshake`]), as the session's handshake timer.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// When TCP came up, once a pump saw it (to [`UP_DELAY_UNIT`]; a
    /// handshake longer than 65 535 of them, 11 minutes, reads as that
    /// long). The duplicate-SYN window counts from it: a handshake whose
    /// SYN-ACKs were lost takes seconds, and copies of its SYNs arrive after
    /// it.
    pub fn up_at(&self) -> Option<Instant> {
        let units = u64::from(self.up_delay.checked_sub(1)?);
        Some(self.created + Duration::from_micros(units * UP_DELAY_UNIT.as_micros() as u64))
    }

    /// A SYN-ACK held by SO_CONDITIONAL_ACCEPT was released at `now`: the
    /// handshake starts now, for every bound that ages it (admission
    /// control, the duplicate-SYN window, smoltcp's handshake time-out).
    pub fn restart_handshake(&mut self, now: Instant) {
        self.created = now;
        self.acked_at = now;
        self.delivered_at = now;
    }

    /// Sets the session's idle bound once negotiated (see `limit_ms`).
    /// The user timeout is never shorter than it from then on; a shorter
    /// `idle` changes nothing, and neither does a call before a pump saw TCP
    /// established (the driver calls it at every visit once the session is
    /// connected): until then the bound stays the bare TCP timeout, which
    /// tells a handshake that timed out from a reset (see `limit_ms`). A
    /// session can be connected from bytes read out of a socket smoltcp
    /// already closed, which no pump ever saw established.
    pub fn set_liveness(&mut self, idle: Duration) {
        if self.flags.get(Self::ESTABLISHED) {
            self.limit_ms = self.limit_ms.max(millis(idle));
        }
    }

    /// Bytes written to the transport outside [`Link::pump`] (a direct send),
    /// at `now`, when `queued_before` bytes were already waiting there.
    pub fn note_written(&mut self, n: usize, queued_before: usize, now: Instant) {
        if queued_before == 0 {
            // Nothing was outstanding: the user timeout starts now, not at
            // the last acknowledgement, however long ago that was.
            self.acked = self.written;
            self.acked_at = now;
        }
        // Modulo 2^32 (see `written`): the truncation is the modulus.
        self.written = self.written.wrapping_add(n as u32);
    }

    /// When the user timeout would fire for `conn` as it is now.
    pub fn deadline<C: TcpConnection + ?Sized>(&self, conn: &C) -> Option<Instant> {
        self.user_timeout_at(conn.unacknowledged())
    }

    /// Whether a RST waits for the ABORT before it to be acknowledged: the
    /// pump must look at every acknowledgement until then.
    pub fn reset_pending(&self) -> bool {
        self.reset_at.is_some() && !self.flags.get(Self::ABORTED)
    }

    /// The driver turned smoltcp's time-out off: from now on the user
    /// timeout is this link's.
    pub fn take_timeout(&mut self, now: Instant) {
        self.flags.set(Self::OWNS_TIMEOUT, true);
        self.acked_at = now;
    }

    /// Whether the user timeout is this link's.
    pub fn owns_timeout(&self) -> bool {
        self.flags.get(Self::OWNS_TIMEOUT)
    }

    /// Bytes from the peer were read outside [`Link::pump`] (direct
    /// receive): a sign of life.
    pub fn note_received(&mut self, now: Instant) {
        self.acked_at = now;
    }

    /// When the peer last acknowledged new bytes (or the link was created).
    pub fn delivered_at(&self) -> Instant {
        self.delivered_at
    }

    /// How long the session's peer timers may stay paused without delivery
    /// progress: the user timeout.
    fn hold_limit(&self) -> Duration {
        from_millis(self.limit_ms)
    }

    /// When the pause of the session's peer timers ends if nothing more is
    /// acknowledged: the user timeout after the later of the start of the
    /// wait and the last delivery progress. A peer that advertises a zero
    /// window, or stops acknowledging while it still answers probes, cannot
    /// hold a session past it.
    fn hold_until(&self) -> Option<Instant> {
        self.pending_since
            .map(|since| since.max(self.delivered_at) + self.hold_limit())
    }

    /// Whether the session's peer timers should be paused now: something
    /// sent is unacknowledged and TCP has made delivery progress within its
    /// user timeout (`Session::handle_transport_pending`).
    pub fn hold<C: TcpConnection + ?Sized>(&self, conn: &C, now: Instant) -> bool {
        conn.unacknowledged() && self.hold_until().is_none_or(|until| now < until)
    }

    /// Updates the pause of the session's peer timers.
    fn tell_pending<C: TcpConnection + ?Sized>(
        &mut self,
        session: &mut Session,
        conn: &C,
        now: Instant,
    ) {
        if conn.unacknowledged() {
            self.pending_since.get_or_insert(now);
        } else {
            self.pending_since = None;
        }
        let holding = self.hold(conn, now);
        self.flags.set(Self::HOLDING, holding);
        session.handle_transport_pending(now, holding);
    }

    /// Whether the handshake has been seen complete.
    pub fn established(&self) -> bool {
        self.flags.get(Self::ESTABLISHED)
    }

    /// When the user timeout would fire if nothing is acknowledged by then.
    fn user_timeout_at(&self, unacked: bool) -> Option<Instant> {
        (self.flags.get(Self::OWNS_TIMEOUT) && self.flags.get(Self::ESTABLISHED) && unacked)
            .then(|| self.acked_at + from_millis(self.limit_ms))
    }

    /// Ends a connection before any pump saw TCP established, for `close`
    /// or `abort` while connecting: nothing of the session can have reached
    /// the peer (the pump hands bytes to TCP only once it is up), so there
    /// is no peer session to send ABORT to, and waiting for TCP to come up
    /// only to send CONNECT and ABORT would hold a half-open peer for a
    /// handshake. TCP's attempt ends at once with a RST, as closesocket of a
    /// connecting socket does, and the session sees its transport reset.
    /// Returns `false`, doing nothing, once TCP was seen up (or the link
    /// already ended).
    pub fn abandon<C: TcpConnection + ?Sized>(
        &mut self,
        session: &mut Session,
        conn: &mut C,
        now: Instant,
    ) -> bool {
        // `written`: nothing was ever handed to TCP (a stack that takes
        // bytes before its handshake completes has them on the wire).
        if self.written != 0
            || self.flags.get(Self::ESTABLISHED)
            || self.flags.get(Self::ABORTED)
            || self.flags.get(Self::GONE_DELIVERED)
        {
            return false;
        }
        conn.abort();
        self.flags.set(Self::ABORTED, true);
        self.flags.set(Self::GONE_DELIVERED, true);
        session.handle_transport_closed(now, TransportClosed::Reset);
        true
    }

    /// Whether the pump has aborted the connection (RST requested).
    pub fn aborted(&self) -> bool {
        self.flags.get(Self::ABORTED)
    }

    /// Whether the transport has gone (reset or timed out) without a FIN.
    pub fn gone(&self) -> bool {
        self.flags.get(Self::GONE_DELIVERED)
    }

    /// The next time the pump needs to run: a pending reset, or the user
    /// timeout while data is unacknowledged.
    pub fn poll_at<C: TcpConnection + ?Sized>(&self, conn: &C) -> Option<Instant> {
        self.poll_at_with(conn.unacknowledged())
    }

    /// Records whether `conn` has anything sent and unacknowledged now, for
    /// [`Link::next_at`]. Call it after every pump, direct send and
    /// acknowledgement seen: a driver keeps one bit instead of the deadline
    /// itself (8 bytes per connection; issue 10: idle memory).
    pub fn note_unacknowledged<C: TcpConnection + ?Sized>(&mut self, conn: &C) {
        self.flags.set(Self::UNACKED, conn.unacknowledged());
    }

    /// [`Link::poll_at`] with the connection as of the last
    /// [`Link::note_unacknowledged`] (and the link as it is now).
    pub fn next_at(&self) -> Option<Instant> {
        self.poll_at_with(self.flags.get(Self::UNACKED))
    }

    fn poll_at_with(&self, unacked: bool) -> Option<Instant> {
        if self.flags.get(Self::ABORTED) || self.flags.get(Self::GONE_DELIVERED) {
            return None;
        }
        // The earliest of a pending reset, the user timeout and the end of a
        // pause of the session's peer timers (which needs a visit). Written
        // out: the endpoint asks at every reschedule, and the usual answer
        // (none of the three) should cost a few branches.
        let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        let mut at = self.reset_at;
        if unacked {
            at = earliest(at, self.user_timeout_at(true));
        }
        if self.flags.get(Self::HOLDING) {
            at = earliest(at, self.hold_until());
        }
        at
    }

    /// The pump's first step: moves what TCP received into the session
    /// (until the session's receive buffer is full), then the peer's FIN,
    /// or the loss of the transport (reset or time-out); says whether
    /// anything moved.
    fn read_all<C: TcpConnection + ?Sized>(
        &mut self,
        session: &mut Session,
        conn: &mut C,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        // Bytes TCP offered that the session could not take (its receive
        // buffer is full: the application is not reading).
        let mut held_back;
        loop {
            let mut offered = 0;
            let mut taken = 0;
            let outcome = conn.recv(&mut |buf| {
                offered = buf.len();
                taken = session.handle_bytes(now, buf);
                taken
            });
            held_back = taken < offered;
            match outcome {
                RecvOutcome::Read(n) if n > 0 => {
                    progress = true;
                    // The peer is alive: bytes from it count as progress.
                    self.acked_at = now;
                    if taken < offered {
                        break; // the session's receive buffer is full
                    }
                }
                RecvOutcome::Read(_) => break,
                RecvOutcome::Fin => {
                    if !self.flags.get(Self::FIN_DELIVERED) {
                        self.flags.set(Self::FIN_DELIVERED, true);
                        progress = true;
                        session.handle_transport_closed(now, TransportClosed::Fin);
                    } else if !self.flags.get(Self::GONE_DELIVERED) && conn.is_closed() {
                        // After the peer's FIN the socket went CLOSED without
                        // our FIN's exchange finishing (a RST, or smoltcp's
                        // time-out). smoltcp keeps reporting "finished" to
                        // reads, so the loss shows only in its state; without
                        // this the session would wait forever to send what it
                        // still holds (found by the stack fuzz target).
                        self.flags.set(Self::GONE_DELIVERED, true);
                        progress = true;
                        session.handle_transport_closed(now, TransportClosed::Reset);
                    }
                    break;
                }
                RecvOutcome::Gone => {
                    progress |= self.deliver_gone(session, now);
                    break;
                }
            }
        }
        // CLOSED with bytes the session could not take: a reset (or a
        // time-out). smoltcp keeps a reset socket's unread bytes readable,
        // so without this the session would learn of the reset only once
        // its application had read them all. A reset flushes the receive
        // queue (RFC 9293 §3.10.7.4), and Winsock posts FD_CLOSE with
        // WSAECONNRESET at once, discarding what is unread (§5.4). No
        // graceful end leaves bytes behind: our FIN follows the peer's
        // DISCONNECT, its last frame (§5.4), so a connection CLOSED by the
        // FIN exchange has nothing left to read; a FIN behind unread bytes
        // leaves the connection in CLOSE-WAIT, not CLOSED.
        if held_back && conn.is_closed() {
            progress |= self.deliver_gone(session, now);
        }
        progress
    }

    /// Tells the session, once, that the connection is gone without a FIN:
    /// a reset, or a time-out. Says whether it was news.
    fn deliver_gone(&mut self, session: &mut Session, now: Instant) -> bool {
        if self.flags.get(Self::GONE_DELIVERED) {
            return false;
        }
        self.flags.set(Self::GONE_DELIVERED, true);
        // CLOSED without FIN is a RST, or smoltcp's own time-out where it
        // still owns the timeout: before the handshake (it bounds the
        // handshake), and once established until the driver takes the
        // timeout over (CONNECT outstanding). Gone after the whole timeout
        // without progress, it timed out (RFC 9293 §3.8.3's R2); a RST comes
        // while TCP still had time.
        let limit = from_millis(self.limit_ms);
        let timed_out = if !self.flags.get(Self::ESTABLISHED) {
            now >= self.created + limit
        } else {
            !self.flags.get(Self::OWNS_TIMEOUT) && now >= self.acked_at + limit
        };
        let how = if timed_out {
            TransportClosed::TimedOut
        } else {
            TransportClosed::Reset
        };
        session.handle_transport_closed(now, how);
        true
    }

    /// Acknowledgement progress, for the user timeout; and for the session's
    /// idle timer, as a sign of life that delivers no bytes.
    fn track_acks<C: TcpConnection + ?Sized>(
        &mut self,
        session: &mut Session,
        conn: &C,
        now: Instant,
    ) {
        if !self.flags.get(Self::ESTABLISHED) && conn.is_established() {
            self.flags.set(Self::ESTABLISHED, true);
            self.acked_at = now;
            let units =
                now.saturating_duration_since(self.created).as_micros() / UP_DELAY_UNIT.as_micros();
            self.up_delay = u16::try_from(units + 1).unwrap_or(u16::MAX);
        }
        // Serial-number arithmetic (see `written`): progress is a positive
        // distance from the last acknowledgement.
        let acked = self.written.wrapping_sub(conn.send_queue() as u32);
        let progress = (acked.wrapping_sub(self.acked) as i32) > 0;
        if progress {
            session.handle_peer_alive(now);
            self.delivered_at = now;
        }
        if progress || !conn.unacknowledged() {
            self.acked = acked;
            self.acked_at = now;
        }
    }

    /// The part of [`Link::pump`] an acknowledgement alone needs: when
    /// nothing can be read, sent or timed out, TCP's state is unchanged and
    /// the user timeout already settled (the driver's to decide), an ACK
    /// changes only the delivery bookkeeping and the pause of the session's
    /// peer timers. About a sixth of a lifecycle's visits are such, and
    /// this is a fraction of a pump.
    pub fn acknowledged<C: TcpConnection + ?Sized>(
        &mut self,
        session: &mut Session,
        conn: &C,
        now: Instant,
    ) {
        // As the pump: nothing once the connection was aborted.
        if self.flags.get(Self::ABORTED) {
            return;
        }
        self.track_acks(session, conn, now);
        self.tell_pending(session, conn, now);
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
        abort_flush: Duration,
    ) -> bool {
        if self.flags.get(Self::ABORTED) {
            return false;
        }
        self.track_acks(session, conn, now);
        let mut progress = self.read_all(session, conn, now);
        if !self.flags.get(Self::GONE_DELIVERED)
            && self
                .user_timeout_at(conn.unacknowledged())
                .is_some_and(|at| now >= at)
        {
            // Data outstanding and no sign of life for the whole user timeout:
            // give up, as TCP's R2 threshold would (RFC 9293 §3.8.3). Checked
            // after reading, so a RST that arrived first is a reset.
            self.flags.set(Self::GONE_DELIVERED, true);
            self.flags.set(Self::ABORTED, true);
            conn.abort();
            session.handle_transport_closed(now, TransportClosed::TimedOut);
            return true;
        }
        // Lingering lasts while TCP still delivers (issue 11, item 2).
        self.tell_pending(session, conn, now);
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
            progress = true;
        }
        if !self.flags.get(Self::GONE_DELIVERED) {
            loop {
                let n = conn.send(&mut |buf| session.poll_transmit(now, buf));
                if n == 0 {
                    break;
                }
                progress = true;
                self.written = self.written.wrapping_add(n as u32);
            }
        }
        while let Some(action) = session.poll_transport_action() {
            progress = true;
            match action {
                TransportAction::Fin => conn.close(),
                TransportAction::Reset => self.reset_at = Some(now + abort_flush),
            }
        }
        // After the FIN too: an unacknowledged FIN pauses the peer timers
        // from the moment it is queued, not from the next visit.
        self.tell_pending(session, conn, now);
        if let Some(at) = self.reset_at
            && (conn.send_queue() == 0 || now >= at || self.flags.get(Self::GONE_DELIVERED))
        {
            conn.abort();
            self.flags.set(Self::ABORTED, true);
            progress = true;
        }
        progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use bookend_session::{Config, Event, Options};

    /// A TCP connection that delivers every byte at once (nothing stays
    /// unacknowledged) and keeps a FIN unacknowledged once closed: the
    /// moment the session's last bytes are acknowledged but its FIN is not.
    /// `gone`: instead, a socket smoltcp closed (a RST) before any pump saw
    /// it established.
    #[derive(Default)]
    struct Fake {
        sent: Vec<u8>,
        fin: bool,
        gone: bool,
        /// Bytes sent and not yet acknowledged.
        queued: usize,
    }

    impl TcpConnection for Fake {
        fn is_established(&self) -> bool {
            !self.gone
        }
        fn recv(&mut self, _: &mut dyn FnMut(&[u8]) -> usize) -> RecvOutcome {
            if self.gone {
                RecvOutcome::Gone
            } else {
                RecvOutcome::Read(0)
            }
        }
        fn send(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> usize {
            let mut buf = [0u8; 512];
            let n = fill(&mut buf);
            self.sent.extend_from_slice(&buf[..n]);
            n
        }
        fn send_queue(&self) -> usize {
            self.queued
        }
        fn unacknowledged(&self) -> bool {
            self.fin || self.queued > 0
        }
        fn close(&mut self) {
            self.fin = true;
        }
        fn abort(&mut self) {}
        fn is_finished(&self) -> bool {
            false
        }
    }

    /// A caller's session with the default configuration.
    fn caller() -> Session {
        Session::caller(Arc::new(Config::default()), 1).unwrap()
    }

    /// Review of d6d193f: a FIN the pump queues pauses the session's peer
    /// timers (linger) from the moment it is queued, not from the next
    /// visit; with a late next poll, linger would otherwise count time in
    /// which TCP was still delivering the FIN. Fails on c933991: the pump's
    /// last report came before the FIN, and since d6d193f no second pump
    /// ran to make up for it.
    #[test]
    fn a_queued_fin_pauses_the_peer_timers_at_once() {
        let t = Instant::ZERO;
        let config = Arc::new(Config::default());
        let mut c = Session::caller(config.clone(), 1).unwrap();
        let mut s = Session::callee(config, 2, t).unwrap();
        let mut buf = [0u8; 512];
        c.connect(t, None, Options::DEFAULT).unwrap();
        let n = c.poll_transmit(t, &mut buf);
        s.handle_bytes(t, &buf[..n]);
        let Some(Event::ConnectRequest(r)) = s.poll_event() else {
            panic!("no request")
        };
        s.accept(t, None, r.grant).unwrap();
        let n = s.poll_transmit(t, &mut buf);
        c.handle_bytes(t, &buf[..n]);
        // The caller's DISCONNECT, then the callee's own: CLOSING, FIN.
        c.send_disconnect(t, Some(b"total")).unwrap();
        let n = c.poll_transmit(t, &mut buf);
        s.handle_bytes(t, &buf[..n]);
        while s.poll_event().is_some() {}
        s.send_disconnect(t, Some(b"grand total")).unwrap();
        let mut link = Link::new(t, Duration::from_secs(300));
        let mut conn = Fake::default();
        link.pump(&mut s, &mut conn, t, Duration::from_secs(1));
        assert!(conn.fin, "the FIN was queued");
        assert!(
            s.transport_pending(),
            "the session still counts linger while its FIN is undelivered"
        );
    }

    /// Review of a794ded (which kept one user-timeout field, the TCP timeout
    /// raised to the idle bound): a link never seen established tells a
    /// handshake that timed out from a reset by the bare TCP timeout, even if
    /// the session, connected from bytes read out of a socket already
    /// closed, had the idle bound set. Fails on a794ded: the raised bound
    /// made a loss after 5 s (TCP timeout 2 s, idle bound 60 s) a reset.
    #[test]
    fn the_handshake_bound_stays_the_tcp_timeout() {
        let t = Instant::ZERO;
        let mut c = caller();
        let mut link = Link::new(t, Duration::from_secs(2));
        link.set_liveness(Duration::from_secs(60));
        let later = t + Duration::from_secs(5);
        let mut gone = Fake {
            gone: true,
            ..Fake::default()
        };
        link.pump(&mut c, &mut gone, later, Duration::from_secs(1));
        let mut reason = None;
        while let Some(e) = c.poll_event() {
            if let Event::Closed(r) = e {
                reason = Some(r);
            }
        }
        assert_eq!(
            reason,
            Some(bookend_session::CloseReason::TimedOut(
                bookend_session::Timer::Transport
            ))
        );
    }

    /// The byte counters are modulo 2^32 (issue 10: idle memory): an
    /// acknowledgement across the wrap is still progress (a sign of life for
    /// the session, and the user timeout restarts), and an unchanged queue
    /// is none.
    #[test]
    fn acknowledgements_across_the_counters_wrap_are_progress() {
        let t = Instant::ZERO;
        let mut c = caller();
        let mut link = Link::new(t, Duration::from_secs(2));
        link.written = u32::MAX - 10;
        link.acked = link.written;
        let mut conn = Fake::default();
        link.track_acks(&mut c, &conn, t);
        let t1 = t + Duration::from_secs(1);
        link.note_written(100, 0, t1);
        conn.queued = 100;
        let t2 = t + Duration::from_secs(2);
        link.track_acks(&mut c, &conn, t2);
        assert_eq!(link.delivered_at, t, "nothing was acknowledged");
        assert_eq!(link.acked_at, t1, "the user timeout runs from the write");
        conn.queued = 40;
        let t3 = t + Duration::from_secs(3);
        link.track_acks(&mut c, &conn, t3);
        assert_eq!(link.acked, 49, "60 of the 100 bytes, across the wrap");
        assert_eq!((link.delivered_at, link.acked_at), (t3, t3));
    }
}
