//! One connection: [`Conn`] owns what the endpoint keeps for it (its
//! session, its TCP side, its phase, what it waits for), and its fields are
//! written here and by the TCP side (`crate::transport::Link`) only.

use alloc::boxed::Box;
use core::num::NonZeroU16;

use bookend_session::{Event, Instant, Session};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::IpEndpoint;

use super::{EndpointEvent, Fresh, IncomingRequest, Phase};
use crate::transport::Link;
use bookend_link::Flags;

/// One connection of the endpoint, from its creation (taken from a
/// listener, or `connect`) until its slot is freed.
pub(super) struct Conn {
    generation: u32,
    /// Its socket, if [`HAS_SOCKET`] (see [`Conn::socket`]): a handle and a
    /// flag, 8 bytes and a bit where `Option<SocketHandle>` is 16.
    sock: SocketHandle,
    /// [`HAS_SOCKET`], [`WANT_WRITABLE`], [`ABORTED`], [`READABLE_QUEUED`],
    /// [`WRITABLE_QUEUED`]: one byte for five flags (issue 10: idle memory).
    flags: Flags,
    /// Its session (the commands' interface).
    pub(super) session: Session,
    /// Its TCP side.
    pub(super) link: Link,
    /// Who it belongs to: changed only by the phase table (`phase::apply`).
    pub(super) phase: Phase,
    /// The listener's index plus one. A listener has a port of its own
    /// (`listen` refuses port 0 and a port twice), so there are at most
    /// 65 535 and the index fits; 2 bytes where an `Option<u32>` is 8.
    listener: Option<NonZeroU16>,
    /// Its local and remote endpoints, port 0 while unknown (see
    /// [`Conn::local`]): no TCP endpoint has port 0, and an `Option` would
    /// add 2 bytes to each 6 (issue 10: idle memory).
    local: IpEndpoint,
    remote: IpEndpoint,
    /// The ephemeral port to release (never 0: `Config::validate`).
    ephemeral_port: Option<NonZeroU16>,
    /// Incoming: the request waiting for the application's decision. Boxed,
    /// and dropped once decided: idle connections hold none. (Outgoing
    /// connections wait for nothing here: `Endpoint::connect` runs
    /// `Session::connect` at once, and the session holds the encoded CONNECT
    /// until TCP takes it.)
    waiting: Option<Box<IncomingRequest>>,
    /// If [`ABORTED`], when the socket was aborted ([`Conn::aborted`]);
    /// else by when TCP's close must be done ([`Conn::tcp_done_by`]). One
    /// field for both: an aborted socket has no close to wait for.
    end_at: Option<Instant>,
    /// The socket's TCP state when last pumped: a FIN or RST always changes
    /// it, so an idle connection whose state is unchanged can be skipped.
    last_tcp_state: Option<tcp::State>,
    /// Events of this slot still in the endpoint's queue: the slot is freed
    /// only once they are delivered (or dropped for a released handle). At
    /// most a handful: each kind happens once per connection, except the
    /// "try now" ones, which are queued once ([`READABLE_QUEUED`]); one
    /// byte, not four (issue 10: idle memory).
    queued_events: u8,
}

/// [`Conn::flags`]: `sock` is still this connection's, in the set.
const HAS_SOCKET: u8 = 1;
/// [`Conn::flags`]: a direct send was cut short: report `Writable` when a
/// frame fits.
const WANT_WRITABLE: u8 = 2;
/// [`Conn::flags`]: a `Readable` of this connection is in the endpoint's
/// queue, undelivered: another says nothing more, and is not queued.
const READABLE_QUEUED: u8 = 8;
/// [`Conn::flags`]: a `Writable` is in the endpoint's queue, undelivered.
const WRITABLE_QUEUED: u8 = 16;

/// The [`Conn::flags`] bit that marks `e` queued, for the "try now" events
/// queued at most once per connection (`Readable`, `Writable`); 0 for the
/// others.
pub(super) fn queued_once_bit(e: &EndpointEvent) -> u8 {
    match e {
        EndpointEvent::Session(Event::Readable) => READABLE_QUEUED,
        EndpointEvent::Session(Event::Writable) => WRITABLE_QUEUED,
        _ => 0,
    }
}
/// [`Conn::flags`]: the socket was aborted, at `end_at`. It leaves the set
/// once smoltcp has sent the RST (it then forgets the 4-tuple), whatever the
/// call order, or after `abort_ack_timeout` if the interface never sent it.
const ABORTED: u8 = 4;

impl Conn {
    /// Its socket, while it is in the set.
    pub(super) fn socket(&self) -> Option<SocketHandle> {
        self.flags.get(HAS_SOCKET).then_some(self.sock)
    }

    /// Its socket, which from now on is not its own (the caller removes it
    /// from the set).
    pub(super) fn take_socket(&mut self) -> Option<SocketHandle> {
        let s = self.socket();
        self.flags.set(HAS_SOCKET, false);
        s
    }

    /// A direct send was cut short: `Writable` is owed when a frame fits.
    pub(super) fn want_writable(&self) -> bool {
        self.flags.get(WANT_WRITABLE)
    }

    pub(super) fn set_want_writable(&mut self, on: bool) {
        self.flags.set(WANT_WRITABLE, on);
    }

    /// When its socket was aborted, if it was (see [`ABORTED`]).
    pub(super) fn aborted(&self) -> Option<Instant> {
        self.end_at.filter(|_| self.flags.get(ABORTED))
    }

    /// Records that its socket was aborted at `t` (the caller aborted it).
    pub(super) fn set_aborted(&mut self, t: Instant) {
        self.flags.set(ABORTED, true);
        self.end_at = Some(t);
    }

    /// By when TCP's close must be done, once the session is drained;
    /// none once aborted.
    pub(super) fn tcp_done_by(&self) -> Option<Instant> {
        self.end_at.filter(|_| !self.flags.get(ABORTED))
    }

    /// Sets [`Conn::tcp_done_by`]; an aborted connection keeps its abort
    /// time (it has no close to wait for).
    pub(super) fn set_tcp_done_by(&mut self, by: Option<Instant>) {
        if !self.flags.get(ABORTED) {
            self.end_at = by;
        }
    }

    /// The request waiting for the application's decision, if any.
    pub(super) fn request(&self) -> Option<&IncomingRequest> {
        self.waiting.as_deref()
    }

    /// When the connection's handshake started: when TCP came up, and
    /// before that when it was created (taken from a listener, or connect)
    /// or its held SYN-ACK released: its link's, not kept twice.
    pub(super) fn born(&self) -> Instant {
        self.link.created()
    }

    /// Its local endpoint, once known.
    pub(super) fn local(&self) -> Option<IpEndpoint> {
        known(self.local)
    }

    /// Its remote endpoint, once known.
    pub(super) fn remote(&self) -> Option<IpEndpoint> {
        known(self.remote)
    }

    /// The listener it was taken from, as an index into `Endpoint::listeners`.
    pub(super) fn listener(&self) -> Option<usize> {
        self.listener.map(|l| usize::from(l.get()) - 1)
    }

    /// A connection as [`Fresh`] describes it, in slot generation
    /// `generation`; everything else starts empty.
    pub(super) fn new(f: Fresh, generation: u32, link: Link) -> Self {
        Self {
            generation,
            sock: f.socket,
            flags: Flags::new(HAS_SOCKET),
            session: f.session,
            link,
            phase: f.phase,
            // Listeners are few (one per `listen` call): the index fits.
            listener: f.listener.and_then(|l| {
                let stored = u16::try_from(l + 1).ok().and_then(NonZeroU16::new);
                debug_assert!(stored.is_some(), "listener index {l} over u16");
                stored
            }),
            local: unknown_or(f.local),
            remote: unknown_or(f.remote),
            ephemeral_port: None,
            waiting: None,
            end_at: None,
            last_tcp_state: None,
            queued_events: 0,
        }
    }

    /// Its slot generation: a handle with another is stale.
    pub(super) fn generation(&self) -> u32 {
        self.generation
    }

    /// The application let go of its handle: the slot's generation moves
    /// on, so that the handle is stale; returns the new one.
    pub(super) fn retire_handle(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    /// An event of this slot left the endpoint's queue (delivered, or
    /// dropped for a closed handle).
    pub(super) fn event_left_queue(&mut self, e: &EndpointEvent) {
        self.queued_events = self.queued_events.saturating_sub(1);
        // The one queued "try now" event of its kind left the queue.
        self.flags.set(queued_once_bit(e), false);
    }

    /// Outgoing: `port` is its ephemeral port, released when the socket goes.
    pub(super) fn set_ephemeral_port(&mut self, port: u16) {
        self.ephemeral_port = NonZeroU16::new(port);
    }

    /// Incoming: `request` waits for the application's decision.
    pub(super) fn await_decision(&mut self, request: IncomingRequest) {
        self.waiting = Some(Box::new(request));
    }

    /// Nothing is waited for any more (decided, connected, or gone).
    pub(super) fn clear_waiting(&mut self) {
        self.waiting = None;
    }

    /// `close` or `abort` of an outgoing connection whose TCP was never
    /// seen up ([`Link::abandon`]): the RST goes at once, with no ABORT
    /// frame. Returns whether it applied.
    pub(super) fn abandon_handshake(&mut self, sockets: &mut SocketSet<'_>, t: Instant) -> bool {
        if self.listener_born() {
            return false;
        }
        let Some(h) = self.socket() else {
            return false;
        };
        let socket = sockets.get_mut::<tcp::Socket>(h);
        let applied = self.link.abandon(&mut self.session, socket, t);
        if applied {
            // Here, not by the next visit: the socket must stay in the set
            // until smoltcp has sent the RST ([`ABORTED`]).
            self.set_aborted(t);
        }
        applied
    }

    /// The ephemeral port to release, once (the socket is gone).
    pub(super) fn take_ephemeral_port(&mut self) -> Option<u16> {
        self.ephemeral_port.take().map(NonZeroU16::get)
    }

    /// The TCP state the last visit left, if one did.
    pub(super) fn last_tcp_state(&self) -> Option<tcp::State> {
        self.last_tcp_state
    }

    /// Records the TCP state a visit saw (`None`: the next visit is not
    /// skipped as idle).
    pub(super) fn set_last_tcp_state(&mut self, state: Option<tcp::State>) {
        self.last_tcp_state = state;
    }

    /// Learns its local endpoint from the socket, if it was not known.
    pub(super) fn learn_local(&mut self, local: Option<IpEndpoint>) {
        if self.local().is_none() {
            self.local = unknown_or(local);
        }
    }

    /// Events of this slot still in the endpoint's queue.
    pub(super) fn queued_events(&self) -> u8 {
        self.queued_events
    }

    /// Queues `e` for the application in `events`, unless it is a "try
    /// now" event (`Readable`, `Writable`) already queued and undelivered:
    /// that one says it all.
    pub(super) fn post(
        &mut self,
        events: &mut alloc::collections::VecDeque<(super::Handle, EndpointEvent)>,
        handle: super::Handle,
        e: EndpointEvent,
    ) {
        // One undelivered says all there is to say, and without this an
        // application that reads without polling events grew the queue by
        // one per read (`try_now_events_are_queued_once_per_connection`).
        // So a connection has at most a handful of events queued.
        let once = queued_once_bit(&e);
        if once != 0 {
            if self.flags.get(once) {
                return;
            }
            self.flags.set(once, true);
        }
        debug_assert!(self.queued_events < u8::MAX, "events of one connection");
        self.queued_events = self.queued_events.saturating_add(1);
        events.push_back((handle, e));
    }

    /// Whether it was taken from a listener.
    pub(super) fn listener_born(&self) -> bool {
        self.listener.is_some()
    }

    /// (local, remote) as kept: port 0 where unknown.
    pub(super) fn endpoints_as_kept(&self) -> (IpEndpoint, IpEndpoint) {
        (self.local, self.remote)
    }
}

/// An endpoint as [`Conn`] keeps it: port 0 stands for unknown.
pub(super) fn known(e: IpEndpoint) -> Option<IpEndpoint> {
    (e.port != 0).then_some(e)
}

/// How [`Conn`] keeps an endpoint that may be unknown ([`known`] reads it).
pub(super) fn unknown_or(e: Option<IpEndpoint>) -> IpEndpoint {
    e.unwrap_or(IpEndpoint::new(smoltcp::wire::IpAddress::v4(0, 0, 0, 0), 0))
}
