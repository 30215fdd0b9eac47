//! One bookend session: the sans-IO machine of `docs/protocol.md` §5.
//!
//! Split by concern: [`rx`] (the one decoder and the receive buffers),
//! [`tx`] (encoded bytes, FIN and RST), [`machine`] (executing the rows of
//! [`crate::state::TRANSITIONS`]) and [`commands`] (the application's calls).
//! This file holds the struct, its getters and the `handle_*` / `poll_*` entry
//! points.

use crate::fmt::trace;
use alloc::sync::Arc;
use bookend_wire::{
    FrameType, HEADER_LEN, Integrity, MIN_FRAME_SIZE, Mode, Reason, SEALED_HEADER_LEN,
    SEALED_OVERHEAD, TRAILER_LEN,
};
use bytes::Bytes;

use crate::bits::Flags;
use crate::config::{Config, ConfigError, Options};
use crate::event::{CloseReason, ConnectRequest, Event, Violation};
use crate::state::{Input, State, TimerId};
use crate::time::Instant;
use crate::timer::TimerTable;

mod buffers;
mod commands;
mod lazy;

pub use buffers::{
    BufferSizes, BuffersError, ProvideError, SMALL_SESSION_STORAGE, SessionBuffers, SessionStorage,
};
use lazy::Lazy;
mod machine;
mod queue;
mod read;
mod rx;
mod tx;

pub use rx::MESSAGE_OVERHEAD;

/// Which end of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// Sends CONNECT (WSAConnect).
    Caller,
    /// Receives CONNECT (WSAAccept).
    Callee,
}

/// What the transport should do to the TCP connection, besides writing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TransportAction {
    /// Close our sending half (TCP FIN) once every byte polled so far is sent.
    Fin,
    /// Reset the connection (TCP RST). Bytes polled before it (an ABORT
    /// frame) should be given a short, bounded chance to leave first.
    Reset,
}

/// How the transport ended, as seen from below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
/// the header check and CRC-32C trailer when the session seals
/// (`docs/protocol.md` §2.5). Drivers size "room for one more frame" with it.
pub const MAX_FRAME_OVERHEAD: usize = HEADER_LEN + SEALED_OVERHEAD;

/// Smallest DATA payload [`Session::send_direct`] cuts a frame to when the
/// transport has less room than the data: below it, waiting beats tiny frames.
pub const MIN_DIRECT_CHUNK: usize = 512;

/// Present, absent, or already taken: the peer's disconnect data (the data
/// itself is in [`Cold::peer_disconnect`] while `Ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerDisconnect {
    NotYet,
    Ready,
    Consumed,
}

/// What a session holds only around its handshake and its end: boxed, so an
/// idle established session does not pay for it (issue 10), and recycled
/// through [`Spares`] by drivers that trim.
#[derive(Debug, Default, Clone)]
struct Cold {
    /// Caller: what CONNECT proposed. Callee: what CONNECT proposed to us.
    /// `None`: our own options (not yet proposed, or no longer needed).
    proposed: Option<Options>,
    /// Callee: the default grant, for the pending `ConnectRequest` event.
    grant: Options,
    /// The user data of the pending `ConnectRequest`, `Connected` or
    /// `Refused` event (at most one of them is ever posted).
    event_data: Option<Bytes>,
    /// The peer's disconnect data, while `PeerDisconnect::Ready`.
    peer_disconnect: Option<Bytes>,
    /// Why the session ended, once it has.
    close_reason: Option<CloseReason>,
    /// The REJECT reason, sent (callee) or received (caller): kept as long
    /// as the close reason, which a REJECT always brings.
    refusal: Option<Reason>,
}

impl Cold {
    /// Whether nothing in it is still wanted, given whether the proposal is.
    fn is_idle(&self, proposal_needed: bool) -> bool {
        (self.proposed.is_none() || !proposal_needed)
            && self.event_data.is_none()
            && self.peer_disconnect.is_none()
            && self.close_reason.is_none()
            && self.refusal.is_none()
    }
}

/// The largest buffer (in bytes of its whole allocation) a trimmed session
/// hands to [`Spares`]: a larger one is freed instead, so that a pool of
/// spares stays small however large one frame or burst was. Control frames
/// and small messages fit; bulk data moves without the session's buffers.
pub const MAX_SPARE_CAPACITY: usize = 4 * 1024;

/// Boxes that sessions let go of when they went quiet ([`Session::trim`]),
/// for other sessions to reuse ([`Session::supply`]): a driver holding many
/// sessions keeps one, so that idle sessions hold no buffers while busy ones
/// rarely allocate (issue 10). Bounded: at most `max_each` boxes of each of
/// the three kinds (receive buffers, send buffer, handshake/close data), each
/// buffer at most [`MAX_SPARE_CAPACITY`]: a receive box holds three buffers
/// and a message queue of at most `MAX_SPARE_CAPACITY / 32` entries, so the
/// pool keeps at most about `max_each` x 5 x `MAX_SPARE_CAPACITY` (20 KiB
/// each with the default 4 KiB).
#[derive(Debug)]
pub struct Spares {
    rx: lazy::Stack<rx::RxBufs>,
    tx: lazy::Stack<queue::Queue>,
    cold: lazy::Stack<Cold>,
    max_each: usize,
}

impl Spares {
    /// An empty pool keeping up to `max_each` boxes of each kind.
    pub const fn new(max_each: usize) -> Self {
        Self {
            rx: lazy::Stack::new(),
            tx: lazy::Stack::new(),
            cold: lazy::Stack::new(),
            max_each,
        }
    }

    /// Boxes held, of all kinds.
    pub fn len(&self) -> usize {
        self.rx.len() + self.tx.len() + self.cold.len()
    }

    /// Whether no box is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The kinds of [`Event`], queued as 4-bit codes: the queue is one word, and
/// an event's data is taken from the session when it is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum EventKind {
    ConnectRequest = 1,
    Connected,
    Refused,
    Readable,
    Writable,
    PeerDisconnected,
    Closed,
}

impl EventKind {
    const ALL: [Self; 7] = [
        Self::ConnectRequest,
        Self::Connected,
        Self::Refused,
        Self::Readable,
        Self::Writable,
        Self::PeerDisconnected,
        Self::Closed,
    ];
}

/// The events not yet polled, in order, each kind at most once: a kind
/// already queued is not queued again. That loses nothing: `Readable` and
/// `Writable` say "try now" (Winsock posts FD_READ/FD_WRITE again only after
/// the application has acted), and the others happen once per session. So
/// the queue never holds more than the seven kinds, and needs no allocation.
///
/// One word: the codes, the oldest in the low nibble. Codes are never 0, so
/// the length is the number of nibbles in use (4 bytes, not 8 with a
/// separate length: issue 10, idle memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EventQueue(u32);

impl EventQueue {
    fn contains(&self, k: EventKind) -> bool {
        (0..self.len()).any(|i| (self.0 >> (4 * i)) & 0xF == k as u32)
    }

    fn push(&mut self, k: EventKind) {
        if self.contains(k) {
            return;
        }
        debug_assert!(self.len() < EventKind::ALL.len());
        self.0 |= (k as u32) << (4 * self.len());
    }

    /// Takes `k` out of the queue, the others keeping their order.
    fn remove(&mut self, k: EventKind) {
        let mut kept = Self::default();
        let mut rest = *self;
        while let Some(e) = rest.pop() {
            if e != k {
                kept.push(e);
            }
        }
        *self = kept;
    }

    fn pop(&mut self) -> Option<EventKind> {
        let code = (self.0 & 0xF) as u8;
        self.0 >>= 4;
        EventKind::ALL.into_iter().find(|k| *k as u8 == code)
    }

    fn len(&self) -> usize {
        (32 - self.0.leading_zeros() as usize).div_ceil(4)
    }

    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// Current sizes of every buffer the session owns, next to their bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// Bound on `tx`: the send buffer (bytes on the wire), or one frame,
    /// message or control frame queued into an empty buffer; then a
    /// DISCONNECT or ABORT.
    pub tx_max: usize,
}

/// The bounds of a session's buffers under `config` with options `p` in
/// force (what [`BufferUsage`] reports, and what [`SessionBuffers`] are
/// sized by, with `p` a proposal or grant). Each bound only grows as the
/// options grow, and frames shrinking within them cannot raise it, so that
/// buffers sized for a proposal hold whatever grant answers it.
pub(crate) struct Bounds {
    /// A frame assembled whole: any control frame, or a sealed frame of
    /// any type (§2.5), header and trailer included.
    pub(crate) partial: usize,
    /// The largest DATA body.
    pub(crate) data_body: usize,
    /// The largest message.
    pub(crate) message: usize,
    /// Encoded bytes waiting for the transport: the send buffer (bytes on
    /// the wire), or one frame, message or control frame queued into an
    /// empty buffer; then a DISCONNECT or ABORT.
    pub(crate) tx: usize,
}

impl Bounds {
    pub(crate) fn new(config: &Config, p: &Options) -> Self {
        // A frame begun under our own configured limits (before ACCEPT) may
        // finish under a smaller grant.
        let configured = config.options.limits();
        let in_force = p.limits();
        let body = |t: FrameType| {
            (in_force.max_body_len(t) as usize).max(configured.max_body_len(t) as usize)
        };
        let frame = body(FrameType::Data);
        let message = (p.max_message_size as usize).max(config.options.max_message_size as usize);
        let largest_control = FrameType::KNOWN
            .iter()
            .filter(|&&t| t != FrameType::Data)
            .map(|&t| body(t))
            .max()
            .unwrap_or(0);
        // A message queued into an empty buffer is taken whole, in frames
        // of any granted size: counted with the smallest (§6.1), so that
        // the bound does not depend on the frame size granted.
        let message_on_wire = match p.mode {
            Mode::Message => {
                message + message.div_ceil(MIN_FRAME_SIZE as usize).max(1) * MAX_FRAME_OVERHEAD
            }
            Mode::Stream => 0,
        };
        let disconnect = body(FrameType::Disconnect).max(body(FrameType::Abort));
        // A sealed frame of any type, DATA included, is assembled whole
        // before its CRC is checked (§2.5); a peer may seal whether or not
        // integrity was negotiated.
        let largest_sealed = largest_control.max(frame) + TRAILER_LEN;
        Self {
            partial: SEALED_HEADER_LEN + largest_sealed,
            data_body: frame,
            message,
            // What precedes a DISCONNECT or ABORT: DATA counted against the
            // send buffer with any control frame queued before it (an
            // ACCEPT, a PING, which is only queued into an empty buffer);
            // or one frame, one message or one control frame queued into
            // an empty buffer; or, after an abort's discard, the rest of
            // the frame being handed out. Then the DISCONNECT or ABORT.
            tx: config
                .send_buffer
                .max(frame + MAX_FRAME_OVERHEAD)
                .max(message_on_wire)
                .max(largest_control + MAX_FRAME_OVERHEAD)
                + disconnect
                + MAX_FRAME_OVERHEAD,
        }
    }
}

/// `a` with each size the larger of `a`'s and `b`'s: the options a
/// session's buffers may still hold bytes under (what a caller proposed,
/// beside what was granted).
fn widest(a: &Options, b: &Options) -> Options {
    Options {
        max_frame_size: a.max_frame_size.max(b.max_frame_size),
        max_message_size: a.max_message_size.max(b.max_message_size),
        max_connect_data: a.max_connect_data.max(b.max_connect_data),
        max_disconnect_data: a.max_disconnect_data.max(b.max_disconnect_data),
        ..*a
    }
}

/// The numeric options in force ([`Session::params`]): an [`Options`]
/// without its mode and integrity, which are flag bits.
#[derive(Debug, Clone, Copy)]
struct Params {
    max_frame_size: u32,
    max_message_size: u32,
    max_connect_data: u32,
    max_disconnect_data: u32,
    keepalive_ms: u32,
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
#[derive(Debug, Clone)]
pub struct Session {
    role: Role,
    state: State,
    /// Names the session in traces (32 bits: 4 bytes of every idle
    /// session, issue 10).
    id: u32,
    /// Shared by every session of an endpoint: 8 bytes here, not 128.
    config: Arc<Config>,
    /// The options in force: our own before negotiation, the grant after
    /// ([`Session::params`]); their mode and integrity are bits of `flags`
    /// ([`Session::MESSAGE`], [`Session::SEALED`]), so 20 bytes here where
    /// an `Options` is 24 (issue 10: idle memory).
    params: Params,
    rx: rx::Rx,
    tx: tx::Tx,
    timers: TimerTable,
    peer_disconnect: PeerDisconnect,
    /// [`Session::NEGOTIATED`], [`Session::LOCAL_DISCONNECTED`],
    /// [`Session::APP_CLOSED`], and the mode and integrity in force
    /// ([`Session::MESSAGE`], [`Session::SEALED`]): one byte (issue 10: idle
    /// memory).
    flags: Flags,
    events: EventQueue,
    /// Handshake and end-of-session data, boxed while present.
    cold: Lazy<Cold>,
}

impl Session {
    /// [`Session::flags`]: the options have been negotiated (ACCEPT sent or
    /// received).
    const NEGOTIATED: u8 = 1;
    /// [`Session::flags`]: our DISCONNECT has been queued.
    const LOCAL_DISCONNECTED: u8 = 2;
    /// [`Session::flags`]: the application closed (closesocket).
    const APP_CLOSED: u8 = 4;
    /// [`Session::flags`]: the options in force are message mode.
    const MESSAGE: u8 = 8;
    /// [`Session::flags`]: the options in force have the CRC-32C trailer.
    const SEALED: u8 = 16;

    /// The options in force: our own before negotiation, the grant after.
    fn params(&self) -> Options {
        let p = &self.params;
        Options {
            max_frame_size: p.max_frame_size,
            max_message_size: p.max_message_size,
            max_connect_data: p.max_connect_data,
            max_disconnect_data: p.max_disconnect_data,
            keepalive_ms: p.keepalive_ms,
            mode: self.mode(),
            integrity: if self.flags.get(Self::SEALED) {
                Integrity::Crc32c
            } else {
                Integrity::None
            },
        }
    }

    /// The mode in force (read on every frame: from its flag bit, not
    /// through [`Session::params`]).
    fn mode(&self) -> Mode {
        if self.flags.get(Self::MESSAGE) {
            Mode::Message
        } else {
            Mode::Stream
        }
    }

    /// The keepalive interval in force, if keepalive is on.
    fn keepalive(&self) -> Option<core::time::Duration> {
        let ms = self.params.keepalive_ms;
        (ms > 0).then(|| core::time::Duration::from_millis(u64::from(ms)))
    }

    /// Puts `o` in force.
    fn set_params(&mut self, o: Options) {
        self.params = Params {
            max_frame_size: o.max_frame_size,
            max_message_size: o.max_message_size,
            max_connect_data: o.max_connect_data,
            max_disconnect_data: o.max_disconnect_data,
            keepalive_ms: o.keepalive_ms,
        };
        self.flags.set(Self::MESSAGE, o.mode == Mode::Message);
        self.flags
            .set(Self::SEALED, o.integrity == Integrity::Crc32c);
    }

    /// The REJECT reason, sent (callee) or received (caller).
    fn refusal(&self) -> Option<Reason> {
        self.cold.get().and_then(|c| c.refusal)
    }

    fn new(role: Role, config: Arc<Config>, id: u32, state: State) -> Result<Self, ConfigError> {
        config.validate()?;
        let options = config.options;
        let mut s = Self {
            role,
            state,
            id,
            // Set from `options` just below (one place turns options into
            // numbers and flag bits).
            params: Params {
                max_frame_size: 0,
                max_message_size: 0,
                max_connect_data: 0,
                max_disconnect_data: 0,
                keepalive_ms: 0,
            },
            config,
            rx: rx::Rx::new(),
            tx: tx::Tx::new(),
            timers: TimerTable::default(),
            peer_disconnect: PeerDisconnect::NotYet,
            flags: Flags::default(),
            events: EventQueue::default(),
            cold: Lazy::empty(),
        };
        s.set_params(options);
        Ok(s)
    }

    /// A caller's session, in `Idle`: call [`connect`](Self::connect) once the
    /// transport is established. `id` names the session in traces. Pass an
    /// `Arc<Config>` to share one configuration among many sessions.
    ///
    /// This function returns `Err` if the configuration is invalid.
    pub fn caller(config: impl Into<Arc<Config>>, id: u32) -> Result<Self, ConfigError> {
        Self::new(Role::Caller, config.into(), id, State::Idle)
    }

    /// A callee's session for a transport established at `now`, in
    /// `AwaitConnect`, with the handshake timer armed.
    ///
    /// This function returns `Err` if the configuration is invalid.
    pub fn callee(
        config: impl Into<Arc<Config>>,
        id: u32,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let mut s = Self::new(Role::Callee, config.into(), id, State::AwaitConnect)?;
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
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The options in force: the grant once connected, our own before.
    pub fn options(&self) -> Options {
        self.params()
    }

    /// Whether the options have been negotiated (ACCEPT sent or received).
    pub fn is_connected(&self) -> bool {
        self.flags.get(Self::NEGOTIATED)
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.cold.get().and_then(|c| c.close_reason.as_ref())
    }

    /// Whether the peer's DISCONNECT has arrived (FD_CLOSE was posted).
    pub fn peer_disconnected(&self) -> bool {
        self.peer_disconnect != PeerDisconnect::NotYet
    }

    /// Whether our DISCONNECT has been queued.
    pub fn local_disconnected(&self) -> bool {
        self.flags.get(Self::LOCAL_DISCONNECTED)
    }

    /// Received DATA bytes not yet read by the application (FIONREAD).
    pub fn recv_queue(&self) -> usize {
        self.rx.queued as usize
    }

    /// Encoded bytes waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }

    /// Current buffer sizes and their bounds.
    pub fn buffer_usage(&self) -> BufferUsage {
        let p = self.params();
        // A CONNECT proposing more than the grant may still be queued (a
        // callee that answered before it arrived).
        let b = Bounds::new(&self.config, &widest(&p, &self.proposed()));
        BufferUsage {
            rx_partial: self.rx.partial_len(),
            rx_partial_max: b.partial,
            rx_queued: self.rx.charge(),
            rx_queued_max: match p.mode {
                // A sealed DATA frame is delivered whole once verified, so
                // the buffer may overshoot by less than one frame.
                Mode::Stream if self.rx.sealed_seen() => self.config.recv_buffer + b.data_body,
                Mode::Stream => self.config.recv_buffer,
                Mode::Message => self.config.recv_buffer + b.message + MESSAGE_OVERHEAD,
            },
            rx_messages: self.rx.messages_len(),
            tx: self.tx.len(),
            tx_max: b.tx,
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
        if let Some(k) = self.keepalive() {
            self.timers.restart_if_armed(TimerId::Keepalive, now, k);
        }
        // FD_WRITE once a send would take something: a payload byte in a
        // frame (stream), a message up to the buffer (message mode).
        let room = || match self.mode() {
            Mode::Stream => self.stream_room() > 0,
            Mode::Message => self.tx.len() < self.config.send_buffer,
        };
        if self.tx.writable_wanted() && room() && self.can_send_data() {
            self.tx.set_writable_wanted(false);
            self.events.push(EventKind::Writable);
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
        let kind = self.events.pop()?;
        let proposed = self.proposed();
        let cold = self.cold.get_mut();
        Some(match kind {
            EventKind::ConnectRequest => {
                let (caller_data, grant) =
                    cold.map_or((None, proposed), |c| (c.event_data.take(), c.grant));
                Event::ConnectRequest(ConnectRequest {
                    caller_data,
                    proposed,
                    grant,
                })
            }
            EventKind::Connected => Event::Connected {
                callee_data: cold.and_then(|c| c.event_data.take()),
                granted: self.params(),
            },
            EventKind::Refused => Event::Refused {
                reason: cold
                    .as_ref()
                    .and_then(|c| c.refusal)
                    .unwrap_or(Reason::UNSPECIFIED),
                data: cold.and_then(|c| c.event_data.take()),
            },
            EventKind::Readable => Event::Readable,
            EventKind::Writable => Event::Writable,
            EventKind::PeerDisconnected => Event::PeerDisconnected,
            EventKind::Closed => Event::Closed(
                cold.and_then(|c| c.close_reason.clone())
                    .unwrap_or(CloseReason::Reset),
            ),
        })
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
        if let Some(k) = self.keepalive() {
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
        // Each expiry fires one row; a row re-arms only into the future, so
        // this ends. The bound is belt and braces against a zero interval.
        for _ in 0..TimerId::ALL.len() * 2 {
            let Some(t) = self.timers.take_expired(now) else {
                return;
            };
            trace!("session {}: {:?} timer expired", self.id, t);
            let input = match t {
                TimerId::Keepalive if !self.tx.is_empty() => Input::KeepaliveTimerBusy,
                _ => t.input(),
            };
            self.fire(now, input, machine::Args::default());
        }
    }

    // ----- memory -----------------------------------------------------------------

    /// Moves every part of the session that holds nothing (empty receive
    /// buffers, an empty send buffer, handshake data no longer wanted) into
    /// `spares`, or frees it if the pool is full. Call it when a session goes
    /// quiet; the session allocates again on demand, or takes from
    /// [`supply`](Self::supply). Behaviour is unchanged either way.
    pub fn trim(&mut self, spares: &mut Spares) {
        // Provided buffers stay with their session (`take_buffers`).
        if let Some(mut b) = self.rx.bufs.take_if(|b| b.is_idle() && !b.is_provided()) {
            b.shrink(MAX_SPARE_CAPACITY);
            spares.rx.push(b, spares.max_each);
        }
        if let Some(b) = self.tx.buf.take_if(|b| b.is_empty() && !b.is_fixed()) {
            self.pool_tx(b, spares);
        }
        // A queued `ConnectRequest` is built from the proposal and grant
        // when it is polled.
        let needed = self.proposal_needed() || self.events.contains(EventKind::ConnectRequest);
        if let Some(mut b) = self.cold.take_if(|c| c.is_idle(needed)) {
            *b = Cold::default();
            spares.cold.push(b, spares.max_each);
        }
    }

    /// A session that is finished with ([`is_drained`](Self::is_drained)):
    /// moves all its boxed parts into `spares`, emptied, whatever they held
    /// (its close reason included). Call it just before dropping the session,
    /// after [`take_buffers`](Self::take_buffers) if it has provided ones:
    /// the boxes holding those stay with it until then.
    pub fn recycle(&mut self, spares: &mut Spares) {
        // Provided buffers stay with their session (`take_buffers`).
        if let Some(mut b) = self.rx.bufs.take_if(|b| !b.is_provided()) {
            b.shrink(MAX_SPARE_CAPACITY);
            spares.rx.push(b, spares.max_each);
        }
        if let Some(mut b) = self.tx.buf.take_if(|b| !b.is_fixed()) {
            b.clear();
            self.tx.head_left = 0;
            self.pool_tx(b, spares);
        }
        if let Some(mut b) = self.cold.take_if(|_| true) {
            *b = Cold::default();
            spares.cold.push(b, spares.max_each);
        }
    }

    /// Pools an empty send buffer, unless it shares its storage with `Bytes`
    /// handed out, or its allocation is over `MAX_SPARE_CAPACITY`.
    fn pool_tx(&mut self, mut b: alloc::boxed::Box<queue::Queue>, spares: &mut Spares) {
        let touched = self.tx.take_touched();
        let shared = self.tx.take_shared();
        if let Some(heap) = b.heap_mut()
            && (shared || (touched && !rx::fits_the_pool(heap, MAX_SPARE_CAPACITY)))
        {
            *heap = bytes::BytesMut::new();
        }
        spares.tx.push(b, spares.max_each);
    }

    /// Gives the session spare boxes for the parts it lacks, so that what it
    /// does next needs no allocation. Parts it then leaves unused go back
    /// with the next [`trim`](Self::trim).
    pub fn supply(&mut self, spares: &mut Spares) {
        if !self.rx.bufs.is_present()
            && let Some(b) = spares.rx.pop()
        {
            let _ = self.rx.bufs.fill(b);
        }
        if !self.tx.buf.is_present()
            && let Some(b) = spares.tx.pop()
        {
            let _ = self.tx.buf.fill(b);
        }
        if !self.cold.is_present()
            && let Some(b) = spares.cold.pop()
        {
            let _ = self.cold.fill(b);
        }
    }

    /// Bytes of heap the session holds beyond its own struct, as far as it
    /// can see: its boxed parts and their buffers' visible capacity (a
    /// buffer's prefix already consumed is not counted, nor are `Bytes`
    /// handed to the application). For tests and memory accounting.
    pub fn heap_bytes(&self) -> usize {
        use core::mem::size_of;
        let rx = self.rx.bufs.get().map_or(0, |b| {
            size_of::<rx::RxBufs>()
                + b.partial.heap_capacity()
                + b.stream.heap_capacity()
                + b.message.capacity()
                + b.messages.capacity() * size_of::<Bytes>()
        });
        let tx = self
            .tx
            .buf
            .get()
            .map_or(0, |b| size_of::<queue::Queue>() + b.heap_capacity());
        let cold = self.cold.get().map_or(0, |_| size_of::<Cold>());
        rx + tx + cold
    }

    // ----- shared helpers ------------------------------------------------------

    /// What CONNECT proposed (sent or received); our own options before.
    fn proposed(&self) -> Options {
        self.cold
            .get()
            .and_then(|c| c.proposed)
            .unwrap_or(self.config.options)
    }

    /// Whether the proposal is still wanted: from CONNECT until the grant
    /// (or the end, which keeps `Cold` for its reason anyway).
    fn proposal_needed(&self) -> bool {
        !self.flags.get(Self::NEGOTIATED)
            && !matches!(self.state, State::Idle | State::AwaitConnect)
    }

    /// Whether DATA may be queued now (the application has not closed and
    /// the state allows sending).
    fn can_send_data(&self) -> bool {
        crate::state::next(self.state, Input::AppSend).is_some()
            && !self.flags.get(Self::APP_CLOSED)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_queue_keeps_order_and_each_kind_once() {
        let mut q = EventQueue::default();
        for k in [
            EventKind::Connected,
            EventKind::Writable,
            EventKind::Readable,
            EventKind::Writable,
            EventKind::PeerDisconnected,
            EventKind::Readable,
            EventKind::Closed,
        ] {
            q.push(k);
        }
        assert_eq!(q.len(), 5);
        let got: alloc::vec::Vec<_> = core::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            got,
            [
                EventKind::Connected,
                EventKind::Writable,
                EventKind::Readable,
                EventKind::PeerDisconnected,
                EventKind::Closed
            ]
        );
        assert!(q.is_empty());
        // Every kind at once fits.
        for k in EventKind::ALL {
            q.push(k);
        }
        assert_eq!(q.len(), EventKind::ALL.len());
        assert_eq!(q.pop(), Some(EventKind::ConnectRequest));
    }

    /// Established pair, for the tests below.
    fn connected_pair() -> (Session, Session) {
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
        (c, s)
    }

    /// Received bytes a provided buffer cannot hold (here a buffer shrunk
    /// behind the session's back, as a sizing defect would leave it) end
    /// the session with `BuffersExhausted`, visibly: never dropped.
    #[test]
    fn bytes_over_the_provided_buffers_end_the_session_visibly() {
        let t = Instant::ZERO;
        let (mut c, mut s) = connected_pair();
        let len = BufferSizes::for_config(s.config()).total();
        let storage = alloc::boxed::Box::leak(alloc::vec![0u8; len].into_boxed_slice());
        let b = SessionBuffers::new(storage, s.config()).unwrap();
        s.provide_buffers(b).unwrap();
        let tiny = alloc::boxed::Box::leak(alloc::vec![0u8; 100].into_boxed_slice());
        s.rx.bufs.make().stream = queue::Queue::fixed(tiny);
        assert_eq!(c.send(&[7u8; 1000]), Ok(1000));
        let mut buf = alloc::vec![0u8; 4096];
        let n = c.poll_transmit(t, &mut buf);
        s.handle_bytes(t, &buf[..n]);
        let closed = core::iter::from_fn(|| s.poll_event()).find_map(|e| match e {
            Event::Closed(r) => Some(r),
            _ => None,
        });
        assert_eq!(
            closed,
            Some(CloseReason::ProtocolError {
                detail: Violation::BuffersExhausted
            })
        );
        // The ABORT discards what was unread (E12): no count of bytes that
        // were never stored stays behind.
        assert_eq!(s.recv_queue(), 0);
    }

    /// Review of issue 10: a drained buffer reports only the capacity left
    /// after its consumed prefix, so a check of `capacity()` alone let a
    /// large allocation whose tail was small into the pool, kept alive by an
    /// idle endpoint.
    #[test]
    fn the_pool_check_sees_the_whole_allocation() {
        use bytes::Buf;
        let mut b = bytes::BytesMut::with_capacity(200_000);
        b.extend_from_slice(&alloc::vec![1u8; 199_900]);
        b.advance(199_900);
        assert!(b.capacity() <= MAX_SPARE_CAPACITY, "the tail looks small");
        assert!(!rx::fits_the_pool(&mut b, MAX_SPARE_CAPACITY));
        let mut small = bytes::BytesMut::with_capacity(1000);
        small.extend_from_slice(&[1u8; 900]);
        small.advance(900);
        assert!(rx::fits_the_pool(&mut small, MAX_SPARE_CAPACITY));
    }

    /// The same through a session (fails on a5f3808): a drained send buffer
    /// whose visible tail is small but whose allocation is 200 KB stays out
    /// of the pool. Installed directly, with the mark every write sets.
    #[test]
    fn a_drained_buffer_with_a_small_tail_is_not_pooled() {
        use bytes::Buf;
        let (mut c, _s) = connected_pair();
        let mut b = bytes::BytesMut::with_capacity(200_000);
        b.extend_from_slice(&alloc::vec![1u8; 199_900]);
        b.advance(199_900);
        *c.tx.buf.make() = queue::Queue::Heap(b);
        c.tx.set_touched();
        let mut spares = Spares::new(4);
        c.trim(&mut spares);
        let mut b = spares.tx.pop().expect("the send buffer was pooled");
        let b = b.heap_mut().expect("a heap buffer");
        assert!(
            !b.try_reclaim(MAX_SPARE_CAPACITY + 1),
            "a 200 KB allocation was pooled"
        );
    }

    /// A session's drained send buffer of 200 KiB does not reach the pool.
    #[test]
    fn a_large_drained_buffer_is_not_pooled() {
        let t = Instant::ZERO;
        let (mut c, _s) = connected_pair();
        let data = alloc::vec![7u8; 200_000];
        assert_eq!(c.send(&data), Ok(200_000));
        let mut out = [0u8; 1460];
        while c.poll_transmit(t, &mut out) > 0 {}
        let mut spares = Spares::new(4);
        c.trim(&mut spares);
        let mut b = spares.tx.pop().expect("the send buffer was pooled");
        assert!(b.is_empty());
        let b = b.heap_mut().expect("a heap buffer");
        assert!(
            !b.try_reclaim(MAX_SPARE_CAPACITY + 1),
            "a pooled buffer holds more than MAX_SPARE_CAPACITY"
        );
    }

    /// Review of issue 10: an application may accept before it polls the
    /// request; the queued event must still carry the real proposal and
    /// grant after the session was trimmed.
    #[test]
    fn a_queued_request_keeps_its_proposal_through_a_trim() {
        let t = Instant::ZERO;
        let config = Arc::new(Config::default());
        let mut c = Session::caller(config.clone(), 1).unwrap();
        let mut s = Session::callee(config, 2, t).unwrap();
        let mut buf = [0u8; 512];
        let proposal = Options {
            max_frame_size: 4096,
            ..Options::DEFAULT
        };
        c.connect(t, None, proposal).unwrap();
        let n = c.poll_transmit(t, &mut buf);
        s.handle_bytes(t, &buf[..n]);
        s.accept(t, None, proposal).unwrap();
        let mut spares = Spares::new(4);
        s.trim(&mut spares);
        let Some(Event::ConnectRequest(r)) = s.poll_event() else {
            panic!("no request")
        };
        assert_eq!(r.proposed.max_frame_size, 4096);
        assert_eq!(r.grant.max_frame_size, 4096);
    }

    /// Issue 10: an idle established session, trimmed, holds no heap, and
    /// its struct stays small (the budget is 256 B per session and endpoint,
    /// the connection's own state included).
    #[test]
    fn a_trimmed_idle_session_holds_no_heap() {
        let t = Instant::ZERO;
        let config = Arc::new(Config::default());
        let mut spares = Spares::new(8);
        let mut c = Session::caller(config.clone(), 1).unwrap();
        let mut s = Session::callee(config, 2, t).unwrap();
        let mut buf = [0u8; 512];
        c.connect(t, Some(b"client"), Options::DEFAULT).unwrap();
        let n = c.poll_transmit(t, &mut buf);
        assert_eq!(s.handle_bytes(t, &buf[..n]), n);
        let Some(Event::ConnectRequest(r)) = s.poll_event() else {
            panic!("no request")
        };
        s.accept(t, Some(b"welcome"), r.grant).unwrap();
        let n = s.poll_transmit(t, &mut buf);
        assert_eq!(c.handle_bytes(t, &buf[..n]), n);
        while c.poll_event().is_some() {}
        assert!(c.heap_bytes() > 0 && s.heap_bytes() > 0);
        c.trim(&mut spares);
        s.trim(&mut spares);
        assert_eq!((c.heap_bytes(), s.heap_bytes()), (0, 0));
        // Each held a send buffer and its handshake data; frames came whole,
        // so neither assembled one.
        assert_eq!(spares.len(), 4);
        assert!(core::mem::size_of::<Session>() <= 112);
        // Supplied again, they carry on as before.
        c.supply(&mut spares);
        assert_eq!(c.send(b"hello"), Ok(5));
        let n = c.poll_transmit(t, &mut buf);
        assert_eq!(s.handle_bytes(t, &buf[..n]), n);
        let mut got = [0u8; 8];
        assert_eq!(s.recv(&mut got), Ok(5));
    }
}
