//! One bookend session: the sans-IO machine of `docs/protocol.md` §5.

use alloc::collections::VecDeque;
use bookend_wire::{
    AcceptRepr, ConnectRepr, Decoded, Error as WireError, FrameRepr, FrameType, HEADER_LEN, Limits,
    Mode, Reason, ReasonRepr, VERSION, decode, emit_header, flags,
};
use bytes::{Buf, Bytes, BytesMut};
use tracing::{debug, trace};

use crate::config::{Config, ConfigError, Options};
use crate::error::Error;
use crate::event::{CloseReason, ConnectRequest, Event, Side, Timer, Violation};
use crate::state::{self, Input, State};
use crate::time::Instant;

/// Which end of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends CONNECT (WSAConnect).
    Caller,
    /// Receives CONNECT (WSAAccept).
    Callee,
}

/// What the transport should do to the TCP connection, besides writing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportAction {
    /// Close our sending half (TCP FIN) once every byte polled so far is sent.
    Fin,
    /// Reset the connection (TCP RST). Bytes polled before it (an ABORT
    /// frame) should be given a short, bounded chance to leave first.
    Reset,
}

/// How the transport ended, as seen from below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportClosed {
    /// The peer's FIN: the received stream has ended. Deliver it only after
    /// every byte before it was accepted by [`Session::handle_bytes`].
    Fin,
    /// The peer's RST.
    Reset,
    /// The transport gave up (retransmission or user timeout).
    TimedOut,
}

/// Smallest DATA payload [`Session::send_direct`] cuts a frame to when the
/// transport has less room than the data: below it, waiting beats tiny frames.
pub const MIN_DIRECT_CHUNK: usize = 512;

/// Largest number of bytes a frame header plus its body can take in the
/// partial-frame buffer: the bound is per type, from [`Limits::max_body_len`].
fn max_frame_len(limits: &Limits) -> usize {
    let mut max = 0;
    for t in FrameType::KNOWN {
        max = max.max(limits.max_body_len(t));
    }
    HEADER_LEN + max as usize
}

/// Present, absent, or already taken: the peer's disconnect data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerDisconnect {
    NotYet,
    Ready(Option<Bytes>),
    Consumed,
}

/// Our FIN or RST: not wanted, wanted once the queued bytes are out, or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    No,
    Queued,
    Done,
}

/// Current sizes of every buffer the session owns, next to their bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferUsage {
    /// Bytes of a partially received frame.
    pub rx_partial: usize,
    /// Bound on `rx_partial`: the largest frame the limits in force allow.
    pub rx_partial_max: usize,
    /// Received DATA bytes held for the application (stream bytes, complete
    /// and partial messages).
    pub rx_queued: usize,
    /// Bound on `rx_queued`: the receive buffer plus one frame (consumption
    /// stops once the buffer is full, but a frame is taken whole).
    pub rx_queued_max: usize,
    /// Encoded bytes waiting for the transport.
    pub tx: usize,
    /// Bound on `tx`: the send buffer, plus one message, plus the largest
    /// control frames (DISCONNECT or ABORT, PING).
    pub tx_max: usize,
}

/// The state machine of one session, for either role. Sans-IO: bytes in,
/// bytes out, `now` passed in, events out.
///
/// Methods come in four kinds, after quinn-proto's `Connection`:
///
/// * getters, taking `&self`;
/// * `handle_*`: input from the transport ([`handle_bytes`](Self::handle_bytes),
///   [`handle_transport_closed`](Self::handle_transport_closed)) and the
///   clock ([`handle_timeout`](Self::handle_timeout));
/// * application commands: [`connect`](Self::connect), [`accept`](Self::accept),
///   [`reject`](Self::reject), [`defer`](Self::defer), [`send`](Self::send),
///   [`recv`](Self::recv), [`send_message`](Self::send_message),
///   [`recv_message`](Self::recv_message), [`send_disconnect`](Self::send_disconnect),
///   [`recv_disconnect`](Self::recv_disconnect), [`close`](Self::close),
///   [`abort`](Self::abort);
/// * `poll_*`: output. After any `handle_*` call or command, call them in
///   this order until each returns nothing:
///   1. [`poll_transmit`](Self::poll_transmit): bytes for the transport;
///   2. [`poll_transport_action`](Self::poll_transport_action): FIN or RST,
///      which only comes once every byte before it was polled;
///   3. [`poll_timeout`](Self::poll_timeout): when to call `handle_timeout`;
///   4. [`poll_event`](Self::poll_event): what the application should hear.
///
/// A session is finished with once [`is_drained`](Self::is_drained) is true.
#[derive(Debug)]
pub struct Session {
    role: Role,
    state: State,
    id: u64,
    span: tracing::Span,
    config: Config,
    /// Caller: what CONNECT proposed. Callee: what CONNECT proposed to us.
    proposed: Options,
    /// The options in force: our own before negotiation, the grant after.
    params: Options,
    /// Decoder limits implied by `params`.
    limits: Limits,
    negotiated: bool,

    rx_partial: BytesMut,
    rx_stream: BytesMut,
    rx_messages: VecDeque<Bytes>,
    rx_message: BytesMut,
    rx_queued: usize,
    peer_disconnect: PeerDisconnect,
    readable_posted: bool,
    /// Stream mode, opted in by the driver: DATA stays in the transport until
    /// the application reads it with [`Session::recv_direct`] (zero-copy).
    direct_rx: bool,
    /// Payload bytes still owed by a DATA frame whose header was consumed.
    rx_data_left: usize,

    tx: BytesMut,
    local_disconnected: bool,
    fin: Pending,
    rst: Pending,
    app_closed: bool,
    writable_wanted: bool,

    /// The REJECT reason, sent (callee) or received (caller).
    refusal: Option<Reason>,
    events: VecDeque<Event>,
    close_reason: Option<CloseReason>,

    connect_deadline: Option<Instant>,
    handshake_deadline: Option<Instant>,
    decision_deadline: Option<Instant>,
    linger_deadline: Option<Instant>,
    abort_flush_deadline: Option<Instant>,
    last_rx: Instant,
    last_tx: Instant,
}

impl Session {
    fn new(
        role: Role,
        config: Config,
        id: u64,
        state: State,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let params = config.options;
        Ok(Self {
            role,
            state,
            id,
            span: tracing::debug_span!("session", id, ?role),
            proposed: params,
            params,
            limits: params.limits(),
            negotiated: false,
            config,
            rx_partial: BytesMut::new(),
            rx_stream: BytesMut::new(),
            rx_messages: VecDeque::new(),
            rx_message: BytesMut::new(),
            rx_queued: 0,
            peer_disconnect: PeerDisconnect::NotYet,
            readable_posted: false,
            direct_rx: false,
            rx_data_left: 0,
            tx: BytesMut::new(),
            local_disconnected: false,
            fin: Pending::No,
            rst: Pending::No,
            app_closed: false,
            writable_wanted: false,
            refusal: None,
            events: VecDeque::new(),
            close_reason: None,
            connect_deadline: None,
            handshake_deadline: None,
            decision_deadline: None,
            linger_deadline: None,
            abort_flush_deadline: None,
            last_rx: now,
            last_tx: now,
        })
    }

    /// A caller's session, in `Idle`: call [`connect`](Self::connect) once the
    /// transport is established. `id` names the session in traces.
    ///
    /// This function returns `Err` if the configuration is invalid.
    pub fn caller(config: Config, id: u64) -> Result<Self, ConfigError> {
        Self::new(Role::Caller, config, id, State::Idle, Instant::ZERO)
    }

    /// A callee's session for a transport established at `now`, in
    /// `AwaitConnect`, with the handshake timer armed.
    ///
    /// This function returns `Err` if the configuration is invalid.
    pub fn callee(config: Config, id: u64, now: Instant) -> Result<Self, ConfigError> {
        let mut s = Self::new(Role::Callee, config, id, State::AwaitConnect, now)?;
        s.handshake_deadline = Some(now + s.config.handshake_timeout);
        Ok(s)
    }

    // ----- getters -------------------------------------------------------

    /// This session's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The id given at construction.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The options in force: the grant once connected, our own before.
    pub fn options(&self) -> &Options {
        &self.params
    }

    /// Whether the options have been negotiated (ACCEPT sent or received).
    pub fn is_connected(&self) -> bool {
        self.negotiated
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    /// Whether the peer's DISCONNECT has arrived (FD_CLOSE was posted).
    pub fn peer_disconnected(&self) -> bool {
        self.peer_disconnect != PeerDisconnect::NotYet
    }

    /// Whether our DISCONNECT has been queued.
    pub fn local_disconnected(&self) -> bool {
        self.local_disconnected
    }

    /// Received DATA bytes not yet read by the application.
    pub fn recv_queue(&self) -> usize {
        self.rx_queued
    }

    /// Encoded bytes waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }

    /// Current buffer sizes and their bounds.
    pub fn buffer_usage(&self) -> BufferUsage {
        let p = &self.params;
        let frame = p.max_frame_size as usize;
        let control = 2 * HEADER_LEN + 2 + p.max_disconnect_data as usize;
        BufferUsage {
            rx_partial: self.rx_partial.len(),
            rx_partial_max: max_frame_len(&self.limits),
            rx_queued: self.rx_queued,
            rx_queued_max: self.config.recv_buffer + frame,
            tx: self.tx.len(),
            tx_max: self.config.send_buffer
                + p.max_message_size as usize
                + (p.max_message_size as usize / frame + 1) * HEADER_LEN
                + max_frame_len(&self.limits)
                + control,
        }
    }

    /// Events not yet taken with [`poll_event`](Self::poll_event).
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Whether the session is over and nothing is left to poll: the
    /// transport can be released.
    pub fn is_drained(&self) -> bool {
        self.state == State::Closed
            && self.tx.is_empty()
            && self.fin != Pending::Queued
            && self.rst != Pending::Queued
            && self.events.is_empty()
    }

    // ----- output ----------------------------------------------------------

    /// Copies bytes for the transport into `buf`, returning how many. Call
    /// until it returns 0 or the transport is full; every byte returned must be
    /// written, in order.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.tx.len());
        if n == 0 {
            return 0;
        }
        buf[..n].copy_from_slice(&self.tx[..n]);
        self.tx.advance(n);
        self.last_tx = now;
        self.after_tx_drain();
        n
    }

    /// Takes up to `max` bytes for the transport without copying them.
    pub fn poll_transmit_bytes(&mut self, now: Instant, max: usize) -> Option<Bytes> {
        let n = max.min(self.tx.len());
        if n == 0 {
            return None;
        }
        let out = self.tx.split_to(n).freeze();
        self.last_tx = now;
        self.after_tx_drain();
        Some(out)
    }

    fn after_tx_drain(&mut self) {
        if self.writable_wanted && self.tx.len() < self.config.send_buffer && self.can_send_data() {
            self.writable_wanted = false;
            self.events.push_back(Event::Writable);
        }
    }

    /// The next FIN or RST for the transport, once every byte before it has
    /// been polled.
    pub fn poll_transport_action(&mut self) -> Option<TransportAction> {
        if !self.tx.is_empty() {
            return None;
        }
        if self.rst == Pending::Queued {
            self.rst = Pending::Done;
            self.fin = Pending::Done;
            return Some(TransportAction::Reset);
        }
        if self.fin == Pending::Queued {
            self.fin = Pending::Done;
            return Some(TransportAction::Fin);
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.connect_deadline);
        consider(self.handshake_deadline);
        consider(self.decision_deadline);
        consider(self.linger_deadline);
        consider(
            self.abort_flush_deadline
                .filter(|_| self.rst == Pending::Queued),
        );
        consider(self.idle_deadline());
        consider(self.keepalive_deadline());
        next
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn keepalive_states(&self) -> bool {
        matches!(
            self.state,
            State::Open | State::LocalDisconnected | State::PeerDisconnected
        )
    }

    fn idle_deadline(&self) -> Option<Instant> {
        let k = self
            .params
            .keepalive()
            .filter(|_| self.negotiated && self.keepalive_states())?;
        Some(self.last_rx + k * 3)
    }

    fn keepalive_deadline(&self) -> Option<Instant> {
        let k = self
            .params
            .keepalive()
            .filter(|_| self.negotiated && self.keepalive_states())?;
        self.can_send_frames().then(|| self.last_tx + k)
    }

    // ----- input -------------------------------------------------------------

    /// Takes bytes read from the transport, in any chunking, returning how
    /// many it consumed.
    ///
    /// It consumes less than offered only when the receive buffer is full
    /// (`Config::recv_buffer`): keep the rest in the transport, so that its
    /// flow control pushes back, and offer it again after the application has
    /// read. In the closing states and after the end, everything is consumed
    /// and ignored.
    pub fn handle_bytes(&mut self, now: Instant, input: &[u8]) -> usize {
        let span = self.span.clone();
        let _guard = span.enter();
        let mut at = 0;
        loop {
            if !self.state.parses_frames() {
                return input.len();
            }
            if self.rx_queued >= self.config.recv_buffer {
                return at;
            }
            if self.rx_data_left > 0 {
                // The rest of a DATA frame `recv_direct` started.
                if self.stops_at_data() {
                    self.last_rx = now;
                    return at;
                }
                let take = self.rx_data_left.min(input.len() - at);
                if take == 0 {
                    return at;
                }
                self.rx_data_left -= take;
                self.last_rx = now;
                self.on_data(now, false, &input[at..at + take]);
                at += take;
                continue;
            }
            // Only with the whole header in view: a header cut short (at the
            // end of the transport's contiguous bytes) takes the buffered
            // path below, or neither side could make progress.
            if self.rx_partial.is_empty()
                && self.stops_at_data()
                && input.len() - at >= HEADER_LEN
                && FrameType::from(input[at]) == FrameType::Data
            {
                // Direct receive: leave DATA in the transport for the
                // application to read without a copy through the session.
                self.last_rx = now;
                self.post_readable();
                return at;
            }
            if !self.rx_partial.is_empty() {
                // Finish the frame already started: take exactly what it needs.
                let decoded = decode(&self.rx_partial, &self.limits);
                match decoded {
                    Ok(Decoded::Incomplete { needed }) => {
                        let take = needed.min(input.len() - at);
                        if take == 0 {
                            return at;
                        }
                        self.rx_partial.extend_from_slice(&input[at..at + take]);
                        at += take;
                        self.last_rx = now;
                    }
                    Ok(Decoded::Frame { .. }) => {
                        let buf = core::mem::take(&mut self.rx_partial);
                        if let Ok(Decoded::Frame { repr, .. }) = decode(&buf, &self.limits) {
                            self.on_frame(now, repr);
                        }
                        self.rx_partial = buf;
                        self.rx_partial.clear();
                    }
                    Err(e) => {
                        let first = self.rx_partial.first().copied();
                        self.on_decode_error(now, e, first);
                        return input.len();
                    }
                }
                continue;
            }
            let rest = &input[at..];
            if rest.is_empty() {
                return at;
            }
            match decode(rest, &self.limits) {
                Ok(Decoded::Frame { repr, len }) => {
                    at += len;
                    self.last_rx = now;
                    self.on_frame(now, repr);
                }
                Ok(Decoded::Incomplete { .. }) => {
                    // `decode` checked the header (if complete) against the
                    // limits, so this copy is bounded by one legal frame.
                    self.rx_partial.extend_from_slice(rest);
                    self.last_rx = now;
                    return input.len();
                }
                Err(e) => {
                    let first = rest.first().copied();
                    self.on_decode_error(now, e, first);
                    return input.len();
                }
            }
        }
    }

    /// Tells the session how the transport ended. A FIN must come after
    /// every byte before it was consumed by [`handle_bytes`](Self::handle_bytes).
    pub fn handle_transport_closed(&mut self, now: Instant, how: TransportClosed) {
        let span = self.span.clone();
        let _guard = span.enter();
        if self.state == State::Closed {
            // After the end (for example the peer's RST answering our ABORT):
            // nothing to send on a dead transport.
            if how != TransportClosed::Fin {
                self.transport_dead();
            }
            return;
        }
        match how {
            TransportClosed::Fin => self.on_fin(now),
            TransportClosed::Reset => {
                self.transport_dead();
                // Windows discards received data on RST (winsock-semantics E12).
                self.discard_rx();
                self.finish(Input::RecvRst, CloseReason::Reset);
            }
            TransportClosed::TimedOut => {
                self.transport_dead();
                self.finish(
                    Input::TransportTimeout,
                    CloseReason::TimedOut(Timer::Transport),
                );
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let span = self.span.clone();
        let _guard = span.enter();
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.abort_flush_deadline) && self.rst == Pending::Queued {
            // The ABORT could not get out in time: drop it, so the RST goes.
            trace!(
                "abort flush timeout, dropping {} queued bytes",
                self.tx.len()
            );
            self.tx.clear();
            self.abort_flush_deadline = None;
        }
        if due(self.connect_deadline) && self.state == State::ConnectSent {
            self.abort_with(
                now,
                Input::ConnectTimer,
                Reason::CONNECT_TIMEOUT,
                None,
                CloseReason::TimedOut(Timer::Connect),
            );
        }
        if due(self.handshake_deadline) && self.state == State::AwaitConnect {
            self.abort_with(
                now,
                Input::HandshakeTimer,
                Reason::HANDSHAKE_TIMEOUT,
                None,
                CloseReason::TimedOut(Timer::Handshake),
            );
        }
        if due(self.decision_deadline)
            && matches!(self.state, State::ConnectReceived | State::Deferred)
        {
            debug!("decision timeout: rejecting");
            self.send_reject(now, Input::DecisionTimer, Reason::DECISION_TIMEOUT, None);
        }
        if due(self.linger_deadline) && state::next(self.state, Input::LingerTimer).is_some() {
            self.abort_with(
                now,
                Input::LingerTimer,
                Reason::LINGER_TIMEOUT,
                None,
                CloseReason::TimedOut(Timer::Linger),
            );
        }
        if due(self.idle_deadline()) {
            self.abort_with(
                now,
                Input::IdleTimer,
                Reason::IDLE_TIMEOUT,
                None,
                CloseReason::TimedOut(Timer::Idle),
            );
        }
        if due(self.keepalive_deadline()) {
            self.queue(&FrameRepr::Ping);
            // Counts as sent for the keepalive timer even before it is polled.
            self.last_tx = now;
        }
    }

    // ----- application commands ------------------------------------------------

    /// Caller: sends CONNECT with `caller_data` and the proposed `options`
    /// (WSAConnect). Call once the transport is established.
    ///
    /// This function returns `Err(Error::TooLarge)` if the caller data is over
    /// `options.max_connect_data`, `Err(Error::InvalidGrant)` if the options are
    /// out of range or need more than the receive buffer, and
    /// `Err(Error::InvalidState)` unless the session is `Idle`.
    pub fn connect(
        &mut self,
        now: Instant,
        caller_data: Option<&[u8]>,
        options: Options,
    ) -> Result<(), Error> {
        let span = self.span.clone();
        let _guard = span.enter();
        self.check(Input::AppConnect)?;
        if options.validate().is_err()
            || options.max_message_size as usize > self.config.recv_buffer
        {
            return Err(Error::InvalidGrant);
        }
        check_len(caller_data, options.max_connect_data)?;
        self.proposed = options;
        self.params = options;
        self.limits = options.limits();
        self.last_rx = now;
        self.last_tx = now;
        self.connect_deadline = Some(now + self.config.connect_timeout);
        // Out of IDLE first: frames are only queued once the transport is ours.
        self.transition(Input::AppConnect);
        self.queue(&FrameRepr::Connect(ConnectRepr {
            min_version: VERSION,
            max_version: VERSION,
            options: options.to_repr(),
            data: caller_data,
        }));
        Ok(())
    }

    /// Callee: accepts the pending request with `callee_data` and the
    /// `granted` options (CF_ACCEPT). `ConnectRequest::grant` is the usual
    /// choice for `granted`.
    ///
    /// This function returns `Err(Error::InvalidGrant)` if `granted` exceeds
    /// the proposal, changes the mode, or needs more than the receive buffer;
    /// `Err(Error::TooLarge)` if the callee data is over
    /// `granted.max_connect_data`; `Err(Error::InvalidState)` unless a request
    /// is pending.
    pub fn accept(
        &mut self,
        now: Instant,
        callee_data: Option<&[u8]>,
        granted: Options,
    ) -> Result<(), Error> {
        let span = self.span.clone();
        let _guard = span.enter();
        self.check(Input::AppAccept)?;
        if !granted.is_valid_grant_for(&self.proposed)
            || granted.max_message_size as usize > self.config.recv_buffer
        {
            return Err(Error::InvalidGrant);
        }
        check_len(callee_data, granted.max_connect_data)?;
        self.queue(&FrameRepr::Accept(AcceptRepr {
            version: VERSION,
            options: granted.to_repr(),
            data: callee_data,
        }));
        self.params = granted;
        self.limits = granted.limits();
        self.negotiated = true;
        self.last_rx = now;
        self.last_tx = now;
        self.decision_deadline = None;
        self.transition(Input::AppAccept);
        self.events.push_back(Event::Writable);
        Ok(())
    }

    /// Callee: refuses the pending request with `reason` and `data`
    /// (CF_REJECT). The caller gets [`Event::Refused`] with exactly these.
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
        let span = self.span.clone();
        let _guard = span.enter();
        self.check(Input::AppReject)?;
        check_len(data, self.proposed.max_connect_data)?;
        self.send_reject(now, Input::AppReject, reason, data);
        Ok(())
    }

    /// Callee: leaves the request pending (CF_DEFER). It stays until
    /// [`accept`](Self::accept), [`reject`](Self::reject) or the decision
    /// timer, which rejects with `DECISION_TIMEOUT`.
    ///
    /// This function returns `Err(Error::InvalidState)` unless a request is pending.
    pub fn defer(&mut self) -> Result<(), Error> {
        self.check(Input::AppDefer)?;
        self.transition(Input::AppDefer);
        Ok(())
    }

    /// Stream mode: queues up to `data.len()` bytes, returning how many were
    /// taken. A short count means the send buffer is full; [`Event::Writable`]
    /// follows when there is room again.
    ///
    /// This function returns `Err(Error::WouldBlock)` if nothing could be
    /// taken, `Err(Error::Shutdown)` after `send_disconnect`,
    /// `Err(Error::WrongMode)` in message mode, and `Err(Error::NotConnected)`
    /// (or the reason the session ended) when not connected.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.check_send(Mode::Stream)?;
        let room = self.config.send_buffer.saturating_sub(self.tx.len());
        let n = data.len().min(room);
        if n < data.len() {
            self.writable_wanted = true;
            if n == 0 {
                return Err(Error::WouldBlock);
            }
        }
        for chunk in data[..n].chunks(self.params.max_frame_size as usize) {
            self.queue_data(chunk, false);
        }
        Ok(n)
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
        let (mut taken, mut written) = (0, 0);
        while taken < data.len() {
            let room = out.len() - written;
            let want = (data.len() - taken).min(frame);
            let n = want.min(room.saturating_sub(HEADER_LEN));
            if n == 0 || (n < want && n < MIN_DIRECT_CHUNK) {
                break;
            }
            // n <= max_frame_size <= 16 MiB: fits the u32 length.
            let _ = emit_header(&mut out[written..], FrameType::Data, 0, n as u32);
            out[written + HEADER_LEN..written + HEADER_LEN + n]
                .copy_from_slice(&data[taken..taken + n]);
            written += HEADER_LEN + n;
            taken += n;
        }
        if written > 0 {
            self.last_tx = now;
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
        check_len(Some(message), self.params.max_message_size)?;
        let frame = self.params.max_frame_size as usize;
        let wire = message.len() + (message.len() / frame + 1) * HEADER_LEN;
        if !self.tx.is_empty() && self.tx.len() + wire > self.config.send_buffer {
            self.writable_wanted = true;
            return Err(Error::WouldBlock);
        }
        if message.is_empty() {
            self.queue_data(&[], true);
            return Ok(());
        }
        let mut chunks = message.chunks(frame).peekable();
        while let Some(chunk) = chunks.next() {
            self.queue_data(chunk, chunks.peek().is_none());
        }
        Ok(())
    }

    /// Stream mode: reads up to `buf.len()` bytes. After the peer's
    /// DISCONNECT, once every byte before it has been read, returns `Ok(0)`,
    /// and keeps returning it (Winsock's "recv returns zero").
    ///
    /// This function returns `Err(Error::WouldBlock)` when nothing is there
    /// yet, `Err(Error::WrongMode)` in message mode, and the reason the
    /// session ended (`ConnectionReset`, `ConnectionAborted`) or
    /// `NotConnected` otherwise.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.params.mode != Mode::Stream {
            return Err(Error::WrongMode);
        }
        self.readable_posted = false;
        if !self.rx_stream.is_empty() {
            let n = buf.len().min(self.rx_stream.len());
            buf[..n].copy_from_slice(&self.rx_stream[..n]);
            self.rx_stream.advance(n);
            self.rx_queued -= n;
            if !self.rx_stream.is_empty() {
                // Winsock re-posts FD_READ while data remains after a recv.
                self.post_readable();
            }
            return Ok(n);
        }
        if self.peer_disconnected() {
            return Ok(0);
        }
        Err(self.nothing_to_read())
    }

    /// Stream mode: lets the driver read DATA straight from the transport
    /// into the application's buffer ([`recv_direct`](Self::recv_direct)).
    /// From then on [`handle_bytes`](Self::handle_bytes) stops at DATA frames
    /// (reporting them as not consumed, which keeps them in the transport,
    /// and posting [`Event::Readable`]) while the application has not closed.
    pub fn set_direct_receive(&mut self, on: bool) {
        self.direct_rx = on && self.params.mode == Mode::Stream;
    }

    fn stops_at_data(&self) -> bool {
        self.direct_rx
            && !self.app_closed
            && self.params.mode == Mode::Stream
            && state::next(self.state, Input::RecvData).is_some()
    }

    /// Stream mode, zero-copy receive: takes frames from `wire` (bytes the
    /// transport holds, in order), copying DATA payloads straight into `out`
    /// and handling every other frame as [`handle_bytes`](Self::handle_bytes)
    /// would. Returns `(bytes of wire consumed, bytes written to out)`; the
    /// caller discards the consumed bytes from the transport. A DATA frame
    /// longer than the room in `out` is continued by the next call.
    ///
    /// It takes nothing, `(0, 0)`, unless direct receive is on and the
    /// session holds no received data of its own (read that with
    /// [`recv`](Self::recv) first, to keep order).
    pub fn recv_direct(&mut self, now: Instant, wire: &[u8], out: &mut [u8]) -> (usize, usize) {
        if !self.direct_rx
            || self.params.mode != Mode::Stream
            || !self.rx_partial.is_empty()
            || self.rx_queued > 0
        {
            return (0, 0);
        }
        self.readable_posted = false;
        let (mut at, mut written) = (0, 0);
        loop {
            if !self.state.parses_frames() {
                return (wire.len(), written);
            }
            if self.rx_data_left > 0 {
                let take = self
                    .rx_data_left
                    .min(wire.len() - at)
                    .min(out.len() - written);
                if take == 0 {
                    break;
                }
                out[written..written + take].copy_from_slice(&wire[at..at + take]);
                self.rx_data_left -= take;
                at += take;
                written += take;
                self.last_rx = now;
                continue;
            }
            let rest = &wire[at..];
            if rest.is_empty() {
                break;
            }
            if FrameType::from(rest[0]) == FrameType::Data && self.stops_at_data() {
                if written == out.len() {
                    break;
                }
                if rest.len() < HEADER_LEN {
                    break;
                }
                let body = bookend_wire::Frame::new_unchecked(rest).body_len();
                if body > self.limits.max_body_len(FrameType::Data) {
                    let max = self.limits.max_body_len(FrameType::Data);
                    let e = WireError::FrameTooLarge {
                        frame_type: FrameType::Data,
                        len: body,
                        max,
                    };
                    self.on_decode_error(now, e, Some(rest[0]));
                    return (wire.len(), written);
                }
                // Header taken; the payload is copied by the loop's first branch.
                at += HEADER_LEN;
                self.rx_data_left = body as usize;
                self.last_rx = now;
                continue;
            }
            match decode(rest, &self.limits) {
                Ok(Decoded::Frame { repr, len }) => {
                    at += len;
                    self.last_rx = now;
                    self.on_frame(now, repr);
                }
                Ok(Decoded::Incomplete { .. }) => break,
                Err(e) => {
                    self.on_decode_error(now, e, Some(rest[0]));
                    return (wire.len(), written);
                }
            }
        }
        (at, written)
    }

    /// Message mode: reads the next whole message into `buf`, returning its
    /// length. After the peer's DISCONNECT, once every message has been read,
    /// returns `Err(Error::Disconnected)` (WSAEDISCON).
    ///
    /// This function returns `Err(Error::MessageTruncated)` if the message is
    /// longer than `buf`: it stays queued, nothing is cut. Other errors as
    /// for [`recv`](Self::recv).
    pub fn recv_message(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.peek_message()?;
        if len > buf.len() {
            return Err(Error::MessageTruncated { len });
        }
        let msg = self.take_message();
        buf[..len].copy_from_slice(&msg);
        Ok(len)
    }

    /// Message mode: takes the next whole message without copying it.
    ///
    /// This function returns the errors of [`recv_message`](Self::recv_message)
    /// except `MessageTruncated`.
    pub fn recv_message_bytes(&mut self) -> Result<Bytes, Error> {
        self.peek_message()?;
        Ok(self.take_message())
    }

    fn peek_message(&mut self) -> Result<usize, Error> {
        if self.params.mode != Mode::Message {
            return Err(Error::WrongMode);
        }
        self.readable_posted = false;
        match self.rx_messages.front() {
            Some(m) => Ok(m.len()),
            None if self.peer_disconnected() => Err(Error::Disconnected),
            None => Err(self.nothing_to_read()),
        }
    }

    fn take_message(&mut self) -> Bytes {
        let msg = self.rx_messages.pop_front().unwrap_or_default();
        self.rx_queued -= msg.len();
        if !self.rx_messages.is_empty() {
            self.post_readable();
        }
        msg
    }

    fn nothing_to_read(&self) -> Error {
        match &self.close_reason {
            Some(CloseReason::Reset) => Error::ConnectionReset,
            Some(
                CloseReason::Aborted { .. }
                | CloseReason::TimedOut(_)
                | CloseReason::ProtocolError { .. },
            ) => Error::ConnectionAborted,
            Some(_) => Error::NotConnected,
            None if self.negotiated => Error::WouldBlock,
            None => Error::NotConnected,
        }
    }

    /// Ends our sending half with disconnect `data` (WSASendDisconnect). The
    /// peer gets FD_CLOSE ([`Event::PeerDisconnected`]) and reads `data` with
    /// `recv_disconnect`. We may still receive. A second call with no data
    /// succeeds and does nothing (shutdown is idempotent).
    ///
    /// This function returns `Err(Error::Shutdown)` for a second call with
    /// data, `Err(Error::TooLarge)` for data over the negotiated
    /// `max_disconnect_data`, and `Err(Error::NotConnected)` (or the reason the
    /// session ended) before connecting.
    pub fn send_disconnect(&mut self, now: Instant, data: Option<&[u8]>) -> Result<(), Error> {
        let span = self.span.clone();
        let _guard = span.enter();
        if self.local_disconnected {
            return if data.is_none() {
                Ok(())
            } else {
                Err(Error::Shutdown)
            };
        }
        if state::next(self.state, Input::AppSendDisconnect).is_none() {
            return Err(self.not_sendable());
        }
        check_len(data, self.params.max_disconnect_data)?;
        self.queue_disconnect(now, Input::AppSendDisconnect, data);
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
        if let PeerDisconnect::Ready(Some(d)) = &self.peer_disconnect
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
            PeerDisconnect::Ready(d) => Ok(d),
            PeerDisconnect::Consumed => Err(Error::Consumed),
            PeerDisconnect::NotYet => {
                self.peer_disconnect = PeerDisconnect::NotYet;
                match self.nothing_to_read() {
                    Error::ConnectionReset | Error::ConnectionAborted => {
                        Err(self.nothing_to_read())
                    }
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
    /// With data unread, or if data arrives later, the session is aborted
    /// with `UNREAD_DATA` instead, as TCP resets in that case (RFC 9293
    /// §3.10.4). An undecided request is rejected; a pending connect is
    /// abandoned. Closing a closed session does nothing.
    pub fn close(&mut self, now: Instant) {
        let span = self.span.clone();
        let _guard = span.enter();
        if self.state == State::Closed || self.app_closed {
            return;
        }
        self.app_closed = true;
        let receiving = matches!(
            self.state,
            State::Open | State::LocalDisconnected | State::PeerDisconnected
        );
        if receiving && self.has_unread() {
            debug!(unread = self.rx_queued, "close with unread data: aborting");
            self.abort_with(
                now,
                Input::AppAbort,
                Reason::UNREAD_DATA,
                None,
                CloseReason::Aborted {
                    by: Side::Local,
                    reason: Reason::UNREAD_DATA,
                    data: None,
                },
            );
            return;
        }
        match self.state {
            State::Open | State::PeerDisconnected => {
                self.queue_disconnect(now, Input::AppClose, None)
            }
            State::LocalDisconnected => {
                self.linger_deadline = Some(now + self.config.linger_timeout);
                self.transition(Input::AppClose);
            }
            State::ConnectReceived | State::Deferred => {
                self.send_reject(now, Input::AppClose, Reason::REJECTED, None);
            }
            State::Idle | State::ConnectSent | State::AwaitConnect => {
                let aborted = CloseReason::Aborted {
                    by: Side::Local,
                    reason: Reason::APPLICATION_ABORT,
                    data: None,
                };
                self.abort_with(
                    now,
                    Input::AppClose,
                    Reason::APPLICATION_ABORT,
                    None,
                    aborted,
                );
            }
            State::Closing | State::Rejecting | State::Refused | State::Closed => {}
        }
    }

    /// Abortive close (closesocket with linger {1, 0}): ABORT with `reason`
    /// and `data`, then RST. The peer sees `Aborted` with exactly these, or
    /// `Reset` if only the RST reaches it.
    ///
    /// This function returns `Err(Error::TooLarge)` for data over the
    /// `max_disconnect_data` in force, and `Err(Error::InvalidState)` once closed.
    pub fn abort(
        &mut self,
        now: Instant,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        let span = self.span.clone();
        let _guard = span.enter();
        self.check(Input::AppAbort)?;
        check_len(data, self.params.max_disconnect_data)?;
        self.app_closed = true;
        let closed = CloseReason::Aborted {
            by: Side::Local,
            reason,
            data: data.map(Bytes::copy_from_slice),
        };
        self.abort_with(now, Input::AppAbort, reason, data, closed);
        Ok(())
    }

    // ----- internals ---------------------------------------------------------

    fn check(&self, input: Input) -> Result<(), Error> {
        match state::next(self.state, input) {
            Some(_) => Ok(()),
            None => Err(Error::InvalidState { state: self.state }),
        }
    }

    fn check_send(&self, mode: Mode) -> Result<(), Error> {
        if self.params.mode != mode {
            return Err(Error::WrongMode);
        }
        if self.app_closed {
            return Err(Error::Shutdown);
        }
        if state::next(self.state, Input::AppSend).is_none() {
            return Err(self.not_sendable());
        }
        Ok(())
    }

    fn not_sendable(&self) -> Error {
        if self.local_disconnected || self.app_closed {
            return Error::Shutdown;
        }
        match self.nothing_to_read() {
            Error::WouldBlock => Error::InvalidState { state: self.state },
            e => e,
        }
    }

    fn can_send_data(&self) -> bool {
        state::next(self.state, Input::AppSend).is_some() && !self.app_closed
    }

    /// Whether a frame may still be queued: not before CONNECT is due, and not
    /// after our FIN or RST.
    fn can_send_frames(&self) -> bool {
        self.state != State::Idle && self.fin == Pending::No && self.rst == Pending::No
    }

    fn has_unread(&self) -> bool {
        self.rx_queued > 0
    }

    fn discard_rx(&mut self) {
        self.rx_stream.clear();
        self.rx_messages.clear();
        self.rx_message.clear();
        self.rx_queued = 0;
        if matches!(self.peer_disconnect, PeerDisconnect::Ready(_)) {
            self.peer_disconnect = PeerDisconnect::NotYet;
        }
    }

    fn transport_dead(&mut self) {
        self.tx.clear();
        self.fin = Pending::Done;
        self.rst = Pending::Done;
    }

    fn queue(&mut self, repr: &FrameRepr<'_>) {
        if !self.can_send_frames() {
            trace!(frame = %repr.frame_type(), "not sent: transport closing");
            return;
        }
        let at = self.tx.len();
        self.tx.resize(at + repr.buffer_len(), 0);
        // The buffer was sized with `buffer_len`, and every length was checked
        // against the limits before we got here: emit cannot fail.
        let written = repr.emit(&mut self.tx[at..]);
        debug_assert_eq!(written.ok(), Some(repr.buffer_len()));
        trace!(frame = %repr.frame_type(), len = repr.buffer_len(), "queued");
    }

    fn queue_data(&mut self, payload: &[u8], end_of_message: bool) {
        let mut header = [0u8; HEADER_LEN];
        let fl = if end_of_message {
            flags::END_OF_MESSAGE
        } else {
            0
        };
        // Payload chunks are at most max_frame_size (≤ 16 MiB): they fit u32.
        let _ = emit_header(&mut header, FrameType::Data, fl, payload.len() as u32);
        self.tx.reserve(HEADER_LEN + payload.len());
        self.tx.extend_from_slice(&header);
        self.tx.extend_from_slice(payload);
    }

    fn queue_disconnect(&mut self, now: Instant, input: Input, data: Option<&[u8]>) {
        self.queue(&FrameRepr::Disconnect { data });
        self.local_disconnected = true;
        if self.app_closed {
            self.linger_deadline = Some(now + self.config.linger_timeout);
        }
        self.transition(input);
        self.enter_closing_if_done(now);
    }

    /// Entering `Closing`: both DISCONNECTs are exchanged, so our FIN goes
    /// (§5.4) and the linger timer bounds the wait for the peer's.
    fn enter_closing_if_done(&mut self, now: Instant) {
        if self.state == State::Closing && self.fin == Pending::No {
            self.fin = Pending::Queued;
            self.linger_deadline = Some(now + self.config.linger_timeout);
        }
    }

    fn send_reject(&mut self, now: Instant, input: Input, reason: Reason, data: Option<&[u8]>) {
        self.queue(&FrameRepr::Reject(ReasonRepr { reason, data }));
        self.refusal = Some(reason);
        self.fin = Pending::Queued;
        self.decision_deadline = None;
        self.handshake_deadline = None;
        self.linger_deadline = Some(now + self.config.linger_timeout);
        self.transition(input);
    }

    /// Local abort: ABORT (if the transport still takes frames), RST, and the end.
    fn abort_with(
        &mut self,
        now: Instant,
        input: Input,
        reason: Reason,
        data: Option<&[u8]>,
        closed: CloseReason,
    ) {
        if self.state == State::Closed {
            return;
        }
        let can_frame = self.can_send_frames();
        if can_frame && !matches!(self.state, State::Idle) {
            self.queue(&FrameRepr::Abort(ReasonRepr { reason, data }));
            self.abort_flush_deadline = Some(now + self.config.abort_flush_timeout);
        }
        if self.state != State::Idle {
            self.rst = Pending::Queued;
        }
        // A linger timeout after the peer's DISCONNECT only means its FIN is
        // missing: everything it sent is here and stays readable. Otherwise the
        // application is gone or the connection is broken: discard, as Windows does.
        if !(input == Input::LingerTimer && self.peer_disconnected()) {
            self.discard_rx();
        }
        self.finish(input, closed);
    }

    /// Moves to `CLOSED` through `input` and reports `reason`, once.
    fn finish(&mut self, input: Input, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        if state::next(self.state, input) != Some(State::Closed) {
            // Inputs that end a session from a state where the table routes them
            // elsewhere are reported as what they are, via the always-legal abort.
            debug!(state = %self.state, ?input, "ending via AppAbort row");
            self.transition(Input::AppAbort);
        } else {
            self.transition(input);
        }
        self.connect_deadline = None;
        self.handshake_deadline = None;
        self.decision_deadline = None;
        self.linger_deadline = None;
        self.writable_wanted = false;
        debug!(reason = %reason, "closed");
        self.close_reason = Some(reason.clone());
        self.events.push_back(Event::Closed(reason));
    }

    fn transition(&mut self, input: Input) -> State {
        match state::next(self.state, input) {
            Some(to) => {
                if to != self.state {
                    debug!(from = %self.state, to = %to, ?input, "state");
                }
                self.state = to;
            }
            None => debug_assert!(false, "illegal {input:?} in {}", self.state),
        }
        self.state
    }

    fn violate(&mut self, now: Instant, v: Violation) {
        debug!(violation = %v, state = %self.state, "protocol violation");
        let reason = v.reason();
        self.abort_with(
            now,
            Input::Violation,
            reason,
            None,
            CloseReason::ProtocolError { detail: v },
        );
    }

    fn on_decode_error(&mut self, now: Instant, e: WireError, first_byte: Option<u8>) {
        // A CONNECT that is too big or asks for an unknown critical option is
        // answered with REJECT, so the caller learns why (§6.3).
        if self.state == State::AwaitConnect
            && first_byte.map(FrameType::from) == Some(FrameType::Connect)
        {
            let reason = match e {
                WireError::FrameTooLarge { .. } => Some(Reason::DATA_TOO_LARGE),
                WireError::UnknownCriticalOption { .. } => Some(Reason::OPTION_UNSUPPORTED),
                _ => None,
            };
            if let Some(reason) = reason {
                debug!(%reason, "unservable CONNECT");
                self.send_reject(now, Input::RecvUnacceptableConnect, reason, None);
                return;
            }
        }
        self.violate(now, Violation::Malformed(e));
    }

    fn on_frame(&mut self, now: Instant, repr: FrameRepr<'_>) {
        let input = match repr {
            FrameRepr::Connect(_) => Input::RecvConnect,
            FrameRepr::Accept(_) => Input::RecvAccept,
            FrameRepr::Reject(_) => Input::RecvReject,
            FrameRepr::Data { .. } => Input::RecvData,
            FrameRepr::Disconnect { .. } => Input::RecvDisconnect,
            FrameRepr::Abort(_) => Input::RecvAbort,
            FrameRepr::Ping => Input::RecvPing,
            FrameRepr::Unknown { frame_type, len } => {
                trace!(frame_type, len, "skipped unknown frame");
                return;
            }
        };
        if state::next(self.state, input).is_none() {
            return self.violate(
                now,
                Violation::UnexpectedFrame {
                    frame: repr.frame_type(),
                    state: self.state,
                },
            );
        }
        trace!(frame = %repr.frame_type(), "received");
        match repr {
            FrameRepr::Connect(c) => self.on_connect(now, c),
            FrameRepr::Accept(a) => self.on_accept(now, a),
            FrameRepr::Reject(r) => {
                let data = r.data.map(Bytes::copy_from_slice);
                self.connect_deadline = None;
                self.refusal = Some(r.reason);
                self.fin = Pending::Queued;
                self.linger_deadline = Some(now + self.config.linger_timeout);
                self.transition(Input::RecvReject);
                self.events.push_back(Event::Refused {
                    reason: r.reason,
                    data,
                });
            }
            FrameRepr::Data {
                end_of_message,
                payload,
            } => self.on_data(now, end_of_message, payload),
            FrameRepr::Disconnect { data } => self.on_disconnect(now, data),
            FrameRepr::Abort(r) => {
                // Pending data in both directions is discarded (§3.6); answer with RST.
                self.tx.clear();
                self.rst = Pending::Queued;
                self.discard_rx();
                let data = r.data.map(Bytes::copy_from_slice);
                self.finish(
                    Input::RecvAbort,
                    CloseReason::Aborted {
                        by: Side::Peer,
                        reason: r.reason,
                        data,
                    },
                );
            }
            FrameRepr::Ping | FrameRepr::Unknown { .. } => {}
        }
    }

    fn on_connect(&mut self, now: Instant, c: ConnectRepr<'_>) {
        let unservable = if !(c.min_version..=c.max_version).contains(&VERSION) {
            Some(Reason::VERSION_UNSUPPORTED)
        } else if c
            .data
            .is_some_and(|d| d.len() > self.config.options.max_connect_data as usize)
        {
            Some(Reason::DATA_TOO_LARGE)
        } else {
            None
        };
        if let Some(reason) = unservable {
            debug!(%reason, "unservable CONNECT");
            return self.send_reject(now, Input::RecvUnacceptableConnect, reason, None);
        }
        let proposed = Options::from_proposal(&c.options);
        let grant = self.config.options.grant_for(&proposed);
        self.proposed = proposed;
        // Until accept, answer frames are bounded by what the caller can take.
        self.handshake_deadline = None;
        self.decision_deadline = Some(now + self.config.decision_timeout);
        self.transition(Input::RecvConnect);
        self.events.push_back(Event::ConnectRequest(ConnectRequest {
            caller_data: c.data.map(Bytes::copy_from_slice),
            proposed,
            grant,
        }));
    }

    fn on_accept(&mut self, now: Instant, a: AcceptRepr<'_>) {
        let granted = Options::from_grant(&a.options, &self.proposed);
        let data_ok = a
            .data
            .is_none_or(|d| d.len() <= self.proposed.max_connect_data as usize);
        if a.version != VERSION || !granted.is_valid_grant_for(&self.proposed) || !data_ok {
            return self.violate(now, Violation::InvalidAccept);
        }
        self.params = granted;
        self.limits = granted.limits();
        self.negotiated = true;
        self.connect_deadline = None;
        self.last_rx = now;
        self.transition(Input::RecvAccept);
        self.events.push_back(Event::Connected {
            callee_data: a.data.map(Bytes::copy_from_slice),
            granted,
        });
        self.events.push_back(Event::Writable);
    }

    fn on_data(&mut self, now: Instant, end_of_message: bool, payload: &[u8]) {
        let message_mode = self.params.mode == Mode::Message;
        if self.app_closed && (message_mode || !payload.is_empty()) {
            // Data for an application that has closed: tell the sender, as TCP's
            // RST would, instead of letting it believe the data was read.
            debug!("data after close: aborting");
            return self.abort_with(
                now,
                Input::AppAbort,
                Reason::UNREAD_DATA,
                None,
                CloseReason::Aborted {
                    by: Side::Local,
                    reason: Reason::UNREAD_DATA,
                    data: None,
                },
            );
        }
        if message_mode {
            let max = self.params.max_message_size;
            if self.rx_message.len() + payload.len() > max as usize {
                return self.violate(now, Violation::MessageTooLarge { max });
            }
            self.rx_message.extend_from_slice(payload);
            self.rx_queued += payload.len();
            if end_of_message {
                let msg = self.rx_message.split().freeze();
                self.rx_messages.push_back(msg);
                self.post_readable();
            }
        } else if !payload.is_empty() {
            self.rx_stream.extend_from_slice(payload);
            self.rx_queued += payload.len();
            self.post_readable();
        }
    }

    fn post_readable(&mut self) {
        // `Closed` is the last event: after it, data stays readable but is not announced.
        if !self.readable_posted && self.state != State::Closed {
            self.readable_posted = true;
            self.events.push_back(Event::Readable);
        }
    }

    fn on_disconnect(&mut self, now: Instant, data: Option<&[u8]>) {
        if !self.rx_message.is_empty() {
            return self.violate(now, Violation::UnterminatedMessage);
        }
        self.peer_disconnect = PeerDisconnect::Ready(data.map(Bytes::copy_from_slice));
        self.transition(Input::RecvDisconnect);
        self.events.push_back(Event::PeerDisconnected);
        self.enter_closing_if_done(now);
    }

    fn on_fin(&mut self, now: Instant) {
        let mid_frame = !self.rx_partial.is_empty() || self.rx_data_left > 0;
        let reason = match self.state {
            _ if mid_frame => None,
            State::Closing => Some(CloseReason::Graceful),
            State::Rejecting => Some(CloseReason::Rejected {
                reason: self.refusal.unwrap_or(Reason::REJECTED),
            }),
            State::Refused => Some(CloseReason::Refused {
                reason: self.refusal.unwrap_or(Reason::UNSPECIFIED),
            }),
            State::AwaitConnect => {
                // The caller gave up before asking; close our half cleanly too.
                self.fin = Pending::Queued;
                Some(CloseReason::Abandoned)
            }
            _ => None,
        };
        match reason {
            Some(reason) => self.finish(Input::RecvFin, reason),
            None => {
                self.violate(
                    now,
                    Violation::UnexpectedEof {
                        state: self.state,
                        mid_frame,
                    },
                );
            }
        }
    }
}

fn check_len(data: Option<&[u8]>, max: u32) -> Result<(), Error> {
    match data {
        Some(d) if d.len() > max as usize => Err(Error::TooLarge { max }),
        _ => Ok(()),
    }
}
