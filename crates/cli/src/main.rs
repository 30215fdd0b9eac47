//! `bookend`: the seed's transaction-total scenario over bookend sessions, on
//! a simulated network (`demo`) or on real TAP devices (`serve`, `connect`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use bookend_cli::apps::step_table;
use bookend_cli::{check, demo, kernel, nc, soak, tap};
use bookend_session::{Integrity, Mode};
use bookend_sim::LinkConfig;
use clap::{Parser, Subcommand, ValueEnum};
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};

/// bookend: connect data, conditional accept and disconnect data for TCP.
#[derive(Debug, Parser)]
#[command(name = "bookend", version, about, long_about = None)]
struct Cli {
    /// Debug logging (otherwise RUST_LOG decides; default: warnings).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Byte stream: graceful close reads as recv() == 0.
    Stream,
    /// Messages: graceful close is WSAEDISCON.
    Message,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Stream => Self::Stream,
            ModeArg::Message => Self::Message,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum IntegrityArg {
    /// Every frame after ACCEPT carries a CRC-32C: damage TCP misses ends
    /// the session instead of being delivered.
    On,
    /// TCP's 16-bit checksum only.
    Off,
}

impl From<IntegrityArg> for Integrity {
    fn from(i: IntegrityArg) -> Self {
        match i {
            IntegrityArg::On => Self::Crc32c,
            IntegrityArg::Off => Self::None,
        }
    }
}

/// What netcat mode says and does, for `listen` and `connect ADDR`.
#[derive(Debug, Clone, clap::Args)]
struct NcArgs {
    /// Caller data (connect) or callee data (listen): text, `hex:0a0b` or
    /// `@file`.
    #[arg(long, value_parser = nc::user_data)]
    data: Option<nc::UserData>,
    /// Data sent with our DISCONNECT when standard input ends.
    #[arg(long, value_parser = nc::user_data)]
    disconnect_data: Option<nc::UserData>,
    /// Integrity: off, on (preferred) or required.
    #[arg(long, value_enum, default_value_t = NcIntegrity::On)]
    integrity: NcIntegrity,
    /// Out-of-band reports on standard error as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NcIntegrity {
    Off,
    On,
    Required,
}

impl NcArgs {
    fn config(&self, mode: ModeArg) -> nc::NcConfig {
        nc::NcConfig {
            data: self.data.clone().map(|d| d.0),
            reject: None,
            defer: None,
            disconnect_data: self.disconnect_data.clone().map(|d| d.0),
            mode: mode.into(),
            integrity: match self.integrity {
                NcIntegrity::Off => None,
                NcIntegrity::On => Some(false),
                NcIntegrity::Required => Some(true),
            },
            json: self.json,
            keep: false,
            at_once: None,
        }
    }
}

/// What both roles of `bookend check` take: which cases, and the reports.
#[derive(Debug, Clone, clap::Args)]
struct CheckArgs {
    /// Run only the cases matching this pattern (`10.2.*`, `bookend/9.2/1`;
    /// `*` matches anything).
    #[arg(long)]
    case: Option<String>,
    /// Also run the timer cases: the implementation must run with its
    /// connect, handshake, decision and linger timers at 2 s (`bookend
    /// serve`/`connect --server` do with `--short-timers`).
    #[arg(long)]
    timers: bool,
    /// One JSON object per case on standard output (id, description,
    /// requirement, grades, detail, timing, wire log).
    #[arg(long)]
    json: bool,
    /// Also write the run as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<std::path::PathBuf>,
    /// Pinned results (`CASE GRADE` per line): the run fails on a case whose
    /// grade differs from its pin (an unexpected pass included) and on an
    /// unpinned FAILED, instead of on any FAILED.
    #[arg(long, value_name = "FILE")]
    expect: Option<std::path::PathBuf>,
    /// Also write the run's connections to FILE as a capture (pcap).
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,
    /// Run the checker's side on its own smoltcp stack on this TAP device
    /// (created if absent; needs root) instead of the kernel's TCP, for an
    /// implementation reached through the device.
    #[arg(long, requires = "tap_addr")]
    tap: Option<String>,
    /// The checker's address on the TAP device, as CIDR (e.g. 10.99.0.1/24).
    #[arg(long = "addr", id = "tap_addr", value_name = "CIDR", value_parser = parse_cidr, requires = "tap")]
    tap_addr: Option<IpCidr>,
}

#[derive(Debug, Subcommand)]
enum CheckRole {
    /// Check an implementation that connects: bookend listens on `--listen`
    /// and plays the callee, one case per connection the implementation
    /// makes (run its demo client, `docs/demo-payload.md`, in a loop).
    Client {
        /// The address to listen on, IP:PORT.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Seconds to wait for each case's connection.
        #[arg(long, default_value_t = 30)]
        wait: u64,
        #[command(flatten)]
        args: CheckArgs,
    },
    /// Check an implementation that listens on ADDR: bookend plays the
    /// caller, one connection per case. The implementation serves the demo
    /// application (`docs/demo-payload.md`), as `bookend serve` does.
    Server {
        /// The implementation's address, IP:PORT.
        addr: std::net::SocketAddr,
        /// Property mode: instead of the fixed cases, N random scripts of
        /// legal and illegal frames, segment splits, FIN and RST, each
        /// checked against bookend-session as the reference machine; a
        /// disagreement is shrunk and printed with the seed that repeats it.
        #[arg(long, value_name = "N")]
        random: Option<u64>,
        /// The property mode's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        args: CheckArgs,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Conformance runner for any implementation of `docs/protocol.md`:
    /// each case is graded OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED or
    /// FAILED on what the implementation did and on how the connection
    /// ended. Exit status 1 if any case FAILED.
    Check {
        #[command(subcommand)]
        role: CheckRole,
    },
    /// Netcat for bookend over kernel TCP: waits for a caller on ADDR,
    /// shows its request (address, caller data, proposal) on standard
    /// error, accepts it with `--data` (or refuses it with `--reject`), then
    /// copies standard input out as DATA and DATA to standard output. Exit
    /// status as for `connect ADDR`.
    Listen {
        /// The address to listen on, IP:PORT.
        addr: std::net::SocketAddr,
        #[command(flatten)]
        nc: NcArgs,
        /// Refuse each caller: `REASON[:DATA]`, the reason a number or a
        /// name (`BUSY`, `REJECTED`, ...).
        #[arg(long, value_parser = nc::reason_arg)]
        reject: Option<nc::ReasonArg>,
        /// Keep each request undecided this many seconds first (CF_DEFER).
        #[arg(long, value_parser = seconds)]
        defer: Option<std::time::Duration>,
        /// Serve callers one after another instead of one.
        #[arg(long)]
        keep: bool,
        /// Serve up to N callers at once (implies `--keep`): each chunk of
        /// standard input (each line in message mode) goes to one of them,
        /// the one waiting longest for input; their data all comes out on
        /// standard output.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        at_once: Option<u16>,
        /// Stream mode, or message mode (a message per line).
        #[arg(long, value_enum, default_value_t = ModeArg::Stream)]
        mode: ModeArg,
    },
    /// Play the seed's transaction-total scenario on the built-in simulated
    /// network: one server, N clients, M transactions each, then
    /// WSASendDisconnect(total) / WSASendDisconnect(grand total).
    Demo {
        /// Number of clients, each on its own simulated host.
        #[arg(long, default_value_t = 10)]
        clients: usize,
        /// Transactions (request and reply) per client.
        #[arg(long, default_value_t = 5)]
        transactions_per_client: u64,
        /// Packet loss on every link, in percent.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// One-way latency of every link, in milliseconds.
        #[arg(long, default_value_t = 5)]
        latency: u64,
        /// Reordering on every link, in percent.
        #[arg(long, default_value_t = 0.0)]
        reorder: f64,
        /// Duplication on every link, in percent.
        #[arg(long, default_value_t = 0.0)]
        duplicate: f64,
        /// Bit corruption on every link, in percent.
        #[arg(long, default_value_t = 0.0)]
        corrupt: f64,
        /// Virtual time the run may take, in seconds. Default: 600 on a
        /// clean network, 1 800 with loss (TCP backs off up to 60 s between
        /// retransmissions: at 20 % loss per link clients were seen to finish
        /// after 969 s). Clients still at work then are reported as running,
        /// apart from failures.
        #[arg(long)]
        time_limit: Option<u64>,
        /// IPv6 between the simulated hosts instead of IPv4.
        #[cfg(feature = "ipv6")]
        #[arg(long)]
        ipv6: bool,
        /// Seed of the simulated network (same seed, same traffic).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the server's traffic to this pcap file.
        #[arg(long)]
        pcap: Option<std::path::PathBuf>,
        /// Stream or message mode.
        #[arg(long, value_enum, default_value_t = ModeArg::Stream)]
        mode: ModeArg,
        /// The per-frame check clients propose and the server grants: a
        /// CRC-32C on every frame (docs/protocol.md §2.5), or TCP's
        /// checksum alone.
        #[arg(long, value_enum, default_value_t = IntegrityArg::On)]
        integrity: IntegrityArg,
    },
    /// Run the seed scenario over many seeds and a grid of faults (loss,
    /// reordering, duplication, corruption, latency and jitter, bandwidth and
    /// queue, MTU, partitions, a server crash; both modes) and print one row
    /// per fault setting. Exits non-zero if a promise is broken: a value
    /// altered, a failure without a reason, a connection leaked, or a client
    /// unfinished where every one must finish.
    Soak {
        /// Seeds per fault setting.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Clients per run.
        #[arg(long, default_value_t = 3)]
        clients: usize,
        /// Transactions per client.
        #[arg(long, default_value_t = 3)]
        transactions: u64,
        /// Only the settings whose name contains this text.
        #[arg(long)]
        only: Option<String>,
    },
    /// Run the scenario's server: over the kernel's TCP on `--listen`, or on
    /// a TAP device as a smoltcp stack with `--tap` and `--addr` (needs root
    /// or a prepared device).
    Serve {
        /// TAP device name (created if absent); without it, kernel TCP.
        #[arg(long, requires = "addr")]
        tap: Option<String>,
        /// Our address on the TAP device, as CIDR (e.g. 10.99.0.1/24).
        #[arg(long, value_parser = parse_cidr)]
        addr: Option<IpCidr>,
        /// Kernel TCP: the address to listen on.
        #[arg(long, default_value = "127.0.0.1:7050", conflicts_with = "tap")]
        listen: std::net::SocketAddr,
        /// Port to listen on.
        #[arg(long, default_value_t = demo::PORT)]
        port: u16,
        /// Stop after this many clients have finished.
        #[arg(long)]
        clients: Option<usize>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Stream or message mode.
        #[arg(long, value_enum, default_value_t = ModeArg::Stream)]
        mode: ModeArg,
        /// Connect, handshake, decision and linger timers of 2 s (§7), as
        /// `bookend check --timers` expects of what it checks.
        #[arg(long)]
        short_timers: bool,
    },
    /// Run one client of the scenario: over the kernel's TCP, or on a TAP
    /// device as a smoltcp stack with `--tap` and `--addr`.
    ///
    /// With a positional ADDR instead of `--server`, netcat for bookend over
    /// kernel TCP: standard input goes out as DATA, DATA comes out on
    /// standard output, and what arrives out of band (callee data, a
    /// refusal's reason and data, the peer's disconnect data, how the session
    /// ended) goes to standard error. Exit status: 0 graceful, 1 could not
    /// run, 2 refused, 3 reset, 4 aborted, 5 timed out, 6 protocol error.
    Connect {
        /// Netcat mode: the address to connect to, IP:PORT.
        #[arg(conflicts_with_all = ["server", "tap", "addr", "transactions", "name", "timeout"])]
        target: Option<std::net::SocketAddr>,
        #[command(flatten)]
        nc: NcArgs,
        /// TAP device name (created if absent); without it, kernel TCP.
        #[arg(long, requires = "addr")]
        tap: Option<String>,
        /// Our address on the TAP device, as CIDR (e.g. 10.99.0.2/24).
        #[arg(long, value_parser = parse_cidr)]
        addr: Option<IpCidr>,
        /// The scenario's server, IP:PORT.
        #[arg(
            long,
            value_parser = parse_endpoint,
            required_unless_present = "target",
            conflicts_with_all = ["data", "disconnect_data", "json"]
        )]
        server: Option<IpEndpoint>,
        /// Transactions to perform.
        #[arg(long, default_value_t = 5)]
        transactions: u64,
        /// Our name, sent as caller data.
        #[arg(long, default_value = "client-0")]
        name: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Stream or message mode.
        #[arg(long, value_enum, default_value_t = ModeArg::Stream)]
        mode: ModeArg,
        /// Connect, handshake, decision and linger timers of 2 s (§7), as
        /// `bookend check --timers` expects of what it checks.
        #[arg(long)]
        short_timers: bool,
    },
}

/// `A.B.C.D/N` (or, with feature `ipv6`, `X:X::X/N`) as a smoltcp CIDR
/// (smoltcp's types have no `FromStr`).
fn parse_cidr(s: &str) -> Result<IpCidr, String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s}: expected A.B.C.D/N"))?;
    let ip: std::net::IpAddr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
    let prefix: u8 = prefix.parse().map_err(|e| format!("{prefix}: {e}"))?;
    let (ip, max) = (smol_ip(ip)?, if ip.is_ipv4() { 32 } else { 128 });
    if prefix > max {
        return Err(format!("prefix {prefix} is over {max}"));
    }
    Ok(IpCidr::new(ip, prefix))
}

/// `A.B.C.D:PORT` (or, with feature `ipv6`, `[X:X::X]:PORT`) as a smoltcp
/// endpoint.
fn parse_endpoint(s: &str) -> Result<IpEndpoint, String> {
    let a: std::net::SocketAddr = s.parse().map_err(|e| format!("{s}: {e}"))?;
    Ok(IpEndpoint::new(smol_ip(a.ip())?, a.port()))
}

/// A standard address as smoltcp's, if this build speaks its version.
fn smol_ip(ip: std::net::IpAddr) -> Result<IpAddress, String> {
    match ip {
        std::net::IpAddr::V4(v4) => Ok(IpAddress::Ipv4(v4)),
        #[cfg(feature = "ipv6")]
        std::net::IpAddr::V6(v6) => Ok(IpAddress::Ipv6(v6)),
        #[cfg(not(feature = "ipv6"))]
        std::net::IpAddr::V6(_) => Err(format!(
            "{ip}: IPv6 needs bookend built with `--features ipv6`"
        )),
    }
}

/// A duration in seconds: finite, not negative, representable.
fn seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| std::time::Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s}: not a number of seconds"))
}

fn percent(p: f64) -> Result<f64, String> {
    if (0.0..=100.0).contains(&p) {
        Ok(p / 100.0)
    } else {
        Err(format!("{p} is not a percentage"))
    }
}

fn main() -> ExitCode {
    // Usage errors exit 1 ("could not run"): 2 is a refusal in netcat mode.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let filter = if cli.verbose {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let command = match run_nc(cli.command) {
        Ok(code) => return ExitCode::from(code),
        Err(command) => command,
    };
    match run(*command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bookend: {e}");
            ExitCode::from(2)
        }
    }
}

/// Netcat mode (`listen`, `connect ADDR`): its exit status, or the command
/// back for the other subcommands.
fn run_nc(command: Command) -> Result<u8, Box<Command>> {
    Ok(match command {
        Command::Listen {
            addr,
            nc: args,
            reject,
            defer,
            keep,
            at_once,
            mode,
        } => {
            let mut config = args.config(mode);
            config.reject = reject.map(|r| (r.0, r.1));
            config.defer = defer;
            config.keep = keep || at_once.is_some();
            config.at_once = at_once.map(usize::from);
            nc::listen_nc(addr, &config).code()
        }
        Command::Connect {
            target: Some(target),
            nc: args,
            mode,
            ..
        } => nc::connect_nc(target, &args.config(mode)).code(),
        other => return Err(Box::new(other)),
    })
}

fn run(command: Command) -> Result<bool, String> {
    match command {
        Command::Check { role } => {
            let (args, capture_role, capture_port) = match &role {
                CheckRole::Server { args, addr, .. } => {
                    (args.clone(), check::Role::Caller, addr.port())
                }
                CheckRole::Client { args, listen, .. } => {
                    (args.clone(), check::Role::Callee, listen.port())
                }
            };
            let CheckArgs {
                case,
                timers,
                json,
                junit,
                expect,
                pcap,
                tap,
                tap_addr,
            } = args;
            let net: Box<dyn bookend_cli::transport::Net> = match (tap, tap_addr) {
                (Some(dev), Some(cidr)) => Box::new(
                    bookend_cli::transport::TapNet::open(&dev, cidr).map_err(|e| e.to_string())?,
                ),
                _ => Box::new(bookend_cli::transport::Kernel),
            };
            let pinned = match &expect {
                Some(path) => check::parse_expectations(
                    &std::fs::read_to_string(path)
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                )
                .map_err(|e| format!("{}: {e}", path.display()))?,
                None => Vec::new(),
            };
            let reports = match role {
                CheckRole::Server {
                    addr,
                    random: Some(n),
                    seed,
                    ..
                } => check::check_random(&check::Target { net, addr }, n, seed),
                CheckRole::Server { addr, .. } => {
                    check::check_server(&check::Target { net, addr }, case.as_deref(), timers)
                }
                CheckRole::Client { listen, wait, .. } => check::check_client(
                    net.as_ref(),
                    listen,
                    case.as_deref(),
                    std::time::Duration::from_secs(wait),
                    timers,
                )
                .map_err(|e| format!("{listen}: {e}"))?,
            };
            if reports.is_empty() {
                return Err(format!("no case matches {}", case.unwrap_or_default()));
            }
            if json {
                print!("{}", check::json_report(&reports));
            } else {
                print!("{}", check::text_report(&reports));
            }
            if let Some(path) = pcap {
                std::fs::write(&path, check::pcap(&reports, capture_role, capture_port))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if let Some(path) = junit {
                std::fs::write(&path, check::junit_report(&reports))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if expect.is_some() {
                let drift = check::unexpected(&reports, &pinned);
                for d in &drift {
                    eprintln!("bookend check: unexpected: {d}");
                }
                return Ok(drift.is_empty());
            }
            Ok(reports.iter().all(|r| r.grade() != check::Grade::Failed))
        }
        Command::Demo {
            clients,
            transactions_per_client,
            loss,
            latency,
            reorder,
            duplicate,
            corrupt,
            seed,
            pcap,
            mode,
            integrity,
            time_limit,
            #[cfg(feature = "ipv6")]
            ipv6,
        } => {
            let link = LinkConfig {
                latency: Duration::from_millis(latency),
                loss: percent(loss)?,
                reorder: percent(reorder)?,
                duplicate: percent(duplicate)?,
                corrupt: percent(corrupt)?,
                ..LinkConfig::default()
            };
            let config = demo::DemoConfig {
                clients,
                transactions: transactions_per_client,
                link,
                seed,
                mode: mode.into(),
                integrity: integrity.into(),
                capture: pcap.is_some(),
                #[cfg(feature = "ipv6")]
                ipv6,
                limit: Duration::from_secs(time_limit.unwrap_or(if loss > 0.0 {
                    1_800
                } else {
                    600
                })),
                ..demo::DemoConfig::default()
            };
            let report = demo::run(config);
            println!("{report}");
            if let (Some(path), Some(bytes)) = (pcap, report.pcap.as_ref()) {
                std::fs::write(&path, bytes)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                println!("server traffic written to {}", path.display());
            }
            Ok(report.ok())
        }
        Command::Soak {
            seeds,
            first_seed,
            clients,
            transactions,
            only,
        } => {
            let grid: Vec<_> = soak::grid(clients, transactions)
                .into_iter()
                .filter(|s| only.as_deref().is_none_or(|o| s.name.contains(o)))
                .collect();
            if grid.is_empty() {
                return Err("no fault setting matches --only".to_string());
            }
            eprintln!(
                "{} settings x {seeds} seeds, {clients} clients x {transactions} transactions each",
                grid.len()
            );
            let report = soak::run(&grid, first_seed, seeds, |row| {
                eprintln!(
                    "  {:<52} {:>8.2}% finished, {} altered",
                    row.name,
                    row.finished_percent(),
                    row.altered
                );
            });
            println!("{report}");
            Ok(report.ok())
        }
        Command::Serve {
            tap,
            addr,
            listen,
            port,
            clients,
            timeout,
            mode,
            short_timers,
        } => {
            let limit = std::time::Duration::from_secs(timeout);
            let r = match (tap, addr) {
                (Some(tap), Some(addr)) => {
                    let run = tap::RunOptions {
                        mode: mode.into(),
                        limit,
                        short_timers,
                    };
                    tap::serve(&tap, addr, port, clients, run)
                }
                _ => kernel::serve(listen, clients, mode.into(), limit, short_timers),
            }
            .map_err(|e| e.to_string())?;
            println!("The seed scenario, server side, for client-0:\n");
            println!("{}", step_table(&r.steps));
            println!(
                "clients served: {}; cumulative total: {}",
                r.finished, r.cumulative
            );
            Ok(true)
        }
        Command::Connect {
            target: None,
            nc: _,
            tap,
            addr,
            server: Some(server),
            transactions,
            name,
            timeout,
            mode,
            short_timers,
        } => {
            let limit = std::time::Duration::from_secs(timeout);
            let r = match (tap, addr) {
                (Some(tap), Some(addr)) => {
                    let run = tap::RunOptions {
                        mode: mode.into(),
                        limit,
                        short_timers,
                    };
                    tap::connect(&tap, addr, server, &name, transactions, run)
                }
                _ => {
                    let server = std::net::SocketAddr::new(server.addr.into(), server.port);
                    kernel::connect_one(
                        server,
                        &name,
                        transactions,
                        mode.into(),
                        limit,
                        short_timers,
                    )
                }
            }
            .map_err(|e| e.to_string())?;
            println!("The seed scenario, client side, for {name}:\n");
            println!("{}", step_table(&r.steps));
            match r.grand_total {
                Some(g) => println!("grand total received: {g}"),
                None => println!("no grand total received"),
            }
            Ok(r.grand_total.is_some())
        }
        Command::Listen { .. } | Command::Connect { .. } => {
            Err("connect needs --server IP:PORT (the scenario) or an ADDR (netcat)".into())
        }
    }
}
