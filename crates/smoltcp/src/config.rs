//! Endpoint and listener configuration. Every limit and timeout is here, with
//! its default; `docs/winsock-mapping.md` and the crate docs explain each.

use core::ops::RangeInclusive;
use core::time::Duration;

use bookend_session::Config as SessionConfig;

/// Configuration of an [`crate::Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Session configuration (options, protocol timers, session buffers).
    pub session: SessionConfig,
    /// Seed for this endpoint's own randomness (the ephemeral port walk). Use
    /// the same seed source for smoltcp's `iface::Config::random_seed`, which
    /// defaults to 0 and then gives identical ISNs on every boot:
    /// [`Config::interface_seed`] derives one.
    pub seed: u64,
    /// Where TCP sockets' buffers come from (default [`TcpBuffers::Heap`]).
    pub tcp_buffers: TcpBuffers,
    /// Where sessions' buffers come from (default
    /// [`SessionBuffering::Heap`]).
    pub session_buffers: SessionBuffering,
    /// TCP receive buffer per connection, bytes (default 64 KiB), with
    /// [`TcpBuffers::Heap`]; provided sockets bring their own.
    pub tcp_rx_buffer: usize,
    /// TCP send buffer per connection, bytes (default 64 KiB), with
    /// [`TcpBuffers::Heap`]; provided sockets bring their own.
    pub tcp_tx_buffer: usize,
    /// TCP user timeout: the longest outage a connection rides out, from
    /// SYN-SENT and SYN-RECEIVED to the end of the session (after it, the FIN
    /// exchange is bounded by `tcp_close_timeout`). A connection is
    /// given up once nothing was received (or, established, nothing newly
    /// acknowledged while bytes wait) for this long plus
    /// [`MAX_RETRANSMIT_INTERVAL`] ([`Config::give_up_after`]): smoltcp sends
    /// its retransmissions up to 60 s apart, so without that margin an outage
    /// just shorter than the timeout would end with no retransmission after
    /// it. Default 300 s: RFC 1122 §4.2.3.5 asks at least 100 s for data and
    /// 3 minutes for a SYN; smoltcp's retransmission timeout doubles up to
    /// 60 s and stays backed off until a fresh sample, so 120 s left as few as
    /// two more tries and lost 0.5 % of the seed scenario's sessions at 10 %
    /// loss (`bookend soak`), 300 s none. A vanished peer is detected within
    /// `give_up_after` of the next unacknowledged PING. smoltcp has no
    /// timeout of its own and retransmits forever.
    pub tcp_timeout: Duration,
    /// TCP keep-alive interval; must be shorter than `tcp_timeout`, which
    /// smoltcp otherwise also applies to idle connections (default 10 s).
    pub tcp_keep_alive: Duration,
    /// TCP delayed-ACK time (`None` disables delayed ACKs; default 10 ms, smoltcp's).
    pub tcp_ack_delay: Option<Duration>,
    /// Nagle's algorithm (default off: session frames are small and latency matters).
    pub tcp_nagle: bool,
    /// Local ports for outgoing connections (default 49152..=65535, RFC 6335).
    pub ephemeral_ports: RangeInclusive<u16>,
    /// How long a closed 4-tuple is kept out of use by `connect`: smoltcp's
    /// TIME-WAIT is 10 s, and sockets are released from the set before it ends
    /// (default 10 s).
    pub time_wait: Duration,
    /// After the session ended gracefully, how long the TCP FIN/ACK exchange
    /// may take before the socket is aborted (default 10 s), counted from
    /// the session's end or the last acknowledgement, whichever is later;
    /// while bytes are unacknowledged, the longer of this and the give-up time
    /// ([`Config::give_up_after`]). Once our FIN is acknowledged (FIN-WAIT-2),
    /// this alone bounds the wait for the peer's: an outage then longer than
    /// it ends the TCP close with a RST, after the session itself had ended.
    pub tcp_close_timeout: Duration,
    /// After the session asked for a reset, how long the bytes TCP holds
    /// (the ABORT frame) may take to be acknowledged before the RST goes
    /// anyway (default 1 s): the second stage of §7's abort flush, after the
    /// session's own `abort_flush_timeout` (ABORT handed to TCP), so that the
    /// RST follows the ABORT within 2 s in all. Named apart from the
    /// session's, which bounds the stage before it.
    pub abort_ack_timeout: Duration,
    /// Most connections this endpoint holds at once, all listeners and
    /// outgoing connections together (default 1024). Beyond it `connect`
    /// fails and listeners are not re-armed.
    pub max_connections: usize,
    /// Boxes of each kind kept for reuse when connections go quiet or end
    /// (default 16): session receive buffers, send buffers, handshake and
    /// close data, and connection slots. With them a busy endpoint rarely
    /// allocates; idle sessions hold none. Each pooled buffer is at most
    /// `bookend_session::MAX_SPARE_CAPACITY` (4 KiB), so the pools keep at
    /// most about `spare_parts` x 21 KiB after a burst (340 KiB by default);
    /// 0 turns pooling off (every box is freed at once).
    pub spare_parts: usize,
}

/// Where an endpoint's TCP sockets, and so their buffers, come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TcpBuffers {
    /// The endpoint makes a socket with `tcp_rx_buffer` + `tcp_tx_buffer`
    /// bytes of heap whenever a listener arms or a connection starts, and
    /// frees it when the connection is done with it.
    #[default]
    Heap,
    /// The endpoint uses only the sockets the application gives it with
    /// [`Endpoint::add_socket`](crate::Endpoint::add_socket), over the
    /// application's storage (a `static` [`TcpStorage`](crate::TcpStorage),
    /// say), and reuses them: it allocates no TCP buffer. Size the pool for
    /// the listeners' backlogs plus the outgoing connections wanted at
    /// once; with fewer, listeners arm fewer sockets (sharing them), and
    /// `connect` or a new listener takes one from the listener with the
    /// most sockets still listening, as long as that listener keeps one.
    /// With none to be had, `connect` and `listen` fail with
    /// [`Error::NoSocket`](crate::Error::NoSocket).
    Provided,
}

/// Where an endpoint's sessions keep their payload bytes (the frame in
/// assembly, received data, the send queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SessionBuffering {
    /// On the heap, within the session configuration's bounds; buffers the
    /// application gives with
    /// [`Endpoint::add_session_buffers`](crate::Endpoint::add_session_buffers)
    /// are used first, when there are any.
    #[default]
    Heap,
    /// Only in buffers the application gives with
    /// [`Endpoint::add_session_buffers`](crate::Endpoint::add_session_buffers)
    /// (a `static` [`SessionStorage`](bookend_session::SessionStorage),
    /// say), each reused once its connection is done: the endpoint then
    /// allocates nothing for payload bytes. With none free, `connect`
    /// fails with [`Error::NoSessionBuffers`](crate::Error::NoSessionBuffers)
    /// and an incoming connection is reset (counted in
    /// [`Stats::no_session_buffers`](crate::Stats::no_session_buffers)):
    /// give as many as there are provided sockets.
    Provided,
}

/// smoltcp's largest retransmission interval (`RTTE_MAX_RTO` in its TCP
/// socket, 60 s): the margin [`Config::give_up_after`] adds to the user
/// timeout, so that a retransmission always falls after an outage shorter
/// than `tcp_timeout`.
pub const MAX_RETRANSMIT_INTERVAL: Duration = Duration::from_secs(60);

impl Config {
    /// When a connection without progress is given up: `tcp_timeout` plus
    /// one retransmission interval, [`MAX_RETRANSMIT_INTERVAL`] or
    /// `tcp_timeout` itself if that is shorter (360 s by default). An outage
    /// shorter than `tcp_timeout` ends before it, and smoltcp's next
    /// retransmission comes within that interval of the outage's end (plus a
    /// round trip for its acknowledgement), so the outage is survived. With
    /// the default 300 s the margin is smoltcp's largest interval; for user
    /// timeouts of a few seconds, where the doubling interval can reach
    /// about twice the outage, the margin may be one interval short.
    pub fn give_up_after(&self) -> Duration {
        self.tcp_timeout + self.tcp_timeout.min(MAX_RETRANSMIT_INTERVAL)
    }

    /// The defaults, with `seed` for this endpoint's randomness.
    pub fn new(seed: u64) -> Self {
        Self {
            session: SessionConfig::default(),
            seed,
            tcp_buffers: TcpBuffers::Heap,
            session_buffers: SessionBuffering::Heap,
            tcp_rx_buffer: 64 * 1024,
            tcp_tx_buffer: 64 * 1024,
            tcp_timeout: Duration::from_secs(300),
            tcp_keep_alive: Duration::from_secs(10),
            tcp_ack_delay: Some(Duration::from_millis(10)),
            tcp_nagle: false,
            ephemeral_ports: 49152..=65535,
            time_wait: Duration::from_secs(10),
            tcp_close_timeout: Duration::from_secs(10),
            abort_ack_timeout: Duration::from_secs(1),
            max_connections: 1024,
            spare_parts: 16,
        }
    }

    /// The smallest useful configuration, for firmware: 1 KiB TCP buffers
    /// each way, [`SessionConfig::small`] (1 KiB frames, 2 KiB messages,
    /// 4 KiB session buffers), 16 connections and 2 spare parts of each
    /// kind; the rest as [`Config::new`]. `docs/memory.md` has what a
    /// connection costs with it. With [`TcpBuffers::Provided`] the TCP
    /// buffers are the application's own, of whatever size it chose.
    pub fn small(seed: u64) -> Self {
        Self {
            session: SessionConfig::small(),
            tcp_rx_buffer: 1024,
            tcp_tx_buffer: 1024,
            max_connections: 16,
            spare_parts: 2,
            ..Self::new(seed)
        }
    }

    /// The defaults, seeded from the operating system's randomness (the same
    /// source as `std`'s `HashMap` keys).
    #[cfg(feature = "std")]
    pub fn from_os_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(b"bookend");
        Self::new(h.finish())
    }

    /// A seed for smoltcp's `iface::Config::random_seed` derived from
    /// [`Config::seed`] (never 0, which would repeat ISNs across boots).
    pub fn interface_seed(&self) -> u64 {
        splitmix(self.seed ^ 0x1f2e_3d4c_5b6a_7988) | 1
    }

    /// Checks the configuration.
    ///
    /// This function returns `Err` with a description of the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.session.validate().map_err(ConfigError::Session)?;
        if self.tcp_keep_alive >= self.tcp_timeout {
            return Err(ConfigError::KeepAliveNotBelowTimeout);
        }
        if self.ephemeral_ports.is_empty() || *self.ephemeral_ports.start() == 0 {
            return Err(ConfigError::EphemeralPorts);
        }
        // Provided sockets bring their own buffers: the sizes are unused.
        let heap = self.tcp_buffers == TcpBuffers::Heap;
        for (field, value, checked) in [
            ("tcp_rx_buffer", self.tcp_rx_buffer, heap),
            ("tcp_tx_buffer", self.tcp_tx_buffer, heap),
            ("max_connections", self.max_connections, true),
        ] {
            if checked && value == 0 {
                return Err(ConfigError::Zero(field));
            }
        }
        Ok(())
    }
}

/// Why a configuration ([`Config`], [`ListenConfig`]) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// The session configuration, with the session's reason.
    Session(bookend_session::ConfigError),
    /// `tcp_keep_alive` is not shorter than `tcp_timeout` (smoltcp would
    /// apply the timeout to idle connections).
    KeepAliveNotBelowTimeout,
    /// `ephemeral_ports` is empty or includes port 0.
    EphemeralPorts,
    /// This field is zero, and must not be (a buffer size, a bound).
    Zero(&'static str),
    /// [`Endpoint::add_socket`](crate::Endpoint::add_socket) on an endpoint
    /// that makes its own sockets: it needs `tcp_buffers:
    /// TcpBuffers::Provided`.
    NotProvided,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Session(e) => write!(f, "session configuration: {e}"),
            Self::KeepAliveNotBelowTimeout => {
                write!(f, "tcp_keep_alive must be shorter than tcp_timeout")
            }
            Self::EphemeralPorts => {
                write!(
                    f,
                    "ephemeral_ports must be a non-empty range without port 0"
                )
            }
            Self::Zero(field) => write!(f, "{field} must be non-zero"),
            Self::NotProvided => {
                write!(f, "add_socket needs tcp_buffers: TcpBuffers::Provided")
            }
        }
    }
}

/// SplitMix64: a small, well-mixed step for seeds.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Configuration of one listening port: how many callers it holds at each
/// stage, and what it does beyond (`docs/protocol.md` §6.4).
///
/// The policy, from the SYN on:
/// * `backlog` listening sockets stay armed (within `Config::max_connections`):
///   they take that many SYNs per interface poll. smoltcp 0.14 has no SYN
///   queue, so SYNs beyond them in the same poll are answered RST by smoltcp;
///   size `backlog` for the bursts expected.
/// * A connection whose CONNECT has not arrived is *handshaking*, a SYN-ACK
///   held by SO_CONDITIONAL_ACCEPT's `Defer` included (its caller has not
///   even completed TCP's handshake; its time is the SYN-defer timeout, and
///   the loaded handshake time starts when it is released). One source
///   address may hold `max_per_source` of them: beyond, its oldest are
///   evicted (ABORT(`HANDSHAKE_TIMEOUT`) and RST), as many as it holds
///   beyond the share, each once it has had `loaded_handshake_timeout`
///   (at once under load). So one host cannot lock others out (slowloris),
///   its own silent connections give way to its newer callers (a NAT's
///   callers share one address), and an honest burst from one address,
///   whose CONNECTs arrive one round trip after the TCP handshake, is
///   answered (REJECT(`BUSY`) when there is no room). A connection with bytes waiting
///   in its socket is never evicted: they are read first. All sources
///   together hold `max_handshaking`: beyond, the oldest is evicted with
///   ABORT(`HANDSHAKE_TIMEOUT`), so a flood of silent connections ages out
///   instead of blocking new callers. Under load (half of `max_handshaking` in
///   use) a handshaking connection gets `loaded_handshake_timeout` instead of
///   the session's handshake timeout: a real caller sends CONNECT one round
///   trip after the TCP handshake.
/// * A CONNECT waiting for the application's decision (no condition function,
///   or CF_DEFER) is *undecided*. Beyond `max_pending` of them, a new CONNECT
///   is answered REJECT(`BUSY`) at once: a caller whose TCP connection was
///   accepted always learns why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ListenConfig {
    /// Listening sockets kept armed: how many SYNs can be taken at the same
    /// instant. smoltcp has no backlog; this pool is it (default 8).
    pub backlog: usize,
    /// Undecided requests held; beyond, REJECT(`BUSY`) (default 32).
    pub max_pending: usize,
    /// Handshaking connections held; beyond, the oldest is evicted (default 64).
    pub max_handshaking: usize,
    /// Handshaking connections one source address may hold (default 8).
    pub max_per_source: usize,
    /// Handshake time allowed while half of `max_handshaking` is in use
    /// (default 2 s).
    pub loaded_handshake_timeout: core::time::Duration,
}

impl ListenConfig {
    /// A listener with `backlog` armed sockets and at most `max_pending`
    /// undecided requests; the other bounds take their defaults.
    pub fn new(backlog: usize, max_pending: usize) -> Self {
        Self {
            backlog,
            max_pending,
            ..Self::default()
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            backlog: 8,
            max_pending: 32,
            max_handshaking: 64,
            max_per_source: 8,
            loaded_handshake_timeout: core::time::Duration::from_secs(2),
        }
    }
}
