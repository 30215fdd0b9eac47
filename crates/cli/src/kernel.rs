//! `serve` and `connect` over the kernel's TCP (`bookend-tokio`): the same
//! seed scenario and payload as on TAP devices (`docs/demo-payload.md`), so
//! that a Linux service and a smoltcp appliance play it against each other.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bookend_session::Mode;
use bookend_tokio::{
    CloseReason, Config, ConnectError, Connection, Error, ListenConfig, Listener, Options, connect,
};
use smoltcp::time::Instant as SmolInstant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::apps::{GREETING, Side, Step};
use crate::tap::{ConnectReport, ServeReport, TapRunError};

/// Reply *n* is *n* + this (`docs/demo-payload.md`).
const REPLY_OFFSET: u64 = 1_000_000;

/// Connect attempts before a client gives up (`docs/protocol.md` §6.4).
const MAX_ATTEMPTS: u32 = 20;

fn runtime() -> Result<tokio::runtime::Runtime, TapRunError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TapRunError::Io)
}

/// The steps of one traced side, with times from `start`.
struct Trace {
    start: std::time::Instant,
    side: Side,
    steps: Vec<Step>,
}

impl Trace {
    fn new(side: Side) -> Self {
        Self {
            start: std::time::Instant::now(),
            side,
            steps: Vec::new(),
        }
    }

    fn record(&mut self, step: &'static str, call: impl Into<String>, bytes: impl Into<String>) {
        let at = SmolInstant::from_micros(self.start.elapsed().as_micros() as i64);
        self.steps.push(Step {
            step,
            side: self.side,
            call: call.into(),
            at,
            bytes: bytes.into(),
        });
    }
}

fn u64_of(d: Option<&[u8]>) -> u64 {
    d.and_then(|d| d.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn config(mode: Mode, short_timers: bool) -> Config {
    let mut c = Config::default();
    c.options.mode = mode;
    if short_timers {
        shorten_timers(&mut c);
    }
    c
}

/// `--short-timers` (kernel TCP and TAP alike): the connect, handshake,
/// decision and linger timers at [`SHORT_TIMER`].
pub(crate) fn shorten_timers(c: &mut Config) {
    c.connect_timeout = SHORT_TIMER;
    c.handshake_timeout = SHORT_TIMER;
    c.decision_timeout = SHORT_TIMER;
    c.linger_timeout = SHORT_TIMER;
}

/// The connect, handshake, decision and linger timers with
/// `--short-timers`: what `bookend check --timers` expects of the
/// implementation it checks (§7).
pub const SHORT_TIMER: Duration = crate::check::SHORT_TIMER;

/// Serves the seed scenario on `listen` over kernel TCP until `clients`
/// clients have finished (or forever), at most `limit`.
///
/// This function returns `Err` if the address cannot be bound or the limit
/// passes.
pub fn serve(
    listen: SocketAddr,
    clients: Option<usize>,
    mode: Mode,
    limit: Duration,
    short_timers: bool,
) -> Result<ServeReport, TapRunError> {
    let rt = runtime()?;
    rt.block_on(async move {
        let mut listener =
            Listener::bind(listen, config(mode, short_timers), ListenConfig::default())
                .await
                .map_err(TapRunError::Io)?;
        let shared = Arc::new(Mutex::new((0u64, BTreeMap::new(), 0u64)));
        let trace = Arc::new(Mutex::new(Trace::new(Side::Server)));
        let served = async {
            let mut tasks = Vec::new();
            while clients.is_none_or(|n| tasks.len() < n) {
                let Some(req) = listener.accept().await else {
                    break;
                };
                let name = req
                    .caller_data()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .unwrap_or_default();
                let traced = name == "client-0";
                let grant = req.grant();
                let Ok(conn) = req.accept(Some(GREETING), grant).await else {
                    continue;
                };
                if traced {
                    trace.lock().unwrap().record(
                        "-",
                        "condition function: CF_ACCEPT, callee data",
                        format!(
                            "{} B: {:?}",
                            GREETING.len(),
                            String::from_utf8_lossy(GREETING)
                        ),
                    );
                }
                let (shared, trace) = (shared.clone(), trace.clone());
                tasks.push(tokio::spawn(async move {
                    serve_one(conn, mode, name, traced, &shared, &trace).await
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        };
        tokio::time::timeout(limit, served)
            .await
            .map_err(|_| TapRunError::TimedOut)?;
        let (cumulative, totals, finished) = std::mem::take(&mut *shared.lock().unwrap());
        let steps = std::mem::take(&mut trace.lock().unwrap().steps);
        Ok(ServeReport {
            totals,
            finished,
            cumulative,
            steps,
        })
    })
}

type Totals = Mutex<(u64, BTreeMap<String, (u64, u64)>, u64)>;

async fn serve_one(
    mut conn: Connection,
    mode: Mode,
    name: String,
    traced: bool,
    shared: &Totals,
    trace: &Mutex<Trace>,
) {
    // Requests until the client's DISCONNECT (step 2).
    loop {
        let request = match mode {
            Mode::Stream => {
                let mut b = [0u8; 8];
                match conn.read_exact(&mut b).await {
                    Ok(_) => u64::from_be_bytes(b),
                    Err(_) => break,
                }
            }
            Mode::Message => match conn.recv_message().await {
                Ok(m) => u64_of(Some(&m)),
                Err(_) => break,
            },
        };
        let reply = (request + REPLY_OFFSET).to_be_bytes();
        let sent = match mode {
            Mode::Stream => conn.write_all(&reply).await.is_ok(),
            Mode::Message => conn.send_message(&reply).await.is_ok(),
        };
        if !sent {
            return;
        }
    }
    let call = match mode {
        Mode::Stream => "FD_CLOSE; recv returns 0",
        Mode::Message => "FD_CLOSE; WSARecv fails with WSAEDISCON",
    };
    let total = match conn.recv_disconnect().await {
        Ok(d) => u64_of(d.as_deref()),
        Err(_) => return,
    };
    let grand = {
        let mut s = shared.lock().unwrap();
        s.0 += total;
        let grand = s.0;
        s.1.insert(name.clone(), (total, grand));
        grand
    };
    if traced {
        let mut t = trace.lock().unwrap();
        t.record("2", call, "");
        t.record(
            "3",
            "WSARecvDisconnect: the client's transaction total",
            format!("8 B: u64 {total}"),
        );
        t.record("4", format!("cumulative grand total = {grand}"), "");
        t.record(
            "5",
            "WSASendDisconnect: the grand total",
            format!("8 B: u64 {grand}"),
        );
        t.record("5a", "closesocket, at once", "");
    }
    if conn
        .send_disconnect(Some(&grand.to_be_bytes()))
        .await
        .is_err()
    {
        return;
    }
    if conn.close().await == CloseReason::Graceful {
        shared.lock().unwrap().2 += 1;
    }
}

/// Runs one client of the seed scenario over kernel TCP against `server`.
///
/// This function returns `Err` if the client fails (with why) or `limit`
/// passes.
pub fn connect_one(
    server: SocketAddr,
    name: &str,
    transactions: u64,
    mode: Mode,
    limit: Duration,
    short_timers: bool,
) -> Result<ConnectReport, TapRunError> {
    let rt = runtime()?;
    rt.block_on(async move {
        tokio::time::timeout(
            limit,
            client(server, name, transactions, mode, short_timers),
        )
        .await
        .map_err(|_| TapRunError::TimedOut)?
    })
}

async fn client(
    server: SocketAddr,
    name: &str,
    transactions: u64,
    mode: Mode,
    short_timers: bool,
) -> Result<ConnectReport, TapRunError> {
    let mut t = Trace::new(Side::Client);
    t.record(
        "-",
        "WSAConnect with caller data",
        format!("{} B: {name:?}", name.len()),
    );
    let options = Options {
        mode,
        ..Options::DEFAULT
    };
    // Refused at the TCP level (a smoltcp server answers RST to SYNs beyond
    // its armed backlog, §6.4) or reset before ACCEPT: connect again, as
    // the TAP client does, at most MAX_ATTEMPTS times, 20 ms + 10 ms per
    // attempt made apart.
    let mut attempt = 0;
    let (mut conn, greeting) = loop {
        attempt += 1;
        match connect(
            server,
            Some(name.as_bytes()),
            options,
            config(mode, short_timers),
        )
        .await
        {
            Ok(c) => break c,
            Err(ConnectError::Io(..) | ConnectError::Closed(CloseReason::Reset))
                if attempt < MAX_ATTEMPTS =>
            {
                tokio::time::sleep(Duration::from_millis(20 + 10 * u64::from(attempt))).await;
            }
            Err(ConnectError::Io(kind, msg)) => {
                return Err(TapRunError::Io(std::io::Error::new(kind, msg)));
            }
            Err(other) => return Err(TapRunError::Failed(other.to_string())),
        }
    };
    let shown = greeting
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .into_owned();
    t.record(
        "-",
        "FD_CONNECT: callee data",
        format!("{} B: {shown:?}", shown.len()),
    );
    let result = transact(&mut conn, &mut t, transactions, mode).await;
    match result {
        Ok(grand) => {
            let grand_total = grand.as_deref().map(|d| u64_of(Some(d)));
            match conn.close().await {
                CloseReason::Graceful => Ok(ConnectReport {
                    greeting,
                    grand_total,
                    steps: t.steps,
                }),
                other => Err(TapRunError::Failed(format!("closed: {other}"))),
            }
        }
        Err(e) => {
            // The session failed, or we did: abort it if it still lives,
            // and wait for its end, so that the ABORT and RST go out before
            // this process may exit (a dropped runtime would close the
            // socket with a FIN).
            if conn.close_reason().is_none() {
                let _ = conn.abort(bookend_tokio::Reason::APPLICATION_ABORT, None);
            }
            let how = conn.closed().await;
            Err(TapRunError::Failed(format!("{e}; closed: {how}")))
        }
    }
}

/// The transactions and the disconnect data both ways (steps 1-7): the
/// grand total the server sent.
async fn transact(
    conn: &mut bookend_tokio::Connection,
    t: &mut Trace,
    transactions: u64,
    mode: Mode,
) -> Result<Option<bookend_tokio::Bytes>, TapRunError> {
    let failed = |e: std::io::Error| TapRunError::Failed(e.to_string());
    let session_failed = |e: Error| TapRunError::Failed(e.to_string());
    for n in 1..=transactions {
        let reply = match mode {
            Mode::Stream => {
                conn.write_all(&n.to_be_bytes()).await.map_err(failed)?;
                let mut b = [0u8; 8];
                conn.read_exact(&mut b).await.map_err(failed)?;
                u64::from_be_bytes(b)
            }
            Mode::Message => {
                conn.send_message(&n.to_be_bytes())
                    .await
                    .map_err(session_failed)?;
                u64_of(Some(&conn.recv_message().await.map_err(session_failed)?))
            }
        };
        if reply != n + REPLY_OFFSET {
            return Err(TapRunError::Failed(format!(
                "reply {reply} to request {n}: expected {}",
                n + REPLY_OFFSET
            )));
        }
    }
    t.record(
        "1",
        "WSASendDisconnect: the transaction total",
        format!("8 B: u64 {transactions}"),
    );
    conn.send_disconnect(Some(&transactions.to_be_bytes()))
        .await
        .map_err(session_failed)?;
    let grand = conn.recv_disconnect().await.map_err(session_failed)?;
    t.record("6", "FD_CLOSE", "");
    t.record(
        "7",
        "WSARecvDisconnect: the grand total",
        format!(
            "8 B: u64 {}",
            grand.as_deref().map_or(0, |d| u64_of(Some(d)))
        ),
    );
    t.record("8", "closesocket", "");
    Ok(grand)
}
