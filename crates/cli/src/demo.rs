//! `bookend demo`: the seed's transaction-total scenario on the simulated network.

use std::fmt;
use std::time::Instant as WallInstant;

use bookend_session::{CloseReason, Integrity, Mode, Options};
use bookend_sim::{App, Host, LinkConfig, RunError, Sim, Totals};
use bookend_smoltcp::{Config, Decision, Endpoint, ListenConfig};
use bytes::Bytes;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::apps::{Client, ClientState, GREETING, Padding, Policy, Server, Step, pad, step_table};

/// The port the server listens on.
pub const PORT: u16 = 7050;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Number of clients, each on its own host.
    pub clients: usize,
    /// Transactions (request and reply) each client performs.
    pub transactions: u64,
    /// Number of servers (clients are spread over them); 1 for the seed scenario.
    pub servers: usize,
    /// The link of every host, both directions.
    pub link: LinkConfig,
    /// The simulator's seed.
    pub seed: u64,
    /// Stream or message mode.
    pub mode: Mode,
    /// Listener backlog (armed listening sockets).
    pub backlog: usize,
    /// The server's link goes down at the first time and back at the second.
    pub partition: Option<(Instant, Instant)>,
    /// Host `.0` crashes at `.1` (and restarts at `.2`, if given): hosts
    /// `0..servers` are the servers, then one host per client. A crashed
    /// client does not come back; its server must notice on its own.
    pub crash: Option<(usize, Instant, Option<Instant>)>,
    /// Extra bytes carried by caller, callee, reject and disconnect data and
    /// by every request and reply (`docs/demo-payload.md`).
    pub padding: Padding,
    /// How the servers decide: reject some callers, defer every decision.
    pub policy: Policy,
    /// Session keepalive, milliseconds (also bounds how long a silent peer is
    /// waited for: 3 intervals).
    pub keepalive_ms: u32,
    /// Virtual time limit.
    pub limit: Duration,
    /// Keep the server's pcap capture in the report.
    pub capture: bool,
    /// The per-frame check clients propose and servers grant
    /// (`docs/protocol.md` §2.5). On by default in the demo: its totals
    /// must be exact, and `--corrupt` makes damage TCP misses likely.
    pub integrity: Integrity,
    /// Whether the servers grant the check to callers that propose it
    /// (`false` plays a peer configured without integrity).
    pub servers_grant_integrity: bool,
    /// IPv6 instead of IPv4 between the simulated hosts (feature `ipv6`).
    #[cfg(feature = "ipv6")]
    pub ipv6: bool,
    /// Whether the clients require the check rather than prefer it
    /// (`Config::require_integrity`): a client not granted it ends with
    /// ABORT(`INTEGRITY_REQUIRED`). On by default: the demo's servers always
    /// grant it, so a grant of none means the proposal was damaged on the
    /// way (CONNECT is not sealed, §2.5).
    pub require_integrity: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            clients: 10,
            transactions: 5,
            servers: 1,
            link: LinkConfig {
                latency: Duration::from_millis(5),
                ..LinkConfig::default()
            },
            seed: 1,
            mode: Mode::Stream,
            backlog: 8,
            partition: None,
            crash: None,
            keepalive_ms: 30_000,
            limit: Duration::from_secs(600),
            capture: false,
            integrity: Integrity::Crc32c,
            servers_grant_integrity: true,
            require_integrity: true,
            padding: Padding::default(),
            policy: Policy::default(),
            #[cfg(feature = "ipv6")]
            ipv6: false,
        }
    }
}

/// One client's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResult {
    /// Its name (caller data).
    pub name: String,
    /// Which server it used.
    pub server: usize,
    /// Transactions it completed (its total).
    pub transactions: u64,
    /// The grand total it received, if any.
    pub grand_total: Option<u64>,
    /// What the server says it sent this client.
    pub server_sent: Option<u64>,
    /// The transaction total the server says it received from this client.
    pub server_received: Option<u64>,
    /// Whether it finished.
    pub finished: bool,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Connect attempts.
    pub attempts: u32,
    /// Values it received other than the ones the server sends (replies,
    /// callee, reject and disconnect data): altered bytes that reached the
    /// application.
    pub wrong_replies: u64,
    /// Refused by the server as its policy said, with the expected reason:
    /// finished without a grand total.
    pub refused_as_expected: bool,
    /// Its session ended because a frame failed the CRC-32C check, on
    /// either side: damage TCP's checksum let through, caught.
    pub integrity_failure: bool,
}

/// The outcome of a demo run.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The configuration run.
    pub config: DemoConfig,
    /// The first client's steps, both sides.
    pub steps: Vec<Step>,
    /// Every client.
    pub clients: Vec<ClientResult>,
    /// Per server, its cumulative total at the end.
    pub cumulative: Vec<u64>,
    /// Sessions refused (REJECT) plus TCP-level refusals retried.
    pub refused: u64,
    /// Graceful closes the peer never confirmed (every endpoint's
    /// `Stats::unconfirmed_closes`).
    pub unconfirmed_closes: u64,
    /// Sessions ended by the CRC-32C check (every endpoint's
    /// `Stats::integrity_failures`): damage TCP's checksum missed.
    pub integrity_failures: u64,
    /// Per server, values it received altered (caller data, requests,
    /// disconnect data with the wrong padding or layout).
    pub servers_altered: Vec<u64>,
    /// Connections still held by any endpoint when the run ended: 0 unless
    /// the run stopped at its time limit with something not released.
    pub open_connections: usize,
    /// Network counters.
    pub totals: Totals,
    /// Virtual time at the end.
    pub virtual_time: Instant,
    /// Wall-clock time the run took.
    pub wall: std::time::Duration,
    /// Why the run stopped early, if it did.
    pub run_error: Option<RunError>,
    /// The server's traffic as a pcap file, if `capture` was set.
    pub pcap: Option<Vec<u8>>,
}

impl DemoReport {
    /// Sum of all client totals of server `s`, which its cumulative total must equal.
    pub fn expected(&self, s: usize) -> u64 {
        self.clients
            .iter()
            .filter(|c| c.server == s && c.finished && !c.refused_as_expected)
            .map(|c| c.transactions)
            .sum()
    }

    /// Values the applications received altered: replies of the wrong
    /// value, finished clients whose grand total is not what their server
    /// sent, and clients whose transaction total reached the server as
    /// another value (a client sends its total only once it completed every
    /// transaction). Unfinished clients are failures, not alterations.
    pub fn altered(&self) -> u64 {
        let servers: u64 = self.servers_altered.iter().sum();
        servers
            + self
                .clients
                .iter()
                .map(|c| {
                    c.wrong_replies
                        + u64::from(c.finished && c.grand_total != c.server_sent)
                        + u64::from(c.server_received.is_some_and(|t| t != c.transactions))
                })
                .sum::<u64>()
    }

    /// Clients neither finished nor failed when the run reached its time
    /// limit: still at work (TCP backing off on a lossy path, say), which is
    /// slowness, not a failure with a reason.
    pub fn still_running(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| !c.finished && c.failure.is_none())
            .count()
    }

    /// Whether every client finished and every total checks out.
    pub fn ok(&self) -> bool {
        self.altered() == 0
            && self.run_error.is_none()
            && self.clients.iter().all(|c| {
                c.finished
                    && (c.refused_as_expected
                        || (c.grand_total.is_some() && c.grand_total == c.server_sent))
            })
            && (0..self.config.servers).all(|s| self.cumulative[s] == self.expected(s))
    }

    /// The seed's table for the first client.
    pub fn step_table(&self) -> String {
        step_table(&self.steps)
    }

    /// The summary table.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let finished = self.clients.iter().filter(|c| c.finished).count();
        let grand: u64 = self.cumulative.iter().sum();
        let expected = c.clients as u64 * c.transactions;
        let check = if grand == expected && self.ok() {
            "correct"
        } else {
            "WRONG"
        };
        let l = &self.totals.links;
        let rows = [
            (
                "clients",
                match self.still_running() {
                    0 => format!("{} ({finished} finished)", c.clients),
                    n => format!(
                        "{} ({finished} finished, {n} still running at the {} limit)",
                        c.clients, c.limit
                    ),
                },
            ),
            (
                "transactions",
                format!("{} per client, {} in all", c.transactions, expected),
            ),
            (
                "grand total",
                format!("{grand} (expected {expected}: {check})"),
            ),
            (
                "altered values",
                format!(
                    "{} (every reply and grand total, checked by the clients)",
                    self.altered()
                ),
            ),
            ("sessions refused", self.refused.to_string()),
            ("unconfirmed closes", self.unconfirmed_closes.to_string()),
            (
                "integrity",
                match c.integrity {
                    Integrity::Crc32c => format!(
                        "CRC-32C on every frame; {} session(s) ended by a failed check",
                        self.integrity_failures
                    ),
                    Integrity::None => "off (TCP's checksum only)".to_string(),
                },
            ),
            ("retransmissions", self.totals.retransmissions.to_string()),
            (
                "drops",
                format!(
                    "{} (loss {}, queue {}, down {}, mtu {}); corrupted {}, duplicated {}, reordered {}",
                    l.dropped(),
                    l.dropped_loss,
                    l.dropped_queue,
                    l.dropped_down,
                    l.dropped_mtu,
                    l.corrupted,
                    l.duplicated,
                    l.reordered
                ),
            ),
            ("packets delivered", self.totals.delivered.to_string()),
            ("virtual time", self.virtual_time.to_string()),
            ("wall time", format!("{:.3}s", self.wall.as_secs_f64())),
        ];
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:<18} {v}\n"));
        }
        if let Some(e) = &self.run_error {
            out.push_str(&format!("{:<18} {e}\n", "stopped"));
        }
        for cl in self.clients.iter().filter(|c| !c.finished).take(10) {
            let (what, why) = match cl.failure.as_deref() {
                Some(why) => ("failed", why),
                None => ("still running", "at the time limit (raise --time-limit)"),
            };
            out.push_str(&format!(
                "{what:<18} {} (server {}): {why}\n",
                cl.name, cl.server,
            ));
        }
        out
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "The seed scenario for {} (steps 1-8 and 5a):\n",
            self.clients.first().map_or("-", |c| &c.name)
        )?;
        writeln!(f, "{}", self.step_table())?;
        write!(f, "{}", self.summary())
    }
}

struct DemoApp {
    config: DemoConfig,
    endpoints: Vec<Option<Endpoint>>,
    servers: Vec<Server>,
    clients: Vec<Client>,
}

impl DemoApp {
    fn server_of(&self, client: usize) -> usize {
        client % self.config.servers
    }

    fn endpoint_config(&self, host: usize) -> Config {
        let mut c = Config::new(
            self.config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(host as u64),
        );
        c.session.options.keepalive_ms = self.config.keepalive_ms;
        c.session.options.mode = self.config.mode;
        c.session.options.integrity = self.config.integrity;
        if host < self.config.servers {
            if !self.config.servers_grant_integrity {
                c.session.options.integrity = Integrity::None;
            }
        } else {
            c.session.require_integrity =
                self.config.require_integrity && self.config.integrity == Integrity::Crc32c;
        }
        // Every timer at its default: the defaults survive lossy links
        // (issue 11). Only a keepalive shorter than the default, asked for
        // to find dead peers sooner, scales the TCP user timeout and
        // keep-alive with it: once a PING goes unacknowledged, the user
        // timeout is what ends the session.
        let k = std::time::Duration::from_millis(u64::from(self.config.keepalive_ms));
        if self.config.keepalive_ms > 0 && self.config.keepalive_ms < Options::DEFAULT.keepalive_ms
        {
            c.tcp_keep_alive = k.max(std::time::Duration::from_secs(1));
            c.tcp_timeout = (k * 4).max(std::time::Duration::from_secs(4));
        }
        c
    }
}

impl App for DemoApp {
    fn poll(&mut self, host: usize, h: &mut Host, now: Instant) {
        let servers = self.config.servers;
        if self.endpoints[host].is_none() {
            let mut ep = Endpoint::new(self.endpoint_config(host)).expect("valid configuration");
            if host < servers {
                let backlog = self.config.backlog;
                let l = ep
                    .listen(
                        &mut h.sockets,
                        PORT,
                        ListenConfig::new(backlog, 4 * backlog.max(8)),
                    )
                    .expect("listen");
                if self.config.policy == Policy::default() {
                    // WSAAccept's condition function: CF_ACCEPT at once.
                    let greeting: Bytes = GREETING
                        .iter()
                        .copied()
                        .chain(pad(self.config.padding.connect))
                        .collect::<Vec<u8>>()
                        .into();
                    ep.accept_with(l, move |req| Decision::Accept {
                        callee_data: Some(greeting.clone()),
                        granted: req.grant,
                    });
                }
                // Otherwise the server application decides (CF_REJECT,
                // CF_DEFER) on each `Incoming` request.
            }
            self.endpoints[host] = Some(ep);
        }
        let Some(ep) = self.endpoints[host].as_mut() else {
            return;
        };
        // Call order: the interface was polled; then the endpoint; then the
        // application, whose commands hand their output to TCP themselves.
        ep.poll(now, &mut h.sockets);
        if host < servers {
            self.servers[host].poll(ep, &mut h.sockets, now);
        } else {
            self.clients[host - servers].poll(ep, &mut h.iface, &mut h.sockets, now);
        }
    }

    fn interface_poll_at(&mut self, host: usize, h: &mut Host, now: Instant) -> Option<Instant> {
        match self.endpoints.get(host).and_then(|ep| ep.as_ref()) {
            Some(ep) => h.poll_at_with(now, |iface, sockets| ep.next_poll(now, iface, sockets)),
            None => h.poll_at(now),
        }
    }

    fn poll_at(&mut self, host: usize, _h: &mut Host, now: Instant) -> Option<Instant> {
        let servers = self.config.servers;
        let ep = self
            .endpoints
            .get(host)?
            .as_ref()
            .and_then(|ep| ep.poll_at(now));
        let client = if host >= servers {
            self.clients[host - servers].poll_at()
        } else {
            self.servers[host].poll_at()
        };
        match (ep, client) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn done(&self, _sim: &Sim) -> bool {
        // Every connection released, clients' included: a connection still
        // held at the end is a leak the report shows (`open_connections`).
        self.clients.iter().all(Client::ended)
            && self
                .endpoints
                .iter()
                .flatten()
                .all(|ep| ep.connection_count() == 0)
    }
}

/// Runs the demo and reports; never panics on a failed scenario (the report says).
pub fn run(config: DemoConfig) -> DemoReport {
    let wall = WallInstant::now();
    let mut sim = Sim::new(config.seed);
    #[cfg(feature = "ipv6")]
    if config.ipv6 {
        sim.use_ipv6();
    }
    let hosts = config.servers + config.clients;
    for _ in 0..hosts {
        sim.add_host(config.link.clone());
    }
    if let Some((from, until)) = config.partition {
        sim.partition(0, from, until);
    }
    let mut app = DemoApp {
        endpoints: (0..hosts).map(|_| None).collect(),
        servers: (0..config.servers)
            .map(|s| {
                let mut server = Server::new(config.mode, (s == 0).then(|| "client-0".to_string()));
                server.padding = config.padding;
                server.policy = config.policy;
                server
            })
            .collect(),
        clients: Vec::new(),
        config: config.clone(),
    };
    for i in 0..config.clients {
        let server = app.server_of(i);
        let addr = IpEndpoint::new(sim.host_ip(server), PORT);
        // Starts spread over 5 ms per client, as real clients arrive.
        let start = Instant::from_micros((i as i64 * 5_000) % 500_000);
        let mut c = Client::new(
            format!("client-{i}"),
            addr,
            config.transactions,
            config.mode,
            start,
            i == 0,
        );
        c.keepalive_ms = config.keepalive_ms;
        c.integrity = config.integrity;
        c.padding = config.padding;
        c.expect_refusal = config.policy.rejects(&c.name);
        app.clients.push(c);
    }
    let mut run_error = None;
    match config.crash {
        Some((server, at, restart)) => {
            let until_crash = at - sim.now;
            // Running out of time before the crash is the plan; stalling is not.
            if let Err(e @ RunError::Stalled(_)) = sim.run(&mut app, until_crash) {
                run_error = Some(e);
            }
            if run_error.is_none() && !app.done(&sim) {
                sim.now = at;
                sim.crash(server);
                app.endpoints[server] = None;
                if server >= config.servers {
                    app.clients[server - config.servers].crash();
                }
                if let Some(up) = restart {
                    let _ = sim.run(&mut app, up - sim.now);
                    sim.now = sim.now.max(up);
                    sim.restart(server);
                    if server < config.servers {
                        // The host restarts empty; the run's accounting of
                        // what this server received and sent is kept, so
                        // that nothing it counted before the crash is lost.
                        let old = &mut app.servers[server];
                        let mut s = Server::new(config.mode, None);
                        s.padding = config.padding;
                        s.policy = config.policy;
                        s.altered = old.altered;
                        s.cumulative = old.cumulative;
                        s.finished = old.finished;
                        s.failures = old.failures;
                        s.totals = std::mem::take(&mut old.totals);
                        s.failed = std::mem::take(&mut old.failed);
                        app.servers[server] = s;
                    }
                }
                run_error = sim.run(&mut app, config.limit).err();
            }
        }
        None => run_error = sim.run(&mut app, config.limit).err(),
    }
    let clients = app
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let server = i % config.servers;
            ClientResult {
                name: c.name.clone(),
                server,
                transactions: config.transactions,
                grand_total: c.grand_total,
                server_sent: app.servers[server].totals.get(&c.name).map(|&(_, g)| g),
                server_received: app.servers[server].totals.get(&c.name).map(|&(t, _)| t),
                finished: c.state == ClientState::Finished,
                failure: match &c.state {
                    ClientState::Failed(why) => Some(why.clone()),
                    _ => None,
                },
                attempts: c.attempts,
                wrong_replies: c.wrong_replies,
                refused_as_expected: c.expect_refusal
                    && c.refused
                    && c.state == ClientState::Finished,
                integrity_failure: c
                    .close_reason
                    .as_ref()
                    .is_some_and(CloseReason::is_integrity_failure)
                    || app.servers[server]
                        .failed
                        .get(&c.name)
                        .is_some_and(CloseReason::is_integrity_failure),
            }
        })
        .collect();
    let app_capture = config.capture.then(|| sim.pcap(0));
    let mut steps = app
        .clients
        .first()
        .and_then(|c| c.steps.clone())
        .unwrap_or_default();
    steps.extend(
        app.servers
            .first()
            .map(|s| s.steps.clone())
            .unwrap_or_default(),
    );
    let refused = app
        .clients
        .iter()
        .map(|c| u64::from(c.refused) + u64::from(c.attempts.saturating_sub(1)))
        .sum();
    let unconfirmed_closes = app
        .endpoints
        .iter()
        .flatten()
        .map(|ep| ep.stats().unconfirmed_closes)
        .sum();
    let open_connections = app
        .endpoints
        .iter()
        .flatten()
        .map(Endpoint::connection_count)
        .sum();
    let integrity_failures = app
        .endpoints
        .iter()
        .flatten()
        .map(|ep| ep.stats().integrity_failures)
        .sum();
    DemoReport {
        servers_altered: app.servers.iter().map(|s| s.altered).collect(),
        open_connections,
        unconfirmed_closes,
        integrity_failures,
        cumulative: app.servers.iter().map(|s| s.cumulative).collect(),
        config,
        steps,
        clients,
        refused,
        totals: sim.totals(),
        virtual_time: sim.now,
        wall: wall.elapsed(),
        run_error,
        pcap: app_capture,
    }
}
