//! A simulated network for embassy-net on the host, in virtual time.
//!
//! embassy has no in-memory network driver; this is one. A [`Wire`] joins
//! two ports with an IP-level link (medium IP, 1 500-byte MTU): one port can
//! be an embassy-net stack ([`EmbassyPort`], an `embassy_net_driver::Driver`)
//! and the other another embassy-net stack or a smoltcp 0.14 `Interface`
//! ([`SmolPort`], a `smoltcp::phy::Device`), so bookend-embassy plays
//! against itself or against bookend-smoltcp on the same wire. Each packet
//! takes `latency` of virtual time, and the wire can drop packets (a
//! deterministic pattern from a seed).
//!
//! [`run`] is the executor: it polls the test's future only when something
//! woke it (a packet, a socket, a timer), and when nothing did, moves
//! embassy-time's mock clock to the wire's next delivery or by one
//! millisecond. So a driver that forgets to register a waker stalls here
//! as it would on hardware (the run's virtual time then shows it), and the
//! run is the same every time. `WIRE_TRACE=1` prints every packet.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use embassy_time::{Duration, Instant, MockDriver};

/// The mock clock is one per process: tests that use it run one at a time.
static CLOCK: Mutex<()> = Mutex::new(());

/// Takes the mock clock for one test and sets it to zero.
pub(crate) fn clock() -> MutexGuard<'static, ()> {
    let guard = CLOCK.lock().unwrap_or_else(|p| p.into_inner());
    MockDriver::get().reset();
    guard
}

/// The link's MTU.
pub(crate) const MTU: usize = 1500;

struct Packet {
    at: Instant,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Side {
    /// Packets on their way to this side.
    inbound: VecDeque<Packet>,
    /// The side's driver, woken when a packet is due.
    waker: Option<Waker>,
}

struct WireState {
    sides: [Side; 2],
    latency: Duration,
    /// Drop one packet in `loss_every` (0: none), counted over both ways.
    loss_every: u32,
    sent: u32,
    dropped: u32,
    /// TCP segments with RST sent by each side.
    rsts: [u32; 2],
}

/// Two ports and the link between them.
#[derive(Clone)]
pub(crate) struct Wire(Rc<RefCell<WireState>>);

impl Wire {
    /// A link with `latency` each way and no loss.
    pub(crate) fn new(latency: Duration) -> Self {
        Self(Rc::new(RefCell::new(WireState {
            sides: [Side::default(), Side::default()],
            latency,
            loss_every: 0,
            sent: 0,
            dropped: 0,
            rsts: [0; 2],
        })))
    }

    /// Drops every `n`th packet (both ways counted together).
    pub(crate) fn lossy(self, n: u32) -> Self {
        self.0.borrow_mut().loss_every = n;
        self
    }

    /// TCP segments with RST that side `side` has sent so far.
    pub(crate) fn rsts(&self, side: usize) -> u32 {
        self.0.borrow().rsts[side]
    }

    /// Packets dropped so far.
    pub(crate) fn dropped(&self) -> u32 {
        self.0.borrow().dropped
    }

    /// The embassy-net driver of side `side` (0 or 1).
    pub(crate) fn embassy(&self, side: usize) -> EmbassyPort {
        EmbassyPort {
            wire: self.clone(),
            side,
        }
    }

    /// The smoltcp device of side `side`.
    pub(crate) fn smoltcp(&self, side: usize) -> SmolPort {
        SmolPort {
            wire: self.clone(),
            side,
        }
    }

    fn send(&self, from: usize, bytes: Vec<u8>) {
        if std::env::var_os("WIRE_TRACE").is_some() {
            eprintln!(
                "{} ms: {from} -> {}: {:02x?}",
                Instant::now().as_millis(),
                1 - from,
                &bytes[..bytes.len().min(60)]
            );
        }
        let mut w = self.0.borrow_mut();
        if is_rst(&bytes) {
            w.rsts[from] += 1;
        }
        w.sent += 1;
        if w.loss_every > 0 && w.sent.is_multiple_of(w.loss_every) {
            w.dropped += 1;
            return;
        }
        let at = Instant::now() + w.latency;
        let to = &mut w.sides[1 - from];
        to.inbound.push_back(Packet { at, bytes });
        if let Some(waker) = to.waker.take() {
            waker.wake();
        }
    }

    fn take(&self, side: usize) -> Option<Vec<u8>> {
        let mut w = self.0.borrow_mut();
        let s = &mut w.sides[side];
        if s.inbound.front().is_some_and(|p| p.at <= Instant::now()) {
            s.inbound.pop_front().map(|p| p.bytes)
        } else {
            None
        }
    }

    fn wait(&self, side: usize, waker: &Waker) {
        self.0.borrow_mut().sides[side].waker = Some(waker.clone());
    }

    /// When the next packet in flight arrives, if any.
    pub(crate) fn next_delivery(&self) -> Option<Instant> {
        let w = self.0.borrow();
        w.sides
            .iter()
            .filter_map(|s| s.inbound.front().map(|p| p.at))
            .min()
    }

    /// Wakes the side whose packet is due (the executor calls it as time
    /// moves).
    fn wake_due(&self) {
        let mut w = self.0.borrow_mut();
        let now = Instant::now();
        for s in &mut w.sides {
            if s.inbound.front().is_some_and(|p| p.at <= now)
                && let Some(waker) = s.waker.take()
            {
                waker.wake();
            }
        }
    }
}

/// Whether `packet` (IPv4) is a TCP segment with RST.
fn is_rst(packet: &[u8]) -> bool {
    let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
    packet.get(9) == Some(&6) && packet.get(ihl + 13).is_some_and(|f| f & 0x04 != 0)
}

/// One side of a [`Wire`] as an embassy-net driver.
pub(crate) struct EmbassyPort {
    wire: Wire,
    side: usize,
}

/// A received packet, for embassy-net.
pub(crate) struct EmbassyRx(Vec<u8>);

/// Room for a packet to send, for embassy-net.
pub(crate) struct EmbassyTx {
    wire: Wire,
    side: usize,
}

impl embassy_net_driver::RxToken for EmbassyRx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl embassy_net_driver::TxToken for EmbassyTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.wire.send(self.side, buf);
        r
    }
}

impl embassy_net_driver::Driver for EmbassyPort {
    type RxToken<'a> = EmbassyRx;
    type TxToken<'a> = EmbassyTx;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(EmbassyRx, EmbassyTx)> {
        match self.wire.take(self.side) {
            Some(p) => Some((
                EmbassyRx(p),
                EmbassyTx {
                    wire: self.wire.clone(),
                    side: self.side,
                },
            )),
            None => {
                self.wire.wait(self.side, cx.waker());
                None
            }
        }
    }

    fn transmit(&mut self, _cx: &mut Context<'_>) -> Option<EmbassyTx> {
        Some(EmbassyTx {
            wire: self.wire.clone(),
            side: self.side,
        })
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> embassy_net_driver::LinkState {
        embassy_net_driver::LinkState::Up
    }

    fn capabilities(&self) -> embassy_net_driver::Capabilities {
        let mut c = embassy_net_driver::Capabilities::default();
        c.max_transmission_unit = MTU;
        c
    }

    fn hardware_address(&self) -> embassy_net_driver::HardwareAddress {
        embassy_net_driver::HardwareAddress::Ip
    }
}

/// One side of a [`Wire`] as a smoltcp 0.14 device.
pub(crate) struct SmolPort {
    wire: Wire,
    side: usize,
}

impl SmolPort {
    /// Registers `waker` for this side's next packet.
    pub(crate) fn wait(&self, waker: &Waker) {
        self.wire.wait(self.side, waker);
    }
}

/// A received packet, for smoltcp.
pub(crate) struct SmolRx(Vec<u8>);

/// Room for a packet to send, for smoltcp.
pub(crate) struct SmolTx {
    wire: Wire,
    side: usize,
}

impl smoltcp::phy::RxToken for SmolRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for SmolTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.wire.send(self.side, buf);
        r
    }
}

impl smoltcp::phy::Device for SmolPort {
    type RxToken<'a> = SmolRx;
    type TxToken<'a> = SmolTx;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(SmolRx, SmolTx)> {
        let p = self.wire.take(self.side)?;
        Some((
            SmolRx(p),
            SmolTx {
                wire: self.wire.clone(),
                side: self.side,
            },
        ))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<SmolTx> {
        Some(SmolTx {
            wire: self.wire.clone(),
            side: self.side,
        })
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut c = smoltcp::phy::DeviceCapabilities::default();
        c.medium = smoltcp::phy::Medium::Ip;
        c.max_transmission_unit = MTU;
        c
    }
}

/// smoltcp's clock from embassy-time's (both in microseconds).
pub(crate) fn smol_now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(Instant::now().as_micros() as i64)
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A task that never ends (a stack's runner, a bookend-smoltcp host), run
/// beside the test's own future with a waker of its own.
pub(crate) type Background<'a> = Pin<&'a mut dyn Future<Output = ()>>;

/// Runs `fut` to completion in virtual time (see the module docs), with
/// `background` tasks beside it, each polled only when its own waker fired
/// (as an embassy executor's tasks are), giving up after `limit` of virtual
/// time. Returns the output and the virtual time taken.
pub(crate) fn run<F: Future>(
    wire: &Wire,
    limit: Duration,
    mut background: Vec<Background<'_>>,
    fut: F,
) -> (F::Output, Duration) {
    let start = Instant::now();
    let flags: Vec<Arc<Flag>> = (0..=background.len())
        .map(|_| Arc::new(Flag(AtomicBool::new(true))))
        .collect();
    let wakers: Vec<Waker> = flags.iter().map(|f| Waker::from(f.clone())).collect();
    let mut fut = std::pin::pin!(fut);
    // Polls in a row with the clock standing still: tasks that wake each
    // other for ever (a livelock) show here instead of hanging the test.
    let mut busy = 0u32;
    loop {
        let mut polled = false;
        if flags[0].0.swap(false, Ordering::SeqCst) {
            polled = true;
            let mut cx = Context::from_waker(&wakers[0]);
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return (out, Instant::now() - start);
            }
        }
        for (i, task) in background.iter_mut().enumerate() {
            if flags[i + 1].0.swap(false, Ordering::SeqCst) {
                polled = true;
                let mut cx = Context::from_waker(&wakers[i + 1]);
                let _ = task.as_mut().poll(&mut cx);
            }
        }
        if polled {
            busy += 1;
            assert!(
                busy < 100_000,
                "livelock: 100 000 rounds of wake-ups at {} ms of virtual time without waiting",
                (Instant::now() - start).as_millis()
            );
            continue;
        }
        busy = 0;
        // Nothing woke: time moves, to the next delivery if it is sooner
        // than a millisecond (the timers' resolution here).
        let now = Instant::now();
        assert!(
            now - start < limit,
            "the run did not finish within {} ms of virtual time",
            limit.as_millis()
        );
        let step = wire
            .next_delivery()
            .filter(|&at| at > now)
            .map_or(Duration::from_millis(1), |at| {
                (at - now).min(Duration::from_millis(1))
            });
        MockDriver::get().advance(step);
        wire.wake_due();
    }
}

/// An embassy-net stack at `addr`/24 on `port` of a wire.
pub(crate) fn stack<'d>(
    port: EmbassyPort,
    addr: embassy_net::Ipv4Address,
    resources: &'d mut embassy_net::StackResources<4>,
    seed: u64,
) -> (embassy_net::Stack<'d>, embassy_net::Runner<'d, EmbassyPort>) {
    let config = embassy_net::Config::ipv4_static(embassy_net::StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(addr, 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    embassy_net::new(port, config, resources, seed)
}

/// A stack's runner as a background task (it never returns).
pub(crate) async fn runner(mut r: embassy_net::Runner<'_, EmbassyPort>) {
    r.run().await
}

/// The server's address (side 0 of the wire) in the tests.
pub(crate) const SERVER: embassy_net::Ipv4Address = embassy_net::Ipv4Address::new(10, 0, 0, 1);
/// The client's address (side 1 of the wire).
pub(crate) const CLIENT: embassy_net::Ipv4Address = embassy_net::Ipv4Address::new(10, 0, 0, 2);

/// The resources of the two stacks most tests run: the server on side 0 of
/// the wire, the client on side 1. Kept by the test, which the stacks borrow.
pub(crate) struct TwoStacks {
    server: embassy_net::StackResources<4>,
    client: embassy_net::StackResources<4>,
}

impl TwoStacks {
    pub(crate) fn new() -> Self {
        Self {
            server: embassy_net::StackResources::new(),
            client: embassy_net::StackResources::new(),
        }
    }

    /// The server's stack and runner, then the client's.
    #[allow(clippy::type_complexity)]
    pub(crate) fn up<'d>(
        &'d mut self,
        wire: &Wire,
    ) -> (
        embassy_net::Stack<'d>,
        embassy_net::Runner<'d, EmbassyPort>,
        embassy_net::Stack<'d>,
        embassy_net::Runner<'d, EmbassyPort>,
    ) {
        let (server, server_runner) = stack(wire.embassy(0), SERVER, &mut self.server, 1);
        let (client, client_runner) = stack(wire.embassy(1), CLIENT, &mut self.client, 2);
        (server, server_runner, client, client_runner)
    }
}

/// Runs `f` on a thread of its own and fails if it has not returned within
/// `limit` of wall time: a driver that spins inside one poll never lets the
/// virtual clock move, and would hang the test instead of failing it.
pub(crate) fn within<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!(
            "no answer within {} s of wall time: a task that never yields (a spin inside one poll)",
            limit.as_secs()
        ),
    }
}

/// Counts tasks that finished, and wakes the one waiting for them all: so
/// that each connection of a test can be a task with a waker of its own (a
/// missed wake-up in one connection is then not hidden by its neighbours'
/// wake-ups, as it is when they are joined in one future).
#[derive(Default)]
pub(crate) struct Done {
    count: std::cell::Cell<usize>,
    waker: RefCell<Option<Waker>>,
}

impl Done {
    /// One task finished.
    pub(crate) fn finish(&self) {
        self.count.set(self.count.get() + 1);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once `n` tasks have finished.
    pub(crate) async fn all(&self, n: usize) {
        std::future::poll_fn(|cx| {
            if self.count.get() >= n {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The server side most tests need: the next caller on `socket`, accepted
/// with `callee_data` and the default grant. Returns the connection and the
/// caller's data.
pub(crate) async fn accept_one<'a>(
    listener: &bookend_embassy::Listener,
    socket: embassy_net::tcp::TcpSocket<'a>,
    callee_data: Option<&[u8]>,
) -> (
    bookend_embassy::Connection<'a>,
    Option<bookend_embassy::Bytes>,
) {
    let incoming = listener.accept(socket).await.expect("listening");
    let who = incoming.caller_data().cloned();
    let grant = incoming.grant();
    let conn = incoming
        .accept(callee_data, grant)
        .await
        .expect("a live request and a valid grant");
    (conn, who)
}
