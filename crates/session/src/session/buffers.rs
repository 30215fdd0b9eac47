//! Session buffers in storage the application provides, for builds that
//! keep payload bytes off the heap (firmware: a `static` pool of N
//! connections, in the style of embassy-net's `TcpClientState`).
//!
//! A session given [`SessionBuffers`] holds every payload byte in them:
//! received stream bytes and messages (as records: length, then bytes; no
//! `Bytes` per message), the frame in assembly, and the encoded frames
//! waiting for the transport. What stays on the heap is the small session
//! state: the boxes holding the three queues' positions, and the handshake
//! and disconnect data handed to the application in events (bounded by
//! `max_connect_data` and `max_disconnect_data`).
//!
//! The storage is `&'static mut`, so that a session keeps no lifetime and
//! can move into a `'static` task; firmware gets it from a `static` through
//! `static_cell::StaticCell` or `cortex_m::singleton!`, a host test from
//! `Box::leak`. It goes back to the application with
//! [`Session::take_buffers`], for the next session.

use core::fmt;

use super::queue::Queue;
use super::rx::{RECORD_HEADER, Records};
use super::{Bounds, MESSAGE_OVERHEAD, Session};
use crate::config::{Config, ModeOffer, Options};
use bookend_wire::Mode;

/// Bytes each of a session's three provided buffers needs under a
/// configuration: the bounds its flow control and frame limits keep
/// against any peer ([`BufferUsage`](crate::BufferUsage)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferSizes {
    /// Received DATA for the application: the receive buffer, plus one
    /// sealed frame (stream mode) or one message with its charge (message
    /// mode), whichever is larger, plus one record header.
    pub rx: usize,
    /// Encoded frames waiting for the transport: the send buffer (bytes on
    /// the wire), or one frame, message (message mode) or control frame
    /// queued into an empty buffer; then a DISCONNECT or ABORT.
    pub tx: usize,
    /// A frame assembled whole: the largest control frame, or a sealed
    /// frame of any type (`docs/protocol.md` §2.5).
    pub frame: usize,
}

impl BufferSizes {
    /// The sizes sessions of `config` need with its own options: in its
    /// mode, and in both when it serves both (`ModeOffer::Both`). A caller
    /// proposing larger options, or a callee granting them, needs
    /// [`for_options`](Self::for_options) of those.
    pub fn for_config(config: &Config) -> Self {
        let own = Self::for_options(config, &config.options);
        if config.offered_modes == ModeOffer::Both {
            let other = match config.options.mode {
                Mode::Stream => Mode::Message,
                Mode::Message => Mode::Stream,
            };
            let o = Options {
                mode: other,
                ..config.options
            };
            own.max(&Self::for_options(config, &o))
        } else {
            own
        }
    }

    /// The sizes a session of `config` needs with `options` in force (a
    /// caller's proposal, a callee's grant).
    pub fn for_options(config: &Config, options: &Options) -> Self {
        let b = Bounds::new(config, options);
        let held = match options.mode {
            // A sealed DATA frame is delivered whole once verified: the
            // stream may overshoot the receive buffer by one frame body.
            Mode::Stream => b.data_body,
            // One message in reassembly, and each message's record header
            // (4 bytes, where flow control charges `MESSAGE_OVERHEAD`).
            Mode::Message => b.message + MESSAGE_OVERHEAD + RECORD_HEADER,
        };
        Self {
            rx: config.recv_buffer + held,
            tx: b.tx,
            frame: b.partial,
        }
    }

    /// Each size the larger of the two.
    fn max(&self, other: &Self) -> Self {
        Self {
            rx: self.rx.max(other.rx),
            tx: self.tx.max(other.tx),
            frame: self.frame.max(other.frame),
        }
    }

    /// The three together: the length of storage to give
    /// [`SessionBuffers::new`].
    pub fn total(&self) -> usize {
        self.rx + self.tx + self.frame
    }

    /// Whether every buffer is at least as large as `need`'s.
    pub(crate) fn covers(&self, need: &Self) -> bool {
        self.rx >= need.rx && self.tx >= need.tx && self.frame >= need.frame
    }
}

/// Why provided buffers were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BuffersError {
    /// The storage is smaller than the configuration's bounds
    /// ([`BufferSizes::for_config`]): a peer could make the session need
    /// more than it has.
    TooSmall {
        /// What the configuration needs.
        need: BufferSizes,
        /// What was given.
        have: BufferSizes,
    },
    /// The session already holds received bytes, or provided buffers: it
    /// takes buffers only before it has received anything.
    InUse,
}

impl fmt::Display for BuffersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall { need, have } => write!(
                f,
                "session buffers too small: need {} (rx {}, tx {}, frame {}), have {}",
                need.total(),
                need.rx,
                need.tx,
                need.frame,
                have.total()
            ),
            Self::InUse => write!(f, "the session already holds received bytes or buffers"),
        }
    }
}

impl core::error::Error for BuffersError {}

/// Provided buffers refused by [`Session::provide_buffers`], given back so
/// that the storage is not lost.
#[derive(Debug)]
pub struct ProvideError {
    /// Why.
    pub error: BuffersError,
    /// The buffers, untouched.
    pub buffers: SessionBuffers,
}

impl fmt::Display for ProvideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl core::error::Error for ProvideError {}

/// One session's buffers in the application's storage: three regions of
/// one `&'static mut [u8]`, sized by [`BufferSizes`].
///
/// A cloned session holds its clone's bytes on the heap: the storage is the
/// original's.
pub struct SessionBuffers {
    rx: &'static mut [u8],
    tx: &'static mut [u8],
    frame: &'static mut [u8],
}

impl fmt::Debug for SessionBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBuffers")
            .field("rx", &self.rx.len())
            .field("tx", &self.tx.len())
            .field("frame", &self.frame.len())
            .finish()
    }
}

impl SessionBuffers {
    /// Splits `storage` into buffers for sessions of `config`; bytes beyond
    /// [`BufferSizes::total`] go to the receive buffer.
    ///
    /// This function returns `Err(BuffersError::TooSmall)` if `storage` is
    /// shorter than `BufferSizes::for_config(config).total()`.
    pub fn new(storage: &'static mut [u8], config: &Config) -> Result<Self, BuffersError> {
        Self::with_sizes(storage, BufferSizes::for_config(config))
    }

    /// Splits `storage` into buffers of `sizes`, for sessions whose options
    /// go beyond their configuration's (`BufferSizes::for_options`); bytes
    /// beyond go to the receive buffer.
    ///
    /// This function returns `Err(BuffersError::TooSmall)` if `storage` is
    /// shorter than `sizes.total()`.
    pub fn with_sizes(
        storage: &'static mut [u8],
        sizes: BufferSizes,
    ) -> Result<Self, BuffersError> {
        too_small(storage.len(), sizes)?;
        let (tx, rest) = storage.split_at_mut(sizes.tx);
        let (frame, rx) = rest.split_at_mut(sizes.frame);
        Ok(Self { rx, tx, frame })
    }

    /// The size of each buffer.
    pub fn sizes(&self) -> BufferSizes {
        BufferSizes {
            rx: self.rx.len(),
            tx: self.tx.len(),
            frame: self.frame.len(),
        }
    }

    /// Whether these buffers are large enough for sessions of `config`.
    pub fn fits(&self, config: &Config) -> bool {
        self.sizes().covers(&BufferSizes::for_config(config))
    }
}

/// Storage for `N` sessions' buffers of `LEN` bytes each, to be placed in
/// a `static` (through `static_cell::StaticCell`, say) and split with
/// [`SessionStorage::buffers`]: the session-buffer counterpart of
/// embassy-net's `TcpClientState<N, RX, TX>`. Size `LEN` with
/// [`BufferSizes::total`] of the configuration (for [`Config::small`],
/// [`SMALL_SESSION_STORAGE`]).
pub struct SessionStorage<const N: usize, const LEN: usize> {
    slots: [[u8; LEN]; N],
}

impl<const N: usize, const LEN: usize> SessionStorage<N, LEN> {
    /// Zeroed storage, `const` so that it can initialise a `static`.
    pub const fn new() -> Self {
        Self {
            slots: [[0; LEN]; N],
        }
    }

    /// Whether slots of `LEN` bytes hold sessions of `config`: check it
    /// before [`buffers`](Self::buffers), which consumes the `'static`
    /// reference even when it refuses.
    pub fn fits(&self, config: &Config) -> bool {
        LEN >= BufferSizes::for_config(config).total()
    }

    /// The `N` sessions' buffers for `config`.
    ///
    /// This function returns `Err(BuffersError::TooSmall)` if `LEN` is
    /// shorter than `BufferSizes::for_config(config).total()` (see
    /// [`fits`](Self::fits)).
    pub fn buffers(
        &'static mut self,
        config: &Config,
    ) -> Result<impl Iterator<Item = SessionBuffers> + use<N, LEN>, BuffersError> {
        let need = BufferSizes::for_config(config);
        // Checked once, so that every slot splits.
        too_small(LEN, need)?;
        Ok(self
            .slots
            .iter_mut()
            .filter_map(move |slot| SessionBuffers::with_sizes(slot, need).ok()))
    }
}

/// Refuses `len` bytes of storage for buffers of `need`'s sizes if short,
/// saying how it would have been split (transmit, frame, then receive).
fn too_small(len: usize, need: BufferSizes) -> Result<(), BuffersError> {
    if len < need.total() {
        return Err(BuffersError::TooSmall {
            need,
            have: BufferSizes {
                rx: len.saturating_sub(need.tx + need.frame),
                tx: len.min(need.tx),
                frame: len.saturating_sub(need.tx).min(need.frame),
            },
        });
    }
    Ok(())
}

impl<const N: usize, const LEN: usize> Default for SessionStorage<N, LEN> {
    fn default() -> Self {
        Self::new()
    }
}

/// [`BufferSizes::total`] for [`Config::small`] (stream mode, the only mode
/// it serves): the `LEN` of a [`SessionStorage`] for firmware sessions.
/// A test checks it against the computed value.
pub const SMALL_SESSION_STORAGE: usize = 10_790;

impl Session {
    /// Moves the session's buffers into `buffers`, the application's
    /// storage: from then on it allocates nothing for payload bytes (see
    /// [`SessionBuffers`]). Give them before the session has received
    /// anything, typically right after [`caller`](Self::caller) or
    /// [`callee`](Self::callee); bytes already queued for the transport
    /// (a CONNECT) move with it.
    ///
    /// This function returns the buffers back with
    /// `BuffersError::TooSmall` if they are smaller than this session's
    /// configuration needs, and with `BuffersError::InUse` if the session
    /// has received bytes or already has provided buffers.
    pub fn provide_buffers(&mut self, buffers: SessionBuffers) -> Result<(), ProvideError> {
        // The options in force may be a proposal or grant beyond the
        // configuration's own.
        let need = BufferSizes::for_config(&self.config)
            .max(&BufferSizes::for_options(&self.config, &self.params()));
        let error = if !buffers.sizes().covers(&need) {
            Some(BuffersError::TooSmall {
                need,
                have: buffers.sizes(),
            })
        } else if self.has_provided_buffers() || self.rx.bufs.get().is_some_and(|b| !b.is_idle()) {
            Some(BuffersError::InUse)
        } else {
            None
        };
        if let Some(error) = error {
            return Err(ProvideError { error, buffers });
        }
        let SessionBuffers { rx, tx, frame } = buffers;
        let bufs = self.rx.bufs.make();
        bufs.partial = Queue::fixed(frame);
        bufs.stream = Queue::fixed(rx);
        bufs.records = Some(Records::default());
        let queued = self.tx.buf.make();
        let mut fixed = Queue::fixed(tx);
        // What was queued (a CONNECT) fits: the buffer holds the bound.
        let _ = fixed.extend_from_slice(queued);
        *queued = fixed;
        Ok(())
    }

    /// The sizes of the provided buffers, if any.
    fn provided_sizes(&self) -> Option<BufferSizes> {
        let rx = self.rx.bufs.get().filter(|b| b.is_provided())?;
        Some(BufferSizes {
            rx: rx.stream.capacity(),
            tx: self.tx.buf.get().map_or(0, |b| b.capacity()),
            frame: rx.partial.capacity(),
        })
    }

    /// Whether the session's buffers can hold what `options` allow: always
    /// on the heap; provided ones if they were sized for it. A proposal or
    /// grant they cannot hold is refused (`Error::InvalidGrant`), before
    /// a peer could make the session need more than it has; a driver that
    /// connects its transport first asks here.
    pub fn buffers_hold(&self, options: &Options) -> bool {
        self.provided_sizes()
            .is_none_or(|have| have.covers(&BufferSizes::for_options(&self.config, options)))
    }

    /// Whether the session's buffers are the application's
    /// ([`provide_buffers`](Self::provide_buffers)).
    pub fn has_provided_buffers(&self) -> bool {
        self.rx.bufs.get().is_some_and(|b| b.is_provided())
    }

    /// Gives provided buffers back, for another session; `None` if the
    /// session has none. Call it once the session is finished with
    /// ([`is_drained`](Self::is_drained)), or is being dropped: whatever
    /// the buffers held is discarded, and the session goes on with empty
    /// buffers on the heap.
    pub fn take_buffers(&mut self) -> Option<SessionBuffers> {
        if !self.has_provided_buffers() {
            return None;
        }
        self.rx.discard();
        self.rx.drop_partial();
        self.tx.discard_all();
        let bufs = self.rx.bufs.get_mut()?;
        bufs.records = None;
        let rx = bufs.stream.take_storage()?;
        let frame = bufs.partial.take_storage()?;
        let tx = self.tx.buf.get_mut()?.take_storage()?;
        Some(SessionBuffers { rx, tx, frame })
    }
}
