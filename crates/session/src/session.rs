//! One bookend session: the sans-IO machine of `docs/protocol.md` §5.
//!
//! Split by concern: [`rx`] (the one decoder and the receive buffers),
//! [`tx`] (encoded bytes, FIN and RST), [`machine`] (executing the rows of
//! [`crate::state::TRANSITIONS`]) and [`commands`] (the application's calls).
//! This file holds the struct, its getters and the `handle_*` / `poll_*` entry
//! points.

use alloc::collections::VecDeque;
use bookend_wire::{FrameType, HEADER_LEN, Limits, Mode, Reason, TRAILER_LEN};
use bytes::Bytes;
use tracing::trace;

use crate::config::{Config, ConfigError, Options};
use crate::event::{CloseReason, Event, Violation};
use crate::state::{Input, State, TimerId};
use crate::time::Instant;
use crate::timer::TimerTable;

mod commands;
mod machine;
mod read;
mod rx;
mod tx;

pub use rx::MESSAGE_OVERHEAD;

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

/// The most a DATA frame adds to its payload on the wire: the header, and
/// the CRC-32C trailer when the session seals (`docs/protocol.md` §2.5).
/// Drivers size "room for one more frame" with it.
pub const MAX_FRAME_OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;

/// Smallest DATA payload [`Session::send_direct`] cuts a frame to when the
/// transport has less room than the data: below it, waiting beats tiny frames.
pub const MIN_DIRECT_CHUNK: usize = 512;

/// Present, absent, or already taken: the peer's disconnect data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerDisconnect {
    NotYet,
    Ready(Option<Bytes>),
    Consumed,
}

/// Current sizes of every buffer the session owns, next to their bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferUsage {
    /// Bytes of a partially received control frame (or frame header). DATA
    /// payloads and skipped frames are never held here.
    pub rx_partial: usize,
    /// Bound on `rx_partial`: the largest control frame the limits allow.
    pub rx_partial_max: usize,
    /// Memory held for received DATA: payload bytes plus
    /// [`MESSAGE_OVERHEAD`] per queued message, which is what flow control
    /// counts, so that empty messages cost too.
    pub rx_queued: usize,
    /// Bound on `rx_queued`: stream mode the receive buffer; message mode the
    /// receive buffer plus one message in reassembly and its overhead.
    pub rx_queued_max: usize,
    /// Complete messages queued (message mode).
    pub rx_messages: usize,
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
/// Every change of state, control frame, FIN/RST and timer comes from one
/// row of [`crate::state::TRANSITIONS`].
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
    rx: rx::Rx,
    tx: tx::Tx,
    timers: TimerTable,
    peer_disconnect: PeerDisconnect,
    local_disconnected: bool,
    app_closed: bool,
    /// The REJECT reason, sent (callee) or received (caller).
    refusal: Option<Reason>,
    events: VecDeque<Event>,
    close_reason: Option<CloseReason>,
}

impl Session {
    fn new(role: Role, config: Config, id: u64, state: State) -> Result<Self, ConfigError> {
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
            rx: rx::Rx::new(),
            tx: tx::Tx::new(),
            timers: TimerTable::default(),
            peer_disconnect: PeerDisconnect::NotYet,
            local_disconnected: false,
            app_closed: false,
            refusal: None,
            events: VecDeque::new(),
            close_reason: None,
        })
    }

    /// A caller's session, in `Idle`: call [`connect`](Self::connect) once the
    /// transport is established. `id` names the session in traces.
    ///
    /// This function returns `Err` if the configuration is invalid.
    pub fn caller(config: Config, id: u64) -> Result<Self, ConfigError> {
        Self::new(Role::Caller, config, id, State::Idle)
    }

    /// A callee's session for a transport established at `now`, in
    /// `AwaitConnect`, with the handshake timer armed.
    ///
    /// This function returns `Err` if the configuration is invalid.
    pub fn callee(config: Config, id: u64, now: Instant) -> Result<Self, ConfigError> {
        let mut s = Self::new(Role::Callee, config, id, State::AwaitConnect)?;
        s.fire(now, Input::TransportUp, machine::Args::default());
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

    /// Received DATA bytes not yet read by the application (FIONREAD).
    pub fn recv_queue(&self) -> usize {
        self.rx.queued
    }

    /// Encoded bytes waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }

    /// Current buffer sizes and their bounds.
    pub fn buffer_usage(&self) -> BufferUsage {
        let p = &self.params;
        let frame = p.max_frame_size as usize;
        let message = p.max_message_size as usize;
        let control = 2 * HEADER_LEN + 2 * TRAILER_LEN + 2 + p.max_disconnect_data as usize;
        // A frame begun under our own configured limits (before ACCEPT) may
        // finish under a smaller grant.
        let configured = self.config.options.limits();
        let body = |t: FrameType| {
            (self.limits.max_body_len(t) as usize).max(configured.max_body_len(t) as usize)
        };
        let largest_control = FrameType::KNOWN
            .iter()
            .filter(|&&t| t != FrameType::Data)
            .map(|&t| body(t))
            .max()
            .unwrap_or(0);
        // A sealed frame of any type, DATA included, is assembled whole
        // before its CRC is checked (§2.5); a peer may seal whether or not
        // integrity was negotiated.
        let largest_sealed = largest_control.max(body(FrameType::Data)) + TRAILER_LEN;
        BufferUsage {
            rx_partial: self.rx.partial_len(),
            rx_partial_max: HEADER_LEN + largest_sealed,
            rx_queued: self.rx.charge(),
            rx_queued_max: match p.mode {
                // A sealed DATA frame is delivered whole once verified, so
                // the buffer may overshoot by less than one frame.
                Mode::Stream if self.rx.sealed_seen => {
                    self.config.recv_buffer + body(FrameType::Data)
                }
                Mode::Stream => self.config.recv_buffer,
                Mode::Message => self.config.recv_buffer + message + MESSAGE_OVERHEAD,
            },
            rx_messages: self.rx.messages_len(),
            tx: self.tx.len(),
            tx_max: self.config.send_buffer
                + message
                + (message / frame + 1) * (HEADER_LEN + TRAILER_LEN)
                + HEADER_LEN
                + TRAILER_LEN
                + largest_control
                + control,
        }
    }

    /// Whether bytes, or a FIN or RST, wait for the transport: what a
    /// driver checks to know it must pump again after a command.
    pub fn has_output(&self) -> bool {
        !self.tx.is_empty() || self.tx.action_pending()
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
            && !self.tx.action_pending()
            && self.events.is_empty()
    }

    // ----- output ----------------------------------------------------------

    /// Copies bytes for the transport into `buf`, returning how many. Call
    /// until it returns 0 or the transport is full; every byte returned must be
    /// written, in order.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> usize {
        let n = self.tx.copy_out(buf);
        if n > 0 {
            self.sent(now);
        }
        n
    }

    /// Takes up to `max` bytes for the transport without copying them.
    pub fn poll_transmit_bytes(&mut self, now: Instant, max: usize) -> Option<Bytes> {
        let out = self.tx.take(max)?;
        self.sent(now);
        Some(out)
    }

    /// Bytes left for the transport: the keepalive interval restarts, and a
    /// blocked sender hears FD_WRITE once there is room.
    fn sent(&mut self, now: Instant) {
        if let Some(k) = self.params.keepalive() {
            self.timers.restart_if_armed(TimerId::Keepalive, now, k);
        }
        if self.tx.writable_wanted
            && self.tx.len() < self.config.send_buffer
            && self.can_send_data()
        {
            self.tx.writable_wanted = false;
            self.events.push_back(Event::Writable);
        }
    }

    /// The next FIN or RST for the transport, once every byte before it has
    /// been polled.
    pub fn poll_transport_action(&mut self) -> Option<TransportAction> {
        let action = self.tx.poll_action();
        if action == Some(TransportAction::Reset) {
            // Rows clear timers; the instant does not matter (nothing is armed).
            self.fire(Instant::ZERO, Input::RstTaken, machine::Args::default());
        }
        action
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- input -------------------------------------------------------------

    /// Takes bytes read from the transport, in any chunking, returning how
    /// many it consumed.
    ///
    /// It consumes less than offered only when the application has data to
    /// read first: the receive buffer is full (`Config::recv_buffer`), or,
    /// with direct receive, DATA waits in the transport for
    /// [`recv_direct`](Self::recv_direct). Keep the rest in the transport, so
    /// that its flow control pushes back, and offer it again after the
    /// application has read; while it is held back the idle timer does not
    /// run, since the peer cannot be blamed for bytes we do not take. In the
    /// closing states and after the end, everything is consumed and ignored.
    pub fn handle_bytes(&mut self, now: Instant, input: &[u8]) -> usize {
        let span = self.span.clone();
        let _guard = span.enter();
        let (consumed, _) = self.receive(now, input, None);
        consumed
    }

    /// The transport saw the peer alive without delivering bytes: it
    /// acknowledged data we sent (our PINGs, say). Its own data may be held up
    /// behind a lost segment that TCP is still repairing, out of order where
    /// the session cannot see it; the idle timer measures silence of the
    /// transport, so this restarts it (§7).
    ///
    /// While a connect is in progress, the first acknowledgement is that of
    /// CONNECT itself: the connect timer then counts from the moment the
    /// callee holds it, so TCP's retransmissions of a lost CONNECT (bounded
    /// by its own user timeout) do not count against the callee's answer.
    pub fn handle_peer_alive(&mut self, now: Instant) {
        if let Some(k) = self.params.keepalive() {
            self.timers.restart_if_armed(TimerId::Idle, now, k * 3);
        }
        if self.state == State::ConnectSent {
            self.timers
                .restart_if_armed(TimerId::Connect, now, self.config.connect_timeout);
        }
    }

    /// Tells the session whether the transport holds anything the peer has
    /// not yet acknowledged (bytes, or our FIN). While it does, the timers
    /// that wait for the peer (connect, linger, idle) are paused: they keep
    /// the time they had left and count only time in which the peer had
    /// everything we sent. TCP is still trying to deliver, with exponential
    /// back-off, and a session timer firing meanwhile would kill a session
    /// that was about to be answered (issue 11; closesocket with SO_LINGER
    /// off likewise returns while the stack keeps delivering).
    ///
    /// Contract for drivers: call it whenever the answer may have changed,
    /// before [`handle_timeout`](Self::handle_timeout) (paused timers are
    /// left out of [`poll_timeout`](Self::poll_timeout), so the driver must
    /// notice the acknowledgement itself); and bound the pause, since
    /// `true` forever pauses forever: pass `false` once the transport has
    /// made no delivery progress for its user timeout. A driver that never
    /// calls it keeps every timer running on the clock.
    pub fn handle_transport_pending(&mut self, now: Instant, unacknowledged: bool) {
        self.timers.pause_peer_timers(unacknowledged, now);
    }

    /// Whether the timers that wait for the peer are paused
    /// ([`handle_transport_pending`](Self::handle_transport_pending)).
    pub fn transport_pending(&self) -> bool {
        self.timers.is_paused()
    }

    /// Callee: the transport became established only now (a SYN-ACK held by
    /// a TCP-level condition was released): the handshake timer starts again,
    /// so the time the SYN-ACK was held does not count against the caller.
    pub fn handle_transport_established(&mut self, now: Instant) {
        self.fire(now, Input::TransportUp, machine::Args::default());
    }

    /// Tells the session how the transport ended. A FIN must come after
    /// every byte before it was consumed by [`handle_bytes`](Self::handle_bytes).
    pub fn handle_transport_closed(&mut self, now: Instant, how: TransportClosed) {
        let span = self.span.clone();
        let _guard = span.enter();
        match how {
            TransportClosed::Fin if self.state == State::Closed => {}
            TransportClosed::Fin if self.rx.mid_frame() => self.violate(
                now,
                Violation::UnexpectedEof {
                    state: self.state,
                    mid_frame: true,
                },
            ),
            TransportClosed::Fin => self.fire(now, Input::RecvFin, machine::Args::default()),
            TransportClosed::Reset => self.fire(now, Input::RecvRst, machine::Args::default()),
            TransportClosed::TimedOut => {
                self.fire(now, Input::TransportTimeout, machine::Args::default());
            }
        }
    }

    /// Runs every timer due at `now`, earliest first.
    pub fn handle_timeout(&mut self, now: Instant) {
        let span = self.span.clone();
        let _guard = span.enter();
        // Each expiry fires one row; a row re-arms only into the future, so
        // this ends. The bound is belt and braces against a zero interval.
        for _ in 0..TimerId::ALL.len() * 2 {
            let Some(t) = self.timers.take_expired(now) else {
                return;
            };
            trace!(timer = ?t, "expired");
            let input = match t {
                TimerId::Keepalive if !self.tx.is_empty() => Input::KeepaliveTimerBusy,
                _ => t.input(),
            };
            self.fire(now, input, machine::Args::default());
        }
    }

    // ----- shared helpers ------------------------------------------------------

    /// Whether DATA may be queued now (the application has not closed and
    /// the state allows sending).
    fn can_send_data(&self) -> bool {
        crate::state::next(self.state, Input::AppSend).is_some() && !self.app_closed
    }
}
