//! The application's calls. Every command goes through the endpoint (there
//! is no `&mut Session` to bypass it with), and whatever a command queues,
//! control frames included, is handed to TCP before it returns: the
//! connection is driven at once, not at the next [`Endpoint::poll`].

use bookend_session::{
    BufferUsage, CloseReason, Error as SessionError, MAX_FRAME_OVERHEAD, MIN_DIRECT_CHUNK, Options,
    Reason, Session, State,
};
use bytes::Bytes;
use smoltcp::iface::{Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::IpEndpoint;

use super::{
    Conn, Endpoint, Error, Fresh, Handle, IncomingRequest, Phase, PhaseEvent, session_instant,
};

impl Endpoint {
    /// WSAConnect: opens a TCP connection to `remote` from an ephemeral port
    /// and, once it is established, sends CONNECT with `caller_data` and the
    /// proposed `options`. The outcome arrives as `Event::Connected`,
    /// `Event::Refused`, or `Event::Closed` (reset: WSAECONNREFUSED, or timed out).
    ///
    /// This function returns `Err` if no port, connection slot or provided
    /// socket ([`Error::NoSocket`]) is free, the
    /// caller data is over `options.max_connect_data`, or smoltcp cannot
    /// connect to `remote`.
    pub fn connect(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        now: SmolInstant,
        remote: IpEndpoint,
        caller_data: Option<&[u8]>,
        options: Options,
    ) -> Result<Handle, Error> {
        // At `max_connections`, provided sockets may still change hands: a
        // listening socket taken for this connection leaves the count as it
        // is (`borrow_socket`).
        let below_max =
            self.connection_count() + self.listening_socket_count() < self.config.max_connections;
        if !below_max && self.tcp.mode() != crate::TcpBuffers::Provided {
            return Err(Error::TooManyConnections);
        }
        if !self.session_buffers_available() {
            return Err(Error::NoSessionBuffers);
        }
        let t = session_instant(now);
        // The session's connect runs at once, so that what it refuses (an
        // option, oversize data) fails here; it holds the encoded CONNECT
        // until TCP is up and takes it (the pump).
        let id = self.next_id();
        let mut session = Session::caller(self.session_config.clone(), id)
            // Cannot fail: `Endpoint::new` validated the configuration.
            .map_err(|e| Error::InvalidConfig(crate::ConfigError::Session(e)))?;
        // Spare parts from the pool, as for every command: it allocates
        // nothing a finished connection gave back.
        session.supply(&mut self.spares);
        // Buffers first: `connect` refuses options they cannot hold.
        let _ = self.attach_buffers(&mut session, Some(&options));
        if let Err(e) = session.connect(t, caller_data, options) {
            self.retire_session(&mut session);
            return Err(e.into());
        }
        // On the failures below the session is dropped: all its parts go
        // back to the pool. The socket first: a connect refused for want of
        // one must not take a port (a client retrying would quarantine the
        // whole range).
        let Some(handle) = self.borrow_socket(sockets, below_max) else {
            self.retire_session(&mut session);
            return Err(if below_max {
                Error::NoSocket
            } else {
                Error::TooManyConnections
            });
        };
        let Ok(port) = self.ports.allocate(t) else {
            self.tcp.release(sockets, handle);
            self.retire_session(&mut session);
            return Err(Error::PortsExhausted);
        };
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.connect(iface.context(), remote, port).is_err() {
            // No SYN went out: the port is free again at once.
            self.tcp.release(sockets, handle);
            self.ports.cancel(port);
            self.retire_session(&mut session);
            return Err(Error::Connect);
        }
        let local = socket.local_endpoint();
        let fresh = Fresh {
            socket: handle,
            session,
            phase: Phase::Owned,
            listener: None,
            local,
            remote: Some(remote),
        };
        let h = self.new_conn(fresh, t);
        if let Some(c) = self.conn_mut(h) {
            c.set_ephemeral_port(port);
        }
        Ok(h)
    }

    /// The connection behind `h`, for a command.
    fn owned(&mut self, h: Handle) -> Result<&mut Conn, Error> {
        self.conn_mut(h).ok_or(Error::InvalidHandle)
    }

    /// Gives the session spare parts before a command that queues frames,
    /// so that it needs no allocation. Every such command ends in `flush`
    /// (whose visit trims them again) or, when it fails, in [`Self::trim`].
    /// Reads of what the session holds never allocate and take nothing; a
    /// direct `recv` that decodes bytes from TCP supplies and trims itself.
    fn supply(&mut self, h: Handle) {
        if let Some((c, spares)) = self.conn_and_spares(h) {
            c.session.supply(spares);
        }
    }

    /// Runs a session command with spare parts supplied, taking them back if
    /// it fails; on success the caller flushes (which trims).
    fn command_only<T>(
        &mut self,
        h: Handle,
        f: impl FnOnce(&mut Session) -> Result<T, SessionError>,
    ) -> Result<T, Error> {
        self.supply(h);
        let c = self.owned(h)?;
        let r = f(&mut c.session);
        if r.is_err() {
            self.trim(h);
        }
        Ok(r?)
    }

    /// Takes back what [`Self::supply`] gave, after a command that failed.
    fn trim(&mut self, h: Handle) {
        if let Some((c, spares)) = self.conn_and_spares(h) {
            c.session.trim(spares);
        }
    }

    /// Hands what a command queued to TCP now.
    fn flush(&mut self, h: Handle, now: SmolInstant, sockets: &mut SocketSet<'_>) {
        self.poll_conn(
            h.index as usize,
            session_instant(now),
            sockets,
            super::Visit::Command,
        );
    }

    /// Runs a session command, then hands its output to TCP.
    fn command<T>(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        f: impl FnOnce(&mut Session, bookend_session::Instant) -> Result<T, SessionError>,
    ) -> Result<T, Error> {
        let t = session_instant(now);
        let out = self.command_only(h, |s| f(s, t))?;
        self.flush(h, now, sockets);
        Ok(out)
    }

    /// Stream mode, zero-copy send (like a socket `send`): frames `data`
    /// straight into the TCP socket's free space, without the session's
    /// buffer, and returns how many bytes were taken. While the session
    /// still has bytes queued (control frames, earlier sends), it queues
    /// through the session instead, to keep order. A short count means TCP
    /// is full: `EndpointEvent::Session(Event::Writable)` follows once it has
    /// room for a frame of at least `MIN_DIRECT_CHUNK` bytes again.
    ///
    /// This function returns `Err(Error::Session(WouldBlock))` when nothing
    /// could be taken, and the session's other errors of `send`.
    pub fn send(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        data: &[u8],
    ) -> Result<usize, Error> {
        let c = self.owned(h)?;
        let t = session_instant(now);
        let direct = c
            .socket()
            .filter(|_| c.session.send_queue() == 0 && c.aborted().is_none());
        let Some(sh) = direct else {
            return self.command(sockets, h, now, |s, _| s.send(data));
        };
        let socket = sockets.get_mut::<tcp::Socket>(sh);
        let queued_before = socket.send_queue();
        let (mut taken, mut written_total) = (0, 0);
        // The ring's contiguous tail, then (once it is full) its wrapped start.
        for _ in 0..2 {
            let mut result = Ok((0, 0));
            let _ = socket.send(|buf| {
                result = c.session.send_direct(t, &data[taken..], buf);
                let written = result.as_ref().map_or(0, |&(_, w)| w);
                (written, ())
            });
            let (n, written) = result?;
            written_total += written;
            taken += n;
            if n == 0 || taken == data.len() {
                break;
            }
        }
        if written_total > 0 {
            c.link.note_written(written_total, queued_before, t);
        }
        let room = socket.send_capacity() - socket.send_queue();
        if taken < data.len() && room >= MIN_DIRECT_CHUNK + MAX_FRAME_OVERHEAD {
            // Room, but not in one piece: a tail too short for a frame in front
            // of the wrap. One frame through the session's buffer crosses it
            // (the pump writes across the wrap); the next send is direct again.
            let n = (data.len() - taken).min(room - MAX_FRAME_OVERHEAD);
            let chunk = &data[taken..taken + n];
            taken += self.command(sockets, h, now, |s, _| s.send(chunk))?;
        }
        if let Some(c) = self.conn_mut(h) {
            if taken < data.len() {
                c.set_want_writable(true);
            }
            // Sent data starts the user timeout: keep its deadline in the heap.
            if let Some(sh) = c.socket() {
                c.link.note_unacknowledged(sockets.get::<tcp::Socket>(sh));
            }
            self.reschedule(h.index as usize, None);
        }
        if taken == 0 && !data.is_empty() {
            return Err(Error::Session(SessionError::WouldBlock));
        }
        Ok(taken)
    }

    /// Stream mode, zero-copy receive (like a socket `recv`): reads into
    /// `buf` straight from the TCP socket's receive buffer, without the
    /// session's buffer. Data the session already holds is read first, so
    /// order is kept; after the peer's DISCONNECT, and every byte before it,
    /// it returns `Ok(0)`. The first call switches the connection to direct
    /// receive: from then on the endpoint leaves DATA in the socket for this
    /// call and reports `Readable` when some is there.
    ///
    /// This function returns the session's errors of `recv` (`WouldBlock`
    /// when nothing is there yet, `WrongMode` in message mode).
    pub fn recv(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let (c, spares) = self.conn_and_spares(h).ok_or(Error::InvalidHandle)?;
        let t = session_instant(now);
        c.session.set_direct_receive(true);
        if c.session.recv_queue() > 0 {
            let r = c.session.recv(buf);
            if r.is_ok() {
                self.after_read(h);
            }
            return r.map_err(Error::from);
        }
        let mut written = 0;
        if let Some(sh) = c.socket().filter(|_| c.aborted().is_none()) {
            // Control frames among the bytes (a PING's reply, DISCONNECT data,
            // a split header) need parts: supplied only when there are bytes,
            // taken back below unless the flush's visit trims.
            let bytes_waiting = sockets.get::<tcp::Socket>(sh).recv_queue() > 0;
            if bytes_waiting {
                c.session.supply(spares);
            }
            let socket = sockets.get_mut::<tcp::Socket>(sh);
            // Two passes: the ring's contiguous part, then the wrapped part.
            for _ in 0..2 {
                let mut took = 0;
                let _ = socket.recv(|wire| {
                    let (consumed, w) = c.session.recv_direct(t, wire, &mut buf[written..]);
                    took = consumed;
                    written += w;
                    (consumed, ())
                });
                if took > 0 {
                    // Bytes from the peer, read here instead of by the pump.
                    c.link.note_received(t);
                }
                if took == 0 || written == buf.len() {
                    break;
                }
            }
            // Control frames read here may have queued output (a reply, FIN,
            // an ABORT): hand it to TCP now. Plain DATA queues nothing.
            c.set_last_tcp_state(None);
            if c.session.has_output() || c.session.pending_events() > 0 {
                self.flush(h, now, sockets);
            } else {
                if bytes_waiting {
                    c.session.trim(spares);
                }
                if socket_has_more(sockets, sh) {
                    // Left in TCP for the next read: FD_READ again at the next poll.
                    self.after_read(h);
                }
            }
        }
        if written > 0 {
            return Ok(written);
        }
        let c = self.owned(h)?;
        c.session.recv(buf).map_err(Error::from)
    }

    /// Message mode: queues one whole message (split over DATA frames as
    /// needed) and hands what TCP can take to it.
    ///
    /// This function returns the session's errors of `send_message`
    /// (`TooLarge`, `WouldBlock` when the send buffer cannot take it now).
    pub fn send_message(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        message: &[u8],
    ) -> Result<(), Error> {
        self.command(sockets, h, now, |s, _| s.send_message(message))
    }

    /// Message mode: reads the next whole message into `buf`, returning its
    /// length; `Err(Session(Disconnected))` (WSAEDISCON) after the peer's
    /// DISCONNECT once every message was read.
    ///
    /// This function returns the session's errors of `recv_message`
    /// (`MessageTruncated` leaves the message queued).
    pub fn recv_message(&mut self, h: Handle, buf: &mut [u8]) -> Result<usize, Error> {
        let r = self.owned(h)?.session.recv_message(buf);
        if r.is_ok() {
            self.after_read(h);
        }
        Ok(r?)
    }

    /// A read that took something made room, or re-posted FD_READ: the next
    /// poll visits the connection, so data held back in TCP is taken and
    /// events delivered. (A read that found nothing must not: an application
    /// trying every handle in its loop would never sleep.)
    fn after_read(&mut self, h: Handle) {
        self.poked.poke(h.index as usize);
    }

    /// Message mode: takes the next whole message without copying it.
    ///
    /// This function returns the errors of [`Endpoint::recv_message`] except
    /// `MessageTruncated`.
    pub fn recv_message_bytes(&mut self, h: Handle) -> Result<Bytes, Error> {
        let r = self.owned(h)?.session.recv_message_bytes();
        if r.is_ok() {
            self.after_read(h);
        }
        Ok(r?)
    }

    /// WSASendDisconnect: ends our sending half with `data`; the peer gets
    /// FD_CLOSE and reads `data` with its `recv_disconnect`.
    ///
    /// This function returns the session's errors of `send_disconnect`
    /// (`Shutdown` for a second call with data, `TooLarge`, `NotConnected`).
    pub fn send_disconnect(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.command(sockets, h, now, |s, t| s.send_disconnect(t, data))
    }

    /// WSARecvDisconnect: copies the peer's disconnect data into `buf`:
    /// `Ok(Some(n))`, or `Ok(None)` when its DISCONNECT carried none.
    ///
    /// This function returns the session's errors of `recv_disconnect`
    /// (`NotYet`, `Consumed`, `BufferTooSmall`).
    pub fn recv_disconnect(&mut self, h: Handle, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let r = self.owned(h)?.session.recv_disconnect(buf);
        if r.is_ok() {
            self.after_read(h);
        }
        Ok(r?)
    }

    /// [`Endpoint::recv_disconnect`] without copying.
    ///
    /// This function returns the same errors, except `BufferTooSmall`.
    pub fn recv_disconnect_bytes(&mut self, h: Handle) -> Result<Option<Bytes>, Error> {
        let r = self.owned(h)?.session.recv_disconnect_bytes();
        if r.is_ok() {
            self.after_read(h);
        }
        Ok(r?)
    }

    /// The pending request of an incoming connection (after `Defer`, or when
    /// no condition function is installed).
    pub fn request(&self, h: Handle) -> Option<&IncomingRequest> {
        self.conn(h)?.request()
    }

    /// The local and remote endpoints of a connection, once known.
    pub fn endpoints(&self, h: Handle) -> Option<(Option<IpEndpoint>, Option<IpEndpoint>)> {
        self.conn(h).map(|c| (c.local(), c.remote()))
    }

    /// The session state of a connection.
    pub fn state(&self, h: Handle) -> Option<State> {
        self.conn(h).map(|c| c.session.state())
    }

    /// The options in force: the grant once connected.
    pub fn options(&self, h: Handle) -> Option<Options> {
        self.conn(h).map(|c| c.session.options())
    }

    /// Received DATA bytes the session holds for the application (FIONREAD,
    /// not counting DATA still in TCP for direct receive).
    pub fn recv_queue(&self, h: Handle) -> Option<usize> {
        self.conn(h).map(|c| c.session.recv_queue())
    }

    /// Bytes queued in the session, not yet handed to TCP.
    pub fn send_queue(&self, h: Handle) -> Option<usize> {
        self.conn(h).map(|c| c.session.send_queue())
    }

    /// Whether the peer's DISCONNECT has arrived (FD_CLOSE).
    pub fn peer_disconnected(&self, h: Handle) -> Option<bool> {
        self.conn(h).map(|c| c.session.peer_disconnected())
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self, h: Handle) -> Option<CloseReason> {
        self.conn(h)?.session.close_reason().cloned()
    }

    /// The session's buffers and their bounds.
    pub fn buffer_usage(&self, h: Handle) -> Option<BufferUsage> {
        self.conn(h).map(|c| c.session.buffer_usage())
    }

    /// CF_ACCEPT for a pending request: the connection becomes the
    /// application's, and ACCEPT goes to TCP at once.
    ///
    /// This function returns `Err(Error::NotPending)` unless the connection is
    /// waiting for a decision, and the session's errors (`InvalidGrant`,
    /// `TooLarge`) otherwise.
    pub fn accept(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        callee_data: Option<&[u8]>,
        granted: Options,
    ) -> Result<(), Error> {
        let c = self.owned(h)?;
        if c.phase != Phase::Pending || c.request().is_none() {
            return Err(Error::NotPending);
        }
        self.command_only(h, |s| s.accept(session_instant(now), callee_data, granted))?;
        self.phase_event(h.index as usize, PhaseEvent::Accepted);
        let c = self.owned(h)?;
        c.clear_waiting();
        self.flush(h, now, sockets);
        Ok(())
    }

    /// CF_REJECT for a pending request: the caller gets `Refused` with
    /// `reason` and `data`; the connection lingers until the caller's FIN.
    /// The handle is invalid afterwards.
    ///
    /// This function returns `Err(Error::NotPending)` unless the connection is
    /// waiting for a decision, and `TooLarge` for data over the caller's limit.
    pub fn reject(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        let c = self.owned(h)?;
        if c.phase != Phase::Pending || c.request().is_none() {
            return Err(Error::NotPending);
        }
        self.command_only(h, |s| s.reject(session_instant(now), reason, data))?;
        self.phase_event(h.index as usize, PhaseEvent::Rejected);
        let c = self.owned(h)?;
        c.clear_waiting();
        self.flush(h, now, sockets);
        self.release(h);
        Ok(())
    }

    /// closesocket (graceful): returns at once; the session and its socket
    /// linger in the background until everything, disconnect data included,
    /// is delivered and the FIN exchange completes, or the linger timeout
    /// aborts. While TCP is still connecting nothing of the session has
    /// reached the peer: the attempt ends at once with a RST (as closesocket
    /// of a connecting socket). The handle is invalid afterwards.
    ///
    /// This function returns `Err(Error::InvalidHandle)` for a stale handle.
    pub fn close(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
    ) -> Result<(), Error> {
        self.supply(h);
        let t = session_instant(now);
        let c = self.owned(h)?;
        c.session.close(t);
        // Before TCP is up, the RST goes at once, without the ABORT frame
        // the session queued (no peer session has seen its CONNECT).
        c.abandon_handshake(sockets, t);
        self.flush(h, now, sockets);
        self.release(h);
        Ok(())
    }

    /// closesocket with linger {1, 0}: ABORT with `reason` and `data`, then RST.
    /// While TCP is still connecting, the RST goes at once and the ABORT
    /// (reason and data) is dropped: no peer session has seen the CONNECT.
    /// The handle is invalid afterwards.
    ///
    /// This function returns `Err(Error::InvalidHandle)` for a stale handle
    /// and the session's `TooLarge` for oversize data.
    pub fn abort(
        &mut self,
        sockets: &mut SocketSet<'_>,
        h: Handle,
        now: SmolInstant,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        let t = session_instant(now);
        match self.command_only(h, |s| s.abort(t, reason, data)) {
            Ok(()) | Err(Error::Session(SessionError::InvalidState { .. })) => {}
            Err(e) => return Err(e),
        }
        // As in `close`: before TCP is up, the RST goes at once.
        self.owned(h)?.abandon_handshake(sockets, t);
        self.flush(h, now, sockets);
        self.release(h);
        Ok(())
    }

    /// The application let go of `h`: invalidate the handle; the slot is
    /// freed once nothing is left to linger for.
    fn release(&mut self, h: Handle) {
        let index = h.index as usize;
        self.phase_event(index, PhaseEvent::HandleReleased);
        let Some(c) = self.conns[index].as_mut() else {
            return;
        };
        self.generations[index] = c.retire_handle();
        self.try_free(index);
    }
}

/// Whether the socket still holds received bytes.
fn socket_has_more(sockets: &SocketSet<'_>, h: smoltcp::iface::SocketHandle) -> bool {
    sockets.get::<tcp::Socket>(h).recv_queue() > 0
}
