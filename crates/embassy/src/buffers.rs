//! Sessions' buffers from the application's storage: a pool connections
//! take them from when they start and give them back to when they are
//! dropped, so that no payload byte is on the heap (the TCP buffers are the
//! application's already, given to `TcpSocket::new`).

use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::ops::{Deref, DerefMut};

use bookend_session::{Session, SessionBuffers};

/// Sessions' buffers in the application's storage (from a `static`
/// [`SessionStorage`](bookend_session::SessionStorage)), for connections
/// made with a [`Config`](crate::Config) whose `session_buffers` names this
/// pool: the session-buffer counterpart of embassy-net's
/// `TcpClientState`. `const`-constructible, so that it can be a `static`:
///
/// ```
/// use bookend_embassy::SessionPool;
/// use bookend_embassy::session::{SessionStorage, SMALL_SESSION_STORAGE};
///
/// static POOL: SessionPool = SessionPool::new();
/// # fn storage() -> &'static mut SessionStorage<2, SMALL_SESSION_STORAGE> {
/// #     Box::leak(Box::new(SessionStorage::new()))
/// # }
/// let mut config = bookend_embassy::Config::default();
/// // Firmware takes the storage from a `static_cell::StaticCell`.
/// for b in storage().buffers(&config.session).unwrap() {
///     POOL.add(b);
/// }
/// config.session_buffers = Some(&POOL);
/// assert_eq!(POOL.free(), 2);
/// ```
///
/// The pool is behind a critical section (embassy-net's own state is), held
/// for a push or a pop.
pub struct SessionPool {
    free: critical_section::Mutex<RefCell<Vec<SessionBuffers>>>,
}

impl SessionPool {
    /// An empty pool.
    pub const fn new() -> Self {
        Self {
            free: critical_section::Mutex::new(RefCell::new(Vec::new())),
        }
    }

    /// Adds one session's buffers. Give a pool buffers of one size (one
    /// `SessionStorage`'s), for one configuration: a connection takes the
    /// last added and checks it against its configuration, and buffers too
    /// small for it make its `connect` fail with
    /// [`ConnectError::SessionBuffers`](crate::ConnectError::SessionBuffers)
    /// (a listener's `accept` with
    /// [`AcceptError::SessionBuffers`](crate::AcceptError::SessionBuffers)).
    pub fn add(&self, buffers: SessionBuffers) {
        critical_section::with(|cs| self.free.borrow_ref_mut(cs).push(buffers));
    }

    /// Buffers not in use.
    pub fn free(&self) -> usize {
        critical_section::with(|cs| self.free.borrow_ref(cs).len())
    }

    /// Takes one session's buffers back out of the pool (for another pool,
    /// say); `None` if every one is in use.
    pub fn take(&self) -> Option<SessionBuffers> {
        critical_section::with(|cs| self.free.borrow_ref_mut(cs).pop())
    }
}

impl Default for SessionPool {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionPool")
            .field("free", &self.free())
            .finish()
    }
}

/// One pool is one pool: configurations naming the same one are equal.
impl PartialEq for SessionPool {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::eq(self, other)
    }
}

impl Eq for SessionPool {}

/// Why a session could not have the pool's buffers.
pub(crate) enum Refusal {
    /// None free.
    Empty,
    /// Too small for the configuration (given back to the pool).
    Buffers(bookend_session::BuffersError),
}

/// A connection's session, with the pool its buffers go back to when it is
/// dropped, however the connection ends (a dropped future included).
pub(crate) struct PooledSession {
    session: Session,
    pool: Option<&'static SessionPool>,
}

impl PooledSession {
    /// `session`, over buffers from `pool` when there is one.
    pub(crate) fn new(
        mut session: Session,
        pool: Option<&'static SessionPool>,
    ) -> Result<Self, Refusal> {
        if let Some(pool) = pool {
            let b = pool.take().ok_or(Refusal::Empty)?;
            if let Err(e) = session.provide_buffers(b) {
                pool.add(e.buffers);
                return Err(Refusal::Buffers(e.error));
            }
        }
        Ok(Self { session, pool })
    }
}

impl Deref for PooledSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl DerefMut for PooledSession {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(pool) = self.pool
            && let Some(b) = self.session.take_buffers()
        {
            pool.add(b);
        }
    }
}
