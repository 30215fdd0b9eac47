//! `bookend listen ADDR` and `bookend connect ADDR`: netcat for bookend over
//! the kernel's TCP. Standard input goes out as DATA, DATA comes out on
//! standard output; what arrives out of band (caller or callee data, a
//! refusal's reason and data, the peer's disconnect data, how the session
//! ended) goes to standard error, or as JSON lines with `--json`. The exit
//! status says how the session ended ([`Outcome::code`]).

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bookend_session::Mode;
use bookend_tokio::{
    Bytes, CloseReason, Config, ConnectError, Connection, Integrity, ListenConfig, Listener,
    Reason, connect,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// User data given on the command line (a newtype, so that the argument
/// parser takes it as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData(pub Vec<u8>);

/// A reason code and optional data given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonArg(pub Reason, pub Option<Vec<u8>>);

/// `parse_data` for the argument parser.
///
/// This function returns the errors of [`parse_data`].
pub fn user_data(s: &str) -> Result<UserData, String> {
    parse_data(s).map(UserData)
}

/// `parse_reason` for the argument parser.
///
/// This function returns the errors of [`parse_reason`].
pub fn reason_arg(s: &str) -> Result<ReasonArg, String> {
    parse_reason(s).map(|(r, d)| ReasonArg(r, d))
}

/// User data given on the command line: text, `hex:0a0b`, or `@file`.
///
/// This function returns `Err` for bad hex or an unreadable file.
pub fn parse_data(s: &str) -> Result<Vec<u8>, String> {
    if let Some(hex) = s.strip_prefix("hex:") {
        let digits: Option<Vec<u8>> = hex
            .chars()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect();
        match digits {
            Some(d) if d.len() % 2 == 0 => Ok(d.chunks(2).map(|p| p[0] << 4 | p[1]).collect()),
            Some(_) => Err(format!("{s}: an odd number of hex digits")),
            None => Err(format!("{s}: not hex digits")),
        }
    } else if let Some(path) = s.strip_prefix('@') {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))
    } else {
        Ok(s.as_bytes().to_vec())
    }
}

/// A reason code and optional data, `REASON[:DATA]`: a number (decimal or
/// `0x`), or a registry name (`BUSY`, `REJECTED`, ...).
///
/// This function returns `Err` for an unknown name or bad data.
pub fn parse_reason(s: &str) -> Result<(Reason, Option<Vec<u8>>), String> {
    let (code, data) = match s.split_once(':') {
        Some((c, d)) => (c, Some(parse_data(d)?)),
        None => (s, None),
    };
    let reason = if let Some(hex) = code.strip_prefix("0x") {
        Reason(u16::from_str_radix(hex, 16).map_err(|e| format!("{code}: {e}"))?)
    } else if let Ok(n) = code.parse::<u16>() {
        Reason(n)
    } else {
        (0..=0x01FFu16)
            .map(Reason)
            .find(|r| r.name() == Some(code))
            .ok_or_else(|| format!("{code}: not a reason code or name"))?
    };
    Ok((reason, data))
}

/// The options of a netcat run.
#[derive(Debug, Clone)]
pub struct NcConfig {
    /// Caller data (connect) or callee data (listen).
    pub data: Option<Vec<u8>>,
    /// Listen: refuse with this reason and data.
    pub reject: Option<(Reason, Option<Vec<u8>>)>,
    /// Listen: keep each request undecided this long, then accept.
    pub defer: Option<Duration>,
    /// Data sent with our DISCONNECT when standard input ends.
    pub disconnect_data: Option<Vec<u8>>,
    /// Stream or message mode (a message per line of input).
    pub mode: Mode,
    /// Integrity: `None` off, or whether it is required.
    pub integrity: Option<bool>,
    /// Out-of-band reports as JSON lines.
    pub json: bool,
    /// Listen: serve callers one after another until interrupted.
    pub keep: bool,
    /// Listen: serve up to this many callers at once (implies `keep`);
    /// each chunk of standard input (each line in message mode) goes to
    /// one of them, the one that has waited longest for input.
    pub at_once: Option<usize>,
}

/// How a run ended, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both disconnects exchanged and confirmed: 0.
    Graceful,
    /// The callee refused (or we refused the caller): 2.
    Refused,
    /// Reset by the peer or the network: 3.
    Reset,
    /// Aborted by either side with a reason: 4.
    Aborted,
    /// A timer or TCP's time-out ended it: 5.
    TimedOut,
    /// The peer broke the protocol: 6.
    ProtocolError,
    /// TCP could not connect, or local I/O failed: 1.
    Failed,
}

impl Outcome {
    /// The exit status: 0 graceful, 1 failed to run, 2 refused, 3 reset,
    /// 4 aborted, 5 timed out, 6 protocol error.
    pub fn code(&self) -> u8 {
        match self {
            Self::Graceful => 0,
            Self::Failed => 1,
            Self::Refused => 2,
            Self::Reset => 3,
            Self::Aborted => 4,
            Self::TimedOut => 5,
            Self::ProtocolError => 6,
        }
    }

    fn of(reason: &CloseReason) -> Self {
        match reason {
            CloseReason::Graceful => Self::Graceful,
            CloseReason::Refused { .. } | CloseReason::Rejected { .. } => Self::Refused,
            CloseReason::Reset | CloseReason::Abandoned => Self::Reset,
            CloseReason::Aborted { .. } => Self::Aborted,
            CloseReason::TimedOut(_) => Self::TimedOut,
            CloseReason::ProtocolError { .. } => Self::ProtocolError,
            _ => Self::Failed,
        }
    }
}

fn shown(d: &[u8]) -> String {
    match std::str::from_utf8(d) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => format!(
            "hex:{}",
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// `s` as a JSON string literal (quotes, backslashes and control
/// characters escaped).
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One out-of-band report, to standard error.
fn report(json: bool, event: &str, fields: &[(&str, String)]) {
    let line = if json {
        let body: Vec<String> = std::iter::once(format!("\"event\":{}", json_str(event)))
            .chain(
                fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v))),
            )
            .collect();
        format!("{{{}}}", body.join(","))
    } else {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("bookend: {event} {}", body.join(" "))
    };
    let _ = writeln!(std::io::stderr(), "{}", line.trim_end());
}

fn data_field(d: Option<&Bytes>) -> String {
    d.map_or_else(|| "none".to_string(), |d| shown(d))
}

fn session_config(nc: &NcConfig) -> Config {
    let mut c = Config::default();
    c.options.mode = nc.mode;
    if let Some(d) = nc.defer {
        // A deferred request is answered by the decision timer if it runs
        // out first: give the deferral room.
        c.decision_timeout = c.decision_timeout.max(d + Duration::from_secs(10));
    }
    match nc.integrity {
        None => c.options.integrity = Integrity::None,
        Some(required) => {
            c.options.integrity = Integrity::Crc32c;
            c.require_integrity = required;
        }
    }
    c
}

/// `bookend connect ADDR`: one session to `addr`.
pub fn connect_nc(addr: SocketAddr, nc: &NcConfig) -> Outcome {
    block_on(async {
        let config = session_config(nc);
        let options = config.options;
        match connect(addr, nc.data.as_deref(), options, config).await {
            Ok((conn, callee_data)) => {
                report(
                    nc.json,
                    "connected",
                    &[
                        ("peer", addr.to_string()),
                        ("callee_data", data_field(callee_data.as_ref())),
                    ],
                );
                run(conn, nc, Input::start(nc.mode)).await
            }
            Err(ConnectError::Refused { reason, data }) => {
                report(
                    nc.json,
                    "refused",
                    &[
                        ("reason", reason.to_string()),
                        ("data", data_field(data.as_ref())),
                    ],
                );
                Outcome::Refused
            }
            Err(ConnectError::Closed(reason)) => {
                report(nc.json, "closed", &[("how", reason.to_string())]);
                Outcome::of(&reason)
            }
            Err(e) => {
                report(nc.json, "failed", &[("error", e.to_string())]);
                Outcome::Failed
            }
        }
    })
}

/// `bookend listen ADDR`: serves one caller, or with `keep` callers one
/// after another, or with `at_once` several together.
pub fn listen_nc(addr: SocketAddr, nc: &NcConfig) -> Outcome {
    block_on(async {
        let config = session_config(nc);
        let mut listener = match Listener::bind(addr, config, ListenConfig::default()).await {
            Ok(l) => l,
            Err(e) => {
                report(nc.json, "failed", &[("error", e.to_string())]);
                return Outcome::Failed;
            }
        };
        report(
            nc.json,
            "listening",
            &[("addr", listener.local_addr().to_string())],
        );
        let input = Input::start(nc.mode);
        let Some(limit) = nc.at_once else {
            let mut last = Outcome::Failed;
            while let Some(req) = listener.accept().await {
                last = serve(req, nc, &input).await;
                if !nc.keep {
                    break;
                }
            }
            return last;
        };
        // At once: each request is decided and served on its own task, so
        // a deferred or long session never holds up the next caller; at
        // the limit, further requests wait in the listener's queue.
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return Outcome::Failed;
            };
            let Some(req) = listener.accept().await else {
                return Outcome::Failed;
            };
            let (nc, input) = (nc.clone(), input.clone());
            tokio::task::spawn_local(async move {
                serve(req, &nc, &input).await;
                drop(slot);
            });
        }
    })
}

/// One caller's request: shown, then deferred, refused or accepted and
/// served as `nc` says.
async fn serve(req: bookend_tokio::Incoming, nc: &NcConfig, input: &Input) -> Outcome {
    report(
        nc.json,
        "request",
        &[
            ("peer", req.remote_addr().to_string()),
            ("caller_data", data_field(req.caller_data())),
            ("mode", format!("{:?}", req.proposed().mode).to_lowercase()),
            (
                "integrity",
                format!("{:?}", req.proposed().integrity).to_lowercase(),
            ),
        ],
    );
    if let Some(d) = nc.defer {
        report(
            nc.json,
            "deferred",
            &[("for", format!("{}s", d.as_secs_f64()))],
        );
        tokio::time::sleep(d).await;
    }
    match &nc.reject {
        Some((reason, data)) => match req.reject(*reason, data.as_deref()).await {
            Ok(end) => {
                report(nc.json, "rejected", &[("how", end.to_string())]);
                Outcome::Refused
            }
            Err(e) => {
                report(nc.json, "failed", &[("error", e.to_string())]);
                Outcome::Failed
            }
        },
        None => {
            let grant = req.grant();
            match req.accept(nc.data.as_deref(), grant).await {
                Ok(conn) => run(conn, nc, input.clone()).await,
                Err(e) => {
                    // The session ended meanwhile (the caller left, a
                    // timer), or the decision was refused.
                    report(nc.json, "failed", &[("error", e.error.to_string())]);
                    Outcome::Failed
                }
            }
        }
    }
}

/// A piece of standard input: a chunk (stream mode) or a line without its
/// line end (message mode), the end of the input, or a failure to read it.
#[derive(Debug, Clone)]
enum Chunk {
    Data(Bytes),
    End,
    Failed(String),
}

/// Longest line taken as one message: beyond it the input is refused, not
/// buffered without bound (a session's largest message is smaller still).
const MAX_LINE: u64 = 16 << 20;

/// Standard input, read by one task for the whole run and handed out one
/// chunk at a time to whichever session asks first. It reads only when
/// asked, and a chunk asked for by a session that ended before taking it
/// goes to the next ask: nothing typed is lost with a session that ends
/// (a reader per session lost what its read in flight took when the
/// session was dropped).
#[derive(Clone)]
struct Input {
    asks: tokio::sync::mpsc::UnboundedSender<Ask>,
}

/// What a session tells the input task.
enum Ask {
    /// The next chunk, please.
    Next(tokio::sync::oneshot::Sender<Chunk>),
    /// A chunk taken but not delivered (the session ended under it): the
    /// next ask's, before anything read later.
    GiveBack(Chunk),
}

impl Input {
    /// Starts the reading task (a local task: run inside a `LocalSet`).
    fn start(mode: Mode) -> Self {
        let (asks, mut rx) = tokio::sync::mpsc::unbounded_channel::<Ask>();
        tokio::task::spawn_local(async move {
            let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
            // Read for an ask that went away, or given back: the next
            // asks', oldest first.
            let mut held: std::collections::VecDeque<Chunk> = std::collections::VecDeque::new();
            while let Some(ask) = rx.recv().await {
                let ask = match ask {
                    Ask::GiveBack(chunk) => {
                        held.push_front(chunk);
                        continue;
                    }
                    Ask::Next(ask) => ask,
                };
                let chunk = match held.pop_front() {
                    Some(c) => c,
                    None => read_chunk(&mut stdin, mode).await,
                };
                let ended = !matches!(chunk, Chunk::Data(_));
                match ask.send(chunk) {
                    // The end (or a failure) is every later ask's answer too.
                    Ok(()) if ended => held.push_back(Chunk::End),
                    Ok(()) => {}
                    Err(chunk) => held.push_front(chunk),
                }
            }
        });
        Self { asks }
    }

    /// Hands back a chunk that was taken but not delivered: the next ask
    /// gets it.
    fn give_back(&self, chunk: Chunk) {
        let _ = self.asks.send(Ask::GiveBack(chunk));
    }

    /// The next chunk of standard input. Cancel safety: cancel-safe; a
    /// chunk read for an ask that is dropped goes to the next ask.
    async fn next(&self) -> Chunk {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.asks.send(Ask::Next(tx)).is_err() {
            return Chunk::End;
        }
        // A chunk delivered but not yet taken when this future is dropped
        // goes back (the guard), as one read for a dropped ask does.
        let mut waiting = Waiting {
            rx: Some(rx),
            asks: self.asks.clone(),
        };
        let got = match waiting.rx.as_mut() {
            Some(rx) => rx.await.unwrap_or(Chunk::End),
            None => Chunk::End,
        };
        waiting.rx = None;
        got
    }
}

/// An ask in flight: dropped with its chunk delivered and untaken, it
/// hands the chunk back.
struct Waiting {
    rx: Option<tokio::sync::oneshot::Receiver<Chunk>>,
    asks: tokio::sync::mpsc::UnboundedSender<Ask>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take()
            && let Ok(chunk) = rx.try_recv()
        {
            let _ = self.asks.send(Ask::GiveBack(chunk));
        }
    }
}

async fn read_chunk(stdin: &mut tokio::io::BufReader<tokio::io::Stdin>, mode: Mode) -> Chunk {
    match mode {
        Mode::Stream => match stdin.fill_buf().await {
            Ok([]) => Chunk::End,
            Ok(b) => {
                let chunk = Bytes::copy_from_slice(b);
                stdin.consume(chunk.len());
                Chunk::Data(chunk)
            }
            Err(e) => Chunk::Failed(e.to_string()),
        },
        Mode::Message => {
            let mut line = Vec::new();
            match (&mut *stdin)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) => Chunk::End,
                Ok(_) if !line.ends_with(b"\n") && line.len() as u64 == MAX_LINE => {
                    Chunk::Failed(format!("a line longer than {MAX_LINE} bytes"))
                }
                Ok(_) => {
                    // A message per line, without its line end.
                    let mut m = &line[..];
                    m = m.strip_suffix(b"\n").unwrap_or(m);
                    m = m.strip_suffix(b"\r").unwrap_or(m);
                    Chunk::Data(Bytes::copy_from_slice(m))
                }
                Err(e) => Chunk::Failed(e.to_string()),
            }
        }
    }
}

/// Runs `f` on a current-thread runtime, inside a `LocalSet` (standard
/// input's copy is a local task).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let out = tokio::task::LocalSet::new().block_on(&rt, f);
    // Standard input is read by a blocking thread that cannot be cancelled
    // (tokio's `stdin`): do not wait for it, or a session that ended while
    // the input was still open would wait for the user.
    rt.shutdown_background();
    out
}

/// Standard input to the peer, the peer to standard output; then the
/// disconnect data both ways and the end.
async fn run(conn: Connection, nc: &NcConfig, input: Input) -> Outcome {
    let (mut rx, tx) = conn.into_split();
    let mut tx = tx;
    let mode = nc.mode;
    let disconnect = nc.disconnect_data.clone();
    let json = nc.json;
    // The chunk being sent, until it is queued whole: if the sending task is
    // cancelled meanwhile (the session ended), it goes back to the input.
    let in_flight: std::rc::Rc<std::cell::RefCell<Option<Bytes>>> = Default::default();
    let (sender_input, sender_in_flight) = (input.clone(), in_flight.clone());
    let sending = async move {
        let input = sender_input;
        let sent = loop {
            let d = match input.next().await {
                Chunk::Data(d) => d,
                Chunk::End => break Ok(()),
                Chunk::Failed(e) => break Err(e),
            };
            // What of the chunk is not yet queued: only that goes back if
            // the session ends under the send (bytes queued are the
            // ended session's, not to be sent twice).
            *sender_in_flight.borrow_mut() = Some(d.clone());
            let sent = match mode {
                Mode::Stream => {
                    let mut rest = d.clone();
                    loop {
                        if rest.is_empty() {
                            break Ok(());
                        }
                        match tx.write(&rest).await {
                            Ok(0) => break Err("the session took nothing".to_string()),
                            Ok(n) => {
                                rest = rest.slice(n..);
                                *sender_in_flight.borrow_mut() = Some(rest.clone());
                            }
                            Err(e) => break Err(e.to_string()),
                        }
                    }
                }
                Mode::Message => tx.send_message(&d).await.map_err(|e| e.to_string()),
            };
            let d = sender_in_flight.borrow_mut().take().unwrap_or(d);
            if let Err(e) = sent {
                if tx.close_reason().is_some() {
                    // The session ended under the send (the peer aborted
                    // or reset): how it ended is the outcome, not a local
                    // failure, and the chunk is the next session's.
                    input.give_back(Chunk::Data(d));
                    break Ok(());
                }
                break Err(e);
            }
        };
        // Standard input ended: WSASendDisconnect with our data.
        let sent = match sent {
            // The session ended under us (before or during the DISCONNECT):
            // how it ended is the outcome, not a local failure.
            Ok(()) => match tx.send_disconnect(disconnect.as_deref()).await {
                Err(_) if tx.close_reason().is_some() => Ok(()),
                r => r.map_err(|e| e.to_string()),
            },
            Err(e) => Err(e),
        };
        (tx, sent)
    };
    let receiving = async {
        let mut stdout = tokio::io::stdout();
        match mode {
            Mode::Stream => {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = rx.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if stdout.write_all(&buf[..n]).await.is_err() || stdout.flush().await.is_err() {
                        return Err("standard output closed".to_string());
                    }
                }
            }
            Mode::Message => {
                while let Ok(m) = rx.recv_message().await {
                    // The message and its line end in one write: callers
                    // served at once interleave whole lines.
                    let mut line = Vec::with_capacity(m.len() + 1);
                    line.extend_from_slice(&m);
                    line.push(b'\n');
                    if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                        return Err("standard output closed".to_string());
                    }
                }
            }
        }
        // The peer's DISCONNECT (FD_CLOSE): its disconnect data.
        if let Ok(d) = rx.recv_disconnect().await {
            report(json, "disconnected", &[("data", data_field(d.as_ref()))]);
        }
        Ok(())
    };
    // Sending runs on its own; once the peer's side is done, wait for it
    // only while the session lives: an aborted or reset session must not
    // wait for standard input to end.
    let mut sending = tokio::task::spawn_local(sending);
    let received = receiving.await;
    let sent = if received.is_ok() {
        tokio::select! {
            r = &mut sending => r.ok(),
            _ = rx.closed() => None,
        }
    } else {
        None
    };
    // A local failure (input unreadable or over a limit, output closed)
    // aborts the session and is the run's failure, whatever the session
    // says: what was to be sent or shown was not.
    let failure = match (&received, &sent) {
        (Err(e), _) | (Ok(()), Some((_, Err(e)))) => Some(e.clone()),
        _ => None,
    };
    let end = match (sent, &failure) {
        (Some((tx, Ok(()))), None) => tx.close().await,
        (sent, _) => {
            if failure.is_some() {
                let _ = rx.abort(Reason::APPLICATION_ABORT, None);
            }
            sending.abort();
            if let Some(d) = in_flight.borrow_mut().take() {
                input.give_back(Chunk::Data(d));
            }
            drop(sent);
            rx.closed().await
        }
    };
    report(nc.json, "closed", &[("how", end.to_string())]);
    if let Some(e) = failure {
        report(nc.json, "failed", &[("error", e)]);
        return Outcome::Failed;
    }
    Outcome::of(&end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_arguments() {
        assert_eq!(parse_data("abc"), Ok(b"abc".to_vec()));
        assert_eq!(parse_data("hex:00ff11"), Ok(vec![0, 0xff, 0x11]));
        assert_eq!(parse_data("hex:"), Ok(vec![]));
        assert!(parse_data("hex:abc").is_err());
        // Non-ASCII and signs are refused, not sliced or read as a number.
        assert!(parse_data("hex:aé0").is_err());
        assert!(parse_data("hex:+f").is_err());
        assert!(parse_data("@/nonexistent/file").is_err());
    }

    #[test]
    fn reason_arguments() {
        assert_eq!(parse_reason("BUSY"), Ok((Reason::BUSY, None)));
        assert_eq!(
            parse_reason("0x8001:hi"),
            Ok((Reason(0x8001), Some(b"hi".to_vec())))
        );
        assert_eq!(parse_reason("2"), Ok((Reason::BUSY, None)));
        assert!(parse_reason("NOT_A_REASON").is_err());
    }
}
