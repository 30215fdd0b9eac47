//! The application's commands. Each checks its arguments and its row first
//! (a refused command changes nothing), then fires the row; only the DATA
//! path (`send*`) queues bytes of its own.

use crate::fmt::debug;
use bookend_wire::{Mode, Reason};
use bytes::Bytes;

use super::machine::Args;
use super::{MIN_DIRECT_CHUNK, PeerDisconnect, Session};
use crate::config::Options;
use crate::error::{DataKind, Error};
use crate::state::{self, Input, State};
use crate::time::Instant;

impl Session {
    /// Caller: sends CONNECT with `caller_data` and the proposed `options`
    /// (WSAConnect). It may be called before the transport is established:
    /// the session holds the encoded CONNECT until the driver hands its
    /// bytes to the transport, and the connect timer pauses while they are
    /// unacknowledged (`handle_transport_pending`). A session is
    /// single-use: after a refusal or any end, connect with a new one.
    ///
    /// This function returns `Err(Error::TooLarge)` if the caller data is over
    /// `options.max_connect_data` (WSAEFAULT), `Err(Error::InvalidGrant)` if
    /// the options are out of range, need more than the receive buffer or
    /// the session's provided buffers ([`crate::SessionBuffers`]) hold, or
    /// leave out the integrity option `config.require_integrity` asks for,
    /// `Err(Error::AlreadyConnecting)` while a connect is in progress,
    /// `Err(Error::AlreadyConnected)` once connected, and
    /// `Err(Error::InvalidState)` for a callee or a session that has ended.
    pub fn connect(
        &mut self,
        now: Instant,
        caller_data: Option<&[u8]>,
        options: Options,
    ) -> Result<(), Error> {
        match self.state {
            State::Idle => {}
            State::ConnectSent => return Err(Error::AlreadyConnecting),
            _ if self.flags.get(Self::NEGOTIATED) && !self.is_closed() => {
                return Err(Error::AlreadyConnected);
            }
            state => return Err(Error::InvalidState { state }),
        }
        Self::check_connect(&self.config, caller_data, &options)?;
        if !self.buffers_hold(&options) {
            return Err(Error::InvalidGrant);
        }
        self.cold.make().proposed = Some(options);
        self.set_params(options);
        let args = Args {
            data: caller_data,
            options: Some(options),
            integrity: Some(options.integrity),
            ..Args::default()
        };
        self.fire(now, Input::AppConnect, args);
        Ok(())
    }

    /// What [`connect`](Self::connect) checks of its arguments before it
    /// changes anything, for a driver that creates the session later (once
    /// its transport is up) and must refuse a bad connect at once.
    ///
    /// This function returns `Err(Error::InvalidGrant)` if the options are
    /// out of range, need more than `config`'s receive buffer, or leave out
    /// the integrity option `config.require_integrity` asks for, and
    /// `Err(Error::TooLarge)` if the caller data is over
    /// `options.max_connect_data`.
    pub fn check_connect(
        config: &crate::Config,
        caller_data: Option<&[u8]>,
        options: &Options,
    ) -> Result<(), Error> {
        // A caller that requires integrity (§2.5) and proposes none could
        // only abort once the callee answered: refused before anything is sent.
        let integrity_left_out =
            config.require_integrity && options.integrity != crate::Integrity::Crc32c;
        if options.validate().is_err()
            || options.max_message_size as usize > config.recv_buffer
            || integrity_left_out
        {
            return Err(Error::InvalidGrant);
        }
        check_len(caller_data, options.max_connect_data, DataKind::CallerData)
    }

    /// Callee: accepts the pending request with `callee_data` and the
    /// `granted` options (CF_ACCEPT). `ConnectRequest::grant` is the usual
    /// choice for `granted`.
    ///
    /// This function returns `Err(Error::InvalidGrant)` if `granted` exceeds
    /// the proposal, changes the mode, or needs more than the receive buffer
    /// or the session's provided buffers ([`crate::SessionBuffers`]) hold;
    /// `Err(Error::TooLarge)` if the callee data is over
    /// `granted.max_connect_data`; `Err(Error::InvalidState)` unless a request
    /// is pending.
    pub fn accept(
        &mut self,
        now: Instant,
        callee_data: Option<&[u8]>,
        granted: Options,
    ) -> Result<(), Error> {
        self.check(Input::AppAccept)?;
        if !granted.is_valid_grant_for(&self.proposed())
            || granted.max_message_size as usize > self.config.recv_buffer
            || !self.buffers_hold(&granted)
        {
            return Err(Error::InvalidGrant);
        }
        check_len(callee_data, granted.max_connect_data, DataKind::CalleeData)?;
        self.set_params(granted);
        self.flags.set(Self::NEGOTIATED, true);
        // The ACCEPT that grants integrity is the first sealed frame (the
        // row's integrity rule, §2.5).
        let args = Args {
            data: callee_data,
            integrity: Some(granted.integrity),
            ..Args::default()
        };
        self.fire(now, Input::AppAccept, args);
        Ok(())
    }

    /// Callee: refuses the pending request with `reason` and `data`
    /// (CF_REJECT). The caller gets [`Event::Refused`](crate::Event::Refused)
    /// with exactly these.
    ///
    /// This function returns `Err(Error::TooLarge)` if the data is over the
    /// caller's `max_connect_data`, and `Err(Error::InvalidState)` unless a
    /// request is pending.
    pub fn reject(
        &mut self,
        now: Instant,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.check(Input::AppReject)?;
        check_len(data, self.proposed().max_connect_data, DataKind::RejectData)?;
        let args = Args {
            reason: Some(reason),
            data,
            ..Args::default()
        };
        self.fire(now, Input::AppReject, args);
        Ok(())
    }

    /// Callee: leaves the request pending (CF_DEFER). It stays until
    /// [`accept`](Self::accept), [`reject`](Self::reject) or the decision
    /// timer, which rejects with `DECISION_TIMEOUT`.
    ///
    /// This function returns `Err(Error::InvalidState)` unless a request is pending.
    pub fn defer(&mut self) -> Result<(), Error> {
        self.check(Input::AppDefer)?;
        self.fire(Instant::ZERO, Input::AppDefer, Args::default());
        Ok(())
    }

    /// Stream mode: queues up to `data.len()` bytes, returning how many were
    /// taken. A short count means the send buffer is full;
    /// [`Event::Writable`](crate::Event::Writable) follows when there is room again.
    ///
    /// This function returns `Err(Error::WouldBlock)` if nothing could be
    /// taken, `Err(Error::Shutdown)` after `send_disconnect`,
    /// `Err(Error::WrongMode)` in message mode, and `Err(Error::NotConnected)`
    /// (or the reason the session ended) when not connected.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.check_send(Mode::Stream)?;
        let n = data.len().min(self.stream_room());
        if n < data.len() {
            self.tx.set_writable_wanted(true);
            if n == 0 {
                return Err(Error::WouldBlock);
            }
        }
        for chunk in data[..n].chunks(self.params.max_frame_size as usize) {
            self.tx.queue_data(chunk, false);
        }
        Ok(n)
    }

    /// Payload bytes `send` may queue now: as many as fit the send buffer
    /// with their frames' headers (the buffer bounds bytes on the wire, so
    /// that small frames cannot make the queue outgrow it); into an empty
    /// queue, one frame's worth when the buffer has no room for a header
    /// and a payload byte, so that even such a buffer moves.
    pub(super) fn stream_room(&self) -> usize {
        let frame = self.params.max_frame_size as usize;
        let overhead = self.tx.frame_overhead();
        let room = self.config.send_buffer.saturating_sub(self.tx.len());
        let whole = room / (frame + overhead);
        let rest = (room % (frame + overhead)).saturating_sub(overhead);
        let n = whole * frame + rest;
        if n == 0 && self.tx.is_empty() {
            frame
        } else {
            n
        }
    }

    /// Stream mode, zero-copy send: frames up to `data.len()` bytes straight
    /// into `out` (the transport's free send space) instead of the session's
    /// own buffer, returning `(data bytes taken, bytes written to out)`.
    ///
    /// It only writes while nothing else is queued ([`send_queue`](Self::send_queue)
    /// is 0), so frame order is kept; otherwise it takes nothing and the
    /// caller uses [`send`](Self::send). Frames are cut to the room in `out`,
    /// but never below `MIN_DIRECT_CHUNK` payload bytes unless that is all
    /// that is left, so a nearly full transport does not get tiny frames.
    ///
    /// This function returns the errors of [`send`](Self::send) except `WouldBlock`.
    pub fn send_direct(
        &mut self,
        now: Instant,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, usize), Error> {
        self.check_send(Mode::Stream)?;
        if !self.tx.is_empty() {
            return Ok((0, 0));
        }
        let frame = self.params.max_frame_size as usize;
        let seal = self.tx.seal();
        let overhead = self.tx.frame_overhead();
        let (mut taken, mut written) = (0, 0);
        while taken < data.len() {
            let room = out.len() - written;
            let want = (data.len() - taken).min(frame);
            let n = want.min(room.saturating_sub(overhead));
            if n == 0 || (n < want && n < MIN_DIRECT_CHUNK) {
                break;
            }
            let payload = &data[taken..taken + n];
            let (header, hl, trailer) = super::tx::data_header(payload, 0, seal);
            out[written..written + hl].copy_from_slice(&header[..hl]);
            out[written + hl..written + hl + n].copy_from_slice(payload);
            if let Some(t) = trailer {
                out[written + hl + n..written + overhead + n].copy_from_slice(&t);
            }
            written += overhead + n;
            taken += n;
        }
        if written > 0 {
            self.sent(now);
        }
        Ok((taken, written))
    }

    /// Message mode: queues one whole message, split over DATA frames as
    /// needed, or nothing.
    ///
    /// This function returns `Err(Error::TooLarge)` for a message over the
    /// negotiated `max_message_size`, `Err(Error::WouldBlock)` if the send
    /// buffer cannot take it now (a message is always taken when the buffer
    /// is empty), and the errors of [`send`](Self::send) otherwise.
    pub fn send_message(&mut self, message: &[u8]) -> Result<(), Error> {
        self.check_send(Mode::Message)?;
        check_len(
            Some(message),
            self.params.max_message_size,
            DataKind::Message,
        )?;
        let frame = self.params.max_frame_size as usize;
        let wire = message.len() + (message.len() / frame + 1) * self.tx.frame_overhead();
        if !self.tx.is_empty() && self.tx.len() + wire > self.config.send_buffer {
            self.tx.set_writable_wanted(true);
            return Err(Error::WouldBlock);
        }
        if message.is_empty() {
            self.tx.queue_data(&[], true);
            return Ok(());
        }
        let mut chunks = message.chunks(frame).peekable();
        while let Some(chunk) = chunks.next() {
            self.tx.queue_data(chunk, chunks.peek().is_none());
        }
        Ok(())
    }

    /// Ends our sending half with disconnect `data` (WSASendDisconnect). The
    /// peer gets FD_CLOSE ([`Event::PeerDisconnected`](crate::Event::PeerDisconnected))
    /// and reads `data` with `recv_disconnect`. We may still receive. A second
    /// call with no data succeeds and does nothing (shutdown is idempotent).
    ///
    /// This function returns `Err(Error::Shutdown)` for a second call with
    /// data, `Err(Error::TooLarge)` for data over the negotiated
    /// `max_disconnect_data`, and `Err(Error::NotConnected)` (or the reason the
    /// session ended) before connecting.
    pub fn send_disconnect(&mut self, now: Instant, data: Option<&[u8]>) -> Result<(), Error> {
        if self.flags.get(Self::LOCAL_DISCONNECTED) {
            return if data.is_none() {
                Ok(())
            } else {
                Err(Error::Shutdown)
            };
        }
        if state::row(self.state, Input::AppSendDisconnect).is_none() {
            return Err(self.not_sendable());
        }
        check_len(
            data,
            self.params.max_disconnect_data,
            DataKind::DisconnectData,
        )?;
        let args = Args {
            data,
            ..Args::default()
        };
        self.fire(now, Input::AppSendDisconnect, args);
        Ok(())
    }

    /// Reads the peer's disconnect data into `buf` (WSARecvDisconnect):
    /// `Ok(Some(n))` for `n` bytes, `Ok(None)` when the peer's DISCONNECT
    /// carried no data (distinct from zero-length data). It is returned once.
    /// Unlike Windows TCP, unread normal data stays readable.
    ///
    /// This function returns `Err(Error::NotYet)` before the peer's
    /// DISCONNECT, `Err(Error::Consumed)` once it has been returned,
    /// `Err(Error::BufferTooSmall)` if `buf` is too short (the data stays), and
    /// `ConnectionReset` / `ConnectionAborted` if the session was torn down
    /// before it arrived or was read.
    pub fn recv_disconnect(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        if let Some(d) = self.cold.get().and_then(|c| c.peer_disconnect.as_ref())
            && d.len() > buf.len()
        {
            return Err(Error::BufferTooSmall { needed: d.len() });
        }
        Ok(self.recv_disconnect_bytes()?.map(|d| {
            buf[..d.len()].copy_from_slice(&d);
            d.len()
        }))
    }

    /// [`recv_disconnect`](Self::recv_disconnect) without copying.
    ///
    /// This function returns the same errors, except `BufferTooSmall`.
    pub fn recv_disconnect_bytes(&mut self) -> Result<Option<Bytes>, Error> {
        match core::mem::replace(&mut self.peer_disconnect, PeerDisconnect::Consumed) {
            PeerDisconnect::Ready => Ok(self.cold.get_mut().and_then(|c| c.peer_disconnect.take())),
            PeerDisconnect::Consumed => Err(Error::Consumed),
            PeerDisconnect::NotYet => {
                self.peer_disconnect = PeerDisconnect::NotYet;
                match self.nothing_to_read() {
                    e @ (Error::ConnectionReset | Error::ConnectionAborted) => Err(e),
                    _ => Err(Error::NotYet),
                }
            }
        }
    }

    /// Graceful close (closesocket with the default linger). Sends DISCONNECT
    /// without data if not yet sent; everything queued, disconnect data
    /// included, is still delivered, and the session lingers until the peer's
    /// FIN confirms it or the linger timer aborts. Returns at once.
    ///
    /// With data unread (buffered, or waiting in the transport for direct
    /// receive), or if data arrives later, the session is aborted with
    /// `UNREAD_DATA` instead, as TCP resets in that case (RFC 9293
    /// §3.10.4). An undecided request is rejected; a pending connect is
    /// abandoned (RST). Closing a closed session does nothing.
    pub fn close(&mut self, now: Instant) {
        if self.is_closed() || self.flags.get(Self::APP_CLOSED) {
            return;
        }
        // Every state where data can be unread has its own AppCloseUnread
        // row (the table test `close_with_unread_data_never_ends_gracefully`
        // derives those states from the table itself). Were one missing, the
        // close would abort with UNREAD_DATA, never end gracefully.
        let unread = self.has_unread();
        let (input, args) = if !unread {
            (Input::AppClose, Args::default())
        } else if state::row(self.state, Input::AppCloseUnread).is_some() {
            debug!(
                "session {}: close with {} bytes unread: aborting",
                self.id, self.rx.queued
            );
            (Input::AppCloseUnread, Args::default())
        } else {
            debug_assert!(
                false,
                "data unread in {} without an AppCloseUnread row",
                self.state
            );
            let args = Args {
                reason: Some(Reason::UNREAD_DATA),
                ..Args::default()
            };
            (Input::AppAbort, args)
        };
        self.flags.set(Self::APP_CLOSED, true);
        self.fire(now, input, args);
    }

    /// Abortive close (closesocket with linger {1, 0}): unsent data is
    /// discarded, then ABORT with `reason` and `data`, then RST (§3.6). The
    /// peer sees `Aborted` with exactly these, or `Reset` if only the RST
    /// reaches it.
    ///
    /// This function returns `Err(Error::TooLarge)` for data over the
    /// `max_disconnect_data` in force, and `Err(Error::InvalidState)` once closed.
    pub fn abort(
        &mut self,
        now: Instant,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.check(Input::AppAbort)?;
        check_len(data, self.params.max_disconnect_data, DataKind::AbortData)?;
        self.flags.set(Self::APP_CLOSED, true);
        let args = Args {
            reason: Some(reason),
            data,
            ..Args::default()
        };
        self.fire(now, Input::AppAbort, args);
        Ok(())
    }

    // ----- checks ------------------------------------------------------------

    fn check(&self, input: Input) -> Result<(), Error> {
        match state::row(self.state, input) {
            Some(_) => Ok(()),
            None => Err(Error::InvalidState { state: self.state }),
        }
    }

    fn check_send(&self, mode: Mode) -> Result<(), Error> {
        if self.mode() != mode {
            return Err(Error::WrongMode);
        }
        if self.flags.get(Self::APP_CLOSED) {
            return Err(Error::Shutdown);
        }
        let Some(_row) = state::row(self.state, Input::AppSend) else {
            return Err(self.not_sendable());
        };
        // The row changes nothing (the data path does the work), and it is
        // applied here rather than fired.
        #[cfg(feature = "row-coverage")]
        state::coverage::mark(_row);
        Ok(())
    }

    fn not_sendable(&self) -> Error {
        if self.flags.get(Self::LOCAL_DISCONNECTED) || self.flags.get(Self::APP_CLOSED) {
            return Error::Shutdown;
        }
        match self.nothing_to_read() {
            Error::WouldBlock => Error::InvalidState { state: self.state },
            e => e,
        }
    }
}

fn check_len(data: Option<&[u8]>, max: u32, what: DataKind) -> Result<(), Error> {
    match data {
        Some(d) if d.len() > max as usize => Err(Error::TooLarge { max, what }),
        _ => Ok(()),
    }
}
