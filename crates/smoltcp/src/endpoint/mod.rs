//! The endpoint: sessions bound to smoltcp TCP sockets it adds to the
//! application's `SocketSet`.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use bookend_session::{Event, Instant, Options, Reason, Session};
use bytes::Bytes;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::IpEndpoint;

use crate::config::{Config, ListenConfig};
use crate::ports::Ports;
use crate::transport::Link;

mod app;
mod conn;
mod deadlines;
mod listener;
mod phase;
mod ready;
mod sockets;
mod visit;

use conn::Conn;

use phase::{Phase, PhaseEvent};

/// The endpoint's phase table (who owns a connection, and what moves it),
/// as Markdown and a Mermaid diagram: `docs/endpoint-phases.md`.
pub fn phase_table() -> alloc::string::String {
    phase::document()
}

/// Converts smoltcp's clock to the session's (negative times clamp to 0).
/// The crate's API speaks smoltcp's `Instant` only; the session's is
/// internal.
pub(crate) fn session_instant(t: SmolInstant) -> Instant {
    Instant::from_micros(u64::try_from(t.total_micros()).unwrap_or(0))
}

/// Converts the session's clock to smoltcp's.
pub(crate) fn smol_instant(t: Instant) -> SmolInstant {
    SmolInstant::from_micros(i64::try_from(t.total_micros()).unwrap_or(i64::MAX))
}

/// How often [`Endpoint::next_poll`] wakes the application while a SYN-ACK
/// is held by SO_CONDITIONAL_ACCEPT's [`TcpDecision::Defer`]: the held
/// decision is asked again at each of those polls, and the interface's
/// other work is served at most this late meanwhile (a retransmission or a
/// delayed ACK a few milliseconds late is harmless; a loop polling without
/// pause for the whole deferral is not). The cost: `iface.poll_at` is one
/// minimum over all sockets, so a device whose transmit queue filled (its
/// egress stopped with segments ready) is drained once per recheck while a
/// decision is deferred; keep deferrals short on a device moving bulk data.
pub const SYN_DEFER_RECHECK: core::time::Duration = core::time::Duration::from_millis(10);

fn smol_duration(d: core::time::Duration) -> SmolDuration {
    SmolDuration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// How many entries a full per-slot table of `len` grows by: an eighth, not
/// the doubling of `Vec`'s own growth, which at 10 000 slots left the tables
/// up to half empty (10-20 bytes per session; issue 10, idle memory). Still
/// geometric, so growth stays amortized O(1).
fn growth(len: usize) -> usize {
    (len / 8).max(16)
}

/// Names one connection of an [`Endpoint`]. Stale handles (of a freed
/// connection) are refused, never confused with a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    index: u32,
    generation: u32,
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// `#index.generation`, as `Display` writes it.
#[cfg(feature = "defmt")]
impl defmt::Format for Handle {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "#{=u32}.{=u32}", self.index, self.generation);
    }
}

/// Names one listening port of an [`Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenerId(usize);

/// A connect request as WSAAccept's condition function sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The connection; use it with [`Endpoint::accept`] or [`Endpoint::reject`]
    /// after deferring.
    pub handle: Handle,
    /// The caller's address and port (`lpCallerId`).
    pub caller: IpEndpoint,
    /// Our address and port (`lpCalleeId`).
    pub callee: IpEndpoint,
    /// The caller data (`lpCallerData`), `None` if CONNECT carried none.
    pub caller_data: Option<Bytes>,
    /// The proposed options (the SQOS analog).
    pub proposed: Options,
    /// What this endpoint grants by default.
    pub grant: Options,
}

/// The condition function's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// CF_ACCEPT, with callee data and the granted options.
    Accept {
        /// Callee data, `None` for none.
        callee_data: Option<Bytes>,
        /// Granted options; `IncomingRequest::grant` is the usual choice.
        granted: Options,
    },
    /// CF_REJECT: the caller gets `Refused` with this reason and data.
    Reject {
        /// The reason code.
        reason: Reason,
        /// Reject data, `None` for none.
        data: Option<Bytes>,
    },
    /// CF_DEFER: the request stays pending, and is reported as an
    /// [`Event::ConnectRequest`] for a later [`Endpoint::accept`] or
    /// [`Endpoint::reject`]. Unlike Winsock, it does not block the requests
    /// behind it; the decision timer rejects it with `DECISION_TIMEOUT`.
    Defer,
}

/// What [`Endpoint::poll_event`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// FD_ACCEPT with a decision to make: a CONNECT arrived on a listener with
    /// no condition function, or the condition function deferred it. Answer
    /// with [`Endpoint::accept`] or [`Endpoint::reject`] before the decision
    /// timer rejects it.
    Incoming(IncomingRequest),
    /// The condition function accepted a request: this is the new connection
    /// (what WSAAccept returns). Its `Session` events follow.
    Accepted(IncomingRequest),
    /// An event of a connection the application owns.
    Session(Event),
}

/// The request with its caller data's bytes.
#[cfg(feature = "defmt")]
impl defmt::Format for IncomingRequest {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "IncomingRequest {{ handle: {}, caller: {}, callee: {}, caller_data: {}, proposed: {}, grant: {} }}",
            self.handle,
            self.caller,
            self.callee,
            self.caller_data.as_deref(),
            self.proposed,
            self.grant
        );
    }
}

/// The decision with its data's bytes.
#[cfg(feature = "defmt")]
impl defmt::Format for Decision {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Accept {
                callee_data,
                granted,
            } => defmt::write!(
                f,
                "Accept {{ callee_data: {}, granted: {} }}",
                callee_data.as_deref(),
                granted
            ),
            Self::Reject { reason, data } => {
                defmt::write!(
                    f,
                    "Reject {{ reason: {}, data: {} }}",
                    reason,
                    data.as_deref()
                )
            }
            Self::Defer => defmt::write!(f, "Defer"),
        }
    }
}

/// Each event with its data's bytes.
#[cfg(feature = "defmt")]
impl defmt::Format for EndpointEvent {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Incoming(r) => defmt::write!(f, "Incoming({})", r),
            Self::Accepted(r) => defmt::write!(f, "Accepted({})", r),
            Self::Session(e) => defmt::write!(f, "Session({})", e),
        }
    }
}

/// SO_CONDITIONAL_ACCEPT's answer, given before any SYN-ACK is sent.
#[cfg(feature = "conditional-accept")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TcpDecision {
    /// Send the SYN-ACK; the session-level condition (if any) runs on CONNECT.
    Accept,
    /// Answer the SYN with RST: the caller's connect fails with `Reset`
    /// (WSAECONNREFUSED), before any session data is exchanged.
    Refuse,
    /// Keep the SYN-ACK paused and ask again on the next poll (at least every
    /// [`SYN_DEFER_RECHECK`] with [`Endpoint::next_poll`]), until
    /// [`Endpoint::set_syn_defer_timeout`] refuses it, or the listener's
    /// handshaking bounds (`ListenConfig`: per source, in total) evict it
    /// with an RST.
    Defer,
}

/// Errors of endpoint calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The configuration is unusable, and why.
    InvalidConfig(crate::ConfigError),
    /// No ephemeral port is free (all live or in TIME-WAIT quarantine).
    PortsExhausted,
    /// `Config::max_connections` are in use.
    TooManyConnections,
    /// The handle names no connection (any more).
    InvalidHandle,
    /// The connection is not waiting for a decision.
    NotPending,
    /// Every socket given to the endpoint is in use
    /// ([`TcpBuffers::Provided`](crate::TcpBuffers::Provided)).
    NoSocket,
    /// Every session's buffers given to the endpoint are in use
    /// ([`SessionBuffering::Provided`](crate::SessionBuffering::Provided)).
    NoSessionBuffers,
    /// smoltcp refused to listen (port 0, or the port is in use by this endpoint).
    Listen,
    /// smoltcp refused to connect (unaddressable remote or no route/source address).
    Connect,
    /// The session refused the command.
    Session(bookend_session::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Self::PortsExhausted => write!(f, "no ephemeral port free"),
            Self::TooManyConnections => write!(f, "connection limit reached"),
            Self::InvalidHandle => write!(f, "no such connection"),
            Self::NotPending => write!(f, "connection is not waiting for a decision"),
            Self::NoSocket => write!(f, "every provided TCP socket is in use"),
            Self::NoSessionBuffers => write!(f, "every provided session's buffers are in use"),
            Self::Listen => write!(f, "cannot listen on that port"),
            Self::Connect => write!(f, "cannot connect to that address"),
            Self::Session(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<bookend_session::Error> for Error {
    fn from(e: bookend_session::Error) -> Self {
        Self::Session(e)
    }
}

type Condition = Box<dyn FnMut(&IncomingRequest) -> Decision>;
#[cfg(feature = "conditional-accept")]
type TcpCondition = Box<dyn FnMut(IpEndpoint, IpEndpoint) -> TcpDecision>;

struct Listener {
    port: u16,
    config: ListenConfig,
    armed: Vec<SocketHandle>,
    /// Undecided requests, counted at the start of each poll and kept up to
    /// date during it (REJECT(`BUSY`) beyond `max_pending`).
    undecided: usize,
    /// Handshaking connections without bytes waiting, counted by each
    /// admission pass (the load that decides how strict it is).
    handshaking: usize,
    condition: Option<Condition>,
    #[cfg(feature = "conditional-accept")]
    tcp_condition: Option<TcpCondition>,
}

/// Why [`Endpoint::poll_conn`] visits a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visit {
    /// `Endpoint::poll`: a wake-up (its own or its group's), a deadline, a
    /// poke. Nothing found means nothing changed.
    Poll,
    /// A command's flush: the command may have changed what the visit does
    /// not look at (a timer armed, spare parts taken).
    Command,
}

/// What a new connection starts from; the rest of [`Conn`] starts empty.
struct Fresh {
    socket: SocketHandle,
    session: Session,
    phase: Phase,
    listener: Option<usize>,
    local: Option<IpEndpoint>,
    remote: Option<IpEndpoint>,
}

/// Lists admission control and the duplicate check rebuild at every poll,
/// kept between polls so that a poll allocates nothing once they have grown
/// (issue 10: allocations per lifecycle). Bounded by the connections held.
#[derive(Default)]
pub(super) struct Scratch {
    /// (listener, born, source, index) of every handshaking connection.
    pub(super) handshaking: Vec<(usize, Instant, Option<smoltcp::wire::IpAddress>, usize)>,
    /// (born, index) of one listener's handshaking connections.
    pub(super) kept: Vec<(Instant, usize)>,
    /// Slots admission control evicts, and by which rule.
    pub(super) evictions: Vec<(usize, PhaseEvent)>,
    /// Duplicate half-open slots to drop.
    pub(super) evict: Vec<usize>,
    /// (index, local, remote, socket) of half-open connections.
    pub(super) half_open: Vec<(usize, IpEndpoint, IpEndpoint, SocketHandle)>,
}

/// Counters for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Connections taken from listening sockets.
    pub accepted_tcp: u64,
    /// Duplicate half-open sockets dropped (lost SYN-ACK, re-armed listener).
    pub duplicates_dropped: u64,
    /// Incoming connections refused before the application owned them:
    /// rejected (by the condition function, `Endpoint::reject`, the decision
    /// timer, or the session itself for a CONNECT it cannot accept), ended
    /// before a decision (the caller left or reset, the handshake timer), or
    /// refused at TCP level. Evictions and
    /// REJECT(`BUSY`) are counted apart (`docs/endpoint-phases.md`).
    pub refused: u64,
    /// Sockets aborted because the TCP close did not finish in time.
    pub close_timeouts: u64,
    /// Incoming connections reset in SYN-RECEIVED (a SYN scan, or a caller
    /// that gave up): their socket is dropped, never reused as a listener.
    pub reset_in_syn_received: u64,
    /// Handshaking connections reset because their source held its share.
    pub per_source_refused: u64,
    /// Handshaking connections evicted (oldest over the bound, or past the
    /// handshake time allowed under load).
    pub evicted: u64,
    /// Requests answered REJECT(`BUSY`): undecided requests at their bound.
    pub busy: u64,
    /// Connections the application closed gracefully whose close the peer
    /// never confirmed (linger or TCP time-out, reset): what was sent last,
    /// the disconnect data included, may not have arrived.
    pub unconfirmed_closes: u64,
    /// Sessions this endpoint ended because a received frame failed the
    /// CRC-32C check (`docs/protocol.md` §2.5): bytes were altered on the
    /// way that TCP's checksum missed, and none of the frame was delivered.
    pub integrity_failures: u64,
    /// Incoming connections reset because no provided session buffers
    /// were free ([`SessionBuffering::Provided`](crate::SessionBuffering::Provided)).
    pub no_session_buffers: u64,
}

/// Sessions over smoltcp TCP sockets.
///
/// The application owns the smoltcp `Interface`, its `Device` and the
/// `SocketSet`; the endpoint adds TCP sockets to that set and removes them
/// again (with [`TcpBuffers::Provided`](crate::TcpBuffers::Provided), the
/// application adds them once and the endpoint parks them there, closed,
/// between connections). The required call order, in the manner of quinn-proto:
///
/// 1. `iface.poll(now, &mut device, &mut sockets)`;
/// 2. [`Endpoint::poll`]`(now, &mut sockets)`: moves bytes between
///    sessions and sockets, accepts, re-arms listeners, runs timers, releases
///    finished sockets;
/// 3. [`Endpoint::poll_event`] until `None`, acting on each event with the
///    endpoint's commands ([`Endpoint::send`], [`Endpoint::recv`],
///    [`Endpoint::send_message`], [`Endpoint::send_disconnect`],
///    [`Endpoint::close`], ...). Every command hands what it queued, control
///    frames included, to the TCP socket before it returns;
/// 4. poll the interface again if any command was issued, so that it sends,
///    and go to 1 at once while `iface.poll` reports progress
///    (`PollResult::SocketStateChanged`): packets waiting in an in-memory
///    device are invisible to `poll_at`. After a round that changed nothing,
///    wait until [`Endpoint::next_poll`] (the earlier of
///    `iface.poll_at(now, &sockets)` and [`Endpoint::poll_at`], except while
///    a SYN-ACK is held), or until the device has a packet, then go to 1.
///    `examples/loopback_seed.rs` is this loop.
///
/// Polling the endpoint more than once per interface poll is harmless: an
/// aborted socket leaves the set only once smoltcp has sent its RST.
pub struct Endpoint {
    config: Config,
    /// `config.session`, shared by every session (8 bytes each, not 128).
    session_config: Arc<bookend_session::Config>,
    /// Buffers and handshake data of quiet sessions, for busy ones to
    /// reuse: idle sessions hold none, and a lifecycle rarely allocates.
    spares: bookend_session::Spares,
    /// One waker per group of [`ready::SLOTS_PER_WAKER`] slots, made when
    /// the group's first slot is first used and kept for every connection
    /// that takes one of its slots: registered with the sockets of a group
    /// whenever the group woke (smoltcp wakes a waker once). Kept as the
    /// `Waker` (16 bytes, where its `Arc` alone is 8): registering then
    /// clones it only if smoltcp let go of it, where building one from the
    /// `Arc` costs two locked reference-count updates per visit.
    wakers: Vec<core::task::Waker>,
    listeners: Vec<Listener>,
    /// Boxed: a slot is a pointer, so the table's spare capacity costs 8 bytes
    /// per slot instead of a whole 864-byte connection. Measured (benches
    /// `memory`): 1.1 KiB instead of 2.0-3.1 KiB per idle session and
    /// endpoint, for a poll round about 1.5x slower at 10 000 idle sessions
    /// (pointer chasing); event-driven polling is the real fix for the latter.
    conns: Vec<Option<Box<Conn>>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    /// Connections held (`connection_count`), kept as slots come and go.
    live: usize,
    /// Waker groups woken by one of their sockets since the last poll.
    ready: Arc<ready::Ready>,
    /// Slots the endpoint asked to visit at the next poll (new connections,
    /// reads that made room).
    poked: ready::Poked,
    /// Every slot's next deadline (the earliest of its deadlines, the
    /// safety-net visit included: see [`Endpoint::deadline`]), earliest
    /// first, one entry per slot.
    timers: deadlines::Deadlines,
    /// Listener-born connections the application has not taken yet
    /// (handshaking, SYN-ACK paused, undecided): what admission control and
    /// the duplicate check look at. Stale entries are pruned as they are met.
    waiting: Vec<usize>,
    /// Scratch: the slots to visit this poll.
    visit: Vec<usize>,
    scratch: Scratch,
    /// When admission control must look again even if nothing else
    /// happens: the earliest end of a grace it gave (a source's connections
    /// beyond its share, or any handshaking connection under load, get the
    /// loaded handshake time). Set by each admission pass.
    admission_at: Option<Instant>,
    /// Boxes of freed connections, for the next ones (at most
    /// `config.spare_parts`): a lifecycle then allocates no slot. The boxes
    /// themselves are what is kept (the slots hold boxes), hence `Box` in a
    /// `Vec`.
    #[allow(clippy::vec_box)]
    spare_conns: Vec<Box<Conn>>,
    ports: Ports,
    /// Where sockets come from and go to (`Config::tcp_buffers`).
    tcp: sockets::Sockets,
    /// Provided session buffers not in use (`Config::session_buffers`).
    session_buffers: Vec<bookend_session::SessionBuffers>,
    /// Session buffers given with `add_session_buffers`, free or in use.
    provided_session_buffers: usize,
    events: VecDeque<(Handle, EndpointEvent)>,
    /// The id of the next session (trace names only: wraps after 2^32).
    next_session_id: u32,
    polls: u64,
    syn_defer_timeout: core::time::Duration,
    stats: Stats,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alternate = f.alternate();
        let mut d = f.debug_struct("Endpoint");
        d.field("listeners", &self.listeners.len())
            .field("connections", &self.connection_count())
            .field("stats", &self.stats);
        if alternate {
            // `{:#?}`: one line per connection, for post-mortems (fuzzing).
            let conns: Vec<String> = self
                .conns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| Some((i, c.as_deref()?)))
                .map(|(i, c)| {
                    format!(
                        "{:?} state={} socket={:?} aborted={:?} tcp_done_by={:?} \
                         scheduled={:?} link_next_at={:?} session_poll={:?} events={} \
                         drained={} tcp={:?} tx={} session_events={} gone={} aborted_link={}",
                        c.phase,
                        c.session.state(),
                        c.socket(),
                        c.aborted(),
                        c.tcp_done_by(),
                        self.timers.get(i),
                        c.link.next_at(),
                        c.session.poll_timeout(),
                        c.queued_events(),
                        c.session.is_drained(),
                        c.last_tcp_state(),
                        c.session.send_queue(),
                        c.session.pending_events(),
                        c.link.gone(),
                        c.link.aborted(),
                    )
                })
                .collect();
            d.field("conns", &conns);
        }
        d.finish()
    }
}

impl Endpoint {
    /// An endpoint with no listeners and no connections.
    ///
    /// This function returns `Err(Error::InvalidConfig)` if `config` is unusable.
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate().map_err(Error::InvalidConfig)?;
        let ports = Ports::new(
            config.ephemeral_ports.clone(),
            config.seed,
            config.time_wait,
        );
        let max_connections = config.max_connections;
        let config_tcp_buffers = config.tcp_buffers;
        Ok(Self {
            session_config: Arc::new(config.session.clone()),
            spares: bookend_session::Spares::new(config.spare_parts),
            config,

            wakers: Vec::new(),
            listeners: Vec::new(),
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            live: 0,
            ready: ready::Ready::new(max_connections.div_ceil(ready::SLOTS_PER_WAKER)),
            poked: ready::Poked::default(),
            timers: deadlines::Deadlines::default(),
            waiting: Vec::new(),
            visit: Vec::new(),
            scratch: Scratch::default(),
            admission_at: None,
            spare_conns: Vec::new(),
            ports,
            tcp: sockets::Sockets::new(config_tcp_buffers),
            session_buffers: Vec::new(),
            provided_session_buffers: 0,
            events: VecDeque::new(),
            next_session_id: 1,
            polls: 0,
            syn_defer_timeout: core::time::Duration::from_secs(5),
            stats: Stats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Connections held (any phase, including lingering ones).
    pub fn connection_count(&self) -> usize {
        self.live
    }

    /// Sockets this endpoint uses: armed listeners plus connections still
    /// holding one. Parked provided sockets are in the set too, but not
    /// counted here ([`Endpoint::free_socket_count`]).
    pub fn socket_count(&self) -> usize {
        self.listeners.iter().map(|l| l.armed.len()).sum::<usize>()
            + self
                .conns
                .iter()
                .flatten()
                .filter(|c| c.socket().is_some())
                .count()
    }

    /// Boxes in the endpoint's pools of spare parts (session buffers and
    /// handshake data, and connection slots), for tests and monitoring: at
    /// most 4 x `Config::spare_parts`. Trimmed, empty sessions hold none of
    /// the session parts; the pools serve the busy ones.
    pub fn spare_parts(&self) -> usize {
        self.spares.len() + self.spare_conns.len()
    }

    /// Armed listening sockets.
    pub fn listening_socket_count(&self) -> usize {
        self.listeners.iter().map(|l| l.armed.len()).sum()
    }

    /// How long SO_CONDITIONAL_ACCEPT may keep a SYN-ACK paused on `Defer`
    /// before refusing it (default 5 s), counted from when the listener took
    /// the SYN. A change applies to SYN-ACKs already paused too, from their
    /// next visit (their deadlines are not stored per connection).
    pub fn set_syn_defer_timeout(&mut self, timeout: core::time::Duration) {
        self.syn_defer_timeout = timeout;
    }

    /// Gives the endpoint a TCP socket over the application's buffers, to
    /// use for listeners and connections and to reuse after each
    /// ([`TcpBuffers::Provided`](crate::TcpBuffers::Provided)): it is added
    /// to `sockets`, closed (silently, if it was open), and stays there for
    /// good, so `sockets` needs a slot for each one (a fixed-size
    /// `SocketSet` panics when full). The endpoint sets its timeouts,
    /// keep-alive, delayed ACK and Nagle from the [`Config`] each time it
    /// uses it; what else the application set (hop limit) is kept.
    ///
    /// This function returns `Err(Error::InvalidConfig)` unless the endpoint
    /// was made with `tcp_buffers: TcpBuffers::Provided`, or if a buffer of
    /// `socket` is empty (such a socket could never carry a byte).
    pub fn add_socket<'a>(
        &mut self,
        sockets: &mut SocketSet<'a>,
        socket: tcp::Socket<'a>,
    ) -> Result<SocketHandle, Error> {
        if self.tcp.mode() != crate::TcpBuffers::Provided {
            return Err(Error::InvalidConfig(crate::ConfigError::NotProvided));
        }
        for (field, capacity) in [
            ("socket receive buffer", socket.recv_capacity()),
            ("socket send buffer", socket.send_capacity()),
        ] {
            if capacity == 0 {
                return Err(Error::InvalidConfig(crate::ConfigError::Zero(field)));
            }
        }
        Ok(self.tcp.adopt(sockets, socket))
    }

    /// Gives the endpoint one session's buffers in the application's
    /// storage ([`SessionBuffers`](bookend_session::SessionBuffers), from a
    /// `static` [`SessionStorage`](bookend_session::SessionStorage), say):
    /// a session takes them when its connection starts and gives them back
    /// when the connection is done, for the next. With them, a session
    /// allocates nothing for payload bytes; see
    /// [`SessionBuffering`](crate::SessionBuffering).
    ///
    /// A listener's connection takes its buffers when the listener takes
    /// the SYN, as it takes a socket: callers that keep handshakes open
    /// (a SYN flood) hold buffers until admission control ends them, and
    /// an outgoing `connect` may then find none (`Error::NoSessionBuffers`).
    /// Buffers still in use when the endpoint is dropped are dropped with
    /// it; free ones can be taken back first
    /// ([`take_session_buffers`](Self::take_session_buffers)).
    ///
    /// This function returns the buffers back, with
    /// `BuffersError::TooSmall`, if they are smaller than the endpoint's
    /// session configuration needs.
    pub fn add_session_buffers(
        &mut self,
        buffers: bookend_session::SessionBuffers,
    ) -> Result<(), bookend_session::ProvideError> {
        if !buffers.fits(&self.session_config) {
            let need = bookend_session::BufferSizes::for_config(&self.session_config);
            let have = buffers.sizes();
            return Err(bookend_session::ProvideError {
                error: bookend_session::BuffersError::TooSmall { need, have },
                buffers,
            });
        }
        self.session_buffers.push(buffers);
        self.provided_session_buffers += 1;
        Ok(())
    }

    /// Takes back one session's buffers given with
    /// [`Endpoint::add_session_buffers`] that no connection uses (for
    /// another endpoint, say); `None` if every one is in use.
    pub fn take_session_buffers(&mut self) -> Option<bookend_session::SessionBuffers> {
        let b = self.session_buffers.pop()?;
        self.provided_session_buffers -= 1;
        Some(b)
    }

    /// Session buffers given with [`Endpoint::add_session_buffers`] and not
    /// in use.
    pub fn free_session_buffers_count(&self) -> usize {
        self.session_buffers.len()
    }

    /// Session buffers given with [`Endpoint::add_session_buffers`], free or
    /// in use.
    pub fn provided_session_buffers_count(&self) -> usize {
        self.provided_session_buffers
    }

    /// Whether a new session can have buffers: provided ones are free, or
    /// it may use the heap.
    pub(super) fn session_buffers_available(&self) -> bool {
        !self.session_buffers.is_empty()
            || self.config.session_buffers == crate::SessionBuffering::Heap
    }

    /// Gives a new session provided buffers if any are free. Returns
    /// whether it has what it needs: those, or the heap where allowed.
    /// With `options` (a caller's proposal) beyond what the buffers hold,
    /// a session that may use the heap uses it; one that may not takes them
    /// anyway, and its `connect` refuses the options (`InvalidGrant`).
    pub(super) fn attach_buffers(
        &mut self,
        session: &mut Session,
        options: Option<&bookend_session::Options>,
    ) -> bool {
        let heap_allowed = self.config.session_buffers == crate::SessionBuffering::Heap;
        let need =
            options.map(|o| bookend_session::BufferSizes::for_options(&self.session_config, o));
        let fits = |b: &bookend_session::SessionBuffers| {
            let have = b.sizes();
            need.is_none_or(|n| have.rx >= n.rx && have.tx >= n.tx && have.frame >= n.frame)
        };
        // The last given that holds the options (pools of mixed sizes serve
        // each connection one that fits); with none, the heap where
        // allowed, or the last, whose session refuses the options.
        match self.session_buffers.iter().rposition(fits) {
            Some(i) => {
                let last = self.session_buffers.len() - 1;
                self.session_buffers.swap(i, last);
            }
            None if heap_allowed && options.is_some() => return true,
            None => {}
        }
        if let Some(b) = self.session_buffers.pop() {
            // The boxes that will hold them from the spare pool, so that a
            // steady lifecycle allocates none.
            session.supply(&mut self.spares);
            // A new session holds nothing, and the buffers were checked
            // against the configuration when they were added.
            match session.provide_buffers(b) {
                Ok(()) => return true,
                Err(e) => self.session_buffers.push(e.buffers),
            }
        }
        self.config.session_buffers == crate::SessionBuffering::Heap
    }

    /// Takes a finished (or never started) session's parts: boxes to the
    /// spare pool, provided buffers back to theirs. The one way a session's
    /// buffers return.
    pub(super) fn retire_session(&mut self, session: &mut Session) {
        // Buffers first: the boxes that held them are then plain heap parts
        // and go to the spare pool, for the next session to hold its next.
        if let Some(b) = session.take_buffers() {
            self.session_buffers.push(b);
        }
        session.recycle(&mut self.spares);
    }

    /// Provided sockets not in use, ready for the next listener or
    /// connection; 0 with [`TcpBuffers::Heap`](crate::TcpBuffers::Heap).
    pub fn free_socket_count(&self) -> usize {
        self.tcp.parked()
    }

    /// Sockets given with [`Endpoint::add_socket`], free or in use.
    pub fn provided_socket_count(&self) -> usize {
        self.tcp.provided()
    }

    /// Listens on `port` with a pool of `config.backlog` listening sockets.
    ///
    /// With provided sockets ([`TcpBuffers::Provided`](crate::TcpBuffers::Provided))
    /// it arms what the pool can give, and the listeners share the pool:
    /// re-arming goes round them one socket at a time, and a listener that
    /// finds none free takes one from the listener with the most.
    ///
    /// This function returns `Err(Error::Listen)` for port 0 or a port this
    /// endpoint already listens on, `Err(Error::InvalidConfig)` for a zero
    /// backlog or pending bound, and `Err(Error::NoSocket)` if no provided
    /// socket is free and no listener has one to spare (each keeps one).
    pub fn listen(
        &mut self,
        sockets: &mut SocketSet<'_>,
        port: u16,
        config: ListenConfig,
    ) -> Result<ListenerId, Error> {
        if port == 0 || self.listeners.iter().any(|l| l.port == port) {
            return Err(Error::Listen);
        }
        if config.backlog == 0 || config.max_pending == 0 {
            let field = if config.backlog == 0 {
                "backlog"
            } else {
                "max_pending"
            };
            return Err(Error::InvalidConfig(crate::ConfigError::Zero(field)));
        }
        self.listeners.push(Listener {
            port,
            config,
            armed: Vec::new(),
            undecided: 0,
            handshaking: 0,
            condition: None,
            #[cfg(feature = "conditional-accept")]
            tcp_condition: None,
        });
        let id = self.listeners.len() - 1;
        self.rearm(id, sockets);
        if self.listeners[id].armed.is_empty() && self.tcp.mode() == crate::TcpBuffers::Provided {
            // Every provided socket is in use: one from another listener,
            // or no listener at all (one that could never answer a SYN
            // would only look like one).
            let below_max = self.connection_count() + self.listening_socket_count()
                < self.config.max_connections;
            let armed = self
                .borrow_socket(sockets, below_max)
                .is_some_and(|h| self.listen_on(id, h, sockets));
            if !armed {
                self.listeners.pop();
                return Err(Error::NoSocket);
            }
        }
        Ok(ListenerId(id))
    }

    /// Installs WSAAccept's condition function on a listener. It runs inside
    /// [`Endpoint::poll`] when a CONNECT arrives and must return quickly.
    /// Without one, each request is reported as [`Event::ConnectRequest`].
    pub fn accept_with(
        &mut self,
        listener: ListenerId,
        f: impl FnMut(&IncomingRequest) -> Decision + 'static,
    ) {
        if let Some(l) = self.listeners.get_mut(listener.0) {
            l.condition = Some(Box::new(f));
        }
    }

    /// Installs SO_CONDITIONAL_ACCEPT on a listener: `f(caller, callee)`
    /// decides before the SYN-ACK is sent. Listening sockets armed from now
    /// on hold their SYN-ACK until `f` answers.
    #[cfg(feature = "conditional-accept")]
    pub fn tcp_accept_with(
        &mut self,
        sockets: &mut SocketSet<'_>,
        listener: ListenerId,
        f: impl FnMut(IpEndpoint, IpEndpoint) -> TcpDecision + 'static,
    ) {
        if let Some(l) = self.listeners.get_mut(listener.0) {
            l.tcp_condition = Some(Box::new(f));
            for &h in &l.armed {
                sockets.get_mut::<tcp::Socket>(h).pause_synack(true);
            }
        }
    }

    /// Drives one connection: the whole of its life after creation is here
    /// and in [`Endpoint::try_free`]. Visits it, then puts its next deadline
    /// in the timer heap and trims its session (its wakers are re-armed by
    /// `Endpoint::poll`), unless `Visit::Poll` found nothing at all.
    pub(super) fn poll_conn(
        &mut self,
        index: usize,
        t: Instant,
        sockets: &mut SocketSet<'_>,
        why: Visit,
    ) {
        let changed = self.visit_conn(index, t, sockets);
        // A poll's visit that found nothing (a neighbour in a woken waker
        // group, or a wake-up that brought no news) changed nothing: its
        // deadline stands, safety net included, so it costs the idle check
        // alone (skipping the reschedule and trim took a sequential
        // lifecycle's instructions from 268.9 M to 268.0 M per 2 000,
        // callgrind). Not after a command, which may have armed a timer
        // (`close` after an answered-for DISCONNECT arms linger and queues
        // nothing: `a_close_that_only_arms_linger_is_scheduled`) or taken
        // spare parts; not if the timer heap popped its deadline to bring
        // it here; not with output waiting (below).
        if why == Visit::Poll
            && !changed
            && self.timers.get(index).is_some()
            && !self.conns[index]
                .as_deref()
                .is_some_and(|c| c.session.has_output())
        {
            return;
        }
        // The visit's own decisions (a condition function's ACCEPT or REJECT,
        // an eviction) queue frames after the pump ran: hand them to TCP now.
        // What TCP cannot take yet goes when the socket wakes (ACKs).
        // (Not while TCP connects: it can take nothing yet.)
        if self.conns[index].as_deref().is_some_and(|c| {
            c.session.has_output()
                && c.aborted().is_none()
                && c.socket()
                    .is_some_and(|h| sockets.get::<tcp::Socket>(h).may_send())
        }) {
            if let Some(c) = self.conns[index].as_deref_mut() {
                c.set_last_tcp_state(None);
            }
            self.visit_conn(index, t, sockets);
        }
        if let Some(c) = self.conns[index].as_deref_mut() {
            c.session.trim(&mut self.spares);
        }
        self.reschedule(index, Some(t));
    }

    /// Visits connection `index` (`visit.rs` has the steps), then releases
    /// its ephemeral port once its socket is gone and frees its slot if
    /// nobody needs it; false if the visit found nothing at all to do.
    fn visit_conn(&mut self, index: usize, t: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let Some(c) = self.conns[index].as_deref_mut() else {
            return true;
        };
        let handle = Handle {
            index: index as u32,
            generation: c.generation(),
        };
        let mut cx = visit::Cx {
            config: &self.config,
            spares: &mut self.spares,
            tcp: &mut self.tcp,
            stats: &mut self.stats,
            listeners: &mut self.listeners,
            events: &mut self.events,
            syn_defer_timeout: self.syn_defer_timeout,
        };
        if let visit::Visited::Stopped(changed) = c.visit(&mut cx, handle, t, sockets) {
            return changed;
        }
        if c.socket().is_none()
            && let Some(port) = c.take_ephemeral_port()
        {
            self.ports.release(port, t);
        }
        self.try_free(index);
        true
    }

    /// The one place a slot is freed: its socket is gone, its session has
    /// nothing left to do, every event queued for it was delivered (or
    /// dropped, for a released handle), and nobody holds its handle.
    pub(super) fn try_free(&mut self, index: usize) {
        let Some(c) = self.conns[index].as_deref() else {
            return;
        };
        // Anything but `Owned` is nobody's: released, refused, or never seen
        // by the application (pending, or a SYN-ACK still held).
        let unowned = c.phase != Phase::Owned;
        if unowned && c.socket().is_none() && c.session.is_drained() && c.queued_events() == 0 {
            if let Some(mut c) = self.conns[index].take() {
                // Its session's parts and its box serve the next connections;
                // what else it holds on the heap goes now, not at reuse.
                self.retire_session(&mut c.session);
                c.clear_waiting();
                if self.spare_conns.len() < self.config.spare_parts {
                    self.spare_conns.push(c);
                }
            }
            self.generations[index] = self.generations[index].wrapping_add(1);
            self.free.push(index);
            self.live -= 1;
            self.timers.set(index, None);
        }
    }

    /// Applies `on` to connection `index`'s phase ([`phase::ROWS`]): with
    /// [`phase::apply`], the only way a phase changes after creation.
    fn phase_event(&mut self, index: usize, on: PhaseEvent) -> bool {
        match self.conns[index].as_deref_mut() {
            Some(c) => phase::apply(&mut c.phase, on, &mut self.stats),
            None => false,
        }
    }

    fn syn_paused(phase: Phase) -> bool {
        phase == Phase::SynPaused
    }

    /// Keeps `backlog` sockets listening, within `max_connections`. Full
    /// queues do not disarm listeners: a caller whose SYN is taken learns
    /// why it is not served (eviction, REJECT(`BUSY`)), instead of a bare RST.
    fn rearm(&mut self, id: usize, sockets: &mut SocketSet<'_>) {
        while self.arm_one(id, sockets) {}
        self.disarm_surplus(id, sockets);
    }

    /// [`Endpoint::rearm`] for every listener, sharing: each socket goes to
    /// the listener with the fewest armed (the lowest id among equals), so
    /// with provided sockets too few for every backlog the listeners share
    /// them instead of the first taking all; and a listener left with none
    /// takes one from the listener with the most (which keeps one), so that
    /// no port answers its callers with RST while another idles on several.
    fn rearm_all(&mut self, sockets: &mut SocketSet<'_>) {
        for id in 0..self.listeners.len() {
            self.disarm_surplus(id, sockets);
        }
        loop {
            let neediest = (0..self.listeners.len())
                .filter(|&id| self.listeners[id].armed.len() < self.listeners[id].config.backlog)
                .min_by_key(|&id| (self.listeners[id].armed.len(), id));
            let Some(id) = neediest else { break };
            if self.arm_one(id, sockets) {
                continue;
            }
            // Nothing free (or at `max_connections`): only a listener with
            // none may take one from another, which changes no count.
            if !self.listeners[id].armed.is_empty() {
                break;
            }
            match self.borrow_socket(sockets, false) {
                Some(h) if self.listen_on(id, h, sockets) => {}
                _ => break,
            }
        }
    }

    /// Arms one more listening socket for listener `id` if it has fewer
    /// than its backlog, within `max_connections`, and a socket is free;
    /// says whether it did.
    fn arm_one(&mut self, id: usize, sockets: &mut SocketSet<'_>) -> bool {
        let total = self.connection_count() + self.listening_socket_count();
        if self.listeners[id].armed.len() >= self.listeners[id].config.backlog
            || total >= self.config.max_connections
        {
            return false;
        }
        // None: every provided socket is in use; the next poll after one is
        // released arms it.
        let Some(h) = self.tcp.take(&self.config, sockets) else {
            return false;
        };
        self.listen_on(id, h, sockets)
    }

    /// Makes the closed socket `h` one of listener `id`'s; gives it back if
    /// smoltcp refuses.
    fn listen_on(&mut self, id: usize, h: SocketHandle, sockets: &mut SocketSet<'_>) -> bool {
        let s = sockets.get_mut::<tcp::Socket>(h);
        #[cfg(feature = "conditional-accept")]
        if self.listeners[id].tcp_condition.is_some() {
            s.pause_synack(true);
        }
        if s.listen(self.listeners[id].port).is_err() {
            self.tcp.release(sockets, h);
            return false;
        }
        self.listeners[id].armed.push(h);
        true
    }

    /// Too many armed (the backlog was lowered): disarm the surplus, newest
    /// first. A listening socket has no peer, so releasing it sends nothing.
    fn disarm_surplus(&mut self, id: usize, sockets: &mut SocketSet<'_>) {
        while self.listeners[id].armed.len() > self.listeners[id].config.backlog {
            let Some(h) = self.listeners[id].armed.pop() else {
                break;
            };
            self.tcp.release(sockets, h);
        }
    }

    /// A closed socket for an outgoing connection or a new listener: a free
    /// one; or, with provided sockets and none free, one taken back from
    /// the listener with the most sockets still listening, as long as it
    /// keeps one. Armed sockets wait for callers that may never come: an
    /// outgoing connection or another port's listener makes better use of
    /// one, and a listener is only ever thinned, never silenced.
    ///
    /// `fresh`: a free socket may be taken (the caller is below
    /// `max_connections`); without it only a listening socket changes hands,
    /// which leaves the count as it is.
    fn borrow_socket(&mut self, sockets: &mut SocketSet<'_>, fresh: bool) -> Option<SocketHandle> {
        if fresh && let Some(h) = self.tcp.take(&self.config, sockets) {
            return Some(h);
        }
        if self.tcp.mode() != crate::TcpBuffers::Provided {
            return None;
        }
        let listening = |sockets: &SocketSet<'_>, armed: &[SocketHandle]| {
            armed
                .iter()
                .filter(|&&h| sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen)
                .count()
        };
        let id = (0..self.listeners.len())
            .map(|id| (listening(sockets, &self.listeners[id].armed), id))
            .filter(|&(n, _)| n >= 2)
            .max()?
            .1;
        // Only a socket still in LISTEN: one that took a SYN is a
        // connection the next poll hands over. It has no peer, so releasing
        // it sends nothing.
        let armed = &self.listeners[id].armed;
        let at = armed
            .iter()
            .rposition(|&h| sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen)?;
        let h = self.listeners[id].armed.swap_remove(at);
        self.tcp.release(sockets, h);
        self.tcp.take(&self.config, sockets)
    }

    /// The one place a connection is created (by `connect`, or taken from a
    /// listener): everything else starts empty.
    fn new_conn(&mut self, f: Fresh, t: Instant) -> Handle {
        let link = Link::new(t, self.config.give_up_after());
        self.alloc_conn(|generation| Conn::new(f, generation, link))
    }

    fn alloc_conn(&mut self, conn: impl FnOnce(u32) -> Conn) -> Handle {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                // The slot tables grow together, by `growth`.
                let len = self.conns.len();
                if len == self.conns.capacity() {
                    let more = growth(len);
                    self.conns.reserve_exact(more);
                    self.generations.reserve_exact(more);
                    self.wakers
                        .reserve_exact(more.div_ceil(ready::SLOTS_PER_WAKER) + 1);
                }
                if len.is_multiple_of(ready::SLOTS_PER_WAKER) {
                    let group = len / ready::SLOTS_PER_WAKER;
                    self.wakers.push(ready::group_waker(&self.ready, group));
                }
                self.conns.push(None);
                self.generations.push(0);
                len
            }
        };
        let generation = self.generations[index];
        let conn = conn(generation);
        self.conns[index] = Some(match self.spare_conns.pop() {
            Some(mut b) => {
                *b = conn;
                b
            }
            None => Box::new(conn),
        });
        self.live += 1;
        // Visited by the next poll (or at once by the command that made it).
        self.poked.poke(index);
        Handle {
            index: index as u32,
            generation,
        }
    }

    /// The earliest deadline of a connection: its session's timers, the
    /// pump's (pending RST, user timeout), the bounded TCP close, the SYN-ACK
    /// deferral, the removal of an aborted socket, and the safety-net visit.
    /// `visited`: the time of the visit this follows, if it follows one.
    fn deadline(&self, index: usize, c: &Conn, visited: Option<Instant>) -> Option<Instant> {
        let live_socket = c.socket().is_some() && c.aborted().is_none();
        // While a SYN-ACK is held, the session's handshake timer does not run
        // (it restarts when the SYN-ACK goes): only the deferral bounds it.
        let mut next = if Self::syn_paused(c.phase) {
            None
        } else {
            c.session.poll_timeout()
        };
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                next = Some(next.map_or(x, |n: Instant| n.min(x)));
            }
        };
        if let Some(at) = c.aborted().filter(|_| c.socket().is_some()) {
            // Removal once the RST is out (smoltcp wakes the socket then);
            // this is the fallback if the interface never sends it.
            consider(Some(at + self.config.abort_ack_timeout));
        }
        consider(c.link.next_at().filter(|_| live_socket));
        consider(c.tcp_done_by().filter(|_| live_socket));
        // A safety net: a connection with a live socket is visited at least
        // once per `tcp_timeout` after its last visit, so a change that
        // neither a waker nor a deadline reports (the leak found by the
        // stack fuzz target was one) cannot strand it for ever. Outside a
        // visit (a direct send) the net the last visit set is kept, as part
        // of what was scheduled (at worst a spurious visit, which sets it
        // again); so no field keeps the time of the last visit.
        match visited {
            Some(v) => consider(Some(v + self.config.tcp_timeout).filter(|_| live_socket)),
            None => consider(self.timers.get(index).filter(|_| live_socket)),
        }
        if c.phase == Phase::SynPaused {
            let by = c.born() + self.syn_defer_timeout;
            consider(Some(by));
        }
        next
    }

    /// Puts a slot's current deadline in the timer heap (if it changed);
    /// `visited` as for [`Endpoint::deadline`].
    fn reschedule(&mut self, index: usize, visited: Option<Instant>) {
        let Some(c) = self.conns[index].as_deref() else {
            return;
        };
        let at = self.deadline(index, c, visited);
        if self.timers.get(index) != at {
            self.timers.set(index, at);
        }
    }

    fn conn(&self, h: Handle) -> Option<&Conn> {
        self.conns
            .get(h.index as usize)?
            .as_deref()
            .filter(|c| c.generation() == h.generation)
    }

    fn conn_mut(&mut self, h: Handle) -> Option<&mut Conn> {
        self.conn_and_spares(h).map(|(c, _)| c)
    }

    /// The connection behind `h` and the spare pool, borrowed together (a
    /// session takes and gives back parts while the endpoint holds it).
    fn conn_and_spares(&mut self, h: Handle) -> Option<(&mut Conn, &mut bookend_session::Spares)> {
        let c = self
            .conns
            .get_mut(h.index as usize)?
            .as_deref_mut()
            .filter(|c| c.generation() == h.generation)?;
        Some((c, &mut self.spares))
    }

    fn next_id(&mut self) -> u32 {
        let id = self.next_session_id;
        self.next_session_id = self.next_session_id.wrapping_add(1);
        id
    }

    /// The next event for the application: the connection it concerns and
    /// what happened.
    ///
    /// Events queued for a handle the application has since closed are
    /// dropped: after `close` or `abort` a handle hears nothing more.
    pub fn poll_event(&mut self) -> Option<(Handle, EndpointEvent)> {
        while let Some((h, e)) = self.events.pop_front() {
            let index = h.index as usize;
            let Some(c) = self.conns.get_mut(index).and_then(|c| c.as_deref_mut()) else {
                continue;
            };
            c.event_left_queue(&e);
            let current = c.generation() == h.generation;
            // The last event of a connection nobody holds frees its slot.
            self.try_free(index);
            if current {
                return Some((h, e));
            }
        }
        None
    }

    /// When steps 1 and 2 of the call order must run again (see the type
    /// docs): the earlier of `iface.poll_at` and [`Endpoint::poll_at`],
    /// except that a SYN-ACK held by SO_CONDITIONAL_ACCEPT's `Defer` does not
    /// make it "now". smoltcp reports a paused SYN-ACK as a segment due at
    /// once (its `poll_at` mirrors `dispatch`, which then sends nothing), so
    /// a loop sleeping until `iface.poll_at` would spin for as long as a
    /// decision is deferred; while one is held, the interface's "now" counts
    /// as [`SYN_DEFER_RECHECK`] from now, when the decision is asked again.
    pub fn next_poll(
        &self,
        now: SmolInstant,
        iface: &mut Interface,
        sockets: &SocketSet<'_>,
    ) -> Option<SmolInstant> {
        let mut iface_at = iface.poll_at(now, sockets);
        if iface_at.is_some_and(|t| t <= now) && self.holds_syn_ack() {
            iface_at = Some(now + smol_duration(SYN_DEFER_RECHECK));
        }
        [iface_at, self.poll_at(now)].into_iter().flatten().min()
    }

    /// Whether a SYN-ACK is held by SO_CONDITIONAL_ACCEPT's `Defer` (all
    /// such connections are listed in `waiting`, which admission control
    /// bounds).
    fn holds_syn_ack(&self) -> bool {
        self.waiting.iter().any(|&i| {
            self.conns[i]
                .as_deref()
                .is_some_and(|c| Self::syn_paused(c.phase))
        })
    }

    /// When [`Endpoint::poll`] must run next, not counting the interface's
    /// own deadlines ([`Endpoint::next_poll`] combines both). `Some(now)` if
    /// work is waiting.
    pub fn poll_at(&self, now: SmolInstant) -> Option<SmolInstant> {
        // A socket woke (during the interface poll), or a connection was
        // made or read from: visit it now.
        if self.ready.any() || self.poked.any() {
            return Some(now);
        }
        // SYN-ACKs held by SO_CONDITIONAL_ACCEPT's `Defer` are asked again
        // at every poll, by the documented contract; their deadline bounds it.
        // Bytes queued by the session need no wake-up of
        // their own: commands hand them to TCP, and a send window opening
        // again wakes the socket.
        let timer = self.timers.peek().map(|(at, _)| at);
        // Admission control's graces end without any socket waking.
        [timer, self.admission_at]
            .into_iter()
            .flatten()
            .min()
            .map(smol_instant)
    }

    /// Step 2 of the call order: see the type docs.
    pub fn poll(&mut self, now: SmolInstant, sockets: &mut SocketSet<'_>) {
        self.polls += 1;
        let t = session_instant(now);
        for id in 0..self.listeners.len() {
            self.take_listeners(id, t, sockets);
        }
        self.drop_duplicate_half_opens(t, sockets);
        self.admit(t, sockets);
        // Visit what has news: woken sockets, due timers, and the waiting
        // connections (a paused SYN-ACK is asked about at every poll).
        let mut visit = core::mem::take(&mut self.visit);
        visit.clear();
        // A woken group stands for its slots: which of its sockets woke is
        // not known, so each connection in it is visited (those without
        // news stop at the idle check).
        self.ready.drain_into(&mut visit);
        let groups = visit.len();
        for g in 0..groups {
            let first = visit[g] * ready::SLOTS_PER_WAKER;
            let end = (first + ready::SLOTS_PER_WAKER).min(self.conns.len());
            for index in first..end {
                if self.conns[index].is_some() {
                    visit.push(index);
                }
            }
        }
        visit.drain(..groups);
        self.poked.drain_into(&mut visit);
        // smoltcp wakes a waker once (it takes it): re-arm the woken groups'
        // sockets before visiting them, so that whatever happens from here
        // on wakes them again (a socket that still holds the waker keeps it:
        // registering the same waker again is a comparison). Only these (and
        // the new ones, poked): a group's waker is consumed only by a
        // wake-up, which marks the group, which brings its slots here (timer
        // and command visits leave the registrations alone, and cost
        // nothing).
        for &index in &visit {
            if let Some(h) = self.conns[index].as_deref().and_then(|c| c.socket()) {
                let socket = sockets.get_mut::<tcp::Socket>(h);
                let waker = &self.wakers[index / ready::SLOTS_PER_WAKER];
                socket.register_recv_waker(waker);
                socket.register_send_waker(waker);
            }
        }
        while let Some(index) = self.timers.pop_due(t) {
            visit.push(index);
        }
        // A SYN-ACK held by SO_CONDITIONAL_ACCEPT's `Defer` is asked about
        // again at every poll (the documented contract). The other waiting
        // connections are visited when their socket wakes or a timer is
        // due, like any other: visiting every one at every poll would let a
        // flood of silent connections cost every poll a visit each.
        let conns = &self.conns;
        visit.extend(self.waiting.iter().copied().filter(|&i| {
            conns[i]
                .as_deref()
                .is_some_and(|c| Self::syn_paused(c.phase))
        }));
        visit.sort_unstable();
        visit.dedup();
        for &index in &visit {
            self.poll_conn(index, t, sockets, Visit::Poll);
        }
        self.visit = visit;
        self.rearm_all(sockets);
        #[cfg(debug_assertions)]
        if self.tcp.mode() == crate::TcpBuffers::Provided {
            // Every provided socket is free, listening or a connection's:
            // none leaked, none released twice.
            debug_assert_eq!(
                self.socket_count() + self.tcp.parked(),
                self.tcp.provided(),
                "provided sockets accounted for"
            );
        }
        #[cfg(debug_assertions)]
        {
            // Every provided session's buffers are free or a session's.
            let held = self
                .conns
                .iter()
                .flatten()
                .filter(|c| c.session.has_provided_buffers())
                .count();
            debug_assert_eq!(
                held + self.session_buffers.len(),
                self.provided_session_buffers,
                "provided session buffers accounted for"
            );
        }
    }
}
#[cfg(test)]
mod size_tests {
    /// A connection's state is one box per slot; its size is most of what
    /// an idle session costs (`benches/tests/budget.rs` measures the whole;
    /// the history of the sizes is in `benches/README.md`).
    #[test]
    fn a_connection_stays_small() {
        use core::mem::size_of;
        // IPv6 makes each of its two `IpEndpoint`s 20 bytes instead of 8.
        let max = if cfg!(feature = "ipv6") { 248 } else { 216 };
        assert!(
            size_of::<super::Conn>() <= max,
            "{}",
            size_of::<super::Conn>()
        );
        assert!(size_of::<crate::transport::Link>() <= 56);
        assert!(size_of::<bookend_session::Session>() <= 112);
    }
}

#[cfg(test)]
mod wake_tests {
    use super::*;
    use smoltcp::iface::Config as IfaceConfig;
    use smoltcp::phy::{Loopback, Medium};
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

    /// Only smoltcp's wakers mark `Ready`, whose plain loads and stores are
    /// sound because wakes are serialized by `&mut SocketSet`. The
    /// endpoint's own requests for a visit (a new connection, a read that
    /// made room) must not write to it: the application may make them while
    /// another thread polls the interface, and a lost update there lost a
    /// summary bit, after which the 32 slots of its word were never drained
    /// again. They are still visited at the next poll.
    #[test]
    fn only_wakers_mark_ready() {
        let mut dev = Loopback::new(Medium::Ip);
        let mut iface = Interface::new(
            IfaceConfig::new(HardwareAddress::Ip),
            &mut dev,
            SmolInstant::ZERO,
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 1), 24)).unwrap();
        });
        let mut sockets = SocketSet::new(alloc::vec![]);
        let mut ep = Endpoint::new(Config::new(7)).unwrap();
        let now = SmolInstant::from_millis(1);
        let h = ep
            .connect(
                &mut iface,
                &mut sockets,
                now,
                IpEndpoint::new(IpAddress::v4(10, 0, 0, 2), 9),
                Some(b"hi"),
                Options::DEFAULT,
            )
            .unwrap();
        assert!(!ep.ready.any(), "a connect marked the wakers' set");
        assert_eq!(ep.poll_at(now), Some(now), "the new connection waits");
        ep.poll(now, &mut sockets);
        assert!(ep.conn(h).is_some());
        // The first poll visited it and armed its wakers: nothing is left.
        assert!(!ep.ready.any());
        assert_ne!(ep.poll_at(now), Some(now));
    }
}
