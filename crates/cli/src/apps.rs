//! The seed scenario's two applications, over a `bookend_smoltcp::Endpoint`:
//! shared by the simulated `demo` and the TAP `serve` / `connect` commands.

use std::collections::BTreeMap;
use std::fmt;

use bookend_session::{
    CloseReason, Error as SessionError, Event, Integrity, Mode, Options, Reason,
};
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

/// The name the server knows a caller by: its caller data up to the first
/// NUL (padding follows it, `docs/demo-payload.md`), cut to
/// [`MAX_NAME_BYTES`] bytes before decoding, so the key is bounded whatever
/// the caller sent (invalid UTF-8 becomes U+FFFD, 3 bytes per byte at most).
pub fn caller_name(data: &[u8]) -> String {
    let name = data.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(&name[..name.len().min(MAX_NAME_BYTES)]).into_owned()
}

/// Extra bytes the scenario's values carry (`docs/demo-payload.md`), so that
/// large connect, disconnect and message data cross the network (MTU,
/// segmentation, several DATA frames per message). Zero everywhere is the
/// seed scenario itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Padding {
    /// Appended to the caller data (after the name and a NUL) and to the
    /// callee data and reject data (after the greeting or reason text).
    pub connect: usize,
    /// Appended to each disconnect data value.
    pub disconnect: usize,
    /// Appended to every request and reply.
    pub message: usize,
}

/// `n` padding bytes: byte *i* is (31 *i* + 7) mod 251, so that a receiver
/// can check every one.
pub fn pad(n: usize) -> impl Iterator<Item = u8> {
    (0..n).map(|i| ((i * 31 + 7) % 251) as u8)
}

/// Whether `bytes` are exactly `n` padding bytes.
pub fn pad_ok(bytes: &[u8], n: usize) -> bool {
    bytes.len() == n && bytes.iter().copied().eq(pad(n))
}

/// A u64 value followed by `n` padding bytes.
fn padded_value(v: u64, n: usize) -> Vec<u8> {
    let mut out = v.to_be_bytes().to_vec();
    out.extend(pad(n));
    out
}

/// The value of `bytes` if they are a u64 followed by exactly `n` padding
/// bytes.
fn padded_u64(bytes: &[u8], n: usize) -> Option<u64> {
    (bytes.len() == 8 + n && pad_ok(&bytes[8..], n))
        .then(|| u64_bytes(&bytes[..8]))
        .flatten()
}

/// The reason the demo server refuses a caller with, when told to refuse
/// some (`Policy::reject_every`): application code 7.
pub const REJECT_REASON: Reason = Reason::application(7);

/// The reject data's text, before its padding.
pub const REJECT_TEXT: &[u8] = b"not today";

/// How the demo server decides (WSAAccept's condition function).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// CF_REJECT every k-th caller (those named `client-N` with N mod k =
    /// k - 1), with [`REJECT_REASON`] and [`REJECT_TEXT`] plus padding; 0
    /// rejects nobody.
    pub reject_every: u32,
    /// CF_DEFER every caller for this long, then CF_ACCEPT (or CF_REJECT).
    pub defer: Option<Duration>,
}

impl Policy {
    /// Whether the caller named `name` is to be refused.
    pub fn rejects(&self, name: &str) -> bool {
        let k = self.reject_every;
        k > 0
            && name
                .strip_prefix("client-")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n % k == k - 1)
    }
}

/// Requests or replies not yet taken by the endpoint: a send may take part
/// of a large value (stream mode) or none of it (message mode, buffer full);
/// the rest goes when the endpoint has room.
#[derive(Debug, Default)]
struct Outbox {
    stream: Vec<u8>,
    messages: std::collections::VecDeque<Vec<u8>>,
}

impl Outbox {
    fn push(&mut self, mode: Mode, value: Vec<u8>) {
        match mode {
            Mode::Stream => self.stream.extend_from_slice(&value),
            Mode::Message => self.messages.push_back(value),
        }
    }

    fn flush(&mut self, ep: &mut Endpoint, sockets: &mut SocketSet<'_>, h: Handle, now: Instant) {
        while !self.stream.is_empty() {
            match ep.send(sockets, h, now, &self.stream) {
                Ok(n) if n > 0 => {
                    self.stream.drain(..n);
                }
                _ => break,
            }
        }
        while let Some(m) = self.messages.front() {
            match ep.send_message(sockets, h, now, m) {
                Ok(()) => {
                    self.messages.pop_front();
                }
                Err(EndpointError::Session(SessionError::WouldBlock)) => break,
                // The session is gone or refuses it: nothing more will go.
                Err(_) => {
                    self.messages.clear();
                    break;
                }
            }
        }
    }
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

fn describe_len(d: &[u8]) -> String {
    format!("{} B", d.len())
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
    /// Extra bytes every value carries.
    pub padding: Padding,
    /// How callers are decided.
    pub policy: Policy,
    /// Values received altered: caller data, requests or disconnect data
    /// whose padding or layout is wrong (bytes TCP's checksum let through).
    pub altered: u64,
    names: BTreeMap<Handle, String>,
    stream_rx: BTreeMap<Handle, Vec<u8>>,
    outbox: BTreeMap<Handle, Outbox>,
    /// Deferred requests (CF_DEFER) and when to decide them.
    deferred: Vec<(Handle, Options, Instant)>,
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
            padding: Padding::default(),
            policy: Policy::default(),
            altered: 0,
            names: BTreeMap::new(),
            stream_rx: BTreeMap::new(),
            outbox: BTreeMap::new(),
            deferred: Vec::new(),
        }
    }

    /// When it next needs a poll: the earliest deferred decision.
    pub fn poll_at(&self) -> Option<Instant> {
        self.deferred.iter().map(|&(_, _, at)| at).min()
    }

    /// The callee data of an accepted caller: the greeting and its padding.
    fn greeting(&self) -> Vec<u8> {
        GREETING
            .iter()
            .copied()
            .chain(pad(self.padding.connect))
            .collect()
    }

    /// CF_ACCEPT or CF_REJECT, by the policy.
    fn decide(
        &mut self,
        ep: &mut Endpoint,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        grant: Options,
        now: Instant,
    ) {
        if ep.request(h).is_none() {
            return;
        }
        let name = self.names.get(&h).cloned().unwrap_or_default();
        if self.policy.rejects(&name) {
            let data: Vec<u8> = REJECT_TEXT
                .iter()
                .copied()
                .chain(pad(self.padding.connect))
                .collect();
            let _ = ep.reject(sockets, h, now, REJECT_REASON, Some(&data));
            self.record(
                h,
                "-",
                "condition function: CF_REJECT",
                now,
                describe_len(&data),
            );
            self.names.remove(&h);
            return;
        }
        let greeting = self.greeting();
        self.record(
            h,
            "-",
            "condition function: CF_ACCEPT, callee data",
            now,
            format!(
                "{} B: {:?}",
                greeting.len(),
                String::from_utf8_lossy(GREETING)
            ),
        );
        let _ = ep.accept(sockets, h, now, Some(&greeting), grant);
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

    /// Decides the deferred requests that are due, then handles every
    /// pending endpoint event.
    pub fn poll(&mut self, ep: &mut Endpoint, sockets: &mut SocketSet<'_>, now: Instant) {
        let due: Vec<_> = self
            .deferred
            .iter()
            .filter(|&&(_, _, at)| at <= now)
            .map(|&(h, grant, _)| (h, grant))
            .collect();
        self.deferred.retain(|&(_, _, at)| at > now);
        for (h, grant) in due {
            self.decide(ep, sockets, h, grant, now);
        }
        while let Some((h, ev)) = ep.poll_event() {
            match ev {
                EndpointEvent::Accepted(req) | EndpointEvent::Incoming(req) => {
                    let data = req.caller_data.as_deref().unwrap_or_default();
                    let name = caller_name(data);
                    // Caller data: the name, then (padded) a NUL and the padding.
                    let n = self.padding.connect;
                    let intact = if n == 0 {
                        !data.contains(&0)
                    } else {
                        data.len() > name.len()
                            && data[name.len()] == 0
                            && pad_ok(&data[name.len() + 1..], n)
                    };
                    if !intact {
                        self.altered += 1;
                    }
                    // A new attempt: whatever ended the caller's last one is
                    // not this one's reason.
                    self.failed.remove(&name);
                    self.names.insert(h, name.clone());
                    match self.policy.defer {
                        Some(d) if ep.request(h).is_some() => {
                            self.record(h, "-", "condition function: CF_DEFER", now, "");
                            self.deferred.push((h, req.grant, now + d));
                        }
                        _ if ep.request(h).is_some() => self.decide(ep, sockets, h, req.grant, now),
                        _ => self.record(
                            h,
                            "-",
                            "condition function: CF_ACCEPT, callee data",
                            now,
                            format!(
                                "{} B: {:?}",
                                GREETING.len() + n,
                                String::from_utf8_lossy(GREETING)
                            ),
                        ),
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
                    let total = match ep.recv_disconnect_bytes(h) {
                        Ok(Some(d)) => match padded_u64(&d, self.padding.disconnect) {
                            Some(t) => t,
                            None => {
                                self.altered += 1;
                                0
                            }
                        },
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
                    let data = padded_value(grand, self.padding.disconnect);
                    let _ = ep.send_disconnect(sockets, h, now, Some(&data));
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
                    if self
                        .stream_rx
                        .remove(&h)
                        .is_some_and(|rest| !rest.is_empty())
                    {
                        // Bytes beyond the last whole request, before DISCONNECT.
                        self.altered += 1;
                    }
                    self.outbox.remove(&h);
                }
                EndpointEvent::Session(Event::Closed(reason)) => {
                    if let Some(name) = self.names.remove(&h) {
                        self.failures += 1;
                        record(&mut self.failed, name, reason);
                    }
                    self.stream_rx.remove(&h);
                    self.outbox.remove(&h);
                    self.deferred.retain(|&(d, _, _)| d != h);
                    let _ = ep.close(sockets, h, now);
                }
                EndpointEvent::Session(Event::Writable) => {
                    if let Some(o) = self.outbox.get_mut(&h) {
                        o.flush(ep, sockets, h, now);
                    }
                }
                EndpointEvent::Session(_) => {}
            }
        }
    }

    /// Reads requests and answers each: reply n to request n, each with its
    /// padding (a request whose padding is wrong counts as altered).
    fn answer(&mut self, ep: &mut Endpoint, sockets: &mut SocketSet<'_>, h: Handle, now: Instant) {
        let n = self.padding.message;
        let mut requests = Vec::new();
        match self.mode {
            Mode::Message => {
                while let Ok(m) = ep.recv_message_bytes(h) {
                    requests.push(padded_u64(&m, n));
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
                while buf.len() >= 8 + n {
                    requests.push(padded_u64(&buf[..8 + n], n));
                    buf.drain(..8 + n);
                }
            }
        }
        for r in requests {
            if r.is_none() {
                self.altered += 1;
            }
            let reply = padded_value(r.unwrap_or(0) + 1_000_000, n);
            let out = self.outbox.entry(h).or_default();
            out.push(self.mode, reply);
            out.flush(ep, sockets, h, now);
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
    /// Values received altered (`docs/demo-payload.md`): replies whose value
    /// is not the request's plus 1,000,000 or whose padding is wrong, and
    /// callee, reject or disconnect data that is not what the server sends.
    pub wrong_replies: u64,
    /// Extra bytes every value carries.
    pub padding: Padding,
    /// The server is told to refuse this client (`Policy::rejects`): a
    /// REJECT with the expected reason and data finishes it.
    pub expect_refusal: bool,
    /// How its session ended, if it ended before finishing.
    pub close_reason: Option<CloseReason>,
    /// Recorded steps, if tracing this client.
    pub steps: Option<Vec<Step>>,
    handle: Option<Handle>,
    completed: u64,
    stream_rx: Vec<u8>,
    outbox: Outbox,
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
            padding: Padding::default(),
            expect_refusal: false,
            close_reason: None,
            steps: trace.then(Vec::new),
            handle: None,
            completed: 0,
            stream_rx: Vec::new(),
            outbox: Outbox::default(),
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
        self.outbox
            .push(self.mode, padded_value(n, self.padding.message));
        self.outbox.flush(ep, sockets, h, now);
    }

    fn fail(&mut self, why: String) {
        self.state = ClientState::Failed(why);
    }

    /// Its host crashed: the session is gone with it.
    pub fn crash(&mut self) {
        self.handle = None;
        if !self.ended() {
            self.fail("its host crashed".to_string());
        }
    }

    /// The caller data: the name, and with padding a NUL and the padding.
    fn caller_data(&self) -> Vec<u8> {
        let mut d = self.name.as_bytes().to_vec();
        if self.padding.connect > 0 {
            d.push(0);
            d.extend(pad(self.padding.connect));
        }
        d
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
                Some(&self.caller_data()),
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
                    let expected: Vec<u8> = GREETING
                        .iter()
                        .copied()
                        .chain(pad(self.padding.connect))
                        .collect();
                    if callee_data.as_deref() != Some(&expected[..]) {
                        self.wrong_replies += 1;
                    }
                    self.greeting = callee_data;
                    if self.transactions == 0 {
                        self.disconnect(ep, sockets, now);
                    } else {
                        self.send_request(ep, sockets, now);
                    }
                }
                Event::Refused { reason, data } => {
                    self.refused = true;
                    let expected: Vec<u8> = REJECT_TEXT
                        .iter()
                        .copied()
                        .chain(pad(self.padding.connect))
                        .collect();
                    if self.expect_refusal && reason == REJECT_REASON {
                        // CF_REJECT as the server was told: reason and data delivered.
                        if data.as_deref() != Some(&expected[..]) {
                            self.wrong_replies += 1;
                        }
                        self.record("-", "connect refused: reason and reject data", now, "");
                        let _ = ep.close(sockets, h, now);
                        self.state = ClientState::Finished;
                    } else {
                        self.fail(format!("refused: {reason}"));
                    }
                }
                Event::Writable => self.outbox.flush(ep, sockets, h, now),
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
                    if !drained || !self.stream_rx.is_empty() {
                        // Bytes beyond the last whole reply: not what the server sent.
                        self.wrong_replies += 1;
                    }
                    self.record(
                        "6",
                        "FD_CLOSE",
                        now,
                        if drained { "" } else { "UNEXPECTED: data left" },
                    );
                    match ep.recv_disconnect_bytes(h) {
                        Ok(Some(d)) => {
                            let g = padded_u64(&d, self.padding.disconnect).unwrap_or_else(|| {
                                self.wrong_replies += 1;
                                0
                            });
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
                        self.close_reason = Some(reason);
                    }
                }
                Event::ConnectRequest(_) => {}
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
                        replies.push(padded_u64(&m, self.padding.message));
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
                    let n = 8 + self.padding.message;
                    while self.stream_rx.len() >= n {
                        replies.push(padded_u64(&self.stream_rx[..n], self.padding.message));
                        self.stream_rx.drain(..n);
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
            .send_disconnect(
                sockets,
                h,
                now,
                Some(&padded_value(total, self.padding.disconnect)),
            )
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
