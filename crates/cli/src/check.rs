//! `bookend check server ADDR`: a conformance runner for any implementation
//! of `docs/protocol.md` that listens. bookend plays the caller over the
//! kernel's TCP, case by case, each on its own connection: the seed
//! scenario of §9.2 as `docs/demo-payload.md` plays it (whole, and with
//! every frame split one byte per segment), and every refusal row of §10.2
//! that a callee can be sent. Each case is graded twice, as Autobahn
//! grades WebSocket servers: on what the implementation did (the frames
//! and data it answered with) and on how the connection ended (FIN or RST,
//! reason code, disconnect data), with the spec's sentence it checks, the
//! expected and actual outcome, and the bytes exchanged.
//!
//! The caller's side is a real `bookend-session` driven over a blocking
//! socket, so that legal traffic is exactly what the spec says; the cases
//! that break the protocol write their bytes past it, raw.

use std::net::SocketAddr;

use crate::transport::{self, Net, Stream};
use std::time::{Duration, Instant as StdInstant};

use bookend_session::{
    CloseReason, Config, Event, Instant, Integrity, Mode, Options, Reason, Session, Side,
};

/// The timers `--timers` expects the implementation to run with (the
/// connect, handshake, decision and linger timers; `bookend serve` and
/// `bookend connect --server` set them with `--short-timers`).
pub const SHORT_TIMER: Duration = Duration::from_secs(2);

/// How long a case waits for any one answer before it calls it missing.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after an ABORT the RST may come (§7: the abort-flush timer, 1 s,
/// and "the RST follows the ABORT within 2 s in all"), plus scheduling slack.
pub const RST_BOUND: Duration = Duration::from_millis(2500);

/// Transactions each seed case plays (`docs/demo-payload.md`).
pub const SEED_TRANSACTIONS: u64 = 3;

/// A grade, as Autobahn|Testsuite gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grade {
    /// What the spec requires.
    Ok,
    /// A SHOULD not followed.
    NonStrict,
    /// Where the spec leaves a choice: recorded, not judged.
    Informational,
    /// An optional feature the implementation declines (message mode,
    /// integrity).
    Unimplemented,
    /// A MUST not followed.
    Failed,
}

impl Grade {
    /// The grade's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::NonStrict => "NON-STRICT",
            Self::Informational => "INFORMATIONAL",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Failed => "FAILED",
        }
    }
}

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From bookend check to the implementation.
    Sent,
    /// From the implementation.
    Received,
}

/// One write or read, with its time since the case began.
#[derive(Debug, Clone)]
pub struct WireEntry {
    /// Microseconds since the case began.
    pub at_us: u64,
    /// Which way.
    pub dir: Dir,
    /// The bytes, or for a TCP end its name (`FIN`, `RST`) with no bytes.
    pub bytes: Vec<u8>,
    /// `FIN` or `RST` for the end of the implementation's stream.
    pub end: Option<&'static str>,
}

/// A case's result.
#[derive(Debug, Clone)]
pub struct Report {
    /// `bookend/SECTION/N`.
    pub id: String,
    /// What the case does.
    pub description: String,
    /// The spec's sentence it checks.
    pub requirement: &'static str,
    /// The grade for what the implementation did.
    pub behaviour: Grade,
    /// The grade for how the connection ended.
    pub close: Grade,
    /// Expected and actual, when a grade is not OK.
    pub detail: String,
    /// The bytes exchanged.
    pub wire: Vec<WireEntry>,
    /// How long the case took.
    pub duration: Duration,
}

impl Report {
    /// The worse of its two grades.
    pub fn grade(&self) -> Grade {
        self.behaviour.max(self.close)
    }
}

/// How the implementation's side of the TCP connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcpEnd {
    Fin,
    Reset,
}

/// bookend's side of one case: a caller session over a blocking socket,
/// with every byte logged.
struct Peer {
    tcp: Box<dyn Stream>,
    session: Session,
    epoch: StdInstant,
    wire: Vec<WireEntry>,
    events: Vec<Event>,
    end: Option<TcpEnd>,
    /// Session output is written this many bytes per segment (`None`:
    /// as it comes).
    split: Option<usize>,
    /// The session's FIN is not sent (a case that waits for the
    /// implementation's linger timer).
    hold_fin: bool,
    /// Application data read from the session, not yet taken by the case.
    app: std::collections::VecDeque<Vec<u8>>,
    /// Bytes received that the session has not taken yet.
    unfed: Vec<u8>,
}

impl Peer {
    fn connect(at: &Target, options: Options) -> std::io::Result<Self> {
        let tcp = at.net.connect(at.addr, ANSWER_TIMEOUT)?;
        let mut config = Config::default();
        config.options = options;
        let session = Session::caller(config, 1)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        Self::over(tcp, session)
    }

    /// The callee's side of a connection the implementation made.
    fn callee(tcp: Box<dyn Stream>, mode: Mode) -> std::io::Result<Self> {
        let mut config = Config::default();
        config.options.mode = mode;
        config.options.integrity = Integrity::Crc32c;
        let session = Session::callee(config, 1, Instant::ZERO)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        Self::over(tcp, session)
    }

    fn over(tcp: Box<dyn Stream>, session: Session) -> std::io::Result<Self> {
        Ok(Self {
            tcp,
            session,
            epoch: StdInstant::now(),
            wire: Vec::new(),
            events: Vec::new(),
            end: None,
            split: None,
            hold_fin: false,
            app: std::collections::VecDeque::new(),
            unfed: Vec::new(),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn log(&mut self, dir: Dir, bytes: &[u8], end: Option<&'static str>) {
        self.wire.push(WireEntry {
            at_us: self.epoch.elapsed().as_micros() as u64,
            dir,
            bytes: bytes.to_vec(),
            end,
        });
    }

    /// Writes `bytes` past the session, `split` bytes per segment.
    fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let step = self.split.unwrap_or(bytes.len()).max(1);
        for chunk in bytes.chunks(step) {
            self.log(Dir::Sent, chunk, None);
            self.tcp.write_all(chunk)?;
            if self.split.is_some() {
                // With TCP_NODELAY, a pause makes each write its own segment.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    }

    /// Hands TCP whatever the session has queued.
    fn flush(&mut self) -> std::io::Result<()> {
        let now = self.now();
        self.session.handle_timeout(now);
        while let Some(b) = self.session.poll_transmit_bytes(now, 64 * 1024) {
            self.write_raw(&b)?;
        }
        // The session's FIN goes out as a FIN (unless the case holds it
        // back); its RST does not: the case watches how the implementation
        // ends the connection, so our side stays open to see it.
        while let Some(a) = self.session.poll_transport_action() {
            if a == bookend_session::TransportAction::Fin && !self.hold_fin {
                self.log(Dir::Sent, &[], Some("FIN"));
                self.tcp.shutdown_write();
            }
        }
        while let Some(e) = self.session.poll_event() {
            self.events.push(e);
        }
        Ok(())
    }

    /// One read, at most until `until`: fed to the session. Returns
    /// whether anything happened (bytes, or the end of the stream).
    fn read_once(&mut self, until: StdInstant) -> bool {
        if !self.unfed.is_empty() {
            self.drain_reads();
            let now = self.now();
            let k = self.session.handle_bytes(now, &self.unfed);
            self.unfed.drain(..k);
            if k > 0 {
                return true;
            }
        }
        if self.end.is_some() {
            return false;
        }
        let mut buf = [0u8; 16 * 1024];
        match self.tcp.read_until(&mut buf, until) {
            transport::Read::Fin => {
                self.end = Some(TcpEnd::Fin);
                self.log(Dir::Received, &[], Some("FIN"));
                let now = self.now();
                self.session
                    .handle_transport_closed(now, bookend_session::TransportClosed::Fin);
                true
            }
            transport::Read::Data(n) => {
                self.log(Dir::Received, &buf[..n], None);
                let now = self.now();
                self.session.handle_peer_alive(now);
                let mut at = 0;
                // The session takes what it has room for once its
                // application data is read; what it still refuses waits in
                // `unfed`, fed before the next read: nothing received is
                // dropped.
                while at < n {
                    let k = self.session.handle_bytes(now, &buf[at..n]);
                    if k == 0 {
                        self.drain_reads();
                        if self.session.handle_bytes(now, &buf[at..n]) == 0 {
                            self.unfed.extend_from_slice(&buf[at..n]);
                            break;
                        }
                        continue;
                    }
                    at += k;
                }
                true
            }
            transport::Read::Idle => false,
            transport::Read::Reset => {
                self.end = Some(TcpEnd::Reset);
                self.log(Dir::Received, &[], Some("RST"));
                let now = self.now();
                self.session
                    .handle_transport_closed(now, bookend_session::TransportClosed::Reset);
                true
            }
        }
    }

    /// Reads what the application would (stream bytes, or messages) into
    /// `app`, where the case takes them from.
    fn drain_reads(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let got = match self.session.options().mode {
                Mode::Stream => self.session.recv(&mut buf),
                _ => self.session.recv_message(&mut buf),
            };
            match got {
                Ok(0) if self.session.options().mode == Mode::Stream => break,
                Ok(n) => self.app.push_back(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
    }

    /// Runs the session until `pred` holds for an event (kept), at most
    /// `timeout`.
    fn wait_event(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        let until = StdInstant::now() + timeout;
        loop {
            let _ = self.flush();
            if let Some(i) = self.events.iter().position(&mut pred) {
                return Some(self.events.remove(i));
            }
            if StdInstant::now() >= until {
                return None;
            }
            if !self.read_once(until.min(StdInstant::now() + Duration::from_millis(50)))
                && self.end.is_some()
            {
                let _ = self.flush();
                return self
                    .events
                    .iter()
                    .position(pred)
                    .map(|i| self.events.remove(i));
            }
        }
    }

    /// Reads until `want` bytes of application data came (stream) or one
    /// message, at most `timeout`.
    fn read_value(&mut self, want: usize, timeout: Duration) -> Option<Vec<u8>> {
        let until = StdInstant::now() + timeout;
        let mut got: Vec<u8> = Vec::new();
        loop {
            let _ = self.flush();
            self.drain_reads();
            while let Some(chunk) = self.app.pop_front() {
                if self.session.options().mode == Mode::Message {
                    return Some(chunk);
                }
                got.extend_from_slice(&chunk);
            }
            if got.len() >= want {
                // Stream mode: bytes beyond this value are the next one's.
                let rest = got.split_off(want);
                if !rest.is_empty() {
                    self.app.push_front(rest);
                }
                return Some(got);
            }
            // The peer's DISCONNECT ends its data: nothing more will come.
            if self.session.peer_disconnected() && self.session.recv_queue() == 0 {
                return None;
            }
            if StdInstant::now() >= until || (!self.read_once(until) && self.end.is_some()) {
                return None;
            }
        }
    }

    /// Reads until the implementation's stream ends, at most `timeout`;
    /// after a FIN, goes on reading briefly for an RST behind it.
    fn wait_end(&mut self, timeout: Duration) -> Option<TcpEnd> {
        let until = StdInstant::now() + timeout;
        while self.end.is_none() && StdInstant::now() < until {
            self.read_once(until);
            let _ = self.flush();
        }
        if self.end == Some(TcpEnd::Fin) {
            // An RST after the FIN shows only as the socket's error.
            std::thread::sleep(Duration::from_millis(200));
            if self.tcp.rst_after_fin() {
                self.end = Some(TcpEnd::Reset);
                self.log(Dir::Received, &[], Some("RST"));
            }
        }
        self.end
    }

    fn closed(&self) -> Option<&CloseReason> {
        self.session.close_reason()
    }
}

/// How a case runs: against the address, filling in its outcome.
type RunCase = Box<dyn Fn(&mut Outcome, &Target)>;

/// What the server role's cases run against: an address, reached over a
/// TCP stack (the kernel's, or the checker's own smoltcp on a TAP device).
pub struct Target {
    /// The checker's TCP.
    pub net: Box<dyn Net>,
    /// The implementation's address.
    pub addr: SocketAddr,
}

impl Target {
    /// `addr` over the kernel's TCP.
    pub fn kernel(addr: SocketAddr) -> Self {
        Self {
            net: Box::new(transport::Kernel),
            addr,
        }
    }
}

/// A case: what it checks, and how.
struct Case {
    id: String,
    description: String,
    requirement: &'static str,
    run: RunCase,
}

/// What a case found, filled in as it runs.
struct Outcome {
    behaviour: Grade,
    close: Grade,
    detail: Vec<String>,
    wire: Vec<WireEntry>,
}

impl Outcome {
    fn new() -> Self {
        Self {
            behaviour: Grade::Ok,
            close: Grade::Ok,
            detail: Vec::new(),
            wire: Vec::new(),
        }
    }

    /// The case's report, its grades and wire log as found.
    fn report(
        self,
        id: String,
        description: String,
        requirement: &'static str,
        started: StdInstant,
    ) -> Report {
        Report {
            id,
            description,
            requirement,
            behaviour: self.behaviour,
            close: self.close,
            detail: self.detail.join("; "),
            wire: self.wire,
            duration: started.elapsed(),
        }
    }

    fn behaviour(&mut self, grade: Grade, expected: &str, actual: impl std::fmt::Display) {
        if grade != Grade::Ok {
            self.detail
                .push(format!("behaviour: expected {expected}, actual {actual}"));
        }
        self.behaviour = self.behaviour.max(grade);
    }

    fn close(&mut self, grade: Grade, expected: &str, actual: impl std::fmt::Display) {
        if grade != Grade::Ok {
            self.detail
                .push(format!("close: expected {expected}, actual {actual}"));
        }
        self.close = self.close.max(grade);
    }
}

/// The caller's options: every option explicit with the protocol defaults
/// (`docs/demo-payload.md`), in `mode`, proposing integrity or not.
fn proposal(mode: Mode, integrity: bool) -> Options {
    Options {
        mode,
        integrity: if integrity {
            Integrity::Crc32c
        } else {
            Integrity::None
        },
        ..Options::DEFAULT
    }
}

/// Connects and completes the handshake. `None` (with the outcome graded)
/// when the case cannot go on.
fn handshake(
    out: &mut Outcome,
    at: &Target,
    options: Options,
    caller_data: &[u8],
    split: Option<usize>,
) -> Option<Peer> {
    let mut p = match Peer::connect(at, options) {
        Ok(p) => p,
        Err(e) => {
            out.behaviour(Grade::Failed, "a TCP connection", e);
            return None;
        }
    };
    p.split = split;
    let now = p.now();
    if let Err(e) = p.session.connect(now, Some(caller_data), options) {
        out.behaviour(Grade::Failed, "a CONNECT to send", e);
        return None;
    }
    let answer = p.wait_event(ANSWER_TIMEOUT, |e| {
        matches!(e, Event::Connected { .. } | Event::Refused { .. })
            || matches!(e, Event::Closed(_))
    });
    out.wire = p.wire.clone();
    match answer {
        Some(Event::Connected { .. }) => {
            let granted = p.session.options();
            if options.integrity != Integrity::None && granted.integrity == Integrity::None {
                out.behaviour(
                    Grade::Unimplemented,
                    "INTEGRITY granted (§2.5)",
                    "an ACCEPT without it",
                );
                return None;
            }
            Some(p)
        }
        Some(Event::Refused { reason, .. }) if reason == Reason::OPTION_UNSUPPORTED => {
            out.behaviour(
                Grade::Unimplemented,
                "ACCEPT",
                format!("REJECT({reason}): the proposal is not served"),
            );
            None
        }
        Some(other) => {
            out.behaviour(Grade::Failed, "ACCEPT", format!("{other:?}"));
            None
        }
        None => {
            out.behaviour(
                Grade::Failed,
                "ACCEPT",
                format!("nothing within {} s", ANSWER_TIMEOUT.as_secs()),
            );
            None
        }
    }
}

/// The seed scenario (§9.2) with the demo payload, in `mode`, `split` bytes
/// per segment.
fn seed_case(out: &mut Outcome, at: &Target, mode: Mode, split: Option<usize>) {
    let Some(mut p) = handshake(out, at, proposal(mode, true), b"check-1", split) else {
        return;
    };
    for n in 1..=SEED_TRANSACTIONS {
        let v = n.to_be_bytes();
        let sent = match mode {
            Mode::Stream => p.session.send(&v).map(|_| ()),
            _ => p.session.send_message(&v),
        };
        if let Err(e) = sent {
            out.behaviour(Grade::Failed, "request sent", e);
            out.wire = p.wire;
            return;
        }
        match p.read_value(8, ANSWER_TIMEOUT) {
            Some(r) if r == (n + 1_000_000).to_be_bytes() => {}
            Some(r) => {
                out.behaviour(
                    Grade::Failed,
                    &format!("reply {} (demo payload)", n + 1_000_000),
                    hex(&r),
                );
                out.wire = p.wire;
                return;
            }
            None => {
                out.behaviour(Grade::Failed, &format!("reply {n}"), "none");
                out.wire = p.wire;
                return;
            }
        }
    }
    // Step 1: WSASendDisconnect(t); steps 3-5a happen at the server.
    let now = p.now();
    let _ = p
        .session
        .send_disconnect(now, Some(&SEED_TRANSACTIONS.to_be_bytes()));
    let disconnected = p.wait_event(ANSWER_TIMEOUT, |e| {
        matches!(e, Event::PeerDisconnected | Event::Closed(_))
    });
    let mut buf = [0u8; 64];
    match disconnected {
        Some(Event::PeerDisconnected) => match p.session.recv_disconnect(&mut buf) {
            Ok(Some(8))
                if u64::from_be_bytes(buf[..8].try_into().unwrap()) >= SEED_TRANSACTIONS => {}
            other => out.behaviour(
                Grade::Failed,
                "the grand total as 8 bytes of disconnect data (step 5)",
                format!("{other:?}"),
            ),
        },
        other => out.behaviour(
            Grade::Failed,
            "DISCONNECT with the grand total (step 5)",
            format!("{other:?}"),
        ),
    }
    // Step 7-8: both disconnects done; the server closed at once (5a), so
    // its FIN follows its DISCONNECT, and nothing is reset.
    let now = p.now();
    p.session.close(now);
    let _ = p.wait_event(ANSWER_TIMEOUT, |e| matches!(e, Event::Closed(_)));
    let end = p.wait_end(ANSWER_TIMEOUT);
    match (p.closed(), end) {
        (Some(CloseReason::Graceful), Some(TcpEnd::Fin)) => {}
        (reason, end) => out.close(
            Grade::Failed,
            "a graceful end: DISCONNECT, then FIN, no RST (§5.4, step 5a)",
            format!("{reason:?} with {end:?}"),
        ),
    }
    out.wire = p.wire;
}

/// A row of §10.2 sent to a callee: the bytes, the reason its ABORT must
/// carry, and where in the session they go.
#[derive(Debug, Clone, Copy)]
pub struct RefusalRow {
    /// The frame bytes, as the spec's table gives them.
    pub hex: &'static str,
    /// What is wrong with them.
    pub what: &'static str,
    /// The reason code the ABORT must carry.
    pub reason: Reason,
}

/// §10.2's table, in its order. `spec_tables_match` (a test) checks it
/// against `docs/protocol.md`.
pub const REFUSALS: &[RefusalRow] = &[
    RefusalRow {
        hex: "00 00 00 00 00 00",
        what: "reserved type",
        reason: Reason::PROTOCOL_ERROR,
    },
    RefusalRow {
        hex: "40 80 00 00 00 00",
        what: "unknown type 0x40 with MUST_UNDERSTAND",
        reason: Reason::UNKNOWN_FRAME,
    },
    RefusalRow {
        hex: "04 00 00 00 40 01",
        what: "DATA of 16 385 bytes, over 16 384",
        reason: Reason::FRAME_TOO_LARGE,
    },
    RefusalRow {
        hex: "05 00 00 00 00 01 2a",
        what: "DISCONNECT data without HAS_DATA",
        reason: Reason::PROTOCOL_ERROR,
    },
    RefusalRow {
        hex: "07 00 00 00 00 01 00",
        what: "PING with a body",
        reason: Reason::FRAME_TOO_LARGE,
    },
    RefusalRow {
        hex: "01 00 00 00 00 08 4e 4f 50 45 01 01 00 00",
        what: "CONNECT without the magic",
        reason: Reason::PROTOCOL_ERROR,
    },
    RefusalRow {
        hex: "03 00 00 00 00 01 00",
        what: "REJECT shorter than its reason",
        reason: Reason::PROTOCOL_ERROR,
    },
    RefusalRow {
        hex: "07 40 00 00 00 04 21 a8 7d 96 3a 1f 01 04",
        what: "sealed PING whose trailer is off by one bit",
        reason: Reason::INTEGRITY_FAILURE,
    },
    RefusalRow {
        hex: "07 40 00 00 00 04 21 a8 7d 97",
        what: "sealed PING whose header check is off by one bit",
        reason: Reason::INTEGRITY_FAILURE,
    },
    RefusalRow {
        hex: "04 40 00 00 20 09 aa 3c fa 9f",
        what: "sealed DATA whose length was altered into 8 201",
        reason: Reason::INTEGRITY_FAILURE,
    },
    RefusalRow {
        hex: "07 40 00 00 00 02 07 09 9a 7e 21 a8",
        what: "sealed body shorter than its trailer",
        reason: Reason::INTEGRITY_FAILURE,
    },
    RefusalRow {
        hex: "01 40 00 00 00 11 6d 7e 39 51 42 4b 4e 44 01 01 00 09 00 07 00 05 01 a8 37 57 86",
        what: "sealed CONNECT whose options block would end inside its trailer",
        reason: Reason::PROTOCOL_ERROR,
    },
    RefusalRow {
        hex: "40 40 00 00 00 04 a9 e5 da d0 85 db 33 44",
        what: "skippable unknown type 0x40, sealed, whose trailer is off by one bit",
        reason: Reason::INTEGRITY_FAILURE,
    },
    RefusalRow {
        hex: "04 00 00 00 00 05 68 65 6c 6c 6f",
        what: "unsealed DATA while integrity is in force",
        reason: Reason::INTEGRITY_FAILURE,
    },
];

/// §10.1's CONNECT with every option explicit (stream mode), caller data
/// "client-1".
pub const CONNECT_VECTOR: &str = "01 01 00 00 00 3d 42 4b 4e 44 01 01 00 2d \
    00 01 00 04 00 00 40 00 00 02 00 04 00 01 00 00 \
    00 03 00 04 00 01 00 00 00 04 00 04 00 01 00 00 \
    80 05 00 01 00 00 06 00 04 00 00 75 30 \
    63 6c 69 65 6e 74 2d 31";

/// The bytes of a hex string with spaces.
pub fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A §10.2 row against a callee: a CONNECT row as the connection's first
/// bytes; any other after the handshake (integrity in force for a sealed
/// row, and for the unsealed DATA row that needs it).
fn refusal_case(out: &mut Outcome, at: &Target, row: RefusalRow) {
    let bytes = unhex(row.hex);
    let sealed = bytes.get(1).is_some_and(|f| f & 0x40 != 0) || row.what.contains("in force");
    let mut p = if bytes[0] == 0x01 {
        let options = proposal(Mode::Stream, false);
        let mut p = match Peer::connect(at, options) {
            Ok(p) => p,
            Err(e) => {
                out.behaviour(Grade::Failed, "a TCP connection", e);
                return;
            }
        };
        // The row's CONNECT goes in place of the session's own, which is
        // made (so that the session reads the answer as a caller does)
        // and dropped unsent.
        let now = p.now();
        if p.session.connect(now, Some(b"check-1"), options).is_err() {
            return;
        }
        while p.session.poll_transmit_bytes(now, 64 * 1024).is_some() {}
        p
    } else {
        match handshake(out, at, proposal(Mode::Stream, sealed), b"check-1", None) {
            Some(p) => p,
            None => return,
        }
    };
    if let Err(e) = p.write_raw(&bytes) {
        out.behaviour(Grade::Failed, "the bytes sent", e);
        out.wire = p.wire;
        return;
    }
    let abort = p.wait_event(ANSWER_TIMEOUT, |e| matches!(e, Event::Closed(_)));
    let expected = format!("ABORT({}) (§10.2)", row.reason);
    match (&abort, p.closed()) {
        (
            _,
            Some(CloseReason::Aborted {
                by: Side::Peer,
                reason,
                ..
            }),
        ) if *reason == row.reason => {}
        (
            _,
            Some(CloseReason::Aborted {
                by: Side::Peer,
                reason,
                ..
            }),
        ) => out.behaviour(Grade::Failed, &expected, format!("ABORT({reason})")),
        (_, other) => out.behaviour(Grade::Failed, &expected, format!("{other:?}")),
    }
    // §5.5: the ABORT is followed by an RST within the abort-flush bound.
    let since = StdInstant::now();
    match p.wait_end(RST_BOUND) {
        Some(TcpEnd::Reset) => {}
        other => out.close(
            Grade::Failed,
            &format!(
                "RST within {} ms of the ABORT (§5.5, §7)",
                RST_BOUND.as_millis()
            ),
            format!(
                "{} after {} ms",
                other.map_or("nothing", |e| if e == TcpEnd::Fin { "FIN" } else { "RST" }),
                since.elapsed().as_millis()
            ),
        ),
    }
    out.wire = p.wire;
}

/// Grades the end of a case that expects ABORT(`reason`) then an RST.
fn expect_abort_then_rst(out: &mut Outcome, p: &mut Peer, reason: Reason, why: &str) {
    let _ = p.wait_event(ANSWER_TIMEOUT, |e| matches!(e, Event::Closed(_)));
    let expected = format!("ABORT({reason}) ({why})");
    match p.closed() {
        Some(CloseReason::Aborted {
            by: Side::Peer,
            reason: got,
            ..
        }) if *got == reason => {}
        Some(CloseReason::Aborted {
            by: Side::Peer,
            reason: got,
            ..
        }) => out.behaviour(Grade::Failed, &expected, format!("ABORT({got})")),
        other => out.behaviour(Grade::Failed, &expected, format!("{other:?}")),
    }
    let since = StdInstant::now();
    match p.wait_end(RST_BOUND) {
        Some(TcpEnd::Reset) => {}
        other => out.close(
            Grade::Failed,
            &format!(
                "RST within {} ms of the ABORT (§5.4)",
                RST_BOUND.as_millis()
            ),
            format!(
                "{} after {} ms",
                other.map_or("nothing", |e| if e == TcpEnd::Fin { "FIN" } else { "RST" }),
                since.elapsed().as_millis()
            ),
        ),
    }
}

/// The peer's view of a caller whose CONNECT is written raw: the session
/// is made as a caller (so it reads the answer as one) and its own CONNECT
/// dropped unsent.
fn raw_caller(out: &mut Outcome, at: &Target, options: Options) -> Option<Peer> {
    let mut p = match Peer::connect(at, options) {
        Ok(p) => p,
        Err(e) => {
            out.behaviour(Grade::Failed, "a TCP connection", e);
            return None;
        }
    };
    let now = p.now();
    p.session.connect(now, Some(b"check-1"), options).ok()?;
    while p.session.poll_transmit_bytes(now, 64 * 1024).is_some() {}
    Some(p)
}

/// Sends our FIN (the end of our byte stream).
fn send_fin(p: &mut Peer) {
    p.log(Dir::Sent, &[], Some("FIN"));
    p.tcp.shutdown_write();
}

/// §10.1: a CONNECT vector written as the connection's first bytes is
/// accepted, and the session then ends gracefully.
fn vector_case(out: &mut Outcome, at: &Target, hex_bytes: &str) {
    let Some(mut p) = raw_caller(out, at, proposal(Mode::Stream, false)) else {
        return;
    };
    if let Err(e) = p.write_raw(&unhex(hex_bytes)) {
        out.behaviour(Grade::Failed, "the CONNECT sent", e);
        return;
    }
    let answer = p.wait_event(ANSWER_TIMEOUT, |e| {
        matches!(
            e,
            Event::Connected { .. } | Event::Refused { .. } | Event::Closed(_)
        )
    });
    if !matches!(answer, Some(Event::Connected { .. })) {
        out.behaviour(Grade::Failed, "ACCEPT (§10.1)", format!("{answer:?}"));
        out.wire = p.wire;
        return;
    }
    graceful_end(out, &mut p);
    out.wire = p.wire;
}

/// Both disconnects, then both FINs: the seed's steps 1 to 8 with no
/// transactions (a total of 0).
fn graceful_end(out: &mut Outcome, p: &mut Peer) {
    let now = p.now();
    let _ = p.session.send_disconnect(now, Some(&0u64.to_be_bytes()));
    let got = p.wait_event(ANSWER_TIMEOUT, |e| {
        matches!(e, Event::PeerDisconnected | Event::Closed(_))
    });
    if !matches!(got, Some(Event::PeerDisconnected)) {
        out.behaviour(Grade::Failed, "the peer's DISCONNECT", format!("{got:?}"));
        return;
    }
    let now = p.now();
    p.session.close(now);
    let _ = p.wait_event(ANSWER_TIMEOUT, |e| matches!(e, Event::Closed(_)));
    let end = p.wait_end(ANSWER_TIMEOUT);
    match (p.closed(), end) {
        (Some(CloseReason::Graceful), Some(TcpEnd::Fin)) => {}
        (reason, end) => out.close(
            Grade::Failed,
            "a graceful end: DISCONNECT, then FIN, no RST (§5.4)",
            format!("{reason:?} with {end:?}"),
        ),
    }
}

/// One transaction of the demo payload (`n` → `n` + 1 000 000), its request
/// written raw after `before` in the same segment.
fn raw_transaction(out: &mut Outcome, p: &mut Peer, before: &[u8], n: u64) -> bool {
    let mut bytes = before.to_vec();
    // An unsealed stream DATA frame carrying the 8-byte request.
    bytes.extend_from_slice(&[0x04, 0x00, 0x00, 0x00, 0x00, 0x08]);
    bytes.extend_from_slice(&n.to_be_bytes());
    if let Err(e) = p.write_raw(&bytes) {
        out.behaviour(Grade::Failed, "the request sent", e);
        return false;
    }
    match p.read_value(8, ANSWER_TIMEOUT) {
        Some(r) if r == (n + 1_000_000).to_be_bytes() => true,
        other => {
            out.behaviour(
                Grade::Failed,
                &format!("reply {} (demo payload)", n + 1_000_000),
                format!("{:?}", other.map(|r| hex(&r))),
            );
            false
        }
    }
}

/// §5.3 for a callee: every well-formed frame (§10.1's vectors) that the
/// transition table has no row for in a state a caller can hold a callee
/// in (`AWAIT_CONNECT`, `OPEN`) is ABORT(`UNEXPECTED_FRAME`) and RST.
/// Generated from `bookend_session::state::TRANSITIONS`, so a change of the
/// table changes the cases.
fn illegal_frame_cases() -> Vec<Case> {
    use bookend_session::state::State;
    illegal_frames(&[State::AwaitConnect, State::Open])
        .into_iter()
        .map(|(id, description, state, bytes)| Case {
            id,
            description,
            requirement: "§5.3, §2.4: a frame with no row in the receiver's state is \
                              ABORT(UNEXPECTED_FRAME) and RST",
            run: Box::new(move |o, a| {
                let mut p = if state == State::AwaitConnect {
                    match raw_caller(o, a, proposal(Mode::Stream, false)) {
                        Some(p) => p,
                        None => return,
                    }
                } else {
                    match handshake(o, a, proposal(Mode::Stream, false), b"check-1", None) {
                        Some(p) => p,
                        None => return,
                    }
                };
                if let Err(e) = p.write_raw(&bytes) {
                    o.behaviour(Grade::Failed, "the frame sent", e);
                    return;
                }
                expect_abort_then_rst(o, &mut p, Reason::UNEXPECTED_FRAME, "§5.3");
                o.wire = p.wire;
            }),
        })
        .collect()
}

/// §5.3's cases for a receiver in `states`: every frame of §10.1 with no
/// row of `TRANSITIONS` in the state, as (id, description, state, bytes).
/// Both roles' cases are built from it, so a change of the table changes
/// them.
fn illegal_frames(
    states: &[bookend_session::state::State],
) -> Vec<(String, String, bookend_session::state::State, Vec<u8>)> {
    use bookend_session::state::{Input, row};
    const FRAMES: [(&str, Input); 7] = [
        ("connect", Input::RecvConnect),
        ("accept", Input::RecvAccept),
        ("reject", Input::RecvReject),
        ("data", Input::RecvData),
        ("disconnect", Input::RecvDisconnect),
        ("ping", Input::RecvPing),
        ("abort", Input::RecvAbort),
    ];
    let mut out = Vec::new();
    for &state in states {
        for (name, input) in FRAMES {
            if row(state, input).is_some() {
                continue;
            }
            let Some(bytes) = vector_bytes(name) else {
                continue;
            };
            out.push((
                format!("bookend/5.3/{}", out.len() + 1),
                format!("{} in {}", name.to_uppercase(), state.spec_name()),
                state,
                bytes,
            ));
        }
    }
    out
}

/// The bytes of §10.1's vector `name` (`bookend_wire::vectors`).
fn vector_bytes(name: &str) -> Option<Vec<u8>> {
    let (_, repr) = bookend_wire::vectors::FRAME_VECTORS
        .iter()
        .find(|(n, _)| *n == name)?;
    let mut buf = vec![0u8; repr.buffer_len()];
    let n = repr.emit(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// How early a timer may fire and still be the one configured (clock and
/// scheduling), and how late.
const TIMER_EARLY: Duration = Duration::from_millis(500);
/// See [`TIMER_EARLY`].
const TIMER_LATE: Duration = Duration::from_secs(3);

/// Grades when a timer fired: `took` after its start, configured at
/// [`SHORT_TIMER`].
fn grade_timer(out: &mut Outcome, took: Duration, what: &str) {
    if took + TIMER_EARLY < SHORT_TIMER {
        out.behaviour(
            Grade::Failed,
            &format!("the {what} timer at {} s (§7)", SHORT_TIMER.as_secs()),
            format!("{} ms: earlier than it was set", took.as_millis()),
        );
    } else if took > SHORT_TIMER + TIMER_LATE {
        out.behaviour(
            Grade::Failed,
            &format!("the {what} timer at {} s (§7)", SHORT_TIMER.as_secs()),
            format!("{} ms", took.as_millis()),
        );
    }
}

/// The keepalive interval the keepalive cases propose or grant.
const CHECK_KEEPALIVE_MS: u32 = 500;

/// The frames the implementation sent, each with the time its last byte
/// came (µs since the case began).
fn frames_received(wire: &[WireEntry]) -> Vec<(u64, u8)> {
    let mut bytes = Vec::new();
    let mut out: Vec<(u64, u8)> = Vec::new();
    for w in wire.iter().filter(|w| w.dir == Dir::Received) {
        bytes.extend_from_slice(&w.bytes);
        for f in frames_of(&bytes).into_iter().skip(out.len()) {
            out.push((w.at_us, f.0));
        }
    }
    out
}

/// Keepalive intervals below this are not graded (INFORMATIONAL): timer
/// granularity and scheduling would decide the grade, not the
/// implementation.
const KEEPALIVE_GRADED_MIN_MS: u32 = 100;

/// Runs the session for four intervals, answering nothing but PINGs of its
/// own every half interval, and grades the implementation's keepalive (§7):
/// with `k_ms` negotiated, it sends a frame (a PING when it has nothing
/// else) whenever it *sent* nothing for `k_ms`. Our PINGs make sure an
/// implementation that counts from what it received instead never PINGs;
/// a gap of half an interval more (and 100 ms) is allowed for timer
/// granularity. Integrity must not be in force (our PINGs are unsealed).
fn observe_keepalive(out: &mut Outcome, p: &mut Peer, k_ms: u32) {
    if k_ms < KEEPALIVE_GRADED_MIN_MS {
        out.behaviour(
            Grade::Informational,
            &format!("KEEPALIVE_MS of at least {KEEPALIVE_GRADED_MIN_MS} to grade"),
            format!("{k_ms} ms: not graded"),
        );
        return;
    }
    let from = p.epoch.elapsed().as_micros() as u64;
    let k = Duration::from_millis(u64::from(k_ms));
    let until = StdInstant::now() + k * 4;
    let mut tick = StdInstant::now() + k / 2;
    while StdInstant::now() < until {
        let _ = p.flush();
        if StdInstant::now() >= tick {
            // An unsealed PING (§2.2): the implementation hears from us
            // every half interval.
            let _ = p.write_raw(&[0x07, 0, 0, 0, 0, 0]);
            tick += k / 2;
        }
        if !p.read_once(until.min(tick)) && p.end.is_some() {
            break;
        }
    }
    let to = p.epoch.elapsed().as_micros() as u64;
    let frames: Vec<(u64, u8)> = frames_received(&p.wire)
        .into_iter()
        .filter(|f| f.0 >= from)
        .collect();
    let pings = frames.iter().filter(|f| f.1 == 0x07).count();
    let mut times: Vec<u64> = vec![from];
    times.extend(frames.iter().map(|f| f.0));
    times.push(to);
    let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let allowed = (u64::from(k_ms) * 3 / 2 + 100) * 1000;
    if pings == 0 || gap > allowed {
        out.behaviour(
            Grade::Failed,
            &format!(
                "a PING whenever nothing was sent for the negotiated {k_ms} ms (§7; \
                 gaps up to {} ms allowed)",
                allowed / 1000
            ),
            format!(
                "{pings} PINGs in {} ms, longest silence {} ms",
                (to - from) / 1000,
                gap / 1000
            ),
        );
    }
}

/// The timer cases of the server role (`--timers`): the implementation
/// runs with the handshake and linger timers at [`SHORT_TIMER`].
fn server_timer_cases() -> Vec<Case> {
    vec![
        Case {
            id: "bookend/7/1".into(),
            description: "handshake timer: a caller that connects and never asks".into(),
            requirement: "§7: the handshake timer ends a connection without a complete \
                          CONNECT with ABORT(HANDSHAKE_TIMEOUT) and RST (run with it at 2 s)",
            run: Box::new(|o, a| {
                let Some(mut p) = raw_caller(o, a, proposal(Mode::Stream, false)) else {
                    return;
                };
                let t0 = StdInstant::now();
                let _ = p.wait_event(SHORT_TIMER + TIMER_LATE, |e| matches!(e, Event::Closed(_)));
                grade_timer(o, t0.elapsed(), "handshake");
                expect_abort_then_rst(o, &mut p, Reason::HANDSHAKE_TIMEOUT, "§7");
                o.wire = p.wire;
            }),
        },
        Case {
            id: "bookend/7/2".into(),
            description: "linger timer: a caller that never sends its FIN".into(),
            requirement: "§7, §5.4: in CLOSING, the linger timer ends a connection whose \
                          peer never sends FIN with an RST (run with it at 2 s)",
            run: Box::new(|o, a| {
                let Some(mut p) = handshake(o, a, proposal(Mode::Stream, false), b"check-1", None)
                else {
                    return;
                };
                p.hold_fin = true;
                let now = p.now();
                let _ = p.session.send_disconnect(now, Some(&0u64.to_be_bytes()));
                let got = p.wait_event(ANSWER_TIMEOUT, |e| {
                    matches!(e, Event::PeerDisconnected | Event::Closed(_))
                });
                if !matches!(got, Some(Event::PeerDisconnected)) {
                    o.behaviour(Grade::Failed, "the peer's DISCONNECT", format!("{got:?}"));
                    o.wire = p.wire;
                    return;
                }
                // Its FIN first (5a), then, with ours held back, its RST.
                let t0 = StdInstant::now();
                let mut ended = None;
                while t0.elapsed() < SHORT_TIMER + TIMER_LATE {
                    p.read_once(StdInstant::now() + Duration::from_millis(100));
                    if p.end.is_some() {
                        // After its FIN a read returns 0 at once, until an
                        // RST makes it fail.
                        while t0.elapsed() < SHORT_TIMER + TIMER_LATE {
                            if p.tcp.rst_after_fin() {
                                p.log(Dir::Received, &[], Some("RST"));
                                ended = Some(t0.elapsed());
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        break;
                    }
                }
                match ended {
                    Some(took) => grade_timer(o, took, "linger"),
                    None => o.close(
                        Grade::Failed,
                        "an RST when the linger timer fires (§7)",
                        format!("{:?}", p.end),
                    ),
                }
                o.wire = p.wire;
            }),
        },
    ]
}

/// The keepalive case of the server role: it needs no short timers (the
/// caller proposes the interval).
fn server_keepalive_case() -> Case {
    Case {
        id: "bookend/7/3".into(),
        description: format!(
            "keepalive: a caller proposing KEEPALIVE_MS {CHECK_KEEPALIVE_MS} is PINGed"
        ),
        requirement: "§7, §4.2: with keepalive K negotiated, a side sends PING when \
                      nothing was sent for K",
        run: Box::new(|o, a| {
            let mut options = proposal(Mode::Stream, false);
            options.keepalive_ms = CHECK_KEEPALIVE_MS;
            let Some(mut p) = handshake(o, a, options, b"check-1", None) else {
                return;
            };
            match p.session.options().keepalive_ms {
                0 => o.behaviour(
                    Grade::Informational,
                    "keepalive granted (the callee chooses, §4.2)",
                    "KEEPALIVE_MS 0: keepalive off",
                ),
                k if k > 4 * CHECK_KEEPALIVE_MS => o.behaviour(
                    Grade::Informational,
                    &format!("KEEPALIVE_MS near {CHECK_KEEPALIVE_MS} (the callee chooses, §4.2)"),
                    format!("{k} ms granted: not waited for"),
                ),
                k => observe_keepalive(o, &mut p, k),
            }
            if raw_transaction(o, &mut p, &[], 1) {
                graceful_end(o, &mut p);
            }
            o.wire = p.wire;
        }),
    }
}

/// Every case of the server role, in order.
fn server_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = vec![
        Case {
            id: "bookend/9.2/1".into(),
            description: "the seed scenario, stream mode, with 5a (demo payload)".into(),
            requirement: "§9.2: closesocket right after WSASendDisconnect still delivers the \
                          disconnect data, then FIN; both sides end gracefully",
            run: Box::new(|o, a| seed_case(o, a, Mode::Stream, None)),
        },
        Case {
            id: "bookend/9.2/2".into(),
            description: "the seed scenario, message mode (optional)".into(),
            requirement: "§4.3: in message mode each DATA is one message, delivered whole",
            run: Box::new(|o, a| seed_case(o, a, Mode::Message, None)),
        },
        Case {
            id: "bookend/9.2/3".into(),
            description: "the seed scenario, stream mode, every frame one byte per segment".into(),
            requirement: "§2: frames are a byte stream; a receiver reassembles them across \
                          any segmentation",
            run: Box::new(|o, a| seed_case(o, a, Mode::Stream, Some(1))),
        },
    ];
    cases.extend([
        Case {
            id: "bookend/2.1/1".into(),
            description: "three PINGs and a request in one segment".into(),
            requirement: "§2: frames are a byte stream; a receiver takes every frame a \
                          segment carries",
            run: Box::new(|o, a| {
                let Some(mut p) = handshake(o, a, proposal(Mode::Stream, false), b"check-1", None)
                else {
                    return;
                };
                let pings = [0x07, 0, 0, 0, 0, 0].repeat(3);
                if raw_transaction(o, &mut p, &pings, 1) {
                    graceful_end(o, &mut p);
                }
                o.wire = p.wire;
            }),
        },
        Case {
            id: "bookend/2.3/1".into(),
            description: "an unknown frame type without MUST_UNDERSTAND is skipped".into(),
            requirement: "§2.3: a receiver skips an unknown frame whose type lacks \
                          MUST_UNDERSTAND, and goes on",
            run: Box::new(|o, a| {
                let Some(mut p) = handshake(o, a, proposal(Mode::Stream, false), b"check-1", None)
                else {
                    return;
                };
                let unknown = [0x40, 0x00, 0x00, 0x00, 0x00, 0x02, 0xaa, 0xbb];
                if raw_transaction(o, &mut p, &unknown, 1) {
                    graceful_end(o, &mut p);
                }
                o.wire = p.wire;
            }),
        },
        Case {
            id: "bookend/5.4/1".into(),
            description: "FIN in OPEN, without DISCONNECT".into(),
            requirement: "§5.4: a FIN where the peer's session layer ended without \
                          DISCONNECT is ABORT(UNEXPECTED_EOF) and RST",
            run: Box::new(|o, a| {
                let Some(mut p) = handshake(o, a, proposal(Mode::Stream, false), b"check-1", None)
                else {
                    return;
                };
                send_fin(&mut p);
                expect_abort_then_rst(o, &mut p, Reason::UNEXPECTED_EOF, "§5.4");
                o.wire = p.wire;
            }),
        },
        Case {
            id: "bookend/5.4/2".into(),
            description: "FIN in the middle of a DATA frame".into(),
            requirement: "§5.4: a FIN in the middle of a frame is ABORT(UNEXPECTED_EOF) \
                          and RST",
            run: Box::new(|o, a| {
                let Some(mut p) = handshake(o, a, proposal(Mode::Stream, false), b"check-1", None)
                else {
                    return;
                };
                let _ = p.write_raw(&[0x04, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00]);
                send_fin(&mut p);
                expect_abort_then_rst(o, &mut p, Reason::UNEXPECTED_EOF, "§5.4");
                o.wire = p.wire;
            }),
        },
        Case {
            id: "bookend/5.4/3".into(),
            description: "FIN part-way through CONNECT".into(),
            requirement: "§5.4: a FIN part-way through CONNECT in AWAIT_CONNECT is \
                          ABORT(UNEXPECTED_EOF) and RST",
            run: Box::new(|o, a| {
                let Some(mut p) = raw_caller(o, a, proposal(Mode::Stream, false)) else {
                    return;
                };
                let _ = p.write_raw(&unhex("01 00 00 00 00 08 42 4b 4e"));
                send_fin(&mut p);
                expect_abort_then_rst(o, &mut p, Reason::UNEXPECTED_EOF, "§5.4");
                o.wire = p.wire;
            }),
        },
        Case {
            id: "bookend/5.4/4".into(),
            description: "FIN before any byte of CONNECT".into(),
            requirement: "§5.4: a caller that went away before asking is answered with \
                          a FIN and nothing else",
            run: Box::new(|o, a| {
                let Some(mut p) = raw_caller(o, a, proposal(Mode::Stream, false)) else {
                    return;
                };
                send_fin(&mut p);
                let end = p.wait_end(ANSWER_TIMEOUT);
                let sent_anything = p
                    .wire
                    .iter()
                    .any(|w| w.dir == Dir::Received && !w.bytes.is_empty());
                if sent_anything {
                    o.behaviour(Grade::Failed, "no frame (§5.4)", "bytes");
                }
                if end != Some(TcpEnd::Fin) {
                    o.close(
                        Grade::Failed,
                        "FIN and nothing else (§5.4)",
                        format!("{end:?}"),
                    );
                }
                o.wire = p.wire;
            }),
        },
        Case {
            id: "bookend/5.4/5".into(),
            description: "RST in OPEN; the next caller is served".into(),
            requirement: "§5.4: a RST in any live state ends that session (Reset); the \
                          implementation goes on serving others",
            run: Box::new(|o, a| {
                let Some(mut p) = handshake(o, a, proposal(Mode::Stream, false), b"check-1", None)
                else {
                    return;
                };
                p.log(Dir::Sent, &[], Some("RST"));
                p.tcp.reset();
                let mut wire = std::mem::take(&mut p.wire);
                drop(p);
                std::thread::sleep(Duration::from_millis(100));
                if let Some(mut q) =
                    handshake(o, a, proposal(Mode::Stream, false), b"check-2", None)
                    && raw_transaction(o, &mut q, &[], 1)
                {
                    graceful_end(o, &mut q);
                    wire.extend(q.wire);
                }
                o.wire = wire;
            }),
        },
        Case {
            id: "bookend/10.1/1".into(),
            description: "§10.1's CONNECT with every option explicit".into(),
            requirement: "§10.1, §4.1: a CONNECT that names every option with its \
                          default is accepted",
            run: Box::new(|o, a| vector_case(o, a, CONNECT_VECTOR)),
        },
        Case {
            id: "bookend/10.1/2".into(),
            description: "§10.1's minimal CONNECT (no options, no caller data)".into(),
            requirement: "§10.1, §4.1: every option absent takes its default",
            run: Box::new(|o, a| vector_case(o, a, "01 00 00 00 00 08 42 4b 4e 44 01 01 00 00")),
        },
    ]);
    cases.extend(illegal_frame_cases());
    for (i, row) in REFUSALS.iter().enumerate() {
        // A REJECT is legal only at a caller: a callee is not sent one.
        if unhex(row.hex)[0] == 0x03 {
            continue;
        }
        let row = *row;
        cases.push(Case {
            id: format!("bookend/10.2/{}", i + 1),
            description: format!("refuse: {}", row.what),
            requirement: "§10.2, §5.5: a frame a receiver must refuse ends the session with \
                          ABORT(reason) and RST",
            run: Box::new(move |o, a| refusal_case(o, a, row)),
        });
    }
    cases.push(server_keepalive_case());
    cases
}

/// Whether `id` is selected by `pattern` (`*` matches any run of
/// characters; `5.3.*` and `bookend/5.3/*` both select §5.3's cases).
pub fn selected(id: &str, pattern: &str) -> bool {
    let p = pattern.replace('.', "/");
    let id_dots = id.replace('.', "/");
    let p = if p.starts_with("bookend/") {
        p
    } else {
        format!("bookend/{p}")
    };
    glob(&p, &id_dots)
}

fn glob(p: &str, s: &str) -> bool {
    match p.split_once('*') {
        None => p == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

/// Runs the server role's cases selected by `pattern` against `addr`, and
/// with `timers` the cases that need the implementation's timers at
/// [`SHORT_TIMER`].
pub fn check_server(at: &Target, pattern: Option<&str>, timers: bool) -> Vec<Report> {
    let mut reports = Vec::new();
    let mut cases = server_cases();
    if timers {
        cases.extend(server_timer_cases());
    }
    for case in cases {
        if pattern.is_some_and(|p| !selected(&case.id, p)) {
            continue;
        }
        let started = StdInstant::now();
        let mut out = Outcome::new();
        (case.run)(&mut out, at);
        if out.behaviour == Grade::Unimplemented {
            // Nothing to judge in how an unimplemented case ended.
            out.close = Grade::Ok;
        }
        reports.push(out.report(case.id, case.description, case.requirement, started));
    }
    reports
}

// ----- the client role: bookend plays the callee ------------------------------

/// How long the client role waits for the implementation to connect for
/// each case, by default.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// A case of the client role: run on each connection the implementation
/// makes.
type RunClientCase = Box<dyn Fn(&mut Outcome, Peer)>;

struct ClientCase {
    id: String,
    description: String,
    requirement: &'static str,
    run: RunClientCase,
}

/// Waits for the caller's complete CONNECT; `None` (graded) if none came.
fn await_request(out: &mut Outcome, p: &mut Peer) -> Option<bookend_session::ConnectRequest> {
    match p.wait_event(ANSWER_TIMEOUT, |e| {
        matches!(e, Event::ConnectRequest(_) | Event::Closed(_))
    }) {
        Some(Event::ConnectRequest(r)) => Some(r),
        other => {
            out.behaviour(Grade::Failed, "a complete CONNECT", format!("{other:?}"));
            None
        }
    }
}

/// The demo server's side of the seed scenario (`docs/demo-payload.md`):
/// accept with the greeting, answer each request, then answer the caller's
/// total with the grand total and close at once (5a).
fn serve_seed(out: &mut Outcome, p: Peer) {
    serve_seed_with(out, p, None);
}

/// [`serve_seed`], granting KEEPALIVE_MS `keepalive` if given and then,
/// before answering the first request, grading the caller's keepalive.
fn serve_seed_with(out: &mut Outcome, mut p: Peer, keepalive: Option<u32>) {
    let Some(req) = await_request(out, &mut p) else {
        out.wire = p.wire;
        return;
    };
    let now = p.now();
    let mut grant = req.grant;
    if let Some(k) = keepalive {
        grant.keepalive_ms = k;
        // The keepalive check writes PINGs of its own, unsealed.
        grant.integrity = Integrity::None;
    }
    if let Err(e) = p.session.accept(now, Some(b"welcome to bookend"), grant) {
        out.behaviour(Grade::Failed, "a request we can accept", e);
        out.wire = p.wire;
        return;
    }
    if let Some(k) = keepalive {
        observe_keepalive(out, &mut p, k);
    }
    let mode = req.grant.mode;
    let mut served = 0u64;
    loop {
        match p.read_value(8, ANSWER_TIMEOUT) {
            Some(v) if v.len() >= 8 => {
                let n = u64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
                if n != served + 1 {
                    out.behaviour(
                        Grade::Failed,
                        &format!("request {} (demo payload)", served + 1),
                        n,
                    );
                }
                served += 1;
                let r = (n + 1_000_000).to_be_bytes();
                let sent = match mode {
                    Mode::Stream => p.session.send(&r).map(|_| ()),
                    _ => p.session.send_message(&r),
                };
                if let Err(e) = sent {
                    out.behaviour(Grade::Failed, "the reply queued", e);
                    break;
                }
            }
            _ => break,
        }
    }
    // Step 1 seen from here: the caller's DISCONNECT with its total.
    let _ = p.wait_event(ANSWER_TIMEOUT, |e| {
        matches!(e, Event::PeerDisconnected | Event::Closed(_))
    });
    let mut buf = [0u8; 64];
    match p.session.recv_disconnect(&mut buf) {
        Ok(Some(8)) if u64::from_be_bytes(buf[..8].try_into().unwrap_or([0; 8])) == served => {}
        other => out.behaviour(
            Grade::Failed,
            &format!("the caller's total {served} as 8 bytes of disconnect data (step 1)"),
            format!("{other:?}"),
        ),
    }
    // Steps 5 and 5a: the grand total, and closesocket at once.
    let now = p.now();
    let _ = p.session.send_disconnect(now, Some(&served.to_be_bytes()));
    p.session.close(now);
    let _ = p.wait_event(ANSWER_TIMEOUT, |e| matches!(e, Event::Closed(_)));
    let end = p.wait_end(ANSWER_TIMEOUT);
    match (p.closed(), end) {
        (Some(CloseReason::Graceful), Some(TcpEnd::Fin)) => {}
        (reason, end) => out.close(
            Grade::Failed,
            "the caller's FIN after our DISCONNECT, no RST (§5.4, steps 6-8)",
            format!("{reason:?} with {end:?}"),
        ),
    }
    out.wire = p.wire;
}

/// Every case of the client role, in order: one connection each.
fn client_cases() -> Vec<ClientCase> {
    let mut cases = vec![
        ClientCase {
            id: "bookend/9.2/1".into(),
            description: "the seed scenario as the callee, closing at once after our \
                          DISCONNECT (5a)"
                .into(),
            requirement: "§9.2, §5.4: the caller reads our disconnect data, then sends \
                          FIN; both sides end gracefully",
            run: Box::new(serve_seed),
        },
        ClientCase {
            id: "bookend/3.3/1".into(),
            description: "REJECT(REJECTED) with data".into(),
            requirement: "§3.3, §5.4: a caller that receives REJECT sends FIN (REFUSED) \
                          and nothing else",
            run: Box::new(|o, mut p| {
                if await_request(o, &mut p).is_none() {
                    o.wire = p.wire;
                    return;
                }
                let now = p.now();
                let _ = p
                    .session
                    .reject(now, Reason::REJECTED, Some(b"bookend check"));
                let _ = p.flush();
                let end = p.wait_end(ANSWER_TIMEOUT);
                let after_connect = p
                    .wire
                    .iter()
                    .filter(|w| w.dir == Dir::Received && !w.bytes.is_empty())
                    .count();
                if after_connect > 1 && !matches!(p.closed(), Some(CloseReason::Rejected { .. })) {
                    o.behaviour(
                        Grade::Failed,
                        "nothing after CONNECT",
                        format!("{:?}", p.closed()),
                    );
                }
                if end != Some(TcpEnd::Fin) {
                    o.close(Grade::Failed, "FIN (§5.4: REFUSED)", format!("{end:?}"));
                }
                o.wire = p.wire;
            }),
        },
    ];
    cases.extend(client_illegal_frame_cases());
    cases.push(ClientCase {
        id: "bookend/5.4/1".into(),
        description: "our FIN in OPEN, without DISCONNECT".into(),
        requirement: "§5.4: a FIN where the peer's session layer ended without \
                      DISCONNECT is ABORT(UNEXPECTED_EOF) and RST",
        run: Box::new(|o, mut p| {
            if accept_unsealed(o, &mut p) {
                send_fin(&mut p);
                expect_abort_then_rst(o, &mut p, Reason::UNEXPECTED_EOF, "§5.4");
            }
            o.wire = p.wire;
        }),
    });
    // §10.2's rows a caller can be sent in OPEN, unsealed ones only (the
    // session is accepted without integrity).
    for (i, row) in REFUSALS.iter().enumerate() {
        let bytes = unhex(row.hex);
        let sealed = bytes[1] & 0x40 != 0 || row.what.contains("in force");
        if sealed || matches!(bytes[0], 0x01 | 0x03) {
            continue;
        }
        let row = *row;
        cases.push(ClientCase {
            id: format!("bookend/10.2/{}", i + 1),
            description: format!("refuse in OPEN: {}", row.what),
            requirement: "§10.2, §5.5: a frame a receiver must refuse ends the session \
                          with ABORT(reason) and RST",
            run: Box::new(move |o, mut p| {
                if accept_unsealed(o, &mut p) {
                    let _ = p.write_raw(&unhex(row.hex));
                    expect_abort_then_rst(o, &mut p, row.reason, "§10.2");
                }
                o.wire = p.wire;
            }),
        });
    }
    // §10.2's REJECT row, to a caller waiting for its answer.
    cases.push(ClientCase {
        id: "bookend/10.2/7".into(),
        description: "refuse in CONNECT_SENT: REJECT shorter than its reason".into(),
        requirement: "§10.2, §5.5: a frame a receiver must refuse ends the session with \
                      ABORT(reason) and RST",
        run: Box::new(|o, mut p| {
            if await_request(o, &mut p).is_some() {
                let _ = p.write_raw(&unhex("03 00 00 00 00 01 00"));
                expect_abort_then_rst(o, &mut p, Reason::PROTOCOL_ERROR, "§10.2");
            }
            o.wire = p.wire;
        }),
    });
    // §10.5: ACCEPTs granting beyond the proposal.
    let rows: [(&str, &str, bool); 2] = [
        (
            "02 00 00 00 00 0d 42 4b 4e 44 01 00 00 05 80 05 00 01 01",
            "an ACCEPT granting message mode to a stream-mode proposal",
            false,
        ),
        (
            "02 00 00 00 00 0d 42 4b 4e 44 01 00 00 05 00 07 00 01 01",
            "an ACCEPT granting INTEGRITY, unsealed, which was not proposed",
            true,
        ),
    ];
    for (i, (bytes, what, needs_no_integrity)) in rows.into_iter().enumerate() {
        cases.push(ClientCase {
            id: format!("bookend/10.5/{}", i + 1),
            description: what.into(),
            requirement: "§10.5, §4.2: a caller ends a session whose ACCEPT grants beyond \
                          its proposal with ABORT(PROTOCOL_ERROR), then RST",
            run: Box::new(move |o, mut p| {
                let Some(req) = await_request(o, &mut p) else {
                    o.wire = p.wire;
                    return;
                };
                if req.proposed.mode != Mode::Stream
                    || (needs_no_integrity && req.proposed.integrity != Integrity::None)
                {
                    o.behaviour(
                        Grade::Informational,
                        "a proposal of stream mode without INTEGRITY",
                        format!("{:?}, {:?}", req.proposed.mode, req.proposed.integrity),
                    );
                    o.wire = p.wire;
                    return;
                }
                if let Err(e) = p.write_raw(&unhex(bytes)) {
                    o.behaviour(Grade::Failed, "the ACCEPT sent", e);
                    return;
                }
                expect_abort_then_rst(o, &mut p, Reason::PROTOCOL_ERROR, "§10.5");
                o.wire = p.wire;
            }),
        });
    }
    cases.push(ClientCase {
        id: "bookend/7/3".into(),
        description: format!(
            "keepalive: granted KEEPALIVE_MS {CHECK_KEEPALIVE_MS}, the caller PINGs"
        ),
        requirement: "§7, §4.2: the callee chooses the keepalive interval K; with nothing \
                      to send for K, the caller sends PING",
        run: Box::new(|o, p| serve_seed_with(o, p, Some(CHECK_KEEPALIVE_MS))),
    });
    cases
}

/// Accepts the caller's request without integrity (a caller may prefer it,
/// not require it: `docs/demo-payload.md`), so that raw unsealed frames
/// can follow. `false` (graded) if the session could not be accepted.
fn accept_unsealed(out: &mut Outcome, p: &mut Peer) -> bool {
    let Some(req) = await_request(out, p) else {
        return false;
    };
    let mut grant = req.grant;
    grant.integrity = Integrity::None;
    let now = p.now();
    if let Err(e) = p.session.accept(now, Some(b"welcome to bookend"), grant) {
        out.behaviour(Grade::Failed, "a request we can accept unsealed", e);
        return false;
    }
    if p.flush().is_err() {
        return false;
    }
    true
}

/// §5.3 for a caller: every well-formed frame with no row in
/// `CONNECT_SENT` (written before our answer) or `OPEN` (after an ACCEPT
/// without integrity) is ABORT(`UNEXPECTED_FRAME`) and RST; generated from
/// the transition table.
fn client_illegal_frame_cases() -> Vec<ClientCase> {
    use bookend_session::state::State;
    illegal_frames(&[State::ConnectSent, State::Open])
        .into_iter()
        .map(|(id, description, state, bytes)| ClientCase {
            id,
            description,
            requirement: "§5.3, §2.4: a frame with no row in the receiver's state is \
                              ABORT(UNEXPECTED_FRAME) and RST",
            run: Box::new(move |o, mut p| {
                let ready = if state == State::ConnectSent {
                    await_request(o, &mut p).is_some()
                } else {
                    accept_unsealed(o, &mut p)
                };
                if ready {
                    let _ = p.write_raw(&bytes);
                    expect_abort_then_rst(o, &mut p, Reason::UNEXPECTED_FRAME, "§5.3");
                }
                o.wire = p.wire;
            }),
        })
        .collect()
}

/// The timer cases of the client role (`--timers`): the implementation
/// runs with the connect and linger timers at [`SHORT_TIMER`].
fn client_timer_cases() -> Vec<ClientCase> {
    vec![ClientCase {
        id: "bookend/7/1".into(),
        description: "connect timer: a callee that never answers".into(),
        requirement: "§7: the connect timer ends a CONNECT left unanswered with \
                      ABORT(CONNECT_TIMEOUT) and RST (run with it at 2 s)",
        run: Box::new(|o, mut p| {
            if await_request(o, &mut p).is_none() {
                o.wire = p.wire;
                return;
            }
            let t0 = StdInstant::now();
            let _ = p.wait_event(SHORT_TIMER + TIMER_LATE, |e| matches!(e, Event::Closed(_)));
            grade_timer(o, t0.elapsed(), "connect");
            expect_abort_then_rst(o, &mut p, Reason::CONNECT_TIMEOUT, "§7");
            o.wire = p.wire;
        }),
    }]
}

/// Runs the client role's cases selected by `pattern`: listens on
/// `listen` and runs each case on the next connection the implementation
/// makes, waiting at most `wait` for it.
///
/// This function returns `Err` if `listen` cannot be bound.
pub fn check_client(
    net: &dyn Net,
    listen: SocketAddr,
    pattern: Option<&str>,
    wait: Duration,
    timers: bool,
) -> std::io::Result<Vec<Report>> {
    let mut listener = net.listen(listen)?;
    let mut reports = Vec::new();
    let mut cases = client_cases();
    if timers {
        cases.extend(client_timer_cases());
    }
    for case in cases {
        if pattern.is_some_and(|p| !selected(&case.id, p)) {
            continue;
        }
        let mut out = Outcome::new();
        let until = StdInstant::now() + wait;
        let tcp = listener.accept(until).ok().flatten();
        let started = StdInstant::now();
        match tcp.map(|t| Peer::callee(t, Mode::Stream)) {
            Some(Ok(p)) => (case.run)(&mut out, p),
            Some(Err(e)) => out.behaviour(Grade::Failed, "a usable connection", e),
            None => out.behaviour(
                Grade::Failed,
                "a connection from the implementation",
                format!("none within {} s", wait.as_secs()),
            ),
        }
        reports.push(out.report(case.id, case.description, case.requirement, started));
    }
    Ok(reports)
}

// ----- the property mode: random scripts against the reference machine ------

/// One step of a random caller script (after its CONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next request of the demo payload (an 8-byte stream DATA).
    Request,
    /// A PING.
    Ping,
    /// A skippable unknown frame (§2.3).
    Unknown,
    /// A frame the callee must refuse in OPEN: `ILLEGAL[i]`.
    Illegal(usize),
    /// Our DISCONNECT with the number of requests sent.
    Disconnect,
    /// Our FIN.
    Fin,
    /// Our RST (once what came before is answered).
    Rst,
}

/// Frames a callee must refuse in OPEN, for the property mode: §10.2's
/// unsealed rows and §5.3's CONNECT in OPEN.
const ILLEGAL: &[&str] = &[
    "00 00 00 00 00 00",
    "40 80 00 00 00 00",
    "05 00 00 00 00 01 2a",
    "07 00 00 00 00 01 00",
    "02 00 00 00 00 08 42 4b 4e 44 01 00 00 00",
];

/// A random script: its steps and the segment sizes its bytes are written
/// in (cycled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The steps, after the CONNECT.
    pub steps: Vec<Step>,
    /// Bytes per write, cycled over the whole script.
    pub splits: Vec<usize>,
}

/// SplitMix64: the property mode's seeded generator (same seed, same
/// scripts on every machine).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The `k`th script of seed `seed`: mostly legal traffic, with illegal
/// frames, FIN and RST at random points, and segment sizes from one byte
/// up.
pub fn script(seed: u64, k: u64) -> Script {
    let mut r = Rng(seed ^ k.wrapping_mul(0xa076_1d64_78bd_642f));
    let len = 1 + r.below(12);
    let steps = (0..len)
        .map(|_| match r.below(20) {
            0..=8 => Step::Request,
            9 | 10 => Step::Ping,
            11 | 12 => Step::Unknown,
            13 | 14 => Step::Illegal(r.below(ILLEGAL.len())),
            15 | 16 => Step::Disconnect,
            17 | 18 => Step::Fin,
            _ => Step::Rst,
        })
        .collect();
    let splits = (0..1 + r.below(4))
        .map(|_| match r.below(3) {
            0 => 1 + r.below(3),
            1 => 1 + r.below(20),
            _ => 4096,
        })
        .collect();
    Script { steps, splits }
}

/// What a callee answered a script: its frames (type, and the reason of a
/// REJECT or ABORT) and how its side of the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The frames, in order.
    pub frames: Vec<(u8, Option<u16>)>,
    /// `FIN`, `RST` or `open`.
    pub end: &'static str,
}

/// The frames in `bytes` (unsealed or sealed), as `Answer::frames`.
fn frames_of(bytes: &[u8]) -> Vec<(u8, Option<u16>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 6 {
        let (t, flags) = (bytes[at], bytes[at + 1]);
        let len = u32::from_be_bytes([bytes[at + 2], bytes[at + 3], bytes[at + 4], bytes[at + 5]])
            as usize;
        let hl = bookend_wire::header_len(flags);
        if bytes.len() < at + hl + len {
            break;
        }
        let reason = matches!(t, 0x03 | 0x06)
            .then(|| bytes.get(at + hl..at + hl + 2))
            .flatten()
            .map(|r| u16::from_be_bytes([r[0], r[1]]));
        out.push((t, reason));
        at += hl + len;
    }
    out
}

/// The bytes of each of a script's steps up to (not including) its first
/// FIN or RST, and that step.
fn script_parts(steps: &[Step]) -> (Vec<(Step, Vec<u8>)>, Option<Step>) {
    let mut parts = Vec::new();
    let mut n = 0u64;
    for step in steps {
        let mut b = Vec::new();
        match *step {
            Step::Request => {
                n += 1;
                b.extend_from_slice(&[0x04, 0, 0, 0, 0, 8]);
                b.extend_from_slice(&n.to_be_bytes());
            }
            Step::Ping => b.extend_from_slice(&[0x07, 0, 0, 0, 0, 0]),
            Step::Unknown => b.extend_from_slice(&[0x40, 0, 0, 0, 0, 2, 0xaa, 0xbb]),
            Step::Illegal(i) => b.extend_from_slice(&unhex(ILLEGAL[i % ILLEGAL.len()])),
            Step::Disconnect => {
                b.extend_from_slice(&[0x05, 0x01, 0, 0, 0, 8]);
                b.extend_from_slice(&n.to_be_bytes());
            }
            Step::Fin | Step::Rst => return (parts, Some(*step)),
        }
        parts.push((*step, b));
    }
    (parts, None)
}

/// How long a script waits for an answer it expects (a request's reply,
/// the implementation's DISCONNECT) before it stops there.
const SCRIPT_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Which answer a step waits for before the next is sent (the script is a
/// conversation, as a caller's application is: the demo server's replies
/// come from its application, whose timing no script can know): a request
/// its reply, our DISCONNECT the implementation's.
fn awaited(step: Step) -> Option<u8> {
    match step {
        Step::Request => Some(0x04),
        Step::Disconnect => Some(0x05),
        _ => None,
    }
}

/// What the reference machine answers a script: a `bookend-session` callee
/// with the defaults, playing the demo server (accept with the greeting,
/// answer each request, answer the caller's DISCONNECT with the grand total
/// and close at once), each step fed once the one before is answered.
pub fn reference(steps: &[Step]) -> Answer {
    let (parts, last) = script_parts(steps);
    let Ok(mut s) = Session::callee(Config::default(), 1, Instant::ZERO) else {
        return Answer {
            frames: Vec::new(),
            end: "open",
        };
    };
    let now = Instant::ZERO;
    let mut out = Vec::new();
    let mut end = "open";
    let connect = unhex("01 00 00 00 00 08 42 4b 4e 44 01 01 00 00");
    let inputs = std::iter::once(connect).chain(parts.into_iter().map(|(_, b)| b));
    let settle = |s: &mut Session, out: &mut Vec<u8>, end: &mut &'static str| {
        for _ in 0..1000 {
            let mut progressed = false;
            while let Some(e) = s.poll_event() {
                progressed = true;
                match e {
                    Event::ConnectRequest(r) => {
                        let _ = s.accept(now, Some(b"welcome to bookend"), r.grant);
                    }
                    Event::Readable => {
                        let mut v = [0u8; 8];
                        while s.recv_queue() >= 8 && s.recv(&mut v) == Ok(8) {
                            let n = u64::from_be_bytes(v);
                            let _ = s.send(&(n + 1_000_000).to_be_bytes());
                        }
                    }
                    Event::PeerDisconnected => {
                        let mut d = [0u8; 64];
                        let _ = s.recv_disconnect(&mut d);
                        let _ = s.send_disconnect(now, Some(&0u64.to_be_bytes()));
                        s.close(now);
                    }
                    _ => {}
                }
            }
            while let Some(b) = s.poll_transmit_bytes(now, 64 * 1024) {
                progressed = true;
                out.extend_from_slice(&b);
            }
            while let Some(a) = s.poll_transport_action() {
                progressed = true;
                *end = if a == bookend_session::TransportAction::Fin {
                    "FIN"
                } else {
                    "RST"
                };
            }
            if !progressed {
                return;
            }
        }
    };
    for input in inputs {
        let mut fed = 0;
        for _ in 0..1000 {
            if fed >= input.len() {
                break;
            }
            fed += s.handle_bytes(now, &input[fed..]);
            settle(&mut s, &mut out, &mut end);
        }
        settle(&mut s, &mut out, &mut end);
    }
    if last == Some(Step::Fin) {
        s.handle_transport_closed(now, bookend_session::TransportClosed::Fin);
        settle(&mut s, &mut out, &mut end);
    }
    Answer {
        frames: frames_of(&out),
        end,
    }
}

/// Runs a script against the implementation at `addr`: the CONNECT, then
/// each step in the script's segment sizes, waiting after a request or our
/// DISCONNECT for its answer; then FIN (shutdown) or RST (once the answers
/// stop coming) if the script ends so, and reads the answer until the
/// implementation's side ends or 500 ms pass without a byte.
pub fn run_script(at: &Target, script: &Script, expect_rst: bool) -> std::io::Result<Answer> {
    let (parts, last) = script_parts(&script.steps);
    let mut tcp = at.net.connect(at.addr, ANSWER_TIMEOUT)?;
    let mut got = Vec::new();
    // Reads until `count` frames of type `t` have come, the stream ends, or
    // the answer time passes; says whether they came.
    let wait_for = |tcp: &mut Box<dyn Stream>, got: &mut Vec<u8>, t: Option<u8>, count: usize| {
        let mut b = [0u8; 4096];
        let seen = |got: &Vec<u8>| {
            let f = frames_of(got);
            f.iter().any(|f| f.0 == 0x06)
                || t.map_or(!f.is_empty(), |t| {
                    f.iter().filter(|f| f.0 == t).count() >= count
                })
        };
        while !seen(got) {
            // Each read gets the whole answer time, as a socket's read
            // timeout gives it: answers that trickle in are still answers.
            match tcp.read_until(&mut b, StdInstant::now() + SCRIPT_ANSWER_TIMEOUT) {
                transport::Read::Data(n) => got.extend_from_slice(&b[..n]),
                _ => return false,
            }
        }
        true
    };
    // The CONNECT, then its answer: a caller sends nothing more until ACCEPT
    // (§3.1).
    tcp.write_all(&unhex("01 00 00 00 00 08 42 4b 4e 44 01 01 00 00"))?;
    wait_for(&mut tcp, &mut got, None, 1);
    let mut sizes = script.splits.iter().cycle();
    let mut counts = [0usize; 256];
    'steps: for (step, bytes) in &parts {
        let mut at = 0;
        while at < bytes.len() {
            let size = (*sizes.next().unwrap_or(&4096)).max(1);
            let end = (at + size).min(bytes.len());
            // A write may fail once the implementation has reset: what it
            // answered is still read below.
            if tcp.write_all(&bytes[at..end]).is_err() {
                break 'steps;
            }
            at = end;
            if size < 64 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some(t) = awaited(*step) {
            counts[t as usize] += 1;
            // No answer: the conversation is over (what came is compared).
            if !wait_for(&mut tcp, &mut got, Some(t), counts[t as usize]) {
                break;
            }
        }
    }
    let quiet = Duration::from_millis(500);
    let read_until_quiet = |tcp: &mut Box<dyn Stream>, got: &mut Vec<u8>| -> &'static str {
        let mut b = [0u8; 16 * 1024];
        loop {
            match tcp.read_until(&mut b, StdInstant::now() + quiet) {
                transport::Read::Fin => {
                    std::thread::sleep(Duration::from_millis(200));
                    return if tcp.rst_after_fin() { "RST" } else { "FIN" };
                }
                transport::Read::Data(n) => got.extend_from_slice(&b[..n]),
                transport::Read::Idle => return "open",
                transport::Read::Reset => return "RST",
            }
        }
    };
    if last == Some(Step::Fin) {
        tcp.shutdown_write();
    }
    let mut end = read_until_quiet(&mut tcp, &mut got);
    // An RST after the FIN (no ABORT can follow a FIN) may take up to the
    // same bound (§5.4): wait for it where the reference sends one.
    if end == "FIN" && expect_rst {
        let t0 = StdInstant::now();
        while t0.elapsed() < RST_BOUND {
            if tcp.rst_after_fin() {
                end = "RST";
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // After an ABORT the RST may take up to the abort-flush bound (§5.4).
    let mut waited = Duration::ZERO;
    while end == "open" && waited < RST_BOUND && frames_of(&got).last().is_some_and(|f| f.0 == 0x06)
    {
        end = read_until_quiet(&mut tcp, &mut got);
        waited += quiet;
    }
    if last == Some(Step::Rst) {
        tcp.reset();
    }
    Ok(Answer {
        frames: frames_of(&got),
        end,
    })
}

/// Whether the implementation answered as the reference did: the same
/// frames (types and reasons) and the same end; after our RST only what
/// came before it counts, and a side still open is as good as one whose
/// end we did not wait for.
fn agrees(reference: &Answer, actual: &Answer, last: Option<Step>) -> bool {
    let ends_agree = match last {
        Some(Step::Rst) => true,
        // An RST that comes after our FIN was acknowledged finds our socket
        // closed and leaves no trace on it: a FIN is all we can see then.
        Some(Step::Fin) => {
            reference.end == actual.end || (reference.end == "RST" && actual.end == "FIN")
        }
        _ => reference.end == actual.end,
    };
    reference.frames == actual.frames && ends_agree
}

/// The property mode (`--random N --seed S`): `n` random scripts against
/// the implementation, each checked against the reference machine; a
/// disagreement is shrunk (steps removed one at a time while it still
/// disagrees) and reported with the seed and script that reproduce it.
pub fn check_random(at: &Target, n: u64, seed: u64) -> Vec<Report> {
    let mut reports = Vec::new();
    for k in 0..n {
        let started = StdInstant::now();
        let mut sc = script(seed, k);
        let disagrees = |sc: &Script| -> Option<(Answer, Answer)> {
            let expected = reference(&sc.steps);
            let actual = run_script(at, sc, expected.end == "RST").ok()?;
            let last = script_parts(&sc.steps).1;
            (!agrees(&expected, &actual, last)).then_some((expected, actual))
        };
        let mut found = disagrees(&sc);
        if found.is_some() {
            // Shrink: drop steps while the disagreement stays.
            let mut i = 0;
            while i < sc.steps.len() {
                let mut smaller = sc.clone();
                smaller.steps.remove(i);
                if let Some(f) = disagrees(&smaller) {
                    sc = smaller;
                    found = Some(f);
                } else {
                    i += 1;
                }
            }
        }
        let (behaviour, detail) = match &found {
            None => (Grade::Ok, String::new()),
            Some((expected, actual)) => (
                Grade::Failed,
                format!(
                    "behaviour: expected {expected:?}, actual {actual:?}; script {:?} in segments of {:?} (seed {seed}, script {k})",
                    sc.steps, sc.splits
                ),
            ),
        };
        reports.push(Report {
            id: format!("bookend/random/{k}"),
            description: format!("{:?}", sc.steps),
            requirement: "the implementation answers any interleaving of legal and \
                          illegal frames, splits, FIN and RST as bookend-session does",
            behaviour,
            close: Grade::Ok,
            detail,
            wire: Vec::new(),
            duration: started.elapsed(),
        });
    }
    reports
}

/// The summary table, then each case that is not OK with its requirement,
/// expected and actual, and the bytes exchanged.
pub fn text_report(reports: &[Report]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<13} {:<13} {:>7}  description",
        "case", "behaviour", "close", "ms"
    );
    for r in reports {
        let _ = writeln!(
            s,
            "{:<16} {:<13} {:<13} {:>7}  {}",
            r.id,
            r.behaviour.name(),
            r.close.name(),
            r.duration.as_millis(),
            r.description
        );
    }
    for r in reports.iter().filter(|r| r.grade() != Grade::Ok) {
        let _ = writeln!(s, "\n{} {}: {}", r.id, r.grade().name(), r.description);
        let _ = writeln!(s, "  requirement: {}", r.requirement);
        let _ = writeln!(s, "  {}", r.detail);
        if r.grade() == Grade::Failed {
            for w in &r.wire {
                let dir = if w.dir == Dir::Sent { ">" } else { "<" };
                let what = w.end.map_or_else(|| hex(&w.bytes), str::to_string);
                let _ = writeln!(s, "  {:>9} us {dir} {what}", w.at_us);
            }
        }
    }
    let count = |g: Grade| reports.iter().filter(|r| r.grade() == g).count();
    let _ = writeln!(
        s,
        "\n{} cases: {} OK, {} NON-STRICT, {} INFORMATIONAL, {} UNIMPLEMENTED, {} FAILED",
        reports.len(),
        count(Grade::Ok),
        count(Grade::NonStrict),
        count(Grade::Informational),
        count(Grade::Unimplemented),
        count(Grade::Failed)
    );
    s
}

/// Which side of the connections bookend check played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `check server`: bookend called, the implementation listened.
    Caller,
    /// `check client`: the implementation called, bookend listened.
    Callee,
}

/// The run as a capture file (`--pcap FILE`): each case's connection as
/// one TCP connection between 10.0.0.2 (bookend check) and 10.0.0.1 (the
/// implementation) with a handshake, the bytes each way as they were
/// written and read, and FIN or RST as they were seen; LINKTYPE_RAW (IPv4),
/// the cases one after another in time. Made from the wire log, so it shows
/// what each side's application handed TCP and read from it, not
/// retransmissions.
pub fn pcap(reports: &[Report], role: Role, port: u16) -> Vec<u8> {
    use smoltcp::phy::PcapSink as _;
    use smoltcp::wire::TcpControl;
    let mut f: Vec<u8> = Vec::new();
    f.global_header(smoltcp::phy::PcapLinkType::Ip);
    let mut base_us: u64 = 0;
    for (i, r) in reports.iter().enumerate() {
        let ephemeral = 40000 + i as u16;
        // The ports of bookend check and of the implementation.
        let (our_port, their_port) = match role {
            Role::Caller => (ephemeral, port),
            Role::Callee => (port, ephemeral),
        };
        // The next sequence number: ours, theirs.
        let mut seq = [0u32, 0u32];
        let mut packet = |at: u64, from_us: bool, control: TcpControl, ack: bool, data: &[u8]| {
            let (me, them) = if from_us { (0, 1) } else { (1, 0) };
            let ports = if from_us {
                (our_port, their_port)
            } else {
                (their_port, our_port)
            };
            // Segments of at most 65 000 bytes (an IPv4 packet's bound).
            let chunks: Vec<&[u8]> = if data.is_empty() {
                vec![data]
            } else {
                data.chunks(65_000).collect()
            };
            for chunk in chunks {
                let bytes = segment(
                    from_us,
                    ports,
                    control,
                    seq[me],
                    ack.then_some(seq[them]),
                    chunk,
                );
                seq[me] = seq[me].wrapping_add(chunk.len() as u32);
                let t = base_us + at;
                f.packet(smoltcp::time::Instant::from_micros(t as i64), &bytes);
            }
            if matches!(control, TcpControl::Syn | TcpControl::Fin) {
                // SYN and FIN take a sequence number.
                seq[me] = seq[me].wrapping_add(1);
            }
        };
        // The handshake, the caller first.
        let caller_is_us = role == Role::Caller;
        packet(0, caller_is_us, TcpControl::Syn, false, &[]);
        packet(0, !caller_is_us, TcpControl::Syn, true, &[]);
        packet(0, caller_is_us, TcpControl::None, true, &[]);
        for w in &r.wire {
            let control = match w.end {
                Some("FIN") => TcpControl::Fin,
                Some("RST") => TcpControl::Rst,
                _ => TcpControl::Psh,
            };
            packet(w.at_us, w.dir == Dir::Sent, control, true, &w.bytes);
        }
        base_us += r.wire.last().map_or(0, |w| w.at_us) + 1_000;
    }
    f
}

/// One IPv4/TCP segment between 10.0.0.2 (bookend check, `from_us`) and
/// 10.0.0.1, with its checksums, emitted by smoltcp's wire module.
fn segment(
    from_us: bool,
    (src_port, dst_port): (u16, u16),
    control: smoltcp::wire::TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, TcpSeqNumber,
    };
    let (ours, theirs) = (Ipv4Address::new(10, 0, 0, 2), Ipv4Address::new(10, 0, 0, 1));
    let (src, dst) = if from_us {
        (ours, theirs)
    } else {
        (theirs, ours)
    };
    let tcp = TcpRepr {
        src_port,
        dst_port,
        control,
        // Serial numbers: the bits as they are (RFC 1982).
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 0xffff,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let caps = ChecksumCapabilities::default();
    let mut buf = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), &caps);
    let header = ip.buffer_len();
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut buf[header..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        &caps,
    );
    buf
}

/// One JSON object per case, one per line: id, description, requirement,
/// grades, detail, timing and the wire log.
pub fn json_report(reports: &[Report]) -> String {
    let mut s = String::new();
    for r in reports {
        let wire: Vec<String> = r
            .wire
            .iter()
            .map(|w| {
                format!(
                    "{{\"at_us\":{},\"dir\":{},\"bytes\":{}}}",
                    w.at_us,
                    crate::nc::json_str(if w.dir == Dir::Sent {
                        "sent"
                    } else {
                        "received"
                    }),
                    crate::nc::json_str(&w.end.map_or_else(|| hex(&w.bytes), str::to_string))
                )
            })
            .collect();
        s.push_str(&format!(
            "{{\"id\":{},\"description\":{},\"requirement\":{},\"behaviour\":{},\"close\":{},\"grade\":{},\"detail\":{},\"ms\":{},\"wire\":[{}]}}\n",
            crate::nc::json_str(&r.id),
            crate::nc::json_str(&r.description),
            crate::nc::json_str(r.requirement),
            crate::nc::json_str(r.behaviour.name()),
            crate::nc::json_str(r.close.name()),
            crate::nc::json_str(r.grade().name()),
            crate::nc::json_str(&r.detail),
            r.duration.as_millis(),
            wire.join(",")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_patterns_select_by_section() {
        assert!(selected("bookend/10.2/3", "10.2.*"));
        assert!(selected("bookend/10.2/3", "bookend/10.2/*"));
        assert!(selected("bookend/10.2/3", "10.2.3"));
        assert!(!selected("bookend/10.2/3", "9.2.*"));
        assert!(!selected("bookend/10.2/13", "10.2.1"));
        assert!(selected("bookend/9.2/1", "*"));
    }

    /// `CONNECT_VECTOR` is §10.1's `connect` vector.
    #[test]
    fn the_connect_vector_is_the_specs() {
        let spec = include_str!("../../../docs/protocol.md");
        let start = spec.find("```hex vector=connect\n").unwrap();
        let body = &spec[start..];
        let body = &body[body.find('\n').unwrap() + 1..];
        let body = &body[..body.find("```").unwrap()];
        assert_eq!(unhex(CONNECT_VECTOR), unhex(body));
    }

    /// `REFUSALS` is §10.2's table: the same bytes and reasons, in order.
    #[test]
    fn spec_tables_match() {
        let spec = include_str!("../../../docs/protocol.md");
        let start = spec.find("### 10.2").unwrap();
        let end = start + spec[start..].find("\n### ").unwrap();
        let rows: Vec<(Vec<u8>, String)> = spec[start..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                let bytes = unhex(cells[1].trim().trim_matches('`'));
                let reason = cells[3]
                    .split("ABORT(`")
                    .nth(1)
                    .and_then(|r| r.split('`').next())
                    .unwrap()
                    .to_string();
                (bytes, reason)
            })
            .collect();
        assert_eq!(rows.len(), REFUSALS.len());
        for (row, (bytes, reason)) in REFUSALS.iter().zip(rows) {
            assert_eq!(unhex(row.hex), bytes, "{}", row.what);
            assert_eq!(row.reason.name(), Some(reason.as_str()), "{}", row.what);
        }
    }
}

/// A project's pinned results (`--expect FILE`): one case per line, its id
/// and the grade it is expected to get (`bookend/9.2/2 UNIMPLEMENTED`);
/// `#` starts a comment.
///
/// This function returns `Err` with the line for a line it cannot read.
pub fn parse_expectations(text: &str) -> Result<Vec<(String, Grade)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(id), Some(grade), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {}: expected `CASE GRADE`: {line}", i + 1));
        };
        let grade = [
            Grade::Ok,
            Grade::NonStrict,
            Grade::Informational,
            Grade::Unimplemented,
            Grade::Failed,
        ]
        .into_iter()
        .find(|g| g.name().eq_ignore_ascii_case(grade))
        .ok_or_else(|| format!("line {}: not a grade: {grade}", i + 1))?;
        out.push((id.to_string(), grade));
    }
    Ok(out)
}

/// What differs from the pinned results, tlsfuzzer's rule: a case pinned
/// to a grade that got another (an expected failure that now passes
/// included, so that the list stays true), and a case not pinned that
/// FAILED. Empty when the run is as expected.
pub fn unexpected(reports: &[Report], pinned: &[(String, Grade)]) -> Vec<String> {
    let mut out = Vec::new();
    for r in reports {
        match pinned.iter().find(|(id, _)| *id == r.id) {
            Some((_, g)) if *g != r.grade() => out.push(format!(
                "{}: pinned {}, got {}",
                r.id,
                g.name(),
                r.grade().name()
            )),
            Some(_) => {}
            None if r.grade() == Grade::Failed => {
                out.push(format!("{}: FAILED, not pinned", r.id));
            }
            None => {}
        }
    }
    out
}

/// The run as JUnit XML (`--junit FILE`): one test case per case; FAILED
/// is a failure, UNIMPLEMENTED a skip.
pub fn junit_report(reports: &[Report]) -> String {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    let failures = reports
        .iter()
        .filter(|r| r.grade() == Grade::Failed)
        .count();
    let skipped = reports
        .iter()
        .filter(|r| r.grade() == Grade::Unimplemented)
        .count();
    let total: f64 = reports.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"bookend check\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
        reports.len()
    );
    for r in reports {
        s.push_str(&format!(
            "  <testcase classname=\"bookend\" name=\"{} {}\" time=\"{:.3}\">",
            esc(&r.id),
            esc(&r.description),
            r.duration.as_secs_f64()
        ));
        match r.grade() {
            Grade::Failed => s.push_str(&format!(
                "<failure message=\"{}\">{}</failure>",
                esc(&r.detail),
                esc(r.requirement)
            )),
            Grade::Unimplemented => {
                s.push_str(&format!("<skipped message=\"{}\"/>", esc(&r.detail)));
            }
            g if g != Grade::Ok => s.push_str(&format!(
                "<system-out>{}: {}</system-out>",
                g.name(),
                esc(&r.detail)
            )),
            _ => {}
        }
        s.push_str("</testcase>\n");
    }
    s.push_str("</testsuite>\n");
    s
}

#[cfg(test)]
mod expectation_tests {
    use super::*;

    fn report(id: &str, behaviour: Grade) -> Report {
        Report {
            id: id.into(),
            description: String::new(),
            requirement: "",
            behaviour,
            close: Grade::Ok,
            detail: String::new(),
            wire: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    /// tlsfuzzer's rule: a new failure and an unexpected pass both fail.
    #[test]
    fn pinned_results_catch_new_failures_and_unexpected_passes() {
        let pinned =
            parse_expectations("# known\nbookend/9.2/2 UNIMPLEMENTED\nbookend/10.2/3 failed\n")
                .unwrap();
        let as_pinned = [
            report("bookend/9.2/2", Grade::Unimplemented),
            report("bookend/10.2/3", Grade::Failed),
            report("bookend/9.2/1", Grade::Ok),
        ];
        assert!(unexpected(&as_pinned, &pinned).is_empty());
        let drifted = [
            report("bookend/9.2/2", Grade::Unimplemented),
            report("bookend/10.2/3", Grade::Ok),
            report("bookend/9.2/1", Grade::Failed),
        ];
        assert_eq!(
            unexpected(&drifted, &pinned),
            [
                "bookend/10.2/3: pinned FAILED, got OK",
                "bookend/9.2/1: FAILED, not pinned"
            ]
        );
        assert!(parse_expectations("bookend/9.2/2").is_err());
        assert!(parse_expectations("bookend/9.2/2 MAYBE").is_err());
    }

    #[test]
    fn junit_marks_failures_and_skips() {
        let x = junit_report(&[
            report("bookend/9.2/2", Grade::Unimplemented),
            report("bookend/10.2/3", Grade::Failed),
        ]);
        assert!(
            x.contains("tests=\"2\" failures=\"1\" skipped=\"1\""),
            "{x}"
        );
        assert!(x.contains("<failure") && x.contains("<skipped"), "{x}");
    }
}
