/*! Runs bookend sessions over smoltcp 0.14 TCP sockets.

bookend gives TCP Windows Sockets 2 connect data, conditional accept and
disconnect data (`docs/protocol.md`). `bookend-session` is the protocol logic;
this crate binds sessions to smoltcp TCP sockets and hides smoltcp's traps
(each verified against smoltcp 0.14.0):

| smoltcp trap | what the [`Endpoint`] does |
|---|---|
| no backlog: a listening socket *becomes* the connection, and a SYN finding none gets RST | a pool of `ListenConfig::backlog` listening sockets, re-armed as soon as one is taken, within `max_pending` |
| a lost SYN-ACK plus a re-armed listener leaves a duplicate half-open socket retransmitting SYN-ACKs forever | duplicates for one 4-tuple are detected after each poll and the stale one is removed without a RST |
| no default timeouts: retransmission never gives up; `set_timeout` also kills idle connections | every socket is given up after `Config::give_up_after` (the user timeout `Config::tcp_timeout` plus one retransmission interval) and gets a shorter `tcp_keep_alive`; the session adds connect, handshake, decision, linger and idle timers |
| `connect` needs an application-chosen local port; no TIME-WAIT protection on reuse | an ephemeral port allocator that skips live ports and quarantines closed ones for `Config::time_wait` |
| `Config::random_seed` defaults to 0: the same ISNs every boot | `Config` requires a seed; [`Config::interface_seed`] derives one for the interface, and `Config::from_os_entropy` (std) takes one from the OS |
| `SocketSet::remove` sends nothing to the peer | sockets leave the set (or, provided ones, are parked in it) only when TCP is finished, or after `abort()` and one more interface poll so the RST is really sent |
| reset and time-out look the same (`Closed` + `InvalidState`) | a connection silent for the whole user timeout is reported as timed out, otherwise as reset |
| TIME-WAIT is a fixed 10 s and unread data is wiped when it ends | received bytes are pumped into the session before; finished sockets are released at once |

# Driving model

The application owns the smoltcp `Interface`, its `Device` and the
`SocketSet`. See [`Endpoint`] for the required call order:
`iface.poll`, then [`Endpoint::poll`], then [`Endpoint::poll_event`] until
empty, and sleep until [`Endpoint::next_poll`] (the earlier of `iface.poll_at`
and [`Endpoint::poll_at`], except while a SYN-ACK is held by `Defer`).

# Listeners

[`Endpoint::listen`] keeps `backlog` listening sockets armed (within
`Config::max_connections`), re-armed as soon as one is taken, whatever is
queued behind them: a caller whose SYN is taken always learns why it is not
served. smoltcp has no SYN queue, so SYNs beyond the armed sockets in one
interface poll are answered RST by smoltcp (the caller's connect is reset:
WSAECONNREFUSED); size `backlog` for the bursts expected. A connection
whose CONNECT has not arrived is *handshaking* (a SYN-ACK held by
`TcpDecision::Defer` included): one source may hold
`ListenConfig::max_per_source` of them, all sources together
`max_handshaking` (beyond either, the oldest is evicted with
ABORT(`HANDSHAKE_TIMEOUT`)), and each is aborted after the session's
handshake timeout (360 s; 2 s under load): the defence against slowloris
and SYN floods (see [`ListenConfig`]). Beyond `max_pending` undecided
requests, a new CONNECT is answered REJECT(`BUSY`). Once CONNECT arrives, WSAAccept's condition function
([`Endpoint::accept_with`]) or the application ([`EndpointEvent::Incoming`])
decides: accept, reject with reason and data, or defer (bounded by the
decision timeout, 10 s). Deferred requests do not block the ones behind them.

With the `conditional-accept` feature, [`Endpoint::tcp_accept_with`] decides on
the caller's address before the SYN-ACK (SO_CONDITIONAL_ACCEPT, through
smoltcp's `pause_synack`): refusal is a RST, so the caller's connect is *reset*
(it never sees `Refused`, which needs a session); deferral keeps the SYN-ACK
paused for at most [`Endpoint::set_syn_defer_timeout`] (5 s).

# Memory: TCP buffers from the application's storage

By default ([`TcpBuffers::Heap`]) the endpoint allocates each socket's
buffers (`Config::tcp_rx_buffer`, `tcp_tx_buffer`: 64 KiB each way) when a
listener arms or a connection starts. With [`TcpBuffers::Provided`] it
allocates none: the application gives it sockets over its own storage
([`Endpoint::add_socket`], [`TcpStorage`] for a `static`), which stay in the
`SocketSet` and are reused, closed silently between connections. Listeners
share a pool smaller than their backlogs, and `connect` or `listen` takes a
socket from the listener with the most (each keeps one); with none to be
had they fail with [`Error::NoSocket`].
[`Config::small`] sizes everything else for firmware (1 KiB TCP buffers,
4 KiB session buffers, 2 KiB messages). What remains on the heap is the
session state (about 210 B per idle connection) and the session's buffers
while data is in flight, bounded by the session configuration;
`docs/memory.md` has the measured budget of each configuration.

# Timeouts and their defaults

| timeout | default | where |
|---|---|---|
| TCP user timeout: the longest outage ridden out; given up 60 s later (smoltcp's largest retransmission interval), so a retransmission follows any shorter outage | 300 s (given up at 360 s) | `Config::tcp_timeout`, `Config::give_up_after` |
| TCP keep-alive | 10 s | `Config::tcp_keep_alive` |
| TCP close (FIN exchange after the session ended; from the last ACK, and the user timeout while bytes are unacknowledged) | 10 s | `Config::tcp_close_timeout` |
| abort flush (ABORT frame before RST) | 1 s to reach TCP, 1 s more to be acknowledged | `session::Config::abort_flush_timeout`, `Config::abort_ack_timeout` |
| TIME-WAIT port quarantine | 10 s | `Config::time_wait` |
| connect (CONNECT to ACCEPT/REJECT; paused while CONNECT is unacknowledged) | 360 s | `Config::session.connect_timeout` |
| handshake (TCP up to CONNECT complete) | 360 s (2 s under load) | `Config::session.handshake_timeout` |
| decision (CONNECT to accept/reject, CF_DEFER included) | 10 s | `Config::session.decision_timeout` |
| linger (after close, until the peer's FIN; paused while anything sent, our FIN included, is unacknowledged, for at most the user timeout without progress) | 10 s | `Config::session.linger_timeout` |
| session keepalive / idle | 30 s / 90 s | `Config::session.options.keepalive_ms` |
| SYN-ACK pause on `TcpDecision::Defer` | 5 s | [`Endpoint::set_syn_defer_timeout`] |

`docs/winsock-mapping.md` maps every event and error onto its Winsock name.
*/
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod config;
mod endpoint;
mod fmt;
mod ports;
mod storage;
pub mod transport;

pub use config::{
    Config, ConfigError, ListenConfig, MAX_RETRANSMIT_INTERVAL, SessionBuffering, TcpBuffers,
};
#[cfg(feature = "conditional-accept")]
pub use endpoint::TcpDecision;
pub use endpoint::{
    Decision, Endpoint, EndpointEvent, Error, Handle, IncomingRequest, ListenerId,
    SYN_DEFER_RECHECK, Stats, phase_table,
};
pub use storage::TcpStorage;

// What this crate's API names from its dependencies, so that one dependency
// is enough and the versions always match.
/// The session types this crate's API names (`Options`, `Event`,
/// `CloseReason`, `Reason`, the session's `Config`), and the rest of the
/// session crate.
pub use bookend_session as session;
pub use bookend_session::{CloseReason, Event, Integrity, Mode, Options, Reason};
pub use bytes::Bytes;
/// The smoltcp this crate is built on: its `Interface`, `SocketSet`,
/// `Instant` and `IpEndpoint` are the ones this crate's API takes.
pub use smoltcp;
