//! The endpoint: sessions bound to smoltcp TCP sockets it adds to the
//! application's `SocketSet`.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use bookend_session::{CloseReason, Event, Instant, Options, Reason, Session, State};
use bytes::Bytes;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::IpEndpoint;
use tracing::{debug, trace};

use crate::config::{Config, ListenConfig};
use crate::ports::Ports;
use crate::transport::{Link, TcpConnection};

/// Converts smoltcp's clock to the session's (negative times clamp to 0).
pub fn session_instant(t: SmolInstant) -> Instant {
    Instant::from_micros(u64::try_from(t.total_micros()).unwrap_or(0))
}

/// Converts the session's clock to smoltcp's.
pub fn smol_instant(t: Instant) -> SmolInstant {
    SmolInstant::from_micros(i64::try_from(t.total_micros()).unwrap_or(i64::MAX))
}

fn smol_duration(d: core::time::Duration) -> SmolDuration {
    SmolDuration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
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

/// Names one listening port of an [`Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// SO_CONDITIONAL_ACCEPT's answer, given before any SYN-ACK is sent.
#[cfg(feature = "conditional-accept")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpDecision {
    /// Send the SYN-ACK; the session-level condition (if any) runs on CONNECT.
    Accept,
    /// Answer the SYN with RST: the caller's connect fails with `Reset`
    /// (WSAECONNREFUSED), before any session data is exchanged.
    Refuse,
    /// Keep the SYN-ACK paused and ask again on the next poll, until
    /// `ListenConfig`'s pending bound or [`Endpoint::set_syn_defer_timeout`] refuses it.
    Defer,
}

/// Errors of endpoint calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable; the text says why.
    InvalidConfig(&'static str),
    /// No ephemeral port is free (all live or in TIME-WAIT quarantine).
    PortsExhausted,
    /// `Config::max_connections` are in use.
    TooManyConnections,
    /// The handle names no connection (any more).
    InvalidHandle,
    /// The connection is not waiting for a decision.
    NotPending,
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
    condition: Option<Condition>,
    #[cfg(feature = "conditional-accept")]
    tcp_condition: Option<TcpCondition>,
}

/// Who a connection belongs to right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Incoming, SYN-ACK held by SO_CONDITIONAL_ACCEPT until this time.
    #[cfg(feature = "conditional-accept")]
    SynPaused(Instant),
    /// Incoming, not yet accepted: counts against `max_pending`.
    Pending,
    /// Incoming and refused by us before the application owned it.
    Refused,
    /// The application's (outgoing, or accepted).
    Owned,
    /// The application closed its handle: lingering in the background.
    Released,
}

struct Conn {
    generation: u32,
    socket: Option<SocketHandle>,
    session: Session,
    link: Link,
    phase: Phase,
    listener: Option<usize>,
    local: Option<IpEndpoint>,
    remote: Option<IpEndpoint>,
    ephemeral_port: Option<u16>,
    /// Until TCP is up: what to send in CONNECT. Boxed: most connections
    /// never have one, and idle ones should not pay for it.
    connect_args: Option<Box<(Option<Vec<u8>>, Options)>>,
    /// A request waiting for the application's decision. Boxed, and dropped
    /// once decided, for the same reason.
    request: Option<Box<IncomingRequest>>,
    tcp_done_by: Option<Instant>,
    /// When the socket was aborted. It leaves the set once smoltcp has sent
    /// the RST (it then forgets the 4-tuple), whatever the call order, or
    /// after `abort_flush_timeout` if the interface never sent it.
    aborted: Option<Instant>,
    /// The socket's TCP state when last pumped: a FIN or RST always changes
    /// it, so an idle connection whose state is unchanged can be skipped.
    last_tcp_state: Option<tcp::State>,
    /// Events of this slot still in the endpoint's queue: the slot is freed
    /// only once they are delivered (or dropped for a released handle).
    queued_events: u32,
    /// The pump's next deadline (pending reset, user timeout), as of the
    /// last pump.
    link_poll_at: Option<Instant>,
    span: tracing::Span,
}

/// Counters for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections taken from listening sockets.
    pub accepted_tcp: u64,
    /// Duplicate half-open sockets dropped (lost SYN-ACK, re-armed listener).
    pub duplicates_dropped: u64,
    /// Incoming connections refused before the application owned them
    /// (REJECT, or handshake timeout, or TCP-level refusal).
    pub refused: u64,
    /// Sockets aborted because the TCP close did not finish in time.
    pub close_timeouts: u64,
    /// Incoming connections reset in SYN-RECEIVED (a SYN scan, or a caller
    /// that gave up): their socket is dropped, never reused as a listener.
    pub reset_in_syn_received: u64,
}

/// Sessions over smoltcp TCP sockets.
///
/// The application owns the smoltcp `Interface`, its `Device` and the
/// `SocketSet`; the endpoint adds TCP sockets to that set and removes them
/// again. The required call order, in the manner of quinn-proto:
///
/// 1. `iface.poll(now, &mut device, &mut sockets)`;
/// 2. [`Endpoint::poll`]`(now, &mut iface, &mut sockets)`: moves bytes between
///    sessions and sockets, accepts, re-arms listeners, runs timers, releases
///    finished sockets;
/// 3. [`Endpoint::poll_event`] until `None`, acting on each event with
///    [`Endpoint::session`] and the other commands;
/// 4. if any command was issued, go to 1 at once (the bytes it queued are
///    written by step 2); otherwise wait until the earlier of
///    `iface.poll_at(now, &sockets)` and [`Endpoint::poll_at`], or until the
///    device has a packet, then go to 1.
pub struct Endpoint {
    config: Config,
    listeners: Vec<Listener>,
    /// Boxed: a slot is a pointer, so the table's spare capacity costs 8 bytes
    /// per slot instead of a whole 864-byte connection. Measured (benches
    /// `memory`): 1.1 KiB instead of 2.0-3.1 KiB per idle session and
    /// endpoint, for a poll round about 1.5x slower at 10 000 idle sessions
    /// (pointer chasing); event-driven polling is the real fix for the latter.
    conns: Vec<Option<Box<Conn>>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    ports: Ports,
    events: VecDeque<(Handle, EndpointEvent)>,
    next_session_id: u64,
    polls: u64,
    syn_defer_timeout: core::time::Duration,
    stats: Stats,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("listeners", &self.listeners.len())
            .field("connections", &self.connection_count())
            .field("stats", &self.stats)
            .finish()
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
        Ok(Self {
            config,
            listeners: Vec::new(),
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            ports,
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
        self.conns.iter().flatten().count()
    }

    /// Sockets this endpoint has in the set: armed listeners plus connections
    /// still holding one.
    pub fn socket_count(&self) -> usize {
        self.listeners.iter().map(|l| l.armed.len()).sum::<usize>()
            + self
                .conns
                .iter()
                .flatten()
                .filter(|c| c.socket.is_some())
                .count()
    }

    /// Armed listening sockets.
    pub fn listening_socket_count(&self) -> usize {
        self.listeners.iter().map(|l| l.armed.len()).sum()
    }

    /// How long SO_CONDITIONAL_ACCEPT may keep a SYN-ACK paused on `Defer`
    /// before refusing it (default 5 s).
    pub fn set_syn_defer_timeout(&mut self, timeout: core::time::Duration) {
        self.syn_defer_timeout = timeout;
    }

    fn new_socket(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0u8; self.config.tcp_rx_buffer]);
        let tx = tcp::SocketBuffer::new(vec![0u8; self.config.tcp_tx_buffer]);
        let mut s = tcp::Socket::new(rx, tx);
        // smoltcp has no default timeouts: bound every state, and keep-alive
        // below the timeout so that idle-but-healthy connections survive it.
        s.set_timeout(Some(smol_duration(self.config.tcp_timeout)));
        s.set_keep_alive(Some(smol_duration(self.config.tcp_keep_alive)));
        s.set_ack_delay(self.config.tcp_ack_delay.map(smol_duration));
        s.set_nagle_enabled(self.config.tcp_nagle);
        s
    }

    /// Listens on `port` with a pool of `config.backlog` listening sockets.
    ///
    /// This function returns `Err(Error::Listen)` for port 0 or a port this
    /// endpoint already listens on, and `Err(Error::InvalidConfig)` for a zero
    /// backlog or pending bound.
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
            return Err(Error::InvalidConfig(
                "backlog and max_pending must be non-zero",
            ));
        }
        self.listeners.push(Listener {
            port,
            config,
            armed: Vec::new(),
            condition: None,
            #[cfg(feature = "conditional-accept")]
            tcp_condition: None,
        });
        let id = self.listeners.len() - 1;
        self.rearm(id, sockets);
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

    fn pending_of(&self, listener: usize) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| c.listener == Some(listener) && Self::counts_as_pending(c.phase))
            .count()
    }

    fn syn_paused(phase: Phase) -> bool {
        #[cfg(feature = "conditional-accept")]
        if let Phase::SynPaused(_) = phase {
            return true;
        }
        let _ = phase;
        false
    }

    fn counts_as_pending(phase: Phase) -> bool {
        match phase {
            #[cfg(feature = "conditional-accept")]
            Phase::SynPaused(_) => true,
            Phase::Pending => true,
            _ => false,
        }
    }

    /// Keeps `min(backlog, max_pending - pending)` sockets listening, within
    /// `max_connections`.
    fn rearm(&mut self, id: usize, sockets: &mut SocketSet<'_>) {
        let pending = self.pending_of(id);
        let total = self.connection_count() + self.listening_socket_count();
        let l = &self.listeners[id];
        let want = l
            .config
            .backlog
            .min(l.config.max_pending.saturating_sub(pending));
        let room = self.config.max_connections.saturating_sub(total);
        let add = want.saturating_sub(l.armed.len()).min(room);
        for _ in 0..add {
            let mut s = self.new_socket();
            #[cfg(feature = "conditional-accept")]
            if self.listeners[id].tcp_condition.is_some() {
                s.pause_synack(true);
            }
            if s.listen(self.listeners[id].port).is_err() {
                return;
            }
            let h = sockets.add(s);
            self.listeners[id].armed.push(h);
        }
        // Too many armed (pending grew): disarm the surplus, newest first. A
        // listening socket has no peer, so removing it sends nothing.
        while self.listeners[id].armed.len() > want {
            let Some(h) = self.listeners[id].armed.pop() else {
                break;
            };
            sockets.remove(h);
        }
    }

    fn alloc_conn(&mut self, conn: impl FnOnce(u32) -> Conn) -> Handle {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.generations.push(0);
                self.conns.len() - 1
            }
        };
        let generation = self.generations[index];
        self.conns[index] = Some(Box::new(conn(generation)));
        Handle {
            index: index as u32,
            generation,
        }
    }

    fn conn(&self, h: Handle) -> Option<&Conn> {
        self.conns
            .get(h.index as usize)?
            .as_deref()
            .filter(|c| c.generation == h.generation)
    }

    fn conn_mut(&mut self, h: Handle) -> Option<&mut Conn> {
        self.conns
            .get_mut(h.index as usize)?
            .as_deref_mut()
            .filter(|c| c.generation == h.generation)
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_session_id;
        self.next_session_id += 1;
        id
    }

    /// WSAConnect: opens a TCP connection to `remote` from an ephemeral port
    /// and, once it is established, sends CONNECT with `caller_data` and the
    /// proposed `options`. The outcome arrives as `Event::Connected`,
    /// `Event::Refused`, or `Event::Closed` (reset: WSAECONNREFUSED, or timed out).
    ///
    /// This function returns `Err` if no port or connection slot is free, the
    /// caller data is over `options.max_connect_data`, or smoltcp cannot
    /// connect to `remote`.
    pub fn connect(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        now: SmolInstant,
        remote: IpEndpoint,
        caller_data: Option<&[u8]>,
        options: Options,
    ) -> Result<Handle, Error> {
        if caller_data.is_some_and(|d| d.len() > options.max_connect_data as usize) {
            return Err(Error::Session(bookend_session::Error::TooLarge {
                max: options.max_connect_data,
                what: bookend_session::DataKind::CallerData,
            }));
        }
        if self.connection_count() + self.listening_socket_count() >= self.config.max_connections {
            return Err(Error::TooManyConnections);
        }
        let t = session_instant(now);
        let port = self.ports.allocate(t).map_err(|_| Error::PortsExhausted)?;
        let mut socket = self.new_socket();
        if socket.connect(iface.context(), remote, port).is_err() {
            self.ports.release(port, t);
            return Err(Error::Connect);
        }
        let local = socket.local_endpoint();
        let handle = sockets.add(socket);
        let id = self.next_id();
        let span = tracing::debug_span!("conn", local = %port, remote = %remote);
        let session = {
            let _g = span.enter();
            Session::caller(self.config.session.clone(), id)
                .map_err(|_| Error::InvalidConfig("session"))?
        };
        let link = Link::new(t, self.config.tcp_timeout, self.config.abort_flush_timeout);
        let data = caller_data.map(<[u8]>::to_vec);
        Ok(self.alloc_conn(|generation| Conn {
            generation,
            socket: Some(handle),
            session,
            link,
            phase: Phase::Owned,
            listener: None,
            local,
            remote: Some(remote),
            ephemeral_port: Some(port),
            connect_args: Some(Box::new((data, options))),
            request: None,
            tcp_done_by: None,
            aborted: None,
            last_tcp_state: None,
            queued_events: 0,
            link_poll_at: None,
            span,
        }))
    }

    /// The session of a connection, for `send`, `recv`, `send_disconnect`,
    /// `recv_disconnect` and the rest. `None` for a stale handle.
    pub fn session(&mut self, h: Handle) -> Option<&mut Session> {
        self.conn_mut(h).map(|c| &mut c.session)
    }

    /// Stream mode, zero-copy send (like a socket `send`): frames `data`
    /// straight into the TCP socket's free space, without the session's
    /// buffer, and returns how many bytes were taken. When the session still
    /// has bytes queued (control frames, or earlier [`Session::send`]s), it
    /// queues through the session instead, to keep order. A short count means
    /// TCP is full: `EndpointEvent::Session(Event::Writable)` follows when it
    /// has room.
    ///
    /// This function returns `Err(Error::Session(WouldBlock))` when nothing
    /// could be taken, and the session's errors of [`Session::send`].
    pub fn send(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        data: &[u8],
    ) -> Result<usize, Error> {
        let c = self.conn_mut(h).ok_or(Error::InvalidHandle)?;
        let t = session_instant(now);
        let direct = c
            .socket
            .filter(|_| c.session.send_queue() == 0 && c.aborted.is_none());
        let Some(sh) = direct else {
            return c.session.send(data).map_err(Error::from);
        };
        let socket = sockets.get_mut::<tcp::Socket>(sh);
        let mut result = Ok((0, 0));
        let _ = socket.send(|buf| {
            result = c.session.send_direct(t, data, buf);
            let written = result.as_ref().map_or(0, |&(_, w)| w);
            (written, ())
        });
        let (taken, written) = result?;
        c.link.note_written(written);
        if taken == data.len() {
            return Ok(taken);
        }
        // TCP has less room than a frame: the rest goes through the session's
        // buffer, flushed as TCP drains, and FD_WRITE comes from the session
        // when that buffer has room again. (Refusing here while TCP still
        // had a little room made the application spin on Writable.)
        match c.session.send(&data[taken..]) {
            Ok(n) => Ok(taken + n),
            Err(_) if taken > 0 => Ok(taken),
            Err(e) => Err(e.into()),
        }
    }

    /// Stream mode, zero-copy receive (like a socket `recv`): reads into
    /// `buf` straight from the TCP socket's receive buffer, without the
    /// session's buffer. Data the session already holds is read first, so
    /// order is kept; after the peer's DISCONNECT, and every byte before it,
    /// it returns `Ok(0)` like [`Session::recv`]. The first call switches the
    /// connection to direct receive: from then on the endpoint leaves DATA in
    /// the socket for this call and reports `Readable` when some is there.
    ///
    /// This function returns the errors of [`Session::recv`] (`WouldBlock`
    /// when nothing is there yet).
    pub fn recv(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let c = self.conn_mut(h).ok_or(Error::InvalidHandle)?;
        let t = session_instant(now);
        c.session.set_direct_receive(true);
        if c.session.recv_queue() > 0 {
            return c.session.recv(buf).map_err(Error::from);
        }
        let mut written = 0;
        if let Some(sh) = c.socket.filter(|_| c.aborted.is_none()) {
            let socket = sockets.get_mut::<tcp::Socket>(sh);
            // Two passes: the ring's contiguous part, then the wrapped part.
            for _ in 0..2 {
                let mut took = 0;
                let _ = socket.recv(|wire| {
                    let (consumed, w) = c.session.recv_direct(t, wire, &mut buf[written..]);
                    took = consumed;
                    written += w;
                    (consumed, ())
                });
                if took == 0 || written == buf.len() {
                    break;
                }
            }
            // Control frames read here may have queued output (a reply, FIN).
            c.last_tcp_state = None;
        }
        if written > 0 {
            return Ok(written);
        }
        c.session.recv(buf).map_err(Error::from)
    }

    /// The pending request of an incoming connection (after `Defer`, or when
    /// no condition function is installed).
    pub fn request(&self, h: Handle) -> Option<&IncomingRequest> {
        self.conn(h)?.request.as_deref()
    }

    /// The local and remote endpoints of a connection, once known.
    pub fn endpoints(&self, h: Handle) -> Option<(Option<IpEndpoint>, Option<IpEndpoint>)> {
        self.conn(h).map(|c| (c.local, c.remote))
    }

    /// CF_ACCEPT for a pending request: the connection becomes the application's.
    ///
    /// This function returns `Err(Error::NotPending)` unless the connection is
    /// waiting for a decision, and the session's errors (`InvalidGrant`,
    /// `TooLarge`) otherwise.
    pub fn accept(
        &mut self,
        h: Handle,
        now: SmolInstant,
        callee_data: Option<&[u8]>,
        granted: Options,
    ) -> Result<(), Error> {
        let c = self.conn_mut(h).ok_or(Error::InvalidHandle)?;
        if c.phase != Phase::Pending || c.request.is_none() {
            return Err(Error::NotPending);
        }
        c.session
            .accept(session_instant(now), callee_data, granted)?;
        c.phase = Phase::Owned;
        c.request = None;
        Ok(())
    }

    /// CF_REJECT for a pending request: the caller gets `Refused` with
    /// `reason` and `data`; the connection lingers until the caller's FIN.
    ///
    /// This function returns `Err(Error::NotPending)` unless the connection is
    /// waiting for a decision, and `TooLarge` for data over the caller's limit.
    pub fn reject(
        &mut self,
        h: Handle,
        now: SmolInstant,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        let c = self.conn_mut(h).ok_or(Error::InvalidHandle)?;
        if c.phase != Phase::Pending || c.request.is_none() {
            return Err(Error::NotPending);
        }
        c.session.reject(session_instant(now), reason, data)?;
        c.phase = Phase::Refused;
        c.request = None;
        self.stats.refused += 1;
        Ok(())
    }

    /// closesocket (graceful): returns at once; the session and its socket
    /// linger in the background until everything, disconnect data included,
    /// is delivered and the FIN exchange completes, or the linger timeout
    /// aborts. The handle is invalid afterwards.
    ///
    /// This function returns `Err(Error::InvalidHandle)` for a stale handle.
    pub fn close(&mut self, h: Handle, now: SmolInstant) -> Result<(), Error> {
        let c = self.conn_mut(h).ok_or(Error::InvalidHandle)?;
        c.session.close(session_instant(now));
        self.release(h);
        Ok(())
    }

    /// The application let go of `h`: invalidate the handle, and free the
    /// slot at once if nothing is left to linger for.
    fn release(&mut self, h: Handle) {
        let index = h.index as usize;
        let Some(c) = self.conns[index].as_mut() else {
            return;
        };
        c.phase = Phase::Released;
        c.generation = c.generation.wrapping_add(1);
        self.generations[index] = c.generation;
        self.try_free(index);
    }

    /// The one place a slot is freed: its socket is gone, its session has
    /// nothing left to do, every event queued for it was delivered (or
    /// dropped, for a released handle), and nobody holds its handle.
    fn try_free(&mut self, index: usize) {
        let Some(c) = self.conns[index].as_deref() else {
            return;
        };
        let unowned = matches!(c.phase, Phase::Released | Phase::Refused | Phase::Pending);
        if unowned && c.socket.is_none() && c.session.is_drained() && c.queued_events == 0 {
            self.conns[index] = None;
            self.generations[index] = self.generations[index].wrapping_add(1);
            self.free.push(index);
        }
    }

    /// Queues an event for the application, counting it against the slot.
    fn push_event(
        events: &mut VecDeque<(Handle, EndpointEvent)>,
        c: &mut Conn,
        h: Handle,
        e: EndpointEvent,
    ) {
        c.queued_events += 1;
        events.push_back((h, e));
    }

    /// closesocket with linger {1, 0}: ABORT with `reason` and `data`, then RST.
    /// The handle is invalid afterwards.
    ///
    /// This function returns `Err(Error::InvalidHandle)` for a stale handle
    /// and the session's `TooLarge` for oversize data.
    pub fn abort(
        &mut self,
        h: Handle,
        now: SmolInstant,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        let c = self.conn_mut(h).ok_or(Error::InvalidHandle)?;
        match c.session.abort(session_instant(now), reason, data) {
            Ok(()) | Err(bookend_session::Error::InvalidState { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.release(h);
        Ok(())
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
            c.queued_events = c.queued_events.saturating_sub(1);
            let current = c.generation == h.generation;
            // The last event of a connection nobody holds frees its slot.
            self.try_free(index);
            if current {
                return Some((h, e));
            }
        }
        None
    }

    /// When [`Endpoint::poll`] must run next, to be combined with
    /// `iface.poll_at` (the earlier wins). `Some(now)` if work is waiting.
    pub fn poll_at(&self, now: SmolInstant) -> Option<SmolInstant> {
        let _ = now;
        let mut next: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                next = Some(next.map_or(x, |n| n.min(x)));
            }
        };
        for c in self.conns.iter().flatten() {
            // Only work that no interface event will trigger: removing an
            // aborted socket after the RST went out, and freeing a released
            // slot. Bytes queued by the session need no wake-up of their own:
            // the application polls after its commands (call order, step 4),
            // and a send window opening again arrives through `iface.poll`.
            // (Waking for them would spin while TCP's window is closed.)
            if let Some(at) = c.aborted.filter(|_| c.socket.is_some()) {
                // Removal once the RST is out: the interface poll that sends it
                // runs before the next `poll` anyway; this is the fallback.
                consider(Some(at + self.config.abort_flush_timeout));
            }
            consider(c.session.poll_timeout());
            consider(
                c.link_poll_at
                    .filter(|_| c.socket.is_some() && c.aborted.is_none()),
            );
            consider(
                c.tcp_done_by
                    .filter(|_| c.socket.is_some() && c.aborted.is_none()),
            );
            #[cfg(feature = "conditional-accept")]
            if let Phase::SynPaused(by) = c.phase {
                consider(Some(by));
            }
        }
        next.map(smol_instant)
    }

    /// Step 2 of the call order: see the type docs.
    pub fn poll(&mut self, now: SmolInstant, iface: &mut Interface, sockets: &mut SocketSet<'_>) {
        let _ = iface;
        self.polls += 1;
        let t = session_instant(now);
        for id in 0..self.listeners.len() {
            self.take_listeners(id, t, sockets);
        }
        self.drop_duplicate_half_opens(t, sockets);
        for index in 0..self.conns.len() {
            self.poll_conn(index, t, sockets);
        }
        for id in 0..self.listeners.len() {
            self.rearm(id, sockets);
        }
    }

    /// Listening sockets that left LISTEN became connections.
    fn take_listeners(&mut self, id: usize, t: Instant, sockets: &mut SocketSet<'_>) {
        let mut i = 0;
        while i < self.listeners[id].armed.len() {
            let h = self.listeners[id].armed[i];
            let s = sockets.get::<tcp::Socket>(h);
            if s.state() == tcp::State::Listen {
                i += 1;
                continue;
            }
            self.listeners[id].armed.swap_remove(i);
            let (local, remote) = (s.local_endpoint(), s.remote_endpoint());
            self.stats.accepted_tcp += 1;
            let sid = self.next_id();
            let span = match (local, remote) {
                (Some(l), Some(r)) => tracing::debug_span!("conn", local = %l, remote = %r),
                _ => tracing::debug_span!("conn"),
            };
            let session = {
                let _g = span.enter();
                match Session::callee(self.config.session.clone(), sid, t) {
                    Ok(s) => s,
                    Err(_) => continue,
                }
            };
            #[cfg(feature = "conditional-accept")]
            let phase = if self.listeners[id].tcp_condition.is_some()
                && s.state() == tcp::State::SynReceived
            {
                Phase::SynPaused(t + self.syn_defer_timeout)
            } else {
                Phase::Pending
            };
            #[cfg(not(feature = "conditional-accept"))]
            let phase = Phase::Pending;
            trace!(?local, ?remote, "listener taken");
            let link = Link::new(t, self.config.tcp_timeout, self.config.abort_flush_timeout);
            self.alloc_conn(|generation| Conn {
                generation,
                socket: Some(h),
                session,
                link,
                phase,
                listener: Some(id),
                local,
                remote,
                ephemeral_port: None,
                connect_args: None,
                request: None,
                tcp_done_by: None,
                aborted: None,
                last_tcp_state: None,
                queued_events: 0,
                link_poll_at: None,
                span,
            });
        }
    }

    /// A lost SYN-ACK plus a re-armed listener gives two half-open sockets for
    /// one 4-tuple; smoltcp hands every segment to the lower slot, so the
    /// other one would retransmit SYN-ACKs forever. Remove it without a RST
    /// (a RST would kill the caller's real connection).
    fn drop_duplicate_half_opens(&mut self, t: Instant, sockets: &mut SocketSet<'_>) {
        // Only a half-open socket can be a stale duplicate, and half-open
        // sockets are few: find them first, so an idle endpoint pays one
        // cheap pass and no allocation.
        let listener_born = |c: &Conn| c.listener.is_some() && c.aborted.is_none();
        let mut drop = Vec::new();
        for (index, c) in self.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            let (Some(l), Some(r), Some(h)) = (c.local, c.remote, c.socket) else {
                continue;
            };
            if !listener_born(c) || sockets.get::<tcp::Socket>(h).state() != tcp::State::SynReceived
            {
                continue;
            }
            // Every segment for this tuple goes to the lowest slot holding it:
            // if another connection has a lower one, this socket never completes.
            let shadowed = self.conns.iter().flatten().any(|o| {
                listener_born(o)
                    && o.local == Some(l)
                    && o.remote == Some(r)
                    && o.socket.is_some_and(|oh| oh < h)
            });
            if shadowed {
                drop.push(index);
            }
        }
        for index in drop {
            if let Some(c) = self.conns[index].as_deref_mut() {
                debug!(remote = ?c.remote, "dropping duplicate half-open socket");
                if let Some(h) = c.socket.take() {
                    sockets.remove(h);
                }
                Self::end_unseen(c, t);
                self.stats.duplicates_dropped += 1;
            }
            self.try_free(index);
        }
    }

    /// Ends the session of a connection the application never saw, whose
    /// transport is gone: it drains at once.
    fn end_unseen(c: &mut Conn, t: Instant) {
        c.session
            .handle_transport_closed(t, bookend_session::TransportClosed::Reset);
        while c.session.poll_event().is_some() {}
        while c.session.poll_transport_action().is_some() {}
    }

    /// Whether a listener-born socket is no longer the connection it was
    /// taken for: smoltcp 0.14 puts a socket reset in SYN-RECEIVED back into
    /// LISTEN (it would then take the next caller's SYN as a hidden,
    /// unmanaged listener, bypassing SO_CONDITIONAL_ACCEPT), and within one
    /// interface poll that listener may already hold another caller.
    fn lost_its_caller(c: &Conn, socket: &tcp::Socket<'_>) -> bool {
        c.listener.is_some()
            && (socket.state() == tcp::State::Listen
                || (socket.remote_endpoint().is_some() && socket.remote_endpoint() != c.remote))
    }

    /// Drives one connection: the whole of its life after creation is here
    /// and in [`Endpoint::try_free`].
    fn poll_conn(&mut self, index: usize, t: Instant, sockets: &mut SocketSet<'_>) {
        let Some(c) = self.conns[index].as_deref_mut() else {
            return;
        };
        let span = c.span.clone();
        let _g = span.enter();
        let handle = Handle {
            index: index as u32,
            generation: c.generation,
        };

        if let Some(h) = c.socket {
            if let Some(at) = c.aborted {
                // The RST is out once smoltcp has forgotten the 4-tuple.
                let socket = sockets.get::<tcp::Socket>(h);
                if socket.remote_endpoint().is_none() || t >= at + self.config.abort_flush_timeout {
                    sockets.remove(h);
                    c.socket = None;
                    c.tcp_done_by = None;
                }
            } else if Self::lost_its_caller(c, sockets.get::<tcp::Socket>(h)) {
                let socket = sockets.get_mut::<tcp::Socket>(h);
                debug!(state = %socket.state(), "reset in SYN-RECEIVED: dropping the socket");
                if socket.state() == tcp::State::Listen {
                    // A bare listener: nothing to send.
                    sockets.remove(h);
                    c.socket = None;
                } else {
                    // It took another caller's SYN: refuse that one, which retries.
                    socket.abort();
                    c.aborted = Some(t);
                }
                self.stats.reset_in_syn_received += 1;
                c.session
                    .handle_transport_closed(t, bookend_session::TransportClosed::Reset);
                #[cfg(feature = "conditional-accept")]
                if let Phase::SynPaused(_) = c.phase {
                    c.phase = Phase::Pending;
                }
            } else {
                let socket = sockets.get_mut::<tcp::Socket>(h);
                // Idle: nothing arrived, nothing to send, no timer due, and
                // TCP's state unchanged. Skipping keeps poll cost low with
                // many idle sessions.
                let state = socket.state();
                let idle = c.last_tcp_state == Some(state)
                    && socket.recv_queue() == 0
                    && c.session.send_queue() == 0
                    && c.connect_args.is_none()
                    && !c.link.reset_pending()
                    && c.link_poll_at.is_none_or(|d| d > t)
                    && c.session.poll_timeout().is_none_or(|d| d > t)
                    && c.session.pending_events() == 0
                    && c.tcp_done_by.is_none_or(|d| d > t)
                    && !Self::syn_paused(c.phase);
                if idle {
                    return;
                }
                c.last_tcp_state = Some(state);
                if c.local.is_none() {
                    c.local = socket.local_endpoint();
                }
                #[cfg(feature = "conditional-accept")]
                if let Phase::SynPaused(by) = c.phase {
                    let decision = match (c.listener, c.local, c.remote) {
                        (Some(l), Some(local), Some(remote))
                            if socket.state() == tcp::State::SynReceived =>
                        {
                            match self.listeners[l].tcp_condition.as_mut() {
                                Some(f) => f(remote, local),
                                None => TcpDecision::Accept,
                            }
                        }
                        _ => TcpDecision::Accept,
                    };
                    let decision = if decision == TcpDecision::Defer && t >= by {
                        TcpDecision::Refuse
                    } else {
                        decision
                    };
                    match decision {
                        TcpDecision::Accept => {
                            socket.pause_synack(false);
                            c.phase = Phase::Pending;
                        }
                        TcpDecision::Refuse => {
                            debug!("SO_CONDITIONAL_ACCEPT refused: RST");
                            socket.abort();
                            c.aborted = Some(t);
                            c.phase = Phase::Refused;
                            self.stats.refused += 1;
                            Self::end_unseen(c, t);
                            return;
                        }
                        TcpDecision::Defer => return,
                    }
                }
                if let Some((data, options)) = c.connect_args.as_deref()
                    && c.session.state() == State::Idle
                    && TcpConnection::is_established(socket)
                {
                    let _ = c.session.connect(t, data.as_deref(), *options);
                    c.connect_args = None;
                }
                if !c.link.established() && TcpConnection::is_established(socket) {
                    // From here the pump keeps the user timeout: smoltcp's
                    // own would make a peer's RST look like a time-out.
                    socket.set_timeout(None);
                }
                for _ in 0..4 {
                    if !c.link.pump(&mut c.session, socket, t) {
                        break;
                    }
                }
                c.link_poll_at = c.link.poll_at(socket);
                if c.link.aborted() {
                    c.aborted = Some(t);
                }
            }
        }

        // Events: the application's, or the condition function's.
        while let Some(event) = c.session.poll_event() {
            match (&event, c.phase) {
                (Event::ConnectRequest(req), Phase::Pending) => {
                    let request = IncomingRequest {
                        handle,
                        caller: c.remote.unwrap_or(IpEndpoint::new(
                            smoltcp::wire::IpAddress::v4(0, 0, 0, 0),
                            0,
                        )),
                        callee: c.local.unwrap_or(IpEndpoint::new(
                            smoltcp::wire::IpAddress::v4(0, 0, 0, 0),
                            0,
                        )),
                        caller_data: req.caller_data.clone(),
                        proposed: req.proposed,
                        grant: req.grant,
                    };
                    let decision = c
                        .listener
                        .and_then(|l| self.listeners[l].condition.as_mut())
                        .map(|f| f(&request));
                    match decision {
                        Some(Decision::Accept {
                            callee_data,
                            granted,
                        }) => match c.session.accept(t, callee_data.as_deref(), granted) {
                            Ok(()) => {
                                c.phase = Phase::Owned;
                                Self::push_event(
                                    &mut self.events,
                                    c,
                                    handle,
                                    EndpointEvent::Accepted(request),
                                );
                            }
                            Err(e) => {
                                debug!(error = %e, "condition function's accept refused; rejecting");
                                let _ = c.session.reject(t, Reason::REJECTED, None);
                                c.phase = Phase::Refused;
                                self.stats.refused += 1;
                            }
                        },
                        Some(Decision::Reject { reason, data }) => {
                            if c.session.reject(t, reason, data.as_deref()).is_err() {
                                let _ = c.session.reject(t, reason, None);
                            }
                            c.phase = Phase::Refused;
                            self.stats.refused += 1;
                        }
                        Some(Decision::Defer) | None => {
                            if decision.is_some() {
                                let _ = c.session.defer();
                            }
                            c.request = Some(Box::new(request.clone()));
                            Self::push_event(
                                &mut self.events,
                                c,
                                handle,
                                EndpointEvent::Incoming(request),
                            );
                        }
                    }
                }
                (_, Phase::Owned) => {
                    Self::push_event(&mut self.events, c, handle, EndpointEvent::Session(event))
                }
                (Event::Closed(reason), _) => {
                    trace!(%reason, "closed in the background");
                    if c.phase == Phase::Pending {
                        if c.request.take().is_some() {
                            // The application was told of this request: tell it it
                            // is gone. The slot stays until this is delivered.
                            Self::push_event(
                                &mut self.events,
                                c,
                                handle,
                                EndpointEvent::Session(event.clone()),
                            );
                        }
                        c.phase = Phase::Refused;
                        if !matches!(reason, CloseReason::Rejected { .. }) {
                            self.stats.refused += 1;
                        }
                    }
                }
                _ => {}
            }
        }

        // Release the TCP socket once the session is done and TCP has finished
        // (or would not finish in time).
        if let Some(h) = c.socket
            && c.aborted.is_none()
            && c.session.is_drained()
        {
            let socket = sockets.get_mut::<tcp::Socket>(h);
            if TcpConnection::is_finished(socket) || c.link.gone() {
                // TIME-WAIT is cut short here; outgoing ports stay quarantined.
                sockets.remove(h);
                c.socket = None;
                c.tcp_done_by = None;
            } else {
                let by = *c
                    .tcp_done_by
                    .get_or_insert(t + self.config.tcp_close_timeout);
                if t >= by {
                    debug!(state = %socket.state(), "TCP close did not finish: aborting");
                    socket.abort();
                    c.aborted = Some(t);
                    self.stats.close_timeouts += 1;
                }
            }
        }
        if c.socket.is_none()
            && let Some(port) = c.ephemeral_port.take()
        {
            self.ports.release(port, t);
        }
        self.try_free(index);
    }
}
