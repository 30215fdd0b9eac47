//! The callee's side: a listener whose `accept()` yields each caller's
//! request (address, caller data, proposed options) before anything is
//! committed, to accept, reject or keep (WSAAccept's condition function).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bookend_session::{
    CloseReason, Config, ConnectRequest, Error as SessionError, Options, Reason, Session,
};
use bytes::Bytes;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use crate::conn::{self, Conn, Handshake, Transport};
use crate::connection::Connection;

/// A listener's bounds: what one listener holds for callers it has not
/// handed to the application yet (`docs/protocol.md` §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenConfig {
    /// Requests (complete CONNECTs) waiting in `accept()`'s queue (default
    /// 32); requests already yielded and kept undecided are the
    /// application's to bound. Beyond it a new request is answered
    /// REJECT(`BUSY`) at once: a caller whose TCP connection was accepted
    /// always learns why.
    pub max_pending: usize,
    /// TCP connections whose CONNECT has not arrived yet (default 64).
    /// Beyond it the listener accepts no more TCP connections until one
    /// completes or ends: further SYNs wait in the kernel's backlog, so the
    /// callers' TCP retries (§6.4).
    pub max_handshaking: usize,
    /// Under load (half of `max_handshaking` in use), the time a connection
    /// has to deliver its CONNECT before it is evicted with
    /// ABORT(`HANDSHAKE_TIMEOUT`) and RST (default 2 s): a real caller
    /// sends CONNECT one round trip after the TCP handshake, so silent
    /// connections (slowloris) age out instead of locking callers out for
    /// the session's 360 s handshake timer.
    pub loaded_handshake_timeout: std::time::Duration,
    /// Connections without a CONNECT one source address may hold (default
    /// 8): beyond that share its oldest are evicted, each once
    /// `loaded_handshake_timeout` has passed without its CONNECT, loaded or
    /// not, so that one host cannot hold the listener's bound alone, and a
    /// source's silent connections give way to its newer callers (a NAT's
    /// callers share one address).
    pub max_per_source: usize,
    /// The kernel's accept queue for the listening socket (`listen(2)`'s
    /// backlog; default 1024, capped by the kernel at
    /// `net.core.somaxconn`). TCP connections wait there until the
    /// listener takes them; a burst beyond it is dropped by the kernel
    /// (`ListenOverflows`) and the callers' TCP retries after its initial
    /// retransmission time-out (1 s, RFC 6298 §2.1). Tokio's and std's
    /// own listeners use 128, which a fleet of appliances reconnecting at
    /// once overflows.
    pub backlog: u32,
}

/// Largest `max_pending` and `max_handshaking`: tokio's semaphores and
/// channels count at most this many.
pub const MAX_LISTEN_BOUND: usize = Semaphore::MAX_PERMITS;

impl ListenConfig {
    /// Checks that the bounds can work: `max_pending` and
    /// `max_handshaking` from 1 to [`MAX_LISTEN_BOUND`], a
    /// `loaded_handshake_timeout` of at least 1 ms (zero would wake each
    /// waiting handshake without end), a `max_per_source` of at least 1.
    ///
    /// This function returns `Err` (`InvalidInput`) naming the first bound
    /// that cannot work.
    pub fn validate(&self) -> std::io::Result<()> {
        let bad = |what: &str| {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("ListenConfig::{what} out of range"),
            ))
        };
        if !(1..=MAX_LISTEN_BOUND).contains(&self.max_pending) {
            return bad("max_pending");
        }
        if !(1..=MAX_LISTEN_BOUND).contains(&self.max_handshaking) {
            return bad("max_handshaking");
        }
        if self.loaded_handshake_timeout < std::time::Duration::from_millis(1) {
            return bad("loaded_handshake_timeout");
        }
        if self.max_per_source == 0 {
            return bad("max_per_source");
        }
        Ok(())
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            max_pending: 32,
            max_handshaking: 64,
            loaded_handshake_timeout: std::time::Duration::from_secs(2),
            max_per_source: 8,
            backlog: 1024,
        }
    }
}

/// A bookend listener on a TCP port.
///
/// Dropping it stops accepting; requests already yielded are unaffected,
/// requests not yet taken are refused with REJECT(`SHUTTING_DOWN`).
#[derive(Debug)]
pub struct Listener {
    requests: mpsc::Receiver<Incoming>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Listens on `addr` with `config` for every session (its options are
    /// the callee's limits and what it grants) and the listener's bounds.
    ///
    /// This function returns `Err` if the address cannot be bound or the
    /// configuration is invalid.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: Config,
        listen: ListenConfig,
    ) -> std::io::Result<Self> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        listen.validate()?;
        let tcp = bind_tcp(addr, listen.backlog).await?;
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(listen.max_pending.max(1));
        let config = Arc::new(config);
        let acceptor = tokio::spawn(accept_loop(tcp, config, listen, tx));
        Ok(Self {
            requests: rx,
            local,
            acceptor,
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next caller's request: its address, caller data and proposed
    /// options, before anything is committed. A request kept without a
    /// decision (CF_DEFER) does not hold up the next `accept()`.
    ///
    /// Cancel safety: cancel-safe; a request is yielded only when this
    /// resolves.
    pub async fn accept(&mut self) -> Option<Incoming> {
        self.requests.recv().await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.requests.close();
        while let Ok(incoming) = self.requests.try_recv() {
            let _ = incoming.refuse(Reason::SHUTTING_DOWN, None);
        }
    }
}

/// Binds the first of `addr`'s addresses that binds, as
/// [`TcpListener::bind`] does, but with `backlog` for the accept queue.
async fn bind_tcp(addr: impl ToSocketAddrs, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As tokio's and std's listeners do: rebinding a port whose last
        // connections are in TIME_WAIT succeeds at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(backlog)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

async fn accept_loop(
    tcp: TcpListener,
    config: Arc<Config>,
    listen: ListenConfig,
    requests: mpsc::Sender<Incoming>,
) {
    let handshaking = Arc::new(Semaphore::new(listen.max_handshaking.max(1)));
    let sources = Arc::new(Sources::default());
    let ids = AtomicUsize::new(1);
    let start = |stream: tokio::net::TcpStream, peer: SocketAddr, permit| {
        start_handshake(
            stream,
            peer,
            permit,
            &config,
            listen,
            &requests,
            &handshaking,
            &sources,
            ids.fetch_add(1, Ordering::Relaxed) as u32,
        );
    };
    loop {
        // At the bound, take no more TCP connections: SYNs wait in the
        // kernel's backlog (§6.4).
        let Ok(permit) = handshaking.clone().acquire_owned().await else {
            return;
        };
        match tcp.accept().await {
            Ok((stream, peer)) => start(stream, peer, permit),
            Err(e) => {
                debug!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        }
        // Then every connection already waiting, up to a batch: a burst is
        // taken in one turn of this task, not one per turn of the runtime's
        // every other task, which let the kernel's accept queue overflow
        // (SYNs dropped, callers' TCP retrying after 1 s).
        for _ in 0..ACCEPT_BATCH {
            let Ok(permit) = handshaking.clone().try_acquire_owned() else {
                break;
            };
            let ready = std::future::poll_fn(|cx| match tcp.poll_accept(cx) {
                std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
                std::task::Poll::Pending => std::task::Poll::Ready(None),
            })
            .await;
            match ready {
                Some(Ok((stream, peer))) => start(stream, peer, permit),
                _ => break,
            }
        }
    }
}

/// Connections without a CONNECT, per source address: each source's in
/// the order they came (at most `max_handshaking` in all, which the
/// handshaking semaphore bounds), and the next arrival number.
#[derive(Default)]
struct Sources(std::sync::Mutex<(std::collections::HashMap<std::net::IpAddr, Vec<u64>>, u64)>);

/// One connection's place among its source's, released when dropped.
struct Place {
    sources: Arc<Sources>,
    ip: std::net::IpAddr,
    /// Its arrival number.
    seq: u64,
}

impl Sources {
    fn enter(self: &Arc<Self>, ip: std::net::IpAddr) -> Place {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let seq = g.1;
        g.1 += 1;
        g.0.entry(ip).or_default().push(seq);
        Place {
            sources: self.clone(),
            ip,
            seq,
        }
    }
}

impl Place {
    /// Whether this connection is one of its source's oldest beyond
    /// `share`: the ones that give way to the source's newer callers (§6.4).
    fn oldest_beyond(&self, share: usize) -> bool {
        let g = self.sources.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(&self.ip).is_some_and(|order| {
            let excess = order.len().saturating_sub(share);
            order
                .iter()
                .position(|&s| s == self.seq)
                .is_some_and(|at| at < excess)
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut g = self.sources.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(order) = g.0.get_mut(&self.ip) {
            order.retain(|&s| s != self.seq);
            if order.is_empty() {
                g.0.remove(&self.ip);
            }
        }
    }
}

/// Connections taken from the kernel's accept queue in one turn, at most.
const ACCEPT_BATCH: usize = 256;

/// Starts a callee session on an accepted TCP connection, and a task that
/// hands its request to `accept()` once its CONNECT is complete (or evicts
/// it under load, §6.4).
#[allow(clippy::too_many_arguments)]
fn start_handshake(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
    config: &Arc<Config>,
    listen: ListenConfig,
    requests: &mpsc::Sender<Incoming>,
    handshaking: &Arc<Semaphore>,
    sources: &Arc<Sources>,
    id: u32,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let epoch = tokio::time::Instant::now();
    let Ok(session) = Session::callee(config.clone(), id, bookend_session::Instant::ZERO) else {
        return;
    };
    let conn = Conn::new(session, epoch, peer, local);
    let span = tracing::debug_span!("bookend", %peer, role = "callee");
    conn::spawn(conn.clone(), stream, span);
    let requests = requests.clone();
    let handshaking = handshaking.clone();
    // Its place among its source's connections without a CONNECT, held
    // until this handshake ends.
    let place = sources.enter(peer.ip());
    tokio::spawn(async move {
        // Held until the CONNECT is complete or the session ends (the place
        // moved in whole: a block that used only a field of it would
        // capture just that field, and drop the place, and its count, at
        // once).
        let _permit = permit;
        let place = place;
        let outcome = loop {
            let request = conn.wait(|st| {
                if let Some(Handshake::Request(r)) = st.handshake.pop_front() {
                    return Some(Some(r));
                }
                st.closed.is_some().then_some(None)
            });
            match tokio::time::timeout(listen.loaded_handshake_timeout, request).await {
                Ok(outcome) => break outcome,
                Err(_) => {
                    let loaded =
                        handshaking.available_permits() * 2 <= listen.max_handshaking.max(1);
                    // Beyond its source's share, the oldest give way, each
                    // once it has had the loaded handshake time: a source's
                    // silent connections do not keep its newer callers out.
                    if loaded || place.oldest_beyond(listen.max_per_source) {
                        debug!("no CONNECT within the loaded handshake time: evicted");
                        let _ =
                            conn.command(|s, now| s.abort(now, Reason::HANDSHAKE_TIMEOUT, None));
                    }
                }
            }
        };
        // The source's share counts connections without a CONNECT: this
        // one's outcome is known, so it leaves its source's list now (a
        // refused caller lingering must not make a silent one look like the
        // oldest beyond the share).
        drop(place);
        // The permit is held until the connection is handed to the
        // application (the pending queue bounds it then) or the session has
        // finished with its socket: a refused or evicted caller's socket
        // lingers (the REJECT's linger, the ABORT's), and callers that never
        // close must not hold sockets beyond the bound.
        let finished = |conn: &Arc<Conn>| {
            let conn = conn.clone();
            async move { conn.wait(|st| st.done.then_some(())).await }
        };
        let Some(request) = outcome else {
            finished(&conn).await;
            return;
        };
        let incoming = Incoming {
            conn: Some(conn.clone()),
            request,
        };
        match requests.try_send(incoming) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(incoming)) => {
                debug!("pending requests at their bound: REJECT(BUSY)");
                let _ = incoming.refuse(Reason::BUSY, None);
                finished(&conn).await;
            }
            Err(mpsc::error::TrySendError::Closed(incoming)) => {
                // The listener is gone.
                let _ = incoming.refuse(Reason::SHUTTING_DOWN, None);
            }
        }
    });
}

/// The callee's side over a stream already established (TCP accepted
/// elsewhere, a TLS stream, a simulated network's stream: wrap what this
/// crate does not know in [`Plain`](crate::Plain)): waits for the caller's
/// CONNECT and yields its request, as [`Listener::accept`] does, with
/// `peer` and `local` as its addresses. The session's handshake timer
/// bounds the wait.
///
/// Cancel safety: dropping the future before it resolves closes the
/// session (the caller is answered).
///
/// This function returns `Err(ConnectError::Closed)` with how the session
/// ended if it ended before a request came (the caller left or reset, the
/// handshake timer, a malformed CONNECT, or one refused before the
/// application sees it: a mode not offered, integrity required), and
/// `Err(ConnectError::Invalid)` for an unusable configuration.
pub async fn accept_over<T: Transport>(
    stream: T,
    peer: SocketAddr,
    local: SocketAddr,
    config: Config,
) -> Result<Incoming, crate::ConnectError> {
    let session = Session::callee(
        config,
        crate::connection::next_id(),
        bookend_session::Instant::ZERO,
    )
    .map_err(|e| crate::ConnectError::Invalid(e.to_string()))?;
    let conn = Conn::new(session, tokio::time::Instant::now(), peer, local);
    let span = tracing::debug_span!("bookend", %peer, role = "callee");
    conn::spawn(conn.clone(), stream, span);
    // Cancel safety: dropped before a request came, the session is closed
    // (the caller is answered: ABORT before CONNECT, REJECT after it).
    struct Abandon(Option<Arc<Conn>>);
    impl Drop for Abandon {
        fn drop(&mut self) {
            if let Some(c) = self.0.take() {
                c.command(|s, now| s.close(now));
            }
        }
    }
    let mut abandon = Abandon(Some(conn.clone()));
    let outcome = conn
        .wait(|st| {
            if let Some(Handshake::Request(r)) = st.handshake.pop_front() {
                return Some(Ok(r));
            }
            if st.done {
                return st
                    .closed
                    .clone()
                    .map(|r| Err(crate::ConnectError::Closed(r)));
            }
            None
        })
        .await;
    abandon.0 = None;
    outcome.map(|request| Incoming {
        conn: Some(conn),
        request,
    })
}

/// A caller's request, yielded by [`Listener::accept`] before anything is
/// committed: WSAAccept's condition function sees it. Consume it with
/// exactly one of [`accept`](Self::accept) (CF_ACCEPT) or
/// [`reject`](Self::reject) (CF_REJECT), or keep it undecided (CF_DEFER)
/// until you decide or the session's decision timer answers
/// REJECT(`DECISION_TIMEOUT`).
///
/// **Dropping it undecided rejects it** with REJECT(`REJECTED`) (and logs a
/// warning): the caller always learns why.
pub struct Incoming {
    conn: Option<Arc<Conn>>,
    request: ConnectRequest,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("remote", &self.conn.as_ref().map(|c| c.peer))
            .field("caller_data", &self.request.caller_data)
            .field("proposed", &self.request.proposed)
            .finish()
    }
}

impl Incoming {
    /// The caller's address (WSAAccept's caller ID).
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn().peer
    }

    /// Our address (the callee ID).
    pub fn local_addr(&self) -> SocketAddr {
        self.conn().local
    }

    /// The caller data: `None` when the CONNECT carried none, distinct from
    /// an empty `Some`.
    pub fn caller_data(&self) -> Option<&Bytes> {
        self.request.caller_data.as_ref()
    }

    /// The options the caller proposed (the SQOS analog).
    pub fn proposed(&self) -> Options {
        self.request.proposed
    }

    /// The grant this listener's configuration would give: the usual
    /// argument of [`accept`](Self::accept).
    pub fn grant(&self) -> Options {
        self.request.grant
    }

    fn conn(&self) -> &Arc<Conn> {
        self.conn
            .as_ref()
            .expect("an undecided request holds its connection")
    }

    /// CF_ACCEPT: answers ACCEPT with `callee_data` and the `granted`
    /// options, and gives the connection.
    ///
    /// This function returns `Err(Undecided)`, with this request back and
    /// nothing sent, if the session refuses the decision: `InvalidGrant` if
    /// `granted` exceeds the proposal or changes the mode, `TooLarge` for
    /// callee data over the granted size (decide again), or the session's
    /// error if it has ended meanwhile (the decision timer, the caller's
    /// ABORT: dropping the request then does nothing more).
    pub async fn accept(
        mut self,
        callee_data: Option<&[u8]>,
        granted: Options,
    ) -> Result<Connection, Undecided> {
        let conn = self
            .conn
            .take()
            .expect("an undecided request holds its connection");
        match conn.command(|s, now| s.accept(now, callee_data, granted)) {
            Ok(()) => Ok(Connection::new(conn)),
            Err(error) => {
                self.conn = Some(conn);
                Err(Undecided {
                    incoming: self,
                    error,
                })
            }
        }
    }

    /// CF_REJECT: answers REJECT with `reason` and `data` (delivered to the
    /// caller), then FIN, and waits until the caller's FIN confirms it (or
    /// the linger timer). Returns how the session ended.
    ///
    /// This function returns `Err(Undecided)`, with this request back and
    /// nothing sent, for reject data over the caller's limit (`TooLarge`:
    /// decide again), or the session's error if it has ended meanwhile.
    pub async fn reject(
        mut self,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<CloseReason, Undecided> {
        let conn = self
            .conn
            .take()
            .expect("an undecided request holds its connection");
        if let Err(error) = conn.command(|s, now| s.reject(now, reason, data)) {
            self.conn = Some(conn);
            return Err(Undecided {
                incoming: self,
                error,
            });
        }
        Ok(Connection::new(conn).closed().await)
    }

    fn refuse(mut self, reason: Reason, data: Option<&[u8]>) -> Result<(), SessionError> {
        let conn = self
            .conn
            .take()
            .expect("an undecided request holds its connection");
        conn.command(|s, now| s.reject(now, reason, data))
    }
}

/// A decision on an [`Incoming`] request that the session refused: the
/// request, still undecided, and why. Decide again, or drop it (REJECT).
#[derive(Debug)]
pub struct Undecided {
    /// The request, back.
    pub incoming: Incoming,
    /// Why the decision was refused.
    pub error: SessionError,
}

impl std::fmt::Display for Undecided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decision refused: {}", self.error)
    }
}

impl std::error::Error for Undecided {}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            warn!(peer = %conn.peer, "request dropped undecided: REJECT(REJECTED)");
            let _ = conn.command(|s, now| s.reject(now, Reason::REJECTED, None));
        }
    }
}
