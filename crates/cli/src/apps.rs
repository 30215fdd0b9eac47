//! The seed scenario's two applications, over a `bookend_smoltcp::Endpoint`:
//! shared by the simulated `demo` and the TAP `serve` / `connect` commands.

use std::collections::BTreeMap;
use std::fmt;

use bookend_session::{CloseReason, Error as SessionError, Event, Integrity, Mode, Options};
use bookend_smoltcp::{Endpoint, EndpointEvent, Error as EndpointError, Handle};
use bytes::Bytes;
use smoltcp::iface::{Interface, SocketSet};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

/// Longest caller name the server keeps: caller data can be 64 KiB (or
/// more), and whatever the server keeps per caller must be bounded.
pub const MAX_NAME_BYTES: usize = 64;

/// Most per-caller records (totals, failures) the server keeps; beyond,
/// only the counters grow.
pub const MAX_RECORDS: usize = 4096;

/// The name the server knows a caller by: its caller data, cut to
/// [`MAX_NAME_BYTES`] bytes before decoding, so the key is bounded whatever
/// the caller sent (invalid UTF-8 becomes U+FFFD, 3 bytes per byte at most).
pub fn caller_name(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(MAX_NAME_BYTES)]).into_owned()
}

/// Keeps `value` under `key` while the map has room for it.
fn record<V>(map: &mut BTreeMap<String, V>, key: String, value: V) {
    if map.len() < MAX_RECORDS || map.contains_key(&key) {
        map.insert(key, value);
    }
}

/// The greeting the server sends as callee data.
pub const GREETING: &[u8] = b"welcome to bookend";

/// Which side a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// The caller.
    Client,
    /// The callee.
    Server,
}

/// One row of the seed's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// "1" to "8", "5a", or "-" for set-up rows.
    pub step: &'static str,
    /// Who acted.
    pub side: Side,
    /// The call or indication, in Winsock words.
    pub call: String,
    /// When (virtual time in the simulator).
    pub at: Instant,
    /// The bytes it carried, described.
    pub bytes: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>4}  {:<6}  {:<52}  {:>10}  {}",
            self.step,
            format!("{:?}", self.side),
            self.call,
            self.at.to_string(),
            self.bytes
        )
    }
}

/// Prints steps as the seed's table, ordered by time (then step order).
pub fn step_table(steps: &[Step]) -> String {
    let mut rows: Vec<&Step> = steps.iter().collect();
    rows.sort_by_key(|s| (s.at, step_rank(s.step)));
    let mut out = format!(
        "{:>4}  {:<6}  {:<52}  {:>10}  {}\n",
        "step", "side", "call or indication", "time", "bytes carried"
    );
    for s in rows {
        out.push_str(&s.to_string());
        out.push('\n');
    }
    out
}

fn step_rank(step: &str) -> u32 {
    match step {
        "-" => 0,
        "5a" => 55,
        s => s.parse::<u32>().map_or(99, |n| n * 10),
    }
}

fn u64_bytes(d: &[u8]) -> Option<u64> {
    d.try_into().ok().map(u64::from_be_bytes)
}

fn describe_total(v: u64) -> String {
    format!("8 B: u64 {v}")
}

/// The server: accepts every caller with a greeting, answers transactions,
/// and on FD_CLOSE answers the caller's transaction total with the grand total.
#[derive(Debug)]
pub struct Server {
    /// Message or stream mode, as the clients propose it.
    pub mode: Mode,
    /// The cumulative total of transactions over all clients.
    pub cumulative: u64,
    /// Per client name: (its total, the grand total sent back).
    /// At most [`MAX_RECORDS`] entries, keyed by [`caller_name`].
    pub totals: BTreeMap<String, (u64, u64)>,
    /// Clients that finished (every one, also past `MAX_RECORDS`).
    pub finished: u64,
    /// Sessions that ended other than gracefully (every one).
    pub failures: u64,
    /// Sessions that ended other than gracefully: at most [`MAX_RECORDS`].
    pub failed: BTreeMap<String, CloseReason>,
    /// The caller whose steps are recorded.
    pub trace: Option<String>,
    /// Recorded steps.
    pub steps: Vec<Step>,
    names: BTreeMap<Handle, String>,
    stream_rx: BTreeMap<Handle, Vec<u8>>,
}

impl Server {
    /// A server recording the steps of the caller named `trace`.
    pub fn new(mode: Mode, trace: Option<String>) -> Self {
        Self {
            mode,
            cumulative: 0,
            totals: BTreeMap::new(),
            finished: 0,
            failures: 0,
            failed: BTreeMap::new(),
            trace,
            steps: Vec::new(),
            names: BTreeMap::new(),
            stream_rx: BTreeMap::new(),
        }
    }

    fn record(
        &mut self,
        h: Handle,
        step: &'static str,
        call: impl Into<String>,
        at: Instant,
        bytes: impl Into<String>,
    ) {
        if self.trace.is_some() && self.names.get(&h) == self.trace.as_ref() {
            self.steps.push(Step {
                step,
                side: Side::Server,
                call: call.into(),
                at,
                bytes: bytes.into(),
            });
        }
    }

    /// Handles every pending endpoint event.
    pub fn poll(&mut self, ep: &mut Endpoint, sockets: &mut SocketSet<'_>, now: Instant) {
        while let Some((h, ev)) = ep.poll_event() {
            match ev {
                EndpointEvent::Accepted(req) | EndpointEvent::Incoming(req) => {
                    let name = caller_name(req.caller_data.as_deref().unwrap_or_default());
                    self.names.insert(h, name.clone());
                    self.record(
                        h,
                        "-",
                        "condition function: CF_ACCEPT, callee data",
                        now,
                        format!(
                            "{} B: {:?}",
                            GREETING.len(),
                            String::from_utf8_lossy(GREETING)
                        ),
                    );
                    if ep.request(h).is_some() {
                        let _ = ep.accept(sockets, h, now, Some(GREETING), req.grant);
                    }
                }
                EndpointEvent::Session(Event::Readable) => self.answer(ep, sockets, h, now),
                EndpointEvent::Session(Event::PeerDisconnected) => {
                    self.answer(ep, sockets, h, now);
                    let mut buf = [0u8; 64];
                    let (call, ok) = match self.mode {
                        Mode::Stream => (
                            "FD_CLOSE; recv returns 0",
                            ep.recv(sockets, h, now, &mut buf).ok() == Some(0),
                        ),
                        Mode::Message => (
                            "FD_CLOSE; WSARecv fails with WSAEDISCON",
                            ep.recv_message(h, &mut buf)
                                == Err(EndpointError::Session(SessionError::Disconnected)),
                        ),
                    };
                    self.record(h, "2", call, now, if ok { "" } else { "UNEXPECTED" });
                    let total = match ep.recv_disconnect(h, &mut buf) {
                        Ok(Some(n)) => u64_bytes(&buf[..n]).unwrap_or(0),
                        _ => 0,
                    };
                    self.record(
                        h,
                        "3",
                        "WSARecvDisconnect: the client's transaction total",
                        now,
                        describe_total(total),
                    );
                    self.cumulative += total;
                    self.record(
                        h,
                        "4",
                        format!("cumulative grand total = {}", self.cumulative),
                        now,
                        "",
                    );
                    let grand = self.cumulative;
                    let _ = ep.send_disconnect(sockets, h, now, Some(&grand.to_be_bytes()));
                    self.record(
                        h,
                        "5",
                        "WSASendDisconnect: the grand total",
                        now,
                        describe_total(grand),
                    );
                    let name = self.names.get(&h).cloned().unwrap_or_default();
                    self.finished += 1;
                    record(&mut self.totals, name, (total, grand));
                    let _ = ep.close(sockets, h, now);
                    self.record(h, "5a", "closesocket, at once", now, "");
                    self.names.remove(&h);
                    self.stream_rx.remove(&h);
                }
                EndpointEvent::Session(Event::Closed(reason)) => {
                    if let Some(name) = self.names.remove(&h) {
                        self.failures += 1;
                        record(&mut self.failed, name, reason);
                    }
                    self.stream_rx.remove(&h);
                    let _ = ep.close(sockets, h, now);
                }
                EndpointEvent::Session(_) => {}
            }
        }
    }

    /// Reads requests and answers each: reply n to request n.
    fn answer(&mut self, ep: &mut Endpoint, sockets: &mut SocketSet<'_>, h: Handle, now: Instant) {
        match self.mode {
            Mode::Message => {
                while let Ok(m) = ep.recv_message_bytes(h) {
                    let n = u64_bytes(&m).unwrap_or(0);
                    let _ = ep.send_message(sockets, h, now, &(n + 1_000_000).to_be_bytes());
                }
            }
            Mode::Stream => {
                let buf = self.stream_rx.entry(h).or_default();
                let mut chunk = [0u8; 4096];
                while let Ok(k) = ep.recv(sockets, h, now, &mut chunk) {
                    if k == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
                while buf.len() >= 8 {
                    let n = u64_bytes(&buf[..8]).unwrap_or(0);
                    buf.drain(..8);
                    let _ = ep.send(sockets, h, now, &(n + 1_000_000).to_be_bytes());
                }
            }
        }
    }
}

/// Where a client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    /// Waiting to (re)connect at this time.
    Waiting(Instant),
    /// Connecting, or transacting.
    Active,
    /// Read its grand total and closed.
    Finished,
    /// Gave up, with the reason.
    Failed(String),
}

/// A client: connects with its name as caller data, performs `transactions`
/// request/reply transactions, ends with WSASendDisconnect(transactions) and
/// reads the grand total after FD_CLOSE.
#[derive(Debug)]
pub struct Client {
    /// The caller data.
    pub name: String,
    /// The server.
    pub server: IpEndpoint,
    /// Transactions to perform.
    pub transactions: u64,
    /// Stream or message mode.
    pub mode: Mode,
    /// The session keepalive to propose, in milliseconds.
    pub keepalive_ms: u32,
    /// The per-frame check to propose (`docs/protocol.md` §2.5). The demo
    /// application asks for CRC-32C: its totals must be exact.
    pub integrity: Integrity,
    /// Where it is.
    pub state: ClientState,
    /// The callee data received.
    pub greeting: Option<Bytes>,
    /// The grand total received.
    pub grand_total: Option<u64>,
    /// Connect attempts (a TCP-level refusal is retried).
    pub attempts: u32,
    /// Whether a REJECT refused it.
    pub refused: bool,
    /// Replies whose value was not the request's plus 1,000,000
    /// (`docs/demo-payload.md`): bytes altered on the way and delivered.
    pub wrong_replies: u64,
    /// Recorded steps, if tracing this client.
    pub steps: Option<Vec<Step>>,
    handle: Option<Handle>,
    completed: u64,
    stream_rx: Vec<u8>,
}

/// Connect attempts before a client gives up on TCP-level refusals.
pub const MAX_ATTEMPTS: u32 = 20;

impl Client {
    /// A client that starts at `start`.
    pub fn new(
        name: String,
        server: IpEndpoint,
        transactions: u64,
        mode: Mode,
        start: Instant,
        trace: bool,
    ) -> Self {
        Self {
            name,
            server,
            transactions,
            mode,
            keepalive_ms: Options::DEFAULT.keepalive_ms,
            integrity: Integrity::Crc32c,
            state: ClientState::Waiting(start),
            greeting: None,
            grand_total: None,
            attempts: 0,
            refused: false,
            wrong_replies: 0,
            steps: trace.then(Vec::new),
            handle: None,
            completed: 0,
            stream_rx: Vec::new(),
        }
    }

    /// Whether it is finished or failed.
    pub fn ended(&self) -> bool {
        matches!(self.state, ClientState::Finished | ClientState::Failed(_))
    }

    /// When it next needs a poll (a pending start).
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            ClientState::Waiting(t) => Some(t),
            _ => None,
        }
    }

    fn record(
        &mut self,
        step: &'static str,
        call: impl Into<String>,
        at: Instant,
        bytes: impl Into<String>,
    ) {
        if let Some(steps) = &mut self.steps {
            steps.push(Step {
                step,
                side: Side::Client,
                call: call.into(),
                at,
                bytes: bytes.into(),
            });
        }
    }

    fn send_request(&mut self, ep: &mut Endpoint, sockets: &mut SocketSet<'_>, now: Instant) {
        let Some(h) = self.handle else {
            return;
        };
        let n = self.completed + 1;
        match self.mode {
            Mode::Message => {
                let _ = ep.send_message(sockets, h, now, &n.to_be_bytes());
            }
            Mode::Stream => {
                let _ = ep.send(sockets, h, now, &n.to_be_bytes());
            }
        }
    }

    fn fail(&mut self, why: String) {
        self.state = ClientState::Failed(why);
    }

    /// Starts when due, and handles every pending endpoint event.
    pub fn poll(
        &mut self,
        ep: &mut Endpoint,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        now: Instant,
    ) {
        if let ClientState::Waiting(at) = self.state
            && now >= at
        {
            self.attempts += 1;
            let options = Options {
                mode: self.mode,
                keepalive_ms: self.keepalive_ms,
                integrity: self.integrity,
                ..Options::DEFAULT
            };
            match ep.connect(
                iface,
                sockets,
                now,
                self.server,
                Some(self.name.as_bytes()),
                options,
            ) {
                Ok(h) => {
                    self.handle = Some(h);
                    self.state = ClientState::Active;
                    self.record(
                        "-",
                        "WSAConnect with caller data",
                        now,
                        format!("{} B: {:?}", self.name.len(), self.name),
                    );
                }
                Err(e) => self.fail(format!("connect: {e}")),
            }
        }
        while let Some((h, ev)) = ep.poll_event() {
            if Some(h) != self.handle {
                continue;
            }
            let EndpointEvent::Session(ev) = ev else {
                continue;
            };
            match ev {
                Event::Connected { callee_data, .. } => {
                    let shown = callee_data
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                        .into_owned();
                    self.record(
                        "-",
                        "FD_CONNECT: callee data",
                        now,
                        format!("{} B: {shown:?}", shown.len()),
                    );
                    self.greeting = callee_data;
                    if self.transactions == 0 {
                        self.disconnect(ep, sockets, now);
                    } else {
                        self.send_request(ep, sockets, now);
                    }
                }
                Event::Refused { reason, .. } => {
                    self.refused = true;
                    self.fail(format!("refused: {reason}"));
                }
                Event::Readable => self.read_replies(ep, sockets, now),
                Event::PeerDisconnected => {
                    self.read_replies(ep, sockets, now);
                    let mut buf = [0u8; 64];
                    let drained = match self.mode {
                        Mode::Stream => ep.recv(sockets, h, now, &mut buf).ok() == Some(0),
                        Mode::Message => {
                            ep.recv_message(h, &mut buf)
                                == Err(EndpointError::Session(SessionError::Disconnected))
                        }
                    };
                    self.record(
                        "6",
                        "FD_CLOSE",
                        now,
                        if drained { "" } else { "UNEXPECTED: data left" },
                    );
                    match ep.recv_disconnect(h, &mut buf) {
                        Ok(Some(n)) => {
                            let g = u64_bytes(&buf[..n]).unwrap_or(0);
                            self.grand_total = Some(g);
                            self.record(
                                "7",
                                "WSARecvDisconnect: the grand total",
                                now,
                                describe_total(g),
                            );
                        }
                        other => self.record(
                            "7",
                            "WSARecvDisconnect",
                            now,
                            format!("UNEXPECTED {other:?}"),
                        ),
                    }
                    let _ = ep.close(sockets, h, now);
                    self.record("8", "closesocket", now, "");
                    self.state = ClientState::Finished;
                }
                Event::Closed(CloseReason::Reset)
                    if self.greeting.is_none() && self.attempts < MAX_ATTEMPTS =>
                {
                    // Refused at the TCP level (no armed listener): retry shortly.
                    let _ = ep.close(sockets, h, now);
                    self.handle = None;
                    let backoff = 20 + u64::from(self.attempts) * 10;
                    self.state = ClientState::Waiting(now + Duration::from_millis(backoff));
                }
                Event::Closed(reason) => {
                    let _ = ep.close(sockets, h, now);
                    if !self.ended() {
                        self.fail(format!("closed: {reason}"));
                    }
                }
                Event::Writable | Event::ConnectRequest(_) => {}
            }
        }
    }

    fn read_replies(&mut self, ep: &mut Endpoint, sockets: &mut SocketSet<'_>, now: Instant) {
        let Some(h) = self.handle else { return };
        let mut replies = Vec::new();
        {
            match self.mode {
                Mode::Message => {
                    while let Ok(m) = ep.recv_message_bytes(h) {
                        replies.push(u64_bytes(&m));
                    }
                }
                Mode::Stream => {
                    let mut chunk = [0u8; 4096];
                    while let Ok(k) = ep.recv(sockets, h, now, &mut chunk) {
                        if k == 0 {
                            break;
                        }
                        self.stream_rx.extend_from_slice(&chunk[..k]);
                    }
                    while self.stream_rx.len() >= 8 {
                        replies.push(u64_bytes(&self.stream_rx[..8]));
                        self.stream_rx.drain(..8);
                    }
                }
            }
        }
        for reply in replies {
            // One request is outstanding at a time: this answers request
            // `completed + 1`, whose reply is that plus 1,000,000.
            if reply != Some(self.completed + 1 + 1_000_000) {
                self.wrong_replies += 1;
            }
            self.completed += 1;
            if self.completed < self.transactions {
                self.send_request(ep, sockets, now);
            } else if self.completed == self.transactions {
                self.disconnect(ep, sockets, now);
            }
        }
    }

    /// Step 1: WSASendDisconnect with the transaction total.
    fn disconnect(&mut self, ep: &mut Endpoint, sockets: &mut SocketSet<'_>, now: Instant) {
        let Some(h) = self.handle else {
            return;
        };
        let total = self.completed;
        if ep
            .send_disconnect(sockets, h, now, Some(&total.to_be_bytes()))
            .is_ok()
        {
            self.record(
                "1",
                "WSASendDisconnect: the transaction total",
                now,
                describe_total(total),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11, item 7: 300 callers with 64 KiB of unique caller data each
    /// (or 0xFF bytes, which decode to 3-byte replacement characters) cost
    /// the server a bounded key each, and the maps stop at `MAX_RECORDS`.
    #[test]
    fn per_caller_state_is_bounded() {
        let mut totals = BTreeMap::new();
        for i in 0..300u32 {
            let mut data = vec![0xFFu8; 64 * 1024];
            data[..4].copy_from_slice(&i.to_be_bytes());
            let name = caller_name(&data);
            assert!(name.len() <= 3 * MAX_NAME_BYTES, "{} bytes", name.len());
            record(&mut totals, name, (1u64, 1u64));
        }
        for i in 0..(2 * MAX_RECORDS as u32) {
            record(&mut totals, format!("c{i}"), (1, 1));
        }
        assert_eq!(totals.len(), MAX_RECORDS);
        let held: usize = totals.keys().map(String::len).sum();
        assert!(held <= MAX_RECORDS * 3 * MAX_NAME_BYTES);
    }
}
