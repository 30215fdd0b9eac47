//! The checker's TCP: the kernel's sockets, or a smoltcp stack of its own on a
//! TAP device (`bookend check … --tap DEV --addr CIDR`), behind one small
//! blocking interface.
//!
//! `bookend check` drives its side of each case as straight-line code (send
//! this, wait for that, then FIN), so the interface is blocking with
//! deadlines. What a case must see is exactly what a socket API can tell:
//! bytes, the peer's FIN, the peer's RST, and an RST that follows the FIN
//! (which Linux reports only through `SO_ERROR`).
//!
//! The TAP stack exists for implementations the kernel cannot reach (a board
//! bridged to the TAP device, a stack in a namespace) and so that bookend's
//! own smoltcp stack can be the one under test with no kernel TCP on the
//! checker's side of the wire.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant as StdInstant};

use bookend_sim::tap::{TapError, TapHost};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{IpCidr, IpEndpoint, IpListenEndpoint};

/// What one read saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many bytes, copied into the buffer.
    Data(usize),
    /// The peer's FIN: the end of its stream (every later read says so too).
    Fin,
    /// The peer's RST (or a connection already reset by us).
    Reset,
    /// Nothing before the deadline.
    Idle,
}

/// One TCP connection of the checker.
pub trait Stream: Send {
    /// Writes all of `bytes` (as one segment where the stack allows: the
    /// streams do not delay small segments).
    ///
    /// This function returns `Err` once the connection can no longer send.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Reads what has come, waiting at most until `until`.
    fn read_until(&mut self, buf: &mut [u8], until: StdInstant) -> Read;
    /// Sends our FIN (`shutdown(SHUT_WR)`).
    fn shutdown_write(&mut self);
    /// Ends the connection with an RST, now (`SO_LINGER` 0 and close).
    fn reset(&mut self);
    /// Whether an RST came after the peer's FIN (a read cannot say: it
    /// keeps returning the end of the stream).
    fn rst_after_fin(&mut self) -> bool;
}

/// Waits for connections on one address.
pub trait Acceptor {
    /// The next connection, or `None` if none came before `until`.
    ///
    /// This function returns `Err` if the listener failed.
    fn accept(&mut self, until: StdInstant) -> io::Result<Option<Box<dyn Stream>>>;
}

/// A TCP stack the checker can run on.
pub trait Net {
    /// Connects to `addr`, waiting at most `timeout`.
    ///
    /// This function returns `Err` if the connection is refused or does not
    /// complete in time.
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Box<dyn Stream>>;
    /// Listens on `addr`.
    ///
    /// This function returns `Err` if the address cannot be used.
    fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn Acceptor + '_>>;
}

// ----- the kernel's TCP ---------------------------------------------------------

/// The kernel's TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

struct KernelStream(Option<TcpStream>);

impl Stream for KernelStream {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Some(t) => t.write_all(bytes),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn read_until(&mut self, buf: &mut [u8], until: StdInstant) -> Read {
        let Some(t) = &mut self.0 else {
            return Read::Reset;
        };
        let left = until.saturating_duration_since(StdInstant::now());
        if left.is_zero() {
            return Read::Idle;
        }
        let _ = t.set_read_timeout(Some(left));
        match t.read(buf) {
            Ok(0) => Read::Fin,
            Ok(n) => Read::Data(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Read::Idle
            }
            Err(_) => Read::Reset,
        }
    }

    fn shutdown_write(&mut self) {
        if let Some(t) = &self.0 {
            let _ = t.shutdown(std::net::Shutdown::Write);
        }
    }

    fn reset(&mut self) {
        if let Some(t) = self.0.take() {
            // Closing with a zero linger is how a socket API sends an RST.
            let _ = socket2::SockRef::from(&t).set_linger(Some(Duration::ZERO));
        }
    }

    /// Linux checks for the end of the stream before the socket's error, so
    /// an RST after the FIN leaves only its error (EPIPE in CLOSE_WAIT,
    /// ECONNRESET otherwise), which `SO_ERROR` takes.
    fn rst_after_fin(&mut self) -> bool {
        self.0.as_ref().is_some_and(|t| {
            matches!(
                t.take_error(),
                Ok(Some(e)) if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                )
            )
        })
    }
}

fn kernel_stream(t: TcpStream) -> io::Result<Box<dyn Stream>> {
    t.set_nodelay(true)?;
    Ok(Box::new(KernelStream(Some(t))))
}

struct KernelAcceptor(TcpListener);

impl Acceptor for KernelAcceptor {
    fn accept(&mut self, until: StdInstant) -> io::Result<Option<Box<dyn Stream>>> {
        loop {
            match self.0.accept() {
                Ok((t, _)) => {
                    t.set_nonblocking(false)?;
                    return kernel_stream(t).map(Some);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if StdInstant::now() >= until {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Net for Kernel {
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Box<dyn Stream>> {
        kernel_stream(TcpStream::connect_timeout(&addr, timeout)?)
    }

    fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn Acceptor + '_>> {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(Box::new(KernelAcceptor(l)))
    }
}

// ----- a smoltcp stack on a TAP device ------------------------------------------

/// Each connection's socket buffers, each way.
const TAP_BUFFER: usize = 64 * 1024;
/// Listening sockets kept armed per port: smoltcp has no accept queue (a SYN
/// that finds no listening socket is answered with an RST), so an
/// implementation that reconnects at once must find a spare.
const TAP_LISTEN_SLOTS: usize = 4;
/// The longest the stack's thread sleeps between turns: how late a request
/// from a case (bytes to send, a FIN) or a timer can be served. The thread
/// can wait on the device only (smoltcp's `phy::wait` takes one descriptor),
/// so requests are picked up on the next turn.
const TAP_TURN: Duration = Duration::from_millis(1);
/// Received packets processed per turn before requests, timers and sends get
/// a look.
const TAP_INGRESS_PER_TURN: usize = 256;
/// How long a connection the checker dropped may take to close gracefully
/// before it is reset and forgotten.
const TAP_ORPHAN_LINGER: Duration = Duration::from_secs(10);
/// Received bytes held for a case at most: beyond, the stack stops taking
/// them from its socket, whose window then closes (the backpressure a kernel
/// gives). Bytes still in the socket when an RST comes are lost (smoltcp
/// refuses reads once CLOSED), which only a peer that sent this much
/// without being read can notice.
const TAP_RX_LIMIT: usize = 4 << 20;
/// How long a write waits for the stack to take its bytes.
const TAP_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The first local port of the checker's own connections (the dynamic range,
/// RFC 6335).
const TAP_FIRST_PORT: u16 = 49152;

/// A smoltcp stack on a TAP device, run by a thread of its own (smoltcp's
/// TAP device cannot leave the thread that opened it), so connections keep
/// being served (ACKs, retransmissions) while a case sleeps between writes.
/// Cases talk to it through a shared book of connections.
pub struct TapNet {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    book: Mutex<Book>,
    /// Signalled after every turn of the stack.
    changed: Condvar,
    stop: AtomicBool,
    /// The stack's thread ended (a device error): every wait fails at once
    /// instead of running out its time.
    dead: AtomicBool,
}

/// Marks the stack dead when its thread ends, however it ends.
struct DeathNotice(Arc<Shared>);

impl Drop for DeathNotice {
    fn drop(&mut self) {
        self.0.dead.store(true, Ordering::Relaxed);
        self.0.changed.notify_all();
    }
}

/// What the cases and the stack's thread share.
#[derive(Default)]
struct Book {
    conns: HashMap<u64, Entry>,
    next_id: u64,
    requests: VecDeque<Request>,
    /// Connections accepted on each port, not yet taken by the checker.
    ready: HashMap<u16, VecDeque<u64>>,
    /// Ports listened on.
    ports: std::collections::HashSet<u16>,
}

enum Request {
    Connect(u64, SocketAddr),
    Listen(u16),
    Unlisten(u16),
}

/// One connection, as the cases see it.
#[derive(Default)]
struct Entry {
    /// Bytes to send, taken by the thread as the socket has room.
    tx: VecDeque<u8>,
    /// Bytes received, taken out of smoltcp's buffer as soon as they come
    /// (up to [`TAP_RX_LIMIT`]): once an RST has closed the socket smoltcp
    /// refuses reads, while a kernel still hands over what came before it.
    rx: VecDeque<u8>,
    end: Option<Read>,
    rst_after_fin: bool,
    /// The handshake completed.
    established: bool,
    /// Our side can no longer send (our FIN or an RST).
    send_closed: bool,
    want_fin: bool,
    want_rst: bool,
    /// The RST asked for is out.
    rst_sent: bool,
    /// The stream was dropped: forget the connection once it is closed, or
    /// reset it at this deadline.
    dropped: Option<StdInstant>,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Book> {
    shared.book.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on the stack's next turn, at most until `until`; false once that
/// has passed, or if the stack is dead.
fn wait_turn<'a>(
    shared: &'a Shared,
    book: MutexGuard<'a, Book>,
    until: StdInstant,
) -> (MutexGuard<'a, Book>, bool) {
    let left = until.saturating_duration_since(StdInstant::now());
    if left.is_zero() || shared.dead.load(Ordering::Relaxed) {
        return (book, false);
    }
    let (book, _) = shared
        .changed
        .wait_timeout(book, left)
        .unwrap_or_else(|p| p.into_inner());
    (book, true)
}

/// One connection's socket, as the stack's thread last saw it.
struct Sock {
    handle: SocketHandle,
    last: tcp::State,
    /// (local, remote), once known: smoltcp forgets them when the socket
    /// closes, and an RST is matched to its connection by them.
    tuple: Option<(IpEndpoint, IpEndpoint)>,
}

impl Sock {
    fn new(handle: SocketHandle, last: tcp::State) -> Self {
        Self {
            handle,
            last,
            tuple: None,
        }
    }
}

/// The (source, destination) of a received TCP segment with RST set.
fn rst_of(frame: &[u8]) -> Option<(IpEndpoint, IpEndpoint)> {
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    tcp.rst().then(|| {
        (
            IpEndpoint::new(ip.src_addr().into(), tcp.src_port()),
            IpEndpoint::new(ip.dst_addr().into(), tcp.dst_port()),
        )
    })
}

/// What the stack's thread owns.
struct Stack {
    host: TapHost,
    /// Each connection's socket.
    sockets: HashMap<u64, Sock>,
    /// Listening sockets by port.
    listening: HashMap<u16, Vec<SocketHandle>>,
    next_port: u16,
}

fn new_socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TAP_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TAP_BUFFER]),
    );
    // The checker writes split frames as separate segments, as TCP_NODELAY
    // does on the kernel's side.
    s.set_nagle_enabled(false);
    s
}

impl Stack {
    fn listen_slot(&mut self, port: u16) -> SocketHandle {
        let mut s = new_socket();
        let _ = s.listen(IpListenEndpoint { addr: None, port });
        self.host.sockets.add(s)
    }

    /// Serves the cases' requests.
    fn requests(&mut self, book: &mut Book) {
        while let Some(r) = book.requests.pop_front() {
            match r {
                Request::Connect(id, addr) => {
                    let mut s = new_socket();
                    let port = self.next_port;
                    self.next_port = self.next_port.checked_add(1).unwrap_or(TAP_FIRST_PORT);
                    // The stack is IPv4 only (as bookend-smoltcp is).
                    let std::net::IpAddr::V4(ip) = addr.ip() else {
                        if let Some(e) = book.conns.get_mut(&id) {
                            e.end = Some(Read::Reset);
                        }
                        continue;
                    };
                    let remote = IpEndpoint::new(ip.into(), addr.port());
                    if s.connect(self.host.iface.context(), remote, port).is_err() {
                        if let Some(e) = book.conns.get_mut(&id) {
                            e.end = Some(Read::Reset);
                        }
                        continue;
                    }
                    let state = s.state();
                    let h = self.host.sockets.add(s);
                    self.sockets.insert(id, Sock::new(h, state));
                }
                Request::Listen(port) => {
                    let slots = (0..TAP_LISTEN_SLOTS)
                        .map(|_| self.listen_slot(port))
                        .collect();
                    self.listening.insert(port, slots);
                }
                Request::Unlisten(port) => {
                    // Slots not accepted close as a listener's do: an RST to
                    // any caller half-way in.
                    for h in self.listening.remove(&port).unwrap_or_default() {
                        self.host.sockets.get_mut::<tcp::Socket>(h).abort();
                        self.sockets
                            .insert(book.next_id, Sock::new(h, tcp::State::Closed));
                        book.conns.insert(
                            book.next_id,
                            Entry {
                                dropped: Some(StdInstant::now()),
                                ..Entry::default()
                            },
                        );
                        book.next_id += 1;
                    }
                    book.ready.remove(&port);
                }
            }
        }
        // What each connection wants sent, in order: bytes, then FIN or RST.
        for (id, e) in book.conns.iter_mut() {
            let Some(Sock {
                handle: h, last, ..
            }) = self.sockets.get_mut(id)
            else {
                continue;
            };
            let s = self.host.sockets.get_mut::<tcp::Socket>(*h);
            if e.want_rst {
                if !e.rst_sent {
                    s.abort();
                    *last = s.state();
                    e.rst_sent = true;
                    e.send_closed = true;
                    e.end.get_or_insert(Read::Reset);
                }
                continue;
            }
            while !e.tx.is_empty() && s.can_send() {
                let (a, _) = e.tx.as_slices();
                let n = s.send_slice(a).unwrap_or(0);
                if n == 0 {
                    break;
                }
                e.tx.drain(..n);
            }
            if !e.tx.is_empty() && !s.may_send() {
                e.send_closed = true;
                e.tx.clear();
            }
            // A connection dropped before it was established is given up
            // at once, as a kernel's close of a connecting socket does (no
            // SYN retransmitted into a late SYN-ACK).
            if e.dropped.is_some() && !e.established && s.state() == tcp::State::SynSent {
                s.abort();
                *last = s.state();
                continue;
            }
            if e.want_fin && e.tx.is_empty() && s.may_send() {
                s.close();
                // Seen now: CLOSE-WAIT to LAST-ACK is ours, and LAST-ACK
                // to CLOSED (possibly within this same turn) is graceful.
                *last = s.state();
                e.send_closed = true;
            }
        }
    }

    /// Moves what came into the book: bytes, the peer's FIN, an RST (a fall
    /// to CLOSED from a state that does not end there by itself, or from
    /// LAST-ACK with an RST among `resets`, the segments just received),
    /// accepted connections.
    fn harvest(&mut self, book: &mut Book, resets: &[(IpEndpoint, IpEndpoint)]) {
        for (id, sock) in self.sockets.iter_mut() {
            let Some(e) = book.conns.get_mut(id) else {
                continue;
            };
            let Sock {
                handle: h,
                last,
                tuple,
            } = sock;
            let s = self.host.sockets.get_mut::<tcp::Socket>(*h);
            if let (Some(l), Some(r)) = (s.local_endpoint(), s.remote_endpoint()) {
                *tuple = Some((l, r));
            }
            while s.can_recv() && e.rx.len() < TAP_RX_LIMIT {
                let room = TAP_RX_LIMIT - e.rx.len();
                let _ = s.recv(|b| {
                    let n = b.len().min(room);
                    e.rx.extend(b[..n].iter());
                    (n, ())
                });
            }
            let now = s.state();
            if now == *last {
                continue;
            }
            // LAST-ACK to CLOSED is the ACK of our FIN, or an RST: smoltcp
            // leaves the same state either way, the segment tells.
            let reset_here = tuple.is_some_and(|(l, r)| resets.contains(&(r, l)));
            use tcp::State::*;
            if !matches!(now, Closed | SynSent | SynReceived | Listen) {
                e.established = true;
            }
            if matches!(now, CloseWait | LastAck | Closing | TimeWait) && e.end.is_none() {
                e.end = Some(Read::Fin);
            }
            if now == Closed
                && (!matches!(*last, LastAck | TimeWait | Closed)
                    || (*last == LastAck && reset_here))
            {
                e.send_closed = true;
                match e.end {
                    Some(Read::Fin) => e.rst_after_fin = true,
                    None => e.end = Some(Read::Reset),
                    _ => {}
                }
            }
            *last = now;
        }
        // A listening socket that left LISTEN and SYN-RECEIVED is a
        // connection: it moves to the book, a fresh socket takes its place.
        let ports: Vec<u16> = self.listening.keys().copied().collect();
        for port in ports {
            let slots = self.listening.remove(&port).unwrap_or_default();
            let mut kept = Vec::with_capacity(slots.len());
            for h in slots {
                let s = self.host.sockets.get_mut::<tcp::Socket>(h);
                match s.state() {
                    tcp::State::Listen | tcp::State::SynReceived => kept.push(h),
                    tcp::State::Closed => {
                        let _ = s.listen(IpListenEndpoint { addr: None, port });
                        kept.push(h);
                    }
                    _ => {
                        let id = book.next_id;
                        book.next_id += 1;
                        book.conns.insert(
                            id,
                            Entry {
                                established: true,
                                ..Entry::default()
                            },
                        );
                        // Seen as just established: bytes, FIN or RST that
                        // came with the handshake are harvested next.
                        self.sockets
                            .insert(id, Sock::new(h, tcp::State::Established));
                        book.ready.entry(port).or_default().push_back(id);
                        kept.push(self.listen_slot(port));
                    }
                }
            }
            self.listening.insert(port, kept);
        }
    }

    /// Forgets dropped connections once they are closed (or too old).
    fn reap(&mut self, book: &mut Book, now: StdInstant) {
        let mut gone = Vec::new();
        for (id, e) in book.conns.iter() {
            let Some(deadline) = e.dropped else {
                continue;
            };
            let Some(&Sock { handle: h, .. }) = self.sockets.get(id) else {
                gone.push(*id);
                continue;
            };
            let s = self.host.sockets.get_mut::<tcp::Socket>(h);
            if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
                gone.push(*id);
            } else if now >= deadline {
                s.abort();
            }
        }
        for id in gone {
            book.conns.remove(&id);
            if let Some(sock) = self.sockets.remove(&id) {
                self.host.sockets.remove(sock.handle);
            }
        }
    }

    fn run(mut self, shared: &Shared, fd: std::os::unix::io::RawFd) {
        while !shared.stop.load(Ordering::Relaxed) {
            let delay = {
                let mut book = lock(shared);
                let now = Instant::now();
                self.requests(&mut book);
                self.host.poll_egress(now);
                // One packet at a time, each socket read in between.
                let mut resets = Vec::new();
                for _ in 0..TAP_INGRESS_PER_TURN {
                    resets.clear();
                    let got = self.host.poll_ingress_single_with(now, |frame| {
                        resets.extend(rst_of(frame));
                    });
                    if !got {
                        break;
                    }
                    self.harvest(&mut book, &resets);
                }
                self.requests(&mut book);
                self.host.poll_egress(now);
                self.harvest(&mut book, &[]);
                self.reap(&mut book, StdInstant::now());
                self.host.iface.poll_delay(now, &self.host.sockets)
            };
            shared.changed.notify_all();
            let turn = smoltcp::time::Duration::from_micros(TAP_TURN.as_micros() as u64);
            let _ = smoltcp::phy::wait(fd, Some(delay.map_or(turn, |d| d.min(turn))));
        }
    }
}

impl TapNet {
    /// Opens (or creates) TAP device `dev` with our address `addr` and
    /// starts the stack's thread.
    ///
    /// This function returns a [`TapError`] saying what is missing.
    pub fn open(dev: &str, addr: IpCidr) -> Result<Self, TapError> {
        let seed = bookend_smoltcp::Config::from_os_entropy().interface_seed();
        let shared = Arc::new(Shared {
            book: Mutex::new(Book {
                next_id: 1,
                ..Book::default()
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            dead: AtomicBool::new(false),
        });
        let (opened, result) = std::sync::mpsc::channel();
        let dev = dev.to_string();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let host = match TapHost::open(&dev, addr, None, seed) {
                Ok(h) => h,
                Err(e) => {
                    let _ = opened.send(Err(e));
                    return;
                }
            };
            let _ = opened.send(Ok(()));
            let _notice = DeathNotice(s.clone());
            let fd = host.raw_fd();
            Stack {
                host,
                sockets: HashMap::new(),
                listening: HashMap::new(),
                // From the seed: a run straight after another does not
                // meet the implementation's TIME-WAIT on the same tuples.
                next_port: TAP_FIRST_PORT + (seed % 8192) as u16,
            }
            .run(&s, fd);
        });
        match result.recv() {
            Ok(Ok(())) => Ok(Self {
                shared,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(TapError::Io(
                "tap".into(),
                io::Error::other("the stack's thread ended"),
            )),
        }
    }
}

impl Drop for TapNet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct TapStream {
    shared: Arc<Shared>,
    id: u64,
}

impl TapStream {
    /// Runs `f` on this connection's entry, waiting turns while it says
    /// `None`, at most until `until`.
    fn wait<T>(&self, until: StdInstant, mut f: impl FnMut(&mut Entry) -> Option<T>) -> Option<T> {
        let mut book = lock(&self.shared);
        loop {
            let e = book.conns.get_mut(&self.id)?;
            if let Some(t) = f(e) {
                return Some(t);
            }
            let (b, more) = wait_turn(&self.shared, book, until);
            book = b;
            if !more {
                return None;
            }
        }
    }
}

impl Stream for TapStream {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let until = StdInstant::now() + TAP_WRITE_TIMEOUT;
        let mut queued = false;
        // Returns once the stack took every byte into its socket, so that
        // writes separated by a pause leave as separate segments.
        let r = self.wait(until, |e| {
            if e.send_closed || e.want_fin || e.want_rst {
                return Some(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if !queued {
                e.tx.extend(bytes.iter());
                queued = true;
            }
            e.tx.is_empty().then_some(Ok(()))
        });
        r.unwrap_or_else(|| {
            // Timed out: what was not taken is not sent later either.
            if let Some(e) = lock(&self.shared).conns.get_mut(&self.id) {
                e.tx.clear();
                e.send_closed = true;
            }
            Err(io::ErrorKind::TimedOut.into())
        })
    }

    fn read_until(&mut self, buf: &mut [u8], until: StdInstant) -> Read {
        self.wait(until, |e| {
            if !e.rx.is_empty() {
                let n = buf.len().min(e.rx.len());
                for (d, b) in buf.iter_mut().zip(e.rx.drain(..n)) {
                    *d = b;
                }
                return Some(Read::Data(n));
            }
            e.end
        })
        .unwrap_or(Read::Idle)
    }

    fn shutdown_write(&mut self) {
        let until = StdInstant::now() + TAP_WRITE_TIMEOUT;
        self.wait(until, |e| {
            e.want_fin = true;
            (e.send_closed || e.end == Some(Read::Reset)).then_some(())
        });
    }

    fn reset(&mut self) {
        let until = StdInstant::now() + TAP_WRITE_TIMEOUT;
        self.wait(until, |e| {
            e.want_rst = true;
            e.rst_sent.then_some(())
        });
    }

    fn rst_after_fin(&mut self) -> bool {
        lock(&self.shared)
            .conns
            .get(&self.id)
            .is_some_and(|e| e.rst_after_fin)
    }
}

impl Drop for TapStream {
    /// As a kernel's close: an RST if received data was never read, a FIN
    /// otherwise.
    fn drop(&mut self) {
        let mut book = lock(&self.shared);
        if let Some(e) = book.conns.get_mut(&self.id) {
            if e.rx.is_empty() {
                e.want_fin = true;
            } else {
                e.want_rst = true;
            }
            e.dropped = Some(StdInstant::now() + TAP_ORPHAN_LINGER);
        }
    }
}

struct TapAcceptor<'a> {
    net: &'a TapNet,
    port: u16,
}

impl Acceptor for TapAcceptor<'_> {
    fn accept(&mut self, until: StdInstant) -> io::Result<Option<Box<dyn Stream>>> {
        let shared = &self.net.shared;
        let mut book = lock(shared);
        loop {
            if let Some(id) = book.ready.get_mut(&self.port).and_then(|q| q.pop_front()) {
                return Ok(Some(Box::new(TapStream {
                    shared: shared.clone(),
                    id,
                })));
            }
            let (b, more) = wait_turn(shared, book, until);
            book = b;
            if !more {
                return Ok(None);
            }
        }
    }
}

impl Drop for TapAcceptor<'_> {
    fn drop(&mut self) {
        let mut book = lock(&self.net.shared);
        // Connections accepted by the stack but never taken are dropped.
        let left: Vec<u64> = book
            .ready
            .remove(&self.port)
            .map(Vec::from)
            .unwrap_or_default();
        for id in left {
            if let Some(e) = book.conns.get_mut(&id) {
                e.want_rst = true;
                e.dropped = Some(StdInstant::now());
            }
        }
        // Free for a new listener at once: its Listen is queued behind this.
        book.ports.remove(&self.port);
        book.requests.push_back(Request::Unlisten(self.port));
    }
}

impl Net for TapNet {
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Box<dyn Stream>> {
        let id = {
            let mut book = lock(&self.shared);
            let id = book.next_id;
            book.next_id += 1;
            book.conns.insert(id, Entry::default());
            book.requests.push_back(Request::Connect(id, addr));
            id
        };
        // The stream owns the connection from here: dropping it on an error
        // below closes it.
        let stream = TapStream {
            shared: self.shared.clone(),
            id,
        };
        let until = StdInstant::now() + timeout;
        match stream.wait(until, |e| {
            if e.established {
                Some(true)
            } else if e.end.is_some() {
                Some(false)
            } else {
                None
            }
        }) {
            Some(true) => Ok(Box::new(stream)),
            Some(false) => Err(io::ErrorKind::ConnectionRefused.into()),
            None => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn Acceptor + '_>> {
        let mut book = lock(&self.shared);
        if !book.ports.insert(addr.port()) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        book.requests.push_back(Request::Listen(addr.port()));
        Ok(Box::new(TapAcceptor {
            net: self,
            port: addr.port(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
        Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    };

    fn frame(control: TcpControl) -> Vec<u8> {
        let (src, dst) = (
            IpEndpoint::new(IpAddress::v4(10, 77, 0, 1), 7050),
            IpEndpoint::new(IpAddress::v4(10, 77, 0, 2), 49999),
        );
        let tcp = TcpRepr {
            src_port: src.port,
            dst_port: dst.port,
            control,
            seq_number: TcpSeqNumber(1),
            ack_number: Some(TcpSeqNumber(2)),
            window_len: 0,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        #[allow(irrefutable_let_patterns)]
        let (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) = (src.addr, dst.addr) else {
            panic!("the test's addresses are IPv4");
        };
        let ip = Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &src.addr,
            &dst.addr,
            &caps,
        );
        buf
    }

    /// An RST is matched to its connection by the frame's addresses: the
    /// only way to tell it from the ACK of our FIN in LAST-ACK, which leaves
    /// the socket in the same state.
    #[test]
    fn an_rst_is_read_from_the_frame_with_its_tuple() {
        let (from, to) = rst_of(&frame(TcpControl::Rst)).expect("an RST");
        assert_eq!(from, IpEndpoint::new(IpAddress::v4(10, 77, 0, 1), 7050));
        assert_eq!(to, IpEndpoint::new(IpAddress::v4(10, 77, 0, 2), 49999));
        assert_eq!(rst_of(&frame(TcpControl::None)), None);
        assert_eq!(rst_of(&frame(TcpControl::Fin)), None);
        assert_eq!(rst_of(&[0u8; 10]), None, "short frames are not read");
    }
}
