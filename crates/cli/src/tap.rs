//! `bookend serve` and `bookend connect`: the seed scenario's server and client
//! on real Linux TAP devices, in real time.

use std::fmt;

use bookend_session::{Integrity, Mode};
use bookend_sim::tap::{TapError, TapHost};
use bookend_smoltcp::{Config, Decision, Endpoint, ListenConfig};
use bytes::Bytes;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpCidr, IpEndpoint};

use crate::apps::{Client, ClientState, GREETING, Server, Step};

/// Why a TAP run failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TapRunError {
    /// The TAP device could not be used.
    Tap(TapError),
    /// Waiting on the device failed.
    Io(std::io::Error),
    /// The run did not complete within its wall-clock limit.
    TimedOut,
    /// The client's session ended before the scenario did: why, with the
    /// close reason (refused, reset, aborted with its reason code, timed out).
    Failed(String),
}

impl fmt::Display for TapRunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tap(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "device I/O: {e}"),
            Self::TimedOut => write!(f, "did not complete within the time limit"),
            Self::Failed(why) => write!(f, "the session failed: {why}"),
        }
    }
}

impl std::error::Error for TapRunError {}

/// How a TAP run goes: the mode, the wall-clock limit, the timers.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Stream or message mode.
    pub mode: Mode,
    /// The run fails with [`TapRunError::TimedOut`] after this long.
    pub limit: std::time::Duration,
    /// The connect, handshake, decision and linger timers at
    /// [`crate::kernel::SHORT_TIMER`] (`--short-timers`).
    pub short_timers: bool,
}

impl RunOptions {
    /// An endpoint configuration seeded from the OS, with the connect,
    /// handshake, decision and linger timers `bookend check --timers`
    /// expects (§7) if `short_timers`.
    fn config(&self) -> Config {
        let mut config = Config::from_os_entropy();
        if self.short_timers {
            crate::kernel::shorten_timers(&mut config.session);
        }
        config
    }
}

fn relative(steps: &mut [Step], start: Instant) {
    for s in steps {
        s.at = Instant::from_micros(s.at.total_micros() - start.total_micros());
    }
}

/// What `serve` did.
#[derive(Debug)]
pub struct ServeReport {
    /// Per client name: (its total, the grand total sent); bounded
    /// (`apps::MAX_RECORDS`).
    pub totals: std::collections::BTreeMap<String, (u64, u64)>,
    /// Clients served to the end.
    pub finished: u64,
    /// The cumulative total.
    pub cumulative: u64,
    /// The traced client's steps (times relative to the start).
    pub steps: Vec<Step>,
}

/// Serves the seed scenario on TAP device `tap` with address `addr`, until
/// `clients` clients have finished (or forever if `None`), at most `limit`.
///
/// This function returns `Err` if the device cannot be used or the limit passes.
pub fn serve(
    tap: &str,
    addr: IpCidr,
    port: u16,
    clients: Option<usize>,
    run: RunOptions,
) -> Result<ServeReport, TapRunError> {
    let RunOptions { mode, limit, .. } = run;
    let mut config = run.config();
    // The demo application's choices: serve the mode asked for, and grant
    // the CRC-32C trailer to callers that propose it (§2.5).
    config.session.options.mode = mode;
    config.session.options.integrity = Integrity::Crc32c;
    let mut host =
        TapHost::open(tap, addr, None, config.interface_seed()).map_err(TapRunError::Tap)?;
    let mut ep = Endpoint::new(config).expect("valid default configuration");
    let l = ep
        .listen(&mut host.sockets, port, ListenConfig::default())
        .expect("listen on a free port");
    ep.accept_with(l, |req| Decision::Accept {
        callee_data: Some(Bytes::from_static(GREETING)),
        granted: req.grant,
    });
    let mut server = Server::new(mode, Some("client-0".to_string()));
    let start = Instant::now();
    let deadline = start + Duration::from_micros(limit.as_micros() as u64);
    let mut timed_out = false;
    host.run(|now, _iface, sockets| {
        ep.poll(now, sockets);
        server.poll(&mut ep, sockets, now);
        let finished =
            clients.is_some_and(|n| server.finished >= n as u64) && ep.connection_count() == 0;
        if finished {
            return None;
        }
        if now >= deadline {
            timed_out = true;
            return None;
        }
        Some(ep.poll_at(now))
    })
    .map_err(TapRunError::Io)?;
    if timed_out {
        return Err(TapRunError::TimedOut);
    }
    relative(&mut server.steps, start);
    Ok(ServeReport {
        totals: server.totals,
        finished: server.finished,
        cumulative: server.cumulative,
        steps: server.steps,
    })
}

/// What `connect` did.
#[derive(Debug)]
pub struct ConnectReport {
    /// The callee data received.
    pub greeting: Option<Bytes>,
    /// The grand total received.
    pub grand_total: Option<u64>,
    /// The steps (times relative to the start).
    pub steps: Vec<Step>,
}

/// Runs one client of the seed scenario on TAP device `tap` against `server`.
///
/// This function returns `Err` if the device cannot be used, the client
/// fails, or `limit` passes.
pub fn connect(
    tap: &str,
    addr: IpCidr,
    server: IpEndpoint,
    name: &str,
    transactions: u64,
    run: RunOptions,
) -> Result<ConnectReport, TapRunError> {
    let RunOptions { mode, limit, .. } = run;
    let config = run.config();
    let mut host =
        TapHost::open(tap, addr, None, config.interface_seed()).map_err(TapRunError::Tap)?;
    let mut ep = Endpoint::new(config).expect("valid default configuration");
    let start = Instant::now();
    let mut client = Client::new(name.to_string(), server, transactions, mode, start, true);
    let deadline = start + Duration::from_micros(limit.as_micros() as u64);
    host.run(|now, iface, sockets| {
        ep.poll(now, sockets);
        client.poll(&mut ep, iface, sockets, now);
        if (client.ended() && ep.connection_count() == 0) || now >= deadline {
            return None;
        }
        let next = [ep.poll_at(now), client.poll_at()]
            .into_iter()
            .flatten()
            .min();
        Some(next)
    })
    .map_err(TapRunError::Io)?;
    match &client.state {
        ClientState::Finished => {}
        ClientState::Failed(why) => return Err(TapRunError::Failed(why.clone())),
        _ => return Err(TapRunError::TimedOut),
    }
    let mut steps = client.steps.take().unwrap_or_default();
    relative(&mut steps, start);
    Ok(ConnectReport {
        greeting: client.greeting,
        grand_total: client.grand_total,
        steps,
    })
}
