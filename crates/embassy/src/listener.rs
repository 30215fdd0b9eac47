//! The callee's side: a listening port whose `accept` yields each caller's
//! request (address, data, options) before anything is committed, to
//! accept, reject or defer (WSAAccept's condition function).

use bookend_session::{CloseReason, ConnectRequest, Error, Options, Reason, Session};
use bytes::Bytes;
use embassy_net::IpEndpoint;
use embassy_net::tcp::{State, TcpSocket};

use crate::buffers::{PooledSession, Refusal};
use crate::connection::{Connection, now};
use crate::fmt::debug;
use crate::{Config, next_id};

/// A listening port. embassy-net has no backlog: each [`accept`](Self::accept)
/// arms one socket, so a listener of N sockets is N accepts in flight at
/// once (N tasks, or N futures joined), each with its own socket and
/// buffers, sharing this listener by reference (embassy's own servers are
/// built the same way).
#[derive(Debug, Clone)]
pub struct Listener {
    port: u16,
    config: Config,
}

/// Why [`Listener::accept`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcceptError {
    /// embassy-net refused to listen (port 0, a socket not closed).
    Tcp(embassy_net::tcp::AcceptError),
    /// The sessions' configuration is unusable.
    Config(bookend_session::ConfigError),
    /// The pool's session buffers are too small for the configuration
    /// (`Config::session_buffers`); the caller was reset.
    SessionBuffers(bookend_session::BuffersError),
}

impl core::fmt::Display for AcceptError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Tcp(e) => write!(f, "TCP accept failed: {e:?}"),
            Self::Config(e) => write!(f, "unusable configuration: {e}"),
            Self::SessionBuffers(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for AcceptError {}

impl Listener {
    /// A listener on `port` whose connections use `config`.
    ///
    /// This function returns the configuration's error if the sessions'
    /// configuration is unusable: checked here, so that no caller's TCP
    /// connection is taken only to be dropped.
    pub fn new(port: u16, config: Config) -> Result<Self, bookend_session::ConfigError> {
        config.session.validate()?;
        Ok(Self { port, config })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for a caller on `socket` (a closed embassy-net socket, with the
    /// application's buffers) and for its CONNECT: the request, undecided
    /// (FD_ACCEPT, then the condition function's arguments). A caller that
    /// ends before the application could decide (its FIN, RST or ABORT, the
    /// handshake timer, a protocol error, a CONNECT the session refused) is
    /// finished with, within `tcp_close_timeout`, and the socket listens
    /// again, unseen by the application.
    ///
    /// This function returns `Err(AcceptError::Tcp)` if embassy-net will not
    /// listen.
    pub async fn accept<'a>(&self, mut socket: TcpSocket<'a>) -> Result<Incoming<'a>, AcceptError> {
        loop {
            socket.accept(self.port).await.map_err(AcceptError::Tcp)?;
            self.config.prepare(&mut socket);
            let session = Session::callee(self.config.session.clone(), next_id(), now())
                .map_err(AcceptError::Config)?;
            // Without buffers free, the caller is reset, as a full backlog
            // would, and the socket listens again. Buffers too small for the
            // configuration are the application's mistake, which every
            // caller would meet: said at once.
            let session = match PooledSession::new(session, self.config.session_buffers) {
                Ok(s) => s,
                Err(refusal) => {
                    debug!(
                        "no session buffers for {:?}: reset",
                        socket.remote_endpoint()
                    );
                    reset(&mut socket).await;
                    match refusal {
                        Refusal::Buffers(e) => return Err(AcceptError::SessionBuffers(e)),
                        Refusal::Empty => continue,
                    }
                }
            };
            let mut conn = Connection::new(socket, session, self.config.clone());
            let got = conn
                .until(|c| {
                    c.request
                        .take()
                        .map(Ok)
                        .or_else(|| c.session.close_reason().cloned().map(Err))
                })
                .await;
            // A request whose session already ended (its CONNECT and the
            // caller's ABORT in one segment) is not one to decide.
            let got = got.and_then(|r| match conn.session.close_reason() {
                None => Ok(r),
                Some(reason) => Err(reason.clone()),
            });
            match got {
                Ok(request) => {
                    return Ok(Incoming {
                        conn: Some(conn),
                        request,
                    });
                }
                Err(reason) => {
                    // Nothing of the application's is at stake: TCP's side
                    // gets `tcp_close_timeout` at most, not the give-up time
                    // (a caller gone silent would hold the socket minutes).
                    let _ = conn
                        .finish_within(Some(self.config.tcp_close_timeout))
                        .await;
                    debug!(
                        "session {}: ended before a decision: {}",
                        conn.session.id(),
                        reason
                    );
                    socket = conn.into_socket();
                    if !matches!(socket.state(), State::Closed | State::TimeWait) {
                        // smoltcp listens again from CLOSED or TIME-WAIT;
                        // anything else was cut short above: reset it.
                        reset(&mut socket).await;
                    }
                }
            }
        }
    }
}

/// Resets `socket` and lets the RST out (embassy-net sends it on the flush),
/// within a second, so that it can listen again.
async fn reset(socket: &mut TcpSocket<'_>) {
    socket.abort();
    let _ = embassy_time::with_timeout(embassy_time::Duration::from_secs(1), socket.flush()).await;
}

/// A caller's request, undecided: its address, data and options, to
/// [`accept`](Self::accept), [`reject`](Self::reject) or
/// [`defer`](Self::defer) (CF_ACCEPT, CF_REJECT, CF_DEFER).
///
/// Decide before dropping it: embassy-net removes a dropped socket at once,
/// so a dropped request leaves the caller to its connect timer.
#[must_use = "decide with accept, reject or defer"]
pub struct Incoming<'a> {
    conn: Option<Connection<'a>>,
    request: ConnectRequest,
}

impl core::fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Incoming")
            .field("caller", &self.caller())
            .field("request", &self.request)
            .finish()
    }
}

/// A decision on an [`Incoming`] request that the session refused: the
/// request, still undecided, and why. Decide again.
#[derive(Debug)]
pub struct Undecided<'a> {
    /// The request, back.
    pub incoming: Incoming<'a>,
    /// Why the decision was refused.
    pub error: Error,
}

impl<'a> Incoming<'a> {
    fn conn(&mut self) -> &mut Connection<'a> {
        self.conn
            .as_mut()
            .expect("an undecided request holds its connection")
    }

    /// The caller's address and port (`lpCallerId`).
    pub fn caller(&self) -> Option<IpEndpoint> {
        self.conn.as_ref().and_then(Connection::remote_endpoint)
    }

    /// Our address and port (`lpCalleeId`).
    pub fn callee(&self) -> Option<IpEndpoint> {
        self.conn.as_ref().and_then(Connection::local_endpoint)
    }

    /// The caller data (`lpCallerData`); `None` when CONNECT carried none.
    pub fn caller_data(&self) -> Option<&Bytes> {
        self.request.caller_data.as_ref()
    }

    /// The options the caller proposed (the SQOS analog).
    pub fn proposed(&self) -> Options {
        self.request.proposed
    }

    /// What this callee grants by default: pass it to `accept` unless the
    /// application wants less.
    pub fn grant(&self) -> Options {
        self.request.grant
    }

    /// CF_ACCEPT: answers ACCEPT with `callee_data` and the `granted`
    /// options, and gives the connection.
    ///
    /// This function returns `Err(Undecided)`, with this request back and
    /// nothing sent, if the session refuses the decision: `InvalidGrant` if
    /// `granted` exceeds the proposal or changes the mode, `TooLarge` for
    /// callee data over the granted size, or the session's error if it
    /// ended meanwhile (the decision timer after a `defer`, the caller's
    /// ABORT).
    pub async fn accept(
        mut self,
        callee_data: Option<&[u8]>,
        granted: Options,
    ) -> Result<Connection<'a>, Undecided<'a>> {
        let r = self
            .conn()
            .command_until(|s, t| Some(s.accept(t, callee_data, granted)))
            .await;
        match r {
            Ok(()) => Ok(self.conn.take().expect("held until decided")),
            Err(error) => Err(Undecided {
                incoming: self,
                error,
            }),
        }
    }

    /// CF_REJECT: answers REJECT with `reason` and `data` (delivered to the
    /// caller), then FIN, and waits until the caller's FIN confirms it (or
    /// the linger timer); returns how the session ended.
    ///
    /// This function returns `Err(Undecided)`, with this request back and
    /// nothing sent, for reject data over the caller's limit, or the
    /// session's error if it ended meanwhile.
    pub async fn reject(
        mut self,
        reason: Reason,
        data: Option<&[u8]>,
    ) -> Result<CloseReason, Undecided<'a>> {
        let r = self
            .conn()
            .command_until(|s, t| Some(s.reject(t, reason, data)))
            .await;
        if let Err(error) = r {
            return Err(Undecided {
                incoming: self,
                error,
            });
        }
        Ok(self.conn().closed().await)
    }

    /// CF_DEFER: the request stays undecided while the application finds
    /// out (the decision timer, `decision_timeout`, then rejects it with
    /// `DECISION_TIMEOUT`). The timer runs while this request is driven:
    /// [`wait_decision_timeout`](Self::wait_decision_timeout), or the
    /// decision itself, which finds the request rejected if it is late.
    ///
    /// This function returns `Err(Error::InvalidState)` once the request has
    /// ended.
    pub fn defer(&mut self) -> Result<(), Error> {
        self.conn().session.defer()
    }

    /// Drives a deferred request until the decision timer rejects it (or
    /// the caller gives up); returns how it ended. Race it against the
    /// application's own decision with `embassy_futures::select`, keeping
    /// the request when the decision wins.
    pub async fn wait_decision_timeout(&mut self) -> CloseReason {
        self.conn().closed().await
    }
}
